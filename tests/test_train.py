import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from seq2seq.checkpoint import average_weights, load_model, read_checkpoint
from seq2seq.config import ConfigError, parse_params
from seq2seq.device import AVX2_EMULATION
from seq2seq.errors import UserError
from seq2seq.tokenizer import EOS_ID, UNK_ID
from seq2seq.train import step_starts, train
from seq2seq.training_step import learning_rate
from tests.conftest import DOMAIN_CONTROL, link_tiny_data, tiny_params, tiny_paths, write_tiny_params


def test_training_learns_and_writes_outputs(tiny_workdir: Path) -> None:
    metrics = json.loads((tiny_workdir / "dvclive/metrics.json").read_text())
    assert metrics["best_valid_chrf"] > 50  # the template language is easy to learn
    assert (tiny_workdir / "dvclive/plots/metrics/valid/chrf.tsv").exists()
    model, tokenizer, content = load_model(tiny_workdir / "models/model/best.pt")
    assert content["training_state"] is None  # best.pt is weights only; last.pt can resume
    assert read_checkpoint(tiny_workdir / "models/model/last.pt")["training_state"]["progress"]["step"] == 100


def test_metrics_record_the_machine(tiny_workdir: Path) -> None:
    """best.pt's bytes depend on the CPU model and torch version: the metrics say which made them."""
    machine = json.loads((tiny_workdir / "dvclive/metrics.json").read_text())["machine"]
    cpu_names = {line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")}
    assert machine["cpu"] in cpu_names
    assert machine["torch"] == torch.__version__
    assert machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_metrics_record_the_peak_memory(tiny_workdir: Path, tmp_path: Path) -> None:
    """The recorded peak is the training process's own: a process that only trains reads its peak
    after training, and finds the recorded one a little below it (dvclive's last writes come after)."""
    link_tiny_data(tiny_workdir, tmp_path)
    write_tiny_params(tmp_path, max_steps=6, valid_every=3)
    code = ("from seq2seq.config import load_params; from seq2seq.device import memory_mib; "
            "from seq2seq.train import train; train(load_params()); print(memory_mib()[1])")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    peak = float(result.stdout.split()[-1])
    recorded = json.loads((tmp_path / "dvclive/metrics.json").read_text())["peak_memory_mib"]
    assert 0.85 * peak < recorded <= peak + 1


def test_learning_rate_schedule() -> None:
    config = parse_params({"train": {"learning_rate": 1.0, "warmup_steps": 10}}).train
    assert learning_rate(config, 5, 1.0) == pytest.approx(0.5)
    assert learning_rate(config, 10, 1.0) == pytest.approx(1.0)
    assert learning_rate(config, 40, 1.0) == pytest.approx(0.5)
    assert learning_rate(config, 40, 0.5) == pytest.approx(0.25)
    constant = parse_params({"train": {"learning_rate": 1.0, "warmup_steps": 10, "schedule": "constant"}}).train
    assert learning_rate(constant, 400, 1.0) == pytest.approx(1.0)


def test_cooldown_falls_linearly_to_the_floor_over_the_last_steps() -> None:
    raw = {"learning_rate": 1.0, "warmup_steps": 10, "schedule": "constant", "max_steps": 100, "cooldown": 0.2,
           "min_learning_rate": 0.01}
    config = parse_params({"train": raw}).train
    rates = [learning_rate(config, step, 1.0) for step in (50, 80, 90, 95, 100)]
    assert rates == pytest.approx([1.0, 1.0, 0.5, 0.25, 0.01])
    assert learning_rate(config, 120, 1.0) == pytest.approx(0.01)  # past max_steps (a resume with more): the floor
    assert learning_rate(parse_params({"train": {**raw, "cooldown": 0.0}}).train, 100, 1.0) == pytest.approx(1.0)


def test_plateau_halvings_stop_at_the_floor() -> None:
    plateau = {"learning_rate": 0.01, "warmup_steps": 10, "schedule": "plateau"}
    config = parse_params({"train": {**plateau, "min_learning_rate": 0.001}}).train
    assert learning_rate(config, 50, 0.5) == pytest.approx(0.005)
    assert learning_rate(config, 50, 0.5**20) == pytest.approx(0.001)  # 20 validations without gain
    assert learning_rate(config, 5, 0.5**20) < 0.001  # warm-up still starts low
    assert parse_params({"train": plateau}).train.min_learning_rate > 0  # a floor by default
    with pytest.raises(ConfigError, match="train.min_learning_rate"):
        parse_params({"train": {**plateau, "min_learning_rate": 0.1}})


def test_a_second_run_writes_the_same_best_pt(tiny_workdir: Path, tmp_path: Path) -> None:
    """On one machine (CPU model, torch version, threads) training is byte-reproducible; see README."""
    link_tiny_data(tiny_workdir, tmp_path)
    train(tiny_params(), tiny_paths(tmp_path))
    assert (tmp_path / "models/model/best.pt").read_bytes() == (tiny_workdir / "models/model/best.pt").read_bytes()


def test_resume_continues_exactly(tiny_workdir: Path, tmp_path: Path) -> None:
    """Stopping after k steps and resuming gives the same parameters as an uninterrupted run."""
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    for root in (straight, stopped):
        link_tiny_data(tiny_workdir, root)
    dropout = {"dropout": 0.3}  # so that the random generator state matters
    train(tiny_params(train={"valid_every": 7, "max_steps": 45}, model=dropout), tiny_paths(straight))
    train(tiny_params(train={"valid_every": 7, "max_steps": 21}, model=dropout), tiny_paths(stopped))
    progress = train(tiny_params(train={"valid_every": 7, "max_steps": 45}, model=dropout), tiny_paths(stopped),
                     resume=True)
    assert progress.step == 45 and progress.epoch >= 1  # crossed an epoch boundary
    a = read_checkpoint(straight / "models/model/last.pt")
    b = read_checkpoint(stopped / "models/model/last.pt")
    for name, tensor in a["weights"].items():
        assert torch.equal(tensor, b["weights"][name]), name
    scores = [[(h["step"], h["chrf"], h["loss"]) for h in checkpoint["training_state"]["progress"]["history"]]
              for checkpoint in (a, b)]
    assert scores[0] == scores[1]


def test_ctrl_c_saves_a_resumable_checkpoint(tiny_workdir: Path, tmp_path: Path) -> None:
    link_tiny_data(tiny_workdir, tmp_path)
    write_tiny_params(tmp_path, max_steps=100_000, valid_every=5)
    process = subprocess.Popen([sys.executable, "-m", "seq2seq", "train"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "models/model/last.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "--resume" in stderr
    step = read_checkpoint(tmp_path / "models/model/last.pt")["training_state"]["progress"]["step"]
    assert step >= 5
    write_tiny_params(tmp_path, max_steps=step + 3, valid_every=5)
    result = subprocess.run([sys.executable, "-m", "seq2seq", "train", "--resume"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "step 5: valid" not in result.stderr  # it went on from `step`, not from the start
    assert read_checkpoint(tmp_path / "models/model/last.pt")["training_state"]["progress"]["step"] == step + 3


EVERY_CLASS = {"avx2": 6, "avx512": 7, "bf16": 8, "cuda": 9}


def test_auto_steps_follow_the_cpu_class_and_are_printed_and_recorded(tiny_workdir: Path, tmp_path: Path) -> None:
    """With train.max_steps auto, on an (emulated) AVX2 CPU the train stage takes the avx2 entry of
    train.max_steps_by_cpu_class, says so at the start, and records the class, steps and source."""
    link_tiny_data(tiny_workdir, tmp_path)
    write_tiny_params(tmp_path, max_steps="auto", max_steps_by_cpu_class=EVERY_CLASS, valid_every=3)
    result = subprocess.run([sys.executable, "-m", "seq2seq", "train"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, env={**os.environ, **AVX2_EMULATION})
    assert result.returncode == 0, result.stderr
    assert ("CPU class avx2 (float32; no AVX-512 and no native bf16: AVX2, older or not x86): 6 steps: class avx2's "
            "entry in train.max_steps_by_cpu_class (train.max_steps is auto); under a minute on 2 cores of this "
            "class with the default model") in result.stderr
    metrics = json.loads((tmp_path / "dvclive/metrics.json").read_text())
    assert (metrics["machine"]["cpu_class"], metrics["max_steps"]) == ("avx2", 6)
    assert metrics["max_steps_from"] == "train.max_steps_by_cpu_class.avx2"
    assert read_checkpoint(tmp_path / "models/model/last.pt")["training_state"]["progress"]["step"] == 6


def test_a_number_in_max_steps_wins_on_every_machine(tiny_workdir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`dvc exp run -S train.max_steps=5` trains 5 steps even where the class table has an entry (here
    every class has one), and the stage says where its number came from."""
    link_tiny_data(tiny_workdir, tmp_path)
    progress = train(tiny_params(train={"max_steps": 5, "max_steps_by_cpu_class": EVERY_CLASS, "valid_every": 50}),
                     tiny_paths(tmp_path))
    assert progress.step == 5
    assert ("5 steps: train.max_steps (train.max_steps_by_cpu_class applies only while train.max_steps is auto)"
            in capsys.readouterr().err)
    metrics = json.loads((tmp_path / "dvclive/metrics.json").read_text())
    assert (metrics["max_steps"], metrics["max_steps_from"]) == (5, "train.max_steps")


def test_a_gpu_takes_the_cuda_entry_of_the_class_table() -> None:
    from seq2seq.training_budget import step_budget

    config = tiny_params(train={"max_steps": "auto", "max_steps_by_cpu_class": EVERY_CLASS}).train
    budget = step_budget(config, torch.device("cuda"))
    assert (budget.steps, budget.source) == (9, "train.max_steps_by_cpu_class.cuda")
    assert budget.line == "cuda: 9 steps: the cuda entry in train.max_steps_by_cpu_class (train.max_steps is auto)"


def test_the_expected_minutes_span_the_measured_machines_of_each_class() -> None:
    from seq2seq.training_budget import expected_minutes

    assert expected_minutes("bf16", 3600, 4096) == "17 to 22 minutes"  # Intel with AMX 17.1, 19.4; AMD 21.5
    assert expected_minutes("avx512", 2100, 4096) == "11 to 15 minutes"
    assert expected_minutes("avx2", 1650, 4096) == "10 to 24 minutes"
    assert expected_minutes("bf16", 7200, 4096) == expected_minutes("bf16", 3600, 8192) == "34 to 43 minutes"
    assert expected_minutes("avx2", 6, 400) == "under a minute"


def test_resume_without_checkpoint_is_a_clear_error(tiny_workdir: Path, tmp_path: Path) -> None:
    link_tiny_data(tiny_workdir, tmp_path)
    write_tiny_params(tmp_path)
    result = subprocess.run([sys.executable, "-m", "seq2seq", "train", "--resume"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith("error: no model at") and "Traceback" not in result.stderr


def test_domain_tags_reach_the_encoder_and_snapshots_are_averaged(tagged_workdir: Path) -> None:
    model, tokenizer, content = load_model(tagged_workdir / "models/model/best.pt")
    assert content["domains"]["groups"] == {"general": ["toy-a"], "technical": ["toy-b"]}
    assert content["domains"]["first_tag_id"] == tokenizer.source.get_piece_size()
    assert model.source_vocab_size == tokenizer.source.get_piece_size() + 2  # one embedding row per tag
    metrics = json.loads((tagged_workdir / "dvclive/metrics.json").read_text())
    assert metrics["best_valid_chrf"] > 50
    kept = sorted((tagged_workdir / "models/model").glob("step-*.pt"))
    averaged = average_weights(kept)
    if metrics["averaged_valid_chrf"] > max(h["chrf"] for h in read_checkpoint(
            tagged_workdir / "models/model/last.pt")["training_state"]["progress"]["history"]):
        assert content["summary"] == {"step": 100, "valid_chrf": metrics["averaged_valid_chrf"],
                                      "averaged_snapshots": 2}
        assert all(torch.equal(averaged[name], tensor) for name, tensor in content["weights"].items())
    else:  # the best single model stayed
        assert content["summary"]["valid_chrf"] == metrics["best_valid_chrf"] >= metrics["averaged_valid_chrf"]
        assert not all(torch.equal(averaged[name], tensor) for name, tensor in content["weights"].items())
    assert sorted(p.name for p in (tagged_workdir / "models/model").glob("step-*.pt")) == \
        ["step-000050.pt", "step-000100.pt"]  # the last two validations
    valid_log = (tagged_workdir / "dvclive/plots/metrics/valid/length_ratio.tsv").read_text().splitlines()
    assert len(valid_log) == 1 + 2  # header and one row per validation


def test_max_minutes_stops_at_a_step_boundary(tiny_workdir: Path, tmp_path: Path) -> None:
    link_tiny_data(tiny_workdir, tmp_path)
    progress = train(tiny_params(train={"max_minutes": 1e-9, "max_steps": 1000}), tiny_paths(tmp_path))
    assert progress.step == 1 and [h["step"] for h in progress.history] == [1]  # validated where it stopped


@pytest.mark.parametrize("saved_world, resumed_world", [(1, 2), (2, 1), (1, 3), (3, 2)])
@pytest.mark.parametrize("batch_count", [15, 16])
def test_steps_after_a_change_of_world_size_stay_in_the_batch_list(saved_world: int, resumed_world: int,
                                                                   batch_count: int) -> None:
    """Every saved position (odd or even) resumes onto whole steps of unused batches of the same list."""
    for saved_steps in range(batch_count // saved_world + 1):
        batches_done = saved_steps * saved_world
        starts = list(step_starts(batches_done, batch_count, resumed_world))
        used = [first + rank for first in starts for rank in range(resumed_world)]
        assert used == list(range(batches_done, batches_done + len(used)))  # the next batches, each once
        assert all(index < batch_count for index in used)
        assert batch_count - batches_done - len(used) < resumed_world  # only a partial step is skipped


def test_resume_refuses_changed_batch_settings(tiny_workdir: Path, tmp_path: Path) -> None:
    link_tiny_data(tiny_workdir, tmp_path)
    train(tiny_params(train={"max_steps": 3, "valid_every": 50}), tiny_paths(tmp_path))
    last = tmp_path / "models/model/last.pt"
    before = last.read_bytes()
    changes = [({"batch_tokens": 300}, "train.batch_tokens differs .*400 -> 300"),
               ({"max_length": 50}, "train.max_length"), ({"seed": 7}, "train.seed"),
               ({"source_weights": {"toy-a": 0.5}}, "train.source_weights"),
               ({"subword_alpha": 0.1}, "train.subword_alpha differs .*off -> 0.1")]
    for change, message in changes:
        with pytest.raises(UserError, match=f"cannot resume from .*last.pt: {message}"):
            train(tiny_params(train={"max_steps": 6, **change}), tiny_paths(tmp_path), resume=True)
    assert last.read_bytes() == before
    progress = train(tiny_params(train={"max_steps": 6, "valid_every": 50}), tiny_paths(tmp_path), resume=True)
    assert progress.step == 6  # unchanged settings (max_steps does not decide batches) resume


def test_resume_refuses_other_encoded_data(tiny_workdir: Path, tmp_path: Path) -> None:
    link_tiny_data(tiny_workdir, tmp_path)
    train(tiny_params(train={"max_steps": 3, "valid_every": 50}), tiny_paths(tmp_path))
    encoded = tmp_path / "data/encoded"
    encoded.unlink()
    shutil.copytree(tiny_workdir / "data/encoded", encoded)
    ids = encoded / "train.ko.ids"
    changed = bytearray(ids.read_bytes())
    changed[-4:] = (5).to_bytes(4, "little")  # one token of the last sentence: same lengths, other data
    ids.write_bytes(bytes(changed))
    with pytest.raises(UserError, match=r"encoded train data \(data/encoded\) differs .*\(changed\)"):
        train(tiny_params(train={"max_steps": 6}), tiny_paths(tmp_path), resume=True)


def test_a_fresh_run_does_not_average_an_earlier_run_snapshots(tiny_workdir: Path, tmp_path: Path) -> None:
    import shutil

    link_tiny_data(tiny_workdir, tmp_path)
    (tmp_path / "models/model").mkdir(parents=True)
    shutil.copy(tiny_workdir / "models/model/best.pt", tmp_path / "models/model/step-999999.pt")
    train(tiny_params(train={"max_steps": 2, "valid_every": 1, "average_checkpoints": 2}), tiny_paths(tmp_path))
    assert sorted(p.name for p in (tmp_path / "models/model").glob("step-*.pt")) == ["step-000001.pt",
                                                                                    "step-000002.pt"]


def rewrite_checkpoint(path: Path, change) -> None:
    """Load `path`'s plain content, let `change` edit it, and write it back."""
    content = torch.load(path, weights_only=True)
    change(content)
    torch.save(content, path)


def test_resume_keeps_a_best_pt_better_than_any_single_model(tiny_workdir: Path, tmp_path: Path) -> None:
    """An average that became best.pt is only beaten by a better validation, even though last.pt
    recorded the best single score (here made worse than any, so that any validation would win it)."""
    link_tiny_data(tiny_workdir, tmp_path)
    train(tiny_params(train={"max_steps": 3, "valid_every": 50}), tiny_paths(tmp_path))
    best, last = tmp_path / "models/model/best.pt", tmp_path / "models/model/last.pt"
    rewrite_checkpoint(best, lambda content: content["summary"].update(valid_chrf=99.0, averaged_snapshots=2))
    rewrite_checkpoint(last, lambda content: content["training_state"]["progress"].update(best_chrf=-1.0))
    before = best.read_bytes()
    progress = train(tiny_params(train={"max_steps": 6, "valid_every": 3}), tiny_paths(tmp_path), resume=True)
    assert progress.history[-1]["step"] == 6 and progress.history[-1]["chrf"] < 99.0
    assert best.read_bytes() == before and progress.best_chrf == 99.0


def test_snapshots_are_kept_by_step_not_by_name(tmp_path: Path) -> None:
    from seq2seq.training_checkpoints import prune_snapshots

    for step in (998_000, 999_999, 1_000_000):
        (tmp_path / f"step-{step:06d}.pt").touch()
    prune_snapshots(tmp_path, 2)
    assert sorted(p.name for p in tmp_path.glob("step-*.pt")) == ["step-1000000.pt", "step-999999.pt"]


def test_max_minutes_counts_from_the_resume(tiny_workdir: Path, tmp_path: Path) -> None:
    """A resumed run gets train.max_minutes of its own, whatever the earlier runs took."""
    link_tiny_data(tiny_workdir, tmp_path)
    train(tiny_params(train={"max_steps": 3, "valid_every": 50}), tiny_paths(tmp_path))
    last = tmp_path / "models/model/last.pt"
    rewrite_checkpoint(last, lambda content: content["training_state"]["progress"].update(seconds=10_000.0))
    progress = train(tiny_params(train={"max_steps": 6, "valid_every": 50, "max_minutes": 5}), tiny_paths(tmp_path),
                     resume=True)
    assert progress.step == 6
    assert progress.history[-1]["minutes"] > 10_000 / 60  # the reported minutes are of the whole training


def test_a_default_domain_without_training_sentences_stops_training(tiny_workdir: Path, tmp_path: Path) -> None:
    link_tiny_data(tiny_workdir, tmp_path)
    domains = {"domain_tags": True, "default_domain": "general",
               "domains": {"general": ["toy-valid"], "other": ["toy-a", "toy-b"]}}
    with pytest.raises(UserError, match="train.default_domain 'general' has no training sentences"):
        train(tiny_params(train=domains), tiny_paths(tmp_path))


def test_validation_decodes_in_float32_as_evaluate_does(tiny_workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 autocast is for training steps only: the valid score is that of the model evaluate runs.
    The CPU is taken for class bf16, so that train.bf16 turns autocast on wherever the test runs."""
    from seq2seq import device
    from seq2seq.data import ParallelData, collate
    from seq2seq.tokenizer import load_tokenizer
    from seq2seq.train import validate

    monkeypatch.setattr(device, "cpu_class", lambda: "bf16")
    model, _, _ = load_model(tiny_workdir / "models/model/best.pt")
    valid = ParallelData.open(tiny_workdir / "data/encoded", "valid")
    references = (tiny_workdir / "data/prepared/valid.ko").read_text(encoding="utf-8").splitlines()
    tokenizer = load_tokenizer(tiny_workdir / "models/tokenizer")
    config = tiny_params(train={"bf16": True}).train
    batch = collate(valid, np.arange(min(config.valid_sentences, len(valid))))  # one validation batch
    inputs = batch.source, batch.source_lengths, batch.target_input, batch.target_output
    with torch.no_grad():
        float32_loss = float(model(*inputs)) / batch.target_tokens
        with device.autocast(torch.device("cpu"), config.bf16):
            bf16_loss = float(model(*inputs)) / batch.target_tokens
    assert bf16_loss != float32_loss  # autocast is on here, and would show in the valid loss
    scores = validate(model, valid, references, tokenizer, config, torch.device("cpu"))
    assert scores["loss"] == float32_loss
    assert scores == validate(model, valid, references, tokenizer, tiny_params(train={"bf16": False}).train,
                              torch.device("cpu"))


def test_the_batch_fingerprint_hashes_the_corpus_in_chunks(tiny_workdir: Path, monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """Chunks of a memory-mapped corpus, not a copy of it; the same digest as hashing it whole, so
    the last.pt files of earlier versions still resume."""
    import hashlib

    import numpy as np

    from seq2seq import training_checkpoints as train_module
    from seq2seq.data import ParallelData

    data = ParallelData.open(tiny_workdir / "data/encoded", "train")
    config = tiny_params().train
    whole = train_module.batch_fingerprint(config, data, None)
    monkeypatch.setattr(train_module, "FINGERPRINT_CHUNK", 7)
    assert train_module.batch_fingerprint(config, data, None) == whole
    digest = hashlib.sha256(b"".join(np.asarray(array).tobytes() for array in (
        data.source.offsets, data.target.offsets, data.source.ids, data.target.ids))).hexdigest()
    assert whole["encoded train data (data/encoded)"].endswith(digest)


def write_synthetic(folder: Path, pairs: list[tuple[str, str]]) -> None:
    folder.mkdir(parents=True)
    for index, lang in enumerate(("en", "ko")):
        (folder / f"train.{lang}").write_text("".join(pair[index] + "\n" for pair in pairs), encoding="utf-8")


def test_synthetic_pairs_join_with_their_tag_and_weight(tiny_workdir: Path, tmp_path: Path) -> None:
    from seq2seq.training_data import TrainingData

    paths = tiny_paths(tiny_workdir)
    paths.synthetic_dir = tmp_path / "bt"
    write_synthetic(paths.synthetic_dir, [("We ate bread.", "우리는 빵을 먹었다."), ("They read.", "그들은 읽었다.")])
    config = tiny_params(train=DOMAIN_CONTROL).train
    plain, joined = TrainingData.load(config, tiny_paths(tiny_workdir)), TrainingData.load(config, paths, False, 2.5)
    assert len(joined.train) == len(plain.train) + 2
    assert list(joined.domains.groups) == ["general", "technical", "bt"]  # the new tag after the others
    bt_tag = joined.domains.tag_id("bt")
    assert joined.domains.piece(bt_tag) == "<bt>"
    assert joined.train.tags[-2:].tolist() == [bt_tag, bt_tag] and bt_tag not in joined.train.tags[:-2]
    assert joined.weights[-2:].tolist() == [2.5, 2.5]
    assert np.array_equal(joined.weights[:-2], plain.weights)
    assert joined.tokenizer.target.decode(joined.train.target[len(plain.train)].tolist()) == "우리는 빵을 먹었다."
    assert joined.source_vocab_size == plain.source_vocab_size + 1
    reverse = TrainingData.load(config, paths, reverse=True)  # the reverse model never reads synthetic pairs
    assert len(reverse.train) == len(plain.train)


def test_a_model_trained_with_back_translation_knows_the_bt_tag(tiny_workdir: Path, tmp_path: Path) -> None:
    link_tiny_data(tiny_workdir, tmp_path)
    paths = tiny_paths(tmp_path)
    paths.synthetic_dir = tmp_path / "data/backtranslated"
    write_synthetic(paths.synthetic_dir, [("We ate bread.", "우리는 빵을 먹었다.")])
    train(tiny_params(train={**DOMAIN_CONTROL, "max_steps": 2, "average_checkpoints": 0}), paths)
    _, _, content = load_model(paths.model_dir / "best.pt")
    assert content["domains"]["groups"]["bt"] == ["bt"]
    assert content["domains"]["default"] == "general"  # translation reads human-like input


def test_word_dropout_and_subword_sampling_change_the_training_input_only(tiny_workdir: Path, tmp_path: Path
                                                                        ) -> None:
    from seq2seq.data import collate
    from seq2seq.train import Trainer

    link_tiny_data(tiny_workdir, tmp_path)
    noises = {"plain": {}, "dropout": {"word_dropout": 0.3}, "sampled": {"subword_alpha": 0.1}}
    trainers = {name: Trainer(tiny_params(train={**DOMAIN_CONTROL, **noise}), tiny_paths(tmp_path), resume=False)
                for name, noise in noises.items()}
    data, tokenizer = trainers["plain"].data.train, trainers["plain"].data.tokenizer
    indices = np.arange(40)
    exact = collate(data, indices)

    def training_batch(name: str, indices: np.ndarray, epoch: int = 0):
        return trainers[name].data.training_batch(trainers[name].config, epoch, indices)

    assert torch.equal(training_batch("plain", indices).source, exact.source)

    dropped = training_batch("dropout", indices)
    assert (dropped.source == UNK_ID).any() and not (exact.source == UNK_ID).any()
    assert dropped.source[:, 0].tolist() == exact.source[:, 0].tolist()  # the domain tags stay
    assert torch.equal(dropped.target_output, exact.target_output)

    sampled = training_batch("sampled", indices)
    assert sampled.source.tolist() != exact.source.tolist()  # other segmentations ...
    sources = [row[1:length] for row, length in zip(sampled.source.tolist(), sampled.source_lengths.tolist(),
                                                     strict=True)]
    assert tokenizer.source.decode(sources) == tokenizer.source.decode([data.source[i].tolist() for i in indices])
    targets = [row[: row.index(EOS_ID)] for row in sampled.target_output.tolist()]
    assert tokenizer.target.decode(targets) == tokenizer.target.decode([data.target[i].tolist() for i in indices])

    # Batches are cut by the sampled lengths, so they keep to train.batch_tokens like plain ones.
    sampled_data = trainers["sampled"].data
    config = trainers["sampled"].config
    for indices in sampled_data.epoch_batches(config, epoch=0, world_size=1):
        batch = training_batch("sampled", indices)
        assert len(indices) == 1 or max(batch.source.numel(), batch.target_output.numel()) <= config.batch_tokens
    first_epoch = sampled_data.epoch_data(config, 0).source.ids.tolist()
    assert sampled_data.epoch_data(config, 1).source.ids.tolist() != first_epoch  # sampled anew each epoch

    # Validation reads the plain data whatever the noise settings: the same model scores the same.
    for name in ("dropout", "sampled"):
        trainers[name].model.load_state_dict(trainers["plain"].model.state_dict())
        assert trainers[name]._validate_model() == trainers["plain"]._validate_model()
    for trainer in trainers.values():
        trainer.reporter.close()


def test_a_fresh_run_removes_an_earlier_run_best_pt(tiny_workdir: Path, tmp_path: Path) -> None:
    """An earlier run's best.pt (perhaps of another architecture, here recording a score no run
    reaches) must not be what this run, stopped before its first validation and resumed, has to beat."""
    from seq2seq.train import Trainer

    link_tiny_data(tiny_workdir, tmp_path)
    model_dir = tmp_path / "models/model"
    model_dir.mkdir(parents=True)
    for name in ("best.pt", "last.pt", "step-000050.pt"):
        shutil.copy(tiny_workdir / "models/model/last.pt", model_dir / name)
    rewrite_checkpoint(model_dir / "best.pt", lambda content: content.update(summary={"valid_chrf": 99.0}))
    trainer = Trainer(tiny_params(train={"max_steps": 2}), tiny_paths(tmp_path), resume=False)
    trainer.reporter.close()
    assert list(model_dir.iterdir()) == []
