"""Performance: the bench's (``bench.json``) tables and figures, pure functions of its dict.

Every model the bench measured gets a row, a bar and a point: the PyTorch teacher, student and int8 student,
and the student on ONNX Runtime (fp32 and int8) when the bench ran it.

    bench = load_bench(run_dir)     # distill_core.bench.report; the page gets it through distill_core.app
    summary_table(bench)            # one row per model, every figure side by side (DataFrame)
    latency_figure(bench)           # batch-1 latency bars with p95 whiskers, per length
    tradeoff_figure(bench)          # accuracy against latency, one point per model

Nothing here reads files or imports Streamlit; a missing section (no training comparison, no accuracy for
random bert-base shapes) gives a figure without it, or None where the whole figure would be empty. Speed-up
ratios come from ``bench.report.speedup``, as everywhere else.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..bench.report import PAIRS, latency_p50, peak_memory, speedup
from ..config import MODEL_COLORS

LENGTHS = {"median_len": "median length", "max_len": "max length"}
TRAINING = {"pipeline": ("Pipeline (length-grouped)", "#2a9d5c"),
            "pipeline_fp32": ("Pipeline, fp32", "#8fcfa8"),
            "fixed_padding": ("Fixed padding to max_length", "#8c8c8c"),
            "trainer": ("Trainer defaults", "#6a4c93")}
_PRECISION = {"no": "fp32", "bf16": "bf16", "fp16": "fp16"}
MARGIN = dict(t=60, b=10, l=10, r=10)
# The student on ONNX Runtime (fp32, int8) beside the project's model colours.
COLORS = {**MODEL_COLORS, "student_onnx": "#2a9d8f", "student_onnx_int8": "#7fb069"}


def _models(bench: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(k, m) for k, m in (bench.get("models") or {}).items() if isinstance(m, dict)]


def _title(key: str, m: dict[str, Any]) -> str:
    return str(m.get("title") or key)


def _get(d: dict | None, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def _tokens(bench: dict[str, Any], length: str) -> int | None:
    s = bench.get("settings") or {}
    return s.get("median_tokens") if length == "median_len" else s.get("max_length")


# ----------------------------------------------------------------------------- tables


def summary_table(bench: dict[str, Any]) -> pd.DataFrame:
    """One row per model: size, latency (p50/p95) at both lengths, throughput, memory, accuracy, speed-up.

    Returns:
        DataFrame indexed by model key (``teacher``, ``student``, ``student_int8``), numeric columns.
    """
    models = _models(bench)
    med, mx = _tokens(bench, "median_len"), _tokens(bench, "max_len")
    rows = []
    for key, m in models:
        lat = m.get("latency_ms") or {}
        rows.append({
            "key": key,
            "Model": _title(key, m),
            "Runtime": m.get("runtime", "PyTorch"),
            "Device": m.get("device", "cpu"),
            "Parameters": m.get("parameters"),
            "Size (MB)": m["size_bytes"] / 1e6 if m.get("size_bytes") else None,
            f"p50 ms @{med} tok": latency_p50(m, "median_len"),
            f"p95 ms @{med} tok": _get(lat, "median_len", "p95"),
            f"p50 ms @{mx} tok": latency_p50(m, "max_len"),
            f"p95 ms @{mx} tok": _get(lat, "max_len", "p95"),
            "Speed-up vs teacher (median length)": speedup(bench, "teacher", key, "median_len"),
            "Speed-up vs teacher (max length)": speedup(bench, "teacher", key, "max_len"),
            "Throughput (texts/s)": m.get("throughput_texts_per_s"),
            "Load time (s)": m.get("load_time_s"),
            "Peak memory (MB)": peak_memory(m),  # on the model's device: GPU memory for a GPU row
            "Peak memory of": m.get("peak_memory_kind") or ("process peak resident memory" if m.get("peak_rss_mb") else None),
            "Test accuracy": m.get("accuracy"),
            "Macro-F1": m.get("macro_f1"),
            "GFLOP/s (max length)": _get(m, "gflops_per_s", "max_len"),
        })
    return pd.DataFrame(rows).set_index("key") if rows else pd.DataFrame()


def machine_caption(bench: dict[str, Any]) -> str:
    """One line: where and how the figures were measured."""
    m, s = bench.get("machine") or {}, bench.get("settings") or {}
    parts = [f"{m.get('cpu_model', '?')}, {m.get('cores', '?')} cores, {m.get('torch_threads', '?')} torch threads",
             f"torch {m.get('torch', '?')}, transformers {m.get('transformers', '?')}"]
    if m.get("matmul_gflops"):
        parts.append(f"fp32 matmul {m['matmul_gflops']:.0f} GFLOP/s"
                     + (f", bf16 {m['matmul_gflops_bf16']:.0f}" if m.get("matmul_gflops_bf16") else ""))
    parts.append(f"batch-1 p50/p95 over {s.get('repeats', '?')} runs after {s.get('warmup', '?')} warm-up, "
                 f"tokenisation included; throughput at batch {s.get('batch_size', '?')} on {s.get('texts', '?')} test texts")
    if bench.get("created"):
        parts.append(f"measured {bench['created']}")
    return " · ".join(parts)


# ----------------------------------------------------------------------------- figures


def latency_figure(bench: dict[str, Any]) -> go.Figure:
    """Batch-1 latency per model: p50 bars, whiskers up to p95, grouped by text length."""
    fig = go.Figure()
    for key, m in _models(bench):
        x, y, up = [], [], []
        for length, label in LENGTHS.items():
            lat = _get(m, "latency_ms", length) or {}
            if lat.get("p50") is None:
                continue
            x.append(f"{label}<br>({lat.get('tokens', _tokens(bench, length))} tokens)")
            y.append(lat["p50"])
            up.append(max(0.0, (lat.get("p95") or lat["p50"]) - lat["p50"]))
        fig.add_trace(go.Bar(
            x=x, y=y, name=_title(key, m), marker_color=COLORS.get(key, "#555"),
            error_y=dict(type="data", symmetric=False, array=up, arrayminus=[0] * len(up), thickness=1.5),
            text=[f"{v:.1f}" for v in y], textposition="inside",
            customdata=[p + u for p, u in zip(y, up)],
            hovertemplate="%{x}<br>p50 %{y:.2f} ms, p95 %{customdata:.2f} ms<extra>" + _title(key, m) + "</extra>"))
    # The axis follows the p50 bars, not the slowest p95 (one noisy call would squash every bar into the floor);
    # a whisker that runs past the top is cut there, and its p95 is in the hover.
    p50s = [v for trace in fig.data for v in trace.y]
    fig.update_layout(barmode="group", title="Latency per text, batch 1 (p50, whisker to p95)",
                      yaxis_title="ms per text", height=380, margin=MARGIN, legend=dict(orientation="h", y=-0.2))
    if p50s:
        fig.update_yaxes(range=[0, 1.6 * max(p50s)])
    return fig


def throughput_figure(bench: dict[str, Any]) -> go.Figure:
    """Texts per second at the bench's batch size."""
    models = [(k, m) for k, m in _models(bench) if m.get("throughput_texts_per_s")]
    y = [m["throughput_texts_per_s"] for _, m in models]
    fig = go.Figure(go.Bar(x=[_title(k, m) for k, m in models], y=y, marker_color=[COLORS.get(k, "#555") for k, _ in models],
                           text=[f"{v:.0f}" for v in y], textposition="outside",
                           hovertemplate="%{x}<br>%{y:.1f} texts/s<extra></extra>"))
    bs = _get(bench, "settings", "batch_size")
    fig.update_layout(title=f"Throughput at batch {bs} on test texts", yaxis_title="texts / s", height=380, margin=MARGIN)
    fig.update_yaxes(range=[0, max(y, default=1) * 1.15])
    return fig


def size_memory_figure(bench: dict[str, Any]) -> go.Figure:
    """Size on disk (state dict for int8), peak resident memory of a fresh process, and its load time."""
    models = _models(bench)
    names = [_title(k, m) for k, m in models]
    colors = [COLORS.get(k, "#555") for k, _ in models]
    fig = make_subplots(rows=1, cols=3, subplot_titles=["Size (MB)", "Peak memory of a process (MB)", "Load time (s)"],
                        horizontal_spacing=0.08)
    size = [m["size_bytes"] / 1e6 if m.get("size_bytes") else None for _, m in models]
    fig.add_trace(go.Bar(x=names, y=size, marker_color=colors, showlegend=False,
                         text=[f"{v:.1f}" if v else "" for v in size], textposition="outside"), 1, 1)
    base = [m.get("rss_before_load_mb") for _, m in models]
    peak = [m.get("peak_rss_mb") for _, m in models]
    added = [p - b if p is not None and b is not None else None for p, b in zip(peak, base)]
    fig.add_trace(go.Bar(x=names, y=base, marker_color="#d0d0d0", name="Python + torch before loading",
                         hovertemplate="%{x}<br>%{y:.0f} MB before loading<extra></extra>"), 1, 2)
    fig.add_trace(go.Bar(x=names, y=added, marker_color=colors, name="Model and inference",
                         text=[f"{p:.0f}" if p else "" for p in peak], textposition="outside",
                         hovertemplate="%{x}<br>+%{y:.0f} MB<extra></extra>", showlegend=False), 1, 2)
    load = [m.get("load_time_s") for _, m in models]
    fig.add_trace(go.Bar(x=names, y=load, marker_color=colors, showlegend=False,
                         text=[f"{v:.2f}" if v else "" for v in load], textposition="outside"), 1, 3)
    for col, values in ((1, size), (2, peak), (3, load)):
        top = max((v for v in values if v), default=1)
        fig.update_yaxes(range=[0, top * 1.2], row=1, col=col)
    fig.update_layout(barmode="stack", height=380, margin=MARGIN, legend=dict(orientation="h", y=-0.25))
    return fig


def speedup_accuracy_figure(bench: dict[str, Any]) -> go.Figure:
    """Speed-ups (p50 latency ratios), next to test accuracy per model."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], horizontal_spacing=0.1,
                        subplot_titles=["Speed-up (batch 1, p50 latency ratio)", "Test accuracy"])
    pairs = [("student_vs_teacher", "student vs teacher", MODEL_COLORS["student"]),
             ("int8_vs_student", "int8 vs fp32 student", MODEL_COLORS["student_int8"]),
             ("int8_vs_teacher", "int8 vs teacher", "#7a6a2a"),
             ("onnx_int8_vs_teacher", "ONNX int8 vs teacher", COLORS["student_onnx_int8"])]
    for name, label, color in pairs:
        y = [speedup(bench, *PAIRS[name], length) for length in LENGTHS]
        if all(v is None for v in y):
            continue
        fig.add_trace(go.Bar(x=list(LENGTHS.values()), y=y, name=label, marker_color=color,
                             text=[f"{v:.2f}×" if v else "" for v in y], textposition="outside",
                             hovertemplate="%{x}: %{y:.2f}×<extra>" + label + "</extra>"), 1, 1)
    fig.add_hline(y=1.0, line=dict(color="#999", dash="dot"), row=1, col=1)
    acc = [(k, m) for k, m in _models(bench) if m.get("accuracy") is not None]
    if acc:
        y = [m["accuracy"] for _, m in acc]
        fig.add_trace(go.Bar(x=[_title(k, m) for k, m in acc], y=y, marker_color=[COLORS.get(k, "#555") for k, _ in acc],
                             text=[f"{v:.1%}" for v in y], textposition="outside", showlegend=False,
                             hovertemplate="%{x}<br>%{y:.2%}<extra></extra>"), 1, 2)
        lo = min(y)
        fig.update_yaxes(range=[max(0.0, lo - 0.1), min(1.0, max(y) + 0.05)], tickformat=".0%", row=1, col=2)
    else:
        fig.add_annotation(text="no accuracy (random weights)", showarrow=False, row=1, col=2, x=0.5, y=0.5,
                           xref="x2 domain", yref="y2 domain")
    fig.update_layout(barmode="group", height=400, margin=MARGIN, legend=dict(orientation="h", y=-0.2))
    return fig


def tradeoff_figure(bench: dict[str, Any], length: str = "max_len") -> go.Figure | None:
    """Test accuracy against batch-1 latency (p50, whisker to p95), one point per model; None without accuracy."""
    pts = [(k, m) for k, m in _models(bench) if m.get("accuracy") is not None and _get(m, "latency_ms", length, "p50")]
    if not pts:
        return None
    fig = go.Figure()
    for key, m in pts:
        lat = m["latency_ms"][length]
        fig.add_trace(go.Scatter(
            x=[lat["p50"]], y=[m["accuracy"]], mode="markers", name=_title(key, m),  # named in the legend:
            marker=dict(size=16, color=COLORS.get(key, "#555")),  # labels on close points overlap
            error_x=dict(type="data", symmetric=False, array=[max(0.0, lat.get("p95", lat["p50"]) - lat["p50"])],
                         arrayminus=[0]),
            hovertemplate=f"{_title(key, m)}<br>p50 %{{x:.2f}} ms<br>accuracy %{{y:.2%}}<extra></extra>"))
    xs = [m["latency_ms"][length]["p50"] for _, m in pts]
    ys = [m["accuracy"] for _, m in pts]
    fig.update_layout(title=f"Accuracy against latency ({LENGTHS[length]}, {_tokens(bench, length)} tokens, batch 1) "
                            "— up and left is better",
                      xaxis_title="p50 latency (ms), whisker to p95", yaxis_title="test accuracy", height=420,
                      margin=MARGIN, showlegend=True, legend=dict(orientation="h", y=-0.25))
    fig.update_xaxes(range=[0, max(xs) * 1.6])  # the p50s spread out; a long p95 whisker is cut at the edge
    fig.update_yaxes(tickformat=".1%", range=[min(ys) - 0.03, max(ys) + 0.03])
    return fig


def training_methods(t: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The training comparison's methods by name, each with samples/s (and, in newer bench files, precision,
    achieved GFLOP/s and share of the matmul peak in that precision)."""
    if t.get("methods"):
        return t["methods"]
    return {key: {"samples_per_s": t[f"{key}_samples_per_s"]} for key in ("pipeline", "fixed_padding", "trainer")
            if t.get(f"{key}_samples_per_s") is not None}


def training_figure(bench: dict[str, Any]) -> go.Figure | None:
    """Teacher training samples/s of the pipeline (at the run's precision, and fp32), fixed padding and Trainer's
    defaults, with the pipeline's speed-up over each; and each one's achieved GFLOP/s as a share of this machine's
    matmul peak in its precision (None if the comparison was not run)."""
    t = bench.get("training_throughput")
    if not t:
        return None
    pe = t.get("padding_efficiency") or {}
    methods = training_methods(t)
    pipe = methods["pipeline"]["samples_per_s"]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.6, 0.4], horizontal_spacing=0.1,
                        subplot_titles=["Samples / s (pipeline's speed-up)", "Share of the matmul peak"])
    names, values, texts, colors, shares = [], [], [], [], []
    for key, m in methods.items():
        label, color = TRAINING[key]
        precision = _PRECISION.get(m.get("mixed_precision"), "")
        if key == "pipeline" and precision:
            label += f", {precision}"
        real = pe.get("pipeline" if key == "pipeline_fp32" else key)
        names.append(f"{label}<br>{real:.0%} real tokens" if real is not None else label)
        values.append(m["samples_per_s"])
        texts.append(f"{m['samples_per_s']:.1f}" + ("" if key == "pipeline" else f" ({pipe / m['samples_per_s']:.2f}×)"))
        colors.append(color)
        shares.append(m.get("peak_share"))
    fig.add_trace(go.Bar(x=names, y=values, marker_color=colors, text=texts, textposition="outside", showlegend=False,
                         hovertemplate="%{x}<br>%{y:.2f} samples/s<extra></extra>"), 1, 1)
    fig.update_yaxes(range=[0, max(values, default=1) * 1.2], row=1, col=1)
    if any(v is not None for v in shares):
        gflops = [m.get("gflops_per_s") for m in methods.values()]
        fig.add_trace(go.Bar(x=names, y=shares, marker_color=colors, showlegend=False,
                             text=[f"{v:.0%}" if v is not None else "" for v in shares], textposition="outside",
                             customdata=[g or 0 for g in gflops],
                             hovertemplate="%{x}<br>%{customdata:.0f} GFLOP/s, %{y:.0%} of the matmul peak in its "
                                           "precision<extra></extra>"), 1, 2)
        fig.update_yaxes(tickformat=".0%", range=[0, max([v for v in shares if v is not None]) * 1.25], row=1, col=2)
    fig.update_xaxes(tickfont=dict(size=10))
    fig.update_layout(title=f"Teacher training: batch {t.get('batch_size')}, {t.get('timed_steps')} timed steps of "
                            f"{t.get('steps')}, max_length {t.get('max_length')}", height=460, margin=MARGIN)
    return fig


def training_table(bench: dict[str, Any]) -> pd.DataFrame:
    """The training comparison as a table (the figure's data, for download)."""
    t = bench.get("training_throughput") or {}
    pe = t.get("padding_efficiency") or {}
    rows = []
    for key, m in training_methods(t).items() if t else ():
        rows.append({"method": TRAINING[key][0], "precision": _PRECISION.get(m.get("mixed_precision"), None),
                     "samples_per_s": m["samples_per_s"], "gflops_per_s": m.get("gflops_per_s"),
                     "share_of_peak": m.get("peak_share"),
                     "real_token_share": pe.get("pipeline" if key == "pipeline_fp32" else key)})
    return pd.DataFrame(rows)


def compute_figure(bench: dict[str, Any]) -> go.Figure:
    """Achieved GFLOP/s (analytic forward FLOPs / p50 latency, and over the throughput pass) against the
    machine's own fp32 matmul rate."""
    fig = go.Figure()
    series = [(f"batch 1, {LENGTHS[length]}", lambda m, length=length: _get(m, "gflops_per_s", length)) for length in LENGTHS]
    series.append((f"batch {_get(bench, 'settings', 'batch_size')}, test texts", lambda m: m.get("throughput_gflops_per_s")))
    models = _models(bench)
    for (label, get), opacity in zip(series, (0.45, 0.7, 1.0)):
        y = [get(m) for _, m in models]
        fig.add_trace(go.Bar(x=[_title(k, m) for k, m in models], y=y, name=label, opacity=opacity,
                             marker_color=[COLORS.get(k, "#555") for k, _ in models],
                             text=[f"{v:.0f}" if v else "" for v in y], textposition="outside",
                             hovertemplate="%{x}<br>%{y:.1f} GFLOP/s<extra>" + label + "</extra>"))
    gpu = _get(bench, "machine", "gpu", "matmul_gflops")  # a GPU bench: its fp32 models ran there
    peak = gpu or _get(bench, "machine", "matmul_gflops")
    if peak:
        where = "the GPU" if gpu else "this machine"
        fig.add_hline(y=peak, line=dict(color="#c0392b", dash="dash"),
                      annotation_text=f"fp32 matmul on {where}: {peak:.0f} GFLOP/s", annotation_position="top left")
    fig.update_layout(barmode="group", title="Achieved compute (int8 counted as the same operations)",
                      yaxis_title="GFLOP/s", height=400, margin=MARGIN, legend=dict(orientation="h", y=-0.2))
    return fig


def all_figures(bench: dict[str, Any]) -> dict[str, go.Figure]:
    """Every figure of a bench by name, the empty ones left out (for the check script and exports)."""
    figs = {"latency": latency_figure(bench), "throughput": throughput_figure(bench),
            "size_memory": size_memory_figure(bench), "speedup_accuracy": speedup_accuracy_figure(bench),
            "tradeoff": tradeoff_figure(bench), "training": training_figure(bench), "compute": compute_figure(bench)}
    return {k: v for k, v in figs.items() if v is not None}
