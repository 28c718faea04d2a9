import dataclasses
import io
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from seq2seq.checkpoint import FORMAT, load_model, read_checkpoint, save_checkpoint
from seq2seq.cli import main
from seq2seq.errors import UserError


def test_same_model_gives_the_same_bytes(tiny_workdir: Path, tmp_path: Path) -> None:
    model, tokenizer, _ = load_model(tiny_workdir / "models/model/best.pt")
    save_checkpoint(tmp_path / "a.pt", model, tokenizer, max_source_length=100)
    save_checkpoint(tmp_path / "elsewhere/b.pt", model, tokenizer, max_source_length=100)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "elsewhere/b.pt").read_bytes()
    reloaded, _, content = load_model(tmp_path / "a.pt")
    assert content["max_source_length"] == 100
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, reloaded.state_dict()[name])


def test_weights_of_another_shape_are_named(tiny_workdir: Path, tmp_path: Path) -> None:
    content = torch.load(tiny_workdir / "models/model/best.pt", weights_only=True)
    content["weights"].pop("decoder.output.bias")
    torch.save(content, tmp_path / "old.pt")
    with pytest.raises(UserError, match=r"old\.pt: weights do not fit this model \(missing: decoder\.output\.bias\)"):
        load_model(tmp_path / "old.pt")


class _WritesAFile:
    """Unpickling this calls `exec`, which writes `marker`: what a malicious model file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('owned')",)


def test_crafted_pickle_is_refused_and_runs_nothing(tiny_workdir: Path, tmp_path: Path) -> None:
    content = torch.load(tiny_workdir / "models/model/best.pt", weights_only=True)
    content["max_source_length"] = _WritesAFile(tmp_path / "marker")
    crafted = tmp_path / "crafted.pt"
    torch.save(content, crafted)
    result = CliRunner().invoke(main, ["translate", "--model", str(crafted), "Hello."])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith(f"error: {crafted} holds pickled Python objects (exec), not only tensors")
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "marker").exists()
    torch.load(crafted, weights_only=False)  # the file is live: an unsafe load does run it
    assert (tmp_path / "marker").read_text() == "owned"


def test_old_format_is_a_one_line_error(tiny_workdir: Path, tmp_path: Path) -> None:
    content = torch.load(tiny_workdir / "models/model/best.pt", weights_only=True)
    content["format"] = "seq2seq-checkpoint-1"
    torch.save(content, tmp_path / "old.pt")
    with pytest.raises(UserError, match=f"old.pt is a seq2seq-checkpoint-1 file, an older format: .*{FORMAT}"):
        read_checkpoint(tmp_path / "old.pt")


def test_plain_data_and_generator_states_survive(tiny_workdir: Path, tmp_path: Path) -> None:
    model, tokenizer, _ = load_model(tiny_workdir / "models/model/best.pt")
    state = {
        "domains": {"tech": ["pydocs", "django-docs"], "none": []},
        "mixed": [1, 2.5, True, None, "x", b"\x00\xff", (3, "y")],
        "python_rng": random.getstate(),
        "torch_rng": torch.get_rng_state(),
    }
    save_checkpoint(tmp_path / "a.pt", model, tokenizer, 100, state)
    loaded = read_checkpoint(tmp_path / "a.pt")["training_state"]
    assert loaded["domains"] == state["domains"] and loaded["mixed"] == state["mixed"]
    random.setstate(loaded["python_rng"])
    assert torch.equal(loaded["torch_rng"], state["torch_rng"])


def test_unsafe_content_is_refused_when_written(tiny_workdir: Path, tmp_path: Path) -> None:
    model, tokenizer, _ = load_model(tiny_workdir / "models/model/best.pt")
    with pytest.raises(TypeError, match=r"checkpoint\['training_state'\]\['rng'\] is a numpy.ndarray"):
        save_checkpoint(tmp_path / "a.pt", model, tokenizer, 100, {"rng": np.zeros(3)})
    assert not (tmp_path / "a.pt").exists()


def test_garbage_pickle_is_not_readable(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    pickle.dump([1, 2], buffer, protocol=2)
    (tmp_path / "list.pt").write_bytes(buffer.getvalue()[:-3])
    with pytest.raises(UserError, match="is not a readable checkpoint"):
        read_checkpoint(tmp_path / "list.pt")


def test_averaging_averages_the_weights(tiny_workdir: Path, tmp_path: Path) -> None:
    from seq2seq.checkpoint import average_weights

    model, tokenizer, _ = load_model(tiny_workdir / "models/model/best.pt")
    original = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with torch.no_grad():
        for offset, path in ((1.0, tmp_path / "a.pt"), (3.0, tmp_path / "b.pt")):
            for name, tensor in model.state_dict().items():
                tensor.copy_(original[name] + offset)
            save_checkpoint(path, model, tokenizer, max_source_length=100)
    averaged = average_weights([tmp_path / "a.pt", tmp_path / "b.pt"])
    for name, tensor in original.items():
        assert torch.allclose(averaged[name], tensor + 2.0), name


def test_averaging_refuses_snapshots_of_another_model(tiny_workdir: Path, tmp_path: Path) -> None:
    from seq2seq.checkpoint import average_weights
    from seq2seq.model import Seq2Seq

    model, tokenizer, _ = load_model(tiny_workdir / "models/model/best.pt")
    save_checkpoint(tmp_path / "a.pt", model, tokenizer, max_source_length=100)
    other = Seq2Seq(dataclasses.replace(model.config, dropout=0.5), model.source_vocab_size, model.target_vocab_size)
    other.load_state_dict(model.state_dict())  # same weights and shapes, other settings
    save_checkpoint(tmp_path / "b.pt", other, tokenizer, max_source_length=100)
    with pytest.raises(UserError, match=r"cannot average .*b\.pt with .*a\.pt: their model_config differ"):
        average_weights([tmp_path / "a.pt", tmp_path / "b.pt"])
