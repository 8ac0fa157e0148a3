"""Decisions stand on what is on disk now; a process that is gone is not shown alive; jobs on one run know about
each other.

1. ``check``, ``train --unless-complete``, the Overview's ship checks, ``serve`` and ``export`` refuse a damaged or
   unfinished run, and figures computed from other weights than those on disk (``fingerprints``).
2. A pid is recorded with its process's start time, so a reused pid is not trusted; the dashboard reaps its children.
3. One job of each kind at a time on a run (``locks``), refused plainly with nothing lost; sweeps with another
   schedule are kept beside the earlier one; run ids never collide; duplicate grid values are trained once.

Tiny data and models (``conftest``); every run here is a copy of the tiny fixture run, changed in the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import train_args
from distill_core import jobs
from distill_core.cli import CHECK_FAILED, CHECK_UNSURE, main
from distill_core.fingerprints import BENCH_KINDS, complete_run_like, record, standing
from distill_core.locks import JobBusy, acquire, holder, job_lock
from distill_core.runs import load_run, read_progress, set_status, sweep_path, write_progress


def copy_run(tiny_run: Path, root: Path) -> Path:
    run = root / tiny_run.name
    shutil.copytree(tiny_run, run)
    return run


def shippable(run: Path) -> Path:
    """Make the copy pass every check: a student that finds every class, a finished curve, a fast bench measured
    on these weights."""
    from test_evidence import _curve

    results = json.loads((run / "results.json").read_text())
    student = results["models"]["student"]
    student["per_class"] = {n: {**m, "f1-score": 0.9} for n, m in student["per_class"].items()}
    student.setdefault("training", {})["validation"] = _curve([0.8, 0.9, 0.89, 0.88], stopped=True)
    (run / "results.json").write_text(json.dumps(results))
    (run / "bench.json").write_text(json.dumps({"speedup": {"student_vs_teacher_median_len": 1.8},
                                                "int8": {"accuracy_drop_points": 0.1}, "settings": {"median_tokens": 9},
                                                "weights": record(run, BENCH_KINDS)}))
    return run


def retrain(run: Path, kind: str) -> None:
    """Other weights in ``kind``'s folder, still a whole, loadable model (as a re-trained one would be)."""
    from safetensors.torch import load_file, save_file

    path = run / kind / "model.safetensors"
    tensors = load_file(path)
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 0.01
    save_file(tensors, path, metadata={"format": "pt"})


CHECK = ["--max-drop", "100", "--min-agreement", "1"]


# ----------------------------------------------------------------------------- 1. decisions on what is on disk


def test_check_refuses_a_run_whose_student_weights_are_truncated(tmp_path, tiny_run, capsys):
    run = shippable(copy_run(tiny_run, tmp_path))
    assert main(["check", str(run), *CHECK]) == 0 and "Ready to ship." in capsys.readouterr().out
    weights = run / "student" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert main(["check", str(run), *CHECK]) == CHECK_FAILED
    out = capsys.readouterr().out
    assert "Ready to ship" not in out and "is damaged" in out and "student/model.safetensors" in out
    assert load_run(run).status == "damaged"  # what `runs` says, and now what `check` says too


def test_check_refuses_figures_computed_from_other_weights_and_evaluate_refreshes_them(tmp_path, tiny_run, capsys):
    run = shippable(copy_run(tiny_run, tmp_path))
    retrain(run, "student")
    assert main(["check", str(run), *CHECK]) == CHECK_FAILED
    out = capsys.readouterr().out
    assert ("results.json was computed from other weights than student/model.safetensors now holds: run "
            f"`python -m distill_core evaluate {run.name}`") in out
    assert "Ready to ship" not in out
    assert main(["evaluate", str(run)]) == 0
    capsys.readouterr()
    s = standing(run)
    assert s.ok and s.results is not None
    # bench.json was measured on the earlier student: its speed and int8 figures count as not measured
    assert s.bench is None and any("bench.json was computed from other weights" in n for n in s.notes)


def test_bench_figures_of_other_weights_count_as_not_measured(tmp_path, tiny_run, capsys):
    run = shippable(copy_run(tiny_run, tmp_path))
    retrain(run, "student")
    results = json.loads((run / "results.json").read_text())
    results["weights"] = record(run, ["teacher", "student", "baseline"])  # as if evaluated again
    (run / "results.json").write_text(json.dumps(results))
    assert main(["check", str(run), *CHECK]) == CHECK_UNSURE  # no check fails: the stale bench's are not measured
    out = capsys.readouterr().out
    assert "NOT MEASURED  Speed-up over the teacher" in out
    assert f"bench.json was computed from other weights than student/model.safetensors now holds: run " \
           f"`python -m distill_core bench {run.name}`" in out


def test_files_written_before_fingerprints_cannot_be_confirmed(tmp_path, tiny_run, capsys, caplog):
    run = shippable(copy_run(tiny_run, tmp_path))
    results = json.loads((run / "results.json").read_text())
    del results["weights"]
    (run / "results.json").write_text(json.dumps(results))
    assert main(["check", str(run), *CHECK]) == CHECK_FAILED
    out = capsys.readouterr().out
    assert "cannot be confirmed: run `python -m distill_core evaluate" in out and "Ready to ship" not in out
    assert "Traceback" not in out + caplog.text


def test_a_copied_run_keeps_its_figures_current(tmp_path, tiny_run):
    run = tmp_path / "copied"
    shutil.copytree(tiny_run, run, copy_function=shutil.copy)  # new modification times, the same bytes
    assert standing(run).ok


def test_unless_complete_counts_only_a_run_with_these_settings_and_current_figures(tmp_path, tiny_run, dataset_dir,
                                                                                   teacher_dir, caplog):
    from distill_core.cli import build_parser
    from distill_core.flags import config_from_args
    from distill_core.runs import list_runs

    def asked(*extra):
        return config_from_args(build_parser().parse_args(train_args(dataset_dir, teacher_dir, tmp_path, "again",
                                                                     "--unless-complete", *extra))).validate()

    run = copy_run(tiny_run, tmp_path)
    assert complete_run_like(asked(), list_runs(tmp_path))[0].run_id == run.name
    done, skipped = complete_run_like(asked("--temperature", "3"), list_runs(tmp_path))
    assert done is None and "kd.temperature 2.0 there, 3.0 asked" in skipped[0]
    retrain(run, "baseline")
    done, skipped = complete_run_like(asked(), list_runs(tmp_path))
    assert done is None and "computed from other weights than baseline/model.safetensors" in skipped[0]
    # the command trains a new run rather than trusting the stale one, and says why
    caplog.set_level("INFO")
    assert main(train_args(dataset_dir, teacher_dir, tmp_path, "again", "--unless-complete")) == 0
    assert load_run(tmp_path / "again").status == "complete"
    assert "Not counted as done" in caplog.text


def test_overview_ship_checks_refuse_figures_of_other_weights(runs, run_dir):
    from test_dashboard import OVERVIEW, open_app, texts

    retrain(run_dir, "student")
    at = open_app(OVERVIEW)
    assert "results.json was computed from other weights than student/model.safetensors" in texts(at.warning)
    assert "Not checked" in texts(at.error)
    assert not any("Accuracy drop from the teacher" in str(e.value) for e in [*at.success, *at.info, *at.error])


def test_serve_refuses_a_run_still_training_and_leaves_stale_figures_out(tmp_path, tiny_run, monkeypatch, caplog):
    import uvicorn

    from distill_core.ship import serve

    seen = {}
    real = serve.create_app
    monkeypatch.setattr(serve, "create_app", lambda about, *a, **kw: seen.update(about=about) or real(about, *a, **kw))
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: None)  # start-up only: no port held
    run = copy_run(tiny_run, tmp_path)
    retrain(run, "student")
    assert main(["serve", str(run), "--port", "0"]) == 0
    assert seen["about"]["test_accuracy"] is None and "/info leaves the test figures out" in caplog.text
    seen.clear()
    set_status(run, "running", "baseline")  # this process: alive
    assert main(["serve", str(run), "--port", "0"]) == 2
    assert "is still training" in caplog.text and not seen


def test_export_refuses_a_damaged_run(tmp_path, tiny_run, caplog):
    run = copy_run(tiny_run, tmp_path)
    weights = run / "baseline" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert main(["export", str(run), "--model", "student", "--threads", "1"]) == 2
    assert "is damaged" in caplog.text and "baseline/model.safetensors" in caplog.text
    assert not (run / "student" / "onnx").exists()


# ----------------------------------------------------------------------------- 2. processes that are gone


def test_a_reused_pid_is_not_taken_for_the_job_that_wrote_it(tmp_path, tiny_run):
    run = copy_run(tiny_run, tmp_path)
    set_status(run, "running", "student")
    write_progress(run, "train", 0.5, "halfway")
    st = json.loads((run / "status.json").read_text())
    assert st["pid"] == os.getpid() and st["started"] is not None
    assert load_run(run).status == "running" and read_progress(run, "train") is not None
    for name in ("status.json", ".progress-train.json"):  # the same pid, started long before this process
        d = json.loads((run / name).read_text())
        d["started"] -= 3600
        (run / name).write_text(json.dumps(d))
    info = load_run(run)
    assert info.status == "failed" and "is gone" in info.error
    assert read_progress(run, "train") is None
    with job_lock(run, "bench"):
        d = json.loads((run / ".lock-bench").read_text())
        assert holder(run, "bench")["pid"] == os.getpid()
        (run / ".lock-bench").write_text(json.dumps({**d, "started": d["started"] - 3600}))
        assert holder(run, "bench") is None


def test_the_dashboards_children_are_reaped_without_anyone_polling(tmp_path, monkeypatch):
    import psutil

    monkeypatch.setattr(jobs, "ENTRY", [sys.executable, "-c", "pass"])
    proc = jobs.launch(["train"], tmp_path / "job.log")
    deadline = time.monotonic() + 30
    state = "running"
    while time.monotonic() < deadline:
        try:
            state = psutil.Process(proc.pid).status()
        except psutil.NoSuchProcess:
            state = "gone"
            break
        time.sleep(0.05)
    assert state == "gone"  # exited and reaped: never a zombie, though no page polled it


# ----------------------------------------------------------------------------- 3. jobs on one run


def snapshot(run: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(run)): (p.stat().st_mtime_ns, p.stat().st_size) for p in run.rglob("*")
            if p.is_file() and not p.name.startswith(".lock-")}


@pytest.mark.parametrize("kind, args", [
    ("sweep", ["sweep", "RUN", "--temperature", "2", "--alpha", "0.5"]),
    ("bench", ["bench", "RUN", "--skip-training", "--repeats", "2", "--warmup", "0"]),
    ("prune", ["prune", "RUN", "--amount", "0.5"]),
    ("export", ["export", "RUN", "--threads", "1"]),
    ("evaluate", ["evaluate", "RUN"]),
])
def test_a_second_job_of_a_kind_on_a_run_is_refused_and_loses_nothing(tmp_path, tiny_run, caplog, kind, args):
    run = copy_run(tiny_run, tmp_path)
    before = snapshot(run)
    with job_lock(run, kind):
        assert main([str(run) if a == "RUN" else a for a in args]) == 2
    assert f"is already running on {run.name} (pid {os.getpid()}, since " in caplog.text
    assert "wait for it or stop it" in caplog.text and "Traceback" not in caplog.text
    assert snapshot(run) == before


def test_no_job_starts_while_the_run_trains(tmp_path, tiny_run, caplog):
    run = copy_run(tiny_run, tmp_path)
    set_status(run, "running", "baseline")  # this process: alive
    before = snapshot(run)
    assert main(["bench", str(run), "--skip-training"]) == 2
    assert f"Run {run.name} is still training (stage baseline, pid {os.getpid()}" in caplog.text
    assert snapshot(run) == before


def test_a_job_started_with_the_lock_holds_it_and_a_second_is_refused(tmp_path, tiny_run):
    run = copy_run(tiny_run, tmp_path)
    lock = acquire(run, "bench")
    script = ("import json, sys, time; from distill_core.locks import acquire; lock = acquire(sys.argv[1], 'bench'); "
              "print('holding', flush=True); time.sleep(30)")
    child = subprocess.Popen([sys.executable, "-c", script, str(run)], stdout=subprocess.PIPE, text=True,
                             **lock.popen_kwargs(dict(os.environ)))
    lock.hand_to(child.pid)
    try:
        assert child.stdout.readline().strip() == "holding"  # it adopted the lock it was started with
        assert holder(run, "bench")["pid"] == child.pid
        with pytest.raises(JobBusy, match=f"A benchmark is already running on {run.name} \\(pid {child.pid}"):
            acquire(run, "bench")
    finally:
        child.kill()
        child.wait()
    acquire(run, "bench").release()  # its process gone, the lock is free


def test_two_dashboard_benches_on_one_run(tmp_path, tiny_run, monkeypatch):
    monkeypatch.setattr(jobs, "ENTRY", [sys.executable, "-c", "import time; print('first bench', flush=True); "
                                                           "time.sleep(30)"])
    run = copy_run(tiny_run, tmp_path)
    first = jobs.start_bench(run)
    try:
        with pytest.raises(JobBusy, match=f"A benchmark is already running on {run.name} \\(pid {first.process.pid}"):
            jobs.start_bench(run)
        deadline = time.monotonic() + 20
        while "first bench" not in first.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "first bench" in first.log.read_text()  # the refused one did not take over its log
    finally:
        first.process.kill()
        first.process.wait()
    monkeypatch.setattr(jobs, "ENTRY", [sys.executable, "-c", "pass"])
    jobs.start_bench(run).process.wait(timeout=30)  # the first one gone, a bench may start again


def test_the_dashboards_buttons_show_the_refusal(runs, run_dir):
    from test_dashboard import open_app, texts

    at = open_app("app_pages/performance.py")
    with job_lock(run_dir, "bench"), job_lock(run_dir, "sweep"):
        next(b for b in at.button if b.label == "Run the benchmark now").click().run()
        assert f"A benchmark is already running on {run_dir.name} (pid {os.getpid()}" in texts(at.warning)
        at.switch_page("app_pages/sweep.py").run()
        next(b for b in at.button if b.label == "Start the sweep").click().run()
        assert f"A sweep is already running on {run_dir.name} (pid {os.getpid()}" in texts(at.warning)
    assert not at.exception and not (run_dir / "bench.json").exists() and not (run_dir / "sweep").exists()


def test_two_trains_in_the_same_second_get_two_runs_and_two_logs(tmp_path, monkeypatch):
    from distill_core.errors import RunError
    from distill_core.runs import create_run_dir

    launched = []

    class FakePopen:
        pid = 0

        def __init__(self, cmd, **kwargs):
            launched.append(cmd)

        def wait(self):
            return 0

    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    monkeypatch.setattr(jobs, "new_run_id", lambda *a, **kw: "20260101-204100_ag_news_quick")  # the same second
    a, b = jobs.start_train(root=tmp_path), jobs.start_train(root=tmp_path)
    assert a.run_id != b.run_id and a.log != b.log
    assert [c[c.index("--run-id") + 1] for c in launched] == [a.run_id, b.run_id]
    # the run folder itself is claimed exclusively: a name asked for is refused, one chosen here moves on
    first = create_run_dir(tmp_path, "same", chosen=False)
    assert create_run_dir(tmp_path, "same", chosen=False) != first
    with pytest.raises(RunError, match="choose another --run-id"):
        create_run_dir(tmp_path, "same", chosen=True)


def test_duplicate_grid_values_are_trained_once(caplog):
    from distill_core.train.sweep import SweepSettings

    s = SweepSettings(temperatures=[2.0, 2.0, 4.0], alphas=[0.5, 0.5]).validate()
    assert s.cells() == [(1.0, 0.0), (2.0, 0.5), (4.0, 0.5)]
    assert "--alpha 0.5,0.5 lists a value more than once; each cell is trained once: 0.5" in caplog.text


class _FakeCells:
    """Stands in for the sweep's data and training: each cell 'trains' at once."""

    metric = "accuracy"
    val_labels = np.array([0, 1, 0, 1])

    def __init__(self, cfg, run_dir):
        pass

    def train_cell(self, t, a, epochs):
        pred = [0, 1, 0, 1] if a else [0, 0, 0, 0]
        return object(), {"temperature": t, "alpha": a, "train_time_s": 0.0, "steps": 1, "best_step": 1,
                          "val_accuracy": 1.0 if a else 0.5, "val_macro_f1": 1.0 if a else 0.33,
                          "val_agreement": 1.0, "val_pred": pred}

    def test_figures(self, models, cell, epochs):
        return {"test_accuracy": 0.9, "test_macro_f1": 0.9}


def test_a_sweep_with_another_schedule_keeps_the_earlier_one(tmp_path, tiny_run, monkeypatch, caplog):
    from distill_core.train import sweep

    monkeypatch.setattr(sweep, "_Context", _FakeCells)
    run = copy_run(tiny_run, tmp_path)
    first = sweep.run_sweep(run, sweep.SweepSettings(temperatures=[2.0], alphas=[0.5], epochs=2.0))
    assert first["best"]["test_accuracy"] == 0.9
    second = sweep.run_sweep(run, sweep.SweepSettings(temperatures=[4.0], alphas=[0.9], epochs=1.0))
    kept = sweep_path(run, first["created"])
    assert json.loads(kept.read_text()) == json.loads(json.dumps(first))  # cells, choice and test figure, whole
    assert json.loads(sweep_path(run).read_text())["schedule"]["epochs"] == 1.0 == second["schedule"]["epochs"]
    assert f"it is kept as sweep/{kept.name}" in caplog.text
