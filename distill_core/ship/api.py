"""The HTTP service of one model of a run: a FastAPI app on PyTorch or ONNX Runtime, and what it needs per request.

    POST /predict        {"text": "..."}          -> label, confidence, probability of every class, model, latency
    POST /predict/batch  {"texts": ["...", ...]}  -> one such answer per text
    GET  /health         200 {"status": "ready"} once the model is loaded; 503 while it loads
    GET  /info           model, run, labels, max length, backend, parameters, test accuracy, limits
    GET  /               a page to try the model: a text box, a button, one bar per class
    GET  /docs           the OpenAPI docs (the schema itself at /openapi.json)

    from distill_core.ship.api import ServeSettings, create_app, service_info
    app = create_app(service_info(run_dir, "student", "torch"), ServeSettings(), classifier=clf)   # any ASGI server

``python -m distill_core serve RUN`` (``ship/serve.py``) runs it on uvicorn; the JSON it takes and answers is in
``ship/api_schemas.py``.

How it behaves:

- Model calls run on a pool of ``--workers`` threads (default 1: one call at a time, with every core), never on
  the event loop; up to ``--queue`` more requests wait their turn. Beyond that a request gets 503 with
  ``Retry-After`` at once instead of piling up. Concurrent requests are not merged into batches: on the
  project's 2-core machine a batch of 8 test texts cost the PyTorch student 17% less per text than 8 single calls,
  and the int8 ONNX student 45% more (padding), so merging would buy little throughput for the latency of waiting
  (``scripts/serving_figures.py`` measures it). Clients that want throughput send ``/predict/batch``.
- Bad input gets a 4xx whose JSON body says what to fix (``{"error": "...", "detail": [...]}``), never a 500:
  a missing or non-string text, an empty or whitespace-only one, one over ``--max-chars`` characters, a batch
  over ``--max-batch`` texts, malformed JSON (422), or a body too large to be any of those (413). Texts longer
  than the model's max length are truncated, and each answer says how many tokens were cut.
- CORS is off unless ``--allow-origin`` names origins.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time to know that a
# request model (built in create_app) is the JSON body; as strings they would not resolve.
import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from ..config import MODEL_TITLES
from ..errors import DistillError, InputError, RunError
from .serve_settings import ServeSettings

logger = logging.getLogger(__name__)

PAGE = Path(__file__).parent / "static" / "index.html"
FASTAPI_UNREADABLE_BODY = "There was an error parsing the body"


# ----------------------------------------------------------------------------- what is served


def service_info(run_dir: Path, kind: str, backend: str) -> dict[str, Any]:
    """What ``/info`` says about the served model before it is loaded; checks the run can serve it.

    Raises RunError (one line, with the fix) for a missing or damaged model folder or ONNX export, before any
    weights are loaded or any port is opened.
    """
    from .onnx_export import check_export
    from ..files import read_json
    from ..runs import CONFIG_FILE, RESULTS_FILE, model_problem

    run_dir = Path(run_dir)
    problem = model_problem(run_dir, kind)
    if problem:
        raise RunError(f"Run {run_dir.name} cannot serve its {kind}: {problem}. Re-train it, or pick another model "
                       "with --model.")
    exported = check_export(run_dir, kind, int8=backend == "onnx-int8") if backend != "torch" else None
    info: dict[str, Any] = {"run": run_dir.name, "model": kind, "title": MODEL_TITLES.get(kind, kind), "backend": backend,
                            "dataset": None, "test_accuracy": None, "test_macro_f1": None, "backend_test_accuracy": None}
    try:  # /info is best effort: the model folder, what serving needs, was checked above
        info["dataset"] = read_json(run_dir / CONFIG_FILE).get("data", {}).get("dataset")
    except (RunError, AttributeError):
        logger.warning("config.json of %s is unreadable; /info leaves the dataset out", run_dir.name)
    if (run_dir / RESULTS_FILE).is_file():
        try:
            m = read_json(run_dir / RESULTS_FILE)["models"][kind]
            info["test_accuracy"], info["test_macro_f1"] = float(m["accuracy"]), float(m["macro_f1"])
        except (RunError, KeyError, TypeError, ValueError):
            logger.warning("results.json of %s has no test figures for %s; /info leaves them out", run_dir.name, kind)
    if exported:
        key = "onnx_int8" if backend == "onnx-int8" else "onnx"
        info["backend_test_accuracy"] = (exported.get("verification") or {}).get(key, {}).get("accuracy")
    return info


class Busy(Exception):
    """Every worker is busy and the queue is full."""


class WorkerPool:
    """Runs model calls on ``workers`` threads, off the event loop, with at most ``queue`` more waiting.

    ``pending`` (running + waiting) is only touched on the event loop's thread, so it needs no lock; a call is
    counted until its thread finishes, even when the client that asked for it has gone.
    """

    def __init__(self, workers: int, queue: int):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="model")
        self.limit = workers + queue
        self.pending = 0

    async def run(self, fn: Callable[[], Any]) -> Any:
        if self.pending >= self.limit:
            raise Busy()
        loop = asyncio.get_running_loop()
        self.pending += 1
        future = self._pool.submit(fn)
        future.add_done_callback(lambda _: _call_soon(loop, self._release))
        return await asyncio.wrap_future(future)

    def _release(self) -> None:
        self.pending -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
    try:
        loop.call_soon_threadsafe(fn)
    except RuntimeError:  # the loop closed while the call ran (server shutting down)
        pass


def answer(classifier, texts: list[str]) -> tuple[list[dict[str, Any]], float]:
    """Classify ``texts`` in one call; each answer's label, confidence, probability by class and tokens cut.

    Returns:
        (answers, milliseconds of tokenising + forward passes + token counting).
    """
    from .inference import softmax

    t0 = time.perf_counter()
    logits = classifier.predict_logits(texts, batch_size=max(1, len(texts)))  # (N, C)
    counts = [classifier.count_tokens(t) for t in texts]
    ms = (time.perf_counter() - t0) * 1000.0
    probs = softmax(logits.astype("float64"))  # (N, C)
    out = []
    for p, n in zip(probs, counts):
        i = int(p.argmax())
        out.append({"label": classifier.labels[i], "confidence": float(p[i]),
                    "probabilities": {name: float(v) for name, v in zip(classifier.labels, p)},
                    "tokens": int(n), "truncated_tokens": max(0, int(n) - classifier.max_length)})
    return out, ms


# ----------------------------------------------------------------------------- the app


def create_app(about: dict[str, Any], settings: ServeSettings, classifier=None,
               load: Callable[[], Any] | None = None, on_load_error: Callable[[str], None] | None = None):
    """The FastAPI app serving one classifier.

    Args:
        about: what ``service_info`` returns (run, model, backend, test accuracy).
        classifier: a loaded ``TextClassifier`` / ``OnnxClassifier``; or
        load: a function returning one, called in a thread once the server starts (``/health`` says
            ``loading`` until it returns); ``on_load_error(message)`` is called if it raises.
    """
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.middleware.cors import CORSMiddleware
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from .api_schemas import (BUSY_RESPONSE, ERROR_RESPONSES, BatchResponse, Health, Info, PredictResponse,
                              request_models)

    if (classifier is None) == (load is None):
        raise ValueError("give create_app exactly one of a loaded classifier and a load function")
    pool = WorkerPool(settings.workers, settings.queue)
    state: dict[str, Any] = {"classifier": classifier, "error": None}
    PredictRequest, BatchRequest = request_models(settings.max_chars, settings.max_batch)  # limits from the settings

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(_load_in_background(load, state, on_load_error)) if load is not None else None
        try:
            yield
        finally:
            pool.close()
            if task is not None and not task.done():
                task.cancel()

    title = f"{about.get('title', about['model'])} of run {about['run']} ({about['backend']})"
    app = FastAPI(title=f"distill-lens: {title}", version="1",
                  description="Classify texts with one model of a distill-lens run. `POST /predict` one text, "
                              "`POST /predict/batch` several; `GET /info` says what is served.",
                  lifespan=lifespan)
    app.state.service = state
    if settings.allow_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.allow_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type"])
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    def ready():
        clf = state["classifier"]
        if clf is None:
            if state["error"]:
                raise HTTPException(503, f"the model failed to load: {state['error']}")
            raise HTTPException(503, "the model is still loading; retry in a moment", headers={"Retry-After": "1"})
        return clf

    async def classify(texts: list[str]) -> tuple[list[dict[str, Any]], float, float]:
        clf = ready()
        queued = time.perf_counter()
        started: list[float] = []

        def call():
            started.append(time.perf_counter())
            return answer(clf, texts)

        try:
            answers, ms = await pool.run(call)
        except Busy:
            raise HTTPException(503, f"busy: {pool.pending} requests are running or waiting (at most "
                                     f"{pool.limit}); retry in a moment", headers={"Retry-After": "1"}) from None
        return answers, ms, (started[0] - queued) * 1000.0

    def served(ms: float, queue_ms: float) -> dict[str, Any]:
        return {"model": about["model"], "backend": about["backend"], "run": about["run"], "latency_ms": ms,
                "queue_ms": max(0.0, queue_ms)}

    @app.post("/predict", response_model=PredictResponse, responses=ERROR_RESPONSES, summary="Classify one text")
    async def predict(req: PredictRequest):
        (one,), ms, queue_ms = await classify([req.text])
        return {**one, **served(ms, queue_ms)}

    @app.post("/predict/batch", response_model=BatchResponse, responses=ERROR_RESPONSES,
              summary="Classify several texts")
    async def predict_batch(req: BatchRequest):
        answers, ms, queue_ms = await classify(list(req.texts))
        return {"predictions": answers, **served(ms, queue_ms)}

    @app.get("/health", response_model=Health, responses={503: {"model": Health, "description": "loading or failed"}},
             summary="Ready once the model is loaded")
    async def health():
        if state["classifier"] is not None:
            return {"status": "ready"}
        body = {"status": "failed" if state["error"] else "loading", "error": state["error"]}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})

    @app.get("/info", response_model=Info, responses={503: BUSY_RESPONSE}, summary="What is served")
    async def info():
        clf = ready()
        return {**{k: about.get(k) for k in ("run", "model", "title", "backend", "dataset", "test_accuracy",
                                             "test_macro_f1", "backend_test_accuracy")},
                "labels": list(clf.labels), "max_length": clf.max_length, "parameters": clf.num_parameters(),
                "truncation": getattr(clf, "truncation", "head"),
                "max_chars": settings.max_chars, "max_batch": settings.max_batch, "workers": settings.workers,
                "queue": settings.queue}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    # ------------------------------------------------------------------ errors: one line saying what to fix

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        details = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                   for e in exc.errors()]
        message = explain(exc.errors(), settings, request.headers.get("content-type", ""))
        return JSONResponse({"error": message, "detail": details}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = str(exc.detail)
        if exc.status_code == 400 and message == FASTAPI_UNREADABLE_BODY:  # FastAPI's words for a body it cannot decode
            message = 'the body could not be read as text (send JSON in UTF-8, such as {"text": "..."})'
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(InputError)
    async def bad_text(request: Request, exc: InputError):
        return JSONResponse({"error": str(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        logger.exception("Internal error answering %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal error (not a problem with your input); the server log has the "
                                      "traceback"}, status_code=500)

    return app


async def _load_in_background(load: Callable[[], Any], state: dict[str, Any],
                              on_load_error: Callable[[str], None] | None) -> None:
    t0 = time.perf_counter()
    try:
        state["classifier"] = await asyncio.to_thread(load)
    except Exception as e:  # noqa: BLE001 - any failure to load is reported by /health and ends the CLI
        state["error"] = str(e).splitlines()[0] if str(e) else type(e).__name__
        if not isinstance(e, DistillError):  # not the user's to fix: keep the traceback for the report
            logger.exception("Loading the model failed")
        if on_load_error is not None:
            on_load_error(state["error"])
        return
    logger.info("Model loaded in %.1f s; ready", time.perf_counter() - t0)


def explain(errors: list[dict[str, Any]], settings: ServeSettings, content_type: str = "application/json") -> str:
    """The first validation error as one sentence saying what to send instead."""
    if not errors:
        return "invalid request"
    e = errors[0]
    loc = [str(x) for x in e.get("loc", ()) if x != "body"]
    kind, where = e.get("type", ""), ".".join(loc)
    field_name = loc[0] if loc else ""
    example = '{"texts": ["...", "..."]}' if field_name == "texts" else '{"text": "..."}'
    value = e.get("input")
    if kind == "json_invalid":
        return f"the body is not valid JSON ({(e.get('ctx') or {}).get('error', 'decode error')}); send {example}"
    if kind == "missing":
        return f"'{where}' is missing; send {example}" if where else f"the body is empty; send {example}"
    if kind in ("model_attributes_type", "dict_type"):
        if "json" not in content_type.lower():
            return f"send the body as JSON, with the header Content-Type: application/json (not {content_type or 'none'})"
        return f"the body must be a JSON object such as {example}"
    if kind == "string_unicode":
        return f"'{where}' holds an unpaired UTF-16 surrogate (such as \\ud800); send valid Unicode"
    if kind == "string_type":
        return f"'{where}' must be a string, not {_json_type(value)}"
    if kind == "list_type":
        return f"'{where}' must be a list of strings, not {_json_type(value)}"
    if kind in ("string_too_short", "string_pattern_mismatch"):
        return f"'{where}' is empty or only whitespace; type some words to classify"
    if kind == "string_too_long":
        n = len(value) if isinstance(value, str) else "too many"
        return (f"'{where}' has {n} characters; this server takes at most {settings.max_chars} per text "
                "(the model reads only its first tokens; cut the text, or restart the server with a larger --max-chars)")
    if kind == "too_long":
        n = len(value) if isinstance(value, list) else "too many"
        return f"'{where}' holds {n} texts; send at most {settings.max_batch} per request (--max-batch)"
    if kind == "too_short":
        return f"'{where}' is empty; send at least one text"
    if kind == "value_error":
        return f"'{where}': {str(e.get('msg', '')).removeprefix('Value error, ')}"
    return f"'{where}': {e.get('msg', 'invalid')}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before it is read whole into memory."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and not length.isdigit():
            return await _send_json(send, 400, {"error": "the Content-Length header is not a number"})
        if length is not None and int(length) > self.max_bytes:
            return await _send_json(send, 413, {"error": f"the body has {int(length)} bytes; this server takes at "
                                                         f"most {self.max_bytes}"})
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    from fastapi import HTTPException

                    # Raised inside the app's body read: FastAPI passes an HTTPException through as the response.
                    raise HTTPException(413, f"the body is over {self.max_bytes} bytes, more than any valid request")
            return message

        return await self.app(scope, limited_receive, send)


async def _send_json(send, status: int, body: dict[str, Any]) -> None:
    import json

    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
