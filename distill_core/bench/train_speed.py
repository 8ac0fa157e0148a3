"""Teacher training speed several ways: the pipeline's loop (at the run's precision, and in fp32 when that is
mixed), the same loop with fixed padding, and ``Trainer`` with its defaults.

    training_throughput(run_dir, cfg, splits, tokenizer, BenchSettings(train_steps=20))
    # -> samples/s and achieved GFLOP/s of each, their share of the machine's matmul peak, ratios, real-token shares

Each method trains a fresh copy of the run's teacher (same seed) for ``train_steps`` optimizer steps on the
run's training split, same batch size, learning rate and weight decay, on the same device (``--device``: the CPU,
or one GPU for every method, ``Trainer`` included); the first ``TRAIN_WARMUP_STEPS`` steps are left out of the timed
window, whose ends wait for the device to finish its queued work (``measure.sync``). Achieved GFLOP/s counts the work
done, padding included: a training step is about three forward passes (the backward pass costs about two), so
3 x batch x ``forward_flops(padded length)``, read against the matmul peak of the device that trained.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from ..runs import model_dir
from .settings import BenchSettings

TRAIN_WARMUP_STEPS = 2  # training steps left out of the timed window (allocator and kernel set-up)


def _timed_skip(steps: int, warmup: int = TRAIN_WARMUP_STEPS) -> int:
    """Steps left out of the timed window: ``warmup``, but never all of them."""
    return max(1, min(warmup, steps - 1))


def _window_gflops(config, shapes: list[tuple[int, int]], skip: int, steps: int, seconds: float) -> float:
    """Achieved training GFLOP/s over steps ``skip + 1 .. steps`` (see the module docstring)."""
    from .measure import forward_flops

    flops = sum(3 * b * forward_flops(config, length) for b, length in shapes[skip:steps])
    return flops / seconds / 1e9


def pipeline_rate(model, loader, steps: int, lr: float, weight_decay: float, device: str, precision: str = "no",
                  warmup: int = TRAIN_WARMUP_STEPS, keep: list[dict] | None = None) -> dict[str, Any]:
    """The pipeline's own training loop (``loop.train``) for ``steps`` steps over ``loader``, timed after ``warmup``.

    The timed window opens as step ``warmup + 1`` starts, once the device has finished the steps before it, and
    closes when the device has finished the last step (``measure.sync``: a GPU runs the queued kernels after the
    loop has moved on). It holds one batch fetch per step, as training does. Batch shapes are read where the loop
    hands each batch to the objective: on a GPU the loader collates in worker processes (``batching.make_loader``).

    Returns:
        samples/s, timed steps and seconds, achieved GFLOP/s, the loop's phase split (``phases_s``, host time per
        phase of the whole call), and the device the model trained on. ``keep``, when given, receives the batches as
        the objective got them (on the device).
    """
    from ..train.loop import LoopSettings, cross_entropy_objective, make_accelerator, train
    from .measure import sync

    shapes: list[tuple[int, int]] = []
    skip = _timed_skip(steps, warmup)
    accelerator = make_accelerator(precision, cpu=device == "cpu")
    window = {"calls": 0}

    def timed_objective(m, batch):
        window["calls"] += 1
        if window["calls"] == skip + 1:  # the first timed step: its batch is fetched, the steps before are done
            sync(accelerator.device)
            window["t0"] = time.perf_counter()
        shapes.append(tuple(batch["input_ids"].shape))  # (B, T): host metadata, no wait for the device
        if keep is not None:
            keep.append(batch)
        return cross_entropy_objective(m, batch)

    settings = LoopSettings(max_steps=steps, learning_rate=lr, weight_decay=weight_decay,
                            desc=f"train (pipeline loop, {precision})")
    config = model.config
    result = train(model, loader, None, timed_objective, settings, accelerator)
    sync(accelerator.device)
    seconds = time.perf_counter() - window["t0"]
    return {"samples_per_s": sum(b for b, _ in shapes[skip:steps]) / seconds, "timed_steps": steps - skip,
            "timed_seconds": seconds, "gflops_per_s": _window_gflops(config, shapes, skip, steps, seconds),
            "phases_s": result.phases, "device": str(next(model.parameters()).device)}


def _trainer_rate(model, dataset, tokenizer, steps: int, batch_size: int, lr: float, weight_decay: float,
                  seed: int, device: str) -> dict[str, Any]:
    """transformers' Trainer with its defaults, except what makes the comparison fair or quiet: batch size,
    learning rate, weight decay and plain AdamW as the pipeline uses, a step budget, no saving, no reports."""
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from .measure import sync

    shapes: list[tuple[int, int]] = []
    pad = DataCollatorWithPadding(tokenizer)  # Trainer's default collator for a tokenizer

    def counting_collator(features):
        batch = pad(features)
        shapes.append(tuple(batch["input_ids"].shape))
        return batch

    marks: list[float] = []
    skip = _timed_skip(steps)

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (skip, steps):  # the window's ends: wait for the device's queued work
                sync(args.device)
            marks.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=batch_size, max_steps=steps, learning_rate=lr,
            weight_decay=weight_decay, optim="adamw_torch", seed=seed, save_strategy="no", report_to="none",
            use_cpu=device == "cpu", disable_tqdm=True,
        )
        if args.n_gpu > 1:
            # One GPU, as the pipeline's loop: with several, Trainer would wrap the model in DataParallel and
            # multiply the batch by their number.
            args._n_gpu = 1
        trainer = Trainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                          data_collator=counting_collator, callbacks=[Clock()])
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        trainer.train()
    seconds = marks[-1] - marks[skip - 1]
    return {"samples_per_s": sum(b for b, _ in shapes[skip:steps]) / seconds, "timed_steps": len(marks) - skip,
            "timed_seconds": seconds, "gflops_per_s": _window_gflops(model.config, shapes, skip, steps, seconds),
            "mixed_precision": "no", "device": str(next(model.parameters()).device),
            "trainer_args": {"optim": "adamw_torch", "train_sampling_strategy": args.train_sampling_strategy,
                             "collator": "DataCollatorWithPadding", "train_batch_size": args.train_batch_size}}


def training_throughput(run_dir: Path, cfg, splits, tokenizer, settings: BenchSettings,
                        start: Callable[[str], None] = lambda message: None,
                        peak_gflops: dict[str, float] | None = None) -> dict[str, Any]:
    """Teacher training samples/s and GFLOP/s several ways, on the run's training split (see the module docstring).

    Args:
        cfg: the run's ``RunConfig`` (seed, learning rate, weight decay, max_length, batching, mixed precision).
        peak_gflops: the training device's matmul rate per precision (``{"fp32", "bf16", "fp16"}``, as
            ``measure.matmul_peaks`` gives them), for the share of peak.
        splits: the run's ``data.Splits``; only ``train`` is used.
        start: called with a message as each method starts (the bench's stage bar).

    Returns:
        The ``training_throughput`` section of bench.json.
    """
    from accelerate.utils import set_seed
    from datasets import DatasetDict

    from ..train.batching import make_loader, padding_efficiency, tokenize_splits
    from ..train.models import load_trained
    from ..train.loop import resolve_mixed_precision

    peak_gflops = peak_gflops or {}

    steps, bs, seed, max_length = settings.train_steps, settings.batch_size, cfg.train.seed, cfg.data.max_length
    lr, wd = cfg.train.learning_rate, cfg.train.weight_decay
    ds = tokenize_splits(DatasetDict(train=splits.train), tokenizer, max_length, cfg.data.truncation)["train"]

    def fresh_teacher():
        set_seed(seed)
        return load_trained(model_dir(run_dir, "teacher"), attentions=True)

    # The pipeline's loaders as it makes them on this device (on a GPU: collated ahead in workers, pinned memory).
    pipeline_dl = make_loader(ds, tokenizer, bs, shuffle=True, seed=seed, group_by_length=cfg.data.group_by_length,
                              device_type=settings.device)
    fixed_dl = make_loader(ds, tokenizer, bs, shuffle=True, seed=seed, group_by_length=False, pad_to=max_length,
                           device_type=settings.device)
    random_dl = make_loader(ds, tokenizer, bs, shuffle=True, seed=seed, group_by_length=False)  # as Trainer batches
    out: dict[str, Any] = {
        "model": "teacher", "steps": steps, "timed_steps": steps - _timed_skip(steps),
        "batch_size": bs, "max_length": max_length, "learning_rate": lr, "train_rows": len(ds),
        "pipeline_batching": "length-grouped" if cfg.data.group_by_length else "random",
        "padding_efficiency": {"pipeline": padding_efficiency(pipeline_dl), "fixed_padding": padding_efficiency(fixed_dl),
                               "trainer": padding_efficiency(random_dl)},
    }
    precision = resolve_mixed_precision(cfg.train.mixed_precision, cpu=settings.device == "cpu")
    peaks = {"no": peak_gflops.get("fp32"), "bf16": peak_gflops.get("bf16"), "fp16": peak_gflops.get("fp16")}
    methods: dict[str, dict[str, Any]] = {}
    start(f"training: pipeline ({precision})")
    methods["pipeline"] = {**pipeline_rate(fresh_teacher(), pipeline_dl, steps, lr, wd, settings.device, precision),
                           "mixed_precision": precision}
    if precision != "no":
        start("training: pipeline (fp32)")
        methods["pipeline_fp32"] = {**pipeline_rate(fresh_teacher(), pipeline_dl, steps, lr, wd, settings.device),
                                    "mixed_precision": "no"}
    start("training: fixed padding")
    methods["fixed_padding"] = {**pipeline_rate(fresh_teacher(), fixed_dl, steps, lr, wd, settings.device, precision),
                                "mixed_precision": precision}
    start("training: Trainer")
    trainer = _trainer_rate(fresh_teacher(), ds, tokenizer, steps, bs, lr, wd, seed, settings.device)
    methods["trainer"] = {k: v for k, v in trainer.items() if k != "trainer_args"}
    for m in methods.values():
        peak = peaks.get(m["mixed_precision"])
        m["peak_share"] = m["gflops_per_s"] / peak if peak else None
    devices = sorted({m["device"] for m in methods.values()})
    if len(devices) > 1 or trainer["trainer_args"]["train_batch_size"] != bs:
        raise RuntimeError(f"The training comparison ran on {devices} at Trainer batch "
                           f"{trainer['trainer_args']['train_batch_size']} (pipeline {bs}): its figures would not compare")
    out.update({
        "device": devices[0], "device_name": _device_name(devices[0]),
        "mixed_precision": precision, "methods": methods, "peak_gflops": peak_gflops,
        "pipeline_samples_per_s": methods["pipeline"]["samples_per_s"],
        "fixed_padding_samples_per_s": methods["fixed_padding"]["samples_per_s"],
        "trainer_samples_per_s": methods["trainer"]["samples_per_s"], "trainer_args": trainer["trainer_args"],
        "timed_seconds": {k: m["timed_seconds"] for k, m in methods.items()},
    })
    out["pipeline_vs_fixed_padding"] = out["pipeline_samples_per_s"] / out["fixed_padding_samples_per_s"]
    out["pipeline_vs_trainer"] = out["pipeline_samples_per_s"] / out["trainer_samples_per_s"]
    return out


def _device_name(device: str) -> str:
    """``cpu``, or ``cuda:0 (NVIDIA H200)``."""
    import torch

    d = torch.device(device)
    return f"{device} ({torch.cuda.get_device_name(d)})" if d.type == "cuda" else device
