"""How to serve a model: ``ServeSettings``, one field per flag of ``python -m distill_core serve``.

The command (``ship/serve.py``) builds it from its flags; the app (``ship/api.py``) reads its limits, workers and CORS
origins; ``scripts/serving_figures.py`` reads the default model threads of a backend.

    from distill_core.ship.serve_settings import ServeSettings
    settings = ServeSettings(backend="onnx-int8", max_batch=16).validate()   # ConfigError names the flag and its range
    settings.model_threads, settings.max_body_bytes
"""

import os
from dataclasses import dataclass, field

from ..config import MODEL_KINDS
from ..errors import ConfigError

BACKENDS = ("torch", "onnx", "onnx-int8")  # onnx_export.BACKENDS, kept here so the parser needs no ONNX import


@dataclass
class ServeSettings:
    """How to serve; every field is a flag of ``python -m distill_core serve``."""

    model: str = "student"  # teacher | student | baseline
    backend: str = "torch"  # torch | onnx | onnx-int8
    host: str = "127.0.0.1"
    port: int = 8000
    max_chars: int = 20_000  # characters per text; the model reads the first max_length tokens anyway
    max_batch: int = 64  # texts per /predict/batch request
    max_request_chars: int = 200_000  # characters of all the texts of one request together: bounds its work
    workers: int = 1  # threads running model calls
    queue: int = 32  # requests that may wait for a worker; more get 503
    allow_origins: list[str] = field(default_factory=list)  # CORS origins; none: CORS off
    threads: int | None = None  # model threads; None: default_threads(backend)
    access_log: bool = False

    def validate(self) -> "ServeSettings":
        """Raise ConfigError naming the flag and its valid range; return self."""
        if self.model not in MODEL_KINDS:
            raise ConfigError(f"--model {self.model!r}: choose one of {', '.join(MODEL_KINDS)}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"--backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port {self.port}: give 1-65535 (0 picks a free port)")
        for flag, value, lo, hi in (("--max-chars", self.max_chars, 1, 1_000_000), ("--max-batch", self.max_batch, 1, 4096),
                                    ("--max-request-chars", self.max_request_chars, 1, 100_000_000),
                                    ("--workers", self.workers, 1, 64), ("--queue", self.queue, 0, 100_000)):
            if not lo <= value <= hi:
                raise ConfigError(f"{flag} {value}: give {lo}-{hi}")
        if self.max_request_chars < self.max_chars:
            raise ConfigError(f"--max-request-chars {self.max_request_chars}: give at least --max-chars "
                              f"({self.max_chars}), or one text of the largest size allowed could never be sent")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads {self.threads}: give 1 or more")
        for origin in self.allow_origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ConfigError(f"--allow-origin {origin!r}: give an origin such as http://localhost:3000 (or *)")
        return self

    @property
    def model_threads(self) -> int:
        """``threads``, or the default for the backend: torch one per core; ONNX Runtime half the cores.

        An int8 ONNX call on a short text takes about a millisecond, so HTTP parsing, JSON and tokenising are most
        of a request's cost: a core left to them serves more requests than a second model thread would (and
        ONNX Runtime's idle threads spin, taking CPU from the event loop). A PyTorch fp32 call is several times
        longer and uses every core well.
        """
        cores = os.cpu_count() or 1
        return self.threads or (cores if self.backend == "torch" else max(1, cores // 2))

    @property
    def max_body_bytes(self) -> int:
        """The largest body that can hold a valid batch: 12 bytes per character covers JSON's worst escaping."""
        chars = min(self.max_batch * self.max_chars, self.max_request_chars)
        return 12 * chars + 16 * self.max_batch + 4096
