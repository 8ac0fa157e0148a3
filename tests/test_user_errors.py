"""Mistakes of the user's, and the operating system's refusals, are one line with the fix; advice is what works.

- ``loadtest``: a ``--json`` file that could not be written is refused before any request; a URL that is not a
  distill-lens service (a 404, an HTML page, nothing listening) is one line saying so.
- The dashboard's buttons: an OSError in the user's hands (permission, read-only, full disk) is one line with the
  path; the "not a problem with your input" sentence is kept for real internal errors.
- The Overview of a run without results advises what works for that run (``evaluate`` refuses a damaged one).
- ``--dataset a/b`` that is no folder and no hub dataset says the folder does not exist, with its absolute path.
"""

from __future__ import annotations

import errno
import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from distill_core.cli import main
from distill_core.config import DataConfig
from distill_core.errors import DataError
from distill_core.runs import RESULTS_FILE, set_status
from distill_core.ship.loadtest import free_port
from distill_core.train.data import load_splits, resolve_dataset

ROOT = Path(__file__).resolve().parents[1]
INTERNAL = "This is not a problem with your input or your run"


def one_error(caplog) -> str:
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0] and "Traceback" not in caplog.text, caplog.text
    return errors[0]


# ----------------------------------------------------------------------------- loadtest


@pytest.fixture
def plain_server(tmp_path):
    """A plain HTTP file server on 127.0.0.1 (not a distill-lens service), serving ``tmp_path/site``."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<html><body>hello</body></html>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield site, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_loadtest_at_a_server_that_is_not_the_service_is_one_line(plain_server, caplog):
    site, url = plain_server
    assert main(["loadtest", url, "--clients", "1", "--requests", "1"]) == 2  # /info: 404
    assert f"{url} is not a distill-lens service (GET /info answered 404" in one_error(caplog)
    assert "distill_core serve RUN" in one_error(caplog)
    (site / "info").write_text("<html>a page</html>")  # /info: 200, HTML
    caplog.clear()
    assert main(["loadtest", url, "--clients", "1", "--requests", "1"]) == 2
    assert "is not a distill-lens service (GET /info answered 200, not JSON)" in one_error(caplog)
    (site / "info").write_text(json.dumps({"status": "ok"}))  # /info: 200, someone else's JSON
    caplog.clear()
    assert main(["loadtest", url, "--clients", "1", "--requests", "1"]) == 2
    assert "is not a distill-lens service" in one_error(caplog)


def test_loadtest_at_a_closed_port_is_one_line(caplog):
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["loadtest", url, "--clients", "1", "--requests", "1"]) == 2
    assert f"No server answers at {url}" in one_error(caplog) and "distill_core serve RUN" in one_error(caplog)


def test_loadtest_json_that_cannot_be_written_is_refused_before_any_request(tmp_path, caplog):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: a request sent first would fail differently
    target = tmp_path / "no" / "such" / "folder" / "figures.json"
    assert main(["loadtest", url, "--json", str(target)]) == 2
    assert f"--json {target}: {target.parent} does not exist" in one_error(caplog)
    (tmp_path / "a-file").write_text("")
    caplog.clear()
    assert main(["loadtest", url, "--json", str(tmp_path / "a-file" / "figures.json")]) == 2
    assert "is a file, not a folder" in one_error(caplog)
    caplog.clear()
    assert main(["loadtest", url, "--json", str(tmp_path)]) == 2
    assert "that is a folder" in one_error(caplog)


# ----------------------------------------------------------------------------- the dashboard's buttons


def _page(name: str, run_dir: Path) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app_pages" / f"{name}.py"), default_timeout=60)
    at.session_state["run_id"] = run_dir.name
    return at.run()


def _denied(path: Path):
    def fail(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    return fail


def test_refitting_temperatures_where_the_run_cannot_be_written_is_one_line(run_dir, monkeypatch):
    at = _page("calibration", run_dir)
    assert not at.exception
    monkeypatch.setattr("distill_core.app.calibrate_run", _denied(run_dir / "calibration.json"))
    at.button(key="cal_refit").click().run()
    shown = " ".join(str(e.value) for e in at.error)
    assert f"Cannot use {run_dir / 'calibration.json'}: Permission denied" in shown and "Fix:" in shown
    assert INTERNAL not in shown and not at.exception


def test_a_real_internal_error_is_still_called_one(run_dir, monkeypatch):
    at = _page("calibration", run_dir)

    def bug(*args, **kwargs):
        raise RuntimeError("an index went wrong")

    monkeypatch.setattr("distill_core.app.calibrate_run", bug)
    at.button(key="cal_refit").click().run()
    assert INTERNAL in " ".join(str(e.value) for e in at.error)


def test_running_the_benchmark_where_its_log_cannot_be_written_is_one_line(run_dir, monkeypatch):
    at = _page("performance", run_dir)
    monkeypatch.setattr("distill_core.jobs.launch", _denied(run_dir.parent / ".logs"))
    [button] = [b for b in at.button if b.label == "Run the benchmark now"]
    button.click().run()
    shown = " ".join(str(e.value) for e in at.error)
    assert f"Cannot use {run_dir.parent / '.logs'}: Permission denied" in shown
    assert INTERNAL not in shown and "PermissionError" not in shown and not at.exception


# ----------------------------------------------------------------------------- the Overview of a run without results


def _failed_copy(run_dir: Path, name: str, *missing: str) -> Path:
    run = run_dir.parent / name
    shutil.copytree(run_dir, run)
    (run / RESULTS_FILE).unlink()
    for kind in missing:
        shutil.rmtree(run / kind)
    set_status(run, "failed", "student", "RuntimeError: out of memory")
    return run


def _overview(run: Path) -> str:
    at = AppTest.from_file(str(ROOT / "app_pages" / "overview.py"), default_timeout=60)
    at.session_state["run_id"] = run.name
    at.run()
    assert not at.exception
    return " ".join(str(e.value) for e in at.error)


def test_the_overview_of_a_failed_run_advises_what_works(run_dir):
    students_lost = _failed_copy(run_dir, "20260105-000000_students_lost", "student", "baseline")
    shown = _overview(students_lost)
    assert "distill_core evaluate" not in shown  # it would refuse this run
    assert "student/ is missing" in shown and "baseline/ is missing" in shown
    assert f"--models student,baseline --teacher-from {students_lost.name}" in shown and "re-train it" in shown

    teacher_lost = _failed_copy(run_dir, "20260106-000000_teacher_lost", "teacher")
    shown = _overview(teacher_lost)
    assert "distill_core evaluate" not in shown and "--teacher-from" not in shown and "re-train it" in shown

    whole = _failed_copy(run_dir, "20260107-000000_whole")
    assert f"`python -m distill_core evaluate {whole.name}`" in _overview(whole)


# ----------------------------------------------------------------------------- a dataset path that is not there


def test_a_dataset_path_that_is_not_there_is_named_as_a_missing_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("distill_core.config.SHARED_DATA_DIR", tmp_path / "no_shared_copies")
    (tmp_path / "data").mkdir()
    for name in ("data/sub/mydata", "mydata/", "exports/2024/tickets"):  # never a hub id (owner/name)
        with pytest.raises(DataError, match=f"Dataset folder '{name}' not found: {tmp_path / name.rstrip('/')} does "
                                            "not exist"):
            resolve_dataset(DataConfig(dataset=name))
    # owner/name could be either: the hub is asked (offline in the tests), and its failure names the folder too.
    with pytest.raises(DataError) as e:
        load_splits(DataConfig(dataset="exports/tickets"))
    assert f"Dataset 'exports/tickets' not found: there is no folder {tmp_path / 'exports' / 'tickets'}" in str(e.value)
    assert resolve_dataset(DataConfig(dataset="fancyzhx/ag_news")) == "fancyzhx/ag_news"  # hub ids stay hub ids


def test_train_on_a_missing_relative_folder_is_one_line_and_makes_no_run(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs"
    assert main(["train", "--dataset", "exports/tickets", "--output-dir", str(out)]) == 2
    assert f"there is no folder {tmp_path / 'exports' / 'tickets'}" in one_error(caplog)
    assert not out.exists() or not any(out.iterdir())
