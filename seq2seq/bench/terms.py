"""`seq2seq bench terms`: how often a kept term survives translation, with masking and without; with
`--placeholders`, which placeholder form the model copies exactly once most often.

The test sets are built here, from the prepared test split and from templates, so no corpus text
is committed: "names" are the test sentences with a capitalised word after their first (a name, a
brand, an identifier such as PyObject), that word being the term; "glossary" are template
sentences about places, firms and people whose Korean spelling is fixed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

from seq2seq.errors import UserError
from seq2seq.terms import KeptTerms, Outcome, mask, translate_masked
from seq2seq.translate import Translator

# A capitalised word after the sentence's first word: a name, a brand, an identifier.
_NAME = re.compile(r"(?<=\s)[A-Z][A-Za-z]+\b")

# Placeholder forms tried by `bench placeholders`, by name: the text of the n-th placeholder.
FORMS: dict[str, Callable[[int], str]] = {
    "[1]": lambda n: f"[{n}]",
    "1001": lambda n: f"{1000 + n}",
    "<1>": lambda n: f"<{n}>",
    "X1": lambda n: f"X{n}",
    "__1__": lambda n: f"__{n}__",
    "%1": lambda n: f"%{n}",
    "TERM1": lambda n: f"TERM{n}",
    "XQZ": lambda n: "XQ" + "ZYXWVUTSRQ"[n - 1],
}

GLOSSARY_NAMES = [("Seoul", "서울"), ("Busan", "부산"), ("London", "런던"), ("Microsoft", "마이크로소프트"),
                  ("Samsung", "삼성"), ("Google", "구글"), ("Netflix", "넷플릭스"), ("Einstein", "아인슈타인"),
                  ("Shakespeare", "셰익스피어"), ("Kim Minjun", "김민준")]
TEMPLATES = ["{} opened a new office last year.", "I read a long article about {} yesterday.",
             "Many people still talk about {} today.", "We visited {} with our children in the summer.",
             "The report says that {} will grow quickly.", "Do you know much about {}?"]


def name_sentences(sources_path: Path, limit: int) -> list[tuple[str, re.Match[str]]]:
    """The first `limit` sentences of `sources_path` with a capitalised word after their first word
    that they hold once, and where it is."""
    found = []
    with sources_path.open(encoding="utf-8") as lines:
        for line in lines:
            match = _NAME.search(line.strip())
            if match and occurrences(match.string, match.group()) == 1:
                found.append((match.string, match))
            if len(found) == limit:
                break
    return found


def glossary_sentences() -> list[tuple[str, str, str]]:
    """(sentence, English name, its Korean) for every template and name."""
    return [(template.format(english), english, korean) for template in TEMPLATES
            for english, korean in GLOSSARY_NAMES]


def occurrences(output: str, term: str) -> int:
    """How often `term` is in `output` as a whole term (an English one not inside a longer Latin word;
    Hangul may be glued to it, as a particle is)."""
    latin = r"[A-Za-z0-9_]"
    return len(re.findall(rf"(?<!{latin}){re.escape(term)}(?!{latin})", output))


def bench_placeholders(model_path: Path, sources_path: Path, limit: int, forms: list[str], params_path: Path
                       ) -> Iterator[str]:
    """For each placeholder form, on the name sentences with the name replaced by it: how often the
    model's output holds the placeholder exactly once, not at all, or more than once. No `forms`: all."""
    unknown = sorted(set(forms) - set(FORMS))
    if unknown:
        raise UserError(f"unknown placeholder form {unknown[0]!r}; one of {', '.join(FORMS)}")
    translator = Translator(model_path, params_path=params_path)
    sentences = name_sentences(sources_path, limit)
    yield f"{len(sentences)} test sentences, each with one capitalised word replaced by a placeholder"
    yield "| form | exactly once | dropped | duplicated |"
    yield "|---|---:|---:|---:|"
    for name in forms or FORMS:
        text = FORMS[name](1)
        outputs = translator.translate([sentence[: name.start()] + text + sentence[name.end():]
                                        for sentence, name in sentences])
        counts = [occurrences(output, text) for output in outputs]
        shares = [sum(test(count) for count in counts) / len(counts) for test in
                  (lambda c: c == 1, lambda c: c == 0, lambda c: c > 1)]
        yield f"| `{text}` | " + " | ".join(f"{share:.1%}" for share in shares) + " |"


def bench_terms(model_path: Path, sources_path: Path, limit: int, params_path: Path) -> Iterator[str]:
    """Term survival (the term spelled as wanted exactly once in the output) without and with kept
    terms, on the name sentences (each name a do-not-translate term) and the glossary templates."""
    translator = Translator(model_path, params_path=params_path)
    names = name_sentences(sources_path, limit)
    sets = {
        "names (do-not-translate)": [(sentence, name.group(), mask(sentence, KeptTerms(keep=(name.group(),))))
                                     for sentence, name in names],
        "glossary (templates)": [(sentence, korean, mask(sentence, KeptTerms({english: korean})))
                                 for sentence, english, korean in glossary_sentences()],
    }
    yield "| set | sentences | plain: term exactly once | kept: term exactly once | placeholders copied once " \
          "| dropped (placed by attention) | duplicated |"
    yield "|---|---:|---:|---:|---:|---:|---:|"
    for name, cases in sets.items():
        plain = translator.translate([sentence for sentence, _, _ in cases])
        kept = translate_masked(translator, [masked for _, _, masked in cases])
        outcome = Outcome()
        for found in kept:
            outcome.add(found.outcome)
        wanted = [term for _, term, _ in cases]
        survived = [sum(occurrences(output, term) == 1 for output, term in zip(outputs, wanted, strict=True))
                    for outputs in (plain, [found.text for found in kept])]
        total = outcome.copied + outcome.dropped + outcome.duplicated
        yield (f"| {name} | {len(cases)} | " + " | ".join(f"{count / len(cases):.1%}" for count in survived)
               + " | " + " | ".join(f"{count} ({count / total:.0%})" for count in
                                    (outcome.copied, outcome.dropped, outcome.duplicated)) + " |")

