"""What a training run trains on this machine: its machine class (a CPU class of
`seq2seq.device.cpu_class`, or `cuda` on a GPU), the params with that class's recipe applied, how
many steps it takes, where that number comes from, and about how many minutes the default model needs
for them on this CPU class.

`train.max_steps` wins wherever it is a number; `auto` takes this machine's entry in
`train.max_steps_by_cpu_class`, so that the default trains about as long on every class
(docs/training.md). Where the class has a recipe (`recipes.cuda`) and `train.recipe` is `auto`, its
values replace the model and train values it names (docs/gpu.md); the reverse model trains
params.yaml's as written, for its own few steps.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import yaml

from seq2seq.config import RECIPE_SECTIONS, Params, TrainConfig, apply_recipe
from seq2seq.device import CPU_CLASS_DESCRIPTIONS, cpu_class, pick_device

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


def machine_class(device: torch.device) -> str:
    """The machine class that training on `device` takes its steps and recipe for: the CPU's class
    (avx2, avx512, bf16) on a CPU, `cuda` on a GPU."""
    return cpu_class() if device.type == "cpu" else device.type


def this_machine_class(config: TrainConfig) -> str:
    """The class of the device that `config.device` picks here (`auto`: a GPU if torch sees one)."""
    return machine_class(pick_device(config.device))


def step_budget(config: TrainConfig, machine: str | torch.device, setting: str = "train.max_steps") -> StepBudget:
    """The steps on machine class `machine` (or on a device, of its class): `config.max_steps` where it
    is a number (`setting` names where that number was set), else the class's entry in
    train.max_steps_by_cpu_class."""
    if isinstance(machine, torch.device):
        machine = machine_class(machine)
    if config.max_steps == "auto":
        steps, source = config.max_steps_by_cpu_class[machine], f"train.max_steps_by_cpu_class.{machine}"
        entry = "the cuda entry" if machine == "cuda" else f"class {machine}'s entry"
        said = f"{steps:,} steps: {entry} in train.max_steps_by_cpu_class (train.max_steps is auto)"
    else:
        steps, source = config.max_steps, setting
        ignored = " (train.max_steps_by_cpu_class applies only while train.max_steps is auto)" \
            if config.max_steps_by_cpu_class and setting == "train.max_steps" else ""
        said = f"{steps:,} steps: {setting}{ignored}"
    if machine not in CPU_CLASS_DESCRIPTIONS:
        return StepBudget(steps, source, f"{machine}: {said}")
    return StepBudget(steps, source, f"CPU class {machine} ({CPU_CLASS_DESCRIPTIONS[machine]}): {said}; "
                                     f"{expected_minutes(machine, steps, config.batch_tokens)} on 2 cores of "
                                     "this class with the default model")



AS_WRITTEN = "params.yaml's model and train as written"


@dataclass(frozen=True)
class RunParams:
    """The params a training run trains with on machine class `machine`: params.yaml's, with the class's
    recipe applied where it applies. `recipe` is the applied recipe's class, `off` (the class has one,
    but train.recipe is off) or `none` (the class has none, or the run trains the reverse model);
    `changed` maps each key the recipe changed (section.key) to (params.yaml's value, the recipe's)."""

    params: Params
    machine: str
    recipe: str
    changed: dict[str, tuple[Any, Any]]
    reason: str  # why the recipe applies or not, as the block printed at the start says

    def block(self) -> str:
        """What the run prints at its start: the class, whether a recipe applies, and the keys it changed."""
        lines = [f"params for class {self.machine}: {self.reason}"]
        lines += [f"  {key}: {before} -> {after}" for key, (before, after) in self.changed.items()]
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        """For dvclive/metrics.json and best.pt: the recipe, and the values of the keys it changed by
        section (`{"model": {"dropout": 0.3}, ...}`); `recipe_params` only where a recipe applied."""
        if not self.changed:
            return {"recipe": self.recipe}
        by_section: dict[str, dict[str, Any]] = {}
        for key, (_, after) in self.changed.items():
            section, name = key.split(".", 1)
            by_section.setdefault(section, {})[name] = after
        return {"recipe": self.recipe, "recipe_params": by_section}


def run_params(params: Params, machine: str, reverse: bool = False) -> RunParams:
    """The params of a training run on machine class `machine` (`reverse`: of the reverse model, which
    takes no recipe: its few steps are not the recipe's)."""
    has_recipe = machine in params.recipes.by_class()
    if not has_recipe or reverse or params.train.recipe == "off":
        if reverse and has_recipe:
            reason = f"the reverse model trains {AS_WRITTEN} (recipes.{machine} is for the train stage)"
        elif has_recipe:
            reason = f"recipes.{machine} is off (train.recipe: off): {AS_WRITTEN}"
        else:
            reason = f"no recipe for this class: {AS_WRITTEN}"
        return RunParams(params, machine, "off" if has_recipe and not reverse else "none", {}, reason)
    applied = apply_recipe(params, machine)
    changed = {f"{section}.{name}": (before, getattr(getattr(applied, section), name))
               for section in RECIPE_SECTIONS
               for name, before in dataclasses.asdict(getattr(params, section)).items()
               if getattr(getattr(applied, section), name) != before}
    reason = f"recipes.{machine} applied (train.recipe: auto), changing {len(changed)} keys" + (":" if changed else "")
    return RunParams(applied, machine, machine, changed, reason)


def effective_params_yaml(params: Params, machine: str) -> str:
    """The params a training run of the train stage trains with on machine class `machine`, as YAML:
    every section but the recipes (applied), with train.max_steps this class's number. Comments at
    the top say what the recipe changed. `seq2seq train --params` reads it as it is."""
    run = run_params(params, machine)
    budget = step_budget(run.params.train, machine)
    train = dataclasses.replace(run.params.train, max_steps=budget.steps)
    effective = dataclasses.replace(run.params, train=train)
    sections = {name: dataclasses.asdict(getattr(effective, name)) for name in dataclasses.asdict(effective)
                if name != "recipes"}
    header = [f"# {line}" for line in run.block().splitlines()]
    header.append(f"# train.max_steps: {budget.steps} ({budget.source})")
    return "\n".join(header) + "\n" + yaml.safe_dump(sections, sort_keys=False, allow_unicode=True)
