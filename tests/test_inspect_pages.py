"""The Disagreements, Calibration, Explanations and Layer similarity pages (and the Live page's calibrated
confidences) under ``streamlit.testing.v1.AppTest``, against copies of the tiny fixture run."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from distill_core.runs import CALIBRATION_FILE
from test_dashboard import array, chart, downloads, open_app, texts, torch_threads  # noqa: F401 (fixture)

DISAGREEMENTS, CALIBRATION, EXPLAIN, LAYERS, LIVE, ATTENTION = (f"app_pages/{p}.py" for p in (
    "disagreements", "calibration", "explain", "layers", "live_classification", "attention"))
LABELS = {"World", "Sports", "Business", "Sci/Tech"}


@pytest.fixture
def runs(tmp_path, monkeypatch, tiny_run):
    root = tmp_path / "runs"
    shutil.copytree(tiny_run, root / tiny_run.name)
    monkeypatch.setenv("DISTILL_RUNS_DIR", str(root))
    return root


@pytest.fixture
def run_dir(runs, tiny_run):
    return runs / tiny_run.name


def charts(at) -> set[str]:
    return {c.key for c in at.get("plotly_chart")}


def html(at) -> list[str]:
    return [h.proto.body for h in at.get("html")]


# ----------------------------------------------------------------------------- Disagreements


def test_disagreements_filters_counts_and_table(run_dir):
    at = open_app(DISAGREEMENTS)
    assert at.title[0].value == "Disagreements" and not at.error
    metrics = {m.label: int(m.value) for m in at.metric}
    assert metrics["All test texts"] == 24
    assert metrics["Lost by the student"] + metrics["Fixed by the student"] <= metrics["Disagree with the teacher"]
    table = at.dataframe[0].value
    assert {"Row", "Text", "True label", "Teacher", "Distilled student", "Baseline student",
            "KL(teacher ‖ distilled student)"} <= set(table.columns)
    assert len(table) == metrics["Disagree with the teacher"]  # the default filter
    assert table["KL(teacher ‖ distilled student)"].is_monotonic_decreasing

    at.radio(key="dis_filter").set_value("all").run()
    assert len(at.dataframe[0].value) == 24
    at.multiselect(key="dis_classes").set_value(["Sports"]).run()
    assert set(at.dataframe[0].value["True label"]) == {"Sports"}
    at.slider(key="dis_conf").set_value((0.0, 0.3)).run()
    shown = at.dataframe[0].value
    assert (shown["Distilled student confidence"] <= 0.3).all()
    if shown.empty:
        assert "No test text matches" in texts(at.info)
    assert "Table (CSV)" in downloads(at)
    assert not at.exception


def test_disagreements_row_details_and_open_on_other_pages(run_dir):
    at = open_app(DISAGREEMENTS)
    at.radio(key="dis_filter").set_value("all").run()
    rows = list(at.dataframe[0].value["Row"])
    at.selectbox(key="dis_pick").set_value(rows[3]).run()
    assert at.subheader[0].value == f"Test row {rows[3]}"
    probs = chart(at, "dis_probs")
    assert len(probs["data"]) == 3 and set(probs["data"][0]["x"]) == LABELS
    assert len(html(at)) == 2  # teacher and student token highlights
    assert "Convergence delta" in texts(at.caption)
    assert {"Probabilities (PNG)", "Probabilities (CSV)", "Attributions (PNG)", "Attributions (CSV)"} <= set(downloads(at))

    import pandas as pd

    text = pd.read_parquet(run_dir / "predictions.parquet")["text"].iloc[rows[3]]
    next(b for b in at.button if b.label == "Attention").click().run()
    assert at.title[0].value == "Attention"
    assert at.text_area(key="att_text").value == " ".join(text.split())

    at.switch_page(DISAGREEMENTS).run()
    next(b for b in at.button if b.label == "Live classification").click().run()
    assert at.title[0].value == "Live classification"
    assert at.text_area(key="live_text").value == " ".join(text.split())
    assert "true label" in texts(at.caption)


ENTITY_TEXT = "Fate #39;s wheels: AT&amp;T says quot;hi quot; for  #36;5 &lt;b&gt;"
SHOWN_TEXT = 'Fate\'s wheels: AT&T says "hi " for $5 <b>'


def with_entity_texts(run_dir) -> None:
    """Every test text of the run carries HTML entities, as AG News's do."""
    import pandas as pd

    preds = pd.read_parquet(run_dir / "predictions.parquet")
    preds["text"] = [f"{ENTITY_TEXT} {i}" for i in range(len(preds))]
    preds.to_parquet(run_dir / "predictions.parquet")


def test_entities_are_decoded_where_texts_are_shown(run_dir):
    with_entity_texts(run_dir)
    at = open_app(DISAGREEMENTS)
    at.radio(key="dis_filter").set_value("all").run()
    table = at.dataframe[0].value
    assert table["Text"].iloc[0].startswith(SHOWN_TEXT)
    assert not any("#39;" in t or "&amp;" in t for t in table["Text"])
    assert any(m.value.startswith("> " + SHOWN_TEXT.replace("$", "\\$")) for m in at.markdown)
    next(b for b in at.button if b.label == "Live classification").click().run()
    assert at.text_area(key="live_text").value.startswith(SHOWN_TEXT)

    at.switch_page(LIVE).run()
    next(b for b in at.button if b.label == "Random test example").click().run()
    assert at.text_area(key="live_text").value.startswith(SHOWN_TEXT) and not at.exception


def test_live_page_warns_when_the_text_is_unknown_to_the_tokenizers(run_dir):
    at = open_app(LIVE)
    at.text_area(key="live_text").set_value("🚀🔥😂🎉").run()
    notes = [w.value for w in at.warning if "unknown to" in w.value]
    assert len(notes) == 1 and "tokens are [UNK]" in notes[0] and "predictions say little" in notes[0]
    at.text_area(key="live_text").set_value("the team won the cup .").run()
    assert not [w for w in at.warning if "unknown to" in w.value] and not at.exception


def test_disagreements_picking_a_table_row_inspects_it(run_dir):
    at = open_app(DISAGREEMENTS)
    at.radio(key="dis_filter").set_value("all").run()
    table_key = at.dataframe[0].key
    assert table_key.startswith("dis_table_")
    at.session_state[table_key] = {"selection": {"rows": [5], "columns": [], "cells": []}}
    at.run()
    row = int(at.dataframe[0].value["Row"].iloc[5])
    assert at.selectbox(key="dis_pick").value == row and at.subheader[0].value == f"Test row {row}"


def test_disagreements_confusion_matrices(run_dir):
    at = open_app(DISAGREEMENTS)
    fig = chart(at, "dis_confusion")
    teacher, student, diff = (array(fig["data"][i]["z"]).astype(float) for i in range(3))
    assert teacher.sum() == student.sum() == 24
    np.testing.assert_allclose(diff, student - teacher)
    at.radio(key="dis_cm_unit").set_value("rates").run()
    rates = array(chart(at, "dis_confusion")["data"][0]["z"]).astype(float)
    np.testing.assert_allclose(rates.sum(1)[teacher.sum(1) > 0], 1.0)
    assert {"Confusion matrices (PNG)", "Confusion matrices (CSV)"} <= set(downloads(at))
    at.radio(key="dis_student").set_value("baseline").run()
    assert "Baseline student" in chart(at, "dis_confusion")["layout"]["annotations"][1]["text"]
    assert not at.exception


def test_disagreements_without_predictions_is_a_message(run_dir):
    (run_dir / "predictions.parquet").unlink()
    at = open_app(DISAGREEMENTS)
    assert "predictions.parquet is missing" in texts(at.error)
    assert not at.exception


# ----------------------------------------------------------------------------- Calibration


def test_calibration_page_shows_stored_metrics_and_reliability(run_dir):
    at = open_app(CALIBRATION)
    assert at.title[0].value == "Calibration" and not at.error
    table = at.dataframe[0].value
    assert list(table["Model"]) == ["Teacher", "Distilled student", "Baseline student (no teacher)"]
    stored = json.loads((run_dir / CALIBRATION_FILE).read_text())
    np.testing.assert_allclose(table["Temperature"], [stored["models"][k]["temperature"] for k in
                                                      ("teacher", "student", "baseline")])
    before = chart(at, "cal_reliability")
    at.toggle(key="cal_scaled").set_value(True).run()
    after = chart(at, "cal_reliability")
    assert len(after["data"]) == len(before["data"]) == 9
    assert before["layout"]["annotations"][0]["text"] != after["layout"]["annotations"][0]["text"] or \
        stored["models"]["teacher"]["temperature"] == pytest.approx(1.0, abs=1e-3)
    assert {"Metrics (CSV)", "Reliability diagrams (PNG)", "Bins (CSV)"} <= set(downloads(at))


def test_calibration_page_offers_to_compute_a_missing_calibration(run_dir):
    (run_dir / CALIBRATION_FILE).unlink()
    at = open_app(CALIBRATION)
    assert "no calibration yet" in texts(at.info) and not at.dataframe
    at.button(key="cal_compute").click().run()
    assert not at.exception and not at.error
    assert at.status[0].label == "Calibration stored in the run"
    assert (run_dir / CALIBRATION_FILE).is_file()
    assert len(at.dataframe[0].value) == 3 and "cal_reliability" in charts(at)


def test_calibration_page_says_when_the_student_is_underconfident(run_dir):
    doc = json.loads((run_dir / CALIBRATION_FILE).read_text())
    doc["models"]["student"]["temperature"] = 0.6
    (run_dir / CALIBRATION_FILE).write_text(json.dumps(doc))
    at = open_app(CALIBRATION)
    assert "under-confident" in texts(at.warning) and "T = 2" in texts(at.warning)


def test_calibration_page_bad_file_and_missing_data_are_messages(run_dir):
    (run_dir / CALIBRATION_FILE).write_text('{"models": {"teacher": {"temperature": "hot"}}}')
    at = open_app(CALIBRATION)
    assert "calibration.json" in texts(at.error) and not at.exception

    (run_dir / CALIBRATION_FILE).unlink()
    config = json.loads((run_dir / "config.json").read_text())
    config["dataset_info"]["source"] = str(run_dir / "gone")
    config["data"]["dataset"] = str(run_dir / "gone")
    (run_dir / "config.json").write_text(json.dumps(config))
    at = open_app(CALIBRATION)
    at.button(key="cal_compute").click().run()
    assert not at.exception
    assert at.status[0].label == "Calibration failed" and "gone" in texts(at.error)
    assert "internal error" not in texts(at.error)


def test_live_page_calibrated_confidences(run_dir):
    at = open_app(LIVE)
    assert not at.toggle(key="live_calibrated").disabled
    plain = [m.delta for m in at.metric[:3]]
    at.toggle(key="live_calibrated").set_value(True).run()
    calibrated = [m.delta for m in at.metric[:3]]
    assert all("T = " in d for d in calibrated) and not any("T = " in d for d in plain)
    (run_dir / CALIBRATION_FILE).unlink()
    at.run()
    assert at.toggle(key="live_calibrated").disabled and not at.exception


# ----------------------------------------------------------------------------- Explanations


def test_explanations_page_highlights_agreement_and_rollout(run_dir):
    at = open_app(EXPLAIN)
    assert at.title[0].value == "Explanations" and not at.error
    assert at.text_area(key="explain_text").value.startswith("Costco faces")
    assert len(html(at)) == 2
    assert "Rank correlation (Spearman ρ)" in {m.label for m in at.metric}
    assert "exp_rollout" in charts(at)
    assert {"Attributions (PNG)", "Attributions (CSV)", "Rollout (PNG)", "Rollout (CSV)"} <= set(downloads(at))

    at.selectbox(key="exp_target").set_value(1).run()
    bold = texts(at.markdown)
    assert bold.count("explains Sports") == 2  # both models explain the class picked
    at.radio(key="exp_other").set_value("baseline").run()
    assert "Baseline student" in texts(at.markdown)

    at.text_area(key="explain_text").set_value("  ").run()
    assert "Type a text above" in texts(at.info) and not at.exception


def test_explanations_over_a_sample_of_test_texts(run_dir):
    at = open_app(EXPLAIN)
    at.selectbox(key="exp_n").set_value(25).run()
    at.button(key="exp_run").click().run()
    assert not at.exception
    summary = {m.label: m for m in at.metric}
    assert summary["Median rank correlation"].delta == "24 texts"  # the tiny test set has 24
    assert "exp_agreement" in charts(at)
    assert {"Distribution (PNG)", "Per text (CSV)"} <= set(downloads(at))


# ----------------------------------------------------------------------------- Layer similarity


def test_layer_similarity_page(run_dir):
    at = open_app(LAYERS)
    assert at.title[0].value == "Layer similarity" and not at.error
    fig = chart(at, "layers_cka")
    cls, mean = (array(fig["data"][i]["z"]).astype(float) for i in (0, 2))
    assert cls.shape == mean.shape == (5, 3)  # teacher: embeddings + 4 layers; student: embeddings + 2
    assert 0.5 < mean[0, 0] <= 1.0 + 1e-9  # the student started from the teacher's embeddings (then both trained)
    assert np.isnan(cls[0, 0]) and "the same for every text" in texts(at.caption)
    marks = fig["data"][1]
    assert list(marks["x"]) == ["embeddings", "layer 1", "layer 2"] and list(marks["y"]) == ["embeddings", "layer 1", "layer 3"]
    assert "was built from teacher layer 1" in texts(at.markdown)
    assert {"Heatmaps (PNG)", "CKA (CSV)"} <= set(downloads(at))
    assert "validation split has" in texts(at.caption)  # the tiny run has fewer than 300 validation texts
    at.radio(key="layers_other").set_value("baseline").run()
    assert not at.exception


def test_inspection_pages_need_a_teacher_and_a_student(run_dir):
    shutil.rmtree(run_dir / "teacher")
    at = open_app(DISAGREEMENTS)
    for page in (DISAGREEMENTS, EXPLAIN, LAYERS):
        at.switch_page(page).run()
        assert "needs the teacher" in texts(at.warning) and not at.exception, page
