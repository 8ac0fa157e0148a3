"""Tokenise once, batch by length: what the training loop and evaluation iterate over.

    tok = tokenize_splits(splits, tokenizer, max_length=128)            # no padding; adds a ``length`` column
    tok = tokenize_splits(splits, tokenizer, 128, truncation="head+tail")  # long texts: keep both ends
    loader = make_loader(tok["train"], tokenizer, batch_size=32, shuffle=True, seed=42)   # length-grouped batches
"""

from __future__ import annotations


import numpy as np
import torch
from datasets import Dataset, DatasetDict
from torch.utils.data import DataLoader, Sampler
from transformers import DataCollatorWithPadding
from transformers.trainer_pt_utils import get_length_grouped_indices

from .data import Splits
from .truncation import DEFAULT_TRUNCATION, encode

# ----------------------------------------------------------------------------- tokenisation and batching


def tokenize_splits(splits: DatasetDict | Splits, tokenizer, max_length: int,
                    truncation: str = DEFAULT_TRUNCATION) -> DatasetDict:
    """Tokenise every split once (``datasets.map`` caches it), no padding; adds a ``length`` column.

    Texts longer than ``max_length`` are cut by ``truncation`` (head, tail or head+tail; see ``truncation.py``).
    No ``token_type_ids``: single segment; DistilBERT takes none and BERT's are all 0.
    """
    dd = splits.as_dict() if isinstance(splits, Splits) else splits

    def encode_batch(batch):
        enc = encode(tokenizer, batch["text"], max_length, truncation)
        enc["length"] = [len(ids) for ids in enc["input_ids"]]
        return enc

    return dd.map(encode_batch, batched=True, desc="Tokenising")


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
CUDA_PAD_MULTIPLE = 8  # batch lengths on a GPU: a multiple of 8
CUDA_WORKERS = 2  # processes collating batches ahead of a GPU
CUDA_PREFETCH = 4  # batches each of them keeps ready


def make_loader(ds: Dataset, tokenizer, batch_size: int, shuffle: bool, seed: int = 0,
                group_by_length: bool = True, pad_to: int | None = None, device_type: str = "cpu") -> DataLoader:
    """A DataLoader that pads per batch. ``pad_to`` pads every batch to that length instead (as the
    reports did; kept for the benchmark's comparison).

    For a GPU (``device_type="cuda"``) the batches are made ready while the GPU works on the one before: worker
    processes collate them ahead (``CUDA_WORKERS``, ``CUDA_PREFETCH`` each), into pinned memory so the copy to the
    GPU does not block the host, and lengths are padded to a multiple of 8 (tensor cores want it, and the kernels
    see few distinct shapes). On the CPU the loader stays in the training process: the cores are the model's.
    """
    cols = [c for c in MODEL_INPUTS if c in ds.column_names]
    ds = ds.with_format("torch", columns=cols)
    cuda = device_type == "cuda"
    if pad_to:
        collator = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=pad_to)
    else:
        collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=CUDA_PAD_MULTIPLE if cuda else None)
    feed = dict(num_workers=CUDA_WORKERS, pin_memory=True, persistent_workers=True, prefetch_factor=CUDA_PREFETCH) \
        if cuda else {}
    lengths = list(ds.with_format(None)["length"]) if "length" in ds.column_names else None
    if group_by_length and lengths is not None:
        sampler = LengthGroupedBatchSampler(lengths, batch_size, seed) if shuffle else SortedBatchSampler(lengths, batch_size)
        return DataLoader(ds, batch_sampler=sampler, collate_fn=collator, **feed)
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen if shuffle else None, collate_fn=collator,
                      **feed)


def tokenizer_key(tokenizer) -> tuple:
    """Equal for tokenizers that turn every text into the same ids (same class, vocabulary and casing), so that a
    split is tokenised once for all the models that share them."""
    vocab = tokenizer.get_vocab()
    return (type(tokenizer).__name__, len(vocab), hash(frozenset(vocab.items())),
            bool(tokenizer.init_kwargs.get("do_lower_case", False)))


class ScoringLoaders:
    """One split's evaluation loaders, tokenised once per distinct tokenizer: models with other vocabularies each
    read the same texts, in the same order, through their own tokens.

        loaders = ScoringLoaders(splits.test, max_length=128, truncation="head", batch_size=128)
        logits, labels = predict_logits(model, loaders.get(tokenizer))   # rows in the split's order
    """

    def __init__(self, ds: Dataset, max_length: int, truncation: str = DEFAULT_TRUNCATION, batch_size: int = 128,
                 device_type: str = "cpu"):
        self.ds, self.max_length, self.truncation, self.batch_size = ds, max_length, truncation, batch_size
        self.device_type = device_type
        self._cache: dict[tuple, DataLoader] = {}

    def get(self, tokenizer) -> DataLoader:
        key = tokenizer_key(tokenizer)
        if key not in self._cache:
            tok = tokenize_splits(DatasetDict(split=self.ds), tokenizer, self.max_length, self.truncation)["split"]
            self._cache[key] = make_loader(tok, tokenizer, self.batch_size, shuffle=False, device_type=self.device_type)
        return self._cache[key]


def padding_efficiency(loader: DataLoader) -> float:
    """Fraction of tokens in the loader's batches that are real (not padding)."""
    real = total = 0
    for batch in loader:
        real += int(batch["attention_mask"].sum())
        total += batch["attention_mask"].numel()
    return real / max(total, 1)
