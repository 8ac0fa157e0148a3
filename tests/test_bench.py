"""The benchmark: its pure parts, the whole `bench` command on the tiny run, and the Performance page.

Timings are only checked for sanity (positive, p95 >= p50); how fast each model is gets read off the figures
of a real run, never asserted here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, DistilBertConfig, DistilBertForSequenceClassification

from distill_core.bench import measure, report, settings
from distill_core.bench import run as bench_run
from distill_core.cli import main

PAGE = str(Path(__file__).resolve().parents[1] / "app_pages" / "performance.py")


@pytest.fixture()
def run_copy(tiny_run, tmp_path) -> Path:
    """The session's tiny run copied into a fresh runs folder, so bench.json never leaks between tests."""
    dst = tmp_path / "runs" / tiny_run.name
    shutil.copytree(tiny_run, dst)
    return dst


@pytest.fixture(scope="module")
def benched(tiny_run, tmp_path_factory) -> Path:
    """A copy of the tiny run with a bench.json made by the real CLI (small repeat counts)."""
    dst = tmp_path_factory.mktemp("benched") / tiny_run.name
    shutil.copytree(tiny_run, dst)
    # One thread: tiny models gain nothing from two, and the test stays quick on a busy machine.
    assert main(["bench", str(dst), "--repeats", "3", "--warmup", "1", "--train-steps", "2", "--threads", "1"]) == 0
    return dst


# ----------------------------------------------------------------------------- pure parts


def _linear_weights(module: torch.nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))


@pytest.mark.parametrize("tokens", [1, 7, 32])
def test_forward_flops_counts_every_matmul_of_a_real_model(tokens):
    labels = ["a", "b", "c"]
    bert = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=3,
                                                     num_attention_heads=4, intermediate_size=40, num_labels=3))
    distil = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=50, dim=32, n_layers=2, n_heads=4,
                                                                  hidden_dim=40, num_labels=len(labels)))
    for model, encoder, head, layers in ((bert, bert.bert.encoder, [bert.bert.pooler, bert.classifier], 3),
                                         (distil, distil.distilbert.transformer,
                                          [distil.pre_classifier, distil.classifier], 2)):
        # Every Linear of the encoder runs on every token; the head runs on [CLS] only; plus Q K^T and A V.
        expected = 2 * tokens * _linear_weights(encoder) + sum(2 * _linear_weights(m) for m in head)
        expected += layers * 4 * tokens * tokens * 32
        assert measure.forward_flops(model.config, tokens) == expected


def test_time_calls_times_blocks_that_take_turns():
    calls = []
    out = measure.time_calls({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=7, warmup=3)
    # Warm-up, then 3 rounds of 3 + 2 + 2 timed calls, each block after one untimed call, the order rotating.
    assert calls == ["a"] * 3 + ["b"] * 3 + ["a"] * 4 + ["b"] * 4 + ["b"] * 3 + ["a"] * 3 + ["a"] * 3 + ["b"] * 3
    for stats in out.values():
        assert stats["runs"] == 7 and 0 <= stats["min"] <= stats["p50"] <= stats["p95"]


def test_pick_texts_finds_median_and_builds_a_max_length_text(tokenizer):
    texts = ["stocks rose", "the team won the cup", "a new phone", "oil price fell on friday after talks"]
    picked = measure.pick_texts(texts, tokenizer, max_length=32)
    counts = sorted(len(tokenizer(t)["input_ids"]) for t in texts)
    assert picked["median_tokens"] in counts
    assert abs(picked["median_tokens"] - float(np.median(counts))) <= 1
    # No text reaches 32 tokens, so texts are joined until one does.
    assert len(tokenizer(picked["max_text"], truncation=True, max_length=32)["input_ids"]) == 32


def test_quantize_int8_replaces_linears_and_keeps_predictions_close():
    torch.manual_seed(0)
    model = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=50, dim=32, n_layers=2, n_heads=4,
                                                                 hidden_dim=40, num_labels=3)).eval()
    q = measure.quantize_int8(model)
    assert not any(type(m) is torch.nn.Linear for m in q.modules())
    assert any(type(m) is torch.nn.Linear for m in model.modules()), "the fp32 model must be left as it was"
    ids = torch.randint(5, 50, (2, 9))
    with torch.no_grad():
        diff = (model(input_ids=ids).logits - q(input_ids=ids).logits).abs().max().item()
    assert diff < 0.1
    assert measure.state_dict_bytes(q) < measure.state_dict_bytes(model)


def test_speedups_compare_models_on_the_same_device_only():
    lat = {"latency_ms": {"median_len": {"p50": 4.0}, "max_len": {"p50": 8.0}}, "throughput_texts_per_s": 100.0}
    fast = {"latency_ms": {"median_len": {"p50": 1.0}, "max_len": {"p50": 2.0}}, "throughput_texts_per_s": 400.0}
    models = {"student": {**lat, "device": "cuda"}, "student_int8": {**fast, "device": "cpu"},
              "teacher": {**lat, "device": "cuda"}, "student_onnx": {**fast, "device": "cuda"}}
    sp = report.speedups(models)
    assert sp["int8_vs_student_max_len"] is None and sp["int8_vs_student_throughput"] is None  # CPU int8 vs a GPU row
    assert sp["onnx_vs_student_max_len"] == 4.0 and sp["onnx_vs_student_throughput"] == 4.0
    old = {k: {kk: vv for kk, vv in m.items() if kk != "device"} for k, m in models.items()}  # files without devices
    assert report.speedups(old)["int8_vs_student_max_len"] == 4.0


def test_peak_memory_is_read_on_the_device_and_old_files_fall_back_to_rss():
    assert report.peak_memory({"peak_memory_mb": 812.0, "peak_memory_device": "cuda", "peak_rss_mb": 2900.0}) == 812.0
    assert report.peak_memory({"peak_rss_mb": 300.0}) == 300.0 and report.peak_memory({}) is None


def test_gpu_figures_and_providers_without_a_gpu(monkeypatch):
    measure.sync("cpu")  # a no-op on the CPU
    cpu = {"matmul_gflops": 200.0, "matmul_gflops_bf16": 900.0, "gpu": None}
    assert measure.matmul_peaks(cpu, "cpu") == {"fp32": 200.0, "bf16": 900.0, "fp16": None}
    gpu = {**cpu, "gpu": {"matmul_gflops": 5e4, "matmul_gflops_bf16": 7e5, "matmul_gflops_fp16": 7e5}}
    assert measure.matmul_peaks(gpu, "cuda") == {"fp32": 5e4, "bf16": 7e5, "fp16": 7e5}
    assert measure.matmul_peaks(gpu, "cpu")["fp32"] == 200.0  # a CPU bench on a GPU machine reads the CPU's peak
    assert measure.onnx_providers("cpu") == (["CPUExecutionProvider"], None)
    providers, why = measure.onnx_providers("cuda", int8=True)
    assert providers == ["CPUExecutionProvider"] and "CPU path" in why
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    providers, why = measure.onnx_providers("cuda")
    assert providers == ["CPUExecutionProvider"] and "onnxruntime-gpu" in why
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    providers, why = measure.onnx_providers("cuda")
    assert providers[0] == ("CUDAExecutionProvider", {"device_id": 0}) and why is None


def test_settings_refuse_nonsense():
    with pytest.raises(ValueError, match="--repeats"):
        settings.BenchSettings(repeats=1).validate()
    with pytest.raises(ValueError, match="--train-steps"):
        settings.BenchSettings(train_steps=1).validate()
    settings.BenchSettings(train_steps=1, skip_training=True).validate()


# ----------------------------------------------------------------------------- the command


def test_bench_writes_a_valid_bench_json(benched, capsys):
    data = json.loads((benched / "bench.json").read_text())
    assert set(data["machine"]) >= {"cpu_model", "cores", "torch_threads", "torch", "transformers", "platform"}
    assert set(data["settings"]) >= {"repeats", "warmup", "batch_size", "median_tokens", "max_length", "arch"}
    assert data["settings"]["max_length"] == 32 and data["settings"]["arch"] == "run"
    assert set(data["models"]) == {"teacher", "student", "student_int8", "student_onnx", "student_onnx_int8"}
    for key, m in data["models"].items():
        for length in ("median_len", "max_len"):
            lat = m["latency_ms"][length]
            assert 0 < lat["p50"] <= lat["p95"], (key, lat)
            assert m["flops"][length] > 0 and m["gflops_per_s"][length] > 0
        assert m["latency_ms"]["max_len"]["tokens"] == 32
        assert m["throughput_texts_per_s"] > 0 and m["size_bytes"] > 0 and m["parameters"] > 0
        assert 0 <= m["accuracy"] <= 1 and 0 <= m["macro_f1"] <= 1
        assert m["load_time_s"] > 0 and m["peak_rss_mb"] > m["rss_before_load_mb"] > 0
        # Measured on the device the model ran on, and labelled so: here the CPU and its peak resident memory.
        assert m["device"] == m["peak_memory_device"] == "cpu" and m["peak_memory_mb"] == m["peak_rss_mb"]
    assert data["models"]["student_int8"]["size_bytes"] < data["models"]["student"]["size_bytes"]
    onnx, onnx_int8 = data["models"]["student_onnx"], data["models"]["student_onnx_int8"]
    assert onnx["runtime"] == onnx_int8["runtime"] == "ONNX Runtime" and data["models"]["student"]["runtime"] == "PyTorch"
    assert onnx["parameters"] == onnx_int8["parameters"] == data["models"]["student"]["parameters"]
    assert onnx_int8["size_bytes"] < onnx["size_bytes"]
    # The fp32 graph computes what PyTorch does: the same accuracy on the same texts.
    assert onnx["accuracy"] == data["models"]["student"]["accuracy"]
    assert data["onnx_int8"]["accuracy_drop_points"] == pytest.approx(
        (data["models"]["student"]["accuracy"] - onnx_int8["accuracy"]) * 100)
    assert data["speedup"]["onnx_int8_vs_teacher_median_len"] > 0
    assert any("exported for this bench" in n for n in data["notes"]), "the tiny run has no export of its own"
    assert data["models"]["student_int8"]["quantize_time_s"] > 0
    assert data["speedup"]["student_vs_teacher_max_len"] > 0
    assert data["int8"]["accuracy_drop_points"] is not None
    trial = data["int8"]["engine_trial_ms_max_len"]
    assert data["int8"]["engine"] == min(trial, key=trial.get), "auto picks the faster engine of its trial"
    t = data["training_throughput"]
    assert t["steps"] == 2 and t["batch_size"] == 32 and t["device"] == "cpu"
    assert {m["device"] for m in t["methods"].values()} == {"cpu"} and t["trainer_args"]["train_batch_size"] == 32
    for k in ("pipeline_samples_per_s", "fixed_padding_samples_per_s", "trainer_samples_per_s"):
        assert t[k] > 0
    assert t["padding_efficiency"]["fixed_padding"] < t["padding_efficiency"]["pipeline"] <= 1
    # Each method: samples/s, the work per second and its share of the matmul peak in its own precision.
    methods = t["methods"]
    assert {"pipeline", "fixed_padding", "trainer"} <= set(methods)
    assert methods["trainer"]["mixed_precision"] == "no"
    assert ("pipeline_fp32" in methods) == (t["mixed_precision"] != "no")
    peaks = {"no": data["machine"]["matmul_gflops"], "bf16": data["machine"]["matmul_gflops_bf16"]}
    for m in methods.values():
        assert m["samples_per_s"] > 0 and m["gflops_per_s"] > 0
        assert m["peak_share"] == pytest.approx(m["gflops_per_s"] / peaks[m["mixed_precision"]])
    assert t["pipeline_vs_trainer"] == pytest.approx(methods["pipeline"]["samples_per_s"] / methods["trainer"]["samples_per_s"])
    assert "GFLOP/s" in "\n".join(report.training_lines(t)) and "Trainer defaults (fp32)" in report.format_table(data)
    assert "targets" not in data
    table = report.format_table(data)
    assert "Distilled student, int8" in table and "targets:" not in table
    assert "Distilled student, ONNX int8" in table and "ONNX int8 vs teacher" in table and "ONNX int8 costs" in table
    card = (benched / "student" / "README.md").read_text()  # the bench brings the model cards up to date
    p50 = data["models"]["student_onnx_int8"]["latency_ms"]["median_len"]["p50"]
    assert "## Speed" in card and f"| Distilled student, ONNX int8 | {p50:.2f} |" in card


def test_bench_times_each_onnx_session_in_its_own_block_and_uses_the_runs_export(run_copy, monkeypatch):
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["export", str(run_copy), "--int8", "--threads", "1"]) == 0
    blocks = []
    timed = measure.time_calls

    def recording(fns, *args, **kwargs):
        blocks.append(sorted(fns))
        return timed(fns, *args, **kwargs)

    monkeypatch.setattr(bench_run, "time_calls", recording)
    out = bench_run.run_bench(run_copy, settings.BenchSettings(repeats=2, warmup=0, probe=False, skip_training=True,
                                                               threads=1))
    torch_block = ["student", "student_int8", "teacher"]
    # Median length, then max length: PyTorch's models taking turns, then each ONNX Runtime session on its own.
    assert blocks == [torch_block, torch_block, ["student_onnx"], ["student_onnx"], ["student_onnx_int8"],
                      ["student_onnx_int8"]]
    assert not any("exported for this bench" in n for n in out["notes"])
    verified = json.loads((run_copy / "student" / "onnx" / "export.json").read_text())["verification"]
    assert out["models"]["student_onnx_int8"]["accuracy"] == pytest.approx(verified["onnx_int8"]["accuracy"])
    assert out["models"]["student_onnx_int8"]["size_bytes"] == (run_copy / "student" / "onnx" / "model_int8.onnx").stat().st_size


def test_bench_bert_base_arch_writes_its_own_file(run_copy, monkeypatch):
    # Tiny stand-ins for the bert-base shapes: the code path is what is tested, not bert-base's speed.
    monkeypatch.setitem(settings.ARCH_SHAPES, "bert-base", {
        "teacher": {"hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 37,
                    "max_position_embeddings": 64},
        "student": {"dim": 32, "n_layers": 2, "n_heads": 4, "hidden_dim": 37, "max_position_embeddings": 64},
    })
    monkeypatch.setattr(settings, "BERT_BASE_VOCAB", 200)
    threads = torch.get_num_threads()
    out = bench_run.run_bench(run_copy, settings.BenchSettings(repeats=2, warmup=0, arch="bert-base", probe=False, threads=1))
    assert (run_copy / "bench_bert-base.json").is_file() and not (run_copy / "bench.json").exists()
    assert torch.get_num_threads() == threads, "process-wide torch settings are restored"
    assert out["training_throughput"] is None
    assert out["models"]["teacher"]["architecture"]["layers"] == 4
    assert all(m["accuracy"] is None for m in out["models"].values())


def test_bench_of_a_missing_run_is_one_clear_error(tmp_path, caplog):
    assert main(["bench", "no-such-run", "--output-dir", str(tmp_path)]) == 2
    assert "No run 'no-such-run'" in caplog.text


# ----------------------------------------------------------------------------- the page


def _page(runs_root: Path, run_id: str, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("DISTILL_RUNS_DIR", str(runs_root))
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["run_id"] = run_id
    return at.run()


def test_performance_page_without_bench_says_how_to_make_one(run_copy, monkeypatch):
    at = _page(run_copy.parent, run_copy.name, monkeypatch)
    assert not at.exception
    text = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.code)
    assert f"python -m distill_core bench {run_copy.name}" in text


def test_performance_page_draws_the_bench(benched, monkeypatch):
    at = _page(benched.parent, benched.name, monkeypatch)
    assert not at.exception
    assert len(at.get("plotly_chart")) >= 5
    assert any("Distilled student, int8" in str(df.value) for df in at.dataframe)
    assert any("Distilled student, ONNX int8" in str(df.value) for df in at.dataframe)
    from distill_core.bench.report import unreliable_reasons

    if unreliable_reasons(json.loads((benched / "bench.json").read_text())):  # tiny models on a shared machine
        assert "These timings are unreliable" in " ".join(str(w.value) for w in at.warning)
    else:
        assert any(m.label == "ONNX int8 student vs teacher" for m in at.metric)


def test_an_unreliable_bench_is_said_and_not_headlined(benched, tmp_path, monkeypatch):
    benched = Path(shutil.copytree(benched, tmp_path / benched.name))
    bench = json.loads((benched / "bench.json").read_text())
    bench["machine"]["other_processes_cpu_share"] = 0.43  # as measured beside another training
    (benched / "bench.json").write_text(json.dumps(bench))
    at = _page(benched.parent, benched.name, monkeypatch)
    assert not at.exception
    warning = " ".join(str(w.value) for w in at.warning)
    assert "These timings are unreliable" in warning and "43% of the CPU" in warning
    assert not [m for m in at.metric if "vs teacher" in m.label]  # nothing headlined
    assert any(b.label == "Run the benchmark again" for b in at.button)
    bench["machine"]["other_processes_cpu_share"] = 0.0
    for m in bench["models"].values():  # consistent timings: a longer text slower, the bigger teacher slower
        m["latency_ms"]["max_len"]["p50"] = 2 * m["latency_ms"]["median_len"]["p50"]
    bench["models"]["teacher"]["latency_ms"]["median_len"]["p50"] = 10 * bench["models"]["student"]["latency_ms"][
        "median_len"]["p50"]
    bench["models"]["teacher"]["latency_ms"]["max_len"]["p50"] = 2 * bench["models"]["teacher"]["latency_ms"][
        "median_len"]["p50"]
    bench["speedup"]["student_vs_teacher_median_len"] = 10.0
    (benched / "bench.json").write_text(json.dumps(bench))
    at = _page(benched.parent, benched.name, monkeypatch)
    assert not at.exception and "These timings are unreliable" not in " ".join(str(w.value) for w in at.warning)
    assert any(m.label == "Student vs teacher" and m.value == "10.00×" for m in at.metric)


def test_training_figure_draws_each_method_and_old_bench_files(benched):
    import json

    from distill_core.views import performance as pv

    bench = json.loads((benched / "bench.json").read_text())
    fig = pv.training_figure(bench)
    methods = bench["training_throughput"]["methods"]
    assert len(fig.data[0].x) == len(methods) and len(fig.data[1].y) == len(methods)  # samples/s, share of peak
    table = pv.training_table(bench)
    assert list(table["samples_per_s"]) == [m["samples_per_s"] for m in methods.values()]
    # A bench.json written before methods were recorded one by one still draws (samples/s only).
    t = {k: v for k, v in bench["training_throughput"].items() if k not in ("methods", "peak_gflops")}
    old = pv.training_figure({**bench, "training_throughput": t})
    assert len(old.data) == 1 and len(old.data[0].x) == 3


def test_a_bench_of_other_weights_is_said_and_not_headlined(benched, tmp_path, monkeypatch):
    from distill_core.fingerprints import record

    benched = Path(shutil.copytree(benched, tmp_path / benched.name))
    bench = json.loads((benched / "bench.json").read_text())
    bench["machine"]["other_processes_cpu_share"] = 0.0
    bench["weights"] = record(benched, ["teacher", "student"])
    bench["weights"]["student"]["sha256"] = "0" * 64  # as if measured on a student since re-trained
    bench["weights"]["student"]["size"] += 1
    (benched / "bench.json").write_text(json.dumps(bench))
    at = _page(benched.parent, benched.name, monkeypatch)
    assert not at.exception
    assert "bench.json was computed from other weights than student/model.safetensors" in " ".join(
        str(i.value) for i in at.info)
    assert "measured on other weights" in " ".join(str(w.value) for w in at.warning)
    assert not [m for m in at.metric if "vs teacher" in m.label]  # nothing headlined
