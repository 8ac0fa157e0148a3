"""Draw every Performance-page figure of a bench into one HTML file, and print the bench's table.

    python scripts/bench_figures_check.py RUN                     # RUN/bench.json -> RUN/bench_figures.html
    python scripts/bench_figures_check.py RUN --arch bert-base    # RUN/bench_bert-base.json
    python scripts/bench_figures_check.py path/to/bench.json --out /tmp/figures.html

A quick look at the figures (and a check that each one builds from real data) without starting Streamlit.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from distill_core.bench.report import format_table
from distill_core.bench.settings import ARCHS
from distill_core.runs import bench_path, resolve_run
from distill_core.views import performance as pv


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bench", help="run id, run folder, or a bench JSON file")
    p.add_argument("--arch", default="run", choices=ARCHS)
    p.add_argument("--out", type=Path, help="HTML file to write (default: next to the bench JSON)")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    src = Path(args.bench)
    path = src if src.is_file() else bench_path(resolve_run(args.bench), args.arch)
    bench = json.loads(path.read_text())
    figures = pv.all_figures(bench)
    out = args.out or path.with_name(path.stem + "_figures.html")
    parts = [f"<h2>{path}</h2><p>{pv.machine_caption(bench)}</p>",
             pv.summary_table(bench).to_html(float_format=lambda v: f"{v:.3g}")]
    parts += [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures.values())]
    out.write_text("<html><body>" + "\n".join(parts) + "</body></html>")
    print(format_table(bench))
    print(f"\n{len(figures)} figures ({', '.join(figures)}) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
