"""Everything the dashboard pages share: cached loaders over run folders, attention formatting, figures.

Pages stay thin: they read widgets, call a function here and draw what it returns.

    run = ui.selected_run()                               # RunInfo picked in the sidebar, or None
    out = ui.predict(run.path, "student", "Stocks rallied.")  # ModelOutput: label, probs (C,), ms, ...
    att = ui.attention(run.path, "teacher", "Stocks rallied.")  # tokens (T,), attentions (L, H, T, T)
    view = ui.attention_view(att, layer=-1, head=None)    # last layer, mean over heads: (T, T)
    st.plotly_chart(ui.attention_pair_figure(view, other_view))

Caching: models are ``st.cache_resource`` (loaded once per process and shared by every session), derived
data is ``st.cache_data``. Every cache is keyed by the path *and* the file's ``(mtime_ns, size)``, so a
re-trained run, or a CSV that grows while training, is read afresh without restarting the app.
Per-user state (the picked run, a training subprocess) lives in ``st.session_state``, never in a cache.

The pure functions (tables, attention formatting, smoothing, figures) take plain data and are unit-tested
without Streamlit; on-screen figures are plotly, PNG exports are drawn with matplotlib (no kaleido).
"""

from __future__ import annotations

import io
import math
import os
import subprocess
import time
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from .cli import launch_in_background
from .config import MODEL_COLORS, MODEL_KINDS, MODEL_TITLES, runs_dir
from .inference import AttentionResult, InputError, TextClassifier, kl_divergence, softmax
from .runs import (
    BENCH_FILE, PREDICTIONS_FILE, STATUS_FILE, RunError, RunInfo, has_model, list_runs, load_run, read_json,
    read_metrics,
)

RUN_KEY = "run_id"  # st.session_state key of the sidebar run picker (kept across pages)
TRAIN_COMMAND = "python -m distill_core train"  # the default (`quick`) run
MAX_BATCH_TEXTS = 1000  # batch classification cap, so one paste cannot stall the app
# Short names for chart legends and axes, where the config's long titles would be cut off.
SHORT_TITLES = {"teacher": "Teacher", "student": "Distilled student", "baseline": "Baseline student",
                "student_int8": "Student int8"}
TOP_LEGEND = dict(orientation="h", yanchor="bottom", y=1.02, x=0)  # above the plot, never over the data
X_AXES = {"step": "Step", "examples_seen": "Examples seen", "elapsed_s": "Wall time (s)"}
# Errors a page turns into a message; anything else is a bug and should surface as one.
EXPECTED_ERRORS = (RunError, InputError, OSError, ValueError)


# ============================================================================ runs and selection


def available_runs(include_failed: bool = False) -> list[RunInfo]:
    """Runs under ``runs_dir()`` the picker offers, newest first: complete and running (and failed, if asked).

    Not cached: listing reads a few small JSON files per run, and a cached list would hide a run that
    just started or finished.
    """
    keep = {"complete", "running"} | ({"failed", "unknown"} if include_failed else set())
    return [r for r in list_runs(runs_dir()) if r.status in keep]


def failed_runs() -> list[RunInfo]:
    return [r for r in list_runs(runs_dir()) if r.status not in ("complete", "running")]


def default_run_id(runs: Sequence[RunInfo]) -> str | None:
    """The newest complete run; else the newest run at all (``runs`` is newest first)."""
    for r in runs:
        if r.status == "complete":
            return r.run_id
    return runs[0].run_id if runs else None


def run_label(info: RunInfo) -> str:
    """How a run reads in the picker: its id, plus its state when it is not complete."""
    if info.status == "running":
        # Plain text: a selectbox option cannot show icons, and emoji fonts are not everywhere.
        return f"{info.run_id}  (training: {info.stage or 'starting'})"
    if info.status != "complete":
        return f"{info.run_id}  ({info.status})"
    return info.run_id


def selected_run() -> RunInfo | None:
    """The run picked in the sidebar (``st.session_state[RUN_KEY]``), read afresh; else the default run.

    The fallback covers a page run before any picker has (AppTest running a page file on its own).
    """
    run_id = st.session_state.get(RUN_KEY)
    if run_id:
        try:
            return load_run(runs_dir() / run_id)
        except RunError:
            pass  # deleted since it was picked
    runs = available_runs()
    run_id = default_run_id(runs)
    return next((r for r in runs if r.run_id == run_id), None)


def run_details_markdown(info: RunInfo) -> str:
    """The run's dataset, labels, teacher, student and KD settings as compact markdown (sidebar)."""
    cfg = info.config
    ds = cfg.get("dataset_info", {})
    rows = ds.get("rows", {})
    arch = cfg.get("architectures", {})
    kd = cfg.get("kd", {})
    data = cfg.get("data", {})
    lines = [
        f"**Status** {info.status}" + (f" (stage {info.stage})" if info.status == "running" and info.stage else ""),
        f"**Dataset** `{Path(str(ds.get('source') or info.dataset)).name}`"
        + (f" — train {rows.get('train', '?'):,} · val {rows.get('validation', '?'):,} · test {rows.get('test', '?'):,}"
           if rows else ""),
        f"**Labels** {', '.join(info.label_names) or '?'}",
        f"**Max length** {data.get('max_length', '?')} tokens",
    ]
    for kind in MODEL_KINDS:
        a = arch.get(kind)
        if a:
            extra = f", from teacher layers {a['layer_map']}" if kind != "teacher" and a.get("layer_map") else ""
            lines.append(f"**{MODEL_TITLES[kind]}** {a.get('class', '?')}: {a.get('layers', '?')} layers, "
                         f"{a.get('heads', '?')} heads, {_millions(a.get('parameters'))} parameters{extra}")
    if kd:
        lines.append(f"**KD** T = {kd.get('temperature')}, alpha = {kd.get('alpha')}, "
                     f"hidden weight = {kd.get('hidden_weight', 0)}")
    if cfg.get("preset"):
        lines.append(f"**Preset** {cfg['preset']} · created {cfg.get('created', '?')} · "
                     f"{cfg.get('environment', {}).get('device', '?')}")
    if info.error:
        lines.append(f"**Error** {info.error}")
    return "  \n".join(lines)


def _millions(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return "?"
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{int(n):,}"


@contextmanager
def friendly_errors(what: str) -> Iterator[None]:
    """Turn the errors a run folder can cause into a message on the page instead of a traceback.

    ``with ui.friendly_errors("Training curves"): ...`` stops that block at the error and shows it; the
    rest of the page still renders.
    """
    try:
        yield
    except EXPECTED_ERRORS as e:
        st.error(f"**{what}:** {e}")


# ============================================================================ cached loaders


def limit_inference_threads(n: int | None = None) -> int:
    """Give torch ``n`` CPU threads (default ``$DISTILL_DASHBOARD_THREADS``, else 1) for the whole process.

    The app classifies one short text at a time: one thread is about as fast as two, and it does not
    collapse when a training run shares the CPU. On 2 cores with a run training, three classifications
    plus two attention maps took 15-35 ms with one thread and 1.6 s with two (the thread pool spins
    waiting for a core). Called by the entry point, not at import, so importing this module changes nothing.
    """
    import torch

    n = int(n or os.environ.get("DISTILL_DASHBOARD_THREADS") or 1)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def file_stamp(path: Path) -> tuple[int, int] | None:
    """``(mtime_ns, size)`` of a file, the cache key part that changes when the file is rewritten."""
    try:
        s = Path(path).stat()
    except OSError:
        return None
    return (s.st_mtime_ns, s.st_size)


def model_stamp(run_dir: Path, kind: str) -> tuple:
    d = Path(run_dir) / kind
    return (file_stamp(d / "model.safetensors"), file_stamp(d / "config.json"))


@st.cache_resource(max_entries=9, show_spinner="Loading model…")
def _load_classifier(model_dir: str, stamp: tuple) -> TextClassifier:
    clf = TextClassifier.load(model_dir)
    # torch's first forward pass pays one-off set-up costs; pay them here so that the latency the live
    # page reports is the model's, warm.
    clf.predict_logits(["warm up"])
    return clf


def classifier(run_dir: Path, kind: str) -> TextClassifier:
    """The run's ``kind`` model, loaded once per process (and again only when its files change).

    Raises:
        RunError: the model folder is missing or cannot be loaded; the message says how to fix it.
    """
    run_dir = Path(run_dir)
    if not has_model(run_dir, kind):
        raise RunError(f"The {MODEL_TITLES[kind].lower()} is missing from run {run_dir.name} (no complete "
                       f"`{kind}/` folder). Train it with `{TRAIN_COMMAND} --models {kind}` or pick another run.")
    try:
        return _load_classifier(str(run_dir / kind), model_stamp(run_dir, kind))
    except Exception as e:  # a half-written or foreign folder: from_pretrained raises many types
        raise RunError(f"The {MODEL_TITLES[kind].lower()} in {run_dir / kind} could not be loaded "
                       f"({type(e).__name__}: {e}); the folder may be half-written. Re-train the run.") from e


@dataclass
class ModelOutput:
    """One model's answer for one text."""

    kind: str
    labels: list[str]
    logits: np.ndarray  # (C,)
    ms: float  # wall time of tokenising + forward pass, measured when first classified
    n_tokens: int  # whole text, [CLS]/[SEP] included
    n_truncated: int  # tokens cut to fit max_length

    @property
    def probs(self) -> np.ndarray:  # (C,)
        return softmax(self.logits)

    @property
    def label(self) -> str:
        return self.labels[int(self.logits.argmax())]

    @property
    def confidence(self) -> float:
        return float(self.probs.max())

    def probs_at(self, temperature: float) -> np.ndarray:
        """(C,) the distribution softened by ``temperature`` (what KD matches at T > 1)."""
        return softmax(self.logits / float(temperature))


@st.cache_data(max_entries=512, show_spinner=False)
def _predict(model_dir: str, stamp: tuple, text: str) -> dict:
    clf = _load_classifier(model_dir, stamp)
    t0 = time.perf_counter()
    logits = clf.predict_logits([text])[0]  # (C,)
    n = clf.count_tokens(text)
    ms = (time.perf_counter() - t0) * 1000.0
    return {"labels": clf.labels, "logits": logits, "ms": ms, "n_tokens": n, "n_truncated": max(0, n - clf.max_length)}


def predict(run_dir: Path, kind: str, text: str) -> ModelOutput:
    """Classify one text with one model (cached per model file and text, so sliders do not re-run it).

    Raises:
        InputError: empty text. RunError: the model is missing or broken.
    """
    if not isinstance(text, str) or not text.strip():
        raise InputError("The text is empty: type or paste some words to classify.")
    classifier(run_dir, kind)  # raises the friendly error; the model is then in the resource cache
    d = _predict(str(Path(run_dir) / kind), model_stamp(run_dir, kind), text)
    return ModelOutput(kind=kind, **d)


@st.cache_data(max_entries=16, show_spinner=False)
def _attention(model_dir: str, stamp: tuple, text: str) -> AttentionResult:
    return _load_classifier(model_dir, stamp).attention(text)


def attention(run_dir: Path, kind: str, text: str) -> AttentionResult:
    """Tokens and the attention tensor ``(L, H, T, T)`` of one model for one text (cached)."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("The text is empty: type a sentence to see its attention.")
    classifier(run_dir, kind)
    return _attention(str(Path(run_dir) / kind), model_stamp(run_dir, kind), text)


def layer_map(run_dir: Path, kind: str = "student") -> list[int] | None:
    """Teacher layer each student layer was initialised from (the student's ``distill_layer_map``)."""
    m = getattr(classifier(run_dir, kind).model.config, "distill_layer_map", None)
    return [int(x) for x in m] if m else None


@st.cache_data(max_entries=64, show_spinner=False)
def _read_metrics(run_dir: str, kind: str, split: str, stamp: tuple | None) -> pd.DataFrame:
    return read_metrics(Path(run_dir), kind, split)


def metrics(run_dir: Path, kind: str, split: str) -> pd.DataFrame:
    """``<kind>_<split>.csv`` as a DataFrame; re-read whenever the file grows (a run still training)."""
    path = Path(run_dir) / f"{kind}_{split}.csv"
    return _read_metrics(str(run_dir), kind, split, file_stamp(path))


@st.cache_data(max_entries=8, show_spinner=False)
def _read_predictions(path: str, stamp: tuple | None) -> pd.DataFrame:
    if stamp is None:
        raise RunError(f"{PREDICTIONS_FILE} is missing from {Path(path).parent.name}: the run has not been "
                       "evaluated yet (it appears when training finishes)")
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises its own types for a truncated file
        raise RunError(f"{PREDICTIONS_FILE} could not be read ({type(e).__name__}: {e}); re-create it with "
                       "`python -m distill_core evaluate RUN`") from e


def predictions_table(run_dir: Path) -> pd.DataFrame:
    """The run's test set with each model's prediction (``predictions.parquet``)."""
    path = Path(run_dir) / PREDICTIONS_FILE
    return _read_predictions(str(path), file_stamp(path))


@st.cache_data(max_entries=8, show_spinner=False)
def _read_bench(path: str, stamp: tuple | None) -> dict | None:
    return read_json(Path(path)) if stamp is not None else None


def bench(run_dir: Path) -> dict | None:
    """``bench.json`` (speed and size figures) or None if the run has not been benchmarked."""
    path = Path(run_dir) / BENCH_FILE
    return _read_bench(str(path), file_stamp(path))


def csv_bytes(run_dir: Path, kind: str, split: str) -> bytes:
    return (Path(run_dir) / f"{kind}_{split}.csv").read_bytes()


# ============================================================================ overview tables


def overview_table(results: dict, bench_data: dict | None = None) -> pd.DataFrame:
    """One row per model: test quality, size, and (for students) how much of the teacher they keep.

    Args:
        results: ``results.json`` of a run.
        bench_data: ``bench.json`` or None; adds latency, speed-up and throughput columns.

    Returns:
        DataFrame indexed by model kind with numeric columns (format them for display, not here).
    """
    models = results.get("models") or {}
    if not models:
        raise RunError("results.json lists no models; re-create it with `python -m distill_core evaluate RUN`")
    teacher = models.get("teacher", {})
    t_size = _size(teacher)
    rows = []
    for kind in [k for k in MODEL_KINDS if k in models] + [k for k in models if k not in MODEL_KINDS]:
        m = models[kind]
        size = _size(m)
        rows.append({
            "kind": kind,
            "Model": MODEL_TITLES.get(kind, kind),
            "Test accuracy": m.get("accuracy"),
            "Macro-F1": m.get("macro_f1"),
            "Parameters": m.get("parameters"),
            "Layers": m.get("layers"),
            "Size on disk (MB)": size / 1e6 if size else None,
            "Accuracy retention (% of teacher)": _retention(m, teacher),
            "Size (% of teacher)": 100.0 * size / t_size if size and t_size else None,
            "Agreement with teacher": 1.0 if kind == "teacher" else m.get("agreement_with_teacher"),
            "Train time (s)": (m.get("training") or {}).get("train_time_s"),
        })
    table = pd.DataFrame(rows).set_index("kind")
    if bench_data:
        table = _with_bench(table, bench_data, t_size)
    return table


def _size(m: dict) -> float | None:
    return m.get("dir_size_bytes") or m.get("size_bytes")


def _retention(m: dict, teacher: dict) -> float | None:
    if m.get("accuracy_retention") is not None:
        return 100.0 * m["accuracy_retention"]
    if m.get("accuracy") is not None and teacher.get("accuracy"):
        return 100.0 * m["accuracy"] / teacher["accuracy"]
    return None


def bench_latency(entry: dict, which: str = "median_len") -> float | None:
    """p50 latency in ms of one bench.json model entry (None if absent or malformed)."""
    try:
        return float(entry["latency_ms"][which]["p50"])
    except (KeyError, TypeError, ValueError):
        return None


def _with_bench(table: pd.DataFrame, bench_data: dict, t_size: float | None) -> pd.DataFrame:
    """Add bench columns; the int8 student the benchmark quantised becomes an extra row."""
    bmodels = bench_data.get("models") or {}
    t_lat = bench_latency(bmodels.get("teacher", {}))
    if "student_int8" in bmodels and "student_int8" not in table.index:
        q = bmodels["student_int8"]
        size = q.get("size_bytes")
        table.loc["student_int8", ["Model", "Test accuracy", "Macro-F1", "Parameters", "Size on disk (MB)"]] = [
            "Distilled student, int8 (bench)", q.get("accuracy"), q.get("macro_f1"), q.get("parameters"),
            size / 1e6 if size else None]
        if size and t_size:
            table.loc["student_int8", "Size (% of teacher)"] = 100.0 * size / t_size
        t_acc = table.loc["teacher", "Test accuracy"] if "teacher" in table.index else None
        if q.get("accuracy") is not None and t_acc:
            table.loc["student_int8", "Accuracy retention (% of teacher)"] = 100.0 * q["accuracy"] / t_acc
    lat = {k: bench_latency(v) for k, v in bmodels.items() if isinstance(v, dict)}
    table["Latency p50 (ms)"] = [lat.get(k) for k in table.index]
    table["Speed-up vs teacher"] = [t_lat / lat[k] if t_lat and lat.get(k) else None for k in table.index]
    table["Throughput (texts/s)"] = [(bmodels.get(k) or {}).get("throughput_texts_per_s") for k in table.index]
    return table


def per_class_f1(results: dict) -> pd.DataFrame:
    """F1 per class (rows) and model (columns, display titles)."""
    out = {}
    for kind, m in (results.get("models") or {}).items():
        pc = m.get("per_class") or {}
        out[SHORT_TITLES.get(kind, kind)] = {name: v.get("f1-score") for name, v in pc.items()}
    df = pd.DataFrame(out)
    names = results.get("label_names")
    return df.reindex(names) if names else df


def overview_figure(table: pd.DataFrame) -> go.Figure:
    """Bars of the overview table: quality, parameters, size (and latency when benchmarked)."""
    panels = [("Test accuracy / macro-F1", None), ("Parameters (M)", "Parameters"),
              ("Size on disk (MB)", "Size on disk (MB)")]
    if "Latency p50 (ms)" in table and table["Latency p50 (ms)"].notna().any():
        panels.append(("Latency p50 (ms)", "Latency p50 (ms)"))
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels], horizontal_spacing=0.06)
    names = [SHORT_TITLES.get(k, k) for k in table.index]
    colors = [MODEL_COLORS.get(k, "#555") for k in table.index]
    for metric, opacity in (("Test accuracy", 1.0), ("Macro-F1", 0.55)):
        fig.add_trace(go.Bar(x=names, y=table[metric], name=metric, marker_color=colors, opacity=opacity,
                             text=[f"{v:.1%}" if pd.notna(v) else "" for v in table[metric]], textposition="outside",
                             hovertemplate="%{x}<br>" + metric + " %{y:.2%}<extra></extra>"), 1, 1)
    for col, (_, column) in enumerate(panels[1:], start=2):
        y = table[column] / (1e6 if column == "Parameters" else 1)
        fig.add_trace(go.Bar(x=names, y=y, marker_color=colors, showlegend=False,
                             text=[f"{v:.3g}" if pd.notna(v) else "" for v in y], textposition="outside",
                             hovertemplate="%{x}<br>%{y:.3g}<extra></extra>"), 1, col)
    fig.update_yaxes(range=[0, 1.12], tickformat=".0%", row=1, col=1)
    fig.update_layout(barmode="group", height=380, margin=dict(t=50, b=10, l=10, r=10), bargap=0.25,
                      legend=dict(orientation="h", yanchor="top", y=-0.15, x=0))
    return fig


def per_class_figure(f1: pd.DataFrame) -> go.Figure:
    """Per-class F1, one bar per model, side by side."""
    colors = {SHORT_TITLES[k]: c for k, c in MODEL_COLORS.items()}
    fig = go.Figure([go.Bar(x=list(f1.index), y=f1[col], name=col, marker_color=colors.get(col),
                            hovertemplate="%{x}<br>F1 %{y:.3f}<extra>" + col + "</extra>") for col in f1.columns])
    fig.update_layout(barmode="group", yaxis=dict(title="F1", range=[0, 1]), height=340,
                      margin=dict(t=40, b=10, l=10, r=10), legend=TOP_LEGEND)
    return fig


def confusion_figure(matrix: Sequence[Sequence[int]], labels: list[str], title: str) -> go.Figure:
    """A confusion matrix (rows: true class, columns: predicted) as an annotated heatmap."""
    z = np.asarray(matrix)
    fig = go.Figure(go.Heatmap(z=z, x=labels, y=labels, colorscale="Blues", showscale=False, text=z,
                               texttemplate="%{text}", hovertemplate="true %{y}<br>predicted %{x}<br>%{z}<extra></extra>"))
    fig.update_layout(title=title, height=320, margin=dict(t=40, b=10, l=10, r=10),
                      xaxis=dict(title="predicted"), yaxis=dict(title="true", autorange="reversed"))
    return fig


# ============================================================================ training curves


def ema(values: Sequence[float], weight: float) -> np.ndarray:
    """Exponential moving average with bias correction (TensorBoard's smoothing), NaNs carried through.

    Args:
        values: (N,) raw series.
        weight: 0 (no smoothing) to <1 (heavy); the previous smoothed value's share.

    Returns:
        (N,) smoothed series; the start is not pulled towards zero thanks to the correction.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    x = np.asarray(values, dtype=float)
    out = np.full_like(x, np.nan)
    acc, norm = 0.0, 0.0
    for i, v in enumerate(x):
        if math.isnan(v):
            continue
        acc = weight * acc + (1.0 - weight) * v
        norm = weight * norm + (1.0 - weight)
        out[i] = acc / norm
    return out


def curves_figure(train: dict[str, pd.DataFrame], val: dict[str, pd.DataFrame], x: str = "step",
                  smoothing: float = 0.6) -> go.Figure:
    """Loss and accuracy of every model on shared axes: faint raw trace, smoothed line, validation points.

    Args:
        train: kind -> ``<kind>_train.csv`` frame. val: kind -> ``<kind>_val.csv`` frame (may be empty).
        x: ``step``, ``examples_seen`` or ``elapsed_s``. smoothing: EMA weight for the training traces.
    """
    _check_x(x)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"), horizontal_spacing=0.08)
    for kind, df in train.items():
        color, title = MODEL_COLORS.get(kind, "#555"), SHORT_TITLES.get(kind, kind)
        for col, (tr_metric, val_metric) in enumerate((("train_loss", "val_loss"), ("train_accuracy", "val_accuracy")), 1):
            if tr_metric not in df or df.empty:
                continue
            first = col == 1
            fig.add_trace(go.Scatter(x=df[x], y=df[tr_metric], mode="lines", line=dict(color=color, width=1),
                                     opacity=0.25, legendgroup=kind, showlegend=False, hoverinfo="skip",
                                     name=f"{title} (raw)"), 1, col)
            fig.add_trace(go.Scatter(x=df[x], y=ema(df[tr_metric], smoothing), mode="lines",
                                     line=dict(color=color, width=2), legendgroup=kind, showlegend=first,
                                     name=f"{title} train", meta=kind,
                                     hovertemplate=f"{title}<br>{X_AXES[x]} %{{x}}<br>train %{{y:.4f}}<extra></extra>"), 1, col)
            v = val.get(kind)
            if v is not None and not v.empty and val_metric in v:
                fig.add_trace(go.Scatter(x=v[x], y=v[val_metric], mode="markers+lines",
                                         line=dict(color=color, width=1, dash="dot"),
                                         marker=dict(color=color, size=9, symbol="diamond", line=dict(width=1, color="white")),
                                         legendgroup=kind, showlegend=first, name=f"{title} validation",
                                         hovertemplate=f"{title}<br>{X_AXES[x]} %{{x}}<br>validation %{{y:.4f}}<extra></extra>"),
                              1, col)
    fig.update_xaxes(title=X_AXES[x])
    fig.update_yaxes(tickformat=".0%", row=1, col=2)
    fig.update_layout(height=430, margin=dict(t=40, b=10, l=10, r=10), legend=dict(orientation="h", y=-0.2),
                      hovermode="closest")
    return fig


def lr_figure(train: dict[str, pd.DataFrame], x: str = "step") -> go.Figure:
    """The learning rate schedule each model was trained with."""
    _check_x(x)
    fig = go.Figure([go.Scatter(x=df[x], y=df["learning_rate"], mode="lines", name=SHORT_TITLES.get(k, k),
                                line=dict(color=MODEL_COLORS.get(k)))
                     for k, df in train.items() if "learning_rate" in df and not df.empty])
    fig.update_layout(height=320, xaxis_title=X_AXES[x], yaxis=dict(title="learning rate", exponentformat="e"),
                      margin=dict(t=40, b=10, l=10, r=10), legend=TOP_LEGEND)
    return fig


def kd_components_figure(student: pd.DataFrame, x: str = "step", smoothing: float = 0.6) -> go.Figure:
    """The distilled student's loss split into its KD (soft targets) and CE (hard labels) terms."""
    _check_x(x)
    parts = [("kd_loss", "KD loss (T² · KL to the teacher)", "#e8702a"), ("ce_loss", "CE loss (true labels)", "#1f4e8c"),
             ("hidden_loss", "hidden-state loss", "#2a9d8f"), ("train_loss", "total", "#444")]
    fig = go.Figure()
    for col, name, color in parts:
        if col not in student or student[col].isna().all():
            continue
        fig.add_trace(go.Scatter(x=student[x], y=student[col], mode="lines", line=dict(color=color, width=1),
                                 opacity=0.25, showlegend=False, hoverinfo="skip", legendgroup=col))
        fig.add_trace(go.Scatter(x=student[x], y=ema(student[col], smoothing), mode="lines", name=name,
                                 line=dict(color=color, width=2, dash="dot" if col == "train_loss" else None),
                                 legendgroup=col))
    fig.update_layout(height=320, xaxis_title=X_AXES[x], yaxis_title="loss", margin=dict(t=40, b=10, l=10, r=10),
                      legend=TOP_LEGEND)
    return fig


def _check_x(x: str) -> None:
    if x not in X_AXES:
        raise ValueError(f"x must be one of {list(X_AXES)}, got {x!r}")


def curves_png(train: dict[str, pd.DataFrame], val: dict[str, pd.DataFrame], x: str = "step",
               smoothing: float = 0.6) -> bytes:
    """The loss/accuracy figure as a PNG, drawn with matplotlib (plotly's PNG export would need kaleido)."""
    from matplotlib.figure import Figure

    _check_x(x)
    fig = Figure(figsize=(11, 4), dpi=120)
    axes = fig.subplots(1, 2)
    for kind, df in train.items():
        color, title = MODEL_COLORS.get(kind, "#555"), SHORT_TITLES.get(kind, kind)
        for ax, (tr, vm) in zip(axes, (("train_loss", "val_loss"), ("train_accuracy", "val_accuracy"))):
            if tr not in df or df.empty:
                continue
            ax.plot(df[x], df[tr], color=color, alpha=0.2, lw=1)
            ax.plot(df[x], ema(df[tr], smoothing), color=color, lw=2, label=f"{title} train")
            v = val.get(kind)
            if v is not None and not v.empty and vm in v:
                ax.plot(v[x], v[vm], "D:", color=color, ms=5, label=f"{title} validation")
    for ax, name in zip(axes, ("Loss", "Accuracy")):
        ax.set_title(name)
        ax.set_xlabel(X_AXES[x])
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _png(fig)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


# ============================================================================ live classification


_AG_NEWS_EXAMPLES = [
    "Kobe Bryant had won the FMVP in the 2009-2010 NBA Final.",
    "Costco faces sex discrimination suit. A lawsuit accuses the warehouse club of discriminating against "
    "female employees.",
    "NASA's new space telescope sends back its first images of distant galaxies.",
    "Leaders of the two countries met in Geneva on Monday for peace talks.",
    "Apple shares jumped after the company reported record sales of its new phone.",
]
_SENTIMENT_EXAMPLES = [
    "A beautifully shot film with a story that stayed with me for days.",
    "Two hours of my life I will never get back; the plot makes no sense at all.",
    "The acting was fine, but the ending felt rushed and predictable.",
]


def is_ag_news(label_names: Sequence[str], dataset: str = "") -> bool:
    return "ag_news" in dataset.lower() or {"world", "sports", "business"} <= {n.lower() for n in label_names}


def example_texts(label_names: Sequence[str], dataset: str = "") -> list[str]:
    """The reports' own example sentences that fit this run's labels (empty for unknown label sets)."""
    names = {n.lower() for n in label_names}
    if is_ag_news(label_names, dataset):
        return list(_AG_NEWS_EXAMPLES)
    if names in ({"neg", "pos"}, {"negative", "positive"}) or any(w in dataset.lower() for w in ("imdb", "sst", "tomatoes")):
        return list(_SENTIMENT_EXAMPLES)
    return []


def attention_default_text(label_names: Sequence[str], dataset: str = "", test_texts: Sequence[str] = ()) -> str:
    """The reports' "Costco" sentence for AG News, else a sentiment example, else the first test text."""
    if is_ag_news(label_names, dataset):
        return _AG_NEWS_EXAMPLES[1]
    examples = example_texts(label_names, dataset)
    if examples:
        return examples[0]
    return next(iter(test_texts), "Type a sentence here.")


def split_batch(text: str) -> list[str]:
    """Non-empty lines of a text area; more than one means "classify as a batch"."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def texts_from_csv(data: bytes | pd.DataFrame, column: str | None = None) -> tuple[list[str], str]:
    """The texts of an uploaded CSV and the column they came from.

    Raises:
        InputError: no usable text column, or no rows; the message names the columns found.
    """
    try:
        df = data if isinstance(data, pd.DataFrame) else pd.read_csv(io.BytesIO(data))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"The file is not a readable CSV ({e}).") from e
    if column is None:
        lower = {c.lower(): c for c in df.columns.astype(str)}
        column = next((lower[c] for c in ("text", "sentence", "content", "review", "document") if c in lower), None)
        if column is None:
            strings = [c for c in df.columns if df[c].dtype == object or pd.api.types.is_string_dtype(df[c])]
            column = strings[0] if strings else None
    if column is None or column not in df.columns:
        raise InputError(f"No text column found; the CSV has columns {list(df.columns)}. Name one 'text'.")
    texts = [str(t) for t in df[column].dropna() if str(t).strip()]
    if not texts:
        raise InputError(f"Column {column!r} has no non-empty texts.")
    return texts, str(column)


@st.cache_data(max_entries=16, show_spinner="Classifying…")
def _classify_batch(model_dirs: tuple[tuple[str, str, tuple], ...], texts: tuple[str, ...]) -> pd.DataFrame:
    table = pd.DataFrame({"text": list(texts)})
    preds = {}
    for kind, model_dir, stamp in model_dirs:
        clf = _load_classifier(model_dir, stamp)
        probs = clf.predict_proba(list(texts))  # (N, C)
        preds[kind] = probs.argmax(-1)
        table[MODEL_TITLES[kind]] = [clf.labels[i] for i in preds[kind]]
        table[f"{MODEL_TITLES[kind]} confidence"] = probs.max(-1)
    if len(preds) > 1:
        stacked = np.stack(list(preds.values()))  # (M, N)
        table["All agree"] = (stacked == stacked[0]).all(0)
    return table


def classify_batch(run_dir: Path, kinds: Sequence[str], texts: Sequence[str]) -> pd.DataFrame:
    """One row per text: each model's label and confidence, and whether they all agree.

    Raises:
        InputError: no text, or more than ``MAX_BATCH_TEXTS``. RunError: a model is missing.
    """
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise InputError("No text to classify.")
    if len(texts) > MAX_BATCH_TEXTS:
        raise InputError(f"{len(texts)} texts: the dashboard classifies at most {MAX_BATCH_TEXTS} at once; "
                         "use `python -m distill_core evaluate` for a whole dataset.")
    for k in kinds:
        classifier(run_dir, k)
    dirs = tuple((k, str(Path(run_dir) / k), model_stamp(run_dir, k)) for k in kinds)
    return _classify_batch(dirs, tuple(texts))


def agreement(outputs: Sequence[ModelOutput]) -> tuple[bool, str]:
    """Whether the models predict the same class, and a sentence saying so."""
    labels = {o.label for o in outputs}
    if len(labels) == 1:
        return True, f"All {len(outputs)} models predict **{outputs[0].label}**."
    return False, "The models disagree: " + ", ".join(f"{MODEL_TITLES[o.kind]} says **{o.label}**" for o in outputs) + "."


def probabilities_figure(labels: Sequence[str], series: dict[str, np.ndarray], colors: dict[str, str] | None = None,
                         height: int = 320) -> go.Figure:
    """Grouped bars of class probabilities: one series (a model, or a model at a temperature) per colour.

    Args:
        labels: (C,) class names. series: name -> (C,) probabilities.
    """
    colors = colors or {}
    fig = go.Figure([go.Bar(x=list(labels), y=np.asarray(p), name=name, marker_color=colors.get(name),
                            text=[f"{v:.0%}" for v in np.asarray(p)], textposition="outside",
                            hovertemplate="%{x}<br>%{y:.2%}<extra>" + name + "</extra>")
                     for name, p in series.items()])
    fig.update_layout(barmode="group", height=height, yaxis=dict(range=[0, 1.1], tickformat=".0%", title="probability"),
                      margin=dict(t=40, b=10, l=10, r=10), legend=TOP_LEGEND)
    return fig


def kl_to_teacher(teacher: ModelOutput, other: ModelOutput, temperature: float) -> float:
    """KL(teacher_T || other_T) in nats: the term the distilled student minimises (before the T² factor)."""
    return kl_divergence(teacher.probs_at(temperature), other.probs_at(temperature))


# ============================================================================ attention formatting


SPECIAL_TOKENS = frozenset({"[CLS]", "[SEP]", "[PAD]", "[MASK]", "<s>", "</s>", "<pad>", "<cls>", "<sep>"})


@dataclass
class AttentionView:
    """What one heatmap shows: a (T', T') slice of a model's attention, ready to draw."""

    tokens: list[str]  # (T',) shown tokens
    matrix: np.ndarray  # (T', T') query rows x key columns
    cls_row: np.ndarray | None  # (T',) what [CLS] attends to over the shown tokens; None without a [CLS]
    layer: int  # 0-based
    head: int | None  # None: mean over heads
    n_layers: int
    n_heads: int
    n_total: int  # tokens before hiding and capping
    n_capped: int  # tokens left out by the cap (after hiding)
    hidden: bool = False  # special tokens and punctuation hidden, rows renormalised
    probs: np.ndarray | None = field(default=None, repr=False)  # (C,) the model's prediction for the text

    def describe(self) -> str:
        head = "mean of heads" if self.head is None else f"head {self.head + 1}/{self.n_heads}"
        return f"layer {self.layer + 1}/{self.n_layers}, {head}"


def check_attention(att: np.ndarray, tokens: Sequence[str] | None = None) -> np.ndarray:
    """Validate one text's attention tensor and return it as a float array ``(L, H, T, T)``.

    Raises:
        ValueError: wrong rank or shape, with how to get the expected layout.
    """
    a = np.asarray(att, dtype=np.float32)
    if a.ndim == 5 and a.shape[1] == 1:
        raise ValueError(f"attention has shape {a.shape}: that is (layers, batch, heads, T, T) for a batch of "
                         "one; drop the batch axis (att[:, 0]) to get (layers, heads, T, T)")
    if a.ndim != 4:
        raise ValueError(f"attention must be (layers, heads, T, T), got {a.ndim} dimensions {a.shape}; for "
                         "transformers outputs use np.stack([x[0] for x in outputs.attentions]) for one text")
    if a.shape[2] != a.shape[3]:
        raise ValueError(f"attention must be square over tokens (T, T), got {a.shape[2:]} in {a.shape}; "
                         "pass self-attention (query x key of the same text)")
    if tokens is not None and len(tokens) != a.shape[-1]:
        raise ValueError(f"{len(tokens)} tokens but attention is over {a.shape[-1]}; pass the tokens of the same, "
                         "truncated input (AttentionResult.tokens)")
    return a


def attention_matrix(att: np.ndarray, layer: int = -1, head: int | None = None) -> np.ndarray:
    """One layer's attention ``(T, T)``: one head, or the mean over heads (``head=None``).

    Args:
        att: (L, H, T, T). layer: 0-based, negative counts from the end. head: 0-based or None.
    """
    a = check_attention(att)
    L, H = a.shape[:2]
    if not -L <= layer < L:
        raise ValueError(f"layer {layer} is out of range for a model with {L} layers (0..{L - 1})")
    if head is not None and not 0 <= head < H:
        raise ValueError(f"head {head} is out of range for {H} heads (0..{H - 1})")
    return a[layer].mean(axis=0) if head is None else a[layer, head]  # (T, T)


def is_punctuation(token: str) -> bool:
    t = token[2:] if token.startswith("##") else token
    t = t.lstrip("Ġ▁")  # BPE/SentencePiece word markers
    return bool(t) and all(unicodedata.category(c).startswith("P") for c in t)


def keep_mask(tokens: Sequence[str], hide: bool) -> np.ndarray:
    """(T,) True for tokens to show; with ``hide``, special tokens and punctuation are dropped."""
    if not hide:
        return np.ones(len(tokens), dtype=bool)
    return np.array([t not in SPECIAL_TOKENS and not is_punctuation(t) for t in tokens], dtype=bool)


def drop_tokens(tokens: Sequence[str], matrix: np.ndarray, keep: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Keep the rows and columns in ``keep`` and renormalise each row to sum to 1.

    Args:
        tokens: (T,). matrix: (T, T). keep: (T,) bool.

    Returns:
        (T',) tokens and (T', T') matrix whose rows sum to 1 (a row that put all its weight on dropped
        tokens stays 0).
    """
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != (len(tokens),) or matrix.shape != (len(tokens), len(tokens)):
        raise ValueError(f"keep {keep.shape} and matrix {matrix.shape} must match the {len(tokens)} tokens")
    if not keep.any():
        raise ValueError("Nothing left to show: the text is only special tokens and punctuation. "
                         "Turn off 'hide [CLS]/[SEP]/punctuation'.")
    m = matrix[np.ix_(keep, keep)]
    return [t for t, k in zip(tokens, keep) if k], _renormalise(m)


def _renormalise(m: np.ndarray) -> np.ndarray:
    sums = m.sum(axis=-1, keepdims=True)
    return np.divide(m, sums, out=np.zeros_like(m), where=sums > 0)


def attention_view(result: AttentionResult, layer: int = -1, head: int | None = None, hide: bool = False,
                   max_tokens: int | None = None) -> AttentionView:
    """Format one model's attention for display: pick layer/head, optionally hide tokens, cap the length.

    Args:
        result: tokens (T,) and attentions (L, H, T, T) of one text.
        layer: 0-based (negative from the end). head: 0-based, or None for the mean over heads.
        hide: drop [CLS]/[SEP]/punctuation rows and columns and renormalise the rows.
        max_tokens: show at most this many tokens (the first ones); None shows all.
    """
    a = check_attention(result.attentions, result.tokens)
    L, H, T, _ = a.shape
    layer = layer % L
    full = attention_matrix(a, layer, head)  # (T, T)
    keep = keep_mask(result.tokens, hide)
    cls = None
    if result.tokens and result.tokens[0] in SPECIAL_TOKENS:
        row = full[0][keep]  # [CLS] as query, over the shown keys
        cls = row / row.sum() if hide and row.sum() > 0 else row
    tokens, m = drop_tokens(result.tokens, full, keep) if hide else (list(result.tokens), full)
    n_capped = 0
    if max_tokens is not None and len(tokens) > max_tokens:
        n_capped = len(tokens) - max_tokens
        tokens, m = tokens[:max_tokens], m[:max_tokens, :max_tokens]
        cls = cls[:max_tokens] if cls is not None else None
    return AttentionView(tokens=tokens, matrix=m, cls_row=cls, layer=layer, head=head, n_layers=L, n_heads=H,
                         n_total=T, n_capped=n_capped, hidden=hide, probs=result.probs)


def aligned_teacher_layer(student_layer: int, mapping: Sequence[int] | None, teacher_layers: int,
                          student_layers: int) -> tuple[int, bool]:
    """The teacher layer a student layer corresponds to, and whether that is exact.

    Exact when the student was initialised from the teacher (``distill_layer_map``); otherwise the layer
    at the same relative depth (student layer i of n <-> teacher layer round((i+1) * N / n) - 1).
    """
    if not 0 <= student_layer < student_layers:
        raise ValueError(f"student layer {student_layer} is out of range 0..{student_layers - 1}")
    if mapping:
        if len(mapping) != student_layers:
            raise ValueError(f"layer map {list(mapping)} has {len(mapping)} entries for {student_layers} student layers")
        return int(mapping[student_layer]), True
    return max(0, round((student_layer + 1) * teacher_layers / student_layers) - 1), False


def difference_matrix(a: AttentionView, b: AttentionView) -> np.ndarray:
    """(T', T') ``a - b`` for two views of the same text with the same tokens shown."""
    if a.tokens != b.tokens:
        raise ValueError("The two models tokenise this text differently (or show different tokens), so their "
                         "attention cannot be subtracted cell by cell; use the same tokenizer for both.")
    return a.matrix - b.matrix


def view_title(model_title: str, view: AttentionView, labels: Sequence[str]) -> str:
    """'Teacher (BERT) · layer 6/6, mean of heads · Sports 87%'."""
    pred = ""
    if view.probs is not None and len(labels):
        i = int(np.argmax(view.probs))
        pred = f" · {labels[i]} {view.probs[i]:.0%}"
    return f"{model_title} · {view.describe()}{pred}"


def _axis_ticks(tokens: Sequence[str]) -> dict:
    # Tokens repeat ("the" twice); positions keep them apart on a categorical axis.
    return dict(tickmode="array", tickvals=list(range(len(tokens))), ticktext=list(tokens), tickfont=dict(size=10))


def attention_pair_figure(views: Sequence[AttentionView], titles: Sequence[str]) -> go.Figure:
    """Heatmaps side by side on one colour scale (0 .. the largest weight shown), token labels on both axes."""
    zmax = max(float(v.matrix.max()) for v in views) if views else 1.0
    fig = make_subplots(rows=1, cols=len(views), subplot_titles=list(titles), horizontal_spacing=0.12)
    for i, v in enumerate(views, start=1):
        hover = np.array([[f"{q} → {k}" for k in v.tokens] for q in v.tokens], dtype=object)
        fig.add_trace(go.Heatmap(z=v.matrix, coloraxis="coloraxis", customdata=hover,
                                 hovertemplate="%{customdata}<br>%{z:.3f}<extra></extra>"), 1, i)
        fig.update_xaxes(_axis_ticks(v.tokens), tickangle=-60, row=1, col=i, title="key (attended to)",
                         constrain="domain")
        # Square cells: each y axis is scaled to its x axis (plotly names them x, x2, ...).
        fig.update_yaxes(_axis_ticks(v.tokens), autorange="reversed", row=1, col=i, constrain="domain",
                         scaleanchor="x" if i == 1 else f"x{i}", title="query (attending)" if i == 1 else None)
    fig.update_layout(coloraxis=dict(colorscale="Viridis", cmin=0, cmax=zmax, colorbar=dict(title="weight")),
                      height=_heatmap_height(views), margin=dict(t=60, b=10, l=10, r=10))
    fig.update_annotations(font_size=13)
    return fig


def difference_figure(tokens: Sequence[str], diff: np.ndarray, title: str) -> go.Figure:
    """Teacher minus student, red where the teacher attends more, blue where the student does."""
    lim = max(float(np.abs(diff).max()), 1e-6)
    hover = np.array([[f"{q} → {k}" for k in tokens] for q in tokens], dtype=object)
    fig = go.Figure(go.Heatmap(z=diff, colorscale="RdBu_r", zmin=-lim, zmax=lim, zmid=0, customdata=hover,
                               colorbar=dict(title="teacher − student"),
                               hovertemplate="%{customdata}<br>%{z:+.3f}<extra></extra>"))
    fig.update_xaxes(_axis_ticks(tokens), tickangle=-60, title="key")
    fig.update_yaxes(_axis_ticks(tokens), autorange="reversed", title="query")
    n = len(tokens)
    fig.update_layout(title=title, height=max(380, 16 * n + 160), width=max(480, 16 * n + 260),
                      margin=dict(t=50, b=10, l=10, r=10))
    return fig


def cls_figure(views: Sequence[AttentionView], names: Sequence[str], colors: Sequence[str]) -> go.Figure:
    """Bars of the [CLS] row: how much of its attention the classifier token puts on each token."""
    fig = go.Figure()
    for v, name, color in zip(views, names, colors):
        if v.cls_row is None:
            continue
        fig.add_trace(go.Bar(x=list(range(len(v.tokens))), y=v.cls_row, name=name, marker_color=color,
                             customdata=v.tokens, hovertemplate="%{customdata}<br>%{y:.3f}<extra>" + name + "</extra>"))
    tokens = views[0].tokens if views else []
    fig.update_xaxes(_axis_ticks(tokens), tickangle=-60)
    fig.update_layout(barmode="group", height=320, yaxis_title="[CLS] attention", margin=dict(t=40, b=10, l=10, r=10),
                      legend=TOP_LEGEND)
    return fig


def _heatmap_height(views: Sequence[AttentionView]) -> int:
    # Cells are square: a map a little less tall than its half of the wide layout (~450 px) fills its
    # width-limited box from the top, so the title stays on it. Long token labels below need a little more.
    n_chars = max((len(t) for v in views for t in v.tokens), default=5)
    return 440 + 6 * min(n_chars, 15)


def attention_png(views: Sequence[AttentionView], titles: Sequence[str], diff: bool = False) -> bytes:
    """The heatmaps as a PNG (seaborn, like the reports' figures); ``diff`` draws one signed map."""
    import seaborn as sns
    from matplotlib.figure import Figure

    n = max(len(v.tokens) for v in views)
    side = min(14.0, max(4.0, 0.28 * n + 2))
    fig = Figure(figsize=(side * len(views) + 1.5, side), dpi=110)
    axes = np.atleast_1d(fig.subplots(1, len(views)))
    vmax = max(float(np.abs(v.matrix).max()) for v in views)
    for i, (ax, v, title) in enumerate(zip(axes, views, titles)):
        kw = dict(cmap="RdBu_r", center=0, vmin=-vmax, vmax=vmax) if diff else dict(cmap="viridis", vmin=0, vmax=vmax)
        # One scale for all maps, so one colour bar, beside the last.
        sns.heatmap(v.matrix, ax=ax, xticklabels=v.tokens, yticklabels=v.tokens, square=True,
                    cbar=i == len(views) - 1, **kw)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("key")
        ax.set_ylabel("query")
        ax.tick_params(labelsize=max(5, 10 - n // 16))
    fig.tight_layout()
    return _png(fig)


def cls_png(views: Sequence[AttentionView], names: Sequence[str], colors: Sequence[str]) -> bytes:
    from matplotlib.figure import Figure

    tokens = views[0].tokens
    fig = Figure(figsize=(max(6.0, 0.3 * len(tokens) + 2), 3.5), dpi=110)
    ax = fig.subplots()
    shown = [(v, n, c) for v, n, c in zip(views, names, colors) if v.cls_row is not None]
    width = 0.8 / max(1, len(shown))
    for i, (v, name, color) in enumerate(shown):
        ax.bar(np.arange(len(v.cls_row)) + i * width, v.cls_row, width=width, color=color, label=name)
    ax.set_xticks(np.arange(len(tokens)) + width * (len(shown) - 1) / 2, tokens, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("[CLS] attention")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


# ============================================================================ training from the dashboard


def launch_training(preset: str = "quick") -> tuple[subprocess.Popen, Path]:
    """Start ``python -m distill_core train --preset PRESET`` in the background; returns it and its log file.

    The caller keeps the handle in ``st.session_state`` (it belongs to that user, not to a cache).
    """
    root = runs_dir()
    root.mkdir(parents=True, exist_ok=True)
    log = root / f".dashboard-train-{time.strftime('%Y%m%d-%H%M%S')}.log"
    return launch_in_background(["train", "--preset", preset], log), log


@dataclass
class TrainingProgress:
    stage: str
    fraction: float  # 0..1 of the optimizer steps of all models
    message: str


def _data_rows(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return max(0, sum(1 for _ in f) - 1)  # minus the header
    except OSError:
        return 0


def training_progress(run_dir: Path) -> TrainingProgress:
    """How far a run has got, from its status.json and the rows in its training CSVs.

    Expected steps per model are ``ceil(train rows / batch size) * epochs`` from config.json; before
    config.json exists (data loading) the fraction is 0.
    """
    run_dir = Path(run_dir)
    try:
        st_ = read_json(run_dir / STATUS_FILE)
    except RunError:
        st_ = {}
    stage = str(st_.get("stage") or "starting")
    status = st_.get("status", "running")
    try:
        cfg = read_json(run_dir / "config.json")
    except RunError:
        return TrainingProgress(stage, 0.0, f"{status}: {stage} (loading data)")
    rows = cfg.get("dataset_info", {}).get("rows", {}).get("train") or 0
    train = cfg.get("train", {})
    bs = max(1, int(train.get("batch_size") or 32))
    per_epoch = math.ceil(rows / bs) if rows else 0
    done = total = 0
    for kind in train.get("models", list(MODEL_KINDS)):
        epochs = train.get("epochs", 1.0)
        if kind != "teacher" and train.get("student_epochs"):
            epochs = train["student_epochs"]
        expected = math.ceil(per_epoch * float(epochs))
        total += expected
        done += min(expected, _data_rows(run_dir / f"{kind}_train.csv"))
    fraction = 1.0 if status == "complete" else (done / total if total else 0.0)
    return TrainingProgress(stage, min(1.0, fraction), f"{status}: stage {stage}, {done:,}/{total:,} optimizer steps")


def newest_run_since(t0: float) -> Path | None:
    """The newest run folder created at or after ``t0`` (epoch seconds), or None."""
    root = runs_dir()
    if not root.is_dir():
        return None
    cands = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.stat().st_ctime >= t0 - 1]
    return max(cands, key=lambda p: p.stat().st_ctime, default=None)
