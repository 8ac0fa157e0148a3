"""The few-labels setting's data: a small labelled set, and texts whose labels the students never see.

    labelled, hidden = split_labelled(splits.train, 500, seed=42)     # stratified, seeded
    extra, dropped = without_overlap(load_transfer_texts(cfg.data, 42),   # --transfer-dataset, if any, less the texts
                                     {"test": test_texts, "validation": val_texts})  # the run scores or chooses on
    texts = list(hidden["text"]) + extra
    kd_train = with_transfer(tok["train"], texts, tokenizer, max_length, truncation)  # extra texts' labels: IGNORE_INDEX

Teacher and baseline train on ``labelled`` alone. The distilled student trains on ``kd_train``: the soft term
on every text, cross-entropy only where the label is known (``losses.IGNORE_INDEX`` elsewhere), so the
transfer texts' true labels are not even in its dataset.
"""

from __future__ import annotations

import datasets
from datasets import Dataset, Value, concatenate_datasets

from ..config import DataConfig
from .data import TEXT_COLUMNS, resolve_dataset
from ..errors import DataError
from .losses import IGNORE_INDEX
from .truncation import DEFAULT_TRUNCATION, encode


def split_labelled(train: Dataset, labelled: float, seed: int) -> tuple[Dataset, Dataset]:
    """``labelled`` rows of ``train`` (a fraction of it if below 1), stratified by class and seeded, and the rest.

    Raises:
        DataError: fewer than one labelled row per class, or nothing left over for the transfer set.
    """
    n = int(round(labelled * len(train))) if labelled < 1 else int(labelled)
    classes = len(set(train["label"]))
    if n < classes or n >= len(train):
        raise DataError(f"--labelled {labelled:g} keeps {n} of the {len(train)} training rows: keep at least one per "
                        f"class ({classes}) and leave some unlabelled for the distilled student (below {len(train)}).")
    try:
        parts = train.train_test_split(train_size=n, stratify_by_column="label", seed=seed)
    except ValueError:  # a class too small to stratify
        parts = train.shuffle(seed=seed).train_test_split(train_size=n, shuffle=False)
    return parts["train"], parts["test"]


def load_transfer_texts(cfg: DataConfig, seed: int) -> list[str]:
    """The texts of ``--transfer-dataset`` (its ``--transfer-split``), capped at ``--max-transfer-samples``; none if unset.

    Only the text is read: whatever labels the source has are dropped here.
    """
    if not cfg.transfer_dataset:
        return []
    source = resolve_dataset(DataConfig(dataset=cfg.transfer_dataset, data_dir=cfg.data_dir))
    try:
        ds = datasets.load_dataset(source, split=cfg.transfer_split)
    except Exception as e:  # noqa: BLE001 - datasets raises many types; all mean "could not load"
        raise DataError(f"--transfer-dataset {cfg.transfer_dataset!r} (split {cfg.transfer_split!r}) could not be "
                        f"loaded: {type(e).__name__}: {str(e).splitlines()[0][:200]}. Pass a folder in the hub layout "
                        "or a hub name, and a split it has (--transfer-split).") from e
    column = cfg.text_column if cfg.text_column in ds.column_names else next(
        (c for c in TEXT_COLUMNS if c in ds.column_names), None)
    if column is None:
        raise DataError(f"--transfer-dataset {cfg.transfer_dataset!r} has no text column (columns {ds.column_names}); "
                        "name it with --text-column")
    ds = ds.select_columns([column])
    if cfg.max_transfer_samples and cfg.max_transfer_samples < len(ds):
        ds = ds.shuffle(seed=seed).select(range(cfg.max_transfer_samples))
    texts = [t for t in ds[column] if isinstance(t, str) and t.strip()]
    if not texts:
        raise DataError(f"--transfer-dataset {cfg.transfer_dataset!r} has no non-empty texts in split "
                        f"{cfg.transfer_split!r}")
    return texts


def without_overlap(texts: list[str], others: dict[str, list[str]]) -> tuple[list[str], dict[str, int]]:
    """``texts`` less every text also in one of ``others`` (whitespace at the ends ignored), and how many went for each.

    The distilled student must never learn the teacher's answers on the texts it is scored on (test), chosen on
    (validation) or already given with their label (the labelled rows): a ``--transfer-dataset`` naming the run's own
    data would otherwise bring them in again.
    """
    seen = {name: {t.strip() for t in group} for name, group in others.items()}
    kept, dropped = [], dict.fromkeys(others, 0)
    for text in texts:
        hit = next((name for name, group in seen.items() if text.strip() in group), None)
        if hit is None:
            kept.append(text)
        else:
            dropped[hit] += 1
    return kept, dropped


def with_transfer(labelled: Dataset, texts: list[str], tokenizer, max_length: int,
                  truncation: str = DEFAULT_TRUNCATION) -> Dataset:
    """The tokenised labelled rows plus ``texts`` tokenised the same way with their label set to ``IGNORE_INDEX``.

    Args:
        labelled: tokenised rows (``input_ids``, ``attention_mask``, ``length``, ``label``).
        truncation: how texts longer than ``max_length`` are cut, as for ``labelled`` (``truncation.TRUNCATIONS``).
    """
    enc = encode(tokenizer, texts, max_length, truncation)
    extra = Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                               "length": [len(ids) for ids in enc["input_ids"]],
                               "label": [IGNORE_INDEX] * len(texts)})
    labelled = labelled.select_columns(extra.column_names).cast_column("label", Value("int64"))
    extra = extra.cast(labelled.features)
    return concatenate_datasets([labelled, extra])
