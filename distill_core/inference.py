"""The narrow model interface the UI and the benchmark see: texts in, probabilities (and attention) out.

    clf = TextClassifier.load("artifacts/runs/<run_id>/student")
    clf.predict_proba(["Stocks rallied on Friday."])        # (N, C) float array
    pred = clf.classify("Stocks rallied on Friday.")        # one text: label, confidence, tokens cut, ms
    att = clf.attention("Stocks rallied on Friday.")        # att.tokens, att.attentions (L, H, T, T)

Nothing here knows how the model was trained.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

from .errors import InputError
from .models import config_value, load_trained

MAX_INPUT_CHARS = 100_000  # longer inputs are cut before tokenising; max_length truncates far earlier anyway


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


@dataclass
class AttentionResult:
    tokens: list[str]  # (T,) word pieces, [CLS] and [SEP] included
    attentions: np.ndarray  # (L, H, T, T): layer, head, query, key; rows sum to 1
    probs: np.ndarray  # (C,)
    n_truncated: int


class TextClassifier:
    """A fine-tuned sequence classifier loaded from a ``save_pretrained`` folder."""

    def __init__(self, model, tokenizer, max_length: int = 128, name: str = ""):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.name = name
        cfg = model.config
        self.labels = [cfg.id2label[i] for i in range(cfg.num_labels)]

    @classmethod
    def load(cls, model_dir: str | Path, max_length: int | None = None, device: str = "cpu") -> "TextClassifier":
        """Load a model folder. Eager attention, because SDPA returns no attention maps."""
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"No model at {model_dir} (config.json missing); train it with "
                                    "`python -m distill_core train`")
        model = load_trained(model_dir)
        tok = AutoTokenizer.from_pretrained(model_dir)
        positions = config_value(model.config, "positions")
        if max_length is None:
            max_length = int(getattr(model.config, "distill_max_length", 0) or min(tok.model_max_length, 512))
        # Never past the model's position table (a run saved with a larger max_length would crash on long texts).
        max_length = min(int(max_length), positions)
        return cls(model.to(device), tok, max_length=max_length, name=model_dir.name)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def num_layers(self) -> int:
        return config_value(self.model.config, "layers")

    @property
    def num_heads(self) -> int:
        return config_value(self.model.config, "heads")

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

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

    def count_tokens(self, text: str) -> int:
        """Tokens in the whole text, [CLS] and [SEP] included, before truncation."""
        return len(self.tokenizer(text[:MAX_INPUT_CHARS], truncation=False)["input_ids"])

    def _encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
        enc.pop("token_type_ids", None)  # single-segment inputs; DistilBERT takes none
        return {k: v.to(self.device) for k, v in enc.items()}

    # ------------------------------------------------------------------ outputs

    @torch.inference_mode()
    def predict_logits(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """(N, C) logits. Texts are batched in length order so little compute goes to padding."""
        texts = self._check(list(texts))
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        order = np.argsort([len(t) for t in texts])
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        for i in range(0, len(texts), batch_size):
            idx = order[i : i + batch_size]
            logits = self.model(**self._encode([texts[j] for j in idx])).logits  # (B, C)
            out[idx] = logits.float().cpu().numpy()
        return out

    def predict_proba(self, texts: list[str], batch_size: int = 32, temperature: float = 1.0) -> np.ndarray:
        """(N, C) class probabilities, optionally softened by ``temperature``."""
        logits = self.predict_logits(texts, batch_size=batch_size)
        return softmax(logits / float(temperature))

    def classify(self, text: str) -> Prediction:
        """One text: its logits, the tokens cut to fit ``max_length``, and the wall time (tokenising included)."""
        t0 = time.perf_counter()
        logits = self.predict_logits([text])[0]  # (C,)
        n = self.count_tokens(text)
        ms = (time.perf_counter() - t0) * 1000.0
        return Prediction(self.name, self.labels, logits, ms, n, max(0, n - self.max_length))

    @torch.inference_mode()
    def attention(self, text: str) -> AttentionResult:
        """Tokens and attention probabilities (L, H, T, T) for one text, truncated to max_length."""
        (text,) = self._check([text])
        enc = self._encode([text])
        out = self.model(**enc, output_attentions=True)
        if not out.attentions:
            raise RuntimeError("the model returned no attentions; load it with attn_implementation='eager'")
        att = torch.stack([a[0] for a in out.attentions]).float().cpu().numpy()  # (L, H, T, T)
        tokens = self.tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
        probs = softmax(out.logits.float().cpu().numpy())[0]
        n = self.count_tokens(text)
        return AttentionResult(tokens, att, probs, max(0, n - self.max_length))


def softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def kl_divergence(p: np.ndarray, q: np.ndarray, eps: float = 1e-12) -> float:
    """KL(p || q) in nats for two probability vectors."""
    p = np.clip(p, eps, 1.0)
    q = np.clip(q, eps, 1.0)
    return float(np.sum(p * (np.log(p) - np.log(q))))
