"""Markup kept through translation: parsers, tag placement by word alignments, files, CLI and HTTP.

The parser and placement tests use handmade "translations" and alignments (deterministic); the
end-to-end ones the tiny model of the session fixture.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from seq2seq.cli import main
from seq2seq.errors import UserError
from seq2seq.markup import (
    Marked,
    break_lines,
    parse_html,
    parse_markdown,
    parse_srt,
    render,
    translate_html,
    translate_markdown,
    translate_srt,
)
from tests.conftest import running_server

HANGUL = re.compile(r"[\uac00-\ud7a3]")
TAG = re.compile(r"</?([A-Za-z][\w-]*)[^>]*?(/?)>")


def shouted(texts: list[str]) -> list[tuple[str, list[tuple[int, int]]]]:
    """A stand-in translator: each word upper-cased, in the same order, word i aligned to word i."""
    return [(text.upper(), [(i, i) for i in range(len(text.split()))]) for text in texts]


def reversed_words(texts: list[str]) -> list[tuple[str, list[tuple[int, int]]]]:
    """A stand-in translator that reorders: the words upper-cased and backwards, aligned accordingly."""
    results = []
    for text in texts:
        words = text.split()
        results.append((" ".join(w.upper() for w in reversed(words)), [(i, len(words) - 1 - i)
                                                                       for i in range(len(words))]))
    return results


def tag_tree(markup: str) -> list[str]:
    """The tags of `markup` in a canonical nesting form, asserting that they balance: each element
    as name(children), in document order."""
    stack: list[list] = [[]]
    for match in TAG.finditer(markup):
        name, self_closing = match.group(1).lower(), match.group(2)
        if match.group(0).startswith("</"):
            children = stack.pop()
            assert stack[-1] and stack[-1][-1][0] == name, f"unbalanced </{name}> in {markup!r}"
            stack[-1][-1] = (name, children)
        elif self_closing or name == "br":
            stack[-1].append((name, []))
        else:
            stack[-1].append((name, None))
            stack.append([])
    assert len(stack) == 1, f"unclosed tags in {markup!r}"
    return stack[0]


def multiset(tree: list) -> list[str]:
    """The tags with their nesting depth, sorted: the same for a reordered translation."""
    found = []

    def walk(nodes: list, depth: int) -> None:
        for name, children in nodes:
            found.append(f"{depth}:{name}")
            walk(children or [], depth + 1)

    walk(tree, 0)
    return sorted(found)


# ---------------------------------------------------------------- placement on handmade alignments


def test_a_tag_goes_around_the_korean_word_its_english_word_aligns_to() -> None:
    (marked,) = parse_html("The <b>red</b> car is fast.", "x")
    assert isinstance(marked, Marked) and marked.text == "The red car is fast."
    korean = "빨간 차는 빠르다."
    alignment = [(1, 0), (2, 1), (3, 2), (4, 2)]  # red-빨간, car-차는, is/fast.-빠르다.
    assert render(marked, korean, alignment) == "<b>빨간</b> 차는 빠르다."
    (marked,) = parse_html("The red car is <i>fast</i>.", "x")
    assert render(marked, korean, alignment) == "빨간 차는 <i>빠르다</i>."  # the full stop stays outside


def test_nested_tags_keep_their_nesting_when_the_words_reorder() -> None:
    source = 'Hello <b>big <i>red</i> <a href="x.html" title=\'A &amp; B\'>world</a></b> &amp; friends.'
    shouted_out = translate_html(source, shouted)
    assert shouted_out == ('HELLO <b>BIG <i>RED</i> <a href="x.html" title=\'A &amp; B\'>WORLD</a></b> '
                           '&amp; FRIENDS.')
    backwards = translate_html(source, reversed_words)
    assert backwards.startswith("FRIENDS. &amp; <b>")
    assert multiset(tag_tree(backwards)) == multiset(tag_tree(source))
    assert 'title=\'A &amp; B\'' in backwards  # attributes kept verbatim, not decoded or translated


def test_conflicting_alignments_still_give_nested_tags() -> None:
    """Both elements' words align to the same target word: the second is cut, never crossed."""
    (marked,) = parse_html("<b>one</b> <i>two</i> three", "x")
    out = render(marked, "A B C", [(0, 1), (1, 1), (2, 2)])
    tag_tree(out)
    assert out.count("<b>") == out.count("<i>") == 1
    assert "<b>B</b>" in out


def test_self_closing_tags_and_code_stay_whole_and_keep_their_spacing() -> None:
    source = "Press <kbd>Ctrl</kbd> then stop.<br/>Next line <img src='a.png' alt='An image'> here."
    out = translate_html(source, shouted)
    assert out == "PRESS <kbd>Ctrl</kbd> THEN STOP.<br/> NEXT LINE <img src='a.png' alt='An image'> HERE."


def test_blocks_raw_elements_and_comments_are_copied() -> None:
    document = ("<!DOCTYPE html>\n<html><body>\n<h1>A title</h1>\n<!-- a note -->\n"
                "<pre>keep  <b>this</b>\n  as is</pre>\n<script>if (a < b) {}</script>\n"
                "<ul>\n  <li>first item\n  <li>second <em>item</em></li>\n</ul>\n</body></html>\n")
    out = translate_html(document, shouted)
    assert out == ("<!DOCTYPE html>\n<html><body>\n<h1>A TITLE</h1>\n<!-- a note -->\n"
                   "<pre>keep  <b>this</b>\n  as is</pre>\n<script>if (a < b) {}</script>\n"
                   "<ul>\n  <li>FIRST ITEM\n  <li>SECOND <em>ITEM</em></li>\n</ul>\n</body></html>\n")


@pytest.mark.parametrize(("document", "message"), [
    ("<p>ok</p>\n<b>bold <i>both</b></i>", "doc.html:2: </b> closes <i>, opened at line 2: tags must nest"),
    ("fine\n\nstray </em> here", "doc.html:3: </em> closes no open tag"),
    ("one\n<span>never closed", "doc.html:2: <span> is never closed"),
    ("<pre>no end", "doc.html:1: <pre> is never closed"),
])
def test_unbalanced_html_is_one_line_naming_file_and_line(document: str, message: str) -> None:
    with pytest.raises(UserError) as raised:
        translate_html(document, shouted, "doc.html")
    assert str(raised.value) == message


# ---------------------------------------------------------------- Markdown

MARKDOWN = """---
title: A page
---
# The *big* title

Some **bold** text with `make all` and a [good link](https://example.com/a_b) here.
A second line.

- item one
- item _two_ here
  continued
1. numbered

```python
x = 1  # *not* translated
```

> quoted text
> more of it

| name | value |
|------|------:|
| a cell | another |

[ref]: https://example.com

    indented code

2 * 3 is six and snake_case stays.
"""


def test_markdown_keeps_code_links_and_emphasis() -> None:
    out = translate_markdown(MARKDOWN, shouted)
    assert out == """---
title: A page
---
# THE *BIG* TITLE

SOME **BOLD** TEXT WITH `make all` AND A [GOOD LINK](https://example.com/a_b) HERE. A SECOND LINE.

- ITEM ONE
- ITEM _TWO_ HERE CONTINUED
1. NUMBERED

```python
x = 1  # *not* translated
```

> QUOTED TEXT MORE OF IT

| NAME | VALUE |
|------|------:|
| A CELL | ANOTHER |

[ref]: https://example.com

    indented code

2 * 3 IS SIX AND SNAKE_CASE STAYS.
"""


def test_markdown_emphasis_moves_with_its_words() -> None:
    out = translate_markdown("Read the **whole** [manual](m.md) now.\n", reversed_words)
    assert out == "NOW. [MANUAL](m.md) **WHOLE** THE READ\n"


def test_markdown_texts_are_what_the_model_reads() -> None:
    texts = [piece.text for piece in parse_markdown(MARKDOWN) if isinstance(piece, Marked)]
    assert "Some bold text with and a good link here. A second line." in texts
    assert "item two here continued" in texts
    assert not any("x = 1" in text or "https" in text or "indented code" in text for text in texts)


# ---------------------------------------------------------------- SubRip

SRT = ("\ufeff1\r\n00:00:01,000 --> 00:00:04,000\r\nThe cat is sleeping\r\non the <i>red</i> sofa.\r\n\r\n"
       "2\r\n00:00:05,000 --> 00:00:06,500 X1:10 X2:20\r\n- Hi there.\r\n- {\\an8}Hello you.\r\n"
       "3\r\n00:00:07,000 --> 00:00:08,000\r\nNo blank line before me &amp; you\r\n")


def test_srt_keeps_numbers_and_timing_and_joins_a_cues_lines() -> None:
    cues = parse_srt(SRT, "a.srt")
    assert [cue.timing for cue in cues] == ["00:00:01,000 --> 00:00:04,000",
                                           "00:00:05,000 --> 00:00:06,500 X1:10 X2:20", "00:00:07,000 --> 00:00:08,000"]
    out = translate_srt(SRT, shouted, "a.srt")
    assert out == ("\ufeff1\r\n00:00:01,000 --> 00:00:04,000\r\nTHE CAT IS SLEEPING\r\nON THE <i>RED</i> SOFA.\r\n\r\n"
                   "2\r\n00:00:05,000 --> 00:00:06,500 X1:10 X2:20\r\n- HI THERE.\r\n- {\\an8}HELLO YOU.\r\n\r\n"
                   "3\r\n00:00:07,000 --> 00:00:08,000\r\nNO BLANK LINE BEFORE ME &AMP; YOU\r\n")
    backwards = translate_srt(SRT, reversed_words, "a.srt")
    assert "SOFA. <i>RED</i> THE ON\r\nSLEEPING IS CAT THE" in backwards  # one text, broken in two again


@pytest.mark.parametrize(("document", "message"), [
    ("1\n00:00:01,000 --> 00:00:02,000\nfine\n\ntwo\n00:00:03,000 --> 00:00:04,000\nx\n",
     "a.srt:5: expected a cue number, found 'two'"),
    ("1\n00:00:01,000 -> 00:00:02,000\nx\n", "a.srt:2: expected a timing line such as '00:00:01,000 --> "
     "00:00:02,500', found '00:00:01,000 -> 00:00:02,000'"),
    ("1\n", "a.srt:2: expected a timing line such as '00:00:01,000 --> 00:00:02,500', found the end of the file"),
    ("\n\n", "a.srt:1: no subtitle cues: is this an SRT file?"),
    ("1\n00:00:01,000 --> 00:00:02,000\nan <i>open\ntag\n", "a.srt:3: <i> is never closed"),
])
def test_malformed_srt_is_one_line_naming_file_and_line(document: str, message: str) -> None:
    with pytest.raises(UserError) as raised:
        translate_srt(document, shouted, "a.srt")
    assert str(raised.value) == message


def test_lines_break_at_spaces_outside_tags() -> None:
    assert break_lines("aaa bbb ccc ddd", 2) == ["aaa bbb", "ccc ddd"]
    assert break_lines('<font color="red">a</font> b', 2) == ['<font color="red">a</font>', "b"]
    assert break_lines("one", 3) == ["one"]


# ---------------------------------------------------------------- end to end, on the tiny model


@pytest.fixture(scope="module")
def model_path(tiny_workdir: Path) -> str:
    return str(tiny_workdir / "models/model/best.pt")


def run(args: list[str], input: str | None = None):
    return CliRunner().invoke(main, args, input=input)


def test_cli_translates_an_srt_file_keeping_its_timing(model_path: str, tmp_path: Path) -> None:
    source = tmp_path / "in.srt"
    source.write_text("1\n00:00:01,000 --> 00:00:02,000\nHe read\na book today.\n\n"
                      "2\n00:00:03,000 --> 00:00:04,500\n<i>She bought water yesterday.</i>\n", encoding="utf-8")
    result = run(["translate", "--model", model_path, "--format", "srt", "--input", str(source),
                  "--output", str(tmp_path / "out.srt")])
    assert result.exit_code == 0, result.output
    out = (tmp_path / "out.srt").read_text(encoding="utf-8")
    cues = parse_srt(out, "out.srt")
    assert [c.timing for c in cues] == ["00:00:01,000 --> 00:00:02,000", "00:00:03,000 --> 00:00:04,500"]
    assert len(cues[0].lines) == 2 and HANGUL.search(cues[0].lines[0])
    assert re.fullmatch(r"<i>[^<]*[\uac00-\ud7a3][^<]*</i>\.?", cues[1].lines[0])


def test_cli_translates_html_with_its_tags_balanced(model_path: str) -> None:
    source = "<p>He <b>read</b> a <i>book <u>today</u></i>.<br/>She ate <a href='x'>bread</a>.</p>"
    result = run(["translate", "--model", model_path, "--format", "html"], input=source + "\n")
    assert result.exit_code == 0, result.output
    assert HANGUL.search(result.output)
    assert multiset(tag_tree(result.output)) == multiset(tag_tree(source))
    assert "href='x'" in result.output


def test_cli_translates_markdown_leaving_code_alone(model_path: str) -> None:
    source = "# He read a book\n\n```\nHe read a book\n```\n\n- She ate `bread` **today**.\n"
    result = run(["translate", "--model", model_path, "--format", "md", source])
    assert result.exit_code == 0, result.output
    lines = result.output.split("\n")
    assert lines[0].startswith("# ") and HANGUL.search(lines[0])
    assert lines[2:5] == ["```", "He read a book", "```"]
    assert lines[6].startswith("- ") and "`bread`" in lines[6] and re.search(r"\*\*[^*]+\*\*", lines[6])


@pytest.mark.parametrize(("file_format", "content", "message"), [
    ("srt", "1\n00:00:01,000 --> 00:00:02,000\nok\n\nx\n", "in.txt:5: expected a cue number, found 'x'"),
    ("html", "<b>ok\n\n<i>no</b>", "in.txt:3: </b> closes <i>, opened at line 3: tags must nest"),
])
def test_bad_input_is_one_line_and_writes_nothing(model_path: str, tmp_path: Path, file_format: str, content: str,
                                                  message: str) -> None:
    source, target = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text(content, encoding="utf-8")
    result = run(["translate", "--model", model_path, "--format", file_format, "--input", str(source),
                  "--output", str(target)])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {str(source).removesuffix('in.txt')}{message}"
    assert not target.exists() and list(tmp_path.iterdir()) == [source]


def test_cli_input_and_output_files_for_plain_text(model_path: str, tmp_path: Path) -> None:
    source, target = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text("He read a book today.\n\nShe ate bread.\n", encoding="utf-8")
    result = run(["translate", "--model", model_path, "--input", str(source), "--output", str(target)])
    assert result.exit_code == 0, result.output
    lines = target.read_text(encoding="utf-8").split("\n")
    assert len(lines) == 4 and HANGUL.search(lines[0]) and lines[1] == "" and lines[3] == ""
    for file_format in ("txt", "srt"):
        missing = run(["translate", "--model", model_path, "--format", file_format, "--input", str(tmp_path / "no")])
        assert missing.exit_code == 1 and missing.output == f"error: cannot read {tmp_path / 'no'}: no such file\n"


def test_cli_alignments_are_pharaoh_pairs_after_a_tab(model_path: str) -> None:
    result = run(["translate", "--model", model_path, "--alignments", "He read a book today. She ate bread."])
    assert result.exit_code == 0, result.output
    pairs, text = result.output.rstrip("\n").split("\t")
    parsed = [tuple(map(int, pair.split("-"))) for pair in pairs.split()]
    assert parsed and all(0 <= i < 8 and 0 <= j < len(text.split()) for i, j in parsed)
    assert {j for _, j in parsed} == set(range(len(text.split())))  # every target word has its source word
    assert any(i >= 5 for i, _ in parsed)  # the second sentence's words are counted after the first's
    stdin = run(["translate", "--model", model_path, "--alignments"], input="He read a book today.\n\n")
    assert stdin.exit_code == 0 and stdin.output.split("\n")[1] == "\t"  # an empty line: no words, no pairs
    refused = run(["translate", "--model", model_path, "--alignments", "--format", "srt"])
    assert refused.exit_code == 1 and "--format txt" in refused.output
    as_json = run(["translate", "--model", model_path, "--alignments", "--json",
                   "He read a book today. She ate bread."])
    line = json.loads(as_json.output)
    assert [tuple(pair) for pair in line["alignment"]] == parsed
    assert [len(sentence["alignment"]) for sentence in line["sentences"]] == [
        len(sentence["text"].split()) for sentence in line["sentences"]]


def test_python_api_gives_each_sentence_its_alignment(model_path: str) -> None:
    from seq2seq.translate import Translator

    (translation,) = Translator(model_path, params_path=None).translate_detailed(
        ["He read a book today. She ate bread."], alignments=True)
    first, second = translation.sentences
    assert first.alignment and second.alignment
    assert max(i for i, _ in second.alignment) < 3 <= max(i for i, _ in translation.alignment)
    (plain,) = Translator(model_path, params_path=None).translate_detailed(["He read a book today."])
    assert plain.sentences[0].alignment is None and plain.alignment is None and plain.blocks is None


def test_http_alignments_and_markup(model_path: str) -> None:
    from seq2seq.serve import create_app
    from seq2seq.translate import Translator

    with running_server(create_app(Translator(model_path, beam_size=2), Path(model_path))) as url, \
            httpx.Client(base_url=url, timeout=30) as http:
        answer = http.post("/translate", json={"text": "He read a book today. She ate bread.", "alignments": True})
        assert answer.status_code == 200, answer.text
        (result,) = answer.json()["translations"]
        assert "attention" not in result
        assert [s["source"] for s in result["sentences"]] == ["He read a book today.", "She ate bread."]
        assert all(len(pair) == 2 for s in result["sentences"] for pair in s["alignment"])
        assert max(i for i, _ in result["alignment"]) >= 5
        marked = http.post("/translate", json={"text": ["He <b>read</b> a book.", "She ate `bread`."],
                                               "format": "md"})
        html_text, md_text = (t["text"] for t in marked.json()["translations"])
        assert html_text.count("<b>") == html_text.count("</b>") == 1 and HANGUL.search(html_text)
        assert "`bread`" in md_text
        bad = http.post("/translate", json={"text": "He <b>read", "format": "html"})
        assert bad.status_code == 422 and bad.json() == {"error": "text[0]:1: <b> is never closed", "field": "text"}
        wrong = http.post("/translate", json={"text": "x", "format": "srt"})
        assert wrong.status_code == 422 and wrong.json()["field"] == "format"
