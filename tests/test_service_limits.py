"""The service does not work for clients that have left, and one request cannot hold the model for long.

In-process (the ASGI app called directly, so a client can leave mid-request): work queued for a client that has
closed its connection never runs, a batch abandoned mid-way stops after its running chunk, a single request
takes its turn between a batch's chunks, and a request's texts are capped in characters all together. Then a
real uvicorn on 127.0.0.1: twenty batches abandoned by their clients, and the next /predict is answered at once.
Also: bodies FastAPI cannot parse are told apart (nested too deeply, a number too large, not UTF-8).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from distill_core.errors import ConfigError
from distill_core.runs import model_dir
from distill_core.ship.api import CHUNK, create_app, service_info
from distill_core.ship.inference import TextClassifier
from distill_core.ship.loadtest import free_port
from distill_core.ship.serve_settings import ServeSettings


@pytest.fixture(scope="module")
def clf(tiny_run) -> TextClassifier:
    return TextClassifier.load(model_dir(tiny_run, "student"))


class Recording:
    """The tiny classifier, recording every call's texts; held at ``gate`` when ``gated``, slowed by ``delay_s``."""

    def __init__(self, clf, gated: bool = False, delay_s: float = 0.0):
        self.clf, self.delay_s = clf, delay_s
        self.gate, self.entered = threading.Event(), threading.Event()
        if not gated:
            self.gate.set()
        self.calls: list[list[str]] = []

    def __getattr__(self, name):
        return getattr(self.clf, name)

    def predict_logits(self, texts, batch_size=32):
        self.calls.append(list(texts))
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        time.sleep(self.delay_s)
        return self.clf.predict_logits(texts, batch_size)

    @property
    def texts(self) -> list[str]:
        return [t for call in self.calls for t in call]


def make_app(run, model, **kw):
    return create_app(service_info(run, "student", "torch"), ServeSettings(**{"max_chars": 400, "max_batch": 64, **kw}),
                      classifier=model)


async def post(app, path: str, body, gone: asyncio.Event | None = None) -> tuple[int, dict]:
    """POST ``body`` to the ASGI ``app`` as a server would; once ``gone`` is set the client has closed its connection."""
    data = json.dumps(body).encode()
    gone = gone or asyncio.Event()
    delivered = False

    async def receive():
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": data, "more_body": False}
        await gone.wait()  # as uvicorn does: nothing more to read until the connection closes
        return {"type": "http.disconnect"}

    status, chunks = [], []

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
    await app(scope, receive, send)
    return status[0], json.loads(b"".join(chunks) or b"{}")


# ----------------------------------------------------------------------------- clients that have left


def test_work_queued_for_a_client_that_has_left_never_runs(tiny_run, clf):
    model = Recording(clf, gated=True)
    app = make_app(tiny_run, model, workers=1, queue=4)

    async def scenario():
        first = asyncio.create_task(post(app, "/predict", {"text": "stocks rose"}))
        await asyncio.to_thread(model.entered.wait, 10)
        gone = asyncio.Event()
        queued = asyncio.create_task(post(app, "/predict/batch", {"texts": ["the team won the cup"] * 3}, gone))
        await asyncio.sleep(0.2)  # waiting for the one worker, busy with `first`
        gone.set()
        dropped = await asyncio.wait_for(queued, 5)  # answered while the worker is still held: it never waited its turn
        assert not first.done()
        model.gate.set()
        return await first, dropped

    (first_status, _), (dropped_status, _) = asyncio.run(scenario())
    assert first_status == 200
    assert dropped_status == 499
    assert model.texts == ["stocks rose"]  # the abandoned batch never reached the model


def test_a_batch_whose_client_leaves_stops_after_the_chunk_running(tiny_run, clf):
    model = Recording(clf, gated=True)
    app = make_app(tiny_run, model, workers=1, queue=4)
    texts = [f"the market price of oil {i}" for i in range(3 * CHUNK)]

    async def scenario():
        gone = asyncio.Event()
        batch = asyncio.create_task(post(app, "/predict/batch", {"texts": texts}, gone))
        await asyncio.to_thread(model.entered.wait, 10)
        gone.set()
        await asyncio.sleep(0.3)
        model.gate.set()  # the chunk running finishes; none after it starts
        return await asyncio.wait_for(batch, 5)

    status, _ = asyncio.run(scenario())
    assert status == 499
    assert model.texts == texts[:CHUNK]


def test_a_single_request_takes_its_turn_between_the_chunks_of_a_batch(tiny_run, clf):
    model = Recording(clf, gated=True)
    app = make_app(tiny_run, model, workers=1, queue=4)
    texts = [f"the team won the league {i}" for i in range(4 * CHUNK)]

    async def scenario():
        batch = asyncio.create_task(post(app, "/predict/batch", {"texts": texts}))
        await asyncio.to_thread(model.entered.wait, 10)
        single = asyncio.create_task(post(app, "/predict", {"text": "nasa space study"}))
        await asyncio.sleep(0.2)
        model.gate.set()
        return await asyncio.wait_for(asyncio.gather(batch, single), 20)

    (batch_status, batch_body), (single_status, _) = asyncio.run(scenario())
    assert batch_status == single_status == 200
    assert [p["label"] for p in batch_body["predictions"]] == [clf.labels[i] for i in clf.predict_logits(texts).argmax(-1)]
    assert model.calls[0] == texts[:CHUNK]  # the batch runs a chunk at a time,
    assert model.calls[1] == ["nasa space study"]  # and the single request after its first chunk, not all four


def test_abandoned_batches_on_a_real_server_do_not_delay_the_next_request(tiny_run, clf):
    """Twenty batches whose clients give up after 0.5 s; the next /predict is answered within about one chunk."""
    import uvicorn

    model = Recording(clf, delay_s=0.25)  # a slow model: 0.25 s per call, 0.5 s per batch of two chunks
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(make_app(tiny_run, model, workers=1, queue=64), host="127.0.0.1",
                                           port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 20
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        assert server.started

        async def abandon_all():
            async with httpx.AsyncClient(trust_env=False, limits=httpx.Limits(max_connections=20)) as c:
                async def one(i):
                    with contextlib.suppress(httpx.TimeoutException):  # the client gives up and closes its connection
                        await c.post(f"{base}/predict/batch", json={"texts": [f"oil price {i} {j}" for j in range(2 * CHUNK)]},
                                     timeout=0.5)
                await asyncio.gather(*(one(i) for i in range(20)))

        asyncio.run(abandon_all())
        time.sleep(0.3)  # the server notices the closed connections
        t0 = time.perf_counter()
        r = httpx.post(f"{base}/predict", json={"text": "the team won the cup"}, timeout=30, trust_env=False)
        waited = time.perf_counter() - t0
    finally:
        server.should_exit = True
        thread.join(15)
    assert r.status_code == 200
    # Had every abandoned batch run, this request would have waited 20 x 0.5 s = 10 s.
    assert waited < 2.0, f"waited {waited:.1f} s behind abandoned work"
    assert len(model.calls) <= 6, f"{len(model.calls)} model calls for clients that had left"


# ----------------------------------------------------------------------------- work per request


def test_a_request_over_the_characters_allowed_is_refused_before_any_work(tiny_run, clf):
    model = Recording(clf)
    with TestClient(make_app(tiny_run, model, max_chars=400, max_request_chars=1000)) as c:
        r = c.post("/predict/batch", json={"texts": ["a" * 300] * 4})
        assert r.status_code == 413
        assert "1200 characters in all" in r.json()["error"] and "--max-request-chars" in r.json()["error"]
        assert c.post("/predict/batch", json={"texts": ["stocks rose"] * 4}).status_code == 200
        assert c.get("/info").json()["max_request_chars"] == 1000
    assert model.texts == ["stocks rose"] * 4


def test_the_default_limits_refuse_a_batch_that_would_hold_the_model_for_long(tiny_run, clf):
    """64 texts of 20,000 characters (what held a server for minutes) is over the default per-request total."""
    model = Recording(clf)
    app = create_app(service_info(tiny_run, "student", "torch"), ServeSettings(), classifier=model)
    with TestClient(app) as c:
        r = c.post("/predict/batch", json={"texts": ["the bank profit " * 1250] * 64})
    assert r.status_code == 413 and "--max-request-chars" in r.json()["error"]
    assert model.calls == []


def test_the_characters_per_request_setting_is_checked():
    with pytest.raises(ConfigError, match="--max-request-chars 10: give at least --max-chars"):
        ServeSettings(max_chars=400, max_request_chars=10).validate()
    with pytest.raises(ConfigError, match="--max-request-chars 0"):
        ServeSettings(max_request_chars=0).validate()
    assert ServeSettings().max_body_bytes == 12 * 200_000 + 16 * 64 + 4096  # the total, not 64 x 20,000, bounds the body


# ----------------------------------------------------------------------------- bodies that cannot be parsed


@pytest.mark.parametrize("raw,status,message", [
    (b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 422, "nested too deeply"),
    (b'{"text": ' + b"7" * 5000 + b"}", 422, "number too large"),
    (b'{"text": "caf\xe9"}', 400, "could not be read as text"),
], ids=["nested", "5000-digit number", "latin-1"])
def test_a_body_that_cannot_be_parsed_gets_its_true_reason(tiny_run, clf, raw, status, message):
    with TestClient(make_app(tiny_run, clf)) as c:
        r = c.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    if status == 422:
        assert "UTF-8" not in r.json()["error"]
