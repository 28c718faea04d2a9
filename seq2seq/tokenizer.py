"""Stage 2, `tokenizer`: train SentencePiece on the train split, and load it again.

One joint English+Korean model (`joint.model`) or one per language (`en.model`, `ko.model`).
Byte fallback is on by default, so a character the vocabulary lacks becomes UTF-8 byte pieces
rather than the unknown piece `⁇`. The special ids are fixed: pad 0, unk 1, bos 2, eos 3.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm

from seq2seq.config import TokenizerConfig
from seq2seq.errors import UserError
from seq2seq.files import atomic_dir

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


def sample_lines(paths: list[Path], size: int, seed: int) -> list[str]:
    """A seeded uniform sample of at most `size` non-empty lines (reservoir sampling: one pass, bounded memory)."""
    rng = random.Random(seed)
    sample: list[str] = []
    seen = 0
    for path in paths:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                line = line.rstrip("\n")
                if not line:
                    continue
                seen += 1
                if len(sample) < size:
                    sample.append(line)
                else:
                    slot = rng.randrange(seen)
                    if slot < size:
                        sample[slot] = line
    return sample


def _train_one(lines: list[str], prefix: Path, config: TokenizerConfig) -> None:
    if not lines:
        raise UserError(f"no training text for the tokenizer {prefix.name}: is the train split empty?")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=str(prefix),
        model_type=config.model_type,
        vocab_size=config.vocab_size,
        character_coverage=config.character_coverage,
        byte_fallback=config.byte_fallback,
        split_digits=True,
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        input_sentence_size=0,  # the sample is drawn above, seeded
        shuffle_input_sentence=False,
        hard_vocab_limit=False,  # a tiny corpus gets a smaller vocabulary instead of an error
        num_threads=2,
        minloglevel=2,
    )


def train_tokenizer(prepared_dir: Path, out_dir: Path, config: TokenizerConfig) -> None:
    """Train the SentencePiece model(s) on `prepared_dir/train.{en,ko}` into `out_dir`."""
    files = {lang: prepared_dir / f"train.{lang}" for lang in ("en", "ko")}
    for path in files.values():
        if not path.exists():
            raise UserError(f"{path} not found: run the prepare stage first (`dvc repro prepare`)")
    with atomic_dir(out_dir) as temp:
        if config.joint:
            lines = sample_lines(list(files.values()), config.input_sentence_size, config.seed)
            _train_one(lines, temp / "joint", config)
        else:
            for lang, path in files.items():
                _train_one(sample_lines([path], config.input_sentence_size, config.seed), temp / lang, config)
        for vocab_file in temp.glob("*.vocab"):
            vocab_file.unlink()  # the .model file holds the vocabulary too


@dataclass
class Tokenizer:
    """The English (source) and Korean (target) SentencePiece processors; the same one if joint."""

    source: spm.SentencePieceProcessor
    target: spm.SentencePieceProcessor

    @classmethod
    def from_protos(cls, source: bytes, target: bytes) -> Tokenizer:
        """Build from serialized model protos, as stored inside a checkpoint."""
        return cls(spm.SentencePieceProcessor(model_proto=source), spm.SentencePieceProcessor(model_proto=target))

    def protos(self) -> tuple[bytes, bytes]:
        return self.source.serialized_model_proto(), self.target.serialized_model_proto()

    def encode_source(self, texts: list[str]) -> list[list[int]]:
        return self.source.encode(texts)

    def encode_target(self, texts: list[str]) -> list[list[int]]:
        return self.target.encode(texts)

    def decode_target(self, ids: list[list[int]]) -> list[str]:
        return self.target.decode(ids)


def load_tokenizer(model_dir: Path) -> Tokenizer:
    """Load what `train_tokenizer` wrote."""
    joint = model_dir / "joint.model"
    if joint.exists():
        processor = spm.SentencePieceProcessor(model_file=str(joint))
        return Tokenizer(processor, processor)
    en, ko = model_dir / "en.model", model_dir / "ko.model"
    if en.exists() and ko.exists():
        return Tokenizer(spm.SentencePieceProcessor(model_file=str(en)), spm.SentencePieceProcessor(model_file=str(ko)))
    raise UserError(f"no tokenizer in {model_dir}/: run the tokenizer stage first (`dvc repro tokenizer`)")


def batched(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    """Consecutive lists of at most `size` lines."""
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
