"""A distilled corpus: a teacher's Korean for the prepared train English, with its data card.

`seq2seq distill` (`seq2seq.distill`) writes it; training reads it with `train.distilled`. A folder:

- `train.en`, `train.ko`, `train.source`: the kept pairs: the prepared English, the teacher's Korean,
  and the source each line came from;
- `train.lines`: each kept pair's line number in `data/prepared/train.en` (from 1);
- `dropped.tsv`: line number, rule and teacher output of each dropped line;
- `card.json` (read by training) and `CARD.md` (the same for people): the teacher file's md5 and
  settings, its tokenizers' md5s, the md5s of the prepared English and sources it translated, the
  search, the filter counts, the date, the command, and the md5 of each file above.

Or `OFF.md` alone: distillation is off (`distill.teacher` empty). Nothing here needs torch: training
checks and reads a corpus with this module alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seq2seq.errors import UserError
from seq2seq.tokenizer import Tokenizer

FORMAT = "seq2seq-distilled-1"
CARD = "card.json"
CARD_TEXT = "CARD.md"
OFF = "OFF.md"
PAIR_FILES = ("train.en", "train.ko", "train.source", "train.lines")
DROPPED = "dropped.tsv"


def md5_of_file(path: Path) -> str:
    """The md5 of a file's bytes, as `md5sum` prints it."""
    digest = hashlib.md5()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def tokenizer_md5s(tokenizer: Tokenizer) -> dict[str, str]:
    """The md5 of each side's SentencePiece model (the bytes of `models/tokenizer/en.model` and `ko.model`)."""
    source, target = tokenizer.protos()
    return {"source": hashlib.md5(source).hexdigest(), "target": hashlib.md5(target).hexdigest()}


def prepared_md5s(prepared_dir: Path) -> dict[str, str]:
    """The md5s of what a teacher translates: `train.en` and the `train.source` that picks each line's tag."""
    md5s = {}
    for name in ("train.en", "train.source"):
        path = prepared_dir / name
        if not path.exists():
            raise UserError(f"{path} not found: run the prepare stage first (`dvc repro prepare`)")
        md5s[name] = md5_of_file(path)
    return md5s


def read_card(folder: Path) -> dict:
    """The card of the distilled corpus in `folder`; a one-line `UserError` when there is none."""
    if (folder / OFF).exists():
        raise UserError(f"{folder} holds no distilled corpus (distill.teacher is empty): produce or pull one "
                        "(docs/distillation.md), or set train.distilled: off")
    path = folder / CARD
    if not path.exists():
        raise UserError(f"{path} not found: {folder} is not a distilled corpus (`seq2seq distill` writes one)")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path} is not readable JSON ({type(error).__name__}): produce or pull the corpus again"
                        ) from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise UserError(f"{path} is not a {FORMAT} card (made by another version?): produce the corpus again")
    missing = [key for key in ("teacher", "prepared", "counts", "files") if not isinstance(card.get(key), dict)]
    if missing or not isinstance(card["counts"].get("kept"), int):
        raise UserError(f"{path} lacks {', '.join(missing) or 'counts.kept'}: produce the corpus again")
    return card


@dataclass
class DistilledPairs:
    """The kept pairs of a distilled corpus: `lines` (kept,) int64 are their 0-based indices into the
    prepared train split, `korean` the teacher's translations, `sources` each line's source."""

    lines: np.ndarray
    english: list[str]
    korean: list[str]
    sources: list[str]
    card: dict


def check_corpus(folder: Path, prepared_dir: Path, tokenizer: Tokenizer) -> dict:
    """The card of `folder`, after checking that its files are whole (their md5s are the card's), that it
    translates this `prepared_dir`'s train English and sources, and that its teacher used `tokenizer`."""
    card = read_card(folder)
    for name, expected in sorted(card["files"].items()):
        path = folder / name
        if not path.exists():
            raise UserError(f"{path} not found: the distilled corpus is incomplete; produce or pull it again")
        if md5_of_file(path) != expected:
            raise UserError(f"{path} is not the file its card names (md5 differs): truncated or changed; "
                            "produce or pull the corpus again")
    if set(PAIR_FILES) - set(card["files"]):
        raise UserError(f"{folder / CARD} lists no {', '.join(PAIR_FILES)}: produce the corpus again")
    for name, md5 in prepared_md5s(prepared_dir).items():
        if (distilled_from := card["prepared"].get(name)) != md5:
            raise UserError(f"{folder} was distilled from another {prepared_dir / name} (md5 {distilled_from}, "
                            f"this one {md5}): distill this one (`seq2seq distill`)")
    if card["teacher"].get("tokenizer") != tokenizer_md5s(tokenizer):
        raise UserError(f"{folder} was made by a teacher with other tokenizers than this model's: distill with a "
                        "teacher trained on this tokenizer")
    return card


def read_distilled(folder: Path, prepared_dir: Path, tokenizer: Tokenizer, train_pairs: int) -> DistilledPairs:
    """The kept pairs of the distilled corpus in `folder` (checked by `check_corpus`); `train_pairs` is the
    prepared train split's size, which every line number must fall in."""
    card = check_corpus(folder, prepared_dir, tokenizer)
    english, korean, sources, numbers = ((folder / name).read_text(encoding="utf-8").split("\n")[:-1]
                                         for name in PAIR_FILES)
    if not korean:
        raise UserError(f"{folder / 'train.ko'} holds no pairs: every teacher output was dropped "
                        f"({card['counts'].get('dropped')}); check the teacher")
    if not len(english) == len(korean) == len(sources) == len(numbers) == card["counts"]["kept"]:
        raise UserError(f"{folder}: train.en, train.ko, train.source and train.lines have {len(english)}, "
                        f"{len(korean)}, {len(sources)} and {len(numbers)} lines for {card['counts']['kept']} kept "
                        "pairs; produce the corpus again")
    try:
        lines = np.asarray([int(number) for number in numbers], dtype=np.int64) - 1
    except ValueError:
        raise UserError(f"{folder / 'train.lines'} holds a line that is not a number; produce the corpus again"
                        ) from None
    if lines[0] < 0 or lines[-1] >= train_pairs or np.any(np.diff(lines) <= 0):
        raise UserError(f"{folder / 'train.lines'}: line numbers must rise within 1..{train_pairs}; produce the "
                        "corpus again")
    return DistilledPairs(lines, english, korean, sources, card)
