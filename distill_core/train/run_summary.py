"""The summary a run prints as it starts: where it writes, what data, which models, how they train.

    logger.info("\n%s", run_summary(cfg, run_dir, splits, pad_eff, environment(), teacher_src, tokens))
"""

from __future__ import annotations

from pathlib import Path

from ..config import RunConfig
from .data import Splits

_PRECISION_WORDS = {"no": "full precision (fp32)", "bf16": "bf16 mixed precision (weights fp32)",
                    "fp16": "fp16 mixed precision (weights fp32)"}


def _student_words(cfg: RunConfig) -> str:
    m = cfg.model
    if m.is_lstm():
        return (f"BiLSTM, hidden {m.lstm_hidden} per direction, embeddings "
                + {"teacher": "copied from the teacher", "word2vec": "from Word2Vec on the training texts",
                   "random": "initialised at random"}[m.lstm_init])
    return m.student or ("built from the teacher's layers " + str(m.layer_map or "(every other)")
                         + " (a DistilBERT for a BERT teacher, else the teacher's own class)")


def run_summary(cfg: RunConfig, run_dir: Path, splits: Splits, pad_eff: float, env: dict, teacher_src: str | None,
                tokens: str = "") -> str:
    t, k = cfg.train, cfg.kd
    lines = [
        "=" * 72,
        f"distill-lens run {run_dir.name}",
        f"  folder      {run_dir}",
        f"  dataset     {splits.source}  labels {splits.label_names}",
        f"  rows        train {len(splits.train)}  validation {len(splits.validation)}  test {len(splits.test)}"
        + (f"  ({'; '.join(splits.notes)})" if splits.notes else ""),
        f"  teacher     {teacher_src + ' (given, not trained here)' if teacher_src else cfg.model.teacher + ' (fine-tuned here)'}",
        f"  student     {_student_words(cfg)}{tokens}",
        f"  models      {', '.join(t.models)}" + (f"; LoRA {cfg.model.lora} on {', '.join(cfg.model.lora_models or t.models)}"
                                                  if cfg.model.lora else ""),
        f"  training    batch {t.batch_size}, max_length {cfg.data.max_length} ({cfg.data.truncation}), "
        f"class weights {t.class_weights}, teacher {t.epochs} epoch(s) at lr {t.learning_rate}, "
        f"students {t.epochs_for('student')} epoch(s) at lr {t.lr_for('student')}, {t.scheduler} schedule, seed {t.seed}",
        f"  KD          T={k.temperature} alpha={k.alpha} hidden_weight={k.hidden_weight} hard_weight={k.hard_weight}",
        f"  batching    {'length-grouped' if cfg.data.group_by_length else 'random'}: {pad_eff:.0%} of batch tokens are real",
        f"  device      {env['device']} (torch {env['torch']}, {env['torch_threads']} threads), "
        f"{_PRECISION_WORDS.get(env.get('mixed_precision'), env.get('mixed_precision'))}",
        "=" * 72,
    ]
    return "\n".join(lines)
