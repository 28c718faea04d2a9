from pathlib import Path

import pytest
import torch

from seq2seq.checkpoint import load_model, save_checkpoint
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
    content = torch.load(tiny_workdir / "models/model/best.pt", weights_only=False)
    content["weights"].pop("decoder.output.bias")
    torch.save(content, tmp_path / "old.pt")
    with pytest.raises(UserError, match=r"old\.pt: weights do not fit this model \(missing: decoder\.output\.bias\)"):
        load_model(tmp_path / "old.pt")
