"""What every classifier backend shares (PyTorch ``inference.TextClassifier``, ONNX ``onnx_export.OnnxClassifier``):
the input rules, length-ordered batching, probabilities and one timed text. numpy only, so a backend that
does not need torch does not import it.

    class MyBackend(Classifier):
        def _batch_logits(self, texts): ...   # (B, C) float32 for a batch of checked texts

A subclass sets ``tokenizer``, ``max_length``, ``name`` and ``labels`` (and ``truncation``, when its model was
trained on texts cut other than at the head).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..train.truncation import DEFAULT_TRUNCATION, encode

MAX_INPUT_CHARS = 100_000  # longer inputs are cut before tokenising; max_length truncates far earlier anyway
MOSTLY_UNKNOWN = 0.5  # over this share of unknown tokens, a prediction says little about the text


def unknown_tokens(tokenizer, text: str) -> tuple[int, int]:
    """(unknown, total) of a text's own tokens (special tokens left out): how many the tokenizer maps to its
    unknown token (``unk_token_id``; a tokenizer without one, byte-level BPE, knows every text)."""
    ids = tokenizer(text[:MAX_INPUT_CHARS], add_special_tokens=False, truncation=False)["input_ids"]
    unk = getattr(tokenizer, "unk_token_id", None)
    return (0 if unk is None else sum(i == unk for i in ids)), len(ids)


def unknown_note(unknown: int, total: int, whose: str, unk_token: str | None = "[UNK]",
                 several: bool = False) -> str | None:
    """A warning when most of a text (over ``MOSTLY_UNKNOWN``) is unknown to ``whose`` tokenizer (``several``:
    to the tokenizers of several models, which read it alike); else None."""
    if total == 0 or unknown / total <= MOSTLY_UNKNOWN:
        return None
    return (f"Most of this text is unknown to {whose} tokenizer{'s' if several else ''} ({unknown} of {total} "
            f"tokens are {unk_token or 'unknown'}): {'their predictions say' if several else 'its prediction says'} "
            "little")


def softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class Prediction:
    """One model's answer for one text."""

    model: str  # the model folder's name: teacher, student, baseline
    labels: list[str]  # (C,) class names
    logits: np.ndarray  # (C,)
    ms: float  # wall time of tokenising + forward pass
    n_tokens: int  # tokens in the full text, [CLS]/[SEP] included
    n_truncated: int  # tokens cut to fit max_length

    @property
    def probs(self) -> np.ndarray:  # (C,)
        return softmax(self.logits)

    @property
    def label(self) -> str:
        return self.labels[int(self.logits.argmax())]

    @property
    def confidence(self) -> float:
        return float(self.probs.max())

    def probs_at(self, temperature: float) -> np.ndarray:
        """(C,) the distribution softened by ``temperature`` (what KD matches at T > 1)."""
        return softmax(self.logits / float(temperature))


class Classifier:
    """Texts in, logits and probabilities out; the backend supplies ``_batch_logits``."""

    tokenizer: object
    max_length: int
    name: str
    labels: list[str]
    truncation: str = DEFAULT_TRUNCATION  # how texts longer than max_length are cut (truncation.TRUNCATIONS)

    def _batch_logits(self, texts: list[str]) -> np.ndarray:
        """(B, C) logits of one batch of checked texts."""
        raise NotImplementedError

    # ------------------------------------------------------------------ inputs

    def _check(self, texts: list[str]) -> list[str]:
        if isinstance(texts, str):
            raise InputError("pass a list of texts, not a single string")
        out = []
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InputError(f"text {i} is {type(t).__name__}, not a string")
            if not t.strip():
                raise InputError(f"text {i} is empty: type some words to classify")
            out.append(t[:MAX_INPUT_CHARS])
        return out

    def encode_padded(self, texts: list[str]) -> dict[str, np.ndarray]:
        """``input_ids`` and ``attention_mask`` (B, T) int64 of checked texts, cut as the model was trained."""
        return encode(self.tokenizer, texts, self.max_length, self.truncation, padded=True)

    def count_tokens(self, text: str) -> int:
        """Tokens in the whole text, [CLS] and [SEP] included, before truncation."""
        return len(self.tokenizer(text[:MAX_INPUT_CHARS], truncation=False)["input_ids"])

    def unknown_tokens(self, text: str) -> tuple[int, int]:
        """(unknown, total) of the text's own tokens for this model's tokenizer (``unknown_tokens``)."""
        return unknown_tokens(self.tokenizer, text)

    # ------------------------------------------------------------------ outputs

    def predict_logits(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """(N, C) logits. Texts are batched in length order so little compute goes to padding."""
        texts = self._check(texts if isinstance(texts, str) else list(texts))  # a bare string is refused, not split
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        order = np.argsort([len(t) for t in texts])
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        for i in range(0, len(texts), batch_size):
            idx = order[i : i + batch_size]
            out[idx] = self._batch_logits([texts[j] for j in idx])  # (B, C)
        return out

    def predict_proba(self, texts: list[str], batch_size: int = 32, temperature: float = 1.0) -> np.ndarray:
        """(N, C) class probabilities, optionally softened by ``temperature``."""
        return softmax(self.predict_logits(texts, batch_size=batch_size) / float(temperature))

    def classify(self, text: str, repeats: int = 1) -> Prediction:
        """One text: its logits, the tokens cut to fit ``max_length``, and the wall time (tokenising included).

        With ``repeats`` > 1 the time is the median of that many calls after one untimed warm-up call, so a first
        call's one-off costs (memory for a new length, lazy set-up) do not count as the model's speed.
        """
        if repeats > 1:
            self.predict_logits([text])  # warm-up, untimed
        times, logits = [], None
        for _ in range(max(1, int(repeats))):
            t0 = time.perf_counter()
            logits = self.predict_logits([text])[0]  # (C,)
            times.append((time.perf_counter() - t0) * 1000.0)
        n = self.count_tokens(text)
        return Prediction(self.name, self.labels, logits, float(np.median(times)), n, max(0, n - self.max_length))
