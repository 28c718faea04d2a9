"""End to end: `dvc repro` of the real dvc.yaml, on the toy corpus, in a temporary copy of the repository."""

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from seq2seq.checkpoint import load_model
from seq2seq.config import load_params
from seq2seq.prepare import check_sources
from tests.conftest import ROOT, TOY_MONO, write_tiny_project


def dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_dvc_repro_runs_every_stage(tmp_path: Path) -> None:
    write_tiny_project(tmp_path)
    dvc("init", "--no-scm", "-q", cwd=tmp_path)

    dvc("repro", cwd=tmp_path)
    for output in ("data/prepared/train.ko", "models/tokenizer/ko.model", "data/encoded/train.ko.ids",
                   "models/model/best.pt", "reports/hypotheses.ko", "reports/samples.md", "plots/valid_chrf.png",
                   "plots/test_chrf_by_source.png", "models/model/best.confidence.json", "metrics/confidence.json",
                   "dvc.lock"):
        assert (tmp_path / output).exists(), output
    evaluation = json.loads((tmp_path / "metrics/evaluate.json").read_text())
    assert evaluation["test"]["chrf"] > 50
    stages = yaml.safe_load((tmp_path / "dvc.lock").read_text())["stages"]
    assert set(stages) == {"prepare", "tokenizer", "encode", "reverse", "backtranslate", "distill", "train", "evaluate",
                           "calibrate", "plots"}
    assert (tmp_path / "models/reverse/OFF.md").exists()  # back-translation is off by default
    assert (tmp_path / "data/backtranslated/train.en").read_text() == ""
    assert (tmp_path / "data/distilled/OFF.md").exists()  # so is distillation

    assert "up to date" in dvc("status", cwd=tmp_path).stdout
    shown = dvc("metrics", "show", cwd=tmp_path).stdout.splitlines()
    assert shown[0].split() == ["Path", "steps", "test.bleu", "test.chrf", "train_minutes", "valid_chrf"]
    assert len(shown) == 2 and max(map(len, shown)) <= 120  # one headline row that fits a terminal
    details = dvc("metrics", "show", "--json", "metrics/evaluate_details.json", cwd=tmp_path).stdout
    assert "bleu_ko_mecab" in details and "toy-a" in details  # every score, per source too
    assert "best_valid_chrf" in dvc("metrics", "show", "dvclive/metrics.json", cwd=tmp_path).stdout

    # A changed param reruns its stage and what follows, nothing before it.
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["evaluate"]["beam_size"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    rerun = dvc("repro", cwd=tmp_path).stdout
    assert "Running stage 'evaluate'" in rerun and "Running stage 'train'" not in rerun
    assert "Running stage 'plots'" in rerun  # the per-source bars follow the new test scores

    # Back-translation on: the reverse model trains, translates data/mono, and train reads the pairs.
    params["backtranslation"]["enabled"] = True
    params["train"].update(domain_tags=True, domains={"general": ["toy-a", "toy-b"]})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    rerun = dvc("repro", cwd=tmp_path).stdout
    for stage in ("reverse", "backtranslate", "train", "evaluate"):
        assert f"Running stage '{stage}'" in rerun, stage
    assert "Running stage 'encode'" not in rerun
    synthetic = (tmp_path / "data/backtranslated/train.ko").read_text(encoding="utf-8").splitlines()
    assert synthetic == TOY_MONO
    _, _, content = load_model(tmp_path / "models/model/best.pt")
    assert content["domains"]["groups"] == {"general": ["toy-a", "toy-b"], "bt": ["bt"]}
    assert json.loads((tmp_path / "metrics/reverse.json").read_text())["steps"] == 60

    # Distillation on: a teacher file, pinned by its md5, translates the train English, and train reads
    # its Korean; dvc.lock records the pin and the corpus the student read.
    shutil.copy(tmp_path / "models/model/best.pt", tmp_path / "teacher.pt")
    pin = hashlib.md5((tmp_path / "teacher.pt").read_bytes()).hexdigest()
    params["distill"].update(teacher="teacher.pt", md5=pin)
    params["train"]["distilled"] = "replace"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    rerun = dvc("repro", cwd=tmp_path).stdout
    for stage in ("distill", "train", "evaluate"):
        assert f"Running stage '{stage}'" in rerun, stage
    card = json.loads((tmp_path / "data/distilled/card.json").read_text())
    assert card["teacher"]["md5"] == pin and card["counts"]["kept"] > 0
    lock = yaml.safe_load((tmp_path / "dvc.lock").read_text())["stages"]
    assert lock["distill"]["params"]["params.yaml"]["distill"]["md5"] == pin
    corpus = next(dep for dep in lock["train"]["deps"] if dep["path"] == "data/distilled")
    assert corpus["md5"] == next(out for out in lock["distill"]["outs"] if out["path"] == "data/distilled")["md5"]


def test_params_sources_match_the_corpus() -> None:
    """The repository's params name sources that the pulled corpus has (skipped before `dvc pull`)."""
    raw = ROOT / "data/raw"
    if not raw.is_dir():
        pytest.skip("data/raw/ not pulled")
    prepare = load_params(ROOT / "params.yaml").prepare
    check_sources(raw, prepare.sources + prepare.valid_sources)


def _imported_modules(tree: ast.AST) -> set[str]:
    """`seq2seq` modules that the code in `tree` imports (anywhere in it, also inside functions)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "seq2seq":
            found |= {f"seq2seq.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("seq2seq."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("seq2seq.")}
    return found


def _command_modules(command: str) -> set[str]:
    """Every `seq2seq` module that `seq2seq COMMAND` imports, directly or not (cli.py itself aside)."""
    cli = ast.parse((ROOT / "seq2seq/cli.py").read_text())
    module_level = [node for node in cli.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    function = next(node for node in cli.body if isinstance(node, ast.FunctionDef) and node.name == command)
    pending = _imported_modules(ast.Module(body=[*module_level, function], type_ignores=[]))
    seen: set[str] = set()
    while pending:
        module = pending.pop()
        seen.add(module)
        source = ROOT / (module.replace(".", "/") + ".py")
        pending |= _imported_modules(ast.parse(source.read_text())) - seen
    return seen


def test_each_stage_depends_on_every_module_it_imports() -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert _command_modules("evaluate") >= {"seq2seq.evaluate", "seq2seq.search", "seq2seq.data"}  # the walk works
    missing = {}
    for name, stage in stages.items():
        program, command, *_ = stage["cmd"].split()
        assert program == "seq2seq", name
        needed = {f"{module.replace('.', '/')}.py" for module in _command_modules(command)}
        missing[name] = sorted(needed - set(stage["deps"]))
    assert missing == {name: [] for name in stages}, "modules imported but not in deps"


def test_stage_commands_name_their_paths() -> None:
    """Each stage's cmd passes the paths it reads and writes, so the pipeline file shows them."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        outputs = [next(iter(out)) if isinstance(out, dict) else out for out in stage.get("outs", [])]
        outputs += [next(iter(metric)) for metric in stage.get("metrics", [])]
        for path in outputs:
            assert any(path == part or path.startswith(f"{part}/") for part in stage["cmd"].split()), (name, path)
