"""Welcome page: what distill-lens is, and the one command (or button) that trains the default run.

The only page while there are no runs; afterwards it stays in the menu as "Train a run". The training
subprocess belongs to the user who started it, so its handle lives in ``st.session_state``.
"""

from __future__ import annotations

import os

import streamlit as st

from distill_core import app, jobs
from distill_core.config import data_dir, runs_dir
from distill_core.presets import PRESET_SUMMARIES, PRESET_TIMES

JOB_KEY = "train_job"  # the jobs.Job of a run started from this page


def intro_ui() -> None:
    st.title("distill-lens")
    st.markdown(
        "A BERT **teacher** is fine-tuned on a text classification task, a smaller DistilBERT **student** is "
        "trained to match the teacher's softened predictions (knowledge distillation), and the same student "
        "is trained **without** a teacher as a baseline. This dashboard puts the three side by side: how "
        "much accuracy the student keeps, how much smaller and faster it is, how it learned, what it "
        "predicts for your own text, and where it looks (attention)."
    )


def no_runs_ui() -> None:
    st.info(f"No runs yet in `{runs_dir()}`. Train the default run (AG News, about four minutes on two CPU "
            "cores with bf16, about eight without) with:", icon=":material/info:")
    data = data_dir()
    prefix = f"DISTILL_DATA_DIR={data} " if data and "DISTILL_DATA_DIR" not in os.environ else ""
    st.code(f"{prefix}{app.TRAIN_COMMAND}", language="bash")
    st.caption("Runs are read from `$DISTILL_RUNS_DIR` if set, else `artifacts/runs` in the project.")


def failed_runs_ui() -> None:
    failed = app.failed_runs()
    if failed:
        with st.expander(f"{len(failed)} failed or interrupted run(s)"):
            for r in failed:
                st.markdown(f"- `{r.run_id}`: {r.error or r.status}")
            st.caption("Show them in the picker with the sidebar toggle *Show failed runs*.")


def _run_words(preset: str) -> str:
    return "the default run" if preset == "quick" else f"the {preset} run"


def train_button_ui() -> None:
    """Start a preset's run (the default: quick) in the background, then follow it."""
    job = st.session_state.get(JOB_KEY)
    running = job is not None and job.running()
    preset = st.selectbox("Preset", list(PRESET_SUMMARIES), format_func=lambda p: f"{p}: {PRESET_SUMMARIES[p]}",
                          key="train_preset", disabled=running)
    st.caption(f":material/timer: Takes {PRESET_TIMES[preset]}.")
    if not running and st.button(f"Train {_run_words(preset)}", type="primary", icon=":material/play_arrow:"):
        st.session_state[JOB_KEY] = jobs.start_train(preset)
        st.session_state["started_preset"] = preset
        st.session_state["train_seen_running"] = True
        running = True
    if st.session_state.get(JOB_KEY):
        # Poll only while the job lives; a finished run needs no timer.
        st.fragment(run_every=2 if running else None)(progress_ui)()


def progress_ui() -> None:
    """The new run's stage and optimizer steps so far, from its own progress report."""
    job = st.session_state[JOB_KEY]
    code = job.returncode
    what = _run_words(st.session_state.get("started_preset", "quick"))
    label = f"Training {what}…" if code is None else f"Training finished (exit code {code})"
    with st.status(label, state="running" if code is None else ("complete" if code == 0 else "error"), expanded=True):
        if job.run_dir.is_dir():
            p = jobs.training_progress(job.run_dir)
            st.progress(p.fraction, text=f"`{job.run_id}` — {p.message}")
        else:
            st.progress(0.0, text="starting (loading the data)…")
        st.caption(f"Log: `{job.log}`")
        if code not in (None, 0):
            st.error(f"Training exited with code {code}. The end of its log:")
            st.code(job.tail(), language="text")
    if code is not None and st.session_state.get("train_seen_running", True):
        # The fragment saw the end: rerun the whole app once so the menu lists the new run's pages.
        st.session_state["train_seen_running"] = False
        st.rerun(scope="app")
    if code == 0:
        st.success("The run is complete: pick it in the sidebar, or open the Overview.")


def main() -> None:
    intro_ui()
    if app.selected_run() is None:
        no_runs_ui()
    else:
        st.markdown(f"Pick a run in the sidebar, or train another one: `{app.TRAIN_COMMAND}` "
                    "(see `python -m distill_core train --help` for the dataset, models and KD settings).")
    train_button_ui()
    failed_runs_ui()


if __name__ == "__main__":
    main()
