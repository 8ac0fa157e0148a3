"""Sweep: how to choose T and alpha, with evidence. Distilled students for a grid of temperatures and KD weights
against the run's own teacher, each scored on the validation split beside the student trained without a teacher.

Reads ``sweep/sweep.json`` (``python -m distill_core sweep RUN``); without one, the page starts a sweep in the
background and follows its progress. An interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import streamlit as st

from distill_core import app, jobs
from distill_core.locks import JobBusy
from distill_core.runs import read_progress
from distill_core.train.sweep import SweepSettings, load_sweep
from distill_core.views import sweep as sv

JOB_KEY = "sweep_jobs"  # {run_id: jobs.Job} of sweeps this session started
POLL_S = 3.0


def _own_job(run_id: str) -> jobs.Job | None:
    return st.session_state.get(JOB_KEY, {}).get(run_id)


def running(run) -> bool:
    job = _own_job(run.run_id)
    return read_progress(run.path, "sweep") is not None or (job is not None and job.running())


@st.fragment(run_every=POLL_S)
def progress_ui(run) -> None:
    """A sweep running on this run (started here or from a shell): its progress, then a rerun when it ends."""
    state = read_progress(run.path, "sweep")
    job = _own_job(run.run_id)
    if state is not None:
        st.progress(state.fraction, text=f"Sweeping: {state.message}")
        st.caption("Each cell trains a student: expect about a minute per cell for the quick run on 2 CPU cores. "
                   "Finished cells are kept if you stop it.")
        return
    if job is not None and job.running():
        st.progress(0.0, text="Sweep starting (loading libraries and data)…")
        return
    if job is not None:
        st.session_state[JOB_KEY].pop(run.run_id, None)
        if job.returncode != 0:
            st.session_state["sweep_error"] = job.tail(12) or f"exit code {job.returncode}"
    st.rerun(scope="app")


def start_ui(run, sweep: dict | None) -> None:
    d = SweepSettings()
    with st.expander("Run a sweep" if sweep is None else "Extend or re-run the sweep", expanded=sweep is None,
                     icon=":material/tune:"):
        cols = st.columns(3)
        temps = cols[0].multiselect("Temperatures T", [0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0], d.temperatures,
                                    key="sweep_t")
        alphas = cols[1].multiselect("KD weights alpha", [0.1, 0.25, 0.5, 0.75, 0.9, 1.0], d.alphas, key="sweep_a")
        epochs = cols[2].number_input("Student epochs per cell", 0.25, 10.0, d.epochs, 0.25, key="sweep_epochs")
        st.caption(f"{len(temps) * len(alphas) + 1} cells (the grid plus the baseline without a teacher); cells already "
                   "finished with the same schedule are kept. Settings are chosen on validation; the chosen cell's "
                   "test accuracy is measured once, at the end.")
        if st.button("Start the sweep", icon=":material/play_arrow:", disabled=running(run) or not temps or not alphas
                     or "teacher" not in run.models):
            try:
                st.session_state.setdefault(JOB_KEY, {})[run.run_id] = jobs.start_sweep(run.path, sorted(temps),
                                                                                         sorted(alphas), epochs)
            except JobBusy as e:  # a sweep from another session or a shell: said plainly, nothing started
                st.session_state["sweep_refused"] = str(e)
            st.rerun()
        st.caption(f"The same from a shell: `python -m distill_core sweep {run.run_id} --temperature "
                   f"{','.join(f'{t:g}' for t in sorted(temps))} --alpha {','.join(f'{a:g}' for a in sorted(alphas))} "
                   f"--epochs {epochs:g}`")


def results_ui(run, sweep: dict) -> None:
    # Green only for a measurable win over the baseline cell; a choice within the noise is information.
    show = st.success if (sweep.get("best") or {}).get("beats_baseline") else st.info
    show(sv.choice_sentence(sweep), icon=":material/star:")
    metric = st.radio("Colour by", list(sv.METRICS), format_func=sv.METRICS.get, horizontal=True, key="sweep_metric")
    alphas, temps, _ = sv.grid(sweep, metric)
    measured = sv.noise_mask(sweep, metric, alphas, temps) is not None
    st.caption("Temperature across, KD weight down. With a baseline cell, the colours are centred on it: blue cells "
               "beat the same student trained without a teacher, red ones trail it. The outlined cell is the one "
               "chosen on validation. "
               + ("A cell whose difference from the baseline has a 95% interval that includes 0 is drawn white and "
                  "marked ≈ baseline: on these validation texts it cannot be told apart." if measured else
                  "This sweep holds no intervals (run it again to get them): differences of a point or two on a few "
                  "hundred validation texts are within the noise."))
    st.plotly_chart(sv.heatmap_figure(sweep, metric), width="stretch", key="sweep_heatmap")
    table = sv.sweep_table(sweep)
    shown = table.assign(T=["—" if t != t else f"{t:g}" for t in table["T"]])  # the baseline has no temperature
    st.dataframe(shown, hide_index=True, width="stretch", column_config={
        "Validation accuracy": st.column_config.NumberColumn(format="percent"),
        "T": st.column_config.Column("T", help="A dash for the baseline: it has no teacher", alignment="right"),
        "Validation macro-F1": st.column_config.NumberColumn(format="%.4f"),
        "Agreement with teacher": st.column_config.NumberColumn(format="percent"),
        "Train time (s)": st.column_config.NumberColumn(format="%.0f")})
    row = st.container(horizontal=True)
    row.download_button("Heatmap (PNG)", lambda: sv.heatmap_png(sweep, metric), f"{run.run_id}_sweep.png", "image/png",
                        on_click="ignore", icon=":material/image:", key="dl_sweep_png")
    row.download_button("Cells (CSV)", table.to_csv(index=False).encode(), f"{run.run_id}_sweep.csv", "text/csv",
                        on_click="ignore", icon=":material/download:", key="dl_sweep_csv")
    s = sweep.get("schedule", {})
    st.caption(f"Each cell: {s.get('epochs')} student epoch(s) at lr {s.get('learning_rate')}, batch {s.get('batch_size')}, "
               f"seed {s.get('seed')}; the run's own distilled student may have trained longer.")


def main() -> None:
    st.title("Sweep: choosing T and alpha")
    run = app.require_run()
    if run is None:
        return
    if err := st.session_state.pop("sweep_error", None):
        st.error("The sweep stopped with an error:")
        st.code(err)
    if refused := st.session_state.pop("sweep_refused", None):
        st.warning(refused, icon=":material/hourglass_top:")
    if running(run):
        progress_ui(run)
    with app.friendly_errors("Sweep"):
        sweep = load_sweep(run.path)
        if sweep is None and not running(run):
            st.info("No sweep for this run yet. It trains the run's distilled student once per (T, alpha) cell "
                    "against the run's teacher, and once without a teacher, and scores each on the validation "
                    "split.", icon=":material/info:")
        if sweep and sweep.get("cells"):
            results_ui(run, sweep)
        start_ui(run, sweep)


if __name__ == "__main__":
    main()
