"""Stage `reverse`: the Korean->English model that back-translation (stage `backtranslate`) uses.

Trained by the same code on the same data with the sides swapped (`seq2seq.train.train(...,
reverse=True)`): the Korean sentences are its sources, the English ones its targets, and the valid
English its references. With `backtranslation.enabled: false` it only writes `models/reverse/OFF.md`.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from seq2seq.config import Params
from seq2seq.files import atomic_dir, write_json
from seq2seq.train import TrainPaths, train

OFF_NOTE = "Back-translation is off (`backtranslation.enabled: false` in params.yaml): no reverse model.\n"


def reverse_params(params: Params) -> Params:
    """The forward run's settings with `backtranslation.reverse_steps` steps on every machine (a number in
    train.max_steps wins over the class table), no domain tags (the reverse model reads Korean, which
    has no tags) and no checkpoint averaging."""
    train_config = dataclasses.replace(params.train, max_steps=params.backtranslation.reverse_steps,
                                       domain_tags=False, average_checkpoints=0)
    return dataclasses.replace(params, train=train_config)


def train_reverse(params: Params, paths: TrainPaths, out_dir: Path, summary_path: Path, resume: bool = False
                  ) -> dict:
    """Train the Korean->English model in `paths.model_dir` (checkpoints, `--resume`), then copy its
    best.pt to `out_dir`; off, write only `out_dir/OFF.md`. Writes and returns a summary."""
    summary: dict = {"enabled": params.backtranslation.enabled}
    with atomic_dir(out_dir) as temp:
        if params.backtranslation.enabled:
            progress = train(reverse_params(params), paths, resume=resume, reverse=True)
            summary.update(steps=progress.step, best_step=progress.best_step,
                           best_valid_chrf=round(progress.best_chrf, 2), minutes=round(progress.seconds / 60, 2))
            shutil.copyfile(paths.model_dir / "best.pt", temp / "best.pt")
        else:
            (temp / "OFF.md").write_text(OFF_NOTE, encoding="utf-8")
    write_json(summary_path, summary)
    return summary
