"""Measurement: translation speed and quality by decoding setting (`seq2seq bench translate`, `bench
decode`) and with sentence splitting on and off (`bench paragraphs`), through the product's own
`Translator`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import torch

from seq2seq.config import EvaluateConfig


def bench_translate(model_path: Path, sources_path: Path, beam_sizes: list[int], batch_size: int,
                    limit: int, quantize: bool = False) -> Iterator[str]:
    """Yield report lines: translation throughput in sentences/s for each beam size (and, with
    `quantize`, also with int8 dynamic quantization)."""
    from seq2seq.translate import Translator

    sentences = sources_path.read_text(encoding="utf-8").splitlines()[:limit]
    yield f"{len(sentences)} sentences of {sources_path}, batch size {batch_size}, threads {torch.get_num_threads()}"
    for beam_size in beam_sizes:
        for quantized in (False, True) if quantize else (False,):
            translator = Translator(model_path, beam_size=beam_size, batch_size=batch_size, quantize=quantized)
            started = time.perf_counter()
            translator.translate(sentences)
            seconds = time.perf_counter() - started
            name = f"beam {beam_size}{' int8' if quantized else ''}"
            yield f"{name}: {len(sentences) / seconds:,.1f} sentences/s ({seconds:.1f} s)"


def bench_decode(model_path: Path, prepared_dir: Path, split: str, limit: int, beam_sizes: list[int],
                 length_penalties: list[float], ngram_sizes: list[int], config: EvaluateConfig) -> Iterator[str]:
    """Yield one report line per decoding setting: chrF, BLEU and output/reference length ratio on
    the first `limit` sentences of `split`. Beam 1 ignores the length penalty, so it is tried once."""
    import itertools

    from seq2seq.evaluate import score
    from seq2seq.translate import Translator

    sources, references = ((prepared_dir / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()[:limit]
                           for lang in ("en", "ko"))
    yield f"{len(sources)} sentences of {prepared_dir}/{split}, model {model_path}"
    translator = Translator(model_path, batch_size=config.batch_size, max_output_ratio=config.max_output_ratio,
                            split_sentences=False)  # line by line, as validation and evaluate score
    for beam_size, length_penalty, ngram_size in itertools.product(beam_sizes, length_penalties, ngram_sizes):
        if beam_size == 1 and length_penalty != length_penalties[0]:
            continue
        translator.beam_size, translator.length_penalty = beam_size, length_penalty
        translator.no_repeat_ngram_size = ngram_size
        started = time.perf_counter()
        outputs = translator.translate(sources)
        seconds = time.perf_counter() - started
        scores = score(outputs, references)[0]
        ratio = sum(map(len, outputs)) / max(sum(map(len, references)), 1)
        penalty = "-" if beam_size == 1 else f"{length_penalty:.1f}"
        yield (f"beam {beam_size} length_penalty {penalty} no_repeat_ngram {ngram_size}: chrF {scores['chrf']:.2f} "
               f"BLEU {scores['bleu']:.2f} length ratio {ratio:.2f} ({seconds:.0f} s)")


def bench_paragraphs(model_path: Path, prepared_dir: Path, limit: int, params_path: Path) -> Iterator[str]:
    """Yield a Markdown table: chrF and BLEU of translating paragraphs with sentence splitting on and
    off, and of the paragraphs' lines translated one by one and joined, with the decoding settings of
    `params_path`. A paragraph is 3 consecutive lines of the first `limit` of the valid split
    (FLORES-200 dev in the pipeline) joined by a space, and so is its reference."""
    from seq2seq.evaluate import score
    from seq2seq.translate import Translator

    english, korean = ((prepared_dir / f"valid.{lang}").read_text(encoding="utf-8").splitlines()[:limit]
                       for lang in ("en", "ko"))
    count = len(english) // 3 * 3

    def paragraphs(lines: list[str]) -> list[str]:
        return [" ".join(lines[start : start + 3]) for start in range(0, count, 3)]

    references = paragraphs(korean)
    yield f"{len(references)} paragraphs of 3 lines of {prepared_dir}/valid, model {model_path}"
    yield "| input | splitting | chrF | BLEU | seconds |"
    yield "|---|---|---:|---:|---:|"
    translator = Translator(model_path, params_path=params_path)
    for split in (False, True):
        translator.split_sentences = split
        started = time.perf_counter()
        scores = score(translator.translate(paragraphs(english)), references, ("chrf", "bleu"))[0]
        yield (f"| paragraphs | {'on' if split else 'off'} | {scores['chrf']:.2f} | {scores['bleu']:.2f} | "
               f"{time.perf_counter() - started:.0f} |")
    translator.split_sentences = False
    scores = score(paragraphs(translator.translate(english[:count])), references, ("chrf", "bleu"))[0]
    yield f"| the lines one by one, joined | - | {scores['chrf']:.2f} | {scores['bleu']:.2f} | |"
