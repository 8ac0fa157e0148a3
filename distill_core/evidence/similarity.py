"""Layer similarity: how alike are the teacher's and the student's representations, layer by layer?

    cka = linear_cka(x, y)                                  # (N, D1), (N, D2) -> float in [0, 1]
    reps = layer_representations(clf, texts)                # {"cls": [(N, D)] * (L + 1), "mean": [...]}
    sim = layer_similarity(teacher, student, texts)         # sim.cls, sim.mean: (Lt + 1, Ls + 1) CKA matrices

Linear CKA (Kornblith et al. 2019) compares two sets of representations of the same N inputs; it is 1 for
representations that differ by a rotation and a uniform scale, and does not need them to have the same
width. Index 0 of each axis is the embedding output, index i the output of transformer layer i; a student
built from the teacher copied teacher layer ``distill_layer_map[i]`` into its layer ``i`` (the cells
``mapped_cells`` lists).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..errors import InputError
from ..ship.inference import TextClassifier

POOLINGS = {"cls": "[CLS] token", "mean": "mean over tokens"}


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA between two representations of the same N inputs.

    ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` with column-centred ``Xc``, ``Yc``.

    Args:
        x: (N, D1). y: (N, D2); N >= 2.

    Raises:
        ValueError: shapes that do not pair the same N inputs.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) < 2:
        raise ValueError(f"x and y must be (N, D) with the same N >= 2 inputs, got {x.shape} and {y.shape}")
    x = x - x.mean(0)
    y = y - y.mean(0)
    cross = np.linalg.norm(y.T @ x) ** 2  # scalar; the (D2, D1) product is small next to (N, N) for N in hundreds
    norm = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / norm) if norm > 0 else float("nan")


def cka_matrix(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray]) -> np.ndarray:
    """(len(xs), len(ys)) linear CKA of every pair: xs[i] (N, D1) against ys[j] (N, D2)."""
    return np.array([[linear_cka(x, y) for y in ys] for x in xs])


@torch.inference_mode()
def layer_representations(clf: TextClassifier, texts: Sequence[str], batch_size: int = 32) -> dict[str, list[np.ndarray]]:
    """Each layer's [CLS] vector and mean token vector (padding excluded) for every text.

    Returns:
        ``{"cls": [(N, D)] * (L + 1), "mean": [(N, D)] * (L + 1)}``; index 0 is the embedding output.
    """
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if len(texts) < 2:
        raise InputError("Layer similarity needs at least 2 texts.")
    cls_parts: list[list[np.ndarray]] = []
    mean_parts: list[list[np.ndarray]] = []
    for i in range(0, len(texts), batch_size):
        enc = clf.encode(list(texts[i : i + batch_size]))  # padded, on the model's device, cut as in training
        hidden = clf.model(**enc, output_hidden_states=True).hidden_states  # (L + 1) x (B, T, D)
        m = enc["attention_mask"][..., None].float()  # (B, T, 1)
        cls_parts.append([h[:, 0].float().cpu().numpy() for h in hidden])  # (B, D) each
        mean_parts.append([((h.float() * m).sum(1) / m.sum(1)).cpu().numpy() for h in hidden])
    n_layers = len(cls_parts[0])
    return {"cls": [np.concatenate([p[j] for p in cls_parts]) for j in range(n_layers)],
            "mean": [np.concatenate([p[j] for p in mean_parts]) for j in range(n_layers)]}


def mapped_cells(layer_map: Sequence[int] | None) -> list[tuple[int, int]]:
    """(teacher index, student index) on the CKA axes of the layers a student was initialised from.

    Student layer ``i`` (0-based) is axis index ``i + 1``; teacher layer ``j`` is ``j + 1``; the embeddings
    (index 0) were copied too.
    """
    if not layer_map:
        return []
    return [(0, 0)] + [(int(j) + 1, i + 1) for i, j in enumerate(layer_map)]


@dataclass
class LayerSimilarity:
    """Linear CKA between every teacher layer (rows) and every student layer (columns)."""

    cls: np.ndarray  # (Lt + 1, Ls + 1) on the [CLS] vectors
    mean: np.ndarray  # (Lt + 1, Ls + 1) on mean-pooled token vectors
    layer_map: list[int] | None  # teacher layer each student layer was initialised from (0-based)
    n_texts: int
    mapped: list[tuple[int, int]] = field(default_factory=list)  # cells of the layer map, see mapped_cells

    def matrix(self, pooling: str) -> np.ndarray:
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
        return self.cls if pooling == "cls" else self.mean


def layer_similarity(teacher: TextClassifier, student: TextClassifier, texts: Sequence[str]) -> LayerSimilarity:
    """CKA between all teacher and student layers over ``texts`` (a few hundred validation texts)."""
    t = layer_representations(teacher, texts)
    s = layer_representations(student, texts)
    raw = getattr(student.model.config, "distill_layer_map", None)
    layer_map = [int(j) for j in raw] if raw else None
    return LayerSimilarity(cls=cka_matrix(t["cls"], s["cls"]), mean=cka_matrix(t["mean"], s["mean"]),
                           layer_map=layer_map, n_texts=len(t["cls"][0]), mapped=mapped_cells(layer_map))
