"""A run is a folder, and the folder is the interface between training, the bench and the dashboard.

This module owns every name in it; everything else asks here (``metrics_path``, ``model_dir``, ...).

    artifacts/runs/<run_id>/
        status.json            {"status": "running"|"complete"|"failed", "stage", "error", "pid", "started", "host",
                               "updated"}: ``started`` is the process's start time, so a reused pid is not trusted
        config.json            resolved RunConfig + dataset info + library versions + device
        <model>_train.csv      one row per optimizer step (appended while training)
        <model>_val.csv        one row per evaluation (appended while training)
        <model>_seed<N>_*.csv  the same for a student trained with another seed (``--seeds``; no checkpoint kept)
        teacher/ student/ baseline/   save_pretrained folders (config.json, tokenizer, model.safetensors)
            README.md          the model card (``model_card.write_model_cards``)
            onnx/              ``export RUN --model <model>``: model.onnx, model_int8.onnx (--int8), the tokenizer,
                               config.json and export.json (what it was exported from, verified on the test texts)
        results.json           test metrics per model, teacher-student agreement
        predictions.parquet    one row per test example: text, label, label_name, <model>_pred, <model>_probs (list)
        bench.json             speed/size figures (``bench RUN``); bench_<arch>.json for reference shapes
        sweep/sweep.json       ``sweep RUN``: the T/alpha grid's validation figures and the chosen cell's test figure
        sweep/sweep_<time>.json   an earlier sweep with another schedule (--epochs), kept when a new one starts
        calibration.json       per model: temperature fitted on validation, test ECE/Brier/NLL before and after
        pruning_<model>.json   ``prune RUN --model <model>``: per pruning amount, sparsity, accuracy, latency, size
        <model>_pruned<NN>/    ``prune ... --save 0.NN``: that model pruned, save_pretrained (not one of the run's models)
        .progress-<job>.json   while a job (train, bench) runs: {"job", "fraction", "message", "pid", "started", "host",
                               "updated"}
        .lock-<job>            while a job (bench, sweep, prune, export, evaluate) runs: who holds it (``locks``)
    artifacts/runs/.logs/<run_id>-<job>.log   output of a job started from the dashboard

Everything except the CSVs appears only when whole: it is written to a temporary name, then renamed
(``files.write_json_atomic``, ``files.atomic_dir``).
``<model>`` is one of ``teacher``, ``student`` (distilled) and ``baseline``. A run id is a plain name
(``config.RUN_ID_RULE``), so every path built from one stays inside the runs folder.
"""

from __future__ import annotations

import itertools
import json
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .config import CONFIG_FILE_FIELDS, MODEL_KINDS, RUN_ID_PATTERN, RunConfig, check_run_id, runs_dir
from .errors import ConfigError, RunError
from .files import read_json, write_json_atomic
from .processes import pid_alive, record_alive, this_process  # noqa: F401 - pid_alive: runs' readers ask here

STATUS_FILE = "status.json"
CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
PREDICTIONS_FILE = "predictions.parquet"
CALIBRATION_FILE = "calibration.json"  # its shape: calibration.check_calibration
BENCH_FILE = "bench.json"
SWEEP_DIR = "sweep"
MODEL_WEIGHTS = "model.safetensors"
MODEL_CONFIG = "config.json"
LOGS_DIR = ".logs"
MODEL_CARD = "README.md"
ONNX_DIR = "onnx"
ONNX_MODEL = "model.onnx"
ONNX_INT8_MODEL = "model_int8.onnx"
ONNX_EXPORT_FILE = "export.json"

TRAIN_COLUMNS = ["step", "epoch", "batch", "train_loss", "train_accuracy", "learning_rate", "examples_seen", "elapsed_s"]
KD_COLUMNS = ["kd_loss", "ce_loss"]
VAL_COLUMNS = ["step", "epoch", "examples_seen", "elapsed_s", "val_loss", "val_accuracy", "val_macro_f1"]


# ----------------------------------------------------------------------------- names


def model_dir(run_dir: Path, kind: str) -> Path:
    """The ``save_pretrained`` folder of one model of a run."""
    return Path(run_dir) / kind


def onnx_dir(run_dir: Path, kind: str) -> Path:
    """The ONNX export of one model of a run (``python -m distill_core export RUN --model <kind>``)."""
    return model_dir(run_dir, kind) / ONNX_DIR


def model_card_path(run_dir: Path, kind: str) -> Path:
    """The Hub-format model card of one model of a run."""
    return model_dir(run_dir, kind) / MODEL_CARD


def metrics_path(run_dir: Path, kind: str, split: str) -> Path:
    """``<kind>_<split>.csv``: ``split`` is ``train`` (per step) or ``val`` (per evaluation)."""
    return Path(run_dir) / f"{kind}_{split}.csv"


def sweep_path(run_dir: Path, created: str | None = None) -> Path:
    """The T/alpha sweep of a run (``sweep RUN``): its grid, schedule, every cell's validation figures, the choice.
    Given ``created``, where an earlier sweep with another schedule, started then, is kept (``sweep_<time>.json``)."""
    stamp = "".join(c for c in str(created) if c.isalnum() or c == "T").replace("T", "-") if created else ""
    return Path(run_dir) / SWEEP_DIR / (f"sweep_{stamp}.json" if created else "sweep.json")


def seed_tag(kind: str, seed: int) -> str:
    """The name a student trained with another seed than the run's first logs under (``student_seed43``)."""
    return f"{kind}_seed{int(seed)}"


def bench_path(run_dir: Path, arch: str = "run") -> Path:
    """``bench.json`` for the run's own models, ``bench_<arch>.json`` for a reference architecture."""
    return Path(run_dir) / (BENCH_FILE if arch == "run" else f"bench_{arch}.json")


def pruning_path(run_dir: Path, kind: str) -> Path:
    """``pruning_<kind>.json``: the ``prune`` command's figures for one model of a run."""
    return Path(run_dir) / f"pruning_{kind}.json"


def pruned_model_dir(run_dir: Path, kind: str, amount: float) -> Path:
    """Where ``prune --save AMOUNT`` puts ``kind`` pruned at ``amount``: ``student_pruned50`` (``_pruned12p5`` for 0.125).

    Never one of ``MODEL_KINDS``, so the run's own model list, evaluation and dashboard pickers leave it alone.
    """
    return Path(run_dir) / f"{kind}_pruned{f'{float(amount) * 100:.4g}'.replace('.', 'p')}"


def progress_path(run_dir: Path, job: str) -> Path:
    return Path(run_dir) / f".progress-{job}.json"


def log_path(root: Path, run_id: str, job: str) -> Path:
    """Where a job started in the background writes its output; hidden, so never listed as a run."""
    return Path(root) / LOGS_DIR / f"{check_run_id(run_id)}-{job}.log"


# ----------------------------------------------------------------------------- writing a run


def new_run_id(dataset: str, preset: str, root: Path | None = None) -> str:
    """``<time>_<dataset>_<preset>``; given the runs folder ``root``, the first of it, ``...-2``, ``...-3`` that no
    run folder and no background job's log uses yet (a hint: ``create_run_dir`` is what claims a name)."""
    short = Path(dataset.rstrip("/")).name.split("/")[-1] or "data"
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in f"{short}_{preset}")
    for run_id in run_id_candidates(f"{time.strftime('%Y%m%d-%H%M%S')}_{safe}"):
        if root is None or not ((Path(root) / run_id).exists() or any((Path(root) / LOGS_DIR).glob(f"{run_id}-*.log"))):
            return run_id


def run_id_candidates(base: str) -> Iterator[str]:
    """``base``, ``base-2``, ``base-3``, ...: the names tried in turn when two runs start in the same second."""
    return (base if n == 1 else f"{base}-{n}" for n in itertools.count(1))


def create_run_dir(root: Path, run_id: str, chosen: bool) -> Path:
    """Create a run's folder exclusively (two runs never share one), in ``root`` (made if missing). A name the user
    ``chosen`` (``--run-id``) that is taken is refused; otherwise the next free ``run_id-2``, ``-3`` ... is taken."""
    Path(root).mkdir(parents=True, exist_ok=True)
    for name in run_id_candidates(run_id):
        try:
            (Path(root) / name).mkdir()
            return Path(root) / name
        except FileExistsError:
            if chosen:
                raise RunError(f"Run folder {Path(root) / name} already exists; choose another --run-id") from None


def set_status(run_dir: Path, status: str, stage: str | None = None, error: str | None = None) -> None:
    write_json_atomic(
        Path(run_dir) / STATUS_FILE,
        {
            "status": status,
            "stage": stage,
            "error": error,
            **this_process(),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
    )


# ----------------------------------------------------------------------------- progress (train and bench alike)


@dataclass
class Progress:
    """How far a job running on a run has got."""

    job: str  # train | bench
    fraction: float  # 0..1
    message: str
    pid: int | None = None
    host: str | None = None
    updated: float | None = None  # epoch seconds
    started: float | None = None  # the process's start time (epoch seconds), so a reused pid is not trusted


def write_progress(run_dir: Path, job: str, fraction: float, message: str) -> None:
    """Say how far ``job`` has got; readers see the last whole write (``read_progress``)."""
    write_json_atomic(progress_path(run_dir, job), {
        "job": job, "fraction": min(max(float(fraction), 0.0), 1.0), "message": message,
        **this_process(), "updated": time.time()})


def clear_progress(run_dir: Path, job: str) -> None:
    progress_path(run_dir, job).unlink(missing_ok=True)


def read_progress(run_dir: Path, job: str) -> Progress | None:
    """The progress of ``job`` on this run, or None when none runs.

    A file left behind by a job that was killed (its process gone on this host, or its pid since reused by another
    process) counts as none running.
    """
    try:
        d = json.loads(progress_path(run_dir, job).read_text())
        p = Progress(job=job, fraction=float(d["fraction"]), message=str(d["message"]), pid=d.get("pid"),
                     host=d.get("host"), updated=d.get("updated"), started=d.get("started"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if p.host == socket.gethostname() and p.pid and record_alive(d) is False:
        return None
    return p


# ----------------------------------------------------------------------------- reading runs


@dataclass
class RunInfo:
    """What the dashboard and `runs` need to know about one run folder."""

    run_id: str
    path: Path
    status: str  # running | complete | damaged | failed | unknown
    stage: str | None = None
    error: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] | None = None
    created: str = ""  # ISO time the run started (config.json), else its last status update or folder time

    @property
    def models(self) -> list[str]:
        """Models whose checkpoint folder is complete (has a config and safetensors weights)."""
        return [k for k in MODEL_KINDS if has_model(self.path, k)]

    @property
    def label_names(self) -> list[str]:
        return list(self.config.get("dataset_info", {}).get("label_names", []))

    @property
    def dataset(self) -> str:
        return str(self.config.get("data", {}).get("dataset", "?"))

    @property
    def mtime(self) -> float:
        return max((p.stat().st_mtime for p in self.path.iterdir()), default=self.path.stat().st_mtime)


def has_model(run_dir: Path, kind: str) -> bool:
    d = model_dir(run_dir, kind)
    return (d / MODEL_CONFIG).is_file() and (d / MODEL_WEIGHTS).is_file()


def model_problem(run_dir: Path, kind: str) -> str | None:
    """What is wrong with a run's ``kind`` model folder, cheaply (no weights loaded), or None when it looks whole.

    Checks that the folder, its config.json (valid JSON) and model.safetensors exist, and that the safetensors
    header is readable and its tensors fit in the file (a truncated or foreign file fails here).
    """
    from safetensors import safe_open

    d = model_dir(run_dir, kind)
    if not d.is_dir():
        return f"{kind}/ is missing"
    try:
        json.loads((d / MODEL_CONFIG).read_text())
    except FileNotFoundError:
        return f"{kind}/{MODEL_CONFIG} is missing"
    except (OSError, ValueError):
        return f"{kind}/{MODEL_CONFIG} is not valid JSON"
    weights = d / MODEL_WEIGHTS
    if not weights.is_file():
        return f"{kind}/{MODEL_WEIGHTS} is missing"
    try:
        with safe_open(str(weights), framework="np"):
            pass
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error type for every kind of bad file
        return f"{kind}/{MODEL_WEIGHTS} is damaged ({str(e).splitlines()[0][:120]})"
    return None


def run_problems(run_dir: Path, kinds: list[str] | tuple[str, ...]) -> list[str]:
    """``model_problem`` of each of ``kinds``, the ones that have one."""
    return [p for p in (model_problem(run_dir, k) for k in kinds) if p]


def _is_fraction(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0


def check_results(d: Any, where: str = RESULTS_FILE) -> dict[str, Any]:
    """``d`` if it has the shape of a results.json (what ``evaluate`` writes); else a RunError naming the part."""
    fix = "re-create it with `python -m distill_core evaluate RUN`"
    if not isinstance(d, dict) or not isinstance(d.get("models"), dict) or not d["models"]:
        raise RunError(f"{where} does not have the expected shape (no 'models' table); {fix}")
    if not isinstance(d.get("label_names"), list):
        raise RunError(f"{where} does not have the expected shape (no 'label_names' list); {fix}")
    for kind, m in d["models"].items():
        for key in ("accuracy", "macro_f1"):
            if not isinstance(m, dict) or not _is_fraction(m.get(key)):
                raise RunError(f"{where} does not have the expected shape (models.{kind}.{key} is "
                               f"{'missing' if not isinstance(m, dict) or key not in m else repr(m[key])}); {fix}")
    return d


def _check_dict(d: Any, path: Path) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise RunError(f"{path} does not have the expected shape (a JSON object); the run may be corrupt")
    return d


# A run "running" with no write to its folder for this long is taken for dead, whatever its pid says (another
# host, or a pid reused after a crash): training writes a CSV row every step and its progress every second.
STALE_AFTER_S = 3600.0


def last_write(run_dir: Path) -> float:
    """The newest modification time (epoch seconds) among the run folder's files."""
    times = [p.stat().st_mtime for p in Path(run_dir).iterdir() if p.is_file()]
    return max(times, default=Path(run_dir).stat().st_mtime)


def load_run_config(run_dir: Path, d: dict | None = None) -> RunConfig:
    """The RunConfig saved in a run's config.json, or in ``d`` already read from it (extra sections ignored)."""
    d = read_json(Path(run_dir) / CONFIG_FILE) if d is None else d
    try:
        return RunConfig.from_dict({k: d[k] for k in CONFIG_FILE_FIELDS if k in _check_dict(d, Path(run_dir) / CONFIG_FILE)})
    except (TypeError, ConfigError) as e:
        raise RunError(f"{run_dir}/config.json does not describe a run config: {e}") from e


def expected_models(config: dict[str, Any]) -> list[str]:
    """The models a run set out to train (its config's ``train.models``; all three when unknown)."""
    models = (config.get("train") or {}).get("models") if isinstance(config.get("train"), dict) else None
    return [k for k in MODEL_KINDS if k in models] if isinstance(models, list) else list(MODEL_KINDS)


def load_run(run_dir: Path) -> RunInfo:
    """Read a run folder's status, config and (if present) results, each checked against its shape.

    What is reported, never half-trusted:
    - ``running`` whose training process is gone (same host, dead pid), or that has written nothing for
      ``STALE_AFTER_S``, is ``failed`` with an "interrupted" error;
    - ``complete`` whose model folders are missing or damaged (checked cheaply, ``model_problem``) is
      ``damaged``, the error naming each broken file;
    - a results.json of the wrong shape is left out (``results`` None) with the reason as the error.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"No run folder at {run_dir}; list runs with `python -m distill_core runs`")
    info = RunInfo(run_id=run_dir.name, path=run_dir, status="unknown")
    st: dict[str, Any] = {}
    try:
        st = _check_dict(read_json(run_dir / STATUS_FILE), run_dir / STATUS_FILE)
        info.status, info.stage, info.error = str(st.get("status", "unknown")), st.get("stage"), st.get("error")
    except RunError as e:
        info.status, info.error = "failed", str(e)
    if info.status == "running":
        quiet = time.time() - last_write(run_dir)
        if st.get("host") == socket.gethostname() and st.get("pid") and record_alive(st) is False:
            info.status = "failed"
            info.error = f"interrupted during stage {info.stage!r} (training process {st['pid']} is gone)"
        elif quiet > STALE_AFTER_S:
            info.status = "failed"
            info.error = (f"interrupted during stage {info.stage!r}: nothing written for {quiet / 3600:.1f} h "
                          f"(training process {st.get('pid')} on {st.get('host')} is presumably gone)")
    try:
        info.config = _check_dict(read_json(run_dir / CONFIG_FILE), run_dir / CONFIG_FILE)
    except RunError as e:
        if info.status == "complete":
            info.status = "failed"
        info.error = info.error or str(e)
    info.created = str(info.config.get("created") or st.get("updated")
                       or time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(run_dir.stat().st_mtime)))
    if (run_dir / RESULTS_FILE).exists():
        try:
            info.results = check_results(read_json(run_dir / RESULTS_FILE))
        except RunError as e:
            info.error = info.error or str(e)
    if info.status == "complete":
        problems = run_problems(run_dir, expected_models(info.config))
        if problems:
            info.status = "damaged"
            info.error = "; ".join(problems)
    return info


def list_runs(root: Path | None = None) -> list[RunInfo]:
    """All run folders under ``root`` (default ``runs_dir()``), newest first; hidden/temp folders skipped."""
    root = Path(root) if root else runs_dir()
    if not root.is_dir():
        return []
    runs = [load_run(p) for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    # By creation time, so runs named with --run-id sort among the rest; id breaks ties.
    return sorted(runs, key=lambda r: (r.created, r.run_id), reverse=True)


def resolve_run(ref: str | Path, root: Path | None = None) -> Path:
    """A run id (under ``root``) or a path to a run folder."""
    p = Path(ref).expanduser()
    if p.is_dir():
        return p.resolve()
    if not RUN_ID_PATTERN.fullmatch(str(ref)):
        raise RunError(f"No run folder at {ref!r}. List runs with `python -m distill_core runs`.")
    cand = (Path(root) if root else runs_dir()) / str(ref)
    if cand.is_dir():
        return cand.resolve()
    raise RunError(f"No run {ref!r}: not a folder, and not a run id under {cand.parent}. "
                   "List runs with `python -m distill_core runs`.")


def read_metrics(run_dir: Path, kind: str, split: str) -> "Any":
    """Return the ``<kind>_<split>.csv`` log (split: ``train`` or ``val``) as a DataFrame.

    A missing file raises RunError; a last line without its newline (a run killed mid-write, or a live run
    caught mid-row) is dropped, so a cut-off number is never read as data.
    """
    import io

    import pandas as pd

    path = metrics_path(run_dir, kind, split)
    if not path.is_file():
        raise RunError(f"{path.name} is missing: the {kind} model has not been trained in this run (yet)")
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
    try:
        df = pd.read_csv(io.BytesIO(data), on_bad_lines="skip")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise RunError(f"{path.name} could not be parsed ({e}); the file is corrupt") from e
    if "step" not in df.columns:
        raise RunError(f"{path.name} has no 'step' column; the file is corrupt (columns: {list(df.columns)})")
    # Coerce to numbers; a damaged row becomes NaN and is dropped.
    df = df.apply(pd.to_numeric, errors="coerce").dropna(subset=["step"])
    return df.reset_index(drop=True)
