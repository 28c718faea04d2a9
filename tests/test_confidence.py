"""The per-sentence confidence: ranks, the isotonic calibration, its file, and its use end to end."""

import json
import random
import shutil
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from seq2seq.cli import main
from seq2seq.confidence import (
    LOW_MARK,
    Calibration,
    calibration_path,
    fit_calibration,
    is_low,
    isotonic_knots,
    missing_calibration_message,
    ranks,
    spearman,
)
from seq2seq.errors import UserError
from seq2seq.serve import ApiError, Limits, create_app, parse_translate_request
from seq2seq.translate import Translator
from tests.conftest import running_server, write_tiny_params


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


@pytest.fixture(scope="module")
def calibrated(tiny_workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A copy of the tiny model, calibrated by the stage's function: (model path, its metrics)."""
    from seq2seq.calibrate import calibrate
    from tests.conftest import tiny_params

    model = tmp_path_factory.mktemp("calibrated") / "best.pt"
    shutil.copy(tiny_workdir / "models/model/best.pt", model)
    metrics = calibrate(model, tiny_workdir / "data/prepared", calibration_path(model), model.parent / "metrics.json",
                        tiny_params().evaluate, valid_sentences=10)
    return model, metrics


def test_calibrate_fits_on_valid_and_measures_on_test(calibrated: tuple[Path, dict]) -> None:
    model, metrics = calibrated
    calibration = Calibration.load(calibration_path(model))
    assert calibration.sentences == 10 and calibration.beam_size == 3  # the tiny evaluate section's beam
    assert json.loads((model.parent / "metrics.json").read_text()) == metrics
    assert metrics["valid"]["sentences"] == 10 and metrics["test"]["sentences"] == 12  # 6 per toy source
    assert set(metrics["test"]) >= {"spearman_score", "spearman_confidence", "mean_chrf", "thresholds"}
    assert 0 <= metrics["test"]["thresholds"][0]["withheld"] <= 1


def test_translator_gives_each_sentence_its_confidence(calibrated: tuple[Path, dict], tiny_workdir: Path) -> None:
    model, _ = calibrated
    (translation,) = Translator(model, params_path=None).translate_detailed(["I ate an apple today.  We read a book."])
    assert [type(sentence.confidence) for sentence in translation.sentences] == [float, float]
    knots = Calibration.load(calibration_path(model)).knots
    low, high = knots[0][1], knots[-1][1]
    assert all(low - 0.05 <= sentence.confidence <= high + 0.05 for sentence in translation.sentences)
    uncalibrated = Translator(tiny_workdir / "models/model/best.pt", params_path=None)
    assert uncalibrated.translate_detailed(["I ate an apple today."])[0].sentences[0].confidence is None


def test_asking_for_confidence_without_a_calibration_names_the_file_to_make(tiny_workdir: Path) -> None:
    model = tiny_workdir / "models/model/best.pt"
    with pytest.raises(UserError, match=f"^{model.parent}/best.confidence.json not found: .*`seq2seq calibrate --model "
                                        f"{model}`$"):
        Translator(model, params_path=None, min_confidence=10.0)


KNOWN, UNKNOWN = "I ate an apple today.", "Quantum zebras juggle purple volcanoes."


@pytest.fixture(scope="module")
def spread_model(tiny_workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a steep calibration, so that a sentence it learnt and one it never saw
    get confidences far apart."""
    model = tmp_path_factory.mktemp("spread") / "best.pt"
    shutil.copy(tiny_workdir / "models/model/best.pt", model)
    Calibration([(-3.0, 0.0), (0.0, 100.0)], length_penalty=1.0, sentences=40, beam_size=3).save(
        calibration_path(model))
    return model


def test_a_learnt_sentence_is_more_confident_than_gibberish(spread_model: Path) -> None:
    known, unknown = (t.sentences[0].confidence for t in
                      Translator(spread_model, params_path=None).translate_detailed([KNOWN, UNKNOWN]))
    assert known > unknown + 5


def test_threshold_flags_or_withholds_the_low_sentences_only(spread_model: Path) -> None:
    known, unknown = (t.sentences[0].confidence for t in
                      Translator(spread_model, params_path=None).translate_detailed([KNOWN, UNKNOWN]))
    threshold = (known + unknown) / 2
    plain = Translator(spread_model, params_path=None).translate([KNOWN, UNKNOWN, f"{KNOWN} {UNKNOWN}"])
    flagged = Translator(spread_model, params_path=None, min_confidence=threshold).translate(
        [KNOWN, UNKNOWN, f"{KNOWN} {UNKNOWN}"])
    assert flagged[0] == plain[0] and flagged[1] == LOW_MARK + plain[1]
    assert flagged[2] == f"{plain[0]} {LOW_MARK}{plain[1]}"
    warnings: list[str] = []
    withheld = Translator(spread_model, params_path=None, min_confidence=threshold, withhold=True,
                          warn=warnings.append).translate([KNOWN, UNKNOWN, f"{KNOWN} {UNKNOWN}"])
    assert withheld == [plain[0], "", f"{plain[0]} "]
    assert warnings == [f"line 2 withheld: confidence {unknown:.1f} is below {threshold:g}",
                        f"line 3 (sentence 2 of 2) withheld: confidence {unknown:.1f} is below {threshold:g}"]


def test_http_answers_each_sentences_confidence_and_applies_the_threshold(spread_model: Path) -> None:
    translator = Translator(spread_model, beam_size=3, params_path=None)
    known, unknown = (t.sentences[0].confidence for t in translator.translate_detailed([KNOWN, UNKNOWN]))
    plain = translator.translate([KNOWN, UNKNOWN])
    threshold = round((known + unknown) / 2, 1)
    with running_server(create_app(translator, spread_model)) as url, httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/info").json()["calibrated"] is True
        assert "sentences" not in http.post("/translate", json={"text": KNOWN}).json()["translations"][0]
        answer = http.post("/translate", json={"text": [KNOWN, f"{KNOWN} {UNKNOWN}"], "confidence": True}).json()
        first, second = answer["translations"]
        assert first == {"text": plain[0], "confidence": known,
                         "sentences": [{"source": KNOWN, "text": plain[0], "confidence": known}]}
        assert [s["confidence"] for s in second["sentences"]] == [known, unknown] and second["confidence"] == unknown
        flagged = http.post("/translate", json={"text": f"{KNOWN} {UNKNOWN}", "min_confidence": threshold}).json()
        assert flagged["translations"][0]["text"] == f"{plain[0]} {LOW_MARK}{plain[1]}"
        assert [s["low_confidence"] for s in flagged["translations"][0]["sentences"]] == [False, True]
        withheld = http.post("/translate", json={"text": f"{KNOWN} {UNKNOWN}", "min_confidence": threshold,
                                                 "withhold": True}).json()["translations"][0]
        assert withheld["text"] == f"{plain[0]} " and withheld["sentences"][1]["text"] == ""


@pytest.mark.parametrize(("body", "field"), [({"confidence": "yes"}, "confidence"), ({"min_confidence": "10"},
                                                                                     "min_confidence"),
                                             ({"min_confidence": 101}, "min_confidence"),
                                             ({"withhold": True}, "withhold")])
def test_http_confidence_fields_are_checked(spread_model: Path, body: dict, field: str) -> None:
    with pytest.raises(ApiError) as error:
        parse_translate_request(json.dumps({"text": KNOWN, **body}).encode(), 3, Limits())
    assert error.value.status == 422 and error.value.field == field


def test_http_confidence_of_an_uncalibrated_model_is_422_naming_the_file(tiny_workdir: Path) -> None:
    model = tiny_workdir / "models/model/best.pt"
    with running_server(create_app(Translator(model, beam_size=3, params_path=None), model)) as url:
        assert httpx.get(f"{url}/info").json()["calibrated"] is False
        answer = httpx.post(f"{url}/translate", json={"text": KNOWN, "confidence": True}, timeout=30)
    assert answer.status_code == 422 and answer.json()["field"] == "confidence"
    assert answer.json()["error"].startswith(f"{calibration_path(model)} not found")


def translate_cli(*args: str, input: str | None = None):
    return CliRunner().invoke(main, ["translate", *args, "--params", "none.yaml"], input=input)


def test_translate_confidence_option_gives_each_line_its_confidence(spread_model: Path) -> None:
    translator = Translator(spread_model, params_path=None)
    known, unknown = (t.sentences[0].confidence for t in translator.translate_detailed([KNOWN, UNKNOWN]))
    plain = translator.translate([KNOWN, UNKNOWN])
    result = translate_cli("--model", str(spread_model), "--confidence", KNOWN, f"{KNOWN} {UNKNOWN}")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"{known:.1f}\t{plain[0]}", f"{unknown:.1f}\t{plain[0]} {plain[1]}"]
    as_json = translate_cli("--model", str(spread_model), "--confidence", "--json", "-", input=f"{KNOWN} {UNKNOWN}\n")
    line = json.loads(as_json.stdout)
    assert line["confidence"] == unknown and [s["confidence"] for s in line["sentences"]] == [known, unknown]


def test_translate_withhold_leaves_low_sentences_out_with_a_note(spread_model: Path) -> None:
    translator = Translator(spread_model, params_path=None)
    known, unknown = (t.sentences[0].confidence for t in translator.translate_detailed([KNOWN, UNKNOWN]))
    threshold = f"{(known + unknown) / 2:.1f}"
    plain = translator.translate([KNOWN])[0]
    flagged = translate_cli("--model", str(spread_model), "--min-confidence", threshold, "-",
                            input=f"{KNOWN}\n{UNKNOWN}\n")
    assert flagged.exit_code == 0 and flagged.stdout.splitlines()[0] == plain
    assert flagged.stdout.splitlines()[1].startswith(LOW_MARK)
    withheld = translate_cli("--model", str(spread_model), "--min-confidence", threshold, "--withhold", "-",
                             input=f"{KNOWN}\n{UNKNOWN}\n")
    assert withheld.exit_code == 0 and withheld.stdout == f"{plain}\n\n"
    assert withheld.stderr == f"warning: line 2 withheld: confidence {unknown:.1f} is below {float(threshold):g}\n"


@pytest.mark.parametrize("args", [["--confidence"], ["--min-confidence", "10"]])
def test_translate_confidence_without_calibration_is_one_line(tiny_workdir: Path, args: list[str]) -> None:
    model = tiny_workdir / "models/model/best.pt"
    result = translate_cli("--model", str(model), *args, KNOWN)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == f"error: {missing_calibration_message(model)}\n"
    assert "seq2seq calibrate --model" in result.stderr


def test_withhold_needs_a_threshold(spread_model: Path) -> None:
    result = translate_cli("--model", str(spread_model), "--withhold", KNOWN)
    assert result.exit_code == 1 and "--withhold needs --min-confidence" in result.stderr


def test_calibrate_command(tiny_workdir: Path, tmp_path: Path) -> None:
    model = tmp_path / "best.pt"
    shutil.copy(tiny_workdir / "models/model/best.pt", model)
    write_tiny_params(tmp_path)
    result = CliRunner().invoke(main, ["calibrate", "--model", str(model), "--prepared",
                                       str(tiny_workdir / "data/prepared"), "--metrics", str(tmp_path / "m.json"),
                                       "--params", str(tmp_path / "params.yaml"), "--test-sentences", "0",
                                       "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote {calibration_path(model)}; Spearman with sentence chrF: valid ")
    assert "test" not in json.loads((tmp_path / "m.json").read_text())
    missing = CliRunner().invoke(main, ["calibrate", "--model", str(tmp_path / "none.pt")])
    assert missing.exit_code == 1 and missing.stderr.startswith(f"error: {tmp_path / 'none.pt'} not found")
