"""Datasets: resolve a name, load and validate the splits, carve the missing ones.

    splits = load_splits(DataConfig(dataset="ag_news"), seed=42)    # train / validation / test, text + label

Reading the files (and explaining a failure) is ``dataset_files.py``; tokenising and batching is ``batching.py``.

Every split is normalised to two columns, ``text`` (str) and ``label`` (ClassLabel ids), whatever the
source called them. Whatever is wrong with a dataset surfaces as one DataError whose one-line message names
the cause (the file and the reader's own words where a file could not be read) and the fix.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Value

from ..config import DataConfig, data_dir
from .dataset_files import COMPRESSED_SUFFIXES, FILE_BUILDERS, TABLE_SUFFIXES, load_raw
from ..errors import DataError
from ..files import read_json
from ..runs import CONFIG_FILE, load_run_config

logger = logging.getLogger(__name__)

# Short names and their hub datasets, for users with internet.
HUB_NAMES = {
    "ag_news": "fancyzhx/ag_news",
    "imdb": "stanfordnlp/imdb",
    "sst2": "stanfordnlp/sst2",
    "rotten_tomatoes": "cornell-movie-review-data/rotten_tomatoes",
    "hate_speech18": "odegiber/hate_speech18",
}
TEXT_COLUMNS = ("text", "sentence", "content", "review", "document")
LABEL_COLUMNS = ("label", "labels", "class", "target")
SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"valid": "validation", "val": "validation", "dev": "validation"}
# Splits a hub dataset may hold that play no part here and are dropped quietly (IMDB's unlabelled one);
# any other extra split is dropped with a note.
IGNORED_SPLITS = ("unsupervised",)
# Files a dataset folder holds its splits in (what datasets reads as a table with named columns).
# Metadata a hub-layout folder may hold beside its data; datasets never reads them as rows.
# A --dataset ending like this names something on disk, never a hub dataset.
PATH_SUFFIXES = (*TABLE_SUFFIXES, *COMPRESSED_SUFFIXES, ".txt", ".tar")
NUMBER = re.compile(r"[-+]?(\d+([.,]\d*)?|[.,]\d+)([eE][-+]?\d+)?")


@dataclass
class Splits:
    train: Dataset
    validation: Dataset
    test: Dataset
    label_names: list[str]
    source: str  # the path or hub name actually loaded
    text_column: str  # as named in the source
    label_column: str
    notes: list[str]  # what was derived (carved splits, subsamples), for the run summary

    def info(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "label_names": self.label_names,
            "text_column": self.text_column,
            "label_column": self.label_column,
            "rows": {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)},
            "notes": self.notes,
        }

    def as_dict(self) -> DatasetDict:
        return DatasetDict(train=self.train, validation=self.validation, test=self.test)

    def train_label_counts(self) -> dict[str, int]:
        """Training rows per class name (the labelled rows only, in the few-labels setting)."""
        counts = np.bincount(np.asarray(list(self.train["label"]), dtype=np.int64), minlength=len(self.label_names))
        return {name: int(n) for name, n in zip(self.label_names, counts)}


# ----------------------------------------------------------------------------- where the dataset is


def resolve_dataset(cfg: DataConfig) -> str:
    """The path or hub name to hand to ``load_dataset``.

    An existing folder, or one .csv / .tsv / .json / .jsonl / .parquet file, is used as is. A name that looks like a path (it starts with ``.``, ``/`` or ``~``,
    ends like a file such as ``.csv``, has more separators than a hub id's ``owner/name``, or starts with an
    existing folder, as ``data/mydata``) is a path: when it is not there, a DataError says so at once instead of
    after a hub lookup; and when ``a/b`` fails on the hub, the error says no folder ``a/b`` exists either. A short name
    (``ag_news``) is looked up in the data dir first, then mapped to its hub dataset (``fancyzhx/ag_news``);
    anything else is taken as a hub name.
    """
    name = cfg.dataset
    p = Path(name).expanduser()
    if p.is_dir():
        return str(p.resolve())
    if p.is_file():
        if p.suffix.lower() not in FILE_BUILDERS:
            raise DataError(f"--dataset {name!r} is a {p.suffix or 'suffix-less'} file; it takes one "
                            f"{', '.join(FILE_BUILDERS)} file, a folder in the hub layout, or a hub name. Fix: save the "
                            "data as CSV (a text and a label column) and pass that file.")
        return str(p.resolve())
    if _looks_like_path(name):
        raise DataError(f"Dataset folder {name!r} not found: {p.resolve()} does not exist. Fix: pass an existing "
                        "folder in the hub layout (a CSV/Parquet file per split plus an optional README card), "
                        "or a hub name such as fancyzhx/ag_news.")
    ddir = data_dir(cfg.data_dir)
    if ddir is not None and (ddir / name).is_dir():
        return str((ddir / name).resolve())
    return HUB_NAMES.get(name, name)


def _looks_like_path(name: str) -> bool:
    p = Path(name).expanduser()
    if name.startswith((".", "/", "~")) or p.suffix.lower() in PATH_SUFFIXES:
        return True
    parts = re.split("|".join(re.escape(s) for s in {"/", os.sep, os.altsep} - {None}), name)
    if len(parts) == 1:
        return False
    # A hub id is owner/name: one separator, no empty part; "data/sub/mydata" and "mydata/" are paths. So is
    # "data/mydata" when ./data exists; "fancyzhx/ag_news" stays a hub name (there is no ./fancyzhx).
    return len(parts) > 2 or not all(parts) or Path(parts[0]).expanduser().is_dir()


def _rows(n: int) -> str:
    return f"{n} row{'' if n == 1 else 's'}"


# ----------------------------------------------------------------------------- columns, labels, texts


def _pick_column(columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, flag: str) -> str:
    if wanted:
        if wanted not in columns:
            raise DataError(f"{what} column {wanted!r} not found; columns are {columns}. Fix {flag}.")
        return wanted
    for c in candidates:
        if c in columns:
            return c
    raise DataError(f"No {what} column found (looked for {list(candidates)}); columns are {columns}. "
                    f"Name it with {flag} COLUMN.")


def _declared_names(feature: Any) -> list[str] | None:
    return list(feature.names) if isinstance(feature, ClassLabel) else None


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _check_texts(split_name: str, split: Dataset, text_col: str, columns: list[str]) -> None:
    """Refuse a text column that holds numbers or blanks: the tokenizer would crash, or learn nothing."""
    feature = split.features[text_col]
    texts = list(split[text_col])
    numbers = not (isinstance(feature, Value) and feature.dtype in ("string", "large_string", "null"))
    if not numbers:
        filled = [t.strip() for t in texts if isinstance(t, str) and t.strip()]
        numbers = bool(filled) and all(NUMBER.fullmatch(t) for t in filled)
    if numbers:
        examples = ", ".join(str(t) for t in texts[:3])
        raise DataError(f"The text column {text_col!r} of split {split_name!r} holds only numbers (e.g. {examples}), "
                        f"not text. Fix: name the column that holds the texts with --text-column (columns are "
                        f"{columns}), or fix the file.")
    # Rows without text would crash the tokenizer; refuse them with a count rather than guess.
    empty = sum(1 for t in texts if not isinstance(t, str) or not t.strip())
    if empty:
        raise DataError(f"Split {split_name!r} has {empty} row(s) with empty text in column {text_col!r}; "
                        "drop them and try again.")


def _shown(values: list[Any], limit: int = 10) -> str:
    more = f" and {len(values) - limit} more" if len(values) > limit else ""
    return ", ".join(repr(v) for v in values[:limit]) + more


def _check_train_classes(label_ids: dict[str, list[int]], names: list[str], declared: bool, notes: list[str]) -> None:
    """Every class a model is scored on must have training rows to learn it from.

    Undeclared labels (strings, or int ids without a card) infer the class set from the rows themselves, so a
    label met only in validation or test is a mistake in the data (a typo, a stray class): refused. A README
    card declares every class of the dataset, as hub cards do, so a declared class without training rows
    (a rare class, a trimmed train file) is allowed, with a warning and a note in the run summary.
    """
    in_train = set(label_ids["train"])
    if len(in_train) < 2:
        held = ", ".join(repr(names[i]) for i in sorted(in_train))
        raise DataError(f"The train split holds only one class ({held}); classification needs at least 2. Fix: "
                        "add training rows of the other classes, or pick the right column with --label-column.")
    elsewhere = {split: [i for i in ids if i not in in_train] for split, ids in label_ids.items() if split != "train"}
    if declared:
        absent = [names[i] for i in range(len(names)) if i not in in_train]
        if absent:
            held = "; ".join(f"{split} has {_rows(len(ids))} of them" for split, ids in elsewhere.items() if ids)
            note = (f"class(es) {_shown(absent)} declared in the README card have no training rows, so the models "
                    f"cannot learn them{' (' + held + ')' if held else ''}")
            logger.warning(note)
            notes.append(note)
        return
    for split, ids in elsewhere.items():
        if ids:
            labels = sorted(set(ids))
            what = f"Label {names[labels[0]]!r} occurs" if len(labels) == 1 else \
                f"Labels {_shown([names[i] for i in labels])} occur"
            raise DataError(f"{what} in the {split} split ({_rows(len(ids))}) but never in train, so no model can "
                            f"learn {'it' if len(labels) == 1 else 'them'}. Fix: add training rows of "
                            f"{'that class' if len(labels) == 1 else 'those classes'}, or correct or remove those "
                            f"{split} rows.")


def _normalise(ds: DatasetDict, cfg: DataConfig, notes: list[str]) -> tuple[DatasetDict, list[str], str, str]:
    """Rename to text/label, map string labels to ids (sorted order), validate every split."""
    first = ds["train"]
    columns = list(first.column_names)
    text_col = _pick_column(columns, cfg.text_column, TEXT_COLUMNS, "text", "--text-column")
    label_col = _pick_column(columns, cfg.label_column, LABEL_COLUMNS, "label", "--label-column")
    if text_col == label_col:
        raise DataError(f"text and label column are both {text_col!r}")

    for name, split in ds.items():
        missing = {text_col, label_col} - set(split.column_names)
        if missing:
            raise DataError(f"Split {name!r} lacks column(s) {sorted(missing)} (has {split.column_names}).")
        if len(split) == 0:
            raise DataError(f"Split {name!r} has 0 rows. Remove its file, or fill it, and try again.")
        _check_texts(name, split, text_col, columns)
        unlabelled = sum(1 for v in split[label_col] if _is_missing(v))
        if unlabelled:
            raise DataError(f"Split {name!r} has {_rows(unlabelled)} with no label in column {label_col!r}; drop "
                            "or label them.")

    names = _declared_names(first.features[label_col])
    declared = names is not None
    out = {}
    if names is None:
        # String (or plain int) labels: collect every value, sorted, and keep them as names.
        values = sorted({v for split in ds.values() for v in split[label_col]}, key=lambda v: (str(type(v)), v))
        if all(isinstance(v, (int, float, np.integer, np.floating)) for v in values):
            fractional = [v for v in values if not float(v).is_integer()]
            if fractional:
                raise DataError(f"Label column {label_col!r} holds fractional numbers (e.g. {_shown(fractional, 3)}), "
                                "which look like scores, not classes. Fix: name a column of class names or whole "
                                "ids with --label-column, or bucket the scores into classes.")
            values = sorted({int(v) for v in values})
            if min(values) < 0:
                raise DataError(f"Label {min(values)} is negative; labels must be 0..C-1 or strings.")
            names = [str(v) for v in range(max(values) + 1)]
            mapping = {v: int(v) for v in values}
            unused = sorted(set(range(max(values) + 1)) - set(values))
            if unused:
                note = (f"label id(s) {unused} occur in no split; kept as classes without rows so that the ids "
                        "keep their meaning")
                logger.warning(note)
                notes.append(note)
        else:
            names = [str(v) for v in values]
            mapping = {v: i for i, v in enumerate(values)}
        for split_name, split in ds.items():
            split = split.map(lambda b: {"label_id": [mapping[int(v) if isinstance(v, (float, np.floating)) else v]
                                                      for v in b[label_col]]}, batched=True)
            out[split_name] = split
    else:
        for split_name, split in ds.items():
            split_names = _declared_names(split.features[label_col])
            if split_names != names:
                raise DataError(f"Split {split_name!r} declares labels {split_names}, others {names}.")
            labels = np.asarray(list(split[label_col]))
            bad = sorted(set(labels[(labels < 0) | (labels >= len(names))].tolist()))
            if bad:
                raise DataError(
                    f"Split {split_name!r} has label id(s) {bad[:10]} outside the declared names {names} "
                    "(ids 0..{}). Fix the labels or the card's class_label names.".format(len(names) - 1)
                )
            out[split_name] = split.map(lambda b: {"label_id": list(b[label_col])}, batched=True)

    if len(names) < 2:
        raise DataError(f"Only {len(names)} class ({names}); classification needs at least 2.")
    _check_train_classes({k: list(v["label_id"]) for k, v in out.items()}, names, declared, notes)

    class_label = ClassLabel(names=names)
    for split_name, split in out.items():
        keep = [c for c in split.column_names if c not in ("label_id", text_col)]
        split = split.remove_columns(keep)
        if text_col != "text":
            split = split.rename_column(text_col, "text")
        split = split.rename_column("label_id", "label")
        out[split_name] = split.cast_column("label", class_label)
    return DatasetDict(out), names, text_col, label_col


def _unlabelled(split: Dataset, cfg: DataConfig) -> bool:
    cols = split.column_names
    col = cfg.label_column or next((c for c in LABEL_COLUMNS if c in cols), None)
    if col is None or col not in cols or not isinstance(split.features[col], ClassLabel) or len(split) == 0:
        return False
    return all(v == -1 for v in split[col])


# ----------------------------------------------------------------------------- carving and subsampling


def _pct(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def _check_carvable(rows: int, carves: list[tuple[str, float]]) -> None:
    """Refuse, before carving, a train split too small to carve ``carves`` (split, fraction) in turn and keep
    2 rows (room for 2 classes) for training.

    Rows are counted as ``train_test_split`` counts them: a carve takes ceil(fraction * rows left), so every
    carved split gets at least one row while any are left.
    """
    for what, fraction in carves:
        if not 0 < fraction < 1:
            raise DataError(f"The dataset has no {what} split and the {what} fraction is {fraction}; "
                            "set it between 0 and 1 (e.g. 0.1).")
    left, parts = rows, []
    for what, fraction in carves:
        taken = math.ceil(fraction * left) if left > 0 else 0
        parts.append(f"a {what} split ({_pct(fraction)}, {_rows(taken)})")
        left -= taken
    if left >= 2:
        return
    files = " and ".join(f"{what}.csv" for what, _ in carves)
    flags = " / ".join(f"--{what}-fraction" for what, _ in carves)
    raise DataError(f"The train split has only {_rows(rows)}: carving {' and '.join(parts)} from it would leave "
                    f"{_rows(max(left, 0))} for training, and training needs at least 2 rows of 2 classes. Fix: add "
                    f"training rows, provide {files} in the dataset folder, or change {flags}.")


def _carve(train: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    try:
        parts = train.train_test_split(test_size=fraction, stratify_by_column="label", seed=seed)
    except ValueError:  # a class too small to stratify: fall back to a plain seeded split
        parts = train.train_test_split(test_size=fraction, seed=seed)
    return parts["train"], parts["test"]


def subsample(ds: Dataset, n: int | None, seed: int) -> Dataset:
    """A stratified, seeded subsample of ``n`` rows (all rows when ``n`` is None or too large)."""
    if n is None or n >= len(ds):
        return ds
    if n <= 0:
        raise DataError(f"Sample count must be positive, got {n}")
    try:
        return ds.train_test_split(train_size=n, stratify_by_column="label", seed=seed)["train"]
    except ValueError:
        return ds.shuffle(seed=seed).select(range(n))


def _canonical_splits(raw: DatasetDict, source: str, notes: list[str]) -> DatasetDict:
    """train/validation/test under those names (valid, val and dev are validation); other splits dropped,
    with a note unless they are known to play no part."""
    out: dict[str, Dataset] = {}
    for name, split in raw.items():
        canonical = SPLIT_ALIASES.get(name, name)
        if canonical in out:
            same = [k for k in raw if SPLIT_ALIASES.get(k, k) == canonical]
            raise DataError(f"{source} has both splits {same}, which both mean {canonical}. Fix: keep one of them "
                            "(merge their rows into one file).")
        out[canonical] = split
    extra = [k for k in out if k not in (*SPLITS, *IGNORED_SPLITS)]
    if extra:
        note = (f"split(s) {_shown(extra)} not used: only train, validation (or valid, val, dev) and test are")
        logger.warning(note)
        notes.append(note)
    return DatasetDict({k: v for k, v in out.items() if k in SPLITS})


def load_splits(cfg: DataConfig, seed: int = 42) -> Splits:
    """Load, normalise and validate train/validation/test, carving missing ones from train."""
    source = resolve_dataset(cfg)
    notes: list[str] = []
    raw = _canonical_splits(load_raw(source, cfg), source, notes)
    for name in [k for k in ("validation", "test") if k in raw]:
        if _unlabelled(raw[name], cfg):
            # The hub's GLUE-style test splits carry label -1 everywhere: treat them as absent.
            del raw[name]
            notes.append(f"{name} split has no labels (all -1) and was replaced by a carve from train")
    if "train" not in raw:
        raise DataError(f"Dataset {source!r} has no 'train' split (splits: {list(raw)}).")
    carves = [(what, fraction) for what, fraction in (("test", cfg.test_fraction),
                                                      ("validation", cfg.validation_fraction)) if what not in raw]
    # Before the class checks: a train split too small to carve from is the first thing to fix.
    _check_carvable(len(raw["train"]), carves)
    ds, names, text_col, label_col = _normalise(raw, cfg, notes)
    train = ds["train"]
    derived, fixes = [], ["add training rows of the other classes"]  # what shrank train, should it lose a class
    split_of: dict[str, Dataset] = {}
    for what, fraction in carves:
        train, split_of[what] = _carve(train, fraction, seed)
        notes.append(f"{what} split carved from train ({fraction:.0%}, stratified, seed {seed})")
        derived.append(f"carving {what} ({_pct(fraction)}, --{what}-fraction)")
        fixes.append(f"provide {what}.csv or lower --{what}-fraction")
    test, validation = split_of.get("test", ds.get("test")), split_of.get("validation", ds.get("validation"))
    for n_attr, what in (("max_train_samples", "train"), ("max_eval_samples", "validation"), ("max_test_samples", "test")):
        n = getattr(cfg, n_attr)
        if n is not None and n < {"train": len(train), "validation": len(validation), "test": len(test)}[what]:
            notes.append(f"{what} subsampled to {n} rows (stratified)")
            if what == "train":
                derived.append(f"subsampling to {_rows(n)} (--max-train-samples)")
                fixes.append("raise --max-train-samples")
    train = subsample(train, cfg.max_train_samples, seed)
    validation = subsample(validation, cfg.max_eval_samples, seed)
    test = subsample(test, cfg.max_test_samples, seed)
    present = sorted(set(train["label"]))
    if len(present) < 2:
        # The source's train split holds 2 classes (checked in _normalise), so carving or subsampling took one
        # away and ``derived`` names it.
        held = ", ".join(repr(names[i]) for i in present)
        raise DataError(f"After {' and '.join(derived)}, the train split ({_rows(len(ds['train']))} before, "
                        f"{_rows(len(train))} after) holds only one class ({held}); training needs at least 2. Fix: "
                        f"{'; '.join(fixes[:-1])}; or {fixes[-1]}.")
    return Splits(train, validation, test, names, source, text_col, label_col, notes)


def run_data_config(run_dir: Path, saved: dict | None = None):
    """A run's config (``RunConfig``) with its dataset pointed at the folder or file the run recorded reading, even when
    its short name would resolve elsewhere today (another ``DISTILL_DATA_DIR``)."""
    saved = read_json(Path(run_dir) / CONFIG_FILE) if saved is None else saved
    cfg = load_run_config(run_dir, saved)
    source = saved.get("dataset_info", {}).get("source")
    if source and Path(source).exists():
        cfg.data.dataset = source
    return cfg


def run_splits(run_dir: Path, saved: dict | None = None) -> Splits:
    """The splits a run was trained on (``run_data_config``)."""
    cfg = run_data_config(run_dir, saved)
    return load_splits(cfg.data, seed=cfg.train.seed)
