"""Loss functions. Pure: tensors in, tensors out; the training loop passes one of them in.

The distillation loss follows Hinton et al. (2015) and HF's DistilBERT ``distiller.py``::

    L = alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)

The ``T^2`` factor keeps the soft term's gradients on the same scale as the hard term's when the
temperature changes (the soft gradients shrink as ``1 / T^2``).

A label of ``IGNORE_INDEX`` (-100, as in transformers) marks a text whose label is hidden (the few-labels
setting's transfer set): it takes part in the soft term only, never in cross-entropy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100  # a hidden label: the text counts for the KD term only


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar, what is back-propagated
    parts: dict[str, torch.Tensor]  # named components for the logs (detached by the caller)


def cross_entropy(student_logits: torch.Tensor, labels: torch.Tensor) -> LossOutput:
    """Plain cross-entropy. Args: logits (B, C), labels (B,)."""
    ce = F.cross_entropy(student_logits, labels)
    return LossOutput(ce, {})


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the texts whose label is known (mean over them); 0 when a batch has none.

    Args: logits (B, C), labels (B,) with ``IGNORE_INDEX`` for hidden labels.
    """
    known = labels != IGNORE_INDEX  # (B,)
    if not bool(known.any()):
        return logits.sum() * 0.0  # keeps the graph (and the device) without a NaN
    return F.cross_entropy(logits[known], labels[known])


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 2.0,
    alpha: float = 0.5,
) -> LossOutput:
    """Distillation loss: ``alpha * T^2 * KL + (1 - alpha) * CE``.

    Args:
        student_logits: (B, C) raw student scores.
        teacher_logits: (B, C) raw teacher scores (no gradient flows into them).
        labels: (B,) gold class ids; ``IGNORE_INDEX`` where the label is hidden (soft term only).
        temperature: T > 0; softens both distributions.
        alpha: weight of the soft (KL) term in [0, 1]; 0 gives plain cross-entropy.

    Returns:
        LossOutput with ``loss`` and parts ``kd_loss`` (T^2 * KL, batch mean) and ``ce_loss``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ: do teacher and student share the label set?")
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)  # (B, C)
    t = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)  # (B, C)
    kl = F.kl_div(s, t, reduction="batchmean", log_target=True)  # KL(t || s), mean over the batch
    kd = kl * temperature**2
    ce = masked_cross_entropy(student_logits.float(), labels)
    return LossOutput(alpha * kd + (1.0 - alpha) * ce, {"kd_loss": kd, "ce_loss": ce})


def hidden_cosine_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - cos`` between student and teacher hidden states at real (unmasked) tokens.

    Args:
        student_hidden, teacher_hidden: (B, T, H).
        mask: (B, T), 1 for real tokens.
    """
    cos = F.cosine_similarity(student_hidden.float(), teacher_hidden.detach().float(), dim=-1)  # (B, T)
    m = mask.to(cos.dtype)
    return ((1.0 - cos) * m).sum() / m.sum().clamp(min=1.0)
