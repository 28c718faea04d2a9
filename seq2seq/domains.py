"""Domain control: a tag before each source sentence says which kind of text it is.

Kobus et al. (2017), "Domain control for neural machine translation": the encoder reads one extra
token, e.g. `<technical>` or `<general>`, before the sentence, learns from it how each domain
tends to be translated, and at translation time the tag steers the output towards a domain. Here
the sources of the corpus are put into groups in `params.yaml` (`train.domains`), one tag per
group. Tags are not SentencePiece pieces: their ids follow the source vocabulary (the first tag
is `source_vocab_size`), so changing the groups retrains the model but not the tokenizer.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seq2seq.errors import UserError


@dataclass(frozen=True)
class Domains:
    """Domain groups (group name -> its sources), the default group, and the id of the first tag."""

    groups: dict[str, list[str]]
    default: str
    first_tag_id: int

    def tag_id(self, group: str) -> int:
        if group not in self.groups:
            raise UserError(f"unknown domain '{group}'; this model knows: {', '.join(self.groups)}")
        return self.first_tag_id + list(self.groups).index(group)

    def group_of(self, source: str) -> str:
        for group, sources in self.groups.items():
            if source in sources:
                return group
        raise UserError(f"source '{source}' is in no group of train.domains; add it to one "
                        f"({', '.join(self.groups)})")

    def tag_ids(self, sources: SentenceSources) -> np.ndarray:
        """One tag id per sentence, given each sentence's source: (sentences,) int64."""
        return sources.per_sentence(lambda source: self.tag_id(self.group_of(source)), np.int64)

    def check_trained(self, sources: SentenceSources) -> None:
        """Refuse a default group without a training sentence: untrained tags would steer every output."""
        if not set(self.groups[self.default]) & set(sources.names):
            raise UserError(f"train.default_domain '{self.default}' has no training sentences (its sources: "
                            f"{', '.join(self.groups[self.default])}); name a group whose sources are in training")

    def piece(self, tag_id: int) -> str:
        """How a tag is shown, e.g. in an attention heatmap: `<general>`."""
        return f"<{list(self.groups)[tag_id - self.first_tag_id]}>"

    def to_dict(self) -> dict:
        """Plain data, as stored in a checkpoint."""
        return {"groups": self.groups, "default": self.default, "first_tag_id": self.first_tag_id}


@dataclass(frozen=True)
class SentenceSources:
    """The source of each sentence of a split, as one small integer a sentence, so that a corpus of
    millions of lines costs a few MB, not millions of Python strings: sentence i is from `names[codes[i]]`."""

    names: list[str]
    codes: np.ndarray  # (sentences,) int32

    @classmethod
    def of(cls, sources: Iterable[str]) -> SentenceSources:
        index: dict[str, int] = {}
        codes = array("i", (index.setdefault(source, len(index)) for source in sources))
        return cls(list(index), np.array(codes, dtype=np.int32))

    def __len__(self) -> int:
        return len(self.codes)

    def extended(self, name: str, count: int) -> SentenceSources:
        """These sentences, then `count` more from source `name`."""
        names = self.names if name in self.names else [*self.names, name]
        more = np.full(count, names.index(name), dtype=np.int32)
        return SentenceSources(names, np.concatenate([self.codes, more]))

    def per_sentence(self, value_of: Callable[[str], float], dtype: type) -> np.ndarray:
        """`value_of(source)` for each sentence, computed once per source: (sentences,) `dtype`."""
        return np.asarray([value_of(name) for name in self.names], dtype=dtype)[self.codes]


def read_sentence_sources(path: Path) -> SentenceSources:
    """The source of each sentence of a split (`SPLIT.source`, written by the prepare stage), read line by line."""
    if not path.exists():
        raise UserError(f"{path} not found: run the prepare stage first (`dvc repro prepare`)")
    with path.open(encoding="utf-8") as lines:
        return SentenceSources.of(line.rstrip("\n") for line in lines)


def sentence_weights(sources: SentenceSources, source_weights: dict[str, float]) -> np.ndarray:
    """Each sentence's sampling weight, its source's weight in `train.source_weights`, else 1: (sentences,) float64."""
    unknown = sorted(set(source_weights) - set(sources.names))
    if unknown:
        raise UserError(f"train.source_weights names sources that are not in the train split: {', '.join(unknown)}")
    return sources.per_sentence(lambda source: source_weights.get(source, 1.0), np.float64)
