"""Stage `distill`: a teacher translates the train English; the student trains on its Korean.

Sequence-level knowledge distillation (Kim and Rush 2016), how Bergamot makes its small CPU
students: a large teacher (the GPU recipe, or any checkpoint made on this tokenizer) translates
`data/prepared/train.en` by beam search, each line with the domain tag of its own source
(`train.source`). Outputs that are empty, of a runaway or truncated length, or that repeat a run of
words are dropped, each counted under the first rule it breaks. The kept pairs and the data card go
to the output folder (`seq2seq.distilled` describes it), written whole or not at all.

The expensive part runs once, where a GPU is: the corpus is then published in the DVC remote with
a pointer file of its own, and `distill.teacher` naming the pulled folder makes this stage check it
and take it as it is (docs/distillation.md). With `distill.teacher` empty it writes `OFF.md`, in a second.

Translation goes in chunks of sentences of similar length (longest first), each kept in a work folder
beside the output as it is finished: a rerun with the same teacher, data and search translates only
the chunks that were missing.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import random
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from seq2seq.checkpoint import read_checkpoint
from seq2seq.config import DistillConfig
from seq2seq.distilled import (
    CARD,
    CARD_TEXT,
    DROPPED,
    FORMAT,
    OFF,
    PAIR_FILES,
    check_corpus,
    md5_of_file,
    prepared_md5s,
    tokenizer_md5s,
)
from seq2seq.domains import Domains
from seq2seq.errors import UserError
from seq2seq.files import atomic_dir, check_output, write_json, write_text
from seq2seq.prepare import normalize
from seq2seq.tokenizer import Tokenizer, load_tokenizer
from seq2seq.translate import Translator

CHUNK = 1000  # sentences translated, and kept in the work folder, at a time
RULES = ("empty", "too_short", "too_long", "repeat")  # in the order they are tried
LONGEST_REPEAT = 4  # words in the longest run that the repeat rule looks for


def repeats(words: list[str], times: int, longest: int = LONGEST_REPEAT) -> bool:
    """Whether a run of 1 to `longest` words comes `times` times in a row in `words` ("a b a b a b")."""
    for size in range(1, longest + 1):
        for start in range(len(words) - size * times + 1):
            run = words[start : start + size]
            if all(words[start + k * size : start + (k + 1) * size] == run for k in range(1, times)):
                return True
    return False


def drop_rule(english: str, korean: str, config: DistillConfig) -> str | None:
    """The first rule of `RULES` that the teacher's `korean` for `english` breaks, or None to keep it.
    Lengths compare characters: Korean takes about half the English ones (median 0.52 in the corpus)."""
    if not korean.strip():
        return "empty"
    ratio = len(korean) / max(len(english), 1)
    if ratio < config.min_length_ratio:
        return "too_short"
    if ratio > config.max_length_ratio:
        return "too_long"
    if config.repeat_limit and repeats(korean.split(), config.repeat_limit):
        return "repeat"
    return None


def teacher_tag_ids(domains: Domains | None, sources: list[str], warn: Callable[[str], None]) -> list[int] | None:
    """Each line's domain tag id in the teacher, by its source (None: a teacher without tags). A source
    in none of the teacher's groups takes its default group's tag, with one warning."""
    if domains is None:
        return None
    group_of = {source: group for group, members in domains.groups.items() for source in members}
    unknown = sorted(set(sources) - set(group_of))
    if unknown:
        warn(f"sources in no domain group of the teacher, translated with its default tag <{domains.default}>: "
             f"{', '.join(unknown)}")
    tag_of = {source: domains.tag_id(group_of.get(source, domains.default)) for source in set(sources)}
    return [tag_of[source] for source in sources]


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        raise UserError(f"{path} not found: run the prepare stage first (`dvc repro prepare`)")
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def distill(teacher: Path | None, prepared_dir: Path, tokenizer_dir: Path, out_dir: Path, config: DistillConfig,
            device: torch.device | str = "cpu", command: str = "", chunk_sentences: int = CHUNK) -> dict:
    """Run the stage; returns the card it writes (`{"off": True}` when off).

    `teacher` (a checkpoint, or a published distilled folder) replaces `distill.teacher`; the
    teacher of the params must have the md5 `distill.md5`, one given here need not. Every input is
    checked before anything is written."""
    check_output(out_dir, folder=True)
    pinned = teacher is None
    teacher = Path(config.teacher) if pinned and config.teacher else teacher
    if teacher is None:
        with atomic_dir(out_dir) as temp:
            (temp / OFF).write_text("Distillation is off: `distill.teacher` in params.yaml is empty "
                                    "(docs/distillation.md).\n", encoding="utf-8")
        return {"off": True}
    if not teacher.exists():
        raise UserError(f"teacher {teacher} not found: train one (docs/distillation.md) or pull the published corpus")
    tokenizer = load_tokenizer(tokenizer_dir)
    if teacher.is_dir():
        return take_published(teacher, prepared_dir, tokenizer, out_dir, config.md5 if pinned else None)
    md5 = md5_of_file(teacher)
    if pinned and md5 != config.md5:
        raise UserError(f"{teacher} has md5 {md5}, distill.md5 says {config.md5 or 'nothing'}: set distill.md5 to "
                        "the teacher you mean")
    return translate_corpus(teacher, md5, prepared_dir, tokenizer, out_dir, config, device, command, chunk_sentences)


def take_published(folder: Path, prepared_dir: Path, tokenizer: Tokenizer, out_dir: Path, md5: str | None) -> dict:
    """Copy a published distilled corpus (pulled with its pointer) to `out_dir` once it is checked: its
    card's md5 is `md5` (unless None), its files are whole, and it fits this data and tokenizer."""
    found = md5_of_file(folder / CARD) if (folder / CARD).exists() else None
    if md5 is not None and found != md5:
        raise UserError(f"{folder / CARD} has md5 {found}, distill.md5 says {md5 or 'nothing'}: set distill.md5 to "
                        "the published corpus you mean")
    card = check_corpus(folder, prepared_dir, tokenizer)
    with atomic_dir(out_dir) as temp:
        for name in [CARD, CARD_TEXT, *card["files"]]:
            if (folder / name).exists():  # all but CARD.md are checked to be there
                shutil.copyfile(folder / name, temp / name)
    return card


def translate_corpus(teacher: Path, teacher_md5: str, prepared_dir: Path, tokenizer: Tokenizer, out_dir: Path,
                     config: DistillConfig, device: torch.device | str, command: str, chunk_sentences: int) -> dict:
    """Translate the prepared train English with the checkpoint `teacher`, filter, and write the corpus."""
    content = read_checkpoint(teacher)
    teacher_tokenizer = Tokenizer.from_protos(content["tokenizer"]["source"], content["tokenizer"]["target"])
    if tokenizer_md5s(teacher_tokenizer) != tokenizer_md5s(tokenizer):
        raise UserError(f"teacher {teacher} was trained with other tokenizers than the ones in this folder: its "
                        "Korean would not fit the student's vocabulary; use a teacher trained on this tokenizer")
    english, sources = (_read_lines(prepared_dir / f"train.{kind}") for kind in ("en", "source"))
    if len(english) != len(sources) or not english:
        raise UserError(f"{prepared_dir}/train.en and train.source have {len(english)} and {len(sources)} lines; "
                        "rerun the prepare stage")
    unknown = sorted(set(config.sources) - set(sources))
    if unknown:
        raise UserError(f"distill.sources: no train line comes from {', '.join(unknown)}; "
                        f"the sources are {', '.join(sorted(set(sources)))}")
    chosen = [i for i, source in enumerate(sources) if not config.sources or source in config.sources]
    if 0 < config.max_sentences < len(english):
        chosen = sorted(random.Random(config.seed).sample(chosen, config.max_sentences))
    search = {"beam_size": config.beam_size, "length_penalty": config.length_penalty,
              "max_output_ratio": config.max_output_ratio, "no_repeat_ngram_size": config.no_repeat_ngram_size,
              "batch_size": config.batch_size}
    cut: list[str] = []
    translator = Translator(teacher, device=str(device), split_sentences=False, params_path=None, warn=cut.append,
                            **search)
    tags = teacher_tag_ids(translator.domains, [sources[i] for i in chosen], _warn)
    prepared = prepared_md5s(prepared_dir)
    work = Work(out_dir.with_name(f".{out_dir.name}.work"), {
        "format": FORMAT, "teacher_md5": teacher_md5, "prepared": prepared, "search": search,
        "lines": hashlib.md5(json.dumps(chosen).encode()).hexdigest(), "chunk_sentences": chunk_sentences})
    started = time.perf_counter()
    korean, resumed = work.translate(translator, [english[i] for i in chosen], tags, chunk_sentences)
    seconds = time.perf_counter() - started
    if cut:
        _warn(f"{len(cut)} lines had more than {translator.max_input_tokens} tokens: their first "
              f"{translator.max_input_tokens} were translated")
    rules = [drop_rule(english[i], text, config) for i, text in zip(chosen, korean, strict=True)]
    kept = [(i, text) for i, text, rule in zip(chosen, korean, rules, strict=True) if rule is None]
    columns = {"train.en": [english[i] for i, _ in kept], "train.ko": [text for _, text in kept],
               "train.source": [sources[i] for i, _ in kept], "train.lines": [str(i + 1) for i, _ in kept]}
    dropped = [f"{i + 1}\t{rule}\t{text}" for i, text, rule in zip(chosen, korean, rules, strict=True) if rule]
    counts = Counter(rule for rule in rules if rule)
    card = {
        "format": FORMAT,
        "teacher": {"file": str(teacher), "md5": teacher_md5, "model": content["model_config"],
                    "summary": content.get("summary"), "domains": content.get("domains"),
                    "tokenizer": tokenizer_md5s(teacher_tokenizer)},
        "prepared": {**prepared, "lines": len(english)},
        "search": search,
        "filters": {"min_length_ratio": config.min_length_ratio, "max_length_ratio": config.max_length_ratio,
                    "repeat_limit": config.repeat_limit},
        "counts": {"translated": len(chosen), "kept": len(kept), "dropped": {rule: counts[rule] for rule in RULES}},
        "sources": config.sources, "max_sentences": config.max_sentences, "seed": config.seed,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "device": str(translator.device),
        "seconds": round(seconds, 1),
        "sentences_per_second": round((len(chosen) - resumed) / seconds, 2) if len(chosen) > resumed else None,
        "resumed_sentences": resumed,
    }
    with atomic_dir(out_dir) as temp:
        for name, lines in [*columns.items(), (DROPPED, dropped)]:
            (temp / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        card["files"] = {name: md5_of_file(temp / name) for name in [*PAIR_FILES, DROPPED]}
        write_json(temp / CARD, card)
        (temp / CARD_TEXT).write_text(card_markdown(card), encoding="utf-8")
    work.remove()
    return card


class Work:
    """The work folder of one distillation: each finished chunk's Korean, and the settings they were
    made with. Chunks of other settings (another teacher, data or search) are cleared, not reused."""

    def __init__(self, folder: Path, settings: dict) -> None:
        self.folder, self.settings = folder, settings

    def _chunk(self, number: int) -> Path:
        return self.folder / f"chunk-{number:05d}.ko"

    def _open(self) -> None:
        settings_path = self.folder / "settings.json"
        if self.folder.exists():
            try:
                same = json.loads(settings_path.read_text(encoding="utf-8")) == json.loads(json.dumps(self.settings))
            except (OSError, ValueError):
                same = False
            if same:
                return
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        write_json(settings_path, self.settings)

    def _finished(self, number: int, size: int) -> list[str] | None:
        path = self._chunk(number)
        lines = path.read_text(encoding="utf-8").split("\n")[:-1] if path.exists() else []
        return lines if len(lines) == size else None

    def translate(self, translator: Translator, english: list[str], tags: list[int] | None, chunk_sentences: int
                  ) -> tuple[list[str], int]:
        """The teacher's Korean for each of `english` (normalised as the prepared data is), with progress,
        and how many sentences were taken from chunks finished by an earlier run."""
        self._open()
        order = sorted(range(len(english)), key=lambda i: (-len(english[i]), i))  # longest first: the ETA errs high
        chunks = [order[start : start + chunk_sentences] for start in range(0, len(order), chunk_sentences)]
        korean: list[str] = [""] * len(english)
        pending = []
        for number, chunk in enumerate(chunks):
            finished = self._finished(number, len(chunk))
            if finished is None:
                pending.append(number)
            for index, text in zip(chunk, finished or [], strict=False):
                korean[index] = text
        resumed = len(english) - sum(len(chunks[number]) for number in pending)
        if resumed:
            print(f"resuming: {resumed:,} sentences of {len(chunks) - len(pending)} finished chunks in {self.folder}",
                  file=sys.stderr)
        with tqdm(total=len(english), initial=resumed, unit="sent", desc="distill", dynamic_ncols=True,
                  mininterval=1 if sys.stderr.isatty() else 30) as bar:
            for number in pending:
                chunk = chunks[number]
                texts = translator.translate([english[i] for i in chunk],
                                             tag_ids=[tags[i] for i in chunk] if tags else None)
                texts = [normalize(text) for text in texts]
                write_text(self._chunk(number), "".join(text + "\n" for text in texts))
                for index, text in zip(chunk, texts, strict=True):
                    korean[index] = text
                bar.update(len(chunk))
        return korean, resumed

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def card_markdown(card: dict) -> str:
    """The data card for people: what `card.json` holds, as Markdown."""
    counts, teacher = card["counts"], card["teacher"]
    dropped = ", ".join(f"{rule} {count:,}" for rule, count in counts["dropped"].items())
    summary = teacher.get("summary") or {}
    return "\n".join([
        "# Distilled corpus",
        "",
        "The teacher's Korean for the prepared train English (sequence-level knowledge distillation, Kim and "
        "Rush 2016), made by `seq2seq distill` (docs/distillation.md).",
        "",
        f"- Teacher: `{teacher['file']}`, md5 `{teacher['md5']}`, step {summary.get('step')}, valid chrF "
        f"{summary.get('valid_chrf')}; model {json.dumps(teacher['model'], sort_keys=True)}",
        f"- Tokenizers (md5): English `{teacher['tokenizer']['source']}`, Korean `{teacher['tokenizer']['target']}`",
        f"- Translated: data/prepared/train.en md5 `{card['prepared']['train.en']}` ({card['prepared']['lines']:,} "
        f"lines), train.source md5 `{card['prepared']['train.source']}`; {counts['translated']:,} lines translated",
        f"- Search: {json.dumps(card['search'], sort_keys=True)}",
        f"- Filters: {json.dumps(card['filters'], sort_keys=True)}",
        f"- Kept {counts['kept']:,}; dropped: {dropped} (dropped.tsv lists them)",
        f"- Made {card['created']} on {card['device']} in {card['seconds']} s: `{card['command']}`",
        "",
    ])
