"""Where models run outside training: one choice for every command and page that scores a model.

    device = scoring_device()            # --device, else DISTILL_DEVICE, else the GPU when there is one, else the CPU
    device = scoring_device("cpu")       # `evaluate RUN --device cpu`
    model, device = place(model, device) # moved there; back on the CPU (with a warning) when the GPU has no room

Training runs where Accelerate puts it (``--cpu`` forces the CPU). Scoring on a GPU is done in fp32, as on the CPU,
so a run's figures do not depend on where it was scored: TF32 matmuls stay off unless the user turned them on.
The teacher's soft targets for distillation are computed in the training's precision (see ``train.pipeline``).
"""

from __future__ import annotations

import logging
import os

import torch

from .errors import ConfigError

logger = logging.getLogger(__name__)

ENV = "DISTILL_DEVICE"  # auto | cpu | cuda | cuda:N; the dashboard and every command read it
CHOICES_HELP = "where models are scored: auto (the GPU when there is one), cpu, cuda or cuda:N (auto)"


def scoring_device(requested: str | torch.device | None = None) -> torch.device:
    """The device that scores models: ``requested`` (a ``--device`` flag), else ``$DISTILL_DEVICE``, else ``auto``.

    Raises:
        ConfigError: a device that does not exist here (a GPU asked for on a machine without one, a bad name).
    """
    choice = str(requested or os.environ.get(ENV) or "auto").strip().lower()
    if choice == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(choice)
    except (RuntimeError, ValueError):
        raise ConfigError(f"Unknown device {choice!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"Device {choice!r} was asked for, but torch sees no GPU here: use --device cpu "
                            f"(or unset {ENV})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"Device {choice!r} was asked for, but this machine has {torch.cuda.device_count()} "
                            f"GPU(s): use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    elif device.type != "cpu":
        raise ConfigError(f"Device {choice!r} is not supported: use auto, cpu, cuda or cuda:N")
    return device


def place(model: torch.nn.Module, device: torch.device) -> tuple[torch.nn.Module, torch.device]:
    """``model`` moved to ``device`` in eval mode; on the CPU instead when the GPU is out of memory (busy with a
    training, say), with a warning, so that a page or a command still answers."""
    try:
        return model.to(device).eval(), device
    except torch.cuda.OutOfMemoryError:
        model.to("cpu")
        torch.cuda.empty_cache()
        logger.warning("The GPU has no room for this model now; it runs on the CPU instead (slower).")
        return model.eval(), torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """``cpu`` or ``cuda:0 (NVIDIA H200)``: how outputs name the device that scored."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return "cpu"
