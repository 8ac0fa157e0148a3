"""Tiny models of several encoder families, each with a tokenizer trained here from a few hundred texts.

    tok = wordpiece_tokenizer(texts, vocab_size=200)      # BERT-style, lower-cased
    tok = bpe_tokenizer(texts, vocab_size=300)            # RoBERTa-style byte-level BPE
    folder = save_family(tmp / "roberta", "roberta", tok, labels=LABELS)   # a *ForSequenceClassification with labels
    folder = save_family(tmp / "electra", "electra", tok)                   # a pretrained encoder (no head)
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoModel,
    AutoModelForSequenceClassification,
    BertConfig,
    DebertaV2Config,
    DistilBertConfig,
    ElectraConfig,
    PreTrainedTokenizerFast,
    RobertaConfig,
)

WORDPIECE_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BPE_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def wordpiece_tokenizer(texts: list[str], vocab_size: int = 200) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=WORDPIECE_SPECIALS))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)


def bpe_tokenizer(texts: list[str], vocab_size: int = 300) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=BPE_SPECIALS,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>",
                                   model_max_length=64)


def family_config(family: str, tokenizer, layers: int = 4, hidden: int = 32):
    """A tiny config of ``family`` over ``tokenizer``'s vocabulary (64 positions, 4 heads)."""
    common = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    if family == "bert":
        return BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=37,
                          max_position_embeddings=64, **common)
    if family == "roberta":  # positions start after the padding index
        return RobertaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=37,
                             max_position_embeddings=64 + tokenizer.pad_token_id + 1, **common)
    if family == "electra":
        return ElectraConfig(embedding_size=hidden, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                             intermediate_size=37, max_position_embeddings=64, **common)
    if family == "deberta-v2":
        return DebertaV2Config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                               intermediate_size=37, max_position_embeddings=64, relative_attention=True,
                               position_buckets=16, max_relative_positions=64, pos_att_type=["p2c", "c2p"], **common)
    if family == "distilbert":
        return DistilBertConfig(dim=hidden, n_layers=layers, n_heads=4, hidden_dim=37, max_position_embeddings=64,
                                **common)
    raise ValueError(family)


def save_family(folder: Path, family: str, tokenizer, labels: list[str] | None = None, layers: int = 4,
                hidden: int = 32, seed: int = 0) -> Path:
    """Save a random tiny ``family`` model with ``tokenizer`` as a from_pretrained folder: a sequence classifier with
    ``labels`` when given (a fine-tuned checkpoint), else the bare encoder (a pretrained checkpoint)."""
    torch.manual_seed(seed)
    cfg = family_config(family, tokenizer, layers, hidden)
    if labels is not None:
        cfg.id2label = dict(enumerate(labels))
        cfg.label2id = {n: i for i, n in enumerate(labels)}
        model = AutoModelForSequenceClassification.from_config(cfg)
    else:
        model = AutoModel.from_config(cfg)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
