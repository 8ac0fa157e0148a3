"""The ``train`` command: data -> teacher -> distilled student -> baseline student -> test evaluation.

    run_dir = run_pipeline(preset_config("quick"))     # preset_config from distill_core.presets

Every stage writes into ``artifacts/runs/<run_id>/`` (see ``runs.py`` for the layout); ``status.json``
is always current and ``runs.read_progress(run_dir, "train")`` says how many optimizer steps are done, so
the dashboard can follow a run while it trains. The test evaluation is ``evaluate.evaluate_run``.

What the run trains from is loaded and checked before its folder exists (``run_inputs``); the loop's callbacks
write the CSV logs and count the progress (``callbacks``). Here: the run's summary, and ``_Run``, which trains
each model in turn by the one loop.
"""

from __future__ import annotations

import logging
import math
import platform
import shutil
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list, set_seed

from .. import __version__
from .batching import make_loader, padding_efficiency, tokenize_splits
from ..config import RunConfig
from .callbacks import CsvCallback, ProgressCallback
from .data import resolve_dataset
from ..errors import ModelError
from ..evidence.evaluate import evaluate_run
from ..evidence.verdict import headline_metric
from .models import (
    apply_lora,
    build_student,
    config_value,
    default_layer_map,
    describe,
    load_teacher,
    load_trained,
    merge_lora,
    trainable_parameters,
)
from ..files import atomic_dir, write_json_atomic
from ..runs import (
    CONFIG_FILE,
    clear_progress,
    create_run_dir,
    has_model,
    model_dir,
    new_run_id,
    seed_tag,
    set_status,
    write_progress,
)
from .loop import (
    LoopSettings,
    accuracy_f1,
    cross_entropy_objective,
    kd_objective,
    make_accelerator,
    predict_logits_all,
    train,
    use_cpu,
)
from .run_inputs import (RunData, check_models, class_weights_for, copy_teacher, is_run_teacher, load_run_data,
                         teacher_source)
from .transfer import with_transfer
from .run_summary import run_summary

logger = logging.getLogger(__name__)

LSTM_SLOW_LR = 5e-4  # below this, the LSTM student barely moves in a few epochs (measured on AG News, see docs/how-it-works.md)


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


def save_model(model, tokenizer, run_dir: Path, kind: str, max_length: int, truncation: str = "head") -> None:
    """``save_pretrained`` into a temporary folder, renamed to ``<run>/<kind>`` once whole."""
    # Read back by inference.TextClassifier and the ONNX export: texts are cut there as in training.
    model.config.distill_max_length = max_length
    model.config.distill_truncation = truncation
    with atomic_dir(model_dir(run_dir, kind)) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)


class _Run:
    """One training run in progress: its folder, data, accelerator and what it has written so far.

    Under ``accelerate launch`` every process holds one; only the main process writes files.
    """

    def __init__(self, cfg: RunConfig, run_dir: Path, is_main: bool):
        self.cfg, self.run_dir, self.is_main = cfg, run_dir, is_main
        self.stage = "data"
        self.meta: dict[str, Any] = {}
        self.timings: dict[str, dict] = {}
        self.seed_runs: dict[str, list[dict]] = {}  # per student kind: test figures of each seed (multi-seed runs)
        self.steps_done = self.steps_total = 0

    # ------------------------------------------------------------------ status, progress, config.json

    def set_stage(self, stage: str) -> None:
        self.stage = stage
        if self.is_main:
            set_status(self.run_dir, "running", stage)
        self.report()

    def report(self) -> None:
        if self.is_main:
            write_progress(self.run_dir, "train", self.steps_done / max(1, self.steps_total),
                           f"stage {self.stage}, {self.steps_done:,}/{self.steps_total:,} optimizer steps")

    def write_meta(self) -> None:
        if self.is_main:
            write_json_atomic(self.run_dir / CONFIG_FILE, self.meta)

    # ------------------------------------------------------------------ data

    def setup(self, data: RunData, teacher_src: str | None) -> None:
        """Tokenise the data once, write config.json, build the loaders and plan the optimizer steps."""
        cfg = self.cfg
        self.splits, self.tokenizer, transfer_texts = data.splits, data.tokenizer, data.transfer_texts
        # Each model reads the texts through its own tokenizer: a --student with another vocabulary gets its own copy
        # of every split, row for row, so the teacher's soft targets pair with the student's inputs by row.
        self.tokenizers = {k: data.tokenizer_for(k) for k in ("teacher", "student", "baseline")}
        self.toks, self.kd_trains, done = {}, {}, {}
        for kind, tokenizer in self.tokenizers.items():
            if id(tokenizer) not in done:
                tok = tokenize_splits(self.splits, tokenizer, cfg.data.max_length, cfg.data.truncation)
                # What the distilled student learns from: the labelled rows, plus the transfer texts (label hidden).
                done[id(tokenizer)] = (tok, with_transfer(tok["train"], transfer_texts, tokenizer, cfg.data.max_length,
                                                          cfg.data.truncation) if transfer_texts else tok["train"])
            self.toks[kind], self.kd_trains[kind] = done[id(tokenizer)]
        self.class_weights = class_weights_for(cfg, self.splits)
        self.accelerator = make_accelerator(cfg.train.mixed_precision, cfg.train.cpu)
        env = environment()
        env["mixed_precision"] = self.accelerator.mixed_precision
        info = self.splits.info()
        if transfer_texts:
            info["rows"]["transfer"] = len(transfer_texts)
        info["train_label_counts"] = self.splits.train_label_counts()
        # Every model's best step follows the run's headline metric (macro-F1 on imbalanced classes).
        self.metric = headline_metric([info["train_label_counts"][n] for n in self.splits.label_names])
        self.meta = {**cfg.to_dict(), "dataset_info": info, "environment": env, "architectures": {},
                     "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if self.class_weights is not None:  # per class name, for the Overview
            self.meta["class_weights"] = dict(zip(self.splits.label_names, self.class_weights.tolist()))
        self.write_meta()
        self.train_loader = self.loader("train", True)
        # Optimizer steps per epoch of each model's data (the distilled student's holds the hidden-label texts too),
        # as each process takes them once `accelerate launch` has sharded the batches.
        procs = self.accelerator.num_processes
        self.epoch_steps = {"teacher": math.ceil(len(self.train_loader) / procs),
                            "baseline": math.ceil(len(self.train_loader) / procs),
                            "student": math.ceil(len(self.loader("train", True, self.kd_trains["student"],
                                                                 kind="student")) / procs)}
        self.steps_total = self._planned_steps(teacher_src is None)
        s_tok = self.tokenizers["student"]
        tokens = "" if s_tok is self.tokenizer else (f"; its own tokenizer ({len(s_tok):,} tokens, the teacher's "
                                                     f"{len(self.tokenizer):,}), the soft targets paired per text")
        logger.info("\n%s", run_summary(cfg, self.run_dir, self.splits, padding_efficiency(self.train_loader), env,
                                     teacher_src, tokens))
        if cfg.model.is_lstm() and cfg.train.lr_for("student") < LSTM_SLOW_LR:
            logger.warning("The LSTM student learns slowly at --student-lr %g: on AG News it reached 0.64 validation "
                           "accuracy in 2 epochs at 1e-4 and 0.88 at 1e-3. Consider --student-lr 1e-3.",
                           cfg.train.lr_for("student"))

    def _planned_steps(self, train_teacher: bool) -> int:
        t = self.cfg.train
        total = 0
        for kind in t.models:
            if kind == "teacher" and not train_teacher:
                continue
            runs = 1 if kind == "teacher" else len(t.all_seeds())
            total += runs * self.settings(kind).total_steps(self.epoch_steps[kind])
        return total

    def settings(self, kind: str) -> LoopSettings:
        """How the loop trains ``kind``: its epochs and learning rate, its best step chosen on the headline metric.

        With early stopping, validation runs once per pass over the labelled rows (or every ``--eval-every`` steps)
        for every model alike, ``--patience`` evaluations without a new best end training, and the two students
        share one step cap, the larger of their epochs' worth, so neither is cut short where the other is not.
        """
        t = self.cfg.train
        s = LoopSettings.from_config(t, kind)
        s.monitor = self.metric
        if t.early_stopping:
            s.patience = t.patience
            s.eval_every = t.eval_every or self.epoch_steps["baseline"]
            if kind in ("student", "baseline"):
                s.max_steps = max(LoopSettings.from_config(t, k).total_steps(self.epoch_steps[k])
                                  for k in ("student", "baseline"))
        return s

    def loader(self, split: str, train_order: bool, ds=None, seed: int | None = None, kind: str = "teacher"):
        """Batches of ``split`` (or ``ds``) as ``kind`` reads them: its tokens, padded by its tokenizer."""
        t = self.cfg.train
        return make_loader(ds if ds is not None else self.toks[kind][split], self.tokenizers[kind],
                           t.batch_size if train_order else t.eval_batch_size, shuffle=train_order,
                           seed=t.seed if seed is None else seed, group_by_length=self.cfg.data.group_by_length,
                           device_type=self.accelerator.device.type)

    # ------------------------------------------------------------------ one model

    def fit(self, kind: str, model, objective, train_dl, seed: int | None = None):
        """Train ``model`` with ``objective`` by the one loop and log it to CSV; returns the trained model.

        The first seed's model is saved into the run as ``<kind>/``; another seed's is logged under
        ``runs.seed_tag(kind, seed)`` and scored on the test split instead (no checkpoint: disk use stays flat).
        """
        first = seed is None or seed == self.cfg.train.all_seeds()[0]
        tag = kind if first else seed_tag(kind, seed)
        self.set_stage(tag)
        info = describe(model)  # before any adapters: the model as it is saved
        spec = self.cfg.model.lora_for(kind)
        if spec is not None:
            model = apply_lora(model, spec)
            info["lora"] = {"r": spec.r, "alpha": spec.alpha, "dropout": spec.dropout}
        info["trainable_parameters"] = trainable_parameters(model)
        if first:
            self.meta["architectures"][kind] = info
            self.write_meta()
        csv = [CsvCallback(self.run_dir, kind, tag)] if self.is_main else []
        acc = self.accelerator
        try:
            res = train(model, train_dl, self.loader("validation", False, kind=kind), objective, self.settings(kind), acc,
                        [*csv, ProgressCallback(self, kind)])
        finally:
            for cb in csv:
                cb.close()
        model = acc.unwrap_model(model, keep_fp32_wrapper=False)  # a plain model again: scored and saved in fp32
        model = merge_lora(model)  # adapters added into the weights: the folder loads with from_pretrained alone
        if first:
            self.timings[kind] = {"train_time_s": round(res.elapsed_s, 2),
                                  "train_samples_per_s": round(res.samples_per_s, 2), "steps": res.steps,
                                  "mixed_precision": acc.mixed_precision, "phases_s": res.phases,
                                  "validation": res.validation}
            v = res.validation
            if v:
                logger.info("%s: best validation %s %.4f at step %d of at most %d%s", kind, self.metric.replace("_", "-"),
                            v["best_value"], v["best_step"], v["cap_steps"],
                            "; still improving when it stopped" if v["still_improving"] else "")
        split = ", ".join(f"{k} {v / max(res.elapsed_s, 1e-9):.0%}" for k, v in res.phases.items())
        logger.info("%s: %d steps in %.0f s (%.1f samples/s; %s)", tag, res.steps, res.elapsed_s, res.samples_per_s,
                    split)
        if first and self.is_main:
            save_model(model, self.tokenizers[kind], self.run_dir, kind, self.cfg.data.max_length,
                       self.cfg.data.truncation)
        if len(self.cfg.train.all_seeds()) > 1 and kind != "teacher":
            lg, lb = predict_logits_all(model, self.loader("test", False, kind=kind), acc, desc=f"test {tag}")
            self.seed_runs.setdefault(kind, []).append({"seed": seed, **accuracy_f1(lb, lg.argmax(-1))})
        acc.wait_for_everyone()
        acc.free_memory()
        return model

    def reuse_teacher(self, src: str) -> None:
        """The teacher used as it is (not trained here), copied into the run so its folder stands on its own."""
        self.stage = "teacher"
        if self.is_main:
            copy_teacher(src, self.run_dir, self.splits.label_names, self.cfg.data.max_length, self.cfg.data.truncation)
        self.accelerator.wait_for_everyone()
        origin = {"from_run": str(Path(src).parent)} if is_run_teacher(src) else {"given": src}
        self.meta["architectures"]["teacher"] = {**describe(load_trained(model_dir(self.run_dir, "teacher"))), **origin}
        self.write_meta()

    def ce_objective(self):
        """Cross-entropy to the labels, weighted per class when ``--class-weights balanced``."""
        return partial(cross_entropy_objective, class_weights=self.class_weights)

    def train_teacher(self) -> None:
        set_seed(self.cfg.train.seed)
        self.fit("teacher", load_teacher(self.cfg.model.teacher, self.splits.label_names), self.ce_objective(),
                 self.train_loader)

    def train_student(self) -> None:
        """The distilled student, once per seed: KD against the run's fine-tuned, frozen teacher."""
        if not has_model(self.run_dir, "teacher"):
            raise ModelError("The distilled student needs a teacher: include 'teacher' in --models, "
                             "or reuse one with --teacher-from RUN")
        self.set_stage("teacher_logits")
        cfg, kd = self.cfg, self.cfg.kd
        teacher = load_trained(model_dir(self.run_dir, "teacher"))
        teacher.to(self.accelerator.device).eval().requires_grad_(False)
        if kd.hidden_weight > 0:  # the live teacher reads the student's batches: one tokenizer (run_inputs checks)
            train_ds = self.kd_trains["student"]
        else:
            # The teacher is frozen: its logits for the training set never change, so compute them once, in the
            # training's precision (soft targets; bf16 halves this pass on CPU). Test scores stay in fp32.
            # Under `accelerate launch` the processes share this pass and each gets every row's logits.
            with self.accelerator.autocast():
                lg, _ = predict_logits_all(teacher, self.loader("train", False, self.kd_trains["teacher"]),
                                           self.accelerator, desc="teacher logits")
            # Row i of the student's copy is the text of row i of the teacher's: the soft targets pair by row.
            train_ds = self.kd_trains["student"].add_column("teacher_logits", lg.tolist())
        for seed in cfg.train.all_seeds():
            set_seed(seed)
            student = build_student(cfg.model, self.splits.label_names, **self.student_inputs(seed))
            # A built student knows its map; a pretrained one is aligned every other layer (or --layer-map); the
            # LSTM student has no layers to align (config.validate refuses --hidden-weight with it).
            layer_map = None if cfg.model.is_lstm() else (
                getattr(student.config, "distill_layer_map", None) or cfg.model.layer_map
                or default_layer_map(teacher.config.num_hidden_layers, config_value(student.config, "layers")))
            objective = kd_objective(kd.temperature, kd.alpha, teacher, kd.hidden_weight, layer_map, kd.hard_weight,
                                     class_weights=self.class_weights)
            self.fit("student", student, objective, self.loader("train", True, train_ds, seed, kind="student"), seed)

    def student_inputs(self, seed: int) -> dict[str, Any]:
        """What ``build_student`` needs beyond the config: for the LSTM student, the labelled training texts and
        the tokenizer its Word2Vec embeddings are learned from (the same for the student and the baseline)."""
        if not self.cfg.model.is_lstm():
            return {}
        return {"texts": list(self.splits.train["text"]), "tokenizer": self.tokenizer, "seed": seed}

    def train_baseline(self) -> None:
        """The baseline, once per seed: the same student, initialisation and seed, trained without a teacher."""
        for seed in self.cfg.train.all_seeds():
            set_seed(seed)
            self.fit("baseline", build_student(self.cfg.model, self.splits.label_names, **self.student_inputs(seed)),
                     self.ce_objective(),
                     self.loader("train", True, seed=seed, kind="baseline"), seed)


def run_pipeline(cfg: RunConfig) -> Path:
    """Train the requested models and evaluate them; returns the run folder.

    The config, the dataset path and a reused teacher are checked before the run folder exists. On any later
    error (or Ctrl-C) the run is marked ``failed`` with the error before it propagates.
    """
    cfg.validate()
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    # A mistyped dataset path, a teacher that is not there, a value the models cannot take or data that
    # cannot be used fails here, before any run folder exists.
    resolve_dataset(cfg.data)
    teacher_src = teacher_source(cfg, cfg.runs_root())
    check_models(cfg, teacher_src)
    data = load_run_data(cfg, teacher_src)
    state = PartialState(cpu=use_cpu(cfg.train.cpu))  # processes of `accelerate launch`, on CPUs too
    run = _Run(cfg, _make_run_dir(cfg, state), state.is_main_process)
    models = cfg.train.models
    run.set_stage("data")
    try:
        run.setup(data, teacher_src)
        if teacher_src is not None:
            run.reuse_teacher(teacher_src)
        elif "teacher" in models:
            run.train_teacher()
        if "student" in models:
            run.train_student()
        if "baseline" in models:
            run.train_baseline()
        run.set_stage("evaluate")
        if run.is_main:
            evaluate_run(run.run_dir, splits=run.splits, timings=run.timings, seeds=run.seed_runs or None,
                         device="cpu" if cfg.train.cpu else None)  # scored where it trained, in fp32
            set_status(run.run_dir, "complete", "done")
            clear_progress(run.run_dir, "train")
        run.accelerator.wait_for_everyone()  # every process returns a complete run
        logger.info("Run complete: %s", run.run_dir)
        return run.run_dir
    except BaseException as e:
        msg = f"interrupted ({e or 'Ctrl-C'})" if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {e}"
        if run.is_main and run.run_dir.is_dir():
            set_status(run.run_dir, "failed", run.stage, msg)
            clear_progress(run.run_dir, "train")
            if teacher_src is not None:  # a copy of a teacher that lives elsewhere: nothing is lost, the space is freed
                shutil.rmtree(model_dir(run.run_dir, "teacher"), ignore_errors=True)
        raise


def _make_run_dir(cfg: RunConfig, state: PartialState) -> Path:
    """Create the run folder (main process) and return it; every process agrees on its name.

    The folder is created exclusively: a run started in the same second as another gets the next free name, and a
    ``--run-id`` that is taken is refused."""
    root = cfg.runs_root()
    run_id = None
    if state.is_main_process:
        wanted = cfg.run_id or new_run_id(cfg.data.dataset, cfg.preset, root)
        run_id = create_run_dir(root, wanted, chosen=cfg.run_id is not None).name
    if state.num_processes > 1:
        run_id = broadcast_object_list([run_id])[0]  # the name the main process could claim
    run_dir = root / run_id
    state.wait_for_everyone()
    cfg.run_id = run_id
    return run_dir
