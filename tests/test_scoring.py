"""`seq2seq score` and `seq2seq.scoring`: teacher-forced scores of given translations, tied to the
beam search's own scores, their output shapes and their refusal of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from seq2seq.cli import main
from seq2seq.errors import UserError
from seq2seq.scoring import score_pairs, teacher_forced_log_probs
from seq2seq.search import greedy_search, length_normalized, max_output_lengths
from seq2seq.translate import Translator
from tests.conftest import padded, toy_pairs
from tests.test_search import DECODERS, random_model, sequence_log_prob


@pytest.fixture(scope="module")
def model_path(tiny_workdir: Path) -> str:
    return str(tiny_workdir / "models/model/best.pt")


@pytest.fixture(scope="module")
def translator(model_path: str) -> Translator:
    return Translator(model_path, beam_size=4, batch_size=3, params_path=None)


def run(args: list[str], input: str | None = None):
    return CliRunner().invoke(main, args, input=input)


@pytest.mark.parametrize("decoder", DECODERS)
def test_teacher_forced_log_probs_are_the_step_by_step_ones(decoder: dict) -> None:
    """One batched, padded pass gives each token the log-probability a one-step-at-a-time decoder
    gives it: the greedy search's scores, and a teacher-forced pass per sentence."""
    model = random_model(3, **decoder)
    sentences = [[4, 5, 6, 4, 5], [6], [5, 5, 4]]
    source, lengths = padded(sentences)
    found = greedy_search(model, source, lengths, max_output_lengths(lengths, 2.0))
    targets = [hypothesis.tokens for hypothesis in found]
    values = teacher_forced_log_probs(model, source, lengths, targets)
    assert values.shape == (3, max(map(len, targets)) + 1)
    for row, (hypothesis, sentence) in enumerate(zip(found, sentences, strict=True)):
        assert float(values[row].sum()) == pytest.approx(hypothesis.score, abs=1e-4)
        assert not values[row, len(hypothesis.tokens) + 1 :].any()  # nothing past EOS
        alone = sequence_log_prob(model, *padded([sentence]), hypothesis.tokens)
        assert float(values[row].sum()) == pytest.approx(alone, abs=1e-4)


def test_the_score_of_a_translation_is_the_searchs_own(translator: Translator) -> None:
    """Scoring the n-best translations gives back each candidate's log-probability and score as
    the beam search computed them (where the text tokenises back into the searched pieces)."""
    english = [en for en, _ in toy_pairs()[::37]]
    translations = translator.translate_detailed(english, n_best=3)
    pairs = [(en, candidate) for en, translation in zip(english, translations, strict=True)
             for candidate in translation.sentences[0].candidates]
    scored = translator.score([en for en, _ in pairs], [candidate.text for _, candidate in pairs])
    searched = [h.n_best() for h in translator._search(translator.tokenizer.encode_source(english), n_best=3)]
    tokens = [option.tokens for options in searched for option in options]
    same_pieces = [translator.tokenizer.encode_target([candidate.text])[0] == emitted
                   for (_, candidate), emitted in zip(pairs, tokens, strict=True)]
    assert sum(same_pieces) >= 0.8 * len(pairs)
    for (_, candidate), result, same in zip(pairs, scored, same_pieces, strict=True):
        if same:
            assert result.log_prob == pytest.approx(candidate.log_prob, abs=1e-4)
            assert result.score == pytest.approx(candidate.score, abs=1e-4)
        assert len(result.pieces) == len(result.piece_log_probs) and result.pieces[-1] == "</s>"
        assert sum(result.piece_log_probs) == pytest.approx(result.log_prob)
        assert result.score == pytest.approx(length_normalized(result.log_prob, len(result.pieces) - 1,
                                                                       translator.length_penalty))


def test_scores_rank_references_above_wrong_translations(translator: Translator) -> None:
    pairs = toy_pairs()[:6]
    english = [en for en, _ in pairs]
    right = translator.score(english, [ko for _, ko in pairs])
    wrong = translator.score(english, [ko for _, ko in pairs[1:] + pairs[:1]])
    assert all(r.score > w.score for r, w in zip(right, wrong, strict=True))


def test_batching_by_length_keeps_the_order_and_the_values(model_path: str, translator: Translator) -> None:
    odd = ("I read.", "나는 읽었다 오늘 어제 물을.")
    pairs = [toy_pairs()[0], ("Yes.", "네."), toy_pairs()[40], odd, toy_pairs()[9]]
    english, korean = [en for en, _ in pairs], [ko for _, ko in pairs]
    one_by_one = [translator.score([en], [ko])[0] for en, ko in pairs]
    together = Translator(model_path, batch_size=2, params_path=None).score(english, korean)
    assert [s.pieces for s in together] == [s.pieces for s in one_by_one]
    assert [s.log_prob for s in together] == pytest.approx([s.log_prob for s in one_by_one], abs=1e-4)


def test_a_domain_tag_is_read_as_translate_reads_it(tagged_workdir: Path) -> None:
    translator = Translator(tagged_workdir / "models/model/best.pt", beam_size=2, params_path=None)
    english = [en for en, _ in toy_pairs()[1:40:6]]
    for domain in ("general", "technical"):
        translations = translator.translate_detailed(english, domain=domain)
        best = [t.sentences[0].candidates[0] for t in translations]
        scored = translator.score(english, [c.text for c in best], domain=domain)
        assert [s.log_prob for s in scored] == pytest.approx([c.log_prob for c in best], abs=1e-4)
    general, technical = (translator.score(english, [t.text for t in translations], domain=d)
                          for d in ("general", "technical"))
    assert [s.log_prob for s in general] != pytest.approx([s.log_prob for s in technical], abs=1e-3)


def test_score_pairs_refuses_empty_sentences(translator: Translator) -> None:
    with pytest.raises(UserError, match="line 2: the Korean sentence is empty"):
        score_pairs(translator, ["Hi.", "Hello."], ["안녕.", " \x07 "])
    with pytest.raises(UserError, match="2 English sentences but 1 Korean"):
        score_pairs(translator, ["Hi.", "Hello."], ["안녕."])


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("pairs")
    pairs = toy_pairs()[:7]
    (folder / "test.en").write_text("".join(en + "\n" for en, _ in pairs), encoding="utf-8")
    (folder / "test.ko").write_text("".join(ko + "\n" for _, ko in pairs), encoding="utf-8")
    return folder / "test.en", folder / "test.ko"


def test_files_give_a_row_per_pair_with_progress_on_stderr(model_path: str, pair_files: tuple[Path, Path],
                                                          translator: Translator) -> None:
    english, korean = pair_files
    result = run(["score", "--model", model_path, "--source", str(english), "--target", str(korean)])
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    expected = translator.score(english.read_text().splitlines(), korean.read_text().splitlines())
    assert [len(row) for row in rows] == [2] * 7
    assert [float(row[1]) for row in rows] == pytest.approx([s.log_prob for s in expected], abs=1e-3)
    assert "score" in result.stderr and "7/7" in result.stderr  # the progress bar


def test_stdin_and_json_lines(model_path: str, tmp_path: Path) -> None:
    pairs = toy_pairs()[:3]
    lines = "".join(f"{en}\t{ko}\n" for en, ko in pairs)
    result = run(["score", "--model", model_path, "--json", "--length-penalty", "0"], input=lines)
    assert result.exit_code == 0, result.output
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(objects) == 3 and result.stderr == ""
    for entry in objects:
        assert set(entry) == {"score", "log_prob", "pieces", "piece_log_probs"}
        assert entry["score"] == entry["log_prob"] < 0  # a length penalty of 0 divides by 1
        assert len(entry["pieces"]) == len(entry["piece_log_probs"]) and entry["pieces"][-1] == "</s>"
        assert sum(entry["piece_log_probs"]) == pytest.approx(entry["log_prob"], abs=1e-4)
    out = tmp_path / "scores.jsonl"
    written = run(["score", "--model", model_path, "--json", "--length-penalty", "0", "--output", str(out)],
                  input=lines)
    assert written.exit_code == 0 and written.stdout == "" and out.read_text() == result.stdout


@pytest.mark.parametrize(("english", "korean", "stdin", "message"), [
    ("a\nb\nc\n", "가\n나\n", None, r"^error: \S*test\.ko has 2 lines but \S*test\.en has more \(line 3\)"),
    ("a\nb\n", "가\n나\n다\n", None, r"^error: \S*test\.en has 2 lines but \S*test\.ko has more \(line 3\)"),
    ("a\nb\nc\n", "가\n\n다\n", None, r"^error: \S*test\.ko line 2: the Korean sentence is empty"),
    ("a\n \nc\n", "가\n나\n다\n", None, r"^error: \S*test\.en line 2: the English sentence is empty"),
    (None, None, "a\t가\nb 나\n", r"^error: <stdin> line 2: no tab; each line must be English<TAB>Korean"),
    (None, None, "a\t가\tx\n", r"^error: <stdin> line 1: 2 tabs"),
    (None, None, "a\t가\nb\t\n", r"^error: <stdin> line 2: the Korean sentence is empty"),
])
def test_bad_input_is_one_line_naming_file_and_line_and_writes_nothing(
        model_path: str, tmp_path: Path, english: str | None, korean: str | None, stdin: str | None,
        message: str) -> None:
    import re

    out = tmp_path / "out.tsv"
    args = ["score", "--model", model_path, "--output", str(out)]
    if english is not None:
        (tmp_path / "test.en").write_text(english, encoding="utf-8")
        (tmp_path / "test.ko").write_text(korean, encoding="utf-8")
        args += ["--source", str(tmp_path / "test.en"), "--target", str(tmp_path / "test.ko")]
    for arguments in (args, args[:3] + args[5:]):  # to a file, and to stdout
        result = run(arguments, input=stdin)
        assert result.exit_code == 1
        assert re.match(message, result.stderr), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
        assert not out.exists() and list(tmp_path.glob(".out*")) == []


def test_source_without_target_is_an_error(model_path: str, pair_files: tuple[Path, Path]) -> None:
    result = run(["score", "--model", model_path, "--source", str(pair_files[0])], input="")
    assert result.exit_code == 1 and "give both --source and --target" in result.stderr


def test_scoring_runs_no_python_loop_over_steps() -> None:
    """The teacher-forced pass is the training forward: the decoder's RNN runs once over all steps."""
    model = random_model(1)
    calls = []
    model.decoder.rnn.register_forward_hook(lambda *_: calls.append(1))
    teacher_forced_log_probs(model, *padded([[4, 5, 6]]), [[4, 5, 6, 4, 5, 6]])
    assert calls == [1]


def test_bench_scoring_reports_the_three_runs_and_their_ratios(tiny_workdir: Path) -> None:
    from seq2seq.bench.decoding import bench_scoring

    lines = list(bench_scoring(tiny_workdir / "models/model/best.pt", tiny_workdir / "data/prepared", "test",
                               limit=6, beam_size=3, n_best=2, batch_size=4, rounds=1))
    rows = [line.split("|")[1:-1] for line in lines[3:]]
    assert [row[0].strip() for row in rows] == ["translate, beam 3",
                                                "translate, beam 3, n-best 2 + scores (JSON Lines)",
                                                "score the reference pairs (teacher-forced)"]
    assert rows[0][4].strip() == "1.00x" and all(float(row[1]) > 0 for row in rows)
