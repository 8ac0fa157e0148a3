"""Shipping a model: the ONNX export (``export RUN --format onnx --int8``), the ONNX classifier against PyTorch's,
backends by name, and the model cards, all on the tiny fixture run.

The export is made once per module by the real CLI into a copy of the tiny run; tests that damage a run make
their own copy.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml

from distill_core.ship import onnx_export
from distill_core.cli import main
from distill_core.errors import InputError, RunError
from distill_core.ship.inference import TextClassifier
from distill_core.ship.model_card import model_card, write_model_cards
from distill_core.ship.onnx_export import OnnxClassifier, load_classifier
from distill_core.files import read_json
from distill_core.runs import ONNX_EXPORT_FILE, ONNX_INT8_MODEL, ONNX_MODEL, PREDICTIONS_FILE, model_dir, onnx_dir

# Texts around the tiny models' max_length (32 tokens): short ones, and one cut by truncation.
TEXTS = ["stocks rose", "the team won the cup after a new season .",
         " ".join(["the market price of oil and the bank profit"] * 8), "nasa space study"]


def copy_run(src: Path, dst_root: Path) -> Path:
    dst = dst_root / src.name
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory) -> tuple[Path, str]:
    """A copy of the tiny run with its student exported (fp32 and int8) by the CLI, and what the CLI printed."""
    run = copy_run(tiny_run, tmp_path_factory.mktemp("onnx_runs"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["export", str(run), "--model", "student", "--format", "onnx", "--int8", "--threads", "1"])
    assert code == 0
    return run, out.getvalue()


# ----------------------------------------------------------------------------- the export


def test_export_writes_a_whole_folder_and_verifies_it(exported):
    run, printed = exported
    folder = onnx_dir(run, "student")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["config.json", ONNX_EXPORT_FILE, ONNX_INT8_MODEL, ONNX_MODEL, "tokenizer.json", "tokenizer_config.json"])
    assert not [p for p in model_dir(run, "student").iterdir() if ".tmp" in p.name], "no temporary folder left behind"
    meta = read_json(folder / ONNX_EXPORT_FILE)
    v = meta["verification"]
    assert v["texts"] == read_json(run / "results.json")["test_rows"] == 24  # every test text of the run
    # fp32: the same predictions as PyTorch on every test text, logits equal up to float rounding.
    assert v["onnx"]["agreement"] == 1.0 and v["onnx"]["max_abs_logit_diff"] < 1e-4
    # The reference is PyTorch's own score, which evaluate wrote into results.json.
    assert v["reference"]["accuracy"] == pytest.approx(read_json(run / "results.json")["models"]["student"]["accuracy"])
    q = v["onnx_int8"]
    assert 0 <= q["accuracy"] <= 1 and 0 <= q["agreement"] <= 1 and q["max_abs_logit_diff"] > 0, "int8 is not exact"
    assert q["accuracy_drop_points"] == pytest.approx((v["reference"]["accuracy"] - q["accuracy"]) * 100)
    assert meta["files"][ONNX_INT8_MODEL] < meta["files"][ONNX_MODEL]
    assert meta["parameters"] == TextClassifier.load(model_dir(run, "student")).num_parameters()
    for line in ("ONNX fp32", "ONNX int8", "int8 costs", "verified on 24 test texts"):
        assert line in printed
    assert "warning" not in printed
    assert "## ONNX export" in (run / "student" / "README.md").read_text(), "the export brings the card up to date"


def test_the_graph_takes_any_batch_and_length(exported):
    run, _ = exported
    graph = onnx.load(str(onnx_dir(run, "student") / ONNX_MODEL)).graph
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert inputs == {"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"]}
    assert [d.dim_param for d in graph.output[0].type.tensor_type.shape.dim][0] == "batch"


def test_onnx_classifier_answers_as_the_pytorch_one(exported):
    run, _ = exported
    torch_clf = TextClassifier.load(model_dir(run, "student"))
    fp32 = OnnxClassifier.load(onnx_dir(run, "student"), threads=1)
    assert (fp32.labels, fp32.max_length, fp32.name, fp32.backend) == (torch_clf.labels, 32, "student", "onnx")
    for batch_size in (1, 3):  # padded batches of other sizes and lengths than the one traced
        np.testing.assert_allclose(fp32.predict_logits(TEXTS, batch_size=batch_size),
                                   torch_clf.predict_logits(TEXTS, batch_size=batch_size), atol=1e-4)
    probs = fp32.predict_proba(TEXTS)
    assert probs.shape == (4, len(torch_clf.labels)) and np.allclose(probs.sum(1), 1)
    a, b = fp32.classify(TEXTS[2]), torch_clf.classify(TEXTS[2])
    assert (a.label, a.n_tokens, a.n_truncated) == (b.label, b.n_tokens, b.n_truncated) and a.n_truncated > 0
    assert a.ms > 0
    assert fp32.predict_logits([]).shape == (0, 4)
    for bad, message in (([" "], "empty"), ([3], "not a string"), ("one string", "list of texts")):
        with pytest.raises(InputError, match=message):
            fp32.predict_logits(bad)


def test_int8_classifier_scores_what_the_export_reported(exported):
    import pandas as pd

    run, _ = exported
    int8 = OnnxClassifier.load(onnx_dir(run, "student"), int8=True, threads=1)
    assert int8.backend == "onnx-int8" and int8.num_parameters() == read_json(
        onnx_dir(run, "student") / ONNX_EXPORT_FILE)["parameters"]
    test = pd.read_parquet(run / PREDICTIONS_FILE)
    pred = int8.predict_logits(list(test["text"])).argmax(-1)
    reported = read_json(onnx_dir(run, "student") / ONNX_EXPORT_FILE)["verification"]["onnx_int8"]["accuracy"]
    assert float((pred == test["label"].to_numpy()).mean()) == pytest.approx(reported)


def test_load_classifier_by_backend(exported):
    run, _ = exported
    assert isinstance(load_classifier(run, "student", "torch"), TextClassifier)
    assert load_classifier(run, "student", "onnx", threads=1).backend == "onnx"
    assert load_classifier(run, "student", "onnx-int8", threads=1).backend == "onnx-int8"
    with pytest.raises(RunError, match="no ONNX export; make one with `python -m distill_core export"):
        load_classifier(run, "teacher", "onnx")


def test_an_export_of_older_weights_is_refused(exported, tmp_path):
    run = copy_run(exported[0], tmp_path)
    model = TextClassifier.load(model_dir(run, "student")).model
    with torch.no_grad():
        model.classifier.bias += 1.0  # the student re-trained since the export
    model.save_pretrained(model_dir(run, "student"))
    with pytest.raises(RunError, match="made from other weights"):
        load_classifier(run, "student", "onnx-int8")


def test_a_failed_export_leaves_the_previous_one(exported, tmp_path, monkeypatch):
    run = copy_run(exported[0], tmp_path)
    before = sorted(p.name for p in onnx_dir(run, "student").iterdir())

    def broken(*args, **kwargs):
        raise RuntimeError("quantiser crashed")

    monkeypatch.setattr(onnx_export, "quantize_graph", broken)
    with pytest.raises(RuntimeError, match="quantiser crashed"):
        onnx_export.export_onnx(run, "student", int8=True)
    assert sorted(p.name for p in onnx_dir(run, "student").iterdir()) == before
    assert not [p for p in model_dir(run, "student").iterdir() if ".tmp" in p.name]


def test_export_errors_are_one_line(tiny_run, tmp_path, caplog):
    assert main(["export", "no-such-run", "--output-dir", str(tmp_path)]) == 2
    assert "No run 'no-such-run'" in caplog.text
    run = copy_run(tiny_run, tmp_path / "runs")
    (model_dir(run, "baseline") / "model.safetensors").unlink()
    caplog.clear()
    assert main(["export", str(run), "--model", "baseline"]) == 2
    assert "baseline/model.safetensors is missing" in caplog.text and "Traceback" not in caplog.text
    assert not onnx_dir(run, "baseline").exists()


# ----------------------------------------------------------------------------- model cards


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_model_cards_for_every_model_of_the_run(exported):
    run, _ = exported
    results, config = read_json(run / "results.json"), read_json(run / "config.json")
    paths = write_model_cards(run)
    assert [p.relative_to(run).as_posix() for p in paths] == ["teacher/README.md", "student/README.md",
                                                               "baseline/README.md"]
    for path in paths:
        kind = path.parent.name
        text = path.read_text()
        meta = _front_matter(text)
        assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-classification"
        assert meta["metrics"] == ["accuracy", "f1"]
        m = results["models"][kind]
        assert f"{m['accuracy']:.4f} | {m['macro_f1']:.4f}" in text
        assert "datasets" not in meta and "model-index" not in meta, "a local dataset folder is not a hub id"
        assert not [p for p in path.parent.iterdir() if p.name.startswith(".README")], "written atomically"
    student = (run / "student" / "README.md").read_text()
    kd = config["kd"]
    assert f"**T = {kd['temperature']}** and **alpha = {kd['alpha']}**" in student
    assert f"{results['models']['student']['agreement_with_teacher']:.1%}" in student
    assert "## ONNX export" in student and "model_int8.onnx" in student  # the export above
    assert "## ONNX export" not in (run / "teacher" / "README.md").read_text()
    assert "## Speed" not in student, "no bench.json, no latency"
    # The usage snippet names the model's real folder and a text of the run's own test split, and the card the verdict.
    import pandas as pd
    assert f"model={str((run / 'student').resolve())!r}" in student
    test_texts = list(pd.read_parquet(run / "predictions.parquet")["text"])
    shown = student.split('classify(', 1)[1].split(")\n")[0]
    assert any(repr(x[:200]) == shown for x in test_texts)
    assert "Did distillation pay off? " + results["verdict"]["text"] in student


def test_model_card_metadata_and_latency_from_a_hub_dataset_and_a_bench(exported):
    run, _ = exported
    config, results = read_json(run / "config.json"), read_json(run / "results.json")
    config["data"]["dataset"] = "ag_news"
    config["model"]["teacher"] = "packaged:all-MiniLM-L6-v2"
    lat = {"median_len": {"p50": 1.25, "tokens": 11}, "max_len": {"p50": 2.5, "tokens": 32}}
    bench = {"created": "2026-01-01T00:00:00", "settings": {"median_tokens": 11, "max_length": 32, "repeats": 30,
                                                            "batch_size": 32},
             "machine": {"cpu_model": "Test CPU", "torch_threads": 2},
             "models": {"teacher": {"title": "Teacher", "latency_ms": lat, "throughput_texts_per_s": 100.0},
                        "student": {"title": "Distilled student", "latency_ms": lat, "throughput_texts_per_s": 200.0},
                        "student_onnx_int8": {"title": "Distilled student, ONNX int8", "latency_ms": lat,
                                              "throughput_texts_per_s": 900.0}}}
    text = model_card(run.name, "student", config, results, bench)
    meta = _front_matter(text)
    assert meta["datasets"] == ["fancyzhx/ag_news"] and meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    metrics = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert metrics == {"accuracy": round(results["models"]["student"]["accuracy"], 4),
                       "f1": round(results["models"]["student"]["macro_f1"], 4)}
    assert "| Distilled student, ONNX int8 | 1.25 | 2.50 | 900 |" in text
    assert "The teacher takes 1.25 ms at 11 tokens" in text
    assert "## Speed" not in model_card(run.name, "baseline", config, results, bench), "the bench measured no baseline"
