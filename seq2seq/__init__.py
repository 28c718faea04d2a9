"""seq2seq: English→Korean translation with an RNN encoder-decoder and attention, as a DVC pipeline."""

import os

# oneDNN, which runs torch's bf16 matrix products on the CPU, keeps a compiled kernel with its
# buffers for each matrix shape it meets, up to 1,024 of them. Training meets new shapes at every
# step (batch sizes, lengths, and the rows still running at each step of the packed encoder), so
# the train process grew from 1.4 to 3.9 GB; 64 kernels keep it flat, at no measured cost in speed
# (docs/log.md, "Memory of a long run"). Read when oneDNN first runs, so it must be set before any torch
# work; a value already in the environment wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")

__version__ = "0.1.0"
__all__ = ["Translator"]


def __getattr__(name: str):
    """`from seq2seq import Translator` (the Python API), imported on first use: the CLI starts
    without loading torch."""
    if name == "Translator":
        from seq2seq.translate import Translator

        return Translator
    raise AttributeError(f"module 'seq2seq' has no attribute {name!r}")
