import json
from pathlib import Path

import matplotlib.image
import pytest

from seq2seq.errors import UserError
from seq2seq.plots import PLOT_NAMES, draw_plots


def test_draws_the_curves_and_the_per_source_bars(tiny_workdir: Path, tmp_path: Path) -> None:
    metrics = tmp_path / "evaluate.json"
    metrics.write_text(json.dumps({"test": {"chrf": 12.5}, "beam_size": 3,
                                   "per_source": {"toy-a": {"chrf": 10.0}, "toy-b": {"chrf": 15.0}}}))
    written = draw_plots(tiny_workdir / "dvclive/plots/metrics/valid", metrics, tmp_path / "plots")
    assert [path.name for path in written] == list(PLOT_NAMES)
    for path in written:
        height, width, _ = matplotlib.image.imread(path).shape
        assert height > 150 and width > 400


def test_missing_inputs_are_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="train stage"):
        draw_plots(tmp_path / "nowhere", tmp_path / "evaluate.json", tmp_path / "plots")
