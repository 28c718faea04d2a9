"""`seq2seq serve`: the translation API and the demo page, an ASGI app (Starlette) run by uvicorn.

    POST /translate  {"text": "..." | ["...", ...], "beam": 5, "attention": false, "n_best": 1, "scores": false,
                      "alignments": false, "format": "text", "glossary": {"English": "Korean", ...},
                      "keep": ["English", ...]}
                     -> {"translations": [{"text": "..."}, ...], "beam": 5}; with attention, each
                        translation has its pieces and weights too (`translation_json`); with
                        n_best > 1, scores or alignments, its score, word alignment and sentences
                        (`seq2seq.formats.details_json`); with format "html" or "md", each text is
                        markup, translated with its tags kept (`seq2seq.markup`)
                     "confidence": true gives each sentence its confidence (expected sentence chrF);
                        "min_confidence": X flags those below ("low_confidence", and [?] in the
                        text), "withhold": true leaves them out
                     glossary and keep: kept terms (`seq2seq.terms`), besides the server's own
    GET  /health     {"status": "ok"}
    GET  /info       model settings, training steps, valid chrF, parameter count, vocabularies
    GET  /           the demo page (self-contained: its only other requests go to this server)

The model is loaded once; concurrent requests share search calls (`seq2seq.batcher`). Every
mistake in a request is a 4xx JSON error that names the field; a full queue is 503, a request
that waited too long 504. A text is split into sentences as the request is read: the limits, the
queue and the batching count sentences, the unit the search's time grows with.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from seq2seq.alignment import Method
from seq2seq.batcher import Batcher, QueueFull, TimedOut
from seq2seq.checkpoint import read_checkpoint
from seq2seq.confidence import missing_calibration_message
from seq2seq.config import EvaluateConfig
from seq2seq.errors import UserError
from seq2seq.fonts import web_font_bytes
from seq2seq.formats import TEXT_ONLY, Shown, details_json
from seq2seq.markup import escape_html
from seq2seq.plots import PLOT_NAMES, PLOTS_DIR
from seq2seq.terms import NO_TERMS, KeptTerms, Masked, mask, restore
from seq2seq.translate import Paragraph, Translation, Translator, apply_threshold, split_paragraphs

STATIC_DIR = Path(__file__).parent / "static"
MARKUP_FORMATS = ("text", "html", "md")
log = logging.getLogger("seq2seq.serve")


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how the server queues and batches."""

    max_sentences: int = 32           # per request, after splitting the texts into sentences
    max_characters: int = 5000        # per request, all sentences together
    max_body_bytes: int = 256 * 1024
    max_beam: int = 10
    queue_size: int = 256             # requests waiting; one more is answered 503
    max_open_requests: int = 384      # /translate requests being read, queued or computed; one more is 503
    max_connections: int = 1024       # open connections, idle keep-alive ones too; uvicorn answers 503 beyond
    timeout_s: float = 30.0           # a request waiting longer is answered 504
    batch_sentences: int = 64         # dynamic batching: sentences gathered into one search call
    batch_wait_s: float = 0.005       # dynamic batching: how long the first request waits for others
    max_terms: int = 1000             # per request, glossary and keep entries together


class ApiError(Exception):
    """A request the server will not serve: HTTP `status`, and the request field at fault."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status, self.field, self.message = status, field, message


class SearchSettings(NamedTuple):
    """What a request's search call depends on: the batcher merges requests with equal settings."""

    beam: int
    attention: bool
    domain: str | None  # None: the model's default domain tag
    n_best: int = 1
    alignment_method: Method | None = None  # None: no word alignments


@dataclass(frozen=True)
class TranslateRequest:
    paragraphs: list[Paragraph]  # one per text
    sentences: int  # in all the paragraphs
    beam: int
    attention: bool
    domain: str | None  # None: the model's default domain tag
    shown: Shown = TEXT_ONLY  # scores, n-best lists, alignments and confidence asked for
    markup: str = "text"  # or "html", "md": each text is a document (`seq2seq.markup`)
    withhold: bool = False  # sentences below shown.min_confidence are left out, not flagged
    masked: tuple[Masked, ...] = ()  # with kept terms: each text masked (`paragraphs` are these split)

    @property
    def settings(self) -> SearchSettings:
        attention = self.attention or bool(self.masked)  # kept terms: to place a dropped placeholder
        return SearchSettings(self.beam, attention, self.domain, self.shown.n_best,
                              "target" if self.shown.alignments else None)


def parse_translate_request(body: bytes, default_beam: int, limits: Limits, domains: list[str] | None = None,
                            split: Callable[[list[str]], list[Paragraph]] = split_paragraphs,
                            calibration: str | None = None, terms: KeptTerms = NO_TERMS) -> TranslateRequest:
    """Check a POST /translate body; `ApiError` (400, 413 or 422, naming the field) when it is wrong.
    `domains` are the model's domain groups (None: trained without domain tags); `split` makes the
    texts paragraphs (`Translator.paragraphs`), whose sentences the limit counts; `calibration` is
    why the model cannot give a confidence (None: it can); `terms` are the server's kept terms,
    which the request's `glossary` and `keep` extend."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:  # ValueError: bad JSON, or an integer of over 4,300 digits
        raise ApiError(400, "body", f"the body is not valid UTF-8 JSON ({error})") from None
    except RecursionError:
        raise ApiError(400, "body", "the body nests too deeply to be a translation request") from None
    if not isinstance(data, dict):
        raise ApiError(400, "body", "the body must be a JSON object such as {\"text\": \"Hello.\"}")
    known = ("text", "beam", "attention", "domain", "n_best", "scores", "alignments", "format", "confidence",
             "min_confidence", "withhold", "glossary", "keep")
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ApiError(422, unknown[0], f"unknown field {unknown[0]!r} (known: {', '.join(known)})")
    if "text" not in data:
        raise ApiError(422, "text", "the field text is missing: a string or a list of strings")
    text = data["text"]
    texts = [text] if isinstance(text, str) else text
    if not isinstance(texts, list) or not all(isinstance(s, str) for s in texts):
        raise ApiError(422, "text", "text must be a string or a list of strings")
    if not texts:
        raise ApiError(422, "text", "text is an empty list: give at least one sentence")
    for index, entry in enumerate(texts):
        if not entry.strip():
            where = "text" if isinstance(text, str) else f"text[{index}]"
            raise ApiError(422, where, f"{where} is empty: give an English sentence")
    characters = sum(len(s) for s in texts)
    if characters > limits.max_characters:
        raise ApiError(413, "text", f"text has {characters} characters; at most {limits.max_characters} a request")
    terms = request_terms(data, terms, limits)
    masked = tuple(mask(text, terms) for text in texts) if terms else ()
    paragraphs = split([m.text for m in masked] if masked else texts)  # of at most max_characters: milliseconds
    sentences = sum(len(paragraph.sentences) for paragraph in paragraphs)
    if sentences > limits.max_sentences:
        raise ApiError(413, "text", f"text has {sentences} sentences once split; at most {limits.max_sentences} "
                                    "a request")
    beam = data.get("beam", default_beam)
    if not isinstance(beam, int) or isinstance(beam, bool) or not 1 <= beam <= limits.max_beam:
        raise ApiError(422, "beam", f"beam must be an integer from 1 to {limits.max_beam}")
    attention = data.get("attention", False)
    if not isinstance(attention, bool):
        raise ApiError(422, "attention", "attention must be true or false")
    n_best = data.get("n_best", 1)
    if not isinstance(n_best, int) or isinstance(n_best, bool) or not 1 <= n_best <= beam:
        raise ApiError(422, "n_best", f"n_best must be an integer from 1 to the beam size ({beam})")
    scores = data.get("scores", False)
    if not isinstance(scores, bool):
        raise ApiError(422, "scores", "scores must be true or false")
    alignments = data.get("alignments", False)
    if not isinstance(alignments, bool):
        raise ApiError(422, "alignments", "alignments must be true or false")
    markup = data.get("format", "text")
    if markup not in MARKUP_FORMATS:
        raise ApiError(422, "format", f"format must be one of {', '.join(MARKUP_FORMATS)}")
    if markup != "text" and (alignments or attention or scores or n_best > 1):
        raise ApiError(422, "format", "a markup format gives the text only: leave out alignments, attention, "
                                      "scores and n_best")
    domain = data.get("domain")
    if domain is not None and not domains:
        raise ApiError(422, "domain", "this model has no domain tags: leave domain out")
    if domain is not None and domain not in domains:
        raise ApiError(422, "domain", f"domain must be one of {', '.join(domains)}")
    confidence, min_confidence, withhold = parse_confidence(data, calibration)
    if masked and (markup != "text" or scores or n_best > 1 or alignments or confidence):
        raise ApiError(422, "glossary" if "glossary" in data else "keep",
                       "kept terms give the text only: leave out format, scores, n_best, alignments and confidence")
    return TranslateRequest(paragraphs, sentences, beam, attention, domain,
                            Shown(scores, n_best, alignments, confidence, min_confidence), markup, withhold,
                            masked)


def request_terms(data: dict[str, Any], terms: KeptTerms, limits: Limits) -> KeptTerms:
    """The server's `terms` extended by the request's `glossary` ({English: Korean}) and `keep` ([English])."""
    if "glossary" not in data and "keep" not in data:
        return terms
    glossary, keep = data.get("glossary", {}), data.get("keep", [])
    if not isinstance(glossary, dict) or not all(isinstance(v, str) and v.strip() for v in glossary.values()):
        raise ApiError(422, "glossary", "glossary must map English terms to Korean text, e.g. {\"New York\": \"뉴욕\"}")
    if not isinstance(keep, list) or not all(isinstance(term, str) for term in keep):
        raise ApiError(422, "keep", "keep must be a list of English terms, e.g. [\"GitHub\"]")
    if len(glossary) + len(keep) > limits.max_terms:
        raise ApiError(413, "glossary", f"glossary and keep have {len(glossary) + len(keep)} terms; at most "
                                        f"{limits.max_terms} a request")
    for field, entries in (("glossary", list(glossary)), ("keep", keep)):
        blank = next((term for term in entries if not term.strip()), None)
        if blank is not None:
            raise ApiError(422, field, f"{field} has an empty term ({blank!r})")
    both = sorted(set(glossary) & set(keep))
    if both:
        raise ApiError(422, "keep", f"{both[0]!r} is both in glossary and in keep: give it once")
    try:
        return terms.extended(glossary, keep)
    except UserError as error:
        raise ApiError(422, "glossary" if glossary else "keep", str(error)) from None


def with_terms_restored(request: TranslateRequest, translations: list[Translation]) -> list[Translation]:
    """The request's translations with its kept terms put back (the search ran with attention, to
    place a dropped placeholder; the weights stay only where the request asked for them)."""
    if not request.masked:
        return translations
    found = [restore(*kept) for kept in zip(request.masked, translations, request.paragraphs, strict=True)]
    return [replace(translation, text=kept.text) if request.attention else Translation(kept.text)
            for kept, translation in zip(found, translations, strict=True)]


def parse_confidence(data: dict[str, Any], calibration: str | None) -> tuple[bool, float | None, bool]:
    """The request's (confidence, min_confidence, withhold); `ApiError` naming the field when wrong,
    or when a confidence is asked of a model without calibration (`calibration` says why)."""
    confidence, min_confidence, withhold = data.get("confidence", False), data.get("min_confidence"), \
        data.get("withhold", False)
    if not isinstance(confidence, bool):
        raise ApiError(422, "confidence", "confidence must be true or false")
    if min_confidence is not None and (isinstance(min_confidence, bool) or not isinstance(min_confidence, int | float)
                                       or not 0 <= min_confidence <= 100):
        raise ApiError(422, "min_confidence", "min_confidence must be a number from 0 to 100 (an expected chrF)")
    if not isinstance(withhold, bool):
        raise ApiError(422, "withhold", "withhold must be true or false")
    if withhold and min_confidence is None:
        raise ApiError(422, "withhold", "withhold needs min_confidence: the confidence below which to withhold")
    asked = confidence or min_confidence is not None
    if asked and calibration is not None:
        raise ApiError(422, "min_confidence" if min_confidence is not None else "confidence", calibration)
    return asked, min_confidence, withhold


def translation_json(translation: Translation, shown: Shown = TEXT_ONLY) -> dict[str, Any]:
    """One translation as JSON: its text and, when they were asked for, its pieces and weights, and
    its scores and sentences with their n-best lists (`details_json`).

    The weights are stored per sentence, as a sentence's output attends to its own source only:
    `attention` has a row per output piece over the source pieces of that piece's sentence, and
    `blocks` gives each sentence's [start, end) in `output_pieces` and `source_pieces`. A text of
    one sentence has one block, and its rows span all the source pieces."""
    result: dict[str, Any] = {"text": translation.text}
    if translation.blocks is not None:
        result["source_pieces"] = translation.source_pieces
        result["output_pieces"] = translation.output_pieces
        result["attention"] = [[round(w, 4) for w in row] for block in translation.blocks for row in block.tolist()]
        result["blocks"], output, source = [], 0, 0
        for block in translation.blocks:
            rows, columns = block.shape
            result["blocks"].append({"output": [output, output + rows], "source": [source, source + columns]})
            output, source = output + rows, source + columns
    if shown.anything:
        result |= details_json(translation, shown)
    return result


def translations_response(translations: list[Translation], beam: int, request: TranslateRequest | None = None
                          ) -> JSONResponse:
    """The answer to POST /translate (rendered on a worker thread: with attention it is the largest work
    after the search, and the search thread and the event loop have other requests to serve), with
    what `request` asked for; its kept terms are put back, and a confidence threshold flags or
    withholds sentences first."""
    shown = request.shown if request is not None else TEXT_ONLY
    if request is not None:
        translations = with_terms_restored(request, translations)
    if request is not None and shown.min_confidence is not None:
        for translation, paragraph in zip(translations, request.paragraphs, strict=True):
            apply_threshold(translation, paragraph, shown.min_confidence, request.withhold)
    return JSONResponse({"translations": [translation_json(t, shown) for t in translations], "beam": beam})


def model_info(translator: Translator, model_path: Path) -> dict[str, Any]:
    """What GET /info reports, from the checkpoint (step and valid chrF: null in older checkpoints)."""
    content = read_checkpoint(model_path)
    summary = content.get("summary") or {}
    return {
        "model": str(model_path),
        "settings": content["model_config"],
        "training_steps": summary.get("step"),
        "valid_chrf": summary.get("valid_chrf"),
        "parameters": translator.model.parameter_count(),
        "vocabulary": {"source": translator.tokenizer.source.get_piece_size(),
                       "target": translator.tokenizer.target.get_piece_size()},
        "max_source_tokens": translator.max_input_tokens,
        "device": str(translator.device),
        "default_beam": translator.beam_size,
        "domains": list(translator.domains.groups) if translator.domains else None,
        "default_domain": translator.domains.default if translator.domains else None,
        "calibrated": translator.calibration is not None,  # translations can carry a confidence
    }


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field} if field else {"error": message}, status_code=status)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) past `limit` bytes without reading the rest."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body", f"the body has {declared} bytes; at most {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "body", f"the body is over {limit} bytes")
    return bytes(body)


def create_app(translator: Translator, model_path: Path, limits: Limits = Limits(), plots_dir: Path = PLOTS_DIR,
               batcher: Batcher | None = None, terms: KeptTerms = NO_TERMS) -> Starlette:
    """The ASGI app around a loaded `translator`. `batcher` defaults to dynamic batching with `limits`;
    `terms` are kept in every request's texts."""
    if translator.beam_size > limits.max_beam:
        raise UserError(f"the default beam size {translator.beam_size} (evaluate.beam_size or --beam) is above "
                        f"the API's limit of {limits.max_beam}: lower it")
    info = model_info(translator, model_path)
    if batcher is None:
        batcher = Batcher(lambda paragraphs, settings: run_translations(translator, paragraphs, settings),
                          limits.batch_sentences, limits.batch_wait_s, limits.queue_size, limits.timeout_s)

    open_requests = 0  # touched on the event loop only
    calibration = None if translator.calibration else missing_calibration_message(model_path)

    async def translate(request: Request) -> Response:
        nonlocal open_requests
        if open_requests >= limits.max_open_requests:  # bounds the bodies held in memory, read or being read
            return _error(503, "the server is busy (too many requests open): retry shortly")
        open_requests += 1
        try:
            parsed = parse_translate_request(await _read_body(request, limits.max_body_bytes), translator.beam_size,
                                             limits, info["domains"], translator.paragraphs, calibration,
                                             terms)
            if parsed.markup != "text":
                return await _translate_markup(parsed, batcher)
            translations = await batcher.submit(parsed.paragraphs, parsed.settings, parsed.sentences)
        except ApiError as error:
            return _error(error.status, error.message, error.field)
        except QueueFull:
            return _error(503, "the server is busy (its queue is full): retry shortly")
        except TimedOut:
            return _error(504, f"no translation within {batcher.timeout_s:g} s: retry, or send fewer sentences")
        finally:
            open_requests -= 1
        return await run_in_threadpool(translations_response, translations, parsed.beam, parsed)

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def info_route(_: Request) -> Response:
        return JSONResponse(info)

    async def page(_: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")

    async def font(_: Request) -> Response:
        return Response(web_font_bytes(), media_type="font/ttf", headers={"Cache-Control": "max-age=86400"})

    async def plots(_: Request) -> Response:
        return JSONResponse([name for name in PLOT_NAMES if (plots_dir / name).is_file()])

    async def plot(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in PLOT_NAMES or not (plots_dir / name).is_file():
            return _error(404, f"no plot {name!r}: run `dvc repro` to draw them")
        return FileResponse(plots_dir / name, media_type="image/png")

    async def http_error(_: Request, error: HTTPException) -> Response:
        return _error(error.status_code, error.detail)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette):
        await batcher.start()
        yield
        await batcher.stop()  # uvicorn has let the requests in flight finish; nothing is queued any more

    routes = [
        Route("/", page), Route("/translate", translate, methods=["POST"]), Route("/health", health),
        Route("/info", info_route), Route("/static/NanumGothic.ttf", font), Route("/plots", plots),
        Route("/plots/{name}", plot),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.state.batcher = batcher
    return app


async def _translate_markup(parsed: TranslateRequest, batcher: Batcher) -> Response:
    """A request of HTML or Markdown documents: each parsed into texts and markup (a `UserError` for
    an unbalanced tag: 422), the texts translated with alignments through the batcher, the markup
    put back."""
    from seq2seq.markup import parse_html, parse_markdown, translate_pieces

    escape = escape_html if parsed.markup == "html" else str
    try:
        documents = [parse_html(text, f"text[{index}]") if parsed.markup == "html" else parse_markdown(text)
                     for index, text in enumerate(paragraph.join(paragraph.sentences)
                                                  for paragraph in parsed.paragraphs)]
    except UserError as error:
        raise ApiError(422, "text", str(error)) from None
    texts = [piece.text for pieces in documents for piece in pieces if not isinstance(piece, str)
             and piece.text.strip()]
    paragraphs = split_paragraphs(texts)
    settings = SearchSettings(parsed.beam, False, parsed.domain, 1, "source")
    translated = await batcher.submit(paragraphs, settings, sum(len(p.sentences) for p in paragraphs)) if texts else []
    found = iter((t.text, t.alignment or []) for t in translated)
    results = [{"text": "".join(translate_pieces(pieces, lambda batch: [next(found) for _ in batch], escape))}
               for pieces in documents]
    return JSONResponse({"translations": results, "beam": parsed.beam})


def run_translations(translator: Translator, paragraphs: list[Paragraph], settings: tuple) -> list[Translation]:
    """The batcher's call, on its search thread: translate `paragraphs` with `SearchSettings` (or a
    tuple of its fields). The JSON is made later, off this thread (`translations_response`)."""
    beam, attention, domain, n_best, alignment_method = SearchSettings(*settings)
    return translator.translate_paragraphs(paragraphs, beam, attention, domain, n_best=n_best,
                                           alignments=alignment_method is not None,
                                           alignment_method=alignment_method or "target")


def load_translator(model_path: Path, decoding: EvaluateConfig, device: str, limits: Limits,
                    quantize: bool = False) -> Translator:
    """The model as `serve` uses it: `decoding` gives the default beam size and the length penalty,
    output ratio and n-gram blocking. A request's own sentences are one search call, with or
    without dynamic batching (which only merges requests)."""
    return Translator(model_path, beam_size=decoding.beam_size, length_penalty=decoding.length_penalty,
                      max_output_ratio=decoding.max_output_ratio, device=device,
                      batch_size=max(limits.batch_sentences, limits.max_sentences), warn=log.warning,
                      no_repeat_ngram_size=decoding.no_repeat_ngram_size, quantize=quantize)


def serve(model_path: Path, host: str, port: int, decoding: EvaluateConfig, device: str, limits: Limits,
          plots_dir: Path = PLOTS_DIR, quantize: bool = False, terms: KeptTerms = NO_TERMS) -> None:
    """Load the model, then serve until Ctrl-C or SIGTERM (requests in flight are finished first);
    `terms` are kept in every request."""
    import uvicorn

    translator = load_translator(model_path, decoding, device, limits, quantize)
    app = create_app(translator, model_path, limits, plots_dir, terms=terms)
    print(f"model {model_path} loaded; serving on http://{host}:{port} (Ctrl-C stops)", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="info",
                timeout_graceful_shutdown=int(limits.timeout_s) + 5, limit_concurrency=limits.max_connections)
