"""How the bench measures: ``BenchSettings`` (one field per flag of ``python -m distill_core bench``) and the
constants the measuring modules share.

    settings = BenchSettings(repeats=3, warmup=1, train_steps=2)
    settings.validate()          # ConfigError naming the flag, before any work is done

Nothing here imports torch at import time: the CLI builds the bench parser from this module, and ``validate``
imports torch only to check a quantized engine or a GPU that was asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import MODEL_TITLES, SHORT_TITLES
from ..errors import ConfigError

ARCHS = ("run", "bert-base")
QENGINES = ("x86", "onednn")  # int8 engines `--qengine auto` tries (fbgemm is x86's older self; qnnpack is for ARM)
BERT_BASE_TEXTS = 256  # default throughput texts for --arch bert-base (a 12-layer model is slow on a laptop)

# The classic pair's shapes (their hub configs); vocabulary and labels come from the run.
ARCH_SHAPES = {
    "bert-base": {
        "teacher": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
                    "max_position_embeddings": 512},
        "student": {"dim": 768, "n_layers": 6, "n_heads": 12, "hidden_dim": 3072, "max_position_embeddings": 512},
    },
}
BERT_BASE_VOCAB = 30522

# The model titles in bench.json and the CLI's table: a run's models as the dashboard names them elsewhere.
TITLES = {
    "run": {"teacher": SHORT_TITLES["teacher"], "student": SHORT_TITLES["student"],
            "student_int8": MODEL_TITLES["student_int8"], "student_onnx": "Distilled student, ONNX",
            "student_onnx_int8": "Distilled student, ONNX int8"},
    "bert-base": {"teacher": "bert-base shape", "student": "distilbert-base shape",
                  "student_int8": "distilbert-base shape, int8", "student_onnx": "distilbert-base shape, ONNX",
                  "student_onnx_int8": "distilbert-base shape, ONNX int8"},
}


@dataclass
class BenchSettings:
    """How to measure; every field is a flag of ``python -m distill_core bench``."""

    repeats: int = 30  # timed batch-1 calls per model and length
    warmup: int = 5  # untimed calls before them
    batch_size: int = 32  # throughput and training batch size
    max_texts: int | None = None  # test texts for throughput/accuracy (None: all; bert-base: BERT_BASE_TEXTS)
    train_steps: int = 20  # optimizer steps per training method
    skip_training: bool = False
    probe: bool = True  # load time and peak memory in a fresh process per model
    onnx: bool = True  # also the student on ONNX Runtime, fp32 and int8 (the run's export, else one made for the bench)
    arch: str = "run"  # run | bert-base
    threads: int | None = None  # torch threads (None: torch's default)
    qengine: str = "auto"  # quantized engine for int8; auto: the faster of QENGINES at max_length (see pick_qengine)
    device: str = "cpu"

    def validate(self) -> None:
        """Raise ConfigError, naming the flag and its valid range, for settings the bench cannot use."""
        if self.arch not in ARCHS:
            raise ConfigError(f"Unknown --arch {self.arch!r}; choose one of {list(ARCHS)}")
        if self.repeats < 2 or self.warmup < 0:
            raise ConfigError("--repeats must be at least 2 (p95 needs several runs) and --warmup at least 0")
        if self.batch_size < 1:
            raise ConfigError("--batch-size must be positive")
        if not self.skip_training and self.train_steps < 2:
            raise ConfigError("--train-steps must be at least 2 (the first steps are not timed), or pass --skip-training")
        if self.qengine != "auto":
            import torch

            if self.qengine not in torch.backends.quantized.supported_engines:
                raise ConfigError(f"Quantized engine {self.qengine!r} is not available here; choose one of "
                                  f"{torch.backends.quantized.supported_engines}")
        if self.device not in ("cpu", "cuda"):
            raise ConfigError("--device must be cpu or cuda")
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise ConfigError("--device cuda, but torch sees no GPU; measure on --device cpu")
