"""Explanations page: integrated-gradients token highlights for teacher and student side by side, attention
rollout, and how far their explanations agree over a sample of test texts.

    html = highlight_html(attr)                              # the text, each token shaded by its attribution
    png = attribution_png([t_attr, s_attr], titles)          # the same highlights as a PNG
    table = attribution_table({"teacher": t, "student": s})  # one row per token (the CSV)
    fig = rollout_figure(tokens, {"teacher": row, ...})      # [CLS] rollout per token
    fig = agreement_figure(sample)                           # distribution of rank correlation and top-k overlap

Attributions come in as ``attributions.Attribution``; nothing here computes gradients.
"""

from __future__ import annotations

import html
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..evidence.attributions import SPECIAL, Attribution, content_mask
from ..config import MODEL_COLORS, SHORT_TITLES
from ..errors import InputError
from .common import TOP_LEGEND, png_bytes

FOR_RGB = (31, 119, 180)  # blue: evidence for the explained class
AGAINST_RGB = (214, 39, 40)  # red: evidence against it


def display_pieces(tokens: Sequence[str]) -> list[tuple[int, str]]:
    """(index, text to draw) of the text's own tokens: ``##`` continuations glued to the word before."""
    out = []
    for i, t in enumerate(tokens):
        if t in SPECIAL:
            continue
        out.append((i, t[2:] if t.startswith("##") else (" " + t if out else t)))
    return out


def _shade(score: float, lim: float) -> tuple[tuple[int, int, int], float]:
    strength = min(1.0, abs(score) / lim) if lim > 0 else 0.0
    return (FOR_RGB if score >= 0 else AGAINST_RGB), strength


def highlight_html(attr: Attribution) -> str:
    """The text with each token's background shaded by its attribution: blue for the explained class, red
    against it, deeper for more (scaled to this model's largest ``|score|``). Hover a token for its score."""
    lim = float(np.abs(attr.scores).max()) if len(attr.scores) else 0.0
    spans = []
    for i, piece in display_pieces(attr.tokens):
        (r, g, b), a = _shade(float(attr.scores[i]), lim)
        lead = " " if piece.startswith(" ") else ""
        word = html.escape(piece.strip())
        spans.append(f'{lead}<span title="{html.escape(attr.tokens[i])}: {attr.scores[i]:+.3f}" '
                     f'style="background: rgba({r},{g},{b},{0.85 * a:.2f}); padding: 1px 1px; border-radius: 3px; '
                     f'color: {"white" if a > 0.6 else "inherit"}">{word}</span>')
    return f'<div style="line-height: 1.9; font-size: 0.98rem">{"".join(spans)}</div>'


def attribution_title(attr: Attribution, model_title: str) -> str:
    """'Teacher · explains Sports (predicted Sports, 87%)'."""
    pred = attr.predicted
    return (f"{model_title} · explains {attr.target_label} "
            f"(predicts {attr.labels[pred]}, {attr.probs[pred]:.0%})")


def completeness_caption(attr: Attribution) -> str:
    """The completeness check of one explanation, in words."""
    total = attr.logit - attr.baseline_logit
    rel = abs(attr.delta) / max(abs(total), 1e-9)
    return (f"Scores sum to {attr.scores.sum():+.3f}; the logit moved {total:+.3f} from the blank input. "
            f"Convergence delta {attr.delta:+.4f} ({rel:.1%}) · {attr.n_steps} steps · {attr.seconds:.2f} s")


def attribution_table(attrs: dict[str, Attribution]) -> pd.DataFrame:
    """One row per token: its position, the token, and each model's attribution (the CSV behind the highlights)."""
    first = next(iter(attrs.values()))
    table = pd.DataFrame({"position": np.arange(len(first.tokens)), "token": first.tokens})
    for kind, a in attrs.items():
        if list(a.tokens) != list(first.tokens):
            raise InputError("The models tokenise this text differently, so their attributions cannot share one table.")
        table[f"{SHORT_TITLES.get(kind, kind)} ({a.target_label})"] = a.scores
    return table


def attribution_png(attrs: Sequence[Attribution], titles: Sequence[str], chars_per_line: int = 64) -> bytes:
    """The highlights of each model side by side as a PNG (monospace, so the layout needs no text measuring)."""
    from matplotlib.figure import Figure

    layouts = []
    for a in attrs:
        x, line, placed = 0, 0, []
        for i, piece in display_pieces(a.tokens):
            if x + len(piece) > chars_per_line and x > 0:
                x, line, piece = 0, line + 1, piece.lstrip()
            placed.append((i, piece, x, line))
            x += len(piece)
        layouts.append((placed, line + 1))
    n_lines = max(n for _, n in layouts)
    fig = Figure(figsize=(6.6 * len(attrs), 0.8 + 0.28 * n_lines), dpi=120)
    axes = np.atleast_1d(fig.subplots(1, len(attrs)))
    for ax, a, title, (placed, _) in zip(axes, attrs, titles, layouts):
        lim = float(np.abs(a.scores).max()) if len(a.scores) else 0.0
        ax.set_xlim(0, chars_per_line)
        ax.set_ylim(n_lines - 0.3, -0.7)
        ax.axis("off")
        ax.set_title(title, fontsize=9, loc="left")
        for i, piece, x, line in placed:
            lead = len(piece) - len(piece.lstrip())
            (r, g, b), s = _shade(float(a.scores[i]), lim)
            ax.text(x + lead, line, piece.strip(), family="monospace", fontsize=9, va="center", ha="left",
                    color="white" if s > 0.6 else "black",
                    bbox=dict(boxstyle="square,pad=0.12", fc=(r / 255, g / 255, b / 255, 0.85 * s), ec="none"))
    fig.tight_layout()
    return png_bytes(fig)


# ----------------------------------------------------------------------------- attention rollout


def rollout_scores(tokens: Sequence[str], rollout: np.ndarray) -> np.ndarray:
    """(T',) the [CLS] row of a rollout over the text's own tokens, renormalised to sum to 1."""
    keep = content_mask(tokens)
    row = np.asarray(rollout, dtype=np.float64)[0][keep]
    return row / row.sum() if row.sum() > 0 else row


def rollout_table(tokens: Sequence[str], rows: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per text token: each model's (column named by its kind) share of [CLS]'s rolled-out attention."""
    kept = [t for t in tokens if t not in SPECIAL]
    return pd.DataFrame({"token": kept, **rows})


def rollout_figure(table: pd.DataFrame) -> go.Figure:
    """Grouped bars: how much of what [CLS] finally holds comes from each token, per model."""
    x = list(range(len(table)))
    kinds = [c for c in table.columns if c != "token"]
    fig = go.Figure([go.Bar(x=x, y=table[k], name=SHORT_TITLES[k], customdata=table["token"], marker_color=MODEL_COLORS[k],
                            hovertemplate="%{customdata}<br>%{y:.3f}<extra>" + SHORT_TITLES[k] + "</extra>")
                     for k in kinds])
    fig.update_xaxes(tickmode="array", tickvals=x, ticktext=list(table["token"]), tickangle=-60, tickfont=dict(size=10))
    fig.update_layout(barmode="group", height=320, yaxis_title="share of [CLS]", legend=TOP_LEGEND,
                      margin=dict(t=40, b=10, l=10, r=10))
    return fig


def rollout_png(table: pd.DataFrame) -> bytes:
    from matplotlib.figure import Figure

    kinds = [c for c in table.columns if c != "token"]
    fig = Figure(figsize=(max(6.0, 0.3 * len(table) + 2), 3.5), dpi=110)
    ax = fig.subplots()
    width = 0.8 / max(1, len(kinds))
    for i, k in enumerate(kinds):
        ax.bar(np.arange(len(table)) + i * width, table[k], width=width, color=MODEL_COLORS[k], label=SHORT_TITLES[k])
    ax.set_xticks(np.arange(len(table)) + width * (len(kinds) - 1) / 2, list(table["token"]), rotation=60,
                  ha="right", fontsize=8)
    ax.set_ylabel("share of [CLS]")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


# ----------------------------------------------------------------------------- agreement over a sample


def agreement_summary(sample: pd.DataFrame) -> dict[str, float]:
    """Median rank correlation and top-k overlap over a sample, overall and where the student agrees."""
    agree = sample[sample["student_agrees"]]
    return {"n": len(sample), "median_spearman": float(sample["spearman"].median()),
            "median_top_k_overlap": float(sample["top_k_overlap"].median()),
            "median_spearman_when_agreeing": float(agree["spearman"].median()) if len(agree) else float("nan"),
            "share_agreeing": float(sample["student_agrees"].mean()) if len(sample) else float("nan")}


def agreement_figure(sample: pd.DataFrame, student: str) -> go.Figure:
    """Histograms of the rank correlation and the top-k overlap between teacher and student explanations,
    split by whether the student predicts the teacher's class."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=["Spearman rank correlation of token attributions",
                                        f"Top-{int(sample['k'].max()) if len(sample) else 0} token overlap"])
    groups = ((True, f"{SHORT_TITLES[student]} agrees with the teacher", MODEL_COLORS[student]),
              (False, "…disagrees", "#b22222"))
    for agrees, name, color in groups:
        part = sample[sample["student_agrees"] == agrees]
        if part.empty:
            continue
        fig.add_trace(go.Histogram(x=part["spearman"], xbins=dict(start=-1, end=1.0001, size=0.1), name=name,
                                   marker_color=color, legendgroup=name), 1, 1)
        fig.add_trace(go.Histogram(x=part["top_k_overlap"], xbins=dict(start=-0.05, end=1.05, size=0.1), name=name,
                                   marker_color=color, legendgroup=name, showlegend=False), 1, 2)
    med = sample["spearman"].median() if len(sample) else float("nan")
    if np.isfinite(med):
        fig.add_vline(x=float(med), line_dash="dash", line_color="#333", row=1, col=1,
                      annotation_text=f"median {med:.2f}", annotation_position="top left")
    fig.update_xaxes(range=[-1, 1], title="ρ", row=1, col=1)
    fig.update_xaxes(range=[-0.05, 1.05], title="share of top tokens shared", row=1, col=2)
    fig.update_yaxes(title="texts", row=1, col=1)
    fig.update_layout(barmode="stack", height=380, margin=dict(t=40, b=10, l=10, r=10),
                      legend=dict(orientation="h", yanchor="top", y=-0.22, x=0))  # below: the titles hold the top
    fig.update_annotations(font_size=12)
    return fig


def agreement_png(sample: pd.DataFrame, student: str) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6), dpi=110)
    left, right = fig.subplots(1, 2)
    parts = [(sample[sample["student_agrees"]], f"{SHORT_TITLES[student]} agrees", MODEL_COLORS[student]),
             (sample[~sample["student_agrees"]], "disagrees", "#b22222")]
    parts = [p for p in parts if len(p[0])]
    left.hist([p[0]["spearman"].dropna() for p in parts], bins=np.linspace(-1, 1, 21), stacked=True,
              color=[p[2] for p in parts], label=[p[1] for p in parts])
    right.hist([p[0]["top_k_overlap"].dropna() for p in parts], bins=np.linspace(-0.05, 1.05, 12), stacked=True,
               color=[p[2] for p in parts], label=[p[1] for p in parts])
    med = sample["spearman"].median()
    if np.isfinite(med):
        left.axvline(med, ls="--", color="#333", lw=1)
    left.set(title=f"Spearman ρ of attributions (median {med:.2f})", xlabel="ρ", ylabel="texts")
    right.set(title="Top-k token overlap", xlabel="share of top tokens shared")
    left.legend(fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)
