"""Run by tests/test_distributed.py under torchrun: first-step gradients of a 2-rank DDP model.

Usage: ddp_gradients.py OUTPUT.pt TINY_WORKDIR. Each rank takes its half of one fixed global
batch; rank 0 saves the averaged gradients to OUTPUT.pt.
"""

import gc
import sys
from pathlib import Path

import numpy as np
import torch

from seq2seq.data import ParallelData, collate
from seq2seq.model import Seq2Seq
from seq2seq.tokenizer import load_tokenizer
from seq2seq.training_process import Distributed
from seq2seq.training_step import backward
from tests.conftest import tiny_params


def global_batch_gradients(workdir: Path, world: Distributed) -> dict[str, torch.Tensor]:
    """Gradients after one backward pass over the first 16 train pairs of the tiny pipeline in `workdir`."""
    params = tiny_params()
    data = ParallelData.open(workdir / "data/encoded", "train")
    tokenizer = load_tokenizer(workdir / "models/tokenizer")
    torch.manual_seed(0)
    model = Seq2Seq(params.model, tokenizer.source.get_piece_size(), tokenizer.target.get_piece_size())
    trained = torch.nn.parallel.DistributedDataParallel(model) if world.world > 1 else model
    indices = np.arange(16)
    share = np.array_split(indices, world.world)[world.rank]
    backward(trained, collate(data, share), world, params.train, torch.device("cpu"))
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


if __name__ == "__main__":
    world = Distributed(torch.device("cpu"))
    gradients = global_batch_gradients(Path(sys.argv[2]), world)
    if world.is_main:
        torch.save(gradients, sys.argv[1])
    # The DDP wrapper (and its gloo threads) must be gone before the process group is destroyed:
    # left to interpreter shutdown, it sometimes aborted rank 1 ("terminate called without an
    # active exception").
    gc.collect()
    world.close()
