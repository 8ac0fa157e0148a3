"""The ``prune`` command: magnitude pruning of one of a run's models, and what the zeros buy.

    python -m distill_core prune RUN --model student --amount 0.1,0.3,0.5,0.7,0.9
    python -m distill_core prune RUN --model student --amount 0.3,0.5 --save 0.5   # also keeps RUN/student_pruned50/

    result = run_prune("RUN", PruneSettings(model="student", amounts=[0.5]))

For each amount (0, the dense model, is always measured first as the reference) the model is loaded fresh from
the run, pruned and the pruning made permanent, then measured: the sparsity reached, accuracy and macro-F1 on
the validation and test splits the run was trained on, batch-1 latency on CPU (tokenisation included, a few test
texts), the size of its ``model.safetensors`` as written and compressed (zlib, as ``gzip -6``), and its
parameters (all, and those not zero). The figures go to the run's ``pruning_<model>.json`` (``runs.pruning_path``).

What is pruned: the weight matrix of every ``nn.Linear`` and every ``nn.LSTM``'s ``weight_ih_l*`` and
``weight_hh_l*`` (both directions of a bidirectional one). Embeddings, biases and LayerNorms are left whole: they
are a small share of the multiply-adds, and zeroed embedding rows would erase whole words.

How: ``torch.nn.utils.prune.l1_unstructured`` on each tensor by itself (the same fraction of every matrix, the
smallest weights by magnitude), then ``prune.remove`` to make it permanent. Per-layer rather than
``global_unstructured`` because one global threshold compares magnitudes across matrices of different scales
(attention projections, feed-forward layers, the classifier head, LSTM gates) and at high amounts can empty a
small layer such as the head outright, while per-layer pruning never does; it is also what the earlier
reports did (L1 unstructured on LSTM and Linear layers), so their figures compare with these. Either way
the sparsity over the pruned weights equals the amount up to rounding (one weight per tensor at most).

Unstructured zeros are still stored and multiplied: a dense CPU kernel does the same work, and the file
holds the same number of floats. What they buy is compressibility; the command's figures show how much.
"""

from __future__ import annotations

import logging
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass, field
from itertools import cycle
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.nn.utils import prune as torch_prune

from ..config import MODEL_KINDS
from ..errors import ConfigError, RunError
from ..files import atomic_dir, check_writable, read_json, write_json_atomic
from ..runs import (
    CONFIG_FILE, MODEL_WEIGHTS, has_model, load_run_config, model_dir, pruned_model_dir, pruning_path, resolve_run,
)

logger = logging.getLogger(__name__)

METHOD = "l1_unstructured, per tensor"
COMPRESSION = "zlib level 6 (as gzip -6)"
ROW_FIELDS = ("amount", "sparsity", "parameters", "nonzero_parameters", "val_accuracy", "test_accuracy",
              "latency_ms", "size_bytes", "compressed_bytes")


@dataclass
class PruneSettings:
    """What ``prune`` measures; every field is a flag of ``prune``."""

    model: str = "student"
    amounts: list[float] = field(default_factory=lambda: [0.1, 0.3, 0.5, 0.7, 0.9])
    save: float | None = None  # keep the model pruned at this amount as <model>_pruned<NN>/
    texts: int = 8  # test texts timed at batch 1
    repeats: int = 40  # timed batch-1 calls per amount (cycling over the texts)
    warmup: int = 5

    def validate(self) -> "PruneSettings":
        if self.model not in MODEL_KINDS:
            raise ConfigError(f"--model {self.model!r} is not a model of a run: use one of {', '.join(MODEL_KINDS)}")
        bad = [a for a in self.amounts if not 0.0 <= a < 1.0]
        if not self.amounts or bad:
            raise ConfigError(f"--amount {','.join(f'{a:g}' for a in self.amounts) or '(none)'} is out of range: "
                              "fractions of the weights to zero, at least 0 and below 1, e.g. 0.1,0.3,0.5,0.7,0.9")
        if self.save is not None and not 0.0 < self.save < 1.0:
            raise ConfigError(f"--save {self.save:g} is out of range: the amount whose pruned model to keep, "
                              "above 0 and below 1, e.g. 0.5")
        for flag, value, low in (("--texts", self.texts, 1), ("--repeats", self.repeats, 1), ("--warmup", self.warmup, 0)):
            if value < low:
                raise ConfigError(f"{flag} {value} is out of range: at least {low}")
        return self

    def all_amounts(self) -> list[float]:
        """The amounts measured, in order: 0 (the dense reference), the ones asked for, and the one to save."""
        asked = [0.0, *self.amounts, *([self.save] if self.save is not None else [])]
        return sorted({round(float(a), 6) for a in asked})


# ----------------------------------------------------------------------------- pruning (pure, on any module)


def prunable_weights(model: torch.nn.Module) -> list[tuple[torch.nn.Module, str]]:
    """``(module, parameter name)`` of every weight ``prune`` zeroes: each ``nn.Linear``'s ``weight`` and each
    ``nn.LSTM``'s ``weight_ih_l*`` / ``weight_hh_l*`` (``_reverse`` ones included). A tensor shared by two
    modules (tied weights) is listed once."""
    seen: set[int] = set()
    out = []
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            names = ["weight"]
        elif isinstance(module, torch.nn.LSTM):
            names = [n for n, _ in module.named_parameters(recurse=False) if n.startswith(("weight_ih_l", "weight_hh_l"))]
        else:
            continue
        for name in names:
            p = getattr(module, name)
            if id(p) not in seen:
                seen.add(id(p))
                out.append((module, name))
    return out


def prune_model(model: torch.nn.Module, amount: float) -> list[tuple[torch.nn.Module, str]]:
    """Zero the ``amount`` smallest-magnitude share of each prunable weight of ``model``, in place, permanently.

    Returns:
        the ``(module, name)`` pairs pruned (``prunable_weights``); at amount 0 nothing is touched.
    """
    targets = prunable_weights(model)
    if amount > 0:
        for module, name in targets:
            torch_prune.l1_unstructured(module, name, amount=float(amount))
            torch_prune.remove(module, name)  # the mask is folded into the weight: a plain parameter again
    return targets


def sparsity(targets: list[tuple[torch.nn.Module, str]]) -> dict[str, int | float]:
    """Zeros among the pruned weights: ``{"zeros", "prunable", "sparsity"}`` (sparsity = zeros / prunable)."""
    zeros = sum(int((getattr(m, n) == 0).sum()) for m, n in targets)
    total = sum(getattr(m, n).numel() for m, n in targets)
    return {"zeros": zeros, "prunable": total, "sparsity": zeros / max(total, 1)}


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """All parameters of ``model`` and those not zero."""
    params = list(model.parameters())
    return {"parameters": sum(p.numel() for p in params),
            "nonzero_parameters": sum(int(torch.count_nonzero(p)) for p in params)}


def file_sizes(path: Path, level: int = 6) -> dict[str, int]:
    """Bytes of a file as written, and compressed with zlib at ``level`` (streamed, 4 MiB at a time)."""
    comp, compressed = zlib.compressobj(level), 0
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            compressed += len(comp.compress(chunk))
    compressed += len(comp.flush())
    return {"size_bytes": Path(path).stat().st_size, "compressed_bytes": compressed}


# ----------------------------------------------------------------------------- the command


def load_pruning(run_dir: Path, kind: str) -> dict[str, Any] | None:
    """A run's ``pruning_<kind>.json`` checked against its shape, or None when ``prune`` has not been run for it."""
    path = pruning_path(run_dir, kind)
    return check_pruning(read_json(path), path.name) if path.is_file() else None


def check_pruning(d: Any, where: str = "pruning file") -> dict[str, Any]:
    """``d`` if it has the shape ``run_prune`` writes; else a RunError naming the part and the fix."""
    fix = "re-create it with `python -m distill_core prune RUN`"
    if not isinstance(d, dict) or not isinstance(d.get("rows"), list) or not d["rows"]:
        raise RunError(f"{where} does not have the expected shape (no 'rows' list); {fix}")
    for i, row in enumerate(d["rows"]):
        missing = [k for k in ROW_FIELDS if not isinstance(row, dict) or row.get(k) is None]
        if missing:
            raise RunError(f"{where} does not have the expected shape (rows[{i}] lacks {', '.join(missing)}); {fix}")
    return d


def run_prune(run: str | Path, settings: PruneSettings | None = None, root: Path | None = None,
              progress: Callable[[float, str], None] | None = None) -> dict[str, Any]:
    """Prune one model of a run at each amount, measure every pruned copy, write ``pruning_<model>.json``.

    Args:
        run: run id (under ``root``) or folder.
        settings: model, amounts, which amount to keep (``save``), and the latency timing.
        progress: called with (fraction, message) after each amount.

    Returns:
        the document written: ``{"model", "when", "settings", "validation_rows", "test_rows", "rows": [...],
        "saved"}``, one row per amount with ``sparsity``, ``val_accuracy``/``val_macro_f1``,
        ``test_accuracy``/``test_macro_f1``, ``test_agreement_with_dense``, ``latency_ms`` (p50, p95, mean, min,
        runs), ``size_bytes``, ``compressed_bytes``, ``parameters``, ``nonzero_parameters``.

    Raises:
        ConfigError: a setting out of range. RunError: no such run, or the run has no such model.
    """
    from datasets import DatasetDict
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    from .batching import make_loader, tokenize_splits
    from ..bench.measure import time_calls
    from ..train.data import run_splits
    from ..ship.inference import TextClassifier
    from .models import load_trained
    from .loop import accuracy_f1, predict_logits
    from ..devices import place, scoring_device

    settings = (settings or PruneSettings()).validate()
    run_dir = resolve_run(run, root)
    check_writable(run_dir)
    kind = settings.model
    if not has_model(run_dir, kind):
        have = [k for k in MODEL_KINDS if has_model(run_dir, k)]
        raise RunError(f"Run {run_dir.name} has no {kind} model (no complete {kind}/ folder); "
                       + (f"prune one it has: --model {' or --model '.join(have)}" if have
                          else "train the run first with `python -m distill_core train`"))
    saved_cfg = read_json(run_dir / CONFIG_FILE)
    cfg = load_run_config(run_dir, saved_cfg)
    say = progress or (lambda f, m: None)
    say(0.0, "Loading the validation and test splits the run was trained on…")
    splits = run_splits(run_dir, saved_cfg)
    tokenizer = AutoTokenizer.from_pretrained(model_dir(run_dir, kind))
    tok = tokenize_splits(DatasetDict(validation=splits.validation, test=splits.test), tokenizer, cfg.data.max_length,
                          cfg.data.truncation)
    loaders = {s: make_loader(tok[s], tokenizer, cfg.train.eval_batch_size, shuffle=False) for s in ("validation", "test")}
    labels = {s: np.asarray(list(getattr(splits, s)["label"])) for s in ("validation", "test")}
    latency_texts = list(splits.test["text"])[: settings.texts]
    if not latency_texts:
        raise RunError(f"Run {run_dir.name} has an empty test split: there is nothing to evaluate the pruned models on")

    amounts = settings.all_amounts()
    logger.info("prune %s of %s: amounts %s (%s), %d validation and %d test texts, batch-1 latency on CPU with %d "
                "torch threads", kind, run_dir.name, ", ".join(f"{a:g}" for a in amounts), METHOD,
                len(labels["validation"]), len(labels["test"]), torch.get_num_threads())
    device = scoring_device()  # accuracy on the scoring device (fp32); latency and sizes on the CPU
    rows, saved, dense_pred = [], None, None
    with tempfile.TemporaryDirectory() as scratch:
        for i, amount in enumerate(tqdm(amounts, desc=f"prune {kind}", unit="amount")):
            model = _load(load_trained, run_dir, kind)
            targets = prune_model(model, amount)
            row: dict[str, Any] = {"amount": amount, **sparsity(targets), **parameter_counts(model)}
            model, _ = place(model, device)
            for split, short in (("validation", "val"), ("test", "test")):
                logits, lb = predict_logits(model, loaders[split])
                assert (lb == labels[split]).all(), f"{split} loader order differs from the split order"
                pred = logits.argmax(-1)
                row.update({f"{short}_{k}": v for k, v in accuracy_f1(labels[split], pred).items()})
            dense_pred = pred if dense_pred is None else dense_pred  # amount 0 comes first
            row["test_agreement_with_dense"] = float((pred == dense_pred).mean())
            model = model.to("cpu")
            clf = TextClassifier(model, tokenizer, max_length=cfg.data.max_length)
            texts = cycle(latency_texts)
            row["latency_ms"] = time_calls({"m": lambda: clf.predict_proba([next(texts)])},
                                           repeats=settings.repeats, warmup=settings.warmup)["m"]
            folder = Path(scratch) / f"{amount:g}"
            model.config.distill_pruning = {"from": kind, "amount": amount, "method": METHOD,
                                            "sparsity": row["sparsity"]}
            model.save_pretrained(folder, safe_serialization=True)
            row.update(file_sizes(folder / MODEL_WEIGHTS))
            if settings.save is not None and abs(amount - settings.save) < 1e-9:
                saved = _save(model, tokenizer, pruned_model_dir(run_dir, kind, amount), amount, row["sparsity"])
            rows.append(row)
            logger.info("amount %.2f: sparsity %.4f, validation accuracy %.4f, test accuracy %.4f, p50 %.2f ms, "
                        "%.2f MB (%.2f MB compressed)", amount, row["sparsity"], row["val_accuracy"],
                        row["test_accuracy"], row["latency_ms"]["p50"], row["size_bytes"] / 2**20,
                        row["compressed_bytes"] / 2**20)
            say((i + 1) / len(amounts), f"amount {amount:g} measured")
            del clf, model
    result = {
        "model": kind,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "settings": {**asdict(settings), "amounts": amounts, "method": METHOD, "compression": COMPRESSION,
                     "pruned": "the weight of every nn.Linear; weight_ih_l*/weight_hh_l* of every nn.LSTM",
                     "device": "cpu", "scored_on": str(device), "torch_threads": torch.get_num_threads(), "max_length": cfg.data.max_length},
        "validation_rows": len(labels["validation"]),
        "test_rows": len(labels["test"]),
        "rows": rows,
        "saved": saved,
    }
    write_json_atomic(pruning_path(run_dir, kind), result)
    return result


def _load(load_trained, run_dir: Path, kind: str) -> torch.nn.Module:
    try:
        return load_trained(model_dir(run_dir, kind), attentions=False).to("cpu").eval()
    except Exception as e:  # a folder that looked whole but does not load: from_pretrained raises many types
        raise RunError(f"The {kind} model in {model_dir(run_dir, kind)} could not be loaded ({type(e).__name__}: "
                       f"{str(e).splitlines()[0][:200]}); re-train it") from e


def _save(model, tokenizer, folder: Path, amount: float, reached: float) -> dict[str, Any]:
    """Keep a pruned model in the run (``save_pretrained``: safetensors, config, tokenizer), written whole."""
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    logger.info("saved the model pruned at %g (sparsity %.4f) to %s", amount, reached, folder)
    return {"amount": amount, "sparsity": reached, "folder": folder.name}
