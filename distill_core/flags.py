"""Every command's flags as tables, and the parsed flags turned back into typed configs.

    TRAIN_FLAGS                       # (flag, section, field, type, help): one row per RunConfig field
    cfg = config_from_args(args)      # the preset, with every flag given on top of it
    add_flags(parser, BENCH_FLAGS)   # one argparse argument per row, its default None (unset)

A row's dest is ``<section>__<field>``; a flag left out leaves the preset's (or the dataclass's) value alone, so a
preset and a flag never disagree about which wins. ``cli.py`` builds the parsers from these tables.
"""

from __future__ import annotations

import argparse
from typing import Any

from .bench.settings import ARCHS, BERT_BASE_TEXTS, QENGINES, BenchSettings
from .config import CLASS_WEIGHTS, LSTM_INITS, MODEL_KINDS, TRUNCATIONS, RunConfig, ShipConfig, runs_dir
from .presets import preset_config

# flag -> (section, field, type, help). Section "run": a RunConfig field.
TRAIN_FLAGS: list[tuple[str, str, str, Any, str]] = [
    # data
    ("--dataset", "data", "dataset", str, "one .csv, .tsv, .json, .jsonl or .parquet file, a hub name (fancyzhx/ag_news), a local "
     "hub-layout folder, or a short name "
     "(ag_news, imdb, sst2, rotten_tomatoes, hate_speech18) looked up in --data-dir first, then on the hub"),
    ("--data-dir", "data", "data_dir", str, "folder of hub-layout datasets for short names (default $DISTILL_DATA_DIR)"),
    ("--validation-file", "data", "validation_file", str, "with --dataset FILE: your validation split, a file of the "
     "same kind (default: carved from the file, --validation-fraction)"),
    ("--test-file", "data", "test_file", str, "with --dataset FILE: your test split, a file of the same kind (default: "
     "carved from the file, --test-fraction)"),
    ("--text-column", "data", "text_column", str, "text column (default: detect text/sentence/content/review)"),
    ("--label-column", "data", "label_column", str, "label column (default: detect label/labels/class/target)"),
    ("--max-length", "data", "max_length", int, "tokens per text, longer texts are truncated (default 128)"),
    ("--truncation", "data", "truncation", TRUNCATIONS, "how texts longer than --max-length are cut: keep the first "
     "tokens (head, default), the last (tail), or the first quarter and last three quarters (head+tail; long reviews)"),
    ("--max-train-samples", "data", "max_train_samples", int, "stratified subsample of the train split"),
    ("--max-eval-samples", "data", "max_eval_samples", int, "stratified subsample of the validation split"),
    ("--max-test-samples", "data", "max_test_samples", int, "stratified subsample of the test split"),
    ("--validation-fraction", "data", "validation_fraction", float, "carved from train if no validation split (0.1)"),
    ("--test-fraction", "data", "test_fraction", float, "carved from train if no test split (0.1)"),
    ("--no-group-by-length", "data", "group_by_length", "store_false", "random batches instead of length-grouped ones"),
    ("--labelled", "data", "labelled", float, "few labels: keep N labelled training rows (a fraction if below 1); "
     "the distilled student also learns from the rest with their labels hidden"),
    ("--transfer-dataset", "data", "transfer_dataset", str, "few labels: extra unlabelled texts for the distilled "
     "student (hub name, folder or short name)"),
    ("--transfer-split", "data", "transfer_split", str, "split of --transfer-dataset to read (default train; e.g. "
     "unsupervised for imdb)"),
    ("--max-transfer-samples", "data", "max_transfer_samples", int, "cap on the transfer texts"),
    # models
    ("--teacher", "model", "teacher", str, "teacher checkpoint, hub name or path (default: the packaged all-MiniLM-L6-v2)"),
    ("--student", "model", "student", str, "pretrained DistilBERT name/path, or lstm for a BiLSTM student (default: "
     "build a DistilBERT from the teacher)"),
    ("--student-layers", "model", "student_layers", int, "layers of the built student (default: half the teacher's)"),
    ("--layer-map", "model", "layer_map", "ints", "teacher layer per student layer, e.g. 0,2,4 (default: every other)"),
    ("--teacher-from", "model", "teacher_from", str, "reuse the teacher of an earlier run (id or folder)"),
    ("--lora", "model", "lora", str, "train LoRA adapters on the attention projections instead of every weight, "
     "e.g. r=8,alpha=16,dropout=0.1; merged into the weights before saving"),
    ("--lora-models", "model", "lora_models", "list", f"which models --lora applies to, from {','.join(MODEL_KINDS)} "
     "(default: every model trained)"),
    ("--lstm-init", "model", "lstm_init", LSTM_INITS, "--student lstm: start the word embeddings "
     "from the teacher's (default), from Word2Vec trained on the training texts, or at random"),
    ("--lstm-embedding-dim", "model", "lstm_embedding_dim", int, "--student lstm: embedding width (default: the "
     "teacher's hidden size, which --lstm-init teacher needs)"),
    ("--lstm-hidden", "model", "lstm_hidden", int, "--student lstm: LSTM hidden size per direction (128)"),
    # training
    ("--models", "train", "models", "list", f"what to train, comma-separated from {','.join(MODEL_KINDS)}"),
    ("--batch-size", "train", "batch_size", int, "training batch size"),
    ("--eval-batch-size", "train", "eval_batch_size", int, "evaluation batch size"),
    ("--epochs", "train", "epochs", float, "teacher epochs (fractions allowed)"),
    ("--lr", "train", "learning_rate", float, "teacher learning rate"),
    ("--student-epochs", "train", "student_epochs", float, "student epochs (default: same as --epochs)"),
    ("--student-lr", "train", "student_learning_rate", float, "student learning rate (default: same as --lr)"),
    ("--baseline-epochs", "train", "baseline_epochs", float, "baseline student epochs (default: same as --student-epochs)"),
    ("--weight-decay", "train", "weight_decay", float, "AdamW weight decay"),
    ("--scheduler", "train", "scheduler", ("linear", "exponential"), "linear warm-up/decay, or ExponentialLR(gamma) every N batches"),
    ("--warmup-ratio", "train", "warmup_ratio", float, "linear schedule: warm-up fraction of steps"),
    ("--gamma", "train", "gamma", float, "exponential schedule: decay factor (0.96)"),
    ("--gamma-every", "train", "gamma_every", int, "exponential schedule: batches per decay (10)"),
    ("--max-grad-norm", "train", "max_grad_norm", float, "gradient clipping (0: off)"),
    ("--eval-every", "train", "eval_every", int, "validate every N steps as well as every epoch"),
    ("--early-stopping", "train", "early_stopping", "store_true", "stop each model once validation stops improving "
     "and keep its best step; the epochs become a cap, and both students get the same step cap"),
    ("--no-early-stopping", "train", "early_stopping", "store_false", "train every model for its full epochs"),
    ("--patience", "train", "patience", int, "early stopping: evaluations without a new best before stopping (3)"),
    ("--seed", "train", "seed", int, "random seed (same seed on CPU: same metrics)"),
    ("--seeds", "train", "seeds", "ints", "train each student once per seed, e.g. 42,43,44 (the teacher once); the "
     "first seed's checkpoints are kept"),
    ("--mixed-precision", "train", "mixed_precision", ("auto", "no", "fp16", "bf16"), "auto: bf16 (or fp16) on GPU; bf16 on CPUs with AMX or AVX512-BF16, else fp32"),
    ("--cpu", "train", "cpu", "store_true", "train on CPU even if a GPU is present"),
    ("--num-threads", "train", "num_threads", int, "torch CPU threads"),
    ("--class-weights", "train", "class_weights", CLASS_WEIGHTS, "balanced: weigh each class's cross-entropy by "
     "n / (classes x its training rows), for imbalanced labels (default none)"),
    # distillation
    ("--temperature", "kd", "temperature", float, "KD temperature T (2.0)"),
    ("--alpha", "kd", "alpha", float, "weight of the KD term; 1-alpha goes to cross-entropy (0.5)"),
    ("--hidden-weight", "kd", "hidden_weight", float, "weight of the hidden-state cosine loss (0: off)"),
    ("--hard-weight", "kd", "hard_weight", float, "weight of cross-entropy to the teacher's predicted class, on "
     "every text including those with hidden labels (0: off)"),
    # output
    ("--output-dir", "run", "output_dir", str, f"parent folder of runs (default {runs_dir()})"),
    ("--run-id", "run", "run_id", str, "run folder name: letters, digits, '.', '_', '-' (default <time>_<dataset>_<preset>)"),
]
TRAIN_GROUPS = {"data": "data", "model": "models", "train": "training", "kd": "distillation", "run": "output"}

# flag -> (section, field, type, help); fields of bench.settings.BenchSettings.
_B = BenchSettings()
BENCH_FLAGS: list[tuple[str, str, str, Any, str]] = [
    ("--arch", "bench", "arch", ARCHS, "run: the run's models; bert-base: random bert-base / distilbert-base shapes "
     "(bench_bert-base.json)"),
    ("--repeats", "bench", "repeats", int, f"timed batch-1 calls per model and length ({_B.repeats})"),
    ("--warmup", "bench", "warmup", int, f"untimed calls before them ({_B.warmup})"),
    ("--batch-size", "bench", "batch_size", int, f"throughput and training batch size ({_B.batch_size})"),
    ("--max-texts", "bench", "max_texts", int, f"test texts for throughput and accuracy (default: all; {BERT_BASE_TEXTS} "
     "for bert-base)"),
    ("--train-steps", "bench", "train_steps", int, f"optimizer steps per training method ({_B.train_steps})"),
    ("--skip-training", "bench", "skip_training", "store_true", "skip the training-throughput comparison"),
    ("--no-probe", "bench", "probe", "store_false", "skip the fresh-process load time and memory probes"),
    ("--no-onnx", "bench", "onnx", "store_false", "skip the student on ONNX Runtime (fp32 and int8)"),
    ("--threads", "bench", "threads", int, "torch threads (default: torch's default, one per core)"),
    ("--qengine", "bench", "qengine", str, f"quantized engine for int8 (auto: the faster of {', '.join(QENGINES)} at "
     "max_length)"),
    ("--device", "bench", "device", ("cpu", "cuda"), "where to measure (cpu)"),
]


# flag -> (section, field, type, help); fields of sweep.SweepSettings (defaults written out: cli stays light).
SWEEP_FLAGS: list[tuple[str, str, str, Any, str]] = [
    ("--temperature", "sweep", "temperatures", "floats", "temperatures to try (1,2,4,8)"),
    ("--alpha", "sweep", "alphas", "floats", "KD weights to try, each above 0 (0.25,0.5,0.9)"),
    ("--epochs", "sweep", "epochs", float, "student epochs per cell (1)"),
    ("--no-baseline", "sweep", "baseline", "store_false", "skip the baseline cell (the student without the teacher)"),
]

# flag -> (section, field, type, help); fields of config.ShipConfig.
_S = ShipConfig()
SHIP_FLAGS: list[tuple[str, str, str, Any, str]] = [
    ("--max-drop", "ship", "max_drop", float, f"test accuracy points the student may lose to the teacher ({_S.max_drop})"),
    ("--min-agreement", "ship", "min_agreement", float,
     f"percent of test texts where the student predicts what the teacher does ({_S.min_agreement:g})"),
    ("--min-speedup", "ship", "min_speedup", float, "teacher / student p50 latency at batch 1 and the median test "
     f"length, from the bench ({_S.min_speedup})"),
    ("--max-int8-drop", "ship", "max_int8_drop", float,
     f"test accuracy points the int8 student may lose, from the bench ({_S.max_int8_drop})"),
]

# flag -> (section, field, type, help); fields of prune.PruneSettings (defaults written out: cli stays light).
PRUNE_FLAGS: list[tuple[str, str, str, Any, str]] = [
    ("--model", "prune", "model", str, f"the run's model to prune, one of {', '.join(MODEL_KINDS)} (student)"),
    ("--amount", "prune", "amounts", "floats", "fractions of each weight matrix to zero, each at least 0 and below 1 "
     "(0.1,0.3,0.5,0.7,0.9); the dense model is always measured too"),
    ("--save", "prune", "save", float, "keep the model pruned at this amount in the run as <model>_pruned<NN>/"),
    ("--texts", "prune", "texts", int, "test texts timed at batch 1 (8)"),
    ("--repeats", "prune", "repeats", int, "timed batch-1 calls per amount (40)"),
]


def add_flags(p: argparse.ArgumentParser, table, groups: dict[str, str] | None = None) -> None:
    """One argparse argument per table row; its dest is ``<section>__<field>``, its default None (unset)."""
    arg_groups = {k: p.add_argument_group(v) for k, v in (groups or {}).items()}
    for flag, section, field, typ, help_ in table:
        g = arg_groups.get(section, p)
        kw = {"dest": f"{section}__{field}", "help": help_}
        if typ in ("store_true", "store_false"):
            g.add_argument(flag, action=typ, default=None, **kw)
        elif isinstance(typ, tuple):
            g.add_argument(flag, choices=typ, **kw)
        else:
            parse = {"ints": _int_list, "floats": _float_list,
                     "list": lambda s: [x.strip() for x in s.split(",") if x.strip()]}.get(typ, typ)
            g.add_argument(flag, type=parse, metavar=field.upper(), **kw)


def _int_list(s: str) -> list[int]:
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a comma-separated list of integers, e.g. 0,2,4") from None


def _float_list(s: str) -> list[float]:
    try:
        return [float(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a comma-separated list of numbers, e.g. 1,2,4,8") from None


def set_fields(targets: dict[str, Any], args: argparse.Namespace) -> None:
    """Copy every flag given (not None) into ``targets[section].<field>``."""
    for key, value in vars(args).items():
        if "__" not in key or value is None:
            continue
        section, field = key.split("__", 1)
        setattr(targets[section], field, value)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    cfg = preset_config(args.preset)
    set_fields({"run": cfg, "data": cfg.data, "model": cfg.model, "train": cfg.train, "kd": cfg.kd}, args)
    if args.train__seeds and args.train__seed is None:
        cfg.train.seed = args.train__seeds[0]  # the first seed also seeds the data split and the teacher
    return cfg


def ship_config_from_args(args: argparse.Namespace) -> ShipConfig:
    ship = ShipConfig()
    set_fields({"ship": ship}, args)
    return ship.validate()


def bench_settings_from_args(args: argparse.Namespace) -> BenchSettings:
    settings = BenchSettings()
    set_fields({"bench": settings}, args)
    return settings


DEVICE_HELP = ("where the models are scored: auto (the GPU when there is one), cpu, cuda or cuda:N (default "
               "$DISTILL_DEVICE, else auto)")


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    """``--device`` for a command that scores models (evaluate, prune, predict); ``use_device`` applies it."""
    parser.add_argument("--device", dest="scoring_device", metavar="DEVICE", help=DEVICE_HELP)


def use_device(args: argparse.Namespace) -> None:
    """A command's ``--device``, checked now (a GPU asked for where there is none is refused before any work) and
    handed to everything the command runs through ``DISTILL_DEVICE``."""
    requested = getattr(args, "scoring_device", None)
    if requested:
        import os

        from .devices import ENV, scoring_device

        os.environ[ENV] = str(scoring_device(requested))
