"""The presets: what each one is, and why its settings were chosen (the measured times behind them).

    cfg = preset_config("imdb")            # a RunConfig: the preset's settings over the dataclass defaults
    cfg.train.epochs = 2                   # flags override it the same way (flags.config_from_args)
    PRESET_SUMMARIES["imdb"]               # one line for ``train --help`` and the dashboard's picker

A preset is a partial ``config.json``: per section, only the fields that differ from the defaults in
``config.py``. This module builds on ``config``; ``config`` never imports it.
"""

from __future__ import annotations

from typing import Any

from .config import PACKAGED_TEACHER, RunConfig
from .errors import ConfigError


# What each preset is, in one line, wherever presets are offered (``train --help``, the dashboard).
PRESET_SUMMARIES = {
    "quick": "AG News news topics, offline, about 4 minutes on 2 CPU cores (about 8 without bf16)",
    "few-labels": "500 AG News labels, the rest as unlabelled texts for the distilled student; every model trains "
                  "until validation stops improving; about 4-5 minutes on 2 CPU cores",
    "imdb": "long IMDB movie reviews (sentiment), 2,500 of them, head+tail truncation; about 5 minutes on 2 CPU cores",
    "hate-speech": "hate_speech18, 4 heavily imbalanced classes, balanced class weights, macro-F1 first; about 5 "
                   "minutes on 2 CPU cores",
    "classic": "bert-base-uncased -> distilbert-base-uncased on AG News, batch 64, lr 2e-5; downloads both models and "
               "the data from the hub, and wants a GPU (on a large GPU, --batch-size 256 keeps it busier)",
}

# How long each preset takes, data to results (measured in bf16; docs/presets.md), where a preset is offered.
PRESET_TIMES = {
    "quick": "about 4 minutes on 2 CPU cores (about 8 without bf16)",
    "few-labels": "about 3-5 minutes on 2 CPU cores",
    "imdb": "about 5 minutes on 2 CPU cores",
    "hate-speech": "about 5 minutes on 2 CPU cores",
    "classic": "minutes on a GPU, hours on a CPU; downloads both models and the data from the hub first",
}

# Presets override the dataclass defaults. `quick` is sized for 2 CPU cores in under five minutes (3 min 48 s measured
# in bf16 on an AVX512-BF16 CPU, 7 min 34 s in fp32):
# the 6,080-row offline AG News train split, one teacher epoch, two student epochs at a higher
# learning rate (a student trained a little longer than its teacher catches up; see docs/presets.md).
_QUICK_TRAIN = {"batch_size": 32, "epochs": 1.0, "learning_rate": 1e-4, "student_epochs": 2.0,
                "student_learning_rate": 1e-4}  # quick's schedule, shared by the presets sized like it
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "data": {"dataset": "ag_news", "max_length": 128},
        "model": {"teacher": PACKAGED_TEACHER},
        "train": dict(_QUICK_TRAIN),
        "kd": {"temperature": 2.0, "alpha": 0.5},
    },
    # Few labels, many texts: 500 labelled AG News rows for the teacher and the baseline; the distilled student also
    # learns the teacher's predictions on the other training texts, their labels hidden. A fixed number of epochs
    # chosen on one dataset would decide the verdict here (a baseline given 64 steps against the student's 342 is
    # still improving when it stops), so every model trains with early stopping on the headline metric: validation
    # after each pass over the 500 labelled rows (16 steps), stop after 3 passes without a new best, keep the best
    # step. The epochs are caps: the teacher at most 10 passes over its rows; the two students share one cap, the
    # distilled student's 2 epochs over all texts (342 steps, about 21 passes over the labelled rows).
    "few-labels": {
        "data": {"dataset": "ag_news", "max_length": 128, "labelled": 500},
        "model": {"teacher": PACKAGED_TEACHER},
        "train": {
            "batch_size": 32,
            "epochs": 10.0,
            "learning_rate": 1e-4,
            "student_epochs": 2.0,
            "student_learning_rate": 1e-4,
            "early_stopping": True,
            "patience": 3,
        },
        "kd": {"temperature": 2.0, "alpha": 0.5},
    },
    # The reports' setting, for a GPU and the hub.
    "classic": {
        "data": {"dataset": "fancyzhx/ag_news", "max_length": 128},
        "model": {"teacher": "bert-base-uncased", "student": "distilbert-base-uncased"},
        "train": {
            "batch_size": 64,
            "epochs": 1.0,
            "learning_rate": 2e-5,
            "scheduler": "exponential",
            "gamma": 0.96,
            "gamma_every": 10,
        },
        "kd": {"temperature": 2.0, "alpha": 0.5},
    },
    # Long texts: IMDB movie reviews (binary sentiment). Nearly 9 reviews in 10 run past 128 tokens, so every row
    # costs about 2.5 times an AG News row; 2,500 training rows (stratified, from the 25,000) with quick's epochs
    # took 4 min 32 s on 2 CPU cores in bf16 (about twice that in fp32). IMDB has no validation split: 10% of train
    # is carved, then 500 of it kept; 1,000 test rows. head+tail keeps a review's opening and its verdict at the end
    # (see train/truncation.py); it was kept on validation over head only (teacher 0.836 vs 0.834, student 0.816 vs 0.808).
    "imdb": {
        "data": {"dataset": "imdb", "max_length": 128, "truncation": "head+tail", "max_train_samples": 2500,
                 "max_eval_samples": 500, "max_test_samples": 1000},
        "model": {"teacher": PACKAGED_TEACHER},
        "train": dict(_QUICK_TRAIN),
        "kd": {"temperature": 2.0, "alpha": 0.5},
    },
    # Imbalanced classes: hate_speech18, 10,944 forum sentences in one split, 87% noHate and 73 idk/skip. Test (10%)
    # and validation (1/9 of the rest: 10% of all) are carved stratified, the reports' 80/10/10, so every class is in
    # every split. Sentences are short (median 19 tokens), so all rows fit (5 min 8 s on 2 CPU cores in bf16) with a
    # second teacher epoch and a third student epoch for the rare classes; balanced class weights keep cross-entropy
    # from settling on the majority class, and the Overview leads with macro-F1.
    "hate-speech": {
        "data": {"dataset": "hate_speech18", "max_length": 128, "validation_fraction": 0.1111, "test_fraction": 0.1},
        "model": {"teacher": PACKAGED_TEACHER},
        "train": {
            "batch_size": 32,
            "epochs": 2.0,
            "learning_rate": 1e-4,
            "student_epochs": 3.0,
            "student_learning_rate": 1e-4,
            "class_weights": "balanced",
        },
        "kd": {"temperature": 2.0, "alpha": 0.5},
    },
}


def preset_config(name: str) -> RunConfig:
    """The RunConfig of preset ``name``: its settings over the dataclass defaults, ``preset`` set to ``name``.

    Raises:
        ConfigError: the name is not a preset; the message lists the presets.
    """
    if name not in PRESETS:
        raise ConfigError(f"Unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return RunConfig.from_dict({"preset": name, **PRESETS[name]})
