"""Stage 4, `train`: fit the encoder-decoder on the encoded train split.

Teacher forcing, label-smoothed cross entropy over real tokens, Adam(W), gradient clipping, a
warm-up learning-rate schedule, token-count batches from length buckets, validation every
`valid_every` steps (loss, perplexity, greedy chrF on the first `valid_sentences` valid pairs),
optional early stopping. `models/model/best.pt` (best valid chrF) and `last.pt` (everything
`--resume` needs) are written atomically; Ctrl-C or SIGTERM saves `last.pt` and stops cleanly.

Runs unchanged under `torchrun --nproc_per_node N`: every rank trains on its own share of each
step's batches through DistributedDataParallel, and rank 0 alone validates and writes files.
"""

from __future__ import annotations

import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import sacrebleu
import torch
import torch.distributed as dist
from tqdm import tqdm

from seq2seq.checkpoint import load_weights, read_checkpoint, save_checkpoint
from seq2seq.config import Params, TrainConfig
from seq2seq.data import Batch, ParallelData, collate, make_batches
from seq2seq.device import autocast, pick_device
from seq2seq.errors import UserError
from seq2seq.model import Seq2Seq
from seq2seq.search import translate_ids
from seq2seq.tokenizer import Tokenizer, load_tokenizer


@dataclass
class TrainPaths:
    encoded_dir: Path = Path("data/encoded")
    prepared_dir: Path = Path("data/prepared")
    tokenizer_dir: Path = Path("models/tokenizer")
    model_dir: Path = Path("models/model")
    live_dir: Path = Path("dvclive")


@dataclass
class Progress:
    """Where training stands; saved in `last.pt` so that `--resume` continues exactly."""

    step: int = 0
    epoch: int = 0
    batches_done: int = 0  # of this epoch's batch list, summed over all ranks
    best_chrf: float = -1.0
    best_step: int = 0
    validations_without_gain: int = 0
    lr_scale: float = 1.0
    seconds: float = 0.0
    target_tokens: int = 0
    history: list[dict] = field(default_factory=list)


def learning_rate(config: TrainConfig, step: int, lr_scale: float) -> float:
    """Linear warm-up over `warmup_steps`, then inverse square root decay (or constant), times the
    plateau scale (halved after each validation without gain when schedule is `plateau`)."""
    warmup = max(config.warmup_steps, 1)
    warm = min(1.0, step / warmup)
    decay = math.sqrt(warmup / step) if config.schedule == "inverse_sqrt" and step > warmup else 1.0
    return config.learning_rate * warm * decay * lr_scale


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Distributed:
    """Rank and world size; a single process when not started by torchrun."""

    def __init__(self, device: torch.device) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = device  # nccl reduces CUDA tensors only
        if self.world > 1 and not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            # A dead rank or a missing rendezvous ends the run with an error after this, not a hang.
            minutes = float(os.environ.get("SEQ2SEQ_DIST_TIMEOUT_MINUTES", "30"))
            dist.init_process_group(backend, timeout=timedelta(minutes=minutes))
            if device.type == "cuda":
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, value: float) -> float:
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor)

    def any(self, flag: bool) -> bool:
        """True on every rank if `flag` is True on any."""
        return self.sum(float(flag)) > 0

    def broadcast(self, values: list[float]) -> list[float]:
        """Rank 0's `values` on every rank."""
        if self.world == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.broadcast(tensor, src=0)
        return tensor.tolist()

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def validate(model: Seq2Seq, valid: ParallelData, references: list[str], tokenizer: Tokenizer,
             config: TrainConfig, device: torch.device) -> dict[str, float]:
    """Valid loss, perplexity and greedy chrF on the first `valid_sentences` pairs."""
    model.eval()
    count = min(config.valid_sentences, len(valid))
    loss_sum, tokens = 0.0, 0
    with torch.no_grad(), autocast(device, config.bf16):
        for start in range(0, count, 64):
            batch = collate(valid, np.arange(start, min(start + 64, count))).to(device)
            loss_sum += float(model(batch.source, batch.source_lengths, batch.target_input, batch.target_output))
            tokens += batch.target_tokens
        hypotheses = translate_ids(model, [valid.source[i] for i in range(count)], batch_size=64, device=device)
    outputs = tokenizer.decode_target([h.tokens for h in hypotheses])
    model.train()
    loss = loss_sum / max(tokens, 1)
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 50.0)),
        "chrf": sacrebleu.corpus_chrf(outputs, [references[:count]]).score,
    }


class StopRequested(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, acted on at a step boundary, where the training state is consistent."""


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    optimizer_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)


def train_step(trained: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, lr: float,
               world: Distributed, config: TrainConfig, device: torch.device) -> tuple[torch.Tensor, int, float]:
    """One update: forward, backward, gradient clipping, optimizer step. `trained` is the model or
    its DDP wrapper. Returns what `backward` returns."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    result = backward(trained, batch, world, config, device)
    if config.clip_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(trained.parameters(), config.clip_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return result


def backward(model: torch.nn.Module, batch: Batch, world: Distributed, config: TrainConfig, device: torch.device
             ) -> tuple[torch.Tensor, int, float]:
    """Forward and backward pass of one rank's batch, leaving gradients of the mean token loss over
    the global batch (all ranks). Returns the summed loss, this rank's and all ranks' target tokens."""
    tokens = batch.target_tokens
    all_tokens = world.sum(tokens)
    with autocast(device, config.bf16):
        loss_sum = model(batch.source, batch.source_lengths, batch.target_input, batch.target_output,
                         config.label_smoothing)
    # DDP averages gradients over ranks; scaling by world / all_tokens makes that the global mean.
    (loss_sum * (world.world / all_tokens)).backward()
    return loss_sum.detach(), tokens, all_tokens


def train(params: Params, paths: TrainPaths | None = None, resume: bool = False) -> Progress:
    """Run the training stage; returns the final `Progress`."""
    paths = paths or TrainPaths()
    config = params.train
    device = pick_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    world = Distributed(device)
    seed_everything(config.seed + world.rank)
    tokenizer = load_tokenizer(paths.tokenizer_dir)
    train_data = ParallelData.open(paths.encoded_dir, "train")
    valid_data = ParallelData.open(paths.encoded_dir, "valid")
    references = (paths.prepared_dir / "valid.ko").read_text(encoding="utf-8").splitlines()

    model = Seq2Seq(params.model, tokenizer.source.get_piece_size(), tokenizer.target.get_piece_size()).to(device)
    optimizer = make_optimizer(model, config)
    progress = Progress()
    last_path, best_path = paths.model_dir / "last.pt", paths.model_dir / "best.pt"
    if resume:
        progress = _restore(last_path, model, optimizer, world)
    elif world.is_main and last_path.exists():
        last_path.unlink()  # a fresh run: a stale last.pt must not be resumed later
    trained = model if world.world == 1 else torch.nn.parallel.DistributedDataParallel(model)

    live = None
    if world.is_main:
        from dvclive import Live

        live = Live(str(paths.live_dir), resume=resume, dvcyaml=None, save_dvc_exp=False, report=None)
        live.log_param("parameters", model.parameter_count())

    # Ctrl-C or SIGTERM stops at the next step boundary and saves last.pt there; a second Ctrl-C
    # stops at once without saving (the last.pt already on disk is whole: writes are atomic).
    stop = {"requested": False}

    def request_stop(*_) -> None:
        stop["requested"] = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous_handlers = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    bar = tqdm(total=config.max_steps, initial=progress.step, unit="step", disable=not world.is_main,
               dynamic_ncols=True, desc="train", mininterval=1 if sys.stderr.isatty() else 30)
    model.train()
    started = time.perf_counter() - progress.seconds
    interval_tokens, interval_start = 0, time.perf_counter()

    def checkpoint(path: Path) -> None:
        progress.seconds = time.perf_counter() - started
        state = {
            "progress": vars(progress),
            "optimizer": optimizer.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state(),
                    "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None},
        }
        save_checkpoint(path, model, tokenizer, config.max_length, state)

    def run_validation() -> bool:
        """Validate, log, save; True when early stopping says to stop."""
        should_stop = False
        if world.is_main:
            scores = validate(model, valid_data, references, tokenizer, config, device)
            minutes = (time.perf_counter() - started) / 60
            improved = scores["chrf"] > progress.best_chrf
            if improved:
                progress.best_chrf, progress.best_step = scores["chrf"], progress.step
                progress.validations_without_gain = 0
            else:
                progress.validations_without_gain += 1
                if config.schedule == "plateau":
                    progress.lr_scale *= 0.5
            progress.history.append({"step": progress.step, "minutes": round(minutes, 2), **scores})
            live.step = progress.step
            for name, value in {**scores, "minutes": minutes, "target_tokens": progress.target_tokens}.items():
                live.log_metric(f"valid/{name}", value)
            live.summary.update({"best_valid_chrf": progress.best_chrf, "best_step": progress.best_step})
            live.next_step()
            bar.write(f"step {progress.step}: valid loss {scores['loss']:.3f} ppl {scores['perplexity']:.1f} "
                      f"chrF {scores['chrf']:.1f} ({minutes:.1f} min)", file=sys.stderr)
            checkpoint(last_path)
            if improved:
                save_checkpoint(best_path, model, tokenizer, config.max_length,  # weights only: small
                                summary={"step": progress.step, "valid_chrf": scores["chrf"]})
            should_stop = 0 < config.patience <= progress.validations_without_gain
        # Every rank must follow rank 0's decisions, or the model copies drift apart.
        should_stop, progress.lr_scale = world.broadcast([float(should_stop), progress.lr_scale])
        return bool(should_stop)

    try:
        finished = progress.step >= config.max_steps
        while not finished and progress.epoch < config.max_epochs:
            batches = make_batches(train_data.source.lengths, train_data.target.lengths, config.batch_tokens,
                                   config.max_length, seed=config.seed + progress.epoch)
            if not batches:
                raise UserError("no training pair fits train.max_length; raise it or check the prepared data")
            usable = len(batches) - len(batches) % world.world
            if usable == 0:
                raise UserError(f"{len(batches)} batches cannot be shared by {world.world} processes; "
                                "lower train.batch_tokens or train.nproc")
            for first in range(progress.batches_done, usable, world.world):
                if world.any(stop["requested"]):
                    raise StopRequested
                batch = collate(train_data, batches[first + world.rank]).to(device)
                lr = learning_rate(config, progress.step + 1, progress.lr_scale)
                loss_sum, tokens, all_tokens = train_step(trained, optimizer, batch, lr, world, config, device)
                progress.step += 1
                progress.batches_done = first + world.world
                progress.target_tokens += int(all_tokens)
                interval_tokens += all_tokens
                bar.update(1)
                if progress.step % 10 == 0:
                    rate = interval_tokens / (time.perf_counter() - interval_start)
                    bar.set_postfix(loss=f"{loss_sum.item() / max(tokens, 1):.3f}", tok_s=f"{rate:.0f}",
                                    lr=f"{lr:.2e}", epoch=progress.epoch)
                    interval_tokens, interval_start = 0, time.perf_counter()
                last_step = progress.step >= config.max_steps
                validating = progress.step % config.valid_every == 0 or last_step
                if validating and (run_validation() or last_step):
                    finished = True
                    break
            else:
                progress.epoch += 1
                progress.batches_done = 0
        if not finished and progress.step % config.valid_every != 0:
            run_validation()  # max_epochs ended between validations
    except StopRequested:
        if world.is_main:
            checkpoint(last_path)
            bar.write(f"interrupted at step {progress.step}: saved {last_path}; "
                      "continue with `seq2seq train --resume`", file=sys.stderr)
        raise
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        bar.close()
        if live is not None:
            live.end()
        world.close()
    progress.seconds = time.perf_counter() - started
    return progress


def _restore(path: Path, model: Seq2Seq, optimizer: torch.optim.Optimizer, world: Distributed) -> Progress:
    content = read_checkpoint(path)
    state = content.get("training_state")
    if not state:
        raise UserError(f"{path} holds no training state to resume from")
    load_weights(model, content["weights"], path)
    try:
        optimizer.load_state_dict(state["optimizer"])
    except ValueError as error:
        raise UserError(f"{path}: optimizer state does not fit params.yaml ({error})") from None
    progress = Progress(**state["progress"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    np.random.set_state(state["rng"]["numpy"])
    if state["rng"].get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    if world.rank > 0:  # rank 0's generator was saved; the others only need to differ from it
        torch.manual_seed(torch.initial_seed() + world.rank + progress.step)
    return progress
