from pathlib import Path

import numpy as np
import pytest

from seq2seq.data import ParallelData, TokenArray, collate, make_batches, write_token_array
from seq2seq.errors import UserError
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID


def test_token_array_round_trips_ids(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sequences = [rng.integers(4, 70_000, size=n).tolist() for n in rng.integers(0, 30, size=500)]
    chunks = [sequences[i : i + 64] for i in range(0, len(sequences), 64)]
    write_token_array(tmp_path / "x", iter(chunks))
    array = TokenArray.open(tmp_path / "x")
    assert len(array) == len(sequences)
    assert [array[i].tolist() for i in range(len(array))] == sequences
    assert array.lengths.tolist() == [len(s) for s in sequences]
    assert isinstance(array.ids, np.memmap)


def test_missing_arrays_say_encode(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="encode"):
        ParallelData.open(tmp_path, "train")


def test_batches_cover_filter_and_respect_budget() -> None:
    rng = np.random.default_rng(1)
    source = rng.integers(1, 40, size=1000)
    target = rng.integers(1, 40, size=1000)
    target[:5] = 80  # too long: left out
    batches = make_batches(source, target, batch_tokens=300, max_length=50, seed=3)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(5, 1000))
    for batch in batches:
        width = np.maximum(source[batch], target[batch]).max() + 1
        assert len(batch) * width <= 300 or len(batch) == 1
    assert [b.tolist() for b in batches] == [b.tolist() for b in make_batches(source, target, 300, 50, seed=3)]
    assert [b.tolist() for b in batches] != [b.tolist() for b in make_batches(source, target, 300, 50, seed=4)]


def test_collate_adds_bos_eos_and_padding() -> None:
    source = TokenArray(np.array([5, 6, 7, 8], dtype=np.int32), np.array([0, 3, 4]))
    target = TokenArray(np.array([9, 10, 11], dtype=np.int32), np.array([0, 1, 3]))
    batch = collate(ParallelData(source, target), np.array([0, 1]))
    assert batch.source.tolist() == [[5, 6, 7], [8, PAD_ID, PAD_ID]]
    assert batch.source_lengths.tolist() == [3, 1]
    assert batch.target_input.tolist() == [[BOS_ID, 9, PAD_ID], [BOS_ID, 10, 11]]
    assert batch.target_output.tolist() == [[9, EOS_ID, PAD_ID], [10, 11, EOS_ID]]
    assert batch.target_tokens == 5


def test_batches_follow_the_epoch_sample_with_repeats() -> None:
    lengths = np.full(10, 5)
    sample = np.array([0, 0, 0, 3, 7, 7])
    flat = np.concatenate(make_batches(lengths, lengths, batch_tokens=12, max_length=50, seed=1, sample=sample))
    assert sorted(flat.tolist()) == [0, 0, 0, 3, 7, 7]


def test_collate_puts_the_domain_tag_first() -> None:
    source = TokenArray(np.array([5, 6, 7, 8], dtype=np.int32), np.array([0, 3, 4]))
    target = TokenArray(np.array([9, 10, 11], dtype=np.int32), np.array([0, 1, 3]))
    batch = collate(ParallelData(source, target, tags=np.array([100, 101])), np.array([0, 1]))
    assert batch.source.tolist() == [[100, 5, 6, 7], [101, 8, PAD_ID, PAD_ID]]
    assert batch.source_lengths.tolist() == [4, 2]
