"""The HTTP service (``serve``) and its load test (``loadtest``), on the tiny fixture run.

In-process (the ASGI app, no port): answers and their shape, every kind of bad input (4xx with a message, never a
500), the bounded worker pool (503 with Retry-After beyond the queue, the event loop free meanwhile), /health
while loading, CORS, and schemathesis fuzzing the OpenAPI schema. Then the real command on a free loopback port:
start-up errors as one line, a load test with zero errors, the page in Chromium, and a clean stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from distill_core.cli import main
from distill_core.errors import ConfigError
from distill_core.ship.inference import TextClassifier
from distill_core.ship.loadtest import LoadSettings, check_loopback, free_port, problem_with, run_load, wait_until_healthy
from distill_core.files import read_json
from distill_core.runs import model_dir
from distill_core.ship.api import create_app, service_info
from distill_core.ship.serve_settings import ServeSettings

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
LONG = " ".join(["the market price of oil and the bank profit"] * 8)  # over the tiny models' 32 tokens


@pytest.fixture(scope="module")
def clf(tiny_run) -> TextClassifier:
    return TextClassifier.load(model_dir(tiny_run, "student"))


def make_app(run: Path, clf, **kw):
    return create_app(service_info(run, "student", "torch"), ServeSettings(**{"max_chars": 400, "max_batch": 4, **kw}),
                      classifier=clf)


@pytest.fixture(scope="module")
def client(tiny_run, clf):
    with TestClient(make_app(tiny_run, clf)) as c:
        yield c


# ----------------------------------------------------------------------------- answers


def test_predict_answers_with_every_class_by_name(client, clf, tiny_run):
    r = client.post("/predict", json={"text": "the team won the cup ."})
    assert r.status_code == 200
    body = r.json()
    assert problem_with(body, clf.labels) is None
    expected = clf.predict_proba(["the team won the cup ."])[0]
    assert [body["probabilities"][n] for n in clf.labels] == pytest.approx(expected.tolist(), abs=1e-6)
    assert body["label"] == clf.labels[int(expected.argmax())]
    assert (body["model"], body["backend"], body["run"]) == ("student", "torch", tiny_run.name)
    assert body["tokens"] == clf.count_tokens("the team won the cup .") and body["truncated_tokens"] == 0
    assert body["latency_ms"] > 0 and body["queue_ms"] >= 0


def test_long_texts_are_truncated_and_say_by_how_much(client, clf):
    body = client.post("/predict", json={"text": LONG}).json()
    n = clf.count_tokens(LONG)
    assert n > 32 and (body["tokens"], body["truncated_tokens"]) == (n, n - 32)


def test_a_text_mostly_unknown_to_the_tokenizer_is_flagged(client):
    body = client.post("/predict", json={"text": "🚀🔥😂🎉"}).json()
    assert body["unknown_token_share"] == 1.0
    assert len(body["warnings"]) == 1 and "unknown to the model's tokenizer" in body["warnings"][0]
    known = client.post("/predict", json={"text": "the team won the cup ."}).json()
    assert (known["unknown_token_share"], known["warnings"]) == (0.0, [])


def test_batch_answers_each_text_in_order(client):
    texts = ["stocks rose .", LONG, "nasa space study"]
    r = client.post("/predict/batch", json={"texts": texts})
    assert r.status_code == 200
    batch = r.json()["predictions"]
    singles = [client.post("/predict", json={"text": t}).json() for t in texts]
    assert [b["label"] for b in batch] == [s["label"] for s in singles]
    for b, s in zip(batch, singles):
        assert b["probabilities"] == pytest.approx(s["probabilities"], abs=1e-5)
    assert batch[1]["truncated_tokens"] > 0


def test_info_health_page_and_docs(client, clf, tiny_run):
    info = client.get("/info").json()
    results = read_json(tiny_run / "results.json")
    assert info["labels"] == clf.labels and info["max_length"] == 32 and info["backend"] == "torch"
    assert info["parameters"] == clf.num_parameters() and info["model"] == "student"
    assert info["test_accuracy"] == pytest.approx(results["models"]["student"]["accuracy"])
    assert (info["max_chars"], info["max_batch"]) == (400, 4)
    assert client.get("/health").json() == {"status": "ready", "error": None}
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="classify"' in page.text and "/predict" in page.text
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) == {"/predict", "/predict/batch", "/health", "/info"}
    assert client.get("/docs").status_code == 200


# ----------------------------------------------------------------------------- bad input: 4xx with a message


BAD = [
    ("/predict", {"text": ""}, 422, "'text' is empty or only whitespace"),
    ("/predict", {"text": " \n\t "}, 422, "'text' is empty or only whitespace"),
    ("/predict", {"text": "\x1c"}, 422, "empty"),
    ("/predict", {"text": 5}, 422, "'text' must be a string, not a number"),
    ("/predict", {"text": None}, 422, "'text' must be a string, not null"),
    ("/predict", {"text": ["a"]}, 422, "'text' must be a string, not a list"),
    ("/predict", {}, 422, "'text' is missing"),
    ("/predict", {"txt": "hello"}, 422, "'text' is missing"),
    ("/predict", ["hello"], 422, "must be a JSON object"),
    ("/predict", {"text": "x" * 401}, 422, "has 401 characters; this server takes at most 400"),
    ("/predict/batch", {"texts": []}, 422, "'texts' is empty"),
    ("/predict/batch", {"texts": ["a"] * 5}, 422, "holds 5 texts; send at most 4"),
    ("/predict/batch", {"texts": ["fine", 3]}, 422, "'texts.1' must be a string"),
    ("/predict/batch", {"texts": ["fine", "  "]}, 422, "'texts.1' is empty"),
    ("/predict/batch", {"texts": "one text"}, 422, "'texts' must be a list"),
    ("/predict/batch", {"text": "one text"}, 422, "'texts' is missing"),
]


@pytest.mark.parametrize("path,body,status,message", BAD)
def test_bad_json_gets_a_clear_4xx(client, path, body, status, message):
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


@pytest.mark.parametrize("raw,headers,status,message", [
    (b'{"text": ', {"content-type": "application/json"}, 422, "not valid JSON"),
    (b"", {"content-type": "application/json"}, 422, "the body is empty"),
    (b'{"text": "\\ud800"}', {"content-type": "application/json"}, 422, "unpaired UTF-16 surrogate"),
    (b'\xff\xfe{"text"', {"content-type": "application/json"}, 400, "could not be read as text"),
    (b'{"text": "hi"}', {"content-type": "application/x-www-form-urlencoded"}, 422, "Content-Type: application/json"),
])
def test_malformed_bodies_get_a_clear_4xx(client, raw, headers, status, message):
    r = client.post("/predict", content=raw, headers=headers)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_a_body_too_large_for_any_request_is_refused_before_it_is_read(client):
    limit = ServeSettings(max_chars=400, max_batch=4).max_body_bytes
    big = json.dumps({"text": "a" * (limit + 10)}).encode()
    r = client.post("/predict", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and f"at most {limit}" in r.json()["error"]

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(limit // 1000 + 2):
            yield b"a" * 1000

    r = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "more than any valid request" in r.json()["error"]


# ----------------------------------------------------------------------------- the worker pool


class Gated:
    """The tiny classifier, held in ``predict_logits`` until ``gate`` is set (a slow model, on demand)."""

    def __init__(self, clf):
        self.clf, self.gate, self.entered = clf, threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self.clf, name)

    def predict_logits(self, texts, batch_size=32):
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        return self.clf.predict_logits(texts, batch_size)


def test_requests_beyond_the_queue_get_503_and_the_event_loop_stays_free(tiny_run, clf):
    gated = Gated(clf)
    app = make_app(tiny_run, gated, workers=1, queue=1)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            first = asyncio.create_task(c.post("/predict", json={"text": "stocks rose"}))
            await asyncio.to_thread(gated.entered.wait, 10)
            second = asyncio.create_task(c.post("/predict", json={"text": "the team won"}))  # waits in the queue
            await asyncio.sleep(0.05)
            third = await c.post("/predict", json={"text": "nasa space study"})  # no room left
            health = await c.get("/health")  # answered while the model is busy: inference is off the event loop
            gated.gate.set()
            done = await asyncio.gather(first, second)
            after = await c.post("/predict", json={"text": "oil price"})
            return third, health, done, after

    third, health, (first, second), after = asyncio.run(scenario())
    assert third.status_code == 503 and third.headers["retry-after"] == "1"
    assert "busy" in third.json()["error"]
    assert health.status_code == 200
    assert first.status_code == second.status_code == after.status_code == 200
    assert second.json()["queue_ms"] > 0


def test_health_says_loading_until_the_model_is_loaded(tiny_run, clf):
    gate = threading.Event()

    def load():
        assert gate.wait(10)
        return clf

    app = create_app(service_info(tiny_run, "student", "torch"), ServeSettings(), load=load)
    with TestClient(app) as c:
        r = c.get("/health")
        assert (r.status_code, r.json()["status"]) == (503, "loading")
        r = c.post("/predict", json={"text": "stocks rose"})
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "loading" in r.json()["error"]
        gate.set()
        deadline = time.time() + 10
        while c.get("/health").status_code != 200 and time.time() < deadline:
            time.sleep(0.05)
        assert c.get("/health").json()["status"] == "ready"
        assert c.post("/predict", json={"text": "stocks rose"}).status_code == 200


def test_a_model_that_fails_to_load_is_reported(tiny_run):
    failures = []

    def load():
        raise RuntimeError("weights unreadable")

    app = create_app(service_info(tiny_run, "student", "torch"), ServeSettings(), load=load,
                     on_load_error=failures.append)
    with TestClient(app) as c:
        deadline = time.time() + 10
        while not failures and time.time() < deadline:
            time.sleep(0.05)
        r = c.get("/health")
        assert (r.status_code, r.json()["status"], r.json()["error"]) == (503, "failed", "weights unreadable")
        assert c.post("/predict", json={"text": "hi"}).status_code == 503
    assert failures == ["weights unreadable"]


def test_cors_is_off_unless_origins_are_named(tiny_run, clf):
    preflight = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"}
    with TestClient(make_app(tiny_run, clf)) as c:
        assert "access-control-allow-origin" not in c.options("/predict", headers=preflight).headers
        assert "access-control-allow-origin" not in c.post("/predict", json={"text": "hi"},
                                                           headers={"Origin": "http://localhost:3000"}).headers
    with TestClient(make_app(tiny_run, clf, allow_origins=["http://localhost:3000"])) as c:
        assert c.options("/predict", headers=preflight).headers["access-control-allow-origin"] == "http://localhost:3000"
        other = c.options("/predict", headers={**preflight, "Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_any_model_of_the_run_can_be_served(tiny_run):
    teacher = TextClassifier.load(model_dir(tiny_run, "teacher"))
    app = create_app(service_info(tiny_run, "teacher", "torch"), ServeSettings(), classifier=teacher)
    with TestClient(app) as c:
        body = c.post("/predict", json={"text": "stocks rose"}).json()
        assert body["model"] == "teacher" and problem_with(body, teacher.labels) is None
        assert c.get("/info").json()["title"] == "Teacher"


def test_the_command_listens_on_loopback_unless_told_otherwise():
    from distill_core.cli import build_parser

    args = build_parser().parse_args(["serve", "RUN"])
    assert (args.host, args.allow_origins, args.backend, args.model) == ("127.0.0.1", [], "torch", "student")


def test_settings_refuse_nonsense():
    for kw, flag in (({"max_chars": 0}, "--max-chars"), ({"max_batch": 0}, "--max-batch"), ({"workers": 0}, "--workers"),
                     ({"queue": -1}, "--queue"), ({"port": 70000}, "--port"), ({"threads": 0}, "--threads"),
                     ({"allow_origins": ["localhost"]}, "--allow-origin"), ({"backend": "tf"}, "--backend")):
        with pytest.raises(ConfigError, match=flag):
            ServeSettings(**kw).validate()


# ----------------------------------------------------------------------------- fuzzing the schema


@pytest.fixture(scope="module")
def api_schema(tiny_run, clf):
    return schemathesis.openapi.from_asgi("/openapi.json", make_app(tiny_run, clf))


fuzz = schemathesis.pytest.from_fixture("api_schema")


@fuzz.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_fuzzed_requests_never_get_a_500_and_match_the_schema(case):
    # Every default check: no 5xx, status codes, content types, headers and bodies as the schema documents them.
    case.call_and_validate()


# ----------------------------------------------------------------------------- the command, on a free loopback port


@pytest.fixture(scope="module")
def exported_run(tiny_run, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("serve_runs") / tiny_run.name
    shutil.copytree(tiny_run, run)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["export", str(run), "--format", "onnx", "--int8", "--threads", "1"]) == 0
    return run


@pytest.fixture(scope="module")
def server(exported_run, tmp_path_factory):
    """``python -m distill_core serve RUN --backend onnx-int8`` on 127.0.0.1:<free port>, ready; stopped after."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve_log") / "serve.log"
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "distill_core", "serve", str(exported_run), "--backend",
                                 "onnx-int8", "--port", str(port), "--threads", "1"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_until_healthy(f"{url}/health", proc, timeout_s=60, poll_s=0.2):
            pytest.fail(f"serve did not start (exit {proc.poll()}):\n{log_path.read_text()[-3000:]}")
        yield url, proc, log_path
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: exactly the server we started
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_the_command_serves_the_onnx_int8_student(server, exported_run):
    url, _, _ = server
    info = httpx.get(f"{url}/info", trust_env=False).json()
    export = read_json(exported_run / "student" / "onnx" / "export.json")
    assert (info["backend"], info["model"]) == ("onnx-int8", "student")
    assert info["backend_test_accuracy"] == pytest.approx(export["verification"]["onnx_int8"]["accuracy"])
    r = httpx.post(f"{url}/predict", json={"text": LONG}, trust_env=False)
    assert r.status_code == 200 and problem_with(r.json(), info["labels"]) is None
    assert r.json()["truncated_tokens"] > 0


def test_load_test_against_the_server_has_no_errors(server):
    url, _, _ = server
    texts = ["stocks rose .", LONG, "the team won the cup", "nasa space study", "oil price fell"]
    report = run_load(LoadSettings(url=url, clients=[1, 4], requests=24, time_limit=20), texts)
    for step in report["steps"]:
        assert (step["sent"], step["ok"], step["errors"], step["stopped_by"]) == (24, 24, 0, "requests"), step
        assert 0 < step["p50_ms"] <= step["p95_ms"] <= step["p99_ms"] and step["throughput_per_s"] > 0
    assert report["server"]["backend"] == "onnx-int8"
    # The time limit stops a step by itself, however many requests remain.
    t0 = time.perf_counter()
    report = run_load(LoadSettings(url=url, clients=[2], requests=100_000, time_limit=0.5), texts)
    assert time.perf_counter() - t0 < 10
    step = report["steps"][0]
    assert step["stopped_by"] == "time limit" and step["errors"] == 0 and 0 < step["sent"] < 100_000


def test_loadtest_command_sends_the_runs_test_texts(server, exported_run, capsys):
    url, _, _ = server
    assert main(["loadtest", url, "--run", str(exported_run), "--clients", "1,2", "--requests", "8",
                 "--time-limit", "10"]) == 0
    out = capsys.readouterr().out
    assert "24 texts" in out and "p95 ms" in out and "req/s" in out  # the tiny run's 24 test texts
    lines = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [(row[0], row[1], row[2], row[3]) for row in lines] == [("1", "8", "8", "0"), ("2", "8", "8", "0")]


@pytest.mark.parametrize("url", ["http://10.0.0.1:8000", "http://192.168.1.20", "http://example.com",
                                 "http://[::2]:8000", "ftp://127.0.0.1:8000", "http://8.8.8.8", "127.0.0.1:8000"])
def test_loadtest_refuses_anything_but_this_machine(url, caplog):
    with pytest.raises(ConfigError):
        check_loopback(url)
    assert main(["loadtest", url, "--requests", "1"]) == 2
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://127.9.9.9:1", "http://localhost:8000",
                                 "http://[::1]:8000"])
def test_loadtest_accepts_loopback(url):
    assert check_loopback(url + "/")


@pytest.mark.skipif(not CHROMIUM.exists() and not os.environ.get("DISTILL_REQUIRE_BROWSER"),
                    reason="Debian's Chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
def test_the_page_classifies_in_a_browser(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    url, _, _ = server
    text = "the team won the cup after a new season ."
    expected = httpx.post(f"{url}/predict", json={"text": text}, trust_env=False).json()
    shots = ROOT / "screenshots"
    shots.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                          "--disable-background-networking", "--disable-component-update"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.goto(url)
            page.get_by_role("button", name="Classify").wait_for(state="visible")
            page.wait_for_function("!document.getElementById('classify').disabled", timeout=15_000)
            assert "onnx-int8" in page.locator("#about").inner_text()
            page.get_by_role("button", name="Classify").click()  # nothing typed yet
            assert "Type some words" in page.locator("#status").inner_text()
            page.get_by_label("Text to classify").fill(text)
            page.get_by_role("button", name="Classify").click()
            page.locator("#result").wait_for(state="visible", timeout=15_000)
            bars = page.locator(".bar")
            assert bars.count() == len(expected["probabilities"])
            assert page.locator(".bar.top .name").inner_text() == expected["label"]
            assert page.locator("#answer strong").inner_text() == expected["label"]
            shown = [float(bars.nth(i).locator(".pct").inner_text().rstrip("%")) for i in range(bars.count())]
            assert sum(shown) == pytest.approx(100, abs=0.5)
            page.screenshot(path=str(shots / "serve_page.png"), full_page=True)
            page.get_by_label("Text to classify").fill("   ")
            page.get_by_role("button", name="Classify").click()
            assert "Type some words" in page.locator("#status").inner_text()
        finally:
            browser.close()


def test_start_up_problems_are_one_line(exported_run, tiny_run, tmp_path, caplog, server):
    assert main(["serve", "no-such-run", "--output-dir", str(tmp_path)]) == 2
    assert "No run 'no-such-run'" in caplog.text
    caplog.clear()
    assert main(["serve", str(tiny_run), "--backend", "onnx-int8"]) == 2  # the fixture run has no export
    assert "no int8 ONNX export; make one with `python -m distill_core export" in caplog.text
    broken = tmp_path / "runs" / exported_run.name
    shutil.copytree(exported_run, broken)
    (broken / "student" / "model.safetensors").write_bytes(b"not weights")
    caplog.clear()
    assert main(["serve", str(broken)]) == 2
    assert "student/model.safetensors is damaged" in caplog.text
    caplog.clear()
    port = int(server[0].rsplit(":", 1)[1])  # taken by the running server
    assert main(["serve", str(exported_run), "--port", str(port)]) == 2
    assert "pick another --port" in caplog.text
    assert "Traceback" not in caplog.text


def test_the_server_stops_cleanly(server):
    url, proc, log_path = server
    os.killpg(proc.pid, signal.SIGTERM)
    # uvicorn shuts down gracefully, then lets the signal end the process as it would have (exit status -15).
    assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
    log = log_path.read_text()
    assert "Model loaded" in log and "Traceback" not in log
    assert "Shutting down" in log and "Finished server process" in log
