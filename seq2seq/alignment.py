"""Word alignments from attention: which source word each output word was translated from.

The decoder's attention gives, for each output piece, weights over the source pieces. Pieces are
merged into words (a SentencePiece piece starting with "▁" starts a word; the domain tag and EOS
belong to no word), the weights are summed over each (output word, source word) pair's pieces,
and each output word is aligned to the source word with the most mass ("target" method, one
source word per target word). "source" aligns each source word to the target word it gave the
most mass; "union" and "intersection" combine the two. Pairs are (source word i, target word j),
written `i-j` (Pharaoh format), words counted from 0 as the whitespace-separated words of the
source sentence and of its translation.

`target_span` turns a source character span into the target character span its words align to:
what putting tags back (`seq2seq.markup`) and placing glossary terms need.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import torch

Method = Literal["target", "source", "union", "intersection"]
METHODS: tuple[str, ...] = ("target", "source", "union", "intersection")
Pair = tuple[int, int]

# Pieces that are no part of a word: EOS and the other SentencePiece controls, and a domain tag such
# as `<general>` (shown so by `Translator`). Byte-fallback pieces (`<0xE2>`) and `<unk>` are parts of words.
_MARKER = re.compile(r"</s>|<s>|<pad>|<(?!unk>)(?!0x[0-9A-Fa-f]{2}>)[A-Za-z_][\w.-]*>")
_WORD = re.compile(r"\S+")


def is_marker(piece: str) -> bool:
    """True for a piece that belongs to no word: EOS, BOS, padding or a domain tag."""
    return _MARKER.fullmatch(piece) is not None


def piece_words(pieces: Sequence[str]) -> list[int]:
    """The word each piece belongs to (words counted from 0), -1 for a marker or a piece of spaces only.

    A word starts at a piece's first visible character when a space ("▁") came before it, in this
    piece or the ones before; so `["▁new", "s", "▁", "pa", "per", "</s>"]` gives [0, 0, -1, 1, 1, -1].
    """
    words, word, space_before = [], -1, True
    for piece in pieces:
        if is_marker(piece):
            words.append(-1)
            continue
        text = piece.replace("▁", " ")
        visible = text.lstrip(" ")
        if not visible:
            words.append(-1)
            space_before = True
            continue
        if space_before or len(visible) < len(text) or word < 0:
            word += 1
        words.append(word)
        space_before = text.endswith(" ")
    return words


def word_mass(source_pieces: Sequence[str], output_pieces: Sequence[str], weights: torch.Tensor) -> torch.Tensor:
    """The attention mass of each (target word, source word) pair, summed over their pieces.

    weights: (output pieces, source pieces), one sentence's block (`Translation.blocks[i]`); rows
    past `len(output_pieces)` are ignored. Returns (target words, source words), float32.
    """
    source_words = piece_words(source_pieces)
    output_words = piece_words(output_pieces[: weights.size(0)])
    source_count, target_count = max(source_words, default=-1) + 1, max(output_words, default=-1) + 1
    if not source_count or not target_count:
        return torch.zeros(target_count, source_count)
    columns = _membership(source_words, source_count)  # (source pieces, source words)
    rows = _membership(output_words, target_count)  # (output pieces, target words)
    return rows.T @ weights[: len(output_words), : len(source_words)].float().cpu() @ columns


def _membership(words: list[int], count: int) -> torch.Tensor:
    """(pieces, words) 0/1 matrix: piece p belongs to word w; marker pieces to none."""
    matrix = torch.zeros(len(words), count)
    for piece, word in enumerate(words):
        if word >= 0:
            matrix[piece, word] = 1.0
    return matrix


def word_alignment(source_pieces: Sequence[str], output_pieces: Sequence[str], weights: torch.Tensor,
                   method: Method = "target") -> list[Pair]:
    """Word alignment pairs (source word i, target word j), sorted, from one sentence's attention.

    weights: (output pieces, source pieces). `method`: "target" aligns each target word to the
    source word it gave the most mass; "source" each source word to the target word that gave it
    the most; "union"/"intersection" combine them. A sentence without words gives [].
    """
    mass = word_mass(source_pieces, output_pieces, weights)  # (T, S)
    if mass.numel() == 0:
        return []
    by_target = {(int(i), j) for j, i in enumerate(mass.argmax(dim=1).tolist())}
    by_source = {(i, int(j)) for i, j in enumerate(mass.argmax(dim=0).tolist())}
    chosen = {"target": by_target, "source": by_source, "union": by_target | by_source,
              "intersection": by_target & by_source}
    if method not in chosen:
        raise ValueError(f"unknown alignment method {method!r}; one of {', '.join(METHODS)}")
    return sorted(chosen[method])


def pharaoh(pairs: Sequence[Pair]) -> str:
    """Pairs as `i-j` separated by spaces, the format of fast_align and Moses."""
    return " ".join(f"{i}-{j}" for i, j in pairs)


def parse_pharaoh(text: str) -> list[Pair]:
    """The inverse of `pharaoh`."""
    return [(int(i), int(j)) for i, j in (pair.split("-") for pair in text.split())]


def word_spans(text: str) -> list[tuple[int, int]]:
    """The (start, end) character span of each whitespace-separated word of `text`."""
    return [match.span() for match in _WORD.finditer(text)]


def target_span(source_span: tuple[int, int], source_text: str, target_text: str,
                alignment: Sequence[Pair]) -> tuple[int, int] | None:
    """The target character span that the source characters [start, end) align to: from the first
    to the last target word aligned to a source word overlapping the span. None where no source
    word overlaps it or none of them is aligned (or a word index is out of range, e.g. an
    alignment of another text)."""
    start, end = source_span
    source_words, target_words = word_spans(source_text), word_spans(target_text)
    covered = {i for i, (word_start, word_end) in enumerate(source_words)
               if word_start < end and start < word_end or (start == end and word_start <= start < word_end)}
    aligned = [j for i, j in alignment if i in covered and j < len(target_words)]
    if not aligned:
        return None
    return target_words[min(aligned)][0], target_words[max(aligned)][1]


def block_alignments(source_pieces: Sequence[str], output_pieces: Sequence[str], blocks: Sequence[torch.Tensor],
                     method: Method = "target") -> list[list[Pair]]:
    """The word alignment of each sentence of a translation (`Translation.source_pieces`,
    `.output_pieces`, `.blocks`: the sentences' pieces one after the other, block i of shape
    (output pieces of sentence i, its source pieces))."""
    alignments, output, source = [], 0, 0
    for block in blocks:
        rows, columns = block.shape
        alignments.append(word_alignment(source_pieces[source: source + columns], output_pieces[output: output + rows],
                                         block, method))
        output, source = output + rows, source + columns
    return alignments


def joined_alignment(alignments: Sequence[Sequence[Pair]], sources: Sequence[str], targets: Sequence[str]
                     ) -> list[Pair]:
    """The alignment of texts made of sentences (`sources[k]` translated as `targets[k]`, aligned by
    `alignments[k]`) joined with whitespace between them: word indices shifted by the words of the
    sentences before."""
    pairs, source_offset, target_offset = [], 0, 0
    for alignment, source, target in zip(alignments, sources, targets, strict=True):
        pairs += [(i + source_offset, j + target_offset) for i, j in alignment]
        source_offset, target_offset = source_offset + len(source.split()), target_offset + len(target.split())
    return pairs
