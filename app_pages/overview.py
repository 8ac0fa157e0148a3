"""Overview: the teacher, the distilled student and the baseline student on the test set, side by side.

Is the student good enough to ship? Accuracy kept (% of the teacher), size kept, per-class F1, and the
speed figures when the run has been benchmarked (``python -m distill_core bench RUN``).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from distill_core import app
from distill_core.config import MODEL_KINDS, MODEL_TITLES, ShipConfig
from distill_core.errors import RunError
from distill_core.bench.report import SPEEDUP_DEFINITION
from distill_core.evidence.checks import (FAIL, INCONCLUSIVE, NOT_ENOUGH, NOT_MEASURED, NOT_READY, PASS, READY, decision,
                                          ship_checks, threshold_words, with_unit)
from distill_core.fingerprints import Standing, standing
from distill_core.views import evidence as ev
from distill_core.views import overview as ov

PERCENT_COLUMNS = ("Test accuracy", "Agreement with teacher")  # fractions in the table, % on screen


def _compact(n: float) -> str:
    """22.7M, 204.7k, 3,204: parameter counts short, small ones whole."""
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e4 else f"{n:,.0f}"


DISPLAY_FORMATS = {"Test accuracy": "{:.1f}%", "Macro-F1": "{:.3f}", "Agreement with teacher": "{:.1f}%",
                   "Accuracy retention (% of teacher)": "{:.1f}%", "Parameters": _compact,
                   "Trainable parameters": _compact, "Size on disk (MB)": "{:.1f}", "Size (% of teacher)": "{:.0f}%",
                   "Latency p50 (ms)": "{:.1f}", "Speed-up vs teacher": "{:.2f}×"}
COLUMN_FORMATS = {
    "Test accuracy": st.column_config.NumberColumn(format="%.1f%%"),
    "Macro-F1": st.column_config.NumberColumn(format="%.3f"),
    "Parameters": st.column_config.NumberColumn(format="compact"),
    "Trainable parameters": st.column_config.NumberColumn("Trainable", format="compact",
                                                          help="Parameters the optimizer updated (LoRA: adapters and head)"),
    "Size on disk (MB)": st.column_config.NumberColumn("Size (MB)", format="%.1f",
                                                       help="The weights file (model.safetensors), in MB of 10⁶ bytes: "
                                                            "the size the Performance page shows too"),
    "Accuracy retention (% of teacher)": st.column_config.NumberColumn("Accuracy retention", format="%.1f%%",
                                                                      help="Test accuracy as a share of the teacher's"),
    "Size (% of teacher)": st.column_config.NumberColumn("Size vs teacher", format="%.0f%%"),
    "Agreement with teacher": st.column_config.NumberColumn(
        "Agrees with teacher", format="%.1f%%", help="Test examples where the model predicts what the teacher predicts"),
    "Train time (s)": st.column_config.NumberColumn("Train (s)", format="%.0f"),
    "Latency p50 (ms)": st.column_config.NumberColumn("p50 latency (ms)", format="%.1f",
                                                     help="Median-length text, batch of one (bench.json)"),
    "Speed-up vs teacher": st.column_config.NumberColumn("Speed-up", format="%.2f×", help="Teacher latency / this model's"),
    "Throughput (texts/s)": st.column_config.NumberColumn(format="%.0f"),
}


def headline_ui(table, metric: str = "accuracy") -> None:
    """The answer first, in the run's headline metric (macro-F1 on imbalanced classes, else accuracy): how much of
    the teacher the distilled student keeps, at what size."""
    if "student" not in table.index or "teacher" not in table.index:
        return
    column, words = ov.HEADLINE_COLUMNS[metric]
    s, t = table.loc["student"], table.loc["teacher"]
    if s[[column, "Size (% of teacher)"]].isna().any() or not t[column]:
        return  # a half-written results.json: the table below shows what there is
    cols = st.columns(4)
    cols[0].metric(f"Distilled student {words}", f"{s[column]:.1%}",
                   f"{(s[column] - t[column]) * 100:+.1f} pts vs teacher")
    cols[1].metric(f"{words[0].upper()}{words[1:]} retention", f"{100 * s[column] / t[column]:.1f}%")
    cols[2].metric("Size on disk vs teacher", f"{s['Size (% of teacher)']:.0f}%",
                   f"{s['Parameters'] / t['Parameters']:.2f}× the parameters", delta_color="off", delta_arrow="off")
    if "baseline" in table.index:
        b = table.loc["baseline"]
        cols[3].metric("Distillation vs no teacher", f"{(s[column] - b[column]) * 100:+.1f} pts",
                       f"student minus baseline {words}", delta_color="off", delta_arrow="off")


# What the table on screen shows, in this order, so that it fits a 1500-px screen without scrolling; the CSV download
# keeps every column (layers, train time, throughput ...).
SHOWN_COLUMNS = ("Model", "Test accuracy", "Macro-F1", "Agreement with teacher",
                 "Parameters", "Trainable parameters", "Size on disk (MB)", "Size (% of teacher)", "Latency p50 (ms)",
                 "Speed-up vs teacher")


def display_table(table):
    """The columns that decide, shares as percentages with one decimal (the CSV download keeps fractions and every
    column); empty columns dropped, numbers kept numeric so a missing one shows as a blank, not "None"."""
    shown = table[[c for c in SHOWN_COLUMNS if c in table.columns]].copy()
    for col in shown.columns[1:]:
        shown[col] = pd.to_numeric(shown[col], errors="coerce")
    shown = shown.drop(columns=[c for c in shown.columns if shown[c].isna().all()])
    for col in PERCENT_COLUMNS:
        if col in shown:
            shown[col] = shown[col] * 100
    return shown


def table_ui(run, bench: dict | None) -> None:
    architectures = (run.config or {}).get("architectures")
    table = ov.overview_table(run.results, bench, architectures)
    headline_ui(table, ov.headline_of(run.results))
    note = ov.headline_note(run.results)
    if note:
        st.caption(note)
    verdict_ui(run)
    st.subheader("Models on the test set")
    rows = run.results.get("test_rows")
    st.caption(f"{rows:,} test examples." if rows else "")
    shown = display_table(table)
    # Written out here, so that a figure a model lacks (the int8 row's agreement, an unbenchmarked latency) reads "—"
    # instead of "None"; the CSV below keeps the numbers.
    for col, fmt in DISPLAY_FORMATS.items():
        if col in shown:
            shown[col] = ["—" if pd.isna(v) else fmt(v) if callable(fmt) else fmt.format(v) for v in shown[col]]
    labels = {c: st.column_config.Column(COLUMN_FORMATS[c]["label"] or c, help=COLUMN_FORMATS[c]["help"],
                                         alignment="right") for c in shown.columns if c in COLUMN_FORMATS}
    labels["Model"] = st.column_config.TextColumn("Model", width="medium")
    st.dataframe(shown, hide_index=True, width="stretch", column_config=labels)
    note = ov.lora_note(architectures)
    if note:
        st.caption(note)
    if bench is None:
        st.caption("Latency and speed-up appear here once the run is benchmarked: "
                   f"`python -m distill_core bench {run.run_id}`.")
    st.download_button("Download table (CSV)", table.to_csv().encode(), f"{run.run_id}_overview.csv", "text/csv",
                       on_click="ignore", icon=":material/download:")
    st.plotly_chart(ov.overview_figure(table), width="stretch", key="overview_bars")


def per_class_ui(run) -> None:
    st.subheader("Per-class F1")
    f1 = ov.per_class_f1(run.results)
    left, right = st.columns([3, 2])
    left.plotly_chart(ov.per_class_figure(f1), width="stretch", key="per_class_bars")
    right.dataframe(f1, column_config={c: st.column_config.NumberColumn(format="%.3f") for c in f1.columns},
                    width="stretch")
    detail = ov.per_class_table(run.results, (run.config or {}).get("class_weights"))
    if not detail.empty:
        st.markdown("**Precision, recall and F1 per class**")
        st.caption("Test rows: the class's texts in the test set. A rare class's figures rest on few texts.")
        st.dataframe(detail, hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.3f")
                                    for c in ("Precision", "Recall", "F1", "Class weight")})
    row = st.container(horizontal=True)
    row.download_button("Figure (PNG)", lambda: ov.per_class_png(f1), f"{run.run_id}_per_class_f1.png", "image/png",
                        on_click="ignore", icon=":material/image:", key="dl_per_class_png")
    row.download_button("Per-class figures (CSV)", (detail if not detail.empty else f1).to_csv(index=detail.empty)
                        .encode(), f"{run.run_id}_per_class.csv", "text/csv", on_click="ignore",
                        icon=":material/download:", key="dl_per_class_csv")
    models = run.results.get("models", {})
    with st.expander("Confusion matrices"):
        cols = st.columns(len(models) or 1)
        for col, kind in zip(cols, [k for k in MODEL_KINDS if k in models]):
            if models[kind].get("confusion_matrix"):
                col.plotly_chart(ov.confusion_figure(models[kind]["confusion_matrix"], run.label_names,
                                                     MODEL_TITLES[kind]), width="stretch", key=f"cm_{kind}")


def verdict_ui(run) -> None:
    """Did distillation, rather than just training a small model, get the student there?"""
    v = run.results.get("verdict")
    if not v:
        return
    style = getattr(st, ev.VERDICT_STYLE.get(v["distillation"], "info"))
    style(v["text"], icon=":material/balance:")
    fig = ev.budget_figure(run.results)
    if fig is not None:
        with st.expander("What each model got: validation curves, best steps and caps",
                         expanded=v["distillation"] == "inconclusive"):
            st.plotly_chart(fig, width="stretch", key="budget_curves")
            row = st.container(horizontal=True)
            row.download_button("Figure (PNG)", lambda: ev.budget_png(run.results), f"{run.run_id}_validation_curves.png",
                                "image/png", on_click="ignore", icon=":material/image:", key="dl_budget_png")
            row.download_button("Curves (CSV)", ev.budget_table(run.results).to_csv(index=False).encode(),
                                f"{run.run_id}_validation_curves.csv", "text/csv", on_click="ignore",
                                icon=":material/download:", key="dl_budget_csv")
    if run.config.get("data", {}).get("labelled"):
        st.caption("Few labels: the teacher and the baseline learned from the labelled rows alone; the distilled "
                   "student also learned from the teacher's predictions on the other training texts, whose labels "
                   "it never saw. Distillation can pass on what a small labelled set cannot teach, but only what the "
                   "teacher knows beyond what the baseline reaches on the labels alone.")


def evidence_ui(run) -> None:
    st.subheader("Evidence: differences with their intervals")
    table = ev.comparison_table(run.results)
    if table.empty:
        st.caption("This run has no paired comparisons yet: re-create its results with "
                   f"`python -m distill_core evaluate {run.run_id}`.")
        return
    st.caption("Each point is one model's test accuracy (or macro-F1) minus another's, on the same test texts; the "
               "bar is its 95% paired-bootstrap interval. An interval that crosses the dashed line at 0 is no "
               "measurable difference.")
    st.plotly_chart(ev.comparison_figure(table), width="stretch", key="evidence_intervals")
    row = st.container(horizontal=True)
    row.download_button("Figure (PNG)", lambda: ev.comparison_png(table), f"{run.run_id}_differences.png", "image/png",
                        on_click="ignore", icon=":material/image:", key="dl_evidence_png")
    row.download_button("Differences (CSV)", table.drop(columns="key").to_csv(index=False).encode(),
                        f"{run.run_id}_differences.csv", "text/csv", on_click="ignore", icon=":material/download:",
                        key="dl_evidence_csv")
    fid = ev.fidelity_table(run.results)
    if not fid.empty:
        st.markdown("**Fidelity to the teacher**")
        st.caption("Agreement: test texts where the student predicts the teacher's class. KL and JS: how far the "
                   "student's probabilities are from the teacher's (0 = identical).")
        st.dataframe(fid, hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.3f") for c in fid.columns if c != "Model"})
    seeds = ev.seeds_table(run.results)
    if not seeds.empty:
        st.markdown("**Across seeds**")
        st.dataframe(seeds, hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.4f") for c in seeds.columns
                                    if c not in ("Model", "Seed")})


SHIP_STYLE = {PASS: (":material/check_circle:", st.success), FAIL: (":material/cancel:", st.error),
              INCONCLUSIVE: (":material/help:", st.warning), NOT_MEASURED: (":material/help:", st.info)}
DECISION_STYLE = {READY: (":material/rocket_launch:", st.success), NOT_READY: (":material/block:", st.error),
                  NOT_ENOUGH: (":material/help:", st.warning)}


def thresholds() -> ShipConfig:
    """The user's thresholds: the inputs under "Ready to ship?" (kept in the session), else the defaults."""
    d = ShipConfig()
    return ShipConfig(**{f: st.session_state.get(f"ship_{f}", getattr(d, f))
                         for f in ("max_drop", "min_agreement", "min_speedup", "max_int8_drop")})


def decision_ui(stand: Standing) -> None:
    """The answer first: ready, not ready, or not enough evidence, and which checks decide it."""
    if not stand.ok:
        st.error("**Ready to ship?** Not checked: this run's files cannot back the checks (see below).",
                 icon=":material/block:")
        return
    checks = ship_checks(stand.results, stand.bench, thresholds())
    answer = decision(checks)
    deciding = [c for c in checks if c.state != PASS]
    icon, show = DECISION_STYLE[answer]
    show(f"**Ready to ship? {answer[0].upper()}{answer[1:]}.** "
         + ("Every check passes against your thresholds." if not deciding else
            "; ".join(f"{c.name.lower()}: {c.state}" for c in deciding) + ". Details and thresholds under "
            "**Ready to ship?** below."), icon=icon)


def ship_ui(run, stand: Standing) -> None:
    """The user's own release criteria; the same as `python -m distill_core check RUN`, on the same footing: none
    while the run is damaged or its figures come from other weights than those on disk (``fingerprints.standing``).
    Thresholds are in the tables' units; each check is judged on its 95% interval (pass, fail or inconclusive)."""
    st.subheader("Ready to ship?")
    d = ShipConfig()
    cols = st.columns(4)
    cols[0].number_input("Max accuracy drop (points)", 0.0, 100.0, d.max_drop, 0.1, key="ship_max_drop")
    cols[1].number_input("Min agreement with teacher (%)", 1.0, 100.0, d.min_agreement, 0.5, key="ship_min_agreement",
                         help="Percent of test texts where the student predicts the teacher's class, as in the table")
    cols[2].number_input("Min speed-up (×)", 0.1, 100.0, d.min_speedup, 0.1, key="ship_min_speedup",
                         help=SPEEDUP_DEFINITION)
    cols[3].number_input("Max accuracy lost to int8 (points)", 0.0, 100.0, d.max_int8_drop, 0.1,
                         key="ship_max_int8_drop")
    if not stand.ok:
        for problem in stand.problems:
            st.error(f"**Not checked:** {problem}.", icon=":material/block:")
        return
    chosen = thresholds()
    checks = ship_checks(stand.results, stand.bench, chosen)
    for note in stand.notes:
        st.info(note, icon=":material/history:")
    for c in checks:
        icon, show = SHIP_STYLE[c.state]
        figure = "" if c.value is None and c.threshold == 0 else (
            f"{with_unit(c.value, c.unit)} (threshold: {threshold_words(c)}). ")
        show(f"**{c.name}: {c.state}.** {figure}{app.with_run_id(c.evidence)}", icon=icon)
    st.caption("A check passes when its whole 95% interval is on the good side of your threshold, fails when the whole "
               "interval is on the bad side, and is inconclusive when it straddles the threshold: the test set is too "
               "small to tell.")
    table = ev.checks_table(checks)
    st.download_button("Checks (CSV)", table.to_csv(index=False).encode(), f"{run.run_id}_ship_checks.csv", "text/csv",
                       on_click="ignore", icon=":material/download:", key="dl_checks")
    st.caption("Gate a release on the same checks: `python -m distill_core check "
               f"{run.run_id} --max-drop {chosen.max_drop:g} --min-agreement {chosen.min_agreement:g} "
               f"--min-speedup {chosen.min_speedup:g} --max-int8-drop {chosen.max_int8_drop:g}` "
               "exits with 0 when ready, 3 when not ready, 4 when there is not enough evidence.")


def config_ui(run) -> None:
    with st.expander("Run configuration (config.json)"):
        st.json(run.config, expanded=1)


def main() -> None:
    st.title("Overview")
    run = app.require_run()
    if run is None:
        return
    if run.results is None:
        if run.status == "running":
            st.info(f"Run `{run.run_id}` is still training (stage {run.stage}); its test results appear here "
                    "when it finishes. Follow it on **Training curves**.", icon=":material/hourglass_top:")
        else:
            st.error(ov.missing_results_advice(run))
    else:
        bench = None
        try:
            bench = app.bench(run.path)
        except RunError as e:
            st.warning(f"bench.json is unreadable, speed columns left out: {e}")
        stand = standing(run.path, run)
        for problem in stand.problems:  # figures that may not be the models' own: said first, plainly
            st.warning(problem, icon=":material/history:")
        with app.friendly_errors("Results"):
            decision_ui(stand)
            table_ui(run, bench)
            imbalanced = ov.headline_of(run.results) == "macro_f1"
            if imbalanced:  # the rare classes are the story: show them before the evidence
                per_class_ui(run)
            evidence_ui(run)
            ship_ui(run, stand)
            if not imbalanced:
                per_class_ui(run)
    config_ui(run)


if __name__ == "__main__":
    main()
