"""Did distillation pay off? The evidence in results.json as tables and a figure (Overview page).

    comparison_table(results)     # one row per pair of models: accuracy / macro-F1 difference with its interval
    comparison_figure(results)    # the same as intervals around 0, the distilled-vs-baseline row first
    fidelity_table(results)       # each student against the teacher: agreement, KL, JS
    seeds_table(results)          # test accuracy and macro-F1 across seeds, mean and spread
    checks_table(checks)          # the user's ship checks, passed or failed with their evidence
    budget_table(results)         # what each model got: its validation curve, best step, step cap
    budget_figure(results)        # those curves, the best step of each marked
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
import plotly.graph_objects as go

from ..config import SHORT_TITLES
from ..evidence.checks import Check
from .common import png_bytes

PAIRS = {"student_vs_baseline": ("student", "baseline"), "teacher_vs_student": ("teacher", "student"),
         "teacher_vs_baseline": ("teacher", "baseline")}
VERDICT_STYLE = {"helps": "success", "no measurable difference": "info", "hurts": "warning", "inconclusive": "warning"}
CURVE_COLORS = {"teacher": "#1f4e8c", "student": "#e8702a", "baseline": "#8c8c8c"}
# Metrics in colours of their own (dark grey, teal): teacher blue and student orange mean models on every page.
METRIC_STYLE = (("Accuracy", "#3d3d3d", -0.12), ("Macro-F1", "#2a9d8f", 0.12))


def pair_title(key: str) -> str:
    a, b = PAIRS[key]
    return f"{SHORT_TITLES[a]} − {SHORT_TITLES[b].lower()}"


def comparison_table(results: dict[str, Any]) -> pd.DataFrame:
    """Paired differences (points) with their intervals and McNemar's p, one row per pair of models."""
    rows = []
    for key, c in (results.get("comparisons") or {}).items():
        if key not in PAIRS:
            continue
        acc, f1, m = c["accuracy_diff_points"], c["macro_f1_diff_points"], c.get("mcnemar") or {}
        rows.append({"Comparison": pair_title(key), "Accuracy difference (points)": acc["estimate"],
                     "Accuracy low": acc["low"], "Accuracy high": acc["high"],
                     "Macro-F1 difference (points)": f1["estimate"], "Macro-F1 low": f1["low"], "Macro-F1 high": f1["high"],
                     "McNemar p": m.get("p_value"), "Test texts": c.get("n"), "key": key})
    order = list(PAIRS)
    return pd.DataFrame(rows).sort_values("key", key=lambda s: s.map(order.index)).reset_index(drop=True) if rows \
        else pd.DataFrame()


def comparison_figure(table: pd.DataFrame) -> go.Figure:
    """Each difference as a point with its interval, a line at 0: an interval crossing 0 is no measurable difference."""
    fig = go.Figure()
    for metric, color, offset in METRIC_STYLE:
        est = table[f"{metric} difference (points)"]
        fig.add_trace(go.Scatter(
            x=est, y=[i + offset for i in range(len(table))], mode="markers", name=metric, marker=dict(size=10, color=color),
            error_x=dict(type="data", symmetric=False, array=table[f"{metric} high"] - est,
                         arrayminus=est - table[f"{metric} low"], thickness=2),
            customdata=table[["Comparison", f"{metric} low", f"{metric} high"]],
            hovertemplate="%{customdata[0]}<br>%{x:+.2f} points (%{customdata[1]:+.2f} to %{customdata[2]:+.2f})"
                          "<extra>" + metric + "</extra>"))
    fig.add_vline(x=0, line_dash="dash", line_color="#888")
    fig.update_yaxes(tickmode="array", tickvals=list(range(len(table))), ticktext=list(table["Comparison"]),
                     autorange="reversed")
    fig.update_layout(height=110 + 70 * len(table), xaxis_title="difference in test points (95% interval)",
                      margin=dict(t=30, b=10, l=10, r=10), legend=dict(orientation="h", y=1.12, x=0))
    return fig


def comparison_png(table: pd.DataFrame) -> bytes:
    """``comparison_figure`` drawn with matplotlib, for the PNG download."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 1.2 + 0.8 * len(table)), dpi=120)
    ax = fig.subplots()
    for metric, color, offset in METRIC_STYLE:
        est = table[f"{metric} difference (points)"]
        ax.errorbar(est, [i + offset for i in range(len(table))], fmt="o", color=color, label=metric, capsize=3,
                    xerr=[est - table[f"{metric} low"], table[f"{metric} high"] - est])
    ax.axvline(0, color="#888", ls="--")
    ax.set_yticks(range(len(table)), list(table["Comparison"]))
    ax.invert_yaxis()
    ax.set_xlabel("difference in test points (95% interval)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


def fidelity_table(results: dict[str, Any]) -> pd.DataFrame:
    """Each student against the teacher on the test set; per-class agreement as extra columns."""
    rows = []
    for kind, m in (results.get("models") or {}).items():
        fid = m.get("fidelity")
        if not fid:
            continue
        row = {"Model": SHORT_TITLES.get(kind, kind), "Agreement": fid["agreement"],
               "Mean KL(teacher ‖ model), nats": fid["mean_kl"], "Mean JS, nats": fid["mean_js"]}
        row.update({f"Agreement: {c}": v for c, v in (fid.get("per_class_agreement") or {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def seeds_table(results: dict[str, Any]) -> pd.DataFrame:
    """Test accuracy and macro-F1 of each student across seeds: each seed, then mean ± sd."""
    rows = []
    for kind, entry in (results.get("seeds") or {}).items():
        for r in entry.get("runs", []):
            rows.append({"Model": SHORT_TITLES.get(kind, kind), "Seed": str(r["seed"]), "Test accuracy": r["accuracy"],
                         "Macro-F1": r["macro_f1"]})
        acc, f1 = entry.get("accuracy") or {}, entry.get("macro_f1") or {}
        if acc:
            rows.append({"Model": SHORT_TITLES.get(kind, kind), "Seed": f"mean ± sd ({acc['n']} seeds)",
                         "Test accuracy": acc["mean"], "Macro-F1": f1.get("mean"),
                         "sd accuracy": acc["std"], "sd macro-F1": f1.get("std")})
    return pd.DataFrame(rows)


def checks_table(checks: Sequence[Check]) -> pd.DataFrame:
    """The ship checks: each one's state (pass, fail, inconclusive, not measured), value and 95% interval in its unit,
    threshold and evidence."""
    return pd.DataFrame([{"Check": c.name, "Result": c.state, "Value": c.value, "Unit": c.unit,
                          "Interval low": c.interval[0] if c.interval else None,
                          "Interval high": c.interval[1] if c.interval else None,
                          "Threshold": c.threshold, "Evidence": c.evidence} for c in checks])


def _curves(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: m["training"]["validation"] for k, m in (results.get("models") or {}).items()
            if (m.get("training") or {}).get("validation")}


def budget_table(results: dict[str, Any]) -> pd.DataFrame:
    """One row per evaluation of each model: step, validation value of the headline metric, whether it is the best
    step, and the model's step cap; empty for a run trained before validation curves were recorded."""
    rows = [{"Model": SHORT_TITLES[k], "Step": s, "Validation value": v, "Best step": s == c["best_step"],
             "Step cap": c["cap_steps"], "Stopped early": c["stopped_early"], "Still improving": c["still_improving"]}
            for k, c in _curves(results).items() for s, v in c["evaluations"]]
    return pd.DataFrame(rows)


def budget_figure(results: dict[str, Any]) -> go.Figure | None:
    """Each model's validation curve of the run's headline metric, its best step marked and its cap dotted: a curve
    still rising at its right end is a model cut short."""
    curves = _curves(results)
    if not curves:
        return None
    metric = {"accuracy": "accuracy", "macro_f1": "macro-F1"}[results.get("headline_metric", "accuracy")]
    fig = go.Figure()
    for k, c in curves.items():
        steps, values = zip(*c["evaluations"])
        name = SHORT_TITLES[k] + (" (still improving)" if c["still_improving"] else "")
        fig.add_trace(go.Scatter(x=steps, y=values, mode="lines+markers", name=name,
                                 line=dict(color=CURVE_COLORS.get(k), dash="dot" if c["still_improving"] else "solid")))
        fig.add_trace(go.Scatter(x=[c["best_step"]], y=[c["best_value"]], mode="markers", showlegend=False,
                                 marker=dict(symbol="star", size=14, color=CURVE_COLORS.get(k)),
                                 hovertemplate=f"{SHORT_TITLES[k]}: best at step %{{x}} of at most {c['cap_steps']}"
                                               "<extra></extra>"))
    fig.update_layout(title=f"Validation {metric} while training (star: the step kept)", height=340,
                      xaxis_title="optimizer step", yaxis_title=f"validation {metric}", margin=dict(t=50, b=10, l=10, r=10),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def budget_png(results: dict[str, Any]) -> bytes:
    """``budget_figure`` drawn with matplotlib, for the PNG download."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.4), dpi=120)
    ax = fig.subplots()
    for k, c in _curves(results).items():
        steps, values = zip(*c["evaluations"])
        ax.plot(steps, values, marker="o", ms=3, ls=":" if c["still_improving"] else "-", color=CURVE_COLORS.get(k),
                label=SHORT_TITLES[k] + (" (still improving)" if c["still_improving"] else ""))
        ax.plot([c["best_step"]], [c["best_value"]], marker="*", ms=12, color=CURVE_COLORS.get(k))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("validation " + results.get("headline_metric", "accuracy").replace("_", "-"))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)
