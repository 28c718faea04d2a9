"""Stage `plots`: the pipeline's curves as PNG images, which render offline.

`dvc plots show` draws its Vega plots with JavaScript from a CDN, so without internet its page is
blank; images declared as DVC plots are embedded in that page as they are. The demo page of
`seq2seq serve` shows them too.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from seq2seq import paths
from seq2seq.errors import UserError
from seq2seq.files import atomic_path

VALID_DIR = paths.LIVE / "plots/metrics/valid"
PLOTS_DIR = Path("plots")
PLOT_NAMES = ("valid_chrf.png", "valid_loss.png", "test_chrf_by_source.png")  # what `draw_plots` writes


def read_series(path: Path) -> dict[int, float]:
    """A DVCLive TSV (`step<TAB>name` rows) as {step: value}."""
    if not path.exists():
        raise UserError(f"{path} not found: run the train stage first (`dvc repro train`)")
    with path.open(encoding="utf-8") as file:
        rows = list(csv.reader(file, delimiter="\t"))
    return {int(step): float(value) for step, value in rows[1:]}


def _save(figure, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as temp:
        figure.tight_layout()
        figure.savefig(temp, format="png", dpi=100)
    plt.close(figure)


def draw_plots(valid_dir: Path = VALID_DIR, evaluate_metrics: Path = paths.EVALUATE_DETAILS,
               out_dir: Path = PLOTS_DIR) -> list[Path]:
    """Write valid_chrf.png and valid_loss.png (against steps and minutes) and test_chrf_by_source.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seq2seq.fonts import use_korean_font

    use_korean_font()
    minutes = read_series(valid_dir / "minutes.tsv")
    written = []
    for name, label in (("chrf", "valid chrF"), ("loss", "valid loss")):
        series = read_series(valid_dir / f"{name}.tsv")
        steps = sorted(series)
        figure, (by_step, by_minute) = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
        by_step.plot(steps, [series[s] for s in steps], marker="o")
        by_step.set_xlabel("step")
        by_step.set_ylabel(label)
        by_minute.plot([minutes[s] for s in steps], [series[s] for s in steps], marker="o", color="tab:orange")
        by_minute.set_xlabel("minutes of training")
        for axes in (by_step, by_minute):
            axes.grid(alpha=0.3)
        path = out_dir / f"valid_{name}.png"
        _save(figure, path)
        written.append(path)

    if not evaluate_metrics.exists():
        raise UserError(f"{evaluate_metrics} not found: run the evaluate stage first (`dvc repro evaluate`)")
    metrics = json.loads(evaluate_metrics.read_text(encoding="utf-8"))
    per_source = sorted(metrics["per_source"].items(), key=lambda item: item[1]["chrf"])
    figure, axes = plt.subplots(figsize=(7, 0.32 * len(per_source) + 1.2))
    axes.barh([name for name, _ in per_source], [scores["chrf"] for _, scores in per_source])
    axes.axvline(metrics["test"]["chrf"], color="black", linestyle="--", label=f"all: {metrics['test']['chrf']:.1f}")
    axes.set_xlabel(f"test chrF (beam {metrics.get('beam_size', '?')})")
    axes.legend(loc="lower right")
    path = out_dir / "test_chrf_by_source.png"
    _save(figure, path)
    written.append(path)
    return written
