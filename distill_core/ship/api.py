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
- One request never holds the workers for long: a batch runs ``CHUNK`` texts per model call, so other requests
  take their turn between its chunks, and all its texts together may hold at most ``--max-request-chars``
  characters (413 beyond). Work for a client that has closed its connection is dropped: a call not started yet
  never runs, and a batch stops after the chunk running (``ship/workers.py``).
- Bad input gets a 4xx whose JSON body says what to fix (``{"error": "...", "detail": [...]}``), never a 500:
  a missing or non-string text, an empty or whitespace-only one, one over ``--max-chars`` characters, a batch
  over ``--max-batch`` texts, malformed JSON (422), JSON nested too deeply or with a number too large to read
  (422), or a body too large to be any of those (413). Texts longer than the model's max length are truncated,
  and each answer says how many tokens were cut. The words of each error are in ``ship/api_errors.py``.
- CORS is off unless ``--allow-origin`` names origins.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time to know that a
# request model (built in create_app) is the JSON body; as strings they would not resolve.
import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Callable

from ..config import MODEL_TITLES
from ..errors import DistillError, InputError, RunError
from .api_errors import BodyLimit, explain, unreadable_body
from .serve_settings import ServeSettings
from .workers import Busy, ClientGone, WorkerPool

logger = logging.getLogger(__name__)

PAGE = Path(__file__).parent / "static" / "index.html"
FASTAPI_UNREADABLE_BODY = "There was an error parsing the body"
CHUNK = 8  # texts per model call of a batch: other requests take their turn between chunks


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


def answer(classifier, texts: list[str]) -> tuple[list[dict[str, Any]], float]:
    """Classify ``texts`` in one call; each answer's label, confidence, probability by class and tokens cut.

    Returns:
        (answers, milliseconds of tokenising + forward passes + token counting).
    """
    from .classifier import unknown_note, unknown_tokens
    from .inference import softmax

    t0 = time.perf_counter()
    logits = classifier.predict_logits(texts, batch_size=max(1, len(texts)))  # (N, C)
    counts = [classifier.count_tokens(t) for t in texts]
    unknown = [unknown_tokens(classifier.tokenizer, t) for t in texts]  # (unknown, own tokens) per text
    ms = (time.perf_counter() - t0) * 1000.0
    probs = softmax(logits.astype("float64"))  # (N, C)
    unk_token = getattr(classifier.tokenizer, "unk_token", None)
    out = []
    for p, n, (unk, own) in zip(probs, counts, unknown):
        i = int(p.argmax())
        note = unknown_note(unk, own, "the model's", unk_token)
        out.append({"label": classifier.labels[i], "confidence": float(p[i]),
                    "probabilities": {name: float(v) for name, v in zip(classifier.labels, p)},
                    "tokens": int(n), "truncated_tokens": max(0, int(n) - classifier.max_length),
                    "unknown_token_share": unk / own if own else 0.0, "warnings": [note] if note else []})
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

    async def classify(request: Request, texts: list[str]) -> tuple[list[dict[str, Any]], float, float]:
        """Answers for ``texts`` in chunks of ``CHUNK``, with the milliseconds computing and waiting for a worker."""
        clf = ready()
        chars = sum(len(t) for t in texts)
        if chars > settings.max_request_chars:
            raise HTTPException(413, f"the texts hold {chars} characters in all; this server takes at most "
                                     f"{settings.max_request_chars} per request (--max-request-chars): send fewer or "
                                     "shorter texts per request")
        answers: list[dict[str, Any]] = []
        ms = queue_ms = 0.0
        try:
            with pool.admit():
                for i in range(0, len(texts), CHUNK):
                    (part, part_ms), waited = await pool.call(lambda chunk=texts[i:i + CHUNK]: answer(clf, chunk),
                                                              gone=request.is_disconnected)
                    answers += part
                    ms, queue_ms = ms + part_ms, queue_ms + waited
        except Busy:
            raise HTTPException(503, f"busy: {pool.pending} requests are running or waiting (at most "
                                     f"{pool.limit}); retry in a moment", headers={"Retry-After": "1"}) from None
        return answers, ms, queue_ms

    def served(ms: float, queue_ms: float) -> dict[str, Any]:
        return {"model": about["model"], "backend": about["backend"], "run": about["run"], "latency_ms": ms,
                "queue_ms": max(0.0, queue_ms)}

    @app.post("/predict", response_model=PredictResponse, responses=ERROR_RESPONSES, summary="Classify one text")
    async def predict(req: PredictRequest, request: Request):
        (one,), ms, queue_ms = await classify(request, [req.text])
        return {**one, **served(ms, queue_ms)}

    @app.post("/predict/batch", response_model=BatchResponse, responses=ERROR_RESPONSES,
              summary="Classify several texts")
    async def predict_batch(req: BatchRequest, request: Request):
        answers, ms, queue_ms = await classify(request, list(req.texts))
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
                "max_chars": settings.max_chars, "max_batch": settings.max_batch,
                "max_request_chars": settings.max_request_chars, "workers": settings.workers,
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
        message, status = str(exc.detail), exc.status_code
        if status == 400 and message == FASTAPI_UNREADABLE_BODY:  # FastAPI's words for any body it cannot parse
            status, message = unreadable_body(exc.__cause__)
        return JSONResponse({"error": message}, status_code=status, headers=exc.headers)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, exc: ClientGone):
        logger.info("Dropped %s %s: the client closed the connection before its answer", request.method,
                    request.url.path)
        # 499 (client closed request), as nginx logs it; nobody is left to read it.
        return JSONResponse({"error": "the client closed the connection; the request was dropped"}, status_code=499)

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
