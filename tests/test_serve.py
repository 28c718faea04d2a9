"""The translation server: its API, its error answers, dynamic batching, queue limits and shutdown.

The server runs the tiny model trained by the session fixture; requests go to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from seq2seq.batcher import Batcher
from seq2seq.config import EvaluateConfig
from seq2seq.errors import UserError
from seq2seq.serve import ApiError, Limits, create_app, load_translator, parse_translate_request, run_translations
from seq2seq.tokenizer import load_tokenizer
from seq2seq.translate import Paragraph, Translation, Translator
from tests.conftest import running_server, toy_pairs

HANGUL = re.compile(r"[\uac00-\ud7a3]")


@pytest.fixture(scope="module")
def model_path(tiny_workdir: Path) -> Path:
    return tiny_workdir / "models/model/best.pt"


@pytest.fixture(scope="module")
def translator(model_path: Path) -> Translator:
    return Translator(model_path, beam_size=3)


@pytest.fixture(scope="module")
def client(translator: Translator, model_path: Path, tmp_path_factory: pytest.TempPathFactory):
    limits = Limits(max_sentences=4, max_characters=200, max_body_bytes=2000, max_beam=6)
    plots_dir = tmp_path_factory.mktemp("plots")
    (plots_dir / "valid_chrf.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # served as it is
    with running_server(create_app(translator, model_path, limits, plots_dir)) as url, \
            httpx.Client(base_url=url, timeout=30) as http:
        yield http


def english(count: int) -> list[str]:
    return [en for en, _ in toy_pairs()[:count]]


def test_translates_a_string_and_a_list_in_order(client: httpx.Client, model_path: Path) -> None:
    one = client.post("/translate", json={"text": english(1)[0]})
    assert one.status_code == 200
    assert one.json()["beam"] == 3
    [result] = one.json()["translations"]
    assert HANGUL.search(result["text"])
    assert "attention" not in result
    sentences = english(4)
    many = client.post("/translate", json={"text": sentences, "beam": 2})
    assert [t["text"] for t in many.json()["translations"]] == Translator(model_path, beam_size=2).translate(sentences)


def test_attention_gives_pieces_and_weights(client: httpx.Client) -> None:
    response = client.post("/translate", json={"text": english(1), "attention": True, "beam": 1})
    [result] = response.json()["translations"]
    weights = result["attention"]
    assert result["output_pieces"][-1] == "</s>"
    assert len(weights) == len(result["output_pieces"])
    assert all(len(row) == len(result["source_pieces"]) for row in weights)
    assert all(abs(sum(row) - 1.0) < 1e-2 for row in weights)
    assert result["blocks"] == [{"output": [0, len(weights)], "source": [0, len(result["source_pieces"])]}]


def test_a_paragraphs_attention_is_its_sentences_blocks(client: httpx.Client, translator: Translator) -> None:
    """Each sentence's output attends to its own source only, so only those weights are sent: a row
    per output piece over its sentence's source pieces, not a dense (all output x all source) matrix."""
    first, second, third = english(3)
    response = client.post("/translate", json={"text": f"{first}  {second}\n{third}", "attention": True, "beam": 1})
    [result] = response.json()["translations"]
    [expected] = translator.translate_detailed([f"{first}  {second}\n{third}"], beam_size=1, attention=True)
    assert result["text"] == expected.text and len(expected.blocks) == 3
    assert result["source_pieces"] == expected.source_pieces and result["output_pieces"] == expected.output_pieces
    rows = [row for block in expected.blocks for row in block.tolist()]
    assert result["attention"] == [[round(weight, 4) for weight in row] for row in rows]
    for block, sent in zip(expected.blocks, result["blocks"], strict=True):
        (output_start, output_end), (source_start, source_end) = sent["output"], sent["source"]
        assert (output_end - output_start, source_end - source_start) == tuple(block.shape)
        assert all(len(row) == source_end - source_start for row in result["attention"][output_start:output_end])
    assert result["blocks"][-1]["output"][1] == len(result["output_pieces"])
    assert result["blocks"][-1]["source"][1] == len(result["source_pieces"])
    # What the search thread returns are the tensors: the JSON is made off it, in the response.
    assert all(isinstance(t, Translation) for t in run_translations(translator, translator.paragraphs([first]),
                                                                    (1, True, None)))


def test_the_sentence_limit_counts_sentences_once_texts_are_split(client: httpx.Client) -> None:
    """The fixture's limit is 4 sentences: one text of five is refused, naming the limit."""
    response = client.post("/translate", json={"text": "Hi! Hi! Hi! Hi! Hi!", "attention": True})
    assert response.status_code == 413 and response.json()["field"] == "text"
    assert response.json()["error"] == "text has 5 sentences once split; at most 4 a request"
    assert client.post("/translate", json={"text": ["Hi! Hi!", "Hi! Hi!"]}).status_code == 200


def test_a_long_text_of_short_sentences_is_refused_at_once(translator: Translator, model_path: Path) -> None:
    """The issue's reproduction: 5,000 characters of "Hi! " with attention, at the default limits,
    was answered 200 after 17 s with a 94 MB body (and held the search thread meanwhile)."""
    with running_server(create_app(translator, model_path)) as url:
        started = time.perf_counter()
        response = httpx.post(f"{url}/translate", json={"text": "Hi! " * 1250, "attention": True}, timeout=60)
        seconds = time.perf_counter() - started
    assert response.status_code == 413 and len(response.content) < 200
    assert response.json()["error"] == "text has 1250 sentences once split; at most 32 a request"
    assert seconds < 10  # about 10 ms: refused as it is read, never searched


def test_health_info_and_page(client: httpx.Client, tiny_workdir: Path) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/info").json()
    assert info["training_steps"] in (50, 100)  # the tiny run validates at steps 50 and 100
    assert isinstance(info["valid_chrf"], float)
    assert info["settings"]["decoder_hidden_size"] == 48
    tokenizer = load_tokenizer(tiny_workdir / "models/tokenizer")
    assert info["vocabulary"] == {"source": tokenizer.source.get_piece_size(),
                                  "target": tokenizer.target.get_piece_size()}
    assert info["parameters"] > 10_000
    page = client.get("/")
    assert page.status_code == 200 and "Translate" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # self-contained: nothing from another host
    font = client.get("/static/NanumGothic.ttf")
    assert font.status_code == 200 and font.headers["content-type"] == "font/ttf" and len(font.content) > 1_000_000


@pytest.mark.parametrize(("body", "status", "field"), [
    (b"{not json", 400, "body"),
    (b"\xff\xfe", 400, "body"),
    (b"[1, 2]", 400, "body"),
    (b"{}", 422, "text"),
    (json.dumps({"text": 5}).encode(), 422, "text"),
    (json.dumps({"text": ["fine", 5]}).encode(), 422, "text"),
    (json.dumps({"text": ""}).encode(), 422, "text"),
    (json.dumps({"text": "   "}).encode(), 422, "text"),
    (json.dumps({"text": []}).encode(), 422, "text"),
    (json.dumps({"text": ["fine", " "]}).encode(), 422, "text[1]"),
    (json.dumps({"text": ["a"] * 5}).encode(), 413, "text"),
    (json.dumps({"text": "a" * 201}).encode(), 413, "text"),
    (json.dumps({"text": "x" * 3000}).encode(), 413, "body"),
    (json.dumps({"text": "Hi.", "beam": 0}).encode(), 422, "beam"),
    (json.dumps({"text": "Hi.", "beam": 7}).encode(), 422, "beam"),
    (json.dumps({"text": "Hi.", "beam": "5"}).encode(), 422, "beam"),
    (json.dumps({"text": "Hi.", "beam": True}).encode(), 422, "beam"),
    (json.dumps({"text": "Hi.", "beam": 2.5}).encode(), 422, "beam"),
    (json.dumps({"text": "Hi.", "attention": "yes"}).encode(), 422, "attention"),
    (json.dumps({"text": "Hi.", "domain": "news"}).encode(), 422, "domain"),
    (json.dumps({"text": "Hi.", "beams": 2}).encode(), 422, "beams"),
    (json.dumps({"text": "Hi.", "n_best": 4}).encode(), 422, "n_best"),  # above the default beam, 3
    (json.dumps({"text": "Hi.", "beam": 2, "n_best": 3}).encode(), 422, "n_best"),
    (json.dumps({"text": "Hi.", "n_best": 0}).encode(), 422, "n_best"),
    (json.dumps({"text": "Hi.", "n_best": True}).encode(), 422, "n_best"),
    (json.dumps({"text": "Hi.", "scores": 1}).encode(), 422, "scores"),
    (b"[" * 1500, 400, "body"),  # nested past Python's recursion limit
])
def test_bad_requests_get_a_json_error_naming_the_field(client: httpx.Client, body: bytes, status: int,
                                                        field: str) -> None:
    response = client.post("/translate", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert response.json()["field"] == field
    assert response.json()["error"]


def test_an_integer_too_long_for_python_is_a_bad_body_not_a_crash() -> None:
    body = b'{"text": "Hi.", "beam": ' + b"9" * 5000 + b"}"
    with pytest.raises(ApiError) as error:
        parse_translate_request(body, 5, Limits())
    assert (error.value.status, error.value.field) == (400, "body")


def test_a_default_beam_above_the_api_limit_stops_the_server_at_start(model_path: Path) -> None:
    with pytest.raises(UserError, match="default beam size 12 .* above the API's limit of 10"):
        create_app(Translator(model_path, beam_size=12), model_path, Limits(max_beam=10))


def test_without_batching_a_request_is_still_one_search_call(model_path: Path) -> None:
    """`--no-batching` stops merging requests; a request's own sentences (as many as the API takes)
    still go into one search call: the encoder runs once, on all of them."""
    unbatched = Limits(batch_sentences=1, batch_wait_s=0.0)
    translator = load_translator(model_path, EvaluateConfig(beam_size=1), "cpu", unbatched)
    encoded: list[int] = []
    translator.model.encoder.register_forward_hook(lambda _module, inputs, _output: encoded.append(len(inputs[0])))
    texts = [f"{first} {second}" for first, second in zip(english(32)[::2], english(32)[1::2], strict=True)]
    with running_server(create_app(translator, model_path, unbatched)) as url:
        response = httpx.post(f"{url}/translate", json={"text": texts}, timeout=60)
    assert response.status_code == 200 and len(response.json()["translations"]) == 16
    assert encoded == [unbatched.max_sentences]  # 16 texts, 32 sentences, one batch


def test_wrong_method_and_path_get_json_errors(client: httpx.Client) -> None:
    assert client.get("/translate").status_code == 405
    assert "error" in client.get("/translate").json()
    assert client.get("/nowhere").status_code == 404
    assert client.get("/plots/secret.txt").status_code == 404
    assert client.get("/plots/valid_loss.png").status_code == 404  # a known name, but not drawn


def test_the_page_lists_the_pipeline_plots(client: httpx.Client) -> None:
    assert client.get("/plots").json() == ["valid_chrf.png"]
    image = client.get("/plots/valid_chrf.png")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"


class Gate:
    """Wraps the real translation call: each call announces itself, then waits until `open()`."""

    def __init__(self, translator: Translator) -> None:
        self.translator = translator
        self.started = threading.Event()
        self.released = threading.Event()

    def __call__(self, paragraphs: list[Paragraph], settings: tuple[int, bool, str | None]) -> list[Translation]:
        self.started.set()
        self.released.wait(timeout=30)
        return run_translations(self.translator, paragraphs, settings)


def _wait_until(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_concurrent_requests_share_one_search_call(translator: Translator, model_path: Path) -> None:
    gate = Gate(translator)
    batcher = Batcher(gate, max_sentences=64, max_wait_s=0.0, queue_size=16, timeout_s=30)
    sentences = english(8)
    with running_server(create_app(translator, model_path, batcher=batcher)) as url, \
            ThreadPoolExecutor(8) as pool:
        first = pool.submit(httpx.post, f"{url}/translate", json={"text": sentences[0]}, timeout=30)
        assert gate.started.wait(timeout=10)
        rest = [pool.submit(httpx.post, f"{url}/translate", json={"text": s}, timeout=30) for s in sentences[1:]]
        _wait_until(lambda: batcher.queue.qsize() == 7)
        gate.released.set()
        texts = [f.result().json()["translations"][0]["text"] for f in [first, *rest]]
    assert batcher.calls == 2  # the first alone, then the seven that queued meanwhile together
    assert texts == translator.translate(sentences)


@contextlib.contextmanager
def one_computing_one_queued(translator: Translator, model_path: Path, queued_text: str, limits: Limits | None = None,
                             queue_size: int = 16, timeout_s: float = 30.0):
    """A server whose search call is held shut (a `Gate`) with one request being computed and a
    second, of `queued_text`, waiting in the queue: yields (url, batcher, gate, (computing, queued)),
    the last two the futures of their answers."""
    gate = Gate(translator)
    batcher = Batcher(gate, max_sentences=64, max_wait_s=0.0, queue_size=queue_size, timeout_s=timeout_s)
    with running_server(create_app(translator, model_path, limits or Limits(), batcher=batcher)) as url, \
            ThreadPoolExecutor(2) as pool:
        computing = pool.submit(httpx.post, f"{url}/translate", json={"text": "I ate bread today."}, timeout=30)
        assert gate.started.wait(timeout=10)
        queued = pool.submit(httpx.post, f"{url}/translate", json={"text": queued_text}, timeout=30)
        _wait_until(lambda: batcher.queue.qsize() == 1)
        yield url, batcher, gate, (computing, queued)


def test_a_queued_paragraph_counts_as_its_sentences(translator: Translator, model_path: Path) -> None:
    """The batcher's work (what admission and the rate are reckoned in) is sentences after splitting."""
    paragraph = " ".join(english(3))
    with one_computing_one_queued(translator, model_path, paragraph) as (_, batcher, gate, (running, queued)):
        assert batcher.queued_sentences == 3
        gate.released.set()
        assert queued.result().json()["translations"][0]["text"] == translator.translate([paragraph])[0]
        assert running.result().status_code == 200


def test_full_queue_is_503_and_a_long_wait_is_504(translator: Translator, model_path: Path) -> None:
    with one_computing_one_queued(translator, model_path, "We read a book.", queue_size=1, timeout_s=2.0) as (
            url, batcher, gate, (running, queued)):
        refused = httpx.post(f"{url}/translate", json={"text": "He liked music."}, timeout=30)
        assert refused.status_code == 503
        assert "busy" in refused.json()["error"]
        assert running.result().status_code == 504  # the gate stays shut past the 2 s timeout
        assert queued.result().status_code == 504
        gate.released.set()
        _wait_until(lambda: batcher.queue.qsize() == 0)
        assert httpx.post(f"{url}/translate", json={"text": "I ate bread today."}, timeout=30).status_code == 200


def test_shutdown_finishes_the_requests_in_flight(translator: Translator, model_path: Path) -> None:
    gate = Gate(translator)
    batcher = Batcher(gate, max_wait_s=0.0, timeout_s=30)
    with ThreadPoolExecutor(1) as pool:
        with running_server(create_app(translator, model_path, batcher=batcher)) as url:
            in_flight = pool.submit(httpx.post, f"{url}/translate", json={"text": "I ate bread today."}, timeout=30)
            assert gate.started.wait(timeout=10)
            threading.Timer(0.5, gate.released.set).start()  # released while the server is shutting down
        # `running_server` asked the server to exit and waited for it
        response = in_flight.result()
    assert response.status_code == 200
    assert HANGUL.search(response.json()["translations"][0]["text"])
    assert batcher.worker.done()


def test_domain_field_picks_the_tag_of_a_tagged_model(tagged_workdir: Path) -> None:
    tagged = tagged_workdir / "models/model/best.pt"
    translator = Translator(tagged, beam_size=1)
    with running_server(create_app(translator, tagged)) as url, httpx.Client(base_url=url, timeout=30) as http:
        info = http.get("/info").json()
        assert info["domains"] == ["general", "technical"] and info["default_domain"] == "general"
        sentence = english(1)[0]
        answer = http.post("/translate", json={"text": sentence, "domain": "technical", "attention": True}).json()
        [result] = answer["translations"]
        assert result["source_pieces"][0] == "<technical>"
        assert result["text"] == Translator(tagged, beam_size=1, domain="technical").translate([sentence])[0]
        unknown = http.post("/translate", json={"text": sentence, "domain": "legal"})
        assert unknown.status_code == 422 and unknown.json()["field"] == "domain"
        assert "general, technical" in unknown.json()["error"]


def _answer_without_sending_the_body(url: str, declared_bytes: int) -> bytes:
    """What the server answers to a POST /translate whose headers announce a body that never comes."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(b"POST /translate HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n" % declared_bytes)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = connection.recv(65536)  # a server waiting for the body times this out: the test fails
            if not chunk:
                break
            answer += chunk
    return answer


def test_more_open_requests_than_the_limit_are_503_before_their_body_is_read(translator: Translator,
                                                                               model_path: Path) -> None:
    """Requests being read, queued or computed are bounded (so are the bodies held in memory): one
    more is refused at once with the JSON 503 (before its body is read: here it is never sent),
    and the server serves again when they are answered."""
    with one_computing_one_queued(translator, model_path, "We read a book.", Limits(max_open_requests=2)) as (
            url, _, gate, held):  # one is being computed and one waits: two open
        refused = _answer_without_sending_the_body(url, 1000)
        assert refused.startswith(b"HTTP/1.1 503 ") and b"too many requests open" in refused
        gate.released.set()
        assert [future.result().status_code for future in held] == [200, 200]
        assert httpx.post(f"{url}/translate", json={"text": "He liked music."}, timeout=30).status_code == 200


def test_bench_serve_reports_how_an_overload_is_answered(model_path: Path) -> None:
    """The load test runs a real server process; at 4x what it sustained (a rate the tiny model may
    still keep up with) every request is answered, refused (503) or given up (504), and the answered
    ones within the deadline."""
    from seq2seq.bench.serving import bench_serve, free_port

    sources = model_path.parents[2] / "data/prepared/test.en"
    lines = list(bench_serve(model_path, sources, [4], max_requests=40, max_seconds=1.5, beam_size=2, port=free_port(),
                             overload=4, timeout_s=0.5, overload_seconds=1.5))
    rows = [line.split("|")[1:-1] for line in lines if line.startswith("| on") or line.startswith("| off")]
    assert [row[0].strip() for row in rows] == ["on", "off"] and all(int(row[3]) == 0 for row in rows)
    answered, refused, gave_up, other = (float(cell.strip("% ")) for cell in lines[-1].split("|")[1:5])
    assert other == 0 and answered + refused + gave_up == pytest.approx(100, abs=2)
    assert answered > 0
    assert float(lines[-1].split("|")[7]) < 1000 * (0.5 + 1.0)  # answered within the deadline (and the search)


def test_n_best_and_scores_give_each_sentences_candidates(client: httpx.Client, translator: Translator) -> None:
    first, second = english(2)
    plain = client.post("/translate", json={"text": [f"{first} {second}", second]}).json()
    assert set(plain["translations"][0]) == {"text"}  # nothing more unless asked for
    answer = client.post("/translate", json={"text": [f"{first} {second}", second], "n_best": 3, "scores": True})
    assert answer.status_code == 200, answer.text
    both, alone = answer.json()["translations"]
    assert [both["text"], alone["text"]] == [t["text"] for t in plain["translations"]]
    assert [s["source"] for s in both["sentences"]] == [first, second]
    expected = translator.translate_detailed([second], n_best=3)[0].sentences[0].candidates
    candidates = alone["sentences"][0]["candidates"]
    assert [c["text"] for c in candidates] == [c.text for c in expected]
    assert [c["log_prob"] for c in candidates] == pytest.approx([c.log_prob for c in expected], abs=1e-4)
    assert (alone["score"], alone["log_prob"]) == (candidates[0]["score"], candidates[0]["log_prob"])
    scores_only = client.post("/translate", json={"text": second, "scores": True}).json()["translations"][0]
    assert "candidates" not in scores_only["sentences"][0]
    assert scores_only["score"] == pytest.approx(candidates[0]["score"], abs=1e-4)
