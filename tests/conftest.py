"""Shared fixtures: a tiny tokenizer, a tiny random BERT checkpoint, hub-layout datasets, and one tiny run.

Nothing is downloaded: models are random-config (vocab 178, hidden 32, 2 layers, 4 heads) built in code,
the tokenizer vocabulary is ``tests/fixtures/vocab.txt``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pandas as pd
import pytest
from transformers import BertConfig, BertModel, BertTokenizerFast

# Tests never reach the hub (set before any fixture, session-scoped ones included, runs).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

FIXTURES = Path(__file__).parent / "fixtures"
LABELS = ["World", "Sports", "Business", "Sci/Tech"]
TOPIC_WORDS = {
    0: ["war", "president", "election", "government", "police", "minister", "peace", "talks"],
    1: ["team", "game", "win", "won", "season", "league", "cup", "coach"],
    2: ["stocks", "market", "shares", "profit", "bank", "oil", "company", "deal", "price"],
    3: ["computer", "software", "internet", "space", "science", "study", "phone", "nasa"],
}
FILLER = ["the", "a", "of", "to", "in", "on", "for", "with", "is", "was", "after", "new", "says"]


def make_texts(n: int, seed: int) -> pd.DataFrame:
    """``n`` short texts, balanced over 4 topics, each built from its topic's words plus filler."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 4
        words = rng.choices(TOPIC_WORDS[label], k=rng.randint(2, 5)) + rng.choices(FILLER, k=rng.randint(2, 8))
        rng.shuffle(words)
        rows.append({"text": " ".join(words) + " .", "label": label})
    return pd.DataFrame(rows)


def card(names: list[str], splits: dict[str, str]) -> str:
    """A hub dataset card declaring ``names`` as the label's ClassLabel and ``splits`` as data files."""
    label_lines = "\n".join(f"          '{i}': {n}" for i, n in enumerate(names))
    split_lines = "\n".join(f"  - split: {s}\n    path: {p}" for s, p in splits.items())
    return (
        "---\ndataset_info:\n  features:\n  - name: text\n    dtype: string\n  - name: label\n    dtype:\n"
        f"      class_label:\n        names:\n{label_lines}\nconfigs:\n- config_name: default\n  data_files:\n"
        f"{split_lines}\n---\n# tiny test dataset\n"
    )


def write_hub_folder(root: Path, splits: dict[str, pd.DataFrame], names: list[str] | None = LABELS) -> Path:
    """Write a hub-layout dataset folder (CSV per split, README card if ``names``) and return it."""
    root.mkdir(parents=True, exist_ok=True)
    for split, df in splits.items():
        df.to_csv(root / f"{split}.csv", index=False)
    if names is not None:
        (root / "README.md").write_text(card(names, {s: f"{s}.csv" for s in splits}))
    return root


@pytest.fixture(scope="session")
def tokenizer() -> BertTokenizerFast:
    return BertTokenizerFast(vocab=str(FIXTURES / "vocab.txt"), do_lower_case=True)


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory, tokenizer) -> Path:
    """A tiny random 'pretrained' BertModel checkpoint with its tokenizer (what --teacher points at)."""
    import torch

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tiny_bert")
    cfg = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                     intermediate_size=37, max_position_embeddings=64, type_vocab_size=2, pad_token_id=0)
    BertModel(cfg).save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory) -> Path:
    """4-topic hub-layout folder with train and test splits only (validation is carved from train)."""
    root = tmp_path_factory.mktemp("data") / "tiny_news"
    return write_hub_folder(root, {"train": make_texts(64, 1), "test": make_texts(24, 2)})


def train_args(dataset: Path, teacher: Path, out: Path, run_id: str, *extra: str) -> list[str]:
    return ["train", "--dataset", str(dataset), "--teacher", str(teacher), "--output-dir", str(out),
            "--run-id", run_id, "--epochs", "2", "--student-epochs", "2", "--lr", "1e-3", "--student-lr", "1e-3",
            "--batch-size", "8", "--eval-batch-size", "16", "--max-length", "32", "--eval-every", "4", *extra]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, dataset_dir, teacher_dir) -> Path:
    """A complete run folder with all three tiny models, trained by the real CLI."""
    from distill_core.cli import main

    out = tmp_path_factory.mktemp("runs")
    assert main(train_args(dataset_dir, teacher_dir, out, "20260101-000000_tiny_quick")) == 0
    return out / "20260101-000000_tiny_quick"


@pytest.fixture
def runs(tmp_path, monkeypatch, tiny_run) -> Path:
    """A runs folder holding a copy of the tiny run, as ``$DISTILL_RUNS_DIR`` (what the dashboard reads)."""
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(tiny_run, root / tiny_run.name)
    monkeypatch.setenv("DISTILL_RUNS_DIR", str(root))
    return root


@pytest.fixture
def run_dir(runs, tiny_run) -> Path:
    return runs / tiny_run.name


@pytest.fixture(autouse=True)
def _no_data_dir(monkeypatch):
    monkeypatch.delenv("DISTILL_DATA_DIR", raising=False)


def shared_data_dir() -> Path | None:
    d = Path(os.environ.get("DISTILL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    return d if d.is_dir() else None
