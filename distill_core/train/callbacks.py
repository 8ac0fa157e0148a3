"""What the training loop calls back into while ``train`` runs: the CSV logs and the run's progress report.

    callbacks = [CsvCallback(run_dir, "student"), ProgressCallback(run, "student")]
    train(model, train_dl, val_dl, objective, settings, accelerator, callbacks)

The loop (``loop.train``) knows nothing about files: it hands each optimizer step's row to ``on_step`` and each
evaluation's row to ``on_eval`` (``loop.Callback``). ``CsvCallback`` appends them to ``<kind>_train.csv`` and
``<kind>_val.csv`` (``runs.metrics_path``); ``ProgressCallback`` counts optimizer steps done and has the run report
them (``runs.write_progress``) at most once per ``PROGRESS_EVERY_S``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Protocol

from ..files import CsvLog
from ..runs import KD_COLUMNS, TRAIN_COLUMNS, VAL_COLUMNS, metrics_path

logger = logging.getLogger(__name__)

PROGRESS_EVERY_S = 1.0  # progress file writes while training, at most one per this many seconds


class CsvCallback:
    """Writes the loop's step and evaluation rows to ``<kind>_train.csv`` and ``<kind>_val.csv``."""

    def __init__(self, run_dir: Path, kind: str, tag: str | None = None):
        cols = TRAIN_COLUMNS + (KD_COLUMNS + ["hidden_loss", "hard_loss"] if kind == "student" else [])
        self.train_log = CsvLog(metrics_path(run_dir, tag or kind, "train"), cols)
        self.val_log = CsvLog(metrics_path(run_dir, tag or kind, "val"), VAL_COLUMNS)

    def on_step(self, row: dict[str, Any]) -> None:
        self.train_log.write(row)

    def on_eval(self, row: dict[str, Any]) -> None:
        self.train_log.flush()  # the curves show the steps up to this evaluation with it
        self.val_log.write(row)
        self.val_log.flush()
        logger.info("  eval @ step %d: val_loss %.4f  val_accuracy %.4f  val_macro_f1 %.4f",
                    row["step"], row["val_loss"], row["val_accuracy"], row["val_macro_f1"])

    def close(self) -> None:
        self.train_log.close()
        self.val_log.close()


class StepCounter(Protocol):
    """What ``ProgressCallback`` advances: the run in progress (``pipeline._Run``), its optimizer steps done so far
    over all its models, and how it reports them."""

    steps_done: int

    def report(self) -> None: ...


class ProgressCallback:
    """Reports optimizer steps done over the whole run's steps as the run's ``train`` progress."""

    def __init__(self, run: StepCounter, kind: str):
        self.run, self.kind = run, kind
        self.offset = run.steps_done
        self._last = 0.0

    def on_step(self, row: dict[str, Any]) -> None:
        self.run.steps_done = self.offset + int(row["step"])
        if time.monotonic() - self._last >= PROGRESS_EVERY_S:
            self._last = time.monotonic()
            self.run.report()

    def on_eval(self, row: dict[str, Any]) -> None:
        pass
