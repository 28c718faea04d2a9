import os
from pathlib import Path

import pytest

from seq2seq.errors import UserError
from seq2seq.files import atomic_dir, write_json


def test_atomic_writers_make_missing_folders_or_fail_in_one_line(tmp_path: Path) -> None:
    write_json(tmp_path / "a/b/c.json", {"x": 1})
    assert (tmp_path / "a/b/c.json").read_text() == '{\n  "x": 1\n}\n'
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(UserError, match=r"cannot write .*file/d/c\.json: .*file is a file, not a folder"):
        write_json(tmp_path / "file/d/c.json", {})
    with pytest.raises(UserError, match=r"cannot write .*file/out: .*file is a file, not a folder"), \
            atomic_dir(tmp_path / "file/out"):
        pass
    assert (tmp_path / "file").read_text() == "in the way"


def test_atomic_writes_reach_the_disk_before_and_after_the_rename(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A power cut must find the old file or the whole new one: data synced before the rename, the
    folder's entry after it."""
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(handle: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{handle}"))
        real_fsync(handle)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    write_json(tmp_path / "out/metrics.json", {"x": 1})
    assert len(synced) == 2 and Path(synced[0]).name.startswith(".metrics.json.") and synced[1] == str(tmp_path / "out")
    synced.clear()
    with atomic_dir(tmp_path / "model") as temp:
        (temp / "a.bin").write_bytes(b"weights")
    assert [Path(p).name for p in synced[:1]] == ["a.bin"] and synced[-1] == str(tmp_path)
    assert (tmp_path / "model/a.bin").read_bytes() == b"weights"
