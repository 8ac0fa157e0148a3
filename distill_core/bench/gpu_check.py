"""The GPU check: what the project does on a GPU, measured in one go and written to one JSON file.

    bash scripts/gpu_check.sh                                   # on a machine with a GPU (about 5-8 minutes)
    python -m distill_core.bench.gpu_check --out check.json     # the same without the shell script
    python -m distill_core.bench.gpu_check --out check.json --run RUN          # on a run already trained
    python -m distill_core.bench.gpu_check --out check.json --smoke --train-args "--dataset tiny.csv ..."   # tiny sizes

What it runs, in order, and where each part lands in the JSON:

    environment   the device (GPU name, memory, CUDA build, its matmul GFLOP/s per precision), library versions,
                  ONNX Runtime's execution providers
    quick_run     ``train --preset quick`` end to end: wall time, each model's training time, samples/s, precision,
                  phase split (``TrainResult.phases``) and the data phase's share of it, test accuracy
    bench         ``bench RUN --device cuda`` on that run: each model's device, batch-1 latency, throughput and peak
                  memory on its device; int8 (a CPU path) and ONNX Runtime's providers; the teacher-training table
                  (pipeline bf16 / fp32, fixed padding, Trainer), all at one batch size on one device
    bert_base     a randomly initialised bert-base-shaped BertForSequenceClassification (12 layers, hidden 768)
                  trained by the pipeline's loop on length-grouped batches of the run's training texts at max length
                  128, at batch 64 and 256; beside it a bare loop in the same precision on the very same batches,
                  already on the device (no data loading, clipping, scheduler or logging): the anchor the loop is
                  read against
    scoring       each model of the run scoring the test split in fp32 on the device, as ``evaluate`` does

A part that fails is recorded as ``{"error": ...}`` and the others still run (exit code 1). Nothing is downloaded:
the quick preset's teacher is packaged and its data is read from ``$DISTILL_DATA_DIR``. ``--smoke`` shrinks every
size (a 2-layer model, batches of 4 and 8, a few steps, no fresh-process memory probes, no ONNX) so that the tests
run the whole check on a CPU in seconds.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import platform
import shlex
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..config import MODEL_KINDS
from ..console import say
from ..errors import ConfigError
from ..files import read_json, write_json_atomic
from ..runs import RESULTS_FILE, has_model, load_run_config, model_dir, resolve_run
from . import settings as bench_settings
from .measure import cpu_model, gpu_info, matmul_gflops, sync
from .settings import BenchSettings
from .train_speed import _window_gflops, pipeline_rate

logger = logging.getLogger(__name__)

TINY_SHAPE = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37,
              "max_position_embeddings": 64}  # --smoke's stand-in for bert-base
BERT_BASE_LR = 2e-5  # bert-base's usual fine-tuning rate (speed does not depend on it)


@dataclass
class Sizes:
    """How big each part of the check is; ``full()`` on a GPU, ``smoke()`` for the tests."""

    bench: BenchSettings
    bert_shape: dict[str, int]
    smoke: bool = False
    bert_vocab: int = bench_settings.BERT_BASE_VOCAB  # at least the run tokenizer's
    bert_batches: tuple[int, ...] = (64, 256)
    bert_steps: int = 30
    bert_warmup: int = 5  # steps before the timed window (cuBLAS set-up, the allocator growing to its peak)
    bert_max_length: int = 128
    train_args: list[str] = field(default_factory=lambda: ["--preset", "quick"])

    @classmethod
    def full(cls, device: str) -> "Sizes":
        # 50 training-table steps: the quick teacher takes a few ms a step on a GPU, 18 would time a blink.
        return cls(BenchSettings(device=device, train_steps=50), dict(bench_settings.ARCH_SHAPES["bert-base"]["teacher"]))

    @classmethod
    def smoke(cls, device: str) -> "Sizes":
        return cls(BenchSettings(device=device, repeats=2, warmup=0, train_steps=3, probe=False, onnx=False, threads=1,
                                 max_texts=16), dict(TINY_SHAPE), smoke=True, bert_vocab=0, bert_batches=(4, 8),
                   bert_steps=4, bert_warmup=1, bert_max_length=32)


# ----------------------------------------------------------------------------- the parts


def environment(device: str) -> dict[str, Any]:
    """The device and the software: what the figures were measured on."""
    import accelerate
    import onnxruntime
    import transformers

    gpu = gpu_info(device) if device == "cuda" else None
    if gpu is None:
        rates = {"fp32": matmul_gflops(), "bf16": matmul_gflops(dtype=torch.bfloat16), "fp16": None}
    else:
        rates = {"fp32": gpu["matmul_gflops"], "bf16": gpu.get("matmul_gflops_bf16"), "fp16": gpu["matmul_gflops_fp16"]}
    return {
        "device": device, "device_name": gpu["name"] if gpu else cpu_model(), "gpu": gpu,
        "matmul_gflops": rates, "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device == "cuda" else None,
        "transformers": transformers.__version__, "accelerate": accelerate.__version__,
        "onnxruntime": onnxruntime.__version__, "onnxruntime_providers": onnxruntime.get_available_providers(),
        "python": platform.python_version(), "cpu_model": cpu_model(), "cores": os.cpu_count(),
    }


def quick_run(train_args: list[str], root: Path | None, run_id: str) -> tuple[Path, dict[str, Any]]:
    """Train the quick preset end to end through the CLI; its wall time, and each model's training figures."""
    from ..cli import main as cli

    argv = ["train", *train_args, "--run-id", run_id] + (["--output-dir", str(root)] if root else [])
    t0 = time.perf_counter()
    code = cli(argv)
    wall = time.perf_counter() - t0
    if code != 0:
        raise RuntimeError(f"`python -m distill_core {shlex.join(argv)}` exited with {code}")
    run_dir = resolve_run(run_id, root)
    return run_dir, {"command": shlex.join(argv), "wall_s": wall, **run_figures(run_dir)}


def run_figures(run_dir: Path) -> dict[str, Any]:
    """Each model's training time, samples/s, precision, phase split and data share, and test accuracy."""
    results = read_json(run_dir / RESULTS_FILE)
    models = {}
    for kind, m in results["models"].items():
        training = m.get("training") or {}
        phases = training.get("phases_s") or {}
        total = sum(phases.values())
        models[kind] = {"test_accuracy": m["accuracy"], "test_macro_f1": m["macro_f1"],
                        "train_time_s": training.get("train_time_s"),
                        "train_samples_per_s": training.get("train_samples_per_s"), "steps": training.get("steps"),
                        "mixed_precision": training.get("mixed_precision"), "phases_s": phases,
                        "data_share": phases.get("data", 0.0) / total if total else None}
    return {"run_id": run_dir.name, "run_dir": str(run_dir), "models": models}


def bench(run_dir: Path, settings: BenchSettings) -> dict[str, Any]:
    """``bench RUN`` on the check's device: the models' rows (with the device and memory each was measured on), the
    teacher-training table, the notes, and the table the CLI prints."""
    from ..runs import bench_path
    from .report import format_table, latency_p50, peak_memory
    from .run import run_bench

    out = run_bench(run_dir, settings)
    rows = {key: {"title": m["title"], "device": m["device"], "runtime": m["runtime"], "onnx_provider": m["onnx_provider"],
                  "latency_p50_ms": {length: latency_p50(m, length) for length in ("median_len", "max_len")},
                  "throughput_texts_per_s": m["throughput_texts_per_s"], "accuracy": m["accuracy"],
                  "peak_memory_mb": peak_memory(m), "peak_memory_device": m.get("peak_memory_device"),
                  "peak_memory_kind": m.get("peak_memory_kind")}
            for key, m in out["models"].items()}
    return {"bench_json": str(bench_path(run_dir, settings.arch)), "models": rows,
            "training": out["training_throughput"], "notes": out["notes"], "table": format_table(out).splitlines()}


def bare_loop_rate(model, batches: list[dict], device: str, precision: str, lr: float, warmup: int) -> dict[str, Any]:
    """The anchor: forward, cross-entropy, backward and a fused AdamW step, nothing else, on ``batches`` moved to
    ``device`` before the clock starts; autocast in ``precision`` as the pipeline's loop. Timed after ``warmup``
    steps, between two device syncs."""
    dev = torch.device(device)
    model.to(dev).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=True)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(dev.type, enabled=precision == "fp16")
    on_device = [{k: b[k].to(dev) for k in ("input_ids", "attention_mask", "labels")} for b in batches]
    skip = max(1, min(warmup, len(on_device) - 1))
    t0 = 0.0
    for i, b in enumerate(on_device):
        if i == skip:
            sync(dev)
            t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=dtype) if dtype is not None else nullcontext():
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits  # (B, C)
        loss = F.cross_entropy(logits.float(), b["labels"])
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    sync(dev)
    seconds = time.perf_counter() - t0
    shapes = [tuple(b["input_ids"].shape) for b in batches]
    return {"samples_per_s": sum(s[0] for s in shapes[skip:]) / seconds, "timed_steps": len(shapes) - skip,
            "timed_seconds": seconds, "gflops_per_s": _window_gflops(model.config, shapes, skip, len(shapes), seconds)}


def bert_base(run_dir: Path, device: str, sizes: Sizes, peaks: dict[str, float | None]) -> dict[str, Any]:
    """Training throughput of a random bert-base-shaped classifier at each of ``sizes.bert_batches``: the pipeline's
    loop on length-grouped batches of the run's training texts, and the bare loop on the same batches."""
    from datasets import DatasetDict
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from ..train.batching import make_loader, padding_efficiency, tokenize_splits
    from ..train.data import run_splits
    from ..train.loop import resolve_mixed_precision
    from ..train.models import label_maps

    cfg = load_run_config(run_dir)
    splits = run_splits(run_dir)
    kind = next(k for k in MODEL_KINDS if has_model(run_dir, k))
    tokenizer = AutoTokenizer.from_pretrained(model_dir(run_dir, kind))
    ds = tokenize_splits(DatasetDict(train=splits.train), tokenizer, sizes.bert_max_length, cfg.data.truncation)["train"]
    vocab = max(len(tokenizer), sizes.bert_vocab)
    config = BertConfig(vocab_size=vocab, **sizes.bert_shape, **label_maps(splits.label_names))
    precision = resolve_mixed_precision("auto", cpu=device == "cpu")
    peak = peaks.get({"no": "fp32"}.get(precision, precision))

    def build() -> BertForSequenceClassification:
        torch.manual_seed(0)
        return BertForSequenceClassification(config)

    model = build()
    out: dict[str, Any] = {"shape": sizes.bert_shape, "vocab_size": vocab, "parameters": model.num_parameters(),
                           "attn_implementation": model.config._attn_implementation, "max_length": sizes.bert_max_length,
                           "mixed_precision": precision, "steps": sizes.bert_steps, "warmup_steps": sizes.bert_warmup,
                           "train_rows": len(ds), "batches": {}}
    del model
    for bs in sizes.bert_batches:
        loader = make_loader(ds, tokenizer, bs, shuffle=True, seed=cfg.train.seed, group_by_length=True,
                             device_type=device)  # as the pipeline makes them on this device
        row: dict[str, Any] = {"real_token_share": padding_efficiency(loader)}
        try:
            kept: list[dict] = []
            row["pipeline"] = pipeline_rate(build(), loader, sizes.bert_steps, BERT_BASE_LR, 0.01, device, precision,
                                            warmup=sizes.bert_warmup, keep=kept)
            phases = row["pipeline"]["phases_s"]
            row["pipeline"]["data_share"] = phases.get("data", 0.0) / max(sum(phases.values()), 1e-9)
            _free(device)  # the pipeline's model and optimizer state, before the bare loop builds its own
            row["bare_loop"] = bare_loop_rate(build(), kept, device, precision, BERT_BASE_LR, sizes.bert_warmup)
            for method in ("pipeline", "bare_loop"):
                row[method]["peak_share"] = row[method]["gflops_per_s"] / peak if peak else None
            row["pipeline_vs_bare_loop"] = row["pipeline"]["samples_per_s"] / row["bare_loop"]["samples_per_s"]
        except torch.cuda.OutOfMemoryError as e:
            row["error"] = f"out of memory at batch {bs}: {str(e).splitlines()[0][:200]}"
        finally:
            _free(device)
        out["batches"][str(bs)] = row
    return out


def _free(device: str) -> None:
    """Give back the memory of models no longer referenced (the GPU's cache too), so the next one has all of it."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def scoring(run_dir: Path, device: str) -> dict[str, Any]:
    """Each model of the run scoring the test split in fp32 on ``device`` (one untimed batch first): seconds, texts/s
    and its accuracy, at the run's evaluation batch size."""
    from datasets import DatasetDict
    from transformers import AutoTokenizer

    from ..train.batching import make_loader, tokenize_splits
    from ..train.data import run_splits
    from ..train.loop import predict_logits
    from ..train.models import load_trained

    cfg = load_run_config(run_dir)
    test = run_splits(run_dir).test
    out: dict[str, Any] = {"batch_size": cfg.train.eval_batch_size, "texts": len(test), "models": {}}
    for kind in (k for k in MODEL_KINDS if has_model(run_dir, k)):
        t0 = time.perf_counter()
        model = load_trained(model_dir(run_dir, kind), attentions=False).to(device).eval()
        sync(device)
        load_s = time.perf_counter() - t0
        tokenizer = AutoTokenizer.from_pretrained(model_dir(run_dir, kind))
        tok = tokenize_splits(DatasetDict(test=test), tokenizer, cfg.data.max_length, cfg.data.truncation)["test"]
        loader = make_loader(tok, tokenizer, cfg.train.eval_batch_size, shuffle=False, device_type=device)
        with torch.inference_mode():
            first = next(iter(loader))
            model(input_ids=first["input_ids"].to(device), attention_mask=first["attention_mask"].to(device))
        sync(device)
        t0 = time.perf_counter()
        logits, labels = predict_logits(model, loader, torch.device(device))  # (N, C), (N,): on the host, so done
        seconds = time.perf_counter() - t0
        out["models"][kind] = {"seconds": seconds, "texts_per_s": len(labels) / seconds, "load_s": load_s,
                               "accuracy": float((logits.argmax(-1) == labels).mean())}
        del model
        _free(device)
    return out


# ----------------------------------------------------------------------------- the whole check


def _part(name: str, fn: Callable[[], Any], errors: list[str]) -> Any:
    """Run one part; a failure is logged with its traceback and recorded, and the check goes on."""
    say(f"[gpu check] {name} ...")
    t0 = time.perf_counter()
    try:
        out = fn()
    except Exception as e:  # noqa: BLE001 - one broken part must not lose the others' figures
        logger.error("%s failed:\n%s", name, traceback.format_exc())
        errors.append(name)
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"}
    if isinstance(out, dict):
        out["part_wall_s"] = time.perf_counter() - t0
    return out


def run_check(out: Path, device: str, sizes: Sizes, run: str | None = None, root: Path | None = None) -> dict[str, Any]:
    """Run every part of the check on ``device`` and write the JSON to ``out``; returns it (``errors`` lists the
    parts that failed). ``run``: measure this run instead of training a new one."""
    t0 = time.perf_counter()
    errors: list[str] = []
    check: dict[str, Any] = {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), "smoke": sizes.smoke, "device": device}
    check["environment"] = _part("environment", lambda: environment(device), errors)
    if run is None:
        run_id = "gpu-check-" + time.strftime("%Y%m%d-%H%M%S")
        trained = _part("quick run (train)", lambda: quick_run(sizes.train_args, root, run_id), errors)
        run_dir = Path(trained[0]) if isinstance(trained, tuple) else None
        check["quick_run"] = trained[1] if isinstance(trained, tuple) else trained
    else:
        run_dir = resolve_run(run, root)
        check["quick_run"] = _part("the run's figures", lambda: run_figures(run_dir), errors)
    if run_dir is not None:
        peaks = (check["environment"].get("matmul_gflops") or {}) if "error" not in check["environment"] else {}
        check["bench"] = _part("bench", lambda: bench(run_dir, sizes.bench), errors)
        check["bert_base"] = _part("bert-base training", lambda: bert_base(run_dir, device, sizes, peaks), errors)
        check["scoring"] = _part("test-set scoring", lambda: scoring(run_dir, device), errors)
    check["errors"] = errors
    check["wall_s"] = time.perf_counter() - t0
    write_json_atomic(out, check)
    return check


def summary(check: dict[str, Any]) -> list[str]:
    """A few lines of the figures a person looks for first."""
    lines = [f"device: {(check.get('environment') or {}).get('device_name', check['device'])}"]
    q = check.get("quick_run") or {}
    if "wall_s" in q:
        lines.append(f"quick run: {q['wall_s']:.0f} s end to end")
    for kind, m in (q.get("models") or {}).items():
        share = m.get("data_share")
        lines.append(f"  {kind}: {m.get('train_time_s')} s training, test accuracy {m['test_accuracy']:.4f}"
                     + (f", data phase {share:.0%}" if share is not None else ""))
    for bs, row in ((check.get("bert_base") or {}).get("batches") or {}).items():
        if "error" in row:
            lines.append(f"bert-base batch {bs}: {row['error']}")
        else:
            lines.append(f"bert-base batch {bs}: pipeline {row['pipeline']['samples_per_s']:.0f} samples/s, bare loop "
                         f"{row['bare_loop']['samples_per_s']:.0f} ({row['pipeline_vs_bare_loop']:.0%} of it)")
    for kind, m in ((check.get("scoring") or {}).get("models") or {}).items():
        lines.append(f"scoring {kind}: {m['seconds']:.2f} s for the test set ({m['texts_per_s']:.0f} texts/s)")
    return lines + [f"failed: {', '.join(check['errors'])}"] * bool(check["errors"])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m distill_core.bench.gpu_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="the JSON file to write")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, to test the check itself (a CPU will do)")
    p.add_argument("--device", choices=("cuda", "cpu"), help="where to measure (default: cuda when torch sees a GPU)")
    p.add_argument("--run", help="measure this run (id or folder) instead of training the quick preset")
    p.add_argument("--output-dir", type=Path, help="parent folder of runs (default: the project's runs folder)")
    p.add_argument("--train-args", default="", help="more `train` flags after --preset quick, as one string")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        if device == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"--device cuda, but torch {torch.__version__} sees no GPU; a CUDA build of torch is "
                              "needed (see requirements.txt)")
        if device == "cpu" and not args.smoke:
            raise ConfigError(f"torch {torch.__version__} sees no GPU here: this check is for a machine with one "
                              "(--smoke runs it at tiny sizes on the CPU)")
    except ConfigError as e:
        say(f"error: {e}")
        return 2
    sizes = Sizes.smoke(device) if args.smoke else Sizes.full(device)
    sizes.train_args += shlex.split(args.train_args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    check = run_check(args.out, device, sizes, args.run, args.output_dir)
    for line in summary(check):
        say(line)
    say(f"wrote {args.out.resolve()}")
    return 1 if check["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
