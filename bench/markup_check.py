"""Markup through a real model: tag placement on 20 handmade sentences, and SRT and HTML round trips.

Each of the 20 sentences has one word in <b>; the script prints where each alignment method puts
the tag in the translation (the translations are the same for all methods: one search), for a
person to judge whether it is around the Korean word for the tagged one. Then it translates a
small SRT file and an HTML fragment, and checks that the timing lines are identical and the tags
balanced and nested as in the input. Run from the repository root (a few minutes on 2 cores):

    .venv/bin/python bench/markup_check.py [--model models/model/best.pt]
"""

from __future__ import annotations

import argparse
import re
import time

from seq2seq.alignment import METHODS, block_alignments, joined_alignment
from seq2seq.markup import parse_html, parse_srt, render, translate_html, translate_srt, translator_aligner
from seq2seq.translate import Translator

TAGGED = [
    "The <b>cat</b> is sleeping on the sofa.",
    "I bought a <b>new</b> book yesterday.",
    "Please open the <b>window</b>.",
    "She drinks <b>coffee</b> every morning.",
    "My <b>brother</b> lives in Seoul.",
    "The weather is very <b>cold</b> today.",
    "We will meet <b>tomorrow</b>.",
    "He plays the <b>piano</b> well.",
    "I lost my <b>phone</b> at the station.",
    "This <b>restaurant</b> is very popular.",
    "The children are playing in the <b>park</b>.",
    "Can you help me with my <b>homework</b>?",
    "The <b>train</b> leaves at seven o'clock.",
    "I am learning <b>Korean</b> at school.",
    "Where is the nearest <b>hospital</b>?",
    "She wrote a <b>letter</b> to her mother.",
    "The store closes at <b>nine</b>.",
    "Thank you for your <b>help</b>.",
    "The movie was very <b>interesting</b>.",
    "I usually go to work by <b>bus</b>.",
]

SRT = """1
00:00:01,000 --> 00:00:03,200
Good morning, everyone.

2
00:00:03,500 --> 00:00:06,800
Today we will talk about
the history of <i>Korean</i> food.

3
00:00:07,000 --> 00:00:09,000
- Are you hungry?
- Yes, very hungry.

4
00:00:09,500 --> 00:00:12,000
Let's <b>eat</b> together.
"""

HTML = """<h1>Welcome to <em>our</em> city</h1>
<p>The museum is open <b>every day</b> from nine to six.<br/>Tickets cost <i>ten dollars</i>.</p>
<ul>
  <li>Visit the <a href="/park.html" title="Park">big park</a> in the morning.</li>
  <li>Try the <b>famous <i>noodles</i></b> near the station.</li>
</ul>
"""

TAG = re.compile(r"</?([A-Za-z][\w-]*)[^>]*>")


def tag_sequence(markup: str) -> list[str]:
    """The tags in order, with their names only: the same sequence when the words did not move."""
    return [match.group(0).split()[0].rstrip(">") + ">" for match in TAG.finditer(markup)]


def balanced(markup: str) -> bool:
    stack = []
    for match in TAG.finditer(markup):
        tag, name = match.group(0), match.group(1).lower()
        if tag.endswith("/>") or name == "br":
            continue
        if tag.startswith("</"):
            if not stack or stack.pop() != name:
                return False
        else:
            stack.append(name)
    return not stack


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="models/model/best.pt")
    args = parser.parse_args()
    translator = Translator(args.model)

    started = time.perf_counter()
    marked = [parse_html(sentence, "tagged")[0] for sentence in TAGGED]
    translations = translator.translate_detailed([m.text for m in marked], attention=True)
    print("## Tag placement: one <b> word in each sentence\n")
    print("| # | source | " + " | ".join(METHODS) + " |")
    print("|---|---|" + "---|" * len(METHODS))
    for number, (source, piece, translation) in enumerate(zip(TAGGED, marked, translations, strict=True), start=1):
        cells = []
        for method in METHODS:
            sentences = block_alignments(translation.source_pieces, translation.output_pieces, translation.blocks,
                                         method)
            alignment = joined_alignment(sentences, [s.source for s in translation.sentences],
                                         [s.text for s in translation.sentences])
            cells.append(render(piece, translation.text, alignment))
        print(f"| {number} | {source} | " + " | ".join(cells) + " |")
    print(f"\n({time.perf_counter() - started:.1f} s)\n")

    aligner = translator_aligner(translator)
    started = time.perf_counter()
    srt = translate_srt(SRT, aligner, "check.srt")
    print("## SRT round trip\n\n```\n" + srt + "```\n")
    timings = [cue.timing for cue in parse_srt(SRT, "in")], [cue.timing for cue in parse_srt(srt, "out")]
    print(f"timing lines identical: {timings[0] == timings[1]} ({len(timings[0])} cues); "
          f"tags balanced: {balanced(srt)}; same tags in the same order: {tag_sequence(srt) == tag_sequence(SRT)}")
    html = translate_html(HTML, aligner, "check.html")
    print("\n## HTML round trip\n\n```html\n" + html + "```\n")
    print(f"tags balanced: {balanced(html)}; same tags in the same order: {tag_sequence(html) == tag_sequence(HTML)}"
          f" ({len(tag_sequence(HTML))} tags)")
    print(f"\n({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
