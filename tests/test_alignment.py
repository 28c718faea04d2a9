"""Word alignments from attention weights: pieces merged into words, markers left out, spans mapped."""

from __future__ import annotations

import pytest
import torch

from seq2seq.alignment import (
    is_marker,
    parse_pharaoh,
    pharaoh,
    piece_words,
    target_span,
    word_alignment,
    word_mass,
)

SOURCE = ["<general>", "▁The", "▁cat", "▁sleep", "s", "."]  # words: The cat sleeps.
OUTPUT = ["▁고", "양", "이가", "▁자", "고", "▁있다", ".", "</s>"]  # words: 고양이가 자고 있다.


def handmade_weights() -> torch.Tensor:
    """(8 output pieces, 6 source pieces): 고양이가 looks at cat, 자고 at sleep+s, 있다. at s and '.'."""
    rows = [
        [0.5, 0.1, 0.4, 0.0, 0.0, 0.0],  # ▁고: the tag has the most of any one piece, but is no word
        [0.0, 0.1, 0.9, 0.0, 0.0, 0.0],
        [0.0, 0.2, 0.8, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.6, 0.4, 0.0],
        [0.0, 0.0, 0.0, 0.5, 0.5, 0.0],
        [0.0, 0.0, 0.0, 0.3, 0.3, 0.4],  # ▁있다: '.' alone has the most, but sleep+s has more together
        [0.0, 0.0, 0.0, 0.0, 0.1, 0.9],
        [0.9, 0.0, 0.0, 0.0, 0.0, 0.1],  # EOS: no word
    ]
    return torch.tensor(rows)


def test_pieces_are_merged_into_words_and_markers_belong_to_none() -> None:
    assert piece_words(SOURCE) == [-1, 0, 1, 2, 2, 2]
    assert piece_words(OUTPUT) == [0, 0, 0, 1, 1, 2, 2, -1]
    assert piece_words(["▁", "책", "을", "▁", "샀", "어", "</s>"]) == [-1, 0, 0, -1, 1, 1, -1]
    assert piece_words(["no", "▁space", "<0xE2>", "<0x80>", "▁a▁b"]) == [0, 1, 1, 1, 2]
    assert [is_marker(p) for p in ("</s>", "<technical>", "<0xE2>", "<unk>", "▁<b>", "<")] == [
        True, True, False, False, False, False]


def test_mass_is_summed_over_each_words_pieces() -> None:
    mass = word_mass(SOURCE, OUTPUT, handmade_weights())
    assert mass.shape == (3, 3)  # (target words, source words)
    assert mass[0].tolist() == pytest.approx([0.4, 2.1, 0.0])
    assert mass[2].tolist() == pytest.approx([0.0, 0.0, 2.0])


def test_each_target_word_goes_to_the_source_word_with_most_mass() -> None:
    weights = handmade_weights()
    assert word_alignment(SOURCE, OUTPUT, weights) == [(1, 0), (2, 1), (2, 2)]
    assert word_alignment(SOURCE, OUTPUT, weights, "source") == [(0, 0), (1, 0), (2, 1)]
    assert word_alignment(SOURCE, OUTPUT, weights, "intersection") == [(1, 0), (2, 1)]
    assert word_alignment(SOURCE, OUTPUT, weights, "union") == [(0, 0), (1, 0), (2, 1), (2, 2)]
    with pytest.raises(ValueError, match="unknown alignment method"):
        word_alignment(SOURCE, OUTPUT, weights, "diagonal")  # type: ignore[arg-type]


def test_a_sentence_without_words_has_no_pairs() -> None:
    assert word_alignment(["<general>"], ["</s>"], torch.ones(1, 1)) == []


def test_pharaoh_round_trip() -> None:
    assert pharaoh([(0, 1), (2, 0)]) == "0-1 2-0"
    assert parse_pharaoh("0-1 2-0") == [(0, 1), (2, 0)]
    assert pharaoh([]) == "" and parse_pharaoh("") == []


def test_a_source_span_maps_to_the_target_words_its_words_align_to() -> None:
    source, target = "The  cat sleeps.", "고양이가 자고 있다."
    alignment = [(1, 0), (2, 1), (2, 2)]
    assert target_span((5, 8), source, target, alignment) == (0, 4)  # cat -> 고양이가
    assert target_span((6, 7), source, target, alignment) == (0, 4)  # part of a word: the whole word
    assert target_span((9, 16), source, target, alignment) == (5, 11)  # sleeps. -> 자고 있다.
    assert target_span((5, 16), source, target, alignment) == (0, 11)
    assert target_span((0, 3), source, target, alignment) is None  # The: aligned to nothing
    assert target_span((3, 5), source, target, alignment) is None  # spaces only
    assert target_span((5, 5), source, target, alignment) == (0, 4)  # an empty span inside a word


def test_alignment_of_a_real_translation_covers_its_words(tiny_workdir) -> None:
    from seq2seq.translate import Translator

    translator = Translator(tiny_workdir / "models/model/best.pt", params_path=None)
    (result,) = translator.translate_detailed(["He read a book today."], attention=True)
    pairs = word_alignment(result.source_pieces, result.output_pieces, result.blocks[0])
    target_words = result.text.split()
    assert sorted({j for _, j in pairs}) == list(range(len(target_words)))  # every target word, once
    assert all(0 <= i < 5 for i, _ in pairs)
