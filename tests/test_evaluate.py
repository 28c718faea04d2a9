import json
import math
from pathlib import Path

import sacrebleu

from seq2seq.evaluate import evaluate
from tests.conftest import tiny_params


def test_evaluate_writes_metrics_that_sacrebleu_reproduces(tiny_workdir: Path, tmp_path: Path) -> None:
    config = tiny_params().evaluate
    metrics = evaluate(tiny_workdir / "models/model/best.pt", tiny_workdir / "data/prepared",
                       tmp_path / "metrics.json", tmp_path / "details.json", tmp_path / "hyps.ko",
                       tmp_path / "samples.md", config, train_summary=tiny_workdir / "dvclive/metrics.json")
    assert json.loads((tmp_path / "details.json").read_text()) == metrics
    training = json.loads((tiny_workdir / "dvclive/metrics.json").read_text())
    assert json.loads((tmp_path / "metrics.json").read_text()) == {
        "test": {"chrf": metrics["test"]["chrf"], "bleu": metrics["test"]["bleu"]},
        "valid_chrf": round(training["best_valid_chrf"], 2), "steps": 100, "train_minutes": training["minutes"]}
    hypotheses = (tmp_path / "hyps.ko").read_text(encoding="utf-8").splitlines()
    references = (tiny_workdir / "data/prepared/test.ko").read_text(encoding="utf-8").splitlines()
    assert len(hypotheses) == len(references) == metrics["sentences"]
    assert metrics["test"]["chrf"] == round(sacrebleu.corpus_chrf(hypotheses, [references]).score, 2)
    assert metrics["test"]["bleu"] == round(sacrebleu.corpus_bleu(hypotheses, [references]).score, 2)
    mecab = sacrebleu.BLEU(tokenize="ko-mecab").corpus_score(hypotheses, [references]).score
    assert metrics["test"]["bleu_ko_mecab"] == round(mecab, 2)
    assert metrics["test"]["chrf"] > 50
    assert set(metrics["per_source"]) == {"toy-a", "toy-b"}
    assert "tok:ko-mecab" in metrics["signatures"]["bleu_ko_mecab"]
    speed = metrics["sentences_per_second"]  # measured, so only its form is checked
    assert isinstance(speed, float) and math.isfinite(speed) and speed == round(speed, 2)
    samples = (tmp_path / "samples.md").read_text(encoding="utf-8").splitlines()
    assert samples[0].startswith("| source | English | reference | output |") and len(samples) == 2 + 4


def test_misaligned_test_split_is_a_clear_error(tiny_workdir: Path, tmp_path: Path) -> None:
    import shutil

    import pytest

    from seq2seq.errors import UserError

    prepared = tmp_path / "prepared"
    shutil.copytree(tiny_workdir / "data/prepared", prepared)
    (prepared / "test.ko").write_text("하나\n", encoding="utf-8")
    with pytest.raises(UserError, match="rerun the prepare stage"):
        evaluate(tiny_workdir / "models/model/best.pt", prepared, tmp_path / "m.json", tmp_path / "d.json",
                 tmp_path / "h.ko", tmp_path / "s.md", tiny_params().evaluate)


def test_tagged_model_is_also_scored_with_each_source_own_tag(tagged_workdir: Path, tmp_path: Path) -> None:
    metrics = evaluate(tagged_workdir / "models/model/best.pt", tagged_workdir / "data/prepared",
                       tmp_path / "metrics.json", tmp_path / "details.json", tmp_path / "hyps.ko",
                       tmp_path / "samples.md", tiny_params().evaluate)
    assert metrics["test"]["chrf_own_tag"] > 50
    headline = json.loads((tmp_path / "metrics.json").read_text())
    assert headline["test"]["chrf_own_tag"] == metrics["test"]["chrf_own_tag"]
    assert all("chrf_own_tag" in scores for scores in metrics["per_source"].values())
