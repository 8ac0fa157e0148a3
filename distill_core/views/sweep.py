"""The T/alpha sweep (``sweep/sweep.json``) as a table, a heatmap, a PNG and the text the CLI prints."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .common import png_bytes

METRICS = {"val_accuracy": "validation accuracy", "val_macro_f1": "validation macro-F1",
           "val_agreement": "agreement with the teacher (validation)"}


def sweep_table(sweep: dict[str, Any]) -> pd.DataFrame:
    """One row per cell: T, alpha, validation accuracy, macro-F1, agreement, its difference from the baseline cell
    with the 95% interval, training time; the baseline first."""
    rows = [{"Cell": "baseline (no teacher)" if c["alpha"] == 0 else f"T={c['temperature']:g}, alpha={c['alpha']:g}",
             "T": float("nan") if c["alpha"] == 0 else c["temperature"], "alpha": c["alpha"],
             "Validation accuracy": c["val_accuracy"], "Validation macro-F1": c["val_macro_f1"],
             "Agreement with teacher": c["val_agreement"], "vs baseline (points, 95% interval)": _vs_text(c),
             "Train time (s)": c.get("train_time_s")}
            for c in sweep.get("cells", [])]
    return pd.DataFrame(rows)


def _vs_text(cell: dict[str, Any]) -> str:
    d = cell.get("vs_baseline")
    if not d:
        return ""
    return f"{d['estimate']:+.2f} ({d['low']:+.2f} to {d['high']:+.2f})"


def headline(sweep: dict[str, Any]) -> str:
    """The metric the sweep chose on: the run's headline (accuracy, or macro-F1 on imbalanced classes)."""
    return sweep.get("metric", "accuracy")


def grid(sweep: dict[str, Any], metric: str = "val_accuracy") -> tuple[list[float], list[float], np.ndarray]:
    """(alphas (A,), temperatures (T,), values (A, T)) of the distilled cells; NaN where a cell is not done yet."""
    temps = sorted({float(t) for t in sweep.get("grid", {}).get("temperature", [])} |
                   {c["temperature"] for c in sweep.get("cells", []) if c["alpha"] > 0})
    alphas = sorted({float(a) for a in sweep.get("grid", {}).get("alpha", [])} |
                    {c["alpha"] for c in sweep.get("cells", []) if c["alpha"] > 0})
    z = np.full((len(alphas), len(temps)), np.nan)
    for c in sweep.get("cells", []):
        if c["alpha"] > 0:
            z[alphas.index(c["alpha"]), temps.index(c["temperature"])] = c[metric]
    return alphas, temps, z


def _baseline(sweep: dict[str, Any]) -> dict | None:
    return next((c for c in sweep.get("cells", []) if c["alpha"] == 0), None)


def heatmap_figure(sweep: dict[str, Any], metric: str = "val_accuracy") -> go.Figure:
    """The grid as a heatmap (T across, alpha down), each cell's value written in it, the best cell outlined.

    The colour scale is centred on the baseline's value, when there is one: blue cells beat the student trained
    without a teacher, red ones do not.
    """
    alphas, temps, z = grid(sweep, metric)
    base = _baseline(sweep)
    text = [[f"{v:.2%}" if metric != "val_agreement" and np.isfinite(v) else (f"{v:.3f}" if np.isfinite(v) else "")
             for v in row] for row in z]
    shade = z.copy()
    noise = noise_mask(sweep, metric, alphas, temps)
    if base is not None and noise is not None:  # a difference the interval cannot tell from 0 is drawn as the baseline
        shade[noise] = base[metric]
        text = [[t + ("<br>≈ baseline" if noise[i, j] and t else "") for j, t in enumerate(row)]
                for i, row in enumerate(text)]
    kw = dict(colorscale="RdBu", zmid=base[metric]) if base else dict(colorscale="Viridis")
    fig = go.Figure(go.Heatmap(z=shade, customdata=z, x=[f"T={t:g}" for t in temps], y=[f"alpha={a:g}" for a in alphas],
                               text=text, texttemplate="%{text}", colorbar=dict(title=METRICS[metric].split(" (")[0]),
                               hovertemplate="%{y}, %{x}<br>%{customdata:.4f}<extra></extra>", **kw))
    fig.update_xaxes(title_text="temperature T (softens the teacher's probabilities)")
    fig.update_yaxes(title_text="KD weight alpha")
    best = sweep.get("best")
    if best and best["alpha"] in alphas and best["temperature"] in temps:
        fig.add_shape(type="rect", xref="x", yref="y", line=dict(color="black", width=3),
                      x0=temps.index(best["temperature"]) - 0.5, x1=temps.index(best["temperature"]) + 0.5,
                      y0=alphas.index(best["alpha"]) - 0.5, y1=alphas.index(best["alpha"]) + 0.5)
    title = METRICS[metric] + (f"; baseline (no teacher) {base[metric]:.2%}" if base and metric != "val_agreement" else "")
    fig.update_layout(title=title, height=170 + 70 * len(alphas), margin=dict(t=50, b=10, l=10, r=10),
                      yaxis=dict(autorange="reversed"))
    return fig


def noise_mask(sweep: dict[str, Any], metric: str, alphas: list[float], temps: list[float]) -> np.ndarray | None:
    """(A, T) True where a distilled cell's difference from the baseline cell has a 95% interval that includes 0 (on
    the metric the sweep compared on); None when the sweep holds no intervals (a sweep file from before they were
    recorded) or ``metric`` is not the one compared."""
    compared = {"accuracy": "val_accuracy", "macro_f1": "val_macro_f1"}.get(headline(sweep))
    cells = [c for c in sweep.get("cells", []) if c["alpha"] > 0 and c.get("vs_baseline")]
    if metric != compared or not cells:
        return None
    mask = np.zeros((len(alphas), len(temps)), dtype=bool)
    for c in cells:
        d = c["vs_baseline"]
        mask[alphas.index(c["alpha"]), temps.index(c["temperature"])] = d["low"] <= 0 <= d["high"]
    return mask


def heatmap_png(sweep: dict[str, Any], metric: str = "val_accuracy") -> bytes:
    """``heatmap_figure`` drawn with matplotlib, for the PNG download."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    alphas, temps, z = grid(sweep, metric)
    base = _baseline(sweep)
    fig = Figure(figsize=(1.6 + 1.2 * len(temps), 1.2 + 0.8 * len(alphas)), dpi=120)
    ax = fig.subplots()
    if base:
        lim = max(np.nanmax(np.abs(z - base[metric])), 1e-6) if np.isfinite(z).any() else 1.0
        im = ax.imshow(z, cmap="RdBu", vmin=base[metric] - lim, vmax=base[metric] + lim)
    else:
        im = ax.imshow(z, cmap="viridis")
    for i in range(len(alphas)):
        for j in range(len(temps)):
            if np.isfinite(z[i, j]):
                ax.text(j, i, f"{z[i, j]:.3f}", ha="center", va="center", fontsize=8)
    best = sweep.get("best")
    if best and best["alpha"] in alphas and best["temperature"] in temps:
        ax.add_patch(Rectangle((temps.index(best["temperature"]) - 0.5, alphas.index(best["alpha"]) - 0.5), 1, 1,
                               fill=False, lw=3))
    ax.set_xticks(range(len(temps)), [f"T={t:g}" for t in temps])
    ax.set_yticks(range(len(alphas)), [f"alpha={a:g}" for a in alphas])
    ax.set_title(METRICS[metric] + (f" (baseline {base[metric]:.3f})" if base else ""), fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return png_bytes(fig)


def choice_sentence(sweep: dict[str, Any]) -> str:
    """The chosen cell, chosen on validation, and its test figure (measured once, after the choice)."""
    best, base = sweep.get("best"), _baseline(sweep)
    if not best:
        done = [c for c in sweep.get("cells", []) if c["alpha"] > 0]
        if done:
            return (f"{len(done)} distilled cell(s) finished; the best is chosen on validation, and its test figures "
                    "measured, once the sweep has run to its end (run it again to finish the rest).")
        return "No distilled cell finished yet."
    metric = headline(sweep)
    word = {"accuracy": "accuracy", "macro_f1": "macro-F1"}[metric]
    text = (f"Chosen on validation {word}: T={best['temperature']:g}, alpha={best['alpha']:g} (validation accuracy "
            f"{best['val_accuracy']:.2%}, macro-F1 {best['val_macro_f1']:.3f}")
    text += f"; the baseline without a teacher: {base['val_accuracy']:.2%}, {base['val_macro_f1']:.3f})." if base else ")."
    d = best.get("vs_baseline")
    if d:
        text += (f" Against the baseline: {_vs_text(best)} {word} points, "
                 + ("a measurable gain." if best.get("beats_baseline") else
                    "an interval that includes 0: no cell beats the baseline measurably on validation."))
    if best.get("test_accuracy") is not None:
        text += (f" Test figures, measured once after the choice: chosen cell {best['test_accuracy']:.2%} "
                 f"(macro-F1 {best['test_macro_f1']:.3f})")
        b = sweep.get("baseline") or {}
        text += (f", baseline cell {b['test_accuracy']:.2%} (macro-F1 {b['test_macro_f1']:.3f})."
                 if b.get("test_accuracy") is not None else ".")
    return text


def format_sweep(sweep: dict[str, Any]) -> str:
    """What ``sweep`` prints: every cell's validation figures, then the choice."""
    s = sweep.get("schedule", {})
    lines = [f"{sweep.get('run_id', '')}: {len(sweep.get('cells', []))} cells, each {s.get('epochs')} epoch(s) at lr "
             f"{s.get('learning_rate')}, batch {s.get('batch_size')}, seed {s.get('seed')}",
             f"{'cell':<26} {'val acc':>8} {'val F1':>8} {'agree':>7} {'time s':>7}  vs baseline, points (95% interval)"]
    for c in sorted(sweep.get("cells", []), key=lambda c: (c["alpha"] > 0, c["alpha"], c["temperature"])):
        name = "baseline (no teacher)" if c["alpha"] == 0 else f"T={c['temperature']:g}, alpha={c['alpha']:g}"
        lines.append(f"{name:<26} {c['val_accuracy']:>8.4f} {c['val_macro_f1']:>8.4f} {c['val_agreement']:>7.3f} "
                     f"{c.get('train_time_s') or 0:>7.0f}  {_vs_text(c)}")
    lines += ["", choice_sentence(sweep)]
    return "\n".join(lines)
