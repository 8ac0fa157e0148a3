"""The main job: data -> teacher -> distilled student -> baseline student -> test evaluation, as a run folder.

    run_dir = run_pipeline(RunConfig.from_preset("quick"))

Every stage writes into ``artifacts/runs/<run_id>/`` (see ``runs.py`` for the layout); ``status.json``
is always current, so the dashboard can follow a run while it trains.
"""

from __future__ import annotations

import logging
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list, set_seed
from datasets import DatasetDict
from sklearn.metrics import classification_report, confusion_matrix, f1_score

from . import __version__
from .config import MODEL_KINDS, RunConfig
from .data import Splits, load_splits, make_loader, padding_efficiency, resolve_dataset, tokenize_splits
from .models import ModelError, build_student, default_layer_map, describe, load_teacher, load_tokenizer, num_parameters
from .runs import (
    CONFIG_FILE, KD_COLUMNS, PREDICTIONS_FILE, RESULTS_FILE, TRAIN_COLUMNS, VAL_COLUMNS, CsvLog, RunError,
    atomic_dir, has_model, new_run_id, read_json, resolve_run, write_json_atomic,
)
from .runs import set_status as write_status
from .training import (
    LoopSettings, cross_entropy_objective, kd_objective, make_accelerator, predict_logits, train,
)

logger = logging.getLogger(__name__)


class CsvCallback:
    """Writes the loop's step and evaluation rows to ``<kind>_train.csv`` and ``<kind>_val.csv``."""

    def __init__(self, run_dir: Path, kind: str):
        cols = TRAIN_COLUMNS + (KD_COLUMNS + ["hidden_loss"] if kind == "student" else [])
        self.train_log = CsvLog(run_dir / f"{kind}_train.csv", cols)
        self.val_log = CsvLog(run_dir / f"{kind}_val.csv", VAL_COLUMNS)

    def on_step(self, row: dict[str, Any]) -> None:
        self.train_log.write(row)

    def on_eval(self, row: dict[str, Any]) -> None:
        self.val_log.write(row)
        logger.info("  eval @ step %d: val_loss %.4f  val_accuracy %.4f  val_macro_f1 %.4f",
                    row["step"], row["val_loss"], row["val_accuracy"], row["val_macro_f1"])

    def close(self) -> None:
        self.train_log.close()
        self.val_log.close()


def environment() -> dict[str, Any]:
    import accelerate
    import datasets
    import transformers

    dev = "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {
        "distill_lens": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "accelerate": accelerate.__version__,
        "device": dev,
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


def load_run_config(run_dir: Path, d: dict | None = None) -> RunConfig:
    """The RunConfig saved in a run's config.json, or in ``d`` already read from it (extra sections ignored)."""
    d = read_json(Path(run_dir) / CONFIG_FILE) if d is None else d
    try:
        return RunConfig.from_dict({k: d[k] for k in ("preset", "data", "model", "train", "kd", "output_dir", "run_id") if k in d})
    except (TypeError, ValueError) as e:
        raise RunError(f"{run_dir}/config.json does not describe a run config: {e}") from e


def save_model(model, tokenizer, run_dir: Path, kind: str, max_length: int) -> None:
    """``save_pretrained`` into a temporary folder, renamed to ``<run>/<kind>`` once whole."""
    model.config.distill_max_length = max_length  # read back by inference.TextClassifier
    with atomic_dir(run_dir / kind) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)


def _loop_settings(cfg: RunConfig, kind: str) -> LoopSettings:
    t = cfg.train
    return LoopSettings(epochs=t.epochs_for(kind), learning_rate=t.lr_for(kind), weight_decay=t.weight_decay,
                        scheduler=t.scheduler, warmup_ratio=t.warmup_ratio, gamma=t.gamma, gamma_every=t.gamma_every,
                        max_grad_norm=t.max_grad_norm, eval_every=t.eval_every, desc=kind)


def _summary(cfg: RunConfig, run_dir: Path, splits: Splits, pad_eff: float, env: dict) -> str:
    t, k = cfg.train, cfg.kd
    lines = [
        "=" * 72,
        f"distill-lens run {run_dir.name}",
        f"  folder      {run_dir}",
        f"  dataset     {splits.source}  labels {splits.label_names}",
        f"  rows        train {len(splits.train)}  validation {len(splits.validation)}  test {len(splits.test)}"
        + (f"  ({'; '.join(splits.notes)})" if splits.notes else ""),
        f"  teacher     {cfg.model.teacher_from and 'from run ' + cfg.model.teacher_from or cfg.model.teacher}",
        f"  student     {cfg.model.student or 'DistilBERT built from the teacher, layers ' + str(cfg.model.layer_map or 'every other')}",
        f"  models      {', '.join(t.models)}",
        f"  training    batch {t.batch_size}, max_length {cfg.data.max_length}, teacher {t.epochs} epoch(s) at lr {t.learning_rate}, "
        f"students {t.epochs_for('student')} epoch(s) at lr {t.lr_for('student')}, {t.scheduler} schedule, seed {t.seed}",
        f"  KD          T={k.temperature} alpha={k.alpha} hidden_weight={k.hidden_weight}",
        f"  batching    {'length-grouped' if cfg.data.group_by_length else 'random'}: {pad_eff:.0%} of batch tokens are real",
        f"  device      {env['device']} (torch {env['torch']}, {env['torch_threads']} threads)",
        "=" * 72,
    ]
    return "\n".join(lines)


def run_pipeline(cfg: RunConfig) -> Path:
    """Train the requested models and evaluate them; returns the run folder.

    On any error (or Ctrl-C) the run is marked ``failed`` with the error before it propagates.
    """
    models = [m for m in cfg.train.models]
    unknown = set(models) - set(MODEL_KINDS)
    if unknown:
        raise ValueError(f"Unknown model(s) {sorted(unknown)}; choose from {list(MODEL_KINDS)}")
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    # A mistyped dataset path or teacher run fails here, before any run folder exists.
    resolve_dataset(cfg.data)
    _teacher_source(cfg, cfg.runs_root())
    # Under `accelerate launch` every process runs this function; only the main one writes files.
    state = PartialState()
    is_main = state.is_main_process
    root = cfg.runs_root()
    run_id = cfg.run_id or new_run_id(cfg.data.dataset, cfg.preset)
    if state.num_processes > 1:
        run_id = broadcast_object_list([run_id])[0]  # the main process's clock names the run
    run_dir = root / run_id
    if is_main:
        root.mkdir(parents=True, exist_ok=True)
        if run_dir.exists():
            raise RunError(f"Run folder {run_dir} already exists; choose another --run-id")
        run_dir.mkdir()
    state.wait_for_everyone()
    cfg.run_id = run_id
    stage = "data"

    def set_status(status: str, stage: str | None, error: str | None = None) -> None:
        if is_main:
            write_status(run_dir, status, stage, error)

    def write_meta() -> None:
        if is_main:
            write_json_atomic(run_dir / CONFIG_FILE, meta)

    set_status("running", stage)
    try:
        teacher_src = _teacher_source(cfg, root)
        splits = load_splits(cfg.data, seed=cfg.train.seed)
        tokenizer = load_tokenizer(str(teacher_src) if teacher_src else cfg.model.teacher)
        tok = tokenize_splits(splits, tokenizer, cfg.data.max_length)
        accelerator = make_accelerator(cfg.train.mixed_precision, cfg.train.cpu)
        env = environment()
        env["mixed_precision"] = accelerator.mixed_precision
        meta = {**cfg.to_dict(), "dataset_info": splits.info(), "environment": env, "architectures": {},
                "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_meta()

        def loader(split: str, train_order: bool, ds=None):
            bs = cfg.train.batch_size if train_order else cfg.train.eval_batch_size
            return make_loader(ds if ds is not None else tok[split], tokenizer, bs, shuffle=train_order,
                               seed=cfg.train.seed, group_by_length=cfg.data.group_by_length)

        train_loader, val_loader = loader("train", True), loader("validation", False)
        logger.info("\n%s", _summary(cfg, run_dir, splits, padding_efficiency(train_loader), env))
        timings: dict[str, dict] = {}

        def fit(kind: str, model, objective, train_dl) -> None:
            nonlocal stage
            stage = kind
            set_status("running", stage)
            meta["architectures"][kind] = describe(model)
            write_meta()
            callbacks = [CsvCallback(run_dir, kind)] if is_main else []
            try:
                res = train(model, train_dl, val_loader, objective, _loop_settings(cfg, kind), accelerator, callbacks)
            finally:
                for cb in callbacks:
                    cb.close()
            model = accelerator.unwrap_model(model)
            timings[kind] = {"train_time_s": round(res.elapsed_s, 2), "train_samples_per_s": round(res.samples_per_s, 2),
                             "steps": res.steps}
            logger.info("%s: %d steps in %.0f s (%.1f samples/s)", kind, res.steps, res.elapsed_s, res.samples_per_s)
            if is_main:
                save_model(model, tokenizer, run_dir, kind, cfg.data.max_length)
            accelerator.wait_for_everyone()
            accelerator.free_memory()

        # ---- teacher
        teacher = None
        if teacher_src is not None:
            stage = "teacher"
            if is_main:
                _copy_teacher(teacher_src, run_dir, splits.label_names)
            accelerator.wait_for_everyone()
            meta["architectures"]["teacher"] = {**_describe_saved(run_dir / "teacher"), "from_run": str(teacher_src.parent)}
            write_meta()
        elif "teacher" in models:
            set_seed(cfg.train.seed)
            teacher = load_teacher(cfg.model.teacher, splits.label_names)
            fit("teacher", teacher, cross_entropy_objective, train_loader)

        # ---- distilled student
        if "student" in models:
            if not has_model(run_dir, "teacher"):
                raise ModelError("The distilled student needs a teacher: include 'teacher' in --models, "
                                 "or reuse one with --teacher-from RUN")
            stage = "teacher_logits"
            set_status("running", stage)
            from transformers import AutoModelForSequenceClassification

            teacher = AutoModelForSequenceClassification.from_pretrained(run_dir / "teacher", attn_implementation="eager")
            teacher.to(accelerator.device).eval().requires_grad_(False)
            kd = cfg.kd
            if kd.hidden_weight > 0:
                train_ds = tok["train"]
            else:
                # The teacher is frozen: its logits for the training set never change, so compute them once.
                lg, _ = predict_logits(teacher, loader("train", False), accelerator.device, desc="teacher logits")
                train_ds = tok["train"].add_column("teacher_logits", lg.tolist())
            set_seed(cfg.train.seed)
            student = build_student(cfg.model, splits.label_names)
            # A built student knows its map; a pretrained one is aligned every other layer (or --layer-map).
            layer_map = (getattr(student.config, "distill_layer_map", None) or cfg.model.layer_map
                         or default_layer_map(teacher.config.num_hidden_layers, student.config.n_layers))
            objective = kd_objective(kd.temperature, kd.alpha, teacher, kd.hidden_weight, layer_map)
            fit("student", student, objective, loader("train", True, train_ds))
            del teacher

        # ---- baseline student: same initialisation and seed, no teacher
        if "baseline" in models:
            set_seed(cfg.train.seed)
            baseline = build_student(cfg.model, splits.label_names)
            fit("baseline", baseline, cross_entropy_objective, train_loader)

        stage = "evaluate"
        set_status("running", stage)
        if is_main:
            evaluate_run(run_dir, splits=splits, timings=timings)
        set_status("complete", "done")
        logger.info("Run complete: %s", run_dir)
        return run_dir
    except BaseException as e:
        msg = f"interrupted ({e or 'Ctrl-C'})" if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {e}"
        if run_dir.is_dir():
            set_status("failed", stage, msg)
        raise


def _teacher_source(cfg: RunConfig, root: Path) -> Path | None:
    if not cfg.model.teacher_from:
        return None
    src = resolve_run(cfg.model.teacher_from, root) / "teacher"
    if not has_model(src.parent, "teacher"):
        raise RunError(f"Run {cfg.model.teacher_from!r} has no complete teacher model at {src}; "
                       "train one with --models teacher")
    return src


def _copy_teacher(src: Path, run_dir: Path, label_names: list[str]) -> None:
    saved = read_json(src / "config.json")
    saved_names = [saved.get("id2label", {}).get(str(i)) for i in range(len(saved.get("id2label", {})))]
    if saved_names != label_names:
        raise RunError(f"The teacher in {src} predicts {saved_names}, but this dataset's labels are {label_names}; "
                       "reuse a teacher trained on the same dataset")
    with atomic_dir(run_dir / "teacher") as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
    for name in ("teacher_train.csv", "teacher_val.csv"):
        if (src.parent / name).exists():
            shutil.copy2(src.parent / name, run_dir / name)


def _describe_saved(model_dir: Path) -> dict:
    from transformers import AutoModelForSequenceClassification

    return describe(AutoModelForSequenceClassification.from_pretrained(model_dir))


# ----------------------------------------------------------------------------- evaluation


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def evaluate_run(run_dir: Path, splits: Splits | None = None, timings: dict | None = None) -> dict:
    """(Re)compute ``results.json`` and ``predictions.parquet`` from the saved models on the test split."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run_dir = Path(run_dir)
    saved = read_json(run_dir / CONFIG_FILE)
    cfg = load_run_config(run_dir, saved)
    kinds = [k for k in MODEL_KINDS if has_model(run_dir, k)]
    if not kinds:
        raise RunError(f"No trained model in {run_dir}; train one with `python -m distill_core train`")
    if splits is None:
        # The folder the run was trained on, even when its short name would resolve elsewhere today.
        source = saved.get("dataset_info", {}).get("source")
        if source and Path(source).is_dir():
            cfg.data.dataset = source
        splits = load_splits(cfg.data, seed=cfg.train.seed)
    old = {}
    if (run_dir / RESULTS_FILE).exists():
        try:
            old = read_json(run_dir / RESULTS_FILE)
        except RunError:
            old = {}
    tokenizer = AutoTokenizer.from_pretrained(run_dir / kinds[0])
    test = tokenize_splits(DatasetDict(test=splits.test), tokenizer, cfg.data.max_length)["test"]
    loader = make_loader(test, tokenizer, cfg.train.eval_batch_size, shuffle=False)
    labels = np.asarray(list(splits.test["label"]))
    names = splits.label_names
    results: dict[str, Any] = {"label_names": names, "test_rows": len(labels), "models": {}}
    preds = pd.DataFrame({"text": list(splits.test["text"]), "label": labels,
                          "label_name": [names[i] for i in labels]})
    pred_by_kind = {}
    for kind in kinds:
        model = AutoModelForSequenceClassification.from_pretrained(run_dir / kind)
        lg, lb = predict_logits(model, loader, desc=f"test {kind}")
        assert (lb == labels).all(), "test loader order differs from the split order"
        probs = torch.softmax(torch.from_numpy(lg), -1).numpy()
        pred = probs.argmax(-1)
        pred_by_kind[kind] = pred
        report = classification_report(labels, pred, labels=list(range(len(names))), target_names=names,
                                       output_dict=True, zero_division=0)
        results["models"][kind] = {
            "accuracy": float((pred == labels).mean()),
            "macro_f1": float(f1_score(labels, pred, average="macro", zero_division=0)),
            "per_class": {n: {m: float(report[n][m]) for m in ("precision", "recall", "f1-score", "support")} for n in names},
            "confusion_matrix": confusion_matrix(labels, pred, labels=list(range(len(names)))).tolist(),
            "parameters": num_parameters(model),
            "size_bytes": (run_dir / kind / "model.safetensors").stat().st_size,
            "dir_size_bytes": dir_size(run_dir / kind),
            "layers": describe(model)["layers"],
        }
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
    write_json_atomic(run_dir / RESULTS_FILE, results)
    tmp = run_dir / f".{PREDICTIONS_FILE}.tmp"
    preds.to_parquet(tmp, index=False)
    tmp.replace(run_dir / PREDICTIONS_FILE)
    for kind, r in results["models"].items():
        logger.info("test %-8s accuracy %.4f  macro-F1 %.4f  params %.1fM", kind, r["accuracy"], r["macro_f1"],
                    r["parameters"] / 1e6)
    return results
