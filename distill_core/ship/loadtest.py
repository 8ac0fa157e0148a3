"""Load-test a running ``serve``: N concurrent clients, a fixed number of requests and a time limit, loopback only.

    python -m distill_core loadtest http://127.0.0.1:8000 --clients 1,4,16 --requests 400 --time-limit 30 --run RUN

    from distill_core.ship.loadtest import LoadSettings, run_load
    steps = run_load(LoadSettings("http://127.0.0.1:8000", clients=[1, 4], requests=50), texts)

For each client count, that many clients send ``POST /predict`` one after another (each waits for its answer
before sending again) with real texts: the run's test texts (``--run``) or a built-in list. A step stops after
``--requests`` requests or ``--time-limit`` seconds, whichever comes first. Every answer is checked: status 200,
a label the server's ``/info`` lists, one probability per class summing to 1, the label the most probable.

Reported per client count: requests sent, answers well-formed, errors (any other status, a malformed answer, a
timeout or a refused connection), of which rejections (503, busy), p50/p95/p99 latency as the client sees it,
and throughput (well-formed answers per second). The clients run on this machine too, so on a small one they
take CPU from the server: read the figures as the whole machine's, not the server's alone.

Only this machine is ever a target: the URL's host must be ``localhost``, an address in 127.0.0.0/8 or ``::1``.
Its ``/info`` is read first: nothing listening, or a server that is not a distill-lens service (a 404, an HTML
page), is one line saying so before any request is sent; so is a ``--json`` file that could not be written.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..console import say
from ..errors import ConfigError
from ..files import check_output_file, write_json_atomic

FAILED = 3  # the exit code when any request failed (2 is a usage error)
HELP = """Load-test a server started with `python -m distill_core serve` on this machine.

For each client count, that many clients send POST /predict one after another with real texts (the run's test
texts with --run, else a built-in list), until --requests requests are sent or --time-limit seconds pass. Every
answer is checked (status 200, one probability per class summing to 1, the label the most probable). Printed per
client count: p50/p95/p99 latency as the clients see it, throughput and errors (503s counted apart).

Only this machine is ever a target: localhost, 127.0.0.0/8 or ::1."""
START = ("start one with `python -m distill_core serve RUN` and give its address (http://127.0.0.1:8000 unless --port "
         "said otherwise)")
# What clients send without --run: news-like texts of varied length, from a few words to a paragraph.
BUILTIN_TEXTS = [
    "Stocks rallied on Friday after the central bank held interest rates steady.",
    "The home side scored twice in the last ten minutes to win the cup final.",
    "A new smartphone chip promises twice the battery life, the company said.",
    "Peace talks resumed in Geneva as both delegations signalled room for compromise.",
    "Oil prices fell for a third day as inventories rose more than analysts expected.",
    "Astronomers spotted water vapour in the atmosphere of a planet orbiting a nearby star.",
    "The striker signed a four-year contract worth a record fee, his new club announced.",
    "Parliament passed the budget late on Tuesday after a week of heated debate.",
    "Shares of the software maker jumped 12% after quarterly profit beat forecasts.",
    "Researchers released an open-source tool that finds security bugs in web browsers.",
    "Flooding forced thousands from their homes as the river burst its banks overnight.",
    "The coach praised his young squad after they held the champions to a draw.",
    ("The merger, announced on Monday, would create the country's largest regional bank by deposits and is expected "
     "to close next year pending approval from regulators, who have signalled concern about competition in rural "
     "markets where the two lenders overlap."),
    ("Engineers at the space agency said the rover had survived its first dust storm and resumed drilling, sending "
     "back images of layered rock that may have formed in an ancient lake bed billions of years ago."),
    "Election officials began a recount in three districts where the margin was under one hundred votes.",
    "The airline cut its profit outlook, citing higher fuel costs and weaker demand for business travel.",
]


@dataclass
class LoadSettings:
    """One load test; every field is a flag of ``python -m distill_core loadtest``."""

    url: str = "http://127.0.0.1:8000"
    clients: list[int] = field(default_factory=lambda: [1, 4, 16])
    requests: int = 200  # per client count
    time_limit: float = 30.0  # seconds per client count
    timeout: float = 30.0  # seconds per request

    def validate(self) -> "LoadSettings":
        """Raise ConfigError naming the flag; return self."""
        check_loopback(self.url)
        if not self.clients or any(not 1 <= c <= 256 for c in self.clients):
            raise ConfigError(f"--clients {','.join(map(str, self.clients)) or '(none)'}: give client counts of 1-256, "
                              "e.g. 1,4,16")
        if not 1 <= self.requests <= 100_000:
            raise ConfigError(f"--requests {self.requests}: give 1-100000 (per client count)")
        if not 0 < self.time_limit <= 3600:
            raise ConfigError(f"--time-limit {self.time_limit}: give more than 0 and at most 3600 seconds per client count")
        if not 0 < self.timeout <= 600:
            raise ConfigError(f"--timeout {self.timeout}: give more than 0 and at most 600 seconds")
        return self


def check_loopback(url: str) -> str:
    """``url``'s base (scheme://host:port) if its host is this machine (localhost, 127.0.0.0/8, ::1); else ConfigError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"URL {url!r}: give the server's address, such as http://127.0.0.1:8000")
    host = parts.hostname
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ConfigError(f"URL {url!r}: the load test only targets this machine (localhost, 127.0.0.0/8 or ::1), "
                              f"not {host}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"URL {url!r}: the port is not a number of 1-65535") from None
    netloc = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{netloc}" + (f":{port}" if port else "")


# ----------------------------------------------------------------------------- checking an answer


def service_info(status: int, body: bytes, base: str) -> dict[str, Any]:
    """The ``/info`` of a distill-lens service from its answer; ConfigError when ``base`` is not one, or not ready.

    A distill-lens service answers 200 with a JSON object naming its ``labels`` and ``model``, or 503 with a JSON
    ``error`` while its model loads (or after it failed to). Anything else (a 404, an HTML page, other JSON) is
    some other server at that address.
    """
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        doc = None
    if status == 503 and isinstance(doc, dict) and isinstance(doc.get("error"), str):
        raise ConfigError(f"The service at {base} is not ready: {doc['error']}. Fix: wait until {base}/health "
                          "answers ready, then run the load test again.")
    labels = doc.get("labels") if isinstance(doc, dict) else None
    if (status == 200 and isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)
            and isinstance(doc.get("model"), str)):
        return doc
    what = "not JSON" if doc is None else "JSON without the service's labels and model"
    raise ConfigError(f"{base} is not a distill-lens service (GET /info answered {status}, {what}); {START}")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, for a service a script or a test starts locally."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_healthy(url: str, proc: subprocess.Popen, timeout_s: float, poll_s: float = 0.3) -> bool:
    """Poll ``url`` (a health endpoint) until it answers 200; False if ``proc`` exits or ``timeout_s`` passes first."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(poll_s)
    return False


def problem_with(body: Any, labels: list[str]) -> str | None:
    """What is wrong with a ``/predict`` answer, or None when it is well-formed."""
    if not isinstance(body, dict):
        return "not a JSON object"
    probs = body.get("probabilities")
    if not isinstance(probs, dict) or sorted(probs) != sorted(labels):
        return "probabilities do not name every class"
    if not all(isinstance(p, (int, float)) and 0 <= p <= 1 for p in probs.values()):
        return "a probability outside 0..1"
    if abs(sum(probs.values()) - 1.0) > 1e-3:
        return f"probabilities sum to {sum(probs.values()):.4f}"
    if body.get("label") not in labels or probs[body["label"]] < max(probs.values()) - 1e-9:
        return "the label is not the most probable class"
    if not isinstance(body.get("confidence"), (int, float)) or abs(body["confidence"] - probs[body["label"]]) > 1e-6:
        return "confidence is not the label's probability"
    for key in ("tokens", "truncated_tokens"):
        if not isinstance(body.get(key), int) or body[key] < 0:
            return f"{key} is not a count"
    if not isinstance(body.get("latency_ms"), (int, float)) or not isinstance(body.get("model"), str):
        return "latency_ms or model missing"
    return None


# ----------------------------------------------------------------------------- running it


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation, as numpy's default; None for no values."""
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


async def _step(client, base: str, clients: int, texts: list[str], labels: list[str], settings: LoadSettings) -> dict[str, Any]:
    """One client count: ``clients`` loops sharing ``settings.requests`` requests, until done or out of time."""
    sent = 0
    latencies: list[float] = []
    errors: dict[str, int] = {}
    rejected = 0
    deadline = time.perf_counter() + settings.time_limit

    def fail(what: str) -> None:
        errors[what] = errors.get(what, 0) + 1

    async def one_client() -> None:
        nonlocal sent, rejected
        while sent < settings.requests and time.perf_counter() < deadline:
            text = texts[sent % len(texts)]
            sent += 1
            t0 = time.perf_counter()
            try:
                r = await client.post(f"{base}/predict", json={"text": text},
                                      timeout=min(settings.timeout, max(0.1, deadline - t0 + 1.0)))
            except Exception as e:  # noqa: BLE001 - timeouts, refused and reset connections are all errors here
                fail(type(e).__name__)
                continue
            ms = (time.perf_counter() - t0) * 1000.0
            if r.status_code == 503:
                rejected += 1
                fail("503 busy")
                continue
            if r.status_code != 200:
                fail(f"status {r.status_code}")
                continue
            try:
                problem = problem_with(r.json(), labels)
            except ValueError:
                problem = "not JSON"
            if problem:
                fail(f"malformed: {problem}")
                continue
            latencies.append(ms)

    t0 = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    elapsed = time.perf_counter() - t0
    return {"clients": clients, "sent": sent, "ok": len(latencies), "errors": sum(errors.values()),
            "rejected_503": rejected, "error_kinds": errors, "seconds": elapsed,
            "stopped_by": "requests" if sent >= settings.requests else "time limit",
            "throughput_per_s": len(latencies) / elapsed if elapsed > 0 else 0.0,
            "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
            "p99_ms": percentile(latencies, 99), "mean_ms": sum(latencies) / len(latencies) if latencies else None}


async def _run(settings: LoadSettings, texts: list[str]) -> dict[str, Any]:
    import httpx

    base = check_loopback(settings.url)
    limits = httpx.Limits(max_connections=max(settings.clients), max_keepalive_connections=max(settings.clients))
    # trust_env=False: never through a proxy named in the environment; the target is this machine.
    async with httpx.AsyncClient(limits=limits, trust_env=False, follow_redirects=False) as client:
        try:
            r = await client.get(f"{base}/info", timeout=settings.timeout)
        except httpx.ConnectError as e:
            raise ConfigError(f"No server answers at {base} ({type(e).__name__}); {START}") from None
        except httpx.HTTPError as e:
            raise ConfigError(f"{base} is not a distill-lens service (it did not answer GET /info over HTTP: "
                              f"{type(e).__name__}); {START}") from None
        info = service_info(r.status_code, r.content, base)
        labels = list(info["labels"])
        steps = []
        for n in settings.clients:
            try:  # one untimed request first: the connection and the server's first call warm
                await client.post(f"{base}/predict", json={"text": texts[0]}, timeout=settings.timeout)
            except httpx.HTTPError:
                pass  # counted in the step if it persists
            steps.append(await _step(client, base, n, texts, labels, settings))
    return {"url": base, "server": {k: info.get(k) for k in ("run", "model", "backend", "workers", "queue")},
            "settings": asdict(settings), "texts": len(texts), "steps": steps}


def run_load(settings: LoadSettings, texts: list[str] | None = None) -> dict[str, Any]:
    """Run the load test (``settings`` validated first) and return its figures, one entry per client count."""
    settings.validate()
    texts = [t for t in (texts or BUILTIN_TEXTS) if isinstance(t, str) and t.strip()] or BUILTIN_TEXTS
    return asyncio.run(_run(settings, texts))


def run_texts(run: str, root: Path | None = None) -> list[str]:
    """The test texts of a run (``predictions.parquet``), to send as a real workload."""
    import pandas as pd

    from ..errors import RunError
    from ..runs import PREDICTIONS_FILE, resolve_run

    path = resolve_run(run, root) / PREDICTIONS_FILE
    if not path.is_file():
        raise RunError(f"{path.parent.name} has no {PREDICTIONS_FILE}; run `python -m distill_core evaluate "
                       f"{path.parent.name}`, or leave out --run to send built-in texts")
    return [str(t) for t in pd.read_parquet(path, columns=["text"])["text"]]


def format_report(report: dict[str, Any]) -> str:
    """The load test as a plain-text table (what ``loadtest`` prints)."""
    s, srv = report["settings"], report["server"]
    lines = [f"{report['url']}: {srv.get('model')} of {srv.get('run')} on {srv.get('backend')} "
             f"({srv.get('workers')} worker(s), queue {srv.get('queue')}); {report['texts']} texts; up to "
             f"{s['requests']} requests or {s['time_limit']:g} s per client count",
             f"{'clients':>7} {'sent':>6} {'ok':>6} {'errors':>6} {'503':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
             f"{'req/s':>7}  stopped by"]
    for st in report["steps"]:
        f = lambda v: f"{v:8.1f}" if v is not None else f"{'-':>8}"  # noqa: E731
        lines.append(f"{st['clients']:>7} {st['sent']:>6} {st['ok']:>6} {st['errors']:>6} {st['rejected_503']:>5} "
                     f"{f(st['p50_ms'])} {f(st['p95_ms'])} {f(st['p99_ms'])} {st['throughput_per_s']:7.1f}  {st['stopped_by']}")
    kinds = {k: v for st in report["steps"] for k, v in st["error_kinds"].items()}
    if kinds:
        lines.append("errors: " + "; ".join(f"{k} ({v})" for k, v in sorted(kinds.items())))
    lines.append("Latency is as the clients see it; they run on this machine too and share its cores with the server.")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the command


def _clients(s: str) -> list[int]:
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a comma-separated list of client counts, e.g. 1,4,16") from None


def add_parser(subparsers) -> argparse.ArgumentParser:
    """``loadtest URL [--clients 1,4,16] [--requests N] [--time-limit S] [--run RUN]``."""
    d = LoadSettings()
    p = subparsers.add_parser("loadtest", help="load-test a running server on this machine: latency percentiles, "
                                               "throughput and errors per client count",
                              description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", help="the server, e.g. http://127.0.0.1:8000 (this machine only)")
    p.add_argument("--clients", type=_clients, default=d.clients, help="concurrent client counts to try (1,4,16)")
    p.add_argument("--requests", type=int, default=d.requests, help=f"requests per client count ({d.requests})")
    p.add_argument("--time-limit", type=float, default=d.time_limit,
                   help=f"seconds per client count; the step stops then even if requests remain ({d.time_limit:g})")
    p.add_argument("--timeout", type=float, default=d.timeout, help=f"seconds per request ({d.timeout:g})")
    p.add_argument("--run", help="send this run's test texts (default: a built-in list of news sentences)")
    p.add_argument("--output-dir", help="runs folder for --run (default: the project's artifacts/runs)")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.epilog = f"Exit code {FAILED} when any request failed or got a malformed answer."

    return p


def run_command(args: argparse.Namespace) -> int:
    settings = LoadSettings(url=args.url, clients=args.clients, requests=args.requests, time_limit=args.time_limit,
                            timeout=args.timeout).validate()
    out = check_output_file(args.json, "--json") if args.json else None  # before the test, not after it
    texts = run_texts(args.run, Path(args.output_dir) if args.output_dir else None) if args.run else None
    report = run_load(settings, texts)
    say(format_report(report))
    if out is not None:
        write_json_atomic(out, report)
    return 0 if all(st["errors"] == 0 for st in report["steps"]) else FAILED
