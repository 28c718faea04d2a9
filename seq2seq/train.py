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

import dataclasses
import hashlib
import math
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import sacrebleu
import torch
import torch.distributed as dist
from tqdm import tqdm

from seq2seq import paths as default_paths
from seq2seq.checkpoint import average_weights, load_weights, read_checkpoint, save_checkpoint
from seq2seq.config import Params, TrainConfig
from seq2seq.data import (
    Batch,
    ParallelData,
    collate,
    drop_words,
    epoch_sample,
    make_batches,
    read_synthetic_pairs,
    resegment,
)
from seq2seq.device import CPU_CLASS_DESCRIPTIONS, autocast, cpu_class, machine_description, memory_mib, pick_device
from seq2seq.domains import Domains, SentenceSources, read_sentence_sources, sentence_weights
from seq2seq.errors import UserError
from seq2seq.model import Seq2Seq
from seq2seq.search import translate_ids
from seq2seq.tokenizer import Tokenizer, load_tokenizer


@dataclass
class TrainPaths:
    """What training reads (encoded data, prepared valid references and source names, tokenizer) and
    where it writes (checkpoints, dvclive log)."""

    encoded_dir: Path = default_paths.ENCODED
    prepared_dir: Path = default_paths.PREPARED
    tokenizer_dir: Path = default_paths.TOKENIZER
    model_dir: Path = default_paths.MODEL_DIR
    live_dir: Path = default_paths.LIVE
    synthetic_dir: Path = default_paths.BACKTRANSLATED  # back-translated pairs, if any


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
    plateau scale (halved after each validation without gain when schedule is `plateau`), and over
    the last `cooldown` fraction of `max_steps` a linear fall towards zero; after warm-up never
    below `min_learning_rate`."""
    warmup = max(config.warmup_steps, 1)
    warm = min(1.0, step / warmup)
    decay = math.sqrt(warmup / step) if config.schedule == "inverse_sqrt" and step > warmup else 1.0
    cooldown_steps = config.cooldown * config.max_steps
    cool = min(1.0, (config.max_steps - step) / cooldown_steps) if cooldown_steps > 0 else 1.0
    rate = config.learning_rate * warm * decay * max(cool, 0.0) * lr_scale
    return max(rate, config.min_learning_rate) if step >= warmup else rate


def step_starts(batches_done: int, batch_count: int, world_size: int) -> range:
    """Where each remaining step of an epoch starts in the epoch's batch list of `batch_count`.

    A step takes `world_size` consecutive batches, one per rank, from `batches_done` on; fewer than
    `world_size` batches left at the end are skipped. `batches_done` may come from a run with another
    world size (any value, odd or even): every step still lies wholly inside the list.
    """
    steps = max(batch_count - batches_done, 0) // world_size
    return range(batches_done, batches_done + steps * world_size, world_size)


FINGERPRINT_CHUNK = 1 << 22  # array elements hashed at a time


def batch_fingerprint(config: TrainConfig, train_data: ParallelData, weights: np.ndarray | None) -> dict[str, str]:
    """What decides each epoch's batch list and what its batches hold, as plain strings: a resumed run
    must find the same, or its saved position (`batches_done`) would point into another list."""
    data = hashlib.sha256()
    for array in (train_data.source.offsets, train_data.target.offsets, train_data.source.ids, train_data.target.ids):
        for start in range(0, len(array), FINGERPRINT_CHUNK):  # memory-mapped: never all in memory at once
            data.update(np.ascontiguousarray(array[start : start + FINGERPRINT_CHUNK]).tobytes())
    return {
        "train.batch_tokens": str(config.batch_tokens),
        "train.max_length": str(config.max_length),
        "train.seed": str(config.seed),
        "train.subword_alpha": str(config.subword_alpha) if config.subword_alpha else "",
        "train.source_weights": str(sorted(config.source_weights.items())),
        "train.domain_tags": str(config.domain_tags),
        "train.domains": str(list(config.domains.items())) if config.domain_tags else "",
        "sampling weights (train.source, train.source_weights)":
            "" if weights is None else hashlib.sha256(weights.tobytes()).hexdigest(),
        "encoded train data (data/encoded)": f"{len(train_data)} pairs, sha256 {data.hexdigest()}",
    }


def check_fingerprint(path: Path, saved: dict[str, str] | None, current: dict[str, str]) -> None:
    """Refuse to resume when a batch-defining setting differs from the one `path` was trained with."""
    if saved is None:  # a last.pt from before fingerprints were saved
        print(f"warning: {path} does not record its batch settings: unchanged settings assumed", file=sys.stderr)
        return
    changed = [name for name in current if saved.get(name, "") != current[name]]  # absent: off when saved
    if changed:
        name = changed[0]
        detail = f"{saved.get(name) or 'off'} -> {current[name] or 'off'}" if name.startswith("train.") else "changed"
        raise UserError(f"cannot resume from {path}: {name} differs from the run that wrote it ({detail}), so its "
                        f"position in the epoch would point into another batch list; restore it, or train "
                        f"afresh without --resume")


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
    """Valid loss, perplexity, greedy chrF and the output/reference length ratio (in characters) on the
    first `valid_sentences` pairs. A ratio well below 1 means outputs stop early, above 1 that they ramble."""
    model.eval()
    count = min(config.valid_sentences, len(valid))
    loss_sum, tokens = 0.0, 0
    with torch.no_grad():  # float32, as evaluate and translate decode: the valid score is the one they would see
        for start in range(0, count, 64):
            batch = collate(valid, np.arange(start, min(start + 64, count))).to(device)
            loss_sum += float(model(batch.source, batch.source_lengths, batch.target_input, batch.target_output))
            tokens += batch.target_tokens
        hypotheses = translate_ids(model, [valid.source_ids(i) for i in range(count)], batch_size=64, device=device,
                                   never_emitted=tokenizer.never_emitted())
    outputs = tokenizer.decode_target([h.tokens for h in hypotheses])
    model.train()
    loss = loss_sum / max(tokens, 1)
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 50.0)),
        "chrf": sacrebleu.corpus_chrf(outputs, [references[:count]]).score,
        "length_ratio": sum(map(len, outputs)) / max(sum(map(len, references[:count])), 1),
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


def train(params: Params, paths: TrainPaths | None = None, resume: bool = False, reverse: bool = False) -> Progress:
    """Run the training stage; returns the final `Progress`. `reverse`: train Korean->English on the
    same data, without synthetic pairs (the back-translation model)."""
    return Trainer(params, paths or TrainPaths(), resume, reverse).run()


def start_process(config: TrainConfig) -> tuple[torch.device, Distributed]:
    """Pick the device and CPU threads, join the process group (under torchrun) and seed this rank."""
    device = pick_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    world = Distributed(device)
    seed_everything(config.seed + world.rank)
    return device, world


BT_SOURCE = "bt"  # the source name, and domain group, of back-translated pairs: their tag is `<bt>`


@dataclass
class TrainingData:
    """The tokenizer, the train and valid splits (with domain tags when `train.domain_tags`), the valid
    references and each train sentence's sampling weight (None: every sentence once per epoch).

    Back-translated pairs, when `paths.synthetic_dir` holds some, follow the train split's pairs as
    source `bt`, with their own domain group and tag and `backtranslation.weight` as their weight.
    """

    tokenizer: Tokenizer
    train: ParallelData
    valid: ParallelData
    references: list[str]
    domains: Domains | None
    weights: np.ndarray | None
    _resegmented: tuple[int, ParallelData] | None = field(default=None, init=False, repr=False)

    @classmethod
    def load(cls, config: TrainConfig, paths: TrainPaths, reverse: bool = False, synthetic_weight: float = 1.0
             ) -> TrainingData:
        tokenizer = load_tokenizer(paths.tokenizer_dir)
        train_data = ParallelData.open(paths.encoded_dir, "train")
        valid_data = ParallelData.open(paths.encoded_dir, "valid")
        sources = _read_sources(paths, len(train_data)) if config.domain_tags or config.source_weights else None
        synthetic = None if reverse else read_synthetic_pairs(paths.synthetic_dir, tokenizer)
        if synthetic is not None:
            train_data = train_data + synthetic
            sources = (sources or _read_sources(paths, len(train_data) - len(synthetic))).extended(
                BT_SOURCE, len(synthetic))
            config = dataclasses.replace(config, source_weights={**config.source_weights, BT_SOURCE: synthetic_weight},
                                         domains={**config.domains, BT_SOURCE: [BT_SOURCE]})
        if reverse:
            tokenizer, train_data, valid_data = tokenizer.reversed(), train_data.reversed(), valid_data.reversed()
        references = (paths.prepared_dir / f"valid.{'en' if reverse else 'ko'}").read_text(encoding="utf-8")
        domains, weights = _domain_control(config, sources, tokenizer, train_data, valid_data)
        return cls(tokenizer, train_data, valid_data, references.splitlines(), domains, weights)

    @property
    def source_vocab_size(self) -> int:
        """SentencePiece's source pieces, then one id per domain tag."""
        return self.tokenizer.source.get_piece_size() + (len(self.domains.groups) if self.domains else 0)

    def epoch_data(self, config: TrainConfig, epoch: int) -> ParallelData:
        """The train pairs as `epoch` sees them: segmented anew for the epoch (seeded by it, the same on
        every rank) when `train.subword_alpha` > 0, else as encoded."""
        if config.subword_alpha == 0:
            return self.train
        if self._resegmented is None or self._resegmented[0] != epoch:
            self._resegmented = epoch, resegment(self.train, self.tokenizer, config.subword_alpha, config.seed + epoch)
        return self._resegmented[1]

    def epoch_batches(self, config: TrainConfig, epoch: int, world_size: int) -> list[np.ndarray]:
        """The seeded batch list of `epoch` (sentence indices into `epoch_data`), the same on every rank."""
        sample = None if self.weights is None else epoch_sample(self.weights, seed=config.seed + epoch)
        data = self.epoch_data(config, epoch)
        batches = make_batches(data.source.lengths, data.target.lengths, config.batch_tokens,
                               config.max_length, seed=config.seed + epoch, sample=sample)
        if not batches:
            raise UserError("no training pair fits train.max_length; raise it or check the prepared data")
        if len(batches) < world_size:
            raise UserError(f"{len(batches)} batches cannot be shared by {world_size} processes; "
                            "lower train.batch_tokens or train.nproc")
        return batches


class StopSignal:
    """Within `with`: Ctrl-C or SIGTERM sets `requested`, acted on at the next step boundary, where
    last.pt is saved; a second Ctrl-C stops at once without saving (the last.pt on disk is whole:
    writes are atomic)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def _request(self, *_) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self) -> StopSignal:
        self._previous = {sig: signal.signal(sig, self._request) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *_) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Reporter:
    """The progress bar (rank 0 only) and the dvclive log and summary (rank 0 only: `live` is None elsewhere)."""

    def __init__(self, paths: TrainPaths, config: TrainConfig, world: Distributed, resume: bool, model: Seq2Seq,
                 device: torch.device, step: int) -> None:
        self.live = None
        if world.is_main:
            from dvclive import Live

            self.live = Live(str(paths.live_dir), resume=resume, dvcyaml=None, save_dvc_exp=False, report=None)
            self.live.log_param("parameters", model.parameter_count())
            self.live.summary["machine"] = machine_description(device)  # best.pt's bytes differ between CPU models
            self.live.summary["max_steps"] = config.max_steps  # train.max_steps_by_cpu_class: depends on the machine
        self.bar = tqdm(total=config.max_steps, initial=step, unit="step", disable=not world.is_main,
                        dynamic_ncols=True, desc="train", mininterval=1 if sys.stderr.isatty() else 30)
        self.interval_tokens, self.interval_start = 0.0, time.perf_counter()

    def step(self, progress: Progress, loss_sum: torch.Tensor, tokens: int, all_tokens: float, lr: float) -> None:
        """Advance the bar; every 10 steps show the loss per token, throughput, learning rate and epoch."""
        self.interval_tokens += all_tokens
        self.bar.update(1)
        if progress.step % 10 == 0:
            rate = self.interval_tokens / (time.perf_counter() - self.interval_start)
            self.bar.set_postfix(loss=f"{loss_sum.item() / max(tokens, 1):.3f}", tok_s=f"{rate:.0f}",
                                 lr=f"{lr:.2e}", epoch=progress.epoch)
            self.interval_tokens, self.interval_start = 0, time.perf_counter()

    def validation(self, progress: Progress, scores: dict[str, float], minutes: float) -> None:
        """Log one validation's scores (rank 0)."""
        self.live.step = progress.step
        for name, value in {**scores, "minutes": minutes, "target_tokens": progress.target_tokens}.items():
            self.live.log_metric(f"valid/{name}", value)
        self.live.summary.update({"best_valid_chrf": progress.best_chrf, "best_step": progress.best_step,
                                  "minutes": round(minutes, 2)})
        self.live.next_step()
        self.write(f"step {progress.step}: valid loss {scores['loss']:.3f} ppl {scores['perplexity']:.1f} "
                   f"chrF {scores['chrf']:.1f} ({minutes:.1f} min)")

    def write(self, message: str) -> None:
        self.bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
        if self.live is not None:
            memory = memory_mib()
            if memory is not None:  # of this process: on resume, of the run since then
                self.live.summary["peak_memory_mib"] = round(memory[1])
            self.live.end()


# Target tokens/s of the default params on 2 cores, validation included, by CPU class (README,
# "Timings by CPU class"): what the expected minutes printed at the start are computed from.
# avx512 measured on an Intel Xeon without AMX (bench train: 8,743 without validation).
REFERENCE_SPEED = {"avx2": 4_200, "avx512": 8_500, "bf16": 12_500}
TARGET_TOKENS_PER_BATCH_TOKEN = 0.89  # real target tokens per step / train.batch_tokens, on corpus v2


def steps_for_this_machine(config: TrainConfig, device: torch.device) -> tuple[TrainConfig, str]:
    """`config` with the max_steps of this machine's CPU class (train.max_steps_by_cpu_class), and a
    line saying which class, which steps and about how many minutes they take."""
    if device.type != "cpu":
        return config, f"{device.type}: {config.max_steps:,} steps (train.max_steps)"
    name = cpu_class()
    steps = config.steps_for(name)
    source = f"train.max_steps_by_cpu_class.{name}" if name in config.max_steps_by_cpu_class else "train.max_steps"
    minutes = steps * config.batch_tokens * TARGET_TOKENS_PER_BATCH_TOKEN / REFERENCE_SPEED[name] / 60
    line = (f"CPU class {name} ({CPU_CLASS_DESCRIPTIONS[name]}): {steps:,} steps ({source}), about "
            f"{minutes:.0f} minutes on 2 cores of this class with the default model")
    return dataclasses.replace(config, max_steps=steps), line


class Trainer:
    """One training run: `__init__` sets up the process, data, model, optimizer, resumed position and
    reporting; `run` trains until a stopping rule says so and validates, checkpoints and averages."""

    def __init__(self, params: Params, paths: TrainPaths, resume: bool, reverse: bool = False) -> None:
        self.paths = paths
        self.device, self.world = start_process(params.train)
        self.config, steps_line = steps_for_this_machine(params.train, self.device)
        self.data = TrainingData.load(self.config, paths, reverse, params.backtranslation.weight)
        self.model = Seq2Seq(params.model, self.data.source_vocab_size,
                             self.data.tokenizer.target.get_piece_size()).to(self.device)
        self.optimizer = make_optimizer(self.model, self.config)
        self.fingerprint = batch_fingerprint(self.config, self.data.train, self.data.weights)
        self.last_path, self.best_path = paths.model_dir / "last.pt", paths.model_dir / "best.pt"
        self.progress = self._resume() if resume else self._start_afresh()
        self.trained = self.model if self.world.world == 1 else torch.nn.parallel.DistributedDataParallel(self.model)
        self.reporter = Reporter(paths, self.config, self.world, resume, self.model, self.device, self.progress.step)
        if self.world.is_main:
            self.reporter.write(steps_line)

    def _resume(self) -> Progress:
        progress = _restore(self.last_path, self.model, self.optimizer, self.world, self.fingerprint)
        # best.pt may hold an average that beat the best single model last.pt knows of; keep it unless beaten.
        progress.best_chrf = max(progress.best_chrf, recorded_valid_chrf(self.best_path))
        return progress

    def _start_afresh(self) -> Progress:
        if self.world.is_main:  # a stale last.pt must not be resumed later, nor old snapshots averaged in
            for stale in [self.last_path, *self.paths.model_dir.glob(SNAPSHOT_PATTERN)]:
                stale.unlink(missing_ok=True)
        return Progress()

    def run(self) -> Progress:
        """Train, then average the kept snapshots; Ctrl-C or SIGTERM saves last.pt and re-raises."""
        self.model.train()
        self.run_started = time.perf_counter()
        self.started = self.run_started - self.progress.seconds  # of the whole training, resumed parts included
        try:
            with StopSignal() as stop:
                self._train_epochs(stop)
            if self.config.average_checkpoints and self.world.is_main:
                _try_average(self.paths.model_dir, self.model, self.progress, self._save_weights,
                             self._validate_model, self.reporter)
        except StopRequested:
            if self.world.is_main:
                self._save_training_state(self.last_path)
                self.reporter.write(f"interrupted at step {self.progress.step}: saved {self.last_path}; "
                                    "continue with `seq2seq train --resume`")
            raise
        finally:
            self.reporter.close()
            self.world.close()
        self.progress.seconds = time.perf_counter() - self.started
        return self.progress

    def _train_epochs(self, stop: StopSignal) -> None:
        """Steps until max_steps, max_minutes or early stopping, or else to the end of max_epochs."""
        progress = self.progress
        if progress.step >= self.config.max_steps:
            return
        while progress.epoch < self.config.max_epochs:
            batches = self.data.epoch_batches(self.config, progress.epoch, self.world.world)
            for first in step_starts(progress.batches_done, len(batches), self.world.world):
                if self.world.any(stop.requested):
                    raise StopRequested
                self._step(batches, first)
                if self._validate_if_due():
                    return
            progress.epoch, progress.batches_done = progress.epoch + 1, 0
        if progress.step % self.config.valid_every != 0:
            self._validate()  # max_epochs ended between validations

    def _step(self, batches: list[np.ndarray], first: int) -> None:
        """Train on the step's batches `first`, `first + 1`, ..., one per rank."""
        progress = self.progress
        batch = self._training_batch(batches[first + self.world.rank]).to(self.device)
        lr = learning_rate(self.config, progress.step + 1, progress.lr_scale)
        loss_sum, tokens, all_tokens = train_step(self.trained, self.optimizer, batch, lr, self.world, self.config,
                                                  self.device)
        progress.step += 1
        progress.batches_done = first + self.world.world
        progress.target_tokens += int(all_tokens)
        self.reporter.step(progress, loss_sum, tokens, all_tokens, lr)

    def _training_batch(self, indices: np.ndarray) -> Batch:
        """The batch of these pairs of the epoch's data (sampled segmentations when subword sampling is
        on), with word dropout when it is on (training input only: validation, evaluate and translate
        see the plain segmentation)."""
        config, data = self.config, self.data
        batch = collate(data.epoch_data(config, self.progress.epoch), indices)
        if config.word_dropout > 0:
            first_tag_id = data.domains.first_tag_id if data.domains else None
            batch.source = drop_words(batch.source, config.word_dropout, first_tag_id)
        return batch

    def _validate_if_due(self) -> bool:
        """Validate every `valid_every` steps and at the last step; True when training is to stop."""
        config = self.config
        elapsed = time.perf_counter() - self.run_started  # a resumed run gets max_minutes of its own
        time_up = config.max_minutes > 0 and self.world.any(elapsed >= config.max_minutes * 60)
        last_step = self.progress.step >= config.max_steps or time_up
        if self.progress.step % config.valid_every == 0 or last_step:
            return self._validate() or last_step
        return False

    def _validate(self) -> bool:
        """Validate, log and save (rank 0); True on every rank when early stopping says to stop."""
        progress, config = self.progress, self.config
        should_stop = False
        if self.world.is_main:
            scores = self._validate_model()
            minutes = (time.perf_counter() - self.started) / 60
            improved = scores["chrf"] > progress.best_chrf
            if improved:
                progress.best_chrf, progress.best_step = scores["chrf"], progress.step
                progress.validations_without_gain = 0
            else:
                progress.validations_without_gain += 1
                if config.schedule == "plateau":
                    progress.lr_scale *= 0.5
            progress.history.append({"step": progress.step, "minutes": round(minutes, 2), **scores})
            self.reporter.validation(progress, scores, minutes)
            self._save_training_state(self.last_path)
            if improved:
                self._save_weights(self.best_path, summary={"step": progress.step, "valid_chrf": scores["chrf"]})
            if config.average_checkpoints:
                keep_snapshot(self.paths.model_dir, progress.step, config.average_checkpoints, self._save_weights)
            should_stop = 0 < config.patience <= progress.validations_without_gain
        # Every rank must follow rank 0's decisions, or the model copies drift apart.
        should_stop, progress.lr_scale = self.world.broadcast([float(should_stop), progress.lr_scale])
        return bool(should_stop)

    def _validate_model(self) -> dict[str, float]:
        return validate(self.model, self.data.valid, self.data.references, self.data.tokenizer, self.config,
                        self.device)

    def _save_training_state(self, path: Path) -> None:
        """Weights plus everything `--resume` needs."""
        self.progress.seconds = time.perf_counter() - self.started
        state = {
            "progress": vars(self.progress),
            "optimizer": self.optimizer.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": _numpy_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None},
            "batch_fingerprint": self.fingerprint,
        }
        save_checkpoint(path, self.model, self.data.tokenizer, self.config.max_length, state, self.data.domains)

    def _save_weights(self, path: Path, summary: dict | None = None) -> None:
        """Weights only (small); `summary` is what `serve` reports of the model."""
        save_checkpoint(path, self.model, self.data.tokenizer, self.config.max_length, domains=self.data.domains,
                        summary=summary)


def _read_sources(paths: TrainPaths, pairs: int) -> SentenceSources:
    """Each encoded train pair's source name (`train.source` of the prepared data)."""
    sources = read_sentence_sources(paths.prepared_dir / "train.source")
    if len(sources) != pairs:
        raise UserError(f"{paths.prepared_dir}/train.source has {len(sources)} lines for {pairs} "
                        "encoded pairs; rerun the pipeline (`dvc repro`)")
    return sources


def _domain_control(config: TrainConfig, sources: SentenceSources | None, tokenizer: Tokenizer,
                    train_data: ParallelData, valid_data: ParallelData) -> tuple[Domains | None, np.ndarray | None]:
    """Put domain tags on the train and valid data (valid gets the default domain's tag), and return
    the `Domains` (None without tags) and each train sentence's sampling weight (None: all 1)."""
    if sources is None or (not config.domain_tags and not config.source_weights):
        return None, None
    weights = sentence_weights(sources, config.source_weights) if config.source_weights else None
    if not config.domain_tags:
        return None, weights
    domains = Domains(config.domains, config.default_domain, first_tag_id=tokenizer.source.get_piece_size())
    domains.check_trained(sources)
    train_data.tags = domains.tag_ids(sources)
    valid_data.tags = np.full(len(valid_data), domains.tag_id(domains.default), dtype=np.int64)
    return domains, weights


SNAPSHOT_PATTERN = "step-*.pt"


def snapshots(model_dir: Path) -> list[Path]:
    """The kept `step-NNNNNN.pt` snapshots, oldest first (by step: step-1000000 comes after step-999999)."""
    return sorted(model_dir.glob(SNAPSHOT_PATTERN), key=lambda path: int(path.stem.removeprefix("step-")))


def keep_snapshot(model_dir: Path, step: int, keep: int, save: Callable[[Path], None]) -> None:
    """Save this validation's weights as `step-NNNNNN.pt` and delete all but the last `keep` of them."""
    save(model_dir / f"step-{step:06d}.pt")
    for old in snapshots(model_dir)[:-keep]:
        old.unlink()


def recorded_valid_chrf(best_path: Path) -> float:
    """The valid chrF that `best_path` records of itself; -1 when there is no best model yet."""
    if not best_path.exists():
        return -1.0
    return float((read_checkpoint(best_path).get("summary") or {}).get("valid_chrf", -1.0))


def _try_average(model_dir: Path, model: Seq2Seq, progress: Progress, save: Callable[..., None],
                 validate_model: Callable[[], dict[str, float]], reporter: Reporter) -> None:
    """Validate the average of the kept snapshots; it becomes best.pt if it beats the best single one."""
    kept = snapshots(model_dir)
    if len(kept) < 2:
        return
    trained_weights = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    model.load_state_dict(average_weights(kept))
    scores = validate_model()
    reporter.live.summary["averaged_valid_chrf"] = scores["chrf"]
    reporter.write(f"average of {len(kept)} snapshots: valid chrF {scores['chrf']:.1f} "
                   f"(best single: {progress.best_chrf:.1f})")
    if scores["chrf"] > progress.best_chrf:
        save(model_dir / "best.pt", summary={"step": progress.step, "valid_chrf": scores["chrf"],
                                             "averaged_snapshots": len(kept)})
        progress.best_chrf = scores["chrf"]
        reporter.live.summary["best_valid_chrf"] = scores["chrf"]
    model.load_state_dict(trained_weights)


def _restore(path: Path, model: Seq2Seq, optimizer: torch.optim.Optimizer, world: Distributed,
             fingerprint: dict[str, str]) -> Progress:
    """Load `path`'s weights, optimizer, position and random generators (rank 0's: ranks > 0 are
    reseeded from the seed, their rank and the step, so they draw other dropout masks than an
    uninterrupted run would)."""
    content = read_checkpoint(path)
    state = content.get("training_state")
    if not state:
        raise UserError(f"{path} holds no training state to resume from")
    check_fingerprint(path, state.get("batch_fingerprint"), fingerprint)
    load_weights(model, content["weights"], path)
    try:
        optimizer.load_state_dict(state["optimizer"])
    except ValueError as error:
        raise UserError(f"{path}: optimizer state does not fit params.yaml ({error})") from None
    progress = Progress(**state["progress"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    np.random.set_state(_numpy_rng_state(state["rng"]["numpy"]))
    if state["rng"].get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    if world.rank > 0:  # rank 0's generator was saved; the others only need to differ from it
        torch.manual_seed(torch.initial_seed() + world.rank + progress.step)
    return progress


def _numpy_rng_state(saved: list | None = None) -> list | tuple:
    """numpy's global generator state as plain data for a checkpoint (no `saved`), or `saved` back
    as the tuple `np.random.set_state` takes: its 624-word key is an ndarray, which a safe
    (`weights_only`) checkpoint cannot hold."""
    if saved is None:
        name, key, position, has_gauss, cached_gaussian = np.random.get_state()
        return [name, key.tolist(), position, has_gauss, cached_gaussian]
    name, key, position, has_gauss, cached_gaussian = saved
    return name, np.array(key, dtype=np.uint32), position, has_gauss, cached_gaussian
