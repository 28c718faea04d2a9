"""Where each stage reads and writes by default, relative to the repository root.

The one place for these paths: the CLI's defaults, `TrainPaths` and `Translator` take them from
here, and `dvc.yaml` passes the same paths to each stage explicitly, so the pipeline file shows them.
"""

from __future__ import annotations

from pathlib import Path

RAW = Path("data/raw")
PREPARED = Path("data/prepared")
PREPARE_METRICS = Path("metrics/prepare.json")
TOKENIZER = Path("models/tokenizer")
ENCODED = Path("data/encoded")
MODEL_DIR = Path("models/model")
BEST_MODEL = MODEL_DIR / "best.pt"
LIVE = Path("dvclive")
EVALUATE_METRICS = Path("metrics/evaluate.json")  # the headline that `dvc metrics show` prints
EVALUATE_DETAILS = Path("metrics/evaluate_details.json")  # per-source scores, signatures, speed
TRAIN_SUMMARY = LIVE / "metrics.json"
HYPOTHESES = Path("reports/hypotheses.ko")
SAMPLES = Path("reports/samples.md")
MONO = Path("data/mono")  # Korean monolingual text: one sentence a line, in *.ko files
REVERSE_RUN = Path("models/reverse-run")  # the reverse model's checkpoints and log while it trains
REVERSE_MODEL = Path("models/reverse")  # best.pt of the Korean->English model, or a note that it is off
REVERSE_SUMMARY = Path("metrics/reverse.json")
CONFIDENCE_METRICS = Path("metrics/confidence.json")  # how well the per-sentence confidence ranks sentences
BACKTRANSLATED = Path("data/backtranslated")  # synthetic pairs: train.en (machine English), train.ko
DISTILLED = Path("data/distilled")  # a teacher's Korean for the train English, and its card; or OFF.md
