"""Stage 4, `train`: fit the encoder-decoder on the encoded train split; this module is the loop.

Teacher forcing, label-smoothed cross entropy over real tokens, Adam(W), gradient clipping, a
warm-up learning-rate schedule, token-count batches from length buckets, validation every
`valid_every` steps (loss, perplexity, greedy chrF on the first `valid_sentences` valid pairs),
optional early stopping and checkpoint averaging. `models/model/best.pt` (best valid chrF) and
`last.pt` (everything `--resume` needs) are written atomically; Ctrl-C or SIGTERM saves `last.pt`
and stops cleanly.

Runs unchanged under `torchrun --nproc_per_node N`: every rank trains on its own share of each
step's batches through DistributedDataParallel, and rank 0 alone validates and writes files.

The parts: `training_data` (what is read, each epoch's batches), `training_step` (one update),
`training_budget` (how many steps on this machine), `training_checkpoints` (last.pt, best.pt,
snapshots, resume), `training_report` (progress bar, dvclive), `training_process` (device, ranks,
seeds, stop signals).
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import sacrebleu
import torch

from seq2seq.config import ModelConfig, Params, TrainConfig
from seq2seq.data import ParallelData, collate
from seq2seq.model import Seq2Seq
from seq2seq.search import translate_ids
from seq2seq.tokenizer import Tokenizer
from seq2seq.training_budget import RunParams, StepBudget, run_params, step_budget, this_machine_class
from seq2seq.training_checkpoints import Progress, RunCheckpoints, batch_fingerprint
from seq2seq.training_data import TrainingData, TrainPaths
from seq2seq.training_process import Distributed, StopRequested, StopSignal, start_process
from seq2seq.training_report import Reporter
from seq2seq.training_step import learning_rate, make_optimizer, train_on_batch


def train(params: Params, paths: TrainPaths | None = None, resume: bool = False, reverse: bool = False,
          machine: str | None = None) -> Progress:
    """Run the training stage; returns the final `Progress`. `reverse`: train Korean->English on the
    same data, without synthetic pairs (the back-translation model; its steps are
    `backtranslation.reverse_steps`, which `seq2seq.reverse` puts in `train.max_steps`). `machine`:
    the machine class whose steps and recipe the run takes (default: this device's class)."""
    return Trainer(params, paths or TrainPaths(), resume, reverse, machine).run()


def step_starts(batches_done: int, batch_count: int, world_size: int) -> range:
    """Where each remaining step of an epoch starts in the epoch's batch list of `batch_count`.

    A step takes `world_size` consecutive batches, one per rank, from `batches_done` on; fewer than
    `world_size` batches left at the end are skipped. `batches_done` may come from a run with another
    world size (any value, odd or even): every step still lies wholly inside the list.
    """
    steps = max(batch_count - batches_done, 0) // world_size
    return range(batches_done, batches_done + steps * world_size, world_size)


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


@dataclasses.dataclass
class RunSetup:
    """What a training run works with, before its first step: the device and ranks (seeded), the params
    of this machine's class (its recipe applied), its steps, the config with them as `max_steps` (what
    the cool-down reads), the training data, the model and its optimizer."""

    device: torch.device
    world: Distributed
    run_params: RunParams
    budget: StepBudget
    config: TrainConfig
    data: TrainingData
    model: Seq2Seq
    optimizer: torch.optim.Optimizer


def set_up_run(params: Params, paths: TrainPaths, reverse: bool = False, model: ModelConfig | None = None,
               machine: str | None = None) -> RunSetup:
    """The set-up of a run of `params` on the data of `paths` (`reverse`: Korean->English), with
    `model` in place of `params.model` if given, on machine class `machine` (default: the class of
    the device that train.device picks), whose recipe applies (`training_budget.run_params`). The
    trainer and the training benchmarks share it, so that a benchmark times the steps the trainer takes."""
    chosen = run_params(params, machine or this_machine_class(params.train), reverse)
    params = chosen.params
    device, world = start_process(params.train)
    budget = step_budget(params.train, chosen.machine,
                         "backtranslation.reverse_steps" if reverse else "train.max_steps")
    config = dataclasses.replace(params.train, max_steps=budget.steps)
    data = TrainingData.load(config, paths, reverse, params.backtranslation.weight)
    seq2seq = Seq2Seq(model or params.model, data.source_vocab_size, data.tokenizer.target.get_piece_size()).to(device)
    return RunSetup(device, world, chosen, budget, config, data, seq2seq, make_optimizer(seq2seq, config))


class Trainer:
    """One training run: `__init__` sets up the process, data, model, optimizer, checkpoints (resumed or
    cleared) and reporting; `run` trains until a stopping rule says so, validating, checkpointing and
    at the end averaging snapshots."""

    def __init__(self, params: Params, paths: TrainPaths, resume: bool, reverse: bool = False,
                 machine: str | None = None) -> None:
        self.paths, self.reverse = paths, reverse
        setup = set_up_run(params, paths, reverse, machine=machine)
        self.device, self.world, self.config = setup.device, setup.world, setup.config
        self.data, self.model, self.optimizer = setup.data, setup.model, setup.optimizer
        self.checkpoints = RunCheckpoints(paths.model_dir, self.model, self.optimizer, self.data.tokenizer,
                                          self.config.max_length, self.data.domains,
                                          batch_fingerprint(self.config, self.data.train, self.data.weights),
                                          self.device, setup.run_params.summary() if setup.run_params.changed else {})
        if resume:
            self.progress = self.checkpoints.restore(self.world)
        else:
            if self.world.is_main:
                self.checkpoints.clear()
            self.progress = Progress()
        self.trained = self.model if self.world.world == 1 else torch.nn.parallel.DistributedDataParallel(self.model)
        self.reporter = Reporter(paths.live_dir, setup.budget, setup.run_params, self.world, resume, self.model,
                                 self.device, self.progress.step)

    def run(self) -> Progress:
        """Train, then average the kept snapshots; Ctrl-C or SIGTERM saves last.pt and re-raises."""
        self.model.train()
        self.run_started = time.perf_counter()
        self.started = self.run_started - self.progress.seconds  # of the whole training, resumed parts included
        try:
            with StopSignal() as stop:
                self._train_epochs(stop)
            if self.config.average_checkpoints and self.world.is_main:
                self._average_snapshots()
        except StopRequested:
            if self.world.is_main:
                self._save_state()
                command = "seq2seq reverse --resume" if self.reverse else "seq2seq train --resume"
                self.reporter.write(f"interrupted at step {self.progress.step}: saved {self.checkpoints.last_path}; "
                                    f"continue with `{command}`")
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
                if self.world.any(stop.requested > 0):
                    raise StopRequested(stop.requested)
                self._step(batches, first)
                if self._validate_if_due():
                    return
            progress.epoch, progress.batches_done = progress.epoch + 1, 0
        if progress.step % self.config.valid_every != 0:
            self._validate()  # max_epochs ended between validations

    def _step(self, batches: list[np.ndarray], first: int) -> None:
        """Train on the step's batches `first`, `first + 1`, ..., one per rank."""
        progress = self.progress
        lr = learning_rate(self.config, progress.step + 1, progress.lr_scale)
        result = train_on_batch(self.trained, self.optimizer, self.data, progress.epoch,
                                batches[first + self.world.rank], lr, self.world, self.config, self.device)
        progress.step += 1
        progress.batches_done = first + self.world.world
        progress.target_tokens += int(result.all_tokens)
        self.reporter.step(progress, result.loss_sum, result.tokens, result.all_tokens, lr)

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
            self._save_state()
            if improved:
                self.checkpoints.save_best(progress.step, scores["chrf"])
            if config.average_checkpoints:
                self.checkpoints.keep_snapshot(progress.step, config.average_checkpoints)
            should_stop = 0 < config.patience <= progress.validations_without_gain
        # Every rank must follow rank 0's decisions, or the model copies drift apart.
        should_stop, progress.lr_scale = self.world.broadcast([float(should_stop), progress.lr_scale])
        return bool(should_stop)

    def _validate_model(self) -> dict[str, float]:
        return validate(self.model, self.data.valid, self.data.references, self.data.tokenizer, self.config,
                        self.device)

    def _average_snapshots(self) -> None:
        """Validate the average of the kept snapshots; it becomes best.pt if it beats the best single one."""
        averaged = self.checkpoints.averaged_snapshots()
        if averaged is None:
            return
        weights, count = averaged
        trained_weights = {name: tensor.clone() for name, tensor in self.model.state_dict().items()}
        self.model.load_state_dict(weights)
        chrf = self._validate_model()["chrf"]
        self.reporter.average(count, chrf, self.progress.best_chrf)
        if chrf > self.progress.best_chrf:
            self.checkpoints.save_best(self.progress.step, chrf, averaged_snapshots=count)
            self.progress.best_chrf = chrf
        self.model.load_state_dict(trained_weights)

    def _save_state(self) -> None:
        self.progress.seconds = time.perf_counter() - self.started
        self.checkpoints.save_state(self.progress)
