"""Checkpoint files: written atomically, self-contained, checked when read.

A checkpoint holds the model's params and weights and the tokenizer's SentencePiece protos, so
`seq2seq translate --model FILE` needs that one file. `last.pt` also holds the training state
(optimizer, schedule, position in the epoch, random generators) that `train --resume` restores.

Safe to open from anywhere: a checkpoint holds only tensors and plain data (dict, list, tuple, str,
bytes, int, float, bool, None), checked when written, and is read with `torch.load(weights_only=True)`,
which refuses any pickled class or function, so a crafted `.pt` file cannot run code.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from seq2seq.config import ConfigError, parse_params
from seq2seq.domains import Domains
from seq2seq.errors import UserError
from seq2seq.files import atomic_path
from seq2seq.model import Seq2Seq
from seq2seq.tokenizer import Tokenizer

FORMAT = "seq2seq-checkpoint-2"  # 2: tensors and plain data only, read with weights_only=True

_PLAIN_TYPES = (str, bytes, int, float, bool, type(None), torch.Tensor, torch.Size)


def check_plain(value: Any, where: str = "checkpoint") -> None:
    """Raise `TypeError` naming the first value that `torch.load(weights_only=True)` would refuse."""
    if type(value) in (dict, OrderedDict):  # what state_dict() returns; other dict subclasses are refused
        for key, item in value.items():
            check_plain(key, f"{where} key")
            check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        for index, item in enumerate(value):
            check_plain(item, f"{where}[{index}]")
    elif not isinstance(value, _PLAIN_TYPES) or type(value).__module__ == "numpy":
        raise TypeError(f"{where} is a {type(value).__module__}.{type(value).__qualname__}: a checkpoint "
                        "holds only tensors and plain data")


def save_checkpoint(
    path: Path, model: Seq2Seq, tokenizer: Tokenizer, max_source_length: int, training_state: dict | None = None,
    domains: Domains | None = None,
    summary: dict | None = None,
) -> None:
    """Write `path` atomically: the old file stays whole until the new one is complete.

    `max_source_length` is the longest input (in tokens) the model was trained on; translate cuts
    longer input to it. `domains` are the domain tags the model reads, if it was trained with them;
    `summary` (plain numbers, e.g. step and valid chrF) is what `serve` reports.
    """
    source_proto, target_proto = tokenizer.protos()
    content = {
        "format": FORMAT,
        "model_config": dataclasses.asdict(model.config),
        "vocab_sizes": (model.source_vocab_size, model.target_vocab_size),
        "weights": model.state_dict(),
        "tokenizer": {"source": source_proto, "target": target_proto},
        "max_source_length": max_source_length,
        "domains": domains.to_dict() if domains else None,
        "training_state": training_state,
        "summary": summary,
    }
    check_plain(content)
    # Serialised in memory first: torch.save names the archive inside the file after the file, and
    # the temporary file's random name would make the bytes differ from run to run.
    buffer = io.BytesIO()
    torch.save(content, buffer)
    with atomic_path(path) as temp:
        temp.write_bytes(buffer.getvalue())


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load and check a checkpoint's content; a clear `UserError` for a missing or broken file."""
    if not path.exists():
        raise UserError(f"no model at {path}: run `dvc repro` (the train stage writes it) or pass --model")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        needed = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if needed:
            raise UserError(f"{path} holds pickled Python objects ({needed[1]}), not only tensors and plain data: "
                            f"refused, as loading it could run code (a crafted file, or not a {FORMAT} one)"
                            ) from None
        raise UserError(f"{path} is not a readable checkpoint (UnpicklingError); retrain or restore it") from None
    except Exception as error:  # a damaged file fails in many ways; torch's safe unpickler even raises IndexError
        reason = type(error).__name__
        raise UserError(f"{path} is not a readable checkpoint ({reason}); retrain or restore it") from None
    found = content.get("format") if isinstance(content, dict) else None
    if isinstance(found, str) and found.startswith("seq2seq-checkpoint-") and found != FORMAT:
        raise UserError(f"{path} is a {found} file, an older format: retrain to write a {FORMAT} file")
    if found != FORMAT:
        raise UserError(f"{path} is not a {FORMAT} file (made by another version or program?)")
    return content


_OLD_ENCODER_KEY = re.compile(r"encoder\.rnn\.(weight|bias)_(ih|hh)_l(\d+)(_reverse)?")


def upgrade_weights(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the weights of an encoder saved as one (bidirectional, multi-layer) `nn.GRU`
    (`encoder.rnn.weight_ih_l0_reverse`) to the one-directional RNN per layer and direction that
    the encoder now holds (`encoder.layers.0.1.weight_ih_l0`); other names stay."""
    def rename(name: str) -> str:
        old = _OLD_ENCODER_KEY.fullmatch(name)
        if old is None:
            return name
        kind, side, layer, reverse = old.groups()
        return f"encoder.layers.{layer}.{1 if reverse else 0}.{kind}_{side}_l0"

    return OrderedDict((rename(name), tensor) for name, tensor in weights.items())


def load_weights(model: Seq2Seq, weights: dict[str, torch.Tensor], path: Path) -> None:
    """`model.load_state_dict`, with a one-line `UserError` that says what does not fit."""
    weights = upgrade_weights(weights)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(weights) if expected[k].shape != weights[k].shape)
    problems = [f"{label}: {', '.join(keys[:3])}" for label, keys in
                (("missing", missing), ("unexpected", unexpected), ("other shape", wrong_shape)) if keys]
    if problems:
        raise UserError(f"{path}: weights do not fit this model ({'; '.join(problems)}); retrain it")
    model.load_state_dict(weights)


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[Seq2Seq, Tokenizer, dict[str, Any]]:
    """The model (in eval mode, on `device`), its tokenizer, and the raw checkpoint content."""
    content = read_checkpoint(path)
    try:
        config = parse_params({"model": content["model_config"]}).model
    except ConfigError as error:
        raise UserError(f"{path}: incompatible model settings: {error}") from None
    model = Seq2Seq(config, *content["vocab_sizes"])
    load_weights(model, content["weights"], path)
    tokenizer = Tokenizer.from_protos(content["tokenizer"]["source"], content["tokenizer"]["target"])
    return model.to(device).eval(), tokenizer, content



def average_weights(paths: list[Path]) -> dict[str, torch.Tensor]:
    """The element-wise mean of the weights in several checkpoints of one model (Junczys-Dowmunt et
    al. 2016: the average of the last few checkpoints often translates better than any one of them)."""
    total: dict[str, torch.Tensor] = {}
    first: dict[str, Any] = {}
    for path in paths:
        content = read_checkpoint(path)
        model = {key: content.get(key) for key in ("model_config", "vocab_sizes", "tokenizer", "domains")}
        first = first or model
        differing = [key for key in model if model[key] != first[key]]
        if differing:
            raise UserError(f"cannot average {path} with {paths[0]}: their {differing[0]} differ (another model)")
        for name, tensor in content["weights"].items():
            total[name] = total.get(name, 0) + tensor.double()
    return {name: (tensor / len(paths)).float() for name, tensor in total.items()}
