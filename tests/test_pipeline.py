"""End to end: the real CLI trains three tiny models into a run folder; every file and column is checked."""

import json
import shutil

import pandas as pd
import pytest
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from conftest import LABELS, train_args
from distill_core.cli import main
from distill_core.config import RunConfig
from distill_core.presets import preset_config
from distill_core.runs import KD_COLUMNS, TRAIN_COLUMNS, VAL_COLUMNS, list_runs, load_run, read_metrics

KINDS = ("teacher", "student", "baseline")


def test_run_folder_has_every_file(tiny_run):
    names = {p.name for p in tiny_run.iterdir()}
    expected = {"config.json", "status.json", "results.json", "predictions.parquet", *KINDS,
                *(f"{k}_{s}.csv" for k in KINDS for s in ("train", "val"))}
    assert expected <= names
    assert not [n for n in names if n.startswith(".")], "temporary files left behind"
    assert json.loads((tiny_run / "status.json").read_text())["status"] == "complete"


def test_config_round_trips_and_records_the_environment(tiny_run):
    d = json.loads((tiny_run / "config.json").read_text())
    cfg = RunConfig.from_dict({k: d[k] for k in ("preset", "data", "model", "train", "kd", "output_dir", "run_id")})
    assert cfg.data.max_length == 32 and cfg.train.batch_size == 8 and cfg.kd.temperature == 2.0
    assert d["dataset_info"]["label_names"] == LABELS
    assert d["dataset_info"]["rows"]["validation"] > 0  # carved from train
    assert {"torch", "transformers", "datasets", "device"} <= set(d["environment"])
    arch = d["architectures"]
    assert arch["teacher"]["layers"] == 4 and arch["student"]["layers"] == 2
    assert arch["student"]["layer_map"] == [0, 2]


def test_metric_csvs_have_the_documented_columns(tiny_run):
    for kind in KINDS:
        tr = read_metrics(tiny_run, kind, "train")
        va = read_metrics(tiny_run, kind, "val")
        want = TRAIN_COLUMNS + (KD_COLUMNS if kind == "student" else [])
        assert set(want) <= set(tr.columns), kind
        assert set(VAL_COLUMNS) <= set(va.columns), kind
        assert tr["step"].tolist() == list(range(1, len(tr) + 1))
        assert tr["examples_seen"].is_monotonic_increasing and tr["learning_rate"].ge(0).all()
        # --eval-every 4 plus each epoch end: more evaluations than epochs.
        assert len(va) > 2 and va["val_accuracy"].between(0, 1).all()
    st = read_metrics(tiny_run, "student", "train")
    assert st["kd_loss"].ge(0).all() and st["ce_loss"].gt(0).all()
    # loss = alpha * kd + (1 - alpha) * ce with alpha 0.5
    assert (st["train_loss"] - 0.5 * (st["kd_loss"] + st["ce_loss"])).abs().max() < 1e-3


def test_results_json(tiny_run):
    r = json.loads((tiny_run / "results.json").read_text())
    assert r["label_names"] == LABELS
    for kind in KINDS:
        m = r["models"][kind]
        assert 0 <= m["accuracy"] <= 1 and 0 <= m["macro_f1"] <= 1
        assert set(m["per_class"]) == set(LABELS)
        cm = m["confusion_matrix"]
        assert len(cm) == 4 and sum(map(sum, cm)) == r["test_rows"]
        assert m["parameters"] > 0 and m["size_bytes"] > 0
        assert m["training"]["steps"] > 0
    assert r["models"]["student"]["parameters"] < r["models"]["teacher"]["parameters"]
    for kind in ("student", "baseline"):
        assert 0 <= r["models"][kind]["agreement_with_teacher"] <= 1


def test_predictions_parquet(tiny_run):
    df = pd.read_parquet(tiny_run / "predictions.parquet")
    r = json.loads((tiny_run / "results.json").read_text())
    assert len(df) == r["test_rows"]
    assert {"text", "label", "label_name"} <= set(df.columns)
    for kind in KINDS:
        probs = df[f"{kind}_probs"].tolist()
        assert all(len(p) == 4 and abs(sum(p) - 1) < 1e-4 for p in probs)
        acc = (df[f"{kind}_pred"] == df["label"]).mean()
        assert acc == pytest.approx(r["models"][kind]["accuracy"])


@pytest.mark.parametrize("kind", KINDS)
def test_saved_models_load_with_from_pretrained_alone(tiny_run, kind):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_run / kind)
    tok = AutoTokenizer.from_pretrained(tiny_run / kind)
    assert model.config.id2label[3] == "Sci/Tech"
    assert (tiny_run / kind / "model.safetensors").is_file()
    assert not list((tiny_run / kind).glob("*.bin"))
    out = model(**tok(["the team won the cup ."], return_tensors="pt"))
    assert out.logits.shape == (1, 4)


def test_same_seed_gives_same_metrics(tmp_path, dataset_dir, teacher_dir):
    for rid in ("a", "b"):
        assert main(train_args(dataset_dir, teacher_dir, tmp_path, rid, "--models", "teacher")) == 0
    a = read_metrics(tmp_path / "a", "teacher", "train")
    b = read_metrics(tmp_path / "b", "teacher", "train")
    pd.testing.assert_frame_equal(a.drop(columns="elapsed_s"), b.drop(columns="elapsed_s"))


def test_teacher_from_reuses_an_earlier_teacher(tmp_path, tiny_run, dataset_dir, teacher_dir):
    args = train_args(dataset_dir, teacher_dir, tmp_path, "reuse", "--teacher-from", str(tiny_run),
                      "--models", "student")
    assert main(args) == 0
    run = tmp_path / "reuse"
    assert {"teacher", "student"} <= {p.name for p in run.iterdir()}
    assert not (run / "baseline").exists()
    a = (tiny_run / "teacher" / "model.safetensors").read_bytes()
    assert (run / "teacher" / "model.safetensors").read_bytes() == a
    r = json.loads((run / "results.json").read_text())
    assert r["models"]["teacher"]["accuracy"] == json.loads((tiny_run / "results.json").read_text())["models"]["teacher"]["accuracy"]


def test_student_without_a_usable_teacher_is_refused_before_any_folder(tmp_path, dataset_dir, teacher_dir, caplog):
    # --teacher is a bare pretrained encoder and teacher is not in --models: nothing could be distilled from it.
    assert main(train_args(dataset_dir, teacher_dir, tmp_path, "noteacher", "--models", "student")) == 2
    assert "has no classification head" in caplog.text and "put teacher in --models" in caplog.text
    assert not (tmp_path / "noteacher").exists()


def test_mistyped_dataset_path_leaves_no_run_folder(tmp_path, teacher_dir, caplog):
    assert main(train_args(tmp_path / "missing", teacher_dir, tmp_path, "bad")) == 2
    assert "not found" in caplog.text
    assert not (tmp_path / "bad").exists()


def test_data_error_while_loading_leaves_no_run_folder(tmp_path, teacher_dir, caplog):
    """Data that cannot be used is the user's to fix, before a run exists: one line, nothing written."""
    from conftest import make_texts, write_hub_folder

    d = write_hub_folder(tmp_path / "data" / "empty_test", {"train": make_texts(40, 0), "test": make_texts(4, 0).iloc[0:0]})
    assert main(train_args(d, teacher_dir, tmp_path / "runs", "bad")) == 2
    assert "0 rows" in caplog.text
    assert not (tmp_path / "runs" / "bad").exists()


def test_evaluate_recomputes_results(tmp_path, tiny_run, capsys):
    run = tmp_path / tiny_run.name
    shutil.copytree(tiny_run, run)
    (run / "results.json").unlink()
    assert main(["evaluate", str(run)]) == 0
    new = json.loads((run / "results.json").read_text())
    old = json.loads((tiny_run / "results.json").read_text())
    for kind in KINDS:
        assert new["models"][kind]["accuracy"] == pytest.approx(old["models"][kind]["accuracy"])


def test_runs_lists_status_and_accuracy(tiny_run, capsys):
    assert main(["runs", "--output-dir", str(tiny_run.parent)]) == 0
    out = capsys.readouterr().out
    assert tiny_run.name in out and "complete" in out


def test_interrupted_run_is_reported_failed_not_running(tmp_path, tiny_run):
    run = tmp_path / "killed"
    shutil.copytree(tiny_run, run)
    st = json.loads((run / "status.json").read_text())
    st.update(status="running", stage="student", pid=2**22 + 12345)  # a pid that does not exist
    (run / "status.json").write_text(json.dumps(st))
    info = [r for r in list_runs(tmp_path) if r.run_id == "killed"][0]
    assert info.status == "failed" and "interrupted" in info.error


def test_corrupt_csv_is_a_clear_error(tmp_path, tiny_run):
    from distill_core.runs import RunError

    run = tmp_path / "corrupt"
    shutil.copytree(tiny_run, run)
    (run / "teacher_train.csv").write_bytes(b"\x00\xff garbage")
    with pytest.raises(RunError, match="teacher_train.csv"):
        read_metrics(run, "teacher", "train")


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for flag in ("--dataset", "--teacher", "--student", "--layer-map", "--temperature", "--alpha", "--models",
                 "--teacher-from", "--max-train-samples", "--eval-every", "--scheduler", "--preset"):
        assert flag in out


def test_classic_preset_is_the_reports_setting():
    cfg = preset_config("classic")
    assert (cfg.model.teacher, cfg.model.student) == ("bert-base-uncased", "distilbert-base-uncased")
    assert (cfg.train.batch_size, cfg.train.learning_rate, cfg.data.max_length, cfg.train.epochs) == (64, 2e-5, 128, 1.0)
    assert cfg.data.dataset == "fancyzhx/ag_news"


def test_unless_complete_skips_only_when_a_full_run_exists(tmp_path, tiny_run, dataset_dir, teacher_dir):
    shutil.copytree(tiny_run, tmp_path / tiny_run.name)
    args = train_args(dataset_dir, teacher_dir, tmp_path, "again", "--unless-complete")
    assert main(args) == 0
    assert not (tmp_path / "again").exists()  # the complete copy counts: nothing trained
    shutil.rmtree(tmp_path / tiny_run.name / "baseline")  # a run missing a model does not count
    assert main(args) == 0
    assert load_run(tmp_path / "again").status == "complete"


def test_killed_training_marks_the_run_failed(tmp_path, dataset_dir, teacher_dir):
    """SIGTERM mid-run: status.json says failed (interrupted) and no model folder is half-written."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = train_args(dataset_dir, teacher_dir, tmp_path, "killed", "--epochs", "400")
    proc = subprocess.Popen([sys.executable, "-m", "distill_core", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    run = tmp_path / "killed"
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "teacher_train.csv").exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) != 0
    st = json.loads((run / "status.json").read_text())
    assert st["status"] == "failed" and "interrupted" in st["error"]
    assert not (run / "teacher").exists()
    assert not [p for p in run.iterdir() if p.name.startswith(".")]


def test_runs_are_listed_newest_first_whatever_their_names(tmp_path, tiny_run):
    for name, created in (("zzz_old", "2020-01-01T00:00:00"), ("aaa_new", "2030-01-01T00:00:00")):
        shutil.copytree(tiny_run, tmp_path / name)
        cfg = json.loads((tmp_path / name / "config.json").read_text())
        cfg["created"] = created
        (tmp_path / name / "config.json").write_text(json.dumps(cfg))
    assert [r.run_id for r in list_runs(tmp_path)] == ["aaa_new", "zzz_old"]


def test_training_reports_optimizer_steps_as_progress(tmp_path, dataset_dir, teacher_dir, monkeypatch):
    """The run's own progress report counts optimizer steps over all models; it is gone once the run is done."""
    from distill_core.train import callbacks, pipeline

    reports = []
    monkeypatch.setattr(callbacks, "PROGRESS_EVERY_S", 0.0)
    real = pipeline.write_progress
    monkeypatch.setattr(pipeline, "write_progress",
                        lambda run_dir, job, fraction, message: (reports.append((fraction, message)),
                                                                 real(run_dir, job, fraction, message)))
    assert main(train_args(dataset_dir, teacher_dir, tmp_path, "progress")) == 0
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    # 57 train rows / batch 8 = 8 steps per epoch, 2 epochs each: teacher 16 + student 16 + baseline 16 = 48.
    assert any(m == "stage student, 16/48 optimizer steps" for _, m in reports)
    assert any(m == "stage baseline, 32/48 optimizer steps" for _, m in reports)
    assert not (tmp_path / "progress" / ".progress-train.json").exists()
