from pathlib import Path

import pytest

from seq2seq.config import ConfigError, EvaluateConfig, Params, decoding_settings, load_params, parse_params


def test_repository_params_load() -> None:
    params = load_params(Path(__file__).parent.parent / "params.yaml")
    assert params.model.cell == "gru"
    assert params.prepare.valid_sources == ["flores200-dev"]


def test_missing_sections_take_defaults() -> None:
    params = parse_params({})
    assert params == Params()
    assert (params.train.batch_tokens, params.model.attention, params.evaluate.beam_size) == (4096, "general", 5)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"train": {"lerning_rate": 0.1}}, "unknown key 'train.lerning_rate'"),
        ({"trian": {}}, "unknown key 'trian'"),
        ({"model": {"cell": "transformer"}}, "model.cell"),
        ({"model": {"attention": "cosine"}}, "model.attention"),
        ({"model": {"decoder_hidden_size": 0}}, "model.decoder_hidden_size"),
        ({"model": {"dropout": 1.0}}, "model.dropout"),
        ({"model": {"dropout": -0.1}}, "model.dropout"),
        ({"train": {"batch_tokens": "many"}}, "train.batch_tokens: expected int"),
        ({"train": {"bf16": 1}}, "train.bf16: expected bool"),
        ({"train": {"max_steps": True}}, "train.max_steps: expected int"),
        ({"prepare": {"sources": "pydocs"}}, "prepare.sources: expected a list"),
        ({"model": {"attention": "dot", "encoder_hidden_size": 256, "decoder_hidden_size": 256}}, "'dot' needs"),
        ({"train": {"max_steps_by_cpu_class": {"avx3": 10}}}, "train.max_steps_by_cpu_class.avx3: not a CPU class"),
        ({"train": {"max_steps_by_cpu_class": {"avx2": 0}}}, "train.max_steps_by_cpu_class.avx2: must be > 0"),
        ({"train": {"word_dropout": 1.0}}, "train.word_dropout: must be in"),
        ({"train": {"subword_alpha": -0.1}}, "train.subword_alpha: must be in"),
        ({"backtranslation": {"search": "topk"}}, "backtranslation.search"),
        ({"backtranslation": {"reverse_steps": 0}}, "backtranslation.reverse_steps: must be > 0"),
        ({"backtranslation": {"weight": -1}}, "backtranslation.weight: must be >= 0"),
    ],
)
def test_bad_params_name_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_params(raw)


def test_unknown_key_lists_valid_keys() -> None:
    with pytest.raises(ConfigError) as error:
        parse_params({"train": {"lerning_rate": 0.1}})
    assert "learning_rate" in str(error.value)


def test_int_is_accepted_for_float() -> None:
    assert parse_params({"train": {"learning_rate": 1}}).train.learning_rate == 1.0


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "bad.yaml")


def test_domain_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"train.source_weights.bible: expected float, got 'low'"):
        parse_params({"train": {"source_weights": {"bible": "low"}}})
    with pytest.raises(ConfigError, match="train.source_weights.bible: must be >= 0"):
        parse_params({"train": {"source_weights": {"bible": -1}}})
    with pytest.raises(ConfigError, match=r"train.domains.general\[1\]: expected str"):
        parse_params({"train": {"domains": {"general": ["news", 3]}}})
    with pytest.raises(ConfigError, match="a source belongs to one group only: news"):
        parse_params({"train": {"domains": {"general": ["news"], "other": ["news"]}}})
    with pytest.raises(ConfigError, match="train.default_domain: 'general' is not a group"):
        parse_params({"train": {"domain_tags": True, "domains": {"technical": ["docs"]}}})
    with pytest.raises(ConfigError, match="train.domains.other: an empty group"):
        parse_params({"train": {"domains": {"general": ["news"], "other": []}}})
    assert parse_params({"train": {"source_weights": {"bible": 1}}}).train.source_weights == {"bible": 1.0}


def test_decoding_settings_come_from_params_and_options_override(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("evaluate:\n  beam_size: 2\n  length_penalty: 0.5\n  max_output_ratio: 1.5\n"
                      "  batch_size: 3\n  no_repeat_ngram_size: 4\n")
    settings = decoding_settings(params, beam_size=None, length_penalty=None, max_output_ratio=None,
                                 batch_size=None, no_repeat_ngram_size=None)
    assert (settings.beam_size, settings.length_penalty, settings.max_output_ratio, settings.batch_size,
            settings.no_repeat_ngram_size) == (2, 0.5, 1.5, 3, 4)
    overridden = decoding_settings(params, beam_size=7, length_penalty=None, batch_size=1)
    assert (overridden.beam_size, overridden.length_penalty, overridden.batch_size) == (7, 0.5, 1)
    assert decoding_settings(tmp_path / "absent.yaml") == EvaluateConfig()  # no file: the one set of defaults
    with pytest.raises(ConfigError, match="evaluate.beam_size"):
        decoding_settings(params, beam_size=0)


def test_max_steps_is_a_number_or_auto_with_an_entry_for_every_class() -> None:
    table = {"avx2": 1650, "avx512": 2100, "bf16": 3600, "cuda": 3600}
    config = parse_params({"train": {"max_steps": "auto", "max_steps_by_cpu_class": table}}).train
    assert (config.max_steps, config.max_steps_by_cpu_class) == ("auto", table)
    assert parse_params({"train": {"max_steps": 4000, "max_steps_by_cpu_class": table}}).train.max_steps == 4000
    with pytest.raises(ConfigError, match="train.max_steps_by_cpu_class: train.max_steps is auto, so every class "
                                          "needs its steps here; missing: avx512, cuda"):
        parse_params({"train": {"max_steps": "auto", "max_steps_by_cpu_class": {"avx2": 1, "bf16": 2}}})
    with pytest.raises(ConfigError, match="train.max_steps: expected int or 'auto', got 'many'"):
        parse_params({"train": {"max_steps": "many"}})


def test_the_default_params_train_as_many_steps_per_class_as_before() -> None:
    """max_steps auto: the class table holds every class, each CPU class with the steps it trained
    before the rule; a GPU the recipe's 16,000 (docs/gpu.md)."""
    train = load_params(Path(__file__).parent.parent / "params.yaml").train
    assert train.max_steps == "auto"
    assert train.max_steps_by_cpu_class == {"avx2": 1650, "avx512": 2100, "bf16": 3600, "cuda": 16000}
