"""Measurement: sweep files (runs of params overrides) queued as DVC experiments (`seq2seq bench queue`).

A sweep file holds `base` (overrides shared by every run) and `runs` (name -> overrides), each a
mapping of params.yaml sections to keys and values. A run's value of a key replaces the base's, and
a value replaces params.yaml's whole, mappings too: `source_weights: {}` runs without weights.
"""

from __future__ import annotations

import shlex
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from seq2seq.config import ConfigError, Params, load_params
from seq2seq.errors import UserError

Run = dict[str, dict[str, Any]]  # section -> key -> value


def sweep_runs(sweep: dict) -> dict[str, Run]:
    """Each run of a sweep file with the base's keys it does not set itself."""
    base = sweep.get("base") or {}
    runs = {}
    for name, run in (sweep.get("runs") or {}).items():
        run = run or {}
        runs[name] = {section: {**base.get(section, {}), **run.get(section, {})} for section in {**base, **run}}
    return runs


def run_overrides(run: Run, params: dict) -> list[str]:
    """`run` as DVC's `-S` overrides of `params` (params.yaml as YAML reads it), in Hydra's syntax.

    `++key=value` sets a value, new keys too; but DVC merges a mapping into the one it replaces, key by
    key, so a mapping that params.yaml holds is first deleted (`~key`). An empty mapping is only
    deleted: every mapping in params defaults to empty, and DVC writes `key: {}` under a commented key
    as YAML that does not parse (dvc 3.67).
    """

    def flow(value: object) -> str:  # a YAML value on one line (never wrapped): 0.1, true, {pydocs: 0.1}
        dumped = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=float("inf"))
        return dumped.strip().removesuffix("\n...")

    overrides = []
    for section in sorted(run):
        held = params.get(section) or {}
        for key, value in run[section].items():
            if isinstance(value, dict) and key in held:
                overrides.append(f"~{section}.{key}")
            if value != {}:
                overrides.append(f"++{section}.{key}={flow(value)}")
    return overrides


def sweep_overrides(sweep: dict, params: dict) -> dict[str, list[str]]:
    """Each run of a sweep file (run name -> its `-S` overrides of `params`)."""
    return {name: run_overrides(run, params) for name, run in sweep_runs(sweep).items()}


def params_after(params_path: Path, overrides: list[str]) -> Params:
    """The params that a DVC experiment with these `-S` overrides runs with: DVC's own override code
    applied to a copy of `params_path`, then read as the stages read it."""
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import apply_overrides

    with tempfile.TemporaryDirectory(prefix="seq2seq-sweep-") as temp:
        copy = Path(temp) / "params.yaml"
        copy.write_text(params_path.read_text(encoding="utf-8"), encoding="utf-8")
        try:
            apply_overrides(copy, overrides)
        except InvalidArgumentError as error:
            raise ConfigError(f"{error}: {error.__cause__}".splitlines()[0]) from None
        return load_params(copy)


def queue_sweep(sweep_path: Path, dry_run: bool = False, params_path: Path = Path("params.yaml")) -> Iterator[str]:
    """Queue each run of a sweep file as a DVC experiment (`dvc exp run --queue`), named after the
    run; yield each command. `dvc queue start --jobs N` then runs them and `dvc exp show` compares.
    Every run's params are checked first, as DVC will write them: one bad run queues none."""
    try:
        sweep = yaml.safe_load(sweep_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise UserError(f"cannot read the sweep {sweep_path}: {error}") from None
    if not isinstance(sweep, dict) or not isinstance(sweep.get("runs"), dict):
        raise UserError(f"{sweep_path}: a sweep holds `runs` (name -> params overrides) and optionally `base`")
    if not params_path.exists():
        raise UserError(f"{params_path} not found: queue a sweep from the repository root")
    overrides = sweep_overrides(sweep, yaml.safe_load(params_path.read_text(encoding="utf-8")) or {})
    for name, run in overrides.items():
        try:
            params_after(params_path, run)
        except ConfigError as error:
            raise UserError(f"{sweep_path}, run {name}: {error}") from None
    for name, run in overrides.items():
        command = ["dvc", "exp", "run", "--queue", "--name", name, *(part for o in run for part in ("-S", o))]
        yield shlex.join(command)
        if not dry_run:
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise UserError(f"dvc could not queue {name}: {(result.stderr or result.stdout).strip()[-300:]}")
