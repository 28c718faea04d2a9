"""seq2seq: English→Korean translation with an RNN encoder-decoder and attention, as a DVC pipeline."""

__version__ = "0.1.0"
