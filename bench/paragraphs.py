"""Paragraphs in: chrF of translating 3-sentence paragraphs with and without sentence splitting.

Paragraphs are 3 consecutive FLORES-200 dev lines (data/prepared/valid.en), joined by a space, and
so are their references. Run from the repository root after `dvc repro`:

    .venv/bin/python bench/paragraphs.py [--model models/model/best.pt] [--limit 999]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import sacrebleu

from seq2seq import Translator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/model/best.pt"))
    parser.add_argument("--limit", type=int, default=999, help="FLORES lines to use (a multiple of 3)")
    args = parser.parse_args()
    english, korean = (Path(f"data/prepared/valid.{lang}").read_text(encoding="utf-8").splitlines()[: args.limit]
                       for lang in ("en", "ko"))
    count = len(english) // 3 * 3
    paragraphs = [" ".join(english[i : i + 3]) for i in range(0, count, 3)]
    references = [" ".join(korean[i : i + 3]) for i in range(0, count, 3)]
    print(f"{len(paragraphs)} paragraphs of 3 FLORES-200 dev lines, model {args.model}")
    print("| input | splitting | chrF | BLEU | seconds |")
    print("|---|---|---:|---:|---:|")
    for split in (False, True):
        translator = Translator(args.model, split_sentences=split)  # decoding settings: params.yaml's
        started = time.perf_counter()
        outputs = translator.translate(paragraphs)
        seconds = time.perf_counter() - started
        chrf = sacrebleu.corpus_chrf(outputs, [references]).score
        bleu = sacrebleu.corpus_bleu(outputs, [references]).score
        print(f"| paragraphs | {'on' if split else 'off'} | {chrf:.2f} | {bleu:.2f} | {seconds:.0f} |")
    lines = Translator(args.model, split_sentences=False).translate(english[:count])
    joined = [" ".join(lines[i : i + 3]) for i in range(0, count, 3)]
    chrf = sacrebleu.corpus_chrf(joined, [references]).score
    bleu = sacrebleu.corpus_bleu(joined, [references]).score
    print(f"| the lines one by one, joined | - | {chrf:.2f} | {bleu:.2f} | |")


if __name__ == "__main__":
    main()
