"""Reading a bench (``bench.json``): speed-up ratios, what int8 costs, and the table the CLI prints.

    bench = load_bench(run_dir)                     # None when the run has not been benchmarked
    latency_p50(bench["models"]["student"], "max_len")
    speedup(bench, "teacher", "student", "max_len") # how many times faster the student is than the teacher
    print(format_table(bench))

This is the one place speed-up ratios are computed: ``run`` stores them in bench.json through ``speedups``, and
the Performance page and the dashboard's overview ask ``speedup`` for theirs. Nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..files import read_json
from ..runs import bench_path

LENGTHS = ("median_len", "max_len")  # the two batch-1 latencies of every model entry
# The ratios stored in bench.json's "speedup": name -> (reference model, faster model).
PAIRS = {"student_vs_teacher": ("teacher", "student"), "int8_vs_student": ("student", "student_int8"),
         "int8_vs_teacher": ("teacher", "student_int8"), "onnx_vs_student": ("student", "student_onnx"),
         "onnx_int8_vs_student": ("student", "student_onnx_int8"),
         "onnx_int8_vs_teacher": ("teacher", "student_onnx_int8")}


def load_bench(run_dir: Path, arch: str = "run") -> dict[str, Any] | None:
    """A run's bench dict, or None when it has not been benchmarked (a corrupt file raises RunError)."""
    path = bench_path(run_dir, arch)
    return read_json(path) if path.is_file() else None


# ----------------------------------------------------------------------------- accessors and ratios


def latency_p50(model: dict | None, length: str = "median_len") -> float | None:
    """p50 batch-1 latency in ms of one bench.json model entry at ``length`` (``median_len`` or ``max_len``);
    None if absent or malformed."""
    try:
        return float(model["latency_ms"][length]["p50"])
    except (KeyError, TypeError, ValueError):
        return None


def throughput(model: dict | None) -> float | None:
    """Texts/s of one bench.json model entry at the bench's batch size; None if absent or malformed."""
    try:
        return float(model["throughput_texts_per_s"])
    except (KeyError, TypeError, ValueError):
        return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def speedup(bench: dict[str, Any], reference: str, model: str, length: str = "max_len") -> float | None:
    """How many times faster ``model`` is than ``reference`` (>1: faster), or None when either was not measured or
    they ran on different devices (an int8 row measured on the CPU in a GPU bench, say).

    Args:
        bench: a bench.json dict.
        reference, model: model keys (``teacher``, ``student``, ``student_int8``).
        length: ``median_len`` or ``max_len`` (the ratio of p50 batch-1 latencies, reference / model), or
            ``throughput`` (the ratio of texts/s, model / reference).
    """
    models = bench.get("models") or {}
    a, b = models.get(reference), models.get(model)
    if a and b and a.get("device", "cpu") != b.get("device", "cpu"):
        return None
    if length == "throughput":
        return _ratio(throughput(b), throughput(a))
    return _ratio(latency_p50(a, length), latency_p50(b, length))


def speedups(models: dict[str, dict]) -> dict[str, float | None]:
    """The ``speedup`` section of bench.json: ``<pair>_<median_len|max_len|throughput>`` for each of ``PAIRS``."""
    bench = {"models": models}
    out = {}
    for name, (reference, model) in PAIRS.items():
        for length in (*LENGTHS, "throughput"):
            out[f"{name}_{length}"] = speedup(bench, reference, model, length)
    return out


BUSY_SHARE = 0.1  # other programs' share of the CPU above which a bench's timings are not trusted
SPEEDUP_DEFINITION = ("teacher latency / student latency: medians (p50) of batch-1 calls at the test set's median "
                      "text length, tokenisation included")


def headline_speedup(bench: dict[str, Any] | None, model: str = "student") -> float | None:
    """The speed-up every page, ``check`` and the model cards quote (``SPEEDUP_DEFINITION``); None if not measured."""
    if not bench:
        return None
    stored = (bench.get("speedup") or {}).get(f"{model}_vs_teacher_median_len")
    return float(stored) if isinstance(stored, (int, float)) else speedup(bench, "teacher", model, "median_len")


def unreliable_reasons(bench: dict[str, Any] | None) -> list[str]:
    """Why a bench's timings cannot be trusted: other load on the machine while it ran, or figures that contradict
    themselves (a longer text answered faster than a shorter one by the same model, or a bigger model faster than a
    smaller one on the same device). Empty when none is seen."""
    if not bench:
        return []
    out = []
    busy = (bench.get("machine") or {}).get("other_processes_cpu_share")
    if isinstance(busy, (int, float)) and busy > BUSY_SHARE:
        out.append(f"other programs used {busy:.0%} of the CPU while it ran")
    models = bench.get("models") or {}
    for key, m in models.items():
        short, long = latency_p50(m, "median_len"), latency_p50(m, "max_len")
        if short and long and long < 0.9 * short:
            out.append(f"{m.get('title', key)} answered a longer text faster ({long:.1f} ms) than a shorter one "
                       f"({short:.1f} ms)")
    t, s = models.get("teacher"), models.get("student")
    if t and s and t.get("device", "cpu") == s.get("device", "cpu") and t.get("parameters", 0) > s.get("parameters", 0):
        for length in LENGTHS:
            lt, ls = latency_p50(t, length), latency_p50(s, length)
            if lt and ls and lt < 0.9 * ls:
                out.append(f"the teacher, the bigger model, answered faster ({lt:.1f} ms) than the student ({ls:.1f} ms)")
                break
    return out


def int8_cost(models: dict[str, dict], engine: str | None, engine_trial: dict | None = None,
              int8_key: str = "student_int8") -> dict[str, Any] | None:
    """What an int8 student (``int8_key``: ``student_int8`` on PyTorch, ``student_onnx_int8`` on ONNX Runtime)
    costs against the fp32 PyTorch student: accuracy and macro-F1 points lost, and the size ratio; plus the
    PyTorch engine used and the trial that chose it. None without both students."""
    s, q = models.get("student"), models.get(int8_key)
    if not s or not q:
        return None
    drop = lambda k: (s[k] - q[k]) * 100 if s.get(k) is not None and q.get(k) is not None else None  # noqa: E731
    out = {"accuracy_drop_points": drop("accuracy"), "macro_f1_drop_points": drop("macro_f1"),
           "size_ratio": _ratio(s["size_bytes"], q["size_bytes"])}
    return {"engine": engine, "engine_trial_ms_max_len": engine_trial or {}, **out} if int8_key == "student_int8" else out


# ----------------------------------------------------------------------------- the table


def format_table(bench: dict[str, Any]) -> str:
    """The bench as a plain-text table (what ``python -m distill_core bench`` prints)."""
    m, s = bench["machine"], bench["settings"]
    lines = [f"{bench['run_id']} ({s['arch']}) on {m['cpu_model']}, {m['cores']} cores, {m['torch_threads']} torch threads, "
             f"torch {m['torch']}; fp32 matmul {m['matmul_gflops']:.0f} GFLOP/s"]
    gpu = m.get("gpu")
    if gpu:
        rates = ", ".join(f"{name} {gpu[key]:.0f}" for name, key in (("fp32", "matmul_gflops"), ("bf16", "matmul_gflops_bf16"),
                                                                     ("fp16", "matmul_gflops_fp16")) if gpu.get(key))
        lines.append(f"GPU {gpu['name']} ({gpu['memory_gib']} GiB, CUDA {gpu['torch_cuda']}); matmul {rates} GFLOP/s")
    lines.append(f"batch-1 latency: p50 / p95 over {s['repeats']} runs, tokenisation included; "
                 f"throughput at batch {s['batch_size']} on {s['texts']} test texts")
    med, mx = s["median_tokens"], s["max_length"]
    head = (f"{'model':<36} {'device':>6} {'params':>7} {'size MB':>8} {f'ms @{med} tok':>14} {f'ms @{mx} tok':>15} "
            f"{'texts/s':>8} {'GFLOP/s':>8} {'load s':>7} {'peak MB':>8} {'acc':>6} {'F1':>6}")
    lines += [head, "-" * len(head)]
    for r in bench["models"].values():
        lat = r["latency_ms"]
        lines.append(
            f"{r['title']:<36} {r.get('device', 'cpu'):>6} {r['parameters'] / 1e6:>6.1f}M {r['size_bytes'] / 2**20:>8.1f} "
            f"{lat['median_len']['p50']:>6.1f} / {lat['median_len']['p95']:>5.1f} "
            f"{lat['max_len']['p50']:>7.1f} / {lat['max_len']['p95']:>5.1f} {r['throughput_texts_per_s']:>8.1f} "
            f"{r['gflops_per_s']['max_len']:>8.1f} {_f(r.get('load_time_s'), '7.2f')} {_f(peak_memory(r), '8.0f')} "
            f"{_f(r.get('accuracy'), '6.3f')} {_f(r.get('macro_f1'), '6.3f')}")
    kinds = {(r.get("peak_memory_device"), r.get("peak_memory_kind")) for r in bench["models"].values()
             if r.get("peak_memory_kind")}
    if any(device == "cuda" for device, _ in kinds):  # say which memory each row's peak is
        lines.append("peak MB: " + "; ".join(f"on {device}, {kind}" for device, kind in sorted(kinds)))
    sp = bench["speedup"]
    lines.append("")
    lines.append("speed-up (p50)          median length   max length   throughput")
    for name, label in (("student_vs_teacher", "student vs teacher"), ("int8_vs_student", "int8 vs student"),
                        ("int8_vs_teacher", "int8 vs teacher"), ("onnx_vs_student", "ONNX vs student"),
                        ("onnx_int8_vs_student", "ONNX int8 vs student"),
                        ("onnx_int8_vs_teacher", "ONNX int8 vs teacher")):
        if sp.get(f"{name}_max_len") is not None:
            lines.append(f"  {label:<21} {_f(sp.get(f'{name}_median_len'), '12.2f')}x {_f(sp.get(f'{name}_max_len'), '11.2f')}x "
                         f"{_f(sp.get(f'{name}_throughput'), '11.2f')}x")
    if bench.get("int8") and bench["int8"].get("accuracy_drop_points") is not None:
        q = bench["int8"]
        lines.append(f"  int8 ({q['engine']}) costs {q['accuracy_drop_points']:+.2f} accuracy points, "
                     f"{q['macro_f1_drop_points']:+.2f} macro-F1 points; {q['size_ratio']:.1f}x smaller")
    if bench.get("onnx_int8") and bench["onnx_int8"].get("accuracy_drop_points") is not None:
        q = bench["onnx_int8"]
        lines.append(f"  ONNX int8 costs {q['accuracy_drop_points']:+.2f} accuracy points, "
                     f"{q['macro_f1_drop_points']:+.2f} macro-F1 points; {q['size_ratio']:.1f}x smaller")
    t = bench.get("training_throughput")
    if t:
        lines += ["", *training_lines(t)]
    notes = bench.get("notes") or []
    lines += [""] * bool(notes) + [f"note: {note}" for note in notes]
    return "\n".join(lines)


_METHOD_LABELS = {"pipeline": "pipeline ({batching}, {precision})", "pipeline_fp32": "pipeline ({batching}, fp32)",
                  "fixed_padding": "fixed padding to {max_length} ({precision})", "trainer": "Trainer defaults (fp32)"}
_PRECISION = {"no": "fp32", "bf16": "bf16", "fp16": "fp16"}


def peak_memory(model: dict) -> float | None:
    """Peak memory in MiB of one bench.json model entry on the device it ran on (``peak_memory_device``); files
    written before the device was recorded hold the CPU's peak resident memory only."""
    peak = model.get("peak_memory_mb")
    return peak if peak is not None else model.get("peak_rss_mb")


def training_lines(t: dict) -> list[str]:
    """The bench's teacher-training table: samples/s, achieved GFLOP/s, share of peak, real-token share, ratio."""
    pe = t["padding_efficiency"]
    where = f" on {t['device_name']}" if t.get("device_name") else ""
    lines = [f"teacher training{where}, batch {t['batch_size']}, {t['timed_steps']} timed steps:",
             f"  {'method':<40} {'samples/s':>9} {'GFLOP/s':>8} {'of peak':>8} {'real tokens':>11} {'pipeline is':>11}"]
    methods = t.get("methods") or {  # bench.json written before methods were recorded one by one
        "pipeline": {"samples_per_s": t["pipeline_samples_per_s"]},
        "fixed_padding": {"samples_per_s": t["fixed_padding_samples_per_s"]},
        "trainer": {"samples_per_s": t["trainer_samples_per_s"]}}
    pipe = methods["pipeline"]["samples_per_s"]
    for name, m in methods.items():
        label = _METHOD_LABELS[name].format(batching=t.get("pipeline_batching", ""), max_length=t["max_length"],
                                            precision=_PRECISION.get(m.get("mixed_precision", "no"), "fp32"))
        share = pe.get("trainer" if name == "trainer" else "fixed_padding" if name == "fixed_padding" else "pipeline")
        ratio = "" if name == "pipeline" else f"{pipe / m['samples_per_s']:.2f}x"
        peak = m.get("peak_share")
        lines.append(f"  {label:<40} {m['samples_per_s']:9.1f} {_f(m.get('gflops_per_s'), '8.0f')} "
                     f"{format(peak, '8.0%') if peak is not None else '-'.rjust(8)} {share:11.0%} {ratio:>11}")
    peaks = t.get("peak_gflops") or {}
    if peaks:
        lines.append("  peak: matmul " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items() if v))
    return lines


def _f(v: float | None, spec: str) -> str:
    width = int(spec.split(".")[0]) if spec[0].isdigit() else 0
    return format(v, spec) if v is not None else "-".rjust(width)
