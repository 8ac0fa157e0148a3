"""Which weights a run's figures were computed from, and what a go/no-go decision may stand on.

    results["weights"] = record(run_dir, kinds)      # evaluate (results.json) and bench (bench.json) store this
    stale_figures(run_dir, results, "results.json", ["teacher", "student"], "python -m distill_core evaluate RUN")
    s = standing(run_dir)                            # check, train --unless-complete, the Overview, serve, export
    s.problems, s.notes, s.results, s.bench
    require_complete(run_dir, "export the student")  # RunError unless the run is complete and undamaged
    complete_run_like(cfg, list_runs(root))          # train --unless-complete: the same settings, and standing

A fingerprint is the size, modification time (ns) and sha256 of ``<model>/model.safetensors``. The same size and
time are taken for the same file (cheap); otherwise the sha256 decides, so a copied run (new times, same bytes)
still counts as current and a re-trained, replaced or truncated model does not.

A decision stands only on a run that is complete and undamaged (``runs.load_run``, the check ``runs`` uses) whose
results.json was computed from the weights on disk now. bench.json's figures (speed, int8) count only when they
were measured on those weights too; otherwise they count as not measured, and a note says how to refresh them.
Files written before fingerprints were recorded cannot be confirmed: they are treated like stale ones, with the
same fix.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import MODEL_KINDS, RunConfig
from .errors import RunError
from .files import read_json
from .runs import (
    BENCH_FILE, MODEL_WEIGHTS, RESULTS_FILE, RunInfo, bench_path, has_model, load_run, load_run_config, model_dir,
)

WEIGHTS_KEY = "weights"  # {kind: fingerprint} in results.json and bench.json
BENCH_KINDS = ("teacher", "student")  # the run's own models bench.json's figures are measured on


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(run_dir: Path, kind: str) -> dict[str, Any] | None:
    """``{"file", "size", "mtime_ns", "sha256"}`` of the run's ``kind`` weights, or None when it has none."""
    path = model_dir(run_dir, kind) / MODEL_WEIGHTS
    try:
        st = path.stat()
        return {"file": f"{kind}/{MODEL_WEIGHTS}", "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                "sha256": file_sha256(path)}
    except FileNotFoundError:
        return None


def record(run_dir: Path, kinds: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The fingerprints of ``kinds`` (those with weights), to store beside figures computed from them."""
    return {k: fp for k in kinds if (fp := fingerprint(run_dir, k)) is not None}


def matches(fp: Any, run_dir: Path, kind: str) -> bool:
    """Whether the run's ``kind`` weights are still those ``fp`` was taken of."""
    path = model_dir(run_dir, kind) / MODEL_WEIGHTS
    if not isinstance(fp, dict):
        return False
    try:
        st = path.stat()
        if st.st_size != fp.get("size"):
            return False
        return st.st_mtime_ns == fp.get("mtime_ns") or file_sha256(path) == fp.get("sha256")
    except OSError:
        return False


def _files(kinds: list[str]) -> str:
    names = [f"{k}/{MODEL_WEIGHTS}" for k in kinds]
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def stale_bench(run_dir: Path, bench: Any, run_id: str) -> list[str]:
    """Why ``bench`` (the run's bench.json) does not describe the weights on disk now; [] when it does."""
    kinds = [k for k in BENCH_KINDS if has_model(run_dir, k)]
    return stale_figures(run_dir, bench, BENCH_FILE, kinds, f"python -m distill_core bench {run_id}")


def stale_figures(run_dir: Path, doc: Any, file_name: str, kinds: list[str] | tuple[str, ...], fix: str) -> list[str]:
    """Why ``doc`` (``file_name`` of the run) does not describe the ``kinds`` weights on disk now; [] when it does.

    Each reason is one sentence ending with the command that refreshes the file (``fix``).
    """
    kinds = list(kinds)
    recorded = doc.get(WEIGHTS_KEY) if isinstance(doc, dict) else None
    if not kinds:
        return []
    if not isinstance(recorded, dict):
        return [f"{file_name} does not say which weights its figures were computed from (it was written by an older "
                f"version), so they cannot be confirmed: run `{fix}`"]
    unknown = [k for k in kinds if k not in recorded]
    other = [k for k in kinds if k in recorded and not matches(recorded[k], run_dir, k)]
    out = []
    if other:
        verb = "holds" if len(other) == 1 else "hold"
        out.append(f"{file_name} was computed from other weights than {_files(other)} now {verb}: run `{fix}`")
    if unknown:
        out.append(f"{file_name} has no figures computed from {_files(unknown)}, so they cannot be confirmed: "
                   f"run `{fix}`")
    return out


@dataclass
class Standing:
    """What a go/no-go decision on a run may stand on."""

    run_id: str
    problems: list[str] = field(default_factory=list)  # any one: no decision (the run, or results.json, cannot be used)
    notes: list[str] = field(default_factory=list)  # bench.json left out (its figures count as not measured), and why
    results: dict[str, Any] | None = None  # results.json, when it describes the weights on disk
    bench: dict[str, Any] | None = None  # bench.json, when there is one and it describes the weights on disk

    @property
    def ok(self) -> bool:
        return not self.problems


def _run_problem(info: RunInfo) -> str | None:
    if info.status == "complete":
        return None
    if info.status == "running":
        return f"Run {info.run_id} is still training (stage {info.stage}); wait until it is complete"
    if info.status == "damaged":
        return (f"Run {info.run_id} is damaged ({info.error}): re-train it (or those models, with --models and "
                "--teacher-from)")
    return (f"Run {info.run_id} did not complete ({info.error or info.status}): re-train it with "
            "`python -m distill_core train`")


def standing(run_dir: Path, info: RunInfo | None = None) -> Standing:
    """Whether the run is complete and undamaged and its results.json and bench.json describe the weights on disk.

    Args:
        run_dir: the run folder.
        info: ``runs.load_run(run_dir)`` when the caller has it already.
    """
    run_dir = Path(run_dir)
    info = info if info is not None else load_run(run_dir)
    s = Standing(info.run_id)
    if (problem := _run_problem(info)) is not None:
        s.problems.append(problem)
    evaluate = f"python -m distill_core evaluate {info.run_id}"
    if info.results is None:
        if info.status != "running":
            why = info.error if (run_dir / RESULTS_FILE).exists() else f"{RESULTS_FILE} is missing"
            s.problems.append(f"No test figures to decide on ({why}): run `{evaluate}`")
    else:
        kinds = [k for k in MODEL_KINDS if k in info.results["models"]]
        stale = stale_figures(run_dir, info.results, RESULTS_FILE, kinds, evaluate)
        s.problems += stale
        s.results = None if stale else info.results
    if bench_path(run_dir).is_file():
        try:
            bench = read_json(bench_path(run_dir))
        except RunError as e:
            s.notes.append(f"{BENCH_FILE} is unreadable, so speed and int8 count as not measured ({e}): run "
                           f"`python -m distill_core bench {info.run_id}`")
            return s
        stale = stale_bench(run_dir, bench, info.run_id)
        if stale:
            s.notes += [f"{n} (until then, speed and int8 count as not measured)" for n in stale]
        else:
            s.bench = bench
    return s


def require_complete(run_dir: Path, what: str) -> RunInfo:
    """The run's ``RunInfo`` when it is complete and undamaged; else a RunError: ``Cannot <what>: <why and fix>``."""
    info = load_run(run_dir)
    if (problem := _run_problem(info)) is not None:
        raise RunError(f"Cannot {what}: {problem}.")
    return info


# ----------------------------------------------------------------------------- train --unless-complete

# Fields that do not change what a run trains: where it is written, and how fast it is scored.
NOT_SETTINGS = ("run_id", "output_dir", "train.models", "train.num_threads", "train.eval_batch_size")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def setting_differences(asked: RunConfig, info: RunInfo) -> list[str]:
    """Each setting in which ``asked`` differs from the run's saved config, as ``train.epochs 1 there, 2 asked``."""
    there = _flat(load_run_config(info.path, info.config).to_dict())
    wanted = _flat(asked.to_dict())
    return [f"{k} {there.get(k)!r} there, {wanted.get(k)!r} asked" for k in wanted
            if k not in NOT_SETTINGS and wanted.get(k) != there.get(k)]


def complete_run_like(asked: RunConfig, runs: list[RunInfo]) -> tuple[RunInfo | None, list[str]]:
    """The newest of ``runs`` that already is what training with ``asked`` would make (``train --unless-complete``):
    the same preset, dataset and settings, every model asked for, complete and undamaged, its figures from the
    weights on disk. Also why each run of that preset and dataset that falls short does not count.
    """
    skipped = []
    for r in runs:
        if r.config.get("preset") != asked.preset or (r.config.get("data") or {}).get("dataset") != asked.data.dataset:
            continue
        missing = [k for k in asked.train.models if k not in r.models]
        try:
            diffs = setting_differences(asked, r)
        except RunError as e:
            skipped.append(f"{r.run_id}: {e}")
            continue
        stand = standing(r.path, r)
        if missing:
            skipped.append(f"{r.run_id} has no {', '.join(missing)} model")
        elif diffs:
            skipped.append(f"{r.run_id} was trained with other settings ({'; '.join(diffs[:4])})")
        elif not stand.ok:
            skipped.append(f"{r.run_id}: {stand.problems[0]}")
        else:
            return r, skipped
    return None, skipped
