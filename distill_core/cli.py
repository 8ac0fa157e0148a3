"""Command line: ``distill-lens {train,runs,evaluate,bench,export,serve,loadtest} ...`` (or ``python -m distill_core ...``).

    distill-lens train                         # the offline `quick` preset
    distill-lens train --preset classic        # bert-base-uncased -> distilbert-base-uncased (GPU + hub)
    distill-lens train --preset imdb           # long movie reviews, head+tail truncation
    distill-lens train --preset hate-speech    # 4 imbalanced classes, balanced class weights
    distill-lens train --dataset imdb --max-train-samples 2000 --epochs 1
    distill-lens runs
    distill-lens evaluate RUN
    distill-lens bench RUN
    distill-lens export RUN --model student --format onnx --int8
    distill-lens prune RUN --model student --amount 0.1,0.3,0.5,0.7,0.9 --save 0.5
    distill-lens serve RUN --backend onnx-int8
    distill-lens loadtest http://127.0.0.1:8000 --run RUN
    distill-lens predict RUN --input tickets.csv --output labelled.csv

Every config field has a flag (one table per command, in ``flags.py``); a flag given overrides the preset, a flag left out
keeps it. A mistake of the user's (bad flag value, missing run, unreadable dataset) is one line with its fix
and exit code 2; anything else is a bug and is logged with its traceback (exit code 1).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Callable

from .console import say
from .locks import job_lock
from .runs import resolve_run
from .config import MODEL_KINDS, runs_dir
from .errors import DistillError, os_error_message
from .flags import (BENCH_FLAGS, PRUNE_FLAGS, SHIP_FLAGS, SWEEP_FLAGS, TRAIN_FLAGS, TRAIN_GROUPS, add_flags, set_fields,
                    add_device_flag, bench_settings_from_args, config_from_args, ship_config_from_args, use_device)
from .presets import PRESET_SUMMARIES, PRESETS

logger = logging.getLogger("distill_core")


def prog() -> str:
    """How the user called us: the console command, or ``python -m distill_core``."""
    return "distill-lens" if Path(sys.argv[0]).name == "distill-lens" else "python -m distill_core"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog(), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train teacher, distilled student and baseline into a run folder")
    t.add_argument("--preset", default="quick", choices=sorted(PRESETS),
                   help="; ".join(f"{name}: {text}" for name, text in PRESET_SUMMARIES.items()))
    t.add_argument("--unless-complete", action="store_true",
                   help="do nothing if a complete run of this preset and dataset already exists")
    add_flags(t, TRAIN_FLAGS, TRAIN_GROUPS)
    r = sub.add_parser("runs", help="list runs with status and headline metrics")
    r.add_argument("--output-dir", help=f"runs folder (default {runs_dir()})")
    e = sub.add_parser("evaluate", help="recompute a run's results.json and predictions from its saved models")
    e.add_argument("run", help="run id or folder")
    e.add_argument("--output-dir", help=f"runs folder (default {runs_dir()})")
    add_device_flag(e)
    from . import bench

    b = sub.add_parser("bench", help="measure latency, throughput, size, memory and training speed of a run's models",
                       description=bench.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("run", help="run id or folder")
    b.add_argument("--output-dir", help=f"runs folder (default {runs_dir()})")
    add_flags(b, BENCH_FLAGS)
    w = sub.add_parser("sweep", help="how to choose T and alpha: distilled students for a grid against the run's "
                       "teacher, scored on validation; resumes an interrupted sweep")
    w.add_argument("run", help="run id or folder")
    w.add_argument("--output-dir", help=f"runs folder (default {runs_dir()})")
    add_flags(w, SWEEP_FLAGS)
    c = sub.add_parser("check", help="is the distilled student good enough to ship? your thresholds against the run's "
                       "evidence; exit code 0 ready, 3 not ready (a check fails), 4 not enough evidence (one is inconclusive or "
                       "not measured)")
    c.add_argument("run", help="run id or folder")
    c.add_argument("--output-dir", help=f"runs folder (default {runs_dir()})")
    c.add_argument("--model", choices=("student", "baseline"), default="student", help="the student to check (student)")
    add_flags(c, SHIP_FLAGS)
    pr = sub.add_parser("prune", help="magnitude-prune a model of a run at several amounts: sparsity, accuracy, "
                        "latency and size on disk (raw and compressed) per amount")
    pr.add_argument("run", help="run id or folder")
    pr.add_argument("--output-dir", help=f"runs folder (default {runs_dir()})")
    add_flags(pr, PRUNE_FLAGS)
    add_device_flag(pr)
    from .ship import loadtest, onnx_export, serve

    for module in (serve, onnx_export, loadtest):  # each defines its own flags and runs its own command
        module.add_parser(sub)
    from .ship import predict

    predict.add_parser(sub)
    return p


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "huggingface_hub", "gensim"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import transformers

    # A fresh classification head is expected; its "missing keys" load report is noise here.
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # per-checkpoint "Loading weights" bars; ours stay


def _root(args) -> Path | None:
    return Path(args.output_dir) if getattr(args, "output_dir", None) else None


def cmd_train(args) -> int:
    from .train.pipeline import run_pipeline
    from .runs import list_runs

    cfg = config_from_args(args).validate()
    if args.unless_complete:
        from .fingerprints import complete_run_like

        done, skipped = complete_run_like(cfg, list_runs(cfg.runs_root()))
        for why in skipped:
            logger.info("Not counted as done: %s", why)
        if done is not None:
            logger.info("A complete %s run on %s with these settings exists (%s); not training again.", cfg.preset,
                        cfg.data.dataset, done.run_id)
            return 0
    # `kill` (SIGTERM) ends training the way Ctrl-C does, so the run is marked failed, not left "running".
    signal.signal(signal.SIGTERM, _raise_interrupt)
    run_dir = run_pipeline(cfg)
    from accelerate import PartialState

    if PartialState().is_main_process:  # once, under `accelerate launch`
        print_verdict(run_dir)
    return 0


def print_verdict(run_dir) -> None:
    """The run's test figures on its headline metric and the verdict on distillation, as the last lines printed."""
    from .files import read_json
    from .runs import RESULTS_FILE

    results = read_json(run_dir / RESULTS_FILE)
    metric = results.get("headline_metric", "accuracy")
    figures = ", ".join(f"{k} {m[metric]:.4f}" for k, m in results.get("models", {}).items())
    say(f"\n{run_dir.name}: test {metric.replace('_', '-')}: {figures}")
    if (results.get("verdict") or {}).get("text"):
        say(results["verdict"]["text"])


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def format_runs_table(runs) -> str:
    """One line a run: status, each model's test figure on the run's headline metric (accuracy, or macro-F1 on
    imbalanced classes), and the verdict on distillation or why the run failed."""
    head = f"{'run':<44} {'status':<10} {'metric':<9} {'teacher':>8} {'student':>8} {'baseline':>8}  note"
    lines = [head, "-" * len(head)]
    for r in runs:
        results = r.results or {}
        models, metric = results.get("models", {}), results.get("headline_metric", "accuracy")
        fig = [f"{models[k][metric]:.4f}" if k in models else "-" for k in MODEL_KINDS]
        note = one_line(r.error) if r.error else (f"stage {r.stage}" if r.status == "running" else
                                                  (results.get("verdict") or {}).get("distillation", ""))
        shown = metric.replace("_", "-") if models else ""
        lines.append(f"{r.run_id:<44} {r.status:<10} {shown:<9} {fig[0]:>8} {fig[1]:>8} {fig[2]:>8}  {note}")
    return "\n".join(lines)


def one_line(text: str, width: int = 100) -> str:
    """``text`` on one line (a table cell), cut to ``width`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def cmd_runs(args) -> int:
    from .runs import list_runs

    root = _root(args) or runs_dir()
    runs = list_runs(root)
    if not runs:
        say(f"No runs in {root}. Train one with: {prog()} train")
        return 0
    say(format_runs_table(runs))
    return 0


def cmd_evaluate(args) -> int:
    from .evidence.evaluate import evaluate_run
    from .runs import resolve_run

    run_dir = resolve_run(args.run, _root(args))
    with job_lock(run_dir, "evaluate"):  # one at a time on a run, none while it trains
        evaluate_run(run_dir)
    print_verdict(run_dir)
    return 0


def cmd_bench(args) -> int:
    from .bench.report import format_table
    from .bench.run import run_bench

    signal.signal(signal.SIGTERM, _raise_interrupt)  # a killed bench removes its scratch copies, like Ctrl-C
    with job_lock(resolve_run(args.run, _root(args)), "bench"):
        result = run_bench(args.run, bench_settings_from_args(args), root=_root(args))
    say(format_table(result))
    return 0


def cmd_sweep(args) -> int:
    from .train.sweep import SweepSettings, run_sweep
    from .views.sweep import format_sweep

    settings = SweepSettings()
    set_fields({"sweep": settings}, args)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # a killed sweep keeps its finished cells, like Ctrl-C
    settings.validate()  # a mistyped grid is refused before the run is locked
    with job_lock(resolve_run(args.run, _root(args)), "sweep"):
        say(format_sweep(run_sweep(args.run, settings, root=_root(args))))
    return 0


def cmd_prune(args) -> int:
    from .train.prune import PruneSettings, run_prune
    from .views.pruning import format_pruning

    settings = PruneSettings()
    set_fields({"prune": settings}, args)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # a killed prune removes its scratch copies, like Ctrl-C
    with job_lock(resolve_run(args.run, _root(args)), "prune"):
        say(format_pruning(run_prune(args.run, settings, root=_root(args))))
    return 0


CHECK_FAILED = 3  # `check`'s exit code when a check fails, or the run's files cannot back the checks (2: usage error)
CHECK_UNSURE = 4  # `check`'s exit code when no check fails but one is inconclusive or not measured


def cmd_check(args) -> int:
    from .evidence.checks import DECISION_WORDS, NOT_READY, READY, decision, format_checks, ship_checks
    from .files import read_json
    from .fingerprints import standing
    from .runs import RESULTS_FILE, check_results, resolve_run

    thresholds = ship_config_from_args(args)
    run_dir = resolve_run(args.run, _root(args))
    results = check_results(read_json(run_dir / RESULTS_FILE))
    stand = standing(run_dir)  # the run complete and undamaged, its figures from the weights on disk now
    say(f"{run_dir.name}: the {args.model} against your thresholds")
    if not stand.ok:
        say("\n".join(f"not checked   {p}" for p in stand.problems))
        say("\nNot ready: the checks cannot stand on this run's files until the above is fixed.")
        return CHECK_FAILED
    checks = ship_checks(results, stand.bench, thresholds, args.model)
    say(format_checks(checks))
    for note in stand.notes:  # bench.json left out: its checks say "not measured"
        say(f"note          {note}")
    if (results.get("verdict") or {}).get("text"):
        say(f"\n{results['verdict']['text']}")
    answer = decision(checks)
    say(f"\n{DECISION_WORDS[answer]}")
    return 0 if answer == READY else CHECK_FAILED if answer == NOT_READY else CHECK_UNSURE


def cmd_serve(args) -> int:
    from .ship.serve import run_command

    return run_command(args)


def cmd_export(args) -> int:
    from .fingerprints import require_complete
    from .ship.onnx_export import run_command

    run_dir = resolve_run(args.run, _root(args))
    with job_lock(run_dir, "export"):
        require_complete(run_dir, f"export the {args.model} of {run_dir.name}")
        return run_command(args)


def cmd_loadtest(args) -> int:
    from .ship.loadtest import run_command

    return run_command(args)


def cmd_predict(args) -> int:
    from .ship.predict import run_command

    return run_command(args)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": cmd_train, "runs": cmd_runs, "evaluate": cmd_evaluate, "bench": cmd_bench, "check": cmd_check,
    "sweep": cmd_sweep, "prune": cmd_prune,
    "serve": cmd_serve, "export": cmd_export, "loadtest": cmd_loadtest, "predict": cmd_predict,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        use_device(args)
        return COMMANDS[args.command](args)
    except DistillError as e:
        logger.error("%s", e)
        return 2
    except OSError as e:
        line = os_error_message(e)
        if line is None:  # anything else is a bug of ours
            logger.exception("Internal error in distill-lens (not a problem with your input); please report it "
                             "with this traceback:")
            return 1
        logger.error("%s", line)
        return 2
    except KeyboardInterrupt:
        logger.error("Interrupted.")
        return 130
    except Exception:
        logger.exception("Internal error in distill-lens (not a problem with your input); please report it "
                         "with this traceback:")
        return 1


if __name__ == "__main__":
    sys.exit(main())
