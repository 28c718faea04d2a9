"""Which sentence splitter to use: accuracy and speed on paragraphs of real sentences.

Paragraphs are made of 3 consecutive FLORES-200 dev lines (data/prepared/valid.en), joined by a
space, so two sentence boundaries in each are known. A FLORES line is sometimes two sentences
itself ("... events. I am here to win."), so splits inside a line are counted apart: they are
often right. Run from the repository root after `dvc repro prepare`, with the candidates installed:

    .venv/bin/pip install sentence-splitter pysbd sentencex
    .venv/bin/python bench/sentence_splitters.py
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def candidates() -> dict[str, Callable[[str], list[str]]]:
    import pysbd
    import sentencex
    from sentence_splitter import SentenceSplitter

    moses = SentenceSplitter(language="en")
    segmenter = pysbd.Segmenter(language="en", clean=False)
    return {
        "sentence-splitter (Moses)": moses.split,
        "pysbd": lambda text: [s.strip() for s in segmenter.segment(text)],
        "sentencex": lambda text: [s.strip() for s in sentencex.segment("en", text)],
    }


def boundaries(text: str, pieces: list[str]) -> set[int]:
    """Where each piece after the first starts in `text` (character offsets)."""
    starts, position = set(), 0
    for piece in pieces:
        position = text.find(piece, position)
        starts.add(position)
        position += len(piece)
    return starts - {0}


def main() -> None:
    lines = Path("data/prepared/valid.en").read_text(encoding="utf-8").splitlines()
    paragraphs = [lines[i : i + 3] for i in range(0, len(lines) - 2, 3)]
    print(f"{len(paragraphs)} paragraphs of 3 FLORES-200 dev lines; {2 * len(paragraphs)} boundaries between lines")
    print("| splitter | boundaries between lines found | splits inside a line | sentences/s |")
    print("|---|---:|---:|---:|")
    for name, split in candidates().items():
        found = inside = 0
        started = time.perf_counter()
        for paragraph in paragraphs:
            text = " ".join(paragraph)
            joins = {len(paragraph[0]) + 1, len(paragraph[0]) + len(paragraph[1]) + 2}
            starts = boundaries(text, split(text))
            found += len(joins & starts)
            inside += len(starts - joins)
        seconds = time.perf_counter() - started
        print(f"| {name} | {found / (2 * len(paragraphs)):.1%} | {inside} | {3 * len(paragraphs) / seconds:,.0f} |")


if __name__ == "__main__":
    main()
