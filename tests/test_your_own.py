"""Distil what the user already has: a data file with its own column names, a fine-tuned teacher used as it is
(labels matched by name), ``--teacher-from`` a model folder; and every refusal before a run folder exists."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from conftest import LABELS, make_texts, train_args
from distill_core.cli import main
from distill_core.config import DataConfig
from distill_core.train.data import load_splits

NAMES = {i: n for i, n in enumerate(LABELS)}


def _as_user_table(n: int, seed: int):
    """The tiny topic texts as a user's export: other column names, the class as a string."""
    df = make_texts(n, seed)
    return df.rename(columns={"text": "body"}).assign(category=df["label"].map(NAMES)).drop(columns="label")


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_one_data_file_with_its_own_columns_loads_and_carves_validation_and_test(tmp_path, suffix):
    df = _as_user_table(80, 1)
    path = tmp_path / f"tickets{suffix}"
    {".csv": lambda: df.to_csv(path, index=False), ".tsv": lambda: df.to_csv(path, sep="\t", index=False),
     ".jsonl": lambda: df.to_json(path, orient="records", lines=True),
     ".parquet": lambda: df.to_parquet(path, index=False)}[suffix]()
    splits = load_splits(DataConfig(dataset=str(path), text_column="body", label_column="category"), seed=0)
    assert splits.label_names == sorted(LABELS)  # string labels, mapped in sorted order as for folders
    assert len(splits.train) + len(splits.validation) + len(splits.test) == 80
    assert any("carved" in n for n in splits.notes)


def test_a_test_file_beside_the_data_file_is_the_test_split(tmp_path):
    _as_user_table(64, 1).to_csv(tmp_path / "train.csv", index=False)
    _as_user_table(20, 2).to_csv(tmp_path / "held_out.csv", index=False)
    cfg = DataConfig(dataset=str(tmp_path / "train.csv"), test_file=str(tmp_path / "held_out.csv"),
                     text_column="body", label_column="category")
    splits = load_splits(cfg, seed=0)
    assert len(splits.test) == 20 and len(splits.train) + len(splits.validation) == 64


def _classifier_folder(root: Path, tokenizer, id2label: dict[int, str]) -> Path:
    """A tiny fine-tuned-looking BERT classifier saved as a user would have it."""
    torch.manual_seed(3)
    cfg = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=37, max_position_embeddings=64, pad_token_id=0, id2label=id2label,
                     label2id={v: k for k, v in id2label.items()}, architectures=["BertForSequenceClassification"])
    BertForSequenceClassification(cfg).save_pretrained(root, safe_serialization=True)
    tokenizer.save_pretrained(root)
    return root


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes() + str(f.stat().st_mtime_ns).encode())
    return h.hexdigest()


def test_a_fine_tuned_teacher_is_used_as_it_is_with_its_labels_matched_by_name(tmp_path, tokenizer, dataset_dir):
    order = ["Sci/Tech", "World", "Business", "Sports"]  # the same classes as the data, in another order
    given = _classifier_folder(tmp_path / "my_teacher", tokenizer, dict(enumerate(order)))
    before = _digest(given)
    out = tmp_path / "runs"
    assert main(train_args(dataset_dir, given, out, "given", "--models", "student,baseline")) == 0
    run = out / "given"
    assert _digest(given) == before, "the user's checkpoint folder is only read"
    assert not (run / "teacher_train.csv").exists(), "the given teacher is not trained"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["architectures"]["teacher"]["given"] == str(given)
    assert cfg["dataset_info"]["label_names"] == order
    results = json.loads((run / "results.json").read_text())
    # The teacher in the run scores exactly what the user's checkpoint predicts on the test texts.
    from distill_core.ship.inference import TextClassifier

    texts = list(make_texts(24, 2)["text"])
    labels = np.asarray([order.index(LABELS[i]) for i in make_texts(24, 2)["label"]])
    mine = TextClassifier.load(given, max_length=32).predict_proba(texts).argmax(-1)
    assert results["models"]["teacher"]["accuracy"] == pytest.approx(float((mine == labels).mean()))
    assert results["label_names"] == order


def test_generic_label_names_are_taken_in_the_datasets_order_with_a_warning(tmp_path, tokenizer, dataset_dir, caplog):
    given = _classifier_folder(tmp_path / "generic", tokenizer, {i: f"LABEL_{i}" for i in range(4)})
    out = tmp_path / "runs"
    with caplog.at_level("INFO"):
        assert main(train_args(dataset_dir, given, out, "generic", "--models", "student")) == 0
    assert "labels are generic" in caplog.text
    teacher_cfg = json.loads((out / "generic" / "teacher" / "config.json").read_text())
    assert [teacher_cfg["id2label"][str(i)] for i in range(4)] == LABELS


@pytest.mark.parametrize("id2label, expected", [
    ({0: "pos", 1: "neg", 2: "x", 3: "y"}, "predicts ['pos', 'neg', 'x', 'y'], but this dataset's classes are"),
    ({0: "LABEL_0", 1: "LABEL_1"}, "has 2 outputs but the dataset has 4 classes"),
])
def test_a_teacher_with_other_labels_is_refused_before_any_folder(tmp_path, tokenizer, dataset_dir, caplog,
                                                                   id2label, expected):
    given = _classifier_folder(tmp_path / "other", tokenizer, id2label)
    out = tmp_path / "runs"
    assert main(train_args(dataset_dir, given, out, "refused", "--models", "student,baseline")) == 2
    assert expected in caplog.text
    assert not (out / "refused").exists()


def test_a_teacher_without_a_classification_head_is_refused_with_the_fix(tmp_path, teacher_dir, dataset_dir, caplog):
    out = tmp_path / "runs"
    assert main(train_args(dataset_dir, teacher_dir, out, "nohead", "--models", "student,baseline")) == 2
    err = caplog.text
    assert "has no classification head" in err and "put teacher in --models" in err
    assert not (out / "nohead").exists()


def test_teacher_from_takes_a_model_folder(tmp_path, tiny_run, teacher_dir, dataset_dir):
    out = tmp_path / "runs"
    assert main(train_args(dataset_dir, teacher_dir, out, "from_folder", "--models", "student",
                           "--teacher-from", str(tiny_run / "teacher"))) == 0
    run = out / "from_folder"
    a = json.loads((tiny_run / "results.json").read_text())["models"]["teacher"]["accuracy"]
    b = json.loads((run / "results.json").read_text())["models"]["teacher"]["accuracy"]
    assert a == b and (run / "teacher_train.csv").exists()  # a run's teacher brings its curves along
