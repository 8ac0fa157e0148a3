"""The ``evaluate`` command: each saved model of a run on the test split -> ``results.json`` + ``predictions.parquet``.

    results = evaluate_run(run_dir)          # recomputes both files from the checkpoints

The pipeline calls it at the end of training (with the splits it already holds and its training times);
``python -m distill_core evaluate RUN`` calls it alone, reading the dataset folder the run was trained on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import classification_report, confusion_matrix
from transformers import AutoTokenizer

from ..train.batching import ScoringLoaders
from .calibration import calibrate_run
from ..ship.model_card import write_model_cards
from ..config import MODEL_KINDS
from ..train.data import Splits, run_splits
from ..errors import RunError
from .verdict import collapse_sentence, collapsed_classes, compare, fidelity, headline_metric, seed_summary, verdict
from ..train.models import describe, load_trained, num_parameters
from ..devices import describe_device, place, scoring_device
from ..files import check_writable, read_json, write_json_atomic
from ..fingerprints import WEIGHTS_KEY, record
from ..runs import (
    CONFIG_FILE,
    MODEL_CARD,
    MODEL_WEIGHTS,
    ONNX_DIR,
    PREDICTIONS_FILE,
    RESULTS_FILE,
    expected_models,
    has_model,
    load_run_config,
    model_dir,
    run_problems,
)
from ..train.loop import accuracy_f1, predict_logits

logger = logging.getLogger(__name__)


def dir_size(path: Path) -> int:
    """Bytes of a model folder: the model itself, not its ONNX export or model card."""
    return sum(p.stat().st_size for p in Path(path).rglob("*")
               if p.is_file() and ONNX_DIR not in p.relative_to(path).parts and p.name != MODEL_CARD)


def train_label_counts(saved: dict, splits: Splits) -> dict[str, int]:
    """Training rows per class: as the run recorded them (the labelled rows only, in the few-labels setting),
    else counted in ``splits.train``."""
    names = splits.label_names
    recorded = (saved.get("dataset_info") or {}).get("train_label_counts")
    if isinstance(recorded, dict) and set(recorded) == set(names):
        return {n: int(recorded[n]) for n in names}
    return splits.train_label_counts()


def evaluate_run(run_dir: Path, splits: Splits | None = None, timings: dict | None = None,
                 seeds: dict[str, list[dict]] | None = None, device: str | None = None) -> dict:
    """(Re)compute ``results.json`` and ``predictions.parquet`` from the saved models on the test split.

    Beside each model's metrics: each student's fidelity to the teacher (agreement, KL, JS, per class), paired
    comparisons with intervals (teacher vs each student, distilled vs baseline), the verdict on distillation,
    and, given ``seeds`` (per model, ``[{"seed", "accuracy", "macro_f1"}, ...]`` from a multi-seed run), their
    spread. ``evaluate`` alone keeps the training times and seed figures already recorded. Each model is scored with
    its own tokenizer (read from its folder), on ``devices.scoring_device(device)``.

    Every model the run set out to train is checked first (``runs.model_problem``): a missing or damaged
    folder is refused, naming the broken file, before anything is loaded or either file is touched.
    """
    run_dir = Path(run_dir)
    check_writable(run_dir)  # before minutes of scoring, not after
    saved = read_json(run_dir / CONFIG_FILE)
    cfg = load_run_config(run_dir, saved)
    problems = run_problems(run_dir, expected_models(saved))
    if problems:
        raise RunError(f"Run {run_dir.name} is damaged: {'; '.join(problems)}. Its results were left as they were; "
                       "re-train the run (or those models, with --models and --teacher-from).")
    kinds = [k for k in MODEL_KINDS if has_model(run_dir, k)]
    if not kinds:
        raise RunError(f"No trained model in {run_dir}; train one with `python -m distill_core train`")
    weights = record(run_dir, kinds)  # taken before loading: the figures describe these weights, no later ones
    splits = splits if splits is not None else run_splits(run_dir, saved)
    old = {}
    if (run_dir / RESULTS_FILE).exists():
        try:
            old = read_json(run_dir / RESULTS_FILE)
        except RunError:
            old = {}
    device = scoring_device(device)
    loaders = ScoringLoaders(splits.test, cfg.data.max_length, cfg.data.truncation, cfg.train.eval_batch_size,
                          device_type=device.type)
    labels = np.asarray(list(splits.test["label"]))
    names = splits.label_names
    counts = train_label_counts(saved, splits)
    results: dict[str, Any] = {"label_names": names, "test_rows": len(labels), "train_label_counts": counts,
                               "headline_metric": headline_metric([counts[n] for n in names]), "models": {}}
    preds = pd.DataFrame({"text": list(splits.test["text"]), "label": labels,
                          "label_name": [names[i] for i in labels]})
    pred_by_kind = {}
    for kind in kinds:
        try:
            model = load_trained(model_dir(run_dir, kind), attentions=False)
            tokenizer = AutoTokenizer.from_pretrained(model_dir(run_dir, kind))  # each model reads its own tokens
        except Exception as e:  # a folder that looked whole but does not load: from_pretrained raises many types
            raise RunError(f"The {kind} model in {model_dir(run_dir, kind)} could not be loaded ({type(e).__name__}: "
                           f"{str(e).splitlines()[0][:200]}); its results were left as they were. Re-train it.") from e
        model, used = place(model, device)  # scored in fp32 wherever it runs: the figures do not depend on it
        lg, lb = predict_logits(model, loaders.get(tokenizer), desc=f"test {kind} ({describe_device(used)})")
        assert (lb == labels).all(), "test loader order differs from the split order"
        probs = torch.softmax(torch.from_numpy(lg), -1).numpy()
        pred = probs.argmax(-1)
        pred_by_kind[kind] = pred
        report = classification_report(labels, pred, labels=list(range(len(names))), target_names=names,
                                       output_dict=True, zero_division=0)
        results["models"][kind] = {
            **accuracy_f1(labels, pred),
            "per_class": {n: {m: float(report[n][m]) for m in ("precision", "recall", "f1-score", "support")} for n in names},
            "confusion_matrix": confusion_matrix(labels, pred, labels=list(range(len(names)))).tolist(),
            "parameters": num_parameters(model),
            "size_bytes": (model_dir(run_dir, kind) / MODEL_WEIGHTS).stat().st_size,
            "dir_size_bytes": dir_size(model_dir(run_dir, kind)),
            "layers": describe(model)["layers"],
        }
        given = ((saved.get("architectures") or {}).get(kind) or {}).get("given")
        if given:
            results["models"][kind]["given"] = given  # used as it is, not trained here
        # Training figures come from the pipeline; `evaluate` alone keeps the ones already recorded.
        training = (timings or {}).get(kind) or old.get("models", {}).get(kind, {}).get("training")
        if training:
            results["models"][kind]["training"] = training
        preds[f"{kind}_pred"] = pred
        preds[f"{kind}_probs"] = list(probs.astype(np.float32))
        del model
    if "teacher" in pred_by_kind:
        for kind in ("student", "baseline"):
            if kind in pred_by_kind:
                results["models"][kind]["agreement_with_teacher"] = float((pred_by_kind[kind] == pred_by_kind["teacher"]).mean())
                results["models"][kind]["accuracy_retention"] = (
                    results["models"][kind]["accuracy"] / max(results["models"]["teacher"]["accuracy"], 1e-12))
                results["models"][kind]["fidelity"] = fidelity(np.stack(preds["teacher_probs"]),
                                                                np.stack(preds[f"{kind}_probs"]), labels, names)
    training = {k: (m.get("training") or {}).get("validation") for k, m in results["models"].items()}
    results["collapsed_classes"] = {k: collapsed_classes(m["per_class"]) for k, m in results["models"].items()}
    results.update(_evidence(labels, pred_by_kind, len(names), seeds if seeds is not None else old.get("seeds"),
                             results["headline_metric"], training, results["collapsed_classes"]))
    results[WEIGHTS_KEY] = weights
    write_json_atomic(run_dir / RESULTS_FILE, results)
    tmp = run_dir / f".{PREDICTIONS_FILE}.tmp"
    preds.to_parquet(tmp, index=False)
    tmp.replace(run_dir / PREDICTIONS_FILE)
    for kind, r in results["models"].items():
        logger.info("test %-8s accuracy %.4f  macro-F1 %.4f  params %.1fM", kind, r["accuracy"], r["macro_f1"],
                    r["parameters"] / 1e6)
    calibrate_run(run_dir, splits, device=device)
    write_model_cards(run_dir, results)  # <model>/README.md, Hub-format, so a folder can be shared as it is  # calibration.json: each model's temperature, test ECE before and after
    return results


def _evidence(labels: np.ndarray, pred: dict[str, np.ndarray], n_classes: int, seeds: dict | None,
              metric: str = "accuracy", training: dict[str, dict | None] | None = None,
              collapsed: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Paired comparisons between the models, the spread across seeds, and the verdict on distillation, decided on
    the run's headline ``metric`` (accuracy, or macro-F1 where the classes are imbalanced), withheld when a model
    was still improving as it stopped (``training``: each model's validation curve), naming collapsed classes."""
    out: dict[str, Any] = {"comparisons": {}}
    for a, b in (("teacher", "student"), ("teacher", "baseline"), ("student", "baseline")):
        if a in pred and b in pred:
            out["comparisons"][f"{a}_vs_{b}"] = compare(labels, pred[a], pred[b], n_classes)
    if seeds:
        out["seeds"] = {kind: _seed_entry(runs) for kind, runs in seeds.items()}
    if "student_vs_baseline" in out["comparisons"]:
        per_seed = {k: [r[metric] for r in v["runs"]] for k, v in out.get("seeds", {}).items()}
        word, text = verdict(out["comparisons"]["student_vs_baseline"], per_seed, metric, training)
        note = collapse_sentence(collapsed or {})
        out["verdict"] = {"distillation": word, "text": f"{text} {note}" if note else text, "metric": metric,
                          "cut_short": [k for k, v in (training or {}).items() if v and v.get("still_improving")]}
    return out


def _seed_entry(runs: list[dict] | dict) -> dict[str, Any]:
    """One model's test figures per seed and their spread; an entry recorded earlier passes through."""
    if isinstance(runs, dict):
        return runs
    return {"runs": runs, "accuracy": seed_summary([r["accuracy"] for r in runs]),
            "macro_f1": seed_summary([r["macro_f1"] for r in runs])}
