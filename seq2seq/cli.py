"""The `seq2seq` command: one subcommand per pipeline stage, plus `translate` and `bench`.

Thin on purpose: each command parses options and calls one function of the stage's module.
Heavy modules (torch, sentencepiece, sacrebleu) are imported inside the commands, so that
`seq2seq --help` and `translate` start quickly.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from seq2seq import paths
from seq2seq.errors import UserError

if TYPE_CHECKING:
    from seq2seq.terms import KeptTerms

PARAMS = click.option("--params", "params_path", type=click.Path(path_type=Path), default="params.yaml",
                      show_default=True, help="Pipeline parameters.")


def _kept_terms_options(command: Callable) -> Callable:
    """The options of kept terms (`seq2seq.terms`), read by `_kept_terms`."""
    options = [
        click.option("--glossary", "glossary_path", type=click.Path(path_type=Path),
                     help="A glossary file: english<TAB>korean a line (# comments); each English term is "
                          "translated as its Korean."),
        click.option("--keep", "keep_path", type=click.Path(path_type=Path),
                     help="A do-not-translate file: one English term a line (# comments), kept as it is."),
        click.option("--glossary-term", "glossary_terms", multiple=True, metavar="ENGLISH=KOREAN",
                     help="One glossary entry (repeatable)."),
        click.option("--keep-term", "keep_terms", multiple=True, metavar="TERM",
                     help="One term not to translate (repeatable)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _kept_terms(glossary_path: Path | None, keep_path: Path | None, glossary_terms: tuple[str, ...],
                keep_terms: tuple[str, ...]) -> KeptTerms:
    """The `KeptTerms` of the kept-terms options (`UserError` on a bad file line; none without options)."""
    from seq2seq.terms import glossary_entry, load_terms

    return load_terms(glossary_path, keep_path, dict(map(glossary_entry, glossary_terms)), keep_terms)


class _Group(click.Group):
    """Turns a `UserError` into `error: message` on stderr and exit code 1, without a traceback; and
    loads the `bench` group (measurement, not product: it lives beside the benchmarks it runs, in
    `seq2seq.bench.commands`) only when asked for, so no pipeline stage imports it."""

    lazy_commands = {"bench": ("seq2seq.bench.commands", "bench")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy_commands])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy_commands:
            module, attribute = self.lazy_commands[name]
            return getattr(importlib.import_module(module), attribute)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(1)
        except KeyboardInterrupt as interrupt:
            click.echo("interrupted", err=True)
            sys.exit(getattr(interrupt, "exit_code", 130))  # training's StopRequested: 143 after SIGTERM


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """English→Korean neural machine translation: an RNN encoder-decoder with attention.

    The stages run in order (dvc repro runs them all): prepare, tokenizer, encode, reverse and
    backtranslate (back-translation, off by default), distill (knowledge distillation, off by default),
    train, evaluate, plots.
    """


@main.command()
@PARAMS
@click.option("--raw", "raw_dir", type=click.Path(path_type=Path), default=paths.RAW, show_default=True,
              help="The raw corpus folder (NAME.en, NAME.ko and SOURCES.md per source).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=paths.PREPARED, show_default=True,
              help="Where the train, valid and test splits go.")
@click.option("--stats", "stats_path", type=click.Path(path_type=Path), default=paths.PREPARE_METRICS,
              show_default=True, help="The pairs kept and dropped, by reason (JSON).")
def prepare(params_path: Path, raw_dir: Path, out_dir: Path, stats_path: Path) -> None:
    """Clean the raw corpus and split it into train, valid and test."""
    from seq2seq.config import load_params
    from seq2seq.files import check_output
    from seq2seq.prepare import prepare as run

    check_output(out_dir, folder=True)
    check_output(stats_path)
    stats = run(raw_dir, out_dir, stats_path, load_params(params_path).prepare)
    click.echo(f"pairs: {stats['pairs']}; dropped: {stats['dropped']}")


@main.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--name", required=True, help="The new source's name, e.g. my-corpus (data/raw/NAME.en, NAME.ko).")
@click.option("--licence", required=True, help="Its licence, for the data card (e.g. 'CC BY 4.0').")
@click.option("--form", type=click.Choice(["tsv", "moses", "tmx"]),
              help="tsv: English<TAB>Korean lines; moses: FILE.en FILE.ko; tmx. Default: moses for two files, "
                   "else by extension.")
@click.option("--domain", default="", help="What kind of text it is, for the data card (e.g. 'news').")
@click.option("--origin", default="", help="Where it comes from, for the data card (default: the file names).")
@click.option("--raw", "raw_dir", type=click.Path(path_type=Path), default=paths.RAW, show_default=True,
              help="The raw corpus folder the source is added to.")
def import_(files: tuple[Path, ...], name: str, licence: str, form: str | None, domain: str, origin: str,
            raw_dir: Path) -> None:
    """Add your own English-Korean corpus (FILES: a TSV, a Moses pair or a TMX) as a source of data/raw."""
    from seq2seq.corpus_import import import_corpus

    pairs = import_corpus(list(files), name, licence, raw_dir, form, domain, origin)
    click.echo(f"wrote {raw_dir}/{name}.en and {name}.ko ({pairs:,} pairs) and its row in {raw_dir}/SOURCES.md")
    click.echo(f"next: add {name} to prepare.sources and to a group of train.domains in params.yaml, then "
               f"`dvc add {raw_dir}`, `dvc repro` and `dvc push`")


@main.command()
@PARAMS
@click.option("--prepared", "prepared_dir", type=click.Path(path_type=Path), default=paths.PREPARED,
              show_default=True, help="The prepared splits; the tokenizer trains on the train split.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=paths.TOKENIZER, show_default=True,
              help="Where the tokenizer models go (en.model, ko.model).")
def tokenizer(params_path: Path, prepared_dir: Path, out_dir: Path) -> None:
    """Train the SentencePiece tokenizer on the train split."""
    from seq2seq.config import load_params
    from seq2seq.files import check_output
    from seq2seq.tokenizer import train_tokenizer

    check_output(out_dir, folder=True)
    train_tokenizer(prepared_dir, out_dir, load_params(params_path).tokenizer)
    click.echo(f"tokenizer written to {out_dir}/")


@main.command()
@click.option("--prepared", "prepared_dir", type=click.Path(path_type=Path), default=paths.PREPARED,
              show_default=True, help="The prepared splits (the prepare stage's output).")
@click.option("--tokenizer", "tokenizer_dir", type=click.Path(path_type=Path), default=paths.TOKENIZER,
              show_default=True, help="The tokenizer folder (the tokenizer stage's output).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=paths.ENCODED, show_default=True,
              help="Where the token-id files go.")
def encode(prepared_dir: Path, tokenizer_dir: Path, out_dir: Path) -> None:
    """Tokenise every split into memory-mappable token-id files."""
    from seq2seq.data import encode_splits
    from seq2seq.files import check_output
    from seq2seq.tokenizer import load_tokenizer

    check_output(out_dir, folder=True)
    counts = encode_splits(prepared_dir, load_tokenizer(tokenizer_dir), out_dir)
    click.echo(f"tokens per split: {counts}")


_TRAIN_PATHS = {  # option: (parameter, default, help)
    "--encoded": ("encoded_dir", paths.ENCODED, "The encoded data (the encode stage's output)."),
    "--prepared": ("prepared_dir", paths.PREPARED, "The prepared splits (valid references)."),
    "--tokenizer": ("tokenizer_dir", paths.TOKENIZER, "The tokenizer folder (the tokenizer stage's output)."),
    "--model-dir": ("model_dir", paths.MODEL_DIR, "Where last.pt, best.pt and the snapshots go."),
    "--live": ("live_dir", paths.LIVE, "Where dvclive writes the curves and the summary (metrics.json)."),
    "--synthetic": ("synthetic_dir", paths.BACKTRANSLATED, "The back-translated pairs (empty when off)."),
    "--distilled": ("distilled_dir", paths.DISTILLED, "The distilled corpus, read when train.distilled is on."),
}


def _train_path_options(skip: tuple[str, ...] = (), **defaults: Path) -> Callable[[Callable], Callable]:
    """A decorator adding an option for each of `_TRAIN_PATHS` (what `TrainPaths` holds) but those named
    in `skip` to a click command; `defaults` (by name) replace theirs."""
    def add(command: Callable) -> Callable:
        for option, (name, default, description) in reversed(_TRAIN_PATHS.items()):
            if name in skip:
                continue
            command = click.option(option, name, type=click.Path(path_type=Path),
                                   default=defaults.get(name, default), show_default=True, help=description)(command)
        return command
    return add


@main.command()
@PARAMS
@click.option("--resume", is_flag=True, help="Continue from MODEL_DIR/last.pt where it stopped.")
@_train_path_options()
def train(params_path: Path, resume: bool, **dirs: Path) -> None:
    """Train the encoder-decoder.

    With `train.nproc` > 1 it starts itself under torchrun, one process per share of each step's
    batches; started by torchrun (also multi-node), it joins the run.
    """
    from seq2seq.config import load_params
    from seq2seq.train import TrainPaths
    from seq2seq.train import train as run
    from seq2seq.training_process import run_under_torchrun

    params = load_params(params_path)
    if params.train.nproc > 1 and "LOCAL_RANK" not in os.environ:
        arguments = ["train", "--params", str(params_path)]
        arguments += [part for option, (name, _, _) in _TRAIN_PATHS.items() for part in (option, str(dirs[name]))]
        sys.exit(run_under_torchrun(params.train.nproc, [*arguments, "--resume"] if resume else arguments))
    progress = run(params, TrainPaths(**dirs), resume=resume)
    if progress.best_step:
        click.echo(f"best valid chrF {progress.best_chrf:.2f} at step {progress.best_step}; {progress.step} steps "
                   f"in {progress.seconds / 60:.1f} min ({progress.target_tokens / progress.seconds:,.0f} target "
                   "tokens/s, validation included)")


@main.command("params")
@PARAMS
@click.option("--class", "machine", help="Machine class: avx2, avx512, bf16 (CPUs) or cuda (a GPU). Default: "
              "this machine's (cuda where train.device picks a GPU, else the CPU's class).")
def params_(params_path: Path, machine: str | None) -> None:
    """Print the params the train stage trains with on a machine class (YAML): params.yaml's, with the
    class's recipe applied (recipes.cuda on a GPU) and train.max_steps the class's number. Trains nothing."""
    from seq2seq.config import MACHINE_CLASSES, load_params
    from seq2seq.training_budget import effective_params_yaml, this_machine_class

    if machine is not None and machine not in MACHINE_CLASSES:
        raise UserError(f"--class: '{machine}' is not a machine class ({', '.join(MACHINE_CLASSES)})")
    params = load_params(params_path)
    click.echo(effective_params_yaml(params, machine or this_machine_class(params.train)), nl=False)


@main.command()
@PARAMS
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=paths.BEST_MODEL,
              show_default=True, help="The checkpoint to evaluate.")
@click.option("--prepared", "prepared_dir", type=click.Path(path_type=Path), default=paths.PREPARED,
              show_default=True, help="The prepared splits; the test split is translated and scored.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where to decode (auto: a CUDA GPU if there is one).")
@click.option("--metrics", "metrics_path", type=click.Path(path_type=Path), default=paths.EVALUATE_METRICS,
              show_default=True, help="The headline scores (what `dvc metrics show` prints).")
@click.option("--details", "details_path", type=click.Path(path_type=Path), default=paths.EVALUATE_DETAILS,
              show_default=True, help="Every score, per source too, with sacrebleu's signatures and the speed.")
@click.option("--train-summary", type=click.Path(path_type=Path), default=paths.TRAIN_SUMMARY, show_default=True,
              help="The training run's summary, whose valid chrF, steps and minutes join the headline.")
@click.option("--hypotheses", "hypotheses_path", type=click.Path(path_type=Path), default=paths.HYPOTHESES,
              show_default=True, help="The test split's translations, one per line.")
@click.option("--samples", "samples_path", type=click.Path(path_type=Path), default=paths.SAMPLES,
              show_default=True, help="Sample translations per source, as Markdown.")
def evaluate(params_path: Path, model_path: Path, prepared_dir: Path, device: str, metrics_path: Path,
             details_path: Path, train_summary: Path, hypotheses_path: Path, samples_path: Path) -> None:
    """Translate the test split and score it (chrF, BLEU) with sacrebleu."""
    from seq2seq.config import load_params
    from seq2seq.evaluate import evaluate as run
    from seq2seq.files import check_output

    outputs = metrics_path, details_path, hypotheses_path, samples_path
    for output in outputs:
        check_output(output)
    metrics = run(model_path, prepared_dir, *outputs, load_params(params_path).evaluate, device, train_summary)
    click.echo(f"test: {metrics['test']} ({metrics['sentences_per_second']} sentences/s)")


@main.command()
@PARAMS
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=paths.BEST_MODEL,
              show_default=True, help="The checkpoint to calibrate.")
@click.option("--out", "out_path", type=click.Path(path_type=Path),
              help="The calibration file (default: beside the model, NAME.confidence.json, where translate reads it).")
@click.option("--prepared", "prepared_dir", type=click.Path(path_type=Path), default=paths.PREPARED,
              show_default=True, help="The prepared splits: fitted on valid, measured on test.")
@click.option("--metrics", "metrics_path", type=click.Path(path_type=Path), default=paths.CONFIDENCE_METRICS,
              show_default=True, help="Spearman of the confidence with sentence chrF, valid and test (JSON).")
@click.option("--valid-sentences", type=click.IntRange(min=1), default=1000, show_default=True,
              help="N valid sentences, spread over the split, are decoded and fitted on.")
@click.option("--test-sentences", type=click.IntRange(min=0),
              help="N test sentences, spread over the split, measure the confidence (default: all; 0: none).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where to decode (auto: a CUDA GPU if there is one).")
def calibrate(params_path: Path, model_path: Path, out_path: Path | None, prepared_dir: Path, metrics_path: Path,
              valid_sentences: int, test_sentences: int | None, device: str) -> None:
    """Fit the per-sentence confidence (expected sentence chrF) of a model on the valid split."""
    from seq2seq.calibrate import calibrate as run
    from seq2seq.confidence import calibration_path
    from seq2seq.config import load_params
    from seq2seq.files import check_output

    out_path = out_path or calibration_path(model_path)
    check_output(metrics_path)
    check_output(out_path)
    metrics = run(model_path, prepared_dir, out_path, metrics_path, load_params(params_path).evaluate,
                  valid_sentences, test_sentences, device)
    click.echo(f"wrote {out_path}; Spearman with sentence chrF: valid "
               f"{metrics['valid']['spearman_confidence']}" + (f", test {metrics['test']['spearman_confidence']}"
                                                               if "test" in metrics else ""))


@main.command()
@PARAMS
@click.option("--resume", is_flag=True, help="Continue from MODEL_DIR/last.pt where it stopped.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=paths.REVERSE_MODEL, show_default=True,
              help="Where the trained model's best.pt goes (or, when off, a note saying so).")
@click.option("--summary", "summary_path", type=click.Path(path_type=Path), default=paths.REVERSE_SUMMARY,
              show_default=True, help="The reverse run's summary (JSON): steps, minutes, valid scores.")
@_train_path_options(skip=("synthetic_dir", "distilled_dir"), model_dir=paths.REVERSE_RUN,
                     live_dir=paths.REVERSE_RUN / "live")
def reverse(params_path: Path, resume: bool, out_dir: Path, summary_path: Path, **dirs: Path) -> None:
    """Train the Korean->English model for back-translation (when backtranslation.enabled)."""
    from seq2seq.config import load_params
    from seq2seq.files import check_output
    from seq2seq.reverse import train_reverse
    from seq2seq.train import TrainPaths

    check_output(out_dir, folder=True)
    summary = train_reverse(load_params(params_path), TrainPaths(**dirs), out_dir, summary_path, resume)
    click.echo(f"reverse model: {summary}")


@main.command()
@PARAMS
@click.option("--mono", "mono_dir", type=click.Path(path_type=Path), default=paths.MONO, show_default=True,
              help="Korean text, one sentence a line, in *.ko files.")
@click.option("--reverse", "reverse_dir", type=click.Path(path_type=Path), default=paths.REVERSE_MODEL,
              show_default=True, help="The reverse (Korean->English) model's folder, with its best.pt.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=paths.BACKTRANSLATED, show_default=True,
              help="Where the synthetic pairs go (train.en, train.ko).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the reverse model decodes (auto: a CUDA GPU if there is one).")
def backtranslate(params_path: Path, mono_dir: Path, reverse_dir: Path, out_dir: Path, device: str) -> None:
    """Translate the Korean text into English: synthetic pairs for training (when backtranslation.enabled)."""
    from seq2seq.backtranslate import backtranslate as run
    from seq2seq.config import load_params
    from seq2seq.device import pick_device
    from seq2seq.files import check_output

    check_output(out_dir, folder=True)
    stats = run(mono_dir, reverse_dir, out_dir, load_params(params_path).backtranslation, pick_device(device))
    click.echo(f"back-translated: {stats}")


@main.command()
@PARAMS
@click.option("--teacher", type=click.Path(path_type=Path),
              help="The teacher checkpoint (.pt), or a published distilled folder (default: distill.teacher; "
                   "that one must have the md5 distill.md5).")
@click.option("--prepared", "prepared_dir", type=click.Path(path_type=Path), default=paths.PREPARED,
              show_default=True, help="The prepared splits: train.en is translated, train.source picks each tag.")
@click.option("--tokenizer", "tokenizer_dir", type=click.Path(path_type=Path), default=paths.TOKENIZER,
              show_default=True, help="The student's tokenizer: the teacher must have been trained with it.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=paths.DISTILLED, show_default=True,
              help="Where the distilled corpus and its card go (or, when off, a note saying so).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the teacher decodes (auto: a CUDA GPU if there is one).")
def distill(params_path: Path, teacher: Path | None, prepared_dir: Path, tokenizer_dir: Path, out_dir: Path,
            device: str) -> None:
    """Translate the train English with a teacher model: a distilled corpus for train.distilled."""
    import shlex

    from seq2seq.config import load_params
    from seq2seq.device import pick_device
    from seq2seq.distill import distill as run

    card = run(teacher, prepared_dir, tokenizer_dir, out_dir, load_params(params_path).distill, pick_device(device),
               shlex.join(["seq2seq", *sys.argv[1:]]))
    if card.get("off"):
        click.echo(f"distillation is off (distill.teacher is empty): wrote {out_dir}/OFF.md")
    else:
        click.echo(f"distilled: kept {card['counts']['kept']:,} of {card['counts']['translated']:,} lines; dropped "
                   f"{card['counts']['dropped']}; wrote {out_dir}/")


@main.command()
def plots() -> None:
    """Draw the valid curves and per-source test chrF as PNG images in plots/ (they render offline)."""
    from seq2seq.plots import draw_plots

    for path in draw_plots():
        click.echo(f"wrote {path}")


@main.command()
@click.argument("sentences", nargs=-1)
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=paths.BEST_MODEL,
              show_default=True, help="The checkpoint to translate with (any best.pt).")
@click.option("--beam", "beam_size", type=click.IntRange(min=1), help="Beam size (1: greedy).")
@click.option("--length-penalty", type=click.FloatRange(min=0), help="GNMT length penalty alpha.")
@click.option("--max-output-ratio", type=click.FloatRange(min=0, min_open=True),
              help="Output tokens at most this ratio x input tokens + 10.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Sentences decoded together.")
@click.option("--attention", "attention_png", type=click.Path(path_type=Path),
              help="Also draw the attention weights of the (single) sentence as a PNG heatmap.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True,
              help="Where to decode (auto: a CUDA GPU if there is one).")
@click.option("--domain", help="Domain tag to translate with (models trained with train.domain_tags; "
              "default: the model's default domain, e.g. general).")
@click.option("--no-repeat-ngram", "no_repeat_ngram_size", type=click.IntRange(min=0),
              help="Never repeat an n-gram of this many pieces (0: allow).")
@click.option("--quantize", is_flag=True, help="int8 dynamic quantization (CPU): faster, slightly different output.")
@click.option("--split/--no-split", "split_sentences", default=True, show_default=True,
              help="Split each text into sentences, translate them, and join the translations.")
@click.option("--n-best", type=click.IntRange(min=1), default=1, show_default=True,
              help="Give each sentence's N best translations (N at most the beam size), one row each "
                   "(line, sentence, rank[, score], text), or a `candidates` list with --json.")
@click.option("--scores", is_flag=True,
              help="Give each translation's score, its length-normalised log-probability (`score<TAB>text`; "
                   "with --json, also its plain log_prob).")
@click.option("--json", "as_json", is_flag=True,
              help="Write JSON Lines: an object per input line with its text and sentences.")
@click.option("--alignments", is_flag=True,
              help="Give each translation's word alignment: i-j pairs (source word i, target word j, from 0; "
              "Pharaoh format) before the text after a tab, or an `alignment` field with --json.")
@click.option("--format", "file_format", type=click.Choice(["txt", "html", "md", "srt"]), default="txt",
              show_default=True, help="txt: one text a line; html, md (Markdown), srt (subtitles): a whole "
              "document, translated with its markup, code and timing kept.")
@click.option("--input", "input_path", type=click.Path(path_type=Path), help="Read this file instead of "
              "standard input.")
@click.option("--output", "output_path", type=click.Path(path_type=Path), help="Write this file (whole, "
              "or not at all) instead of standard output.")
@click.option("--confidence", "show_confidence", is_flag=True,
              help="Give each translation's confidence, the expected sentence chrF (0-100) of its least confident "
                   "sentence, just before the text (with --json, each sentence's too); needs `seq2seq calibrate`.")
@click.option("--min-confidence", type=click.FloatRange(min=0, max=100),
              help="Flag each sentence whose confidence is below this with [?] (--withhold: leave it out).")
@click.option("--withhold", is_flag=True,
              help="With --min-confidence: leave low-confidence sentences out (a line of only such sentences is "
                   "empty), each noted on stderr.")
@_kept_terms_options
@PARAMS
def translate(sentences: tuple[str, ...], model_path: Path, attention_png: Path | None, device: str,
              domain: str | None, quantize: bool, split_sentences: bool, n_best: int, scores: bool, as_json: bool,
              alignments: bool, file_format: str, input_path: Path | None, output_path: Path | None,
              show_confidence: bool, min_confidence: float | None, withhold: bool, params_path: Path,
              glossary_path: Path | None, keep_path: Path | None, glossary_terms: tuple[str, ...],
              keep_terms: tuple[str, ...],
              **decoding: int | float | None) -> None:
    """Translate English SENTENCES into Korean (no argument or `-`: read standard input, one text a
    line, each translated as soon as it has come; a line of several sentences gives one line).

    Decoding options left out take their value from the `evaluate` section of --params (when the
    file exists; else the built-in defaults). With --n-best, --scores or --json, each output line is
    tab-separated fields or a JSON object (docs/scoring.md); the n-best lists are per sentence. With
    a glossary or a do-not-translate list, those terms are kept (docs/terms.md).
    """
    terms = _kept_terms(glossary_path, keep_path, glossary_terms, keep_terms)
    if any(not s.strip() for s in sentences):
        raise UserError("an empty sentence was given; pass text, or `-` to read standard input")
    if attention_png and (len(sentences) != 1 or sentences == ("-",)):
        raise UserError("--attention draws one sentence: pass exactly one SENTENCE as an argument")
    if withhold and min_confidence is None:
        raise UserError("--withhold needs --min-confidence: the confidence below which a sentence is left out")
    from seq2seq.files import check_output
    from seq2seq.formats import Shown, output_lines
    from seq2seq.terms import TermTranslator
    from seq2seq.translate import decode_lines, plot_attention

    from_stdin = not sentences or sentences == ("-",)
    if input_path and not from_stdin:
        raise UserError("give SENTENCES or --input, not both")
    if input_path and not input_path.is_file():
        raise UserError(f"cannot read {input_path}: {'it is a folder' if input_path.is_dir() else 'no such file'}")
    if file_format != "txt" and (alignments or as_json or scores or n_best > 1):
        raise UserError(f"--format {file_format} writes the document translated: --alignments, --json, --scores "
                        "and --n-best go with --format txt")
    if terms and (file_format != "txt" or as_json or scores or n_best > 1 or alignments or show_confidence
                  or min_confidence is not None):
        raise UserError("kept terms (--glossary, --keep and their -term options) go with plain text output: not "
                        "with --format html|md|srt, --json, --scores, --n-best, --alignments or confidence options")
    if alignments and n_best > 1 and not as_json:
        raise UserError("--alignments with --n-best needs --json (the rows of an n-best list have no alignment)")
    for path in filter(None, [attention_png, output_path]):
        check_output(path)
    if file_format != "txt":
        from seq2seq.markup import read_document

        documents = [read_document(input_path, sys.stdin.buffer)] if from_stdin else [
            (text.removesuffix("\n") + "\n", "<argument>") for text in sentences]  # one a line
    translator = TermTranslator(model_path, device=device, domain=domain, quantize=quantize, terms=terms,
                                split_sentences=split_sentences, params_path=params_path,
                                min_confidence=min_confidence, withhold=withhold, **decoding)
    translator.check_n_best(n_best)
    if show_confidence:
        translator.require_calibration()
    if file_format != "txt":
        from seq2seq.markup import translate_document, translator_aligner

        aligner = translator_aligner(translator)
        _write_or_echo(output_path, "".join(translate_document(document, file_format, aligner, name)
                                            for document, name in documents))
        return
    lines = decode_lines(input_path.open("rb") if input_path else sys.stdin.buffer) if from_stdin else None
    if terms:  # masked, translated and restored text by text (seq2seq.terms)
        output = translator.translate_stream(lines) if lines is not None else translator.translate(list(sentences))
    else:
        translations = (translator.translation_stream(lines, n_best, alignments) if lines is not None else
                        translator.translate_detailed(list(sentences), n_best=n_best, alignments=alignments))
        output = output_lines(translations, Shown(scores, n_best, alignments, show_confidence, min_confidence),
                              as_json)
    if output_path:
        _write_or_echo(output_path, "".join(line + "\n" for line in output))
    for line in [] if output_path else output:
        click.echo(line)
        sys.stdout.flush()  # a line typed on standard input is answered at once
    if attention_png:
        plot_attention(*translator.attention(sentences[0]), attention_png)
        click.echo(f"attention heatmap written to {attention_png}", err=True)


def _write_or_echo(output_path: Path | None, text: str) -> None:
    """`text` into the file `output_path` (atomically), else onto standard output."""
    if output_path is None:
        click.echo(text, nl=False)
        return
    from seq2seq.files import write_text

    write_text(output_path, text)
    click.echo(f"translation written to {output_path}", err=True)


@main.command()
@click.option("--source", "english_path", type=click.Path(path_type=Path, dir_okay=False),
              help="English sentences, one a line (with --target; neither: English<TAB>Korean lines on stdin).")
@click.option("--target", "korean_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Their Korean translations, a line each.")
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=paths.BEST_MODEL,
              show_default=True, help="The checkpoint to score with (any best.pt).")
@click.option("--json", "as_json", is_flag=True,
              help="Write JSON Lines (score, log_prob, pieces, piece_log_probs) instead of score<TAB>log_prob.")
@click.option("--output", "output_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Write here (whole or not at all) instead of standard output.")
@click.option("--length-penalty", type=click.FloatRange(min=0), help="GNMT length penalty alpha of the score.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Pairs scored together.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True,
              help="Where to score (auto: a CUDA GPU if there is one).")
@click.option("--domain", help="Domain tag to score with (models trained with train.domain_tags; "
              "default: the model's default domain).")
@PARAMS
def score(english_path: Path | None, korean_path: Path | None, model_path: Path, as_json: bool,
          output_path: Path | None, device: str, domain: str | None, params_path: Path,
          **settings: int | float | None) -> None:
    """Score given translations: each Korean sentence's log-probability as the translation of its
    English one, per sentence and per piece, by a teacher-forced pass (one sentence a line each).

    A line per pair, in order: score<TAB>log_prob (score: length-normalised, as the beam search
    ranks), or a JSON object with --json. All the input is checked first: a missing tab, an empty
    sentence or files of unequal lengths stop it, naming the file and line, before anything is written.
    """
    from seq2seq.files import atomic_path, check_output
    from seq2seq.scoring import score_command
    from seq2seq.translate import Translator

    if output_path:
        check_output(output_path)
    translator = Translator(model_path, device=device, domain=domain, params_path=params_path, **settings)
    arguments = (translator, english_path, korean_path)
    if output_path is None:
        score_command(*arguments, sys.stdout, as_json, stdin=sys.stdin.buffer)
        return
    with atomic_path(output_path) as temp, temp.open("w", encoding="utf-8") as out:
        count = score_command(*arguments, out, as_json, stdin=sys.stdin.buffer)
    click.echo(f"{count} pairs scored into {output_path}", err=True)


@main.command()
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=paths.BEST_MODEL,
              show_default=True, help="The checkpoint to serve (any best.pt).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: all).")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=8000, show_default=True,
              help="Port to listen on.")
@click.option("--beam", "beam_size", type=click.IntRange(min=1, max=10),
              help="Beam size of requests that do not give one (default: params.yaml's evaluate section).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True,
              help="Where to decode (auto: a CUDA GPU if there is one).")
@click.option("--batching/--no-batching", default=True, show_default=True,
              help="Dynamic batching: gather concurrent requests into one search call.")
@click.option("--plots", "plots_dir", type=click.Path(path_type=Path), default="plots", show_default=True,
              help="Where the pipeline's curve images are, shown on the demo page.")
@click.option("--quantize", is_flag=True, help="int8 dynamic quantization (CPU): faster, slightly different output.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds a request may wait for its translation; after that it is answered 504.")
@_kept_terms_options
@PARAMS
def serve(model_path: Path, host: str, port: int, beam_size: int | None, device: str, batching: bool,
          plots_dir: Path, quantize: bool, timeout_s: float, params_path: Path, glossary_path: Path | None,
          keep_path: Path | None, glossary_terms: tuple[str, ...], keep_terms: tuple[str, ...]) -> None:
    """Serve translations over HTTP (POST /translate) and the demo page (GET /), until Ctrl-C.

    Decoding settings (length penalty, n-gram blocking, ...) come from params.yaml's evaluate section.
    Kept terms given here are kept in every request, besides the request's own (docs/terms.md)."""
    from seq2seq.config import decoding_settings
    from seq2seq.serve import Limits
    from seq2seq.serve import serve as run

    terms = _kept_terms(glossary_path, keep_path, glossary_terms, keep_terms)
    batching_limits = {} if batching else {"batch_sentences": 1, "batch_wait_s": 0.0}
    limits = Limits(timeout_s=timeout_s, **batching_limits)
    run(model_path, host, port, decoding_settings(params_path, beam_size=beam_size), device, limits, plots_dir,
        quantize, terms)


# The commands that train: they run on tcmalloc where the system has it (seq2seq.allocator).
_TRAINING_COMMANDS = (["train"], ["reverse"], ["bench", "train"], ["bench", "memory"])


def run() -> None:
    """The `seq2seq` program (`main` with this process's arguments); a training command first
    restarts itself on tcmalloc. Tests call `main` in-process, which never restarts."""
    if any(sys.argv[1:1 + len(command)] == command for command in _TRAINING_COMMANDS):
        from seq2seq.allocator import restart_with_tcmalloc

        restart_with_tcmalloc()
    main()


if __name__ == "__main__":  # pragma: no cover
    run()
