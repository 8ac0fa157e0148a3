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
