"""Stage 1, `prepare`: clean the raw corpus and split it into train, valid and test.

Reads `data/raw/NAME.en` and `data/raw/NAME.ko` for each source named in params, and writes
`data/prepared/{train,valid,test}.{en,ko,source}` (one sentence, or one source tag, per line)
plus a stats JSON. Valid is whole sources (`flores200-dev` by default); test is a seeded random
sample of `test_per_source` pairs from every other source; train is the rest, minus every pair
whose English or Korean side also occurs in valid or test (that would leak answers into training).
Sources are streamed, a few times over, so memory holds hashes and line numbers, never the corpus.

Every pair is normalised (Unicode NFKC, control characters removed, whitespace collapsed) and
dropped if a side is empty, a side is longer than `max_chars`, the two sides' lengths differ by
more than `max_length_ratio`, or it repeats an earlier pair exactly.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
import unicodedata
from array import array
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from seq2seq.config import PrepareConfig
from seq2seq.errors import UserError
from seq2seq.files import atomic_dir, write_json

SPLITS = ("train", "valid", "test")
LANGUAGES = ("en", "ko")

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")


def normalize(text: str) -> str:
    """NFKC, control and zero-width characters removed, runs of whitespace made one space."""
    text = unicodedata.normalize("NFKC", text)
    return " ".join(_CONTROL.sub("", text).split())


def drop_reason(english: str, korean: str, config: PrepareConfig) -> str | None:
    """Why a normalised pair is dropped, or None to keep it."""
    if not english or not korean:
        return "empty"
    if max(len(english), len(korean)) > config.max_chars:
        return "too_long"
    if max(len(english), len(korean)) > config.max_length_ratio * min(len(english), len(korean)):
        return "length_ratio"
    return None


def available_sources(raw_dir: Path) -> list[str]:
    """Names NAME for which both `NAME.en` and `NAME.ko` exist in `raw_dir`."""
    return sorted(p.stem for p in raw_dir.glob("*.en") if p.with_suffix(".ko").exists())


def check_sources(raw_dir: Path, sources: list[str]) -> None:
    """Fail before writing anything if `raw_dir` or a source is missing, or line counts differ."""
    if not raw_dir.is_dir():
        raise UserError(f"{raw_dir}/ not found: run `dvc pull` to fetch the corpus")
    available = available_sources(raw_dir)
    for name in sources:
        if name not in available:
            raise UserError(f"source '{name}' not found in {raw_dir}/; available: {', '.join(available)}")
        counts = {lang: _count_lines(raw_dir / f"{name}.{lang}") for lang in LANGUAGES}
        if counts["en"] != counts["ko"]:
            raise UserError(
                f"{raw_dir / name}.en has {counts['en']} lines but {raw_dir / name}.ko has {counts['ko']}"
            )


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def read_pairs(raw_dir: Path, source: str) -> Iterator[tuple[str, str]]:
    """Stream the normalised (English, Korean) pairs of one source."""
    # newline="\n": lines end at LF only, as `_count_lines` counts them; a stray CR is a control
    # character that `normalize` removes.
    with (raw_dir / f"{source}.en").open(encoding="utf-8", newline="\n") as en, (raw_dir / f"{source}.ko").open(
        encoding="utf-8", newline="\n"
    ) as ko:
        for english, korean in zip(en, ko, strict=True):
            yield normalize(english), normalize(korean)


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()


def prepare(raw_dir: Path, out_dir: Path, stats_path: Path, config: PrepareConfig) -> dict:
    """Run the stage; returns the stats that it also writes to `stats_path`."""
    train_sources = [name for name in config.sources if name not in config.valid_sources]
    check_sources(raw_dir, list(dict.fromkeys(config.valid_sources + train_sources)))

    dropped: Counter[str] = Counter()
    kept: dict[str, Counter[str]] = {split: Counter() for split in SPLITS}
    seen_pairs: set[bytes] = set()
    held_out: set[bytes] = set()  # digests of every valid and test sentence, either language

    def survives(english: str, korean: str) -> bool:
        """Passes the filters and is no exact repeat of an earlier pair; counts why not."""
        reason = drop_reason(english, korean, config)
        pair = _digest(f"{english}\t{korean}")
        if reason is None and pair in seen_pairs:
            reason = "duplicate"
        if reason is not None:
            dropped[reason] += 1
            return False
        seen_pairs.add(pair)
        return True

    def leaks(english: str, korean: str) -> bool:
        return _digest(english) in held_out or _digest(korean) in held_out

    with atomic_dir(out_dir) as temp, contextlib.ExitStack() as files:
        outputs = {
            (split, kind): files.enter_context((temp / f"{split}.{kind}").open("w", encoding="utf-8"))
            for split in SPLITS
            for kind in (*LANGUAGES, "source")
        }

        def write(split: str, source: str, english: str, korean: str) -> None:
            outputs[split, "en"].write(english + "\n")
            outputs[split, "ko"].write(korean + "\n")
            outputs[split, "source"].write(source + "\n")
            kept[split][source] += 1
            if split != "train":
                held_out.update((_digest(english), _digest(korean)))

        for source in config.valid_sources:
            for english, korean in read_pairs(raw_dir, source):
                if survives(english, korean):
                    write("valid", source, english, korean)

        # Pass one: decide which lines survive, and sample test among those that do not leak valid.
        rng = random.Random(config.seed)
        survivors: dict[str, bytearray] = {}  # one flag per line
        test_lines: dict[str, set[int]] = {}
        for source in train_sources:
            survivors[source] = bytearray()
            test_candidates = array("I")
            for index, (english, korean) in enumerate(read_pairs(raw_dir, source)):
                keep = survives(english, korean)
                survivors[source].append(keep)
                if keep and not leaks(english, korean):
                    test_candidates.append(index)
            test_lines[source] = set(rng.sample(test_candidates, min(config.test_per_source, len(test_candidates))))

        # Pass two writes test; pass three writes train, minus every pair that shares a side with test or valid.
        for source in train_sources:
            for index, (english, korean) in enumerate(read_pairs(raw_dir, source)):
                if index in test_lines[source]:
                    write("test", source, english, korean)
        for source in train_sources:
            for index, (english, korean) in enumerate(read_pairs(raw_dir, source)):
                if not survivors[source][index] or index in test_lines[source]:
                    continue
                if leaks(english, korean):
                    dropped["overlap"] += 1
                else:
                    write("train", source, english, korean)
        files.close()  # flushed before atomic_dir moves the directory into place

    stats = {
        "pairs": {split: sum(kept[split].values()) for split in SPLITS},
        "pairs_per_source": {split: dict(sorted(kept[split].items())) for split in SPLITS},
        "dropped": dict(sorted(dropped.items())),
    }
    write_json(stats_path, stats)
    return stats
