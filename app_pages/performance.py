"""Performance: is the distilled student faster and smaller, and what does it cost in accuracy?

Reads the run's ``bench.json`` (``python -m distill_core bench RUN``), for the PyTorch models and the student on
ONNX Runtime (fp32 and int8) alike: latency, throughput, size, memory,
speed-up and accuracy per model, the accuracy/latency trade-off, and the teacher's training throughput against
fixed padding and ``Trainer``. Without a ``bench.json`` the page gives the command, or runs it in the background
and follows its progress. ``bench_bert-base.json`` (``--arch bert-base``) adds the classic pair's speed-up, and
``pruning_<model>.json`` (``python -m distill_core prune RUN``) accuracy, latency and size against sparsity.
"""

from __future__ import annotations


import streamlit as st

from distill_core import app, jobs
from distill_core.bench.report import SPEEDUP_DEFINITION, headline_speedup, unreliable_reasons
from distill_core.config import MODEL_TITLES
from distill_core.errors import RunError
from distill_core.fingerprints import stale_bench
from distill_core.locks import JobBusy
from distill_core.runs import read_progress
from distill_core.views import performance as pv
from distill_core.views.pruning import pruning_figure, pruning_note, pruning_png, pruning_table

JOB_KEY = "bench_jobs"  # {run_id: jobs.Job} of benches this session started
POLL_S = 2.0

TABLE_FORMATS = {
    "Parameters": st.column_config.NumberColumn(format="compact"),
    "Test accuracy": st.column_config.NumberColumn(format="percent"),
    "Macro-F1": st.column_config.NumberColumn(format="%.3f"),
    "Throughput (texts/s)": st.column_config.NumberColumn(format="%.0f"),
    "Peak memory (MB)": st.column_config.NumberColumn(format="%.0f",
                                                      help="Peak memory of a fresh process that loads the model and "
                                                           "classifies one batch, on the model's device ('Peak memory of' "
                                                           "says which): resident memory on the CPU (Python and torch "
                                                           "included), memory held by torch's tensors on a GPU"),
    "Load time (s)": st.column_config.NumberColumn(format="%.2f", help="From disk in a fresh process (warm file cache)"),
    "Size (MB)": st.column_config.NumberColumn(format="%.1f", help="safetensors file; int8: its saved state dict; "
                                                                 "ONNX: the .onnx file"),
    "GFLOP/s (max length)": st.column_config.NumberColumn(format="%.0f"),
}


def table_formats(columns) -> dict:
    """Number formats for ``views.performance.summary_table``, whose latency columns are named by token count."""
    formats = dict(TABLE_FORMATS)
    for c in columns:
        if " ms @" in c:
            formats[c] = st.column_config.NumberColumn(format="%.2f")
        elif c.startswith("Speed-up"):
            formats[c] = st.column_config.NumberColumn(format="%.2f×")
    return formats


def command(run_id: str, arch: str = "run") -> str:
    return f"python -m distill_core bench {run_id}" + (f" --arch {arch}" if arch != "run" else "")


# ----------------------------------------------------------------------------- running a bench


def _own_job(run_id: str) -> jobs.Job | None:
    return st.session_state.get(JOB_KEY, {}).get(run_id)


def start_bench(run, arch: str) -> None:
    try:
        st.session_state.setdefault(JOB_KEY, {})[run.run_id] = jobs.start_bench(run.path, arch)
    except JobBusy as e:  # a bench from another session or a shell: said plainly, nothing started
        st.session_state["bench_refused"] = str(e)


@st.fragment(run_every=POLL_S)
def progress_ui(run) -> None:
    """A bench running on this run (started here or from a shell): its progress, then a rerun when it ends."""
    state = read_progress(run.path, "bench")
    mine = _own_job(run.run_id)
    if state is not None:
        st.progress(state.fraction, text=f"Benchmarking: {state.message}")
        st.caption("Timings share the CPU with everything else: leave the machine alone until it finishes.")
        return
    if mine is not None and mine.running():
        st.progress(0.0, text="Benchmark starting (loading libraries)…")
        return
    if mine is not None:
        st.session_state[JOB_KEY].pop(run.run_id, None)
        if mine.returncode != 0:
            st.session_state["bench_error"] = mine.tail(12) or f"exit code {mine.returncode}"
        st.rerun()


def no_bench_ui(run) -> None:
    st.info("This run has not been benchmarked yet. Measure its models on this machine with", icon=":material/speed:")
    st.code(command(run.run_id), language="bash")
    st.markdown("It times the teacher, the distilled student and the student quantised to int8 (batch-1 latency, "
                "throughput, load time, memory, int8 accuracy) and the teacher's training throughput, then writes "
                "`bench.json` into the run folder. Expect a few minutes on a laptop; add `--skip-training` to halve it.")
    busy = read_progress(run.path, "bench") is not None or _own_job(run.run_id) is not None
    if st.button("Run the benchmark now", icon=":material/play_arrow:", disabled=busy or run.status != "complete",
                 help="Runs the command above in the background; this page follows its progress."):
        start_bench(run, "run")
        st.rerun()


# ----------------------------------------------------------------------------- the figures


def headline_ui(b: dict) -> None:
    """The speed-up every page quotes (p50 at batch 1 and the median test length), what int8 costs, the ONNX int8
    student against the teacher by the same definition, and training against Trainer."""
    sp, q, t = b.get("speedup") or {}, b.get("int8") or {}, b.get("training_throughput") or {}
    oq, onnx = b.get("onnx_int8") or {}, (b.get("models") or {}).get("student_onnx_int8") or {}
    tokens = (b.get("settings") or {}).get("median_tokens")
    cols = st.columns(4)
    speed = headline_speedup(b)
    if speed:
        cols[0].metric("Student vs teacher", f"{speed:.2f}×", f"at {tokens} tokens (median text)", delta_color="off",
                       delta_arrow="off", help=SPEEDUP_DEFINITION)
    if sp.get("int8_vs_student_median_len"):
        cols[1].metric("int8 vs fp32 student", f"{sp['int8_vs_student_median_len']:.2f}×",
                       f"{q.get('size_ratio') or 0:.1f}× smaller", delta_color="off", delta_arrow="off",
                       help="p50 latency ratio at batch 1 and the median test length, tokenisation included")
    if q.get("accuracy_drop_points") is not None:
        cols[2].metric("Accuracy lost to int8", f"{q['accuracy_drop_points']:.2f} pts",
                       f"macro-F1 {q.get('macro_f1_drop_points') or 0:.2f} pts", delta_color="off", delta_arrow="off",
                       help="fp32 student minus int8 student, test accuracy in percentage points")
    if sp.get("onnx_int8_vs_teacher_median_len"):
        lost = f", {oq['accuracy_drop_points']:.2f} pts lost" if oq.get("accuracy_drop_points") is not None else ""
        cols[3].metric("ONNX int8 student vs teacher", f"{sp['onnx_int8_vs_teacher_median_len']:.1f}×",
                       f"{pv.latency_p50(onnx, 'median_len') or 0:.2f} ms{lost}", delta_color="off", delta_arrow="off",
                       help=f"{SPEEDUP_DEFINITION}: the student exported to ONNX and quantised to int8, run by ONNX "
                            "Runtime, against the PyTorch fp32 teacher. Accuracy lost: against the fp32 student.")
    if t.get("pipeline_vs_trainer"):
        st.caption(f"Training: this project's loop trains the teacher {t['pipeline_vs_trainer']:.2f}× as fast as "
                   f"Trainer's defaults and {t['pipeline_vs_fixed_padding']:.2f}× as fast as fixed padding (below).")


def unreliable_ui(run, reasons: list[str]) -> None:
    """Timings that cannot be trusted are not headlined: why, and a way to measure again."""
    st.warning("**These timings are unreliable**: " + "; ".join(reasons) + ". The speed figures below are kept for "
               "reference but not headlined, and the ship check on speed cannot pass on them. Measure again with "
               "the machine otherwise idle.", icon=":material/warning:")
    busy = read_progress(run.path, "bench") is not None or _own_job(run.run_id) is not None
    if st.button("Run the benchmark again", icon=":material/refresh:", disabled=busy or run.status != "complete",
                 key="bench_rerun", help=f"Runs `{command(run.run_id)}` in the background."):
        start_bench(run, "run")
        st.rerun()


def bench_ui(run, b: dict) -> None:
    st.caption(pv.machine_caption(b))
    reasons = unreliable_reasons(b)
    stale = stale_bench(run.path, b, run.run_id)
    if stale:  # figures of other weights than the models now hold: kept for reference, never headlined
        reasons = [*reasons, "they were measured on other weights than the models now hold"]
        st.info(" ".join(stale), icon=":material/history:")
    for note in b.get("notes") or []:
        if not (reasons and note.startswith("other processes used")):  # said once, in the warning below
            st.warning(note, icon=":material/warning:")
    if reasons:
        unreliable_ui(run, reasons)
    else:
        headline_ui(b)
    st.subheader("Per model")
    table = pv.summary_table(b)
    # The columns that decide, so the table fits the screen; the CSV holds them all (p95s, memory, load time ...).
    keep = [c for c in table.columns if c in ("Model", "Runtime", "Size (MB)", "Speed-up vs teacher (median length)",
                                              "Throughput (texts/s)", "Test accuracy") or c.startswith("p50 ms @")]
    if table["Device"].nunique() > 1 if "Device" in table else False:
        keep.insert(2, "Device")
    st.dataframe(table[keep], hide_index=True, width="stretch", column_config=table_formats(keep))
    st.download_button("Per-model figures (CSV)", table.to_csv(index=False).encode(), f"{run.run_id}_bench.csv",
                       "text/csv", on_click="ignore", icon=":material/download:", key="dl_bench_csv")
    left, right = st.columns(2)
    left.plotly_chart(pv.latency_figure(b), width="stretch", key="perf_latency")
    right.plotly_chart(pv.throughput_figure(b), width="stretch", key="perf_throughput")
    st.plotly_chart(pv.speedup_accuracy_figure(b), width="stretch", key="perf_speedup")
    trade = pv.tradeoff_figure(b)
    if trade is not None:
        st.plotly_chart(trade, width="stretch", key="perf_tradeoff")
    st.plotly_chart(pv.size_memory_figure(b), width="stretch", key="perf_size")
    st.subheader("Training throughput")
    training = pv.training_figure(b)
    if training is None:
        st.caption(f"Not measured (`--skip-training`). Re-run `{command(run.run_id)}` without it.")
    else:
        st.plotly_chart(training, width="stretch", key="perf_training")
        peaks = (b.get("training_throughput") or {}).get("peak_gflops") or {}
        if peaks.get("fp32") and peaks.get("bf16"):
            st.caption(f"Share of the peak: the work done per second (a training step counts as three forward passes, "
                       f"padding included) against this machine's matmul rate in the method's own precision, fp32 "
                       f"{peaks['fp32']:.0f} or bf16 {peaks['bf16']:.0f} GFLOP/s. bf16 does more work per second at a "
                       "smaller share of its higher peak.")
        st.download_button("Training comparison (CSV)", pv.training_table(b).to_csv(index=False).encode(),
                           f"{run.run_id}_training_throughput.csv", "text/csv", on_click="ignore",
                           icon=":material/download:", key="dl_training_csv")
    with st.expander("Compute: achieved GFLOP/s against this machine's matmul rate"):
        st.caption("FLOPs are counted from the models' shapes (the matrix multiplications of one forward pass); "
                   "batch-1 latency includes tokenisation, so these are lower bounds.")
        st.plotly_chart(pv.compute_figure(b), width="stretch", key="perf_compute")
    with st.expander("bench.json"):
        st.json(b, expanded=1)


def classic_pair_ui(run) -> None:
    st.subheader("The classic pair: bert-base vs distilbert-base shapes")
    try:
        b = app.bench(run.path, "bert-base")
    except RunError as e:
        st.warning(f"bench_bert-base.json is unreadable: {e}")
        return
    if b is None:
        st.caption("How fast would a bert-base-uncased → distilbert-base-uncased pair be here? Measure "
                   f"random-weight models of their shapes (no download): `{command(run.run_id, 'bert-base')}`.")
        return
    st.caption(pv.machine_caption(b))
    sp = b.get("speedup") or {}
    cols = st.columns(3)
    for col, (key, label) in zip(cols, (("student_vs_teacher", "distilbert-base vs bert-base"),
                                        ("int8_vs_student", "int8 vs fp32 distilbert-base"),
                                        ("int8_vs_teacher", "int8 distilbert-base vs bert-base"))):
        if sp.get(f"{key}_max_len"):
            col.metric(label, f"{sp[f'{key}_max_len']:.2f}× faster", f"{sp.get(f'{key}_median_len') or 0:.2f}× at median length",
                       delta_color="off", delta_arrow="off")
    left, right = st.columns(2)
    left.plotly_chart(pv.latency_figure(b), width="stretch", key="classic_latency")
    right.plotly_chart(pv.throughput_figure(b), width="stretch", key="classic_throughput")


PRUNE_FORMATS = {
    "Amount": st.column_config.NumberColumn(format="%.2f"),
    "Sparsity": st.column_config.NumberColumn(format="percent", help="Zeros among the pruned weights (every Linear "
                                              "and LSTM weight matrix)"),
    "Validation accuracy": st.column_config.NumberColumn(format="percent"),
    "Test accuracy": st.column_config.NumberColumn(format="percent"),
    "Validation macro-F1": st.column_config.NumberColumn(format="%.3f"),
    "Test macro-F1": st.column_config.NumberColumn(format="%.3f"),
    "Agreement with dense": st.column_config.NumberColumn(format="percent", help="Test texts where the pruned model "
                                                          "predicts what the unpruned one does"),
    "p50 ms": st.column_config.NumberColumn(format="%.2f", help="Batch 1 on CPU, tokenisation included"),
    "p95 ms": st.column_config.NumberColumn(format="%.2f"),
    "Size (MB)": st.column_config.NumberColumn(format="%.2f", help="model.safetensors as written"),
    "Compressed (MB)": st.column_config.NumberColumn(format="%.2f", help="model.safetensors compressed with zlib"),
    "Parameters": st.column_config.NumberColumn(format="compact"),
    "Non-zero parameters": st.column_config.NumberColumn(format="compact"),
}


def pruning_ui(run) -> None:
    """``prune``'s figures for the run's models that have them; else the command that makes them."""
    st.subheader("Pruning")
    found = {k: p for k in run.models if (p := app.pruning(run.path, k)) is not None}
    if not found:
        kind = "student" if "student" in run.models else next(iter(run.models), "student")
        st.caption("How much accuracy survives zeroing the smallest weights, and does it make the model faster or "
                   f"smaller? Measure it: `python -m distill_core prune {run.run_id} --model {kind}`.")
        return
    kind = next(iter(found)) if len(found) == 1 else st.radio(
        "Pruned model", list(found), format_func=lambda k: MODEL_TITLES.get(k, k), horizontal=True, key="prune_model")
    p = found[kind]
    s = p.get("settings") or {}
    st.caption(f"{MODEL_TITLES.get(kind, kind)}, {s.get('method')} on every Linear and LSTM weight matrix; "
               f"{p.get('validation_rows')} validation and {p.get('test_rows')} test texts; batch-1 p50 on CPU "
               f"({s.get('torch_threads')} threads), tokenisation included; measured {p.get('when')}.")
    if note := pruning_note(p):
        st.info(note, icon=":material/compress:")
    st.plotly_chart(pruning_figure(p), width="stretch", key="perf_pruning")
    table = pruning_table(p)
    st.dataframe(table, hide_index=True, width="stretch", column_config=PRUNE_FORMATS)
    left, right = st.columns(2)
    left.download_button("Pruning figure (PNG)", lambda: pruning_png(p), f"{run.run_id}_pruning_{kind}.png",
                         "image/png", on_click="ignore", icon=":material/image:", key="dl_prune_png")
    right.download_button("Pruning table (CSV)", table.to_csv(index=False).encode(), f"{run.run_id}_pruning_{kind}.csv",
                          "text/csv", on_click="ignore", icon=":material/download:", key="dl_prune_csv")
    if p.get("saved"):
        st.caption(f"The model pruned at {p['saved']['amount']:g} is kept in `{p['saved']['folder']}/` of the run.")


def main() -> None:
    st.title("Performance")
    run = app.require_run()
    if run is None:
        return
    if err := st.session_state.pop("bench_error", None):
        st.error("The benchmark failed:")
        st.code(err)
    if refused := st.session_state.pop("bench_refused", None):
        st.warning(refused, icon=":material/hourglass_top:")
    running = read_progress(run.path, "bench") is not None or _own_job(run.run_id) is not None
    if running:
        progress_ui(run)
    with app.friendly_errors("Benchmark"):
        b = app.bench(run.path)
        if b is None:
            if not running:
                no_bench_ui(run)
        else:
            bench_ui(run, b)
    with app.friendly_errors("Classic pair"):
        classic_pair_ui(run)
    with app.friendly_errors("Pruning"):
        pruning_ui(run)


if __name__ == "__main__":
    main()
