from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import torch

from seq2seq.data import (
    ParallelData,
    TokenArray,
    collate,
    drop_words,
    make_batches,
    read_synthetic_pairs,
    resegment,
    write_token_array,
)
from seq2seq.errors import UserError
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, load_tokenizer


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


def test_token_arrays_join_in_order() -> None:
    joined = TokenArray.of([[5, 6], [7]]) + TokenArray.of([[], [8, 9, 10]])
    assert [joined[i].tolist() for i in range(len(joined))] == [[5, 6], [7], [], [8, 9, 10]]
    assert joined.lengths.tolist() == [2, 1, 0, 3]


def test_joining_keeps_a_memory_mapped_corpus_on_disk(tmp_path: Path) -> None:
    """Back-translated pairs after the encoded corpus: each corpus sentence is still read from the
    memory map (no copy of the corpus in memory), and every slice reads as the joined ids would."""
    rng = np.random.default_rng(2)
    sequences = [rng.integers(4, 9_000, size=n).tolist() for n in rng.integers(0, 12, size=300)]
    write_token_array(tmp_path / "train.en", [sequences[:200], sequences[200:]])
    corpus = TokenArray.open(tmp_path / "train.en")
    joined = corpus + TokenArray.of([[], [1, 2, 3]]) + TokenArray.of([[4]])
    assert [joined[i].tolist() for i in range(len(joined))] == [*sequences, [], [1, 2, 3], [4]]
    assert all(np.shares_memory(joined[i], corpus.ids) for i in range(len(corpus)) if len(corpus[i]))
    everything = np.concatenate([np.asarray(corpus.ids), [1, 2, 3, 4]])
    assert np.asarray(joined.ids).tolist() == joined.ids.tolist() == everything.tolist()
    assert len(joined.ids) == len(everything) and joined.folder == tmp_path
    for start, stop in [(0, 7), (len(everything) - 5, len(everything) + 9), (len(everything) - 4, len(everything) - 1),
                        (5, 5), (3, len(everything))]:  # across the parts' seams, as the batch fingerprint reads
        assert joined.ids[start:stop].tolist() == everything[start:stop].tolist()


def test_reversed_data_swaps_the_sides_and_drops_the_tags() -> None:
    data = ParallelData(TokenArray.of([[5, 6]]), TokenArray.of([[7]]), tags=np.array([100]))
    swapped = data.reversed()
    assert (swapped.source_ids(0).tolist(), swapped.target[0].tolist()) == ([7], [5, 6])


def test_word_dropout_replaces_only_real_tokens() -> None:
    torch.manual_seed(0)
    source = torch.tensor([[100, 5, 6, 7, 8, 9, 10, 11], [101, 5, 6, PAD_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID]])
    dropped = drop_words(source.repeat(50, 1), 0.5, first_tag_id=100)
    kept = dropped == source.repeat(50, 1)
    assert kept[:, 0].all() and (dropped[source.repeat(50, 1) == PAD_ID] == PAD_ID).all()  # tags, padding
    assert set(dropped[~kept].tolist()) == {UNK_ID}
    real = (source.repeat(50, 1) != PAD_ID) & (source.repeat(50, 1) < 100)
    assert 0.4 < (~kept).sum() / real.sum() < 0.6
    assert torch.equal(drop_words(source, 0.0), source)


def test_synthetic_pairs_are_read_and_checked(tiny_workdir: Path, tmp_path: Path) -> None:
    tokenizer = load_tokenizer(tiny_workdir / "models/tokenizer")
    assert read_synthetic_pairs(tmp_path / "none", tokenizer) is None
    (tmp_path / "train.en").write_text("I ate bread today.\nYou read a book.\n", encoding="utf-8")
    (tmp_path / "train.ko").write_text("나는 오늘 빵을 먹었다.\n너는 책을 읽었다.\n", encoding="utf-8")
    pairs = read_synthetic_pairs(tmp_path, tokenizer)
    assert len(pairs) == 2
    assert tokenizer.target.decode(pairs.target[1].tolist()) == "너는 책을 읽었다."
    (tmp_path / "train.ko").write_text("나는 오늘 빵을 먹었다.\n", encoding="utf-8")
    with pytest.raises(UserError, match="2 English but 1 Korean lines; rerun the backtranslate stage"):
        read_synthetic_pairs(tmp_path, tokenizer)
    for name in ("train.en", "train.ko"):
        (tmp_path / name).write_text("")
    assert read_synthetic_pairs(tmp_path, tokenizer) is None  # back-translation off


def test_resegment_samples_other_segmentations_of_the_same_text_per_seed(tiny_workdir: Path) -> None:
    tokenizer = load_tokenizer(tiny_workdir / "models/tokenizer")
    plain = ParallelData.open(tiny_workdir / "data/encoded", "train")
    plain.tags = np.arange(len(plain)) % 3 + 1000

    def texts(data: ParallelData) -> tuple[list[str], list[str]]:
        return ([tokenizer.source.decode(data.source[i].tolist()) for i in range(len(data))],
                [tokenizer.target.decode(data.target[i].tolist()) for i in range(len(data))])

    first, again, other = (resegment(plain, tokenizer, alpha=0.1, seed=seed, chunk_pairs=7) for seed in (1, 1, 2))
    assert texts(first) == texts(plain)
    assert first.source.ids.tolist() != plain.source.ids.tolist()
    assert first.source.lengths.sum() > plain.source.lengths.sum()  # sampled pieces are shorter
    assert first.source.ids.tolist() == again.source.ids.tolist()  # seeded: the same epoch, the same sample
    assert first.target.ids.tolist() == again.target.ids.tolist()
    assert first.source.ids.tolist() != other.source.ids.tolist()
    assert first.tags is plain.tags
    assert isinstance(first.source.ids, np.memmap) and isinstance(first.target.ids, np.memmap)  # not in memory
    # the same ids as the whole corpus resampled in memory, in the same order of draws
    spm.set_random_generator_seed(1)
    in_memory = [[piece for start in range(0, len(array), 7) for piece in processor.encode(
        processor.decode([array[i].tolist() for i in range(start, min(start + 7, len(array)))]),
        enable_sampling=True, alpha=0.1, nbest_size=-1, num_threads=1)]
        for array, processor in ((plain.source, tokenizer.source), (plain.target, tokenizer.target))]
    assert [[array[i].tolist() for i in range(len(array))] for array in (first.source, first.target)] == in_memory
