"""Kept terms: a do-not-translate list and a glossary (English term -> fixed Korean).

The model is not trained to keep terms, so each protected span of the English is replaced by a
placeholder, `[1]`, `[2]`, ..., that the model copies into its output (the form it copies most
often exactly once, measured in docs/terms.md), and the output's placeholders are then replaced:
a do-not-translate term by the English as the source spells it, a glossary term by its Korean.

Matching: a term with a capital letter matches only as written; an all-lowercase term matches in
any case ("machine learning" also matches "Machine Learning"). A term matches whole words only
(not "Python" in "Pythonic"), a space in it matches any run of whitespace, and at each place the
longest term wins; terms that overlap are taken left to right ("New York" in "New York
University" when both "New York" and "York University" are listed).

What the model does with a placeholder: copied once, it is replaced; dropped, the term is put
before the output word that the attention aligns to the placeholder's source word (`place_dropped`,
on `seq2seq.alignment`); copied more than once, the first copy is replaced and the others are
removed with what is glued to them (a particle such as 는). Korean particles right after a glossary
term are made to agree with its last syllable (은/는, 이/가, 을/를, 과/와, 으로/로).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from seq2seq.alignment import block_alignments, target_span
from seq2seq.errors import UserError
from seq2seq.prepare import normalize
from seq2seq.translate import Paragraph, Translation, Translator

_PLACEHOLDER = re.compile(r"\[(\d+)\]")


def placeholder(number: int) -> str:
    """The placeholder of the `number`-th protected span of a text."""
    return f"[{number}]"


@dataclass(frozen=True)
class KeptTerms:
    """English terms to keep as they are (`keep`) and English terms with a fixed Korean (`glossary`)."""

    glossary: dict[str, str] = field(default_factory=dict)
    keep: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for term in [*self.glossary, *self.glossary.values(), *self.keep]:
            if not isinstance(term, str) or not term.strip() or "\n" in term or "\t" in term:
                raise UserError(f"a kept term must be text on one line without tabs, not {term!r}")
        both = sorted(set(self.glossary) & set(self.keep))
        if both:
            raise UserError(f"{both[0]!r} is both in the glossary and in the do-not-translate list: keep one")

    def __bool__(self) -> bool:
        return bool(self.glossary or self.keep)

    def extended(self, glossary: dict[str, str] | None = None, keep: Iterable[str] = ()) -> KeptTerms:
        """These terms with more (a request's own, say): a term given again takes its new meaning,
        so a glossary entry replaces a kept term of the same English and the other way round."""
        glossary, keep = dict(glossary or {}), tuple(keep)
        merged = {term: korean for term, korean in self.glossary.items() if term not in keep}
        merged.update(glossary)
        kept = tuple(dict.fromkeys(term for term in (*self.keep, *keep) if term not in glossary))
        return KeptTerms(merged, kept)

    @cached_property
    def pattern(self) -> re.Pattern[str] | None:
        """One regular expression matching every term (longest first, whole words), or None without terms."""
        terms = sorted({*self.glossary, *self.keep}, key=lambda term: (-len(term), term))
        return re.compile("|".join(_term_regex(term) for term in terms)) if terms else None

    def replacement(self, found: str) -> str:
        """What a span of the source that `pattern` matched is replaced by in the output: a glossary
        term's Korean, or a do-not-translate term as the source spells it."""
        words = " ".join(found.split())
        exact, case_blind = self._glossary_lookup
        return exact.get(words) or case_blind.get(words.lower()) or found

    @cached_property
    def _glossary_lookup(self) -> tuple[dict[str, str], dict[str, str]]:
        """The glossary by its terms as written, and its all-lowercase terms (those matching in any case)."""
        exact = {" ".join(term.split()): korean for term, korean in self.glossary.items()}
        return exact, {term: korean for term, korean in exact.items() if term == term.lower()}


NO_TERMS = KeptTerms()


def _term_regex(term: str) -> str:
    """Whole words of `term`, a space matching any whitespace; case-blind when it is all lowercase."""
    words = term.split()
    body = r"\s+".join(re.escape(word) for word in words)
    if term == term.lower():
        body = f"(?i:{body})"
    before = r"(?<!\w)" if re.match(r"\w", words[0][0]) else ""
    after = r"(?!\w)" if re.match(r"\w", words[-1][-1]) else ""
    return f"{before}{body}{after}"


def _read_lines(path: str | Path) -> Iterable[tuple[int, str]]:
    """(line number, line) of the lines of `path` that are neither blank nor `#` comments."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: not found") from None
    except OSError as error:
        raise UserError(f"{path}: cannot be read ({error.strerror})") from None
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8").removesuffix("\r").removeprefix("\ufeff")
        except UnicodeDecodeError:
            raise UserError(f"{path}:{number}: not valid UTF-8") from None
        if line.strip() and not line.lstrip().startswith("#"):
            yield number, line


def read_glossary(path: str | Path) -> dict[str, str]:
    """A glossary file: `english<TAB>korean` a line, `#` comments and blank lines allowed. A bad line
    is a `UserError` naming the file and line."""
    glossary: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, line in _read_lines(path):
        parts = line.split("\t")
        if len(parts) != 2:
            found = "no tab" if len(parts) == 1 else f"{len(parts) - 1} tabs"
            raise UserError(f"{path}:{number}: expected english<TAB>korean, found {found}")
        english, korean = (" ".join(part.split()) for part in parts)
        if not english or not korean:
            side = "English" if not english else "Korean"
            raise UserError(f"{path}:{number}: the {side} side is empty")
        if english in glossary and glossary[english] != korean:
            raise UserError(f"{path}:{number}: {english!r} is already given as {glossary[english]!r} on line "
                            f"{first_line[english]}")
        glossary[english] = korean
        first_line.setdefault(english, number)
    return glossary


def read_keep_list(path: str | Path) -> list[str]:
    """A do-not-translate file: one term a line, `#` comments and blank lines allowed."""
    terms = []
    for number, line in _read_lines(path):
        if "\t" in line:
            raise UserError(f"{path}:{number}: a tab: the do-not-translate list has one term a line "
                            "(english<TAB>korean lines belong in a glossary, --glossary)")
        terms.append(" ".join(line.split()))
    return list(dict.fromkeys(terms))


def glossary_entry(text: str) -> tuple[str, str]:
    """A glossary entry given as `ENGLISH=KOREAN` (on the command line)."""
    english, equals, korean = text.partition("=")
    if not equals or not english.strip() or not korean.strip():
        raise UserError(f"--glossary-term {text!r}: expected ENGLISH=KOREAN, e.g. 'New York=뉴욕'")
    return " ".join(english.split()), " ".join(korean.split())


def load_terms(glossary_path: str | Path | None = None, keep_path: str | Path | None = None,
               glossary: dict[str, str] | None = None, keep: Iterable[str] = ()) -> KeptTerms:
    """The terms of a glossary file and a do-not-translate file (either may be None), extended by
    `glossary` and `keep` given directly."""
    from_files = KeptTerms(read_glossary(glossary_path) if glossary_path else {},
                           tuple(read_keep_list(keep_path)) if keep_path else ())
    return from_files.extended(glossary, keep)


@dataclass(frozen=True)
class Protected:
    """One protected span of a text: its placeholder, the source's own spelling, what replaces it."""

    placeholder: str
    source: str
    replacement: str


@dataclass(frozen=True)
class Masked:
    """A text with its protected spans replaced by placeholders."""

    original: str
    text: str
    spans: tuple[Protected, ...]


def mask(text: str, terms: KeptTerms) -> Masked:
    """`text` with each term found replaced by a placeholder of its own, numbered from 1 in order;
    a number whose placeholder the text already holds (a citation `[1]`, say) is skipped."""
    pattern = terms.pattern
    if pattern is None:
        return Masked(text, text, ())
    taken = {int(number) for number in _PLACEHOLDER.findall(text)}
    numbers = (number for number in range(1, len(text) + len(taken) + 2) if number not in taken)
    spans: list[Protected] = []

    def substitute(match: re.Match[str]) -> str:
        spans.append(Protected(placeholder(next(numbers)), match.group(), terms.replacement(match.group())))
        return spans[-1].placeholder

    return Masked(text, pattern.sub(substitute, text), tuple(spans))


@dataclass
class Outcome:
    """What the model did with the placeholders of one or more texts."""

    copied: int = 0  # exactly once
    dropped: int = 0  # absent: placed by the attention
    duplicated: int = 0  # more than once: the extra copies removed

    def add(self, other: Outcome) -> None:
        self.copied += other.copied
        self.dropped += other.dropped
        self.duplicated += other.duplicated


@dataclass
class TermTranslation:
    """A text's translation with its terms put back, and what the model did with the placeholders."""

    text: str
    masked: Masked
    masked_translation: str
    outcome: Outcome


# Korean particles that take one form after a final consonant and another after a vowel.
_PARTICLES = {"은": ("은", "는"), "는": ("은", "는"), "이": ("이", "가"), "가": ("이", "가"), "을": ("을", "를"),
              "를": ("을", "를"), "과": ("과", "와"), "와": ("과", "와"), "으로": ("으로", "로"), "로": ("으로", "로")}
_HANGUL_RUN = re.compile(r"[\uac00-\ud7a3]+")


def agreeing_particle(word: str, particle: str) -> str:
    """`particle` in the form that follows `word` (은 or 는, 이 or 가, ...); unchanged when `word` does
    not end in a Hangul syllable or `particle` is not one of these."""
    if particle not in _PARTICLES or not word or not "\uac00" <= word[-1] <= "\ud7a3":
        return particle
    final_consonant = (ord(word[-1]) - 0xAC00) % 28
    after_consonant, after_vowel = _PARTICLES[particle]
    if after_consonant == "으로" and final_consonant == 8:  # ㄹ takes 로, as a vowel does
        return after_vowel
    return after_consonant if final_consonant else after_vowel


def place_dropped(source: str, output: str, position: int, alignment: Sequence[tuple[int, int]]) -> int:
    """Where in `output` a term goes whose placeholder the model dropped: before the first output word
    aligned to the source word at character `position` of `source` (the normalised sentence), or at
    the end of `output` when nothing is aligned to it."""
    span = target_span((position, position + 1), source, output, alignment)
    return len(output) if span is None else span[0]


def restore_sentence(source: str, output: str, own: Sequence[Protected], others: Sequence[str],
                     alignment: Sequence[tuple[int, int]]) -> tuple[str, Outcome]:
    """One sentence's output with its placeholders replaced. `source` is the masked sentence,
    normalised (what the model read); `own` the spans whose placeholders it holds; `others` the
    placeholders of the text's other sentences (a copy of one here is removed); `alignment` the
    (source word, output word) pairs of this sentence, for placing a dropped placeholder."""
    outcome = Outcome()
    counts = [output.count(span.placeholder) for span in own]
    # Dropped ones first, at positions in the output the alignment's word numbers refer to.
    places = [(place_dropped(source, output, source.index(span.placeholder), alignment), span)
              for span, count in zip(own, counts, strict=True) if not count]
    for position, span in sorted(places, key=lambda place: place[0], reverse=True):
        before, after = output[:position], output[position:]
        if before and not before.endswith(" "):
            before += " "
        output = before + span.placeholder + (" " + after if after else "")
    for stray in others:
        output = _remove_copies(output, stray, keep_first=False)
    for span, count in zip(own, counts, strict=True):
        outcome.copied += count == 1
        outcome.duplicated += count > 1
        outcome.dropped += count == 0
        output = _remove_copies(output, span.placeholder, keep_first=True)
    output = _remove_fragments(output, source, [*(span.placeholder for span in own), *others])
    for span in own:
        output = _replace(output, span)
    return output, outcome


_CLOSING = tuple(".,!?;:)]}'\"")


def _remove_copies(output: str, text: str, keep_first: bool) -> str:
    """`output` without the copies of placeholder `text` (all, or all but the first), each with the
    Hangul glued after it (its particle)."""
    copies = list(re.finditer(re.escape(text) + "[\uac00-\ud7a3]*", output))
    return _cut(output, copies[1:] if keep_first else copies)


def _remove_fragments(output: str, source: str, issued: Sequence[str]) -> str:
    """`output` without what is left of placeholders the model garbled: a bracketed number that is
    not one of the text's placeholders and not in `source` either (`[11]` for `[1]`), and halves of
    them, digits repeated too (`[2`, `2]`, `11]`)."""
    numbers = "|".join(re.escape(text[1:-1]) for text in issued)
    garbled = re.compile(rf"{_PLACEHOLDER.pattern}|\[(?:{numbers})\d*(?![\d\]])|(?<![\[\d])\d*(?:{numbers})\]")
    placeholders = {*issued, *(found.group() for found in _PLACEHOLDER.finditer(source))}
    return _cut(output, [found for found in garbled.finditer(output) if found.group() not in placeholders])


def _cut(output: str, spans: Sequence[re.Match[str]]) -> str:
    """`output` without the matched `spans`, each with the space before it (or after it, at the start)."""
    for span in reversed(spans):
        before, after = output[: span.start()], output[span.end():]
        if not after or after.startswith((" ", *_CLOSING)):
            before = before.rstrip(" ")
        output = before + (after if before else after.lstrip(" "))
    return output


def _replace(output: str, span: Protected) -> str:
    """The placeholder of `span` replaced by its term, the particle after it made to agree."""
    index = output.find(span.placeholder)
    if index < 0:
        return output
    rest = output[index + len(span.placeholder):]
    particle = _HANGUL_RUN.match(rest)
    if particle:
        rest = agreeing_particle(span.replacement, particle.group()) + rest[particle.end():]
    return output[:index] + span.replacement + rest


def translate_with_terms(translator: Translator, texts: list[str], terms: KeptTerms, beam_size: int | None = None,
                         domain: str | None = None, first_number: int = 1, tag_ids: list[int] | None = None
                         ) -> list[TermTranslation]:
    """Translate `texts` keeping `terms`: mask, translate (with attention, to place dropped
    placeholders), restore. The other arguments are `Translator.translate_paragraphs`'s."""
    return translate_masked(translator, [mask(text, terms) for text in texts], beam_size, domain, first_number,
                            tag_ids)


def translate_masked(translator: Translator, masked: list[Masked], beam_size: int | None = None,
                     domain: str | None = None, first_number: int = 1, tag_ids: list[int] | None = None
                     ) -> list[TermTranslation]:
    """Translate masked texts (each masked with terms of its own, say) and restore their terms."""
    paragraphs = translator.paragraphs([m.text for m in masked])
    translations = translator.translate_paragraphs(paragraphs, beam_size, attention=any(m.spans for m in masked),
                                                   domain=domain, tag_ids=tag_ids, first_number=first_number)
    return [restore(*found) for found in zip(masked, translations, paragraphs, strict=True)]


def restore(masked: Masked, translation: Translation, paragraph: Paragraph) -> TermTranslation:
    """A masked text's translation (`Translator.translate_paragraphs`'s of `paragraph`, the masked
    text split, with attention where the text has placeholders) with its terms put back."""
    if not masked.spans:
        return TermTranslation(translation.text, masked, translation.text, Outcome())
    if translation.blocks is None:
        raise ValueError("restoring terms needs the translation's attention (attention=True)")
    alignments = iter(block_alignments(translation.source_pieces, translation.output_pieces, translation.blocks,
                                       method="source"))  # every source word gets the output word it draws most
    outcome, outputs = Outcome(), []
    issued = [span.placeholder for span in masked.spans]
    for sentence in translation.sentences:
        source = normalize(sentence.source)
        alignment = next(alignments) if source else []
        own = [span for span in masked.spans if span.placeholder in source]
        others = [text for text in issued if text not in source]
        output, found = restore_sentence(source, sentence.text, own, others, alignment)
        outcome.add(found)
        outputs.append(output)
    return TermTranslation(paragraph.join(outputs), masked, translation.text, outcome)


class TermTranslator(Translator):
    """A `Translator` that keeps `terms`: its `translate` and `translate_stream` mask, translate and
    restore them (`translate_with_terms`). The pipeline's stages use the plain `Translator`."""

    def __init__(self, *args: Any, terms: KeptTerms, **settings: Any) -> None:
        super().__init__(*args, **settings)
        self.terms = terms

    def translate(self, texts: list[str], first_number: int = 1, tag_ids: list[int] | None = None) -> list[str]:
        """As `Translator.translate`, keeping the terms."""
        if not self.terms:
            return super().translate(texts, first_number, tag_ids)
        return [found.text for found in translate_with_terms(self, texts, self.terms, first_number=first_number,
                                                             tag_ids=tag_ids)]
