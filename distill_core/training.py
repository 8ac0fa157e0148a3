"""One training loop for every model; the objective (loss) is what differs.

    result = train(model, train_loader, val_loader, objective=cross_entropy_objective,
                   settings=LoopSettings.from_config(cfg.train, "teacher"), callbacks=[csv_logger])
    train(..., settings=LoopSettings(max_steps=20))          # a step budget instead of epochs (the bench)

The loop knows nothing about teachers, files or the dashboard: an *objective* turns a model and a batch
into a loss, and *callbacks* receive each step's and each evaluation's metrics (the pipeline writes them
to CSV). Accelerate gives device placement, mixed precision on GPU and multi-GPU (``accelerate launch``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, fields
from typing import Any, Callable, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from sklearn.metrics import f1_score
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from .losses import IGNORE_INDEX, LossOutput, cross_entropy, hidden_cosine_loss, kd_loss

logger = logging.getLogger(__name__)

# An objective maps (model, batch) to (loss, logits (B, C)).
Objective = Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[LossOutput, torch.Tensor]]


class Callback(Protocol):
    def on_step(self, row: dict[str, Any]) -> None: ...
    def on_eval(self, row: dict[str, Any]) -> None: ...


@dataclass
class LoopSettings:
    """How one model is trained: the ``TrainConfig`` fields of the same names, resolved for that model."""

    epochs: float = 1.0
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    scheduler: str = "linear"  # linear | exponential
    warmup_ratio: float = 0.1
    gamma: float = 0.96
    gamma_every: int = 10
    max_grad_norm: float = 1.0
    eval_every: int | None = None
    max_steps: int | None = None  # a step budget; overrides epochs
    desc: str = "train"

    @classmethod
    def from_config(cls, train_cfg, kind: str) -> "LoopSettings":
        """The settings for ``kind`` (teacher, student, baseline): its epochs and learning rate, the rest shared."""
        shared = {f.name: getattr(train_cfg, f.name) for f in fields(cls) if hasattr(train_cfg, f.name)}
        return cls(**{**shared, "epochs": train_cfg.epochs_for(kind), "learning_rate": train_cfg.lr_for(kind),
                      "desc": kind})

    def total_steps(self, steps_per_epoch: int) -> int:
        if self.max_steps is not None:
            return max(1, int(self.max_steps))
        return max(1, math.ceil(self.epochs * steps_per_epoch))


@dataclass
class TrainResult:
    steps: int
    examples_seen: int
    elapsed_s: float

    @property
    def samples_per_s(self) -> float:
        return self.examples_seen / max(self.elapsed_s, 1e-9)


# ----------------------------------------------------------------------------- objectives


def _model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def cross_entropy_objective(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[LossOutput, torch.Tensor]:
    """Teacher and baseline student: cross-entropy to the labels."""
    logits = model(**_model_inputs(batch)).logits  # (B, C)
    return cross_entropy(logits.float(), batch["labels"]), logits


def kd_objective(temperature: float, alpha: float, teacher: torch.nn.Module | None = None,
                 hidden_weight: float = 0.0, layer_map: list[int] | None = None) -> Objective:
    """Distilled student: KD loss against the teacher's logits.

    The teacher's logits come precomputed in the batch (``teacher_logits``: the teacher is frozen, so
    they never change) unless the hidden-state cosine term is on, which needs a live teacher forward pass.
    """
    if hidden_weight > 0 and (teacher is None or layer_map is None):
        raise ValueError("the hidden-state loss needs the teacher model and the layer map")

    def objective(model, batch):
        want_hidden = hidden_weight > 0
        out = model(**_model_inputs(batch), output_hidden_states=want_hidden)
        logits = out.logits  # (B, C)
        t_hidden = None
        if "teacher_logits" in batch and not want_hidden:
            t_logits = batch["teacher_logits"]
        else:
            if teacher is None:
                raise ValueError("no teacher logits in the batch and no teacher model given")
            with torch.no_grad():
                t_out = teacher(**_model_inputs(batch), output_hidden_states=want_hidden)
            t_logits, t_hidden = t_out.logits, t_out.hidden_states
        res = kd_loss(logits, t_logits, batch["labels"], temperature, alpha)
        if want_hidden:
            # hidden_states[0] is the embedding output; student layer i mirrors teacher layer layer_map[i].
            cos = torch.stack([
                hidden_cosine_loss(out.hidden_states[i + 1], t_hidden[j + 1], batch["attention_mask"])
                for i, j in enumerate(layer_map)
            ]).mean()
            res = LossOutput(res.loss + hidden_weight * cos, {**res.parts, "hidden_loss": cos})
        return res, logits

    return objective


# ----------------------------------------------------------------------------- evaluation


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, loader: DataLoader, device: torch.device | None = None,
                   desc: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, C) and labels (N,) in dataset order, whatever order the loader's batches come in."""
    model.eval()
    device = device or next(model.parameters()).device
    sampler = loader.batch_sampler
    order = [i for b in sampler for i in b] if sampler is not None and hasattr(sampler, "batches") else None
    logits, labels = [], []
    for batch in tqdm(loader, desc=desc, leave=False, disable=desc is None):
        batch = {k: v.to(device) for k, v in batch.items()}
        logits.append(model(**_model_inputs(batch)).logits.float().cpu())
        labels.append(batch["labels"].cpu())
    lg = torch.cat(logits).numpy()
    lb = torch.cat(labels).numpy()
    if order is not None:
        inv = np.empty(len(order), dtype=np.int64)
        inv[np.asarray(order)] = np.arange(len(order))
        lg, lb = lg[inv], lb[inv]
    return lg, lb


def accuracy_f1(labels: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 of predicted class ids (N,) against true ones (N,): every figure of both in the
    project (validation, test, the bench) comes from here."""
    labels, pred = np.asarray(labels), np.asarray(pred)
    return {"accuracy": float((pred == labels).mean()),
            "macro_f1": float(f1_score(labels, pred, average="macro", zero_division=0))}


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Cross-entropy loss, accuracy and macro-F1 of logits (N, C) against labels (N,)."""
    loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels).long()).item()
    return {"loss": float(loss), **accuracy_f1(labels, logits.argmax(-1))}


# ----------------------------------------------------------------------------- the loop


def _optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    # No weight decay on biases and LayerNorm weights (as BERT was trained).
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def _scheduler(optimizer, s: LoopSettings, total_steps: int):
    if s.scheduler == "linear":
        return get_linear_schedule_with_warmup(optimizer, int(s.warmup_ratio * total_steps), total_steps)
    if s.scheduler == "exponential":
        # The reports' ExponentialLR(gamma=0.96), stepped every `gamma_every` batches.
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: s.gamma ** (step // s.gamma_every))
    raise ValueError(f"Unknown scheduler {s.scheduler!r}; use 'linear' or 'exponential'")


def train(
    model: torch.nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader | None,
    objective: Objective,
    settings: LoopSettings,
    accelerator: Accelerator,
    callbacks: list[Callback] = (),
) -> TrainResult:
    """Train ``model`` in place for ``settings.epochs`` (fractions allowed) or ``settings.max_steps``.

    Validation runs every ``eval_every`` steps (if set) and at the end of each epoch and of training.
    """
    optimizer = _optimizer(model, settings.learning_rate, settings.weight_decay)
    total_steps = settings.total_steps(len(train_loader))
    scheduler = _scheduler(optimizer, settings, total_steps)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    steps_per_epoch = len(train_loader)  # per process, after sharding
    planned_epochs = settings.epochs if settings.max_steps is None else total_steps / steps_per_epoch

    def evaluate(step: int, epoch: float) -> None:
        if val_loader is None:
            return
        lg, lb = predict_logits(accelerator.unwrap_model(model), val_loader, accelerator.device)
        m = classification_metrics(lg, lb)
        row = {"step": step, "epoch": round(epoch, 4), "examples_seen": seen, "elapsed_s": time.perf_counter() - t0,
               "val_loss": m["loss"], "val_accuracy": m["accuracy"], "val_macro_f1": m["macro_f1"]}
        for cb in callbacks:
            cb.on_eval(row)
        model.train()

    step, seen, t0 = 0, 0, time.perf_counter()
    last_eval_step = -1
    bar = tqdm(total=total_steps, desc=settings.desc, disable=not accelerator.is_local_main_process, unit="step")
    model.train()
    epoch = 0
    while step < total_steps:
        for b_idx, batch in enumerate(train_loader):
            if step >= total_steps:
                break
            with accelerator.autocast():
                out, logits = objective(model, batch)
            accelerator.backward(out.loss)
            if settings.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            n = batch["labels"].shape[0] * accelerator.num_processes
            seen += n
            known = batch["labels"] != IGNORE_INDEX  # hidden labels (transfer texts) do not count
            acc = (logits.detach().argmax(-1) == batch["labels"])[known].float().mean().item() if known.any() else float("nan")
            row = {
                "step": step, "epoch": round(epoch + (b_idx + 1) / steps_per_epoch, 4), "batch": b_idx + 1,
                "train_loss": out.loss.item(), "train_accuracy": acc,
                "learning_rate": scheduler.get_last_lr()[0], "examples_seen": seen,
                "elapsed_s": round(time.perf_counter() - t0, 3),
                **{k: v.item() for k, v in out.parts.items()},
            }
            for cb in callbacks:
                cb.on_step(row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", acc=f"{acc:.2f}")
            if settings.eval_every and step % settings.eval_every == 0:
                evaluate(step, epoch + (b_idx + 1) / steps_per_epoch)
                last_eval_step = step
        epoch += 1
        if last_eval_step != step:
            evaluate(step, min(epoch, planned_epochs))
            last_eval_step = step
    bar.close()
    return TrainResult(steps=step, examples_seen=seen, elapsed_s=time.perf_counter() - t0)


def make_accelerator(mixed_precision: str = "auto", cpu: bool = False) -> Accelerator:
    """``auto``: bf16 on GPUs that support it, fp16 on other GPUs, full precision on CPU."""
    if mixed_precision == "auto":
        if torch.cuda.is_available() and not cpu:
            mixed_precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            mixed_precision = "no"
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu)
