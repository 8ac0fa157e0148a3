"""A process that has exited is not a live job, even before it is reaped; a command whose reader goes away (``| head``)
still finishes and returns its own exit code."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

from distill_core.runs import pid_alive


def test_a_zombie_is_not_alive_and_a_running_process_is():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert pid_alive(child.pid)
    finally:
        child.kill()
    deadline = time.monotonic() + 10
    while pid_alive(child.pid) and time.monotonic() < deadline:  # killed, not reaped: a zombie
        time.sleep(0.05)
    assert not pid_alive(child.pid)
    child.wait()
    assert not pid_alive(child.pid)


def test_check_piped_into_head_keeps_its_exit_code_and_prints_no_traceback(tiny_run, tmp_path):
    run = tmp_path / tiny_run.name
    shutil.copytree(tiny_run, run)
    # `check` fails here (no bench): exit code 3, whether or not its reader stays for all of its output.
    # `true` exits at once without reading: every write of `check` meets a closed pipe.
    script = (f"{sys.executable} -m distill_core check {run} | true; "
              "echo ${PIPESTATUS[0]}")
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "3", out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "BrokenPipeError" not in out.stderr


def test_student_layers_beyond_the_teachers_are_refused_before_any_folder(tmp_path, dataset_dir, teacher_dir, caplog):
    from conftest import train_args
    from distill_core.cli import main

    assert main(train_args(dataset_dir, teacher_dir, tmp_path, "deep", "--student-layers", "100")) == 2
    assert "--student-layers 100: the student is built from the teacher's layers and the teacher has 4" in caplog.text
    assert not (tmp_path / "deep").exists()


def test_a_failed_run_keeps_no_copy_of_a_teacher_that_lives_elsewhere(tmp_path, tiny_run, dataset_dir, teacher_dir,
                                                                     monkeypatch):
    from conftest import train_args
    from distill_core.cli import main
    from distill_core.runs import load_run
    from distill_core.train import pipeline

    def broken(self):
        raise RuntimeError("the student could not be trained")

    monkeypatch.setattr(pipeline._Run, "train_student", broken)
    assert main(train_args(dataset_dir, teacher_dir, tmp_path, "broken", "--models", "student",
                           "--teacher-from", str(tiny_run))) == 1
    run = tmp_path / "broken"
    assert load_run(run).status == "failed" and not (run / "teacher").exists()
    assert (tiny_run / "teacher" / "model.safetensors").is_file()  # the original is untouched


def test_sweep_refuses_a_run_without_a_teacher_and_leaves_no_folder(tmp_path, tiny_run):
    from distill_core.cli import main

    run = tmp_path / tiny_run.name
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("teacher"))
    assert main(["sweep", str(run)]) == 2
    assert not (run / "sweep").exists()


def test_an_unfinished_sweep_says_which_cells_are_done():
    from distill_core.views.sweep import choice_sentence

    sweep = {"cells": [{"temperature": 1.0, "alpha": 0.0}, {"temperature": 2.0, "alpha": 0.5}]}
    assert choice_sentence(sweep).startswith("1 distilled cell(s) finished")
    assert choice_sentence({"cells": [{"temperature": 1.0, "alpha": 0.0}]}) == "No distilled cell finished yet."


def test_an_output_dir_that_is_a_file_is_one_line_not_an_internal_error(tmp_path, dataset_dir, teacher_dir, caplog):
    from conftest import train_args
    from distill_core.cli import main

    not_a_folder = tmp_path / "runs.txt"
    not_a_folder.write_text("notes")
    assert main(train_args(dataset_dir, teacher_dir, not_a_folder, "x")) == 2
    assert "Internal error" not in caplog.text and "Traceback" not in caplog.text
    assert str(not_a_folder) in caplog.text and not_a_folder.read_text() == "notes"


def test_evaluate_on_a_run_it_cannot_write_refuses_before_scoring(tmp_path, tiny_run, monkeypatch, caplog):
    import tempfile

    from distill_core.cli import main
    from distill_core.evidence import evaluate

    run = tmp_path / tiny_run.name
    shutil.copytree(tiny_run, run)
    before = (run / "results.json").read_bytes()

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    def never(*args, **kwargs):
        raise AssertionError("nothing may be scored in a run whose results cannot be written")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)  # as a read-only folder answers (root ignores chmod)
    monkeypatch.setattr(evaluate, "load_trained", never)
    assert main(["evaluate", str(run)]) == 2
    assert f"Cannot write to the run folder {run}: Permission denied" in caplog.text
    assert (run / "results.json").read_bytes() == before
