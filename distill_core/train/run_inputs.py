"""What a run trains from, loaded and checked before its folder exists: the data, the models, a reused teacher.

    teacher_src = teacher_source(cfg, cfg.runs_root())   # --teacher-from RUN: that run's teacher folder, else None
    check_models(cfg, teacher_src)                       # --max-length, --layer-map ... against the models' configs
    data = load_run_data(cfg, teacher_src)               # the splits (few labels: + hidden-label texts), the tokenizer
    weights = class_weights_for(cfg, data.splits)        # (C,) for --class-weights balanced, else None

A mistyped teacher, a value the models cannot take or data that cannot be used fails here, so a rejected run
leaves no folder behind (``pipeline.run_pipeline``); ``sweep`` loads a finished run's data through the same
functions. ``copy_teacher`` puts the reused teacher into the new run once the folder exists.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig
from .data import Splits, load_splits
from ..errors import ConfigError, RunError
from ..files import atomic_dir, read_json
from .losses import balanced_class_weights
from .models import config_value, load_tokenizer, source_config
from ..runs import has_model, metrics_path, model_dir, resolve_run
from .transfer import load_transfer_texts, split_labelled


def teacher_source(cfg: RunConfig, root: Path) -> Path | None:
    """The teacher folder of the run named by ``--teacher-from`` (None without it), checked to be whole."""
    if not cfg.model.teacher_from:
        return None
    src = model_dir(resolve_run(cfg.model.teacher_from, root), "teacher")
    if not has_model(src.parent, "teacher"):
        raise RunError(f"Run {cfg.model.teacher_from!r} has no complete teacher model at {src}; "
                       "train one with --models teacher")
    return src


def check_models(cfg: RunConfig, teacher_src: Path | None = None) -> None:
    """What the config asks of the models, checked against their own configs (no weights loaded).

    Raises:
        ModelError: a teacher or student that is not there. ConfigError: --max-length beyond a model's position
            limit, or a --layer-map entry beyond the teacher's layers.
    """
    t_cfg = source_config(str(teacher_src) if teacher_src else cfg.model.teacher,
                          "--teacher-from" if teacher_src else "--teacher")
    sources = [("teacher", t_cfg)]
    if cfg.model.student and not cfg.model.is_lstm() and {"student", "baseline"} & set(cfg.train.models):
        sources.append(("student", source_config(cfg.model.student, "--student")))
    m = cfg.model
    if m.is_lstm() and m.lstm_init == "teacher" and m.lstm_embedding_dim is not None:
        width = config_value(source_config(m.teacher), "hidden")
        if m.lstm_embedding_dim != width:
            raise ConfigError(f"--lstm-embedding-dim {m.lstm_embedding_dim}: --lstm-init teacher copies the teacher's "
                              f"{width}-wide embeddings. Leave out --lstm-embedding-dim, or use --lstm-init word2vec "
                              "or random")
    for what, mcfg in sources:
        limit = config_value(mcfg, "positions")
        if cfg.data.max_length > limit:
            raise ConfigError(f"--max-length {cfg.data.max_length} is more than the {what} can read: it has "
                              f"{limit} positions. Use --max-length {min(limit, 128)} (or up to {limit}); "
                              "longer texts are truncated.")
    layers = config_value(t_cfg, "layers")
    bad = [j for j in (cfg.model.layer_map or []) if j >= layers]
    if bad:
        raise ConfigError(f"--layer-map {','.join(map(str, cfg.model.layer_map))}: the teacher has layers 0..{layers - 1}, "
                          f"so {bad} do not exist")


@dataclass
class RunData:
    """What a run trains on, loaded and checked before its folder exists."""

    splits: Splits
    tokenizer: Any
    transfer_texts: list[str]  # texts whose labels the students never see (few-labels setting)


def load_run_data(cfg: RunConfig, teacher_src: Path | None) -> RunData:
    """The splits (few labels: the labelled subset, and the texts with hidden labels) and the tokenizer.

    Every problem with the user's data shows here, so a rejected dataset leaves no run folder behind.
    """
    splits = load_splits(cfg.data, seed=cfg.train.seed)
    transfer_texts: list[str] = []
    if cfg.data.labelled:
        # Few labels: teacher and baseline see the labelled rows only; the distilled student also learns the
        # teacher's distribution on the other training texts (and --transfer-dataset), their labels hidden.
        splits.train, hidden = split_labelled(splits.train, cfg.data.labelled, cfg.train.seed)
        transfer_texts = list(hidden["text"]) + load_transfer_texts(cfg.data, cfg.train.seed)
        splits.notes.append(f"{len(splits.train)} labelled training rows (stratified, seed {cfg.train.seed}); "
                            f"{len(transfer_texts)} texts with hidden labels for the distilled student's soft targets")
    tokenizer = load_tokenizer(str(teacher_src) if teacher_src else cfg.model.teacher)
    return RunData(splits, tokenizer, transfer_texts)


def class_weights_for(cfg: RunConfig, splits: Splits) -> torch.Tensor | None:
    """(C,) cross-entropy weights from the training labels for ``--class-weights balanced``; None for ``none``."""
    if cfg.train.class_weights != "balanced":
        return None
    return balanced_class_weights(list(splits.train["label"]), len(splits.label_names))


def copy_teacher(src: Path, run_dir: Path, label_names: list[str]) -> None:
    """Copy a reused teacher (and its training CSVs) into ``run_dir``, once its labels are this dataset's."""
    saved = read_json(src / "config.json")
    saved_names = [saved.get("id2label", {}).get(str(i)) for i in range(len(saved.get("id2label", {})))]
    if saved_names != label_names:
        raise RunError(f"The teacher in {src} predicts {saved_names}, but this dataset's labels are {label_names}; "
                       "reuse a teacher trained on the same dataset")
    with atomic_dir(model_dir(run_dir, "teacher")) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
    for split in ("train", "val"):
        if metrics_path(src.parent, "teacher", split).exists():
            shutil.copy2(metrics_path(src.parent, "teacher", split), metrics_path(run_dir, "teacher", split))
