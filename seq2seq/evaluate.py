"""Stage 5, `evaluate`: translate the test split and score it with sacrebleu.

Scores: chrF, BLEU with sacrebleu's default tokenizer (13a) and BLEU with `ko-mecab` (morpheme
tokenisation, the usual choice for Korean), overall and per source, each with its signature.
Writes the headline (test chrF and BLEU, and the valid chrF, steps and minutes of the training
run that made the model: what `dvc metrics show` prints), the details (every score per source,
signatures, speed), the hypotheses (one per test line) and a Markdown table of samples.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import sacrebleu
from tqdm import tqdm

from seq2seq.config import EvaluateConfig
from seq2seq.domains import SentenceSources
from seq2seq.errors import UserError
from seq2seq.files import write_json, write_text
from seq2seq.translate import Translator

METRICS = {"chrf": sacrebleu.CHRF, "bleu": sacrebleu.BLEU, "bleu_ko_mecab": lambda: sacrebleu.BLEU(tokenize="ko-mecab")}


def score(hypotheses: list[str], references: list[str], names: tuple[str, ...] = tuple(METRICS)
          ) -> tuple[dict[str, float], dict[str, str]]:
    """Corpus chrF, BLEU (13a) and BLEU (ko-mecab) (or those of `names`), rounded to 2 decimals, and
    their signatures."""
    metrics = {name: METRICS[name]() for name in names}
    scores = {name: round(metric.corpus_score(hypotheses, [references]).score, 2) for name, metric in metrics.items()}
    return scores, {name: str(metric.get_signature()) for name, metric in metrics.items()}


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        raise UserError(f"{path} not found: run the prepare stage first (`dvc repro prepare`)")
    return path.read_text(encoding="utf-8").splitlines()


def evaluate(
    model_path: Path,
    prepared_dir: Path,
    metrics_path: Path,
    details_path: Path,
    hypotheses_path: Path,
    samples_path: Path,
    config: EvaluateConfig,
    device: str = "cpu",
    train_summary: Path | None = None,
) -> dict:
    """Run the stage; returns the details it writes (the headline is `headline` of them and of
    `train_summary`, the training run's dvclive/metrics.json)."""
    sources, references, tags = (_read_lines(prepared_dir / f"test.{kind}") for kind in ("en", "ko", "source"))
    if not len(sources) == len(references) == len(tags):
        raise UserError(f"{prepared_dir}/test.{{en,ko,source}} have {len(sources)}, {len(references)} and "
                        f"{len(tags)} lines; rerun the prepare stage")
    # Each test line is scored against its reference line as a whole, as in validation: no splitting.
    translator = Translator(model_path, config.beam_size, config.length_penalty, config.max_output_ratio,
                            config.batch_size, device, no_repeat_ngram_size=config.no_repeat_ngram_size,
                            split_sentences=False)
    started = time.perf_counter()
    hypotheses = translate_all(translator, sources, config.batch_size, "evaluate")
    seconds = time.perf_counter() - started
    overall, signatures = score(hypotheses, references)
    per_source = score_per_source(hypotheses, references, tags)
    if translator.domains:  # a second pass, each sentence with its own source's domain tag
        own_tags = translator.domains.tag_ids(SentenceSources.of(tags)).tolist()
        own_hypotheses = translate_all(translator, sources, config.batch_size, "evaluate (own tags)", own_tags)
        overall["chrf_own_tag"] = score(own_hypotheses, references, ("chrf",))[0]["chrf"]
        for tag, scores in score_per_source(own_hypotheses, references, tags, ("chrf",)).items():
            per_source[tag]["chrf_own_tag"] = scores["chrf"]
    metrics = {
        "test": overall,
        "per_source": per_source,
        "signatures": signatures,
        "sentences": len(sources),
        "sentences_per_second": round(len(sources) / seconds, 2),
        "beam_size": config.beam_size,
    }
    write_text(hypotheses_path, "".join(h + "\n" for h in hypotheses))
    write_text(samples_path, samples_table(sources, references, hypotheses, tags, config.samples))
    write_json(details_path, metrics)
    training = json.loads(train_summary.read_text(encoding="utf-8")) if train_summary and train_summary.exists() else {}
    write_json(metrics_path, headline(metrics, training))
    return metrics


def headline(metrics: dict, training: dict) -> dict:
    """The few figures that fit a terminal's width in `dvc metrics show`: test chrF and BLEU (and chrF
    with each sentence's own domain tag), and from the training summary (dvclive/metrics.json, when
    there is one) the best valid chrF, the steps and the minutes."""
    test = {name: metrics["test"][name] for name in ("chrf", "bleu", "chrf_own_tag") if name in metrics["test"]}
    summary = {"valid_chrf": training.get("best_valid_chrf"), "steps": training.get("step"),
               "train_minutes": training.get("minutes")}
    return {"test": test, **{name: round(value, 2) for name, value in summary.items() if value is not None}}


def translate_all(translator: Translator, sources: list[str], batch_size: int, description: str,
                  tag_ids: list[int] | None = None) -> list[str]:
    """Translate every sentence with a progress bar; `tag_ids` gives each its domain tag."""
    hypotheses: list[str] = []
    # Chunks of several batches keep length-sorting effective and the progress bar moving.
    with tqdm(total=len(sources), unit="sent", desc=description, dynamic_ncols=True,
              mininterval=1 if sys.stderr.isatty() else 30) as bar:
        for start in range(0, len(sources), batch_size * 8):
            chunk = sources[start : start + batch_size * 8]
            chunk_tags = tag_ids[start : start + len(chunk)] if tag_ids else None
            hypotheses.extend(translator.translate(chunk, first_number=start + 1, tag_ids=chunk_tags))
            bar.update(len(chunk))
    return hypotheses


def score_per_source(hypotheses: list[str], references: list[str], sources: list[str],
                     names: tuple[str, ...] = tuple(METRICS)) -> dict[str, dict]:
    """`score` (of the metrics in `names`) of each source's sentences, by source name."""
    by_source: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for hypothesis, reference, source in zip(hypotheses, references, sources, strict=True):
        by_source[source][0].append(hypothesis)
        by_source[source][1].append(reference)
    return {source: score(*pair, names)[0] for source, pair in sorted(by_source.items())}


def samples_table(sources: list[str], references: list[str], hypotheses: list[str], tags: list[str],
                  count: int) -> str:
    """A Markdown table of `count` test lines spread evenly over the split."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    step = max(1, len(sources) // max(count, 1))
    rows = ["| source | English | reference | output |", "|---|---|---|---|"]
    for i in list(range(0, len(sources), step))[:count]:
        rows.append(f"| {tags[i]} | {cell(sources[i])} | {cell(references[i])} | {cell(hypotheses[i])} |")
    return "\n".join(rows) + "\n"
