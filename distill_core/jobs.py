"""Start a ``train``, ``bench`` or ``sweep`` job in the background, and follow it (what the dashboard's buttons do).

    job = start_train("quick")               # a new run id, chosen here, so the caller knows which run to follow
    job.running(), job.returncode, job.tail()
    training_progress(job.run_dir)            # stage, fraction of optimizer steps done, a sentence

A job is ``python -m distill_core ...`` in its own process session (closing the app does not stop it), its
output in ``runs.log_path``. The ``Job`` handle belongs to whoever started it (a dashboard session keeps it in
``st.session_state``); the run folder's progress file is what everyone else reads. Every child is waited for by a
thread of its own, so one that exits is reaped at once, never left a zombie, whether or not a page still polls it.

A bench or sweep takes its lock on the run here, before it is launched, and the job inherits it (``locks``): a
second one on the same run raises ``locks.JobBusy`` with the message to show, and nothing is started or written.
A new run's id is claimed by creating its log exclusively, so two sessions pressing Train in the same second get
two runs and two logs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .config import PROJECT_ROOT, data_dir, runs_dir
from .errors import RunError
from .files import read_json
from .locks import JobLock, acquire
from .presets import PRESETS
from .runs import STATUS_FILE, Progress, log_path, new_run_id, read_progress, run_id_candidates

ENTRY = [sys.executable, "-m", "distill_core"]  # what a job runs, before its arguments


@dataclass
class Job:
    job: str  # train | bench | sweep
    run_id: str
    run_dir: Path
    log: Path
    process: subprocess.Popen

    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def tail(self, n: int = 20) -> str:
        """The last ``n`` lines of the job's output."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError as e:
            return f"(no log: {e})"


def launch(args: list[str], log: Path | IO[str], lock: JobLock | None = None) -> subprocess.Popen:
    """Start ``python -m distill_core ARGS`` in its own session, output to ``log`` (a path, or a file opened for it).

    Short dataset names resolve as they do in this process: ``DISTILL_DATA_DIR`` is set to ``config.data_dir()``.
    Given ``lock``, the job starts holding it (``locks.JobLock.popen_kwargs``) and this process lets go of it. A
    thread waits for the child, so it is reaped as soon as it exits.
    """
    env = dict(os.environ)
    data = data_dir()
    if data is not None:
        env.setdefault("DISTILL_DATA_DIR", str(data))
    kwargs = lock.popen_kwargs(env) if lock is not None else {"env": env}
    if isinstance(log, Path):
        log.parent.mkdir(parents=True, exist_ok=True)
        log = open(log, "w")
    with log:
        proc = subprocess.Popen([*ENTRY, *args], cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, **kwargs)
    if lock is not None:
        lock.hand_to(proc.pid)
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    return proc


def start_train(preset: str = "quick", root: Path | None = None) -> Job:
    """``train --preset PRESET --run-id <new id>`` in the background; the id is claimed here (its log created
    exclusively, ``-2``, ``-3`` ... added when taken), so the caller knows which run to follow."""
    root = Path(root) if root else runs_dir()
    base = new_run_id(str(PRESETS[preset]["data"]["dataset"]), preset, root)
    log_path(root, base, "train").parent.mkdir(parents=True, exist_ok=True)
    for run_id in run_id_candidates(base):
        log = log_path(root, run_id, "train")
        if (root / run_id).exists():
            continue
        try:
            out = open(log, "x")
        except FileExistsError:
            continue
        break
    args = ["train", "--preset", preset, "--run-id", run_id]
    if root != runs_dir():
        args += ["--output-dir", str(root)]
    return Job("train", run_id, root / run_id, log, launch(args, out))


def _start_locked(job: str, kind: str, run_dir: Path, args: list[str]) -> Job:
    """Take ``kind``'s lock on the run (``locks.JobBusy`` when it is taken), then start the job holding it."""
    run_dir = Path(run_dir)
    lock = acquire(run_dir, kind)
    try:
        log = log_path(run_dir.parent, run_dir.name, job)  # opened only now: never the log of a job still running
        return Job(kind, run_dir.name, run_dir, log, launch(args, log, lock))
    finally:
        lock.release()  # a no-op once handed over; frees the lock when the job could not be started


def start_bench(run_dir: Path, arch: str = "run") -> Job:
    """``bench RUN --arch ARCH`` in the background; ``locks.JobBusy`` when a bench already runs on the run."""
    run_dir = Path(run_dir)
    return _start_locked("bench" if arch == "run" else f"bench-{arch}", "bench", run_dir,
                         ["bench", str(run_dir), "--arch", arch])


def start_sweep(run_dir: Path, temperatures: list[float], alphas: list[float], epochs: float = 1.0) -> Job:
    """``sweep RUN --temperature ... --alpha ... --epochs ...`` in the background (it resumes finished cells);
    ``locks.JobBusy`` when a sweep already runs on the run."""
    run_dir = Path(run_dir)
    args = ["sweep", str(run_dir), "--temperature", ",".join(f"{t:g}" for t in temperatures),
            "--alpha", ",".join(f"{a:g}" for a in alphas), "--epochs", f"{epochs:g}"]
    return _start_locked("sweep", "sweep", run_dir, args)


def training_progress(run_dir: Path) -> Progress:
    """How far a run's training has got: its own progress report while it trains, 1.0 once complete."""
    try:
        status = read_json(Path(run_dir) / STATUS_FILE)
    except RunError:
        status = {}
    state, stage = status.get("status", "running"), status.get("stage") or "starting"
    if state == "complete":
        return Progress("train", 1.0, "complete")
    p = read_progress(run_dir, "train")
    if p is not None:
        return Progress("train", p.fraction, f"{state}: {p.message}", p.pid, p.host, p.updated)
    return Progress("train", 0.0, f"{state}: {stage}" + (" (loading data)" if stage in ("data", "starting") else ""))
