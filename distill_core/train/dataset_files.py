"""Reading a dataset (a hub name, a folder in the hub's layout, or one data file), and saying why it failed.

    raw = load_raw(source, cfg)     # a DatasetDict of the splits as stored; data.load_splits checks and normalises it
    raw = load_raw("tickets.csv", cfg)   # one file: its rows are the train split (cfg.test_file, cfg.validation_file
                                         # add the others); read by datasets' own csv / json / parquet builders

datasets and pandas wrap the real cause of a failure (an invalid class label, a bad encoding, a row with too
many fields) in generic errors; here the innermost cause and the file it came from are found and turned into
one DataError whose one-line message names them and the fix.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
import pyarrow.parquet as pq
from datasets import ClassLabel, DatasetDict

from ..config import DataConfig, data_dir
from ..errors import DataError

logger = logging.getLogger(__name__)

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".json", ".jsonl", ".arrow")
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zip")  # datasets reads train.csv.gz as train.csv
METADATA_FILES = ("config.json", "dataset_info.json", "dataset_infos.json", "dataset_dict.json", "state.json")
LAYOUT_FIX = ("the folder needs one CSV/Parquet file per split (train.csv, test.csv, ...) with a text and a "
              "label column and, optionally, a README.md card declaring the splits and label names")
MAX_CAUSE_CHARS = 200  # of a reader's own error message quoted in ours
GENERIC_FAILURE = "An error occurred while generating the dataset"  # datasets' wrapper, says nothing itself
# One data file as --dataset (or --test-file, --validation-file): datasets' builder for it, and its options.
FILE_BUILDERS = {".csv": ("csv", {}), ".tsv": ("csv", {"delimiter": "\t"}), ".json": ("json", {}),
                 ".jsonl": ("json", {}), ".parquet": ("parquet", {})}

def _folder_cache_dir(folder: Path) -> str:
    """A datasets cache folder keyed by the folder's files (path, size, mtime).

    datasets 5 caches a hub-layout folder with a README card under its folder name and reuses that cache
    for another folder of the same name, or for edited files: stale rows, silently. Keying the cache on the
    files themselves makes every distinct content load afresh (and tokenisation caches follow it).
    """
    return _cache_dir(folder.name, sorted(p for p in folder.rglob("*") if p.is_file()), folder)


def _cache_dir(name: str, files: list[Path], root: Path) -> str:
    h = hashlib.blake2b(digest_size=8)
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve().relative_to(root.resolve())}|{st.st_size}|{st.st_mtime_ns}".encode())
    h.update(str(root.resolve()).encode())
    return str(Path(datasets.config.HF_DATASETS_CACHE) / "distill_lens" / f"{name}-{h.hexdigest()}")


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
            raise _read_failure(e, str(folder), files, failed, features,
                                lambda f: f"{_rel(f, folder)} in {folder}" if f else f"the dataset folder {folder}") from e


def _read_failure(e: BaseException, source: str, files: dict[str, list[Path]], failed: list[str], features: Any,
                  where: Callable[[Path | None], str]) -> DataError:
    """The one-line DataError for a reader's failure: a known case, else the innermost cause and the file it came
    from (``where`` words it), with the fix."""
    known = _known_failure(e, source, files)
    if known:
        return known
    cause = _innermost_cause(e)
    bad_file, described = _locate(cause, failed, files, features)
    return DataError(f"Could not read {where(bad_file)}: {described}. Fix: {_read_fix(cause, features)}.")


def _load_files(source: Path, cfg: DataConfig) -> DatasetDict:
    """One data file as the train split, ``--validation-file`` and ``--test-file`` as theirs, through datasets' own
    csv / json / parquet builder (all the files of one kind)."""
    builder, options = FILE_BUILDERS[source.suffix.lower()]
    files = {"train": [source]}
    for split, given, flag in (("validation", cfg.validation_file, "--validation-file"),
                               ("test", cfg.test_file, "--test-file")):
        if given:
            f = Path(given).expanduser()
            if not f.is_file():
                raise DataError(f"{flag} {given!r}: there is no file {f.resolve()}. Fix: pass an existing file of the "
                                f"same kind as --dataset ({source.suffix}).")
            if FILE_BUILDERS.get(f.suffix.lower(), (None,))[0] != builder:
                raise DataError(f"{flag} {given!r} is a {f.suffix or 'suffix-less'} file but --dataset is "
                                f"{source.suffix}: give every split in the same format.")
            files[split] = [f.resolve()]
    for split, paths in files.items():
        if paths[0].stat().st_size == 0:
            raise DataError(f"Split {split!r} has 0 rows: {paths[0]} is empty. Fix: fill it, or leave it out.")
    every = [p for paths in files.values() for p in paths]
    with _failed_files() as failed:
        try:
            return datasets.load_dataset(builder, data_files={k: [str(p) for p in v] for k, v in files.items()},
                                         cache_dir=_cache_dir(source.stem, every, Path("/")), **options)
        except Exception as e:  # noqa: BLE001 - datasets raises many types; all mean "could not read"
            raise _read_failure(e, str(source), files, failed, None, lambda f: str(f or source)) from e


def load_file(path: Path) -> datasets.Dataset:
    """The rows of one data file (.csv, .tsv, .json, .jsonl, .parquet), read as a training file is; a DataError naming
    the file, the reader's own words and the fix when it cannot be, or when it holds no rows (``predict`` reads its
    input with it)."""
    path = Path(path)
    empty = DataError(f"{path} has no rows (it is empty, or holds only a header). Fix: give a file with a row per "
                      "text to classify.")
    if path.stat().st_size == 0:
        raise empty
    try:
        rows = _load_files(path, DataConfig(dataset=str(path)))["train"]
    except DataError as e:
        if e.__cause__ is not None and "corresponds to no data" in _chain_text(e.__cause__):
            raise empty from e
        raise
    if len(rows) == 0:
        raise empty
    return rows


def load_raw(source: str, cfg: DataConfig) -> DatasetDict:
    if Path(source).is_dir():
        ds = _load_folder(Path(source))
    elif Path(source).is_file():
        ds = _load_files(Path(source), cfg)
    else:
        try:
            ds = datasets.load_dataset(source)
        except Exception as e:  # noqa: BLE001 - datasets raises many types; all mean "could not load"
            known = _known_failure(e, source, {})
            if known:
                raise known from e
            if "/" in cfg.dataset:  # owner/name: a hub id, or a folder the user meant that is not there
                raise DataError(
                    f"Dataset {cfg.dataset!r} not found: there is no folder {Path(cfg.dataset).expanduser().resolve()}, "
                    f"and as a hub dataset it could not be loaded ({_describe(_innermost_cause(e))}). Fix: pass an "
                    "existing folder or data file (a relative path starts from the folder you run in), or a hub name "
                    "such as fancyzhx/ag_news where the Hugging Face hub is reachable."
                ) from e
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


