"""The narrow model interface the UI and the benchmark see: texts in, probabilities (and attention) out.

    clf = TextClassifier.load("artifacts/runs/<run_id>/student")
    clf.predict_proba(["Stocks rallied on Friday."])        # (N, C) float array
    pred = clf.classify("Stocks rallied on Friday.")        # one text: label, confidence, tokens cut, ms
    att = clf.attention("Stocks rallied on Friday.")        # att.tokens, att.attentions (L, H, T, T)
    pool = clf.pooling("Stocks rallied on Friday.")         # the LSTM student: pool.tokens, pool.weights (T,)

Nothing here knows how the model was trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

from .classifier import MAX_INPUT_CHARS, Classifier, Prediction, softmax
from ..errors import InputError, ModelError
from ..train.lstm import is_lstm_config
from ..devices import place, scoring_device
from ..train.models import config_value, load_trained
from ..train.truncation import DEFAULT_TRUNCATION

__all__ = ["MAX_INPUT_CHARS", "AttentionResult", "InputError", "PoolingResult", "Prediction", "TextClassifier",
           "kl_divergence", "softmax"]

@dataclass
class AttentionResult:
    tokens: list[str]  # (T,) word pieces, [CLS] and [SEP] included
    attentions: np.ndarray  # (L, H, T, T): layer, head, query, key; rows sum to 1
    probs: np.ndarray  # (C,)
    n_truncated: int


@dataclass
class PoolingResult:
    """The LSTM student's attention pooling for one text: one weight per token, what its classifier reads."""

    tokens: list[str]  # (T,) word pieces, [CLS] and [SEP] included
    weights: np.ndarray  # (T,) sums to 1
    probs: np.ndarray  # (C,)
    n_truncated: int


class TextClassifier(Classifier):
    """A fine-tuned sequence classifier loaded from a ``save_pretrained`` folder (PyTorch)."""

    def __init__(self, model, tokenizer, max_length: int = 128, name: str = "", truncation: str = DEFAULT_TRUNCATION):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.name = name
        self.truncation = truncation
        cfg = model.config
        self.labels = [cfg.id2label[i] for i in range(cfg.num_labels)]

    @classmethod
    def load(cls, model_dir: str | Path, max_length: int | None = None,
             device: str | torch.device | None = None) -> "TextClassifier":
        """Load a model folder, with its own tokenizer, onto ``device`` (``devices.scoring_device``: the GPU when
        there is one, unless ``--device``/``DISTILL_DEVICE`` say otherwise). Eager attention, because SDPA returns
        no attention maps."""
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"No model at {model_dir} (config.json missing); train it with "
                                    "`python -m distill_core train`")
        model = load_trained(model_dir)
        tok = AutoTokenizer.from_pretrained(model_dir)
        positions = config_value(model.config, "positions")  # None: no position table (the LSTM student)
        if max_length is None:
            max_length = int(getattr(model.config, "distill_max_length", 0) or min(tok.model_max_length, 512))
        # Never past the model's position table (a run saved with a larger max_length would crash on long texts).
        max_length = min(int(max_length), positions or int(max_length))
        # How the run cut long texts (saved with the model); folders from before the choice existed cut at the head.
        truncation = str(getattr(model.config, "distill_truncation", None) or DEFAULT_TRUNCATION)
        device = device if isinstance(device, torch.device) else scoring_device(device)
        model, _ = place(model, device)
        return cls(model, tok, max_length=max_length, name=model_dir.name, truncation=truncation)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def num_layers(self) -> int:
        return config_value(self.model.config, "layers")

    @property
    def num_heads(self) -> int | None:
        """Attention heads per layer; None for the LSTM student, which has none."""
        return config_value(self.model.config, "heads")

    @property
    def is_recurrent(self) -> bool:
        """The LSTM student: attention-pooling weights over tokens (``pooling``), no self-attention maps."""
        return is_lstm_config(self.model.config)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # ------------------------------------------------------------------ inputs

    def encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` (B, T) on the model's device, cut to ``max_length`` as in training
        (``truncation``); no token_type_ids: single-segment inputs, and DistilBERT takes none."""
        return {k: torch.from_numpy(v).to(self.device) for k, v in self.encode_padded(texts).items()}

    # ------------------------------------------------------------------ outputs

    @torch.inference_mode()
    def _batch_logits(self, texts: list[str]) -> np.ndarray:
        return self.model(**self.encode(texts)).logits.float().cpu().numpy()  # (B, C)

    @torch.inference_mode()
    def attention(self, text: str) -> AttentionResult:
        """Tokens and attention probabilities (L, H, T, T) for one text, truncated to max_length."""
        if self.is_recurrent:
            raise ModelError(f"The {self.name or 'LSTM'} model is a BiLSTM: it has no self-attention maps, only one "
                             "pooling weight per token; read those with pooling(text)")
        (text,) = self._check([text])
        enc = self.encode([text])
        out = self.model(**enc, output_attentions=True)
        if not out.attentions:
            raise RuntimeError("the model returned no attentions; load it with attn_implementation='eager'")
        att = torch.stack([a[0] for a in out.attentions]).float().cpu().numpy()  # (L, H, T, T)
        tokens = self.tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
        probs = softmax(out.logits.float().cpu().numpy())[0]
        n = self.count_tokens(text)
        return AttentionResult(tokens, att, probs, max(0, n - self.max_length))

    @torch.inference_mode()
    def pooling(self, text: str) -> PoolingResult:
        """The LSTM student's attention-pooling weights (T,) for one text, truncated to max_length."""
        if not self.is_recurrent:
            raise ModelError(f"The {self.name or 'model'} is a transformer: it has attention maps (attention(text)), "
                             "not pooling weights")
        (text,) = self._check([text])
        enc = self.encode([text])
        out = self.model(**enc, output_attentions=True)
        weights = out.attentions[0].float().cpu().numpy()  # (T,)
        tokens = self.tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
        probs = softmax(out.logits.float().cpu().numpy())[0]
        n = self.count_tokens(text)
        return PoolingResult(tokens, weights, probs, max(0, n - self.max_length))


def kl_divergence(p: np.ndarray, q: np.ndarray, eps: float = 1e-12) -> float:
    """KL(p || q) in nats for two probability vectors."""
    p = np.clip(p, eps, 1.0)
    q = np.clip(q, eps, 1.0)
    return float(np.sum(p * (np.log(p) - np.log(q))))
