"""Layer similarity page: linear CKA between every teacher layer and every student layer, as heatmaps with the
student's layer map marked.

    fig = cka_figure(sim, "Distilled student")      # [CLS] and mean-pooled side by side
    png = cka_png(sim, "Distilled student"); table = cka_table(sim)

``sim`` is a ``similarity.LayerSimilarity``: (Lt + 1, Ls + 1) matrices, index 0 the embedding output.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..evidence.similarity import POOLINGS, LayerSimilarity
from .common import png_bytes


def layer_names(n: int) -> list[str]:
    """Axis labels for n = L + 1 hidden states: 'embeddings', 'layer 1', ..."""
    return ["embeddings"] + [f"layer {i}" for i in range(1, n)]


def cka_table(sim: LayerSimilarity) -> pd.DataFrame:
    """Long table: one row per pooling, teacher layer and student layer, with CKA and whether the student layer
    was initialised from that teacher layer."""
    mapped = set(sim.mapped)
    rows = []
    for pooling in POOLINGS:
        m = sim.matrix(pooling)
        t_names, s_names = layer_names(m.shape[0]), layer_names(m.shape[1])
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                rows.append({"pooling": pooling, "teacher": t_names[i], "student": s_names[j], "cka": float(m[i, j]),
                             "initialised_from": (i, j) in mapped})
    return pd.DataFrame(rows)


def best_match(sim: LayerSimilarity, pooling: str) -> list[int]:
    """For each student layer (axis index), the teacher axis index it is most similar to."""
    return [int(i) for i in np.nanargmax(sim.matrix(pooling), axis=0)]


def cka_figure(sim: LayerSimilarity, student_title: str) -> go.Figure:
    """Heatmaps (teacher layers down, student layers across), CKA 0..1; squares mark the layer map."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=[f"{POOLINGS[p]} · {sim.n_texts} texts" for p in POOLINGS])
    for col, pooling in enumerate(POOLINGS, start=1):
        m = sim.matrix(pooling)
        t_names, s_names = layer_names(m.shape[0]), layer_names(m.shape[1])
        fig.add_trace(go.Heatmap(z=m, x=s_names, y=t_names, coloraxis="coloraxis", texttemplate="%{z:.2f}",
                                 hovertemplate="teacher %{y}<br>student %{x}<br>CKA %{z:.3f}<extra></extra>"), 1, col)
        if sim.mapped:
            fig.add_trace(go.Scatter(x=[s_names[j] for _, j in sim.mapped], y=[t_names[i] for i, _ in sim.mapped],
                                     mode="markers", marker=dict(symbol="square-open", size=34, color="#e8702a",
                                                                 line=dict(width=3)),
                                     name="initialised from", showlegend=col == 1, hoverinfo="skip"), 1, col)
        fig.update_xaxes(title=student_title, row=1, col=col)
        fig.update_yaxes(autorange="reversed", title="Teacher" if col == 1 else None, row=1, col=col)
    fig.update_layout(coloraxis=dict(colorscale="Viridis", cmin=0, cmax=1, colorbar=dict(title="CKA")),
                      height=420, margin=dict(t=60, b=10, l=10, r=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.08, x=0))
    fig.update_annotations(font_size=13)
    return fig


def cka_png(sim: LayerSimilarity, student_title: str) -> bytes:
    import seaborn as sns
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    fig = Figure(figsize=(11, 4.6), dpi=110)
    axes = fig.subplots(1, 2)
    for k, (ax, pooling) in enumerate(zip(axes, POOLINGS)):
        m = sim.matrix(pooling)
        sns.heatmap(m, ax=ax, vmin=0, vmax=1, cmap="viridis", annot=True, fmt=".2f", cbar=k == 1,
                    xticklabels=layer_names(m.shape[1]), yticklabels=layer_names(m.shape[0]))
        for i, j in sim.mapped:
            ax.add_patch(Rectangle((j, i), 1, 1, fill=False, ec="#e8702a", lw=3))
        ax.set(title=f"{POOLINGS[pooling]} · {sim.n_texts} texts", xlabel=student_title, ylabel="Teacher")
    fig.tight_layout()
    return png_bytes(fig)
