"""Sequence-level knowledge distillation: the distill stage (filters, outputs, resume, bad input) and
training on its corpus (replace, beside, off)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from seq2seq.cli import main
from seq2seq.config import DistillConfig
from seq2seq.distill import distill, drop_rule, repeats, teacher_tag_ids
from seq2seq.domains import Domains
from seq2seq.errors import UserError
from seq2seq.train import train
from seq2seq.training_data import TrainingData
from seq2seq.translate import Translator
from tests.conftest import DOMAIN_CONTROL, link_tiny_data, tiny_params, tiny_paths, write_tiny_params

FAST = {"beam_size": 2, "batch_size": 16}  # the tiny teacher's search


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def run_distill(workdir: Path, out: Path, chunk: int = 1000, **settings: object) -> dict:
    """Distill `workdir`'s prepared train English with its trained model, `chunk` sentences at a time."""
    return distill(workdir / "models/model/best.pt", workdir / "data/prepared", workdir / "models/tokenizer", out,
                   DistillConfig(**{**FAST, **settings}), chunk_sentences=chunk)


@pytest.fixture(scope="module")
def corpus(tiny_workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A distilled corpus of the tiny data by its tiny teacher, with a length rule tight enough that it
    drops some outputs (the toy Korean has about 0.65 characters per English one)."""
    out = tmp_path_factory.mktemp("distilled") / "distilled"
    run_distill(tiny_workdir, out, max_length_ratio=0.66)
    return out


# The filters: each rule proven on its own.

@pytest.mark.parametrize(("korean", "rule"), [
    ("", "empty"),
    ("   ", "empty"),
    ("나.", "too_short"),                                        # 2 characters for 21 English ones
    ("나는 오늘 사과를 먹었다. 그리고 어제 빵을 샀다. 그리고 물을 마셨다. 또 마셨다.", "too_long"),  # a runaway
    ("나는 사과를 사과를 사과를 먹었다.", "repeat"),              # one word three times in a row
    ("나는 오늘 사과를 먹고 사과를 먹고 사과를 먹고", "repeat"),   # a run of two words
    ("나는 오늘 사과를 먹었다.", None),
])
def test_each_filter_rule(korean: str, rule: str | None) -> None:
    assert drop_rule("I ate an apple today.", korean, DistillConfig()) == rule


def test_the_repeat_rule_counts_runs_in_a_row() -> None:
    def repeated(text: str, times: int) -> bool:
        return repeats(text.split(), times)

    assert repeated("a b a b a b", times=3)
    assert not repeated("a b a b c a b", times=3)  # not in a row
    assert not repeated("a a b b", times=3) and repeated("a a b b", times=2)
    assert repeated("a b c d a b c d a b c d", times=3) and not repeated("a b c d e a b c d e", 2)  # 4 words at most
    assert drop_rule("a b", "가 가 가 가", DistillConfig(repeat_limit=0, max_length_ratio=10)) is None  # 0: off


def test_each_line_gets_the_tag_of_its_own_source() -> None:
    domains = Domains({"general": ["toy-a"], "technical": ["toy-b"]}, "general", first_tag_id=400)
    warnings: list[str] = []
    assert teacher_tag_ids(domains, ["toy-b", "toy-a", "toy-b", "new"], warnings.append) == [401, 400, 401, 400]
    assert len(warnings) == 1 and "new" in warnings[0] and "<general>" in warnings[0]
    assert teacher_tag_ids(None, ["toy-a"], warnings.append) is None  # a teacher without tags


# The stage's outputs.

def test_the_corpus_holds_the_teachers_kept_translations_and_a_card(corpus: Path, tiny_workdir: Path) -> None:
    prepared = tiny_workdir / "data/prepared"
    english, sources = lines(prepared / "train.en"), lines(prepared / "train.source")
    card = json.loads((corpus / "card.json").read_text())
    numbers = [int(n) for n in lines(corpus / "train.lines")]
    assert numbers == sorted(set(numbers)) and len(numbers) == card["counts"]["kept"] > 0
    assert lines(corpus / "train.en") == [english[n - 1] for n in numbers]  # aligned to the prepared lines
    assert lines(corpus / "train.source") == [sources[n - 1] for n in numbers]
    # The Korean is the teacher's translation, by the distill section's search.
    teacher = Translator(tiny_workdir / "models/model/best.pt", split_sentences=False, params_path=None, **FAST)
    assert lines(corpus / "train.ko") == teacher.translate(lines(corpus / "train.en"))
    assert lines(corpus / "train.ko") != lines(prepared / "train.ko")[:1] * len(numbers)
    # Every dropped line is listed with the first rule it breaks, and counted.
    dropped = [line.split("\t") for line in lines(corpus / "dropped.tsv")]
    counts = card["counts"]
    assert counts["translated"] == len(english) == counts["kept"] + sum(counts["dropped"].values())
    assert counts["dropped"]["too_long"] == len(dropped) > 0
    config = DistillConfig(max_length_ratio=0.66)
    assert all(drop_rule(english[int(n) - 1], text, config) == rule for n, rule, text in dropped)
    assert not set(numbers) & {int(n) for n, _, _ in dropped}
    # The card names the teacher, tokenizers, data, search and files by md5.
    assert card["teacher"]["md5"] == md5(tiny_workdir / "models/model/best.pt")
    assert card["teacher"]["tokenizer"] == {"source": md5(tiny_workdir / "models/tokenizer/en.model"),
                                            "target": md5(tiny_workdir / "models/tokenizer/ko.model")}
    assert card["prepared"]["train.en"] == md5(prepared / "train.en")
    assert card["search"]["beam_size"] == 2 and card["filters"]["max_length_ratio"] == 0.66
    assert all(card["files"][name] == md5(corpus / name) for name in card["files"])
    assert card["created"] and "sentences_per_second" in card
    assert card["teacher"]["md5"] in (corpus / "CARD.md").read_text()
    assert not (corpus.parent / ".distilled.work").exists()  # the finished chunks are gone


def test_sources_limit_what_is_translated(tiny_workdir: Path, tmp_path: Path) -> None:
    """`distill.sources` translates only the named sources' lines; a name no line has is one line."""
    card = run_distill(tiny_workdir, tmp_path / "toy-b", sources=["toy-b"], max_length_ratio=10)
    sources = lines(tiny_workdir / "data/prepared/train.source")
    assert set(lines(tmp_path / "toy-b/train.source")) == {"toy-b"}
    assert card["counts"]["translated"] == sources.count("toy-b") < len(sources)
    assert [int(n) for n in lines(tmp_path / "toy-b/train.lines")] == [
        number for number, source in enumerate(sources, start=1) if source == "toy-b"]
    with pytest.raises(UserError, match="no train line comes from toy-c; the sources are toy-a, toy-b"):
        run_distill(tiny_workdir, tmp_path / "none", sources=["toy-c"])
    assert not (tmp_path / "none").exists()


def test_a_tagged_teacher_translates_each_line_with_its_sources_tag(tagged_workdir: Path, tmp_path: Path) -> None:
    card = run_distill(tagged_workdir, tmp_path / "out", max_sentences=24)
    assert card["counts"]["translated"] == 24
    english, sources = lines(tmp_path / "out/train.en"), lines(tmp_path / "out/train.source")
    teacher = Translator(tagged_workdir / "models/model/best.pt", split_sentences=False, params_path=None, **FAST)
    own_tags = [teacher.domains.tag_id("technical" if source == "toy-b" else "general") for source in sources]
    assert {"toy-a", "toy-b"} <= set(sources)
    assert lines(tmp_path / "out/train.ko") == teacher.translate(english, tag_ids=own_tags)


def test_an_interrupted_run_resumes_from_its_finished_chunks(tiny_workdir: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    translated: list[int] = []
    real_translate = Translator.translate

    def counting(self: Translator, texts: list[str], *args: object, **kwargs: object) -> list[str]:
        if len(translated) == 2 and stop:
            raise KeyboardInterrupt
        translated.append(len(texts))
        return real_translate(self, texts, *args, **kwargs)

    monkeypatch.setattr(Translator, "translate", counting)
    stop = True
    with pytest.raises(KeyboardInterrupt):
        run_distill(tiny_workdir, tmp_path / "a/distilled", chunk=60)
    assert not (tmp_path / "a/distilled").exists()  # nothing half-written
    assert sorted(p.name for p in (tmp_path / "a/.distilled.work").iterdir()) == [
        "chunk-00000.ko", "chunk-00001.ko", "settings.json"]
    stop, translated[:] = False, []
    card = run_distill(tiny_workdir, tmp_path / "a/distilled", chunk=60)
    total = card["counts"]["translated"]
    assert sum(translated) == total - 120 and card["resumed_sentences"] == 120  # only the missing chunks
    translated[:] = []
    run_distill(tiny_workdir, tmp_path / "b/distilled", chunk=60)  # the same, in one go
    assert sum(translated) == total
    for name in ("train.ko", "train.lines", "dropped.tsv"):
        assert (tmp_path / "a/distilled" / name).read_bytes() == (tmp_path / "b/distilled" / name).read_bytes()
    # Chunks made with other settings are not reused.
    stop, translated[:] = True, []
    with pytest.raises(KeyboardInterrupt):
        run_distill(tiny_workdir, tmp_path / "c/distilled", chunk=60)
    stop, translated[:] = False, []
    run_distill(tiny_workdir, tmp_path / "c/distilled", chunk=60, beam_size=1)
    assert sum(translated) == total


def test_off_writes_a_note_in_a_second(tiny_workdir: Path, tmp_path: Path) -> None:
    assert distill(None, tiny_workdir / "data/prepared", tiny_workdir / "models/tokenizer", tmp_path / "out",
                   DistillConfig()) == {"off": True}
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["OFF.md"]


# Bad input: one clear line, nothing written.

def other_tokenizer_teacher(workdir: Path, path: Path) -> Path:
    """The tiny teacher with its tokenizers swapped: a model of another vocabulary."""
    content = torch.load(workdir / "models/model/best.pt", weights_only=True)
    tokenizer = content["tokenizer"]
    content["tokenizer"] = {"source": tokenizer["target"], "target": tokenizer["source"]}
    torch.save(content, path)
    return path


@pytest.mark.parametrize(("case", "message"), [
    ("missing", "teacher {teacher} not found"),
    ("tokenizers", "was trained with other tokenizers"),
    ("pinned", "has md5 "),
])
def test_a_bad_teacher_is_one_line_and_writes_nothing(tiny_workdir: Path, tmp_path: Path, case: str,
                                                      message: str) -> None:
    teacher = {"missing": tmp_path / "none.pt", "tokenizers": other_tokenizer_teacher(tiny_workdir, tmp_path / "t.pt"),
               "pinned": tiny_workdir / "models/model/best.pt"}[case]
    params = tmp_path / "params.yaml"
    pin = "0" * 32 if case == "pinned" else md5sum(teacher)
    params.write_text(f"distill:\n  teacher: {teacher}\n  md5: '{pin}'\n")
    out = tmp_path / "out/distilled"
    result = CliRunner().invoke(main, ["distill", "--params", str(params), "--prepared",
                                       str(tiny_workdir / "data/prepared"), "--tokenizer",
                                       str(tiny_workdir / "models/tokenizer"), "--out", str(out)])
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1, result.output
    assert message.format(teacher=teacher) in result.output
    assert not (tmp_path / "out").exists()  # neither the corpus nor a work folder
    if case == "pinned":
        assert md5(teacher) in result.output  # the md5 to pin, if it is the teacher meant


def md5sum(path: Path) -> str:
    return md5(path) if path.exists() else "0" * 32


def test_a_published_corpus_is_checked_and_taken_as_it_is(corpus: Path, tiny_workdir: Path, tmp_path: Path) -> None:
    pin = md5(corpus / "card.json")
    config = DistillConfig(teacher=str(corpus), md5=pin)
    stage = (tiny_workdir / "data/prepared", tiny_workdir / "models/tokenizer")
    card = distill(None, *stage, tmp_path / "taken", config)
    assert card["counts"] == json.loads((corpus / "card.json").read_text())["counts"]
    assert sorted(p.name for p in (tmp_path / "taken").iterdir()) == sorted(p.name for p in corpus.iterdir())
    assert all((tmp_path / "taken" / p.name).read_bytes() == p.read_bytes() for p in corpus.iterdir())
    with pytest.raises(UserError, match="distill.md5 says"):
        distill(None, *stage, tmp_path / "wrong", DistillConfig(teacher=str(corpus), md5="0" * 32))
    truncated = tmp_path / "truncated"
    shutil.copytree(corpus, truncated)
    (truncated / "train.ko").write_text("".join(lines(corpus / "train.ko")[:-1]), encoding="utf-8")
    with pytest.raises(UserError, match="truncated or changed"):
        distill(None, *stage, tmp_path / "bad", DistillConfig(teacher=str(truncated), md5=pin))
    assert not (tmp_path / "wrong").exists() and not (tmp_path / "bad").exists()


# Training on the distilled corpus.

def load(workdir: Path, corpus: Path, **train: object) -> TrainingData:
    paths = tiny_paths(workdir)
    paths.distilled_dir = corpus
    return TrainingData.load(tiny_params(train={**DOMAIN_CONTROL, **train}).train, paths)


def test_replace_trains_on_the_teachers_korean_for_the_kept_lines(corpus: Path, tiny_workdir: Path) -> None:
    plain, replaced = load(tiny_workdir, corpus), load(tiny_workdir, corpus, distilled="replace")
    kept = {int(n) - 1: text for n, text in zip(lines(corpus / "train.lines"), lines(corpus / "train.ko"),
                                                  strict=True)}
    assert len(replaced.train) == len(plain.train)
    decode = replaced.tokenizer.target.decode
    for index in range(len(plain.train)):
        expected = kept[index] if index in kept else decode(plain.train.target[index].tolist())
        assert decode(replaced.train.target[index].tolist()) == expected
        assert np.array_equal(replaced.train.source[index], plain.train.source[index])
    assert np.array_equal(replaced.train.tags, plain.train.tags) and np.array_equal(replaced.weights, plain.weights)


def test_beside_adds_the_teachers_pairs_with_their_sources_tags_and_weight(corpus: Path, tiny_workdir: Path) -> None:
    plain = load(tiny_workdir, corpus)
    beside = load(tiny_workdir, corpus, distilled="beside", distilled_weight=3.0)
    numbers = [int(n) - 1 for n in lines(corpus / "train.lines")]
    assert len(beside.train) == len(plain.train) + len(numbers)
    added = range(len(plain.train), len(beside.train))
    assert beside.train.tags[: len(plain.train)].tolist() == plain.train.tags.tolist()
    assert [beside.train.tags[i] for i in added] == [plain.train.tags[n] for n in numbers]  # their sources' tags
    assert [beside.weights[i] for i in added] == [3.0 * plain.weights[n] for n in numbers]
    decode = beside.tokenizer.target.decode
    assert [decode(beside.train.target[i].tolist()) for i in added] == lines(corpus / "train.ko")
    assert list(beside.domains.groups) == list(plain.domains.groups)  # no new tag: the English is human


def test_off_never_reads_the_folder(tiny_workdir: Path, tmp_path: Path) -> None:
    (tmp_path / "card.json").write_text("not json")
    plain, off = load(tiny_workdir, tiny_workdir / "nothing"), load(tiny_workdir, tmp_path, distilled=False)
    assert np.array_equal(np.asarray(plain.train.target.ids), np.asarray(off.train.target.ids))


def corrupt(corpus: Path, target: Path, case: str, workdir: Path) -> tuple[Path, Path]:
    """A copy of `corpus` broken as `case` says, and the prepared folder to check it against."""
    shutil.copytree(corpus, target / "distilled")
    prepared = workdir / "data/prepared"
    folder = target / "distilled"
    if case == "truncated":
        text = (folder / "train.ko").read_bytes()
        (folder / "train.ko").write_bytes(text[: len(text) // 2])
    elif case == "empty":
        (folder / "train.ko").write_text("")
    elif case == "other data":
        prepared = target / "prepared"
        shutil.copytree(workdir / "data/prepared", prepared)
        (prepared / "train.en").write_text("A changed line.\n" + "".join(
            line + "\n" for line in lines(workdir / "data/prepared/train.en")[1:]), encoding="utf-8")
    elif case == "other tokenizers":
        card = json.loads((folder / "card.json").read_text())
        card["teacher"]["tokenizer"]["target"] = "0" * 32
        (folder / "card.json").write_text(json.dumps(card))
    elif case == "off":
        shutil.rmtree(folder)
        folder.mkdir()
        (folder / "OFF.md").write_text("off\n")
    elif case == "missing":
        shutil.rmtree(folder)
    return folder, prepared


@pytest.mark.parametrize(("case", "message"), [
    ("truncated", "train.ko is not the file its card names"),
    ("empty", "train.ko is not the file its card names"),
    ("other data", "was distilled from another"),
    ("other tokenizers", "teacher with other tokenizers"),
    ("off", "holds no distilled corpus"),
    ("missing", "card.json not found"),
])
def test_training_refuses_a_bad_corpus_in_one_line_and_writes_nothing(
        corpus: Path, tiny_workdir: Path, tmp_path: Path, case: str, message: str) -> None:
    folder, prepared = corrupt(corpus, tmp_path, case, tiny_workdir)
    write_tiny_params(tmp_path, distilled="replace")
    result = CliRunner().invoke(main, [
        "train", "--params", str(tmp_path / "params.yaml"), "--encoded", str(tiny_workdir / "data/encoded"),
        "--prepared", str(prepared), "--tokenizer", str(tiny_workdir / "models/tokenizer"),
        "--model-dir", str(tmp_path / "model"), "--live", str(tmp_path / "live"), "--synthetic", str(tmp_path / "none"),
        "--distilled", str(folder)])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1, result.output
    assert message in result.output
    assert not (tmp_path / "model").exists() and not (tmp_path / "live").exists()


def test_a_student_trains_on_distilled_pairs(corpus: Path, tiny_workdir: Path, tmp_path: Path) -> None:
    link_tiny_data(tiny_workdir, tmp_path)
    paths = tiny_paths(tmp_path)
    paths.distilled_dir = corpus
    progress = train(tiny_params(train={"distilled": "beside", "max_steps": 3, "valid_every": 3}), paths)
    assert progress.step == 3 and (paths.model_dir / "best.pt").exists()
