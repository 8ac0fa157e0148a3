"""Start a ``train`` or ``bench`` job in the background, and follow it (what the dashboard's buttons do).

    job = start_train("quick")               # a new run id, chosen here, so the caller knows which run to follow
    job.running(), job.returncode, job.tail()
    training_progress(job.run_dir)            # stage, fraction of optimizer steps done, a sentence

A job is ``python -m distill_core ...`` in its own process session (closing the app does not stop it), its
output in ``runs.log_path``. The ``Job`` handle belongs to whoever started it (a dashboard session keeps it in
``st.session_state``); the run folder's progress file is what everyone else reads.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .config import PROJECT_ROOT, data_dir, runs_dir
from .errors import RunError
from .files import read_json
from .presets import PRESETS
from .runs import STATUS_FILE, Progress, log_path, new_run_id, read_progress


@dataclass
class Job:
    job: str  # train | bench
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


def launch(args: list[str], log: Path) -> subprocess.Popen:
    """Start ``python -m distill_core ARGS`` in its own session, output to ``log``.

    Short dataset names resolve as they do in this process: ``DISTILL_DATA_DIR`` is set to ``config.data_dir()``.
    """
    env = dict(os.environ)
    data = data_dir()
    if data is not None:
        env.setdefault("DISTILL_DATA_DIR", str(data))
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, "-m", "distill_core", *args], cwd=PROJECT_ROOT, env=env,
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def start_train(preset: str = "quick", root: Path | None = None) -> Job:
    """``train --preset PRESET --run-id <new id>`` in the background."""
    root = Path(root) if root else runs_dir()
    run_id = new_run_id(str(PRESETS[preset]["data"]["dataset"]), preset)
    log = log_path(root, run_id, "train")
    args = ["train", "--preset", preset, "--run-id", run_id]
    if root != runs_dir():
        args += ["--output-dir", str(root)]
    return Job("train", run_id, root / run_id, log, launch(args, log))


def start_bench(run_dir: Path, arch: str = "run") -> Job:
    """``bench RUN --arch ARCH`` in the background."""
    run_dir = Path(run_dir)
    job = "bench" if arch == "run" else f"bench-{arch}"
    log = log_path(run_dir.parent, run_dir.name, job)
    return Job("bench", run_dir.name, run_dir, log, launch(["bench", str(run_dir), "--arch", arch], log))


def start_sweep(run_dir: Path, temperatures: list[float], alphas: list[float], epochs: float = 1.0) -> Job:
    """``sweep RUN --temperature ... --alpha ... --epochs ...`` in the background (it resumes finished cells)."""
    run_dir = Path(run_dir)
    log = log_path(run_dir.parent, run_dir.name, "sweep")
    args = ["sweep", str(run_dir), "--temperature", ",".join(f"{t:g}" for t in temperatures),
            "--alpha", ",".join(f"{a:g}" for a in alphas), "--epochs", f"{epochs:g}"]
    return Job("sweep", run_dir.name, run_dir, log, launch(args, log))


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
