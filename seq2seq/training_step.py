"""One training step, as the training loop and the benchmarks take it: the optimizer, the learning
rate at a step, and the update on one rank's batch (forward, backward, clipping, optimizer step).

A benchmark that wants the trainer's own work per step takes `TrainingData.epoch_batches` (the
epoch's weighted sample, cut into batches) and `train_on_batch` on each, with no reporting or
checkpoints around them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from seq2seq.config import TrainConfig
from seq2seq.data import Batch
from seq2seq.device import autocast
from seq2seq.training_data import TrainingData
from seq2seq.training_process import Distributed


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    optimizer_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)


def learning_rate(config: TrainConfig, step: int, lr_scale: float) -> float:
    """Linear warm-up over `warmup_steps`, then inverse square root decay (or constant), times the
    plateau scale (halved after each validation without gain when schedule is `plateau`), and over
    the last `cooldown` fraction of `max_steps` a linear fall towards zero; after warm-up never
    below `min_learning_rate`. `config.max_steps` is this machine's number (`training_budget`)."""
    warmup = max(config.warmup_steps, 1)
    warm = min(1.0, step / warmup)
    decay = math.sqrt(warmup / step) if config.schedule == "inverse_sqrt" and step > warmup else 1.0
    cooldown_steps = config.cooldown * config.max_steps
    cool = min(1.0, (config.max_steps - step) / cooldown_steps) if cooldown_steps > 0 else 1.0
    rate = config.learning_rate * warm * decay * max(cool, 0.0) * lr_scale
    return max(rate, config.min_learning_rate) if step >= warmup else rate


class StepResult(NamedTuple):
    """What one step did: its summed token loss (a detached scalar tensor, this rank's batch), this
    rank's target tokens and all ranks' target tokens."""

    loss_sum: torch.Tensor
    tokens: int
    all_tokens: float


def train_on_batch(trained: torch.nn.Module, optimizer: torch.optim.Optimizer, data: TrainingData, epoch: int,
                   indices: np.ndarray, lr: float, world: Distributed, config: TrainConfig, device: torch.device
                   ) -> StepResult:
    """One training step on the pairs `indices` of `epoch` (one of `data.epoch_batches`), exactly as
    the trainer takes it: the batch with subword sampling and word dropout as configured, then
    `train_step`. `trained` is the model or its DDP wrapper."""
    batch = data.training_batch(config, epoch, indices).to(device)
    return train_step(trained, optimizer, batch, lr, world, config, device)


def train_step(trained: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, lr: float,
               world: Distributed, config: TrainConfig, device: torch.device) -> StepResult:
    """One update on a ready batch: forward, backward, gradient clipping, optimizer step at rate `lr`."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    result = backward(trained, batch, world, config, device)
    if config.clip_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(trained.parameters(), config.clip_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return result


def backward(model: torch.nn.Module, batch: Batch, world: Distributed, config: TrainConfig, device: torch.device
             ) -> StepResult:
    """Forward and backward pass of one rank's batch, leaving gradients of the mean token loss over
    the global batch (all ranks)."""
    tokens = batch.target_tokens
    all_tokens = world.sum(tokens)
    with autocast(device, config.bf16):
        loss_sum = model(batch.source, batch.source_lengths, batch.target_input, batch.target_output,
                         config.label_smoothing)
    # DDP averages gradients over ranks; scaling by world / all_tokens makes that the global mean.
    (loss_sum * (world.world / all_tokens)).backward()
    return StepResult(loss_sum.detach(), tokens, all_tokens)
