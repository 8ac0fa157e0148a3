"""Datasets: resolve a name, load and validate the splits, tokenise once, batch by length.

    splits = load_splits(DataConfig(dataset="ag_news"), seed=42)
    tok_splits = tokenize_splits(splits, tokenizer, max_length=128)
    loader = make_loader(tok_splits["train"], tokenizer, batch_size=32, shuffle=True, seed=42)

Every split is normalised to two columns, ``text`` (str) and ``label`` (ClassLabel ids), whatever the
source called them. Whatever is wrong with a dataset surfaces as one DataError whose one-line message names
the cause (the file and the reader's own words where a file could not be read) and the fix.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Value
from torch.utils.data import DataLoader, Sampler
from transformers import DataCollatorWithPadding
from transformers.trainer_pt_utils import get_length_grouped_indices

from .config import DataConfig, data_dir
from .errors import DataError

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
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".json", ".jsonl", ".arrow")
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zip")  # datasets reads train.csv.gz as train.csv
# Metadata a hub-layout folder may hold beside its data; datasets never reads them as rows.
METADATA_FILES = ("config.json", "dataset_info.json", "dataset_infos.json", "dataset_dict.json", "state.json")
# A --dataset ending like this names something on disk, never a hub dataset.
PATH_SUFFIXES = (*TABLE_SUFFIXES, *COMPRESSED_SUFFIXES, ".txt", ".tar")
LAYOUT_FIX = ("the folder needs one CSV/Parquet file per split (train.csv, test.csv, ...) with a text and a "
              "label column and, optionally, a README.md card declaring the splits and label names")
MAX_CAUSE_CHARS = 200  # of a reader's own error message quoted in ours
GENERIC_FAILURE = "An error occurred while generating the dataset"  # datasets' wrapper, says nothing itself
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


# ----------------------------------------------------------------------------- where the dataset is


def resolve_dataset(cfg: DataConfig) -> str:
    """The path or hub name to hand to ``load_dataset``.

    An existing folder is used as is. A name that looks like a path (it starts with ``.``, ``/`` or ``~``,
    ends like a file such as ``.csv``, or has a separator and an existing parent folder, as ``data/mydata``)
    is a path: when it is not there, a DataError says so at once instead of after a hub lookup. A short name
    (``ag_news``) is looked up in the data dir first, then mapped to its hub dataset (``fancyzhx/ag_news``);
    anything else is taken as a hub name.
    """
    name = cfg.dataset
    p = Path(name).expanduser()
    if p.is_dir():
        return str(p.resolve())
    if _looks_like_path(name):
        if p.exists():
            suffix = p.suffix.lower() if p.suffix.lower() in TABLE_SUFFIXES else ".csv"
            raise DataError(f"--dataset {name!r} is a file ({p.resolve()}), but it takes a folder. Fix: put the "
                            f"file in a folder as train{suffix} (with test{suffix} and validation{suffix} if you "
                            "have them) and pass the folder.")
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
    # "data/mydata" is a path when ./data exists; "fancyzhx/ag_news" stays a hub name (there is no ./fancyzhx).
    has_separator = any(sep in name for sep in {"/", os.sep, os.altsep} - {None})
    return has_separator and p.parent.is_dir()


def _folder_cache_dir(folder: Path) -> str:
    """A datasets cache folder keyed by the folder's files (path, size, mtime).

    datasets 5 caches a hub-layout folder with a README card under its folder name and reuses that cache
    for another folder of the same name, or for edited files: stale rows, silently. Keying the cache on the
    files themselves makes every distinct content load afresh (and tokenisation caches follow it).
    """
    h = hashlib.blake2b(digest_size=8)
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(folder)}|{st.st_size}|{st.st_mtime_ns}".encode())
    h.update(str(folder.resolve()).encode())
    return str(Path(datasets.config.HF_DATASETS_CACHE) / "distill_lens" / f"{folder.name}-{h.hexdigest()}")


# ----------------------------------------------------------------------------- reading, and why it failed


def _innermost_cause(exc: BaseException) -> BaseException:
    """The exception at the bottom of ``exc``'s chain: what actually went wrong.

    Explicit causes (``raise ... from``) are followed all the way down: datasets wraps every reader error in
    a DatasetGenerationError that says only "An error occurred while generating the dataset". An implicit
    context is followed only out of an exception that says nothing itself; otherwise the context is the error
    being handled when the better-worded one was raised (pandas reports a UnicodeDecodeError after its Arrow
    decoder failed; the hub client a ConnectionError after its cache lookup failed).
    """
    seen = {id(exc)}
    while True:
        nxt = exc.__cause__
        if nxt is None and not exc.__suppress_context__ and not str(exc).strip():
            nxt = exc.__context__
        if nxt is None or id(nxt) in seen:
            return exc
        seen.add(id(nxt))
        exc = nxt


def _chain_text(exc: BaseException) -> str:
    """Every message in ``exc``'s chain, causes and contexts alike, for recognising known failures."""
    parts, seen, todo = [], set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        parts.append(str(e))
        todo += [e.__cause__, e.__context__]
    return " | ".join(parts)


def _describe(exc: BaseException) -> str:
    """``Type: message`` on one line: the message's first two lines, trimmed to MAX_CAUSE_CHARS."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and line.strip() != GENERIC_FAILURE]
    msg = " ".join(lines[:2]).rstrip(". ")
    if len(msg) > MAX_CAUSE_CHARS:
        msg = msg[:MAX_CAUSE_CHARS].rstrip() + " (...)"
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


class _FailedFiles(logging.Handler):
    """Collects the files datasets' readers name when they fail: their exceptions do not carry the file,
    only their 'Failed to read file '...' with error ...' log line does."""

    PATTERN = re.compile(r"Failed to [^']*'([^']+)'")

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.files: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        m = self.PATTERN.search(record.getMessage())
        if m:
            self.files.append(m.group(1))


@contextmanager
def _failed_files() -> Iterator[list[str]]:
    handler = _FailedFiles()
    root = logging.getLogger("datasets")
    root.addHandler(handler)
    try:
        yield handler.files
    finally:
        root.removeHandler(handler)


def _rows(n: int) -> str:
    return f"{n} row{'' if n == 1 else 's'}"


def _rel(path: str | Path, folder: Path) -> str:
    p = Path(path)
    try:
        return str(p.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(p)


def _is_table(path: Path) -> bool:
    if path.name in METADATA_FILES:
        return False
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    return bool(suffixes) and (suffixes[-1] in TABLE_SUFFIXES or
                               (suffixes[-1] in COMPRESSED_SUFFIXES and suffixes[0] in TABLE_SUFFIXES))


def _table_files(folder: Path) -> list[Path]:
    """Data files in ``folder`` (recursively), skipping hidden ones as datasets does."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and _is_table(p)
                  and not any(part.startswith((".", "__")) for part in p.relative_to(folder).parts))


def _is_blank(path: Path) -> bool:
    size = path.stat().st_size
    return size == 0 or (size <= 4096 and not path.read_bytes().strip())


def _columns(path: Path) -> list[str] | None:
    """A data file's column names, from its header alone; None where that cannot be read cheaply."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            return list(pd.read_csv(path, nrows=0, sep="\t" if suffix == ".tsv" else ",").columns)
        if suffix == ".parquet":
            return [n for n in pq.read_schema(path).names if not n.startswith("__index_level_")]
    except Exception:  # noqa: BLE001 - an unreadable header is reported by the reader itself, with its cause
        return None
    return None


def _check_folder_files(folder: Path, files: dict[str, list[Path]]) -> None:
    """Refuse a folder whose files would be read wrongly or silently skipped, before reading any row.

    ``files`` maps each split to its files, as datasets resolved them (from the card, else from file names).
    A file that lands in no split is refused: nothing else would tell the user it is ignored. A split the
    card declares under another name (IMDB's "unsupervised", texts kept for --transfer-split) is deliberate
    and is only noted when dropped (see ``_canonical_splits``).
    """
    for split, paths in files.items():
        for p in paths:
            if not _is_table(p):
                raise DataError(f"{_rel(p, folder)} in {folder} would be read as the {split} split, but it is not "
                                f"a CSV/Parquet file. Fix: {LAYOUT_FIX}.")
    used = {p.resolve() for paths in files.values() for p in paths}
    unused = [_rel(p, folder) for p in _table_files(folder) if p.resolve() not in used]
    if unused:
        verb, it = ("belongs", "it") if len(unused) == 1 else ("belong", "they")
        raise DataError(f"{', '.join(unused)} in {folder} {verb} to no split, so {it} would be ignored. Fix: name "
                        "each data file after its split (train, validation or dev, test), list it under "
                        "data_files in the README card, or move it out of the folder.")
    for p in sorted(used):
        if _is_blank(p):
            raise DataError(f"{_rel(p, folder)} in {folder} is empty: no header line and no rows. Fix: write a "
                            "header (e.g. text,label) and rows into it, or remove the file (and its entry in "
                            "the README card).")
    # All files of a folder are read as one table: a file whose columns differ fails mid-read with datasets'
    # own cast error, which names neither the file nor the columns.
    headers = {p: cols for p in [*files.get("train", []), *sorted(used)] if (cols := _columns(p)) is not None}
    if headers:
        ref, ref_cols = next(iter(headers.items()))
        for p, cols in headers.items():
            if set(cols) != set(ref_cols):
                extra, lacking = sorted(set(cols) - set(ref_cols)), sorted(set(ref_cols) - set(cols))
                raise DataError(f"{_rel(p, folder)} in {folder} has columns {cols}, but {_rel(ref, folder)} has "
                                f"{ref_cols}. Fix: give every data file the same columns"
                                f"{f' (rename {extra} to {lacking})' if extra and lacking else ''}, or move the "
                                "odd file out of the folder.")


def _is_encoding_error(cause: BaseException) -> bool:
    return isinstance(cause, UnicodeError) or "Invalid UTF8" in str(cause)


def _first_bad_utf8(paths: list[Path]) -> tuple[Path, str] | None:
    """The first text file in ``paths`` that is not UTF-8, with where: the reader's own position counts from
    the start of its current buffer, so it cannot point the user at a line."""
    for p in paths:
        if p.suffix.lower() in (".csv", ".tsv", ".json", ".jsonl"):
            data = p.read_bytes()
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as e:
                line = data.count(b"\n", 0, e.start) + 1
                return p, f"byte 0x{data[e.start]:02x} on line {line} is not valid UTF-8"
    return None


def _first_unparsable(paths: list[Path]) -> Path | None:
    """The first CSV/TSV file pandas cannot parse: where a parse error is raised, no file is logged."""
    for p in paths:
        suffix = p.suffix.lower()
        if suffix in (".csv", ".tsv"):
            try:
                pd.read_csv(p, dtype=str, sep="\t" if suffix == ".tsv" else ",")
            except (pd.errors.ParserError, pd.errors.EmptyDataError):
                return p
            except Exception:  # noqa: BLE001 - only a pointer for the message; the real error is reported regardless
                continue
    return None


def _file_with_label(paths: list[Path], column: str, value: str) -> Path | None:
    """The first CSV/TSV/Parquet file whose ``column`` holds ``value``, to point the user at it."""
    for p in paths:
        suffix = p.suffix.lower()
        try:
            if suffix == ".parquet":
                col = pd.read_parquet(p, columns=[column])[column]
            elif suffix in (".csv", ".tsv"):
                col = pd.read_csv(p, usecols=[column], dtype=str, sep="\t" if suffix == ".tsv" else ",")[column]
            else:
                continue
        except Exception:  # noqa: BLE001 - only a pointer for the message; the real error is reported regardless
            continue
        if (col.astype(str) == value).any():
            return p
    return None


def _locate(cause: BaseException, failed: list[str], files: dict[str, list[Path]],
            features: Any) -> tuple[Path | None, str]:
    """The file a reader failed on (None when it cannot be known) and the cause in words, on one line."""
    paths = [p for split_paths in files.values() for p in split_paths]
    if _is_encoding_error(cause):
        found = _first_bad_utf8(paths)
        if found:
            return found[0], f"UnicodeDecodeError: {found[1]}"
    bad_file = Path(failed[-1]) if failed else None
    label = re.match(r"Invalid string class label (.*)", str(cause))
    column = next((k for k, f in (features or {}).items() if isinstance(f, ClassLabel)), None)
    if bad_file is None and label and column:
        bad_file = _file_with_label(paths, column, label.group(1))
    if bad_file is None and isinstance(cause, (pd.errors.ParserError, pd.errors.EmptyDataError)):
        bad_file = _first_unparsable(paths)
    return bad_file, _describe(cause)


def _read_fix(cause: BaseException, features: Any) -> str:
    """The fix for a reader's error, by what the error is."""
    msg = str(cause)
    if _is_encoding_error(cause):
        return ("save the file as UTF-8 text (e.g. 'CSV UTF-8' in a spreadsheet, or iconv -f latin1 -t utf-8) "
                "and try again")
    if isinstance(cause, pd.errors.ParserError):
        return ("give every row as many fields as the header line, and quote texts that hold commas, quotes "
                "or line breaks")
    if "Invalid string class label" in msg:
        declared = [f.names for f in (features or {}).values() if isinstance(f, ClassLabel)]
        names = f" ({', '.join(declared[0])})" if declared else ""
        return (f"use only the label names the README card declares{names}, or add the missing name to the "
                "card's class_label names")
    if "magic bytes" in msg:
        return "write the file again as Parquet (e.g. pandas' DataFrame.to_parquet) or as CSV"
    if "as a scalar of type" in msg or "Could not convert" in msg:
        return ("give each column the same kind of value in every file (a column read as numbers in one file "
                "cannot hold text in another), or declare the column types in a README card")
    return LAYOUT_FIX


def _known_failure(e: BaseException, source: str, files: dict[str, list[Path]]) -> DataError | None:
    """The failures datasets reports in words of its own that we can put better: an empty split, a label id
    outside the card's names."""
    chain = _chain_text(e)
    bad_label = re.search(r"Class label (-?\d+) greater than configured num_classes (\d+)", chain)
    if bad_label:
        return DataError(f"A split of {source} has label id {bad_label.group(1)}, outside the declared names "
                         f"(ids 0..{int(bad_label.group(2)) - 1} in the README card). Fix the labels or the "
                         "card's class_label names.")
    empty = re.search(r'Instruction "(\w+)" corresponds to no data', chain)
    if empty:
        split = empty.group(1)
        paths = files.get(split, [])
        header = all(p.suffix.lower() in (".csv", ".tsv") for p in paths)
        held = (f" ({', '.join(_rel(p, Path(source)) for p in paths)} "
                f"{'has a header but no rows' if header else 'holds no rows'})") if paths else ""
        return DataError(f"Split {split!r} has 0 rows in {source}{held}. Remove its file (and its entry in the "
                         "README card), or fill it, and try again.")
    return None


def _load_folder(folder: Path) -> DatasetDict:
    if not _table_files(folder):
        others = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        held = f"it holds only {', '.join(others[:5])}{', ...' if len(others) > 5 else ''}" if others else "it is empty"
        raise DataError(f"The dataset folder {folder} has no CSV/Parquet data file ({held}). Fix: {LAYOUT_FIX}.")
    cache_dir = _folder_cache_dir(folder)
    files: dict[str, list[Path]] = {}
    features = None
    with _failed_files() as failed:
        try:
            builder = datasets.load_dataset_builder(str(folder), cache_dir=cache_dir)
            files = {str(split): [Path(f) for f in paths] for split, paths in (builder.config.data_files or {}).items()}
            features = builder.info.features
            _check_folder_files(folder, files)
            return datasets.load_dataset(str(folder), cache_dir=cache_dir)
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 - datasets raises many types; all mean "could not read"
            known = _known_failure(e, str(folder), files)
            if known:
                raise known from e
            cause = _innermost_cause(e)
            bad_file, described = _locate(cause, failed, files, features)
            where = f"{_rel(bad_file, folder)} in {folder}" if bad_file else f"the dataset folder {folder}"
            raise DataError(f"Could not read {where}: {described}. Fix: {_read_fix(cause, features)}.") from e


def _load_raw(source: str, cfg: DataConfig) -> DatasetDict:
    if Path(source).is_dir():
        ds = _load_folder(Path(source))
    else:
        try:
            ds = datasets.load_dataset(source)
        except Exception as e:  # noqa: BLE001 - datasets raises many types; all mean "could not load"
            known = _known_failure(e, source, {})
            if known:
                raise known from e
            ddir = data_dir(cfg.data_dir)
            where = f"data dir {ddir}" if ddir else "no data dir set"
            raise DataError(
                f"Could not load dataset {cfg.dataset!r} (tried {source!r}; {where}): "
                f"{_describe(_innermost_cause(e))}. Fix: point --data-dir (or DISTILL_DATA_DIR) at a folder holding "
                f"a hub-layout copy named {Path(cfg.dataset).name!r}, pass such a folder directly as --dataset, or "
                "run where the Hugging Face hub is reachable."
            ) from e
    if not isinstance(ds, DatasetDict):
        raise DataError(f"{source!r} loaded as a single split; expected a dataset with named splits")
    return ds


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
    raw = _canonical_splits(_load_raw(source, cfg), source, notes)
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


# ----------------------------------------------------------------------------- tokenisation and batching


def tokenize_splits(splits: DatasetDict | Splits, tokenizer, max_length: int) -> DatasetDict:
    """Tokenise every split once (``datasets.map`` caches it), no padding; adds a ``length`` column."""
    dd = splits.as_dict() if isinstance(splits, Splits) else splits

    def encode(batch):
        enc = tokenizer(list(batch["text"]), truncation=True, max_length=max_length)
        enc.pop("token_type_ids", None)  # single segment; DistilBERT takes none and BERT's are all 0
        enc["length"] = [len(ids) for ids in enc["input_ids"]]
        return enc

    return dd.map(encode, batched=True, desc="Tokenising")


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Shuffled length buckets (as ``group_by_length`` in Trainer): batches of similar-length texts.

    Each epoch draws a fresh permutation from a seeded generator, so runs are reproducible.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self):
        idx = get_length_grouped_indices(self.lengths, self.batch_size, generator=self.generator)
        batches = [idx[i : i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        # Shuffle the order of the batches too, so that long and short batches are interleaved.
        order = torch.randperm(len(batches), generator=self.generator).tolist()
        return iter([batches[i] for i in order])

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size


class SortedBatchSampler(Sampler[list[int]]):
    """Evaluation batches in length order (deterministic, minimal padding)."""

    def __init__(self, lengths: list[int], batch_size: int):
        order = np.argsort(np.asarray(lengths), kind="stable")
        self.batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


MODEL_INPUTS = ("input_ids", "attention_mask", "label", "teacher_logits")


def make_loader(ds: Dataset, tokenizer, batch_size: int, shuffle: bool, seed: int = 0,
                group_by_length: bool = True, pad_to: int | None = None) -> DataLoader:
    """A DataLoader that pads per batch. ``pad_to`` pads every batch to that length instead (as the
    reports did; kept for the benchmark's comparison)."""
    cols = [c for c in MODEL_INPUTS if c in ds.column_names]
    ds = ds.with_format("torch", columns=cols)
    if pad_to:
        collator = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=pad_to)
    else:
        collator = DataCollatorWithPadding(tokenizer)
    lengths = list(ds.with_format(None)["length"]) if "length" in ds.column_names else None
    if group_by_length and lengths is not None:
        sampler = LengthGroupedBatchSampler(lengths, batch_size, seed) if shuffle else SortedBatchSampler(lengths, batch_size)
        return DataLoader(ds, batch_sampler=sampler, collate_fn=collator)
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen if shuffle else None, collate_fn=collator)


def padding_efficiency(loader: DataLoader) -> float:
    """Fraction of tokens in the loader's batches that are real (not padding)."""
    real = total = 0
    for batch in loader:
        real += int(batch["attention_mask"].sum())
        total += batch["attention_mask"].numel()
    return real / max(total, 1)
