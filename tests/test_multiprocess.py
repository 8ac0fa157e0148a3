"""Training under ``accelerate launch`` with two CPU processes (gloo): the schedule counts the steps each process
takes after sharding, and the run folder is complete and written once.

``--multi_gpu`` selects accelerate's torch.distributed launcher; with no GPU the processes run on the CPU over gloo.
(``--cpu --num_processes 2`` starts a single process in accelerate 1.x unless an MPI hostfile is given.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from conftest import train_args

ACCELERATE = shutil.which("accelerate", path=os.path.dirname(sys.executable))


@pytest.mark.skipif(ACCELERATE is None, reason="the accelerate command is not installed beside this Python")
def test_two_processes_shard_the_epochs_and_write_one_complete_run(tmp_path, dataset_dir, teacher_dir):
    args = train_args(dataset_dir, teacher_dir, tmp_path, "two")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "distill_core", *args],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "two"
    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    # 57 training rows (64 less the 10% validation carve) in batches of 8 are 8 batches an epoch; two processes take
    # 4 each, so 2 epochs are 8 optimizer steps, logged once (by the main process), not 16 and not twice.
    for kind in ("teacher", "student", "baseline"):
        rows = pd.read_csv(run / f"{kind}_train.csv")
        assert list(rows["step"]) == list(range(1, 9)), kind
        assert rows["epoch"].iloc[-1] == 2
    results = json.loads((run / "results.json").read_text())
    assert set(results["models"]) == {"teacher", "student", "baseline"} and results["test_rows"] == 24
    assert results["models"]["teacher"]["training"]["steps"] == 8
    assert not [p for p in run.iterdir() if p.name.startswith(".") and p.suffix == ".tmp"]


@pytest.mark.skipif(ACCELERATE is None, reason="the accelerate command is not installed beside this Python")
def test_two_processes_match_one_process_at_the_same_global_batch(tmp_path, dataset_dir, tiny_run):
    """Two processes at batch 8 against one at batch 16, the same given teacher: the same teacher figures to the
    last digit (its cached logits and test scores are shared out and gathered, not computed per process), the same
    schedule and examples counted globally, and students within a tolerance.

    The tolerance: the two runs see the same rows per epoch and the same global batch size, but not the same rows in
    each batch (accelerate deals whole batches of 8 to the processes, one process groups 16 by length), so their
    trajectories differ like two seeds' would. On these 24 test texts one text is 4.2 points; the students may
    differ by up to 3 texts (12.5 points), well inside the spread across seeds of models this small.
    """
    extra = ("--teacher", str(tiny_run / "teacher"), "--models", "student,baseline")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    two = train_args(dataset_dir, dataset_dir, tmp_path, "two", *extra)
    proc = subprocess.run([ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "distill_core", *two],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = train_args(dataset_dir, dataset_dir, tmp_path, "one", *extra, "--batch-size", "16", "--mixed-precision", "no")
    proc = subprocess.run([sys.executable, "-m", "distill_core", *one], capture_output=True, text=True, timeout=600,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (json.loads((tmp_path / r / "results.json").read_text())["models"] for r in ("two", "one"))
    assert a["teacher"]["accuracy"] == b["teacher"]["accuracy"]
    assert a["teacher"]["macro_f1"] == b["teacher"]["macro_f1"]
    for kind in ("student", "baseline"):
        ta, tb = a[kind]["training"], b[kind]["training"]
        assert ta["steps"] == tb["steps"] == 8, kind  # 57 rows: 4 global batches of 16 an epoch, 2 epochs
        assert abs(a[kind]["accuracy"] - b[kind]["accuracy"]) <= 3 / 24 + 1e-9, (kind, a[kind], b[kind])
    for r in ("two", "one"):  # examples are counted over all processes: 2 epochs of 57 rows
        rows = pd.read_csv(tmp_path / r / "student_train.csv")
        assert rows["examples_seen"].iloc[-1] in (2 * 57, 2 * 64), (r, rows["examples_seen"].iloc[-1])
