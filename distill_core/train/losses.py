"""Loss functions. Pure: tensors in, tensors out; the training loop passes one of them in.

The distillation loss follows Hinton et al. (2015) and HF's DistilBERT ``distiller.py``::

    L = alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)

The ``T^2`` factor keeps the soft term's gradients on the same scale as the hard term's when the
temperature changes (the soft gradients shrink as ``1 / T^2``). An optional third term,
``hard_weight * CE(s, argmax t)``, trains the student on the teacher's predicted class (hard pseudo-labels).

A label of ``IGNORE_INDEX`` (-100, as in transformers) marks a text whose label is hidden (the few-labels
setting's transfer set): it takes part in the soft term only, never in cross-entropy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100  # a hidden label: the text counts for the KD term only


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar, what is back-propagated
    parts: dict[str, torch.Tensor]  # named components for the logs (detached by the caller)


def _weight(class_weights: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor | None:
    return None if class_weights is None else class_weights.to(device=logits.device, dtype=logits.dtype)


def cross_entropy(student_logits: torch.Tensor, labels: torch.Tensor,
                  class_weights: torch.Tensor | None = None) -> LossOutput:
    """Cross-entropy, optionally class-weighted. Args: logits (B, C), labels (B,), class_weights (C,) or None."""
    ce = F.cross_entropy(student_logits, labels, weight=_weight(class_weights, student_logits))
    return LossOutput(ce, {})


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                         class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy over the texts whose label is known (mean over them); 0 when a batch has none.

    Args: logits (B, C), labels (B,) with ``IGNORE_INDEX`` for hidden labels, class_weights (C,) or None. With
    weights the mean is weighted as ``F.cross_entropy(weight=...)`` defines it: ``sum(w[y] * ce) / sum(w[y])``.
    """
    known = labels != IGNORE_INDEX  # (B,)
    if not bool(known.any()):
        return logits.sum() * 0.0  # keeps the graph (and the device) without a NaN
    return F.cross_entropy(logits[known], labels[known], weight=_weight(class_weights, logits))


def balanced_class_weights(labels: Sequence[int], n_classes: int) -> torch.Tensor:
    """(C,) ``n / (k * n_c)`` for each class c (as scikit-learn's "balanced"), from the known training labels.

    ``n`` counts the labels other than ``IGNORE_INDEX``, ``k`` the classes among them and ``n_c`` those of class c.
    A class with no training rows never is a target, so its weight (0) never counts.
    """
    counts = torch.bincount(torch.as_tensor([int(y) for y in labels if int(y) != IGNORE_INDEX], dtype=torch.long),
                            minlength=n_classes)[:n_classes].double()  # (C,)
    present = counts > 0
    weights = torch.zeros(n_classes, dtype=torch.double)
    weights[present] = counts.sum() / (int(present.sum()) * counts[present])
    return weights.float()


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 2.0,
    alpha: float = 0.5,
    hard_weight: float = 0.0,
    class_weights: torch.Tensor | None = None,
) -> LossOutput:
    """Distillation loss: ``alpha * T^2 * KL + (1 - alpha) * CE + hard_weight * CE(student, argmax teacher)``.

    Args:
        student_logits: (B, C) raw student scores.
        teacher_logits: (B, C) raw teacher scores (no gradient flows into them).
        labels: (B,) gold class ids; ``IGNORE_INDEX`` where the label is hidden (soft term only).
        temperature: T > 0; softens both distributions.
        alpha: weight of the soft (KL) term in [0, 1]; 0 gives plain cross-entropy.
        hard_weight: >= 0, weight of cross-entropy to the teacher's argmax class; it covers every text, those
            with hidden labels included (0: off).
        class_weights: (C,) weights of the gold-label cross-entropy (``balanced_class_weights``); None: unweighted.
            The KL term is never weighted: it matches the teacher's whole distribution.

    Returns:
        LossOutput with ``loss`` and parts ``kd_loss`` (T^2 * KL, batch mean) and ``ce_loss``, plus
        ``hard_loss`` (the unweighted CE to the teacher's argmax, batch mean) when ``hard_weight > 0``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if hard_weight < 0:
        raise ValueError(f"hard_weight must be >= 0, got {hard_weight}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ: do teacher and student share the label set?")
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)  # (B, C)
    t = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)  # (B, C)
    kl = F.kl_div(s, t, reduction="batchmean", log_target=True)  # KL(t || s), mean over the batch
    kd = kl * temperature**2
    ce = masked_cross_entropy(student_logits.float(), labels, class_weights)
    out = LossOutput(alpha * kd + (1.0 - alpha) * ce, {"kd_loss": kd, "ce_loss": ce})
    if hard_weight > 0:
        hard = F.cross_entropy(student_logits.float(), teacher_logits.detach().argmax(-1))  # every row, labels or not
        out = LossOutput(out.loss + hard_weight * hard, {**out.parts, "hard_loss": hard})
    return out


def hidden_cosine_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - cos`` between student and teacher hidden states at real (unmasked) tokens.

    Args:
        student_hidden, teacher_hidden: (B, T, H).
        mask: (B, T), 1 for real tokens.
    """
    cos = F.cosine_similarity(student_hidden.float(), teacher_hidden.detach().float(), dim=-1)  # (B, T)
    m = mask.to(cos.dtype)
    return ((1.0 - cos) * m).sum() / m.sum().clamp(min=1.0)
