import json
from pathlib import Path

import sacrebleu

from seq2seq.checkpoint import load_model
from seq2seq.reverse import train_reverse
from seq2seq.search import translate_ids
from seq2seq.tokenizer import load_tokenizer
from tests.conftest import tiny_params, tiny_paths


def test_the_reverse_model_translates_korean_into_english(reverse_workdir: Path) -> None:
    model, tokenizer, content = load_model(reverse_workdir / "models/reverse/best.pt")
    forward = load_tokenizer(reverse_workdir / "models/tokenizer")
    assert tokenizer.source.serialized_model_proto() == forward.target.serialized_model_proto()  # reads Korean
    assert tokenizer.target.serialized_model_proto() == forward.source.serialized_model_proto()  # writes English
    assert model.source_vocab_size == forward.target.get_piece_size()  # no domain tags
    assert content["domains"] is None
    korean = (reverse_workdir / "data/prepared/valid.ko").read_text(encoding="utf-8").splitlines()
    english = (reverse_workdir / "data/prepared/valid.en").read_text(encoding="utf-8").splitlines()
    found = translate_ids(model, tokenizer.encode_source(korean), never_emitted=tokenizer.never_emitted())
    outputs = tokenizer.decode_target([hypothesis.tokens for hypothesis in found])
    assert sacrebleu.corpus_chrf(outputs, [english]).score > 50  # the English side, learnt from the swapped pairs
    summary = json.loads((reverse_workdir / "metrics/reverse.json").read_text())
    assert summary["enabled"] and summary["steps"] == 100 and summary["best_valid_chrf"] > 50
    assert sorted(path.name for path in (reverse_workdir / "models/reverse").iterdir()) == ["best.pt"]


def test_off_it_trains_nothing_and_says_so(tiny_workdir: Path, tmp_path: Path) -> None:
    paths = tiny_paths(tmp_path)  # nothing there: off, no data is read
    summary = train_reverse(tiny_params(), paths, tmp_path / "reverse", tmp_path / "reverse.json")
    assert summary == {"enabled": False} == json.loads((tmp_path / "reverse.json").read_text())
    assert [path.name for path in (tmp_path / "reverse").iterdir()] == ["OFF.md"]
    assert "backtranslation.enabled: false" in (tmp_path / "reverse/OFF.md").read_text()
    assert not paths.model_dir.exists()
