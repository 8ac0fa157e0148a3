"""Calibration: can you trust each model's confidence? Reliability diagrams, ECE, Brier score and NLL on the test
split, before and after one temperature per model fitted on the validation split (stored in the run).

A run evaluated before calibration existed has no ``calibration.json``: the page offers to compute it.
"""

from __future__ import annotations

import streamlit as st

from distill_core import app
from distill_core.evidence.calibration import N_BINS, temperatures
from distill_core.config import MODEL_KINDS, MODEL_TITLES
from distill_core.views import calibration as cv


def compute_ui(run, again: bool = False) -> None:
    """The button that fits the temperatures now, with its progress in an ``st.status``."""
    label = "Re-fit the temperatures" if again else "Fit the temperatures now"
    if not st.button(label, icon=":material/tune:", key="cal_refit" if again else "cal_compute",
                     type="secondary" if again else "primary"):
        return
    with st.status("Fitting one temperature per model on the validation split…", expanded=True) as status:
        bar = st.progress(0.0, text="Starting…")
        try:
            app.compute_calibration(run.path, lambda f, msg: bar.progress(min(max(f, 0.0), 1.0), text=msg))
        except Exception:
            status.update(label="Calibration failed", state="error")
            raise
        status.update(label="Calibration stored in the run", state="complete", expanded=False)


def summary_ui(run, report: dict) -> None:
    st.subheader("Metrics on the test split")
    table = cv.metrics_table(report)
    shown = table.copy()
    percent = [c for c in table.columns if c.startswith(("Accuracy", "Mean confidence"))]
    shown[percent] = shown[percent] * 100
    fmt = {c: st.column_config.NumberColumn(format="%.4f") for c in table.columns if c != "Model"}
    fmt.update({c: st.column_config.NumberColumn(format="%.1f%%") for c in percent})
    fmt["Temperature"] = st.column_config.NumberColumn(format="%.3f")
    st.dataframe(shown, column_config=fmt, hide_index=True, width="stretch")
    st.caption(f"ECE: the gap between confidence and accuracy, averaged over {N_BINS} equal-width confidence bins "
               "(0 is perfect). Brier: squared error of the whole distribution. NLL: cross-entropy on the true class. "
               f"Each model's temperature was fitted on the {report.get('validation_rows', '?')} validation texts and "
               f"measured on the {report.get('test_rows', '?')} test texts; it never changes a prediction.")
    st.download_button("Metrics (CSV)", table.to_csv(index=False).encode(), f"{run.run_id}_calibration.csv", "text/csv",
                       on_click="ignore", icon=":material/download:", key="dl_cal_metrics")
    kd_t = float(run.config.get("kd", {}).get("temperature", 1.0))
    note = cv.underconfidence_note(report, kd_t, "student")
    if note:
        st.warning(note, icon=":material/trending_down:")
    elif "student" in report.get("models", {}) and kd_t > 1:
        t = report["models"]["student"]["temperature"]
        st.caption(f"Students distilled at T > 1 are often under-confident at T = 1. This one (distilled at T = "
                   f"{kd_t:g}) is not: its fitted temperature is {t:.2f}.")


def reliability_ui(run, report: dict) -> None:
    st.subheader("Reliability diagrams")
    scaled = st.toggle("After temperature scaling", key="cal_scaled",
                       help="Divide each model's logits by its fitted temperature before binning.")
    preds = app.predictions_table(run.path)
    kinds = [k for k in MODEL_KINDS if k in report["models"] and f"{k}_probs" in preds]
    bins = cv.reliability_table(preds, kinds, temperatures(report) if scaled else None)
    st.plotly_chart(cv.reliability_figure(bins), width="stretch", key="cal_reliability")
    st.caption("Each bar is the accuracy of the test texts whose confidence (top-class probability) falls in that "
               "bin: on the dashed diagonal "
               "a model is right as often as it claims, below it over-confident, above it under-confident; the "
               "lower row shows how many texts each bin holds (log scale, one range for all models). A faint bar holds fewer "
               f"than {cv.FEW_TEXTS} texts: its accuracy says little.")
    left, right = st.columns(2)
    name = f"{run.run_id}_reliability{'_scaled' if scaled else ''}"
    left.download_button("Reliability diagrams (PNG)", lambda: cv.reliability_png(bins), f"{name}.png", "image/png",
                         on_click="ignore", icon=":material/image:", key="dl_cal_png")
    right.download_button("Bins (CSV)", bins.to_csv(index=False).encode(), f"{name}.csv", "text/csv",
                          on_click="ignore", icon=":material/download:", key="dl_cal_bins")


def main() -> None:
    st.title("Calibration")
    run = app.require_run()
    if run is None:
        return
    st.caption("Does a model's confidence match how often it is right? It matters whenever you act on confidence: "
               "thresholds, abstaining, routing hard texts to the teacher.")
    with app.friendly_errors("Calibration"):
        app.predictions_table(run.path)  # a run not evaluated yet stops here, with the fix
        report = app.calibration(run.path)
        if report is None:
            st.info("This run has no calibration yet. Fitting it loads each model once and classifies the "
                    "validation split the run was trained on (about half a minute per thousand texts on a CPU).",
                    icon=":material/tune:")
            compute_ui(run)
            report = app.calibration(run.path)
            if report is None:
                return
        summary_ui(run, report)
        reliability_ui(run, report)
        missing = [MODEL_TITLES[k] for k in MODEL_KINDS if k in run.models and k not in report["models"]]
        if missing:
            st.info(f"{', '.join(missing)}: not in the stored calibration (trained after it was fitted).")
        with st.expander("Re-fit the temperatures"):
            st.caption("After re-training a model of this run, fit its temperature again.")
            compute_ui(run, again=True)


if __name__ == "__main__":
    main()
