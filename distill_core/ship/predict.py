"""The ``predict`` command: one model of a run classifies every row of a data file; the answers go to a new file.

    python -m distill_core predict RUN --input tickets.csv                      # -> tickets.student-predictions.csv
    python -m distill_core predict RUN --input tickets.jsonl --model teacher --output labelled.parquet

    from distill_core.ship.predict import PredictSettings, predict_file
    summary = predict_file(PredictSettings(run="RUN", input=Path("tickets.csv")))

The input is read as a training file is (``train/dataset_files.py``: CSV, TSV, JSON, JSON Lines or Parquet, and
the same one-line explanation when it cannot be). Every row comes out, in order, with its own columns and then
``predicted_label``, ``confidence`` and one ``prob_<class>`` column per class; a row without text keeps those
empty. The output's format follows its extension (.csv, .tsv, .jsonl, .json, .parquet); by default it lies beside
the input, named after it and the model, and it is never the input itself. It is written whole under a temporary
name and renamed, so an interrupted run leaves no half file. The model reads the texts with the tokenizer saved in
its own folder, in batches of ``--batch-size``, texts of similar length together.

Everything the user can get wrong (a missing or damaged model, a missing file or text column, an empty file, an
output that cannot be written) is refused in one line with the fix before the model is loaded.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import MODEL_KINDS, MODEL_TITLES
from ..errors import ConfigError, DataError, RunError
from ..flags import add_device_flag

logger = logging.getLogger(__name__)

INPUT_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet")  # what train.dataset_files reads as one file
OUTPUT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
LABEL_COLUMN, CONFIDENCE_COLUMN, PROB_PREFIX = "predicted_label", "confidence", "prob_"
HELP = """Classify every row of a data file with one model of a run.

The file is CSV, TSV, JSON, JSON Lines or Parquet, with a column of texts. Each row is written out with its own
columns and the model's predicted_label, its confidence and one prob_<class> column per class, to --output (its
ending chooses the format) or beside the input. The input is never overwritten."""
CHUNK_BATCHES = 16  # batches sorted by length together: longer runs pad less, shorter ones update the bar sooner


@dataclass
class PredictSettings:
    """One ``predict``; every field is a flag."""

    run: str
    input: Path
    model: str = "student"
    output: Path | None = None  # None: beside the input, <stem>.<model>-predictions<suffix>
    text_column: str | None = None  # None: text, sentence, content, review or document, the first the file has
    batch_size: int = 32
    output_dir: Path | None = None  # the runs folder, for a run id

    def validate(self) -> "PredictSettings":
        """Raise ConfigError naming the flag; return self."""
        if self.model not in MODEL_KINDS:
            raise ConfigError(f"--model {self.model!r}: choose one of {', '.join(MODEL_KINDS)}")
        if not 1 <= self.batch_size <= 4096:
            raise ConfigError(f"--batch-size {self.batch_size}: give 1-4096 texts per batch")
        if Path(self.input).suffix.lower() not in INPUT_SUFFIXES:
            raise ConfigError(f"--input {self.input}: give a {', '.join(INPUT_SUFFIXES)} file (a {Path(self.input).suffix or 'suffix-less'} "
                              "file cannot be read as a table)")
        if self.output is not None and Path(self.output).suffix.lower() not in OUTPUT_SUFFIXES:
            raise ConfigError(f"--output {self.output}: give a file ending {', '.join(OUTPUT_SUFFIXES)}; the ending "
                              "chooses the format")
        return self


def default_output(input_path: Path, model: str) -> Path:
    """``tickets.csv`` -> ``tickets.student-predictions.csv`` beside it (a .json input gets .json, and so on)."""
    suffix = input_path.suffix.lower() if input_path.suffix.lower() in OUTPUT_SUFFIXES else ".csv"
    return input_path.with_name(f"{input_path.stem}.{model}-predictions{suffix}")


def check_paths(settings: PredictSettings) -> tuple[Path, Path]:
    """The input (an existing file) and the output (writable, not the input), absolute; refused in one line."""
    src = Path(settings.input).expanduser().absolute()
    if not src.is_file():
        what = "a folder" if src.is_dir() else "not there"
        raise DataError(f"--input {settings.input}: {src} is {what}. Fix: give an existing "
                        f"{', '.join(INPUT_SUFFIXES)} file.")
    from ..files import check_output_file

    out = check_output_file(settings.output or default_output(src, settings.model), "--output")
    if out.resolve() == src.resolve():
        raise ConfigError(f"--output {out} is the input file; the predictions never replace it. Fix: give another "
                          "file name.")
    return src, out


def pick_text_column(columns: list[str], wanted: str | None, source: Path) -> str:
    """``wanted`` if the file has it, else the first usual text column name; DataError with the columns if none."""
    from ..train.data import TEXT_COLUMNS

    if wanted:
        if wanted not in columns:
            raise DataError(f"{source.name} has no column {wanted!r}; its columns are {columns}. Fix: "
                            "--text-column COLUMN.")
        return wanted
    found = next((c for c in TEXT_COLUMNS if c in columns), None)
    if found is None:
        raise DataError(f"{source.name} has no text column (looked for {', '.join(TEXT_COLUMNS)}); its columns are "
                        f"{columns}. Fix: name the column with --text-column COLUMN.")
    return found


def load_model(run_dir: Path, kind: str):
    """The run's ``kind`` model with its own tokenizer; RunError (one line, with the fix) if missing or damaged."""
    from ..runs import has_model, model_dir, model_problem
    from .inference import TextClassifier

    problem = model_problem(run_dir, kind)
    if problem:
        others = [k for k in MODEL_KINDS if k != kind and has_model(run_dir, k)]
        pick = f", or pick another with --model ({', '.join(others)})" if others else ""
        raise RunError(f"Run {run_dir.name} cannot classify with its {MODEL_TITLES[kind].lower()}: {problem}. Fix: "
                       f"re-train it{pick}.")
    try:
        return TextClassifier.load(model_dir(run_dir, kind))
    except Exception as e:  # a folder that looked whole but does not load: from_pretrained raises many types
        raise RunError(f"The {kind} model in {model_dir(run_dir, kind)} could not be loaded ({type(e).__name__}: "
                       f"{str(e).splitlines()[0][:200] if str(e) else ''}). Fix: re-train it.") from e


def has_text(value: Any) -> bool:
    """Whether a cell holds something to classify: words, or a number (read as its text); not a blank, None or NaN."""
    if isinstance(value, str):
        return bool(value.strip())
    if value is None:
        return False
    try:
        return not bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or a dict in the cell: classified as its text
        return True


def classify(clf, texts: list[str], batch_size: int) -> np.ndarray:
    """(N, C) probabilities of ``texts``, with a progress bar over the texts."""
    from tqdm.auto import tqdm

    probs = np.zeros((len(texts), len(clf.labels)), dtype=np.float32)
    step = batch_size * CHUNK_BATCHES
    with tqdm(total=len(texts), desc=f"predict {clf.name}", unit="text") as bar:
        for i in range(0, len(texts), step):
            probs[i:i + step] = clf.predict_proba(texts[i:i + step], batch_size=batch_size)  # (n, C)
            bar.update(len(texts[i:i + step]))
    return probs


def write_table(df, path: Path) -> None:
    """``df`` to ``path`` in the format its extension names, whole or not at all."""
    from ..files import atomic_file

    suffix = path.suffix.lower()
    with atomic_file(path) as tmp:
        if suffix in (".csv", ".tsv"):
            df.to_csv(tmp, sep="\t" if suffix == ".tsv" else ",", index=False)
        elif suffix == ".jsonl":
            df.to_json(tmp, orient="records", lines=True, force_ascii=False)
        elif suffix == ".json":
            df.to_json(tmp, orient="records", force_ascii=False, indent=1)
        else:
            df.to_parquet(tmp, index=False)


def predict_file(settings: PredictSettings) -> dict[str, Any]:
    """Classify every row of ``settings.input`` and write the rows with their predictions; returns a summary.

    Returns:
        {"run", "model", "input", "output", "rows", "classified", "without_text", "text_column", "label_counts",
        "seconds"}.
    """
    from ..runs import resolve_run
    from ..train.dataset_files import load_file

    settings.validate()
    src, out = check_paths(settings)
    run_dir = resolve_run(settings.run, settings.output_dir)
    clf = load_model(run_dir, settings.model)
    rows = load_file(src)
    column = pick_text_column(list(rows.column_names), settings.text_column, src)
    df = rows.to_pandas()
    ok = np.array([has_text(v) for v in df[column]], dtype=bool)  # (N,)
    texts = [str(v) for v, keep in zip(df[column], ok) if keep]
    t0 = time.perf_counter()
    probs = classify(clf, texts, settings.batch_size)  # (n, C), n = rows with text
    seconds = time.perf_counter() - t0
    full = np.full((len(df), len(clf.labels)), np.nan)  # (N, C); rows without text stay empty
    full[ok] = probs
    predicted = np.full(len(df), None, dtype=object)
    predicted[ok] = [clf.labels[i] for i in probs.argmax(-1)]
    confidence = np.full(len(df), np.nan)
    confidence[ok] = probs.max(-1, initial=0.0)
    added = {LABEL_COLUMN: predicted, CONFIDENCE_COLUMN: confidence,
             **{f"{PROB_PREFIX}{name}": full[:, j] for j, name in enumerate(clf.labels)}}
    df = df.drop(columns=[c for c in added if c in df.columns]).assign(**added)
    write_table(df, out)
    counts = {name: int((predicted == name).sum()) for name in clf.labels}
    return {"run": run_dir.name, "model": settings.model, "input": str(src), "output": str(out), "rows": len(df),
            "classified": len(texts), "without_text": len(df) - len(texts), "text_column": column,
            "label_counts": counts, "seconds": seconds}


def format_summary(s: dict[str, Any]) -> str:
    """What ``predict`` prints: how many rows, the labels given, where the file is."""
    share = lambda n: f"{n / s['classified']:.0%}" if s["classified"] else "-"  # noqa: E731
    counts = ", ".join(f"{name} {n} ({share(n)})" for name, n in s["label_counts"].items())
    lines = [f"{s['run']}: the {s['model']} classified {s['classified']} of {s['rows']} rows of {Path(s['input']).name} "
             f"(column {s['text_column']!r}) in {s['seconds']:.1f} s: {counts}"]
    if s["without_text"]:
        lines.append(f"{s['without_text']} rows have no text; their predictions are left empty.")
    lines.append(f"Wrote {s['output']}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the command


def add_parser(subparsers) -> argparse.ArgumentParser:
    """``predict RUN --input FILE [--model student] [--output FILE] [--text-column COLUMN] [--batch-size N]``."""
    d = PredictSettings(run="", input=Path())
    p = subparsers.add_parser("predict", help="classify every row of a data file with a model of a run; writes each "
                                              "row's label and class probabilities to a new file",
                              description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run id or folder")
    p.add_argument("--input", required=True, type=Path, help=f"the file to classify ({', '.join(INPUT_SUFFIXES)})")
    p.add_argument("--model", choices=MODEL_KINDS, default=d.model, help=f"which model of the run ({d.model})")
    p.add_argument("--output", type=Path, help=f"where to write ({', '.join(OUTPUT_SUFFIXES)}, by its ending; default: "
                                               "beside the input, INPUT.MODEL-predictions with the input's ending)")
    p.add_argument("--text-column", help="the column holding the texts (default: text, sentence, content, review or "
                                         "document, the first the file has)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"texts per forward pass ({d.batch_size})")
    p.add_argument("--output-dir", type=Path, help="runs folder for a run id (default: the project's artifacts/runs)")
    add_device_flag(p)
    return p


def run_command(args: argparse.Namespace) -> int:
    from ..console import say

    settings = PredictSettings(run=args.run, input=args.input, model=args.model, output=args.output,
                               text_column=args.text_column, batch_size=args.batch_size, output_dir=args.output_dir)
    say(format_summary(predict_file(settings)))
    return 0
