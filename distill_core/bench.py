"""Speed and size of a run's models on this machine, measured the same way for every model.

    python -m distill_core bench RUN                      # teacher, student, int8 student -> RUN/bench.json
    python -m distill_core bench RUN --arch bert-base     # bert-base / distilbert-base shapes -> RUN/bench_bert-base.json
    python -m distill_core bench RUN --repeats 3 --warmup 1 --train-steps 2    # a smoke test

    bench = run_bench("RUN", BenchSettings(repeats=30))   # the same from Python; returns the bench.json dict

What is measured, per model (``teacher``, ``student``, ``student_int8``):

- latency of ``TextClassifier.predict_proba([text])`` (tokenisation included) at batch 1: median and p95 over
  ``repeats`` timed calls after ``warmup`` untimed ones, for a test text of the dataset's median token length
  and for one of ``max_length`` tokens. The models are timed in blocks that take turns (``time_calls``), so
  load from elsewhere hits them alike; ``machine.other_processes_cpu_share`` says how much there was;
- throughput (texts/s) at ``batch_size`` over the test texts, and the test accuracy and macro-F1 of that pass
  (all models go through the same code, so the int8 student's cost is read against the fp32 student's);
- load time from disk and peak resident memory (``VmHWM``), each in a fresh Python process per model
  (``probe``), so that models do not pollute each other's figures. The files are in the page cache by then
  (warm load); the int8 student is quantised from the fp32 checkpoint at load, so its peak includes that;
- analytic forward FLOPs at each length (``forward_flops``) and the achieved GFLOP/s, next to the machine's
  own fp32 matmul rate (``machine.matmul_gflops``).

``student_int8`` is the distilled student with every ``nn.Linear`` dynamically quantised to int8 in memory
(``quantize_int8``), on the quantized engine that is faster here (``pick_qengine``); no int8 checkpoint is
written. The training comparison trains the run's teacher for
``train_steps`` steps three ways on the run's training split: the pipeline's own loop and length-grouped
batches, the same loop with every example padded to ``max_length`` (as the reports did), and transformers'
``Trainer`` with its defaults (random batches padded per batch) -- same model, data, batch size and AdamW.

``--arch bert-base`` swaps the run's models for randomly initialised ``bert-base-uncased`` and
``distilbert-base-uncased`` shapes (speed does not depend on the weights) on the run's tokenizer and test
texts, and writes ``bench_bert-base.json`` next to ``bench.json``, with the same schema; it reports no
accuracy (the weights are random) and skips the training comparison.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import PROJECT_ROOT
from .runs import BENCH_FILE, RunError, has_model, load_run, pid_alive, resolve_run, write_json_atomic

logger = logging.getLogger(__name__)

ARCHS = ("run", "bert-base")
TITLES = {
    "run": {"teacher": "Teacher", "student": "Distilled student", "student_int8": "Distilled student, int8"},
    "bert-base": {"teacher": "bert-base shape", "student": "distilbert-base shape",
                  "student_int8": "distilbert-base shape, int8"},
}
# The classic pair's shapes (their hub configs); vocabulary and labels come from the run.
ARCH_SHAPES = {
    "bert-base": {
        "teacher": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
                    "max_position_embeddings": 512},
        "student": {"dim": 768, "n_layers": 6, "n_heads": 12, "hidden_dim": 3072, "max_position_embeddings": 512},
    },
}
BERT_BASE_VOCAB = 30522
QENGINES = ("x86", "onednn")  # int8 engines `--qengine auto` tries (fbgemm is x86's older self; qnnpack is for ARM)
BERT_BASE_TEXTS = 256  # default throughput texts for --arch bert-base (a 12-layer model is slow on a laptop)
TRAIN_WARMUP_STEPS = 2  # training steps left out of the timed window (allocator and kernel set-up)
PROBE_MARK = "BENCH_PROBE "
PROGRESS_FILE = ".bench_progress.json"  # in the run folder while a bench runs (read by the Performance page)

# The issue's targets: (key, what, threshold, direction). Checked against bench.json by `check_targets`.
TARGETS = [
    ("student_vs_teacher_max_len", "distilled student vs teacher, batch 1 at max_length", 1.9, ">="),
    ("int8_vs_student_max_len", "int8 student vs fp32 student, batch 1 at max_length", 1.5, ">="),
    ("int8_accuracy_drop_points", "test accuracy lost to int8 (points)", 0.5, "<="),
    ("pipeline_vs_fixed_padding", "training: pipeline vs fixed padding to max_length", 2.0, ">="),
    ("pipeline_vs_trainer", "training: pipeline vs Trainer defaults", 1.6, ">="),
]


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
    arch: str = "run"  # run | bert-base
    threads: int | None = None  # torch threads (None: torch's default)
    qengine: str = "auto"  # quantized engine for int8; auto: the faster of QENGINES at max_length (see pick_qengine)
    device: str = "cpu"

    def validate(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"Unknown --arch {self.arch!r}; choose one of {list(ARCHS)}")
        if self.repeats < 2 or self.warmup < 0:
            raise ValueError("--repeats must be at least 2 (p95 needs several runs) and --warmup at least 0")
        if self.batch_size < 1:
            raise ValueError("--batch-size must be positive")
        if not self.skip_training and self.train_steps < 2:
            raise ValueError("--train-steps must be at least 2 (the first steps are not timed), or pass --skip-training")
        if self.qengine != "auto" and self.qengine not in torch.backends.quantized.supported_engines:
            raise ValueError(f"Quantized engine {self.qengine!r} is not available here; choose one of "
                             f"{torch.backends.quantized.supported_engines}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError("--device must be cpu or cuda")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda, but torch sees no GPU; measure on --device cpu")


def bench_path(run_dir: Path, arch: str = "run") -> Path:
    """``bench.json`` for the run's own models, ``bench_<arch>.json`` for a reference architecture."""
    return Path(run_dir) / (BENCH_FILE if arch == "run" else f"bench_{arch}.json")


# ----------------------------------------------------------------------------- the machine


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, ``sysctl`` on macOS)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """This machine's fp32 matmul rate (GFLOP/s, best of ``repeats``) at torch's thread count: the ceiling
    that the models' achieved GFLOP/s are read against."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def machine_info() -> dict[str, Any]:
    import transformers

    cores = os.cpu_count() or 1
    return {
        "cpu_model": cpu_model(),
        "cores": cores,
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "quantized_engines": list(torch.backends.quantized.supported_engines),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "matmul_gflops": round(matmul_gflops(), 1),
    }


class OtherLoad:
    """The share of the machine's CPU time that other processes used between ``start()`` and ``stop()``.

    Timings taken while something else runs are slow and noisy; this says by how much the machine was shared
    (the load average cannot, as it counts this process too).
    """

    def start(self) -> "OtherLoad":
        import psutil

        self._t, self._sys, self._me = time.perf_counter(), psutil.cpu_times(), self._mine()
        return self

    @staticmethod
    def _mine() -> float:
        import psutil

        c = psutil.Process().cpu_times()
        return c.user + c.system + c.children_user + c.children_system

    def stop(self) -> float:
        import psutil

        now = psutil.cpu_times()
        total = sum(now) - sum(self._sys)
        idle = (now.idle - self._sys.idle) + (getattr(now, "iowait", 0.0) - getattr(self._sys, "iowait", 0.0))
        others = max(0.0, (total - idle) - (self._mine() - self._me))
        return others / max(total, 1e-9)


# ----------------------------------------------------------------------------- what is measured


def _stats(times_ms: list[float]) -> dict[str, float]:
    arr = np.asarray(times_ms)
    return {"p50": float(np.percentile(arr, 50)), "p95": float(np.percentile(arr, 95)),
            "mean": float(arr.mean()), "min": float(arr.min()), "runs": len(arr)}


def time_calls(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int, rounds: int = 3) -> dict[str, dict[str, float]]:
    """Milliseconds per call of each function: p50, p95, mean and min over ``repeats`` calls after ``warmup``.

    Each function is timed in ``rounds`` blocks of back-to-back calls (its caches warm, as when a server runs
    one model), each block after one untimed call, and the blocks of the functions take turns, the order
    rotating every round. So a burst of load from elsewhere on the machine slows every model alike instead of
    landing on one of them. The garbage collector is paused while timing (as ``timeit`` does).
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    keys = list(fns)
    rounds = max(1, min(rounds, repeats))
    per_round = [repeats // rounds + (r < repeats % rounds) for r in range(rounds)]
    times: dict[str, list[float]] = {k: [] for k in keys}
    gc.collect()
    gc.disable()
    try:
        for r, n in enumerate(per_round):
            for k in keys[r % len(keys):] + keys[: r % len(keys)]:
                fns[k]()  # re-warm after the other functions' blocks
                for _ in range(n):
                    t0 = time.perf_counter()
                    fns[k]()
                    times[k].append((time.perf_counter() - t0) * 1000.0)
    finally:
        gc.enable()
    return {k: _stats(v) for k, v in times.items()}


def pick_texts(texts: list[str], tokenizer, max_length: int) -> dict[str, Any]:
    """A test text of the median token length and one of ``max_length`` tokens (after truncation).

    Lengths count [CLS] and [SEP] and are capped at ``max_length``, as the model sees them. When no test text
    reaches ``max_length``, the longest ones are joined until one does.
    """
    counts = np.asarray([len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]])
    median = int(round(float(np.median(counts))))
    i = int(np.argmin(np.abs(counts - median)))
    j = int(np.argmax(counts))
    long_text = texts[j]
    if counts[j] < max_length:
        pieces = [texts[k] for k in np.argsort(-counts)]
        long_text = ""
        for piece in pieces * (max_length // max(1, int(counts.min())) + 1):
            long_text = f"{long_text} {piece}".strip()
            if len(tokenizer(long_text, truncation=True, max_length=max_length)["input_ids"]) >= max_length:
                break
    return {"median_text": texts[i], "median_tokens": int(counts[i]), "median_of_dataset": median,
            "max_text": long_text, "max_tokens": max_length, "token_counts": counts}


def encoder_shape(config) -> dict[str, int]:
    """Layers, hidden size, FFN size and classes of a BERT or DistilBERT config."""
    if getattr(config, "model_type", "") == "distilbert":
        return {"layers": config.n_layers, "hidden": config.dim, "ffn": config.hidden_dim, "classes": config.num_labels}
    return {"layers": config.num_hidden_layers, "hidden": config.hidden_size, "ffn": config.intermediate_size,
            "classes": config.num_labels}


def forward_flops(config, tokens: int) -> int:
    """Analytic FLOPs of one forward pass on one text of ``tokens`` tokens (a multiply-add counts 2).

    Per layer, with T tokens, hidden size H and FFN size F:
        Q, K, V and output projections   4 * 2*T*H*H
        attention scores Q K^T and  A V  2 * 2*T*T*H
        feed-forward (two matmuls)       2 * 2*T*H*F
    plus the head on the [CLS] vector: BERT's pooler / DistilBERT's pre-classifier (2*H*H) and the classifier
    (2*H*C). Embedding look-ups, LayerNorm, softmax and GELU are element-wise and left out (a few per cent).
    An int8 model does the same number of operations, so the same count applies.
    """
    s = encoder_shape(config)
    t, h, f = int(tokens), s["hidden"], s["ffn"]
    per_layer = 8 * t * h * h + 4 * t * t * h + 4 * t * h * f
    return s["layers"] * per_layer + 2 * h * h + 2 * h * s["classes"]


def quantize_int8(model: torch.nn.Module, engine: str | None = None, inplace: bool = False) -> torch.nn.Module:
    """``model`` with every ``nn.Linear`` dynamically quantised to int8 (a copy unless ``inplace``).

    Weights are stored int8 (per tensor); activations are quantised on the fly at each call, so no calibration
    data is needed. ``engine`` sets torch's quantized engine (process-wide, as torch keeps it): ``x86`` (the
    default), ``fbgemm``, ``onednn`` or ``qnnpack``. ``torch.ao.quantization`` is deprecated in favour of
    torchao, which is not a dependency here; its deprecation warnings are silenced for this call only.
    """
    if engine:
        torch.backends.quantized.engine = engine
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        target = model if inplace else copy.deepcopy(model)
        return torch.ao.quantization.quantize_dynamic(target.eval(), {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


def pick_qengine(clf, text: str, settings: "BenchSettings") -> tuple[str, dict[str, float]]:
    """The int8 engine to use and the trial behind the choice: ``{engine: p50 ms}`` at batch 1 on ``text``.

    ``settings.qengine`` names one, or ``auto`` times each of ``QENGINES`` on the max_length text (the case that
    sets tail latency) and takes the faster. On this project's 2-core Sapphire Rapids machine ``onednn`` (AMX
    int8 kernels) wins at max_length and at batch 32, ``x86`` (fbgemm) at the median length; both are recorded.
    """
    if settings.qengine != "auto":
        return settings.qengine, {}
    engines = [e for e in QENGINES if e in torch.backends.quantized.supported_engines]
    trial = {}
    for engine in engines:
        q = type(clf)(quantize_int8(clf.model, engine), clf.tokenizer, clf.max_length)
        trial[engine] = time_calls({engine: lambda q=q: q.predict_proba([text])}, repeats=10, warmup=3, rounds=1)[engine]["p50"]
        del q
    best = min(trial, key=trial.get)
    torch.backends.quantized.engine = best
    return best, trial


def state_dict_bytes(model: torch.nn.Module) -> int:
    """Bytes of ``model``'s state dict as ``torch.save`` writes it (to a temporary file, deleted after)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "state.pt"
        torch.save(model.state_dict(), path)
        return path.stat().st_size


def throughput_and_accuracy(clf, texts: list[str], labels: np.ndarray | None, batch_size: int) -> dict[str, Any]:
    """Texts per second over ``texts`` at ``batch_size`` (one warm-up batch first), and, given labels, the
    accuracy and macro-F1 of the same predictions."""
    from sklearn.metrics import f1_score

    clf.predict_logits(texts[:batch_size], batch_size=batch_size)
    t0 = time.perf_counter()
    logits = clf.predict_logits(texts, batch_size=batch_size)
    elapsed = time.perf_counter() - t0
    out: dict[str, Any] = {"texts": len(texts), "seconds": elapsed, "texts_per_s": len(texts) / elapsed}
    if labels is not None:
        pred = logits.argmax(-1)
        out["accuracy"] = float((pred == labels).mean())
        out["macro_f1"] = float(f1_score(labels, pred, average="macro", zero_division=0))
    return out


# ----------------------------------------------------------------------------- fresh-process probe


def probe(model_dir: Path, quantize: bool, texts: list[str], settings: BenchSettings,
          qengine: str | None = None) -> dict[str, Any]:
    """Load ``model_dir`` in a fresh Python process, classify ``texts`` once, and report its load time and peak
    resident memory (see ``_probe_main``)."""
    spec = {"model_dir": str(model_dir), "quantize": quantize, "texts": texts, "batch_size": settings.batch_size,
            "threads": torch.get_num_threads(), "qengine": qengine, "device": settings.device}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]),
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-m", "distill_core.bench"], input=json.dumps(spec), capture_output=True,
                          text=True, env=env, cwd=str(PROJECT_ROOT), timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(PROBE_MARK)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"The memory probe for {model_dir} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1][len(PROBE_MARK):])


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB.

    Linux: ``VmHWM`` of ``/proc/self/status``, the high-water mark of this program's memory. Not ``ru_maxrss``:
    that one survives ``exec`` and so reports the (large) parent bench process the probe was forked from.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB elsewhere


def _probe_main() -> None:
    """The fresh process: read a JSON spec on stdin, print one ``BENCH_PROBE {...}`` line.

    Imports (torch, transformers and the BERT/DistilBERT modelling code) come before the clock starts, so
    ``load_time_s`` is the load from disk (plus quantisation for int8, also reported on its own).
    """
    import psutil
    import transformers.models.bert.modeling_bert  # noqa: F401 - imported before timing, see docstring
    import transformers.models.distilbert.modeling_distilbert  # noqa: F401

    from .inference import TextClassifier

    spec = json.loads(sys.stdin.read())
    torch.set_num_threads(int(spec["threads"]))
    rss_before = psutil.Process().memory_info().rss / 2**20
    t0 = time.perf_counter()
    clf = TextClassifier.load(spec["model_dir"], device=spec["device"])
    t1 = time.perf_counter()
    if spec["quantize"]:
        clf.model = quantize_int8(clf.model, spec["qengine"], inplace=True)  # as a server would: no fp32 copy kept
    t2 = time.perf_counter()
    clf.predict_proba(spec["texts"], batch_size=int(spec["batch_size"]))
    print(PROBE_MARK + json.dumps({
        "load_time_s": t2 - t0, "quantize_time_s": t2 - t1 if spec["quantize"] else None,
        "rss_before_load_mb": rss_before, "peak_rss_mb": _peak_rss_mb(),
    }), flush=True)


# ----------------------------------------------------------------------------- training throughput


class _StepClock:
    """Pipeline-loop callback: the time and examples seen at the end of every optimizer step."""

    def __init__(self):
        self.marks: list[tuple[float, int]] = []

    def on_step(self, row: dict[str, Any]) -> None:
        self.marks.append((time.perf_counter(), int(row["examples_seen"])))

    def on_eval(self, row: dict[str, Any]) -> None:
        pass


def _window_rate(marks: list[tuple[float, int]], skip: int) -> dict[str, float]:
    """Samples/s between the end of step ``skip`` and the end of the last step."""
    (t0, n0), (t1, n1) = marks[skip - 1], marks[-1]
    return {"samples_per_s": (n1 - n0) / (t1 - t0), "timed_steps": len(marks) - skip, "timed_seconds": t1 - t0}


def _pipeline_rate(model, loader, steps: int, lr: float, weight_decay: float, device: str) -> dict[str, float]:
    from .training import LoopSettings, cross_entropy_objective, make_accelerator, train

    clock = _StepClock()
    # `epochs` is fractional: (steps - 0.5) / len(loader) epochs round up to exactly `steps` steps.
    settings = LoopSettings(epochs=(steps - 0.5) / len(loader), learning_rate=lr, weight_decay=weight_decay,
                            desc="train (pipeline loop)")
    train(model, loader, None, cross_entropy_objective, settings, make_accelerator("no", cpu=device == "cpu"), [clock])
    return _window_rate(clock.marks, min(TRAIN_WARMUP_STEPS, steps - 1))


def _trainer_rate(model, dataset, tokenizer, steps: int, batch_size: int, lr: float, weight_decay: float,
                  seed: int, device: str) -> dict[str, Any]:
    """transformers' Trainer with its defaults, except what makes the comparison fair or quiet: batch size,
    learning rate, weight decay and plain AdamW as the pipeline uses, a step budget, no saving, no reports."""
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    sizes: list[int] = []
    pad = DataCollatorWithPadding(tokenizer)  # Trainer's default collator for a tokenizer

    def counting_collator(features):
        sizes.append(len(features))
        return pad(features)

    marks: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=batch_size, max_steps=steps, learning_rate=lr,
            weight_decay=weight_decay, optim="adamw_torch", seed=seed, save_strategy="no", report_to="none",
            use_cpu=device == "cpu", disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                          data_collator=counting_collator, callbacks=[Clock()])
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        trainer.train()
    skip = min(TRAIN_WARMUP_STEPS, steps - 1)
    seconds = marks[-1] - marks[skip - 1]
    return {"samples_per_s": sum(sizes[skip:steps]) / seconds, "timed_steps": len(marks) - skip,
            "timed_seconds": seconds, "trainer_args": {"optim": "adamw_torch", "train_sampling_strategy":
                                                      args.train_sampling_strategy, "collator": "DataCollatorWithPadding"}}


def training_throughput(run_dir: Path, cfg, splits, tokenizer, settings: BenchSettings,
                        start: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Teacher training samples/s three ways, on the run's training split (see the module docstring)."""
    from accelerate.utils import set_seed
    from datasets import DatasetDict
    from transformers import AutoModelForSequenceClassification

    from .data import make_loader, padding_efficiency, tokenize_splits

    steps, bs, seed, max_length = settings.train_steps, settings.batch_size, cfg.train.seed, cfg.data.max_length
    lr, wd = cfg.train.learning_rate, cfg.train.weight_decay
    ds = tokenize_splits(DatasetDict(train=splits.train), tokenizer, max_length)["train"]

    def fresh_teacher():
        set_seed(seed)
        return AutoModelForSequenceClassification.from_pretrained(run_dir / "teacher", attn_implementation="eager")

    pipeline_dl = make_loader(ds, tokenizer, bs, shuffle=True, seed=seed, group_by_length=cfg.data.group_by_length)
    fixed_dl = make_loader(ds, tokenizer, bs, shuffle=True, seed=seed, group_by_length=False, pad_to=max_length)
    random_dl = make_loader(ds, tokenizer, bs, shuffle=True, seed=seed, group_by_length=False)  # as Trainer batches
    out: dict[str, Any] = {
        "model": "teacher", "steps": steps, "timed_steps": steps - min(TRAIN_WARMUP_STEPS, steps - 1),
        "batch_size": bs, "max_length": max_length, "learning_rate": lr, "train_rows": len(ds),
        "pipeline_batching": "length-grouped" if cfg.data.group_by_length else "random",
        "padding_efficiency": {"pipeline": padding_efficiency(pipeline_dl), "fixed_padding": padding_efficiency(fixed_dl),
                               "trainer": padding_efficiency(random_dl)},
    }
    start("training: pipeline")
    pipe = _pipeline_rate(fresh_teacher(), pipeline_dl, steps, lr, wd, settings.device)
    start("training: fixed padding")
    fixed = _pipeline_rate(fresh_teacher(), fixed_dl, steps, lr, wd, settings.device)
    start("training: Trainer")
    trainer = _trainer_rate(fresh_teacher(), ds, tokenizer, steps, bs, lr, wd, seed, settings.device)
    out.update({
        "pipeline_samples_per_s": pipe["samples_per_s"], "fixed_padding_samples_per_s": fixed["samples_per_s"],
        "trainer_samples_per_s": trainer["samples_per_s"], "trainer_args": trainer["trainer_args"],
        "timed_seconds": {"pipeline": pipe["timed_seconds"], "fixed_padding": fixed["timed_seconds"],
                          "trainer": trainer["timed_seconds"]},
    })
    out["pipeline_vs_fixed_padding"] = out["pipeline_samples_per_s"] / out["fixed_padding_samples_per_s"]
    out["pipeline_vs_trainer"] = out["pipeline_samples_per_s"] / out["trainer_samples_per_s"]
    return out


# ----------------------------------------------------------------------------- models to measure


@dataclass
class _Source:
    key: str  # teacher | student | student_int8
    model_dir: Path  # what to load (fp32); int8 quantises it after loading
    quantize: bool


def _bert_base_models(tokenizer, label_names: list[str], max_length: int, into: Path) -> list[_Source]:
    """Randomly initialised bert-base / distilbert-base shapes, saved to ``into`` so the probe loads them from disk."""
    from transformers import BertConfig, BertForSequenceClassification, DistilBertConfig, DistilBertForSequenceClassification

    from .models import label_maps

    vocab = max(BERT_BASE_VOCAB, len(tokenizer))
    shapes = ARCH_SHAPES["bert-base"]
    torch.manual_seed(0)
    built = {
        "teacher": BertForSequenceClassification(BertConfig(vocab_size=vocab, **shapes["teacher"], **label_maps(label_names))),
        "student": DistilBertForSequenceClassification(DistilBertConfig(vocab_size=vocab, **shapes["student"],
                                                                        **label_maps(label_names))),
    }
    for kind, model in built.items():
        model.config.distill_max_length = max_length
        model.save_pretrained(into / kind)
        tokenizer.save_pretrained(into / kind)
    return [_Source("teacher", into / "teacher", False), _Source("student", into / "student", False),
            _Source("student_int8", into / "student", True)]


def _run_models(run_dir: Path) -> list[_Source]:
    sources = [_Source(k, run_dir / k, False) for k in ("teacher", "student") if has_model(run_dir, k)]
    if has_model(run_dir, "student"):
        sources.append(_Source("student_int8", run_dir / "student", True))
    if not sources:
        raise RunError(f"{run_dir} has neither a teacher nor a student model to measure; train them with "
                       "`python -m distill_core train`")
    return sources


# ----------------------------------------------------------------------------- the whole benchmark


class _Stages:
    """One tqdm bar over the bench's stages; ``start(message)`` ends the previous stage and reports progress."""

    def __init__(self, total: int, progress: Callable[[float, str], None] | None):
        self.total, self.progress = total, progress
        self.bar = tqdm(total=total, desc="bench", unit="stage")
        self.started = False

    def start(self, message: str) -> None:
        if self.started:
            self.bar.update(1)
        self.started = True
        self.bar.set_description(message)
        if self.progress is not None:
            self.progress(min(self.bar.n / self.total, 1.0), message)

    def close(self) -> None:
        if self.started:
            self.bar.update(1)
        self.bar.close()


def run_bench(run: str | Path, settings: BenchSettings | None = None, root: Path | None = None,
              progress: Callable[[float, str], None] | None = None) -> dict[str, Any]:
    """Measure a run's models, write ``bench.json`` (or ``bench_<arch>.json``) into the run folder, return it.

    Args:
        run: run id (under ``root``, default ``runs_dir()``) or run folder.
        settings: what and how often to measure.
        progress: called as ``progress(fraction_done, message)`` at each stage; the same goes to
            ``PROGRESS_FILE`` in the run folder while the bench runs (see ``read_progress``).
    """
    settings = settings or BenchSettings()
    settings.validate()
    run_dir = resolve_run(run, root)
    info = load_run(run_dir)
    if info.status != "complete":
        logger.warning("Run %s is %s (%s); measuring the models it has.", info.run_id, info.status, info.error or info.stage)
    report = _progress_reporter(run_dir, settings.arch, progress)
    threads, engine = torch.get_num_threads(), torch.backends.quantized.engine
    try:
        bench = _bench(run_dir, info, settings, report)
    finally:
        (run_dir / PROGRESS_FILE).unlink(missing_ok=True)
        # --threads and the int8 engine are process-wide torch settings: leave them as they were.
        torch.set_num_threads(threads)
        torch.backends.quantized.engine = engine
    write_json_atomic(bench_path(run_dir, settings.arch), bench)
    if progress is not None:
        progress(1.0, "done")
    logger.info("Wrote %s", bench_path(run_dir, settings.arch))
    return bench


def _bench(run_dir: Path, info, settings: BenchSettings, report: Callable[[float, str], None]) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from .data import load_splits
    from .pipeline import load_run_config

    report(0.0, "loading the run's data")
    cfg = load_run_config(run_dir)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    if settings.qengine != "auto":
        torch.backends.quantized.engine = settings.qengine
    arch = settings.arch
    skip_training = settings.skip_training or arch != "run" or not has_model(run_dir, "teacher")
    machine = machine_info()
    other_load = OtherLoad().start()
    notes = []

    splits = load_splits(cfg.data, seed=cfg.train.seed)
    run_sources = _run_models(run_dir)
    tokenizer = AutoTokenizer.from_pretrained(run_sources[0].model_dir)
    max_texts = settings.max_texts or (BERT_BASE_TEXTS if arch == "bert-base" else None)
    test = splits.test if max_texts is None else splits.test.select(range(min(max_texts, len(splits.test))))
    texts, labels = list(test["text"]), np.asarray(list(test["label"]))
    picked = pick_texts(texts, tokenizer, cfg.data.max_length)
    token_counts = picked.pop("token_counts")
    logger.info("Bench %s (%s): %d test texts, median %d tokens, max_length %d, %d torch threads, %s",
                info.run_id, arch, len(texts), picked["median_tokens"], cfg.data.max_length, machine["torch_threads"],
                machine["cpu_model"])

    with tempfile.TemporaryDirectory(prefix="bench_") as tmp:
        if arch == "bert-base":
            report(0.0, "building random bert-base and distilbert-base shapes")
            sources = _bert_base_models(tokenizer, splits.label_names, cfg.data.max_length, Path(tmp))
        else:
            sources = run_sources
        if settings.device != "cpu":
            sources = [s for s in sources if not s.quantize]
            notes.append("int8 dynamic quantisation runs on CPU only; not measured on " + settings.device)
        int8 = any(s.quantize for s in sources)
        stages = _Stages(2 + int8 + len(sources) * (1 + settings.probe) + (0 if skip_training else 3), report)
        clfs, models, engine, engine_trial = _load_models(sources, cfg.data.max_length, picked["max_text"], settings,
                                                          stages)
        _latency(clfs, models, picked, settings, stages)
        for key, clf in clfs.items():
            stages.start(f"{key}: throughput at batch {settings.batch_size}")
            models[key].update(_throughput(clf, texts, labels if arch == "run" else None, token_counts, settings))
        clfs.clear()
        gc.collect()
        for src in sources:
            if settings.probe:
                stages.start(f"{src.key}: load time and memory (fresh process)")
                probe_texts = texts[: settings.batch_size] + [picked["max_text"]]
                models[src.key].update(probe(src.model_dir, src.quantize, probe_texts, settings, engine))
            else:
                models[src.key].update({"load_time_s": None, "peak_rss_mb": None, "rss_before_load_mb": None,
                                        "quantize_time_s": None})
        training = None
        if not skip_training:
            training = training_throughput(run_dir, cfg, splits, tokenizer, settings, stages.start)
        stages.close()

    machine["other_processes_cpu_share"] = round(other_load.stop(), 4)
    if machine["other_processes_cpu_share"] > 0.1:
        notes.append(f"other processes used {machine['other_processes_cpu_share']:.0%} of the CPU while the bench ran: "
                     "the timings are slower and noisier than on a quiet machine")
        logger.warning("%s", notes[-1])
    bench = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "run_id": info.run_id,
        "dataset": info.dataset,
        "machine": machine,
        "settings": {**asdict(settings), "median_tokens": picked["median_tokens"], "max_length": cfg.data.max_length,
                     "qengine_used": engine, "texts": len(texts),
                     "median_text": picked["median_text"], "dataset_median_tokens": picked["median_of_dataset"]},
        "models": models,
        "speedup": speedups(models),
        "int8": int8_cost(models, engine, engine_trial),
        "training_throughput": training,
        "notes": notes,
    }
    bench["targets"] = check_targets(bench)
    return bench


def _load_models(sources: list[_Source], max_length: int, max_text: str, settings: BenchSettings,
                 stages: _Stages) -> tuple[dict[str, Any], dict[str, dict[str, Any]], str | None, dict[str, float]]:
    """Classifiers to time, their static figures (size, parameters, shape), and the int8 engine chosen."""
    from .inference import TextClassifier

    clfs: dict[str, Any] = {}
    models: dict[str, dict[str, Any]] = {}
    engine, trial = None, {}
    for src in sources:
        if src.quantize:
            fp32 = clfs["student"]
            stages.start("int8: choosing the quantized engine")
            engine, trial = pick_qengine(fp32, max_text, settings)
            clf = TextClassifier(quantize_int8(fp32.model, engine), fp32.tokenizer, fp32.max_length, name=src.key)
            params, size = fp32.num_parameters(), state_dict_bytes(clf.model)
        else:
            clf = TextClassifier.load(src.model_dir, max_length=max_length, device=settings.device)
            params, size = clf.num_parameters(), (src.model_dir / "model.safetensors").stat().st_size
        clfs[src.key] = clf
        models[src.key] = {"title": TITLES[settings.arch][src.key], "parameters": int(params), "size_bytes": int(size),
                           "dtype": "int8 (dynamic)" if src.quantize else "float32",
                           "architecture": encoder_shape(clf.model.config)}
    return clfs, models, engine, trial


def _latency(clfs: dict[str, Any], models: dict[str, dict[str, Any]], picked: dict[str, Any], settings: BenchSettings,
             stages: _Stages) -> None:
    """Batch-1 latency, its analytic FLOPs and achieved GFLOP/s, at the median and at max_length, into ``models``."""
    for m in models.values():
        m.update({"latency_ms": {}, "flops": {}, "gflops_per_s": {}})
    for length, text, tokens in (("median_len", picked["median_text"], picked["median_tokens"]),
                                 ("max_len", picked["max_text"], picked["max_tokens"])):
        stages.start(f"latency at {tokens} tokens, batch 1")
        lat = time_calls({k: (lambda c=c, text=text: c.predict_proba([text])) for k, c in clfs.items()},
                         settings.repeats, settings.warmup)
        for key, clf in clfs.items():
            m = models[key]
            m["latency_ms"][length] = {**lat[key], "tokens": int(tokens)}
            m["flops"][length] = forward_flops(clf.model.config, tokens)
            m["gflops_per_s"][length] = m["flops"][length] / (lat[key]["p50"] / 1000.0) / 1e9


def _throughput(clf, texts: list[str], labels: np.ndarray | None, token_counts: np.ndarray,
                settings: BenchSettings) -> dict[str, Any]:
    tp = throughput_and_accuracy(clf, texts, labels, settings.batch_size)
    useful_flops = sum(forward_flops(clf.model.config, t) for t in token_counts)  # real tokens, padding left out
    return {"throughput_texts_per_s": tp["texts_per_s"], "throughput_gflops_per_s": useful_flops / tp["seconds"] / 1e9,
            "accuracy": tp.get("accuracy"), "macro_f1": tp.get("macro_f1"),
            "accuracy_texts": len(texts) if tp.get("accuracy") is not None else 0}


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def speedups(models: dict[str, dict]) -> dict[str, float | None]:
    """Latency ratios (p50; slower / faster, so >1 means faster) and throughput ratios between the models."""
    def p50(key, length):
        return models.get(key, {}).get("latency_ms", {}).get(length, {}).get("p50")

    def tput(key):
        return models.get(key, {}).get("throughput_texts_per_s")

    out = {}
    for a, b, name in (("teacher", "student", "student_vs_teacher"), ("student", "student_int8", "int8_vs_student"),
                       ("teacher", "student_int8", "int8_vs_teacher")):
        for length in ("median_len", "max_len"):
            out[f"{name}_{length}"] = _ratio(p50(a, length), p50(b, length))
        out[f"{name}_throughput"] = _ratio(tput(b), tput(a))
    return out


def int8_cost(models: dict[str, dict], engine: str | None = None, engine_trial: dict | None = None) -> dict[str, Any] | None:
    """What int8 costs against the fp32 student: accuracy and macro-F1 points lost, and the size ratio; plus the
    engine used and the trial that chose it."""
    s, q = models.get("student"), models.get("student_int8")
    if not s or not q:
        return None
    drop = lambda k: (s[k] - q[k]) * 100 if s.get(k) is not None and q.get(k) is not None else None  # noqa: E731
    return {"engine": engine or torch.backends.quantized.engine, "engine_trial_ms_max_len": engine_trial or {},
            "accuracy_drop_points": drop("accuracy"), "macro_f1_drop_points": drop("macro_f1"),
            "size_ratio": _ratio(s["size_bytes"], q["size_bytes"])}


def check_targets(bench: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets against this bench: value, threshold and ``met`` (None when not measured)."""
    values = {**(bench.get("speedup") or {}), **(bench.get("training_throughput") or {})}
    values["int8_accuracy_drop_points"] = (bench.get("int8") or {}).get("accuracy_drop_points")
    out = []
    for key, what, threshold, op in TARGETS:
        v = values.get(key)
        met = None if v is None else (v >= threshold if op == ">=" else v <= threshold)
        out.append({"key": key, "what": what, "target": f"{op} {threshold:g}", "threshold": threshold,
                    "value": v, "met": met})
    return out


# ----------------------------------------------------------------------------- the table


def format_table(bench: dict[str, Any]) -> str:
    """The bench as a plain-text table (what ``python -m distill_core bench`` prints)."""
    m, s = bench["machine"], bench["settings"]
    lines = [f"{bench['run_id']} ({s['arch']}) on {m['cpu_model']}, {m['cores']} cores, {m['torch_threads']} torch threads, "
             f"torch {m['torch']}; fp32 matmul {m['matmul_gflops']:.0f} GFLOP/s",
             f"batch-1 latency: p50 / p95 over {s['repeats']} runs, tokenisation included; "
             f"throughput at batch {s['batch_size']} on {s['texts']} test texts"]
    med, mx = s["median_tokens"], s["max_length"]
    head = (f"{'model':<30} {'params':>7} {'size MB':>8} {f'ms @{med} tok':>14} {f'ms @{mx} tok':>15} {'texts/s':>8} "
            f"{'GFLOP/s':>8} {'load s':>7} {'peak MB':>8} {'acc':>6} {'F1':>6}")
    lines += [head, "-" * len(head)]
    for r in bench["models"].values():
        lat = r["latency_ms"]
        lines.append(
            f"{r['title']:<30} {r['parameters'] / 1e6:>6.1f}M {r['size_bytes'] / 2**20:>8.1f} "
            f"{lat['median_len']['p50']:>6.1f} / {lat['median_len']['p95']:>5.1f} "
            f"{lat['max_len']['p50']:>7.1f} / {lat['max_len']['p95']:>5.1f} {r['throughput_texts_per_s']:>8.1f} "
            f"{r['gflops_per_s']['max_len']:>8.1f} {_f(r.get('load_time_s'), '7.2f')} {_f(r.get('peak_rss_mb'), '8.0f')} "
            f"{_f(r.get('accuracy'), '6.3f')} {_f(r.get('macro_f1'), '6.3f')}")
    sp = bench["speedup"]
    lines.append("")
    lines.append("speed-up (p50)          median length   max length   throughput")
    for name, label in (("student_vs_teacher", "student vs teacher"), ("int8_vs_student", "int8 vs student"),
                        ("int8_vs_teacher", "int8 vs teacher")):
        if sp.get(f"{name}_max_len") is not None:
            lines.append(f"  {label:<21} {_f(sp.get(f'{name}_median_len'), '12.2f')}x {_f(sp.get(f'{name}_max_len'), '11.2f')}x "
                         f"{_f(sp.get(f'{name}_throughput'), '11.2f')}x")
    if bench.get("int8") and bench["int8"].get("accuracy_drop_points") is not None:
        q = bench["int8"]
        lines.append(f"  int8 ({q['engine']}) costs {q['accuracy_drop_points']:+.2f} accuracy points, "
                     f"{q['macro_f1_drop_points']:+.2f} macro-F1 points; {q['size_ratio']:.1f}x smaller")
    t = bench.get("training_throughput")
    if t:
        pe = t["padding_efficiency"]
        lines += ["", f"teacher training, batch {t['batch_size']}, {t['timed_steps']} timed steps (samples/s, real-token share):",
                  f"  pipeline ({t['pipeline_batching']})  {t['pipeline_samples_per_s']:8.1f}  {pe['pipeline']:.0%}",
                  f"  fixed padding to {t['max_length']:<5}    {t['fixed_padding_samples_per_s']:8.1f}  {pe['fixed_padding']:.0%}"
                  f"   pipeline {t['pipeline_vs_fixed_padding']:.2f}x",
                  f"  Trainer defaults          {t['trainer_samples_per_s']:8.1f}  {pe['trainer']:.0%}"
                  f"   pipeline {t['pipeline_vs_trainer']:.2f}x"]
    lines += ["", "targets:"]
    for tg in bench["targets"]:
        state = "not measured" if tg["met"] is None else ("met" if tg["met"] else "MISSED")
        lines.append(f"  {tg['what']:<55} {tg['target']:>7}  {_f(tg['value'], '6.2f')}  {state}")
    for note in bench.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _f(v: float | None, spec: str) -> str:
    width = int(spec.split(".")[0]) if spec[0].isdigit() else 0
    return format(v, spec) if v is not None else "-".rjust(width)


# ----------------------------------------------------------------------------- running in the background


def _progress_reporter(run_dir: Path, arch: str, progress: Callable[[float, str], None] | None):
    """Report each stage to ``progress`` and to ``PROGRESS_FILE`` in the run folder (for the dashboard)."""
    path = Path(run_dir) / PROGRESS_FILE

    def report(fraction: float, message: str) -> None:
        write_json_atomic(path, {"fraction": round(fraction, 4), "message": message, "arch": arch, "pid": os.getpid(),
                                 "updated": time.time()})
        if progress is not None:
            progress(fraction, message)

    return report


def read_progress(run_dir: Path) -> dict[str, Any] | None:
    """How far a bench running on this run has got (``fraction``, ``message``, ``arch``, ``pid``), or None.

    A file left behind by a bench that was killed (its process gone) counts as no bench running.
    """
    path = Path(run_dir) / PROGRESS_FILE
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    try:
        alive = pid_alive(int(state.get("pid", 0)))
    except ValueError:
        return None
    return state if alive else None


def launch_bench(run_dir: Path, arch: str = "run") -> tuple[subprocess.Popen, Path]:
    """Start ``python -m distill_core bench RUN --arch ARCH`` in the background; returns it and its log file."""
    from .cli import launch_in_background

    log = Path(run_dir) / f".bench-{arch}.log"
    return launch_in_background(["bench", str(run_dir), "--arch", arch], log), log


# ----------------------------------------------------------------------------- CLI


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    """The ``bench`` subcommand (called by ``cli.build_parser``)."""
    d = BenchSettings()
    p = subparsers.add_parser("bench", help="measure latency, throughput, size, memory and training speed of a run's models",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run id or folder")
    p.add_argument("--output-dir", help="runs folder (default: runs_dir())")
    p.add_argument("--arch", choices=ARCHS, default=d.arch,
                   help="run: the run's models; bert-base: random bert-base / distilbert-base shapes (bench_bert-base.json)")
    p.add_argument("--repeats", type=int, default=d.repeats, help="timed batch-1 calls per model and length (30)")
    p.add_argument("--warmup", type=int, default=d.warmup, help="untimed calls before them (5)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="throughput and training batch size (32)")
    p.add_argument("--max-texts", type=int, default=None,
                   help=f"test texts for throughput and accuracy (default: all; {BERT_BASE_TEXTS} for bert-base)")
    p.add_argument("--train-steps", type=int, default=d.train_steps, help="optimizer steps per training method (20)")
    p.add_argument("--skip-training", action="store_true", help="skip the training-throughput comparison")
    p.add_argument("--no-probe", dest="probe", action="store_false",
                   help="skip the fresh-process load time and memory probes")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's default, one per core)")
    p.add_argument("--qengine", choices=["auto", *torch.backends.quantized.supported_engines], default=d.qengine,
                   help=f"quantized engine for int8 (auto: the faster of {', '.join(QENGINES)} at max_length)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=d.device, help="where to measure (cpu)")
    return p


def cmd_bench(args) -> int:
    settings = BenchSettings(repeats=args.repeats, warmup=args.warmup, batch_size=args.batch_size,
                             max_texts=args.max_texts, train_steps=args.train_steps, skip_training=args.skip_training,
                             probe=args.probe, arch=args.arch, threads=args.threads, qengine=args.qengine,
                             device=args.device)
    bench = run_bench(args.run, settings, root=Path(args.output_dir) if args.output_dir else None)
    print(format_table(bench))
    return 0


def load_bench(run_dir: Path, arch: str = "run") -> dict[str, Any] | None:
    """A run's bench dict, or None when it has not been benchmarked (a corrupt file raises RunError)."""
    from .runs import read_json

    path = bench_path(run_dir, arch)
    return read_json(path) if path.is_file() else None


if __name__ == "__main__":  # the fresh process of `probe`; not a user command
    _probe_main()
