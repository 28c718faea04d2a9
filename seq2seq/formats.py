"""How translations are written out with their details: JSON objects (`seq2seq translate --json`,
one per input line, and the HTTP API's translations) and tab-separated rows (`--scores`, `--n-best`).

`Shown` says what is asked for beyond the text; `sentence_json` and `details_json` are the one
place each JSON object is built, so a new detail is a field of `Shown` plus its lines there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from seq2seq.alignment import pharaoh
from seq2seq.confidence import is_low
from seq2seq.translate import Candidate, SentenceTranslation, Translation

DIGITS = 6  # of the scores in JSON; TSV rows show 4


@dataclass(frozen=True)
class Shown:
    """What a translation shows beyond its text: `scores` (each candidate's length-normalised
    log-probability `score` and plain `log_prob`), an n-best list of `n_best` candidates, the best
    candidate's word `alignments` (`seq2seq.alignment`), and each sentence's `confidence` (expected
    chrF, `seq2seq.confidence`), flagged below `min_confidence`."""

    scores: bool = False
    n_best: int = 1
    alignments: bool = False
    confidence: bool = False
    min_confidence: float | None = None

    @property
    def anything(self) -> bool:
        """Whether anything beyond the text is asked for."""
        return self.scores or self.n_best > 1 or self.alignments or self.confidence


TEXT_ONLY = Shown()


def line_scores(sentences: list[SentenceTranslation]) -> tuple[float, float]:
    """A text's (score, log_prob): the mean of its sentences' best scores (a text of one sentence
    has that sentence's) and the sum of their log-probabilities (the log-probability of the joined
    translation, as the sentences are translated independently). (0, 0) for a blank text."""
    if not sentences:
        return 0.0, 0.0
    best = [sentence.candidates[0] for sentence in sentences]
    return sum(c.score for c in best) / len(best), sum(c.log_prob for c in best)


def _scores_json(score: float, log_prob: float) -> dict[str, float]:
    return {"score": round(score, DIGITS), "log_prob": round(log_prob, DIGITS)}


def candidate_json(candidate: Candidate, shown: Shown) -> dict[str, Any]:
    """One candidate: its text, and with `shown.scores` its score and log_prob."""
    result: dict[str, Any] = {"text": candidate.text}
    if shown.scores:
        result |= _scores_json(candidate.score, candidate.log_prob)
    return result


def sentence_json(sentence: SentenceTranslation, shown: Shown) -> dict[str, Any]:
    """One sentence: its source and best text; with `shown.scores` the best one's score and
    log_prob; with an n-best list asked for, its `candidates`, best first; with `shown.confidence`
    its confidence (null for an empty sentence) and, under a threshold, whether it is below."""
    result: dict[str, Any] = {"source": sentence.source, "text": sentence.text}
    if shown.scores:
        best = sentence.candidates[0]
        result |= _scores_json(best.score, best.log_prob)
    if shown.confidence:
        result["confidence"] = sentence.confidence
        if shown.min_confidence is not None:
            result["low_confidence"] = is_low(sentence.confidence, shown.min_confidence)
    if shown.n_best > 1:
        result["candidates"] = [candidate_json(candidate, shown) for candidate in sentence.candidates]
    if shown.alignments:
        result["alignment"] = _pairs_json(sentence.alignment)
    return result


def _pairs_json(pairs: list[tuple[int, int]] | None) -> list[list[int]]:
    return [list(pair) for pair in pairs or []]


def line_confidence(sentences: list[SentenceTranslation]) -> float | None:
    """A text's confidence: its least confident sentence's (None for a blank text, or uncalibrated)."""
    return min((sentence.confidence for sentence in sentences if sentence.confidence is not None), default=None)


def details_json(translation: Translation, shown: Shown) -> dict[str, Any]:
    """What a text's JSON object holds beside its "text": with `shown.scores`, the text's score and
    log_prob (`line_scores`); with `shown.confidence` its confidence (`line_confidence`); and its
    `sentences` (`sentence_json`), where n-best lists are."""
    result: dict[str, Any] = {}
    if shown.scores:
        result |= _scores_json(*line_scores(translation.sentences))
    if shown.alignments:
        result["alignment"] = _pairs_json(translation.alignment)  # word pairs counted over the whole text
    if shown.confidence:
        result["confidence"] = line_confidence(translation.sentences)
    result["sentences"] = [sentence_json(sentence, shown) for sentence in translation.sentences]
    return result


def json_line(translation: Translation, shown: Shown) -> dict[str, Any]:
    """The JSON Lines object of one input line: {"text", ["score", "log_prob"], "sentences"}."""
    return {"text": translation.text, **details_json(translation, shown)}


def tsv_rows(translation: Translation, shown: Shown, line: int) -> list[str]:
    """The tab-separated rows of input line number `line`, the text always last (split a row at
    its first tabs only: the text keeps any tab of the input between its sentences).

    No n-best list: one row, `[score<TAB>][alignment<TAB>]text`: with `shown.scores` the text's
    score (`line_scores`), with `shown.alignments` its word pairs (`i-j i-j`, counted over the whole
    text; empty for a blank line). With one: a row per candidate of each sentence, best first,
    `line<TAB>sentence<TAB>rank<TAB>[score<TAB>]text`; a blank line has no sentences, so no row.
    With `shown.confidence`, the confidence comes just before the text: the text's
    (`line_confidence`, empty for a blank line) or, in n-best rows, the sentence's.
    """
    if shown.n_best == 1:
        fields = [f"{line_scores(translation.sentences)[0]:.4f}"] if shown.scores else []
        if shown.alignments:
            fields.append(pharaoh(translation.alignment or []))
        confidence = _confidence_field(line_confidence(translation.sentences), shown)
        return ["".join(field + "\t" for field in fields) + confidence + translation.text]
    return [f"{line}\t{number}\t{rank}\t" + (f"{candidate.score:.4f}\t" if shown.scores else "")
            + _confidence_field(sentence.confidence, shown) + candidate.text
            for number, sentence in enumerate(translation.sentences, start=1)
            for rank, candidate in enumerate(sentence.candidates, start=1)]


def _confidence_field(confidence: float | None, shown: Shown) -> str:
    """The confidence column of a TSV row (with its tab), when asked for."""
    if not shown.confidence:
        return ""
    return ("" if confidence is None else f"{confidence:.1f}") + "\t"


def output_lines(translations: Iterable[Translation], shown: Shown, as_json: bool) -> Iterator[str]:
    """The lines `seq2seq translate` prints for `translations` (of input lines 1, 2, ...): a JSON
    object each with `as_json`, else their tab-separated rows (`tsv_rows`)."""
    for line, translation in enumerate(translations, start=1):
        if as_json:
            yield json.dumps(json_line(translation, shown), ensure_ascii=False)
        else:
            yield from tsv_rows(translation, shown, line)
