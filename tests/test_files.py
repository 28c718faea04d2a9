import os
import sys
from pathlib import Path

import pytest

from seq2seq import files
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


def write_output(folder: Path, version: str) -> None:
    """A stage's output of two files, both naming `version`."""
    with atomic_dir(folder) as temp:
        for name in ("a.txt", "b.txt"):
            (temp / name).write_text(version)


def output_version(folder: Path) -> str | None:
    """The version `folder` holds whole (both files the same), else None (missing or mixed)."""
    versions = {(folder / name).read_text() for name in ("a.txt", "b.txt") if (folder / name).is_file()}
    return versions.pop() if len(versions) == 1 and len(list(folder.iterdir())) == 2 else None


@pytest.mark.skipif(sys.platform != "linux", reason="folders swap in one step on Linux (renameat2)")
def test_a_replaced_folder_is_whole_after_every_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Readers (and a crash) at any moment find the old output or the new one, never no folder."""
    output = tmp_path / "encoded"
    write_output(output, "old")
    seen: list[str | None] = []

    def checked(rename):  # noqa: ANN001, ANN202
        def call(*arguments):  # noqa: ANN002, ANN202
            result = rename(*arguments)
            seen.append(output_version(output))
            return result
        return call

    monkeypatch.setattr(os, "replace", checked(os.replace))
    monkeypatch.setattr(os, "rename", checked(os.rename))
    monkeypatch.setattr(files, "exchange", checked(getattr(files, "exchange", None)), raising=False)
    write_output(output, "new")
    assert seen and None not in seen and seen[-1] == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoded"]  # the old one is gone


def test_without_exchange_an_interrupted_replacement_is_undone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where folders cannot be swapped in one step, a crash between the two renames leaves the old
    output at .NAME.old; the next run puts it back first (even if that run fails too), never deletes it."""
    monkeypatch.setattr(files, "exchange", lambda first, second: False, raising=False)
    output = tmp_path / "model"
    write_output(output, "old")
    real_replace = os.replace

    def crash_moving_the_new_one_in(source: Path, target: Path) -> None:
        if Path(source).name.endswith(".tmp"):
            raise KeyboardInterrupt  # killed between the renames
        real_replace(source, target)

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", crash_moving_the_new_one_in)
        with pytest.raises(KeyboardInterrupt):
            write_output(output, "new")
    assert not output.exists() and output_version(tmp_path / ".model.old") == "old"
    with pytest.raises(RuntimeError), atomic_dir(output):
        assert output_version(output) == "old"  # put back before the stage's work starts
        raise RuntimeError("the next run fails as well")
    assert output_version(output) == "old"
    write_output(output, "new")
    assert output_version(output) == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
