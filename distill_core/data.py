"""Datasets: resolve a name, load and validate the splits, tokenise once, batch by length.

    splits = load_splits(DataConfig(dataset="ag_news"), seed=42)
    tok_splits = tokenize_splits(splits, tokenizer, max_length=128)
    loader = make_loader(tok_splits["train"], tokenizer, batch_size=32, shuffle=True, seed=42)

Every split is normalised to two columns, ``text`` (str) and ``label`` (ClassLabel ids), whatever the
source called them.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from datasets import ClassLabel, Dataset, DatasetDict
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


def resolve_dataset(cfg: DataConfig) -> str:
    """The path or hub name to hand to ``load_dataset``.

    An existing folder is used as is; a short name (``ag_news``) is looked up in the data dir first,
    then mapped to its hub dataset (``fancyzhx/ag_news``); anything else is taken as a hub name.
    """
    name = cfg.dataset
    p = Path(name).expanduser()
    if p.is_dir():
        return str(p.resolve())
    if name.startswith((".", "/", "~")):
        raise DataError(f"Dataset folder {name!r} not found. Pass an existing folder in the hub layout "
                        "(CSV/Parquet per split plus a README card), or a hub name such as fancyzhx/ag_news.")
    ddir = data_dir(cfg.data_dir)
    if ddir is not None and (ddir / name).is_dir():
        return str((ddir / name).resolve())
    return HUB_NAMES.get(name, name)


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


def _load_raw(source: str, cfg: DataConfig) -> DatasetDict:
    try:
        if Path(source).is_dir():
            ds = datasets.load_dataset(source, cache_dir=_folder_cache_dir(Path(source)))
        else:
            ds = datasets.load_dataset(source)
    except Exception as e:  # noqa: BLE001 - datasets raises many types; all mean "could not load"
        chain = f"{e} {e.__cause__} {e.__context__}"
        empty = re.search(r'Instruction "(\w+)" corresponds to no data', chain)
        bad_label = re.search(r"Class label (-?\d+) greater than configured num_classes (\d+)", chain)
        if bad_label:
            raise DataError(f"A split of {source} has label id {bad_label.group(1)}, outside the declared names "
                            f"(ids 0..{int(bad_label.group(2)) - 1} in the README card). Fix the labels or the "
                            "card's class_label names.") from e
        if empty:
            raise DataError(f"Split {empty.group(1)!r} has 0 rows in {source}. Remove its file (and its "
                            "entry in the README card), or fill it, and try again.") from e
        if Path(source).is_dir():
            raise DataError(f"Could not read the dataset folder {source}: {type(e).__name__}: {e}\nFix: the "
                            "folder needs one CSV/Parquet file per split (train.csv, test.csv, ...) and, "
                            "optionally, a README.md card declaring the splits and label names.") from e
        ddir = data_dir(cfg.data_dir)
        where = f"data dir {ddir}" if ddir else "no data dir set"
        raise DataError(
            f"Could not load dataset {cfg.dataset!r} (tried {source!r}; {where}): {type(e).__name__}: {e}\n"
            "Fix: point --data-dir (or DISTILL_DATA_DIR) at a folder holding a hub-layout copy named "
            f"{Path(cfg.dataset).name!r}, pass such a folder directly as --dataset, or run where the "
            "Hugging Face hub is reachable."
        ) from e
    if not isinstance(ds, DatasetDict):
        raise DataError(f"{source!r} loaded as a single split; expected a dataset with named splits")
    return ds


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


def _normalise(ds: DatasetDict, cfg: DataConfig) -> tuple[DatasetDict, list[str], str, str]:
    """Rename to text/label, map string labels to ids (sorted order), validate every split."""
    first = next(iter(ds.values()))
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

    feature = first.features[label_col]
    names = _declared_names(feature)
    out = {}
    if names is None:
        # String (or plain int) labels: collect every value, sorted, and keep them as names.
        values = sorted({v for split in ds.values() for v in split[label_col]}, key=lambda v: (str(type(v)), v))
        if any(v is None for v in values):
            raise DataError(f"Some rows have no label in column {label_col!r}; drop or label them.")
        if all(isinstance(v, (int, np.integer)) for v in values):
            names = [str(v) for v in range(int(max(values)) + 1)]
            if min(values) < 0:
                raise DataError(f"Label {min(values)} is negative; labels must be 0..C-1 or strings.")
            mapping = {v: int(v) for v in values}
        else:
            names = [str(v) for v in values]
            mapping = {v: i for i, v in enumerate(values)}
        for split_name, split in ds.items():
            split = split.map(lambda b: {"label_id": [mapping[v] for v in b[label_col]]}, batched=True)
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

    class_label = ClassLabel(names=names)
    for split_name, split in out.items():
        keep = [c for c in split.column_names if c not in ("label_id", text_col)]
        split = split.remove_columns(keep)
        if text_col != "text":
            split = split.rename_column(text_col, "text")
        split = split.rename_column("label_id", "label")
        split = split.cast_column("label", class_label)
        # Rows without text would crash the tokenizer; refuse them with a count rather than guess.
        empty = sum(1 for t in split["text"] if not isinstance(t, str) or not t.strip())
        if empty:
            raise DataError(f"Split {split_name!r} has {empty} row(s) with empty text in column {text_col!r}; "
                            "drop them and try again.")
        out[split_name] = split
    return DatasetDict(out), names, text_col, label_col


def _unlabelled(split: Dataset, cfg: DataConfig) -> bool:
    cols = split.column_names
    col = cfg.label_column or next((c for c in LABEL_COLUMNS if c in cols), None)
    if col is None or col not in cols or not isinstance(split.features[col], ClassLabel) or len(split) == 0:
        return False
    return all(v == -1 for v in split[col])


def _carve(train: Dataset, fraction: float, seed: int, what: str) -> tuple[Dataset, Dataset]:
    if not 0 < fraction < 1:
        raise DataError(f"The dataset has no {what} split and the {what} fraction is {fraction}; "
                        "set it between 0 and 1 (e.g. 0.1).")
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


def load_splits(cfg: DataConfig, seed: int = 42) -> Splits:
    """Load, normalise and validate train/validation/test, carving missing ones from train."""
    source = resolve_dataset(cfg)
    raw = _load_raw(source, cfg)
    aliases = {"valid": "validation", "val": "validation", "dev": "validation"}
    raw = DatasetDict({aliases.get(k, k): v for k, v in raw.items()})
    # Other splits (IMDB's "unsupervised", ...) play no part.
    raw = DatasetDict({k: v for k, v in raw.items() if k in ("train", "validation", "test")})
    notes: list[str] = []
    for name in [k for k in ("validation", "test") if k in raw]:
        if _unlabelled(raw[name], cfg):
            # The hub's GLUE-style test splits carry label -1 everywhere: treat them as absent.
            del raw[name]
            notes.append(f"{name} split has no labels (all -1) and was replaced by a carve from train")
    if "train" not in raw:
        raise DataError(f"Dataset {source!r} has no 'train' split (splits: {list(raw)}).")
    ds, names, text_col, label_col = _normalise(raw, cfg)
    train = ds["train"]
    if "test" in ds:
        test = ds["test"]
    else:
        train, test = _carve(train, cfg.test_fraction, seed, "test")
        notes.append(f"test split carved from train ({cfg.test_fraction:.0%}, stratified, seed {seed})")
    if "validation" in ds:
        validation = ds["validation"]
    else:
        train, validation = _carve(train, cfg.validation_fraction, seed, "validation")
        notes.append(f"validation split carved from train ({cfg.validation_fraction:.0%}, stratified, seed {seed})")
    for n_attr, what in (("max_train_samples", "train"), ("max_eval_samples", "validation"), ("max_test_samples", "test")):
        n = getattr(cfg, n_attr)
        if n is not None and n < {"train": len(train), "validation": len(validation), "test": len(test)}[what]:
            notes.append(f"{what} subsampled to {n} rows (stratified)")
    train = subsample(train, cfg.max_train_samples, seed)
    validation = subsample(validation, cfg.max_eval_samples, seed)
    test = subsample(test, cfg.max_test_samples, seed)
    present = sorted(set(train["label"]))
    if len(present) < 2:
        raise DataError(f"The train split holds only class(es) {[names[i] for i in present]}; need at least 2.")
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
