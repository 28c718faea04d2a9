from pathlib import Path

import pytest

from seq2seq.config import TokenizerConfig
from seq2seq.errors import UserError
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, load_tokenizer, sample_lines, train_tokenizer
from tests.conftest import toy_pairs


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prepared")
    pairs = toy_pairs()
    (root / "train.en").write_text("".join(en + "\n" for en, _ in pairs), encoding="utf-8")
    (root / "train.ko").write_text("".join(ko + "\n" for _, ko in pairs), encoding="utf-8")
    return root


@pytest.mark.parametrize("joint", [True, False])
def test_korean_round_trip(prepared: Path, tmp_path: Path, joint: bool) -> None:
    train_tokenizer(prepared, tmp_path / "tok", TokenizerConfig(vocab_size=400, korean_vocab_size=400, joint=joint))
    tokenizer = load_tokenizer(tmp_path / "tok")
    assert (tokenizer.source is tokenizer.target) == joint
    # Unseen Hangul, Hanja and an emoji come back intact thanks to byte fallback.
    texts = ["나는 오늘 사과를 먹었다.", "그녀는 鬱陵島에서 😀 편지를 읽었다."]
    ids = tokenizer.encode_target(texts)
    assert tokenizer.decode_target(ids) == texts
    assert UNK_ID not in ids[1]
    processor = tokenizer.target
    assert (processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id()) == (
        PAD_ID, UNK_ID, BOS_ID, EOS_ID)


def test_training_is_deterministic(prepared: Path, tmp_path: Path) -> None:
    config = TokenizerConfig(vocab_size=400, korean_vocab_size=400, input_sentence_size=100)
    train_tokenizer(prepared, tmp_path / "a", config)
    train_tokenizer(prepared, tmp_path / "b", config)
    for name in ("en.model", "ko.model"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_sample_lines_is_bounded_and_seeded(prepared: Path) -> None:
    first = sample_lines([prepared / "train.en"], 10, seed=1)
    assert len(first) == 10
    assert first == sample_lines([prepared / "train.en"], 10, seed=1)
    assert first != sample_lines([prepared / "train.en"], 10, seed=2)


def test_missing_inputs(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="prepare"):
        train_tokenizer(tmp_path, tmp_path / "tok", TokenizerConfig())
    with pytest.raises(UserError, match="tokenizer"):
        load_tokenizer(tmp_path)


def test_too_small_vocabulary_is_a_user_error(prepared: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="vocab_size"):
        train_tokenizer(prepared, tmp_path / "tok", TokenizerConfig(vocab_size=300, joint=True))
    assert not (tmp_path / "tok").exists()


@pytest.mark.parametrize("byte_fallback", [True, False])
def test_unk_is_never_emitted_only_with_byte_fallback(prepared: Path, tmp_path: Path, byte_fallback: bool) -> None:
    config = TokenizerConfig(vocab_size=400, korean_vocab_size=400, byte_fallback=byte_fallback)
    train_tokenizer(prepared, tmp_path / "tok", config)
    tokenizer = load_tokenizer(tmp_path / "tok")
    expected = (PAD_ID, BOS_ID, UNK_ID) if byte_fallback else (PAD_ID, BOS_ID)
    assert tokenizer.never_emitted() == expected
