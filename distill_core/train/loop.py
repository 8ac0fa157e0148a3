"""One training loop for every model; the objective (loss) is what differs.

    result = train(model, train_loader, val_loader, objective=cross_entropy_objective,
                   settings=LoopSettings.from_config(cfg.train, "teacher"), callbacks=[csv_logger])
    train(..., settings=LoopSettings(max_steps=20))          # a step budget instead of epochs (the bench)
    train(..., settings=LoopSettings(epochs=10, eval_every=16, patience=3, monitor="macro_f1"))   # early stopping

The loop knows nothing about teachers, files or the dashboard: an *objective* turns a model and a batch
into a loss, and *callbacks* receive each step's and each evaluation's metrics (the pipeline writes them
to CSV). Accelerate gives device placement, mixed precision on GPU and multi-GPU (``accelerate launch``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from sklearn.metrics import f1_score
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from .early_stopping import EarlyStopping
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
    patience: int | None = None  # early stopping: evaluations without a new best before stopping; None: train to the cap
    monitor: str = "accuracy"  # the validation metric early stopping and the best step follow: accuracy | macro_f1
    desc: str = "train"

    @classmethod
    def from_config(cls, train_cfg, kind: str) -> "LoopSettings":
        """The settings for ``kind`` (teacher, student, baseline): its epochs and learning rate, the rest shared."""
        shared = {f.name: getattr(train_cfg, f.name) for f in fields(cls) if hasattr(train_cfg, f.name)}
        # The patience applies only where early stopping is on; a config's default patience must not switch it on.
        shared["patience"] = train_cfg.patience if getattr(train_cfg, "early_stopping", False) else None
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
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase of PHASES
    # The validation curve of ``monitor``: best step, cap, whether patience stopped it, whether it was still rising
    # (EarlyStopping.summary); None without a validation loader.
    validation: dict[str, Any] | None = None

    @property
    def samples_per_s(self) -> float:
        return self.examples_seen / max(self.elapsed_s, 1e-9)


# ----------------------------------------------------------------------------- objectives


def _model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def cross_entropy_objective(model: torch.nn.Module, batch: dict[str, torch.Tensor],
                            class_weights: torch.Tensor | None = None) -> tuple[LossOutput, torch.Tensor]:
    """Teacher and baseline student: cross-entropy to the labels; ``class_weights`` (C,) weigh it per class
    (bind them with ``functools.partial``)."""
    logits = model(**_model_inputs(batch)).logits  # (B, C)
    return cross_entropy(logits.float(), batch["labels"], class_weights), logits


def kd_objective(temperature: float, alpha: float, teacher: torch.nn.Module | None = None,
                 hidden_weight: float = 0.0, layer_map: list[int] | None = None, hard_weight: float = 0.0,
                 class_weights: torch.Tensor | None = None) -> Objective:
    """Distilled student: KD loss against the teacher's logits (``hard_weight``, ``class_weights``: see
    ``losses.kd_loss``).

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
        res = kd_loss(logits, t_logits, batch["labels"], temperature, alpha, hard_weight=hard_weight,
                      class_weights=class_weights)
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
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}  # pinned batches: an async copy
        logits.append(model(**_model_inputs(batch)).logits.float().cpu())
        labels.append(batch["labels"].cpu())
    if not logits:  # no batch (a process of `accelerate launch` left without a share of a short split)
        return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64)
    lg = torch.cat(logits).numpy()
    lb = torch.cat(labels).numpy()
    if order is not None:
        inv = np.empty(len(order), dtype=np.int64)
        inv[np.asarray(order)] = np.arange(len(order))
        lg, lb = lg[inv], lb[inv]
    return lg, lb


def predict_logits_all(model: torch.nn.Module, loader: DataLoader, accelerator: Accelerator,
                       desc: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``predict_logits`` over every row of ``loader``, the work shared by the processes of ``accelerate launch``:
    each scores every ``num_processes``-th batch, and every process gets all the rows back, in dataset order.
    A single process scores them all, as ``predict_logits`` does."""
    if accelerator.num_processes == 1:
        return predict_logits(model, loader, accelerator.device, desc)
    from accelerate.utils import gather_object

    batches = [list(b) for b in loader.batch_sampler]
    mine = batches[accelerator.process_index :: accelerator.num_processes]
    part = DataLoader(loader.dataset, batch_sampler=mine, collate_fn=loader.collate_fn, num_workers=loader.num_workers,
                      pin_memory=loader.pin_memory)
    lg, lb = predict_logits(model, part, accelerator.device, desc if accelerator.is_main_process else None)
    parts = [p for p in gather_object([([i for b in mine for i in b], lg, lb)]) if p[0]]  # (rows, logits, labels)
    rows = np.concatenate([np.asarray(r) for r, _, _ in parts])
    order = np.argsort(rows, kind="stable")
    return (np.concatenate([l for _, l, _ in parts])[order].astype(np.float32),
            np.concatenate([y for _, _, y in parts])[order])


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


def _optimizer(model: torch.nn.Module, lr: float, weight_decay: float, device: torch.device) -> torch.optim.Optimizer:
    # No weight decay on biases and LayerNorm weights (as BERT was trained).
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel updates every parameter in one pass: on 2 CPU cores a teacher step's optimizer time drops from
    # about 47 to 14 ms (same step, foreach vs fused). It exists for CPU and CUDA tensors.
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=lr, fused=fused)


def _scheduler(optimizer, s: LoopSettings, total_steps: int):
    if s.scheduler == "linear":
        return get_linear_schedule_with_warmup(optimizer, int(s.warmup_ratio * total_steps), total_steps)
    if s.scheduler == "exponential":
        # The reports' ExponentialLR(gamma=0.96), stepped every `gamma_every` batches.
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: s.gamma ** (step // s.gamma_every))
    raise ValueError(f"Unknown scheduler {s.scheduler!r}; use 'linear' or 'exponential'")


# Where a training run's wall time goes; TrainResult.phases holds seconds per phase.
PHASES = ("data", "forward", "backward", "optimizer", "logging", "evaluation")


class _PhaseClock:
    """Accumulates wall time per phase: ``clock.lap("forward")`` charges the time since the previous lap.

    On CPU the work is done when a call returns, so laps are exact; on GPU kernels run ahead of the host and a lap
    is charged to the phase that waits for them (the first ``.item()``/``.tolist()`` after them).
    """

    def __init__(self):
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self._t = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] += now - self._t
        self._t = now


class _StepLog:
    """Step rows held back and sent to the callbacks in groups, so the hot path never waits on the device.

    Each step keeps its scalars as 0-d tensors; ``flush`` turns all pending ones into numbers with one
    ``torch.stack(...).tolist()`` (one host sync on GPU instead of several per step) and hands the rows over in
    order. Rows are flushed every ``every_s`` seconds and before each evaluation, so live curves lag by about that.
    """

    def __init__(self, callbacks, on_flush: Callable[[dict[str, Any]], None] = lambda row: None, every_s: float = 1.0):
        self.callbacks, self.on_flush, self.every_s = callbacks, on_flush, every_s
        self.pending: list[tuple[dict[str, Any], dict[str, torch.Tensor]]] = []
        self._last = time.monotonic()
        self.last_row: dict[str, Any] | None = None

    def add(self, row: dict[str, Any], scalars: dict[str, torch.Tensor]) -> None:
        self.pending.append((row, scalars))
        if time.monotonic() - self._last >= self.every_s:
            self.flush()

    def flush(self) -> None:
        self._last = time.monotonic()
        if not self.pending:
            return
        names = list(self.pending[0][1])
        values = torch.stack([torch.stack([s[n].detach().float() for n in names]) for _, s in self.pending]).tolist()
        for (row, _), vals in zip(self.pending, values):
            row.update(zip(names, vals))
            if "examples_seen" in row:  # a count
                row["examples_seen"] = int(round(row["examples_seen"]))
            for cb in self.callbacks:
                cb.on_step(row)
        self.last_row = self.pending[-1][0]
        self.pending.clear()
        self.on_flush(self.last_row)


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

    Validation runs every ``eval_every`` steps (if set) and at the end of each epoch and of training (with
    ``patience`` and ``eval_every``: on that cadence and at the end only). Step rows
    reach the callbacks in order, in groups about a second apart (see ``_StepLog``); evaluation rows at once.
    With ``settings.patience``, training stops once that many evaluations in a row bring no new best of
    ``settings.monitor``, and the model is put back to its best evaluation's weights; the epochs or ``max_steps``
    stay the cap. Either way ``TrainResult.validation`` says where the best step was and whether the curve was
    still rising at the end.
    """
    optimizer = _optimizer(model, settings.learning_rate, settings.weight_decay, accelerator.device)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    # Under `accelerate launch` each process sees its shard of the batches: the schedule and the epochs are counted
    # in the steps each process takes, after sharding.
    steps_per_epoch = len(train_loader)
    total_steps = settings.total_steps(steps_per_epoch)
    scheduler = _scheduler(optimizer, settings, total_steps)
    planned_epochs = settings.epochs if settings.max_steps is None else total_steps / steps_per_epoch
    bar = tqdm(total=total_steps, desc=settings.desc, disable=not accelerator.is_local_main_process, unit="step")
    log = _StepLog(callbacks, on_flush=lambda row: bar.set_postfix(loss=f"{row['train_loss']:.3f}",
                                                                   acc=f"{row['train_accuracy']:.2f}"))
    clock = _PhaseClock()
    stopper = EarlyStopping(patience=settings.patience)
    best_state: dict[str, torch.Tensor] | None = None

    def evaluate(step: int, epoch: float) -> None:
        nonlocal best_state
        log.flush()
        clock.lap("logging")
        if val_loader is None:
            return
        lg, lb = predict_logits_all(accelerator.unwrap_model(model), val_loader, accelerator)
        m = classification_metrics(lg, lb)
        row = {"step": step, "epoch": round(epoch, 4), "examples_seen": int(seen), "elapsed_s": time.perf_counter() - t0,
               "val_loss": m["loss"], "val_accuracy": m["accuracy"], "val_macro_f1": m["macro_f1"]}
        for cb in callbacks:
            cb.on_eval(row)
        if stopper.update(step, m[settings.monitor]) and settings.patience is not None:
            # The best weights so far, on the CPU: restored if later evaluations do not beat them.
            best_state = {k: v.detach().to("cpu", copy=True)
                          for k, v in accelerator.unwrap_model(model).state_dict().items()}
        if log.last_row is not None:
            bar.set_postfix(loss=f"{log.last_row['train_loss']:.3f}", val_acc=f"{m['accuracy']:.3f}")
        model.train()
        clock.lap("evaluation")

    # Examples over all processes (their batches differ in size): a running count on the device, read when rows are.
    step, seen, t0 = 0, torch.zeros((), dtype=torch.long, device=accelerator.device), time.perf_counter()
    last_eval_step = -1
    model.train()
    epoch = 0
    while step < total_steps and not stopper.should_stop:
        clock.lap("logging")
        for b_idx, batch in enumerate(train_loader):
            if step >= total_steps or stopper.should_stop:
                break
            clock.lap("data")
            with accelerator.autocast():
                out, logits = objective(model, batch)
            clock.lap("forward")
            accelerator.backward(out.loss)
            clock.lap("backward")
            if settings.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            clock.lap("optimizer")
            step += 1
            n = torch.tensor(batch["labels"].shape[0], device=seen.device)
            seen = seen + (accelerator.reduce(n, reduction="sum") if accelerator.num_processes > 1 else n)
            known = batch["labels"] != IGNORE_INDEX  # hidden labels (transfer texts) do not count
            hits = (logits.detach().argmax(-1) == batch["labels"]) & known
            # nan when the batch has no known label (0/0), as a mean over an empty selection would be
            acc = hits.sum().float() / known.sum().float()
            row = {"step": step, "epoch": round(epoch + (b_idx + 1) / steps_per_epoch, 4), "batch": b_idx + 1,
                   "learning_rate": scheduler.get_last_lr()[0], "examples_seen": None,
                   "elapsed_s": round(time.perf_counter() - t0, 3)}
            log.add(row, {"train_loss": out.loss, "train_accuracy": acc, **out.parts, "examples_seen": seen})
            bar.update(1)
            if settings.eval_every and step % settings.eval_every == 0:
                evaluate(step, epoch + (b_idx + 1) / steps_per_epoch)
                last_eval_step = step
            clock.lap("logging")
        epoch += 1
        # Early stopping counts evaluations, so they come on one cadence for every model (every `eval_every` steps,
        # and at the end), not also at epoch ends, whose length differs between models.
        on_cadence_only = settings.patience is not None and settings.eval_every and step < total_steps
        if last_eval_step != step and not on_cadence_only:
            evaluate(step, min(epoch, planned_epochs))
            last_eval_step = step
    log.flush()
    bar.close()
    if best_state is not None and stopper.best_step != step:
        accelerator.unwrap_model(model).load_state_dict(best_state)
        logger.debug("%s: best %s %.4f at step %d of %d; those weights are kept", settings.desc, settings.monitor,
                    stopper.best, stopper.best_step, step)
    clock.lap("logging")
    return TrainResult(steps=step, examples_seen=int(seen), elapsed_s=time.perf_counter() - t0,
                       phases={k: round(v, 3) for k, v in clock.seconds.items()},
                       validation=stopper.summary(total_steps, step) if val_loader is not None else None)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AMX or AVX512-BF16), where bf16 autocast speeds training up."""
    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))


def resolve_mixed_precision(mixed_precision: str = "auto", cpu: bool = False) -> str:
    """``auto``: bf16 on GPUs that support it, else fp16 on GPU; bf16 on CPUs with AMX or AVX512-BF16, else none."""
    if mixed_precision != "auto":
        return mixed_precision
    if torch.cuda.is_available() and not cpu:
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "no"


def use_cpu(cpu: bool = False) -> bool:
    """Whether the models run on the CPU: asked for (``--cpu``), or no GPU. Accelerate must be told, or under
    ``accelerate launch`` on a machine without a GPU each process would run alone instead of sharding over gloo."""
    return cpu or not torch.cuda.is_available()


def make_accelerator(mixed_precision: str = "auto", cpu: bool = False) -> Accelerator:
    """An Accelerator for training, with ``resolve_mixed_precision``'s choice (autocast; weights stay fp32).

    Accelerate keeps one process-wide state and refuses a second Accelerator with another precision; the bench
    (and a test session) compare precisions in one process, so that state is reset first. The distributed
    process state is kept.
    """
    from accelerate.state import AcceleratorState

    from accelerate.utils import DataLoaderConfiguration

    precision = resolve_mixed_precision(mixed_precision, cpu)
    # On a GPU, batches come from pinned memory (batching.make_loader) and are copied without blocking the host.
    kwargs = dict(mixed_precision=precision, cpu=use_cpu(cpu),
                  dataloader_config=DataLoaderConfiguration(non_blocking=not use_cpu(cpu)))
    try:
        return Accelerator(**kwargs)
    except ValueError:
        if not AcceleratorState._shared_state:
            raise
        AcceleratorState._reset_state(reset_partial_state=False)
        return Accelerator(**kwargs)
