"""Training curves: per-step CSV frames in, plotly figures and a PNG out."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..config import MODEL_COLORS, SHORT_TITLES
from .common import TOP_LEGEND, png_bytes

X_AXES = {"step": "Step", "examples_seen": "Examples seen", "elapsed_s": "Wall time (s)"}


def style(key: str) -> tuple[str, str]:
    """Colour and legend title of a model's curves; ``student_seed43`` is the distilled student's colour, its seed named."""
    kind, _, seed = key.partition("_seed")
    title = SHORT_TITLES.get(kind, kind)
    return MODEL_COLORS.get(kind, "#555"), f"{title} (seed {seed})" if seed else title


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
        color, title = style(kind)
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
    fig = go.Figure([go.Scatter(x=df[x], y=df["learning_rate"], mode="lines", name=style(k)[1],
                                line=dict(color=style(k)[0]))
                     for k, df in train.items() if "learning_rate" in df and not df.empty])
    fig.update_layout(height=320, xaxis_title=X_AXES[x], yaxis=dict(title="learning rate", exponentformat="e"),
                      margin=dict(t=40, b=10, l=10, r=10), legend=TOP_LEGEND)
    return fig


def kd_components_figure(student: pd.DataFrame, x: str = "step", smoothing: float = 0.6) -> go.Figure:
    """The distilled student's loss split into its KD (soft targets) and CE (hard labels) terms, and the
    hidden-state and teacher's-prediction terms when the run used them."""
    _check_x(x)
    # Colours of their own: the models' colours (teacher blue, student orange) mean models on every page.
    parts = [("kd_loss", "KD loss (T² · KL to the teacher)", "#c2185b"), ("ce_loss", "CE loss (true labels)", "#2a9d8f"),
             ("hidden_loss", "hidden-state loss", "#6a994e"),
             ("hard_loss", "CE to the teacher's predicted class", "#9b5de5"), ("train_loss", "total", "#444")]
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
        color, title = style(kind)
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
    return png_bytes(fig)
