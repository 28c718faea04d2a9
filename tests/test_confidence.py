"""The per-sentence confidence: ranks, the isotonic calibration, its file, and its use end to end."""

import json
import random
from pathlib import Path

import pytest

from seq2seq.confidence import (
    Calibration,
    calibration_path,
    fit_calibration,
    is_low,
    isotonic_knots,
    ranks,
    spearman,
)
from seq2seq.errors import UserError


def test_ranks_share_the_average_rank_of_ties() -> None:
    assert ranks([10.0, 30.0, 20.0, 20.0]) == [0.0, 3.0, 1.5, 1.5]


def test_spearman_of_monotone_and_reversed_and_tied_values() -> None:
    assert spearman([1, 2, 3, 4], [10, 40, 90, 160]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0
    # With ties, by hand: ranks (0, 1.5, 1.5, 3, 4) and (1, 0, 2.5, 2.5, 4), covariance 7.25, spreads 9.5.
    assert spearman([1, 2, 2, 3, 5], [2, 1, 3, 3, 4]) == pytest.approx(7.25 / 9.5)


def test_isotonic_fit_pools_violators_into_their_mean() -> None:
    knots = isotonic_knots([1, 2, 3, 4], [10, 30, 20, 40], min_block=1)
    assert knots == [(1, 10), (2.5, 25), (4, 40)]


def test_isotonic_fit_is_the_least_squares_monotone_fit() -> None:
    generator = random.Random(0)
    features = [generator.uniform(-3, 0) for _ in range(300)]
    targets = [max(0.0, 40 + 10 * x + generator.gauss(0, 8)) for x in features]
    knots = isotonic_knots(features, targets, min_block=1)
    assert all(a[0] < b[0] and a[1] < b[1] for a, b in zip(knots, knots[1:], strict=False))
    # Each block's mean is what the fit predicts for its sentences: the squared error can only grow
    # when a block's level moves (the monotone fit is the block means).
    fitted = Calibration(knots, 1.0, len(features), 5)
    assert sum(targets) == pytest.approx(sum(fitted.expected_chrf(x) for x in features), rel=0.05)


def test_small_blocks_are_pooled_so_no_lone_sentence_sets_an_end() -> None:
    features = list(range(100))
    targets = [0.0] * 99 + [100.0]  # one outlier at the top
    knots = isotonic_knots(features, targets, min_block=20)
    assert len(knots) == 1 and knots[0][1] == pytest.approx(1.0)
    assert isotonic_knots([1, 1, 1, 2], [5, 7, 9, 30], min_block=1) == [(1, 7), (2, 30)]


def test_calibration_interpolates_between_knots_and_holds_at_the_ends() -> None:
    calibration = Calibration([(-2.0, 10.0), (-1.0, 30.0)], length_penalty=1.0, sentences=40, beam_size=5)
    assert calibration.expected_chrf(-5.0) == 10.0
    assert calibration.expected_chrf(-1.5) == pytest.approx(20.0)
    assert calibration.expected_chrf(0.0) == 30.0
    # The feature is the search's score: the log-probability over ((5 + length) / 6) ** alpha.
    assert calibration.feature(-3.0, 1) == pytest.approx(-3.0)
    assert calibration.confidence(-3.0, 7) == pytest.approx(20.0)


def test_calibration_file_round_trip_beside_the_model(tmp_path: Path) -> None:
    calibration = fit_calibration([-3, -2, -1, -0.5], [5, 20, 10, 60], length_penalty=1.3, beam_size=5, min_block=1)
    model = tmp_path / "best.pt"
    assert calibration_path(model) == tmp_path / "best.confidence.json"
    assert Calibration.beside(model) is None
    calibration.save(calibration_path(model))
    assert Calibration.beside(model) == calibration
    assert json.loads(calibration_path(model).read_text())["target"].startswith("sentence chrF")


@pytest.mark.parametrize("content", ["not json", '{"feature": "other", "knots": []}',
                                     '{"feature": "length_normalized_log_prob", "knots": [[0, 5], [-1, 6]], '
                                     '"length_penalty": 1, "sentences": 2, "beam_size": 5}'])
def test_a_broken_calibration_file_is_one_line_naming_it(tmp_path: Path, content: str) -> None:
    path = tmp_path / "best.confidence.json"
    path.write_text(content)
    with pytest.raises(UserError, match=f"^{path} is not a calibration file .*seq2seq calibrate"):
        Calibration.load(path)


def test_threshold() -> None:
    assert is_low(9.9, 10.0) and not is_low(10.0, 10.0)
    assert not is_low(5.0, None) and not is_low(None, 10.0)
