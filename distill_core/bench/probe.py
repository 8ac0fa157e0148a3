"""Load time and peak memory of one model, each measured in a fresh Python process.

    probe(run_dir / "student", quantize=True, texts=texts, settings=settings, qengine="x86")
    # -> {"load_time_s", "quantize_time_s", "rss_before_load_mb", "peak_rss_mb",
    #     "peak_memory_mb", "peak_memory_device", "peak_memory_kind"}

The peak memory is read on the device the model runs on (``peak_memory_mb``, with ``peak_memory_device`` and
``peak_memory_kind`` saying which): on the CPU the process's peak resident memory (``VmHWM``, also kept as
``peak_rss_mb``); on a GPU the most memory torch's tensors held (``torch.cuda.max_memory_allocated``, after
``reset_peak_memory_stats``; the CUDA context itself is not counted), and for an ONNX Runtime session on the GPU the
device memory it took (``torch.cuda.mem_get_info`` before loading and after the run: ONNX Runtime's memory arena
keeps what its peak needed, but another process using the GPU at the same time would count too).

``probe`` starts ``python -m distill_core.bench.probe`` (this module) with a JSON spec on stdin; the child loads
the model, classifies the texts once and prints one ``BENCH_PROBE {...}`` line. A fresh process per model keeps
one model's memory out of another's figures. It is not a user command.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..config import PROJECT_ROOT
from .measure import quantize_int8
from .settings import BenchSettings

PROBE_MARK = "BENCH_PROBE "  # starts the child's one line of results on stdout
PROBE_MODULE = "distill_core.bench.probe"  # this module, run as the child


def probe(model_dir: Path, quantize: bool, texts: list[str], settings: BenchSettings,
          qengine: str | None = None, backend: str = "torch", device: str | None = None) -> dict[str, Any]:
    """Load ``model_dir`` in a fresh Python process, classify ``texts`` once, and report its load time and peak
    resident memory (see ``_probe_main``).

    Args:
        quantize: quantise the loaded model to int8 (on ``qengine``), as the bench's ``student_int8``.
        backend: ``torch``, or ``onnx`` / ``onnx-int8`` for an ONNX export folder run by ONNX Runtime.
        device: where the model runs, ``cpu`` or ``cuda`` (default ``settings.device``; int8 runs on the CPU).
    """
    spec = {"model_dir": str(model_dir), "quantize": quantize, "texts": texts, "batch_size": settings.batch_size,
            "threads": torch.get_num_threads(), "qengine": qengine, "device": device or settings.device,
            "backend": backend}
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    # cwd: `-m distill_core...` resolves from the project folder whether or not the package is installed.
    proc = subprocess.run([sys.executable, "-m", PROBE_MODULE], input=json.dumps(spec), capture_output=True,
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

    from ..ship.inference import TextClassifier
    from ..ship.onnx_export import OnnxClassifier
    from .measure import onnx_providers

    spec = json.loads(sys.stdin.read())
    torch.set_num_threads(int(spec["threads"]))
    backend = spec.get("backend", "torch")
    providers = None
    if backend != "torch":
        import onnxruntime  # noqa: F401 - imported before timing, as torch is

        providers, _ = onnx_providers(spec["device"], int8=backend == "onnx-int8")
    # int8 (torch dynamic quantisation, or ONNX Runtime's) is a CPU path; the fp32 ONNX graph is on the GPU only
    # where ONNX Runtime has its CUDA provider.
    on_gpu = spec["device"] == "cuda" and not spec["quantize"] and (backend == "torch" or providers[0] != "CPUExecutionProvider")
    if on_gpu:
        torch.cuda.init()  # the CUDA context is made before the figures start, and not counted
        torch.cuda.reset_peak_memory_stats()
        free_before = torch.cuda.mem_get_info()[0]

    rss_before = psutil.Process().memory_info().rss / 2**20
    t0 = time.perf_counter()
    if backend == "torch":
        clf = TextClassifier.load(spec["model_dir"], device="cuda" if on_gpu else "cpu")
    else:
        clf = OnnxClassifier.load(spec["model_dir"], int8=backend == "onnx-int8", threads=int(spec["threads"]),
                                  providers=providers)
    t1 = time.perf_counter()
    if spec["quantize"]:
        clf.model = quantize_int8(clf.model, spec["qengine"], inplace=True)  # as a server would: no fp32 copy kept
    t2 = time.perf_counter()
    clf.predict_proba(spec["texts"], batch_size=int(spec["batch_size"]))
    peak_rss = _peak_rss_mb()
    if not on_gpu:
        peak = {"peak_memory_mb": peak_rss, "peak_memory_device": "cpu",
                "peak_memory_kind": "process peak resident memory (VmHWM)"}
    elif backend == "torch":
        peak = {"peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20, "peak_memory_device": "cuda",
                "peak_memory_kind": "GPU memory held by torch tensors (torch.cuda.max_memory_allocated)"}
    else:
        peak = {"peak_memory_mb": (free_before - torch.cuda.mem_get_info()[0]) / 2**20, "peak_memory_device": "cuda",
                "peak_memory_kind": "GPU memory taken by the ONNX Runtime session (torch.cuda.mem_get_info)"}
    print(PROBE_MARK + json.dumps({
        "load_time_s": t2 - t0, "quantize_time_s": t2 - t1 if spec["quantize"] else None,
        "rss_before_load_mb": rss_before, "peak_rss_mb": peak_rss, **peak,
    }), flush=True)


if __name__ == "__main__":
    _probe_main()
