from pathlib import Path

import pytest

from seq2seq.config import PrepareConfig
from seq2seq.errors import UserError
from seq2seq.prepare import drop_reason, normalize, prepare
from tests.conftest import toy_pairs, write_source


def config(**overrides) -> PrepareConfig:
    values = {"sources": ["main", "other", "dev"], "valid_sources": ["dev"], "test_per_source": 3,
              "max_chars": 60, "max_length_ratio": 3.0, "seed": 7}
    return PrepareConfig(**{**values, **overrides})


def read(out: Path, name: str) -> list[str]:
    return (out / name).read_text(encoding="utf-8").splitlines()


def test_normalize() -> None:
    assert normalize("  Ｈｅｌｌｏ\u200b\tworld \x07 ") == "Hello world"
    assert normalize("안녕\u3000하세요") == "안녕 하세요"


def test_drop_reasons() -> None:
    c = config()
    assert drop_reason("", "가", c) == "empty"
    assert drop_reason("a" * 61, "가" * 30, c) == "too_long"
    assert drop_reason("a" * 40, "가", c) == "length_ratio"
    assert drop_reason("Hello there.", "안녕하세요.", c) is None


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    pairs = toy_pairs()[:40]
    write_source(raw, "main", pairs[:30] + [
        ("", "빈 줄"),                       # empty
        ("x" * 100, "긴 줄"),                # too long
        ("a very long english line here", "짧"),  # length ratio
        pairs[0],                             # exact duplicate
        (pairs[35][0], "완전히 다른 번역 문장입니다"),        # English side of a valid pair: overlap
    ])
    write_source(raw, "other", pairs[30:34])
    write_source(raw, "dev", pairs[34:40])
    return raw


def test_prepare_filters_splits_and_counts(raw: Path, tmp_path: Path) -> None:
    stats = prepare(raw, tmp_path / "out", tmp_path / "stats.json", config())
    out = tmp_path / "out"
    assert stats["dropped"] == {"duplicate": 1, "empty": 1, "length_ratio": 1, "overlap": 1, "too_long": 1}
    assert stats["pairs"] == {"train": 28, "valid": 6, "test": 6}
    assert stats["pairs_per_source"]["test"] == {"main": 3, "other": 3}
    for split in ("train", "valid", "test"):
        lengths = {len(read(out, f"{split}.{kind}")) for kind in ("en", "ko", "source")}
        assert lengths == {stats["pairs"][split]}
    assert read(out, "valid.en") == [en for en, _ in toy_pairs()[34:40]]
    held_out = set(read(out, "valid.en") + read(out, "test.en") + read(out, "valid.ko") + read(out, "test.ko"))
    assert not held_out & set(read(out, "train.en") + read(out, "train.ko"))
    train_pairs = list(zip(read(out, "train.en"), read(out, "train.ko"), strict=True))
    assert len(train_pairs) == len(set(train_pairs))


def test_prepare_is_deterministic(raw: Path, tmp_path: Path) -> None:
    prepare(raw, tmp_path / "a", tmp_path / "a.json", config())
    prepare(raw, tmp_path / "b", tmp_path / "b.json", config())
    for name in sorted(p.name for p in (tmp_path / "a").iterdir()):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    prepare(raw, tmp_path / "c", tmp_path / "c.json", config(seed=8))
    assert read(tmp_path / "c", "test.en") != read(tmp_path / "a", "test.en")


def test_mismatched_line_counts_write_nothing(raw: Path, tmp_path: Path) -> None:
    (raw / "other.ko").write_text("하나\n둘\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"other\.en has 4 lines but .*other\.ko has 2"):
        prepare(raw, tmp_path / "out", tmp_path / "stats.json", config())
    assert not (tmp_path / "out").exists() and not (tmp_path / "stats.json").exists()


def test_missing_raw_dir_says_dvc_pull(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="dvc pull"):
        prepare(tmp_path / "nowhere", tmp_path / "out", tmp_path / "stats.json", config())


def test_unknown_source_lists_available(raw: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="source 'nope' not found.*available: dev, main, other"):
        prepare(raw, tmp_path / "out", tmp_path / "stats.json", config(sources=["main", "nope"]))
