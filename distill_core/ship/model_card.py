"""Model cards: a Hub-format ``README.md`` in each saved model folder of a run, saying what the model is, how it
was trained and how well and how fast it does.

    paths = write_model_cards(run_dir)               # teacher/README.md, student/README.md, baseline/README.md
    paths = write_model_cards(run_dir, results)      # with the results.json dict evaluate just computed
    text = model_card(run_dir, "student", config, results, bench)    # one card as a string (pure)

A card opens with YAML metadata as the Hugging Face Hub reads it (``library_name``, ``pipeline_tag``,
``datasets``, ``metrics``, ``base_model``, and a ``model-index`` with the test accuracy and macro-F1), then says
in prose and tables: the teacher, the distillation settings (T, alpha) from config.json, the data, the test
figures from results.json (accuracy, macro-F1, per class, agreement with the teacher), the latency from
bench.json when the run has been benchmarked, and the ONNX export's verification when there is one.
Each file is written whole (``files.write_text_atomic``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from ..config import MODEL_KINDS, MODEL_TITLES, PACKAGED_TEACHER
from ..files import read_json, write_text_atomic
from ..runs import (BENCH_FILE, CONFIG_FILE, ONNX_EXPORT_FILE, PREDICTIONS_FILE, RESULTS_FILE, has_model, model_card_path,
                   model_dir, onnx_dir)

logger = logging.getLogger(__name__)

# The packaged offline teacher is this hub checkpoint.
PACKAGED_TEACHER_HUB = "sentence-transformers/all-MiniLM-L6-v2"
ROLE = {
    "teacher": "the run's teacher, a BERT model fine-tuned on the labelled data",
    "student": "the run's distilled student, a smaller DistilBERT trained to match the teacher's softened "
               "predictions as well as the labels",
    "baseline": "the run's baseline student, the same DistilBERT as the distilled student trained on the labels "
                "alone (no teacher), to show what distillation adds",
}


def write_model_cards(run_dir: Path, results: dict[str, Any] | None = None) -> list[Path]:
    """Write ``<model>/README.md`` for every saved model of the run; return the paths written.

    Args:
        results: the results.json dict; None reads it from the run (a run without one gets cards without
            test figures).
    """
    run_dir = Path(run_dir)
    config = read_json(run_dir / CONFIG_FILE)
    if results is None and (run_dir / RESULTS_FILE).is_file():
        results = read_json(run_dir / RESULTS_FILE)
    bench = read_json(run_dir / BENCH_FILE) if (run_dir / BENCH_FILE).is_file() else None
    example = example_text(run_dir)
    written = []
    for kind in MODEL_KINDS:
        if not has_model(run_dir, kind):
            continue
        path = model_card_path(run_dir, kind)
        export = onnx_dir(run_dir, kind) / ONNX_EXPORT_FILE
        onnx = read_json(export) if export.is_file() else None
        write_text_atomic(path, model_card(run_dir.name, kind, config, results, bench, onnx,
                                           folder=model_dir(run_dir, kind).resolve(), example=example))
        written.append(path)
    logger.info("Wrote model cards: %s", ", ".join(str(p.relative_to(run_dir)) for p in written))
    return written


def refresh_model_cards(run_dir: Path) -> list[Path]:
    """``write_model_cards`` after something a card reports changed (a bench, an export); a run whose files cannot
    be read as a card needs is left as it is, with a warning, since the caller's own work is done."""
    from ..errors import DistillError

    try:
        return write_model_cards(run_dir)
    except (DistillError, KeyError, TypeError, ValueError) as e:
        logger.warning("Model cards of %s not updated: %s", Path(run_dir).name, e)
        return []


def example_text(run_dir: Path, longest: int = 200) -> str | None:
    """A short test text of the run's own data (for the usage snippet): the shortest of the first 50 test texts
    that has at least five words, cut to ``longest`` characters; None without predictions.parquet."""
    path = Path(run_dir) / PREDICTIONS_FILE
    if not path.is_file():
        return None
    import pandas as pd

    texts = [str(x) for x in pd.read_parquet(path, columns=["text"])["text"].head(50)]
    usable = [x for x in texts if len(x.split()) >= 5] or texts
    return min(usable, key=len)[:longest] if usable else None


# ----------------------------------------------------------------------------- one card


def model_card(run_id: str, kind: str, config: dict[str, Any], results: dict[str, Any] | None = None,
               bench: dict[str, Any] | None = None, onnx: dict[str, Any] | None = None,
               folder: Path | None = None, example: str | None = None) -> str:
    """The README.md of one model (``teacher``, ``student`` or ``baseline``) of a run: metadata, then prose.

    Args:
        folder: where the model lies, for the usage snippet (default ``artifacts/runs/<run_id>/<kind>``).
        example: a text of the run's own data for the snippet (``example_text``).
    """
    data, info = config.get("data") or {}, config.get("dataset_info") or {}
    models = (results or {}).get("models") or {}
    me = models.get(kind) or {}
    labels = list(info.get("label_names") or (results or {}).get("label_names") or [])
    dataset = str(data.get("dataset") or "?")
    hub_dataset = hub_dataset_id(dataset)
    arch = (config.get("architectures") or {}).get(kind) or {}
    sections = [
        "---\n" + yaml.safe_dump(metadata(run_id, kind, config, me, hub_dataset), sort_keys=False, allow_unicode=True)
        + "---",
        f"# {MODEL_TITLES.get(kind, kind)} of run `{run_id}`",
        f"A text classifier for {len(labels)} classes ({', '.join(labels) or '?'}) trained on {dataset}. It is "
        f"{_role(kind, config)}. {_shape(arch)}",
        "## How it was trained\n\n" + _training(kind, config, me),
        "## Evaluation\n\n" + _evaluation(kind, results),
    ]
    speed = _speed(kind, bench)
    if speed:
        sections.append("## Speed\n\n" + speed)
    if onnx:
        sections.append("## ONNX export\n\n" + _onnx(onnx))
    sections.append("## How to use it\n\n" + _usage(run_id, kind, _is_lstm(kind, config), folder, example))
    sections.append("## Limitations\n\n" + _limitations(config))
    return "\n\n".join(sections).rstrip() + "\n"


def hub_dataset_id(dataset: str) -> str | None:
    """The hub id of a dataset as the run names it (short names mapped), or None for a local folder."""
    from ..train.data import HUB_NAMES

    if dataset in HUB_NAMES:
        return HUB_NAMES[dataset]
    if dataset.count("/") == 1 and not dataset.startswith((".", "/", "~")) and not Path(dataset).exists():
        return dataset
    return None


def base_model(kind: str, config: dict[str, Any]) -> str | None:
    """The hub checkpoint the model started from: the teacher's, or a pretrained student's; None if local."""
    model = config.get("model") or {}
    source = model.get("student") if kind != "teacher" and model.get("student") else model.get("teacher")
    if source == PACKAGED_TEACHER:
        return PACKAGED_TEACHER_HUB
    if isinstance(source, str) and source.count("/") == 1 and not source.startswith((".", "/", "~")) \
            and not Path(source).exists():
        return source
    return None


def metadata(run_id: str, kind: str, config: dict[str, Any], me: dict[str, Any], hub_dataset: str | None) -> dict:
    """The card's YAML header, as the Hub reads it."""
    meta: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        "tags": ["distill-lens", "text-classification"]
                + (["bert"] if kind == "teacher" else ["knowledge-distillation",
                                                        "bilstm" if _is_lstm(kind, config) else "distilbert"]),
        "metrics": ["accuracy", "f1"],
    }
    if hub_dataset:
        meta["datasets"] = [hub_dataset]
    base = base_model(kind, config)
    if base:
        meta["base_model"] = base
    if hub_dataset and me.get("accuracy") is not None:
        meta["model-index"] = [{
            "name": f"{run_id}-{kind}",
            "results": [{
                "task": {"type": "text-classification", "name": "Text Classification"},
                "dataset": {"name": str((config.get("data") or {}).get("dataset")), "type": hub_dataset, "split": "test"},
                "metrics": [
                    {"type": "accuracy", "value": round(float(me["accuracy"]), 4), "name": "Test accuracy"},
                    {"type": "f1", "value": round(float(me["macro_f1"]), 4), "name": "Test macro-F1",
                     "args": {"average": "macro"}},
                ],
            }],
        }]
    return meta


def _role(kind: str, config: dict[str, Any]) -> str:
    """``ROLE[kind]``, naming the BiLSTM for an LSTM student and saying when the teacher was given, not trained here."""
    given = ((config.get("architectures") or {}).get("teacher") or {}).get("given")
    if kind == "teacher" and given:
        return f"the run's teacher, given as it is ({given}), not trained here"
    role = ROLE.get(kind, kind)
    return role.replace("a smaller DistilBERT", "a BiLSTM").replace("the same DistilBERT", "the same BiLSTM") \
        if _is_lstm(kind, config) else role


def _is_lstm(kind: str, config: dict[str, Any]) -> bool:
    """Whether ``kind`` is a BiLSTM student (``--student lstm``)."""
    return kind != "teacher" and str((config.get("model") or {}).get("student") or "").strip().lower() == "lstm"


def _shape(arch: dict[str, Any]) -> str:
    if not arch:
        return ""
    params = f", {arch['parameters'] / 1e6:.1f}M parameters" if arch.get("parameters") else ""
    if "heads" in arch and arch["heads"] is None:  # the LSTM student: no attention heads
        return (f"Architecture: {arch.get('class', '?')}, {arch.get('layers', '?')} bidirectional LSTM layers, "
                f"{arch.get('hidden', '?')}-wide token vectors, attention pooling{params}.")
    return (f"Architecture: {arch.get('class', '?')}, {arch.get('layers', '?')} layers, hidden size "
            f"{arch.get('hidden', '?')}, {arch.get('heads', '?')} attention heads{params}.")


def _training(kind: str, config: dict[str, Any], me: dict[str, Any]) -> str:
    data, info = config.get("data") or {}, config.get("dataset_info") or {}
    model, train, kd = config.get("model") or {}, config.get("train") or {}, config.get("kd") or {}
    teacher_arch = (config.get("architectures") or {}).get("teacher") or {}
    epochs = train.get("epochs") if kind == "teacher" else (train.get("student_epochs") or train.get("epochs"))
    lr = train.get("learning_rate") if kind == "teacher" else (train.get("student_learning_rate") or train.get("learning_rate"))
    rows = info.get("rows") or {}
    lines = []
    if kind == "teacher":
        lines.append(f"- **Starting point**: {model.get('teacher', '?')} (pretrained), with a new classification head.")
        lines.append("- **Objective**: cross-entropy on the labels.")
    else:
        teacher = f"the run's teacher, {teacher_arch.get('class', 'BERT')} with {teacher_arch.get('layers', '?')} layers"
        if _is_lstm(kind, config):
            start = "a BiLSTM with attention pooling, its word embeddings " + {
                "teacher": "copied from the pretrained teacher", "word2vec": "learned by Word2Vec on the training texts",
            }.get(model.get("lstm_init", "teacher"), "initialised at random")
        elif model.get("student"):
            own = ((config.get("architectures") or {}).get(kind) or {}).get("class")
            start = f"{model['student']} (pretrained{', ' + own if own else ''}; it reads texts with its own tokenizer)"
        else:
            arch = (config.get("architectures") or {}).get(kind) or {}
            layer_map = arch.get("layer_map") or model.get("layer_map")
            layers = (f"layers {', '.join(str(j + 1) for j in layer_map)} (counting from 1)" if layer_map
                      else "every other layer")
            start = f"a {arch.get('class') or 'DistilBERT'} built from the teacher, copying its embeddings and its {layers}"
        lines.append(f"- **Starting point**: {start}.")
        if kind == "student":
            t, a = kd.get("temperature"), kd.get("alpha")
            lines.append(f"- **Teacher**: {teacher}, frozen while the student trains.")
            lines.append(f"- **Objective**: knowledge distillation, `alpha * T^2 * KL(teacher_T || student_T) + "
                         f"(1 - alpha) * CE(labels)` with temperature **T = {t}** and **alpha = {a}**"
                         + (f", plus a hidden-state cosine term weighted {kd['hidden_weight']}" if kd.get("hidden_weight")
                            else "") + ".")
        else:
            lines.append("- **Objective**: cross-entropy on the labels alone (no teacher); same start, data and "
                         "schedule as the distilled student.")
    split_rows = ", ".join(f"{rows[s]} {s}" for s in ("train", "validation", "test") if s in rows)
    lines.append(f"- **Data**: {data.get('dataset', '?')}" + (f" ({split_rows} texts)" if split_rows else "")
                 + f", texts truncated to {data.get('max_length', '?')} tokens ({data.get('truncation') or 'head'})"
                 + (", cross-entropy weighted per class (balanced)" if (config.get("train") or {}).get("class_weights")
                    == "balanced" else "") + ".")
    for note in info.get("notes") or []:
        lines.append(f"  - {note}")
    lines.append(f"- **Optimisation**: {epochs} epoch(s), learning rate {lr}, batch size {train.get('batch_size', '?')}, "
                 f"{train.get('scheduler', '?')} schedule, weight decay {train.get('weight_decay', '?')}, "
                 f"seed {train.get('seed', '?')}.")
    training = me.get("training") or {}
    if training.get("train_time_s"):
        lines.append(f"- **Training time**: {training['train_time_s']:.0f} s on {(config.get('environment') or {}).get('device', '?')} "
                     f"({training.get('steps', '?')} steps, {training.get('train_samples_per_s', 0):.0f} samples/s).")
    return "\n".join(lines)


def _evaluation(kind: str, results: dict[str, Any] | None) -> str:
    models = (results or {}).get("models") or {}
    if kind not in models:
        return "Not evaluated yet: run `python -m distill_core evaluate RUN`."
    lines = [f"On the test split ({(results or {}).get('test_rows', '?')} texts), beside the other models of the run:", "",
             "| model | accuracy | macro-F1 | agrees with the teacher |", "|---|---|---|---|"]
    for k in MODEL_KINDS:
        if k not in models:
            continue
        m = models[k]
        agree = f"{m['agreement_with_teacher']:.1%}" if m.get("agreement_with_teacher") is not None else "-"
        name = f"**{MODEL_TITLES.get(k, k)} (this model)**" if k == kind else MODEL_TITLES.get(k, k)
        lines.append(f"| {name} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {agree} |")
    me = models[kind]
    verdict = (results or {}).get("verdict") or {}
    if verdict.get("text") and kind != "teacher":
        lines += ["", f"Did distillation pay off? {verdict['text']}"]
    if me.get("accuracy_retention") is not None:
        lines += ["", f"It keeps {me['accuracy_retention']:.1%} of the teacher's accuracy."]
    per_class = me.get("per_class") or {}
    if per_class:
        lines += ["", "Per class (this model):", "", "| class | precision | recall | F1 | texts |", "|---|---|---|---|---|"]
        for name, c in per_class.items():
            lines.append(f"| {name} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1-score']:.3f} | {int(c['support'])} |")
    return "\n".join(lines)


def _speed(kind: str, bench: dict[str, Any] | None) -> str:
    if not bench:
        return ""
    keys = [k for k in (bench.get("models") or {}) if k == kind or k.startswith(f"{kind}_")]
    if not keys:
        return ""
    s, machine = bench.get("settings") or {}, bench.get("machine") or {}
    med, mx = s.get("median_tokens", "?"), s.get("max_length", "?")
    lines = [f"Batch-1 latency, tokenisation included (p50 over {s.get('repeats', '?')} calls), on "
             f"{machine.get('cpu_model', '?')} with {machine.get('torch_threads', '?')} threads, measured "
             f"{bench.get('created', '?')} (`python -m distill_core bench RUN`):", "",
             f"| variant | ms at {med} tokens | ms at {mx} tokens | texts/s at batch {s.get('batch_size', '?')} |",
             "|---|---|---|---|"]
    for k in keys:
        m = bench["models"][k]
        lat = m.get("latency_ms") or {}
        p50 = lambda length: f"{lat[length]['p50']:.2f}" if isinstance(lat.get(length), dict) else "-"  # noqa: E731
        tp = f"{m['throughput_texts_per_s']:.0f}" if m.get("throughput_texts_per_s") else "-"
        lines.append(f"| {m.get('title', k)} | {p50('median_len')} | {p50('max_len')} | {tp} |")
    teacher = (bench.get("models") or {}).get("teacher")
    if kind != "teacher" and teacher and isinstance((teacher.get("latency_ms") or {}).get("median_len"), dict):
        lines += ["", f"The teacher takes {teacher['latency_ms']['median_len']['p50']:.2f} ms at {med} tokens on the "
                      "same machine."]
    return "\n".join(lines)


def _onnx(onnx: dict[str, Any]) -> str:
    v = onnx.get("verification") or {}
    files = onnx.get("files") or {}
    lines = [f"`onnx/` holds this model as ONNX (opset {onnx.get('opset', '?')}, dynamic batch and length; "
             "inputs `input_ids` and `attention_mask`, output `logits`)"
             + (", and an int8 copy quantised dynamically with ONNX Runtime" if "model_int8.onnx" in files else "")
             + f". Checked against PyTorch on {v.get('texts', '?')} test texts:", "",
             "| graph | size MB | accuracy | macro-F1 | same prediction as PyTorch | max logit difference |",
             "|---|---|---|---|---|---|"]
    for key, file, title in (("onnx", "model.onnx", "fp32"), ("onnx_int8", "model_int8.onnx", "int8")):
        if key in v and file in files:
            r = v[key]
            lines.append(f"| {title} (`{file}`) | {files[file] / 2**20:.1f} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | "
                         f"{r['agreement']:.2%} | {r['max_abs_logit_diff']:.2g} |")
    return "\n".join(lines)


def _usage(run_id: str, kind: str, lstm: bool = False, folder: Path | None = None, example: str | None = None) -> str:
    # The BiLSTM is this project's own model class: importing distill_core.train.models registers it with transformers.
    where = str(folder) if folder else f"artifacts/runs/{run_id}/{kind}"
    return ("```python\n" + ("import distill_core.train.models  # registers the BiLSTM student with transformers\n" if lstm else "")
            + "from transformers import pipeline\n\n"
            f"classify = pipeline(\"text-classification\", model={where!r})\n"
            f"classify({(example or 'A text to classify.')!r})\n```\n\n"
            f"Or over HTTP: `python -m distill_core serve {run_id} --model {kind}`, then "
            "`POST /predict {\"text\": \"...\"}` (docs at `/docs`).")


def _reads(data: dict[str, Any]) -> str:
    """Which tokens of a long text the model reads (``--truncation``)."""
    n, rule = data.get("max_length", "?"), data.get("truncation") or "head"
    if rule == "tail":
        return f"Reads the last {n} tokens of a text; the rest is ignored."
    if rule == "head+tail":
        return f"Reads {n} tokens of a long text: its first quarter and its last three quarters; the middle is ignored."
    return f"Reads the first {n} tokens of a text; the rest is ignored."


def _limitations(config: dict[str, Any]) -> str:
    data = config.get("data") or {}
    return (f"- Trained and tested on {data.get('dataset', '?')} only: expect lower accuracy on texts unlike it "
            "(other topics, other styles, other languages).\n"
            f"- {_reads(data)}\n"
            "- The figures above are from one training run with one seed; a few tenths of a point between models can "
            "be noise.")
