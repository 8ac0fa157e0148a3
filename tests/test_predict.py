"""``predict``: a model of a run classifies every row of a user's file; and the Live page points there past its limit.

The tiny fixture run's student classifies small files built in the test, in each format; each answer must be the
model's own (``TextClassifier.predict_proba``); every refusal is one line with the fix and exit code 2, before any
output exists; the output is never the input and never half-written.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import make_texts
from distill_core.cli import main
from distill_core.runs import model_dir
from distill_core.ship.inference import TextClassifier
from distill_core.ship.predict import PredictSettings, default_output, predict_file


@pytest.fixture(scope="module")
def clf(tiny_run) -> TextClassifier:
    return TextClassifier.load(model_dir(tiny_run, "student"))


def tickets(n: int = 10) -> pd.DataFrame:
    df = make_texts(n, 7).rename(columns={"text": "body"})
    return df.assign(ticket=[f"T{i}" for i in range(n)])[["ticket", "body", "label"]]


WRITERS = {".csv": lambda df, p: df.to_csv(p, index=False), ".tsv": lambda df, p: df.to_csv(p, sep="\t", index=False),
           ".jsonl": lambda df, p: df.to_json(p, orient="records", lines=True),
           ".json": lambda df, p: df.to_json(p, orient="records"), ".parquet": lambda df, p: df.to_parquet(p, index=False)}
READERS = {".csv": pd.read_csv, ".tsv": lambda p: pd.read_csv(p, sep="\t"),
           ".jsonl": lambda p: pd.read_json(p, lines=True), ".json": pd.read_json, ".parquet": pd.read_parquet}


@pytest.mark.parametrize("suffix", list(WRITERS))
def test_every_row_gets_the_models_label_and_probabilities(tiny_run, clf, tmp_path, suffix, capsys):
    df = tickets()
    src = tmp_path / f"tickets{suffix}"
    WRITERS[suffix](df, src)
    before = src.read_bytes()
    assert main(["predict", str(tiny_run), "--input", str(src), "--text-column", "body", "--batch-size", "3"]) == 0
    out = tmp_path / f"tickets.student-predictions{suffix}"
    assert out == default_output(src, "student") and out.is_file()
    assert src.read_bytes() == before  # the input is never touched
    got = READERS[suffix](out)
    assert list(got["ticket"]) == list(df["ticket"])  # every row, in order, with its own columns
    expected = clf.predict_proba(list(df["body"]))  # (N, C)
    probs = got[[f"prob_{name}" for name in clf.labels]].to_numpy()
    assert probs == pytest.approx(expected, abs=1e-5)
    assert list(got["predicted_label"]) == [clf.labels[i] for i in expected.argmax(-1)]
    assert got["confidence"].to_numpy() == pytest.approx(expected.max(-1), abs=1e-5)
    printed = capsys.readouterr().out
    assert f"classified 10 of 10 rows of tickets{suffix}" in printed and f"Wrote {out}" in printed
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_output_by_extension_any_model_and_rows_without_text(tiny_run, tmp_path):
    teacher = TextClassifier.load(model_dir(tiny_run, "teacher"))
    df = pd.DataFrame({"id": [1, 2, 3, 4], "text": ["the team won the cup .", None, "   ", "oil price and bank profit ."]})
    src = tmp_path / "mixed.csv"
    df.to_csv(src, index=False)
    out = tmp_path / "labelled.parquet"
    summary = predict_file(PredictSettings(run=str(tiny_run), input=src, model="teacher", output=out))
    assert (summary["rows"], summary["classified"], summary["without_text"]) == (4, 2, 2)
    got = pd.read_parquet(out)
    assert got["predicted_label"].isna().tolist() == [False, True, True, False]
    expected = teacher.predict_proba([df["text"][0], df["text"][3]])
    assert got.loc[[0, 3], [f"prob_{n}" for n in teacher.labels]].to_numpy() == pytest.approx(expected, abs=1e-5)
    assert np.isnan(got.loc[1, "confidence"])


def run_copy(tiny_run, tmp_path) -> Path:
    run = tmp_path / "runs" / tiny_run.name
    shutil.copytree(tiny_run, run)
    return run


def refused(args: list[str], caplog, *words: str) -> str:
    caplog.clear()
    assert main(args) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0] and "Traceback" not in caplog.text, caplog.text
    for w in words:
        assert w in errors[0], errors[0]
    return errors[0]


def test_mistakes_are_one_line_with_the_fix_and_nothing_is_written(tiny_run, tmp_path, caplog):
    run = run_copy(tiny_run, tmp_path)
    src = tmp_path / "tickets.csv"
    tickets().to_csv(src, index=False)
    base = ["predict", str(run), "--input"]
    refused(base + [str(tmp_path / "nope.csv")], caplog, "is not there", "Fix: give an existing")
    refused(base + [str(tmp_path / "notes.txt")], caplog, "--input", ".csv, .tsv, .json, .jsonl, .parquet")
    refused(base + [str(src)], caplog, "no text column", "'ticket', 'body', 'label'", "--text-column COLUMN")
    refused(base + [str(src), "--text-column", "message"], caplog, "no column 'message'", "--text-column")
    refused(base + [str(src), "--output", str(src), "--text-column", "body"], caplog, "is the input file")
    refused(base + [str(src), "--output", str(tmp_path / "no" / "such" / "out.csv")], caplog, "does not exist")
    refused(base + [str(src), "--output", str(tmp_path / "out.xlsx")], caplog, "--output", "the ending chooses")
    refused(base + [str(src), "--batch-size", "0"], caplog, "--batch-size 0: give 1-4096")
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    refused(base + [str(empty)], caplog, "has no rows", "header")
    blank = tmp_path / "blank.jsonl"
    blank.write_text("")
    refused(base + [str(blank)], caplog, "has no rows")
    (run / "student" / "model.safetensors").write_bytes(b"not weights")
    refused(base + [str(src), "--text-column", "body"], caplog, "cannot classify with its distilled student",
            "model.safetensors is damaged", "re-train it", "--model (teacher, baseline)")
    shutil.rmtree(run / "baseline")
    refused(base + [str(src), "--text-column", "body", "--model", "baseline"], caplog, "baseline/ is missing")
    refused(["predict", "no-such-run", "--input", str(src)], caplog, "No run 'no-such-run'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blank.jsonl", "empty.csv", "runs", "tickets.csv"]


def test_the_live_pages_limit_points_to_predict(runs, run_dir):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app_pages" / "live_classification.py"),
                           default_timeout=60)
    at.session_state["run_id"] = run_dir.name
    at.run()
    at.text_area(key="live_text").set_value("\n".join(f"the team won {i}" for i in range(1001))).run()
    shown = " ".join(str(e.value) for e in at.error)
    assert "at most 1000 at once" in shown
    assert f"python -m distill_core predict {run_dir.name} --input FILE" in shown and "evaluate" not in shown
