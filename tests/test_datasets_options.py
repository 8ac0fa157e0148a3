"""Dataset options: --truncation, --class-weights, the imdb and hate-speech presets, and the headline metric."""

from __future__ import annotations

import json
import string
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset, DatasetDict

from conftest import LABELS, make_texts, shared_data_dir, train_args, write_hub_folder
from distill_core.train.batching import tokenize_splits
from distill_core.cli import build_parser, main
from distill_core.flags import config_from_args
from distill_core.config import RunConfig
from distill_core.presets import PRESET_SUMMARIES, PRESETS, preset_config
from distill_core.train.data import load_splits, resolve_dataset
from distill_core.errors import ConfigError
from distill_core.evidence.verdict import headline_metric
from distill_core.ship.inference import TextClassifier
from distill_core.train.losses import IGNORE_INDEX, balanced_class_weights, cross_entropy, kd_loss, masked_cross_entropy
from distill_core.runs import model_dir
from distill_core.train.loop import cross_entropy_objective, kd_objective
from distill_core.train.transfer import with_transfer
from distill_core.train.truncation import TRUNCATIONS, cut, encode, head_tail_split
from distill_core.views import overview as ov

# 36 words the fixture vocabulary holds as one token each: a text of them has one id per word.
WORDS = list(string.ascii_lowercase + string.digits)
LONG = " ".join(WORDS)
SHORT = "a b c"
MAX_LENGTH = 16  # budget 14 after [CLS] and [SEP]: head+tail keeps 4 + 10


# ----------------------------------------------------------------------------- truncation


def _expected(tokenizer, rule: str) -> list[int]:
    ids = tokenizer(LONG, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(WORDS)  # one id per word, so the cuts below are exact
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    kept = {"head": ids[:14], "tail": ids[-14:], "head+tail": ids[:4] + ids[-10:]}[rule]
    return [cls, *kept, sep]


def test_head_tail_split_follows_sun_et_al():
    assert head_tail_split(510) == (128, 382)  # the paper's 512-token setting
    assert head_tail_split(126) == (32, 94)  # max_length 128
    assert head_tail_split(14) == (4, 10)
    assert cut(list(range(5)), 5, "head+tail") == list(range(5))
    with pytest.raises(ValueError, match="truncation"):
        cut(list(range(9)), 5, "middle")


@pytest.mark.parametrize("rule", TRUNCATIONS)
def test_a_long_text_keeps_exactly_the_expected_ids(tokenizer, rule):
    want = _expected(tokenizer, rule)
    assert encode(tokenizer, [LONG], MAX_LENGTH, rule)["input_ids"] == [want]
    ds = DatasetDict(train=Dataset.from_dict({"text": [LONG, SHORT], "label": [0, 1]}))
    tok = tokenize_splits(ds, tokenizer, MAX_LENGTH, rule)["train"]
    assert tok[0]["input_ids"] == want and tok[0]["length"] == MAX_LENGTH
    # The transfer texts (few labels) are cut by the same rule.
    extra = with_transfer(tok, [LONG], tokenizer, MAX_LENGTH, rule)
    assert extra[2]["input_ids"] == want and extra[2]["label"] == IGNORE_INDEX


def test_the_manual_cut_at_the_head_matches_the_tokenizers_own(tokenizer):
    # "head" uses the tokenizer's truncation; the special-token path must agree with it.
    from distill_core.train.truncation import special_tokens

    before, after = special_tokens(tokenizer)
    ids = tokenizer(LONG, add_special_tokens=False)["input_ids"]
    native = tokenizer(LONG, truncation=True, max_length=MAX_LENGTH)["input_ids"]
    assert before + cut(ids, MAX_LENGTH - 2, "head") + after == native


def test_short_texts_are_identical_under_every_rule(tokenizer):
    plain = tokenizer([SHORT, "x y"])["input_ids"]
    for rule in TRUNCATIONS:
        assert encode(tokenizer, [SHORT, "x y"], MAX_LENGTH, rule)["input_ids"] == plain
        padded = encode(tokenizer, [SHORT, "x y"], MAX_LENGTH, rule, padded=True)
        assert padded["input_ids"].shape == (2, len(plain[0])) and padded["input_ids"].dtype == np.int64
        assert padded["attention_mask"].sum(1).tolist() == [len(p) for p in plain]
        pads = len(plain[0]) - len(plain[1])
        assert padded["input_ids"][1, len(plain[1]):].tolist() == [tokenizer.pad_token_id] * pads


@pytest.mark.parametrize("rule", TRUNCATIONS)
def test_the_classifier_cuts_texts_as_its_run_did(tokenizer, teacher_dir, tmp_path, rule):
    from distill_core.train.models import load_teacher

    model = load_teacher(str(teacher_dir), LABELS)
    model.config.distill_max_length, model.config.distill_truncation = MAX_LENGTH, rule
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    clf = TextClassifier.load(tmp_path)
    assert clf.truncation == rule
    enc = clf.encode([LONG, SHORT])
    assert enc["input_ids"][0].tolist() == _expected(tokenizer, rule)
    assert set(enc) == {"input_ids", "attention_mask"}


def test_the_onnx_export_cuts_texts_as_its_run_did(tokenizer, teacher_dir, tmp_path):
    from distill_core.train.models import load_teacher
    from distill_core.ship.onnx_export import OnnxClassifier, write_graphs

    model = load_teacher(str(teacher_dir), LABELS).eval()
    model.config.distill_max_length, model.config.distill_truncation = MAX_LENGTH, "tail"
    write_graphs(model, tokenizer, tmp_path, int8=False)
    clf = OnnxClassifier.load(tmp_path, threads=1)
    assert clf.truncation == "tail"
    assert clf._encode([LONG])["input_ids"][0].tolist() == _expected(tokenizer, "tail")
    torch_clf = TextClassifier(model, tokenizer, MAX_LENGTH, truncation="tail")
    assert np.allclose(clf.predict_logits([LONG, SHORT]), torch_clf.predict_logits([LONG, SHORT]), atol=1e-4)


def test_a_model_saved_before_the_choice_cuts_at_the_head(tokenizer, teacher_dir, tmp_path):
    from distill_core.train.models import load_teacher

    load_teacher(str(teacher_dir), LABELS).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert TextClassifier.load(tmp_path, max_length=MAX_LENGTH).truncation == "head"


def test_truncation_and_class_weights_are_validated():
    for section, name, flag in (("data", "truncation", "--truncation"), ("train", "class_weights", "--class-weights")):
        cfg = RunConfig()
        setattr(getattr(cfg, section), name, "middle")
        with pytest.raises(ConfigError, match=f"{flag} 'middle' is not valid: choose one of"):
            cfg.validate()
    cfg = RunConfig()
    cfg.data.truncation, cfg.train.class_weights = "head+tail", "balanced"
    assert RunConfig.from_dict(cfg.validate().to_dict()) == cfg


# ----------------------------------------------------------------------------- class weights


def test_balanced_weights_are_sklearns():
    assert balanced_class_weights([0] * 8 + [1] * 2, 2).tolist() == [0.625, 2.5]
    # Hidden labels do not count; a class without training rows gets 0 (it is never a target).
    assert balanced_class_weights([0] * 8 + [1] * 2 + [IGNORE_INDEX] * 5, 3).tolist() == [0.625, 2.5, 0.0]


def _hand_weighted_ce(logits: torch.Tensor, labels: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    nll = -F.log_softmax(logits, -1)[torch.arange(len(labels)), labels]  # (B,)
    return (w[labels] * nll).sum() / w[labels].sum()


def test_weighted_cross_entropy_is_the_weighted_mean():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 3), torch.tensor([0, 0, 0, 1, 2, 2])
    w = torch.tensor([0.5, 2.0, 1.5])
    assert torch.allclose(cross_entropy(logits, labels, w).loss, _hand_weighted_ce(logits, labels, w))
    assert torch.equal(cross_entropy(logits, labels).loss, F.cross_entropy(logits, labels))  # None: as before
    assert not torch.allclose(cross_entropy(logits, labels, w).loss, cross_entropy(logits, labels).loss)


def test_hidden_labels_stay_ignored_with_weights():
    torch.manual_seed(1)
    logits = torch.randn(5, 2)
    labels = torch.tensor([0, IGNORE_INDEX, 1, IGNORE_INDEX, 0])
    w = torch.tensor([0.625, 2.5])
    known = labels != IGNORE_INDEX
    want = _hand_weighted_ce(logits[known], labels[known], w)
    assert torch.allclose(masked_cross_entropy(logits, labels, w), want)
    assert masked_cross_entropy(logits, torch.full((5,), IGNORE_INDEX), w).item() == 0.0


def test_kd_loss_weights_the_cross_entropy_and_never_the_kl():
    torch.manual_seed(2)
    s, t = torch.randn(4, 3), torch.randn(4, 3)
    labels, w = torch.tensor([0, 1, 2, IGNORE_INDEX]), torch.tensor([1.0, 3.0, 0.5])
    plain, weighted = kd_loss(s, t, labels, 2.0, 0.5), kd_loss(s, t, labels, 2.0, 0.5, class_weights=w)
    assert torch.equal(plain.parts["kd_loss"], weighted.parts["kd_loss"])
    assert torch.allclose(weighted.parts["ce_loss"], _hand_weighted_ce(s[:3], labels[:3], w))
    assert torch.allclose(weighted.loss, 0.5 * weighted.parts["kd_loss"] + 0.5 * weighted.parts["ce_loss"])


def test_objectives_pass_the_weights_on():
    torch.manual_seed(3)
    logits = torch.randn(4, 2)
    model = lambda **_: SimpleNamespace(logits=logits)  # noqa: E731 - the objective only reads .logits
    batch = {"input_ids": torch.zeros(4, 3, dtype=torch.long), "attention_mask": torch.ones(4, 3, dtype=torch.long),
             "labels": torch.tensor([0, 0, 0, 1]), "teacher_logits": torch.randn(4, 2)}
    w = torch.tensor([0.625, 2.5])
    out, _ = partial(cross_entropy_objective, class_weights=w)(model, batch)
    assert torch.allclose(out.loss, _hand_weighted_ce(logits, batch["labels"], w))
    assert torch.equal(cross_entropy_objective(model, batch)[0].loss, F.cross_entropy(logits, batch["labels"]))
    res, _ = kd_objective(2.0, 0.5, class_weights=w)(model, batch)
    assert torch.allclose(res.parts["ce_loss"], _hand_weighted_ce(logits, batch["labels"], w))


# ----------------------------------------------------------------------------- presets


def test_every_preset_validates_and_is_offered():
    assert set(PRESET_SUMMARIES) == set(PRESETS)
    for name in PRESETS:
        preset_config(name).validate()
    parser = build_parser()
    for name in ("imdb", "hate-speech"):
        cfg = config_from_args(parser.parse_args(["train", "--preset", name]))
        assert cfg.preset == name
    imdb, hate = preset_config("imdb"), preset_config("hate-speech")
    assert imdb.data.truncation == "head+tail" and imdb.data.max_train_samples
    assert hate.train.class_weights == "balanced"
    assert (hate.data.validation_fraction, hate.data.test_fraction) == (0.1111, 0.1)  # 80/10/10 of the one split


def _shared(name: str) -> Path:
    root = shared_data_dir()
    if root is None or not (root / name).is_dir():
        pytest.skip(f"the shared {name} folder is not on this machine")
    return root / name


def test_the_presets_resolve_their_datasets():
    for preset, folder in (("imdb", "imdb"), ("hate-speech", "hate_speech18")):
        path = _shared(folder)
        assert Path(resolve_dataset(preset_config(preset).data)) == path.resolve()
    # IMDB has train and test only: its validation split is carved from train.
    stems = {p.name.split(".")[0] for p in _shared("imdb").iterdir()}
    assert {"train", "test"} <= stems and not stems & {"validation", "valid", "val", "dev"}


def test_the_hate_speech_carve_keeps_every_class_in_every_split():
    _shared("hate_speech18")
    cfg = preset_config("hate-speech")
    splits = load_splits(cfg.data, seed=cfg.train.seed)
    assert splits.label_names == ["noHate", "hate", "idk/skip", "relation"]
    sizes = {name: len(getattr(splits, name)) for name in ("train", "validation", "test")}
    # 80/10/10: test is 10% of all, validation 1/9 of the rest (10% of all)
    assert sum(sizes.values()) == 10944 and sizes["test"] == 1095 and sizes["validation"] == 1095
    for name in ("train", "validation", "test"):
        counts = np.bincount(getattr(splits, name)["label"], minlength=4)
        assert (counts > 0).all(), (name, counts)
    # Stratified: the rarest class keeps its share (73 of 10,944) in the test split.
    assert np.bincount(splits.test["label"], minlength=4)[2] in (7, 8)
    assert headline_metric(np.bincount(splits.train["label"], minlength=4)) == "macro_f1"


# ----------------------------------------------------------------------------- the headline metric


def test_headline_metric_rule():
    assert headline_metric([8, 2]) == "macro_f1"  # 4x: imbalanced
    assert headline_metric([6, 2]) == "accuracy"  # 3x is not more than 3x
    assert headline_metric([16, 16, 16, 16]) == "accuracy"
    assert headline_metric([5, 0]) == "macro_f1"  # a class without training rows
    assert ov.headline_of({}) == "accuracy" and ov.headline_note({}) is None  # results written before the choice
    note = ov.headline_note({"headline_metric": "macro_f1", "train_label_counts": {"a": 40, "b": 8}})
    assert "5×" in note and "majority class" in note


def test_per_class_table_shows_every_class_with_its_support():
    results = {"label_names": ["a", "b"], "train_label_counts": {"a": 40, "b": 8},
               "models": {k: {"per_class": {"a": {"precision": 0.9, "recall": 0.95, "f1-score": 0.92, "support": 30},
                                            "b": {"precision": 0.5, "recall": 0.4, "f1-score": 0.44, "support": 6}}}
                          for k in ("teacher", "student")}}
    t = ov.per_class_table(results, {"a": 0.6, "b": 3.0})
    assert list(t["Class"]) == ["a", "a", "b", "b"] and list(t["Model"]) == ["Teacher", "Distilled student"] * 2
    assert t.loc[2, ["Recall", "Test rows", "Training rows", "Class weight"]].tolist() == [0.4, 6, 8, 3.0]
    assert ov.per_class_png(ov.per_class_f1({**results, "models": {
        k: {"per_class": {n: {"f1-score": v["f1-score"]} for n, v in m["per_class"].items()}}
        for k, m in results["models"].items()}})).startswith(b"\x89PNG")


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def imbalanced_run(tmp_path_factory, teacher_dir) -> Path:
    """A tiny run on 4 classes at 32/12/12/8 training rows, long texts cut head+tail, balanced class weights."""
    texts = make_texts(128, 1)
    train = pd.concat([texts[texts.label == 0], texts[texts.label == 1][:12], texts[texts.label == 2][:12],
                       texts[texts.label == 3][:8]])
    data = write_hub_folder(tmp_path_factory.mktemp("data") / "imbalanced",
                            {"train": train, "test": make_texts(24, 2)})
    out = tmp_path_factory.mktemp("runs")
    run_id = "20260101-000000_imbalanced"
    # --max-length 8: most texts are longer, so the cut matters.
    assert main(train_args(data, teacher_dir, out, run_id, "--max-length", "8", "--truncation", "head+tail",
                           "--class-weights", "balanced", "--epochs", "1", "--student-epochs", "1")) == 0
    return out / run_id


def test_the_run_records_its_truncation_and_class_weights(imbalanced_run):
    cfg = json.loads((imbalanced_run / "config.json").read_text())
    assert cfg["data"]["truncation"] == "head+tail" and cfg["train"]["class_weights"] == "balanced"
    counts = cfg["dataset_info"]["train_label_counts"]
    n, k = sum(counts.values()), len(counts)
    assert cfg["class_weights"] == pytest.approx({name: n / (k * c) for name, c in counts.items()})
    assert cfg["class_weights"]["Sci/Tech"] > cfg["class_weights"]["World"]
    for kind in ("teacher", "student", "baseline"):
        assert TextClassifier.load(model_dir(imbalanced_run, kind)).truncation == "head+tail"
    results = json.loads((imbalanced_run / "results.json").read_text())
    assert results["headline_metric"] == "macro_f1" and results["train_label_counts"] == counts


def test_the_overview_leads_with_macro_f1_on_imbalanced_classes(imbalanced_run, tmp_path, monkeypatch):
    import shutil

    from streamlit.testing.v1 import AppTest

    root = tmp_path / "runs"
    shutil.copytree(imbalanced_run, root / imbalanced_run.name)
    monkeypatch.setenv("DISTILL_RUNS_DIR", str(root))
    dashboard = str(Path(__file__).resolve().parents[1] / "dashboard.py")
    at = AppTest.from_file(dashboard, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Overview"
    labels = [m.label for m in at.metric]
    assert labels[:2] == ["Distilled student macro-F1", "Macro-F1 retention"]
    assert "accuracy rewards always predicting the majority class" in "\n".join(c.value for c in at.caption)
    detail = next(d.value for d in at.dataframe if "Recall" in d.value)
    assert set(detail["Class"]) == set(LABELS) and {"Test rows", "Training rows", "Class weight"} <= set(detail)
    assert {"Figure (PNG)", "Per-class figures (CSV)"} <= {b.proto.label for b in at.get("download_button")}
