"""The GPU recipe against the default on one GPU, in one call of a lent machine (docs/gpu.md).

Here, where the data is (after `dvc pull` and `dvc repro encode`), once:

    python bench/gpu_recipe.py --prepare [--data /path/to/checkout]

copies into `.gpu/` (git-ignored through .git/info/exclude) what a bare GPU machine lacks: the
encoded data, the valid references and train.source, the tokenizer, and the pure-Python packages that
training imports and its image has not (dvclive and DVC's parts, `PACKAGES`): about 45 MiB, under
the 64 MiB that travels with a call. Then, on the GPU machine, with `.gpu` carried:

    python3 bench/gpu_recipe.py [--minutes 3]

trains the default (`train.recipe=off`) and then the recipe (`train.recipe=auto`) on cuda, each
stopped after `--minutes` by train.max_minutes (about 8 minutes for both at 3), and writes to $OUT:
summary.md (steps per minute and the minutes the class's 16,000 steps would take, target tokens/s,
how busy the GPU was, peak GPU memory, valid chrF by step), each run's log and metrics.json.
`--dry-run` prints what it would run, and needs neither GPU, data nor packages.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
# What the GPU machine's image lacks of what `seq2seq train` imports (listed from this venv's
# sys.modules after a training run, less the image's package list in .library/device/KINDS.md);
# all pure Python, or with pure fallbacks for the compiled parts (dulwich) that the copy leaves out.
PACKAGES = ("diskcache", "dpath", "dulwich", "dvc", "dvc_data", "dvc_http", "dvc_objects", "dvc_render",
            "dvc_studio_client", "dvclive", "flatten_dict", "flufl", "funcy", "pathspec", "public", "pydot",
            "pygtrie.py", "ruamel", "scmrepo", "socks.py", "sqltrie", "voluptuous", "wcwidth", "zc")
DATA = ("data/encoded", "data/prepared/valid.ko", "data/prepared/train.source", "models/tokenizer")
TRAVEL_LIMIT_MIB = 60  # a call carries 64 MiB, the checkout's tracked files included
# Runs `seq2seq` with the copied packages after the image's own, so that the image's versions win.
LAUNCHER = "import sys; sys.path.append(sys.argv.pop(1)); from seq2seq.cli import main; main()"


def prepare(data_root: Path, gpu_dir: Path) -> int:
    """Copy the data of `data_root` and this environment's copies of `PACKAGES` into `gpu_dir`;
    returns its size in bytes."""
    import dvclive

    site = Path(dvclive.__file__).resolve().parent.parent
    shutil.rmtree(gpu_dir, ignore_errors=True)
    for part in DATA:
        source, target = data_root / part, gpu_dir / part
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
    skip = shutil.ignore_patterns("__pycache__", "tests", "*.cpython-*.so")  # abi3 parts work on any Python 3
    for package in PACKAGES:
        source, target = site / package, gpu_dir / "site" / package
        if source.is_dir():
            shutil.copytree(source, target, ignore=skip)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    exclude = ROOT / ".git/info/exclude"
    if gpu_dir.resolve().parent == ROOT and exclude.parent.is_dir():
        lines = exclude.read_text().splitlines() if exclude.exists() else []
        if f"/{gpu_dir.name}/" not in lines:
            exclude.write_text("\n".join([*lines, f"/{gpu_dir.name}/"]) + "\n")
    return sum(path.stat().st_size for path in gpu_dir.rglob("*") if path.is_file())


def runs(minutes: float, device: str) -> dict[str, dict[str, object]]:
    """Run name -> the params overrides (dotted keys) that make it: the recipe's own max_minutes is
    the one that counts where it applies (a recipe's keys win over train's)."""
    both = {"train.device": device, "train.max_minutes": minutes}
    return {"default": {**both, "train.recipe": "off"},
            "recipe": {**both, "train.recipe": "auto", "recipes.cuda.train.max_minutes": minutes}}


def write_params(base: Path, overrides: dict[str, object], path: Path) -> None:
    """`base` (a params.yaml) with each dotted key of `overrides` set, written to `path`."""
    raw = yaml.safe_load(base.read_text(encoding="utf-8"))
    for key, value in overrides.items():
        *parents, name = key.split(".")
        section = raw
        for parent in parents:
            section = section.setdefault(parent, {})
        section[name] = value
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")


def train_command(python: str, gpu_dir: Path, params: Path, run_dir: Path) -> list[str]:
    return [python, "-c", LAUNCHER, str(gpu_dir / "site"), "train", "--params", str(params),
            "--encoded", str(gpu_dir / "data/encoded"), "--prepared", str(gpu_dir / "data/prepared"),
            "--tokenizer", str(gpu_dir / "models/tokenizer"), "--model-dir", str(run_dir / "model"),
            "--live", str(run_dir / "live"), "--synthetic", str(run_dir / "no-synthetic-pairs")]


def params_command(python: str, gpu_dir: Path, params: Path, device: str) -> list[str]:
    """`seq2seq params` of the run: the effective params in its log (`--class cuda` on a GPU)."""
    machine = ["--class", "cuda"] if device == "cuda" else []
    return [python, "-c", LAUNCHER, str(gpu_dir / "site"), "params", "--params", str(params), *machine]


def summary_row(name: str, metrics: dict, curve: list[dict[str, str]], wall_minutes: float) -> str:
    """One run's row of summary.md."""
    steps, minutes = metrics.get("step", 0), metrics.get("minutes") or wall_minutes
    per_minute = steps / minutes if minutes else 0.0
    full = metrics.get("max_steps", 0)
    cells = [name, metrics.get("recipe", "?"), f"{steps:,} of {full:,}", f"{minutes:.1f}", f"{per_minute:,.0f}",
             f"{full / per_minute:.1f}" if per_minute else "–", f"{metrics.get('target_tokens_per_second', 0):,}",
             str(metrics.get("gpu_busy_percent", "–")), str(metrics.get("gpu_peak_allocated_mib", "–")),
             str(metrics.get("gpu_peak_reserved_mib", "–")),
             f"{metrics.get('best_valid_chrf', -1):.2f} @ {metrics.get('best_step', 0)}",
             ", ".join(f"{float(row['chrf']):.1f}" for row in curve)]
    return "| " + " | ".join(cells) + " |"


SUMMARY_HEADER = ("| run | recipe | steps | min | steps/min | min for all steps | target tok/s | GPU busy % "
                  "| GPU peak alloc MiB | GPU peak reserved MiB | best valid chrF @ step | valid chrF by validation |\n"
                  + "|---" * 12 + "|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prepare", action="store_true", help="Gather data and packages into --gpu-dir (here).")
    parser.add_argument("--dry-run", action="store_true", help="Print the commands; run nothing.")
    parser.add_argument("--data", type=Path, default=ROOT, help="The checkout whose data --prepare copies.")
    parser.add_argument("--gpu-dir", type=Path, default=ROOT / ".gpu", help="What travels to the GPU machine.")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml", help="The params both runs start from.")
    parser.add_argument("--minutes", type=float, default=3.0, help="Training minutes of each run.")
    parser.add_argument("--device", default="cuda", help="cuda; cpu only to try the script itself.")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/gpu-recipe")),
                        help="Where the figures go (default: $OUT).")
    args = parser.parse_args()
    if args.prepare:
        size = prepare(args.data, args.gpu_dir)
        print(f"{args.gpu_dir}: {size / 2**20:.1f} MiB (a call carries {TRAVEL_LIMIT_MIB} MiB of it at most)")
        sys.exit(0 if size < TRAVEL_LIMIT_MIB * 2**20 else 1)
    python, planned = sys.executable, runs(args.minutes, args.device)
    if args.dry_run:
        work = Path("$WORK")
        for name, overrides in planned.items():
            params = work / f"{name}.yaml"
            print(f"# {name}: {args.params} with " + " ".join(f"{key}={value}" for key, value in overrides.items()))
            for command in (params_command(python, args.gpu_dir, params, args.device),
                            train_command(python, args.gpu_dir, params, work / name)):
                print(" ".join(command[:2] + ["'...'"] + command[3:]))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-recipe-"))  # checkpoints and curves: $OUT takes 8 files at most
    rows = []
    for name, overrides in planned.items():
        params, run_dir = work / f"{name}.yaml", work / name
        write_params(args.params, overrides, params)
        with open(args.out / f"{name}.log", "w", encoding="utf-8") as log:
            shown = params_command(python, args.gpu_dir, params, args.device)
            subprocess.run(shown, stdout=log, stderr=log, check=False)
            log.flush()
            started = time.perf_counter()
            result = subprocess.run(train_command(python, args.gpu_dir, params, run_dir), stdout=log, stderr=log,
                                    check=False, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wall = (time.perf_counter() - started) / 60
        metrics_path = run_dir / "live/metrics.json"
        if result.returncode != 0 or not metrics_path.exists():
            rows.append(f"| {name} | failed (exit {result.returncode}): see {name}.log |" + " |" * 10)
            continue
        shutil.copyfile(metrics_path, args.out / f"{name}.json")
        curve_path = run_dir / "live/plots/metrics/valid/chrf.tsv"
        curve = list(csv.DictReader(curve_path.open(encoding="utf-8"), delimiter="\t")) if curve_path.exists() else []
        rows.append(summary_row(name, json.loads(metrics_path.read_text()), curve, wall))
    machine = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout.strip() \
        if shutil.which("nvidia-smi") else args.device
    (args.out / "summary.md").write_text(f"{machine}; {args.minutes} minutes each, one after the other\n\n"
                                         f"{SUMMARY_HEADER}\n" + "\n".join(rows) + "\n", encoding="utf-8")
    print((args.out / "summary.md").read_text())


if __name__ == "__main__":
    main()
