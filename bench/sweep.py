"""Run several training variants side by side and tabulate valid chrF against steps.

    python bench/sweep.py SWEEP.yaml --data DIR --out DIR [--parallel N]

SWEEP.yaml holds `base` (params.yaml overrides shared by every run) and `runs` (name -> overrides).
DIR given to --data holds what the train stage reads: `encoded/`, `tokenizer/` and `prepared/`
(`valid.ko`, `train.source`); a run may name another data folder with the key `data`.
Each run trains in its own folder; `--parallel` runs several at once (on one GPU, small models
leave it mostly idle). On the 2-core CPU use `dvc exp run --queue` instead, one run at a time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import types
from pathlib import Path

import yaml


def merged(base: dict, override: dict) -> dict:
    """params `base` with `override` applied: sections merged, keys within a section replaced."""
    return {section: {**base.get(section, {}), **override.get(section, {})} for section in {**base, **override}}


def run_one(run_dir: Path) -> None:
    """Train in `run_dir` (made by `main`) and write `history.json`."""
    try:
        from dvclive import Live  # noqa: F401
    except ImportError:  # e.g. on a GPU image without it: the history below is all the sweep reads
        stub = types.ModuleType("dvclive")

        class Live:
            def __init__(self, *args, **kwargs) -> None:
                self.step, self.summary = 0, {}

            def __getattr__(self, name):
                return lambda *args, **kwargs: None

        stub.Live = Live
        sys.modules["dvclive"] = stub
    from seq2seq.config import load_params
    from seq2seq.train import TrainPaths, train

    started = time.perf_counter()
    progress = train(load_params(run_dir / "params.yaml"), TrainPaths(
        encoded_dir=run_dir / "data/encoded", prepared_dir=run_dir / "data/prepared",
        tokenizer_dir=run_dir / "data/tokenizer", model_dir=run_dir / "model", live_dir=run_dir / "live"))
    (run_dir / "history.json").write_text(json.dumps(
        {"history": progress.history, "seconds": time.perf_counter() - started,
         "target_tokens": progress.target_tokens}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, nargs="?")
    parser.add_argument("--data", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--report", action="store_true", help="Only print the table of finished runs.")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return run_one(args.one)

    sweep = yaml.safe_load(args.sweep.read_text())
    if args.report:
        return report(args.out, list(sweep["runs"]))
    base = merged(yaml.safe_load(Path("params.yaml").read_text()), sweep.get("base") or {})
    waiting, running = [], []
    for name, override in sweep["runs"].items():
        override = dict(override or {})
        data = Path(override.pop("data", args.data)).resolve()
        run_dir = (args.out / name).resolve()
        (run_dir / "data").mkdir(parents=True, exist_ok=True)
        for part in ("encoded", "tokenizer", "prepared"):
            link = run_dir / "data" / part
            if not link.exists():
                link.symlink_to(data / part if (data / part).exists() else args.data.resolve() / part)
        (run_dir / "params.yaml").write_text(yaml.safe_dump(merged(base, override)))
        waiting.append((name, run_dir))
    while waiting or running:
        while waiting and len(running) < args.parallel:
            name, run_dir = waiting.pop(0)
            log = (run_dir / "log.txt").open("w")
            running.append((name, subprocess.Popen([sys.executable, __file__, "--one", str(run_dir)], stdout=log,
                                                   stderr=subprocess.STDOUT)))
        time.sleep(2)
        for entry in list(running):
            if entry[1].poll() is not None:
                running.remove(entry)
                print(f"{entry[0]}: exit {entry[1].returncode}", flush=True)
    report(args.out, list(sweep["runs"]))


def report(out: Path, names: list[str]) -> None:
    """Print valid chrF (and length ratio) at every validation, one row per run."""
    for name in names:
        path = out / name / "history.json"
        if not path.exists():
            print(f"{name}: no history (see {out / name / 'log.txt'})")
            continue
        result = json.loads(path.read_text())
        cells = " ".join(f"{h['step']}:{h['chrf']:.1f}/{h.get('length_ratio', 0):.2f}" for h in result["history"])
        print(f"{name:<24} {result['seconds']:6.0f}s {result['target_tokens'] / 1e6:5.1f}M tok | {cells}", flush=True)


if __name__ == "__main__":
    main()
