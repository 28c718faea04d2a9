"""Typed records for `params.yaml`, one per pipeline stage, validated when loaded.

DVC adds a mistyped `dvc exp run -S train.lerning_rate=...` key without complaint, so every
section is checked here: an unknown key, a wrong type or an impossible value is a `ConfigError`
that names the key.

Each field's description is its `metadata["doc"]`, the one place a parameter is explained: the
documentation's parameters reference is generated from these records (`seq2seq.docs_reference`), and
a test fails when a field has none.
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

    sources: list[str] = field(default_factory=list, metadata={"doc": (
        "Raw corpus sources (data/raw/NAME.en and NAME.ko) to read; add a source made by `seq2seq import` here.")})
    valid_sources: list[str] = field(default_factory=lambda: ["flores200-dev"], metadata={"doc": (
        "Sources kept whole as the validation split (FLORES-200 dev by default); never sampled for test or train.")})
    test_per_source: int = field(
        default=80, metadata={"doc": "Held-out pairs sampled (seeded) from each other source into the test split."})
    max_chars: int = field(
        default=300, metadata={"doc": "Pairs whose longer side has more characters than this are dropped."})
    max_length_ratio: float = field(default=4.0, metadata={"doc": (
        "Pairs whose longer side is more than this many times the shorter one, in characters, are dropped.")})
    seed: int = field(default=1234, metadata={"doc": "Seed of the test-split sample."})

    def validate(self) -> None:
        _require(len(self.valid_sources) > 0, "prepare.valid_sources", "must name at least one source")
        _require(self.test_per_source >= 0, "prepare.test_per_source", "must be >= 0")
        _require(self.max_chars > 0, "prepare.max_chars", "must be > 0")
        _require(self.max_length_ratio >= 1.0, "prepare.max_length_ratio", "must be >= 1")


@dataclass(frozen=True)
class TokenizerConfig:
    """SentencePiece training options."""

    model_type: Literal["unigram", "bpe"] = field(default="unigram", metadata={"doc": "SentencePiece algorithm."})
    joint: bool = field(
        default=False, metadata={"doc": "One joint English+Korean model instead of one model per language."})
    vocab_size: int = field(default=8000, metadata={"doc": "Vocabulary of the English model, or of the joint model."})
    korean_vocab_size: int = field(default=4000, metadata={"doc": (
        "Vocabulary of the Korean model (when not joint): the output layer's size, the costliest part of a step.")})
    character_coverage: float = field(default=0.9995, metadata={"doc": (
        "Share of characters SentencePiece covers with pieces of their own; the rarest fall back to bytes.")})
    input_sentence_size: int = field(default=200_000, metadata={"doc": (
        "Sentences sampled (seeded) to train SentencePiece: bounds its memory on a large corpus.")})
    byte_fallback: bool = field(default=True, metadata={"doc": "Unknown characters become byte pieces instead of UNK."})
    seed: int = field(default=1234, metadata={"doc": "Seed of SentencePiece's sentence sample."})

    def validate(self) -> None:
        for key in ("vocab_size", "korean_vocab_size"):
            _require(getattr(self, key) >= 300, f"tokenizer.{key}", "must be >= 300 (256 byte pieces + specials)")
        _require(0.9 <= self.character_coverage <= 1.0, "tokenizer.character_coverage", "must be in [0.9, 1]")
        _require(self.input_sentence_size > 0, "tokenizer.input_sentence_size", "must be > 0")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the encoder-decoder."""

    cell: Literal["gru", "lstm", "rnn"] = field(default="gru", metadata={"doc": (
        "Recurrent cell of encoder and decoder: GRU, LSTM, or a plain tanh RNN (for teaching).")})
    embedding_size: int = field(default=256, metadata={"doc": "Size of the source and target embeddings."})
    encoder_hidden_size: int = field(default=256, metadata={"doc": "Units of the encoder RNN, per direction."})
    encoder_layers: int = field(default=1, metadata={"doc": "Stacked encoder RNN layers."})
    bidirectional: bool = field(default=True, metadata={"doc": (
        "Read the source in both directions (the encoder then outputs twice encoder_hidden_size).")})
    decoder_hidden_size: int = field(default=512, metadata={"doc": "Units of the decoder RNN."})
    decoder_layers: int = field(default=1, metadata={"doc": "Stacked decoder RNN layers."})
    attention: Literal["dot", "general", "bahdanau"] = field(default="general", metadata={"doc": (
        "Attention scoring: `dot` and `general` (Luong), or additive `bahdanau` (slower).")})
    input_feeding: bool = field(default=False, metadata={"doc": (
        "Feed the attentional vector back into the next decoder "
        "step (the classic step-by-step decoder, several times slower to train).")})
    dropout: float = field(default=0.1, metadata={"doc": "Dropout on embeddings and RNN outputs, in training only."})
    tie_embeddings: bool = field(default=True, metadata={"doc": "The output layer shares the Korean embedding matrix."})
    position_index: Literal["none", "learned", "relative"] = field(default="none", metadata={"doc": (
        "Position as part of each RNN input: none, a learned vector per position, or `relative` (t / source length).")})

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

    seed: int = field(default=1234, metadata={"doc": (
        "Seed of initialisation, batching, sampling and dropout: a rerun on the same machine gives the same bytes.")})
    device: Literal["auto", "cpu", "cuda"] = field(
        default="auto", metadata={"doc": "Where to train: `auto` takes a CUDA GPU when there is one."})
    nproc: int = field(default=1, metadata={"doc": (
        "Processes for the DVC stage: above 1, `seq2seq train` starts torchrun (DistributedDataParallel).")})
    threads: int = field(default=0, metadata={"doc": "torch CPU threads; 0: torch's default."})
    bf16: bool = field(default=True, metadata={"doc": (
        "bf16 autocast where the hardware runs it natively (a CUDA GPU, or a CPU of class bf16).")})
    batch_tokens: int = field(default=4096, metadata={"doc": (
        "Padded tokens per batch (sentences x longest side); batches are cut from length-sorted buckets.")})
    max_length: int = field(
        default=100, metadata={"doc": "Longest training sentence, in tokens, either side; longer pairs are skipped."})
    optimizer: Literal["adam", "adamw"] = field(default="adam", metadata={"doc": "Optimizer."})
    learning_rate: float = field(default=0.003, metadata={"doc": "Peak learning rate, reached after the warm-up."})
    weight_decay: float = field(default=0.0, metadata={"doc": "Weight decay (decoupled with adamw)."})
    warmup_steps: int = field(default=150, metadata={"doc": "Steps of linear warm-up to learning_rate."})
    schedule: Literal["inverse_sqrt", "plateau", "constant"] = field(default="inverse_sqrt", metadata={"doc": (
        "After warm-up: inverse square root decay, halving on a validation plateau, or constant.")})
    min_learning_rate: float = field(
        default=1e-5, metadata={"doc": "The floor after warm-up: plateau halvings, decay and the cool-down stop here."})
    cooldown: float = field(default=0.0, metadata={"doc": (
        "The last fraction of the steps, over which the rate falls linearly to the floor (0: none).")})
    label_smoothing: float = field(default=0.1, metadata={"doc": "Label smoothing of the cross-entropy loss."})
    clip_grad_norm: float = field(default=1.0, metadata={"doc": "Clip the gradient's norm to this (0: no clipping)."})
    max_steps: int | Literal["auto"] = field(default=2000, metadata={"doc": (
        "Training steps. A number wins on every machine; `auto` takes this machine's entry in "
        "max_steps_by_cpu_class.")})
    max_steps_by_cpu_class: dict[str, int] = field(default_factory=dict, metadata={"doc": (
        "Training steps per machine class (avx2, avx512, bf16, cuda), used while max_steps is `auto`: "
        "slower CPUs train fewer steps within the budget.")})
    max_epochs: int = field(
        default=100, metadata={"doc": "Stop after this many passes over the (weighted) training data."})
    valid_every: int = field(
        default=250, metadata={"doc": "Validate (loss, greedy chrF) and save a snapshot every N steps."})
    valid_sentences: int = field(default=400, metadata={"doc": "Validate on the first N valid pairs."})
    patience: int = field(
        default=0, metadata={"doc": "Stop after N validations without a better chrF (0: never stop early)."})
    max_minutes: float = field(default=0.0, metadata={"doc": (
        "Stop at the first step boundary after this many minutes of "
        "a run; a resumed run gets as many again (0: no limit).")})
    average_checkpoints: int = field(default=0, metadata={"doc": (
        "Average the last N validation snapshots at the end; the "
        "average becomes best.pt only if it validates better (0: off).")})
    domain_tags: bool = field(default=False, metadata={"doc": (
        "Read a domain tag (e.g. `<general>`) before every source sentence (Kobus et al. 2017).")})
    default_domain: str = field(default="general", metadata={"doc": (
        "The tag validation, evaluate and translate use unless told (a group of domains).")})
    domains: dict[str, list[str]] = field(default_factory=dict, metadata={"doc": (
        "Domain group -> its training sources; each source belongs to one group at most.")})
    source_weights: dict[str, float] = field(default_factory=dict, metadata={"doc": (
        "Source -> expected copies of each of its pairs per epoch (default 1; seeded).")})
    word_dropout: float = field(
        default=0.0, metadata={"doc": "Chance that a source token becomes UNK, in training only (0: off)."})
    subword_alpha: float = field(default=0.0, metadata={"doc": (
        "SentencePiece sampling of each training pair's segmentation, anew every epoch (0: off).")})
    distilled: Literal["off", "replace", "beside", False] = field(default="off", metadata={"doc": (
        "The teacher's translations of the train English (data/distilled, docs/distillation.md): `replace` "
        "each kept pair's Korean with the teacher's, add them `beside` the pairs, or `off` (YAML's bare off, "
        "false, means off too).")})
    distilled_weight: float = field(default=1.0, metadata={"doc": (
        "With `distilled: beside`, expected copies of each teacher pair per epoch, times its source's weight.")})
    recipe: Literal["auto", "off"] = field(default="auto", metadata={"doc": (
        "`auto`: on a machine class with a recipe (`recipes.cuda` on a GPU) its values replace the model and "
        "train values it names; `off`: params.yaml's model and train as written on every machine.")})

    def __post_init__(self) -> None:
        if self.distilled is False:  # YAML reads a bare `off` as false
            object.__setattr__(self, "distilled", "off")

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
        _require(self.distilled_weight >= 0, "train.distilled_weight", "must be >= 0")
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

    beam_size: int = field(default=5, metadata={"doc": "Beam size (1: greedy); also translate's and serve's default."})
    length_penalty: float = field(
        default=1.0, metadata={"doc": "GNMT length penalty alpha: higher favours longer outputs."})
    max_output_ratio: float = field(
        default=2.0, metadata={"doc": "An output has at most ratio x source pieces + 10 pieces."})
    no_repeat_ngram_size: int = field(
        default=0, metadata={"doc": "Forbid repeating any n-gram of this many pieces (0: allow repeats)."})
    batch_size: int = field(default=64, metadata={"doc": "Sentences decoded together."})
    samples: int = field(default=20, metadata={"doc": "Rows of reports/samples.md."})

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

    enabled: bool = field(default=False, metadata={"doc": (
        "Run the reverse and backtranslate stages and train on their synthetic pairs; off, both stages only say so.")})
    reverse_steps: int = field(default=1200, metadata={"doc": (
        "Training steps of the Korean->English model (its other settings: the model and train sections).")})
    search: Literal["beam", "greedy", "sampling"] = field(default="beam", metadata={"doc": (
        "How the synthetic English is made: beam, greedy, or sampling from the model's distribution (seeded).")})
    beam_size: int = field(default=5, metadata={"doc": "Beam size of the reverse model's beam search."})
    length_penalty: float = field(
        default=1.0, metadata={"doc": "GNMT length penalty of the reverse model's beam search."})
    max_sentences: int = field(
        default=0, metadata={"doc": "Translate a seeded sample of this many monolingual sentences (0: all)."})
    weight: float = field(
        default=1.0, metadata={"doc": "Expected copies of each synthetic pair per epoch (as train.source_weights)."})
    seed: int = field(default=1234, metadata={"doc": "Seed of the sample and of the sampling search."})

    def validate(self) -> None:
        _require(self.reverse_steps > 0, "backtranslation.reverse_steps", "must be > 0")
        _require(self.beam_size >= 1, "backtranslation.beam_size", "must be >= 1")
        _require(self.length_penalty >= 0, "backtranslation.length_penalty", "must be >= 0")
        _require(self.max_sentences >= 0, "backtranslation.max_sentences", "must be >= 0 (0: all)")
        _require(self.weight >= 0, "backtranslation.weight", "must be >= 0")


RecipeValues = dict[str, dict[str, int | float | bool | str]]  # section (model, train) -> key -> value
RECIPE_SECTIONS = ("model", "train")
# Keys a recipe cannot set: what decides which recipe applies, what is read before it applies (the
# processes `seq2seq train` starts), and the steps, whose one place per class is max_steps_by_cpu_class.
NOT_IN_A_RECIPE = {
    "train.recipe": "it decides whether a recipe applies",
    "train.device": "the device decides which recipe applies",
    "train.nproc": "the processes are started before a recipe applies",
    "train.max_steps": "each class's steps are in train.max_steps_by_cpu_class",
    "train.max_steps_by_cpu_class": "each class's steps are in train.max_steps_by_cpu_class",
}


@dataclass(frozen=True)
class RecipesConfig:
    """Settings of a machine class (a GPU: `cuda`) that replace the `model` and `train` values they
    name there, while `train.recipe` is `auto` (docs/gpu.md). `seq2seq params --class cuda` prints
    the result."""

    cuda: RecipeValues = field(default_factory=dict, metadata={"doc": (
        "The GPU recipe: `{model: {key: value}, train: {key: value}}`, applied where training runs on "
        "CUDA (not to the reverse model); each value is checked as the key's own.")})

    def validate(self) -> None:
        for machine, recipe in self.by_class().items():
            for section, values in recipe.items():
                _require(section in RECIPE_SECTIONS, f"recipes.{machine}.{section}",
                         f"a recipe sets {' and '.join(RECIPE_SECTIONS)} keys only")
                for key in values:
                    reason = NOT_IN_A_RECIPE.get(f"{section}.{key}")
                    _require(reason is None, f"recipes.{machine}.{section}.{key}", f"not in a recipe: {reason}")

    def by_class(self) -> dict[str, RecipeValues]:
        """Machine class -> its recipe, for the classes that have one."""
        return {machine: recipe for machine, recipe in dataclasses.asdict(self).items() if recipe}


@dataclass(frozen=True)
class DistillConfig:
    """Sequence-level knowledge distillation: a teacher translates the train English (docs/distillation.md)."""

    teacher: str = field(default="", metadata={"doc": (
        "The teacher: a checkpoint (.pt) to translate with, or a published distilled corpus folder (pulled "
        "with its .dvc pointer) to take as it is; empty: off, the stage only says so.")})
    md5: str = field(default="", metadata={"doc": (
        "The md5 of the teacher file (or of the published folder's card.json): the stage refuses another "
        "file, and DVC reruns it when this changes.")})
    beam_size: int = field(default=5, metadata={"doc": "Beam size of the teacher's search."})
    length_penalty: float = field(default=1.3, metadata={"doc": "GNMT length penalty of the teacher's search."})
    max_output_ratio: float = field(
        default=2.0, metadata={"doc": "A teacher output has at most ratio x source pieces + 10 pieces."})
    no_repeat_ngram_size: int = field(
        default=4, metadata={"doc": "The teacher never repeats an n-gram of this many pieces (0: allow)."})
    batch_size: int = field(default=64, metadata={"doc": "Sentences the teacher decodes together."})
    sources: list[str] = field(default_factory=list, metadata={"doc": (
        "Translate only the train lines of these sources (empty: all); the others keep their references.")})
    max_sentences: int = field(
        default=0, metadata={"doc": "Translate a seeded sample of this many train lines (0: all of them)."})
    min_length_ratio: float = field(default=0.15, metadata={"doc": (
        "Drop an output with fewer Korean characters than this times the English ones (rule too_short; "
        "0.1% of the human pairs are below 0.25).")})
    max_length_ratio: float = field(default=2.0, metadata={"doc": (
        "Drop an output with more Korean characters than this times the English ones (rule too_long, a "
        "runaway; 0.1% of the human pairs are above 1.57).")})
    repeat_limit: int = field(default=3, metadata={"doc": (
        "Drop an output where a run of 1 to 4 words comes this many times in a row (rule repeat; 0: keep all).")})
    seed: int = field(default=1234, metadata={"doc": "Seed of the max_sentences sample."})

    def validate(self) -> None:
        _require(self.beam_size >= 1, "distill.beam_size", "must be >= 1")
        _require(self.length_penalty >= 0, "distill.length_penalty", "must be >= 0")
        _require(self.max_output_ratio > 0, "distill.max_output_ratio", "must be > 0")
        _require(self.no_repeat_ngram_size >= 0, "distill.no_repeat_ngram_size", "must be >= 0 (0: allow)")
        _require(self.batch_size >= 1, "distill.batch_size", "must be >= 1")
        _require(self.max_sentences >= 0, "distill.max_sentences", "must be >= 0 (0: all)")
        _require(0 <= self.min_length_ratio < self.max_length_ratio, "distill.min_length_ratio",
                 "must be >= 0 and below distill.max_length_ratio")
        _require(self.repeat_limit == 0 or self.repeat_limit >= 2, "distill.repeat_limit", "must be 0 (off) or >= 2")


@dataclass(frozen=True)
class Params:
    """All of `params.yaml`."""

    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    backtranslation: BacktranslationConfig = field(default_factory=BacktranslationConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    recipes: RecipesConfig = field(default_factory=RecipesConfig)


def apply_recipe(params: Params, machine: str) -> Params:
    """`params` with the recipe of machine class `machine` (`recipes.cuda` for `cuda`) in place of the
    model and train values it names, checked as params.yaml is (a ConfigError names the recipe and the
    key); `params` itself where the class has no recipe. Whether a recipe is to apply at all
    (`train.recipe`, the reverse model) is the caller's decision."""
    recipe = params.recipes.by_class().get(machine)
    if not recipe:
        return params
    raw = {name: dataclasses.asdict(getattr(params, name)) for name in typing.get_type_hints(Params)
           if name != "recipes"}
    for section, values in recipe.items():
        raw[section].update(values)
    try:
        return dataclasses.replace(parse_params(raw), recipes=params.recipes)
    except ConfigError as error:
        raise ConfigError(f"recipes.{machine}: {error}") from None


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


def decoding_settings(params_path: str | Path | None = "params.yaml", **options: Any) -> EvaluateConfig:
    """The `evaluate` section of `params_path` (its defaults where there is no such file, or with
    None), with each of `options` that is not None in place of its value: how `translate` decodes
    unless told otherwise."""
    path = None if params_path is None else Path(params_path)
    config = load_params(path).evaluate if path is not None and path.exists() else EvaluateConfig()
    config = dataclasses.replace(config, **{name: value for name, value in options.items() if value is not None})
    config.validate()
    return config


def parse_params(raw: dict[str, Any]) -> Params:
    """Turn a plain dict (as YAML gives it) into validated `Params`."""
    if not isinstance(raw, dict):
        raise ConfigError("params must be a mapping of stage sections")
    record_types = typing.get_type_hints(Params)
    _reject_unknown(raw, list(record_types), prefix="")
    params = Params(**{name: _build(record_types[name], raw.get(name) or {}, name) for name in record_types})
    for machine in params.recipes.by_class():  # a bad recipe stops every machine, not only its own class
        apply_recipe(params, machine)
    return params


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

