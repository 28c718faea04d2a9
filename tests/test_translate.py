import json
import re
import select
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from seq2seq.cli import main
from seq2seq.prepare import normalize
from seq2seq.tokenizer import UNK_ID
from seq2seq.translate import Translator, available_batches, join_sentences, split_sentences
from tests.conftest import toy_pairs

HANGUL = re.compile(r"[\uac00-\ud7a3]")


@pytest.fixture(scope="module")
def model_path(tiny_workdir: Path) -> str:
    return str(tiny_workdir / "models/model/best.pt")


def run(args: list[str], input: str | None = None):
    return CliRunner().invoke(main, args, input=input)


def test_translates_an_argument(model_path: str) -> None:
    english, korean = toy_pairs()[0]
    result = run(["translate", "--model", model_path, english])
    assert result.exit_code == 0, result.output
    assert result.stdout == korean + "\n"


def test_several_arguments_keep_their_order(model_path: str) -> None:
    pairs = toy_pairs()[:4]
    result = run(["translate", "--model", model_path, "--beam", "1", *[en for en, _ in pairs]])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [ko for _, ko in pairs]


def test_stdin_streams_lines_and_keeps_empty_ones(model_path: str) -> None:
    pairs = toy_pairs()[:3]
    lines = [pairs[0][0], "", "   ", pairs[1][0], pairs[2][0]]
    for args in (["translate", "--model", model_path], ["translate", "--model", model_path, "-"]):
        result = run(args, input="\n".join(lines) + "\n")
        assert result.exit_code == 0
        assert result.stdout.splitlines() == [pairs[0][1], "", "", pairs[1][1], pairs[2][1]]


def test_empty_argument_is_an_error(model_path: str) -> None:
    result = run(["translate", "--model", model_path, ""])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: an empty sentence")
    assert result.stdout == ""


def test_odd_characters_are_normalised_or_byte_encoded(model_path: str) -> None:
    odd, plain = "I ate 😀 鬱陵島 \x07 bread.", "I ate 😀 鬱陵島 bread."
    result = run(["translate", "--model", model_path, "--beam", "1", odd, plain, "ñ"])
    assert result.exit_code == 0 and result.stderr == ""
    outputs = result.stdout.splitlines()
    assert len(outputs) == 3
    assert outputs[0] == outputs[1]  # the control character is dropped by normalisation
    assert all(any("가" <= char <= "힣" for char in line) for line in outputs), outputs
    translator = Translator(Path(model_path), beam_size=1)
    ids = translator.tokenizer.encode_source([normalize(odd)])[0]
    assert UNK_ID not in ids  # emoji and Hanja become byte pieces, not the unknown piece
    assert translator.tokenizer.source.decode(ids) == plain


def test_long_input_is_cut_with_a_warning_naming_its_line_and_sentence(model_path: str) -> None:
    warnings: list[str] = []
    translator = Translator(Path(model_path), beam_size=1, warn=warnings.append)
    long_sentence = " and ".join(en.rstrip(".") for en, _ in toy_pairs()[:40]) + "."  # one sentence
    full_ids = translator.tokenizer.encode_source([long_sentence])[0]
    assert len(full_ids) > 150
    alone, in_paragraph = translator.translate_detailed([long_sentence, f"{toy_pairs()[0][0]} {long_sentence}"],
                                                        attention=True)
    assert warnings == [f"line 1 has {len(full_ids)} tokens; translating its first 100",
                        f"line 2 (sentence 2 of 2) has {len(full_ids)} tokens; translating its first 100"]
    assert alone.attention.shape[1] == 100  # the model saw the first 100 source tokens only
    (first_100,) = translator._search([full_ids[:100]])
    assert alone.text == translator.tokenizer.decode_target([first_100.tokens])[0]
    assert in_paragraph.text.endswith(" " + alone.text)
    warnings.clear()
    translator.translate(["Short.", long_sentence], first_number=41)  # e.g. the 40th and 41st lines of a file
    assert warnings == [f"line 42 has {len(full_ids)} tokens; translating its first 100"]


def test_missing_model_says_dvc_repro(tmp_path: Path) -> None:
    result = run(["translate", "--model", str(tmp_path / "none.pt"), "Hello."])
    assert result.exit_code == 1
    assert "dvc repro" in result.stderr and "Traceback" not in result.stderr


def test_corrupt_model_names_the_file(tmp_path: Path) -> None:
    corrupt = tmp_path / "broken.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    result = run(["translate", "--model", str(corrupt), "Hello."])
    assert result.exit_code == 1
    assert str(corrupt) in result.stderr and len(result.stderr.splitlines()) == 1


def test_attention_heatmap_is_a_png_sized_by_its_pieces(model_path: str, tmp_path: Path) -> None:
    import matplotlib.image

    sentence = toy_pairs()[5][0]
    png = tmp_path / "attention.png"
    result = run(["translate", "--model", model_path, "--beam", "1", "--attention", str(png), sentence])
    assert result.exit_code == 0, result.output
    assert result.stdout == toy_pairs()[5][1] + "\n"
    assert f"attention heatmap written to {png}" in result.stderr
    source_pieces, target_pieces, weights = Translator(Path(model_path), beam_size=1).attention(sentence)
    assert weights.shape == (len(target_pieces), len(source_pieces)) and target_pieces[-1] == "</s>"
    assert torch.allclose(weights.sum(-1), torch.ones(len(target_pieces)))
    image = matplotlib.image.imread(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # One column per source piece and one row per output piece: the figure grows with them (120 dpi).
    assert image.shape[:2] == (round(120 * max(3, 0.4 * len(target_pieces) + 2)),
                               round(120 * max(4, 0.45 * len(source_pieces) + 2)))
    assert image[..., :3].std() > 0.05  # drawn, not blank


def test_attention_heatmap_draws_every_korean_glyph(model_path: str, tmp_path: Path) -> None:
    """With the packaged font, no glyph is missing (matplotlib warns for each one it draws as a box)."""
    import warnings

    from seq2seq.translate import plot_attention

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_attention(["▁I", "▁ate"], ["▁나는", "▁사과를", "</s>"], torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]),
                       tmp_path / "korean.png")
    assert (tmp_path / "korean.png").stat().st_size > 1000


def test_command_line_process_exit_codes(model_path: str) -> None:
    english, korean = toy_pairs()[0]
    ok = subprocess.run([sys.executable, "-m", "seq2seq", "translate", "--model", model_path, english],
                        capture_output=True, text=True, timeout=120)
    assert (ok.returncode, ok.stdout) == (0, korean + "\n")
    bad = subprocess.run([sys.executable, "-m", "seq2seq", "translate", "--model", "nowhere.pt", english],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stdout == "" and bad.stderr.startswith("error:")


def test_attention_needs_one_sentence_argument(model_path: str, tmp_path: Path) -> None:
    for args in (["-"], ["One.", "Two."]):
        result = run(["translate", "--model", model_path, "--attention", str(tmp_path / "a.png"), *args])
        assert result.exit_code == 1 and "--attention draws one sentence" in result.stderr


def test_invalid_utf8_on_stdin_is_replaced_with_one_warning(model_path: str) -> None:
    pairs = toy_pairs()[:2]
    stdin = pairs[0][0].encode() + b"\nHello\xff world\n\xfe\xfe\n" + pairs[1][0].encode() + b"\n"
    result = subprocess.run([sys.executable, "-m", "seq2seq", "translate", "--model", model_path, "--beam", "1"],
                            input=stdin, capture_output=True, timeout=120)
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    lines = result.stdout.decode("utf-8").split("\n")
    assert len(lines) == 5 and lines[0] == pairs[0][1] and lines[3] == pairs[1][1] and lines[4] == ""
    assert stderr.startswith("warning: line 2 is not valid UTF-8") and len(stderr.splitlines()) == 1


def test_attention_to_a_missing_folder_creates_it(model_path: str, tmp_path: Path) -> None:
    png = tmp_path / "new/deeper/attention.png"
    result = run(["translate", "--model", model_path, "--attention", str(png), toy_pairs()[5][0]])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("where", ["under a file", "a folder"])
def test_attention_to_an_impossible_path_is_one_line_and_writes_nothing(model_path: str, tmp_path: Path,
                                                                        where: str) -> None:
    (tmp_path / "file").write_text("in the way")
    (tmp_path / "folder").mkdir()
    target = tmp_path / "file/attention.png" if where == "under a file" else tmp_path / "folder"
    result = run(["translate", "--model", model_path, "--attention", str(target), toy_pairs()[5][0]])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith(f"error: cannot write {target}: ") and len(result.stderr.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]
    assert list((tmp_path / "folder").iterdir()) == []


def test_domain_option_changes_the_tag_the_encoder_reads(tagged_workdir: Path) -> None:
    model_path = tagged_workdir / "models/model/best.pt"
    english, korean = toy_pairs()[0]
    assert Translator(model_path).attention(english)[0][0] == "<general>"
    assert Translator(model_path, domain="technical").attention(english)[0][0] == "<technical>"
    result = run(["translate", "--model", str(model_path), "--domain", "technical", english])
    assert result.exit_code == 0 and result.stdout == korean + "\n"
    unknown = run(["translate", "--model", str(model_path), "--domain", "legal", english])
    assert unknown.exit_code == 1
    assert unknown.stderr == "error: unknown domain 'legal'; this model knows: general, technical\n"


def test_domain_option_needs_a_tagged_model(model_path: str) -> None:
    result = run(["translate", "--model", model_path, "--domain", "general", "Hello."])
    assert result.exit_code == 1 and "trained without domain tags" in result.stderr


def test_int8_quantized_translator_still_translates(model_path: str) -> None:
    from torch.ao.nn.quantized.dynamic import Linear as QuantizedLinear

    translator = Translator(Path(model_path), beam_size=2, quantize=True)
    assert isinstance(translator.model.decoder.output, QuantizedLinear)
    english, korean = toy_pairs()[3]
    result = run(["translate", "--model", model_path, "--quantize", english])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == translator.translate([english])[0]
    assert HANGUL.search(result.output)


def test_a_paragraph_is_split_into_sentences_and_joined_with_its_own_spacing() -> None:
    text = "  He said: \"I am here.\" Then he left.   It rained on Mr. Smith's car today.  "
    sentences, layout = split_sentences(text)
    assert sentences == ['He said: "I am here."', "Then he left.", "It rained on Mr. Smith's car today."]
    assert layout == ["  ", " ", "   ", "  "]
    assert join_sentences(layout, ["A", "B", "C"]) == "  A B   C  "
    assert split_sentences("   ") == ([], [""]) and join_sentences([""], []) == ""


@pytest.mark.parametrize("text", [
    "It rained  all day. We stayed at home. Then we slept.",
    "It rained all day.\tWe stayed at home.\n\nThen  we\u00a0slept.",
    " It rained\tall day.  We stayed \t at home. \r\nThen we slept.\n",
])
def test_a_paragraph_maps_back_to_its_text_whatever_the_spacing(text: str) -> None:
    """Double spaces, tabs and line breaks between or inside sentences (a line break always ends
    one): three sentences, each the text's own characters, and the text around them kept as it is."""
    sentences, layout = split_sentences(text)
    assert [" ".join(sentence.split()) for sentence in sentences] == [
        "It rained all day.", "We stayed at home.", "Then we slept."]
    assert join_sentences(layout, sentences) == text
    assert all(not part.strip() for part in layout)


def test_any_text_is_its_sentences_and_the_spacing_around_them() -> None:
    """Seeded random texts of words, punctuation and every kind of spacing: the sentences and the
    layout put together give back the text, the sentences have no spacing at their ends, and the
    layout is only spacing."""
    import random

    words = ["It", "rained", "day.", "Mr.", "Smith", "said:", '"Hi!"', "Then?", "(ok.)", "...", "Yes!",
             "\u00a0", "\r\n", "\n", "\n\n", "\u2028"]
    spacing = ["", " ", "  ", "\t", " \n"]
    generator = random.Random(31)
    for _ in range(300):
        text = "".join(generator.choice(words) + generator.choice(spacing) for _ in range(generator.randint(1, 25)))
        sentences, layout = split_sentences(text)
        if not text.strip():
            continue
        assert join_sentences(layout, sentences) == text
        assert all(sentence and sentence == sentence.strip() for sentence in sentences)
        assert not "".join(layout).strip()


def test_a_double_spaced_paragraph_is_translated_sentence_by_sentence(model_path: str) -> None:
    (en_a, ko_a), (en_b, ko_b), (en_c, ko_c) = toy_pairs()[:3]
    double_spaced = en_a.replace(" ", "  ", 1)
    result = run(["translate", "--model", model_path, "--beam", "1", f"{double_spaced} {en_b}\t{en_c}"])
    assert result.exit_code == 0 and result.stdout == f"{ko_a} {ko_b}\t{ko_c}\n"


def test_paragraphs_are_translated_sentence_by_sentence(model_path: str) -> None:
    (en_a, ko_a), (en_b, ko_b), (en_c, ko_c) = toy_pairs()[:3]
    translator = Translator(model_path, beam_size=1)
    assert translator.translate([f"{en_a} {en_b}", "", en_c]) == [f"{ko_a} {ko_b}", "", ko_c]
    whole = Translator(model_path, beam_size=1, split_sentences=False).translate([f"{en_a} {en_b}"])
    assert whole != [f"{ko_a} {ko_b}"]  # read as one long sentence, the pair is not translated right
    result = run(["translate", "--model", model_path, "--beam", "1", f"{en_a} {en_b}"])
    assert result.stdout == f"{ko_a} {ko_b}\n"
    assert run(["translate", "--model", model_path, "--beam", "1", "--no-split", f"{en_a} {en_b}"]).stdout == \
        whole[0] + "\n"


def test_attention_of_a_paragraph_is_its_sentences_blocks_on_the_diagonal(model_path: str) -> None:
    (en_a, _), (en_b, _) = toy_pairs()[:2]
    translator = Translator(model_path, beam_size=2)
    [a], [b] = (translator.translate_detailed([english], attention=True) for english in (en_a, en_b))
    [both] = translator.translate_detailed([f"{en_a} {en_b}"], attention=True)
    assert both.text == f"{a.text} {b.text}"
    assert both.source_pieces == a.source_pieces + b.source_pieces
    assert both.output_pieces == a.output_pieces + b.output_pieces
    assert [block.shape for block in both.blocks] == [a.attention.shape, b.attention.shape]
    rows, columns = a.attention.shape
    assert not both.attention[:rows, columns:].any() and not both.attention[rows:, :columns].any()
    # the same weights as alone, up to the float rounding of another batch shape
    assert torch.allclose(both.attention, torch.block_diag(a.attention, b.attention), atol=1e-5)


def test_available_batches_take_what_has_come_and_never_wait() -> None:
    """A slow source gets each item alone, at once; a ready one gets full batches."""
    import threading

    fed = threading.Semaphore(0)

    def slow():
        for item in range(3):
            fed.acquire()  # the next item comes only once the previous batch was taken
            yield item

    batches = available_batches(slow(), size=8)
    for item in range(3):
        fed.release()
        assert next(batches) == [item]
    fed.release()
    assert list(batches) == []
    ready = list(available_batches(iter(range(20)), size=8))
    assert [item for batch in ready for item in batch] == list(range(20)) and max(map(len, ready)) <= 8


def test_a_reader_error_comes_after_the_lines_read_before_it(model_path: str) -> None:
    """Streaming never drops good lines: those read before an error are batched and translated,
    then the error is raised."""
    pairs = toy_pairs()[:3]

    def lines_then_error():
        yield from (english for english, _ in pairs)
        raise OSError("the input went away")

    batches = available_batches(lines_then_error(), size=8)  # all three have come when the error does
    assert next(batches) == [english for english, _ in pairs]
    with pytest.raises(OSError, match="went away"):
        next(batches)
    translated = []
    with pytest.raises(OSError, match="went away"):
        for line in Translator(model_path, beam_size=1).translate_stream(lines_then_error()):
            translated.append(line)
    assert translated == [korean for _, korean in pairs]


def test_translate_and_translate_detailed_agree_on_tags_and_empty_texts(tagged_workdir: Path) -> None:
    """One path decodes for both: the same domain tag, the same empty output for an empty text."""
    translator = Translator(tagged_workdir / "models/model/best.pt", beam_size=2)
    texts = [toy_pairs()[0][0], "", f"{toy_pairs()[1][0]}  {toy_pairs()[2][0]}", "\x07"]
    technical = translator.domains.tag_id("technical")
    plain = translator.translate(texts, tag_ids=[technical] * len(texts))
    detailed = translator.translate_detailed(texts, attention=True, domain="technical")
    assert plain == [t.text for t in detailed] and plain[1] == plain[3] == ""
    assert detailed[1].attention is None and detailed[3].attention is None
    assert detailed[2].source_pieces.count("<technical>") == 2


def test_sampling_is_seeded_and_reproducible(model_path: str) -> None:
    english = [en for en, _ in toy_pairs()[:40]]
    sampled = Translator(model_path, sample_seed=7).translate(english)
    assert sampled == Translator(model_path, sample_seed=7).translate(english)
    assert sampled != Translator(model_path, sample_seed=8).translate(english)
    assert sampled != Translator(model_path, beam_size=1).translate(english)


def test_stdin_line_is_answered_before_the_next_comes(model_path: str) -> None:
    """A line written to the pipe is translated while the pipe stays open, as for a person typing."""
    pairs = toy_pairs()[:2]
    process = subprocess.Popen([sys.executable, "-m", "seq2seq", "translate", "--model", model_path, "--beam", "1"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for english, korean in pairs:
            process.stdin.write(english + "\n")
            process.stdin.flush()
            ready, _, _ = select.select([process.stdout], [], [], 60)
            assert ready, "no translation while the input stays open"
            assert process.stdout.readline() == korean + "\n"  # before the next line or the end of input
        process.stdin.close()
        assert process.wait(timeout=60) == 0 and process.stdout.read() == ""
    finally:
        process.kill()


def test_python_api_reads_decoding_settings_as_the_cli_does(model_path: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from seq2seq import Translator as ApiTranslator

    (tmp_path / "params.yaml").write_text("evaluate:\n  beam_size: 2\n  length_penalty: 0.4\n"
                                          "  no_repeat_ngram_size: 2\n  max_output_ratio: 1.0\n")
    monkeypatch.chdir(tmp_path)
    translator = ApiTranslator(model_path)  # a str, and no decoding settings: params.yaml's
    settings = (translator.beam_size, translator.length_penalty, translator.no_repeat_ngram_size,
                translator.max_output_ratio)
    assert settings == (2, 0.4, 2, 1.0)
    english = [en for en, _ in toy_pairs()[:6]]
    result = subprocess.run([sys.executable, "-m", "seq2seq", "translate", "--model", model_path, *english],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0 and result.stdout.splitlines() == translator.translate(english)


def test_the_readme_python_example_runs_as_written(tagged_workdir: Path, tmp_path: Path) -> None:
    """The Python API example of the README and of docs/python-api.md (the same code), in a
    checkout-like folder with a (tiny, tagged) model."""
    examples = [re.search(r"```python\n(.*?)```", (Path(__file__).parent.parent / page).read_text(encoding="utf-8"),
                          flags=re.DOTALL)[1] for page in ("README.md", "docs/python-api.md")]
    assert examples[0] == examples[1]
    example = examples[0]
    (tmp_path / "models/model").mkdir(parents=True)
    (tmp_path / "models/model/best.pt").symlink_to(tagged_workdir / "models/model/best.pt")
    shutil.copy(Path(__file__).parent.parent / "params.yaml", tmp_path)
    result = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    assert len(printed) == 3 and HANGUL.search(printed[0]) and HANGUL.search(printed[2])


def test_translations_carry_their_sentences_and_n_best_candidates(model_path: str) -> None:
    """`Translation.sentences`: one per sentence as split, the best candidate's text joined into the
    text; n-best lists best first by the search's score, each with its own log-probability."""
    (en_a, _), (en_b, _) = toy_pairs()[:2]
    translator = Translator(model_path, beam_size=4)
    plain, blank = translator.translate_detailed([f"{en_a}  {en_b}", "  "])
    [listed] = translator.translate_detailed([f"{en_a}  {en_b}"], n_best=3)
    assert [s.source for s in plain.sentences] == [en_a, en_b]
    assert plain.text == f"{plain.sentences[0].text}  {plain.sentences[1].text}" == listed.text
    assert all(len(s.candidates) == 1 and s.candidates[0].text == s.text for s in plain.sentences)
    for one, three in zip(plain.sentences, listed.sentences, strict=True):
        best = three.candidates[0]
        assert len(three.candidates) == 3 and best.text == one.text
        # the same hypothesis, up to the float rounding of another batch shape
        assert (best.score, best.log_prob) == pytest.approx((one.candidates[0].score, one.candidates[0].log_prob))
        assert len({c.text for c in three.candidates}) == 3
        scores = [c.score for c in three.candidates]
        assert scores == sorted(scores, reverse=True)
        assert all(c.log_prob <= c.score <= 0 for c in three.candidates)  # the penalty divides by >= 1
    assert blank.text == "" and blank.sentences == []


def test_n_best_beyond_the_beam_is_a_user_error(model_path: str) -> None:
    from seq2seq.errors import UserError

    translator = Translator(model_path, beam_size=3)
    with pytest.raises(UserError, match="n-best 4 is more than the beam size 3"):
        translator.translate_detailed(["Hello."], n_best=4)
    with pytest.raises(UserError, match="n-best list needs a beam search"):
        Translator(model_path, sample_seed=1).translate_detailed(["Hello."], n_best=2)


def test_scores_and_n_best_as_tab_separated_rows(model_path: str) -> None:
    (en_a, _), (en_b, _), (en_c, _) = toy_pairs()[:3]
    lines = f"{en_a}\n\n{en_b}  {en_c}\n"
    plain = run(["translate", "--model", model_path, "--beam", "3"], input=lines)
    scored = run(["translate", "--model", model_path, "--beam", "3", "--scores"], input=lines)
    assert scored.exit_code == 0, scored.output
    rows = [row.split("\t", 1) for row in scored.stdout.splitlines()]
    assert [text for _, text in rows] == plain.stdout.splitlines()  # the same translations, a score before each
    assert float(rows[1][0]) == 0.0 and all(float(score) < 0 for score, _ in (rows[0], rows[2]))
    listed = run(["translate", "--model", model_path, "--beam", "3", "--n-best", "2", "--scores"], input=lines)
    rows = [row.split("\t", 4) for row in listed.stdout.splitlines()]
    # line 1: one sentence, 2 candidates; line 2 (blank): none; line 3: two sentences, 2 candidates each
    assert [row[:3] for row in rows] == [["1", "1", "1"], ["1", "1", "2"], ["3", "1", "1"], ["3", "1", "2"],
                                         ["3", "2", "1"], ["3", "2", "2"]]
    for best, second in (rows[0:2], rows[2:4], rows[4:6]):
        assert float(best[3]) >= float(second[3]) and best[4] != second[4]
    assert [rows[0][4], f"{rows[2][4]}  {rows[4][4]}"] == [plain.stdout.splitlines()[i] for i in (0, 2)]
    texts_only = run(["translate", "--model", model_path, "--beam", "3", "--n-best", "2", en_a])
    assert [row.split("\t") for row in texts_only.stdout.splitlines()] == [row[:3] + row[4:] for row in rows[:2]]


def test_json_lines_hold_each_lines_sentences_and_candidates(model_path: str) -> None:
    (en_a, _), (en_b, _) = toy_pairs()[:2]
    texts = [f"{en_a} {en_b}", en_b]
    plain = run(["translate", "--model", model_path, "--beam", "3", *texts]).stdout.splitlines()
    bare = [json.loads(line) for line in run(["translate", "--model", model_path, "--beam", "3", "--json",
                                              *texts]).stdout.splitlines()]
    assert bare[1] == {"text": plain[1], "sentences": [{"source": en_b, "text": plain[1]}]}
    assert [entry["text"] for entry in bare] == plain
    result = run(["translate", "--model", model_path, "--beam", "3", "--json", "--scores", "--n-best", "3"],
                 input="\n".join(texts) + "\n")
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["text"] == plain[0] and [s["source"] for s in first["sentences"]] == [en_a, en_b]
    assert second["sentences"][0]["candidates"][0] == {key: second["sentences"][0][key]
                                                       for key in ("text", "score", "log_prob")}
    assert (second["score"], second["log_prob"]) == (second["sentences"][0]["score"],
                                                     second["sentences"][0]["log_prob"])
    assert first["log_prob"] == pytest.approx(sum(s["log_prob"] for s in first["sentences"]), abs=1e-5)
    assert first["score"] == pytest.approx(sum(s["score"] for s in first["sentences"]) / 2, abs=1e-5)
    for sentence in first["sentences"] + second["sentences"]:
        candidates = sentence["candidates"]
        assert len(candidates) == 3 and candidates[0]["text"] == sentence["text"]
        assert [c["score"] for c in candidates] == sorted((c["score"] for c in candidates), reverse=True)


def test_n_best_above_the_beam_is_one_line_and_no_output(model_path: str) -> None:
    for args in (["--beam", "2", "--n-best", "3", "Hi."], ["--beam", "2", "--n-best", "3"]):
        result = run(["translate", "--model", model_path, *args], input="Hi.\n")
        assert result.exit_code == 1 and result.stdout == ""
        assert result.stderr == "error: n-best 3 is more than the beam size 2: a beam search keeps at most " \
                                "beam-size hypotheses; raise the beam size (--beam) or lower n-best\n"
