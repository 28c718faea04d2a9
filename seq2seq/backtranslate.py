"""Stage `backtranslate`: Korean monolingual text becomes synthetic training pairs.

Back-translation (Sennrich et al. 2016): the reverse model, Korean->English (stage `reverse`,
`seq2seq.reverse`), translates the Korean sentences of `data/mono/*.ko` into English. The forward
model then trains on those pairs as one more source, `bt`, with a domain tag of its own, `<bt>`
(tagged back-translation, Caswell et al. 2019), so it can tell machine-made English from human
English, and with the sampling weight `backtranslation.weight`.

With `backtranslation.enabled: false` this stage writes empty files, in a second, and the forward
model trains on the parallel data alone.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from seq2seq.config import BacktranslationConfig
from seq2seq.errors import UserError
from seq2seq.files import atomic_dir
from seq2seq.prepare import normalize
from seq2seq.translate import Translator

CHUNK = 1024  # sentences translated between two progress updates


def read_monolingual(mono_dir: Path, max_sentences: int = 0, seed: int = 1234) -> list[str]:
    """The non-empty lines of `mono_dir/*.ko` (files in name order), normalised as the parallel
    data is; with `max_sentences`, a seeded sample of that many, in file order."""
    files = sorted(mono_dir.glob("*.ko"))
    if not files:
        raise UserError(f"no *.ko files in {mono_dir}/: put Korean text there, one sentence a line "
                        "(`dvc pull data/mono.dvc` fetches the project's)")
    lines = (line for path in files for line in path.read_text(encoding="utf-8").splitlines())
    sentences = [text for line in lines if (text := normalize(line))]
    if 0 < max_sentences < len(sentences):
        keep = sorted(random.Random(seed).sample(range(len(sentences)), max_sentences))
        sentences = [sentences[i] for i in keep]
    return sentences


def backtranslate(mono_dir: Path, reverse_dir: Path, out_dir: Path, config: BacktranslationConfig,
                  device: torch.device | str = "cpu") -> dict:
    """Translate the Korean sentences of `mono_dir` into English with `reverse_dir/best.pt`; write the
    pairs to `out_dir/train.en` (machine English) and `train.ko` (empty files when off). Returns counts and speed."""
    pairs: list[tuple[str, str]] = []
    stats: dict = {"enabled": config.enabled}
    if config.enabled:
        model_path = reverse_dir / "best.pt"
        if not model_path.exists():
            raise UserError(f"{model_path} not found: train the reverse model first (`dvc repro reverse`)")
        korean = read_monolingual(mono_dir, config.max_sentences, config.seed)
        started = time.perf_counter()
        english = translate_korean(korean, model_path, config, device)
        seconds = time.perf_counter() - started
        pairs = [(en, ko) for en, ko in zip(english, korean, strict=True) if en.strip()]
        stats.update(seconds=round(seconds, 1), sentences_per_second=round(len(korean) / seconds, 1))
    with atomic_dir(out_dir) as temp:
        for index, name in enumerate(("train.en", "train.ko")):
            (temp / name).write_text("".join(pair[index] + "\n" for pair in pairs), encoding="utf-8")
    return {**stats, "pairs": len(pairs)}


def translate_korean(korean: list[str], model_path: Path, config: BacktranslationConfig,
                     device: torch.device | str) -> list[str]:
    """English for each Korean sentence, by the reverse model at `model_path`, with progress. The
    `Translator` decodes, line by line (no sentence splitting), with `config`'s search and the
    built-in output ratio, n-gram setting and batch size; sentences longer than the model was
    trained on are cut to that length, with one warning for them all."""
    cut: list[str] = []
    translator = Translator(model_path, beam_size=config.beam_size if config.search == "beam" else 1,
                            length_penalty=config.length_penalty, device=str(device), warn=cut.append,
                            split_sentences=False, params_path=None,
                            sample_seed=config.seed if config.search == "sampling" else None)
    english: list[str] = []
    with tqdm(total=len(korean), unit="sentence", desc="backtranslate", mininterval=5) as bar:
        for start in range(0, len(korean), CHUNK):
            english += translator.translate(korean[start : start + CHUNK])
            bar.update(min(CHUNK, len(korean) - start))
    if cut:
        limit = translator.max_input_tokens
        print(f"warning: {len(cut)} Korean sentences had more than {limit} tokens: their first {limit} were translated",
              file=sys.stderr)
    return english
