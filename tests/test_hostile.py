"""Hostile but fair input on the CLI and the dashboard: every mistake is one clear line naming the cause (the
flag, the file) and the fix, no traceback reaches the user, and nothing is written or lost.

Tiny data and models (``conftest``); broken runs are copies of the tiny fixture run, damaged in the test.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from conftest import train_args
from distill_core.cli import format_runs_table, main
from distill_core.runs import list_runs, load_run, read_metrics, set_status


def run_cli(args: list[str], caplog, capsys) -> tuple[int, str]:
    """Exit code and everything the user saw (log records and both streams)."""
    caplog.clear()
    code = main(args)
    out = capsys.readouterr()
    return code, caplog.text + out.out + out.err


def assert_no_traceback(seen: str) -> None:
    assert "Traceback" not in seen and "Internal error" not in seen, seen


def copy_run(tiny_run: Path, root: Path, name: str | None = None) -> Path:
    run = root / (name or tiny_run.name)
    shutil.copytree(tiny_run, run)
    return run


# ----------------------------------------------------------------------------- 1. flags checked before any work


@pytest.mark.parametrize("flags, names", [
    (["--max-length", "100"], ["--max-length 100", "64 positions"]),  # the tiny teacher has 64 positions
    (["--max-length", "100000"], ["--max-length 100000", "64 positions"]),
    (["--max-length", "2"], ["--max-length 2", "at least 8"]),
    (["--max-length", "0"], ["--max-length 0", "at least 8"]),
    (["--temperature", "0"], ["--temperature 0", "greater than 0"]),
    (["--alpha", "1.5"], ["--alpha 1.5", "from 0 to 1"]),
    (["--batch-size", "0"], ["--batch-size 0", "positive"]),
    (["--batch-size", "-4"], ["--batch-size -4", "positive"]),
    (["--eval-batch-size", "0"], ["--eval-batch-size 0", "positive"]),
    (["--epochs", "0"], ["--epochs 0", "greater than 0"]),
    (["--student-epochs", "nan"], ["--student-epochs nan", "greater than 0"]),
    (["--lr=-1e-4"], ["--lr -0.0001", "learning rate"]),
    (["--validation-fraction", "1.5"], ["--validation-fraction 1.5", "below 0.5"]),
    (["--models", "teacher,students"], ["--models teacher,students", "teacher,student,baseline"]),
    (["--layer-map", "0,9"], ["--layer-map 0,9", "layers 0..3"]),
    (["--seed", "-1"], ["--seed -1", "2**32"]),
])
def test_bad_flags_fail_before_any_folder_exists(tmp_path, dataset_dir, teacher_dir, caplog, capsys, flags, names):
    t0 = time.perf_counter()
    code, seen = run_cli(train_args(dataset_dir, teacher_dir, tmp_path, "bad", *flags), caplog, capsys)
    assert code == 2
    for name in names:
        assert name in seen, seen
    assert_no_traceback(seen)
    assert not any(tmp_path.iterdir()), "a rejected config left something behind"
    assert time.perf_counter() - t0 < 30  # no training happened first


@pytest.mark.parametrize("run_id", ["../escaped_run", "/tmp/any/absolute/path", "sub/dir", ".hidden", "a b", ""])
def test_a_run_id_is_a_name_not_a_path(tmp_path, dataset_dir, teacher_dir, caplog, capsys, run_id):
    root = tmp_path / "runs"
    code, seen = run_cli(train_args(dataset_dir, teacher_dir, root, run_id), caplog, capsys)
    assert code == 2 and "--run-id" in seen and "letters, digits" in seen
    assert_no_traceback(seen)
    assert not root.exists() and not (tmp_path / "escaped_run").exists()


def test_a_path_that_does_not_exist_is_reported_at_once(tmp_path, dataset_dir, caplog, capsys):
    for teacher, says in ((tmp_path / "missing" / "bert", "there is no folder"), (tmp_path, "holds no model")):
        t0 = time.perf_counter()
        code, seen = run_cli(train_args(dataset_dir, teacher, tmp_path / "runs", "bad"), caplog, capsys)
        assert code == 2 and "--teacher" in seen and says in seen, seen
        assert time.perf_counter() - t0 < 10
        assert_no_traceback(seen)
    assert not (tmp_path / "runs").exists()


def test_a_bug_is_an_internal_error_with_its_traceback(monkeypatch, caplog, capsys, tmp_path):
    """An exception that is not the user's mistake is never passed off as one."""
    from distill_core import cli

    def broken(args):
        raise KeyError("some_internal_key")

    monkeypatch.setitem(cli.COMMANDS, "runs", broken)
    code, seen = run_cli(["runs", "--output-dir", str(tmp_path)], caplog, capsys)
    assert code == 1 and "Internal error" in seen and "Traceback" in seen and "some_internal_key" in seen


# ----------------------------------------------------------------------------- 3. broken runs


def test_evaluate_refuses_a_run_with_a_missing_model_file_and_keeps_its_results(tmp_path, tiny_run, caplog, capsys):
    run = copy_run(tiny_run, tmp_path)
    before = (run / "results.json").read_bytes()
    (run / "teacher" / "config.json").unlink()
    code, seen = run_cli(["evaluate", str(run)], caplog, capsys)
    assert code == 2 and "teacher/config.json is missing" in seen
    assert_no_traceback(seen)
    assert (run / "results.json").read_bytes() == before


@pytest.mark.parametrize("damage", ["truncate", "random"])
def test_damaged_weights_are_named_by_evaluate_and_runs(tmp_path, tiny_run, caplog, capsys, damage):
    run = copy_run(tiny_run, tmp_path)
    before = (run / "results.json").read_bytes()
    weights = run / "student" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncate" else os.urandom(4096))
    t0 = time.perf_counter()
    code, seen = run_cli(["evaluate", str(run)], caplog, capsys)
    assert code == 2 and "student/model.safetensors is damaged" in seen
    assert time.perf_counter() - t0 < 10  # checked before anything is loaded
    assert_no_traceback(seen)
    assert (run / "results.json").read_bytes() == before
    info = load_run(run)
    assert info.status == "damaged" and "student/model.safetensors" in info.error
    code, seen = run_cli(["runs", "--output-dir", str(tmp_path)], caplog, capsys)
    assert code == 0 and "damaged" in seen and "student/model.safetensors is damaged" in seen


def test_a_missing_model_folder_makes_a_complete_run_damaged(tmp_path, tiny_run):
    run = copy_run(tiny_run, tmp_path)
    shutil.rmtree(run / "baseline")
    info = load_run(run)
    assert info.status == "damaged" and info.error == "baseline/ is missing"
    # A run that never set out to train the baseline is whole without it.
    cfg = json.loads((run / "config.json").read_text())
    cfg["train"]["models"] = ["teacher", "student"]
    (run / "config.json").write_text(json.dumps(cfg))
    assert load_run(run).status == "complete"


@pytest.mark.parametrize("results", [
    {"models": {"teacher": {"macro_f1": 0.5}}, "label_names": ["a", "b"]},  # no accuracy
    {"models": {"teacher": {"accuracy": "high", "macro_f1": 0.5}}, "label_names": ["a", "b"]},
    {"models": []},
    [1, 2, 3],
])
def test_results_of_the_wrong_shape_are_reported_not_trusted(tmp_path, tiny_run, caplog, capsys, results):
    run = copy_run(tiny_run, tmp_path)
    (run / "results.json").write_text(json.dumps(results))
    info = load_run(run)
    assert info.results is None and "results.json does not have the expected shape" in info.error
    code, seen = run_cli(["runs", "--output-dir", str(tmp_path)], caplog, capsys)
    assert code == 0 and info.run_id in seen
    assert_no_traceback(seen)


def test_status_and_config_of_the_wrong_shape(tmp_path, tiny_run):
    run = copy_run(tiny_run, tmp_path)
    (run / "status.json").write_text("[]")
    info = load_run(run)
    assert info.status == "failed" and "expected shape" in info.error
    (run / "status.json").write_text(json.dumps({"status": "complete"}))
    (run / "config.json").write_text('"just a string"')
    assert load_run(run).status == "failed"


def test_a_half_written_last_csv_row_is_dropped(tmp_path, tiny_run):
    run = copy_run(tiny_run, tmp_path)
    path = run / "teacher_train.csv"
    rows = len(read_metrics(run, "teacher", "train"))
    with open(path, "a") as f:
        f.write(f"{rows + 1},2.0,8,0.5,0.5,5.6")  # cut off inside the learning rate (5.6e-05); no newline
    df = read_metrics(run, "teacher", "train")
    assert len(df) == rows and df["learning_rate"].max() < 1


def test_a_running_run_silent_for_an_hour_is_reported_interrupted(tmp_path, tiny_run):
    run = copy_run(tiny_run, tmp_path)
    set_status(run, "running", "student")
    st = json.loads((run / "status.json").read_text())
    st.update(host="another-host", pid=12345)  # another machine: its pid cannot be checked from here
    (run / "status.json").write_text(json.dumps(st))
    assert load_run(run).status == "running"  # written just now: alive
    old = time.time() - 2 * 3600
    for p in run.iterdir():
        os.utime(p, (old, old))
    info = load_run(run)
    assert info.status == "failed" and "nothing written for 2.0 h" in info.error


def test_runs_table_keeps_one_line_per_run_and_sorts_runs_without_config_by_time(tmp_path, tiny_run):
    old = copy_run(tiny_run, tmp_path, "old_run")
    cfg = json.loads((old / "config.json").read_text())
    cfg["created"] = "2020-01-01T00:00:00"
    (old / "config.json").write_text(json.dumps(cfg))
    new = tmp_path / "new_without_config"
    new.mkdir()
    set_status(new, "failed", "data", "DataError: first line\nsecond line\n\nthird")
    runs = list_runs(tmp_path)
    assert [r.run_id for r in runs] == ["new_without_config", "old_run"]
    table = format_runs_table(runs)
    assert len(table.splitlines()) == 2 + len(runs)
    assert "first line second line third" in table


# ----------------------------------------------------------------------------- text the models cannot take


def test_a_model_saved_with_max_length_beyond_its_positions_reads_long_texts(tmp_path, tiny_run):
    """A run saved before max_length was checked: the classifier still never reads past its position table."""
    from distill_core.ship.inference import TextClassifier

    run = copy_run(tiny_run, tmp_path)
    cfg_path = run / "student" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["distill_max_length"] = 100_000
    cfg_path.write_text(json.dumps(cfg))
    clf = TextClassifier.load(run / "student")
    assert clf.max_length == 64
    pred = clf.classify("the team won the cup . " * 100)
    assert pred.n_truncated > 0 and pred.probs.shape == (4,)
    assert clf.attention("stocks " * 500).attentions.shape[-1] == 64


def test_stale_status_on_this_host_with_a_live_pid_is_still_running(tmp_path, tiny_run):
    run = copy_run(tiny_run, tmp_path)
    set_status(run, "running", "teacher")  # this process: alive
    st = json.loads((run / "status.json").read_text())
    assert st["host"] == socket.gethostname() and load_run(run).status == "running"



# ----------------------------------------------------------------------------- the same on the dashboard

from test_dashboard import (  # noqa: E402 - the dashboard tests' app driver and its thread-count guard
    ATTENTION, CURVES, LIVE, OVERVIEW, WELCOME, open_app, texts, torch_threads,  # noqa: F401
)

PAGES = (OVERVIEW, CURVES, LIVE, ATTENTION, "app_pages/performance.py", WELCOME)


def test_a_damaged_run_is_marked_and_every_page_shows_what_is_intact(run_dir):
    weights = run_dir / "student" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    at = open_app()
    assert "(damaged)" in at.sidebar.selectbox[0].format_func(at.sidebar.selectbox[0].value)
    assert "damaged" in texts(at.sidebar.error) and "student/model.safetensors" in texts(at.sidebar.error)
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, page
    at.switch_page(LIVE).run()
    assert "could not be loaded" in texts(at.error)
    assert "Teacher" in {m.label for m in at.metric}


def test_results_of_the_wrong_shape_on_the_overview(run_dir):
    (run_dir / "results.json").write_text(json.dumps({"models": {"teacher": {"macro_f1": 0.5}}, "label_names": []}))
    at = open_app(OVERVIEW)
    assert "does not have the expected shape" in texts(at.error)


def test_a_bug_in_a_page_is_an_internal_error_not_the_users_mistake(run_dir, monkeypatch):
    from distill_core.views import overview

    def broken(*args, **kwargs):
        raise KeyError("some_internal_key")

    monkeypatch.setattr(overview, "overview_table", broken)
    at = open_app(OVERVIEW)
    shown = texts(at.error)
    assert "internal error" in shown and "not a problem with your input" in shown
    assert "some_internal_key" in texts(at.code)  # the details, folded away in an expander


HOSTILE_TEXTS = {
    "whitespace": " \t \n ",
    "huge": "stocks rallied " * 20_000,  # 300k characters
    "unknown tokens": "ﷺ 𓀀 ⟁ ꙮ \u200b\u2028 \ufffd",
    "markup": "<script>alert('x')</script> **bold** [link](http://example.com) $x^2$ {{ t }}",
    "control": "a\x00b\x07c\x1b[31m red",
    "special tokens": "[CLS] [SEP] [PAD] [MASK]",
    "punctuation only": ". , ; ! ?",
    "emoji and rtl": "🚀📈 السوق ارتفع היום",
}


@pytest.mark.parametrize("name", list(HOSTILE_TEXTS))
def test_hostile_text_on_the_live_and_attention_pages(run_dir, name):
    text = HOSTILE_TEXTS[name]
    at = open_app(LIVE)
    at.text_area(key="live_text").set_value(text).run()
    assert not at.exception, name
    assert at.metric or at.dataframe or "Type or paste a text" in texts(at.info), name
    at.switch_page(ATTENTION).run()
    at.text_area(key="att_text").set_value(text).run()
    assert not at.exception, name
    if any(t.key == "att_hide" for t in at.toggle):  # a blank text draws no maps, so no toggle
        at.toggle(key="att_hide").set_value(True).run()  # may leave nothing to draw: a message, not a crash
        assert not at.exception, name
    assert not [e for e in at.error if "internal error" in str(e.value)], name


@pytest.mark.parametrize("data", [
    b"\xff\xfe\x00t\x00e\x00x\x00t",  # UTF-16 bytes
    b"text\n" + "caf\xe9".encode("latin-1") + b"\n",  # Latin-1
    b"",  # empty file
    b"a,b\n1,2\n",  # no text column
    b'text\n"unterminated\n',
])
def test_hostile_csv_upload_is_texts_or_a_message(data):
    """Any other exception type than InputError would fail here: a bad upload is a message, never a crash."""
    from distill_core.errors import InputError
    from distill_core.views.live import texts_from_csv

    try:
        found, column = texts_from_csv(data)
    except InputError as e:
        assert str(e).endswith(".")
    else:
        assert found and all(isinstance(t, str) and t.strip() for t in found) and column
