"""Stage `calibrate`: fit the per-sentence confidence of a model on the valid split, and say how
well it ranks the test split's sentences.

Decodes valid sentences (1,000, spread over the split) as evaluate decodes (its beam, penalty and n-gram blocking;
each line one sentence), scores each output with sacrebleu's sentence chrF and fits the isotonic
mapping from the search's score to it (`seq2seq.confidence`), written beside the model. Then the
test split is decoded with the calibration in hand: its metrics are the Spearman correlation of
the confidence (and of the raw score) with sentence chrF, and what a threshold at valid's lower
quartile and median of the confidence would withhold.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import sacrebleu

from seq2seq.confidence import Calibration, fit_calibration, spearman
from seq2seq.config import EvaluateConfig
from seq2seq.errors import UserError
from seq2seq.files import write_json
from seq2seq.translate import SentenceTranslation, Translator


def read_pairs(prepared_dir: Path, split: str, count: int | None) -> tuple[list[str], list[str]]:
    """`count` English sentences of a split (all with None), spread evenly over it (the test split is
    grouped by source), and their references."""
    paths = [prepared_dir / f"{split}.{language}" for language in ("en", "ko")]
    for path in paths:
        if not path.exists():
            raise UserError(f"{path} not found: run the prepare stage first (`dvc repro prepare`)")
    sources, references = (path.read_text(encoding="utf-8").splitlines() for path in paths)
    if len(sources) != len(references):
        raise UserError(f"{paths[0]} and {paths[1]} have {len(sources)} and {len(references)} lines; "
                        "rerun the prepare stage")
    if count is not None and count < len(sources):
        chosen = [index * len(sources) // count for index in range(count)]
        sources, references = [sources[i] for i in chosen], [references[i] for i in chosen]
    if not sources:
        raise UserError(f"{paths[0]} is empty: no sentences to calibrate on")
    return sources, references


def translate_sentences(translator: Translator, sources: list[str]) -> list[SentenceTranslation]:
    """Each source line translated whole (the translator must not split sentences)."""
    return [translation.sentences[0] for translation in translator.translate_detailed(sources)]


def sentence_chrfs(sentences: list[SentenceTranslation], references: list[str]) -> list[float]:
    return [sacrebleu.sentence_chrf(s.text, [reference]).score for s, reference in zip(sentences, references,
                                                                                      strict=True)]


def ranking(scores: list[float], confidences: list[float], chrfs: list[float]) -> dict[str, float]:
    """How the raw score and the confidence rank sentences by sentence chrF, and their means."""
    return {"sentences": len(chrfs), "spearman_score": round(spearman(scores, chrfs), 4),
            "spearman_confidence": round(spearman(confidences, chrfs), 4),
            "mean_chrf": round(statistics.fmean(chrfs), 2), "mean_confidence": round(statistics.fmean(confidences), 2)}


def withholding(confidences: list[float], chrfs: list[float], min_confidence: float) -> dict[str, float | None]:
    """What a threshold of `min_confidence` does: the share of sentences it withholds, and the mean
    sentence chrF of those kept and of those withheld (None where there are none)."""
    kept = [chrf for chrf, confidence in zip(chrfs, confidences, strict=True) if confidence >= min_confidence]
    withheld = [chrf for chrf, confidence in zip(chrfs, confidences, strict=True) if confidence < min_confidence]
    return {"min_confidence": round(min_confidence, 1), "withheld": round(len(withheld) / len(chrfs), 4),
            "kept_chrf": round(statistics.fmean(kept), 2) if kept else None,
            "withheld_chrf": round(statistics.fmean(withheld), 2) if withheld else None}


def calibrate(model_path: Path, prepared_dir: Path, out_path: Path, metrics_path: Path, config: EvaluateConfig,
              valid_sentences: int = 1000, test_sentences: int | None = None, device: str = "cpu") -> dict:
    """Fit the calibration of `model_path` on `valid_sentences` valid sentences and write
    it to `out_path` (the translator reads it at `calibration_path`), then measure it on
    `test_sentences` of the test split (all with None, none with 0); returns the metrics it writes
    to `metrics_path`."""
    if not model_path.exists():
        raise UserError(f"{model_path} not found: train a model first (`dvc repro train`)")
    sources, references = read_pairs(prepared_dir, "valid", valid_sentences)
    translator = Translator(model_path, config.beam_size, config.length_penalty, config.max_output_ratio,
                            config.batch_size, device, no_repeat_ngram_size=config.no_repeat_ngram_size,
                            split_sentences=False, params_path=None)
    started = time.perf_counter()
    sentences = translate_sentences(translator, sources)
    scores = [sentence.candidates[0].score for sentence in sentences]  # the search's own length penalty
    chrfs = sentence_chrfs(sentences, references)
    calibration = fit_calibration(scores, chrfs, config.length_penalty, config.beam_size)
    calibration.save(out_path)
    confidences = [round(calibration.expected_chrf(score), 1) for score in scores]  # as reported
    metrics: dict = {"valid": ranking(scores, confidences, chrfs), "knots": len(calibration.knots),
                     "beam_size": config.beam_size}
    if test_sentences != 0:
        metrics["test"] = measure(translator, calibration, prepared_dir, test_sentences, confidences)
    metrics["minutes"] = round((time.perf_counter() - started) / 60, 2)
    write_json(metrics_path, metrics)
    return metrics


def measure(translator: Translator, calibration: Calibration, prepared_dir: Path, count: int | None,
            valid_confidences: list[float]) -> dict:
    """The test split's ranking figures, and what thresholds at valid's lower quartile and median of
    the confidence withhold there."""
    sources, references = read_pairs(prepared_dir, "test", count)
    translator.calibration = calibration
    sentences = translate_sentences(translator, sources)
    chrfs = sentence_chrfs(sentences, references)
    confidences = [sentence.confidence for sentence in sentences]
    quartile, median, _ = statistics.quantiles(valid_confidences, n=4)
    return {**ranking([s.candidates[0].score for s in sentences], confidences, chrfs),
            "thresholds": [withholding(confidences, chrfs, threshold) for threshold in (quartile, median)]}
