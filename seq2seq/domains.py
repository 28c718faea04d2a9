"""Domain control: a tag before each source sentence says which kind of text it is.

Kobus et al. (2017), "Domain control for neural machine translation": the encoder reads one extra
token, e.g. `<technical>` or `<general>`, before the sentence, learns from it how each domain
tends to be translated, and at translation time the tag steers the output towards a domain. Here
the sources of the corpus are put into groups in `params.yaml` (`train.domains`), one tag per
group. Tags are not SentencePiece pieces: their ids follow the source vocabulary (the first tag
is `source_vocab_size`), so changing the groups retrains the model but not the tokenizer.
"""

from __future__ import annotations

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

    def tag_ids(self, sources: list[str]) -> np.ndarray:
        """One tag id per sentence, given each sentence's source name."""
        by_source = {source: self.tag_id(self.group_of(source)) for source in dict.fromkeys(sources)}
        return np.asarray([by_source[source] for source in sources], dtype=np.int64)

    def piece(self, tag_id: int) -> str:
        """How a tag is shown, e.g. in an attention heatmap: `<general>`."""
        return f"<{list(self.groups)[tag_id - self.first_tag_id]}>"

    def to_dict(self) -> dict:
        """Plain data, as stored in a checkpoint."""
        return {"groups": self.groups, "default": self.default, "first_tag_id": self.first_tag_id}


def read_source_names(path: Path) -> list[str]:
    """The source name of each sentence of a split (`SPLIT.source`, written by the prepare stage)."""
    if not path.exists():
        raise UserError(f"{path} not found: run the prepare stage first (`dvc repro prepare`)")
    return path.read_text(encoding="utf-8").splitlines()


def sentence_weights(sources: list[str], source_weights: dict[str, float]) -> np.ndarray:
    """Each sentence's sampling weight: its source's weight in `train.source_weights`, else 1."""
    unknown = sorted(set(source_weights) - set(sources))
    if unknown:
        raise UserError(f"train.source_weights names sources that are not in the train split: {', '.join(unknown)}")
    by_source = {source: source_weights.get(source, 1.0) for source in dict.fromkeys(sources)}
    return np.asarray([by_source[source] for source in sources], dtype=np.float64)
