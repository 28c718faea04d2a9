"""A per-sentence confidence: the expected sentence chrF of a translation, learnt on the valid split.

The model's own score ranks sentences only loosely, and its scale (a log-probability) says nothing
a reader can use. So one feature of each translated sentence, the beam search's ranking score
(log-probability with the GNMT length penalty), is mapped to the sentence chrF that translations
with that score reached on the valid split, by isotonic regression (pool adjacent violators): the
mapping only rises, so it keeps the feature's order and gives it a scale, chrF 0-100.

The feature was picked by its Spearman correlation with sentence chrF on the valid split, among
the cheap ones the search has (docs/confidence.md): the length-normalised score beat the mean
log-probability per token, the margin to the second best hypothesis, the output/input length
ratio, attention coverage and entropy.

The mapping is a small JSON file beside the model (`best.pt` -> `best.confidence.json`), made by
`seq2seq calibrate` (the `calibrate` stage) and read by the `Translator` when it is there.
"""

from __future__ import annotations

import bisect
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from seq2seq.errors import UserError
from seq2seq.files import write_json
from seq2seq.search import length_normalized

FEATURE = "length_normalized_log_prob"
LOW_MARK = "[?] "  # before a sentence whose confidence is below the threshold (when not withheld)
MIN_BLOCK = 20  # sentences per step of the mapping at least: a single sentence never sets its end


def calibration_path(model_path: str | Path) -> Path:
    """Where the calibration of the model at `model_path` lives: beside it, `NAME.confidence.json`."""
    model_path = Path(model_path)
    return model_path.with_name(f"{model_path.stem}.confidence.json")


def missing_calibration_message(model_path: str | Path) -> str:
    """The one line that says a model has no calibration, and how to make it."""
    return (f"{calibration_path(model_path)} not found: confidence needs a calibration of the model; "
            f"make it with `seq2seq calibrate --model {model_path}`")


def ranks(values: Sequence[float]) -> list[float]:
    """The rank of each value (0 for the smallest); tied values share their average rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            result[order[position]] = (start + end) / 2
        start = end + 1
    return result


def spearman(first: Sequence[float], second: Sequence[float]) -> float:
    """Spearman's rank correlation (the Pearson correlation of the average ranks); 0 where either
    side is constant."""
    if len(first) != len(second):
        raise ValueError(f"{len(first)} values against {len(second)}")
    first_ranks, second_ranks = ranks(first), ranks(second)
    first_mean, second_mean = statistics.fmean(first_ranks), statistics.fmean(second_ranks)
    covariance = sum((a - first_mean) * (b - second_mean) for a, b in zip(first_ranks, second_ranks, strict=True))
    spread = math.sqrt(sum((a - first_mean) ** 2 for a in first_ranks) * sum((b - second_mean) ** 2
                                                                             for b in second_ranks))
    return covariance / spread if spread else 0.0


def isotonic_knots(features: Sequence[float], targets: Sequence[float], min_block: int = MIN_BLOCK
                   ) -> list[tuple[float, float]]:
    """The least-squares non-decreasing fit of `targets` on `features` (pool adjacent violators), as
    (mean feature, mean target) of each block of sentences, in rising order; blocks of fewer than
    `min_block` sentences are pooled with the next (the last with the one before), which keeps the
    fit non-decreasing and stops a lone sentence from setting either end; so are blocks of one
    same feature value, so that the knots' features strictly rise."""
    if not features or len(features) != len(targets):
        raise ValueError(f"need as many targets as features, and some: {len(features)}, {len(targets)}")
    blocks: list[list[float]] = []  # [feature sum, target sum, count]
    for index in sorted(range(len(features)), key=features.__getitem__):
        blocks.append([features[index], targets[index], 1])
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][2] >= blocks[-1][1] / blocks[-1][2]:
            last = blocks.pop()
            blocks[-1] = [a + b for a, b in zip(blocks[-1], last, strict=True)]
    pooled: list[list[float]] = []
    for block in blocks:
        if pooled and (pooled[-1][2] < min_block or pooled[-1][0] / pooled[-1][2] == block[0] / block[2]):
            pooled[-1] = [a + b for a, b in zip(pooled[-1], block, strict=True)]
        else:
            pooled.append(block)
    if len(pooled) > 1 and pooled[-1][2] < min_block:
        last = pooled.pop()
        pooled[-1] = [a + b for a, b in zip(pooled[-1], last, strict=True)]
    return [(feature / count, target / count) for feature, target, count in pooled]


@dataclass(frozen=True)
class Calibration:
    """The mapping from a sentence's search score to its expected chrF.

    `knots` are (feature, expected chrF) points, rising in both; between two the confidence is
    interpolated linearly, beyond the ends it is the end's. The feature is the log-probability with
    the GNMT length penalty of `length_penalty` (the one the calibration decoded with), whatever
    penalty a later search uses."""

    knots: list[tuple[float, float]]
    length_penalty: float
    sentences: int  # valid sentences it was fitted on
    beam_size: int

    def feature(self, log_prob: float, length: int) -> float:
        """The feature of an output of `length` pieces (EOS not counted) and summed `log_prob`."""
        return length_normalized(log_prob, length, self.length_penalty)

    def expected_chrf(self, feature: float) -> float:
        """The expected sentence chrF (0-100) of an output with this feature."""
        positions = [x for x, _ in self.knots]
        right = bisect.bisect_right(positions, feature)
        if right == 0:
            return self.knots[0][1]
        if right == len(self.knots):
            return self.knots[-1][1]
        (x0, y0), (x1, y1) = self.knots[right - 1], self.knots[right]
        return y0 + (y1 - y0) * (feature - x0) / (x1 - x0)

    def confidence(self, log_prob: float, length: int) -> float:
        """The confidence of an output: its expected sentence chrF, rounded to 0.1."""
        return round(self.expected_chrf(self.feature(log_prob, length)), 1)

    def save(self, path: str | Path) -> None:
        write_json(path, {"feature": FEATURE, "target": "sentence chrF (sacrebleu), 0-100",
                          "length_penalty": self.length_penalty, "sentences": self.sentences,
                          "beam_size": self.beam_size, "knots": [list(knot) for knot in self.knots]})

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Read a calibration file; a one-line `UserError` naming it when it is not one."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            if data["feature"] != FEATURE:
                raise ValueError(f"feature {data['feature']!r}, not {FEATURE!r}")
            knots = [(float(x), float(y)) for x, y in data["knots"]]
            if not knots or any(a[0] >= b[0] or a[1] > b[1] for a, b in zip(knots, knots[1:], strict=False)):
                raise ValueError("its knots must be non-empty and rising")
            return cls(knots, float(data["length_penalty"]), int(data["sentences"]), int(data["beam_size"]))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UserError(f"{path} is not a calibration file ({error}): remake it with `seq2seq calibrate`"
                            ) from None

    @classmethod
    def beside(cls, model_path: str | Path) -> Calibration | None:
        """The calibration of the model at `model_path`, or None where it has none."""
        path = calibration_path(model_path)
        return cls.load(path) if path.exists() else None


def fit_calibration(features: Sequence[float], chrfs: Sequence[float], length_penalty: float, beam_size: int,
                    min_block: int = MIN_BLOCK) -> Calibration:
    """The calibration of sentences with these features (their search scores) and sentence chrFs."""
    return Calibration(isotonic_knots(features, chrfs, min_block), length_penalty, len(features), beam_size)


def is_low(confidence: float | None, min_confidence: float | None) -> bool:
    """Whether a sentence falls below the threshold (never, without a threshold or a confidence)."""
    return min_confidence is not None and confidence is not None and confidence < min_confidence


def shown_text(text: str, confidence: float | None, min_confidence: float | None, withhold: bool) -> str:
    """A sentence's translation as shown under a threshold: as it is, or, below `min_confidence`,
    withheld ("") or flagged with `LOW_MARK`."""
    if not is_low(confidence, min_confidence):
        return text
    return "" if withhold else LOW_MARK + text
