"""Calibration page: each model's metrics before and after temperature scaling, reliability diagrams, and
the note on an under-confident distilled student.

    table = metrics_table(report)                                # one row per model (report: calibration.json)
    bins = reliability_table(preds, kinds, temps)                # long: one row per model and confidence bin
    fig = reliability_figure(bins); png = reliability_png(bins)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..evidence.calibration import N_BINS, apply_temperature, expected_calibration_error, logits_from_probs, reliability_bins
from ..config import MODEL_COLORS, MODEL_KINDS, MODEL_TITLES, SHORT_TITLES
from ..errors import RunError
from .common import png_bytes

UNDERCONFIDENT_T = 0.95  # a fitted temperature below this sharpens the model noticeably


def test_probs(preds: pd.DataFrame, kind: str, temperature: float = 1.0) -> np.ndarray:
    """(N, C) one model's test probabilities from ``predictions.parquet``, optionally temperature-scaled."""
    col = f"{kind}_probs"
    if col not in preds:
        raise RunError(f"predictions.parquet has no {col} column: re-create it with `python -m distill_core "
                       "evaluate RUN`")
    p = np.stack(preds[col].to_numpy()).astype(np.float64)  # (N, C)
    return p if temperature == 1.0 else apply_temperature(logits_from_probs(p), temperature)


def metrics_table(report: dict) -> pd.DataFrame:
    """One row per model: fitted temperature, and ECE, Brier score, NLL and mean confidence before and after."""
    rows = []
    for kind in [k for k in MODEL_KINDS if k in report.get("models", {})]:
        m = report["models"][kind]
        b, a = m["before"], m["after"]
        rows.append({"Model": MODEL_TITLES[kind], "Temperature": m["temperature"], "Accuracy": b["accuracy"],
                     "ECE": b["ece"], "ECE, scaled": a["ece"], "Brier": b["brier"], "Brier, scaled": a["brier"],
                     "NLL": b["nll"], "NLL, scaled": a["nll"], "Mean confidence": b["mean_confidence"],
                     "Mean confidence, scaled": a["mean_confidence"]})
    return pd.DataFrame(rows)


def reliability_table(preds: pd.DataFrame, kinds: Sequence[str], temperatures: dict[str, float] | None = None,
                      n_bins: int = N_BINS) -> pd.DataFrame:
    """Long table: one row per model and confidence bin (count, mean confidence, accuracy, gap) and each
    model's ECE; scaled by each model's temperature when ``temperatures`` is given."""
    labels = preds["label"].to_numpy()
    parts = []
    for kind in kinds:
        t = float((temperatures or {}).get(kind, 1.0))
        p = test_probs(preds, kind, t)
        bins = reliability_bins(p, labels, n_bins)
        bins.insert(0, "model", kind)
        bins.insert(1, "temperature", t)
        bins["ece"] = expected_calibration_error(p, labels, n_bins)
        parts.append(bins)
    return pd.concat(parts, ignore_index=True)


FEW_TEXTS = 10  # a bin with fewer texts is drawn faint: its accuracy is a few coin flips


def reliability_figure(table: pd.DataFrame) -> go.Figure:
    """Per model: accuracy of each confidence bin against the diagonal (top), and how many texts fall in it
    (bottom). Bars under the diagonal: over-confident; above it: under-confident."""
    kinds = list(dict.fromkeys(table["model"]))
    top_count = float(table["count"].max()) if len(table) else 1.0
    titles = [f"{SHORT_TITLES[k]} · ECE {table.loc[table['model'] == k, 'ece'].iloc[0]:.3f}" for k in kinds]
    fig = make_subplots(rows=2, cols=len(kinds), row_heights=[0.72, 0.28], shared_xaxes=True,
                        vertical_spacing=0.06, horizontal_spacing=0.06, subplot_titles=titles)
    for i, kind in enumerate(kinds, start=1):
        b = table[table["model"] == kind]
        centres = ((b["lower"] + b["upper"]) / 2).to_numpy()
        width = float((b["upper"] - b["lower"]).iloc[0])
        custom = np.stack([b["count"], b["confidence"]], -1)
        # A bin of a handful of texts says little: drawn faint, so one lucky text is not read as a full bar.
        opacity = np.where(b["count"].to_numpy() < FEW_TEXTS, 0.25, 1.0)
        fig.add_trace(go.Bar(x=centres, y=b["accuracy"], width=width, marker_color=MODEL_COLORS[kind],
                             marker_opacity=opacity,
                             marker_line=dict(color="white", width=1), name=SHORT_TITLES[kind], showlegend=False,
                             customdata=custom, hovertemplate="confidence %{customdata[1]:.2f}<br>accuracy "
                             "%{y:.2f}<br>%{customdata[0]} texts<extra></extra>"), 1, i)
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="#444", dash="dash", width=1),
                                 name="perfectly calibrated", showlegend=i == 1, hoverinfo="skip"), 1, i)
        fig.add_trace(go.Bar(x=centres, y=b["count"], width=width, marker_color=MODEL_COLORS[kind], opacity=0.55,
                             showlegend=False, hovertemplate="%{y} texts<extra></extra>"), 2, i)
        fig.update_xaxes(range=[0, 1], row=1, col=i)
        fig.update_xaxes(range=[0, 1], title="confidence", row=2, col=i)
        fig.update_yaxes(range=[0, 1], row=1, col=i, title="accuracy" if i == 1 else None)
        # One range for every model's counts (powers of 10 only), so the panels compare at a glance.
        fig.update_yaxes(type="log", dtick=1, range=[-0.1, np.log10(max(1, top_count)) + 0.15], row=2, col=i,
                         title="texts" if i == 1 else None)
    fig.update_layout(height=470, margin=dict(t=50, b=10, l=10, r=10), bargap=0,
                      legend=dict(orientation="h", yanchor="bottom", y=1.06, x=0))
    fig.update_annotations(font_size=12)
    return fig


def reliability_png(table: pd.DataFrame) -> bytes:
    """The reliability diagrams as a PNG (matplotlib)."""
    from matplotlib.figure import Figure

    kinds = list(dict.fromkeys(table["model"]))
    fig = Figure(figsize=(4.2 * len(kinds), 5.0), dpi=110)
    axes = fig.subplots(2, len(kinds), sharex=True, gridspec_kw={"height_ratios": [3, 1]}, squeeze=False)
    for i, kind in enumerate(kinds):
        b = table[table["model"] == kind]
        centres = ((b["lower"] + b["upper"]) / 2).to_numpy()
        width = float((b["upper"] - b["lower"]).iloc[0])
        top, bottom = axes[0, i], axes[1, i]
        few = (b["count"] < FEW_TEXTS).to_numpy()
        top.bar(centres[~few], b["accuracy"].fillna(0)[~few], width=width, color=MODEL_COLORS[kind], edgecolor="white")
        top.bar(centres[few], b["accuracy"].fillna(0)[few], width=width, color=MODEL_COLORS[kind], alpha=0.25,
                edgecolor="white")
        top.plot([0, 1], [0, 1], "--", color="#444", lw=1, label="perfectly calibrated")
        top.set(xlim=(0, 1), ylim=(0, 1), title=f"{SHORT_TITLES[kind]} · ECE {b['ece'].iloc[0]:.3f}")
        bottom.bar(centres, b["count"], width=width, color=MODEL_COLORS[kind], alpha=0.55)
        bottom.set_yscale("log")
        bottom.set_ylim(0.8, max(1.0, float(table["count"].max())) * 1.4)  # one range for every model
        bottom.set_xlabel("confidence")
        if i == 0:
            top.set_ylabel("accuracy")
            bottom.set_ylabel("texts")
            top.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return png_bytes(fig)


def underconfidence_note(report: dict, kd_temperature: float, kind: str = "student") -> str | None:
    """A sentence when the distilled student, trained at ``T > 1``, is under-confident at ``T = 1``; else None."""
    m = report.get("models", {}).get(kind)
    if not m or kd_temperature <= 1.0 or m["temperature"] >= UNDERCONFIDENT_T:
        return None
    b = m["before"]
    return (f"The {MODEL_TITLES[kind].lower()} is **under-confident**: it is right on {b['accuracy']:.1%} of the test "
            f"texts but its mean confidence is {b['mean_confidence']:.1%}, and its best temperature on the validation "
            f"split is {m['temperature']:.2f} (below 1, i.e. its probabilities should be sharpened). This is common "
            f"for a student distilled at T = {kd_temperature:g}: it learned to match the teacher's softened "
            "distribution, and keeps some of that softness when used at T = 1. Use its calibrated confidences "
            "(temperature-scaled) when you threshold on confidence.")
