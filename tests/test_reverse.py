import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import sacrebleu
import torch
import yaml

from seq2seq.checkpoint import load_model, read_checkpoint
from seq2seq.reverse import train_reverse
from seq2seq.search import translate_ids
from seq2seq.tokenizer import load_tokenizer
from tests.conftest import link_tiny_data, tiny_params, tiny_paths, write_tiny_params


def test_the_reverse_model_translates_korean_into_english(reverse_workdir: Path) -> None:
    model, tokenizer, content = load_model(reverse_workdir / "models/reverse/best.pt")
    forward = load_tokenizer(reverse_workdir / "models/tokenizer")
    assert tokenizer.source.serialized_model_proto() == forward.target.serialized_model_proto()  # reads Korean
    assert tokenizer.target.serialized_model_proto() == forward.source.serialized_model_proto()  # writes English
    assert model.source_vocab_size == forward.target.get_piece_size()  # no domain tags
    assert content["domains"] is None
    korean = (reverse_workdir / "data/prepared/valid.ko").read_text(encoding="utf-8").splitlines()
    english = (reverse_workdir / "data/prepared/valid.en").read_text(encoding="utf-8").splitlines()
    found = translate_ids(model, tokenizer.encode_source(korean), never_emitted=tokenizer.never_emitted())
    outputs = tokenizer.decode_target([hypothesis.tokens for hypothesis in found])
    assert sacrebleu.corpus_chrf(outputs, [english]).score > 50  # the English side, learnt from the swapped pairs
    summary = json.loads((reverse_workdir / "metrics/reverse.json").read_text())
    assert summary["enabled"] and summary["steps"] == 100 and summary["best_valid_chrf"] > 50
    assert sorted(path.name for path in (reverse_workdir / "models/reverse").iterdir()) == ["best.pt"]


def test_off_it_trains_nothing_and_says_so(tiny_workdir: Path, tmp_path: Path) -> None:
    paths = tiny_paths(tmp_path)  # nothing there: off, no data is read
    summary = train_reverse(tiny_params(), paths, tmp_path / "reverse", tmp_path / "reverse.json")
    assert summary == {"enabled": False} == json.loads((tmp_path / "reverse.json").read_text())
    assert [path.name for path in (tmp_path / "reverse").iterdir()] == ["OFF.md"]
    assert "backtranslation.enabled: false" in (tmp_path / "reverse/OFF.md").read_text()
    assert not paths.model_dir.exists()


def test_a_stopped_reverse_run_says_how_to_resume_it_and_never_keeps_a_stale_best_pt(
        tiny_workdir: Path, tmp_path: Path) -> None:
    """SIGTERM to `seq2seq reverse` saves models/reverse-run/last.pt, exits 143 and advises
    `seq2seq reverse --resume`; the resumed run's best.pt is its own, not the earlier one that was
    there (here the forward model, recording a valid chrF above chrF's 100)."""
    link_tiny_data(tiny_workdir, tmp_path)
    run_dir = tmp_path / "models/reverse-run"
    run_dir.mkdir(parents=True)
    stale = torch.load(tiny_workdir / "models/model/best.pt", weights_only=True)
    stale["summary"] = {"step": 100, "valid_chrf": 1000.0}
    torch.save(stale, run_dir / "best.pt")

    def reverse(steps: int, *options: str) -> subprocess.Popen:
        write_tiny_params(tmp_path, valid_every=100_000)
        params = yaml.safe_load((tmp_path / "params.yaml").read_text())
        params["backtranslation"].update(enabled=True, reverse_steps=steps)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        return subprocess.Popen([sys.executable, "-m", "seq2seq", "reverse", *options], cwd=tmp_path,
                                stderr=subprocess.PIPE, text=True)

    process = reverse(100_000)
    for line in process.stderr:  # the line on the steps is the last before training starts
        if "steps: backtranslation.reverse_steps" in line:
            break
    time.sleep(1)
    process.send_signal(signal.SIGTERM)
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == 143, stderr
    step = read_checkpoint(run_dir / "last.pt")["training_state"]["progress"]["step"]
    assert (f"interrupted at step {step}: saved models/reverse-run/last.pt; continue with `seq2seq reverse --resume`"
            in stderr)
    assert not (run_dir / "best.pt").exists()

    resumed = reverse(step + 2, "--resume")
    stderr = resumed.communicate(timeout=120)[1]
    assert resumed.returncode == 0, stderr
    _, tokenizer, content = load_model(tmp_path / "models/reverse/best.pt")
    assert content["summary"]["step"] == step + 2 and content["summary"]["valid_chrf"] <= 100
    forward = load_tokenizer(tiny_workdir / "models/tokenizer")
    assert tokenizer.source.serialized_model_proto() == forward.target.serialized_model_proto()  # reads Korean


def test_the_reverse_run_takes_reverse_steps_on_every_machine() -> None:
    from seq2seq.config import load_params
    from seq2seq.reverse import reverse_params
    from seq2seq.training_budget import step_budget

    params = load_params(Path(__file__).parent.parent / "params.yaml")  # max_steps auto, a table for every class
    for device in ("cpu", "cuda"):
        budget = step_budget(reverse_params(params).train, torch.device(device), "backtranslation.reverse_steps")
        assert (budget.steps, budget.source) == (params.backtranslation.reverse_steps, "backtranslation.reverse_steps")
        assert f"{budget.steps:,} steps: backtranslation.reverse_steps" in budget.line
