"""Shared fixtures: a tiny synthetic English-Korean corpus and a tiny pipeline run on it.

The corpus is made from templates ("I ate an apple today." / "나는 오늘 사과를 먹었다."), so a
model with a few thousand parameters can learn it in seconds.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from seq2seq.config import Params, parse_params

# Tiny models gain nothing from threads, and two busy OpenMP pools on two cores slow each other
# down badly; this also reaches the subprocesses that tests start.
os.environ.setdefault("OMP_NUM_THREADS", "1")

SUBJECTS = [("I", "나는"), ("You", "너는"), ("He", "그는"), ("She", "그녀는"), ("We", "우리는"), ("They", "그들은")]
OBJECTS = [("an apple", "사과를"), ("a book", "책을"), ("water", "물을"), ("bread", "빵을"), ("a letter", "편지를"),
           ("music", "음악을")]
VERBS = [("ate", "먹었다"), ("read", "읽었다"), ("bought", "샀다"), ("liked", "좋아했다")]
TIMES = [("today", "오늘"), ("yesterday", "어제")]


def toy_pairs() -> list[tuple[str, str]]:
    """288 distinct template pairs."""
    return [
        (f"{s_en} {v_en} {o_en} {t_en}.", f"{s_ko} {t_ko} {o_ko} {v_ko}.")
        for (s_en, s_ko), (o_en, o_ko), (v_en, v_ko), (t_en, t_ko) in itertools.product(SUBJECTS, OBJECTS, VERBS, TIMES)
    ]


def write_source(raw_dir: Path, name: str, pairs: list[tuple[str, str]]) -> None:
    raw_dir.mkdir(parents=True, exist_ok=True)
    (raw_dir / f"{name}.en").write_text("".join(en + "\n" for en, _ in pairs), encoding="utf-8")
    (raw_dir / f"{name}.ko").write_text("".join(ko + "\n" for _, ko in pairs), encoding="utf-8")


def write_toy_corpus(raw_dir: Path) -> None:
    """Sources `toy-a` and `toy-b` (train and test) and `toy-valid` (valid)."""
    pairs = toy_pairs()
    write_source(raw_dir, "toy-a", pairs[0::2])
    write_source(raw_dir, "toy-b", pairs[1::2])
    write_source(raw_dir, "toy-valid", pairs[::24])


TINY_PARAMS = {
    "prepare": {"sources": ["toy-a", "toy-b", "toy-valid"], "valid_sources": ["toy-valid"], "test_per_source": 6},
    "tokenizer": {"vocab_size": 400, "korean_vocab_size": 400, "input_sentence_size": 10_000},
    "model": {"embedding_size": 32, "encoder_hidden_size": 32, "decoder_hidden_size": 48, "dropout": 0.0},
    "train": {"batch_tokens": 400, "max_steps": 100, "valid_every": 50, "valid_sentences": 12,
              "learning_rate": 0.01, "warmup_steps": 10, "label_smoothing": 0.0, "bf16": False},
    "evaluate": {"beam_size": 3, "batch_size": 8, "samples": 4},
    "backtranslation": {"enabled": False, "reverse_steps": 60, "beam_size": 2, "weight": 1.0},  # dvc.yaml names them
    "recipes": {"cuda": {}},  # dvc.yaml names the section; empty, a GPU trains the tiny params as on a CPU
    "distill": {"teacher": "", "beam_size": 2, "batch_size": 16},  # off, as by default
}


def padded(sequences: list[list[int]]):
    """(source ids (B, S) padded, lengths (B,)) of id lists."""
    import torch

    from seq2seq.data import pad

    return pad(sequences), torch.tensor([len(s) for s in sequences])


def write_tiny_params(root: Path, **train: object) -> None:
    """Write TINY_PARAMS, with some `train` keys overridden, to `root/params.yaml` (for CLI runs)."""
    import yaml

    raw = {name: dict(values) for name, values in TINY_PARAMS.items()}
    raw["train"].update(train)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))


def tiny_params(**sections: dict) -> Params:
    """TINY_PARAMS with some sections' keys overridden."""
    raw = {name: {**TINY_PARAMS.get(name, {}), **sections.get(name, {})} for name in {**TINY_PARAMS, **sections}}
    return parse_params(raw)


@pytest.fixture(scope="session")
def tiny_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where prepare, tokenizer, encode and train have run on the toy corpus."""
    from seq2seq.data import encode_splits
    from seq2seq.prepare import prepare
    from seq2seq.tokenizer import load_tokenizer, train_tokenizer
    from seq2seq.train import train

    root = tmp_path_factory.mktemp("tiny")
    params = tiny_params()
    write_toy_corpus(root / "data/raw")
    prepare(root / "data/raw", root / "data/prepared", root / "metrics/prepare.json", params.prepare)
    train_tokenizer(root / "data/prepared", root / "models/tokenizer", params.tokenizer)
    encode_splits(root / "data/prepared", load_tokenizer(root / "models/tokenizer"), root / "data/encoded")
    train(params, tiny_paths(root))
    return root


def link_tiny_data(source: Path, target: Path) -> None:
    """Symlink `source`'s prepared and encoded data and tokenizer into `target`, to train there again."""
    for part in ("data/encoded", "data/prepared", "models/tokenizer"):
        (target / part).parent.mkdir(parents=True, exist_ok=True)
        (target / part).symlink_to(source / part)


DOMAIN_CONTROL = {"domain_tags": True, "default_domain": "general",
                  "domains": {"general": ["toy-a"], "technical": ["toy-b"]}, "source_weights": {"toy-b": 0.5},
                  "average_checkpoints": 2}


@pytest.fixture(scope="session")
def tagged_workdir(tiny_workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny data again, trained with domain tags, source weights, a relative position index and
    checkpoint averaging."""
    from seq2seq.train import train

    root = tmp_path_factory.mktemp("tagged")
    link_tiny_data(tiny_workdir, root)
    train(tiny_params(train=DOMAIN_CONTROL, model={"position_index": "relative"}), tiny_paths(root))
    return root


TOY_MONO = [ko for _, ko in toy_pairs()[5::7]]  # Korean sentences to back-translate
ROOT = Path(__file__).parent.parent


def write_toy_mono(mono_dir: Path) -> None:
    mono_dir.mkdir(parents=True, exist_ok=True)
    (mono_dir / "toy.ko").write_text("".join(line + "\n" for line in TOY_MONO), encoding="utf-8")


def write_tiny_project(root: Path, params: dict | None = None) -> None:
    """The repository's dvc.yaml and package in `root`, with the toy corpus, Korean text and `params`
    (default TINY_PARAMS): `dvc init` and `dvc repro` there run the real pipeline in seconds."""
    import shutil

    import yaml

    shutil.copy(ROOT / "dvc.yaml", root)
    shutil.copytree(ROOT / "seq2seq", root / "seq2seq", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "params.yaml").write_text(yaml.safe_dump(params or TINY_PARAMS))
    write_toy_corpus(root / "data/raw")
    write_toy_mono(root / "data/mono")


@pytest.fixture(scope="session")
def reverse_workdir(tiny_workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny data again, with the Korean->English model trained (`models/reverse/best.pt`) and
    Korean text to back-translate in `data/mono/toy.ko`."""
    from seq2seq.reverse import train_reverse

    root = tmp_path_factory.mktemp("reverse")
    link_tiny_data(tiny_workdir, root)
    write_toy_mono(root / "data/mono")
    paths = tiny_paths(root)
    paths.model_dir, paths.live_dir = root / "models/reverse-run", root / "models/reverse-run/live"
    train_reverse(tiny_params(backtranslation={"enabled": True, "reverse_steps": 100}), paths,
                  root / "models/reverse", root / "metrics/reverse.json")
    return root


def tiny_paths(root: Path):
    from seq2seq.train import TrainPaths

    return TrainPaths(
        encoded_dir=root / "data/encoded",
        prepared_dir=root / "data/prepared",
        tokenizer_dir=root / "models/tokenizer",
        model_dir=root / "models/model",
        live_dir=root / "dvclive",
        synthetic_dir=root / "data/backtranslated",
    )


@contextlib.contextmanager
def running_server(app) -> Iterator[str]:
    """Serve the ASGI `app` with uvicorn on a free 127.0.0.1 port in a thread; yield its base URL.

    On exit the server shuts down as on SIGTERM: requests in flight finish first.
    """
    import socket
    import threading
    import time
    import urllib.request

    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, access_log=False, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    urllib.request.urlopen(f"{url}/health", timeout=10).close()
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=60)
