"""`seq2seq score`: how likely the model finds given translations, by a teacher-forced pass.

Each English/Korean pair is read as one sentence each (no sentence splitting), normalised and
tokenised as in training, with the domain tag as `translate` puts it; the decoder reads BOS and the
Korean pieces at once (the training forward pass, `Seq2Seq.encode` and `Decoder.forward`) and each
piece's log-probability, EOS's last, is read off the output layer. A pair's `log_prob` is their
sum and its `score` the length-normalised one the beam search ranks by, so the score of a
translation the search found is the search's own (up to float rounding, where the text tokenises
back into the pieces the search emitted).

Input: two files of as many lines (English, Korean), or lines of English<TAB>Korean. All of it
is checked before anything is scored: a bad line is one `UserError` naming the file and line.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import torch

from seq2seq.data import pad
from seq2seq.errors import UserError
from seq2seq.prepare import normalize
from seq2seq.search import batches_by_length, length_normalized
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID
from seq2seq.translate import Translator, decode_lines, split_paragraphs

STDIN = "<stdin>"


@dataclass
class PairScore:
    """The model's scores of one Korean sentence as the translation of one English sentence."""

    score: float  # the length-normalised log-probability (GNMT penalty), as the beam search ranks
    log_prob: float  # the sum of the pieces' log-probabilities, EOS included
    pieces: list[str]  # the Korean SentencePiece pieces, "</s>" last
    piece_log_probs: list[float]  # one per piece


@torch.no_grad()
def teacher_forced_log_probs(model: torch.nn.Module, source: torch.Tensor, lengths: torch.Tensor,
                             targets: list[list[int]]) -> torch.Tensor:
    """Each target id's log-probability given the source and the ids before it (EOS appended).

    source: (B, S) ids; lengths: (B,); targets: B id lists. Returns (B, T + 1) log-probabilities,
    T the longest target, 0 past each target's EOS. Only real positions reach the output layer.
    """
    device = source.device
    memory, state = model.encode(source, lengths)
    attentional, _ = model.decoder(pad(targets, prefix=[BOS_ID]).to(device), memory, state)  # (B, T + 1, E)
    expected = pad(targets, suffix=[EOS_ID]).to(device)  # (B, T + 1)
    real = expected != PAD_ID
    log_probs = torch.log_softmax(model.decoder.logits(attentional[real]).float(), dim=-1)  # (N, V)
    picked = log_probs.gather(1, expected[real].unsqueeze(1)).squeeze(1)  # (N,)
    return torch.zeros(expected.shape, device=device).masked_scatter(real, picked)


def score_pairs(translator: Translator, english: list[str], korean: list[str], domain: str | None = None,
                first_number: int = 1) -> list[PairScore]:
    """The teacher-forced scores of the pairs (english[i], korean[i]), in order, batched by length
    (`translator.batch_size` pairs a pass), with `translator`'s model, domain tag (or `domain`'s)
    and length penalty. Every sentence must be non-empty once normalised (`check_pair`); a long
    English one is cut as `translate` cuts it, with a warning naming its line (from `first_number`)."""
    if len(english) != len(korean):
        raise UserError(f"{len(english)} English sentences but {len(korean)} Korean ones")
    for number, pair in enumerate(zip(english, korean, strict=True), start=first_number):
        check_pair(*pair, f"line {number}", f"line {number}")
    sources = translator.source_ids(split_paragraphs(english, split=False), domain, first_number=first_number)
    targets = translator.tokenizer.encode_target([normalize(text) for text in korean])
    results: list[PairScore | None] = [None] * len(sources)
    translator.model.eval()
    for batch in batches_by_length([len(targets[i]) + len(sources[i]) for i in range(len(sources))],
                                   translator.batch_size):
        source = pad([sources[i] for i in batch]).to(translator.device)
        lengths = torch.tensor([len(sources[i]) for i in batch], device=translator.device)
        values = teacher_forced_log_probs(translator.model, source, lengths, [targets[i] for i in batch]).tolist()
        for index, row in zip(batch, values, strict=True):
            pieces = [*translator.tokenizer.target.id_to_piece(targets[index]), "</s>"]
            piece_log_probs = row[: len(pieces)]
            log_prob = sum(piece_log_probs)
            score = length_normalized(log_prob, len(targets[index]), translator.length_penalty)
            results[index] = PairScore(score, log_prob, pieces, piece_log_probs)
    return results


def check_pair(english: str, korean: str, english_place: str, korean_place: str) -> None:
    """`UserError` naming the sentence's place (file and line) unless both have text once normalised."""
    for language, text, place in (("Korean", korean, korean_place), ("English", english, english_place)):
        if not normalize(text):
            raise UserError(f"{place}: the {language} sentence is empty: every pair needs both")


def read_lines(path: Path) -> Iterator[str]:
    """The lines of a UTF-8 text file, line ends stripped (bad bytes: U+FFFD and a warning)."""
    try:
        with path.open("rb") as handle:
            yield from decode_lines(handle)
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None


def pairs_from_files(english_path: Path, korean_path: Path) -> Iterator[tuple[str, str]]:
    """The (English, Korean) pairs of two files, line by line; `UserError` naming the file and line
    where one file ends before the other."""
    english, korean = read_lines(english_path), read_lines(korean_path)
    end = object()
    for number in itertools.count(1):
        pair = next(english, end), next(korean, end)
        if pair == (end, end):
            return
        if end in pair:
            short, long = (english_path, korean_path) if pair[0] is end else (korean_path, english_path)
            raise UserError(f"{short} has {number - 1} lines but {long} has more (line {number}): "
                            "the files must have a line each per pair")
        yield pair


def check_files(english_path: Path, korean_path: Path) -> int:
    """Read both files through once, checking every pair (`check_pair`); their number of pairs."""
    count = 0
    for count, pair in enumerate(pairs_from_files(english_path, korean_path), start=1):
        check_pair(*pair, f"{english_path} line {count}", f"{korean_path} line {count}")
    return count


def pairs_from_tsv(lines: Iterable[str], name: str = STDIN) -> list[tuple[str, str]]:
    """The (English, Korean) pairs of English<TAB>Korean lines, all checked (`check_pair`);
    `UserError` naming `name` and the line at the first bad one."""
    pairs = []
    for number, line in enumerate(lines, start=1):
        fields = line.split("\t")
        if len(fields) != 2:
            found = "no tab" if len(fields) == 1 else f"{len(fields) - 1} tabs"
            raise UserError(f"{name} line {number}: {found}; each line must be English<TAB>Korean")
        check_pair(*fields, f"{name} line {number}", f"{name} line {number}")
        pairs.append((fields[0], fields[1]))
    return pairs


def score_stream(translator: Translator, pairs: Iterable[tuple[str, str]], domain: str | None = None,
                 progress: Callable[[int], None] | None = None) -> Iterator[PairScore]:
    """`score_pairs` over `pairs` as they are read, 8 batches' worth at a time (sorted by length
    within them), in order; `progress` is told how many pairs each step scored."""
    chunk: list[tuple[str, str]] = []
    number = 1
    for pair in pairs:
        chunk.append(pair)
        if len(chunk) == 8 * translator.batch_size:
            yield from _score_chunk(translator, chunk, domain, number, progress)
            number, chunk = number + len(chunk), []
    if chunk:
        yield from _score_chunk(translator, chunk, domain, number, progress)


def _score_chunk(translator: Translator, chunk: list[tuple[str, str]], domain: str | None, first_number: int,
                 progress: Callable[[int], None] | None) -> list[PairScore]:
    english, korean = zip(*chunk, strict=True)
    scored = score_pairs(translator, list(english), list(korean), domain, first_number)
    if progress is not None:
        progress(len(chunk))
    return scored


def score_json(scored: PairScore) -> dict:
    """One pair's JSON Lines object: score, log_prob, pieces and piece_log_probs."""
    return {"score": round(scored.score, 6), "log_prob": round(scored.log_prob, 6), "pieces": scored.pieces,
            "piece_log_probs": [round(value, 6) for value in scored.piece_log_probs]}


def score_line(scored: PairScore, as_json: bool) -> str:
    """One pair's output line: its JSON object, or `score<TAB>log_prob`."""
    if as_json:
        return json.dumps(score_json(scored), ensure_ascii=False)
    return f"{scored.score:.4f}\t{scored.log_prob:.4f}"


def score_command(translator: Translator, english_path: Path | None, korean_path: Path | None, out: IO[str],
                  as_json: bool, domain: str | None = None, stdin: Iterable[bytes] = ()) -> int:
    """What `seq2seq score` does: check all the input, then write a line per pair to `out` (with
    files, a progress bar on stderr). Pairs come from the two files, else from `stdin`'s
    English<TAB>Korean lines (read whole first: nothing is written before all of it is checked).
    Returns the number of pairs scored."""
    from tqdm import tqdm

    if (english_path is None) != (korean_path is None):
        raise UserError("give both --source and --target, or neither (then English<TAB>Korean lines on stdin)")
    if english_path is None:
        pairs: Iterable[tuple[str, str]] = pairs_from_tsv(list(decode_lines(stdin)))
        total, bar = len(pairs), None
    else:
        total = check_files(english_path, korean_path)
        pairs = pairs_from_files(english_path, korean_path)
        bar = tqdm(total=total, unit="pair", desc="score", mininterval=1, dynamic_ncols=True)
    try:
        for scored in score_stream(translator, pairs, domain, bar.update if bar else None):
            out.write(score_line(scored, as_json) + "\n")
    finally:
        if bar is not None:
            bar.close()
    return total
