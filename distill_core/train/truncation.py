"""How a text longer than ``max_length`` is cut: keep its first tokens, its last, or both ends.

    enc = encode(tokenizer, texts, max_length=128, truncation="head+tail")   # {"input_ids", "attention_mask"}, unpadded
    batch = encode(tokenizer, texts, 128, "tail", padded=True)                # (B, T) int64 arrays, padded
    head_tail_split(126)                                                       # (32, 94)

- ``head`` keeps the first tokens (the tokenizer's own truncation).
- ``tail`` keeps the last tokens: long reviews often give their verdict at the end.
- ``head+tail`` keeps the first quarter and the last three quarters of the token budget, as Sun et al. (2019),
  "How to Fine-Tune BERT for Text Classification?", found best on IMDB (128 head + 382 tail tokens of 510). The
  budget is ``max_length`` less the special tokens; the head gets ``ceil(budget / 4)``, the tail the rest: 32 + 94
  for ``max_length`` 128, 128 + 382 for 512.

A text that fits is encoded identically under all three. Everything that feeds a run's models (training,
evaluation, calibration, the dashboard, serving, ONNX) encodes through ``encode``, so a model always sees its
texts cut the way it was trained. numpy only, so the ONNX backend needs no torch.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..config import DEFAULT_TRUNCATION, TRUNCATIONS  # noqa: F401  (the config validates --truncation)


def head_tail_split(budget: int) -> tuple[int, int]:
    """Tokens kept from the start and from the end of a text under ``head+tail``, for a budget of ``budget``."""
    head = math.ceil(budget / 4)
    return head, budget - head


def cut(ids: Sequence[int], budget: int, truncation: str) -> list[int]:
    """``ids`` (no special tokens) cut to at most ``budget`` tokens by ``truncation``; unchanged when it fits."""
    ids = list(ids)
    if len(ids) <= budget:
        return ids
    if truncation == "head":
        return ids[:budget]
    if truncation == "tail":
        return ids[len(ids) - budget:]
    if truncation == "head+tail":
        head, tail = head_tail_split(budget)
        return ids[:head] + ids[len(ids) - tail:]
    raise ValueError(f"truncation must be one of {', '.join(TRUNCATIONS)}, got {truncation!r}")


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a single text (BERT: [CLS] and [SEP])."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for i in range(len(full) - len(plain) + 1):
        if full[i:i + len(plain)] == plain:
            return full[:i], full[i + len(plain):]
    raise ValueError(f"cannot tell where {type(tokenizer).__name__} puts its special tokens")


def encode(tokenizer, texts: Sequence[str], max_length: int, truncation: str = DEFAULT_TRUNCATION,
           padded: bool = False) -> dict:
    """Token ids and attention masks of ``texts``, each cut to ``max_length`` tokens (specials included).

    Args:
        tokenizer: the model's tokenizer.
        texts: (N,) strings.
        truncation: one of ``TRUNCATIONS``.
        padded: pad to the longest text and return (N, T) int64 arrays; else lists of (T_i,) lists.

    Returns:
        ``{"input_ids", "attention_mask"}``.
    """
    if truncation not in TRUNCATIONS:
        raise ValueError(f"truncation must be one of {', '.join(TRUNCATIONS)}, got {truncation!r}")
    texts = list(texts)
    if truncation == "head":
        # The tokenizer's own truncation: fastest, and the exact ids runs have always been trained on.
        if padded:
            enc = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="np")
            return {k: np.asarray(enc[k], dtype=np.int64) for k in ("input_ids", "attention_mask")}
        enc = tokenizer(texts, truncation=True, max_length=max_length)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    before, after = special_tokens(tokenizer)
    budget = max_length - len(before) - len(after)
    # verbose=False: the whole text is tokenised on purpose, longer than the model could read, then cut here.
    raw = tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    ids = [before + cut(r, budget, truncation) + after for r in raw]
    mask = [[1] * len(i) for i in ids]
    if not padded:
        return {"input_ids": ids, "attention_mask": mask}
    return pad(ids, tokenizer.pad_token_id or 0, getattr(tokenizer, "padding_side", "right"))


def pad(ids: list[list[int]], pad_id: int, side: str = "right") -> dict[str, np.ndarray]:
    """(N, T) int64 ``input_ids`` and ``attention_mask`` of ``ids`` padded to the longest, on ``side``."""
    width = max((len(i) for i in ids), default=0)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)  # (N, T)
    mask = np.zeros((len(ids), width), dtype=np.int64)  # (N, T)
    for row, seq in enumerate(ids):
        span = slice(width - len(seq), width) if side == "left" else slice(0, len(seq))
        input_ids[row, span] = seq
        mask[row, span] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


def token_spans(tokenizer, text: str, max_length: int,
                truncation: str = DEFAULT_TRUNCATION) -> list[tuple[int, int] | None] | None:
    """(T,) the character span in ``text`` of each token ``encode`` gives it (None for special tokens): how two models
    that split a text into different tokens are lined up. None for a tokenizer without offsets (a slow one)."""
    if not getattr(tokenizer, "is_fast", False):
        return None
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    before, after = special_tokens(tokenizer)
    kept = cut(range(len(enc["input_ids"])), max_length - len(before) - len(after), truncation)
    return [None] * len(before) + [tuple(enc["offset_mapping"][i]) for i in kept] + [None] * len(after)
