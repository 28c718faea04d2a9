"""The training commands run on tcmalloc where the system has it, and the user can keep the system's."""

import ctypes.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seq2seq import allocator
from seq2seq.allocator import OPT_OUT, tcmalloc_environment
from tests.conftest import ROOT, link_tiny_data, write_tiny_params

TCMALLOC = ctypes.util.find_library("tcmalloc_minimal")


def test_the_environment_preloads_tcmalloc_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator.sys, "platform", "linux")
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: f"lib{name}.so.4")
    assert tcmalloc_environment({"PATH": "/bin"}) == {"PATH": "/bin", "LD_PRELOAD": "libtcmalloc_minimal.so.4"}
    assert tcmalloc_environment({"LD_PRELOAD": "libmine.so"})["LD_PRELOAD"] == "libtcmalloc_minimal.so.4 libmine.so"
    assert tcmalloc_environment({"LD_PRELOAD": "/opt/libtcmalloc.so"}) is None  # there already: no second start
    assert tcmalloc_environment({OPT_OUT: "system"}) is None
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: None)
    assert tcmalloc_environment({}) is None  # not installed: the system's allocator


def _train_allocator(tmp_path: Path, **environment: str) -> str:
    """The allocator that `seq2seq train` (the program, as dvc runs it) recorded for its run."""
    inherited = {name: value for name, value in os.environ.items() if name not in ("LD_PRELOAD", OPT_OUT)}
    result = subprocess.run([sys.executable, "-m", "seq2seq", "train"], cwd=tmp_path, capture_output=True, text=True,
                            env={**inherited, "PYTHONPATH": str(ROOT), **environment}, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads((tmp_path / "dvclive/metrics.json").read_text())["machine"]["allocator"]


@pytest.mark.skipif(TCMALLOC is None, reason="tcmalloc not installed (make install-tcmalloc)")
def test_the_train_command_restarts_on_tcmalloc(tiny_workdir: Path, tmp_path: Path) -> None:
    link_tiny_data(tiny_workdir, tmp_path)
    write_tiny_params(tmp_path, max_steps=4, valid_every=4)
    assert _train_allocator(tmp_path) == "tcmalloc"
    assert _train_allocator(tmp_path, **{OPT_OUT: "system"}) == "system"
