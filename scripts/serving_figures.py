"""Serving figures of one run on this machine: the load test against ``serve`` per backend, and whether merging
concurrent requests into batches (micro-batching) would pay.

    .venv/bin/python scripts/serving_figures.py RUN                          # torch and onnx-int8, 1/4/16 clients
    .venv/bin/python scripts/serving_figures.py RUN --backends onnx-int8 --requests 200 --time-limit 20

For each backend it starts ``python -m distill_core serve RUN --backend B`` on a free loopback port, waits until
``/health`` is ready, runs ``loadtest`` with the run's test texts, and stops the server. The micro-batching check
times the served student's ``predict_logits`` in-process on the same texts at batch 1, 4, 8 and 16 (ms per text):
batching concurrent requests only helps if a batch of 8 costs much less per text than 8 calls of one. Each part
prints how much of the CPU other processes used meanwhile (the figures are slower and noisier when that is high).
The ONNX backends need the run's export first (``python -m distill_core export RUN --int8``).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distill_core.bench.measure import OtherLoad  # noqa: E402
from distill_core.ship.loadtest import (  # noqa: E402
    LoadSettings,
    format_report,
    free_port,
    run_load,
    run_texts,
    wait_until_healthy,
)
from distill_core.runs import resolve_run  # noqa: E402


def _tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by process ``pid`` and its children."""
    import psutil

    procs = [psutil.Process(pid)]
    procs += procs[0].children(recursive=True)
    return sum(p.cpu_times().user + p.cpu_times().system for p in procs)


def load_test(run: Path, backend: str, texts: list[str], args) -> None:

    import tempfile

    port = free_port()
    log = tempfile.TemporaryFile(mode="w+")  # the server's log, read back only if it fails to start
    proc = subprocess.Popen([sys.executable, "-m", "distill_core", "serve", str(run), "--backend", backend, "--port",
                             str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_until_healthy(f"{url}/health", proc, timeout_s=120):
            log.seek(0)
            raise SystemExit(f"serve --backend {backend} did not start:\n{log.read()[-2000:]}")
        server_cpu = _tree_cpu_seconds(proc.pid)
        other = OtherLoad().start()
        t0 = time.perf_counter()
        report = run_load(LoadSettings(url=url, clients=args.clients, requests=args.requests,
                                       time_limit=args.time_limit), texts)
        share = other.stop()  # everything but this process: the server too, taken out below
        server_share = (_tree_cpu_seconds(proc.pid) - server_cpu) / ((time.perf_counter() - t0) * (os.cpu_count() or 1))
        print(format_report(report))
        print(f"the server used {server_share:.0%} of the CPU; other processes {max(0.0, share - server_share):.0%}\n")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def microbatch_check(run: Path, texts: list[str], n: int = 256) -> None:
    from distill_core.ship.onnx_export import load_classifier
    from distill_core.ship.serve_settings import ServeSettings

    texts = texts[:n]
    for backend in ("torch", "onnx-int8"):
        threads = ServeSettings(backend=backend).model_threads
        try:
            clf = load_classifier(run, "student", backend, threads=threads)
        except Exception as e:  # noqa: BLE001 - a missing export skips that backend
            print(f"{backend}: skipped ({e})")
            continue
        clf.predict_logits(texts[:16], batch_size=16)
        other = OtherLoad().start()
        row = []
        for batch in (1, 4, 8, 16):
            t0 = time.perf_counter()
            for i in range(0, len(texts), batch):
                clf.predict_logits(texts[i : i + batch], batch_size=batch)
            row.append(f"batch {batch:>2}: {(time.perf_counter() - t0) / len(texts) * 1000:6.2f} ms/text")
        print(f"{backend:<10} ({threads} thread(s))  " + "   ".join(row) + f"   [others: {other.stop():.0%} CPU]")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run")
    p.add_argument("--backends", default="torch,onnx-int8")
    p.add_argument("--clients", default="1,4,16")
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--time-limit", type=float, default=30.0)
    p.add_argument("--skip-microbatch", action="store_true")
    args = p.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    run = resolve_run(args.run)
    texts = run_texts(str(run))
    for backend in args.backends.split(","):
        load_test(run, backend, texts, args)
    if not args.skip_microbatch:
        print("Micro-batching check: model call only, the served student, run test texts in order")
        microbatch_check(run, texts)


if __name__ == "__main__":
    main()
