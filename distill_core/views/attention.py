"""Attention maps: one text's tensor ``(layers, heads, T, T)`` formatted apart from rendering (as bertviz does).

    view = attention_view(result, layer=-1, head=None)   # last layer, mean over heads: (T, T)
    fig = attention_pair_figure([teacher_view, student_view], titles)
    pv = pooling_view(teacher_result, lstm_pooling)      # an LSTM student: its pooling weights beside [CLS]'s row
    fig = pooling_figure(pv, names)

A wrong shape raises a ``ValueError`` that says how to get the expected layout; a choice of the reader's that
leaves nothing to draw raises ``InputError``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import InputError
from ..ship.inference import AttentionResult, PoolingResult
from .common import TOP_LEGEND, png_bytes


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
        raise InputError("Nothing left to show: the text is only special tokens and punctuation. "
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
        raise InputError("The two models split this text into different tokens (their tokenizers differ, or the "
                         "tokens shown differ), so their attention maps have no common cells to subtract; compare the "
                         "two maps side by side above.")
    return a.matrix - b.matrix


def view_title(model_title: str, view: AttentionView, labels: Sequence[str]) -> str:
    """'Teacher · layer 6/6, mean of heads · Sports 87%'."""
    pred = ""
    if view.probs is not None and len(labels):
        i = int(np.argmax(view.probs))
        pred = f" · {labels[i]} {view.probs[i]:.0%}"
    return f"{model_title} · {view.describe()}{pred}"


def _axis_ticks(tokens: Sequence[str]) -> dict:
    # Tokens repeat ("the" twice); positions keep them apart on a categorical axis.
    return dict(tickmode="array", tickvals=list(range(len(tokens))), ticktext=list(tokens), tickfont=dict(size=10))


STACK_TOKENS = 30  # above this many tokens the two maps are drawn one under the other, each twice as large


def attention_pair_figure(views: Sequence[AttentionView], titles: Sequence[str]) -> go.Figure:
    """Heatmaps side by side on one colour scale (0 .. the largest weight shown), token labels on both axes."""
    zmax = max(float(v.matrix.max()) for v in views) if views else 1.0
    n = max((len(v.tokens) for v in views), default=0)
    stacked = n > STACK_TOKENS  # long texts: one map under the other, each the page's full width
    # Titles on two lines (model, then layer and prediction), so that two of them side by side never overlap.
    titles = [t.replace(" · ", "<br>", 1) for t in titles]
    fig = make_subplots(rows=len(views) if stacked else 1, cols=1 if stacked else len(views), subplot_titles=titles,
                        horizontal_spacing=0.12, vertical_spacing=0.08)
    for i, v in enumerate(views, start=1):
        row, col = (i, 1) if stacked else (1, i)
        hover = np.array([[f"{q} → {k}" for k in v.tokens] for q in v.tokens], dtype=object)
        fig.add_trace(go.Heatmap(z=v.matrix, coloraxis="coloraxis", customdata=hover,
                                 hovertemplate="%{customdata}<br>%{z:.3f}<extra></extra>"), row, col)
        fig.update_xaxes(_axis_ticks(v.tokens), tickangle=-60, row=row, col=col, title="key (attended to)",
                         constrain="domain")
        # Square cells: each y axis is scaled to its x axis (plotly names them x, x2, ...).
        fig.update_yaxes(_axis_ticks(v.tokens), autorange="reversed", row=row, col=col, constrain="domain",
                         scaleanchor="x" if i == 1 else f"x{i}", title="query (attending)" if i == 1 or stacked else None)
    height = len(views) * min(1000, 16 * n + 220) if stacked else _heatmap_height(views)
    fig.update_layout(coloraxis=dict(colorscale="Viridis", cmin=0, cmax=zmax, colorbar=dict(title="weight")),
                      height=height, margin=dict(t=80, b=10, l=10, r=10))
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
    return png_bytes(fig)


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
    return png_bytes(fig)


# ----------------------------------------------------------------------------- the LSTM student's pooling weights


@dataclass
class PoolingView:
    """An LSTM student's pooling weights beside the teacher's [CLS] row (last layer, mean of heads), token by token."""

    tokens: list[str]  # (T',) shown tokens
    teacher: np.ndarray | None  # (T',) the teacher's [CLS] attention row; None without a [CLS] token
    pooling: np.ndarray  # (T',) the student's attention-pooling weights
    teacher_probs: np.ndarray  # (C,)
    student_probs: np.ndarray  # (C,)
    n_capped: int  # tokens left out by the cap (after hiding)
    hidden: bool = False  # special tokens and punctuation hidden, both rows renormalised


def pooling_view(teacher: AttentionResult, pooling: PoolingResult, hide: bool = False,
                 max_tokens: int | None = None) -> PoolingView:
    """Line up a BiLSTM student's pooling weights (T,) with the teacher's [CLS] row of its last layer, mean of heads.

    Both say how much of each token goes into the one vector the classifier reads. ``hide`` drops special tokens
    and punctuation and renormalises both rows to sum to 1; ``max_tokens`` keeps the first tokens.

    Raises:
        InputError: the two models tokenise the text differently, or nothing is left to show.
    """
    if list(teacher.tokens) != list(pooling.tokens):
        raise InputError("The teacher and the LSTM student tokenise this text differently, so their weights cannot be "
                         "set side by side token by token; train the student with the teacher's tokenizer.")
    weights = np.asarray(pooling.weights, dtype=np.float64)
    if weights.shape != (len(pooling.tokens),):
        raise ValueError(f"pooling weights must be (T,) = ({len(pooling.tokens)},), got {weights.shape}; pass "
                         "PoolingResult.weights of one text")
    t_view = attention_view(teacher, layer=-1, head=None, hide=hide)
    keep = keep_mask(pooling.tokens, hide)
    if not keep.any():
        raise InputError("Nothing left to show: the text is only special tokens and punctuation. "
                         "Turn off 'hide [CLS]/[SEP]/punctuation'.")
    pool = weights[keep]
    if hide and pool.sum() > 0:
        pool = pool / pool.sum()
    tokens, cls = list(t_view.tokens), t_view.cls_row
    n_capped = 0
    if max_tokens is not None and len(tokens) > max_tokens:
        n_capped = len(tokens) - max_tokens
        tokens, pool = tokens[:max_tokens], pool[:max_tokens]
        cls = cls[:max_tokens] if cls is not None else None
    return PoolingView(tokens=tokens, teacher=cls, pooling=pool, teacher_probs=teacher.probs,
                       student_probs=pooling.probs, n_capped=n_capped, hidden=hide)


def pooling_rows(view: PoolingView, names: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    """(row title, (T',) weights) to draw, the teacher's first; ``names``: the teacher's, the student's."""
    rows = [(f"{names[0]}: [CLS] attention", view.teacher)] if view.teacher is not None else []
    return rows + [(f"{names[1]}: pooling weight", view.pooling)]


def pooling_figure(view: PoolingView, names: Sequence[str]) -> go.Figure:
    """A heat strip, one row per model and one column per token, on one colour scale from 0."""
    rows = pooling_rows(view, names)
    z = np.stack([w for _, w in rows])  # (R, T')
    hover = np.array([[f"{t}" for t in view.tokens] for _ in rows], dtype=object)
    fig = go.Figure(go.Heatmap(z=z, x=list(range(len(view.tokens))), y=[title for title, _ in rows],
                               colorscale="Viridis", zmin=0, zmax=max(float(z.max()), 1e-6), customdata=hover,
                               colorbar=dict(title="weight"), xgap=1, ygap=2,
                               hovertemplate="%{y}<br>%{customdata}: %{z:.3f}<extra></extra>"))
    fig.update_xaxes(_axis_ticks(view.tokens), tickangle=-60)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=150 + 60 * len(rows), margin=dict(t=20, b=10, l=10, r=10))
    return fig


def pooling_table(view: PoolingView, names: Sequence[str]) -> pd.DataFrame:
    """The strip's data: one row per token shown, one column per model (the figure's CSV)."""
    table = pd.DataFrame({"position": range(len(view.tokens)), "token": view.tokens})
    for title, w in pooling_rows(view, names):
        table[title] = w
    return table


def pooling_png(view: PoolingView, names: Sequence[str]) -> bytes:
    """The heat strip as a PNG (seaborn, like the heatmaps)."""
    import seaborn as sns
    from matplotlib.figure import Figure

    rows = pooling_rows(view, names)
    z = np.stack([w for _, w in rows])  # (R, T')
    fig = Figure(figsize=(max(6.0, 0.32 * len(view.tokens) + 3), 1.2 + 0.6 * len(rows)), dpi=110)
    ax = fig.subplots()
    sns.heatmap(z, ax=ax, xticklabels=view.tokens, yticklabels=[t for t, _ in rows], cmap="viridis", vmin=0,
                cbar_kws={"label": "weight"}, linewidths=0.5)
    ax.tick_params(axis="x", labelrotation=60, labelsize=8)
    ax.tick_params(axis="y", labelrotation=0, labelsize=8)
    fig.tight_layout()
    return png_bytes(fig)
