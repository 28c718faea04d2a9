"""English text in, Korean text out: the `Translator` behind `seq2seq translate`, `serve`,
`evaluate` and the Python API (`from seq2seq import Translator`).

A line of text may hold several sentences: the model was trained on single sentences, so the
text is split into sentences first (the Moses splitter's rules, in `sentence-splitter`), these
are translated together, and the translations are joined with the text's own spacing.
"""

from __future__ import annotations

import functools
import queue
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch

from seq2seq import paths
from seq2seq.alignment import Method, joined_alignment, word_alignment
from seq2seq.checkpoint import load_model
from seq2seq.confidence import Calibration, is_low, missing_calibration_message, shown_text
from seq2seq.config import decoding_settings
from seq2seq.device import pick_device
from seq2seq.domains import Domains
from seq2seq.errors import UserError
from seq2seq.prepare import normalize
from seq2seq.search import Hypothesis, translate_ids

if TYPE_CHECKING:
    from seq2seq.scoring import PairScore

DEFAULT_MODEL = paths.BEST_MODEL
Item = TypeVar("Item")


def _warn_on_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


@dataclass
class Candidate:
    """One hypothesis of one sentence."""

    text: str
    score: float  # length-normalised log-probability (GNMT penalty): the beam search's ranking score
    log_prob: float  # the sum of its tokens' log-probabilities, EOS included


@dataclass
class SentenceTranslation:
    """One sentence of a text, as split from it, and its translation. An empty sentence (empty once
    normalised) has one candidate, "" with log-probability 0; a search asked for an n-best list
    gives up to n candidates (fewer when fewer hypotheses ended)."""

    source: str  # the sentence as split from the text
    text: str  # the best candidate's text ("" for an empty sentence)
    candidates: list[Candidate]  # best first; one unless an n-best list was asked for
    # (source word i, target word j) pairs of `source` and `text` (whitespace-separated words, from
    # 0), from the attention: `seq2seq.alignment`; None unless asked for ([] for an empty sentence)
    alignment: list[tuple[int, int]] | None = None
    confidence: float | None = None  # expected sentence chrF (seq2seq.confidence); None: no calibration, or empty


@dataclass
class Translation:
    """One text's translation and its `sentences` (none for a blank text); with attention asked
    for, also its sentences' pieces one after the other and each sentence's (output, source)
    weights, `blocks[i]` of shape (output pieces of sentence i, its source pieces). Each sentence's
    output attends to its own source only."""

    text: str
    source_pieces: list[str] | None = None
    output_pieces: list[str] | None = None
    blocks: list[torch.Tensor] | None = None
    sentences: list[SentenceTranslation] = field(default_factory=list)

    @property
    def attention(self) -> torch.Tensor | None:
        """The (output pieces, source pieces) weights of the whole text: the blocks on the diagonal."""
        return None if self.blocks is None else torch.block_diag(*self.blocks)

    @property
    def alignment(self) -> list[tuple[int, int]] | None:
        """The word alignment of the whole text (its sentences' alignments, word indices counted
        over the text), when the sentences' alignments were asked for."""
        if any(sentence.alignment is None for sentence in self.sentences):
            return None
        return joined_alignment([s.alignment for s in self.sentences], [s.source for s in self.sentences],
                                [s.text for s in self.sentences])


def quantize_for_cpu(model: torch.nn.Module) -> torch.nn.Module:
    """int8 dynamic quantization of the Linear and recurrent layers (weights int8, activations
    quantized on the fly): faster CPU inference, slightly different outputs."""
    import warnings

    if next(model.parameters()).device.type != "cpu":
        raise UserError("int8 quantization is for CPU inference: use --device cpu")
    # torch.ao.quantization is deprecated in favour of the separate torchao package, but still works
    # in the pinned torch; its quantized RNN also calls the deprecated quantize_per_tensor.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(torch.ao.quantization is deprecated|quantize_per_tensor)")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {torch.nn.Linear, torch.nn.GRU, torch.nn.LSTM}, dtype=torch.qint8)


@functools.cache
def _moses_splitter():
    from sentence_splitter import SentenceSplitter

    return SentenceSplitter(language="en")


# Whitespace other than a line break: the Moses rules break sentences at spaces only, so a tab or
# a no-break space after a full stop would hide the break from them.
_SPACING = re.compile(r"[^\S\n]")


@dataclass(frozen=True)
class Paragraph:
    """A text as its sentences and the text around them: `layout[i]` comes before sentence i and
    `layout[-1]` after the last one, so `join` with other sentences keeps the text's spacing."""

    sentences: list[str]
    layout: list[str]

    def join(self, sentences: list[str]) -> str:
        """The text with `sentences` (one per sentence of this paragraph) in place of its own."""
        return join_sentences(self.layout, sentences)


def split_sentences(text: str) -> tuple[list[str], list[str]]:
    """The sentences of `text` and the text around them: `layout[i]` comes before sentence i and
    `layout[-1]` after the last one, so `join_sentences` gives back the text itself, whatever its
    spacing (double spaces, tabs and line breaks inside or between sentences stay where they were).
    Blank text gives ([], [""])."""
    if not text.strip():
        return [], [""]
    # The splitter changes only whitespace (it makes runs of spaces one space): the k-th visible
    # character of its sentences is the k-th of the text, wherever the text has spaces.
    visible = [match.start() for match in re.finditer(r"\S", text)]
    sentences, layout, position, seen = [], [], 0, 0
    for found in _moses_splitter().split(_SPACING.sub(" ", text)):
        count = len("".join(found.split()))
        if not count:
            continue
        start, end = visible[seen], visible[seen + count - 1] + 1
        seen += count
        sentences.append(text[start:end])
        layout.append(text[position:start])
        position = end
    return sentences, [*layout, text[position:]]


def split_paragraphs(texts: list[str], split: bool = True) -> list[Paragraph]:
    """Each text as its sentences and layout (`split_sentences`; with `split` false, the text whole)."""
    if not split:
        return [Paragraph([text], ["", ""]) for text in texts]
    return [Paragraph(*split_sentences(text)) for text in texts]


def join_sentences(layout: list[str], sentences: list[str]) -> str:
    """The inverse of `split_sentences`, with other sentences in the same places."""
    return "".join(before + sentence for before, sentence in zip(layout, sentences, strict=False)) + layout[-1]


def available_batches(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    """Batches of at most `size` items, each as soon as one item has come: a batch takes what has
    already arrived and never waits for more. A fast source (a file) still gives full batches; a
    slow one (a person typing, a pipe fed line by line) gets each line answered at once."""
    arrived: queue.Queue = queue.Queue(maxsize=4 * size)
    end = object()

    def read() -> None:
        try:
            for item in items:
                arrived.put(item)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            arrived.put(error)
        arrived.put(end)

    threading.Thread(target=read, daemon=True).start()
    while True:
        batch = [arrived.get()]
        while len(batch) < size and not arrived.empty():
            batch.append(arrived.get())
        done = batch[-1] is end
        if done:
            batch.pop()
        for index, item in enumerate(batch):
            if isinstance(item, BaseException):
                if index:
                    yield batch[:index]  # the lines read before the error are answered first
                raise item
        if batch:
            yield batch
        if done:
            return


def apply_threshold(translation: Translation, paragraph: Paragraph, min_confidence: float, withhold: bool) -> None:
    """Flag (`LOW_MARK` before it) or, with `withhold`, leave out each sentence of `translation` (of
    `paragraph`) whose confidence is below `min_confidence`: a withheld sentence's text is empty, in
    `translation.text` and in its `sentences` (its candidates keep what the search found)."""
    translation.text = paragraph.join([shown_text(sentence.text, sentence.confidence, min_confidence, withhold)
                                       for sentence in translation.sentences])
    for sentence in translation.sentences:
        if withhold and is_low(sentence.confidence, min_confidence):
            sentence.text = ""


def sentence_place(number: int, index: int, count: int) -> str:
    """Where a sentence is, for a message: line `number`, and sentence `index` of its `count` if several."""
    return f"line {number}" if count == 1 else f"line {number} (sentence {index} of {count})"


class Translator:
    """A loaded model plus decoding settings.

    Decoding settings left out (None) are read from the `evaluate` section of `params_path`, as
    `seq2seq translate` reads them (the built-in defaults where there is no such file). Input is
    normalised as in training and, with `split_sentences`, split into sentences; an empty text
    gives an empty translation; a sentence longer than the model was trained on is cut to that
    length, with a warning. A model trained with domain tags reads the tag of `domain` (default:
    its default domain) before each sentence. With `params_path` None, settings left out take the
    built-in defaults. With `sample_seed`, each output token is sampled (from a generator seeded
    with it, so the outputs are reproducible) instead of searched for: the beam size is then unused.
    With the model's calibration beside it (`seq2seq.confidence`), each sentence gets its
    confidence; `min_confidence` flags the sentences below it in the texts, or `withhold` leaves
    them out (with a warning each).
    """

    def __init__(
        self,
        model_path: str | Path = DEFAULT_MODEL,
        beam_size: int | None = None,
        length_penalty: float | None = None,
        max_output_ratio: float | None = None,
        batch_size: int | None = None,
        device: str = "cpu",
        warn: Callable[[str], None] = _warn_on_stderr,
        no_repeat_ngram_size: int | None = None,
        domain: str | None = None,
        quantize: bool = False,
        split_sentences: bool = True,
        params_path: str | Path | None = "params.yaml",
        sample_seed: int | None = None,
        min_confidence: float | None = None,
        withhold: bool = False,
    ) -> None:
        settings = decoding_settings(params_path, beam_size=beam_size, length_penalty=length_penalty,
                                     max_output_ratio=max_output_ratio, batch_size=batch_size,
                                     no_repeat_ngram_size=no_repeat_ngram_size)
        model_path = Path(model_path)
        self.device = pick_device(device)
        self.model, self.tokenizer, content = load_model(model_path, self.device)
        if quantize:
            self.model = quantize_for_cpu(self.model)
        self.max_input_tokens = content.get("max_source_length") or 200
        self.domains = Domains(**content["domains"]) if content.get("domains") else None
        if domain is not None and self.domains is None:
            raise UserError(f"{model_path} was trained without domain tags: --domain does not apply")
        self.tag_id = self.domains.tag_id(domain or self.domains.default) if self.domains else None
        self.beam_size = settings.beam_size
        self.length_penalty = settings.length_penalty
        self.max_output_ratio = settings.max_output_ratio
        self.no_repeat_ngram_size = settings.no_repeat_ngram_size
        self.batch_size = settings.batch_size
        self.split_sentences = split_sentences
        self.warn = warn
        self.sampler = None if sample_seed is None else torch.Generator().manual_seed(sample_seed)
        self.model_path = model_path
        self.calibration = Calibration.beside(model_path)
        self.min_confidence, self.withhold = min_confidence, withhold
        if min_confidence is not None:
            self.require_calibration()

    def require_calibration(self) -> Calibration:
        """The model's calibration (what gives each sentence its `confidence`); a `UserError`
        naming the file to make where the model has none."""
        if self.calibration is None:
            raise UserError(missing_calibration_message(self.model_path))
        return self.calibration

    def paragraphs(self, texts: list[str]) -> list[Paragraph]:
        """Each text as its sentences and layout (`split_paragraphs`, splitting as this translator does)."""
        return split_paragraphs(texts, self.split_sentences)

    def translate(self, texts: list[str], first_number: int = 1, tag_ids: list[int] | None = None) -> list[str]:
        """Korean translations, one per input text, in order; `tag_ids` gives each text its domain tag;
        `first_number` is the first text's line number in warnings. The sentences of all the texts
        are translated together, batched by length."""
        return [t.text for t in self.translate_paragraphs(self.paragraphs(texts), first_number=first_number,
                                                          tag_ids=tag_ids)]

    def translate_stream(self, lines: Iterable[str]) -> Iterator[str]:
        """Translate lines as they come, in order: what has arrived goes at once, so a line typed or
        piped slowly is answered before the next one comes. From a file, up to 8 batches' worth go
        together, sorted by length into batches as in evaluate (less padding than in arrival order).
        An error reading the lines is raised after the lines read before it are translated. Each
        chunk goes through `translate` (which a subclass, e.g. `seq2seq.terms.TermTranslator`, may extend)."""
        for number, chunk in self._arrived_chunks(lines):
            yield from self.translate(chunk, first_number=number)

    def translation_stream(self, lines: Iterable[str], n_best: int = 1, alignments: bool = False
                           ) -> Iterator[Translation]:
        """`translate_stream`, with each line's `Translation` (its sentences, up to `n_best` candidates
        each, with their word alignments when `alignments`)."""
        self.check_n_best(n_best)
        for number, chunk in self._arrived_chunks(lines):
            yield from self.translate_paragraphs(self.paragraphs(chunk), first_number=number, n_best=n_best,
                                                 alignments=alignments)

    def _arrived_chunks(self, lines: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
        """The lines (line ends cut) in chunks of what has arrived, each with its first line's number."""
        number = 1
        for chunk in available_batches((line.rstrip("\r\n") for line in lines), 8 * self.batch_size):
            yield number, chunk
            number += len(chunk)

    def translate_detailed(self, texts: list[str], beam_size: int | None = None, attention: bool = False,
                           domain: str | None = None, n_best: int = 1, alignments: bool = False,
                           alignment_method: Method = "target") -> list[Translation]:
        """Translations in order, with `beam_size` and `domain` instead of the translator's own when
        given; with `attention`, also the source and output pieces and each sentence's weights
        (`Translation.blocks`; `Translation.attention` puts them on the diagonal of one matrix).
        Each has its sentences' candidates (`Translation.sentences`): `n_best` of them at most; with
        `alignments`, each sentence's word alignment too (`SentenceTranslation.alignment`, by
        `alignment_method`: `seq2seq.alignment.word_alignment`)."""
        return self.translate_paragraphs(self.paragraphs(texts), beam_size, attention, domain, n_best=n_best,
                                         alignments=alignments, alignment_method=alignment_method)

    def score(self, english: list[str], korean: list[str], domain: str | None = None) -> list[PairScore]:
        """How likely the model finds each Korean sentence as the translation of its English one: a
        teacher-forced pass (`seq2seq.scoring.score_pairs`), each pair read as one sentence."""
        from seq2seq.scoring import score_pairs

        return score_pairs(self, english, korean, domain)

    def check_n_best(self, n_best: int, beam_size: int | None = None) -> None:
        """`UserError` unless an n-best list of `n_best` fits the search (beam size `beam_size`, else
        the translator's): at least 1, at most the beam size, and not with sampling."""
        beam_size = beam_size or self.beam_size
        if n_best < 1:
            raise UserError(f"n-best must be at least 1, not {n_best}")
        if n_best > 1 and self.sampler is not None:
            raise UserError("an n-best list needs a beam search: leave out sampling")
        if n_best > beam_size:
            raise UserError(f"n-best {n_best} is more than the beam size {beam_size}: a beam search keeps at most "
                            f"beam-size hypotheses; raise the beam size (--beam) or lower n-best")

    def translate_paragraphs(self, paragraphs: list[Paragraph], beam_size: int | None = None, attention: bool = False,
                             domain: str | None = None, tag_ids: list[int] | None = None, first_number: int = 1,
                             n_best: int = 1, alignments: bool = False, alignment_method: Method = "target"
                             ) -> list[Translation]:
        """One translation per paragraph (see `paragraphs`), in order; all their sentences are
        searched together. The domain tag is each paragraph's of `tag_ids`, else `domain`'s, else
        the translator's; an empty sentence translates to an empty one. Each translation has its
        sentences (`Translation.sentences`), each with up to `n_best` candidates, best first
        (`n_best` at most the beam size: `check_n_best`); with `alignments`, the best candidate's
        word alignment (`SentenceTranslation.alignment`, by `alignment_method`)."""
        self.check_n_best(n_best, beam_size)
        ids = self.source_ids(paragraphs, domain, tag_ids, first_number)
        hypotheses = self._search(ids, attention or alignments, beam_size, n_best)
        sentences = iter(zip(ids, hypotheses, self._candidates(hypotheses), strict=True))
        results = []
        for number, paragraph in enumerate(paragraphs, start=first_number):
            found = [next(sentences) for _ in paragraph.sentences]
            translated = [SentenceTranslation(sentence, options[0].text, options)
                          for sentence, (_, _, options) in zip(paragraph.sentences, found, strict=True)]
            for sentence, (source, hypothesis, _) in zip(translated, found, strict=True):
                if hypothesis and self.calibration is not None:
                    sentence.confidence = self.calibration.confidence(hypothesis.score, len(hypothesis.tokens))
                if alignments:
                    sentence.alignment = (word_alignment(*self._pieces(source, hypothesis), alignment_method)
                                          if hypothesis else [])
            text = paragraph.join([sentence.text for sentence in translated])
            drawn = [(source, hypothesis) for source, hypothesis, _ in found if hypothesis] if attention else []
            translation = self._with_attention(text, drawn) if drawn else Translation(text)
            translation.sentences = translated
            if self.min_confidence is not None:
                self._note_withheld(number, translated)
                apply_threshold(translation, paragraph, self.min_confidence, self.withhold)
            results.append(translation)
        return results

    def _note_withheld(self, number: int, sentences: list[SentenceTranslation]) -> None:
        """Warn of each sentence of text `number` withheld for its low confidence."""
        for index, sentence in enumerate(sentences, start=1):
            if self.withhold and is_low(sentence.confidence, self.min_confidence):
                self.warn(f"{sentence_place(number, index, len(sentences))} withheld: confidence "
                          f"{sentence.confidence:.1f} is below {self.min_confidence:g}")

    def _candidates(self, hypotheses: list[Hypothesis | None]) -> list[list[Candidate]]:
        """Each sentence's candidates (its hypothesis and their alternatives, decoded together);
        a sentence without a hypothesis (empty) has the empty one."""
        n_best = [hypothesis.n_best() if hypothesis else [] for hypothesis in hypotheses]
        texts = iter(self.tokenizer.decode_target([option.tokens for options in n_best for option in options]))
        return [[Candidate(next(texts), option.normalized_score(self.length_penalty), option.score)
                 for option in options] or [Candidate("", 0.0, 0.0)] for options in n_best]

    def source_ids(self, paragraphs: list[Paragraph], domain: str | None = None, tag_ids: list[int] | None = None,
                   first_number: int = 1) -> list[list[int]]:
        """What the model reads for every sentence of `paragraphs`: its ids (`_source_ids`) after its
        domain tag, each paragraph's of `tag_ids`, else `domain`'s, else the translator's (a model
        without tags: none). An empty sentence stays empty."""
        if domain is not None and self.domains is None:
            raise UserError("this model was trained without domain tags: 'domain' does not apply")
        ids = self._source_ids(paragraphs, first_number)
        if self.domains is None:
            return ids
        tag_ids = tag_ids or [self.domains.tag_id(domain) if domain else self.tag_id] * len(paragraphs)
        sentence_tags = [tag for tag, paragraph in zip(tag_ids, paragraphs, strict=True) for _ in paragraph.sentences]
        return [[tag, *sequence] if sequence else [] for tag, sequence in zip(sentence_tags, ids, strict=True)]

    def _source_ids(self, paragraphs: list[Paragraph], first_number: int) -> list[list[int]]:
        """The source ids of every sentence of `paragraphs`, cut to the length the model was trained
        on, with a warning naming the text (numbered from `first_number`) and the sentence in it."""
        ids = self.tokenizer.encode_source([normalize(s) for paragraph in paragraphs for s in paragraph.sentences])
        places = ((number, index, len(paragraph.sentences))
                  for number, paragraph in enumerate(paragraphs, start=first_number)
                  for index in range(1, len(paragraph.sentences) + 1))
        for sequence, (number, index, count) in zip(ids, places, strict=True):
            if len(sequence) > self.max_input_tokens:
                self.warn(f"{sentence_place(number, index, count)} has {len(sequence)} tokens; "
                          f"translating its first {self.max_input_tokens}")
                del sequence[self.max_input_tokens :]
        return ids

    def _search(self, ids: list[list[int]], attention: bool = False, beam_size: int | None = None, n_best: int = 1
                ) -> list[Hypothesis | None]:
        """Best hypothesis per id sequence (None for an empty one), the next `n_best` - 1 in its alternatives."""
        present = [i for i, sequence in enumerate(ids) if sequence]
        results: list[Hypothesis | None] = [None] * len(ids)
        found = translate_ids(self.model, [ids[i] for i in present], self.batch_size, beam_size or self.beam_size,
                              self.length_penalty, self.max_output_ratio, self.device,
                              no_repeat_ngram_size=self.no_repeat_ngram_size, attention=attention,
                              never_emitted=self.tokenizer.never_emitted(), sample_with=self.sampler, n_best=n_best)
        for index, hypothesis in zip(present, found, strict=True):
            results[index] = hypothesis
        return results

    def _with_attention(self, text: str, drawn: list[tuple[list[int], Hypothesis]]) -> Translation:
        """`text` with the pieces and weights of its sentences' (source ids, hypothesis) pairs."""
        source_pieces, output_pieces, blocks = [], [], []
        for source_ids, hypothesis in drawn:
            sources, outputs, weights = self._pieces(source_ids, hypothesis)
            source_pieces += sources
            output_pieces += outputs
            blocks.append(weights)
        return Translation(text, source_pieces, output_pieces, blocks)

    def _pieces(self, source_ids: list[int], hypothesis: Hypothesis) -> tuple[list[str], list[str], torch.Tensor]:
        """A sentence's source pieces, output pieces (EOS last) and (output, source) attention weights."""
        pieces = [self.tokenizer.target.id_to_piece(i) for i in hypothesis.tokens] + ["</s>"]
        weights = hypothesis.attention[: len(pieces)]
        return [self._source_piece(i) for i in source_ids], pieces[: weights.size(0)], weights

    def _source_piece(self, piece_id: int) -> str:
        """How a source id is shown: its SentencePiece piece, or a domain tag such as `<general>`."""
        if self.domains is not None and piece_id >= self.domains.first_tag_id:
            return self.domains.piece(piece_id)
        return self.tokenizer.source.id_to_piece(piece_id)

    def attention(self, sentence: str) -> tuple[list[str], list[str], torch.Tensor]:
        """Source pieces, output pieces (EOS last) and the (output, source) attention weights."""
        (result,) = self.translate_detailed([sentence], attention=True)
        if result.attention is None:
            raise UserError("the sentence is empty after normalisation: no attention to draw")
        return result.source_pieces, result.output_pieces, result.attention


def plot_attention(source_pieces: list[str], target_pieces: list[str], weights: torch.Tensor, path: Path) -> None:
    """Draw the attention weights as a heatmap PNG: source pieces across, output pieces down."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seq2seq.files import atomic_path
    from seq2seq.fonts import use_korean_font

    use_korean_font()
    size = (max(4, 0.45 * len(source_pieces) + 2), max(3, 0.4 * len(target_pieces) + 2))
    figure, axes = plt.subplots(figsize=size)
    axes.imshow(weights.numpy(), cmap="viridis", aspect="auto", vmin=0.0, vmax=1.0)
    axes.set_xticks(range(len(source_pieces)), source_pieces, rotation=90)
    axes.set_yticks(range(len(target_pieces)), target_pieces)
    axes.set_xlabel("source (English pieces)")
    axes.set_ylabel("output (Korean pieces)")
    with atomic_path(path) as temp:
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
