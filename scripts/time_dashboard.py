"""Time what the dashboard does for one short text, warm: all three models classify it, and the teacher's
and the student's attention maps are computed and drawn.

    python scripts/time_dashboard.py                 # newest complete run under $DISTILL_RUNS_DIR / artifacts/runs
    python scripts/time_dashboard.py RUN --repeats 20

Two figures, each over texts the caches have not seen (the models are loaded once first: "warm"):

* core: ``app.predict`` x3 + ``app.attention`` x2 + the attention views and plotly figures the pages build;
* pages: a whole rerun of the Live classification page and of the Attention page under Streamlit's
  ``AppTest`` after typing a new text (script run and element serialisation included, no browser).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
import warnings
from pathlib import Path

from distill_core.config import PROJECT_ROOT as ROOT

TEXT = "Stocks rallied on Friday after the central bank held interest rates, lifting shares of {}."
WORDS = ["banks", "airlines", "retailers", "carmakers", "miners", "insurers", "utilities", "chipmakers",
         "brewers", "shippers", "builders", "telecoms", "refiners", "railways", "grocers", "publishers"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", nargs="?", help="run id or folder (default: the newest complete run)")
    p.add_argument("--repeats", type=int, default=10, help="texts timed per figure (default 10)")
    return p.parse_args()


def text(i: int) -> str:
    return TEXT.format(f"{WORDS[i % len(WORDS)]} ({i})")


def summary(name: str, ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=10) if len(ms) > 1 else ms
    return f"{name:<44} median {statistics.median(ms):7.1f} ms   p90 {q[-1]:7.1f} ms   (n={len(ms)})"


def time_core(run_dir: Path, repeats: int) -> list[float]:
    from distill_core import app
    from distill_core.views import attention as av
    from distill_core.views import live as lv

    out = []
    for i in range(-1, repeats):  # i = -1 loads the models: not timed
        t0 = time.perf_counter()
        preds = [app.predict(run_dir, k, text(i)) for k in ("teacher", "student", "baseline")]
        atts = [app.attention(run_dir, k, text(i)) for k in ("teacher", "student")]
        views = [av.attention_view(a) for a in atts]  # last layer, mean over heads
        av.attention_pair_figure(views, ["teacher", "student"]).to_json()
        av.cls_figure(views, ["teacher", "student"], ["#000", "#f00"]).to_json()
        lv.probabilities_figure(preds[0].labels, {p.model: p.probs for p in preds}).to_json()
        if i >= 0:
            out.append((time.perf_counter() - t0) * 1000)
    return out


def time_pages(run_dir: Path, repeats: int) -> dict[str, list[float]]:
    from streamlit.testing.v1 import AppTest

    os.environ["DISTILL_RUNS_DIR"] = str(run_dir.parent)
    out = {}
    for page, key in (("live_classification", "live_text"), ("attention", "att_text")):
        at = AppTest.from_file(str(ROOT / "app_pages" / f"{page}.py"), default_timeout=120)
        at.session_state["run_id"] = run_dir.name
        at.run()  # loads the models
        times = []
        for i in range(repeats):
            at.text_area(key=key).set_value(text(1000 + 100 * len(out) + i))
            t0 = time.perf_counter()
            at.run()
            times.append((time.perf_counter() - t0) * 1000)
            if at.exception:
                raise SystemExit(f"{page} raised: {at.exception[0].value}")
        out[page] = times
    return out


def main() -> None:
    args = parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from distill_core import app
    from distill_core.config import runs_dir
    from distill_core.runs import list_runs, load_run, resolve_run

    if args.run:
        run_dir = resolve_run(args.run)
    else:
        done = [r for r in list_runs(runs_dir()) if r.status == "complete"]
        if not done:
            raise SystemExit(f"No complete run under {runs_dir()}; train one with `python -m distill_core train`")
        run_dir = done[0].path
    info = load_run(run_dir)
    arch = info.config.get("architectures", {})
    print(f"run {info.run_id}: max_length {info.config.get('data', {}).get('max_length')}, "
          + ", ".join(f"{k} {a.get('layers')} layers / {a.get('parameters', 0) / 1e6:.1f}M" for k, a in arch.items()))
    threads = app.limit_inference_threads()  # as dashboard.py does
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}, "
          f"{threads} inference thread(s) (DISTILL_DASHBOARD_THREADS)")

    core = time_core(run_dir, args.repeats)
    pages = time_pages(run_dir, args.repeats)
    print(summary("core: 3 classifications + 2 attention maps", core))
    print(summary("page rerun: Live classification (3 models)", pages["live_classification"]))
    print(summary("page rerun: Attention (2 maps)", pages["attention"]))
    total = statistics.median(pages["live_classification"]) + statistics.median(pages["attention"])
    print(f"{'both pages for one new text (sum of medians)':<44} {total:7.1f} ms")


if __name__ == "__main__":
    main()
