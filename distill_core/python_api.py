"""Distil from Python: your DataFrame (or file, folder, hub name), your teacher and student, one call.

    from distill_core import distil
    run_dir = distil(df, text_column="body", label_column="topic",            # a pandas DataFrame
                     teacher="path/to/your-finetuned-teacher", models=["student", "baseline"],
                     student="prajjwal1/bert-small", epochs=2)
    run_dir = distil("tickets.csv", preset="quick", max_train_samples=2000)    # anything --dataset takes

Keyword settings are the fields of the run's config (the CLI's flags with ``_`` for ``-``: ``max_length``,
``student_epochs``, ``temperature`` ...), over the preset's. A DataFrame is saved once as Parquet under the runs
folder (``.frames/``, named by its content), so that ``evaluate``, ``sweep`` and the dashboard can read the run's
data again later, exactly as ``--dataset FILE`` would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

from .config import RunConfig
from .errors import ConfigError, DataError
from .presets import preset_config

FRAMES_DIR = ".frames"  # under the runs folder; hidden from the run list
SECTIONS = ("data", "model", "train", "kd")


def distil(data: Any, preset: str = "quick", **settings: Any) -> Path:
    """Train the run ``preset`` and ``settings`` describe on ``data``; returns the run folder.

    Args:
        data: a pandas DataFrame (a text column and a label column), or what ``--dataset`` takes.
        preset: the preset the settings start from (``quick``, ``few-labels`` ...).
        settings: config fields by name (``teacher``, ``student``, ``models``, ``epochs``, ``output_dir``,
            ``run_id`` ...). ``models`` may be a list.

    Raises:
        ConfigError: a setting that is not a config field, or a value out of range. DataError, ModelError: as for
            ``python -m distill_core train``.
    """
    from .train.pipeline import run_pipeline

    cfg = config_for(data, preset, **settings)
    return run_pipeline(cfg)


def config_for(data: Any, preset: str = "quick", **settings: Any) -> RunConfig:
    """The ``RunConfig`` that ``distil`` trains (a DataFrame saved as Parquet and named by its path)."""
    cfg = preset_config(preset)
    for name, value in settings.items():
        if name in ("output_dir", "run_id"):
            setattr(cfg, name, None if value is None else str(value))
            continue
        owners = [s for s in SECTIONS if name in {f.name for f in dataclasses.fields(getattr(cfg, s))}]
        if not owners:
            known = sorted({f.name for s in SECTIONS for f in dataclasses.fields(getattr(cfg, s))})
            raise ConfigError(f"distil() has no setting {name!r}; the settings are: {', '.join(known)}")
        if name == "models" and not isinstance(value, str):
            value = ",".join(value)
        if name == "models":
            value = [m.strip() for m in value.split(",") if m.strip()]
        setattr(getattr(cfg, owners[0]), name, value)
    cfg.data.dataset = dataset_name(data, cfg.runs_root())
    return cfg


def dataset_name(data: Any, runs_root: Path) -> str:
    """What ``--dataset`` gets for ``data``: a DataFrame saved as ``<runs>/.frames/<content hash>.parquet`` (written
    whole, then renamed; the same rows give the same file), anything else as it is."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is None or not isinstance(data, pd.DataFrame):
        if isinstance(data, (str, os.PathLike)):
            return str(data)
        raise DataError(f"distil() takes a pandas DataFrame, a data file, a folder or a hub name, not a "
                        f"{type(data).__name__}")
    if data.empty:
        raise DataError("The DataFrame has no rows: pass one with a text column and a label column")
    digest = hashlib.sha1(pd.util.hash_pandas_object(data, index=False).values.tobytes()
                          + ",".join(map(str, data.columns)).encode()).hexdigest()[:16]
    folder = Path(runs_root) / FRAMES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"frame_{digest}.parquet"
    if not path.is_file():
        tmp = folder / f".{path.name}.{os.getpid()}.tmp"
        data.reset_index(drop=True).to_parquet(tmp, index=False)
        tmp.replace(path)
    return str(path)
