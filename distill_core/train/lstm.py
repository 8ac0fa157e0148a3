"""The BiLSTM student: word embeddings -> 2-layer bidirectional LSTM -> attention pooling -> classifier.

    python -m distill_core train --student lstm                       # embeddings copied from the teacher
    python -m distill_core train --student lstm --lstm-init word2vec  # Word2Vec trained on the training texts

    cfg = LstmConfig(vocab_size=30522, embedding_dim=384, hidden_size=128, **label_maps(names))
    model = LstmForSequenceClassification(cfg)
    out = model(input_ids=ids, attention_mask=mask, output_attentions=True)
    out.logits      # (B, C)
    out.attentions  # (B, T) attention-pooling weights: one per token, 0 on padding, summing to 1 per text

It is a transformers ``PreTrainedModel`` registered with ``AutoConfig`` and ``AutoModelForSequenceClassification``
(model type ``distill_bilstm``), so a run saves it with ``save_pretrained`` (safetensors + config.json) and
``models.load_trained`` loads it like every other model. It reads the teacher's tokenizer and batches.

Padding never matters: the LSTMs run on packed sequences (each text only over its own tokens, in both
directions) and the pooling softmax gives padding a weight of exactly 0. Texts must be padded on the right,
as BERT tokenizers do.

Size. With the bert-base-uncased vocabulary (30,522 word pieces), hidden size 128 per direction, attention size
128 and 4 classes, ``num_parameters()`` gives 12,676,100 with 384-wide embeddings (the packaged teacher's
width, needed to copy its embeddings; 11,720,448 of them are the embedding table) and 3,717,036 with 100-wide
embeddings (``--lstm-init word2vec --lstm-embedding-dim 100``; 3,052,200 in the table). The LSTM layers, the
pooling and the classifier are small beside the table: 955,652 parameters at width 384, 664,836 at width 100.
"""

from __future__ import annotations

import logging
import zlib
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

logger = logging.getLogger(__name__)

MODEL_TYPE = "distill_bilstm"
EMBEDDING_INITS = ("teacher", "word2vec", "random")
W2V_EPOCHS = 5
W2V_WINDOW = 5
W2V_MIN_COUNT = 2  # pieces seen once keep a random row, as unseen ones do


class LstmConfig(PretrainedConfig):
    """Sizes of the BiLSTM student; saved as its ``config.json``."""

    model_type = MODEL_TYPE

    vocab_size: int = 30522
    embedding_dim: int = 384
    hidden_size: int = 128  # per direction; each token's vector is 2 * hidden_size wide
    num_layers: int = 2
    dropout: float = 0.1  # between the LSTM layers and before the classifier
    attention_dim: int = 128  # width of the additive attention's scoring layer
    pad_token_id: int | None = 0
    initializer_range: float = 0.02
    embedding_init: str = "random"  # where the embeddings started: teacher, word2vec or random (recorded, not used)


class LstmForSequenceClassification(PreTrainedModel):
    """Embeddings -> ``num_layers`` bidirectional LSTM layers (dropout between) -> additive attention pooling over
    tokens (masked softmax) -> dropout -> linear classifier.

    The layers are one single-layer ``nn.LSTM`` each, stacked, which computes what ``nn.LSTM(num_layers=2,
    dropout=p)`` does while giving each layer's output: ``output_hidden_states`` returns them, so the
    Layer similarity page compares them with the teacher's layers.
    """

    config_class = LstmConfig
    config: LstmConfig
    base_model_prefix = "lstm"
    main_input_name = "input_ids"

    def __init__(self, config: LstmConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_token_id)
        width = 2 * config.hidden_size
        self.layers = nn.ModuleList(
            nn.LSTM(config.embedding_dim if i == 0 else width, config.hidden_size, batch_first=True, bidirectional=True)
            for i in range(config.num_layers))
        self.dropout = nn.Dropout(config.dropout)
        self.attention_proj = nn.Linear(width, config.attention_dim)
        self.attention_score = nn.Linear(config.attention_dim, 1, bias=False)
        self.classifier = nn.Linear(width, config.num_labels)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                output_attentions: bool = False, output_hidden_states: bool = False,
                **kwargs) -> SequenceClassifierOutput:
        """Classify a batch of right-padded texts.

        Args:
            input_ids: (B, T) token ids, or ``inputs_embeds`` (B, T, E) instead (integrated gradients).
            attention_mask: (B, T) 1 for real tokens, 0 for padding (after them); None: no padding.
            labels: (B,) class ids; given, the output carries the cross-entropy ``loss``.
            output_attentions: return the pooling weights (B, T) as ``attentions``.
            output_hidden_states: return (embeddings (B, T, E), layer 1 (B, T, 2H), ..., layer L (B, T, 2H)).
            kwargs: what callers pass transformers models and this one ignores (``token_type_ids``, ``return_dict``).
        """
        x = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, E)
        B, T = x.shape[:2]
        if attention_mask is None:
            attention_mask = torch.ones(B, T, dtype=torch.long, device=x.device)
        mask = attention_mask.bool()  # (B, T)
        if (mask[:, 1:] & ~mask[:, :-1]).any():
            raise ValueError("the LSTM student needs padding on the right (a real token after padding was found); "
                             "tokenise with padding_side='right', as BERT tokenizers do")
        lengths = mask.sum(1).clamp(min=1).cpu()  # (B,) on the CPU, as packing wants
        hidden = [x]
        h = x
        for i, lstm in enumerate(self.layers):
            if i > 0:
                h = self.dropout(h)
            packed = pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
            out, _ = lstm(packed)
            h, _ = pad_packed_sequence(out, batch_first=True, total_length=T)  # (B, T, 2H), zeros on padding
            hidden.append(h)

        scores = self.attention_score(torch.tanh(self.attention_proj(h))).squeeze(-1)  # (B, T)
        # The dtype's lowest value rather than -inf: padding's exp() is still exactly 0, and an all-padding row
        # gives uniform weights instead of NaN.
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)  # (B, T)
        pooled = torch.bmm(weights.unsqueeze(1).to(h.dtype), h).squeeze(1)  # (B, 2H)
        logits = self.classifier(self.dropout(pooled))  # (B, C)

        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits,
                                        hidden_states=tuple(hidden) if output_hidden_states else None,
                                        attentions=weights if output_attentions else None)


def register() -> None:
    """Make ``AutoConfig`` and ``AutoModelForSequenceClassification`` know ``distill_bilstm`` (idempotent)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    try:
        AutoConfig.register(MODEL_TYPE, LstmConfig)
        AutoModelForSequenceClassification.register(LstmConfig, LstmForSequenceClassification)
    except ValueError:  # already registered (a module reloaded)
        pass


def is_lstm_config(config) -> bool:
    return getattr(config, "model_type", None) == MODEL_TYPE


def shape_value(config: LstmConfig, quantity: str) -> int | None:
    """``models.CONFIG_ALIASES``' quantities for the LSTM: layers, the width of a token's vector (both
    directions), and None for what it does not have (attention heads, feed-forward size, a position limit)."""
    return {"layers": config.num_layers, "hidden": 2 * config.hidden_size}.get(quantity)


def forward_flops(config: LstmConfig, tokens: int) -> int:
    """Analytic FLOPs of one forward pass on one text of ``tokens`` tokens (a multiply-add counts 2).

    Per LSTM layer and direction, each token costs the four gates' matmuls, ``2 * 4H * (I + H)`` with input width
    ``I`` (E in the first layer, 2H after); the attention pooling ``2 * (2H * A + A)`` per token; the classifier
    ``2 * 2H * C``. Gate non-linearities and the embedding look-up are element-wise and left out.
    """
    t, e, h, a = int(tokens), config.embedding_dim, config.hidden_size, config.attention_dim
    recurrent = sum(2 * t * 8 * h * ((e if i == 0 else 2 * h) + h) for i in range(config.num_layers))
    return recurrent + t * 2 * (2 * h * a + a) + 2 * 2 * h * config.num_labels


# ----------------------------------------------------------------------------- embeddings


@torch.no_grad()
def copy_embeddings(model: LstmForSequenceClassification, source: torch.Tensor) -> None:
    """Copy a teacher's word embeddings (V, E) into the student's, which must have the same shape."""
    target = model.embeddings.weight
    if tuple(source.shape) != tuple(target.shape):
        raise ValueError(f"teacher embeddings {tuple(source.shape)} do not fit the student's {tuple(target.shape)}: "
                         "the embedding width must be the teacher's hidden size and the vocabularies the same")
    target.copy_(source.to(target.dtype))


def word_pieces(texts: Sequence[str], tokenizer) -> list[list[str]]:
    """Each text as the word pieces ``tokenizer`` makes of it (no [CLS]/[SEP]): Word2Vec's sentences."""
    ids = tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
    return [tokenizer.convert_ids_to_tokens(row) for row in ids]


def _stable_hash(text: str) -> int:
    # gensim seeds each word's starting vector from hash(word + seed); Python's hash changes between
    # processes, crc32 does not, so the same seed gives the same vectors in every run.
    return zlib.crc32(text.encode("utf-8"))


def train_word2vec(texts: Sequence[str], tokenizer, dim: int, seed: int, epochs: int = W2V_EPOCHS):
    """A gensim Word2Vec (CBOW) over the word pieces of ``texts``, one worker thread so that it is reproducible.

    Returns:
        the trained ``gensim.models.Word2Vec``; ``model.wv[piece]`` is a piece's (dim,) vector.
    """
    from gensim.models import Word2Vec

    sentences = [s for s in word_pieces(texts, tokenizer) if s]
    if not sentences:
        raise ValueError("Word2Vec needs training texts with at least one token")
    return Word2Vec(sentences, vector_size=int(dim), window=W2V_WINDOW, min_count=W2V_MIN_COUNT, workers=1,
                    epochs=int(epochs), seed=int(seed) % 2**31, hashfxn=_stable_hash)


@torch.no_grad()
def word2vec_embeddings(model: LstmForSequenceClassification, texts: Sequence[str], tokenizer, seed: int) -> int:
    """Train Word2Vec on ``texts``' word pieces and copy the vectors of the pieces it learned into ``model``'s
    embeddings; the other rows are drawn at random on the same scale. Returns how many rows were copied."""
    w2v = train_word2vec(texts, tokenizer, model.config.embedding_dim, seed)
    pieces = list(w2v.wv.index_to_key)
    ids = tokenizer.convert_tokens_to_ids(pieces)
    vectors = torch.from_numpy(np.asarray(w2v.wv[pieces], dtype=np.float32))  # (N, E)
    weight = model.embeddings.weight  # (V, E)
    gen = torch.Generator().manual_seed(int(seed))
    weight.copy_(torch.randn(weight.shape, generator=gen) * float(vectors.std()))
    keep = [i for i, j in enumerate(ids) if j is not None and 0 <= j < weight.shape[0]]
    weight[torch.tensor([ids[i] for i in keep], dtype=torch.long)] = vectors[keep]
    if model.config.pad_token_id is not None:
        weight[model.config.pad_token_id] = 0.0  # as nn.Embedding keeps its padding row
    logger.info("Word2Vec: %d of %d word pieces learned from %d texts", len(keep), weight.shape[0], len(texts))
    return len(keep)


__all__ = [
    "EMBEDDING_INITS", "LstmConfig", "LstmForSequenceClassification", "MODEL_TYPE", "copy_embeddings",
    "forward_flops", "is_lstm_config", "register", "shape_value", "train_word2vec", "word2vec_embeddings",
    "word_pieces",
]
