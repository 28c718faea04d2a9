"""What a training run reads: the tokenizer, the encoded train and valid splits (with domain tags),
the valid references, back-translated pairs, a teacher's translations (`train.distilled`) and each
sentence's sampling weight; and from them
each epoch's batch list and the training batches (subword sampling and word dropout applied)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seq2seq import paths as default_paths
from seq2seq.config import TrainConfig
from seq2seq.data import (
    Batch,
    ParallelData,
    TokenArray,
    collate,
    drop_words,
    epoch_sample,
    make_batches,
    read_synthetic_pairs,
    resegment,
)
from seq2seq.distilled import DistilledPairs, read_distilled
from seq2seq.domains import Domains, SentenceSources, read_sentence_sources, sentence_weights
from seq2seq.errors import UserError
from seq2seq.tokenizer import Tokenizer, load_tokenizer


@dataclass
class TrainPaths:
    """What training reads (encoded data, prepared valid references and source names, tokenizer) and
    where it writes (checkpoints, dvclive log)."""

    encoded_dir: Path = default_paths.ENCODED
    prepared_dir: Path = default_paths.PREPARED
    tokenizer_dir: Path = default_paths.TOKENIZER
    model_dir: Path = default_paths.MODEL_DIR
    live_dir: Path = default_paths.LIVE
    synthetic_dir: Path = default_paths.BACKTRANSLATED  # back-translated pairs, if any
    distilled_dir: Path = default_paths.DISTILLED  # a teacher's translations, read when train.distilled is on


BT_SOURCE = "bt"  # the source name, and domain group, of back-translated pairs: their tag is `<bt>`


@dataclass
class TrainingData:
    """The tokenizer, the train and valid splits (with domain tags when `train.domain_tags`), the valid
    references and each train sentence's sampling weight (None: every sentence once per epoch).

    Back-translated pairs, when `paths.synthetic_dir` holds some, follow the train split's pairs as
    source `bt`, with their own domain group and tag and `backtranslation.weight` as their weight.
    With `train.distilled`, the teacher's Korean of `paths.distilled_dir` (checked against the prepared
    data and tokenizer first) replaces the references of the pairs it kept, or follows the train
    split's pairs with their own sources (`with_distilled`), weighted `train.distilled_weight`.
    """

    tokenizer: Tokenizer
    train: ParallelData
    valid: ParallelData
    references: list[str]
    domains: Domains | None
    weights: np.ndarray | None
    _resegmented: tuple[int, ParallelData] | None = field(default=None, init=False, repr=False)

    @classmethod
    def load(cls, config: TrainConfig, paths: TrainPaths, reverse: bool = False, synthetic_weight: float = 1.0
             ) -> TrainingData:
        tokenizer = load_tokenizer(paths.tokenizer_dir)
        train_data = ParallelData.open(paths.encoded_dir, "train")
        valid_data = ParallelData.open(paths.encoded_dir, "valid")
        sources = _read_sources(paths, len(train_data)) if config.domain_tags or config.source_weights else None
        teacher_pairs = slice(len(train_data), len(train_data))  # where `beside` puts the teacher's pairs
        if config.distilled != "off" and not reverse:
            sources = sources or _read_sources(paths, len(train_data))
            distilled = read_distilled(paths.distilled_dir, paths.prepared_dir, tokenizer, len(train_data))
            train_data, sources = with_distilled(config.distilled, train_data, sources, distilled, tokenizer)
            teacher_pairs = slice(teacher_pairs.start, len(train_data))
        synthetic = None if reverse else read_synthetic_pairs(paths.synthetic_dir, tokenizer)
        if synthetic is not None:
            train_data = train_data + synthetic
            sources = (sources or _read_sources(paths, len(train_data) - len(synthetic))).extended(
                BT_SOURCE, len(synthetic))
            config = dataclasses.replace(config, source_weights={**config.source_weights, BT_SOURCE: synthetic_weight},
                                         domains={**config.domains, BT_SOURCE: [BT_SOURCE]})
        if reverse:
            tokenizer, train_data, valid_data = tokenizer.reversed(), train_data.reversed(), valid_data.reversed()
        references = (paths.prepared_dir / f"valid.{'en' if reverse else 'ko'}").read_text(encoding="utf-8")
        domains, weights = _domain_control(config, sources, tokenizer, train_data, valid_data)
        if teacher_pairs.stop > teacher_pairs.start and config.distilled_weight != 1:
            weights = np.ones(len(train_data)) if weights is None else weights
            weights[teacher_pairs] *= config.distilled_weight
        return cls(tokenizer, train_data, valid_data, references.splitlines(), domains, weights)

    @property
    def source_vocab_size(self) -> int:
        """SentencePiece's source pieces, then one id per domain tag."""
        return self.tokenizer.source.get_piece_size() + (len(self.domains.groups) if self.domains else 0)

    def epoch_data(self, config: TrainConfig, epoch: int) -> ParallelData:
        """The train pairs as `epoch` sees them: segmented anew for the epoch (seeded by it, the same on
        every rank) when `train.subword_alpha` > 0, else as encoded."""
        if config.subword_alpha == 0:
            return self.train
        if self._resegmented is None or self._resegmented[0] != epoch:
            self._resegmented = epoch, resegment(self.train, self.tokenizer, config.subword_alpha, config.seed + epoch)
        return self._resegmented[1]

    def epoch_batches(self, config: TrainConfig, epoch: int, world_size: int) -> list[np.ndarray]:
        """The seeded batch list of `epoch` (sentence indices into `epoch_data`; with source weights, of
        the epoch's weighted sample), the same on every rank. A step takes `world_size` of them."""
        sample = None if self.weights is None else epoch_sample(self.weights, seed=config.seed + epoch)
        data = self.epoch_data(config, epoch)
        batches = make_batches(data.source.lengths, data.target.lengths, config.batch_tokens,
                               config.max_length, seed=config.seed + epoch, sample=sample)
        if not batches:
            raise UserError("no training pair fits train.max_length; raise it or check the prepared data")
        if len(batches) < world_size:
            raise UserError(f"{len(batches)} batches cannot be shared by {world_size} processes; "
                            "lower train.batch_tokens or train.nproc")
        return batches

    def training_batch(self, config: TrainConfig, epoch: int, indices: np.ndarray) -> Batch:
        """The batch of these pairs of `epoch`'s data (sampled segmentations when subword sampling is
        on), with word dropout when it is on (training input only: validation, evaluate and translate
        see the plain segmentation). On the CPU; source: (B, S) ids, targets: (B, T)."""
        batch = collate(self.epoch_data(config, epoch), indices)
        if config.word_dropout > 0:
            first_tag_id = self.domains.first_tag_id if self.domains else None
            batch.source = drop_words(batch.source, config.word_dropout, first_tag_id)
        return batch


def with_distilled(mode: str, train_data: ParallelData, sources: SentenceSources, distilled: DistilledPairs,
                   tokenizer: Tokenizer) -> tuple[ParallelData, SentenceSources]:
    """The train pairs and their sources with the teacher's Korean: `replace` puts it in place of each
    kept pair's reference (the other pairs keep theirs); `beside` adds the teacher's pairs after the
    train split's, each with its own source (so its domain tag and weight)."""
    korean = TokenArray.of(tokenizer.encode_target(distilled.korean))
    if mode == "replace":
        return ParallelData(train_data.source, replaced_rows(train_data.target, distilled.lines, korean),
                            train_data.tags), sources
    teacher_pairs = ParallelData(TokenArray.of(tokenizer.encode_source(distilled.english)), korean)
    names = [sources.names[code] for code in sources.codes]
    return train_data + teacher_pairs, SentenceSources.of([*names, *distilled.sources])


def replaced_rows(array: TokenArray, rows: np.ndarray, replacements: TokenArray) -> TokenArray:
    """`array` (in memory) with its sequences at `rows` replaced by those of `replacements`, in order."""
    sequences = [array[index] for index in range(len(array))]
    for number, row in enumerate(rows):
        sequences[row] = replacements[number]
    offsets = np.concatenate([[0], np.cumsum([len(sequence) for sequence in sequences])]).astype(np.int64)
    return TokenArray(np.concatenate(sequences).astype(replacements.ids.dtype), offsets)


def _read_sources(paths: TrainPaths, pairs: int) -> SentenceSources:
    """Each encoded train pair's source name (`train.source` of the prepared data)."""
    sources = read_sentence_sources(paths.prepared_dir / "train.source")
    if len(sources) != pairs:
        raise UserError(f"{paths.prepared_dir}/train.source has {len(sources)} lines for {pairs} "
                        "encoded pairs; rerun the pipeline (`dvc repro`)")
    return sources


def _domain_control(config: TrainConfig, sources: SentenceSources | None, tokenizer: Tokenizer,
                    train_data: ParallelData, valid_data: ParallelData) -> tuple[Domains | None, np.ndarray | None]:
    """Put domain tags on the train and valid data (valid gets the default domain's tag), and return
    the `Domains` (None without tags) and each train sentence's sampling weight (None: all 1)."""
    if sources is None or (not config.domain_tags and not config.source_weights):
        return None, None
    weights = sentence_weights(sources, config.source_weights) if config.source_weights else None
    if not config.domain_tags:
        return None, weights
    domains = Domains(config.domains, config.default_domain, first_tag_id=tokenizer.source.get_piece_size())
    domains.check_trained(sources)
    train_data.tags = domains.tag_ids(sources)
    valid_data.tags = np.full(len(valid_data), domains.tag_id(domains.default), dtype=np.int64)
    return domains, weights
