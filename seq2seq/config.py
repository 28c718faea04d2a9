"""Typed records for `params.yaml`, one per pipeline stage, validated when loaded.

DVC adds a mistyped `dvc exp run -S train.lerning_rate=...` key without complaint, so every
section is checked here: an unknown key, a wrong type or an impossible value is a `ConfigError`
that names the key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from seq2seq.errors import UserError


class ConfigError(UserError):
    """`params.yaml` holds an unknown key, a value of the wrong type or an impossible value."""


@dataclass(frozen=True)
class PrepareConfig:
    """How raw corpus files become the train, valid and test splits."""

    sources: list[str] = field(default_factory=list)
    valid_sources: list[str] = field(default_factory=lambda: ["flores200-dev"])
    test_per_source: int = 80
    max_chars: int = 300
    max_length_ratio: float = 4.0
    seed: int = 1234

    def validate(self) -> None:
        _require(len(self.valid_sources) > 0, "prepare.valid_sources", "must name at least one source")
        _require(self.test_per_source >= 0, "prepare.test_per_source", "must be >= 0")
        _require(self.max_chars > 0, "prepare.max_chars", "must be > 0")
        _require(self.max_length_ratio >= 1.0, "prepare.max_length_ratio", "must be >= 1")


@dataclass(frozen=True)
class TokenizerConfig:
    """SentencePiece training options."""

    model_type: Literal["unigram", "bpe"] = "unigram"
    joint: bool = False
    vocab_size: int = 8000  # the joint model's, or the English model's
    korean_vocab_size: int = 4000  # the Korean model's, when not joint
    character_coverage: float = 0.9995
    input_sentence_size: int = 200_000
    byte_fallback: bool = True
    seed: int = 1234

    def validate(self) -> None:
        for key in ("vocab_size", "korean_vocab_size"):
            _require(getattr(self, key) >= 300, f"tokenizer.{key}", "must be >= 300 (256 byte pieces + specials)")
        _require(0.9 <= self.character_coverage <= 1.0, "tokenizer.character_coverage", "must be in [0.9, 1]")
        _require(self.input_sentence_size > 0, "tokenizer.input_sentence_size", "must be > 0")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the encoder-decoder."""

    cell: Literal["gru", "lstm", "rnn"] = "gru"
    embedding_size: int = 256
    encoder_hidden_size: int = 256
    encoder_layers: int = 1
    bidirectional: bool = True
    decoder_hidden_size: int = 512
    decoder_layers: int = 1
    attention: Literal["dot", "general", "bahdanau"] = "general"
    input_feeding: bool = False
    dropout: float = 0.1
    tie_embeddings: bool = True
    position_index: Literal["none", "learned", "relative"] = "none"

    def validate(self) -> None:
        for key in ("embedding_size", "encoder_hidden_size", "decoder_hidden_size", "encoder_layers", "decoder_layers"):
            _require(getattr(self, key) > 0, f"model.{key}", "must be > 0")
        _require(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")
        encoder_output_size = self.encoder_hidden_size * (2 if self.bidirectional else 1)
        _require(
            self.attention != "dot" or encoder_output_size == self.decoder_hidden_size,
            "model.attention",
            f"'dot' needs encoder outputs ({encoder_output_size}) as wide as decoder_hidden_size "
            f"({self.decoder_hidden_size}); use 'general' or 'bahdanau'",
        )


CPU_CLASSES = ("avx2", "avx512", "bf16")  # seq2seq.device.cpu_class() tells which one a CPU is
MACHINE_CLASSES = (*CPU_CLASSES, "cuda")  # the keys of train.max_steps_by_cpu_class


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, batching, validation and stopping."""

    seed: int = 1234
    device: Literal["auto", "cpu", "cuda"] = "auto"
    nproc: int = 1
    threads: int = 0
    bf16: bool = True
    batch_tokens: int = 4096
    max_length: int = 100
    optimizer: Literal["adam", "adamw"] = "adam"
    learning_rate: float = 0.003
    weight_decay: float = 0.0
    warmup_steps: int = 150
    schedule: Literal["inverse_sqrt", "plateau", "constant"] = "inverse_sqrt"
    min_learning_rate: float = 1e-5  # the floor after warm-up: plateau halvings and decay stop here
    cooldown: float = 0.0  # the last fraction of max_steps, over which the rate falls linearly to the floor
    label_smoothing: float = 0.1
    clip_grad_norm: float = 1.0
    max_steps: int | Literal["auto"] = 2000  # auto: this machine's entry in max_steps_by_cpu_class
    max_steps_by_cpu_class: dict[str, int] = field(default_factory=dict)
    max_epochs: int = 100
    valid_every: int = 250
    valid_sentences: int = 400
    patience: int = 0
    max_minutes: float = 0.0
    average_checkpoints: int = 0
    domain_tags: bool = False
    default_domain: str = "general"
    domains: dict[str, list[str]] = field(default_factory=dict)
    source_weights: dict[str, float] = field(default_factory=dict)
    word_dropout: float = 0.0  # chance that a source token becomes UNK, in training only
    subword_alpha: float = 0.0  # SentencePiece sampling of the segmentation in training (0: off)

    def validate(self) -> None:
        _require(self.nproc >= 1, "train.nproc", "must be >= 1")
        _require(self.threads >= 0, "train.threads", "must be >= 0 (0: let torch decide)")
        _require(self.batch_tokens > 0, "train.batch_tokens", "must be > 0")
        _require(self.max_length > 1, "train.max_length", "must be > 1")
        _require(self.learning_rate > 0, "train.learning_rate", "must be > 0")
        _require(0 <= self.min_learning_rate <= self.learning_rate, "train.min_learning_rate",
                 "must be in [0, train.learning_rate]")
        _require(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        _require(self.warmup_steps >= 0, "train.warmup_steps", "must be >= 0")
        _require(0.0 <= self.cooldown < 1.0, "train.cooldown", "must be in [0, 1) (0: no cool-down)")
        _require(0.0 <= self.label_smoothing < 1.0, "train.label_smoothing", "must be in [0, 1)")
        _require(self.clip_grad_norm >= 0, "train.clip_grad_norm", "must be >= 0 (0: no clipping)")
        _require(self.max_steps == "auto" or self.max_steps > 0, "train.max_steps", "must be > 0 (or auto)")
        for name, steps in self.max_steps_by_cpu_class.items():
            _require(name in MACHINE_CLASSES, f"train.max_steps_by_cpu_class.{name}",
                     f"not a CPU class ({', '.join(CPU_CLASSES)}) nor cuda")
            _require(steps > 0, f"train.max_steps_by_cpu_class.{name}", "must be > 0")
        missing = [name for name in MACHINE_CLASSES if name not in self.max_steps_by_cpu_class]
        _require(self.max_steps != "auto" or not missing, "train.max_steps_by_cpu_class",
                 f"train.max_steps is auto, so every class needs its steps here; missing: {', '.join(missing)}")
        _require(self.max_epochs > 0, "train.max_epochs", "must be > 0")
        _require(self.valid_every > 0, "train.valid_every", "must be > 0")
        _require(self.valid_sentences > 0, "train.valid_sentences", "must be > 0")
        _require(self.patience >= 0, "train.patience", "must be >= 0 (0: never stop early)")
        _require(self.max_minutes >= 0, "train.max_minutes", "must be >= 0 (0: no time limit)")
        _require(self.average_checkpoints >= 0, "train.average_checkpoints", "must be >= 0 (0: no averaging)")
        for source, weight in self.source_weights.items():
            _require(weight >= 0, f"train.source_weights.{source}", "must be >= 0")
        _require(0.0 <= self.word_dropout < 1.0, "train.word_dropout", "must be in [0, 1) (0: off)")
        _require(0.0 <= self.subword_alpha <= 1.0, "train.subword_alpha", "must be in [0, 1] (0: off)")
        grouped = [source for sources in self.domains.values() for source in sources]
        twice = sorted({source for source in grouped if grouped.count(source) > 1})
        for group, sources in self.domains.items():
            _require(bool(sources), f"train.domains.{group}", "an empty group: give it a source or remove it")
        _require(not twice, "train.domains", f"a source belongs to one group only: {', '.join(twice)}")
        _require(not self.domain_tags or self.default_domain in self.domains, "train.default_domain",
                 f"'{self.default_domain}' is not a group of train.domains ({', '.join(self.domains) or 'none'})")


@dataclass(frozen=True)
class EvaluateConfig:
    """Decoding and scoring of the test split."""

    beam_size: int = 5
    length_penalty: float = 1.0
    max_output_ratio: float = 2.0
    no_repeat_ngram_size: int = 0
    batch_size: int = 64
    samples: int = 20

    def validate(self) -> None:
        _require(self.beam_size >= 1, "evaluate.beam_size", "must be >= 1")
        _require(self.length_penalty >= 0, "evaluate.length_penalty", "must be >= 0")
        _require(self.max_output_ratio > 0, "evaluate.max_output_ratio", "must be > 0")
        _require(self.no_repeat_ngram_size >= 0, "evaluate.no_repeat_ngram_size", "must be >= 0 (0: allow repeats)")
        _require(self.batch_size >= 1, "evaluate.batch_size", "must be >= 1")
        _require(self.samples >= 0, "evaluate.samples", "must be >= 0")


@dataclass(frozen=True)
class BacktranslationConfig:
    """Korean monolingual text made into synthetic pairs by a reverse (Korean->English) model."""

    enabled: bool = False
    reverse_steps: int = 1200  # the reverse model's training steps (its other settings: model, train)
    search: Literal["beam", "greedy", "sampling"] = "beam"
    beam_size: int = 5
    length_penalty: float = 1.0
    max_sentences: int = 0  # translate a seeded sample of N monolingual sentences; 0: all
    weight: float = 1.0  # expected copies of each synthetic pair per epoch (as train.source_weights)
    seed: int = 1234  # of the sampling search

    def validate(self) -> None:
        _require(self.reverse_steps > 0, "backtranslation.reverse_steps", "must be > 0")
        _require(self.beam_size >= 1, "backtranslation.beam_size", "must be >= 1")
        _require(self.length_penalty >= 0, "backtranslation.length_penalty", "must be >= 0")
        _require(self.max_sentences >= 0, "backtranslation.max_sentences", "must be >= 0 (0: all)")
        _require(self.weight >= 0, "backtranslation.weight", "must be >= 0")


@dataclass(frozen=True)
class Params:
    """All of `params.yaml`."""

    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    backtranslation: BacktranslationConfig = field(default_factory=BacktranslationConfig)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate `params.yaml`; a missing section takes its defaults."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} not found: run from the repository root or pass --params")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}".splitlines()[0]) from None
    return parse_params(raw)


def decoding_settings(params_path: str | Path = "params.yaml", **options: Any) -> EvaluateConfig:
    """The `evaluate` section of `params_path` (its defaults where there is no such file), with each
    of `options` that is not None in place of its value: how `translate` decodes unless told otherwise."""
    path = Path(params_path)
    config = load_params(path).evaluate if path.exists() else EvaluateConfig()
    config = dataclasses.replace(config, **{name: value for name, value in options.items() if value is not None})
    config.validate()
    return config


def parse_params(raw: dict[str, Any]) -> Params:
    """Turn a plain dict (as YAML gives it) into validated `Params`."""
    if not isinstance(raw, dict):
        raise ConfigError("params must be a mapping of stage sections")
    record_types = typing.get_type_hints(Params)
    _reject_unknown(raw, list(record_types), prefix="")
    return Params(**{name: _build(record_types[name], raw.get(name) or {}, name) for name in record_types})


def _build(record_type: type, values: dict[str, Any], section: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"'{section}' must be a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(record_type)
    names = [f.name for f in dataclasses.fields(record_type)]
    _reject_unknown(values, names, prefix=f"{section}.")
    checked = {key: _check_type(f"{section}.{key}", value, hints[key]) for key, value in values.items()}
    record = record_type(**checked)
    record.validate()
    return record


def _check_type(key: str, value: Any, expected: Any) -> Any:
    origin = typing.get_origin(expected)
    if origin is Literal:
        choices = typing.get_args(expected)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin is list:
        (item_type,) = typing.get_args(expected)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_check_type(f"{key}[{index}]", item, item_type) for index, item in enumerate(value)]
    if origin is dict:
        key_type, value_type = typing.get_args(expected)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {_check_type(f"{key} key", name, key_type): _check_type(f"{key}.{name}", item, value_type)
                for name, item in value.items()}
    if origin in (typing.Union, types.UnionType):  # the first alternative that takes the value
        alternatives = typing.get_args(expected)
        for alternative in alternatives:
            with contextlib.suppress(ConfigError):
                return _check_type(key, value, alternative)
        described = (" or ".join(map(repr, typing.get_args(option))) if typing.get_origin(option) is Literal
                     else option.__name__ for option in alternatives)
        raise ConfigError(f"{key}: expected {' or '.join(described)}, got {value!r}")
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (expected is int and isinstance(value, bool)) or not isinstance(value, expected):
        raise ConfigError(f"{key}: expected {expected.__name__}, got {value!r}")
    return value


def _reject_unknown(values: dict[str, Any], valid: list[str], prefix: str) -> None:
    for key in values:
        if key not in valid:
            raise ConfigError(f"unknown key '{prefix}{key}' in params; valid keys: {', '.join(valid)}")


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")

