"""The whole benchmark of one run: ``run_bench`` measures its models and writes ``bench.json``.

    python -m distill_core bench RUN [--arch bert-base] [--repeats 30] ...     # the CLI calls run_bench

    from distill_core.bench.run import run_bench
    from distill_core.bench.settings import BenchSettings
    bench = run_bench("RUN", BenchSettings(repeats=3, warmup=1, train_steps=2))

See the package docstring (``distill_core.bench``) for what is measured and how. While it runs, the bench
reports its stages through ``runs.write_progress(run_dir, "bench", ...)`` for the dashboard.
"""

from __future__ import annotations

import gc
import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import RunError
from ..ship.model_card import refresh_model_cards
from ..files import check_writable, write_json_atomic
from ..fingerprints import BENCH_KINDS, WEIGHTS_KEY, record
from ..runs import (
    MODEL_WEIGHTS, bench_path, clear_progress, has_model, load_run, load_run_config, model_dir, onnx_dir, resolve_run,
    write_progress,
)
from . import settings as bench_settings  # ARCH_SHAPES and BERT_BASE_VOCAB are read at call time (tests shrink them)
from .measure import (
    OtherLoad, forward_flops, machine_info, matmul_peaks, onnx_providers, pick_qengine, pick_texts, quantize_int8,
    state_dict_bytes, throughput_and_accuracy, time_calls,
)
from .probe import probe
from .report import int8_cost, speedups
from .settings import BERT_BASE_TEXTS, TITLES, BenchSettings
from .train_speed import training_throughput

logger = logging.getLogger(__name__)

JOB = "bench"  # the progress job name (runs.read_progress(run_dir, "bench"))
DTYPES = {"onnx": "float32 (ONNX Runtime)", "onnx-int8": "int8 (ONNX Runtime, dynamic)"}


def run_bench(run: str | Path, settings: BenchSettings | None = None, root: Path | None = None,
              progress: Callable[[float, str], None] | None = None) -> dict[str, Any]:
    """Measure a run's models, write ``bench.json`` (or ``bench_<arch>.json``) into the run folder, return it.

    Args:
        run: run id (under ``root``, default ``runs_dir()``) or run folder.
        settings: what and how often to measure; validated before any work (ConfigError).
        progress: called as ``progress(fraction_done, message)`` at each stage; the same goes to the run
            folder's progress file while the bench runs (``runs.read_progress(run_dir, "bench")``).
    """
    settings = settings or BenchSettings()
    settings.validate()
    run_dir = resolve_run(run, root)
    check_writable(run_dir)
    info = load_run(run_dir)
    if info.status != "complete":
        logger.warning("Run %s is %s (%s); measuring the models it has.", info.run_id, info.status, info.error or info.stage)

    def report_progress(fraction: float, message: str) -> None:
        write_progress(run_dir, JOB, fraction, message)
        if progress is not None:
            progress(fraction, message)

    threads, engine = torch.get_num_threads(), torch.backends.quantized.engine
    weights = record(run_dir, BENCH_KINDS)  # taken before measuring: the figures describe these weights
    try:
        bench = _bench(run_dir, info, settings, report_progress)
        if settings.arch == "run":
            bench[WEIGHTS_KEY] = weights
    finally:
        clear_progress(run_dir, JOB)
        # --threads and the int8 engine are process-wide torch settings: leave them as they were.
        torch.set_num_threads(threads)
        torch.backends.quantized.engine = engine
    write_json_atomic(bench_path(run_dir, settings.arch), bench)
    if progress is not None:
        progress(1.0, "done")
    logger.info("Wrote %s", bench_path(run_dir, settings.arch))
    if settings.arch == "run":
        refresh_model_cards(run_dir)  # their speed section reads bench.json
    return bench


# ----------------------------------------------------------------------------- models to measure


@dataclass
class _Source:
    key: str  # teacher | student | student_int8 | student_onnx | student_onnx_int8
    model_dir: Path  # what to load: a save_pretrained folder (fp32; int8 quantises it after loading) or an ONNX export
    quantize: bool
    backend: str = "torch"  # torch | onnx | onnx-int8


def _run_models(run_dir: Path) -> list[_Source]:
    """The run's own teacher and student, and the student again to quantise; RunError when it has neither."""
    sources = [_Source(k, model_dir(run_dir, k), False) for k in ("teacher", "student") if has_model(run_dir, k)]
    if has_model(run_dir, "student"):
        sources.append(_Source("student_int8", model_dir(run_dir, "student"), True))
    if not sources:
        raise RunError(f"{run_dir} has neither a teacher nor a student model to measure; train them with "
                       "`python -m distill_core train`")
    return sources


def _onnx_models(student: Path, run_dir: Path | None, into: Path, stages: "_Stages", notes: list[str]) -> list[_Source]:
    """The student on ONNX Runtime, fp32 and int8: the run's own export when it is current, else one made in ``into``
    with the same code as ``export`` (and not kept)."""
    from ..ship.inference import TextClassifier
    from ..ship.onnx_export import write_graphs

    folder = onnx_dir(run_dir, "student") if run_dir is not None and _has_current_export(run_dir) else None
    if folder is None:
        stages.start("student: exporting to ONNX (fp32 and int8)")
        folder = into / "student_onnx"
        folder.mkdir()
        clf = TextClassifier.load(student, device="cpu")  # exported from the CPU, whatever the bench measures on
        write_graphs(clf.model, clf.tokenizer, folder, int8=True)
        del clf
        if run_dir is not None:
            notes.append("the ONNX student was exported for this bench and not kept; `python -m distill_core export RUN "
                         "--int8` saves one beside the model")
    return [_Source("student_onnx", folder, False, "onnx"), _Source("student_onnx_int8", folder, False, "onnx-int8")]


def _has_current_export(run_dir: Path) -> bool:
    from ..ship.onnx_export import check_export

    try:
        check_export(run_dir, "student", int8=True)
    except RunError:
        return False
    return True


def _bert_base_models(tokenizer, label_names: list[str], max_length: int, into: Path) -> list[_Source]:
    """Randomly initialised bert-base / distilbert-base shapes, saved to ``into`` so the probe loads them from disk."""
    from transformers import BertConfig, BertForSequenceClassification, DistilBertConfig, DistilBertForSequenceClassification

    from ..train.models import label_maps

    vocab = max(bench_settings.BERT_BASE_VOCAB, len(tokenizer))
    shapes = bench_settings.ARCH_SHAPES["bert-base"]
    labels = label_maps(label_names)
    torch.manual_seed(0)
    built = {
        "teacher": BertForSequenceClassification(BertConfig(vocab_size=vocab, **shapes["teacher"], **labels)),
        "student": DistilBertForSequenceClassification(DistilBertConfig(vocab_size=vocab, **shapes["student"], **labels)),
    }
    for kind, model in built.items():
        model.config.distill_max_length = max_length
        model.save_pretrained(into / kind)
        tokenizer.save_pretrained(into / kind)
    return [_Source("teacher", into / "teacher", False), _Source("student", into / "student", False),
            _Source("student_int8", into / "student", True)]


# ----------------------------------------------------------------------------- the stages


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


def _load_models(sources: list[_Source], max_length: int, max_text: str, settings: BenchSettings, stages: _Stages,
                 notes: list[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]], str | None, dict[str, float]]:
    """Classifiers to time, their static figures (size, parameters, shape, the device each runs on), and the int8
    engine chosen. On ``--device cuda`` the PyTorch fp32 models run on the GPU; int8 is a CPU path (torch's dynamic
    quantisation has CPU kernels only), measured on the CPU; the fp32 ONNX graph runs on ONNX Runtime's CUDA
    provider where it has one (``onnx_providers``). Why a model ran on the CPU goes into ``notes``."""
    from ..ship.inference import TextClassifier
    from ..train.models import encoder_shape
    from ..ship.onnx_export import OnnxClassifier

    clfs: dict[str, Any] = {}
    models: dict[str, dict[str, Any]] = {}
    engine, trial = None, {}
    for src in sources:
        provider = None
        if src.backend != "torch":
            providers, why_cpu = onnx_providers(settings.device, int8=src.backend == "onnx-int8")
            clf = OnnxClassifier.load(src.model_dir, int8=src.backend == "onnx-int8", max_length=max_length,
                                      threads=torch.get_num_threads(), providers=providers)
            provider = clf.session.get_providers()[0]  # what ONNX Runtime started, not only what was asked for
            device = "cuda" if provider == "CUDAExecutionProvider" else "cpu"
            if why_cpu is None and device != settings.device:
                why_cpu = (f"ONNX Runtime could not start its CUDA provider (CUDA or cuDNN libraries it needs are "
                           f"missing?), so {src.key} was measured on the CPU")
            if why_cpu:
                notes.append(why_cpu)
            params, size = None, clf.path.stat().st_size  # parameters: the fp32 student's, filled in by _bench
        elif src.quantize:
            device = "cpu"
            fp32 = clfs["student"]
            if fp32.device.type != "cpu":  # quantised from a CPU copy of the fp32 student
                fp32 = TextClassifier.load(src.model_dir, max_length=max_length, device="cpu")
                notes.append("int8 (torch dynamic quantisation) is a CPU path: the int8 student was measured on the "
                             "CPU, and its speed is not compared with the GPU rows")
            stages.start("int8: choosing the quantized engine")
            engine, trial = pick_qengine(fp32, max_text, settings)
            clf = TextClassifier(quantize_int8(fp32.model, engine), fp32.tokenizer, fp32.max_length, name=src.key,
                                 truncation=fp32.truncation)
            params, size = fp32.num_parameters(), state_dict_bytes(clf.model)
        else:
            device = settings.device
            clf = TextClassifier.load(src.model_dir, max_length=max_length, device=device)
            params, size = clf.num_parameters(), (src.model_dir / MODEL_WEIGHTS).stat().st_size
        clfs[src.key] = clf
        dtype = DTYPES[src.backend] if src.backend != "torch" else ("int8 (dynamic)" if src.quantize else "float32")
        title = TITLES[settings.arch][src.key] + (" (CPU)" if device != settings.device else "")
        models[src.key] = {"title": title, "size_bytes": int(size), "dtype": dtype,
                           "parameters": int(params) if params is not None else None,
                           "runtime": "ONNX Runtime" if src.backend != "torch" else "PyTorch", "device": device,
                           "onnx_provider": provider, "architecture": encoder_shape(_config(clf))}
    return clfs, models, engine, trial


def _config(clf):
    """The transformers config of a PyTorch or an ONNX classifier (its shape, for FLOPs)."""
    return clf.config if hasattr(clf, "config") else clf.model.config


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
            m["flops"][length] = forward_flops(_config(clf), tokens)
            m["gflops_per_s"][length] = m["flops"][length] / (lat[key]["p50"] / 1000.0) / 1e9


def _throughput(clf, texts: list[str], labels: np.ndarray | None, token_counts: np.ndarray,
                settings: BenchSettings) -> dict[str, Any]:
    """Throughput (texts/s and useful GFLOP/s) at the bench's batch size, with accuracy and macro-F1 given labels."""
    tp = throughput_and_accuracy(clf, texts, labels, settings.batch_size)
    useful_flops = sum(forward_flops(_config(clf), t) for t in token_counts)  # real tokens, padding left out
    return {"throughput_texts_per_s": tp["texts_per_s"], "throughput_gflops_per_s": useful_flops / tp["seconds"] / 1e9,
            "accuracy": tp.get("accuracy"), "macro_f1": tp.get("macro_f1"),
            "accuracy_texts": len(texts) if tp.get("accuracy") is not None else 0}


# ----------------------------------------------------------------------------- the whole benchmark


def _bench(run_dir: Path, info, settings: BenchSettings, report: Callable[[float, str], None]) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from ..train.data import run_splits

    report(0.0, "loading the run's data")
    cfg = load_run_config(run_dir)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    if settings.qengine != "auto":
        torch.backends.quantized.engine = settings.qengine
    arch = settings.arch
    skip_training = settings.skip_training or arch != "run" or not has_model(run_dir, "teacher")
    machine = machine_info(settings.device)
    other_load = OtherLoad().start()
    notes = []

    # The dataset folder the run was trained on, whatever its short name resolves to today.
    splits = run_splits(run_dir)
    run_sources = _run_models(run_dir)
    tokenizer = AutoTokenizer.from_pretrained(run_sources[0].model_dir)
    max_texts = settings.max_texts or (BERT_BASE_TEXTS if arch == "bert-base" else None)
    test = splits.test if max_texts is None else splits.test.select(range(min(max_texts, len(splits.test))))
    texts, labels = list(test["text"]), np.asarray(list(test["label"]))
    picked = pick_texts(texts, tokenizer, cfg.data.max_length)
    token_counts = picked.pop("token_counts")
    logger.info("Bench %s (%s): %d test texts, median %d tokens, max_length %d, %d torch threads, %s%s",
                info.run_id, arch, len(texts), picked["median_tokens"], cfg.data.max_length, machine["torch_threads"],
                machine["cpu_model"], f", GPU {machine['gpu']['name']}" if machine["gpu"] else "")

    with tempfile.TemporaryDirectory(prefix="bench_") as tmp:
        if arch == "bert-base":
            report(0.0, "building random bert-base and distilbert-base shapes")
            sources = _bert_base_models(tokenizer, splits.label_names, cfg.data.max_length, Path(tmp))
        else:
            sources = run_sources
        int8 = any(s.quantize for s in sources)
        onnx = settings.onnx and any(s.key == "student" for s in sources)
        must_export = onnx and not (arch == "run" and _has_current_export(run_dir))
        n_sources = len(sources) + 2 * onnx
        stages = _Stages(2 * (1 + 2 * onnx) + int8 + must_export + n_sources * (1 + settings.probe)
                         + (0 if skip_training else 3), report)
        if onnx:
            student = next(s for s in sources if s.key == "student")
            sources = sources + _onnx_models(student.model_dir, run_dir if arch == "run" else None, Path(tmp), stages,
                                             notes)
        models: dict[str, dict[str, Any]] = {}
        engine, engine_trial = None, {}
        # PyTorch's models together (they take turns, see time_calls), then each ONNX Runtime session on its own, the
        # one before released: an ONNX Runtime session's idle threads spin for a while after each call, and slow
        # whatever runs next on the same cores (a PyTorch model, or another session).
        groups = [[s for s in sources if s.backend == "torch"]] + [[s] for s in sources if s.backend != "torch"]
        for group in groups:
            if not group:
                continue
            clfs, group_models, group_engine, group_trial = _load_models(group, cfg.data.max_length, picked["max_text"],
                                                                         settings, stages, notes)
            if group[0].backend == "torch":
                engine, engine_trial = group_engine, group_trial
            _latency(clfs, group_models, picked, settings, stages)
            for key, clf in clfs.items():
                stages.start(f"{key}: throughput at batch {settings.batch_size}")
                group_models[key].update(_throughput(clf, texts, labels if arch == "run" else None, token_counts, settings))
            models.update(group_models)
            clfs.clear()
            gc.collect()
        for key in ("student_onnx", "student_onnx_int8"):
            if key in models and "student" in models:
                models[key]["parameters"] = models["student"]["parameters"]  # the same model, exported
        for src in sources:
            if settings.probe:
                stages.start(f"{src.key}: load time and memory (fresh process)")
                probe_texts = texts[: settings.batch_size] + [picked["max_text"]]
                models[src.key].update(probe(src.model_dir, src.quantize, probe_texts, settings, engine, src.backend,
                                             models[src.key]["device"]))
            else:
                models[src.key].update({"load_time_s": None, "peak_rss_mb": None, "rss_before_load_mb": None,
                                        "quantize_time_s": None, "peak_memory_mb": None, "peak_memory_device": None,
                                        "peak_memory_kind": None})
        training = None
        if not skip_training:
            training = training_throughput(run_dir, cfg, splits, tokenizer, settings, stages.start,
                                           matmul_peaks(machine, settings.device))
        stages.close()

    machine["other_processes_cpu_share"] = round(other_load.stop(), 4)
    if machine["other_processes_cpu_share"] > 0.1:
        notes.append(f"other processes used {machine['other_processes_cpu_share']:.0%} of the CPU while the bench ran: "
                     "the timings are slower and noisier than on a quiet machine")
        logger.warning("%s", notes[-1])
    return {
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
        "onnx_int8": int8_cost(models, None, None, "student_onnx_int8"),
        "training_throughput": training,
        "notes": notes,
    }
