"""The ``sweep`` command: how to choose T and alpha, with evidence, against a run's own teacher.

    python -m distill_core sweep RUN                                    # T 1,2,4,8 x alpha 0.25,0.5,0.9 + baseline
    python -m distill_core sweep RUN --temperature 2,4 --alpha 0.5,0.9 --epochs 1

    result = run_sweep("RUN", SweepSettings(temperatures=[2, 4], alphas=[0.5]))

Each cell trains the run's distilled student afresh (same initialisation, data and seed as the run) with one
(T, alpha) against the run's teacher, whose logits on the training texts are computed once per sweep and
kept; the baseline cell is the same student without the teacher (alpha 0: cross-entropy alone). Every cell is
trained by the run's own rule (early stopping with the same cap when the run used it) and scored on the
*validation* split: accuracy, macro-F1, agreement with the teacher, and its difference from the baseline cell with a
paired-bootstrap interval. The best cell is chosen on the run's headline metric (accuracy, or macro-F1 on imbalanced
classes; the other breaks ties); it counts as beating the baseline only when that interval excludes 0. Only then
are the chosen cell's and the baseline cell's test figures measured, once each.

``sweep/sweep.json`` in the run is rewritten (whole) after every cell, so an interrupted sweep resumes where
it stopped without losing finished cells; its progress is the run's ``sweep`` progress report. A sweep with another
schedule (``--epochs``) starts afresh and keeps the earlier one whole as ``sweep/sweep_<time>.json``; a value given
twice in the grid is trained once. The ``sweep`` command holds the run's sweep lock (``locks``) while it runs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
from accelerate.utils import set_seed

from .batching import make_loader, tokenize_splits
from .data import run_data_config
from ..errors import ConfigError, RunError
from .models import apply_lora, build_student, load_trained, merge_lora
from .run_inputs import class_weights_for, load_run_data
from ..files import check_writable, read_json, write_json_atomic
from ..runs import (
    clear_progress, has_model, model_dir, resolve_run, sweep_path, write_progress,
)
from ..evidence.verdict import compare, headline_metric
from .loop import LoopSettings, accuracy_f1, cross_entropy_objective, kd_objective, make_accelerator, predict_logits, train
from .transfer import with_transfer

logger = logging.getLogger(__name__)


@dataclass
class SweepSettings:
    """The grid and the schedule of each cell; every field is a flag of ``sweep``."""

    temperatures: list[float] = field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0])
    alphas: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.9])
    epochs: float = 1.0  # student epochs per cell (the run's own student may have trained longer)
    baseline: bool = True  # also train the alpha-0 cell (the student without the teacher)

    def validate(self) -> "SweepSettings":
        self.temperatures, self.alphas = _distinct(self.temperatures, "--temperature"), _distinct(self.alphas, "--alpha")
        if not self.temperatures or any(not 0 < t <= 100 for t in self.temperatures):
            raise ConfigError(f"--temperature {self.temperatures} is not valid: temperatures greater than 0 and at "
                              "most 100, e.g. 1,2,4,8")
        if not self.alphas or any(not 0 < a <= 1 for a in self.alphas):
            raise ConfigError(f"--alpha {self.alphas} is not valid: weights greater than 0 and at most 1, e.g. "
                              "0.25,0.5,0.9 (alpha 0 is the baseline cell)")
        if not 0 < self.epochs <= 100:
            raise ConfigError(f"--epochs {self.epochs} is out of range: a number of epochs greater than 0")
        return self

    def cells(self) -> list[tuple[float, float]]:
        """(T, alpha) of every cell, the baseline (alpha 0) first."""
        return ([(1.0, 0.0)] if self.baseline else []) + [(float(t), float(a)) for a in self.alphas
                                                          for t in self.temperatures]


def _distinct(values: list[float], flag: str) -> list[float]:
    """``values`` with each value once, in order; a value given twice is trained once, and a note says so."""
    once = list(dict.fromkeys(float(v) for v in values))
    if len(once) < len(values):
        logger.warning("%s %s lists a value more than once; each cell is trained once: %s", flag,
                       ",".join(f"{v:g}" for v in values), ",".join(f"{v:g}" for v in once))
    return once


def _same_cell(c: dict, t: float, a: float) -> bool:
    return abs(c["temperature"] - t) < 1e-9 and abs(c["alpha"] - a) < 1e-9


def _schedule_words(schedule: Any) -> str:
    if not isinstance(schedule, dict):
        return "unknown"
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in schedule.items() if v is not None)


def load_sweep(run_dir: Path) -> dict[str, Any] | None:
    """A run's sweep.json, or None when it has none."""
    path = sweep_path(run_dir)
    return read_json(path) if path.is_file() else None


def run_sweep(run: str | Path, settings: SweepSettings | None = None, root: Path | None = None,
              progress: Callable[[float, str], None] | None = None) -> dict[str, Any]:
    """Train and score every cell not already in the run's sweep.json, choose the best, measure its test accuracy."""
    settings = (settings or SweepSettings()).validate()
    run_dir = resolve_run(run, root)
    check_writable(run_dir)
    if not has_model(run_dir, "teacher"):
        raise RunError(f"Run {run_dir.name} has no complete teacher model to sweep against; train one first")
    sweep_path(run_dir).parent.mkdir(exist_ok=True)
    cfg = run_data_config(run_dir)
    schedule = {"epochs": settings.epochs, "learning_rate": cfg.train.lr_for("student"), "batch_size": cfg.train.batch_size,
                "seed": cfg.train.seed, "early_stopping": cfg.train.early_stopping,
                "patience": cfg.train.patience if cfg.train.early_stopping else None}
    old = load_sweep(run_dir) or {}
    done = old.get("cells", []) if old.get("schedule") == schedule else []
    if old.get("cells") and not done:  # another schedule: its cells and choice are kept beside, never overwritten
        kept = sweep_path(run_dir, old.get("created") or "earlier")
        write_json_atomic(kept, old)
        logger.warning("The earlier sweep of %s used another schedule (%s); it is kept as %s, and this one (%s) starts "
                       "afresh in %s", run_dir.name, _schedule_words(old.get("schedule")), kept.relative_to(run_dir),
                       _schedule_words(schedule), sweep_path(run_dir).relative_to(run_dir))
    state = {"run_id": run_dir.name, "schedule": schedule,
             "grid": {"temperature": settings.temperatures, "alpha": settings.alphas, "baseline": settings.baseline},
             "cells": done, "created": old.get("created") if done else time.strftime("%Y-%m-%dT%H:%M:%S")}
    todo = [(t, a) for t, a in settings.cells() if not any(_same_cell(c, t, a) for c in done)]
    total = len(todo) + 2  # + data and teacher logits, + the chosen cell's test figure

    def report(done_n: float, message: str) -> None:
        write_progress(run_dir, "sweep", done_n / total, message)
        if progress is not None:
            progress(done_n / total, message)

    try:
        report(0, "loading the run's data and its teacher's logits")
        ctx = _Context(cfg, run_dir)
        state["metric"] = ctx.metric
        models: dict[tuple[float, float], Any] = {}  # cells trained in this session, kept for their test figures
        for i, (t, a) in enumerate(todo, start=1):
            name = "baseline (alpha 0)" if a == 0 else f"T={t:g}, alpha={a:g}"
            report(i, f"cell {len(state['cells']) + 1} of {len(settings.cells())}: {name}")
            model, cell = ctx.train_cell(t, a, settings.epochs)
            state["cells"].append(cell)
            _compare_to_baseline(state["cells"], ctx.val_labels, ctx.metric)
            write_json_atomic(sweep_path(run_dir), state)
            logger.info("sweep %s: validation accuracy %.4f, macro-F1 %.4f, agreement %.4f", name, cell["val_accuracy"],
                        cell["val_macro_f1"], cell["val_agreement"])
            if a == 0 or cell is _best(state["cells"], ctx.metric, exclude_baseline=True):
                models = {k: m for k, m in models.items() if k[1] == 0}  # the baseline and the best so far
                models[(t, a)] = model  # kept in memory: its test figure needs no retraining
        best = _best(state["cells"], ctx.metric, exclude_baseline=True)
        if best is not None:
            report(total - 1, f"test figures of the chosen cell (T={best['temperature']:g}, alpha={best['alpha']:g}) "
                              "and of the baseline")
            baseline = next((c for c in state["cells"] if c["alpha"] == 0), None)
            state["best"] = {**best, **ctx.test_figures(models, best, settings.epochs)}
            state["baseline"] = {**baseline, **ctx.test_figures(models, baseline, settings.epochs)} if baseline else None
        write_json_atomic(sweep_path(run_dir), state)
        report(total, "done")
        return state
    finally:
        clear_progress(run_dir, "sweep")


def _rank(cell: dict, metric: str) -> tuple[float, float]:
    other = "macro_f1" if metric == "accuracy" else "accuracy"
    return (cell[f"val_{metric}"], cell[f"val_{other}"])


def _best(cells: list[dict], metric: str = "accuracy", exclude_baseline: bool = False) -> dict | None:
    """The cell with the highest validation ``metric`` (the other headline metric breaks ties)."""
    pool = [c for c in cells if not (exclude_baseline and c["alpha"] == 0)]
    return max(pool, key=lambda c: _rank(c, metric)) if pool else None


def _compare_to_baseline(cells: list[dict], labels: np.ndarray, metric: str) -> None:
    """Each distilled cell's validation difference from the baseline cell on ``metric``, with its paired-bootstrap
    interval (``vs_baseline``) and whether it excludes 0 (``beats_baseline``); cells compared before are left."""
    base = next((c for c in cells if c["alpha"] == 0 and c.get("val_pred") is not None), None)
    if base is None:
        return
    for c in cells:
        if c["alpha"] > 0 and c.get("val_pred") is not None and "vs_baseline" not in c:
            d = compare(labels, np.asarray(c["val_pred"]), np.asarray(base["val_pred"]))[f"{metric}_diff_points"]
            c["vs_baseline"] = {"metric": metric, **d}
            c["beats_baseline"] = bool(d["low"] > 0)


class _Context:
    """The run's data, tokenised once, and its teacher's logits on the training and validation texts."""

    def __init__(self, cfg, run_dir: Path):
        self.cfg, self.run_dir = cfg, run_dir
        teacher_dir = model_dir(run_dir, "teacher")
        data = load_run_data(cfg, str(teacher_dir))
        # The cells' students read their own tokens (a --student with another vocabulary), the teacher its own; the
        # teacher's soft targets pair with the students' rows by position.
        self.splits, self.tokenizer = data.splits, data.tokenizer_for("student")
        self.tok = tokenize_splits(self.splits, self.tokenizer, cfg.data.max_length, cfg.data.truncation)
        t_tokenizer = data.tokenizer
        t_tok = self.tok if t_tokenizer is self.tokenizer else tokenize_splits(self.splits, t_tokenizer,
                                                                               cfg.data.max_length, cfg.data.truncation)
        self.class_weights = class_weights_for(cfg, self.splits)  # the cells weigh classes as the run did

        def kd_rows(tok, tokenizer):  # the labelled rows, plus the texts with hidden labels
            return (with_transfer(tok["train"], data.transfer_texts, tokenizer, cfg.data.max_length, cfg.data.truncation)
                    if data.transfer_texts else tok["train"])

        self.accelerator = make_accelerator(cfg.train.mixed_precision, cfg.train.cpu)
        teacher = load_trained(teacher_dir, attentions=False).to(self.accelerator.device).eval()
        with self.accelerator.autocast():  # soft targets in the training's precision, as the run computes them
            lg, _ = predict_logits(teacher, self.loader(kd_rows(t_tok, t_tokenizer), False, t_tokenizer),
                                   self.accelerator.device, desc="teacher logits")
        self.kd_train = kd_rows(self.tok, self.tokenizer).add_column("teacher_logits", lg.tolist())
        self.plain_train = self.tok["train"]
        val_lg, self.val_labels = predict_logits(teacher, self.loader(t_tok["validation"], False, t_tokenizer),
                                                 self.accelerator.device)
        self.teacher_val_pred = val_lg.argmax(-1)
        counts = self.splits.train_label_counts()
        self.metric = headline_metric([counts[n] for n in self.splits.label_names])
        del teacher

    def loader(self, ds, shuffle: bool, tokenizer=None):
        t = self.cfg.train
        return make_loader(ds, tokenizer or self.tokenizer, t.batch_size if shuffle else t.eval_batch_size, shuffle=shuffle,
                           seed=t.seed, group_by_length=self.cfg.data.group_by_length,
                           device_type=self.accelerator.device.type)

    def train_cell(self, temperature: float, alpha: float, epochs: float):
        """One cell: the run's student trained afresh with (T, alpha); alpha 0 is the baseline (no teacher)."""
        cfg = self.cfg
        set_seed(cfg.train.seed)
        student = build_student(cfg.model, self.splits.label_names, texts=list(self.splits.train["text"]),
                                tokenizer=self.tokenizer, seed=cfg.train.seed)  # texts: an LSTM's Word2Vec init
        spec = cfg.model.lora_for("baseline" if alpha == 0 else "student")  # trained as the run trained it
        if spec is not None:
            student = apply_lora(student, spec)
        settings = LoopSettings.from_config(cfg.train, "student")
        settings.epochs, settings.eval_every, settings.desc = epochs, None, f"T={temperature:g} alpha={alpha:g}"
        kd_loader = self.loader(self.kd_train, True)
        val_loader = None
        if cfg.train.early_stopping:
            # The run's rule: the distilled cells' step cap for the baseline cell too, validation once per pass over
            # the labelled rows, the best step kept.
            val_loader = self.loader(self.tok["validation"], False)
            settings.max_steps = settings.total_steps(len(kd_loader))
            settings.eval_every = cfg.train.eval_every or len(self.loader(self.plain_train, True))
            settings.patience, settings.monitor = cfg.train.patience, self.metric
        t0 = time.perf_counter()
        if alpha == 0:
            res = train(student, self.loader(self.plain_train, True), val_loader,
                        partial(cross_entropy_objective, class_weights=self.class_weights), settings, self.accelerator)
        else:
            res = train(student, kd_loader, val_loader,
                        kd_objective(temperature, alpha, hard_weight=cfg.kd.hard_weight, class_weights=self.class_weights),
                        settings, self.accelerator)
        student = merge_lora(self.accelerator.unwrap_model(student, keep_fp32_wrapper=False))  # scored in fp32
        scores = self.score(student, "validation")
        cell = {"temperature": temperature, "alpha": alpha, "train_time_s": round(time.perf_counter() - t0, 2),
                "steps": res.steps, "best_step": (res.validation or {}).get("best_step", res.steps),
                **{f"val_{k}": v for k, v in scores.items()}}
        return student, cell

    def test_figures(self, models: dict, cell: dict, epochs: float) -> dict[str, float]:
        """Test figures of ``cell``'s model: the one kept from this session, or trained again (same seed, same
        result) when the cell was finished in an earlier, interrupted session."""
        model = models.get((cell["temperature"], cell["alpha"]))
        if model is None:
            model, _ = self.train_cell(cell["temperature"], cell["alpha"], epochs)
        scores = self.score(model, "test")
        scores.pop("pred", None)
        return {f"test_{k}": v for k, v in scores.items()}

    def score(self, model, split: str) -> dict[str, float]:
        lg, lb = predict_logits(model, self.loader(self.tok[split], False), self.accelerator.device)
        pred = lg.argmax(-1)
        out: dict[str, Any] = accuracy_f1(lb, pred)
        if split == "validation":
            out["agreement"] = float(np.mean(pred == self.teacher_val_pred))
            out["pred"] = pred.tolist()  # for the paired interval against the baseline cell
        return out
