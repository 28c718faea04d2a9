"""Measurement: sweep files (runs of params overrides) queued as DVC experiments (`seq2seq bench queue`).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

from seq2seq.errors import UserError


def sweep_overrides(sweep: dict) -> dict[str, list[str]]:
    """Each run of a sweep file as DVC's `-S` overrides of params.yaml.

    A sweep file holds `base` (overrides shared by every run) and `runs` (name -> overrides), each
    a mapping of params.yaml sections to keys and values; a run's section keys replace the base's.
    `++key=value` sets the whole value, new keys and mappings too (Hydra's override syntax).
    """
    import yaml

    def flow(value: object) -> str:  # a YAML value on one line: 0.1, true, {pydocs: 0.1, bible: 0.1}
        return yaml.safe_dump(value, default_flow_style=True, sort_keys=False).strip().removesuffix("\n...")

    base = sweep.get("base") or {}
    overrides = {}
    for name, run in (sweep.get("runs") or {}).items():
        run = run or {}
        merged = {section: {**base.get(section, {}), **run.get(section, {})} for section in {**base, **run}}
        overrides[name] = [f"++{section}.{key}={flow(value)}" for section in sorted(merged)
                           for key, value in merged[section].items()]
    return overrides


def queue_sweep(sweep_path: Path, dry_run: bool = False) -> Iterator[str]:
    """Queue each run of a sweep file as a DVC experiment (`dvc exp run --queue`), named after the
    run; yield each command. `dvc queue start --jobs N` then runs them and `dvc exp show` compares."""
    import shlex

    import yaml

    try:
        sweep = yaml.safe_load(sweep_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise UserError(f"cannot read the sweep {sweep_path}: {error}") from None
    if not isinstance(sweep, dict) or not isinstance(sweep.get("runs"), dict):
        raise UserError(f"{sweep_path}: a sweep holds `runs` (name -> params overrides) and optionally `base`")
    for name, overrides in sweep_overrides(sweep).items():
        command = ["dvc", "exp", "run", "--queue", "--name", name, *(part for o in overrides for part in ("-S", o))]
        yield shlex.join(command)
        if not dry_run:
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise UserError(f"dvc could not queue {name}: {(result.stderr or result.stdout).strip()[-300:]}")
