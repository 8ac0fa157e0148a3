"""The dashboard's cached loaders (``distill_core.app``) and job helpers on the tiny fixture run.

No Streamlit server: cached loaders run in Streamlit's bare mode.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

from distill_core import app, jobs
from distill_core.errors import InputError, RunError
from distill_core.runs import load_run, set_status, write_progress
from distill_core.views import runs as rv
from test_views import BENCH


# ----------------------------------------------------------------------------- loaders on a real run


def test_predict_attention_and_batch_on_the_tiny_run(tiny_run):
    out = app.predict(tiny_run, "student", "the team won the cup .")
    assert out.label in ["World", "Sports", "Business", "Sci/Tech"] and out.probs.shape == (4,) and out.ms > 0
    att = app.attention(tiny_run, "teacher", "the team won the cup .")
    assert att.attentions.shape[:2] == (4, 4) and att.tokens[0] == "[CLS]"
    assert app.layer_map(tiny_run, "student") == [0, 2]
    table = app.classify_batch(tiny_run, ["teacher", "student"], ["stocks fell", "the team won"])
    assert list(table.columns) == ["text", "Teacher", "Teacher confidence", "Distilled student",
                                   "Distilled student confidence", "All agree"]
    with pytest.raises(InputError, match="empty"):
        app.predict(tiny_run, "teacher", "   ")


def test_missing_model_is_a_run_error_with_the_fix(tiny_run, tmp_path):
    run = tmp_path / tiny_run.name
    shutil.copytree(tiny_run, run)
    shutil.rmtree(run / "baseline")
    with pytest.raises(RunError, match="baseline student .* is missing .* --models baseline"):
        app.classifier(run, "baseline")
    (run / "student" / "model.safetensors").write_bytes(b"not a model")
    with pytest.raises(RunError, match="could not be loaded"):
        app.classifier(run, "student")


def test_metrics_cache_picks_up_a_growing_csv(tiny_run, tmp_path):
    run = tmp_path / tiny_run.name
    shutil.copytree(tiny_run, run)
    before = app.metrics(run, "teacher", "train")
    path = run / "teacher_train.csv"
    last = path.read_text().splitlines()[-1].split(",")
    last[0] = str(int(last[0]) + 1)
    time.sleep(0.01)
    with open(path, "a") as f:
        f.write(",".join(last) + "\n")
    assert len(app.metrics(run, "teacher", "train")) == len(before) + 1


def test_predictions_and_bench_loaders(tiny_run, tmp_path):
    run = tmp_path / tiny_run.name
    shutil.copytree(tiny_run, run)
    assert len(app.predictions_table(run)) == 24 and app.bench(run) is None
    (run / "bench.json").write_text(json.dumps(BENCH))
    assert app.bench(run)["models"]["student"]["throughput_texts_per_s"] == 100
    (run / "predictions.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(RunError, match="could not be read"):
        app.predictions_table(run)


def test_training_progress_follows_the_runs_own_report(tiny_run, tmp_path):
    run = tmp_path / tiny_run.name
    shutil.copytree(tiny_run, run)
    assert jobs.training_progress(run).fraction == 1.0  # complete
    set_status(run, "running", "student")
    assert jobs.training_progress(run).fraction == 0.0  # no report yet
    # 57 train rows / batch 8 = 8 steps per epoch, 2 epochs each: teacher 16 + student 16 of 48 steps.
    write_progress(run, "train", 32 / 48, "stage student, 32/48 optimizer steps")
    p = jobs.training_progress(run)
    assert p.fraction == pytest.approx(32 / 48) and "student" in p.message
    assert load_run(run).status == "running"


def test_run_details_markdown(tiny_run):
    md = rv.run_details_markdown(load_run(tiny_run))
    for part in ("tiny_news", "World, Sports, Business, Sci/Tech", "Distilled student", "from teacher layers 1, 3 (counting from 1)",
                 "T = 2.0, alpha = 0.5"):
        assert part in md


def test_start_train_runs_the_default_preset_from_the_project(monkeypatch, tmp_path):
    import subprocess

    from distill_core.config import PROJECT_ROOT, data_dir

    calls = {}

    class FakePopen:
        pid = 0

        def __init__(self, cmd, **kwargs):
            calls.update(cmd=cmd, **kwargs)

        def wait(self):  # what the reaper thread calls
            return 0

    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    monkeypatch.setenv("DISTILL_RUNS_DIR", str(tmp_path))
    monkeypatch.setenv("DISTILL_DATA_DIR", "/somewhere/data")
    job = jobs.start_train()
    assert calls["cmd"][1:] == ["-m", "distill_core", "train", "--preset", "quick", "--run-id", job.run_id]
    assert job.run_dir == tmp_path / job.run_id  # the page follows this run, whatever else starts meanwhile
    assert calls["cwd"] == PROJECT_ROOT and calls["env"]["DISTILL_DATA_DIR"] == "/somewhere/data"
    assert job.log.is_relative_to(tmp_path) and job.log.parent.name.startswith(".")  # hidden: never listed as a run
    monkeypatch.delenv("DISTILL_DATA_DIR")
    shared = PROJECT_ROOT.parent / "shared" / "data"
    assert data_dir() == (shared if shared.is_dir() else None)
