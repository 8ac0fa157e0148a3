"""The GPU check (``python -m distill_core.bench.gpu_check``) at ``--smoke`` sizes on the CPU: every part runs on tiny
models and the one JSON it writes has each part's figures, of the right kind. How fast anything is gets read off a
real GPU's JSON, never asserted here."""

from __future__ import annotations

import json
import shlex

import pytest
import torch

from distill_core.bench import gpu_check


def _fraction(x) -> bool:
    return x is not None and 0.0 <= x <= 1.0


def test_smoke_check_trains_benches_and_writes_one_json(dataset_dir, teacher_dir, tmp_path, capsys):
    out = tmp_path / "figures" / "check.json"
    train = ["--dataset", str(dataset_dir), "--teacher", str(teacher_dir), "--epochs", "1", "--student-epochs", "1",
             "--lr", "1e-3", "--student-lr", "1e-3", "--batch-size", "8", "--eval-batch-size", "16", "--max-length", "32"]
    code = gpu_check.main(["--out", str(out), "--smoke", "--device", "cpu", "--output-dir", str(tmp_path / "runs"),
                           "--train-args", shlex.join(train)])
    data = json.loads(out.read_text())
    assert code == 0 and data["errors"] == [], {k: v for k, v in data.items() if isinstance(v, dict) and "error" in v}
    assert data["smoke"] is True and data["device"] == "cpu" and data["wall_s"] > 0
    printed = capsys.readouterr().out
    assert f"wrote {out.resolve()}" in printed and "bert-base batch 8" in printed

    env = data["environment"]
    assert {"device_name", "torch", "torch_cuda", "transformers", "onnxruntime", "onnxruntime_providers"} <= set(env)
    assert env["matmul_gflops"]["fp32"] > 0

    quick = data["quick_run"]
    assert quick["wall_s"] > 0 and "--preset quick" in quick["command"]
    assert set(quick["models"]) == {"teacher", "student", "baseline"}
    for m in quick["models"].values():
        assert m["train_time_s"] > 0 and m["train_samples_per_s"] > 0 and m["steps"] > 0
        assert _fraction(m["test_accuracy"]) and _fraction(m["data_share"])
        assert set(m["phases_s"]) >= {"data", "forward", "backward", "optimizer"}

    bench = data["bench"]
    assert set(bench["models"]) == {"teacher", "student", "student_int8"}
    assert all(m["device"] == "cpu" and m["throughput_texts_per_s"] > 0 for m in bench["models"].values())
    training = bench["training"]
    assert training["device"] == "cpu" and training["batch_size"] == 32
    for m in training["methods"].values():
        assert m["device"] == "cpu" and m["samples_per_s"] > 0 and m["gflops_per_s"] > 0
    assert training["trainer_args"]["train_batch_size"] == training["batch_size"]
    assert any("teacher training on cpu" in line for line in bench["table"])

    bert = data["bert_base"]
    assert bert["shape"] == gpu_check.TINY_SHAPE and bert["parameters"] > 0
    assert set(bert["batches"]) == {"4", "8"}
    for row in bert["batches"].values():
        assert _fraction(row["real_token_share"]) and row["real_token_share"] > 0
        for method in ("pipeline", "bare_loop"):
            assert row[method]["samples_per_s"] > 0 and row[method]["gflops_per_s"] > 0
            assert row[method]["timed_steps"] == 3 and row[method]["peak_share"] > 0
        assert _fraction(row["pipeline"]["data_share"]) and row["pipeline_vs_bare_loop"] > 0

    scoring = data["scoring"]
    assert scoring["texts"] > 0 and set(scoring["models"]) == {"teacher", "student", "baseline"}
    for m in scoring["models"].values():
        assert m["seconds"] > 0 and m["texts_per_s"] > 0 and _fraction(m["accuracy"])


def test_a_failing_part_is_recorded_and_the_others_still_run(tiny_run, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no such kernel")

    monkeypatch.setattr(gpu_check, "bert_base", broken)
    monkeypatch.setattr(gpu_check, "bench", lambda run_dir, settings: {"skipped": True})
    out = tmp_path / "check.json"
    assert gpu_check.main(["--out", str(out), "--smoke", "--device", "cpu", "--run", str(tiny_run)]) == 1
    data = json.loads(out.read_text())
    assert data["errors"] == ["bert-base training"] and data["bert_base"] == {"error": "RuntimeError: no such kernel"}
    assert set(data["scoring"]["models"]) == {"teacher", "student", "baseline"}
    assert set(data["quick_run"]["models"]) == {"teacher", "student", "baseline"}  # the run's own figures


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_the_full_check_refuses_in_one_line(tmp_path, capsys):
    assert gpu_check.main(["--out", str(tmp_path / "check.json")]) == 2
    assert "sees no GPU" in capsys.readouterr().out and not (tmp_path / "check.json").exists()
