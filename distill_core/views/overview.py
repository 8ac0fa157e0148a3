"""Overview: the teacher and its students on the test set, from ``results.json`` (and ``bench.json``)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..bench.report import latency_p50
from ..config import MODEL_COLORS, MODEL_KINDS, MODEL_TITLES, SHORT_TITLES
from ..errors import RunError
from ..evidence.verdict import imbalance_ratio
from ..runs import RunInfo, expected_models, model_problem
from .common import TOP_LEGEND, png_bytes


def missing_results_advice(run: RunInfo) -> str:
    """What to do about a run that has no readable results.json, one that works for this run.

    ``evaluate`` recomputes the results only when every model the run set out to train is whole (it refuses a
    damaged run), so it is advised only then. Otherwise: re-train the run, or, when its teacher is whole, train the
    missing models beside it (``--models`` with ``--teacher-from``, which makes a new run).
    """
    head = f"Run `{run.run_id}` has no readable results.json ({run.error or 'not evaluated'})."
    broken = {k: p for k in expected_models(run.config) if (p := model_problem(run.path, k))}
    if not broken:
        return f"{head} Its models are whole: re-create the results with `python -m distill_core evaluate {run.run_id}`."
    retrain = ("re-train it with the `train` command it was started with (its settings are under *Run configuration* "
               "below)")
    head = f"{head} It cannot be evaluated: {'; '.join(broken.values())}."
    if "teacher" in broken:
        return f"{head} Fix: {retrain}."
    return (f"{head} Fix: train the missing models beside its teacher, as a new run: `python -m distill_core train "
            f"--dataset {run.dataset} --models {','.join(broken)} --teacher-from {run.run_id}` (plus the other flags "
            f"it was trained with), or {retrain}.")


def overview_table(results: dict, bench_data: dict | None = None, architectures: dict | None = None) -> pd.DataFrame:
    """One row per model: test quality, size, and (for students) how much of the teacher they keep.

    Args:
        results: ``results.json`` of a run.
        bench_data: ``bench.json`` or None; adds latency, speed-up and throughput columns.
        architectures: ``config.json``'s ``architectures`` or None; when a model was trained with LoRA, adds
            ``Trainable parameters`` (what the optimizer updated) beside ``Parameters``.

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
            "Model": MODEL_TITLES.get(kind, kind) + (" (given, not trained here)" if m.get("given") else ""),
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
    arch = {k: a for k, a in (architectures or {}).items() if isinstance(a, dict)} if isinstance(architectures, dict) else {}
    if any(a.get("lora") for a in arch.values()):
        table.insert(table.columns.get_loc("Parameters") + 1, "Trainable parameters",
                     [arch.get(k, {}).get("trainable_parameters") for k in table.index])
    if bench_data:
        table = _with_bench(table, bench_data, t_size)
    return table


def lora_note(architectures: dict | None) -> str | None:
    """How many parameters each LoRA-trained model updated, in words; None when no model used LoRA."""
    parts = []
    for kind, a in (architectures if isinstance(architectures, dict) else {}).items():
        if not isinstance(a, dict) or not a.get("lora") or not a.get("parameters") or a.get("trainable_parameters") is None:
            continue
        lora = a["lora"]
        parts.append(f"{SHORT_TITLES.get(kind, kind)} {a['trainable_parameters']:,} of {a['parameters']:,} "
                     f"({a['trainable_parameters'] / a['parameters']:.1%}; r={lora.get('r')}, alpha={lora.get('alpha'):g}, "
                     f"dropout={lora.get('dropout'):g})")
    if not parts:
        return None
    return ("Trained with LoRA, parameters updated: " + "; ".join(parts)
            + ". The adapters are merged into the saved weights, so each model keeps its full parameter count.")


def _size(m: dict) -> float | None:
    """The model's weights file in bytes: the one size every page and the bench quote (the folder adds the config
    and the tokenizer, the same for every model of a family)."""
    return m.get("size_bytes") or m.get("dir_size_bytes")


def _retention(m: dict, teacher: dict) -> float | None:
    if m.get("accuracy_retention") is not None:
        return 100.0 * m["accuracy_retention"]
    if m.get("accuracy") is not None and teacher.get("accuracy"):
        return 100.0 * m["accuracy"] / teacher["accuracy"]
    return None


def _with_bench(table: pd.DataFrame, bench_data: dict, t_size: float | None) -> pd.DataFrame:
    """Add bench columns; the int8 student the benchmark quantised becomes an extra row."""
    bmodels = bench_data.get("models") or {}
    t_lat = latency_p50(bmodels.get("teacher", {}))
    if "student_int8" in bmodels and "student_int8" not in table.index:
        q = bmodels["student_int8"]
        size = q.get("size_bytes")
        table.loc["student_int8", ["Model", "Test accuracy", "Macro-F1", "Parameters", "Size on disk (MB)"]] = [
            f"{MODEL_TITLES['student_int8']} (bench)", q.get("accuracy"), q.get("macro_f1"), q.get("parameters"),
            size / 1e6 if size else None]
        if size and t_size:
            table.loc["student_int8", "Size (% of teacher)"] = 100.0 * size / t_size
        t_acc = table.loc["teacher", "Test accuracy"] if "teacher" in table.index else None
        if q.get("accuracy") is not None and t_acc:
            table.loc["student_int8", "Accuracy retention (% of teacher)"] = 100.0 * q["accuracy"] / t_acc
    lat = {k: latency_p50(v) for k, v in bmodels.items() if isinstance(v, dict)}
    table["Latency p50 (ms)"] = [lat.get(k) for k in table.index]
    table["Speed-up vs teacher"] = [t_lat / lat[k] if t_lat and lat.get(k) else None for k in table.index]
    table["Throughput (texts/s)"] = [(bmodels.get(k) or {}).get("throughput_texts_per_s") for k in table.index]
    return table


# The headline metric's column in ``overview_table`` and its name in words.
HEADLINE_COLUMNS = {"accuracy": ("Test accuracy", "accuracy"), "macro_f1": ("Macro-F1", "macro-F1")}


def headline_of(results: dict) -> str:
    """The metric the run leads with (``evidence.headline_metric``, saved by ``evaluate``): ``accuracy`` or
    ``macro_f1``; ``accuracy`` for results written before the choice was recorded."""
    metric = results.get("headline_metric")
    return metric if metric in HEADLINE_COLUMNS else "accuracy"


def headline_note(results: dict) -> str | None:
    """Why the Overview leads with macro-F1, in one sentence; None when it leads with accuracy."""
    if headline_of(results) != "macro_f1":
        return None
    counts = results.get("train_label_counts") or {}
    ratio = imbalance_ratio(list(counts.values())) if counts else None
    how = (f" (the largest training class has {ratio:.0f}× the rows of the smallest)" if ratio and math.isfinite(ratio)
           else "")
    return (f"Macro-F1 leads here because the classes are imbalanced{how}: accuracy rewards always predicting the "
            "majority class, macro-F1 weighs every class alike.")


def per_class_table(results: dict, class_weights: dict | None = None) -> pd.DataFrame:
    """Precision, recall and F1 of every model on every class, with the class's test rows (support), its training
    rows and its cross-entropy weight when the run recorded them: one row per class and model, classes in label
    order, so the rare classes show beside the common ones.

    Args:
        results: ``results.json`` of a run (each model's ``per_class``).
        class_weights: ``config.json``'s ``class_weights`` (class name -> weight) or None.
    """
    counts = results.get("train_label_counts") or {}
    models = results.get("models") or {}
    kinds = [k for k in MODEL_KINDS if k in models] + [k for k in models if k not in MODEL_KINDS]
    names = results.get("label_names") or list(next(iter(models.values()), {}).get("per_class") or {})
    rows = []
    for name in names:
        for kind in kinds:
            pc = (models[kind].get("per_class") or {}).get(name)
            if not pc:
                continue
            row = {"Class": name, "Model": SHORT_TITLES.get(kind, kind), "Precision": pc.get("precision"),
                   "Recall": pc.get("recall"), "F1": pc.get("f1-score"), "Test rows": pc.get("support")}
            if counts:
                row["Training rows"] = counts.get(name)
            if class_weights:
                row["Class weight"] = class_weights.get(name)
            rows.append(row)
    return pd.DataFrame(rows)


def per_class_png(f1: pd.DataFrame) -> bytes:
    """``per_class_figure`` drawn with matplotlib, for the PNG download."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(5.0, 1.4 * len(f1.index)), 3.6), dpi=120)
    ax = fig.subplots()
    colors = {SHORT_TITLES[k]: c for k, c in MODEL_COLORS.items()}
    width = 0.8 / max(1, len(f1.columns))
    for i, col in enumerate(f1.columns):
        x = [j + (i - (len(f1.columns) - 1) / 2) * width for j in range(len(f1.index))]
        ax.bar(x, f1[col].fillna(0), width, label=col, color=colors.get(col))
    ax.set_xticks(range(len(f1.index)), [str(c) for c in f1.index])
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


def per_class_f1(results: dict) -> pd.DataFrame:
    """F1 per class (rows) and model (columns, display titles)."""
    out = {}
    for kind, m in (results.get("models") or {}).items():
        pc = m.get("per_class") or {}
        out[SHORT_TITLES.get(kind, kind)] = {name: v.get("f1-score") for name, v in pc.items()}
    df = pd.DataFrame(out)
    names = results.get("label_names")
    return df.reindex(names) if names else df


METRIC_GREY = "#6b6b6b"  # a metric in a legend, never a model's colour


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
                             textposition="none", showlegend=False,  # two labels of 90% side by side overlap: hover
                             hovertemplate="%{x}<br>" + metric + " %{y:.2%}<extra></extra>"), 1, 1)
        # The legend says which bar is which metric in a neutral grey: model colours stay the models'.
        fig.add_trace(go.Bar(x=[None], y=[None], name=metric, marker_color=METRIC_GREY, opacity=opacity), 1, 1)
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
