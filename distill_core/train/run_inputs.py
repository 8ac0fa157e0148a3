"""What a run trains from, loaded and checked before its folder exists: the data, the models, a reused teacher.

    teacher_src = teacher_source(cfg, cfg.runs_root())   # a teacher used as it is (folder or hub id), else None
    check_models(cfg, teacher_src)                       # --max-length, --layer-map ... against the models' configs
    data = load_run_data(cfg, teacher_src)               # the splits (few labels: + hidden-label texts), the tokenizer
    weights = class_weights_for(cfg, data.splits)        # (C,) for --class-weights balanced, else None

A mistyped teacher, a value the models cannot take or data that cannot be used fails here, so a rejected run
leaves no folder behind (``pipeline.run_pipeline``); ``sweep`` loads a finished run's data through the same
functions. ``copy_teacher`` puts the reused teacher into the new run once the folder exists.

A teacher is used as it is, never trained again, when ``--teacher-from`` names a run, a run folder or a model folder,
or when ``--teacher`` names a fine-tuned sequence-classification checkpoint (a folder or a hub id) and ``teacher`` is
not in ``--models``. Its labels are matched to the dataset's by name (``align_labels``).
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Value

from ..config import RunConfig
from .data import Splits, load_splits
from ..errors import ConfigError, DataError, ModelError, RunError
from ..files import atomic_dir
from .batching import tokenizer_key
from .losses import balanced_class_weights
from .models import config_value, load_tokenizer, resolve_model_path, source_config
from ..runs import STATUS_FILE, has_model, metrics_path, model_dir, resolve_run
from .transfer import load_transfer_texts, split_labelled, without_overlap


logger = logging.getLogger(__name__)
GENERIC_LABEL = re.compile(r"LABEL_\d+")


def teacher_source(cfg: RunConfig, root: Path) -> str | None:
    """The teacher used as it is, not trained here: a model folder or a hub id; None when the run fine-tunes one.

    ``--teacher-from`` takes a run id, a run folder or a model folder; without it, ``--teacher`` is used as it is when
    the distilled student is trained and ``teacher`` is not in ``--models``. Either must have a classification head.
    """
    ref = cfg.model.teacher_from
    if ref:
        p = Path(ref).expanduser()
        if p.is_dir() and (p / "config.json").is_file() and not (p / "teacher").is_dir():
            src = str(p.resolve())  # a model folder (a run's teacher/, or any save_pretrained folder)
        else:
            run = resolve_run(ref, root)
            if not has_model(run, "teacher"):
                raise RunError(f"Run {ref!r} has no complete teacher model at {model_dir(run, 'teacher')}; "
                               "train one with --models teacher")
            src = str(model_dir(run, "teacher"))
        flag = "--teacher-from"
    elif "teacher" not in cfg.train.models and "student" in cfg.train.models:
        src, flag = cfg.model.teacher, "--teacher"
    else:
        return None
    archs = source_config(src, flag).architectures or []
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        raise ModelError(f"{flag} {ref or src!r} has no classification head ({', '.join(archs) or 'no architecture'}), "
                         "so it cannot be used as a teacher as it is. Fix: put teacher in --models to fine-tune it "
                         "here (e.g. --models teacher,student,baseline), or pass a fine-tuned classifier.")
    return src


def is_run_teacher(src: str) -> bool:
    """Whether ``src`` is the teacher folder of a run of this project (its training curves come along)."""
    return (Path(src).parent / STATUS_FILE).is_file()


def align_labels(splits: Splits, teacher_names: list[str], where: str) -> Splits:
    """The dataset's classes put in the order of a given teacher's ``id2label``, so class i means the same for both.

    The same names in another order are re-mapped; generic names (LABEL_0, LABEL_1, ...) are taken in the dataset's
    order when the counts agree, with a note for the run summary; anything else is refused with both lists.
    """
    names = splits.label_names
    if teacher_names == names:
        return splits
    if all(GENERIC_LABEL.fullmatch(str(n)) for n in teacher_names):
        if len(teacher_names) != len(names):
            raise DataError(f"The teacher {where} has {len(teacher_names)} outputs but the dataset has {len(names)} "
                            f"classes ({', '.join(names)}). Fix: pass a teacher fine-tuned on these classes, or put "
                            "teacher in --models to fine-tune one here.")
        splits.notes.append(f"warning: the teacher's labels are generic ({', '.join(teacher_names)}); they are taken "
                            f"as the dataset's classes in order: {', '.join(names)}")
        return splits
    if sorted(teacher_names) != sorted(names):
        raise DataError(f"The teacher {where} predicts {teacher_names}, but this dataset's classes are {names}. Fix: "
                        "pass a teacher fine-tuned on these classes (the same label names), or put teacher in "
                        "--models to fine-tune one here.")
    order = [teacher_names.index(n) for n in names]  # dataset class id -> teacher class id
    for split in ("train", "validation", "test"):
        ds = getattr(splits, split)
        ds = ds.cast_column("label", Value("int64"))
        setattr(splits, split, ds.map(lambda b: {"label": [order[i] for i in b["label"]]}, batched=True,
                                      desc=f"Matching {split} labels to the teacher's"))
    splits.notes.append(f"classes put in the teacher's order: {', '.join(teacher_names)}")
    splits.label_names = list(teacher_names)
    return splits


def check_models(cfg: RunConfig, teacher_src: str | None = None) -> None:
    """What the config asks of the models, checked against their own configs (no weights loaded).

    Raises:
        ModelError: a teacher or student that is not there. ConfigError: --max-length beyond a model's position
            limit, or a --layer-map entry beyond the teacher's layers.
    """
    t_cfg = source_config(teacher_src or cfg.model.teacher, "--teacher-from" if cfg.model.teacher_from else "--teacher")
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
    s_cfg = dict(sources).get("student")
    if cfg.kd.hidden_weight > 0 and s_cfg is not None and config_value(s_cfg, "hidden") != config_value(t_cfg, "hidden"):
        raise ConfigError(f"--hidden-weight {cfg.kd.hidden_weight:g} compares hidden states, but the student's are "
                          f"{config_value(s_cfg, 'hidden')} wide and the teacher's {config_value(t_cfg, 'hidden')}. "
                          "Leave out --hidden-weight, or use a student as wide as the teacher (or one built from it).")
    layers = config_value(t_cfg, "layers")
    built = not cfg.model.student and not cfg.model.is_lstm() and {"student", "baseline"} & set(cfg.train.models)
    if built and cfg.model.student_layers and cfg.model.student_layers > layers:
        raise ConfigError(f"--student-layers {cfg.model.student_layers}: the student is built from the teacher's layers "
                          f"and the teacher has {layers}. Use --student-layers 1 to {layers} (default {max(1, layers // 2)}).")
    bad = [j for j in (cfg.model.layer_map or []) if j >= layers]
    if bad:
        raise ConfigError(f"--layer-map {','.join(map(str, cfg.model.layer_map))}: the teacher has layers 0..{layers - 1}, "
                          f"so {bad} do not exist")


@dataclass
class RunData:
    """What a run trains on, loaded and checked before its folder exists."""

    splits: Splits
    tokenizer: Any  # the teacher's
    transfer_texts: list[str]  # texts whose labels the students never see (few-labels setting)
    student_tokenizer: Any = None  # a --student with another vocabulary brings its own; None: the teacher's

    def tokenizer_for(self, kind: str):
        """The tokenizer ``kind`` (teacher, student, baseline) reads the texts with."""
        return self.tokenizer if kind == "teacher" or self.student_tokenizer is None else self.student_tokenizer


def load_run_data(cfg: RunConfig, teacher_src: str | None) -> RunData:
    """The splits (few labels: the labelled subset, and the texts with hidden labels) and the tokenizer.

    Every problem with the user's data shows here, so a rejected dataset leaves no run folder behind.
    """
    splits = load_splits(cfg.data, seed=cfg.train.seed)
    if teacher_src is not None:
        tcfg = source_config(teacher_src)
        id2label = tcfg.id2label or {}
        splits = align_labels(splits, [str(id2label[i]) for i in sorted(id2label)], f"{teacher_src!r}")
    transfer_texts: list[str] = []
    if cfg.data.labelled:
        # Few labels: teacher and baseline see the labelled rows only; the distilled student also learns the
        # teacher's distribution on the other training texts (and --transfer-dataset), their labels hidden.
        splits.train, hidden = split_labelled(splits.train, cfg.data.labelled, cfg.train.seed)
        extra, dropped = without_overlap(load_transfer_texts(cfg.data, cfg.train.seed),
                                         {"test": list(splits.test["text"]), "validation": list(splits.validation["text"]),
                                          "labelled": list(splits.train["text"]), "hidden-label": list(hidden["text"])})
        if any(dropped.values()):
            splits.notes.append("--transfer-dataset texts dropped as already in the run: "
                                + ", ".join(f"{n} {name}" for name, n in dropped.items() if n))
        transfer_texts = list(hidden["text"]) + extra
        splits.notes.append(f"{len(splits.train)} labelled training rows (stratified, seed {cfg.train.seed}); "
                            f"{len(transfer_texts)} texts with hidden labels for the distilled student's soft targets")
    tokenizer = load_tokenizer(teacher_src or cfg.model.teacher)
    return RunData(splits, tokenizer, transfer_texts, student_tokenizer(cfg, tokenizer))


def student_tokenizer(cfg: RunConfig, teacher_tokenizer):
    """A ``--student`` checkpoint's own tokenizer when it splits texts otherwise than the teacher's (another
    vocabulary or family); None when the two agree, or the student is built from the teacher (it shares its
    vocabulary).

    Raises:
        ConfigError: ``--hidden-weight`` with a student that reads other tokens (its hidden states cannot be paired
            with the teacher's token by token).
    """
    if not cfg.model.student or cfg.model.is_lstm() or not {"student", "baseline"} & set(cfg.train.models):
        return None
    own = load_tokenizer(cfg.model.student)
    if tokenizer_key(own) == tokenizer_key(teacher_tokenizer):
        return None
    if cfg.kd.hidden_weight > 0:
        raise ConfigError(f"--hidden-weight {cfg.kd.hidden_weight:g} pairs the student's hidden states with the "
                          f"teacher's token by token, but --student {cfg.model.student} splits texts into other tokens. "
                          "Leave out --hidden-weight (the soft targets are paired per text and work with any "
                          "tokenizer), or use a student with the teacher's tokenizer.")
    return own


def class_weights_for(cfg: RunConfig, splits: Splits) -> torch.Tensor | None:
    """(C,) cross-entropy weights from the training labels for ``--class-weights balanced``; None for ``none``."""
    if cfg.train.class_weights != "balanced":
        return None
    return balanced_class_weights(list(splits.train["label"]), len(splits.label_names))


def copy_teacher(src: str, run_dir: Path, label_names: list[str], max_length: int, truncation: str) -> None:
    """Put the teacher used as it is into ``run_dir/teacher``, so the run folder stands on its own.

    A run's teacher folder is copied with its training CSVs. Any other checkpoint (a folder or a hub id) is loaded
    from its safetensors weights (never a pickle) and saved afresh: the user's folder is only read. Generic label
    names become the dataset's (``align_labels`` checked the counts).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if is_run_teacher(src):
        with atomic_dir(model_dir(run_dir, "teacher")) as tmp:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
        for split in ("train", "val"):
            if metrics_path(Path(src).parent, "teacher", split).exists():
                shutil.copy2(metrics_path(Path(src).parent, "teacher", split), metrics_path(run_dir, "teacher", split))
        return
    path = resolve_model_path(src)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ModelError(f"The teacher {src!r} could not be loaded from safetensors weights ({str(e).splitlines()[0][:200]}). "
                         "Fix: save it with save_pretrained(..., safe_serialization=True) and pass that folder.") from e
    names = [str(model.config.id2label[i]) for i in sorted(model.config.id2label)]
    if names != label_names:  # generic LABEL_k names, taken in the dataset's order
        model.config.id2label = dict(enumerate(label_names))
        model.config.label2id = {n: i for i, n in enumerate(label_names)}
    model.config.distill_max_length = max_length
    model.config.distill_truncation = truncation
    model.config.distill_given = src
    with atomic_dir(model_dir(run_dir, "teacher")) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
