"""Did distillation pay off? The evidence in results.json as tables and a figure (Overview page).

    comparison_table(results)     # one row per pair of models: accuracy / macro-F1 difference with its interval
    comparison_figure(results)    # the same as intervals around 0, the distilled-vs-baseline row first
    fidelity_table(results)       # each student against the teacher: agreement, KL, JS
    seeds_table(results)          # test accuracy and macro-F1 across seeds, mean and spread
    checks_table(checks)          # the user's ship checks, passed or failed with their evidence
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
import plotly.graph_objects as go

from ..config import SHORT_TITLES
from ..evidence.verdict import Check
from .common import png_bytes

PAIRS = {"student_vs_baseline": ("student", "baseline"), "teacher_vs_student": ("teacher", "student"),
         "teacher_vs_baseline": ("teacher", "baseline")}
VERDICT_STYLE = {"helps": "success", "no measurable difference": "info", "hurts": "warning"}


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
    for metric, color, offset in (("Accuracy", "#1f4e8c", -0.12), ("Macro-F1", "#e8702a", 0.12)):
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
    for metric, color, offset in (("Accuracy", "#1f4e8c", -0.12), ("Macro-F1", "#e8702a", 0.12)):
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
    """The ship checks: each one's state, value, threshold and evidence."""
    return pd.DataFrame([{"Check": c.name, "Result": "not measured" if c.passed is None else ("pass" if c.passed else "fail"),
                          "Value": c.value, "Threshold": c.threshold, "Evidence": c.evidence} for c in checks])
