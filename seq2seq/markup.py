"""Text with markup: HTML, Markdown and SubRip (SRT) subtitles, translated with their markup kept.

Each text is parsed into plain text and the markup elements around its character spans (a tree:
`<b>` inside `<i>` stays inside); the plain text is translated with word alignments, and each
element goes back around the target words that its source words align to (`alignment.target_span`),
as Bergamot does (browsermt/bergamot-translator#253). Markup that carries no translatable text (a
`<br/>`, an `<img>`, inline `code`, an image) is an *atom*: kept verbatim at the place that the
alignment gives the word before it. What is never translated (fenced and indented code blocks,
`<pre>`, `<script>`, `<style>`, front matter, link definitions, SRT numbers and timing lines) is
copied as it is.

Decisions (docs/markup.md): a Markdown link's text is translated and its URL kept; inline code and
HTML `<code>` are atoms, left out of the text the model reads (the model cannot translate code,
and copying it through the model would change it). Attribute values (alt, title) are kept, not
translated. A Markdown paragraph of several lines becomes one line. An SRT cue's lines are joined
into one text, translated, and broken again into as many lines (dialogue cues, every line starting
with "-", are translated line by line).

Bad input (an unbalanced HTML tag, a malformed SRT cue) is a `UserError` naming the file and line.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from seq2seq.alignment import Pair, target_span, word_spans
from seq2seq.errors import UserError

FORMATS = ("txt", "html", "md", "srt")
# Plain texts in, (translation, word alignment of text and translation) out, one per text.
Aligner = Callable[[list[str]], list[tuple[str, list[Pair]]]]


@dataclass
class Element:
    """Markup around the plain-text characters [start, end): `opening` before them, `closing` after,
    `children` inside; an atom (start == end) is markup kept whole at one place."""

    opening: str
    closing: str = ""
    start: int = 0
    end: int = 0
    children: list[Element] = field(default_factory=list)
    atom: bool = False
    spaced: tuple[bool, bool] = (False, False)  # an atom: whitespace before it, after it in the source


@dataclass
class Marked:
    """A text to translate: its plain text and the markup elements around spans of it."""

    text: str
    elements: list[Element]


Piece = str | Marked  # a document is verbatim strings and texts to translate, one after the other


class _Builder:
    """Builds a `Marked`: plain text and elements, added in document order."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.root = Element("")
        self.open_elements = [self.root]

    def text(self, text: str) -> None:
        if self.parts and self.parts[-1][-1:].isspace():
            text = text.lstrip()  # the spacing around an atom taken out: one space, as the model reads
        self.parts.append(text)
        self.length += len(text)

    def atom(self, markup: str) -> None:
        self.open_elements[-1].children.append(Element(markup, start=self.length, end=self.length, atom=True))

    def open(self, markup: str) -> None:
        element = Element(markup, start=self.length)
        self.open_elements[-1].children.append(element)
        self.open_elements.append(element)

    def close(self, markup: str) -> None:
        element = self.open_elements.pop()
        element.closing, element.end = markup, self.length

    def depth(self) -> int:
        return len(self.open_elements) - 1

    def empty(self) -> bool:
        return not self.parts and not self.root.children

    def separate(self) -> None:
        """A space in the plain text (after a `<br>`), so the words on either side stay two words."""
        if self.parts and self.parts[-1] and not self.parts[-1][-1].isspace():
            self.text(" ")

    def finish(self) -> Marked:
        """The text; elements still open (their closing tag is in another text) become atoms at their start."""
        while self.depth():
            element = self.open_elements.pop()
            parent = self.open_elements[-1]
            parent.children.remove(element)
            parent.children += [Element(element.opening, start=element.start, end=element.start, atom=True),
                                *element.children]
        text = "".join(self.parts)
        _mark_spacing(self.root, text)
        return Marked(text, self.root.children)


def _mark_spacing(element: Element, text: str) -> None:
    """Note, for each atom, whether whitespace comes before and after it, to keep it so in the translation."""
    for child in element.children:
        if child.atom:
            child.spaced = (child.start > 0 and text[child.start - 1].isspace(),
                            child.start < len(text) and text[child.start].isspace())
        _mark_spacing(child, text)


# ---------------------------------------------------------------- putting the markup back


_PUNCTUATION = ".,!?;:…。、\"'”’)]」』"


def render(marked: Marked, target: str, alignment: Sequence[Pair], escape: Callable[[str], str] = str) -> str:
    """The translation `target` of `marked.text` (aligned to it by `alignment`, word pairs) with
    the markup put back: each element around the target words its source words align to, atoms
    after the target of the word before them. The result always nests as the source did: an
    element's span is widened to hold its children's, then cut to fit its parent and to not
    overlap the siblings before it. `escape` is applied to the translated text (e.g. `&` -> `&amp;`)."""
    root = Element("", start=0, end=len(marked.text), children=marked.elements)
    placer = _Placer(marked.text, target, alignment)
    spans: dict[int, tuple[int, int]] = {}
    placer.widen(root, spans)
    spans[id(root)] = (0, len(target))
    placer.fit(root, spans)
    return _render(root, target, spans, escape)


class _Placer:
    """Where each element goes in the translation."""

    def __init__(self, source: str, target: str, alignment: Sequence[Pair]) -> None:
        self.source, self.target, self.alignment = source, target, alignment
        self.source_words, self.target_words = word_spans(source), word_spans(target)
        self.aligned = {i for i, _ in alignment}

    def widen(self, element: Element, spans: dict[int, tuple[int, int]]) -> tuple[int, int]:
        """The span of `element` and (into `spans`) of its descendants, each holding its children's."""
        if element.atom:
            spans[id(element)] = (point := self.point(element.start), point)
            return spans[id(element)]
        start, end = self.span(element.start, element.end)
        for child in element.children:
            child_start, child_end = self.widen(child, spans)
            if not child.atom:
                start, end = min(start, child_start), max(end, child_end)
        spans[id(element)] = (start, end)
        return start, end

    def fit(self, element: Element, spans: dict[int, tuple[int, int]]) -> None:
        """Cut the children's spans to fit `element`'s and not overlap each other (in target order)."""
        low, high = spans[id(element)]
        cursor = low
        for child in sorted(element.children, key=lambda child: spans[id(child)]):
            start, end = spans[id(child)]
            start = min(max(start, cursor), high)
            end = min(max(end, start), high)
            while start < end and self.target[start].isspace():  # a cut span keeps no spacing at its ends
                start += 1
            while end > start and self.target[end - 1].isspace():
                end -= 1
            spans[id(child)] = (start, end)
            cursor = end
            self.fit(child, spans)

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The target span of the source characters [start, end)."""
        if start == end:
            return (point := self.point(start), point)
        covered = [i for i, (word_start, word_end) in enumerate(self.source_words)
                   if word_start < end and start < word_end]
        if not covered or not self.target_words:
            return (point := self.point(start), point)
        if len(covered) == len(self.source_words):
            return self.target_words[0][0], self.target_words[-1][1]
        found = target_span((start, end), self.source, self.target, self.alignment)
        return self.trimmed(found or self.proportional_span(start, end), self.source[start:end])

    def trimmed(self, span: tuple[int, int], source_text: str) -> tuple[int, int]:
        """`span` without the punctuation at its ends that the source text has not at its ends."""
        start, end = span
        stripped = source_text.strip()
        while end > start and self.target[end - 1] in _PUNCTUATION and not stripped.endswith(self.target[end - 1]):
            end -= 1
        while start < end and self.target[start] in _PUNCTUATION and not stripped.startswith(self.target[start]):
            start += 1
        return start, end

    def point(self, position: int) -> int:
        """Where markup at source character `position` goes: before everything when no word comes
        before it, after everything when none comes after; else after the target of the word before it."""
        before = [i for i, (word_start, _) in enumerate(self.source_words) if word_start < position]
        if not before or not self.target_words:
            return 0
        if before[-1] == len(self.source_words) - 1 and self.source_words[-1][1] <= position:
            return len(self.target)
        for word in reversed(before):
            found = target_span(self.source_words[word], self.source, self.target, self.alignment)
            if found is not None:
                return self.sentence_end(found[1]) if self.ends_sentence(word) else found[1]
        return self.proportional(position)

    def ends_sentence(self, word: int) -> bool:
        start, end = self.source_words[word]
        return self.source[start:end].rstrip("\"')]”’").endswith((".", "!", "?", "…"))

    def sentence_end(self, position: int) -> int:
        """The end of the first target word ending a sentence at or after `position` (markup after
        a sentence goes after its translation, wherever the sentence's last word went)."""
        ends = [end for start, end in self.target_words
                if end >= position and self.target[start:end].rstrip("\"')]”’").endswith((".", "!", "?", "…"))]
        return ends[0] if ends else position

    def proportional_span(self, start: int, end: int) -> tuple[int, int]:
        """The target words at the same fraction of the text as source characters [start, end) (at
        least the one nearest its middle): where an element whose words align to nothing goes."""
        scale = len(self.target) / max(len(self.source), 1)
        low, high = start * scale, end * scale
        inside = [word for word in self.target_words if low <= (word[0] + word[1]) / 2 <= high]
        if not inside:
            inside = [min(self.target_words, key=lambda word: abs(word[0] + word[1] - low - high))]
        return inside[0][0], inside[-1][1]

    def proportional(self, position: int) -> int:
        """The target word boundary nearest the same fraction of the text as source `position`."""
        wanted = position / max(len(self.source), 1) * len(self.target)
        boundaries = [0, *(edge for span in self.target_words for edge in span), len(self.target)]
        return min(boundaries, key=lambda boundary: abs(boundary - wanted))


def _render(element: Element, target: str, spans: dict[int, tuple[int, int]], escape: Callable[[str], str]) -> str:
    start, end = spans[id(element)]
    if element.atom:  # with the whitespace it had around it, where the translation has none
        space_before = element.spaced[0] and start > 0 and not target[start - 1].isspace()
        space_after = element.spaced[1] and start < len(target) and not target[start].isspace()
        return " " * space_before + element.opening + " " * space_after
    parts, cursor = [element.opening], start
    for child in sorted(element.children, key=lambda child: spans[id(child)]):
        child_start, child_end = spans[id(child)]
        parts += [escape(target[cursor:child_start]), _render(child, target, spans, escape)]
        cursor = child_end
    return "".join([*parts, escape(target[cursor:end]), element.closing])


def translate_pieces(pieces: Sequence[Piece], aligner: Aligner, escape: Callable[[str], str] = str) -> list[str]:
    """Each piece of a document translated: the texts (`Marked`) all at once, with their markup put
    back; a verbatim piece, or a text without words, as it was."""
    texts = [piece for piece in pieces if isinstance(piece, Marked) and piece.text.strip()]
    translated = dict(zip(map(id, texts), aligner([text.text for text in texts]), strict=True))
    results = []
    for piece in pieces:
        if isinstance(piece, str):
            results.append(piece)
        elif id(piece) in translated:
            results.append(render(piece, *translated[id(piece)], escape))
        else:
            results.append(render_unchanged(piece, escape))
    return results


def render_unchanged(marked: Marked, escape: Callable[[str], str] = str) -> str:
    """`marked` as it was (its text escaped): for a text without words, which is not translated."""
    root = Element("", start=0, end=len(marked.text), children=marked.elements)
    spans: dict[int, tuple[int, int]] = {}

    def own(element: Element) -> None:
        spans[id(element)] = (element.start, element.end)
        for child in element.children:
            own(child)

    own(root)
    return _render(root, marked.text, spans, escape)


def _line_of(text: str, offset: int, first_line: int = 1) -> int:
    return text.count("\n", 0, offset) + first_line


# ---------------------------------------------------------------- HTML

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track",
         "wbr"}
_BLOCK = {"address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "dialog", "div", "dl",
          "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "head",
          "header", "hr", "html", "legend", "li", "main", "nav", "ol", "option", "p", "section", "select",
          "summary", "table", "tbody", "td", "tfoot", "th", "thead", "title", "tr", "ul"}
_RAW = {"script", "style", "pre", "code", "textarea", "kbd", "samp", "svg", "math"}  # content never translated
_OPTIONAL_END = {"p", "li", "dt", "dd", "tr", "td", "th", "option", "thead", "tbody", "tfoot", "html", "head", "body"}
_TAG = re.compile(r"<!--.*?-->|<![^>]*>|<\?.*?>|</?([A-Za-z][\w:.-]*)(?:\"[^\"]*\"|'[^']*'|[^'\">])*>", re.S)
_SUBTITLE_CODE = re.compile(r"\{\\[^}]*\}")  # an SSA override such as {\an8} inside an SRT cue
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n\s*")


def escape_html(text: str) -> str:
    return html.escape(text, quote=False)


def parse_html(document: str, source_name: str, first_line: int = 1, subtitles: bool = False) -> list[Piece]:
    """An HTML document or fragment as verbatim pieces and texts to translate. Block tags
    (`<p>`, `<li>`, ...) and blank lines end a text; inline tags (`<b>`, `<a href>`, ...) are its
    elements. Entities are decoded in the text the model reads (the translation is escaped
    again). `subtitles`: SRT cue text, where entities are literal and `{\\an8}` codes are atoms.
    A `UserError` naming `source_name` and the line for a tag closed out of order or never closed
    (except those HTML lets go unclosed, such as `<p>` and `<li>`)."""
    pieces: list[Piece] = []
    builder = _Builder()
    open_tags: list[tuple[str, int, int]] = []  # (name, line, depth in the builder when opened)
    position = 0

    def where(offset: int) -> str:
        return f"{source_name}:{_line_of(document, offset, first_line)}"

    def add_text(text: str) -> None:
        if builder.empty() and not (text if subtitles else html.unescape(text)).strip():
            if text:
                pieces.append(text)  # spacing between blocks, as it was
            return
        chunks = _BLANK_LINE.split(text)
        gaps = _BLANK_LINE.findall(text)
        for index, chunk in enumerate(chunks):
            _add_plain(builder, chunk, subtitles)
            if index < len(gaps):
                flush(gaps[index])

    def flush(verbatim: str = "") -> None:
        nonlocal builder
        if not builder.empty():
            pieces.append(builder.finish())
            builder = _Builder()
            for index, (name, line, _) in enumerate(open_tags):
                open_tags[index] = (name, line, 0)
        if verbatim:
            pieces.append(verbatim)

    for match in _TAG.finditer(document):
        if match.start() < position:
            continue  # inside a raw element already copied
        add_text(document[position:match.start()])
        tag, name = match.group(0), (match.group(1) or "").lower()
        position = match.end()
        closing = tag.startswith("</")
        if not name:  # comment, doctype, processing instruction
            (builder.atom if builder.depth() else flush)(tag)
            continue
        if name in _RAW and not closing and not tag.endswith("/>"):
            end = re.compile(rf"</{name}\s*>", re.I).search(document, position)
            if end is None:
                raise UserError(f"{where(match.start())}: <{name}> is never closed")
            raw, position = document[match.start():end.end()], end.end()
            (flush if name in _BLOCK | {"pre", "script", "style"} else builder.atom)(raw)
            continue
        if closing:
            _close_html(name, tag, match.start(), open_tags, builder, where, flush)
        elif name in _VOID or tag.endswith("/>"):
            (flush if name in _BLOCK else builder.atom)(tag)
            if name == "br":
                builder.separate()
        elif name in _BLOCK:
            flush(tag)
            open_tags.append((name, _line_of(document, match.start(), first_line), 0))
        else:
            builder.open(tag)
            open_tags.append((name, _line_of(document, match.start(), first_line), builder.depth()))
    add_text(document[position:])
    unclosed = [(name, line) for name, line, _ in open_tags if name not in _OPTIONAL_END]
    if unclosed:
        name, line = unclosed[-1]
        raise UserError(f"{source_name}:{line}: <{name}> is never closed")
    flush()
    return pieces


def _close_html(name: str, tag: str, offset: int, open_tags: list[tuple[str, int, int]], builder: _Builder,
                where: Callable[[int], str], flush: Callable[[str], None]) -> None:
    """Close the open tag `name` (the ones HTML lets go unclosed are closed on the way)."""
    while open_tags and open_tags[-1][0] != name and open_tags[-1][0] in _OPTIONAL_END:
        open_tags.pop()
    if not open_tags:
        raise UserError(f"{where(offset)}: </{name}> closes no open tag")
    if open_tags[-1][0] != name:
        other, line, _ = open_tags[-1]
        raise UserError(f"{where(offset)}: </{name}> closes <{other}>, opened at line {line}: tags must nest")
    _, _, depth = open_tags.pop()
    if name in _BLOCK:
        flush(tag)
    elif depth and depth == builder.depth():
        builder.close(tag)
    else:  # opened in an earlier text: this one only holds its end
        builder.atom(tag)


def _add_plain(builder: _Builder, text: str, subtitles: bool) -> None:
    """Text between tags: entities decoded (in HTML), SSA codes as atoms (in subtitles)."""
    if not subtitles:
        builder.text(html.unescape(text))
        return
    position = 0
    for match in _SUBTITLE_CODE.finditer(text):
        builder.text(text[position:match.start()])
        builder.atom(match.group(0))
        position = match.end()
    builder.text(text[position:])


def translate_html(document: str, aligner: Aligner, source_name: str = "<text>") -> str:
    """An HTML document or fragment translated, its tags kept (`parse_html`)."""
    return "".join(translate_pieces(parse_html(document, source_name), aligner, escape_html))


# ---------------------------------------------------------------- Markdown

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^( {0,3}#{1,6}[ \t]+)(.*?)([ \t]+#+[ \t]*)?$")
_ITEM = re.compile(r"^([ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+(?:\[[ xX]\][ \t]+)?)(.*)$")
_QUOTE = re.compile(r"^((?:[ \t]*>[ \t]?)+)(.*)$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$|^ {0,3}=+[ \t]*$")
_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s")
_TABLE_ROW = re.compile(r"^[ \t]*\|")
_TABLE_RULE = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_MD_INLINE = re.compile(
    r"(?P<escape>\\[!-/:-@\[-`{-~])"
    r"|(?P<code>(?P<ticks>`+)(?:.+?)(?<!`)(?P=ticks)(?!`))"
    r"|(?P<image>!\[[^\]]*\]\([^)]*\))"
    r"|(?P<autolink><(?:https?|ftp|mailto):[^>\s]*>)"
    r"|(?P<html><!--.*?-->|</?[A-Za-z][^>]*>)"
    r"|(?P<link_end>\]\([^)]*\)|\]\[[^\]]*\])"
    r"|(?P<link_start>\[)"
    r"|(?P<emphasis>\*{1,3}|_{1,3}|~~)",
    re.S,
)
def parse_markdown(document: str) -> list[Piece]:
    """A Markdown document as verbatim pieces and texts to translate: headings, list items, block
    quotes, table cells and paragraphs are texts (a paragraph's lines joined into one); code
    blocks, front matter, rules, link definitions and blank lines are verbatim."""
    lines = document.splitlines(keepends=True)
    pieces: list[Piece] = []
    paragraph: list[str] = []  # the lines of the paragraph being read
    prefix = ""  # of the paragraph being read: a list marker, a quote's ">"
    index = 0

    def flush() -> None:
        nonlocal paragraph, prefix
        if paragraph:
            pieces.extend([prefix, parse_markdown_inline(" ".join(line.strip() for line in paragraph)), "\n"])
        paragraph, prefix = [], ""

    if lines and lines[0].rstrip() == "---":  # YAML front matter
        end = next((i for i in range(1, len(lines)) if lines[i].rstrip() in ("---", "...")), None)
        if end is not None:
            pieces.append("".join(lines[: end + 1]))
            index = end + 1
    previous_blank = True
    while index < len(lines):
        line = lines[index]
        body = line.rstrip("\r\n")
        fence = _FENCE.match(body)
        if fence:
            flush()
            marker = fence.group(1)
            end = next((i for i in range(index + 1, len(lines)) if lines[i].strip().startswith(marker[0] * len(marker))
                        and not lines[i].strip().strip(marker[0])), len(lines) - 1)
            pieces.append("".join(lines[index: end + 1]))
            index, previous_blank = end + 1, False
            continue
        index += 1
        if not body.strip():
            flush()
            pieces.append(line)
            previous_blank = True
            continue
        indented_code = body.startswith(("    ", "\t")) and previous_blank and not _ITEM.match(body)
        was_blank, previous_blank = previous_blank, False
        if indented_code and not prefix and not paragraph and was_blank:
            pieces.append(line)
            previous_blank = True  # a code block goes on until a line that is not indented
            continue
        if _RULE.match(body) or _DEFINITION.match(body):
            flush()
            pieces.append(line)
            continue
        if _TABLE_ROW.match(body):
            flush()
            pieces += [line] if _TABLE_RULE.match(body) else _table_row(body, line[len(body):])
            continue
        heading, item, quote = _HEADING.match(body), _ITEM.match(body), _QUOTE.match(body)
        if heading:
            flush()
            pieces += [heading.group(1), parse_markdown_inline(heading.group(2)), (heading.group(3) or "") + "\n"]
        elif quote and not (paragraph and prefix == quote.group(1)):
            flush()
            prefix, paragraph = quote.group(1), [quote.group(2)]
        elif quote:
            paragraph.append(quote.group(2))
        elif item:
            flush()
            prefix, paragraph = item.group(1), [item.group(2)]
        else:
            paragraph.append(body)  # a paragraph's line, or a lazy continuation of an item or a quote
    flush()
    return pieces


def _table_row(body: str, line_end: str) -> list[Piece]:
    """A table row's cells as texts, the pipes and spacing verbatim."""
    pieces: list[Piece] = []
    for part in re.split(r"((?<!\\)\|)", body):
        stripped = part.strip()
        if part == "|" or not stripped:
            pieces.append(part)
        else:
            lead = part[: len(part) - len(part.lstrip())]
            trail = part[len(part.rstrip()):]
            pieces += [lead, parse_markdown_inline(stripped), trail]
    return [*pieces, line_end or "\n"]


def parse_markdown_inline(text: str) -> Marked:
    """Inline Markdown: emphasis (`*`, `_`, `**`, `~~`), links (`[text](url)`: the text is
    translated, the URL kept) and inline HTML tags are elements; code spans, images and autolinks
    are atoms; backslash escapes are read as the character. A delimiter without a partner is text."""
    tokens = [(match.lastgroup, match.group(0), match.start()) for match in _MD_INLINE.finditer(text)]
    partner = _pair_markdown(tokens, text)
    builder, position = _Builder(), 0
    for index, (kind, token, start) in enumerate(tokens):
        builder.text(text[position:start])
        position = start + len(token)
        if kind == "escape":
            builder.text(token[1])
        elif kind in ("code", "image", "autolink") or (kind == "html" and index not in partner):
            builder.atom(token)
        elif index not in partner:
            builder.text(token)
        elif partner[index] > index:
            builder.open(token)
        else:
            builder.close(token)
    builder.text(text[position:])
    return builder.finish()


def _pair_markdown(tokens: list[tuple[str | None, str, int]], text: str) -> dict[int, int]:
    """Which opening token each closing one ends (both ways); unpaired tokens are left out. One
    stack for every kind, so the pairs always nest."""
    partner: dict[int, int] = {}
    stack: list[int] = []
    for index, (kind, token, start) in enumerate(tokens):
        before = text[start - 1] if start else " "
        after = text[start + len(token)] if start + len(token) < len(text) else " "
        closes = opens = False
        if kind == "link_end":
            closes = True
        elif kind == "link_start":
            opens = True
        elif kind == "emphasis":
            underscore = token[0] == "_"  # never inside a word, as in snake_case
            closes = not before.isspace() and not (underscore and after.isalnum())
            opens = not after.isspace() and not (underscore and before.isalnum())
        elif kind == "html" and not token.startswith("<!--") and not token.endswith("/>"):
            name = re.match(r"</?([A-Za-z][\w-]*)", token).group(1).lower()
            closes, opens = token.startswith("</"), not token.startswith("</") and name not in _VOID
        if closes:
            match = next((depth for depth in range(len(stack) - 1, -1, -1)
                          if _closes(tokens[stack[depth]][:2], (kind, token))), None)
            if match is not None:
                opener = stack[match]
                partner[opener], partner[index] = index, opener
                del stack[match:]
                continue
        if opens:
            stack.append(index)
    return partner


def _closes(opening: tuple[str | None, str], closing: tuple[str | None, str]) -> bool:
    (open_kind, open_token), (close_kind, close_token) = opening, closing
    if close_kind == "link_end":
        return open_kind == "link_start"
    if close_kind == "html":
        return open_kind == "html" and open_token[1:].split(None, 1)[0].rstrip(">").lower() == close_token[2:-1].lower()
    return open_kind == close_kind and open_token == close_token


def translate_markdown(document: str, aligner: Aligner, source_name: str = "<text>") -> str:
    """A Markdown document translated, its markup kept (`parse_markdown`; Markdown has no malformed
    input, so `source_name` names nothing)."""
    return "".join(translate_pieces(parse_markdown(document), aligner))


# ---------------------------------------------------------------- SubRip subtitles

_TIMING = re.compile(r"^\s*\d{1,2}:\d{2}:\d{2}[,.]\d{1,3}\s*-->\s*\d{1,2}:\d{2}:\d{2}[,.]\d{1,3}(?:\s.*)?$")


@dataclass
class Cue:
    """One subtitle: its number and timing lines exactly as read, its text lines, and the line
    number of its text's first line."""

    number: str
    timing: str
    lines: list[str]
    first_text_line: int


def parse_srt(document: str, source_name: str) -> list[Cue]:
    """The cues of an SRT file (a byte order mark, CRLF line ends and missing blank lines between
    cues are read). A `UserError` naming `source_name` and the line where a cue number or a timing
    line should be and is not, or when there is no cue at all."""
    lines = document.lstrip("\ufeff").splitlines()
    cues: list[Cue] = []
    index = 0
    while index < len(lines):
        if not lines[index].strip():
            index += 1
            continue
        number = lines[index]
        if not number.strip().isdigit():
            raise UserError(f"{source_name}:{index + 1}: expected a cue number, found {number.strip()[:40]!r}")
        if index + 1 >= len(lines) or not _TIMING.match(lines[index + 1]):
            found = repr(lines[index + 1].strip()[:40]) if index + 1 < len(lines) else "the end of the file"
            raise UserError(f"{source_name}:{index + 2}: expected a timing line such as "
                            f"'00:00:01,000 --> 00:00:02,500', found {found}")
        start = index + 2
        end = start
        while end < len(lines) and lines[end].strip() and not _next_cue_starts(lines, end):
            end += 1
        cues.append(Cue(number, lines[index + 1], lines[start:end], start + 1))
        index = end
    if not cues:
        raise UserError(f"{source_name}:1: no subtitle cues: is this an SRT file?")
    return cues


def _next_cue_starts(lines: list[str], index: int) -> bool:
    """A number line followed by a timing line (a cue that came without a blank line before it)."""
    return lines[index].strip().isdigit() and index + 1 < len(lines) and bool(_TIMING.match(lines[index + 1]))


def _is_dialogue(lines: list[str]) -> bool:
    return len(lines) > 1 and all(line.lstrip().startswith("-") for line in lines)


def srt_pieces(cues: list[Cue], source_name: str) -> list[list[Piece]]:
    """Each cue's text as pieces to translate: its lines joined into one text, or, in a dialogue
    cue (every line starting with "-"), one text a line. Tags (`<i>`) must balance within the
    cue (`parse_html`, naming the line)."""
    texts = []
    for cue in cues:
        if _is_dialogue(cue.lines):
            pieces: list[Piece] = []
            for number, line in enumerate(cue.lines):
                dash = re.match(r"\s*-\s*", line).group(0)
                pieces += [("\n" if number else "") + dash.strip() + " ",
                           *parse_html(line[len(dash):], source_name, cue.first_text_line + number, subtitles=True)]
            texts.append(pieces)
        else:
            joined = " ".join(line.strip() for line in cue.lines)
            texts.append(parse_html(joined, source_name, cue.first_text_line, subtitles=True))
    return texts


def break_lines(text: str, count: int) -> list[str]:
    """`text` broken at spaces (never inside a tag) into at most `count` lines of about equal length."""
    if count <= 1:
        return [text]
    in_tags = {i for tag in re.finditer(r"<[^>]*>", text) for i in range(tag.start(), tag.end())}
    visible, spaces, seen = [], [], 0  # characters outside tags before each position; spaces outside tags
    for index, char in enumerate(text):
        visible.append(seen)
        if index not in in_tags:
            seen += 1
            if char == " ":
                spaces.append(index)
    lines, start = [], 0
    for number in range(1, count):
        done = visible[start] if start < len(text) else seen
        wanted = done + (seen - done) / (count - number + 1)
        candidates = [space for space in spaces if space > start]
        if not candidates:
            break
        cut = min(candidates, key=lambda space: abs(visible[space] - wanted))
        lines.append(text[start:cut])
        start = cut + 1
    return [*lines, text[start:]]


def translate_srt(document: str, aligner: Aligner, source_name: str = "<text>") -> str:
    """An SRT file translated: numbers and timing lines exactly as they were, each cue's text
    translated (`srt_pieces`) and broken into as many lines as it had (at most)."""
    cues = parse_srt(document, source_name)
    texts = srt_pieces(cues, source_name)
    flat = [piece for pieces in texts for piece in pieces]
    translated = iter(translate_pieces(flat, aligner))
    newline = "\r\n" if "\r\n" in document else "\n"
    blocks = []
    for cue, pieces in zip(cues, texts, strict=True):
        text = "".join(next(translated) for _ in pieces)
        if not cue.lines:
            lines = []
        else:
            lines = text.split("\n") if _is_dialogue(cue.lines) else break_lines(text, len(cue.lines))
        blocks.append(newline.join([cue.number, cue.timing, *lines]))
    bom = "\ufeff" if document.startswith("\ufeff") else ""
    return bom + (newline * 2).join(blocks) + newline


# ---------------------------------------------------------------- files


def translate_document(document: str, file_format: str, aligner: Aligner, source_name: str = "<text>") -> str:
    """A whole document of `file_format` (html, md or srt) translated with its markup kept."""
    translators = {"html": translate_html, "md": translate_markdown, "srt": translate_srt}
    if file_format not in translators:
        raise UserError(f"unknown format {file_format!r}; one of {', '.join(translators)}")
    return translators[file_format](document, aligner, source_name)


def translator_aligner(translator) -> Aligner:
    """An `Aligner` from a `seq2seq.translate.Translator`: its translations and the word alignment of
    each whole text (`Translation.alignment`), each source word to the target word it had the most
    attention from ("source" method: the best at placing tags, docs/markup.md)."""

    def align(texts: list[str]) -> list[tuple[str, list[Pair]]]:
        if not texts:
            return []
        return [(translation.text, translation.alignment or [])
                for translation in translator.translate_detailed(texts, alignments=True, alignment_method="source")]

    return align


def read_document(path: Path | None, stdin: BinaryIO) -> tuple[str, str]:
    """A whole input document and the name errors give it: the file at `path`, else `stdin`
    (`<stdin>`). A `UserError` when it cannot be read or is not UTF-8 (naming the line)."""
    name = str(path) if path else "<stdin>"
    try:
        data = path.read_bytes() if path else stdin.read()
    except OSError as error:
        raise UserError(f"cannot read {name}: {error.strerror or type(error).__name__}") from None
    try:
        return data.decode("utf-8"), name
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise UserError(f"{name}:{line}: not valid UTF-8 text") from None
