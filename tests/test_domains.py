from pathlib import Path

import numpy as np
import pytest

from seq2seq.data import epoch_sample
from seq2seq.domains import Domains, SentenceSources, read_sentence_sources, sentence_weights
from seq2seq.errors import UserError

DOMAINS = Domains({"general": ["news", "chat"], "technical": ["docs"]}, default="general", first_tag_id=100)


def test_each_group_has_its_own_tag_after_the_vocabulary() -> None:
    assert DOMAINS.tag_id("general") == 100 and DOMAINS.tag_id("technical") == 101
    assert DOMAINS.tag_ids(SentenceSources.of(["docs", "news", "chat", "docs"])).tolist() == [101, 100, 100, 101]
    assert DOMAINS.piece(101) == "<technical>"
    assert Domains(**DOMAINS.to_dict()) == DOMAINS


def test_unknown_group_or_ungrouped_source_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="unknown domain 'legal'; this model knows: general, technical"):
        DOMAINS.tag_id("legal")
    with pytest.raises(UserError, match="source 'bible' is in no group"):
        DOMAINS.tag_ids(SentenceSources.of(["news", "bible"]))


def test_weights_change_how_often_sources_appear() -> None:
    sources = ["big"] * 2000 + ["small"] * 100
    weights = sentence_weights(SentenceSources.of(sources), {"big": 0.1, "small": 3.0})
    sample = epoch_sample(weights, seed=7)
    counts = np.bincount(sample, minlength=len(sources))
    assert set(counts[2000:].tolist()) == {3}  # whole weights: exact copies
    assert set(counts[:2000].tolist()) == {0, 1} and 150 < counts[:2000].sum() < 250  # about a tenth
    assert np.array_equal(sample, epoch_sample(weights, seed=7))  # seeded
    assert not np.array_equal(sample, epoch_sample(weights, seed=8))  # another epoch, another sample
    assert sentence_weights(SentenceSources.of(["a", "b"]), {}).tolist() == [1.0, 1.0]


def test_weight_for_a_source_not_in_train_is_an_error() -> None:
    with pytest.raises(UserError, match="not in the train split: pydoc"):
        sentence_weights(SentenceSources.of(["pydocs", "bible"]), {"pydoc": 0.1})


def test_missing_source_file_says_prepare(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="prepare stage"):
        read_sentence_sources(tmp_path / "train.source")


def test_sources_are_read_as_one_small_integer_a_sentence(tmp_path: Path) -> None:
    (tmp_path / "train.source").write_text("news\ndocs\nnews\nnews\n", encoding="utf-8")
    sources = read_sentence_sources(tmp_path / "train.source")
    assert sources.names == ["news", "docs"] and sources.codes.dtype == np.int32
    assert sources.codes.tolist() == [0, 1, 0, 0] and len(sources) == 4
    assert len(SentenceSources.of([])) == 0


def test_a_default_domain_without_training_sentences_is_refused() -> None:
    domains = Domains({"general": ["chat"], "technical": ["docs", "news"]}, default="general", first_tag_id=100)
    with pytest.raises(UserError, match="train.default_domain 'general' has no training sentences"):
        domains.check_trained(SentenceSources.of(["docs", "news"]))
    domains.check_trained(SentenceSources.of(["docs", "chat"]))
