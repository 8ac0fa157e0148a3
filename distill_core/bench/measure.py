"""What the bench measures, one function each: the machine, timing, token lengths, FLOPs, int8, throughput.

    machine_info()                                  # CPU, cores, threads, versions, fp32 matmul GFLOP/s
    machine_info("cuda")                            # the same, plus the GPU and its own matmul GFLOP/s
    sync("cuda")                                    # wait for the GPU's queued work before reading a clock
    time_calls({"a": f, "b": g}, repeats=30, warmup=5)   # ms per call: p50, p95, mean, min
    pick_texts(texts, tokenizer, max_length)        # a median-length test text and a max_length one
    forward_flops(model.config, tokens)             # analytic FLOPs of one forward pass
    quantize_int8(model)                            # a dynamically quantised int8 copy
    throughput_and_accuracy(clf, texts, labels, batch_size)

``run.run_bench`` puts them together; each is usable (and tested) on its own.
"""

from __future__ import annotations

import copy
import gc
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..train import lstm
from ..train.models import encoder_shape
from .settings import QENGINES, BenchSettings

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


def sync(device: str | torch.device = "cpu") -> None:
    """Wait until ``device`` has finished the work queued on it: CUDA kernels run after the call that queues them
    returns, so a clock read without this times the queueing, not the work. A no-op on the CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(n: int | None = None, repeats: int = 5, dtype: torch.dtype = torch.float32,
                  device: str | torch.device = "cpu") -> float:
    """The matmul rate of ``device`` in ``dtype`` (GFLOP/s, best of ``repeats``; on the CPU at torch's thread count):
    the ceiling that the models' achieved GFLOP/s are read against (fp32 for inference and fp32 training, bf16 for
    bf16 training). ``n`` defaults to 1024 on the CPU and 8192 on a GPU, which 1024 would leave mostly idle; a GPU's
    fp32 rate follows torch's TF32 setting (off unless the user turned it on), as the models' fp32 matmuls do."""
    n = n or (8192 if torch.device(device).type == "cuda" else 1024)
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def gpu_info(device: str | torch.device = "cuda") -> dict[str, Any]:
    """The ``machine.gpu`` section of bench.json: the GPU's name, memory, CUDA build and its matmul rates."""
    device = torch.device(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    rates = {"matmul_gflops": matmul_gflops(dtype=torch.float32, device=device),
             "matmul_gflops_fp16": matmul_gflops(dtype=torch.float16, device=device)}
    if torch.cuda.is_bf16_supported():
        rates["matmul_gflops_bf16"] = matmul_gflops(dtype=torch.bfloat16, device=device)
    return {
        "name": torch.cuda.get_device_name(index), "index": index, "count": torch.cuda.device_count(),
        "memory_gib": round(props.total_memory / 2**30, 1), "capability": f"{props.major}.{props.minor}",
        "torch_cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        **{k: round(v, 1) for k, v in rates.items()},
    }


def matmul_peaks(machine: dict[str, Any], device: str = "cpu") -> dict[str, float | None]:
    """The matmul rate per training precision (``fp32``, ``bf16``, ``fp16``) of the device that trains: the GPU's
    from ``machine["gpu"]`` on ``cuda``, else the CPU's (no fp16 rate: CPUs train in bf16 or fp32)."""
    src = machine.get("gpu") if device == "cuda" and machine.get("gpu") else machine
    return {"fp32": src.get("matmul_gflops"), "bf16": src.get("matmul_gflops_bf16"), "fp16": src.get("matmul_gflops_fp16")}


def onnx_providers(device: str = "cpu", int8: bool = False) -> tuple[list, str | None]:
    """ONNX Runtime execution providers for a model measured on ``device``, and why it runs on the CPU when a GPU
    was asked for (None otherwise).

    The fp32 graph runs on ``CUDAExecutionProvider`` where this ONNX Runtime has it (the ``onnxruntime-gpu``
    package); the int8 graph always runs on the CPU: its dynamically quantised ops (``DynamicQuantizeLinear``,
    ``MatMulInteger``) are a CPU path in ONNX Runtime, and on the CUDA provider they would copy every activation to
    the host and back.
    """
    cpu = ["CPUExecutionProvider"]
    if torch.device(device).type != "cuda":
        return cpu, None
    if int8:
        return cpu, ("ONNX int8 (dynamic quantisation) is a CPU path in ONNX Runtime: it was measured on the CPU, and "
                     "its speed is not compared with the GPU rows")
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return cpu, ("this ONNX Runtime has no CUDAExecutionProvider (it comes with the onnxruntime-gpu package), so "
                     "the fp32 ONNX row was measured on the CPU")
    index = torch.cuda.current_device()
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"], None


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """The ``machine`` section of bench.json: CPU, cores, threads, library versions, load, matmul rate, and on
    ``cuda`` the GPU (``gpu_info``; None on the CPU)."""
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
        "matmul_gflops_bf16": round(matmul_gflops(dtype=torch.bfloat16), 1),
        "gpu": gpu_info(device) if torch.device(device).type == "cuda" else None,
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


# ----------------------------------------------------------------------------- timing


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


# ----------------------------------------------------------------------------- what is run


def pick_texts(texts: list[str], tokenizer, max_length: int) -> dict[str, Any]:
    """A test text of the median token length and one of ``max_length`` tokens (after truncation).

    Lengths count [CLS] and [SEP] and are capped at ``max_length``, as the model sees them. When no test text
    reaches ``max_length``, the longest ones are joined until one does.

    Returns:
        ``median_text``, ``median_tokens``, ``median_of_dataset``, ``max_text``, ``max_tokens`` and
        ``token_counts`` (N,), the token count of every text.
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


def forward_flops(config, tokens: int) -> int:
    """Analytic FLOPs of one forward pass on one text of ``tokens`` tokens (a multiply-add counts 2).

    Per layer, with T tokens, hidden size H and FFN size F:
        Q, K, V and output projections   4 * 2*T*H*H
        attention scores Q K^T and  A V  2 * 2*T*T*H
        feed-forward (two matmuls)       2 * 2*T*H*F
    plus the head on the [CLS] vector: BERT's pooler / DistilBERT's pre-classifier (2*H*H) and the classifier
    (2*H*C). Embedding look-ups, LayerNorm, softmax and GELU are element-wise and left out (a few per cent).
    An int8 model does the same number of operations, so the same count applies. The LSTM student has its own
    count (``lstm.forward_flops``).
    """
    if lstm.is_lstm_config(config):
        return lstm.forward_flops(config, tokens)
    s = encoder_shape(config)
    t, h, f = int(tokens), s["hidden"], s["ffn"]
    per_layer = 8 * t * h * h + 4 * t * t * h + 4 * t * h * f
    return s["layers"] * per_layer + 2 * h * h + 2 * h * s["classes"]


# ----------------------------------------------------------------------------- int8


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


def pick_qengine(clf, text: str, settings: BenchSettings) -> tuple[str, dict[str, float]]:
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


# ----------------------------------------------------------------------------- throughput


def throughput_and_accuracy(clf, texts: list[str], labels: np.ndarray | None, batch_size: int) -> dict[str, Any]:
    """Texts per second over ``texts`` at ``batch_size`` (one warm-up batch first), and, given labels (N,), the
    accuracy and macro-F1 of the same predictions."""
    # Imported here: the probe process imports this module, and the training stack (accelerate, sklearn)
    # would add to the peak memory it measures.
    from ..train.loop import accuracy_f1

    clf.predict_logits(texts[:batch_size], batch_size=batch_size)
    t0 = time.perf_counter()
    logits = clf.predict_logits(texts, batch_size=batch_size)  # (N, C)
    elapsed = time.perf_counter() - t0
    out: dict[str, Any] = {"texts": len(texts), "seconds": elapsed, "texts_per_s": len(texts) / elapsed}
    if labels is not None:
        out.update(accuracy_f1(labels, logits.argmax(-1)))
    return out
