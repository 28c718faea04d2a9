"""Token-id datasets on disk and length-bucketed batches.

Stage 3, `encode`, tokenises each prepared split once into a compact binary form:
`SPLIT.LANG.ids` (every sentence's token ids back to back, int32) and `SPLIT.LANG.offsets.npy`
(where each sentence starts; N+1 int64). Training memory-maps them, so a corpus larger than
memory never becomes Python objects.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import sentencepiece as spm
import torch

from seq2seq.errors import UserError
from seq2seq.files import atomic_dir
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer, batched

ID_DTYPE = np.int32


class ConcatenatedIds:
    """Id arrays read as one 1-D array without copying them: a slice inside one part is a view of it
    (a memory-mapped part stays on disk), a slice across parts a copy of that slice alone. Enough of
    an array for `TokenArray` and the batch fingerprint: `len`, slices, `np.asarray`, `tolist`."""

    def __init__(self, parts: Sequence[np.ndarray]) -> None:
        self.parts = [part for part in parts if len(part)]
        self.starts = np.concatenate([[0], np.cumsum([len(part) for part in self.parts], dtype=np.int64)])
        self.dtype = np.dtype(ID_DTYPE)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, key: slice) -> np.ndarray:
        start, stop, step = key.indices(len(self))
        if step != 1:
            raise IndexError("ConcatenatedIds takes slices with step 1")
        if stop <= start:
            return np.zeros(0, self.dtype)
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        if stop <= self.starts[first + 1]:  # within one part, as every sentence is: a view, no copy
            return self.parts[first][start - self.starts[first] : stop - self.starts[first]]
        last = int(np.searchsorted(self.starts, stop, side="left")) - 1
        return np.concatenate([self.parts[i][max(start - self.starts[i], 0) : stop - self.starts[i]]
                               for i in range(first, last + 1)])

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        joined = np.concatenate(self.parts) if self.parts else np.zeros(0, self.dtype)
        return joined if dtype is None else joined.astype(dtype)

    def tolist(self) -> list[int]:
        return np.asarray(self).tolist()


def _id_parts(ids: np.ndarray | ConcatenatedIds) -> list[np.ndarray]:
    return ids.parts if isinstance(ids, ConcatenatedIds) else [ids]


class TokenArray:
    """A read-only list of token-id sequences backed by two files (see the module docstring).

    `ids` is one array (memory-mapped when opened) or a `ConcatenatedIds` of several (after `+`);
    `offsets` (N+1 int64, in memory) says where each sequence starts in it.
    """

    def __init__(self, ids: np.ndarray | ConcatenatedIds, offsets: np.ndarray) -> None:
        self.ids = ids
        self.offsets = offsets

    @classmethod
    def open(cls, prefix: Path) -> TokenArray:
        ids_path, offsets_path = Path(f"{prefix}.ids"), Path(f"{prefix}.offsets.npy")
        if not ids_path.exists() or not offsets_path.exists():
            raise UserError(f"{ids_path} not found: run the encode stage first (`dvc repro encode`)")
        offsets = np.load(offsets_path)
        ids = np.memmap(ids_path, dtype=ID_DTYPE, mode="r") if offsets[-1] > 0 else np.zeros(0, ID_DTYPE)
        return cls(ids, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> np.ndarray:
        return self.ids[self.offsets[index] : self.offsets[index + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def of(cls, sequences: Sequence[Sequence[int]]) -> TokenArray:
        """An in-memory array of `sequences`."""
        offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(s) for s in sequences])
        ids = np.fromiter((i for s in sequences for i in s), dtype=ID_DTYPE, count=int(offsets[-1]))
        return cls(ids, offsets)

    def __add__(self, other: TokenArray) -> TokenArray:
        """Both arrays' sequences, this one's first. The ids are not copied: a memory-mapped corpus
        stays on disk (only the offsets, 8 bytes a sequence, are joined in memory)."""
        return TokenArray(ConcatenatedIds(_id_parts(self.ids) + _id_parts(other.ids)),
                          np.concatenate([self.offsets, other.offsets[1:] + self.offsets[-1]]))

    @property
    def folder(self) -> Path | None:
        """The folder of the first memory-mapped file behind the ids; None when all are in memory."""
        return next((Path(part.filename).parent for part in _id_parts(self.ids)
                     if isinstance(part, np.memmap) and part.filename), None)


def _write_ids(ids_file: BinaryIO, sequences_in_chunks: Iterable[list[list[int]]]) -> np.ndarray:
    """Write chunks of id sequences back to back into `ids_file`; returns their offsets (N+1 int64)."""
    offsets = [np.zeros(1, dtype=np.int64)]
    for chunk in sequences_in_chunks:
        if chunk:
            offsets.append(offsets[-1][-1] + np.cumsum([len(sequence) for sequence in chunk], dtype=np.int64))
            np.concatenate([np.asarray(s, dtype=ID_DTYPE) for s in chunk]).tofile(ids_file)
    return np.concatenate(offsets)


def write_token_array(prefix: Path, sequences_in_chunks: Iterable[list[list[int]]]) -> int:
    """Stream chunks of id sequences into `PREFIX.ids` and `PREFIX.offsets.npy`; returns the token count."""
    with open(f"{prefix}.ids", "wb") as ids_file:
        offsets = _write_ids(ids_file, sequences_in_chunks)
    np.save(f"{prefix}.offsets.npy", offsets)
    return int(offsets[-1])


def spilled_token_array(sequences_in_chunks: Iterable[list[list[int]]], folder: Path | None) -> TokenArray:
    """A token array of the chunks' sequences, memory-mapped from a nameless temporary file in
    `folder` (the system's temporary folder where that is None or cannot take one). The file has no
    name from the start, so nothing is left behind, even by a killed process; it is freed with the array."""
    writable = folder is not None and folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)
    with tempfile.TemporaryFile(dir=folder if writable else None) as ids_file:
        offsets = _write_ids(ids_file, sequences_in_chunks)
        ids_file.flush()
        ids = np.memmap(ids_file, dtype=ID_DTYPE, mode="r") if offsets[-1] > 0 else np.zeros(0, ID_DTYPE)
    return TokenArray(ids, offsets)


def encode_splits(prepared_dir: Path, tokenizer: Tokenizer, out_dir: Path, chunk_lines: int = 10_000) -> dict:
    """Tokenise every split of `prepared_dir` into `out_dir`; returns token counts per split and side."""
    counts: dict[str, dict[str, int]] = {}
    with atomic_dir(out_dir) as temp:
        for split in ("train", "valid", "test"):
            counts[split] = {}
            for lang, encode in (("en", tokenizer.encode_source), ("ko", tokenizer.encode_target)):
                path = prepared_dir / f"{split}.{lang}"
                if not path.exists():
                    raise UserError(f"{path} not found: run the prepare stage first (`dvc repro prepare`)")
                with path.open(encoding="utf-8") as handle:
                    lines = (line.rstrip("\n") for line in handle)
                    chunks = (encode(chunk) for chunk in batched(lines, chunk_lines))
                    counts[split][lang] = write_token_array(temp / f"{split}.{lang}", chunks)
    return counts


@dataclass
class ParallelData:
    """Aligned English (source) and Korean (target) token arrays of one split.

    `tags`, when set, holds one domain-tag id per sentence, which `collate` puts before the source.
    """

    source: TokenArray
    target: TokenArray
    tags: np.ndarray | None = None

    @classmethod
    def open(cls, encoded_dir: Path, split: str) -> ParallelData:
        data = cls(TokenArray.open(encoded_dir / f"{split}.en"), TokenArray.open(encoded_dir / f"{split}.ko"))
        if len(data.source) != len(data.target):
            raise UserError(f"{encoded_dir}/{split}: {len(data.source)} English but {len(data.target)} Korean lines")
        return data

    def __len__(self) -> int:
        return len(self.source)

    def reversed(self) -> ParallelData:
        """Korean as the source and English as the target (no tags): the back-translation model's data."""
        return ParallelData(self.target, self.source)

    def __add__(self, other: ParallelData) -> ParallelData:
        """Both splits' pairs (without tags), this one's first."""
        return ParallelData(self.source + other.source, self.target + other.target)

    def source_ids(self, index: int) -> np.ndarray:
        """Sentence `index`'s source ids, after its domain tag if there are tags."""
        if self.tags is None:
            return self.source[index]
        return np.concatenate([self.tags[index : index + 1], self.source[index]])


def epoch_sample(weights: np.ndarray, seed: int) -> np.ndarray:
    """The sentence indices of one epoch, each sentence `weights[i]` times in expectation.

    A weight of 0.25 keeps a random quarter of those sentences, 3.0 repeats each three times,
    2.5 repeats each twice and half of them a third time. Seeded: the same epoch gives the same sample.
    """
    rng = np.random.default_rng(seed)
    copies = np.floor(weights).astype(np.int64) + (rng.random(len(weights)) < weights % 1.0)
    return np.repeat(np.arange(len(weights)), copies)


def make_batches(
    source_lengths: np.ndarray,
    target_lengths: np.ndarray,
    batch_tokens: int,
    max_length: int,
    seed: int,
    sample: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Group sentence indices into batches of similar length, in a seeded random order.

    `sample` lists the sentences to use (repeats allowed; default: every sentence once).
    Sentences longer than `max_length` tokens on either side are left out. Sentences are sorted by
    (target length, source length), random among equals, and cut into runs whose padded size
    (sentences x longest side + 1 for BOS/EOS) stays within `batch_tokens`, so batches carry little
    padding. The order of the batches is then shuffled.
    """
    rng = np.random.default_rng(seed)
    keep = np.arange(len(source_lengths)) if sample is None else sample
    fits = (source_lengths[keep] <= max_length) & (target_lengths[keep] <= max_length) & (source_lengths[keep] > 0)
    keep = keep[fits]
    keep = keep[rng.permutation(len(keep))]
    keep = keep[np.lexsort((source_lengths[keep], target_lengths[keep]))]
    width = np.maximum(source_lengths[keep], target_lengths[keep]) + 1
    batches: list[np.ndarray] = []
    start = 0
    longest = 0
    for position in range(len(keep)):
        longest = max(longest, width[position])
        if (position + 1 - start) * longest > batch_tokens and position > start:
            batches.append(keep[start:position])
            start, longest = position, width[position]
    if start < len(keep):
        batches.append(keep[start:])
    return [batches[i] for i in rng.permutation(len(batches))]


@dataclass
class Batch:
    """Padded tensors of one batch.

    source: (B, S) ids, PAD_ID after each sentence's end; source_lengths: (B,)
    target_input: (B, T) BOS + target ids; target_output: (B, T) target ids + EOS
    """

    source: torch.Tensor
    source_lengths: torch.Tensor
    target_input: torch.Tensor
    target_output: torch.Tensor

    def to(self, device: torch.device) -> Batch:
        return Batch(*(tensor.to(device) for tensor in vars(self).values()))

    @property
    def target_tokens(self) -> int:
        return int((self.target_output != PAD_ID).sum())


def pad(sequences: Sequence[Sequence[int]], prefix: Sequence[int] = (), suffix: Sequence[int] = ()) -> torch.Tensor:
    """(B, longest) int64 tensor of `prefix + sequence + suffix`, padded with PAD_ID."""
    width = max(len(s) for s in sequences) + len(prefix) + len(suffix)
    out = np.full((len(sequences), width), PAD_ID, dtype=np.int64)
    for row, sequence in enumerate(sequences):
        values = np.concatenate([np.asarray(prefix, np.int64), np.asarray(sequence, np.int64),
                                 np.asarray(suffix, np.int64)])
        out[row, : len(values)] = values
    return torch.from_numpy(out)


def drop_words(source: torch.Tensor, probability: float, first_tag_id: int | None = None) -> torch.Tensor:
    """Word dropout on the source (Sennrich and Zhang 2019): each real token becomes UNK with
    `probability`; padding and domain tags (ids from `first_tag_id` on) stay. source: (B, S) ids."""
    droppable = source != PAD_ID
    if first_tag_id is not None:
        droppable &= source < first_tag_id
    dropped = droppable & (torch.rand(source.shape) < probability)
    return source.masked_fill(dropped, UNK_ID)


def read_synthetic_pairs(folder: Path, tokenizer: Tokenizer) -> ParallelData | None:
    """The back-translated pairs in `folder` (`train.en`: synthetic English, `train.ko`: the Korean
    text it came from), tokenised; None when there are none (back-translation off, or no such folder)."""
    paths = [folder / "train.en", folder / "train.ko"]
    if not all(path.exists() for path in paths):
        return None
    english, korean = (path.read_text(encoding="utf-8").splitlines() for path in paths)
    if len(english) != len(korean):
        raise UserError(f"{folder}: {len(english)} English but {len(korean)} Korean lines; rerun the "
                        "backtranslate stage (`dvc repro backtranslate`)")
    if not english:
        return None
    return ParallelData(TokenArray.of(tokenizer.encode_source(english)), TokenArray.of(tokenizer.encode_target(korean)))


def resegment(data: ParallelData, tokenizer: Tokenizer, alpha: float, seed: int, chunk_pairs: int = 10_000,
              folder: Path | None = None) -> ParallelData:
    """Subword regularisation (Kudo 2018): every pair of `data` segmented anew, each side sampled from
    SentencePiece's segmentations of its text with smoothing `alpha` (tags kept).

    Done for a whole epoch before its batches are made, so that batching by length sees the sampled
    lengths (a sampled sentence can be twice as long). Seeded and single-threaded: SentencePiece's
    threads each draw from their own generator, so only one thread gives the same sample for a seed.
    The sampled ids go, chunk by chunk, to a memory-mapped temporary file in `folder` (default: beside
    the memory-mapped source ids, else the system's temporary folder), never all into memory.
    """
    spm.set_random_generator_seed(seed)

    def resampled(array: TokenArray, processor: spm.SentencePieceProcessor) -> Iterator[list[list[int]]]:
        for start in range(0, len(array), chunk_pairs):
            texts = processor.decode([array[i].tolist() for i in range(start, min(start + chunk_pairs, len(array)))])
            yield processor.encode(texts, enable_sampling=True, alpha=alpha, nbest_size=-1, num_threads=1)

    folder = folder or data.source.folder
    # one side after the other: the sample depends on the order SentencePiece's generator is drawn in
    source = spilled_token_array(resampled(data.source, tokenizer.source), folder)
    return ParallelData(source, spilled_token_array(resampled(data.target, tokenizer.target), folder), data.tags)


def collate(data: ParallelData, indices: np.ndarray) -> Batch:
    """Build the padded `Batch` of the sentences at `indices` (each source after its domain tag, if any)."""
    sources = [data.source_ids(i) for i in indices]
    targets = [data.target[i] for i in indices]
    return Batch(
        source=pad(sources),
        source_lengths=torch.tensor([len(s) for s in sources]),
        target_input=pad(targets, prefix=[BOS_ID]),
        target_output=pad(targets, suffix=[EOS_ID]),
    )
