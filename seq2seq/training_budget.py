"""How many steps a training run takes on this machine, where that number comes from, and about how
many minutes the default model needs for them on this CPU class.

`train.max_steps` wins wherever it is a number; `auto` takes this machine's entry in
`train.max_steps_by_cpu_class` (a CPU class of `seq2seq.device.cpu_class`, or `cuda` on a GPU), so
that the default trains about as long on every class (README, "Timings by CPU class").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from seq2seq.config import TrainConfig
from seq2seq.device import CPU_CLASS_DESCRIPTIONS, cpu_class

# Minutes the default params (batch_tokens 4096, validation included) took on 2 cores, by CPU class,
# with the class's default steps; an estimate for other steps or batch sizes scales them linearly.
# bf16: Intel Xeon with AMX 17.1 and 19.4, AMD EPYC with AVX512-BF16 21.5; avx512: three Intel Xeons
# without AMX; avx2: emulated on an Intel Xeon 10.0 and 11.3, an AMD EPYC with AVX2 alone about 24
# (projected from its measured speed).
MEASURED_MINUTES = {"bf16": (3600, (17.1, 19.4, 21.5)), "avx512": (2100, (14.5, 11.7, 12.3)),
                    "avx2": (1650, (10.0, 11.3, 24.0))}
MEASURED_BATCH_TOKENS = 4096


@dataclass(frozen=True)
class StepBudget:
    """This machine's steps, the setting they come from (as recorded in dvclive/metrics.json) and the
    line the stage prints about them."""

    steps: int
    source: str
    line: str


def expected_minutes(name: str, steps: int, batch_tokens: int) -> str:
    """"17 to 22 minutes": the range that the measured machines of CPU class `name` would take for
    `steps` steps of `batch_tokens` with the default model."""
    reference_steps, minutes = MEASURED_MINUTES[name]
    scale = steps * batch_tokens / (reference_steps * MEASURED_BATCH_TOKENS)
    low, high = math.floor(min(minutes) * scale), math.ceil(max(minutes) * scale)
    if high <= 1:
        return "under a minute"
    return f"about {low} minutes" if low == high else f"{low} to {high} minutes"


def step_budget(config: TrainConfig, device: torch.device, setting: str = "train.max_steps") -> StepBudget:
    """The steps on `device`: `config.max_steps` where it is a number (`setting` names where that number
    was set), else this machine class's entry in train.max_steps_by_cpu_class."""
    machine = cpu_class() if device.type == "cpu" else device.type
    if config.max_steps == "auto":
        steps, source = config.max_steps_by_cpu_class[machine], f"train.max_steps_by_cpu_class.{machine}"
        entry = "the cuda entry" if machine == "cuda" else f"class {machine}'s entry"
        said = f"{steps:,} steps: {entry} in train.max_steps_by_cpu_class (train.max_steps is auto)"
    else:
        steps, source = config.max_steps, setting
        ignored = " (train.max_steps_by_cpu_class applies only while train.max_steps is auto)" \
            if config.max_steps_by_cpu_class and setting == "train.max_steps" else ""
        said = f"{steps:,} steps: {setting}{ignored}"
    if device.type != "cpu":
        return StepBudget(steps, source, f"{device.type}: {said}")
    return StepBudget(steps, source, f"CPU class {machine} ({CPU_CLASS_DESCRIPTIONS[machine]}): {said}; "
                                     f"{expected_minutes(machine, steps, config.batch_tokens)} on 2 cores of "
                                     "this class with the default model")

