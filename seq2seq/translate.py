"""English text in, Korean text out: the `Translator` behind `seq2seq translate` and `evaluate`."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch

from seq2seq import paths
from seq2seq.checkpoint import load_model
from seq2seq.config import EvaluateConfig
from seq2seq.device import pick_device
from seq2seq.domains import Domains
from seq2seq.errors import UserError
from seq2seq.prepare import normalize
from seq2seq.search import Hypothesis, translate_ids
from seq2seq.tokenizer import batched

DEFAULT_MODEL = paths.BEST_MODEL


def _warn_on_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class Translator:
    """A loaded model plus decoding settings.

    Input is normalised as in training; an empty sentence gives an empty translation; a sentence
    longer than the model was trained on is cut to that length, with a warning. A model trained
    with domain tags reads the tag of `domain` (default: its default domain) before each sentence.
    """

    def __init__(
        self,
        model_path: Path = DEFAULT_MODEL,
        beam_size: int = EvaluateConfig.beam_size,
        length_penalty: float = EvaluateConfig.length_penalty,
        max_output_ratio: float = EvaluateConfig.max_output_ratio,
        batch_size: int = EvaluateConfig.batch_size,
        device: str = "cpu",
        warn: Callable[[str], None] = _warn_on_stderr,
        no_repeat_ngram_size: int = EvaluateConfig.no_repeat_ngram_size,
        domain: str | None = None,
    ) -> None:
        self.device = pick_device(device)
        self.model, self.tokenizer, content = load_model(model_path, self.device)
        self.max_input_tokens = content.get("max_source_length") or 200
        self.domains = Domains(**content["domains"]) if content.get("domains") else None
        if domain is not None and self.domains is None:
            raise UserError(f"{model_path} was trained without domain tags: --domain does not apply")
        self.tag_id = self.domains.tag_id(domain or self.domains.default) if self.domains else None
        self.beam_size = beam_size
        self.length_penalty = length_penalty
        self.max_output_ratio = max_output_ratio
        self.no_repeat_ngram_size = no_repeat_ngram_size
        self.batch_size = batch_size
        self.warn = warn

    def _source_ids(self, sentences: list[str], first_number: int = 1) -> list[list[int]]:
        ids = self.tokenizer.encode_source([normalize(s) for s in sentences])
        for number, sequence in enumerate(ids, start=first_number):
            if len(sequence) > self.max_input_tokens:
                limit = self.max_input_tokens
                self.warn(f"sentence {number} has {len(sequence)} tokens; translating its first {limit}")
                del sequence[self.max_input_tokens :]
        return ids

    def _tagged(self, ids: list[list[int]], tag_ids: list[int] | None) -> list[list[int]]:
        """Each non-empty sequence after its domain tag (`tag_ids`, or this translator's domain)."""
        if self.tag_id is None:
            return ids
        tag_ids = tag_ids or [self.tag_id] * len(ids)
        return [[tag, *sequence] if sequence else [] for tag, sequence in zip(tag_ids, ids, strict=True)]

    def hypotheses(self, sentences: list[str], first_number: int = 1, tag_ids: list[int] | None = None
                   ) -> list[Hypothesis | None]:
        """Best hypothesis per sentence (None for an empty one); `tag_ids` overrides the domain tag per sentence."""
        return self._search(self._tagged(self._source_ids(sentences, first_number), tag_ids))

    def _search(self, ids: list[list[int]]) -> list[Hypothesis | None]:
        present = [i for i, sequence in enumerate(ids) if sequence]
        results: list[Hypothesis | None] = [None] * len(ids)
        found = translate_ids(self.model, [ids[i] for i in present], self.batch_size, self.beam_size,
                              self.length_penalty, self.max_output_ratio, self.device, self.no_repeat_ngram_size)
        for index, hypothesis in zip(present, found, strict=True):
            results[index] = hypothesis
        return results

    def translate(self, sentences: list[str], first_number: int = 1, tag_ids: list[int] | None = None) -> list[str]:
        """Korean translations, one per input sentence, in order."""
        hypotheses = self.hypotheses(sentences, first_number, tag_ids)
        decoded = self.tokenizer.decode_target([h.tokens if h else [] for h in hypotheses])
        return [text if h else "" for text, h in zip(decoded, hypotheses, strict=True)]

    def translate_stream(self, lines: Iterable[str]) -> Iterator[str]:
        """Translate lines as they come, `batch_size` at a time, in order."""
        number = 1
        for chunk in batched((line.rstrip("\r\n") for line in lines), self.batch_size):
            yield from self.translate(chunk, first_number=number)
            number += len(chunk)

    def attention(self, sentence: str) -> tuple[list[str], list[str], torch.Tensor]:
        """Source pieces, output pieces (EOS last) and the (output, source) attention weights."""
        source_ids = self._tagged(self._source_ids([sentence]), None)[0]
        (hypothesis,) = self._search([source_ids])
        if hypothesis is None:
            raise UserError("the sentence is empty after normalisation: no attention to draw")
        source_pieces = [self.domains.piece(i) if i == self.tag_id else self.tokenizer.source.id_to_piece(i)
                         for i in source_ids]
        target_pieces = [self.tokenizer.target.id_to_piece(i) for i in hypothesis.tokens] + ["</s>"]
        weights = hypothesis.attention[: len(target_pieces)]
        return source_pieces, target_pieces[: weights.size(0)], weights


def plot_attention(source_pieces: list[str], target_pieces: list[str], weights: torch.Tensor, path: Path,
                   warn: Callable[[str], None] = _warn_on_stderr) -> None:
    """Draw the attention weights as a heatmap PNG: source pieces across, output pieces down."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    from seq2seq.files import atomic_path

    korean_fonts = [f.name for f in font_manager.fontManager.ttflist
                    if any(name in f.name for name in ("Nanum", "Noto Sans CJK", "Noto Sans KR", "UnDotum"))]
    if korean_fonts:
        plt.rcParams["font.family"] = korean_fonts[0]
    else:
        warn("no Korean font found (e.g. apt-get install fonts-nanum): Korean labels will show as boxes")
    size = (max(4, 0.45 * len(source_pieces) + 2), max(3, 0.4 * len(target_pieces) + 2))
    figure, axes = plt.subplots(figsize=size)
    axes.imshow(weights.numpy(), cmap="viridis", aspect="auto", vmin=0.0, vmax=1.0)
    axes.set_xticks(range(len(source_pieces)), source_pieces, rotation=90)
    axes.set_yticks(range(len(target_pieces)), target_pieces)
    axes.set_xlabel("source (English pieces)")
    axes.set_ylabel("output (Korean pieces)")
    with atomic_path(path) as temp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        figure.tight_layout()
        figure.savefig(temp, format="png", dpi=120)
    plt.close(figure)


def decode_lines(lines: Iterable[bytes], warn: Callable[[str], None] = _warn_on_stderr) -> Iterator[str]:
    """Text of raw input lines, line ends stripped, one per line: bytes that are not UTF-8 become
    U+FFFD, with one warning naming the first line that had some."""
    warned = False
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace")
            if not warned:
                warn(f"line {number} is not valid UTF-8: invalid bytes replaced by U+FFFD (later lines not reported)")
                warned = True
        yield text.rstrip("\r\n")
