"""Tiny random-config models for tests (no download), the size of transformers' own model testers."""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForSequenceClassification

from distill_core.train.models import label_maps


def tiny_bert_config(vocab_size: int, label_names: list[str], **overrides) -> BertConfig:
    """A small random-init BERT config: hidden 32, 2 layers, 4 heads."""
    kw = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
              intermediate_size=37, max_position_embeddings=64, hidden_dropout_prob=0.1,
              attention_probs_dropout_prob=0.1, type_vocab_size=2, pad_token_id=0)
    kw.update(overrides)
    return BertConfig(**kw, **label_maps(label_names))


def tiny_teacher(vocab_size: int, label_names: list[str], seed: int = 0, **overrides) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    cfg = tiny_bert_config(vocab_size, label_names, **overrides)
    cfg._attn_implementation = "eager"
    return BertForSequenceClassification(cfg)
