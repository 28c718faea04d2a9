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
