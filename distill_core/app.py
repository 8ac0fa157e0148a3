"""The dashboard's one Streamlit module: run selection, errors on a page, and cached loaders over run folders.

Pages stay thin: they read widgets, call a loader here or a pure function in ``views/``, and draw.

    run = app.require_run()                                 # the run picked in the sidebar (or a note, then None)
    with app.friendly_errors("Attention"): ...              # the project's errors as a message, bugs as internal errors
    pred = app.predict(run.path, "student", "Stocks rallied.")   # inference.Prediction: label, probs (C,), ms, ...
    att = app.attention(run.path, "teacher", "Stocks rallied.")  # tokens (T,), attentions (L, H, T, T)

Caching: models are ``st.cache_resource`` (loaded once per process and shared by every session), derived data
is ``st.cache_data``. Every cache is keyed by the path *and* the file's ``(mtime_ns, size)``, so a re-trained
run, or a CSV that grows while training, is read afresh without restarting the app. Per-user state (the picked
run, a job this user started) lives in ``st.session_state``, never in a cache.
"""

from __future__ import annotations

import logging
import os
import re
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import pandas as pd
import streamlit as st

from .evidence.attributions import N_STEPS, Attribution, integrated_gradients, sample_rows
from .evidence.calibration import Progress, calibrate_run, read_calibration
from .config import MODEL_TITLES, runs_dir
from .errors import DistillError, RunError, os_error_message
from .ship.inference import AttentionResult, InputError, PoolingResult, Prediction, TextClassifier
from .files import read_json
from .runs import (
    CALIBRATION_FILE, CONFIG_FILE, MODEL_CONFIG, MODEL_WEIGHTS, PREDICTIONS_FILE, RunInfo, bench_path, has_model,
    list_runs, load_run, metrics_path, model_dir, read_metrics,
)
from .evidence.similarity import LayerSimilarity, layer_similarity as _compare_layers
from .views.live import attention_default_text, batch_table
from .views.runs import default_run_id
from .views.text import display_text

logger = logging.getLogger(__name__)

RUN_KEY = "run_id"  # st.session_state key of the sidebar run picker (kept across pages)
TRAIN_COMMAND = "python -m distill_core train"  # the default (`quick`) run
MAX_BATCH_TEXTS = 1000  # batch classification cap, so one paste cannot stall the app


# ============================================================================ runs and selection


def available_runs(include_failed: bool = False) -> list[RunInfo]:
    """Runs under ``runs_dir()`` the picker offers, newest first: complete and running (and failed, if asked).

    Not cached: listing reads a few small JSON files per run, and a cached list would hide a run that
    just started or finished.
    """
    keep = {"complete", "running", "damaged"} | ({"failed", "unknown"} if include_failed else set())
    return [r for r in list_runs(runs_dir()) if r.status in keep]


def failed_runs() -> list[RunInfo]:
    return [r for r in list_runs(runs_dir()) if r.status not in ("complete", "running", "damaged")]


def selected_run() -> RunInfo | None:
    """The run picked in the sidebar (``st.session_state[RUN_KEY]``), read afresh; else the default run.

    The fallback covers a page run before any picker has (AppTest running a page file on its own).
    """
    run_id = st.session_state.get(RUN_KEY)
    if run_id:
        try:
            return load_run(runs_dir() / run_id)
        except RunError:
            pass  # deleted since it was picked
    runs = available_runs()
    run_id = default_run_id(runs)
    return next((r for r in runs if r.run_id == run_id), None)


def require_run() -> RunInfo | None:
    """The picked run; with none, a note saying to pick one, and None (the page then stops)."""
    run = selected_run()
    if run is None:
        st.info("Pick a run in the sidebar.")
    return run


def text_input(run: RunInfo, key: str) -> str:
    """A text area for one text, first filled with an example that fits the run's labels (else a test text)."""
    if key not in st.session_state:
        try:
            test_texts = [display_text(t) for t in predictions_table(run.path)["text"].head(1)]
        except RunError:
            test_texts = []
        st.session_state[key] = attention_default_text(run.label_names, run.dataset, test_texts)
    return st.text_area("Text", key=key, height=80).strip()


def require_comparison() -> tuple[RunInfo | None, list[str]]:
    """The picked run and its students that can be set beside its teacher; with none, a note saying why."""
    run = require_run()
    return (run, comparable_students(run)) if run is not None else (None, [])


def comparable_students(run: RunInfo) -> list[str]:
    """The run's students that can be set beside its teacher; with none (or no teacher), a note saying why."""
    students = [k for k in ("student", "baseline") if k in run.models]
    if "teacher" not in run.models or not students:
        need = "the teacher" if "teacher" not in run.models else "a student"
        st.warning(f"This page needs {need}, and run `{run.run_id}` has no complete model folder for it"
                   + (" yet (still training)." if run.status == "running" else ". Pick another run in the sidebar."))
        return []
    return students


_COMMAND_RUN = re.compile(r"(`python -m distill_core [a-z]+ )RUN\b")


def with_run_id(text: str) -> str:
    """A message's commands with the picked run's id in place of the placeholder ``RUN``, ready to paste."""
    if not _COMMAND_RUN.search(text):
        return text
    run = selected_run()
    return _COMMAND_RUN.sub(lambda m: m.group(1) + run.run_id, text) if run is not None else text


@contextmanager
def friendly_errors(what: str) -> Iterator[None]:
    """Show an error in this block on the page instead of a traceback; the rest of the page still renders.

    The project's own errors (bad input, a broken run, a missing model) are the user's to fix: one line with
    the fix; so is an OSError saying a path cannot be used (``errors.os_error_message``: permission, read-only,
    full disk). Anything else is a bug of ours: logged with its traceback and shown as an internal error, the
    details folded away.
    """
    try:
        yield
    except DistillError as e:
        st.error(f"**{what}:** {with_run_id(str(e))}")
    except Exception as e:
        if (line := os_error_message(e)) is not None:
            st.error(f"**{what}:** {line}")
            return
        logger.exception("Internal error in the dashboard (%s)", what)
        st.error(f"**{what}:** internal error in distill-lens ({type(e).__name__}). This is not a problem with "
                 "your input or your run; please report it with the details below.", icon=":material/bug_report:")
        with st.expander("Details"):
            st.code("".join(traceback.format_exception(e)), language="text")


# ============================================================================ cached loaders


def limit_inference_threads(n: int | None = None) -> int:
    """Give torch ``n`` CPU threads (default ``$DISTILL_DASHBOARD_THREADS``, else 1) for the whole process.

    The app classifies one short text at a time: one thread is about as fast as two, and it does not
    collapse when a training run shares the CPU. On 2 cores with a run training, three classifications
    plus two attention maps took 15-35 ms with one thread and 1.6 s with two (the thread pool spins
    waiting for a core). Called by the entry point, not at import, so importing this module changes nothing.
    """
    import torch

    n = int(n or os.environ.get("DISTILL_DASHBOARD_THREADS") or 1)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def file_stamp(path: Path) -> tuple[int, int] | None:
    """``(mtime_ns, size)`` of a file, the cache key part that changes when the file is rewritten."""
    try:
        s = Path(path).stat()
    except OSError:
        return None
    return (s.st_mtime_ns, s.st_size)


def model_stamp(run_dir: Path, kind: str) -> tuple:
    d = model_dir(run_dir, kind)
    return (file_stamp(d / MODEL_WEIGHTS), file_stamp(d / MODEL_CONFIG))


@st.cache_resource(max_entries=9, show_spinner="Loading model…")
def _load_classifier(model_path: str, stamp: tuple) -> TextClassifier:
    clf = TextClassifier.load(model_path)
    # torch's first forward pass pays one-off set-up costs; pay them here so that the latency the live
    # page reports is the model's, warm.
    clf.predict_logits(["warm up"])
    return clf


def classifier(run_dir: Path, kind: str) -> TextClassifier:
    """The run's ``kind`` model, loaded once per process (and again only when its files change).

    Raises:
        RunError: the model folder is missing or cannot be loaded; the message says how to fix it.
    """
    run_dir = Path(run_dir)
    if not has_model(run_dir, kind):
        raise RunError(f"The {MODEL_TITLES[kind].lower()} is missing from run {run_dir.name} (no complete "
                       f"`{kind}/` folder). Train it with `{TRAIN_COMMAND} --models {kind}` or pick another run.")
    try:
        return _load_classifier(str(model_dir(run_dir, kind)), model_stamp(run_dir, kind))
    except Exception as e:  # a half-written or foreign folder: from_pretrained raises many types
        raise RunError(f"The {MODEL_TITLES[kind].lower()} in {model_dir(run_dir, kind)} could not be loaded "
                       f"({type(e).__name__}: {e}); the folder may be half-written. Re-train the run.") from e


LIVE_REPEATS = 5  # a live latency is the median of this many warm calls


@st.cache_data(max_entries=512, show_spinner=False)
def _predict(model_path: str, stamp: tuple, text: str) -> Prediction:
    return _load_classifier(model_path, stamp).classify(text, repeats=LIVE_REPEATS)


def predict(run_dir: Path, kind: str, text: str) -> Prediction:
    """Classify one text with one model (cached per model file and text, so sliders do not re-run it).

    Raises:
        InputError: empty text. RunError: the model is missing or broken.
    """
    if not isinstance(text, str) or not text.strip():
        raise InputError("The text is empty: type or paste some words to classify.")
    classifier(run_dir, kind)  # raises the friendly error; the model is then in the resource cache
    return _predict(str(model_dir(run_dir, kind)), model_stamp(run_dir, kind), text)


@st.cache_data(max_entries=32, show_spinner=False)
def _inspect(model_path: str, stamp: tuple, text: str, view: str) -> AttentionResult | PoolingResult:
    return getattr(_load_classifier(model_path, stamp), view)(text)


def _inspect_text(run_dir: Path, kind: str, text: str, view: str, what: str) -> AttentionResult | PoolingResult:
    """``classifier.<view>(text)`` of the run's ``kind`` model, cached per model version and text."""
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"The text is empty: type a sentence to see its {what}.")
    classifier(run_dir, kind)  # raises the friendly error; the model is then in the resource cache
    return _inspect(str(model_dir(run_dir, kind)), model_stamp(run_dir, kind), text, view)


def attention(run_dir: Path, kind: str, text: str) -> AttentionResult:
    """Tokens and the attention tensor ``(L, H, T, T)`` of one model for one text (cached)."""
    return _inspect_text(run_dir, kind, text, "attention", "attention")


def pooling(run_dir: Path, kind: str, text: str) -> PoolingResult:
    """Tokens and the LSTM student's attention-pooling weights ``(T,)`` for one text (cached)."""
    return _inspect_text(run_dir, kind, text, "pooling", "pooling weights")


def is_recurrent(run_dir: Path, kind: str) -> bool:
    """Whether the run's ``kind`` model is the BiLSTM student (pooling weights, no self-attention maps)."""
    return classifier(run_dir, kind).is_recurrent


def layer_map(run_dir: Path, kind: str = "student") -> list[int] | None:
    """Teacher layer each student layer was initialised from (the student's ``distill_layer_map``)."""
    m = getattr(classifier(run_dir, kind).model.config, "distill_layer_map", None)
    return [int(x) for x in m] if m else None


@st.cache_data(max_entries=16, show_spinner="Classifying…")
def _classify_batch(models: tuple[tuple[str, str, tuple], ...], texts: tuple[str, ...]) -> pd.DataFrame:
    probs = {}
    for kind, model_path, stamp in models:
        clf = _load_classifier(model_path, stamp)
        probs[kind] = (clf.labels, clf.predict_proba(list(texts)))  # (N, C)
    return batch_table(texts, probs)


def classify_batch(run_dir: Path, kinds: Sequence[str], texts: Sequence[str]) -> pd.DataFrame:
    """One row per text: each model's label and confidence, and whether they all agree.

    Raises:
        InputError: no text, or more than ``MAX_BATCH_TEXTS``. RunError: a model is missing.
    """
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise InputError("No text to classify.")
    if len(texts) > MAX_BATCH_TEXTS:
        raise InputError(f"{len(texts)} texts: the dashboard classifies at most {MAX_BATCH_TEXTS} at once; "
                         f"classify a whole file with `python -m distill_core predict {Path(run_dir).name} --input "
                         "FILE` (CSV, TSV, JSON Lines or Parquet; it writes each row's label and class "
                         "probabilities, --model to pick the model).")
    for k in kinds:
        classifier(run_dir, k)
    models = tuple((k, str(model_dir(run_dir, k)), model_stamp(run_dir, k)) for k in kinds)
    return _classify_batch(models, tuple(texts))


@st.cache_data(max_entries=64, show_spinner=False)
def _read_metrics(run_dir: str, kind: str, split: str, stamp: tuple | None) -> pd.DataFrame:
    return read_metrics(Path(run_dir), kind, split)


def metrics(run_dir: Path, kind: str, split: str) -> pd.DataFrame:
    """``<kind>_<split>.csv`` as a DataFrame; re-read whenever the file grows (a run still training)."""
    return _read_metrics(str(run_dir), kind, split, file_stamp(metrics_path(run_dir, kind, split)))


def csv_bytes(run_dir: Path, kind: str, split: str) -> bytes:
    return metrics_path(run_dir, kind, split).read_bytes()


@st.cache_data(max_entries=8, show_spinner=False)
def _read_predictions(path: str, stamp: tuple | None) -> pd.DataFrame:
    if stamp is None:
        raise RunError(f"{PREDICTIONS_FILE} is missing from {Path(path).parent.name}: the run has not been "
                       "evaluated yet (it appears when training finishes)")
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises its own types for a truncated file
        raise RunError(f"{PREDICTIONS_FILE} could not be read ({type(e).__name__}: {e}); re-create it with "
                       "`python -m distill_core evaluate RUN`") from e


def predictions_table(run_dir: Path) -> pd.DataFrame:
    """The run's test set with each model's prediction (``predictions.parquet``)."""
    path = Path(run_dir) / PREDICTIONS_FILE
    return _read_predictions(str(path), file_stamp(path))


@st.cache_data(max_entries=8, show_spinner=False)
def _read_bench(path: str, stamp: tuple | None) -> dict | None:
    return read_json(Path(path)) if stamp is not None else None


def bench(run_dir: Path, arch: str = "run") -> dict | None:
    """``bench.json`` (or ``bench_<arch>.json``) or None if the run has not been benchmarked that way."""
    path = bench_path(run_dir, arch)
    return _read_bench(str(path), file_stamp(path))


@st.cache_data(max_entries=8, show_spinner=False)
def _read_pruning(run_dir: str, kind: str, stamp: tuple | None) -> dict | None:
    from .train.prune import load_pruning

    return load_pruning(Path(run_dir), kind) if stamp is not None else None


def pruning(run_dir: Path, kind: str) -> dict | None:
    """``pruning_<kind>.json`` (``prune RUN --model <kind>``), checked, or None if that model was not pruned."""
    from .runs import pruning_path

    return _read_pruning(str(run_dir), kind, file_stamp(pruning_path(run_dir, kind)))


# ============================================================================ inspection: calibration, explanations, layers


@st.cache_data(max_entries=8, show_spinner=False)
def _read_calibration(run_dir: str, stamp: tuple | None) -> dict | None:
    return read_calibration(Path(run_dir)) if stamp is not None else None


def calibration(run_dir: Path) -> dict | None:
    """``calibration.json`` (each model's temperature, test ECE/Brier/NLL before and after), or None if not made yet."""
    return _read_calibration(str(run_dir), file_stamp(Path(run_dir) / CALIBRATION_FILE))


def compute_calibration(run_dir: Path, progress: Progress | None = None) -> dict:
    """Fit each model's temperature on the run's validation split and store ``calibration.json`` (not cached:
    it writes the file ``calibration`` reads, whose new stamp refreshes that cache)."""
    return calibrate_run(Path(run_dir), progress=progress)


@st.cache_data(max_entries=1024, show_spinner=False)
def _explain(model_path: str, stamp: tuple, text: str, target: int, n_steps: int) -> Attribution:
    return integrated_gradients(_load_classifier(model_path, stamp), text, target, n_steps)


def explain(run_dir: Path, kind: str, text: str, target: int | None = None, n_steps: int = N_STEPS) -> Attribution:
    """Integrated gradients of one text for class ``target`` (None: the model's prediction), cached per text.

    Raises:
        InputError: empty text. RunError: the model is missing or broken.
    """
    if not isinstance(text, str) or not text.strip():
        raise InputError("The text is empty: type a sentence to explain.")
    if target is None:  # resolved first, so "the predicted class" and that class by name share one cache entry
        target = int(predict(run_dir, kind, text).logits.argmax())
    return _explain(str(model_dir(run_dir, kind)), model_stamp(run_dir, kind), text, int(target), int(n_steps))


@st.cache_data(max_entries=4, show_spinner="Loading the validation split…")
def _validation_texts(run_dir: str, stamp: tuple | None, n: int, seed: int) -> list[str]:
    from .train.data import run_splits

    texts = list(run_splits(Path(run_dir)).validation["text"])
    return [texts[i] for i in sample_rows(len(texts), n, seed)]


def validation_texts(run_dir: Path, n: int, seed: int = 0) -> list[str]:
    """Up to ``n`` texts of the validation split the run was trained on (a seeded sample, read once)."""
    return _validation_texts(str(run_dir), file_stamp(Path(run_dir) / CONFIG_FILE), int(n), int(seed))


@st.cache_data(max_entries=8, show_spinner="Comparing every teacher layer with every student layer…")
def _layer_similarity(teacher: tuple[str, tuple], student: tuple[str, tuple], texts: tuple[str, ...]) -> LayerSimilarity:
    return _compare_layers(_load_classifier(*teacher), _load_classifier(*student), texts)


def layer_similarity(run_dir: Path, student: str, n_texts: int) -> LayerSimilarity:
    """Linear CKA between every teacher and ``student`` layer over ``n_texts`` validation texts (cached)."""
    for kind in ("teacher", student):
        classifier(run_dir, kind)
    texts = tuple(validation_texts(run_dir, n_texts))
    return _layer_similarity((str(model_dir(run_dir, "teacher")), model_stamp(run_dir, "teacher")),
                             (str(model_dir(run_dir, student)), model_stamp(run_dir, student)), texts)
