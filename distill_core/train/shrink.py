"""A student built from a teacher of any encoder family: the teacher's own class with fewer of its layers.

    student = shrink(pretrained, label_names, layer_map=[0, 2, 4])   # layers 0, 2, 4 of a RoBERTa, ELECTRA, ...

BERT teachers get a DistilBERT (``models.build_student_from_teacher``), as DistilBERT itself was made. Any other
family whose encoder keeps its blocks in one list (``encoder.layer`` in RoBERTa, ELECTRA, DeBERTa-v2; ``layers`` in
ModernBERT) keeps its own class and config, with ``num_hidden_layers`` cut to the map's length: the embeddings and
the chosen blocks are copied, the classification head starts fresh.
"""

from __future__ import annotations

import copy

import torch
from transformers import PreTrainedModel

from ..errors import ModelError


def layer_list(model: PreTrainedModel) -> str:
    """The dotted name of the module list holding the encoder's ``num_hidden_layers`` blocks.

    Raises:
        ModelError: no such list (a family whose layers are not kept in one list cannot be cut this way).
    """
    n = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n and name.rsplit(".", 1)[-1] in ("layer", "layers"):
            return name
    raise ModelError(f"{type(model).__name__} keeps no list of its {n} layers that a smaller copy can be cut from; "
                     "pass a ready-made student with --student NAME_OR_PATH")


@torch.no_grad()
def shrink(teacher: PreTrainedModel, layer_map: list[int]) -> PreTrainedModel:
    """A copy of ``teacher`` (a ``*ForSequenceClassification``) keeping only the layers ``layer_map`` names, in that
    order; student layer ``i`` is teacher layer ``layer_map[i]``. Its head is the teacher's (fresh when the teacher is
    a pretrained checkpoint loaded with a new head)."""
    prefix = layer_list(teacher) + "."
    cfg = copy.deepcopy(teacher.config)
    cfg.num_hidden_layers = len(layer_map)
    types = getattr(cfg, "layer_types", None)  # families with per-layer kinds (ModernBERT: global or local attention)
    if isinstance(types, list) and len(types) == teacher.config.num_hidden_layers:
        cfg.layer_types = [types[j] for j in layer_map]
    cfg.distill_layer_map = list(layer_map)  # read by the attention page, as for a DistilBERT student
    student = type(teacher)(cfg)
    state = {}
    for key, value in teacher.state_dict().items():
        if not key.startswith(prefix):
            state[key] = value
            continue
        index, rest = key[len(prefix):].split(".", 1)
        for i, j in enumerate(layer_map):
            if j == int(index):
                state[f"{prefix}{i}.{rest}"] = value
    missing, unexpected = student.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not _buffer(student, k)]:
        raise ModelError(f"{type(teacher).__name__} could not be cut to {len(layer_map)} layers (weights that do not "
                         f"fit: {(unexpected or missing)[:3]}); pass a ready-made student with --student NAME_OR_PATH")
    return student


def _buffer(model: torch.nn.Module, key: str) -> bool:
    """Whether ``key`` names a buffer (position ids and the like, rebuilt by the model itself)."""
    return key in dict(model.named_buffers())
