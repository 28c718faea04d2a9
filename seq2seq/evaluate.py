"""Stage 5, `evaluate`: translate the test split and score it with sacrebleu.

Scores: chrF, BLEU with sacrebleu's default tokenizer (13a) and BLEU with `ko-mecab` (morpheme
tokenisation, the usual choice for Korean), overall and per source, each with its signature.
Writes the metrics JSON, the hypotheses (one per test line) and a Markdown table of samples.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path

import sacrebleu
from tqdm import tqdm

from seq2seq.config import EvaluateConfig
from seq2seq.errors import UserError
from seq2seq.files import write_json, write_text
from seq2seq.tokenizer import batched
from seq2seq.translate import Translator


def score(hypotheses: list[str], references: list[str]) -> tuple[dict[str, float], dict[str, str]]:
    """Corpus chrF, BLEU (13a) and BLEU (ko-mecab), rounded to 2 decimals, and their signatures."""
    metrics = {"chrf": sacrebleu.CHRF(), "bleu": sacrebleu.BLEU(), "bleu_ko_mecab": sacrebleu.BLEU(tokenize="ko-mecab")}
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
    hypotheses_path: Path,
    samples_path: Path,
    config: EvaluateConfig,
    device: str = "cpu",
) -> dict:
    """Run the stage; returns the metrics it writes."""
    sources, references, tags = (_read_lines(prepared_dir / f"test.{kind}") for kind in ("en", "ko", "source"))
    if not len(sources) == len(references) == len(tags):
        raise UserError(f"{prepared_dir}/test.{{en,ko,source}} have {len(sources)}, {len(references)} and "
                        f"{len(tags)} lines; rerun the prepare stage")
    translator = Translator(model_path, config.beam_size, config.length_penalty, config.max_output_ratio,
                            config.batch_size, device)
    started = time.perf_counter()
    hypotheses: list[str] = []
    # Chunks of several batches keep length-sorting effective and the progress bar moving.
    with tqdm(total=len(sources), unit="sent", desc="evaluate", dynamic_ncols=True,
              mininterval=1 if sys.stderr.isatty() else 30) as bar:
        for chunk in batched(sources, config.batch_size * 8):
            hypotheses.extend(translator.translate(chunk, first_number=len(hypotheses) + 1))
            bar.update(len(chunk))
    seconds = time.perf_counter() - started

    by_source: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for hypothesis, reference, tag in zip(hypotheses, references, tags, strict=True):
        by_source[tag][0].append(hypothesis)
        by_source[tag][1].append(reference)
    overall, signatures = score(hypotheses, references)
    metrics = {
        "test": overall,
        "per_source": {tag: score(*pair)[0] for tag, pair in sorted(by_source.items())},
        "signatures": signatures,
        "sentences": len(sources),
        "sentences_per_second": round(len(sources) / seconds, 2),
        "beam_size": config.beam_size,
    }
    write_text(hypotheses_path, "".join(h + "\n" for h in hypotheses))
    write_text(samples_path, samples_table(sources, references, hypotheses, tags, config.samples))
    write_json(metrics_path, metrics)
    return metrics


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
