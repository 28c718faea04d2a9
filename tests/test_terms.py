"""Kept terms: masking rules, restoring (dropped and duplicated placeholders on constructed outputs),
glossary and do-not-translate files, and the terms kept end to end by the tiny model, the CLI and
the HTTP API."""

import re
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from seq2seq.cli import main
from seq2seq.errors import UserError
from seq2seq.serve import Limits, create_app
from seq2seq.terms import (
    KeptTerms,
    Protected,
    agreeing_particle,
    load_terms,
    mask,
    read_glossary,
    read_keep_list,
    restore_sentence,
    translate_with_terms,
)
from seq2seq.translate import Translator
from tests.conftest import running_server, toy_pairs

CITIES = KeptTerms({"New York": "뉴욕", "York University": "요크 대학교", "machine learning": "기계 학습"},
                   ("Python", "C++", ".NET"))


def masked_text_and_sources(text: str, terms: KeptTerms = CITIES) -> tuple[str, list[tuple[str, str]]]:
    masked = mask(text, terms)
    return masked.text, [(span.source, span.replacement) for span in masked.spans]


def test_the_longest_term_wins_and_overlapping_terms_go_left_to_right() -> None:
    assert masked_text_and_sources("New York University is in New  York.") == (
        "[1] University is in [2].", [("New York", "뉴욕"), ("New  York", "뉴욕")])
    assert masked_text_and_sources("She left York University.") == (
        "She left [1].", [("York University", "요크 대학교")])


def test_terms_match_whole_words_and_lowercase_terms_match_any_case() -> None:
    text, spans = masked_text_and_sources("Machine Learning in Python, not pythonic Pythons; C++ on .NET.")
    assert text == "[1] in [2], not pythonic Pythons; [3] on [4]."
    assert spans == [("Machine Learning", "기계 학습"), ("Python", "Python"), ("C++", "C++"), (".NET", ".NET")]
    assert mask("python and new york", CITIES).spans == ()  # terms with capitals match only as written


def test_numbers_the_text_already_uses_are_skipped() -> None:
    assert mask("See [1] and [3] on Python and C++.", CITIES).text == "See [1] and [3] on [2] and [4]."


def test_a_copied_placeholder_is_replaced_and_its_particle_agrees() -> None:
    seoul = Protected("[1]", "Seoul", "서울")
    busan = Protected("[2]", "Busan", "부산")
    output, outcome = restore_sentence("I love [1] and [2].", "나는 [1]은 [2]를 좋아한다.", [seoul, busan], [], [])
    assert output == "나는 서울은 부산을 좋아한다."  # 은 -> 은 after 울; 를 -> 을 after 산
    assert (outcome.copied, outcome.dropped, outcome.duplicated) == (2, 0, 0)
    assert [agreeing_particle(word, "으로") for word in ("서울", "부산", "파리")] == ["로", "으로", "로"]
    assert agreeing_particle("Python", "은") == "은"  # not Hangul: as the model wrote it
    assert agreeing_particle("서울", "이다") == "이다"  # not a particle of the list


def test_a_duplicated_placeholder_is_restored_once() -> None:
    python = Protected("[1]", "Python", "Python")
    output, outcome = restore_sentence("I use [1].", "나는 [1]를 [1]을 사용한다 [1].", [python], [], [])
    assert output == "나는 Python를 사용한다."
    assert (outcome.copied, outcome.dropped, outcome.duplicated) == (0, 0, 1)


def test_a_dropped_placeholder_goes_before_the_word_aligned_to_its_source_word() -> None:
    python = Protected("[1]", "Python", "Python")
    # source words: I(0) use(1) [1](2) daily.(3); output words: 나는(0) 매일(1) 사용한다.(2)
    alignment = [(0, 0), (1, 2), (2, 2), (3, 1)]
    output, outcome = restore_sentence("I use [1] daily.", "나는 매일 사용한다.", [python], [], alignment)
    assert output == "나는 매일 Python 사용한다."
    assert (outcome.copied, outcome.dropped, outcome.duplicated) == (0, 1, 0)
    output, _ = restore_sentence("I use [1] daily.", "", [python], [], [])
    assert output == "Python"


def test_another_sentences_placeholder_and_garbled_ones_are_removed() -> None:
    output, _ = restore_sentence("Hi.", "안녕 [2].", [], ["[2]"], [])
    assert output == "안녕."
    python, github = Protected("[1]", "Python", "파이썬"), Protected("[2]", "GitHub", "GitHub")
    source = "I use [1] and [2] [5]."  # [5] was in the text itself: it stays
    alignment = [(0, 0), (1, 1), (2, 2), (3, 3), (4, 2)]
    output, outcome = restore_sentence(source, "나는 [11] 구글과 [2 [2]를 2] [5].", [python, github], [], alignment)
    assert output == "나는 파이썬 구글과 GitHub를 [5]."
    assert (outcome.copied, outcome.dropped, outcome.duplicated) == (1, 1, 0)
    seoul = Protected("[1]", "Seoul", "서울")
    output, _ = restore_sentence("I moved to [1] to work at [2].", "나는 [1] 11] [2]에서 일했다.",
                                 [seoul, github], [], [])
    assert output == "나는 서울 GitHub에서 일했다."  # a half placeholder with its digit repeated goes too


def test_glossary_and_keep_files(tmp_path: Path) -> None:
    glossary = tmp_path / "glossary.tsv"
    glossary.write_text("# brands\nNew York\t뉴욕\n\nmachine  learning\t기계 학습\r\nNew York\t뉴욕\n",
                        encoding="utf-8")
    keep = tmp_path / "keep.txt"
    keep.write_text("# names\nPython\n\nC++\nPython\n", encoding="utf-8")
    assert read_glossary(glossary) == {"New York": "뉴욕", "machine learning": "기계 학습"}
    assert read_keep_list(keep) == ["Python", "C++"]
    terms = load_terms(glossary, keep, {"Python": "파이썬"}, ["New York"])
    assert terms == KeptTerms({"machine learning": "기계 학습", "Python": "파이썬"}, ("C++", "New York"))


@pytest.mark.parametrize(("content", "message"), [
    ("New York\t뉴욕\nSeoul 서울\n", "{path}:2: expected english<TAB>korean, found no tab"),
    ("# c\n\nA\tB\tC\n", "{path}:3: expected english<TAB>korean, found 2 tabs"),
    ("A\t \n", "{path}:1: the Korean side is empty"),
    ("New York\t뉴욕\nNew York\t새 요크\n", "{path}:2: 'New York' is already given as '뉴욕' on line 1"),
])
def test_a_bad_glossary_line_is_named(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "glossary.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError) as error:
        read_glossary(path)
    assert str(error.value) == message.format(path=path)


def test_bad_bytes_a_missing_file_and_a_tab_in_a_keep_list(tmp_path: Path) -> None:
    path = tmp_path / "terms.txt"
    path.write_bytes(b"Python\n\xff\xfe\n")
    with pytest.raises(UserError, match=f"^{path}:2: not valid UTF-8$"):
        read_keep_list(path)
    with pytest.raises(UserError, match=f"^{tmp_path / 'none.tsv'}: not found$"):
        read_glossary(tmp_path / "none.tsv")
    path.write_text("Seoul\t서울\n", encoding="utf-8")
    with pytest.raises(UserError, match=f"^{path}:1: a tab: the do-not-translate list has one term a line"):
        read_keep_list(path)


def test_a_term_both_kept_and_in_the_glossary_is_refused_and_extending_replaces() -> None:
    with pytest.raises(UserError, match="'Seoul' is both in the glossary and in the do-not-translate list"):
        KeptTerms({"Seoul": "서울"}, ("Seoul",))
    assert CITIES.extended({"Python": "파이썬"}, ["New York"]) == KeptTerms(
        {"York University": "요크 대학교", "machine learning": "기계 학습", "Python": "파이썬"},
        ("C++", ".NET", "New York"))


@pytest.fixture(scope="module")
def model_path(tiny_workdir: Path) -> Path:
    return tiny_workdir / "models/model/best.pt"


@pytest.fixture(scope="module")
def translator(tiny_workdir: Path) -> Translator:
    """The tiny model, its beam narrowed as in the HTTP tests."""
    return Translator(tiny_workdir / "models/model/best.pt", beam_size=3)


def test_the_tiny_model_keeps_a_term_it_would_translate(translator: Translator) -> None:
    english = [en for en, _ in toy_pairs() if "apple" in en and "bread" not in en][:2]
    texts = [english[0], f"{english[1]} We ate bread today."]
    assert not any("apple" in text for text in translator.translate(texts))
    kept = translate_with_terms(translator, texts, KeptTerms({"bread": "식빵"}, ("apple",)))
    for found in kept:
        assert found.text.count("apple") == 1, found
        assert "[1]" not in found.text and "[2]" not in found.text
    assert kept[1].text.count("식빵") == 1
    assert sum(found.outcome.copied + found.outcome.dropped + found.outcome.duplicated for found in kept) == 3


def run(args: list[str], input: str | None = None):
    return CliRunner().invoke(main, args, input=input)


def test_translate_keeps_terms_from_files_and_options(model_path: Path, tmp_path: Path) -> None:
    (tmp_path / "glossary.tsv").write_text("bread\t식빵\n", encoding="utf-8")
    (tmp_path / "keep.txt").write_text("apple\n", encoding="utf-8")
    english = "I ate an apple today. We ate bread today."
    for options in (["--glossary", str(tmp_path / "glossary.tsv"), "--keep", str(tmp_path / "keep.txt")],
                    ["--glossary-term", "bread=식빵", "--keep-term", "apple"]):
        result = run(["translate", "--model", str(model_path), *options, english])
        assert result.exit_code == 0, result.output
        assert result.stdout.count("apple") == 1 and result.stdout.count("식빵") == 1, result.stdout
        streamed = run(["translate", "--model", str(model_path), *options], input=english + "\n")
        assert streamed.stdout == result.stdout


def test_a_bad_glossary_line_stops_translate_before_any_output(model_path: Path, tmp_path: Path) -> None:
    glossary = tmp_path / "glossary.tsv"
    glossary.write_text("bread\t식빵\napple 사과\n", encoding="utf-8")
    result = run(["translate", "--model", str(model_path), "--glossary", str(glossary)], input="I ate bread.\n")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"error: {glossary}:2: expected english<TAB>korean, found no tab\n"
    result = run(["translate", "--model", str(model_path), "--glossary-term", "bread", "I ate bread."])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == "error: --glossary-term 'bread': expected ENGLISH=KOREAN, e.g. 'New York=뉴욕'\n"


def test_http_requests_keep_their_terms_and_the_servers(translator: Translator, model_path: Path) -> None:
    app = create_app(translator, model_path, Limits(max_terms=3), terms=KeptTerms(keep=("apple",)))
    english = "I ate an apple today. We ate bread today."
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        answer = http.post("/translate", json={"text": [english], "glossary": {"bread": "식빵"}})
        assert answer.status_code == 200, answer.text
        [found] = answer.json()["translations"]
        assert set(found) == {"text"}
        assert found["text"].count("apple") == 1 and found["text"].count("식빵") == 1
        both = http.post("/translate", json={"text": english, "keep": ["bread"], "attention": True}).json()
        assert both["translations"][0]["text"].count("bread") == 1 and "attention" in both["translations"][0]
        for body, field, message in [
            ({"glossary": ["bread"]}, "glossary", "glossary must map English terms to Korean text"),
            ({"keep": "bread"}, "keep", "keep must be a list of English terms"),
            ({"keep": [" "]}, "keep", "keep has an empty term"),
            ({"keep": ["a", "b", "c", "d"]}, "glossary", "glossary and keep have 4 terms; at most 3 a request"),
            ({"keep": ["bread"], "glossary": {"bread": "빵"}}, "keep", "'bread' is both in glossary and in keep"),
        ]:
            refused = http.post("/translate", json={"text": english, **body})
            assert refused.status_code in (413, 422)
            assert refused.json()["field"] == field
            assert refused.json()["error"].startswith(message), refused.json()


def test_the_benchmarks_build_their_test_sets_and_report(model_path: Path, tmp_path: Path) -> None:
    from seq2seq.bench.terms import bench_placeholders, bench_terms, glossary_sentences, name_sentences, occurrences

    sources = tmp_path / "test.en"
    sources.write_text("I ate an apple today.\nYou read a book about Seoul.\nWe liked Tom and Tom.\n"
                       "He bought bread from Anna today.\n", encoding="utf-8")
    assert [(sentence, name.group()) for sentence, name in name_sentences(sources, 5)] == [
        ("You read a book about Seoul.", "Seoul"), ("He bought bread from Anna today.", "Anna")]
    assert len(glossary_sentences()) == 60
    assert occurrences("Python은 Pythonic [Python]", "Python") == 2
    params = tmp_path / "none.yaml"
    table = list(bench_placeholders(model_path, sources, 2, ["[1]", "1001"], params))
    assert table[0] == "2 test sentences, each with one capitalised word replaced by a placeholder"
    assert [row.split(" | ")[0] for row in table[3:]] == ["| `[1]`", "| `1001`"]
    with pytest.raises(UserError, match=re.escape("unknown placeholder form '{1}'; one of [1], 1001,")):
        list(bench_placeholders(model_path, sources, 2, ["{1}"], params))
    rows = list(bench_terms(model_path, sources, 2, params))[2:]
    assert [row.split(" | ")[:2] for row in rows] == [["| names (do-not-translate)", "2"],
                                                      ["| glossary (templates)", "60"]]
    assert [row.split(" | ")[3] for row in rows] == ["100.0%", "100.0%"]  # kept: every term exactly once
