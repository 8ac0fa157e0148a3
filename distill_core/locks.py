"""One job of each kind at a time on a run, and none while the run trains.

    with job_lock(run_dir, "sweep"):       # JobBusy (a RunError: one line, exit code 2) when a sweep already runs
        ...
    holder(run_dir, "bench")               # who holds the bench lock ({"pid", "started", "host", "since"}) or None

    lock = acquire(run_dir, "bench")       # the dashboard: take the lock, start the job with it, hand it over
    proc = subprocess.Popen(cmd, **lock.popen_kwargs(env))
    lock.hand_to(proc.pid)

The kinds are ``bench``, ``sweep``, ``prune``, ``export`` and ``evaluate``; different kinds may run side by side,
two of one kind may not, and none starts while the run is still training (its status names a live process).
Training has no lock file: its folder is created exclusively (``runs.create_run_dir``), so two trainings never share
a run.

The lock is ``fcntl.flock`` on ``<run>/.lock-<kind>``, so the system drops it when its process ends, however it
ends: a killed job never leaves a run locked. The file says who holds it, for the message a second job gets; it is
emptied on release and never deleted (deleting it would let two jobs each lock a file of that name). A job the
dashboard starts is given the lock before it is launched: the launching process takes it, the job inherits it
(``DISTILL_JOB_LOCK_FD``) and adopts it, so two sessions pressing the same button cannot both start one.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import RunError
from .files import check_writable
from .processes import record_alive, started_at, this_process

KINDS = ("bench", "sweep", "prune", "export", "evaluate")
FD_ENV = "DISTILL_JOB_LOCK_FD"  # the lock a job was started with (the dashboard's jobs)
NAMES = {"bench": "A benchmark", "sweep": "A sweep", "prune": "A pruning", "export": "An export",
         "evaluate": "An evaluation"}


class JobBusy(RunError):
    """A job of this kind already runs on this run (or the run is still training); the message says which and what
    to do. Nothing was changed."""


def lock_path(run_dir: Path, kind: str) -> Path:
    return Path(run_dir) / f".lock-{kind}"


def _when(t: Any) -> str:
    """``20:41`` today, ``2026-01-04 20:41`` on another day; ``?`` when unknown."""
    if not isinstance(t, (int, float)):
        return "?"
    fmt = "%H:%M" if time.strftime("%Y-%m-%d", time.localtime(t)) == time.strftime("%Y-%m-%d") else "%Y-%m-%d %H:%M"
    return time.strftime(fmt, time.localtime(t))


def _who(record: dict[str, Any] | None) -> str:
    if not record or not record.get("pid"):
        return ""
    return f" (pid {record['pid']}, since {_when(record.get('since') or record.get('started'))})"


def busy_message(run_dir: Path, kind: str, record: dict[str, Any] | None) -> str:
    """``A sweep is already running on RUN (pid 1234, since 20:41); wait for it or stop it``."""
    stop = f" (`kill {record['pid']}`)" if record and record.get("pid") else ""
    return (f"{NAMES.get(kind, 'A ' + kind)} is already running on {Path(run_dir).name}{_who(record)}; wait for it or "
            f"stop it{stop}, then start it again. Nothing was changed.")


def _read(fd: int) -> dict[str, Any] | None:
    try:
        d = json.loads(os.pread(fd, 4096, 0) or b"null")
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def holder(run_dir: Path, kind: str) -> dict[str, Any] | None:
    """Who holds ``kind``'s lock on the run (``{"job", "pid", "started", "host", "since"}``), or None when no live
    process does. Read without taking the lock, so looking never makes a job starting at that moment fail."""
    try:
        fd = os.open(lock_path(run_dir, kind), os.O_RDONLY)
    except OSError:
        return None
    try:
        record = _read(fd)
    finally:
        os.close(fd)
    return record if record and record_alive(record) is not False else None


def refuse_while_training(run_dir: Path, what: str) -> None:
    """JobBusy when the run's training process still runs (``runs.load_run`` says ``running``)."""
    from .runs import STATUS_FILE, load_run

    info = load_run(run_dir)
    if info.status == "running":
        try:
            st = json.loads((Path(run_dir) / STATUS_FILE).read_text())
        except (OSError, ValueError):
            st = {}
        who = f", pid {st['pid']}, since {_when(st.get('started'))}" if isinstance(st, dict) and st.get("pid") else ""
        raise JobBusy(f"Run {info.run_id} is still training (stage {info.stage}{who}); {what} once it is complete. "
                      "Nothing was changed.")


class JobLock:
    """A held lock: ``release()`` it when the job ends (``job_lock`` does), or ``hand_to`` the job started with it."""

    def __init__(self, run_dir: Path, kind: str, fd: int):
        self.run_dir, self.kind, self.fd = Path(run_dir), kind, fd

    def _write(self, record: dict[str, Any]) -> None:
        data = json.dumps({"job": self.kind, **record, "since": time.time()}).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def popen_kwargs(self, env: dict[str, str]) -> dict[str, Any]:
        """What ``subprocess.Popen`` needs to start the job holding this lock."""
        return {"pass_fds": (self.fd,), "env": {**env, FD_ENV: str(self.fd)}}

    def hand_to(self, pid: int) -> None:
        """The job ``pid`` was started with this lock (``popen_kwargs``): name it as the holder and let go of ours."""
        import socket

        self._write({"pid": int(pid), "started": started_at(pid), "host": socket.gethostname()})
        os.close(self.fd)
        self.fd = -1

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)
            self.fd = -1


def _inherited(path: Path) -> int | None:
    """The descriptor of ``path``'s lock this process was started holding (``JobLock.popen_kwargs``), else None."""
    value = os.environ.get(FD_ENV)
    if not value or not value.isdigit():
        return None
    fd = int(value)
    try:
        mine, there = os.fstat(fd), os.stat(path)
    except OSError:
        return None
    if (mine.st_dev, mine.st_ino) != (there.st_dev, there.st_ino):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the same open file: already ours, this only confirms it
    except OSError:
        return None
    os.environ.pop(FD_ENV, None)  # used once: whatever this job starts does not inherit it
    return fd


def acquire(run_dir: Path, kind: str) -> JobLock:
    """Take ``kind``'s lock on the run, or refuse at once.

    Raises:
        JobBusy: a job of this kind already runs on the run, or the run is still training; nothing was changed.
        RunError: the run folder cannot be written (``files.check_writable``).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}; one of {KINDS}")
    run_dir = Path(run_dir)
    check_writable(run_dir)
    path = lock_path(run_dir, kind)
    fd = _inherited(path)
    if fd is None:
        refuse_while_training(run_dir, f"start the {kind}")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            record = _read(fd)
            os.close(fd)
            raise JobBusy(busy_message(run_dir, kind, record)) from None
        except BaseException:
            os.close(fd)
            raise
    lock = JobLock(run_dir, kind, fd)
    lock._write(this_process())
    return lock


@contextmanager
def job_lock(run_dir: Path, kind: str) -> Iterator[JobLock]:
    """Hold ``kind``'s lock on the run for the block (``acquire``; released however the block ends)."""
    lock = acquire(run_dir, kind)
    try:
        yield lock
    finally:
        lock.release()
