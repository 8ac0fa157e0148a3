"""Files that a reader never sees half of: JSON, text and folders written whole, CSV rows appended as they come.

    write_json_atomic(run_dir / "results.json", results)     # readers see the old file or the whole new one
    with atomic_dir(run_dir / "teacher") as tmp:             # a folder filled under a temporary name,
        model.save_pretrained(tmp)                           # renamed into place once whole
    with atomic_file(out) as tmp: df.to_parquet(tmp)         # any writer, the same way
    out = check_output_file(args.output, "--output")         # a file the user named: refused before any work
    log = CsvLog(path, ["step", "train_loss"]); log.write({"step": 1, "train_loss": 0.7}); log.close()
    d = read_json(path)                                      # RunError (never a JSONDecodeError) if missing or corrupt

What each file is called and where it lies is ``runs``'s business; this module only says how a file is written
and read back. A whole write goes to a temporary name beside the target, then is renamed over it, so a crash
leaves the old file (or none), never a torn one. CSV logs are the exception: rows are appended while training
runs, and their reader (``runs.read_metrics``) drops a half-written last row.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import ConfigError, RunError


# ----------------------------------------------------------------------------- written whole


def check_writable(folder: Path, what: str = "the run folder") -> None:
    """Refuse at once, before any work, when ``folder`` cannot take a new file (read-only, not a folder, disk full).

    Raises:
        RunError: one line naming the folder, the reason and the fix.
    """
    folder = Path(folder)
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise RunError(f"Cannot write to {what} {folder}: {e.strerror or type(e).__name__}. Fix: make it writable "
                       "(or free disk space) and run the command again; nothing was changed.") from e


def check_output_file(path: Path, flag: str) -> Path:
    """Refuse at once, before any work, a file the user named for output that could not be written: a folder in
    its place, its folder missing, read-only or full. Returns the path, absolute.

    Raises:
        ConfigError: a folder in its place or a missing folder, naming the flag and the path.
        RunError: its folder cannot take a new file (``check_writable``).
    """
    path = Path(path).expanduser().absolute()
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: that is a folder. Fix: give a file name, such as {path / 'out.json'}.")
    if not path.parent.is_dir():
        what = "is a file, not a folder" if path.parent.exists() else "does not exist"
        raise ConfigError(f"{flag} {path}: {path.parent} {what}. Fix: give a path in an existing folder (or create "
                          "the folder first).")
    check_writable(path.parent, f"the folder of {flag}")
    return path


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` so that readers see either the old file or the whole new one."""
    path = Path(path)
    write_text_atomic(path, json.dumps(obj, indent=2, default=_json_default))


def write_text_atomic(path: Path, text: str) -> None:
    """Write text to ``path`` so that readers see either the old file or the whole new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """``with atomic_file(out) as tmp: df.to_parquet(tmp)``: written under a temporary name beside ``path``, renamed
    over it once whole; on an error (or Ctrl-C) the temporary file is removed and ``path`` left as it was."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"Not JSON serialisable: {type(o).__name__}")


def atomic_dir(final: Path) -> "_AtomicDir":
    """``with atomic_dir(run / "teacher") as tmp: model.save_pretrained(tmp)`` then renamed to ``final``."""
    return _AtomicDir(Path(final))


class _AtomicDir:
    def __init__(self, final: Path):
        self.final = final
        self.tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"

    def __enter__(self) -> Path:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.final.exists():
            old = self.final.parent / f".{self.final.name}.old-{os.getpid()}"
            os.replace(self.final, old)
            os.replace(self.tmp, self.final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.final)


def read_json(path: Path) -> Any:
    """Read a JSON file, raising RunError (never a bare JSONDecodeError) when it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path.name} is missing from {path.parent}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path} is not valid JSON ({e}); the run may be half-written or corrupt") from e


# ----------------------------------------------------------------------------- written row by row


class CsvLog:
    """Appends rows to a CSV as training goes, flushed at most ``flush_every_s`` apart (and on close), so a live
    dashboard sees them within about a second without a system call per row.

    A reader may meet a half-written last row; ``runs.read_metrics`` drops it.
    """

    def __init__(self, path: Path, columns: list[str], flush_every_s: float = 1.0):
        self.path = Path(path)
        self.columns = columns
        self.flush_every_s = flush_every_s
        self._file = open(self.path, "w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=columns, extrasaction="ignore")
        self._writer.writeheader()
        self.flush()

    def write(self, row: dict[str, Any]) -> None:
        self._writer.writerow({k: _fmt(row.get(k)) for k in self.columns})
        if time.monotonic() - self._flushed >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        self._file.flush()
        self._flushed = time.monotonic()

    def close(self) -> None:
        self._file.close()


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else v
