"""Teacher training speed three ways: the pipeline's loop, the same loop with fixed padding, ``Trainer``.

    training_throughput(run_dir, cfg, splits, tokenizer, BenchSettings(train_steps=20))
    # -> samples/s of each, their ratios, each loader's share of real tokens

Each method trains a fresh copy of the run's teacher (same seed) for ``train_steps`` optimizer steps on the
run's training split, same batch size, learning rate, weight decay and plain AdamW; the first
``TRAIN_WARMUP_STEPS`` steps are left out of the timed window.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from ..runs import model_dir
from .settings import BenchSettings

TRAIN_WARMUP_STEPS = 2  # training steps left out of the timed window (allocator and kernel set-up)


class _StepClock:
    """Pipeline-loop callback: the time and examples seen at the end of every optimizer step."""

    def __init__(self):
        self.marks: list[tuple[float, int]] = []

    def on_step(self, row: dict[str, Any]) -> None:
        self.marks.append((time.perf_counter(), int(row["examples_seen"])))

    def on_eval(self, row: dict[str, Any]) -> None:
        pass


def _timed_skip(steps: int) -> int:
    """Steps left out of the timed window: TRAIN_WARMUP_STEPS, but never all of them."""
    return min(TRAIN_WARMUP_STEPS, steps - 1)


def _window_rate(marks: list[tuple[float, int]], skip: int) -> dict[str, float]:
    """Samples/s between the end of step ``skip`` and the end of the last step."""
    (t0, n0), (t1, n1) = marks[skip - 1], marks[-1]
    return {"samples_per_s": (n1 - n0) / (t1 - t0), "timed_steps": len(marks) - skip, "timed_seconds": t1 - t0}


def _pipeline_rate(model, loader, steps: int, lr: float, weight_decay: float, device: str) -> dict[str, float]:
    """The pipeline's own training loop (``training.train``) for ``steps`` steps over ``loader``."""
    from ..training import LoopSettings, cross_entropy_objective, make_accelerator, train

    clock = _StepClock()
    settings = LoopSettings(max_steps=steps, learning_rate=lr, weight_decay=weight_decay, desc="train (pipeline loop)")
    train(model, loader, None, cross_entropy_objective, settings, make_accelerator("no", cpu=device == "cpu"), [clock])
    return _window_rate(clock.marks, _timed_skip(steps))


def _trainer_rate(model, dataset, tokenizer, steps: int, batch_size: int, lr: float, weight_decay: float,
                  seed: int, device: str) -> dict[str, Any]:
    """transformers' Trainer with its defaults, except what makes the comparison fair or quiet: batch size,
    learning rate, weight decay and plain AdamW as the pipeline uses, a step budget, no saving, no reports."""
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    sizes: list[int] = []
    pad = DataCollatorWithPadding(tokenizer)  # Trainer's default collator for a tokenizer

    def counting_collator(features):
        sizes.append(len(features))
        return pad(features)

    marks: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=batch_size, max_steps=steps, learning_rate=lr,
            weight_decay=weight_decay, optim="adamw_torch", seed=seed, save_strategy="no", report_to="none",
            use_cpu=device == "cpu", disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                          data_collator=counting_collator, callbacks=[Clock()])
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        trainer.train()
    skip = _timed_skip(steps)
    seconds = marks[-1] - marks[skip - 1]
    return {"samples_per_s": sum(sizes[skip:steps]) / seconds, "timed_steps": len(marks) - skip,
            "timed_seconds": seconds, "trainer_args": {"optim": "adamw_torch", "train_sampling_strategy":
                                                      args.train_sampling_strategy, "collator": "DataCollatorWithPadding"}}


def training_throughput(run_dir: Path, cfg, splits, tokenizer, settings: BenchSettings,
                        start: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Teacher training samples/s three ways, on the run's training split (see the module docstring).

    Args:
        cfg: the run's ``RunConfig`` (seed, learning rate, weight decay, max_length, batching).
        splits: the run's ``data.Splits``; only ``train`` is used.
        start: called with a message as each method starts (the bench's stage bar).

    Returns:
        The ``training_throughput`` section of bench.json.
    """
    from accelerate.utils import set_seed
    from datasets import DatasetDict

    from ..batching import make_loader, padding_efficiency, tokenize_splits
    from ..models import load_trained

    steps, bs, seed, max_length = settings.train_steps, settings.batch_size, cfg.train.seed, cfg.data.max_length
    lr, wd = cfg.train.learning_rate, cfg.train.weight_decay
    ds = tokenize_splits(DatasetDict(train=splits.train), tokenizer, max_length)["train"]

    def fresh_teacher():
        set_seed(seed)
        return load_trained(model_dir(run_dir, "teacher"), attentions=True)

    pipeline_dl = make_loader(ds, tokenizer, bs, shuffle=True, seed=seed, group_by_length=cfg.data.group_by_length)
    fixed_dl = make_loader(ds, tokenizer, bs, shuffle=True, seed=seed, group_by_length=False, pad_to=max_length)
    random_dl = make_loader(ds, tokenizer, bs, shuffle=True, seed=seed, group_by_length=False)  # as Trainer batches
    out: dict[str, Any] = {
        "model": "teacher", "steps": steps, "timed_steps": steps - _timed_skip(steps),
        "batch_size": bs, "max_length": max_length, "learning_rate": lr, "train_rows": len(ds),
        "pipeline_batching": "length-grouped" if cfg.data.group_by_length else "random",
        "padding_efficiency": {"pipeline": padding_efficiency(pipeline_dl), "fixed_padding": padding_efficiency(fixed_dl),
                               "trainer": padding_efficiency(random_dl)},
    }
    start("training: pipeline")
    pipe = _pipeline_rate(fresh_teacher(), pipeline_dl, steps, lr, wd, settings.device)
    start("training: fixed padding")
    fixed = _pipeline_rate(fresh_teacher(), fixed_dl, steps, lr, wd, settings.device)
    start("training: Trainer")
    trainer = _trainer_rate(fresh_teacher(), ds, tokenizer, steps, bs, lr, wd, seed, settings.device)
    out.update({
        "pipeline_samples_per_s": pipe["samples_per_s"], "fixed_padding_samples_per_s": fixed["samples_per_s"],
        "trainer_samples_per_s": trainer["samples_per_s"], "trainer_args": trainer["trainer_args"],
        "timed_seconds": {"pipeline": pipe["timed_seconds"], "fixed_padding": fixed["timed_seconds"],
                          "trainer": trainer["timed_seconds"]},
    })
    out["pipeline_vs_fixed_padding"] = out["pipeline_samples_per_s"] / out["fixed_padding_samples_per_s"]
    out["pipeline_vs_trainer"] = out["pipeline_samples_per_s"] / out["trainer_samples_per_s"]
    return out
