"""Disagreements page: where the teacher and a student part ways on the test set, and their confusion matrices.

    table = disagreement_table(preds, labels, kinds, student="student")   # one row per test text
    masks = filter_masks(preds, student="student")                        # filter name -> (N,) bool
    counts = filter_counts(masks)                                         # texts per filter
    shown = apply_filters(table, masks["lost"], true_classes, (0.0, 0.6), "student")
    cm = confusion_pair(preds, n_classes, student="student", rates=True)  # teacher, student, difference (C, C)

``preds`` is ``predictions.parquet``: text, label, label_name, ``<model>_pred``, ``<model>_probs``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..config import MODEL_KINDS, MODEL_TITLES, SHORT_TITLES
from ..evidence.verdict import kl_rows
from ..errors import InputError, RunError
from .common import png_bytes
from .text import display_text

EPS = 1e-12
# Filter name -> what a reader sees; the student is the one the page compares with the teacher.
FILTERS = {
    "all": "All test texts",
    "disagree": "Student disagrees with the teacher",
    "lost": "Lost: student wrong where the teacher is right",
    "fixed": "Fixed: student right where the teacher is wrong",
    "both_wrong": "Both wrong",
}
SHORT_FILTERS = {"all": "All test texts", "disagree": "Disagree with the teacher", "lost": "Lost by the student",
                 "fixed": "Fixed by the student", "both_wrong": "Both wrong"}
ROW = "Row"  # the test row's position in predictions.parquet, kept through filtering and sorting


def check_predictions(preds: pd.DataFrame, kinds: Sequence[str]) -> None:
    """Raise RunError naming the missing columns when ``preds`` lacks what this page reads."""
    need = ["text", "label"] + [f"{k}_{part}" for k in kinds for part in ("pred", "probs")]
    missing = [c for c in need if c not in preds]
    if missing:
        raise RunError(f"predictions.parquet lacks the columns {', '.join(missing)}; re-create it with "
                       "`python -m distill_core evaluate RUN`")


def probs_of(preds: pd.DataFrame, kind: str) -> np.ndarray:
    """(N, C) one model's test probabilities."""
    return np.stack(preds[f"{kind}_probs"].to_numpy()).astype(np.float64)


def confidence_column(kind: str) -> str:
    return f"{SHORT_TITLES[kind]} confidence"


def kl_column(student: str) -> str:
    return f"KL(teacher ‖ {SHORT_TITLES[student].lower()})"


def disagreement_table(preds: pd.DataFrame, labels: Sequence[str], kinds: Sequence[str], student: str) -> pd.DataFrame:
    """One row per test text: the text, its true label, each model's prediction and confidence, and the KL
    from the teacher's distribution to the student's (how far the student is from mimicking the teacher).

    The ``Row`` column is the text's position in ``predictions.parquet``.
    """
    kinds = [k for k in MODEL_KINDS if k in kinds]
    check_predictions(preds, kinds)
    names = list(labels)
    table = pd.DataFrame({ROW: np.arange(len(preds)), "Text": [display_text(t) for t in preds["text"]],
                          "True label": [names[int(i)] for i in preds["label"]]})
    for kind in kinds:
        p = probs_of(preds, kind)
        table[SHORT_TITLES[kind]] = [names[int(i)] for i in p.argmax(-1)]
        table[confidence_column(kind)] = p.max(-1)
    if "teacher" in kinds and student in kinds and student != "teacher":
        table[kl_column(student)] = kl_rows(probs_of(preds, "teacher"), probs_of(preds, student))
    return table


def filter_masks(preds: pd.DataFrame, student: str) -> dict[str, np.ndarray]:
    """Filter name (``FILTERS``) -> (N,) which test texts it keeps, for the teacher against ``student``."""
    check_predictions(preds, ["teacher", student])
    y = preds["label"].to_numpy()
    t = probs_of(preds, "teacher").argmax(-1)
    s = probs_of(preds, student).argmax(-1)
    t_ok, s_ok = t == y, s == y
    return {"all": np.ones(len(y), dtype=bool), "disagree": t != s, "lost": t_ok & ~s_ok, "fixed": ~t_ok & s_ok,
            "both_wrong": ~t_ok & ~s_ok}


def filter_counts(masks: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per filter: how many test texts it keeps, and their share of the test set."""
    n = len(next(iter(masks.values())))
    return pd.DataFrame({"Filter": [FILTERS[k] for k in masks], "Texts": [int(m.sum()) for m in masks.values()],
                         "Share of test set": [float(m.mean()) if n else 0.0 for m in masks.values()]})


def apply_filters(table: pd.DataFrame, mask: np.ndarray, true_classes: Sequence[str] | None = None,
                  confidence: tuple[float, float] = (0.0, 1.0), confidence_of: str = "student") -> pd.DataFrame:
    """The rows of ``table`` that ``mask`` keeps, of the given true classes, with ``confidence_of``'s confidence
    in ``[lo, hi]``.

    Raises:
        InputError: a confidence range that is empty (lo > hi).
    """
    lo, hi = confidence
    if lo > hi:
        raise InputError(f"The confidence range {lo:.2f}..{hi:.2f} is empty: its lower end must not be above its upper end.")
    keep = np.asarray(mask, dtype=bool).copy()
    if true_classes is not None:
        keep &= table["True label"].isin(list(true_classes)).to_numpy()
    conf = table[confidence_column(confidence_of)].to_numpy()
    keep &= (conf >= lo - 1e-9) & (conf <= hi + 1e-9)
    return table[keep].reset_index(drop=True)


def sort_table(table: pd.DataFrame, by: str, descending: bool = True) -> pd.DataFrame:
    if by not in table:
        raise InputError(f"No column {by!r} to sort by; choose one of {list(table.columns)}.")
    return table.sort_values(by, ascending=not descending, kind="stable").reset_index(drop=True)


def text_probabilities(preds: pd.DataFrame, row: int, kinds: Sequence[str]) -> dict[str, np.ndarray]:
    """Model kind -> (C,) its probabilities for test row ``row``."""
    if not 0 <= int(row) < len(preds):
        raise InputError(f"Test row {row} does not exist (the test set has rows 0..{len(preds) - 1}).")
    return {k: np.asarray(preds[f"{k}_probs"].iloc[int(row)], dtype=np.float64) for k in kinds}


def probabilities_table(labels: Sequence[str], probs: dict[str, np.ndarray]) -> pd.DataFrame:
    """Class x model probabilities of one text (the CSV behind its probability chart)."""
    return pd.DataFrame({SHORT_TITLES[k]: p for k, p in probs.items()}, index=pd.Index(list(labels), name="class"))


def probabilities_png(labels: Sequence[str], probs: dict[str, np.ndarray], colors: dict[str, str]) -> bytes:
    """Grouped bars of one text's class probabilities per model, as a PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(5.0, 1.4 * len(labels) + 2), 3.2), dpi=110)
    ax = fig.subplots()
    width = 0.8 / max(1, len(probs))
    x = np.arange(len(labels))
    for i, (kind, p) in enumerate(probs.items()):
        ax.bar(x + i * width, p, width=width, color=colors.get(kind), label=SHORT_TITLES[kind])
    ax.set_xticks(x + width * (len(probs) - 1) / 2, list(labels))
    ax.set(ylim=(0, 1), ylabel="probability")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


# ----------------------------------------------------------------------------- confusion matrices


def confusion(labels: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) counts: rows are the true class, columns the predicted one."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(labels, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return m


def row_rates(m: np.ndarray) -> np.ndarray:
    """(C, C) each row divided by its total: the share of each true class predicted as each class."""
    sums = m.sum(1, keepdims=True)
    return np.divide(m, sums, out=np.zeros(m.shape, dtype=np.float64), where=sums > 0)


def confusion_pair(preds: pd.DataFrame, n_classes: int, student: str, rates: bool = False) -> dict[str, np.ndarray]:
    """``{"teacher", student, "difference"}``: (C, C) counts (or row rates) and student minus teacher."""
    check_predictions(preds, ["teacher", student])
    y = preds["label"].to_numpy()
    out = {k: confusion(y, probs_of(preds, k).argmax(-1), n_classes) for k in ("teacher", student)}
    if rates:
        out = {k: row_rates(m) for k, m in out.items()}
    out["difference"] = out[student] - out["teacher"]
    return out


def confusion_titles(student: str, rates: bool) -> list[str]:
    unit = "rates" if rates else "counts"
    return [f"Teacher ({unit})", f"{SHORT_TITLES[student]} ({unit})", f"{SHORT_TITLES[student]} − teacher"]


def confusion_figure(matrices: dict[str, np.ndarray], labels: Sequence[str], student: str, rates: bool) -> go.Figure:
    """Teacher, student and their difference side by side; red cells where the student predicts more often."""
    titles = confusion_titles(student, rates)
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.09)
    fmt = ".0%" if rates else "d"
    signed = "+.0%" if rates else "+d"
    base_max = max(float(matrices["teacher"].max()), float(matrices[student].max()), 1e-9)
    diff = matrices["difference"]
    lim = max(float(np.abs(diff).max()), 1e-9)
    for i, (key, scale) in enumerate((("teacher", "Blues"), (student, "Blues"), ("difference", "RdBu_r")), start=1):
        z = matrices[key]
        kw = dict(zmin=-lim, zmax=lim, zmid=0) if key == "difference" else dict(zmin=0, zmax=base_max)
        fig.add_trace(go.Heatmap(z=z, x=list(labels), y=list(labels), colorscale=scale, showscale=False,
                                 texttemplate=f"%{{z:{signed if key == 'difference' else fmt}}}",
                                 hovertemplate=f"true %{{y}}<br>predicted %{{x}}<br>%{{z:{fmt if key != 'difference' else signed}}}"
                                               "<extra></extra>", **kw), 1, i)
        fig.update_xaxes(title="predicted", row=1, col=i)
        fig.update_yaxes(autorange="reversed", row=1, col=i, title="true" if i == 1 else None,
                         showticklabels=i == 1)
    fig.update_layout(height=380, margin=dict(t=40, b=10, l=10, r=10))
    fig.update_annotations(font_size=13)
    return fig


def confusion_png(matrices: dict[str, np.ndarray], labels: Sequence[str], student: str, rates: bool) -> bytes:
    import seaborn as sns
    from matplotlib.figure import Figure

    titles = confusion_titles(student, rates)
    fig = Figure(figsize=(15, 4.6), dpi=110)
    axes = fig.subplots(1, 3)
    base_max = max(float(matrices["teacher"].max()), float(matrices[student].max()), 1e-9)
    lim = max(float(np.abs(matrices["difference"]).max()), 1e-9)
    for ax, key, title in zip(axes, ("teacher", student, "difference"), titles):
        z = matrices[key]
        kw = (dict(cmap="RdBu_r", center=0, vmin=-lim, vmax=lim) if key == "difference"
              else dict(cmap="Blues", vmin=0, vmax=base_max))
        sns.heatmap(z, ax=ax, annot=True, fmt=".0%" if rates else "d", cbar=False, square=True,
                    xticklabels=list(labels), yticklabels=list(labels), **kw)
        ax.set(title=title, xlabel="predicted", ylabel="true")
    fig.tight_layout()
    return png_bytes(fig)


def confusion_long(matrices: dict[str, np.ndarray], labels: Sequence[str], student: str) -> pd.DataFrame:
    """The three matrices as one table: a row per (true, predicted) class pair (the CSV behind the figure)."""
    c = len(labels)
    true, pred = np.meshgrid(np.arange(c), np.arange(c), indexing="ij")
    return pd.DataFrame({"true": [labels[i] for i in true.ravel()], "predicted": [labels[j] for j in pred.ravel()],
                         "teacher": matrices["teacher"].ravel(), SHORT_TITLES[student]: matrices[student].ravel(),
                         "difference": matrices["difference"].ravel()})


def filter_caption(name: str, n: int, student: str) -> str:
    """One line under the table saying what the rows are."""
    s = MODEL_TITLES[student].lower()
    return {
        "all": f"All {n} test texts.",
        "disagree": f"{n} texts where the {s} predicts another class than the teacher.",
        "lost": f"{n} texts the teacher gets right and the {s} gets wrong: what distillation did not keep.",
        "fixed": f"{n} texts the {s} gets right and the teacher gets wrong.",
        "both_wrong": f"{n} texts both get wrong (often label noise or genuinely ambiguous texts).",
    }[name]
