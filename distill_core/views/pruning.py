"""Pruning: ``prune``'s ``pruning_<model>.json`` as a table, a figure, a PNG and the command's printout.

One row per pruning amount, the dense model (amount 0) first: the sparsity reached, validation and test
accuracy, batch-1 latency on CPU, and the size on disk as written and compressed.

    pruning = load_pruning(run_dir, "student")   # distill_core.train.prune; the page gets it through distill_core.app
    pruning_table(pruning)          # one row per amount (DataFrame)
    pruning_note(pruning)           # one line on what the zeros bought, or None with no pruned row
    pruning_figure(pruning)         # accuracy, latency and size against sparsity (plotly)
    pruning_png(pruning)            # the same as a PNG (matplotlib)
    format_pruning(pruning)         # the ``prune`` command's printout

Nothing here reads files or imports Streamlit; the figures share their margins with the bench's (``performance``).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .performance import MARGIN

SAME_SPEED = 0.15  # p50 latencies within this share of each other count as the same speed on a shared CPU
PRUNING_COLORS = {"val": "#2a9d5c", "test": "#1f4e8c", "latency": "#c0392b", "raw": "#8c8c8c", "compressed": "#e8702a"}


def pruning_table(pruning: dict[str, Any]) -> pd.DataFrame:
    """One row per pruning amount (the dense model first): sparsity reached, accuracy, latency, size, parameters."""
    rows = []
    for r in pruning.get("rows") or []:
        lat = r.get("latency_ms") or {}
        rows.append({
            "Amount": r["amount"], "Sparsity": r["sparsity"],
            "Validation accuracy": r["val_accuracy"], "Test accuracy": r["test_accuracy"],
            "Validation macro-F1": r.get("val_macro_f1"), "Test macro-F1": r.get("test_macro_f1"),
            "Agreement with dense": r.get("test_agreement_with_dense"),
            "p50 ms": lat.get("p50"), "p95 ms": lat.get("p95"),
            "Size (MB)": r["size_bytes"] / 2**20, "Compressed (MB)": r["compressed_bytes"] / 2**20,
            "Parameters": r["parameters"], "Non-zero parameters": r["nonzero_parameters"],
        })
    return pd.DataFrame(rows)


def pruning_note(pruning: dict[str, Any]) -> str | None:
    """One line on what the zeros bought, the densest and sparsest rows compared; a claim is made only where the
    figures show it (latency within ``SAME_SPEED``; the file the same size raw and smaller compressed). None with
    no pruned row."""
    rows = sorted(pruning.get("rows") or [], key=lambda r: r["amount"])
    if len(rows) < 2 or rows[0]["amount"] != 0:
        return None
    dense, sparse = rows[0], rows[-1]
    lat0, lat1 = dense["latency_ms"]["p50"], sparse["latency_ms"]["p50"]
    raw0, raw1 = dense["size_bytes"] / 2**20, sparse["size_bytes"] / 2**20
    comp0, comp1 = dense["compressed_bytes"] / 2**20, sparse["compressed_bytes"] / 2**20
    claims = []
    if abs(lat1 / lat0 - 1) <= SAME_SPEED:
        claims.append("did not make the dense CPU kernels faster")
    if abs(raw1 / raw0 - 1) <= 0.01 and comp1 <= 0.95 * comp0:
        claims.append("made the file smaller only when compressed")
    head = f"Unstructured zeros {' and '.join(claims)}: " if claims else "Measured: "
    return (f"{head}at {sparse['sparsity']:.0%} sparsity, batch-1 p50 {lat1:.2f} ms against {lat0:.2f} ms dense; "
            f"{raw1:.1f} MB against {raw0:.1f} MB on disk, {comp1:.1f} MB against {comp0:.1f} MB compressed.")


def pruning_figure(pruning: dict[str, Any]) -> go.Figure:
    """Accuracy (validation and test) against the sparsity reached; beside it, batch-1 latency (p50, whisker to
    p95) and the size on disk, as written and compressed."""
    rows = sorted(pruning.get("rows") or [], key=lambda r: r["amount"])
    x = [r["sparsity"] for r in rows]
    amount = [r["amount"] for r in rows]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, specs=[[{}, {"secondary_y": True}]],
                        subplot_titles=["Accuracy", "Latency (batch 1, CPU) and size on disk"])
    for key, name in (("val", "Validation accuracy"), ("test", "Test accuracy")):
        fig.add_trace(go.Scatter(x=x, y=[r[f"{key}_accuracy"] for r in rows], name=name, mode="lines+markers",
                                 line=dict(color=PRUNING_COLORS[key]), customdata=amount,
                                 hovertemplate="sparsity %{x:.1%} (amount %{customdata:g})<br>%{y:.2%}<extra>"
                                               + name + "</extra>"), row=1, col=1)
    p50 = [r["latency_ms"]["p50"] for r in rows]
    up = [max(0.0, (r["latency_ms"].get("p95") or r["latency_ms"]["p50"]) - r["latency_ms"]["p50"]) for r in rows]
    fig.add_trace(go.Scatter(x=x, y=p50, name="Latency p50 (ms)", mode="lines+markers",
                             line=dict(color=PRUNING_COLORS["latency"]),
                             error_y=dict(type="data", symmetric=False, array=up, arrayminus=[0] * len(up)),
                             hovertemplate="sparsity %{x:.1%}<br>p50 %{y:.2f} ms<extra></extra>"),
                  row=1, col=2, secondary_y=False)
    for key, name, dash in (("size_bytes", "Size on disk (MB)", "dash"), ("compressed_bytes", "Size compressed (MB)", None)):
        fig.add_trace(go.Scatter(x=x, y=[r[key] / 2**20 for r in rows], name=name, mode="lines+markers",
                                 line=dict(color=PRUNING_COLORS["raw" if dash else "compressed"], dash=dash),
                                 hovertemplate="sparsity %{x:.1%}<br>%{y:.2f} MB<extra>" + name + "</extra>"),
                      row=1, col=2, secondary_y=True)
    lo = min([r["val_accuracy"] for r in rows] + [r["test_accuracy"] for r in rows], default=0.0)
    fig.update_yaxes(tickformat=".0%", range=[max(0.0, lo - 0.05), 1.0], row=1, col=1)
    fig.update_yaxes(title_text="ms per text", rangemode="tozero", row=1, col=2, secondary_y=False)
    fig.update_yaxes(title_text="MB", rangemode="tozero", showgrid=False, row=1, col=2, secondary_y=True)
    fig.update_xaxes(title_text="sparsity of the pruned weights", tickformat=".0%", range=[-0.03, 1.0])
    s = pruning.get("settings") or {}
    fig.update_layout(title=f"Pruning the {pruning.get('model', 'model')} ({s.get('method', 'magnitude')})",
                      height=420, margin=MARGIN, legend=dict(orientation="h", y=-0.22))
    return fig


def pruning_png(pruning: dict[str, Any]) -> bytes:
    """The pruning figure as a PNG (matplotlib)."""
    from matplotlib.figure import Figure

    from .common import png_bytes

    rows = sorted(pruning.get("rows") or [], key=lambda r: r["amount"])
    x = [100 * r["sparsity"] for r in rows]
    fig = Figure(figsize=(11, 4))
    acc, lat = fig.subplots(1, 2)
    for key, name in (("val", "Validation accuracy"), ("test", "Test accuracy")):
        acc.plot(x, [100 * r[f"{key}_accuracy"] for r in rows], "o-", color=PRUNING_COLORS[key], label=name)
    acc.set(xlabel="sparsity of the pruned weights (%)", ylabel="accuracy (%)", title="Accuracy")
    acc.legend(loc="lower left")
    lat.plot(x, [r["latency_ms"]["p50"] for r in rows], "o-", color=PRUNING_COLORS["latency"], label="Latency p50 (ms)")
    lat.set(xlabel="sparsity of the pruned weights (%)", ylabel="ms per text", title="Latency (batch 1, CPU) and size")
    lat.set_ylim(0, 1.25 * max((r["latency_ms"]["p50"] for r in rows), default=1.0))
    size = lat.twinx()
    size.plot(x, [r["size_bytes"] / 2**20 for r in rows], "o--", color=PRUNING_COLORS["raw"], label="Size on disk (MB)")
    size.plot(x, [r["compressed_bytes"] / 2**20 for r in rows], "o-", color=PRUNING_COLORS["compressed"],
              label="Size compressed (MB)")
    size.set(ylabel="MB")
    size.set_ylim(0, 1.25 * max((r["size_bytes"] / 2**20 for r in rows), default=1.0))
    handles = lat.get_legend_handles_labels()[0] + size.get_legend_handles_labels()[0]
    size.legend(handles, [h.get_label() for h in handles], loc="lower left")
    fig.tight_layout()
    return png_bytes(fig)


def format_pruning(pruning: dict[str, Any]) -> str:
    """The ``prune`` command's table (one line per amount), what was saved, and ``pruning_note``."""
    s = pruning.get("settings") or {}
    head = (f"{'amount':>6} {'sparsity':>8} {'val acc':>8} {'test acc':>8} {'latency ms':>10} {'size MB':>8} "
            f"{'compressed MB':>13}")
    lines = [f"Pruning the {pruning.get('model')} ({s.get('method')}; {pruning.get('validation_rows')} validation and "
             f"{pruning.get('test_rows')} test texts; batch-1 p50 on CPU over {s.get('repeats')} calls, tokenisation "
             f"included; compressed: {s.get('compression')})", head, "-" * len(head)]
    for r in sorted(pruning.get("rows") or [], key=lambda r: r["amount"]):
        lines.append(f"{r['amount']:>6.2f} {r['sparsity']:>8.4f} {r['val_accuracy']:>8.4f} {r['test_accuracy']:>8.4f} "
                     f"{r['latency_ms']['p50']:>10.2f} {r['size_bytes'] / 2**20:>8.2f} {r['compressed_bytes'] / 2**20:>13.2f}")
    if pruning.get("saved"):
        lines.append(f"\nSaved the model pruned at {pruning['saved']['amount']:g} to {pruning['saved']['folder']}/ "
                     "(loads with from_pretrained).")
    note = pruning_note(pruning)
    if note:
        lines.append(f"\n{note}")
    return "\n".join(lines)
