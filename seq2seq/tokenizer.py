"""Stage 2, `tokenizer`: train SentencePiece on the train split, and load it again.

One model per language (`en.model`, `ko.model`) or one joint English+Korean model (`joint.model`).
Separate models are the default: the output layer, the costliest part of a training step, then
scores Korean pieces only, so a Korean vocabulary half the size of a joint one segments Korean as
finely at half the cost.
Byte fallback is on by default, so a character the vocabulary lacks becomes UTF-8 byte pieces
rather than the unknown piece `⁇`. The special ids are fixed: pad 0, unk 1, bos 2, eos 3.
"""

from __future__ import annotations

import io
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


def _train_one(lines: list[str], prefix: Path, vocab_size: int, config: TokenizerConfig) -> None:
    if not lines:
        raise UserError(f"no training text for the tokenizer {prefix.name}: is the train split empty?")
    try:
        _train_sentencepiece(lines, prefix, vocab_size, config)
    except RuntimeError as error:  # e.g. a vocabulary smaller than the characters it must hold
        raise UserError(f"SentencePiece could not train {prefix.name}: {str(error).split('] ')[-1]}") from None


def _train_sentencepiece(lines: list[str], prefix: Path, vocab_size: int, config: TokenizerConfig) -> None:
    # The model goes through a writer, not model_prefix: a prefix path would be stored inside the
    # model and make its bytes depend on the (temporary) output directory.
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type=config.model_type,
        vocab_size=vocab_size,
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
    prefix.with_suffix(".model").write_bytes(model.getvalue())


def train_tokenizer(prepared_dir: Path, out_dir: Path, config: TokenizerConfig) -> None:
    """Train the SentencePiece model(s) on `prepared_dir/train.{en,ko}` into `out_dir`."""
    files = {lang: prepared_dir / f"train.{lang}" for lang in ("en", "ko")}
    for path in files.values():
        if not path.exists():
            raise UserError(f"{path} not found: run the prepare stage first (`dvc repro prepare`)")
    with atomic_dir(out_dir) as temp:
        if config.joint:
            lines = sample_lines(list(files.values()), config.input_sentence_size, config.seed)
            _train_one(lines, temp / "joint", config.vocab_size, config)
        else:
            for lang, vocab_size in (("en", config.vocab_size), ("ko", config.korean_vocab_size)):
                lines = sample_lines([files[lang]], config.input_sentence_size, config.seed)
                _train_one(lines, temp / lang, vocab_size, config)


@dataclass
class Tokenizer:
    """The English (source) and Korean (target) SentencePiece processors; the same one if joint."""

    source: spm.SentencePieceProcessor
    target: spm.SentencePieceProcessor

    @classmethod
    def from_protos(cls, source: bytes, target: bytes) -> Tokenizer:
        """Build from serialized model protos, as stored inside a checkpoint."""
        return cls(spm.SentencePieceProcessor(model_proto=source), spm.SentencePieceProcessor(model_proto=target))

    def reversed(self) -> Tokenizer:
        """Korean (source) to English (target): what the back-translation model reads and writes."""
        return Tokenizer(self.target, self.source)

    def protos(self) -> tuple[bytes, bytes]:
        return self.source.serialized_model_proto(), self.target.serialized_model_proto()

    def encode_source(self, texts: list[str]) -> list[list[int]]:
        return self.source.encode(texts)

    def encode_target(self, texts: list[str]) -> list[list[int]]:
        return self.target.encode(texts)

    def decode_target(self, ids: list[list[int]]) -> list[str]:
        return self.target.decode(ids)

    def never_emitted(self) -> tuple[int, ...]:
        """Target ids a translation never holds: PAD and BOS, and UNK where byte fallback spells every
        unknown character in byte pieces (the training targets then hold no UNK to learn it from)."""
        byte_fallback = self.target.is_byte(self.target.piece_to_id("<0x00>"))
        return (PAD_ID, BOS_ID, UNK_ID) if byte_fallback else (PAD_ID, BOS_ID)


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
