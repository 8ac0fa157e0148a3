"""Every dashboard page under ``streamlit.testing.v1.AppTest``, against copies of the tiny fixture run.

The app is started from ``dashboard.py`` (the entry point, as ``streamlit run`` does) and pages are reached
with ``switch_page``. Broken runs (missing model, corrupt CSV, half-written) are copies of ``tiny_run``
damaged in the test.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from distill_core.files import write_json_atomic
from distill_core.runs import set_status

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard.py")
OVERVIEW, CURVES, LIVE, ATTENTION, WELCOME = (f"app_pages/{p}.py" for p in (
    "overview", "training_curves", "live_classification", "attention", "welcome"))
TIMEOUT = 60  # the first run imports torch and loads models; later runs take well under a second


@pytest.fixture(autouse=True)
def torch_threads():
    """dashboard.py sets torch's thread count for its process; give the rest of the test session its own back."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def open_app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def chart(at: AppTest, key: str) -> dict:
    """The plotly figure drawn under ``key``, as a dict."""
    found = [c for c in at.get("plotly_chart") if c.key == key]
    assert found, f"no plotly chart {key!r}; have {[c.key for c in at.get('plotly_chart')]}"
    return json.loads(found[0].proto.spec)


def array(v) -> np.ndarray:
    """A plotly JSON array: a list, or plotly's typed-array encoding {dtype, bdata, shape}."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        return a.reshape([int(s) for s in str(v["shape"]).split(",")]) if "shape" in v else a
    return np.asarray(v, dtype=object if v and isinstance(v[0], str) else float)


def downloads(at: AppTest) -> list[str]:
    return [d.proto.label for d in at.get("download_button")]


# ----------------------------------------------------------------------------- every page, a good run


def test_no_runs_page_says_what_this_is_and_how_to_train(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_RUNS_DIR", str(tmp_path / "empty"))
    at = open_app()
    assert at.title[0].value == "distill-lens"
    assert "No runs yet" in texts(at.info)
    assert "python -m distill_core train" in texts(at.code)
    assert [b.label for b in at.button] == ["Train the default run"]
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(OVERVIEW)  # the other pages appear only once there is a run


def test_welcome_page_gives_every_preset_its_time(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_RUNS_DIR", str(tmp_path / "empty"))
    at = open_app()
    for preset in at.selectbox(key="train_preset").options:
        name = preset.split(":")[0]
        at.selectbox(key="train_preset").set_value(name).run()
        assert "Takes about" in texts(at.caption) or "on a GPU" in texts(at.caption), name
    assert "hours on a CPU" in texts(at.caption)  # classic, the last


def test_overview_shows_the_three_models(run_dir):
    at = open_app()
    assert at.title[0].value == "Overview"
    assert at.sidebar.selectbox[0].value == run_dir.name
    table = at.dataframe[0].value
    assert list(table["Model"]) == ["Teacher", "Distilled student", "Baseline student (no teacher)"]
    for col in ("Test accuracy", "Macro-F1", "Agreement with teacher", "Parameters", "Size on disk (MB)",
                "Size (% of teacher)"):  # the deciding columns; the CSV has every one
        assert col in table
    assert float(table["Size (% of teacher)"].iloc[1].rstrip("%")) < 100  # shown as written: "62%"
    assert table["Agreement with teacher"].iloc[0] == "100.0%"
    assert "Accuracy retention" in [m.label for m in at.metric]
    assert {"overview_bars", "per_class_bars"} <= {c.key for c in at.get("plotly_chart")}
    assert "Download table (CSV)" in downloads(at)
    details = texts(at.sidebar.expander[0].markdown)
    assert "World, Sports, Business, Sci/Tech" in details and "alpha = 0.5" in details


def test_overview_adds_speed_columns_when_benchmarked(run_dir):
    bench = {"models": {"teacher": {"latency_ms": {"median_len": {"p50": 4.0}}, "throughput_texts_per_s": 200},
                        "student": {"latency_ms": {"median_len": {"p50": 2.0}}, "throughput_texts_per_s": 400}}}
    (run_dir / "bench.json").write_text(json.dumps(bench))
    table = open_app().dataframe[0].value
    assert list(table["Speed-up vs teacher"]) == ["1.00×", "2.00×", "—"]  # the baseline was not timed: a dash


def test_training_curves_smoothing_and_x_axis_change_the_chart(run_dir):
    at = open_app(CURVES)
    assert at.title[0].value == "Training curves" and not at.error
    smoothed = lambda fig: next(t for t in fig["data"] if t.get("name") == "Teacher train")  # noqa: E731
    raw = next(t for t in chart(at, "curves_main")["data"] if t.get("name") == "Teacher (raw)")
    at.slider(key="curves_smoothing").set_value(0.0).run()
    np.testing.assert_allclose(array(smoothed(chart(at, "curves_main"))["y"]), array(raw["y"]).astype(float))
    at.slider(key="curves_smoothing").set_value(0.9).run()
    assert not np.allclose(array(smoothed(chart(at, "curves_main"))["y"]), array(raw["y"]).astype(float))
    at.radio(key="curves_x").set_value("examples_seen").run()
    x = array(smoothed(chart(at, "curves_main"))["x"]).astype(float)
    assert x.max() > 16  # examples, not the 16 optimizer steps
    assert "Validation" not in texts(at.error)
    kd = chart(at, "curves_kd")
    assert {t.get("name") for t in kd["data"]} >= {"KD loss (T² · KL to the teacher)", "CE loss (true labels)"}
    assert {"teacher_train.csv", "student_val.csv", "Figure (PNG)", "Figure (HTML)"} <= set(downloads(at))
    assert "curves_lr" in {c.key for c in at.get("plotly_chart")}


def test_live_classification_by_all_three_models(run_dir):
    at = open_app(LIVE)
    assert at.text_area(key="live_text").value.startswith("Kobe Bryant")
    labels = {"World", "Sports", "Business", "Sci/Tech"}
    metrics = {m.label: m.value for m in at.metric}
    assert {metrics[k] for k in ("Teacher", "Distilled student", "Baseline student (no teacher)")} <= labels
    assert "ms" in texts(at.caption)
    assert "models" in texts(at.success) + texts(at.warning)  # agree or disagree, said in words
    probs = chart(at, "live_probs")
    assert len(probs["data"]) == 3 and set(probs["data"][0]["x"]) == labels

    soft = chart(at, "live_soft")
    at.slider(key="live_temperature").set_value(8.0).run()
    soft8 = chart(at, "live_soft")
    assert soft8["data"][1]["name"] == "Teacher, T = 8"
    assert not np.allclose(array(soft["data"][1]["y"]).astype(float), array(soft8["data"][1]["y"]).astype(float))
    assert any(m.label.startswith("KL(teacher ‖ distilled student) at T = 8") for m in at.metric)


def test_live_classification_empty_long_and_batch_input(run_dir):
    at = open_app(LIVE)
    at.text_area(key="live_text").set_value("   ").run()
    assert "Type or paste a text" in texts(at.info) and not at.metric

    at.text_area(key="live_text").set_value(" ".join(["stocks market"] * 40)).run()
    assert "tokens were cut" in texts(at.warning)

    at.text_area(key="live_text").set_value("the team won the cup\nstocks fell on oil prices\nnasa software").run()
    table = at.dataframe[0].value
    assert len(table) == 3 and "All agree" in table
    assert "Download predictions (CSV)" in downloads(at)


def test_live_random_test_example_shows_its_true_label(run_dir):
    at = open_app(LIVE)
    next(b for b in at.button if b.label == "Random test example").click().run()
    assert "true label" in texts(at.caption)
    assert not at.exception


def test_attention_heatmaps_react_to_heads_layers_and_toggles(run_dir):
    at = open_app(ATTENTION)
    assert at.text_area(key="att_text").value.startswith("Costco faces")
    fig = chart(at, "att_pair")
    teacher_z = array(fig["data"][0]["z"]).astype(float)
    assert teacher_z.shape[0] == teacher_z.shape[1] == len(fig["layout"]["xaxis"]["ticktext"])
    assert fig["layout"]["coloraxis"]["cmax"] > 0  # one shared scale for both maps
    assert "layer 4/4, mean of heads" in fig["layout"]["annotations"][0]["text"]

    at.selectbox(key="att_t_head").set_value(0).run()
    assert not np.allclose(array(chart(at, "att_pair")["data"][0]["z"]).astype(float), teacher_z)
    assert "head 1/4" in chart(at, "att_pair")["layout"]["annotations"][0]["text"]

    at.selectbox(key="att_s_layer").set_value(0).run()
    assert "layer 1/2" in chart(at, "att_pair")["layout"]["annotations"][1]["text"]

    assert "att_diff" not in {c.key for c in at.get("plotly_chart")}
    at.toggle(key="att_aligned").set_value(True).run()
    at.selectbox(key="att_s_layer").set_value(1).run()
    assert at.selectbox(key="att_t_layer").value == 2  # the student's layer 2 was copied from teacher layer 3
    assert "initialised from teacher layer 3" in texts(at.caption)
    assert "att_diff" in {c.key for c in at.get("plotly_chart")}

    n_tokens = len(chart(at, "att_pair")["layout"]["xaxis"]["ticktext"])
    at.toggle(key="att_hide").set_value(True).run()
    shown = chart(at, "att_pair")["layout"]["xaxis"]["ticktext"]
    assert len(shown) < n_tokens and "[CLS]" not in shown and "." not in shown
    assert "att_cls" in {c.key for c in at.get("plotly_chart")}
    assert {"Heatmaps (PNG)", "Difference (PNG)", "[CLS] attention (PNG)"} <= set(downloads(at))

    at.radio(key="att_other").set_value("baseline").run()
    assert "Baseline student" in chart(at, "att_pair")["layout"]["annotations"][1]["text"]


def test_long_text_is_capped_with_a_note(run_dir):
    at = open_app(ATTENTION)
    at.text_area(key="att_text").set_value(" ".join(["the team won the cup"] * 12)).run()
    assert "last" in texts(at.warning) and "tokens were cut" in texts(at.warning)  # 32-token models
    assert not at.exception


def test_the_picked_run_is_kept_across_pages(runs, run_dir):
    running = runs / "20260102-000000_tiny_running"
    shutil.copytree(run_dir, running)
    set_status(running, "running", "baseline")  # this process's pid: alive, so really "running"
    failed = runs / "20260103-000000_tiny_failed"
    shutil.copytree(run_dir, failed)
    set_status(failed, "failed", "teacher", "RuntimeError: boom")

    at = open_app()
    picker = at.sidebar.selectbox[0]
    assert picker.value == run_dir.name  # the newest *complete* run
    assert picker.options[0].startswith(running.name) and "training" in picker.options[0]
    assert not any(failed.name in o for o in picker.options)

    picker.set_value(running.name).run()
    assert at.sidebar.caption[0].value.startswith(running.name)  # the whole id, never cut as in the box
    for page in (CURVES, LIVE, ATTENTION, OVERVIEW):
        at.switch_page(page).run()
        assert not at.exception
        assert at.sidebar.selectbox[0].value == running.name, page
    assert "still training" in texts(at.sidebar.info)

    at.sidebar.toggle(key="show_failed").set_value(True).run()
    assert any(failed.name in o for o in at.sidebar.selectbox[0].options)


def _page_paths(app: str, have_runs: bool) -> None:
    """Run inside AppTest (st.Page needs a script context): each page's URL path and script, as JSON."""
    import importlib.util
    from pathlib import Path

    import streamlit as st

    spec = importlib.util.spec_from_file_location("dashboard_under_test", app)
    dashboard = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dashboard)
    st.json([[p._url_path, p.url_path, Path(p._page).stem] for p in dashboard.pages(have_runs)])


@pytest.mark.parametrize("have_runs", [True, False])
def test_every_page_has_its_own_url_path(have_runs):
    """Streamlit serves the default page at "/" only: its own path (/overview) needs a hidden page, else a deep
    link says "Page not found"."""
    at = AppTest.from_function(_page_paths, args=(APP, have_runs), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    pages = json.loads(at.json[0].value)
    paths = [own for own, _, _ in pages]
    assert len(set(paths)) == len(paths) and all(paths)  # unique, none left to Streamlit's guess
    served = {url: script for _, url, script in pages}  # what a browser at /<url> gets ("" is the root)
    assert set(served.values()) == {script for _, _, script in pages}
    if have_runs:
        assert served[""] == served["overview"] == "overview" and served["attention"] == "attention"
        assert served["welcome"] == "welcome"
    else:  # one page before the first run: the root; it keeps the path "welcome" it has once runs exist
        assert served[""] == "welcome" and paths == ["welcome"]


# ----------------------------------------------------------------------------- broken runs


def test_missing_model_messages(run_dir):
    shutil.rmtree(run_dir / "student")
    at = open_app(LIVE)
    assert "distilled student is missing" in texts(at.warning)
    assert {m.label for m in at.metric} >= {"Teacher", "Baseline student (no teacher)"}

    at.switch_page(ATTENTION).run()
    assert not at.exception
    assert at.radio(key="att_other").options == ["Baseline student (no teacher)"]

    shutil.rmtree(run_dir / "teacher")
    at.switch_page(ATTENTION).run()
    assert "needs the teacher" in texts(at.warning) and not at.get("plotly_chart")
    at.switch_page(OVERVIEW).run()
    assert not at.exception and at.dataframe


def test_corrupt_model_folder_is_a_message(run_dir):
    (run_dir / "baseline" / "model.safetensors").write_bytes(b"\x00" * 64)
    at = open_app(LIVE)
    assert "could not be loaded" in texts(at.error)
    assert "Teacher" in {m.label for m in at.metric}  # the other models still answer


def test_corrupt_csv_message(run_dir):
    (run_dir / "teacher_train.csv").write_bytes(b"\x89\x00garbage;;\n\xff\xfe")
    (run_dir / "student_val.csv").write_text("")
    at = open_app(CURVES)
    errors = texts(at.error) + texts(at.warning)
    assert "teacher_train.csv" in errors and "student_val.csv" in errors
    assert "Distilled student train" in {t.get("name") for t in chart(at, "curves_main")["data"]}


def test_half_written_run_messages(runs, run_dir):
    half = runs / "20260104-000000_half"
    half.mkdir()
    shutil.copy(run_dir / "config.json", half / "config.json")
    write_json_atomic(half / "status.json", {"status": "running", "stage": "teacher", "pid": os.getpid(),
                                             "host": socket.gethostname()})
    (half / "teacher_train.csv").write_text("step,epoch,batch,train_loss\n1,0.1,1,1.3\n2,0.2,2,1.2\n3,0.3")
    at = open_app()
    at.sidebar.selectbox[0].set_value(half.name).run()
    assert "still training" in texts(at.info)
    for page, needle in ((CURVES, "not started"), (LIVE, "No model of this run can classify yet"),
                         (ATTENTION, "needs the teacher"), (WELCOME, "")):
        at.switch_page(page).run()
        assert not at.exception, page
        assert needle in texts(at.info) + texts(at.warning), page


def test_corrupt_results_json_message(run_dir):
    (run_dir / "results.json").write_text('{"models": {"teacher": ')
    at = open_app()
    assert "no readable results.json" in texts(at.error)
    assert not at.exception


def test_train_button_starts_a_run_and_follows_it(tmp_path, monkeypatch):
    """The welcome page's button: a stand-in subprocess (no real training) writes a run; progress follows it."""
    import subprocess
    import sys

    from distill_core import jobs

    root = tmp_path / "runs"
    monkeypatch.setenv("DISTILL_RUNS_DIR", str(root))
    fake = ("import json, pathlib, sys, time; d = pathlib.Path(sys.argv[1]) / '20990101-000000_fake'; d.mkdir(); "
            "(d / 'status.json').write_text(json.dumps({'status': 'running', 'stage': 'teacher'})); "
            "time.sleep(float(sys.argv[2]))")

    def start_train(preset):
        assert preset == "quick"
        root.mkdir(parents=True, exist_ok=True)
        log = root / ".train.log"
        log.write_text("fake training log\n")
        proc = subprocess.Popen([sys.executable, "-c", fake, str(root), "1.5"])
        return jobs.Job("train", "20990101-000000_fake", root / "20990101-000000_fake", log, proc)

    monkeypatch.setattr(jobs, "start_train", start_train)
    at = open_app()
    at.button[0].click().run()
    assert at.status[0].label == "Training the default run…"
    progress = at.get("progress")[0].proto.text
    assert progress.startswith("starting") or "20990101-000000_fake" in progress
    proc = at.session_state["train_job"].process
    proc.wait(timeout=30)
    at.run()
    assert not at.exception
    assert at.status[0].label == "Training finished (exit code 0)"
    assert "20990101-000000_fake" in at.get("progress")[0].proto.text
    assert "The run is complete" in texts(at.success)


def test_commands_in_messages_name_the_picked_run(run_dir):
    at = open_app(OVERVIEW)
    shown = " ".join(str(e.value) for e in [*at.info, *at.warning, *at.error, *at.success])
    assert f"python -m distill_core bench {run_dir.name}`" in shown  # the speed check's fix, ready to paste
    assert "distill_core bench RUN`" not in shown
