"""ONNX: export a run's model, check the export against PyTorch on the run's test texts, and run it.

    python -m distill_core export RUN --model student --format onnx --int8

    from distill_core.ship.onnx_export import export_onnx, load_classifier, OnnxClassifier
    report = export_onnx(run_dir, "student", int8=True)        # writes RUN/student/onnx/, returns its export.json
    clf = load_classifier(run_dir, "student", "onnx-int8")      # any backend by name: torch | onnx | onnx-int8
    clf.predict_proba(["Stocks rallied on Friday."])            # (N, C), exactly as TextClassifier

What an export holds (names from ``runs``), written whole or not at all (``files.atomic_dir``)::

    <model>/onnx/
        model.onnx          fp32 graph: input_ids, attention_mask (batch, sequence) int64 -> logits (batch, C)
        model_int8.onnx     (--int8) the same, every MatMul weight dynamically quantised to int8 (ONNX Runtime)
        config.json, tokenizer files   labels, max_length and the tokenizer, so the folder is a whole model
        export.json         what it was exported from, and the verification on the run's test texts

The verification runs the PyTorch model and the ONNX graph(s) on the run's test texts (``predictions.parquet``,
else the dataset the run was trained on): how often their predictions agree, the largest logit difference, and
accuracy and macro-F1 of each, so what int8 costs is read off beside fp32.

``OnnxClassifier`` has the narrow interface of ``inference.TextClassifier`` (``predict_logits``,
``predict_proba``, ``classify``, ``count_tokens``, ``labels``, ``max_length``, ``name``), so the server and the
bench treat every backend alike. Its tokeniser is the model's own, called the same way, so both see the same ids.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..console import say
from .classifier import Classifier
from ..config import MODEL_KINDS, runs_dir
from ..errors import ConfigError, DistillError, ModelError, RunError
from ..fingerprints import file_sha256
from ..files import atomic_dir, read_json, write_json_atomic
from ..runs import (
    MODEL_WEIGHTS, ONNX_EXPORT_FILE, ONNX_INT8_MODEL, ONNX_MODEL, PREDICTIONS_FILE, model_dir,
    model_problem, onnx_dir, resolve_run,
)

# torch, transformers and onnxruntime are imported where they are used: the CLI builds its parser from this
# module, and `--help` should not wait for them.

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "onnx-int8")
OPSET = 17  # the first opset with LayerNormalization as one op (fewer nodes for ONNX Runtime to fuse)
# Beyond rounding: an fp32 export whose logits differ from PyTorch's by more than this is reported as suspect.
FP32_TOLERANCE = 1e-3


# ----------------------------------------------------------------------------- the classifier


class OnnxClassifier(Classifier):
    """A classifier exported to ONNX, run by ONNX Runtime (on the CPU unless given other execution providers);
    the interface of ``TextClassifier``."""

    def __init__(self, session, tokenizer, config, max_length: int, name: str, backend: str,
                 meta: dict[str, Any] | None = None, path: Path | None = None):
        self.session = session
        self.path = path
        self.tokenizer = tokenizer
        self.config = config  # the model's transformers config: labels, shape (the bench counts FLOPs from it)
        self.max_length = int(max_length)
        self.name = name
        self.backend = backend
        self.meta = meta or {}
        self.labels = [config.id2label[i] for i in range(config.num_labels)]
        self._inputs = {i.name for i in session.get_inputs()}

    @classmethod
    def load(cls, folder: str | Path, int8: bool = False, max_length: int | None = None, threads: int | None = None,
             spinning: bool = True, providers: list | None = None) -> "OnnxClassifier":
        """Load an export folder (``<model>/onnx``): its fp32 graph, or the int8 one with ``int8``.

        Args:
            threads: ONNX Runtime intra-op threads (default: one per core, as torch).
            spinning: let idle worker threads spin for a while before sleeping (lower latency; burns CPU that a
                PyTorch model timed right after would miss, so the bench times each backend in its own block).
            providers: ONNX Runtime execution providers, in order of preference (default: the CPU's only).
        """
        from transformers import AutoConfig, AutoTokenizer

        from ..train.models import config_value

        folder = Path(folder)
        path = folder / (ONNX_INT8_MODEL if int8 else ONNX_MODEL)
        if not path.is_file():
            flag = " --int8" if int8 else ""
            raise ModelError(f"No {'int8 ' if int8 else ''}ONNX model at {path}; export it with "
                             f"`python -m distill_core export RUN --model {folder.parent.name} --format onnx{flag}`")
        config = AutoConfig.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if max_length is None:
            max_length = int(getattr(config, "distill_max_length", 0) or min(tokenizer.model_max_length, 512))
        max_length = min(int(max_length), config_value(config, "positions") or int(max_length))  # LSTM: no limit
        meta = read_json(folder / ONNX_EXPORT_FILE) if (folder / ONNX_EXPORT_FILE).is_file() else {}
        name = str(meta.get("model") or folder.parent.name)
        clf = cls(make_session(path, threads, spinning, providers), tokenizer, config, max_length, name,
                  "onnx-int8" if int8 else "onnx", meta, path)
        # The model's config.json (copied at export) says how its run cut long texts; older ones: at the head.
        clf.truncation = str(getattr(config, "distill_truncation", None) or clf.truncation)
        return clf

    def num_parameters(self) -> int:
        """Parameters of the model the graph was exported from (int8 stores the same ones in fewer bytes)."""
        if self.meta.get("parameters"):
            return int(self.meta["parameters"])
        from onnx import load_model

        graph = load_model(str(self.path)).graph  # int8: quantised weights and their scales, counted alike
        return int(sum(int(np.prod(t.dims)) for t in graph.initializer))

    # ------------------------------------------------------------------ inputs and outputs

    def _encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        return {k: v for k, v in self.encode_padded(texts).items() if k in self._inputs}

    def _batch_logits(self, texts: list[str]) -> np.ndarray:
        (logits,) = self.session.run(["logits"], self._encode(texts))  # (B, C)
        return logits


def make_session(path: Path, threads: int | None = None, spinning: bool = True, providers: list | None = None):
    """An ONNX Runtime session with every graph optimisation on (fusions of LayerNorm, GELU, MatMul + bias), on the
    CPU unless ``providers`` names others (``session.get_providers()`` says which ones it got).

    ``threads``: intra-op threads (default one per core); one inter-op thread, as the graph is a chain.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = int(threads or os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # errors only: its warnings about unused initializers are noise here
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    try:
        session = ort.InferenceSession(str(path), so, providers=providers or ["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - ONNX Runtime raises its own types for unreadable or invalid graphs
        raise ModelError(f"{path} could not be loaded by ONNX Runtime ({str(e).splitlines()[0][:200]}); export it "
                         "again with `python -m distill_core export RUN --format onnx`") from e
    return session


def load_classifier(run_dir: Path, kind: str, backend: str = "torch", threads: int | None = None,
                    spinning: bool = True, device: str | None = None):
    """One model of a run, ready to classify, on ``backend``: ``torch`` (on ``devices.scoring_device(device)``),
    ``onnx`` or ``onnx-int8`` (on the CPU).

    Problems the user can fix come back as one-line ``RunError``/``ModelError``: a missing or damaged model
    folder, a missing export, or an export older than the model's weights.
    """
    if backend not in BACKENDS:
        raise ModelError(f"Unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    problem = model_problem(run_dir, kind)
    if problem:
        raise RunError(f"Run {Path(run_dir).name} cannot serve its {kind}: {problem}. Re-train it "
                       "(`python -m distill_core train`), or pick another model with --model.")
    if backend == "torch":
        from .inference import TextClassifier

        if threads:
            import torch

            torch.set_num_threads(int(threads))
        try:
            return TextClassifier.load(model_dir(run_dir, kind), device=device)
        except DistillError:
            raise
        except Exception as e:  # noqa: BLE001 - from_pretrained raises many types for a folder that looked whole
            raise ModelError(f"The {kind} model of {Path(run_dir).name} could not be loaded ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200]}); re-train it.") from e
    check_export(run_dir, kind, int8=backend == "onnx-int8")
    return OnnxClassifier.load(onnx_dir(run_dir, kind), int8=backend == "onnx-int8", threads=threads,
                               spinning=spinning)


def check_export(run_dir: Path, kind: str, int8: bool) -> dict[str, Any]:
    """The export.json of ``kind``'s ONNX export, after checking the graph is there and was made from the model's
    current weights; a RunError with the command that fixes it otherwise."""
    folder = onnx_dir(run_dir, kind)
    fix = f"`python -m distill_core export {Path(run_dir).name} --model {kind} --format onnx --int8`"
    graph = folder / (ONNX_INT8_MODEL if int8 else ONNX_MODEL)
    if not graph.is_file():
        raise RunError(f"{kind} of run {Path(run_dir).name} has no {'int8 ' if int8 else ''}ONNX export; make one "
                       f"with {fix}")
    meta = read_json(folder / ONNX_EXPORT_FILE)
    if not isinstance(meta, dict) or meta.get("source_sha256") != file_sha256(model_dir(run_dir, kind) / MODEL_WEIGHTS):
        raise RunError(f"The ONNX export of {kind} in run {Path(run_dir).name} was made from other weights than the "
                       f"model's current ones; export it again with {fix}")
    return meta


# ----------------------------------------------------------------------------- export


def export_graph(model, tokenizer, path: Path, opset: int = OPSET) -> None:
    """Write ``model`` (a transformers sequence classifier) to ``path`` as ONNX, batch and length dynamic.

    The TorchScript-based exporter (``dynamo=False``): the torch.export-based default needs the onnxscript
    package, which this project does not depend on, while this one ships with torch. It traces one forward
    pass; ``verify`` then checks the graph against PyTorch on real texts at other batch sizes and lengths.
    """
    import torch

    model = model.eval()
    enc = tokenizer(["a text to trace the model with", "a shorter one"], padding=True, return_tensors="pt")  # (2, T)
    example = {k: enc[k] for k in ("input_ids", "attention_mask")}  # single segment: no token_type_ids, as served
    dynamic = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation notice and tracer warnings
        torch.onnx.export(model, (), str(path), kwargs=example, dynamo=False, opset_version=opset,
                          input_names=list(example), output_names=["logits"],
                          dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic, "logits": {0: "batch"}})


def write_graphs(model, tokenizer, folder: Path, int8: bool) -> dict[str, float | None]:
    """``model.onnx`` (and ``model_int8.onnx`` with ``int8``), the tokenizer and config.json into ``folder``: a
    folder ``OnnxClassifier.load`` reads. Returns the seconds the export and the quantisation took."""
    folder = Path(folder)
    t0 = time.perf_counter()
    export_graph(model, tokenizer, folder / ONNX_MODEL)
    tokenizer.save_pretrained(folder)
    model.config.save_pretrained(folder)
    t1 = time.perf_counter()
    if int8:
        quantize_graph(folder / ONNX_MODEL, folder / ONNX_INT8_MODEL)
    return {"export_s": t1 - t0, "quantize_s": time.perf_counter() - t1 if int8 else None}


def quantize_graph(src: Path, dst: Path) -> None:
    """``src`` with every MatMul's weights quantised to int8 and activations quantised on the fly (dynamic).

    Signed int8 weights, one scale per tensor: on this project's 2-core AVX-512 VNNI machine that was the
    fastest of the choices tried (unsigned weights ran 1.4x slower, per-channel scales no faster).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # the quantiser logs every node it skips, and advice, to the root logger
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=False)
    finally:
        root.setLevel(level)


def test_set(run_dir: Path) -> tuple[list[str], np.ndarray, list[str]]:
    """The run's test texts (N,), their labels (N,) and the label names: ``predictions.parquet`` (what
    ``evaluate`` scored), else the test split of the dataset the run was trained on."""
    import pandas as pd

    run_dir = Path(run_dir)
    names = list(read_json(run_dir / "config.json").get("dataset_info", {}).get("label_names", []))
    path = run_dir / PREDICTIONS_FILE
    if path.is_file():
        df = pd.read_parquet(path, columns=["text", "label"])
        return [str(t) for t in df["text"]], df["label"].to_numpy(dtype=np.int64), names
    from ..train.data import run_splits

    splits = run_splits(run_dir)
    return list(splits.test["text"]), np.asarray(list(splits.test["label"]), dtype=np.int64), splits.label_names


def verify(reference, candidates: dict[str, Any], texts: list[str], labels: np.ndarray,
           batch_size: int = 32) -> dict[str, Any]:
    """Each candidate classifier against ``reference`` (PyTorch) on the same texts.

    Returns:
        ``{"texts", "reference": {accuracy, macro_f1}, <name>: {accuracy, macro_f1, agreement,
        max_abs_logit_diff, mean_abs_logit_diff, accuracy_drop_points, macro_f1_drop_points}}``; agreement is
        the share of texts where the candidate predicts the reference's class.
    """
    from ..train.loop import accuracy_f1

    ref = reference.predict_logits(texts, batch_size=batch_size)  # (N, C)
    out: dict[str, Any] = {"texts": len(texts), "reference": accuracy_f1(labels, ref.argmax(-1))}
    for name, clf in candidates.items():
        logits = clf.predict_logits(texts, batch_size=batch_size)  # (N, C)
        diff = np.abs(logits - ref)
        m = accuracy_f1(labels, logits.argmax(-1))
        out[name] = {**m, "agreement": float((logits.argmax(-1) == ref.argmax(-1)).mean()),
                     "max_abs_logit_diff": float(diff.max()) if len(texts) else 0.0,
                     "mean_abs_logit_diff": float(diff.mean()) if len(texts) else 0.0,
                     "accuracy_drop_points": (out["reference"]["accuracy"] - m["accuracy"]) * 100,
                     "macro_f1_drop_points": (out["reference"]["macro_f1"] - m["macro_f1"]) * 100}
    return out


def export_onnx(run: str | Path, kind: str = "student", int8: bool = False, root: Path | None = None,
                threads: int | None = None) -> dict[str, Any]:
    """Export one model of a run to ``<run>/<kind>/onnx/`` (atomically), verify it, and return its export.json.

    Args:
        run: run id (under ``root``) or run folder.
        kind: ``teacher``, ``student`` or ``baseline``.
        int8: also write ``model_int8.onnx``, dynamically quantised.
    """
    from .inference import TextClassifier

    if kind not in MODEL_KINDS:
        raise RunError(f"Unknown model {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    run_dir = resolve_run(run, root)
    problem = model_problem(run_dir, kind)
    if problem:
        raise RunError(f"Run {run_dir.name} has no {kind} to export: {problem}. Re-train it with "
                       "`python -m distill_core train`.")
    texts, labels, _ = test_set(run_dir)
    reference = TextClassifier.load(model_dir(run_dir, kind))
    logger.info("Exporting the %s of %s to ONNX (%d test texts to verify on)", kind, run_dir.name, len(texts))
    with atomic_dir(onnx_dir(run_dir, kind)) as tmp:
        took = write_graphs(reference.model, reference.tokenizer, tmp, int8)
        candidates = {"onnx": OnnxClassifier.load(tmp, threads=threads, spinning=False)}
        if int8:
            candidates["onnx_int8"] = OnnxClassifier.load(tmp, int8=True, threads=threads, spinning=False)
        logger.info("Verifying against PyTorch on %d test texts", len(texts))
        verification = verify(reference, candidates, texts, labels)
        files = {name: (tmp / name).stat().st_size for name in (ONNX_MODEL, ONNX_INT8_MODEL) if (tmp / name).is_file()}
        meta = {
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "run_id": run_dir.name,
            "model": kind,
            "architecture": type(reference.model).__name__,
            "parameters": reference.num_parameters(),
            "max_length": reference.max_length,
            "labels": reference.labels,
            "source_weights": f"{kind}/{MODEL_WEIGHTS}",
            "source_sha256": file_sha256(model_dir(run_dir, kind) / MODEL_WEIGHTS),
            "source_size_bytes": (model_dir(run_dir, kind) / MODEL_WEIGHTS).stat().st_size,
            "files": files,
            "opset": OPSET,
            "inputs": ["input_ids", "attention_mask"],
            "dynamic_axes": {"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"],
                             "logits": ["batch"]},
            "int8": {"method": "dynamic", "weights": "int8 per tensor", "activations": "uint8, per call"} if int8 else None,
            **took,
            "versions": _versions(),
            "verification": verification,
        }
        write_json_atomic(tmp / ONNX_EXPORT_FILE, meta)
        del candidates
    logger.info("Wrote %s", onnx_dir(run_dir, kind))
    from .model_card import refresh_model_cards

    refresh_model_cards(run_dir)  # the card of the exported model describes its export
    return meta


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def format_verification(meta: dict[str, Any]) -> str:
    """What ``export`` prints: the files written and how the ONNX graphs compare with PyTorch."""
    v = meta["verification"]
    ref = v["reference"]
    lines = [f"{meta['run_id']} / {meta['model']}: ONNX export, verified on {v['texts']} test texts",
             f"{'model':<18} {'size MB':>8} {'accuracy':>9} {'macro-F1':>9} {'agrees w/ PyTorch':>18} "
             f"{'max |logit diff|':>17}",
             f"{'PyTorch fp32':<18} {meta['source_size_bytes'] / 2**20:>8.1f} {ref['accuracy']:>9.4f} "
             f"{ref['macro_f1']:>9.4f} {'':>18} {'':>17}"]
    for key, title, file in (("onnx", "ONNX fp32", ONNX_MODEL), ("onnx_int8", "ONNX int8", ONNX_INT8_MODEL)):
        if key in v:
            r = v[key]
            lines.append(f"{title:<18} {meta['files'][file] / 2**20:>8.1f} {r['accuracy']:>9.4f} {r['macro_f1']:>9.4f} "
                         f"{r['agreement']:>18.2%} {r['max_abs_logit_diff']:>17.2e}")
    if "onnx_int8" in v:
        q = v["onnx_int8"]
        lines.append(f"int8 costs {q['accuracy_drop_points']:+.2f} accuracy points and {q['macro_f1_drop_points']:+.2f} "
                     "macro-F1 points against PyTorch fp32 (negative: it scored higher)")
    if "onnx" in v and (v["onnx"]["agreement"] < 1.0 or v["onnx"]["max_abs_logit_diff"] > FP32_TOLERANCE):
        lines.append(f"warning: the fp32 graph differs from PyTorch by more than rounding (max |logit diff| "
                     f"{v['onnx']['max_abs_logit_diff']:.2e}); do not ship it before finding out why")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the command


def add_parser(subparsers) -> argparse.ArgumentParser:
    """``export RUN [--model student] --format onnx [--int8]``."""
    p = subparsers.add_parser("export", help="export a run's model to ONNX (optionally int8), verified on its test set",
                              description="Export one model of a run to ONNX into <run>/<model>/onnx/, with dynamic "
                                          "batch and length; --int8 adds a dynamically quantised copy. Both are "
                                          "checked against PyTorch on the run's test texts.")
    p.add_argument("run", help="run id or folder")
    p.add_argument("--model", choices=MODEL_KINDS, default="student", help="which model (student)")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="export format (onnx)")
    p.add_argument("--int8", action="store_true", help="also write an int8 (dynamically quantised) graph")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads for the verification (default: one per core)")
    p.add_argument("--output-dir", help=f"runs folder (default {runs_dir()})")
    return p


def run_command(args: argparse.Namespace) -> int:
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads {args.threads}: give 1 or more")
    meta = export_onnx(args.run, args.model, int8=args.int8, root=Path(args.output_dir) if args.output_dir else None,
                       threads=args.threads)
    say(format_verification(meta))
    say(f"\nWritten to {onnx_dir(resolve_run(args.run, Path(args.output_dir) if args.output_dir else None), args.model)}")
    return 0
