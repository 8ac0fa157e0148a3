"""Calibration: does a model's confidence match how often it is right? Metrics, reliability bins, and one
temperature per model fitted on the validation split and stored in the run.

    ece = expected_calibration_error(probs, labels)     # (N, C), (N,) -> float; 15 equal-width confidence bins
    bins = reliability_bins(probs, labels)              # one row per bin: confidence, accuracy, count, gap
    t = fit_temperature(val_logits, val_labels)         # one scalar, LBFGS on the NLL
    probs = apply_temperature(logits, t)                # (N, C) calibrated probabilities
    report = calibrate_run(run_dir)                     # every model -> calibration.json; returns the document
    report = read_calibration(run_dir)                  # that document checked against its shape, or None

Temperature scaling (Guo et al. 2017) divides the logits by one scalar ``T``: ``T > 1`` softens an over-confident
model, ``T < 1`` sharpens an under-confident one; the predicted class, hence accuracy, never changes. Test
"logits" are read back from ``predictions.parquet`` as log-probabilities: they differ from the logits by one
constant per row, which softmax ignores, so scaling them is exactly scaling the logits.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from ..config import MODEL_KINDS
from ..devices import place, scoring_device
from ..errors import DataError, RunError
from ..files import read_json, write_json_atomic
from ..runs import CALIBRATION_FILE, PREDICTIONS_FILE, has_model, model_dir

logger = logging.getLogger(__name__)

N_BINS = 15
EPS = 1e-12
T_RANGE = (0.05, 20.0)  # a fitted temperature is clamped here: outside it the validation split is degenerate
METRICS = ("accuracy", "mean_confidence", "ece", "brier", "nll")

Progress = Callable[[float, str], None]  # (fraction 0..1, message)


# ----------------------------------------------------------------------------- metrics (pure)


def check_probs(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate class probabilities ``(N, C)`` and true labels ``(N,)``; return them as float64 / int64 arrays.

    Raises:
        ValueError: wrong shapes, rows that are not distributions, or labels out of range; the message says
            what was expected.
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    if p.ndim != 2 or y.ndim != 1 or len(p) != len(y):
        raise ValueError(f"probs must be (N, C) and labels (N,), got {p.shape} and {y.shape}")
    if len(p) and not np.allclose(p.sum(-1), 1.0, atol=1e-3):
        raise ValueError("each row of probs must sum to 1 (pass softmax probabilities, not logits)")
    if len(y) and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels must be class ids 0..{p.shape[1] - 1}, got {y.min()}..{y.max()}")
    return p, y


def bin_index(confidence: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """(N,) bin of each confidence: bin m holds ``(m/M, (m+1)/M]``, with 0 in the first bin (Guo et al.)."""
    return np.clip(np.ceil(np.asarray(confidence) * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> pd.DataFrame:
    """One row per equal-width confidence bin: its range, how many predictions, their mean confidence and
    how often they were right (NaN for an empty bin), and ``gap = accuracy - confidence``.

    Args:
        probs: (N, C) probabilities. labels: (N,) true class ids.
    """
    p, y = check_probs(probs, labels)
    conf = p.max(-1)  # (N,)
    correct = (p.argmax(-1) == y).astype(np.float64)  # (N,)
    b = bin_index(conf, n_bins)
    count = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(b, weights=conf, minlength=n_bins) / count
        acc = np.bincount(b, weights=correct, minlength=n_bins) / count
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame({"bin": np.arange(n_bins), "lower": edges[:-1], "upper": edges[1:], "count": count,
                         "confidence": mean_conf, "accuracy": acc, "gap": acc - mean_conf})


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> float:
    """ECE: the count-weighted mean of ``|accuracy - confidence|`` over equal-width bins of top-class confidence.

    0 for a calibrated model; at most 1. Args: probs (N, C), labels (N,).
    """
    bins = reliability_bins(probs, labels, n_bins)
    filled = bins[bins["count"] > 0]
    n = int(filled["count"].sum())
    return float((filled["count"] * filled["gap"].abs()).sum() / n) if n else float("nan")


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score: mean over texts of ``sum_c (p_c - [c == y])^2``; 0 is perfect, 2 the worst."""
    p, y = check_probs(probs, labels)
    onehot = np.eye(p.shape[1])[y]  # (N, C)
    return float(((p - onehot) ** 2).sum(-1).mean())


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean ``-log p(true class)`` in nats (what cross-entropy training minimises)."""
    p, y = check_probs(probs, labels)
    return float(-np.log(np.clip(p[np.arange(len(y)), y], EPS, 1.0)).mean())


def calibration_metrics(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> dict[str, float]:
    """Accuracy, mean confidence, ECE, Brier score and NLL of probabilities (N, C) against labels (N,)."""
    p, y = check_probs(probs, labels)
    return {"accuracy": float((p.argmax(-1) == y).mean()), "mean_confidence": float(p.max(-1).mean()),
            "ece": expected_calibration_error(p, y, n_bins), "brier": brier_score(p, y),
            "nll": negative_log_likelihood(p, y)}


# ----------------------------------------------------------------------------- temperature scaling (pure)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def logits_from_probs(probs: np.ndarray) -> np.ndarray:
    """(N, C) log-probabilities: the logits up to one constant per row, which softmax (and scaling) ignore."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), EPS, 1.0))


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """(N, C) probabilities of ``logits / temperature``."""
    return softmax(np.asarray(logits, dtype=np.float64) / float(temperature))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 200) -> float:
    """The temperature ``T`` minimising the NLL of ``softmax(logits / T)`` on held-out (validation) data.

    LBFGS over ``log T`` (so ``T`` stays positive), from ``T = 1``; the result is clamped to ``T_RANGE``.

    Args:
        logits: (N, C) logits (or log-probabilities). labels: (N,) class ids.

    Raises:
        ValueError: no rows, or shapes that do not match.
    """
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    y = torch.as_tensor(np.asarray(labels).astype(np.int64))
    if z.ndim != 2 or y.shape != (len(z),) or len(z) == 0:
        raise ValueError(f"logits must be (N, C) with N > 0 and labels (N,), got {tuple(z.shape)} and {tuple(y.shape)}")
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    return float(min(max(t, T_RANGE[0]), T_RANGE[1])) if math.isfinite(t) else 1.0


def calibrate(val_logits: np.ndarray, val_labels: np.ndarray, test_logits: np.ndarray, test_labels: np.ndarray,
              n_bins: int = N_BINS) -> dict[str, Any]:
    """Fit ``T`` on validation and measure the test split before and after: ``{"temperature", "before", "after"}``.

    Args:
        val_logits: (Nv, C). val_labels: (Nv,). test_logits: (Nt, C). test_labels: (Nt,).
    """
    t = fit_temperature(val_logits, val_labels)
    return {"temperature": t,
            "before": calibration_metrics(apply_temperature(test_logits, 1.0), test_labels, n_bins),
            "after": calibration_metrics(apply_temperature(test_logits, t), test_labels, n_bins)}


# ----------------------------------------------------------------------------- stored in the run


def split_logits(run_dir: Path, kind: str, texts: list[str], labels: list[int], max_length: int,
                 batch_size: int = 64, truncation: str = "head", device: str | None = None) -> np.ndarray:
    """(N, C) logits of one saved model of a run on ``texts`` (in their order), as ``evaluate`` computes them
    (its own tokenizer, texts cut to ``max_length`` by the run's ``truncation``, fp32 on ``scoring_device``)."""
    from datasets import Dataset, DatasetDict
    from transformers import AutoTokenizer

    from ..train.batching import make_loader, tokenize_splits
    from ..train.models import load_trained
    from ..train.loop import predict_logits

    folder = model_dir(run_dir, kind)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ds = Dataset.from_dict({"text": list(texts), "label": list(labels)})
    tok = tokenize_splits(DatasetDict(validation=ds), tokenizer, max_length, truncation)["validation"]
    loader = make_loader(tok, tokenizer, batch_size, shuffle=False)
    model, _ = place(load_trained(folder, attentions=False), scoring_device(device))
    logits, _ = predict_logits(model, loader)
    return logits


def calibrate_run(run_dir: Path, splits=None, progress: Progress | None = None,
                  device: str | None = None) -> dict[str, Any]:
    """Fit each model's temperature on the run's validation split, measure its test split before and after, and
    store the result as ``calibration.json``.

    Args:
        run_dir: a run with ``predictions.parquet`` (the test split's probabilities).
        splits: the run's ``data.Splits`` if already loaded; else the splits it was trained on are loaded.
        progress: called with (fraction, message) as models are done.
        device: where the models score the validation texts (``devices.scoring_device``).

    Raises:
        RunError: no predictions to calibrate. DataError: the validation split is empty or cannot be loaded.
    """
    run_dir = Path(run_dir)
    say = progress or (lambda f, m: None)
    path = run_dir / PREDICTIONS_FILE
    if not path.is_file():
        raise RunError(f"{PREDICTIONS_FILE} is missing from run {run_dir.name}: evaluate the run first "
                       "(`python -m distill_core evaluate RUN`)")
    try:
        preds = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises its own types for a truncated file
        raise RunError(f"{PREDICTIONS_FILE} could not be read ({type(e).__name__}); re-create it with "
                       "`python -m distill_core evaluate RUN`") from e
    kinds = [k for k in MODEL_KINDS if f"{k}_probs" in preds and has_model(run_dir, k)]
    if not kinds:
        raise RunError(f"Run {run_dir.name} has no evaluated model to calibrate; evaluate it first")
    if splits is None:
        say(0.0, "Loading the validation split the run was trained on…")
        from ..train.data import run_splits

        splits = run_splits(run_dir)
    if len(splits.validation) == 0:
        raise DataError("The validation split is empty, so no temperature can be fitted; train with a "
                        "validation split (--validation-fraction)")
    config = read_json(run_dir / "config.json")
    max_length = int(config.get("data", {}).get("max_length") or 128)
    truncation = str(config.get("data", {}).get("truncation") or "head")
    val_texts, val_labels = list(splits.validation["text"]), np.asarray(splits.validation["label"])
    test_labels = preds["label"].to_numpy()
    report: dict[str, Any] = {"n_bins": N_BINS, "fitted_on": "validation", "measured_on": "test",
                              "validation_rows": len(val_labels), "test_rows": len(test_labels), "models": {}}
    for i, kind in enumerate(kinds):
        say(i / len(kinds), f"Fitting the {kind}'s temperature on {len(val_labels)} validation texts…")
        val_logits = split_logits(run_dir, kind, val_texts, val_labels.tolist(), max_length,
                                  truncation=truncation, device=device)  # (Nv, C)
        test_logits = logits_from_probs(np.stack(preds[f"{kind}_probs"].to_numpy()))  # (Nt, C)
        report["models"][kind] = calibrate(val_logits, val_labels, test_logits, test_labels)
        m = report["models"][kind]
        logger.info("calibration %-8s T %.3f  ECE %.4f -> %.4f", kind, m["temperature"], m["before"]["ece"],
                    m["after"]["ece"])
    write_json_atomic(run_dir / CALIBRATION_FILE, report)
    say(1.0, "Done.")
    return report


def check_calibration(d: Any, where: str = CALIBRATION_FILE) -> dict[str, Any]:
    """``d`` if it has the shape ``calibrate_run`` writes; else a RunError naming the part that is wrong."""
    fix = "re-compute it on the Calibration page or with `python -m distill_core evaluate RUN`"
    if not isinstance(d, dict) or not isinstance(d.get("models"), dict) or not d["models"]:
        raise RunError(f"{where} does not have the expected shape (no 'models' table); {fix}")
    for kind, m in d["models"].items():
        t = m.get("temperature") if isinstance(m, dict) else None
        if not isinstance(t, (int, float)) or not t > 0:
            raise RunError(f"{where}: models.{kind}.temperature is {t!r}, not a positive number; {fix}")
        for when in ("before", "after"):
            part = m.get(when)
            if not isinstance(part, dict) or not all(isinstance(part.get(k), (int, float)) for k in METRICS):
                raise RunError(f"{where}: models.{kind}.{when} lacks one of {', '.join(METRICS)}; {fix}")
    return d


def read_calibration(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``calibration.json`` checked against its shape; None when the run has none yet."""
    path = Path(run_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    return check_calibration(read_json(path))


def temperatures(report: dict[str, Any] | None) -> dict[str, float]:
    """Model kind -> fitted temperature (empty without a report)."""
    return {k: float(m["temperature"]) for k, m in (report or {}).get("models", {}).items()}
