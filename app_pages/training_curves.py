"""Training curves: how the teacher, the distilled student and the baseline learned, on shared axes.

Training rows are logged every optimizer step and are noisy, so they are drawn faint with an EMA on top;
validation points sit over them. A run still training redraws as its CSVs grow.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from distill_core import app
from distill_core.config import MODEL_KINDS, MODEL_TITLES
from distill_core.errors import RunError
from distill_core.runs import load_run, metrics_path, seed_tag
from distill_core.views import curves as cv

REFRESH_S = 5  # how often a run still training is re-read


def controls_ui() -> tuple[str, float]:
    left, right = st.columns([2, 3])
    x = left.radio("x-axis", list(cv.X_AXES), format_func=cv.X_AXES.get, horizontal=True, key="curves_x")
    smoothing = right.slider("Smoothing (EMA weight)", 0.0, 0.99, 0.6, 0.01, key="curves_smoothing",
                             help="0 shows the raw per-step values; higher is smoother (TensorBoard-style EMA).")
    return x, smoothing


def seed_keys(run) -> list[str]:
    """The logs of students trained with the run's other seeds (``--seeds``), if any."""
    seeds = (run.config.get("train") or {}).get("seeds") or []
    return [seed_tag(kind, s) for kind in ("student", "baseline") for s in seeds[1:]
            if metrics_path(run.path, seed_tag(kind, s), "train").exists()]


def load_frames(run_dir: Path, running: bool, extra: list[str] = ()):
    """Train and validation frames per model (and per extra seed), plus notes for the ones that cannot be shown."""
    train, val, notes = {}, {}, []
    for kind in MODEL_KINDS:
        if not metrics_path(run_dir, kind, "train").exists():
            # Not an error while training: later models simply have not started.
            notes.append((st.info if running else st.warning,
                          f"{MODEL_TITLES[kind]}: no `{kind}_train.csv` "
                          + ("yet (not started)." if running else "— this model was not trained in this run.")))
            continue
        try:
            train[kind] = app.metrics(run_dir, kind, "train")
        except RunError as e:
            notes.append((st.error, f"{MODEL_TITLES[kind]}: {e}"))
            continue
        try:
            val[kind] = app.metrics(run_dir, kind, "val")
        except RunError as e:
            notes.append((st.warning, f"{MODEL_TITLES[kind]} validation points left out: {e}"))
    for key in extra:
        try:
            train[key], val[key] = app.metrics(run_dir, key, "train"), app.metrics(run_dir, key, "val")
        except RunError as e:
            notes.append((st.warning, f"{key}: {e}"))
    return train, val, notes


def charts_ui(run_dir: Path, x: str, smoothing: float) -> None:
    """Everything drawn from the CSVs; a fragment that re-runs on a timer while the run trains."""
    # Inside the fragment: its timed reruns do not pass through main()'s code.
    with app.friendly_errors("Training curves"):
        curves_ui(run_dir, x, smoothing)


def curves_ui(run_dir: Path, x: str, smoothing: float) -> None:
    run = load_run(run_dir)
    running = run.status == "running"
    if running:
        st.caption(f":material/hourglass_top: Training (stage {run.stage}); redrawn every {REFRESH_S} s as the "
                   "CSVs grow.")
    elif st.session_state.pop("curves_was_running", False):
        st.rerun(scope="app")  # it just finished: let the whole app (picker, other pages) catch up
    st.session_state["curves_was_running"] = running
    extra = seed_keys(run)
    if extra and not st.toggle(f"Overlay the other seeds ({len(extra)} more student runs)", key="curves_seeds",
                               help="Students trained with the run's other seeds (--seeds): how much of a curve is luck."):
        extra = []
    train, val, notes = load_frames(run_dir, running, extra)
    for show, note in notes:
        show(note)
    if not train:
        st.info("No training rows to draw yet.")
        return
    st.plotly_chart(cv.curves_figure(train, val, x, smoothing), width="stretch", key="curves_main")
    if "student" in train:
        hard = "hard_loss" in train["student"] and train["student"]["hard_loss"].notna().any()
        st.caption("The distilled student's *training* loss is its KD objective, α·T²·KL(teacher ‖ student) + "
                   "(1 − α)·CE" + (" + w·CE(teacher's predicted class)" if hard else "")
                   + ", so it sits on its own level; validation loss is cross-entropy for every model.")
    left, right = st.columns(2)
    with left:
        st.markdown("**Learning rate**")
        st.plotly_chart(cv.lr_figure(train, x), width="stretch", key="curves_lr")
    with right:
        st.markdown("**Distilled student: KD and CE loss**")
        if "student" in train and "kd_loss" in train["student"]:
            st.plotly_chart(cv.kd_components_figure(train["student"], x, smoothing), width="stretch", key="curves_kd")
        else:
            st.info("The distilled student has no loss components logged (yet).")
    downloads_ui(run_dir, train, val, x, smoothing)


def downloads_ui(run_dir: Path, train, val, x: str, smoothing: float) -> None:
    row = st.container(horizontal=True)  # buttons at their natural width, wrapping when the page is narrow
    for kind in train:
        for split in ("train", "val"):
            if metrics_path(run_dir, kind, split).exists():
                row.download_button(f"{kind}_{split}.csv", app.csv_bytes(run_dir, kind, split),
                                    f"{run_dir.name}_{kind}_{split}.csv", "text/csv", on_click="ignore",
                                    icon=":material/download:", key=f"dl_{kind}_{split}")
    # Rendering the figure costs time, so it happens only when the button is pressed (deferred data).
    row.download_button("Figure (PNG)", lambda: cv.curves_png(train, val, x, smoothing),
                        f"{run_dir.name}_curves.png", "image/png", on_click="ignore",
                        icon=":material/image:", key="dl_curves_png")
    row.download_button(
        "Figure (HTML)", lambda: cv.curves_figure(train, val, x, smoothing).to_html(include_plotlyjs=True),
        f"{run_dir.name}_curves.html", "text/html", on_click="ignore", icon=":material/code:", key="dl_curves_html")


def main() -> None:
    st.title("Training curves")
    run = app.require_run()
    if run is None:
        return
    x, smoothing = controls_ui()
    st.fragment(run_every=REFRESH_S if run.status == "running" else None)(charts_ui)(run.path, x, smoothing)


if __name__ == "__main__":
    main()
