"""Your own models of other families: a RoBERTa teacher used as it is with a BERT or ELECTRA student that reads other
tokens, a DeBERTa-v2 teacher cut into its own smaller class, and what is refused before any run folder exists.
Every model is tiny and random, every tokenizer trained here (WordPiece and byte-level BPE)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from streamlit.testing.v1 import AppTest
from transformers import AutoConfig, AutoTokenizer

from conftest import LABELS, make_texts, train_args
from distill_core.cli import main
from distill_core.train.models import load_teacher
from distill_core.train.shrink import shrink
from families import bpe_tokenizer, save_family, wordpiece_tokenizer
from test_dashboard import APP, TIMEOUT, torch_threads  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    corpus = list(make_texts(400, 7)["text"])
    wp, bpe = wordpiece_tokenizer(corpus, 200), bpe_tokenizer(corpus, 300)
    return {
        "roberta_teacher": save_family(root / "roberta_teacher", "roberta", bpe, labels=LABELS),
        "bert_student": save_family(root / "bert_student", "bert", wp, layers=2),
        "electra_student": save_family(root / "electra_student", "electra", wp, layers=2),
        "wide_roberta": save_family(root / "wide_roberta", "roberta", bpe, layers=2, hidden=48),
        "deberta": save_family(root / "deberta", "deberta-v2", wp, layers=4),
    }


@pytest.fixture(scope="module")
def two_tokenizer_run(tmp_path_factory, dataset_dir, zoo):
    """A RoBERTa teacher (byte-level BPE) used as it is, distilled into a BERT student with its own WordPiece."""
    out = tmp_path_factory.mktemp("runs")
    assert main(train_args(dataset_dir, zoo["roberta_teacher"], out, "two_tok", "--student", str(zoo["bert_student"]),
                           "--models", "student,baseline")) == 0
    return out / "two_tok"


def vocab(folder) -> dict:
    return AutoTokenizer.from_pretrained(folder).get_vocab()


def test_a_teacher_used_as_it_is_distils_into_a_student_with_other_tokens(two_tokenizer_run, zoo):
    run = two_tokenizer_run
    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    # Each model keeps the tokenizer it reads: the teacher's BPE, the students' WordPiece.
    assert vocab(run / "teacher") == vocab(zoo["roberta_teacher"])
    for kind in ("student", "baseline"):
        assert vocab(run / kind) == vocab(zoo["bert_student"]) != vocab(run / "teacher")
        assert AutoConfig.from_pretrained(run / kind).model_type == "bert"
    results = json.loads((run / "results.json").read_text())
    assert set(results["models"]) == {"teacher", "student", "baseline"}
    assert results["models"]["teacher"]["given"] == str(zoo["roberta_teacher"])
    assert 0.0 <= results["models"]["student"]["agreement_with_teacher"] <= 1.0
    # evaluate alone scores each model through its own tokenizer again, to the same figures
    before = {k: m["accuracy"] for k, m in results["models"].items()}
    assert main(["evaluate", str(run)]) == 0
    after = json.loads((run / "results.json").read_text())
    assert {k: m["accuracy"] for k, m in after["models"].items()} == before


def test_an_electra_student_from_its_own_folder(tmp_path, dataset_dir, zoo):
    assert main(train_args(dataset_dir, zoo["roberta_teacher"], tmp_path, "electra", "--student",
                           str(zoo["electra_student"]), "--models", "student", "--epochs", "1",
                           "--student-epochs", "1")) == 0
    run = tmp_path / "electra"
    assert AutoConfig.from_pretrained(run / "student").model_type == "electra"
    assert vocab(run / "student") == vocab(zoo["electra_student"])
    assert json.loads((run / "results.json").read_text())["models"]["student"]["accuracy"] >= 0


def test_a_deberta_teacher_gives_a_deberta_student_with_half_its_layers(tmp_path, dataset_dir, zoo):
    assert main(train_args(dataset_dir, zoo["deberta"], tmp_path, "deb", "--models", "teacher,student", "--epochs", "1",
                           "--student-epochs", "1")) == 0
    cfg = AutoConfig.from_pretrained(tmp_path / "deb" / "student")
    assert cfg.model_type == "deberta-v2" and cfg.num_hidden_layers == 2 and cfg.distill_layer_map == [0, 2]
    assert vocab(tmp_path / "deb" / "student") == vocab(zoo["deberta"])


def test_shrink_copies_the_mapped_layers_and_the_embeddings(zoo):
    teacher = load_teacher(str(zoo["deberta"]), LABELS)
    student = shrink(teacher, [1, 3])
    assert student.config.num_hidden_layers == 2 and type(student) is type(teacher)
    t, s = teacher.state_dict(), student.state_dict()
    for i, j in enumerate([1, 3]):
        for key in [k for k in s if k.startswith(f"deberta.encoder.layer.{i}.")]:
            torch.testing.assert_close(s[key], t[key.replace(f"layer.{i}.", f"layer.{j}.")])
    torch.testing.assert_close(s["deberta.embeddings.word_embeddings.weight"],
                               t["deberta.embeddings.word_embeddings.weight"])


@pytest.mark.parametrize("student, flag, words", [
    ("bert_student", ["--hidden-weight", "0.5"], "splits texts into other tokens"),
    ("wide_roberta", ["--hidden-weight", "0.5"], "48 wide"),
])
def test_what_cannot_be_paired_is_refused_before_any_folder(tmp_path, dataset_dir, zoo, caplog, student, flag, words):
    args = train_args(dataset_dir, zoo["roberta_teacher"], tmp_path, "refused", "--student", str(zoo[student]),
                      "--models", "student", *flag)
    assert main(args) == 2
    assert words in caplog.text
    assert not (tmp_path / "refused").exists()


@pytest.mark.parametrize("page", ["overview", "live_classification", "attention", "disagreements", "calibration",
                                  "explain", "layers", "performance", "training_curves"])
def test_every_page_opens_on_a_two_tokenizer_run(tmp_path, monkeypatch, two_tokenizer_run, page):
    root = tmp_path / "runs"
    shutil.copytree(two_tokenizer_run, root / two_tokenizer_run.name)
    monkeypatch.setenv("DISTILL_RUNS_DIR", str(root))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]


def test_explanations_of_two_tokenizers_are_compared_word_by_word(two_tokenizer_run):
    from distill_core.evidence.attributions import agreement, integrated_gradients, word_scores
    from distill_core.ship.inference import TextClassifier

    text = "stocks rallied after the election"  # short enough for both to read whole
    teacher = TextClassifier.load(two_tokenizer_run / "teacher", device="cpu")
    student = TextClassifier.load(two_tokenizer_run / "student", device="cpu")
    t = integrated_gradients(teacher, text, n_steps=8)
    s = integrated_gradients(student, text, t.target, n_steps=8)
    assert t.tokens != s.tokens  # BPE pieces against WordPiece pieces
    words = text.split()
    for attr in (t, s):  # every word is read, and the token scores are kept whole when summed per word
        per_word = word_scores(attr)
        assert [text[a:b] for a, b in per_word] == words
        assert sum(per_word.values()) == pytest.approx(float(attr.scores.sum()), abs=1e-6)
    agr = agreement(t, s, k=3)
    assert agr["unit"] == "words" and agr["n_tokens"] == len(words) and agr["k"] == 3
    assert -1.0 <= agr["spearman"] <= 1.0 and 0.0 <= agr["top_k_overlap"] <= 1.0


def test_a_sweep_on_a_two_tokenizer_run(tmp_path, two_tokenizer_run):
    import shutil as sh

    run = tmp_path / "two_tok"
    sh.copytree(two_tokenizer_run, run)
    assert main(["sweep", str(run), "--temperature", "2", "--alpha", "0.5", "--epochs", "1"]) == 0
    from distill_core.runs import sweep_path

    cells = json.loads(sweep_path(run).read_text())["cells"]
    assert {(c["temperature"], c["alpha"]) for c in cells} >= {(2.0, 0.5)}


def test_distil_takes_a_dataframe_with_its_own_columns(tmp_path, dataset_dir, teacher_dir):
    import pandas as pd

    from distill_core import distil
    from distill_core.config import ConfigError

    df = pd.read_csv(dataset_dir / "train.csv")
    df = pd.DataFrame({"body": df["text"], "topic": [LABELS[i] for i in df["label"]]})
    common = dict(text_column="body", label_column="topic", teacher=str(teacher_dir), output_dir=tmp_path,
                  epochs=1, student_epochs=1, batch_size=8, eval_batch_size=16, max_length=32)
    run = distil(df, models=["teacher", "student"], run_id="frame", **common)
    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    saved = json.loads((run / "config.json").read_text())["data"]["dataset"]
    assert saved.endswith(".parquet") and pd.read_parquet(saved).equals(df)  # kept for evaluate and the dashboard
    assert sorted(json.loads((run / "results.json").read_text())["label_names"]) == sorted(LABELS)
    assert main(["evaluate", str(run)]) == 0
    with pytest.raises(ConfigError, match="no setting 'epoch'"):
        distil(df, epoch=2, **{k: v for k, v in common.items() if k != "epochs"})


def test_distil_stays_the_function_after_use():
    import distill_core
    from distill_core import python_api  # noqa: F401 (the module behind it, imported)

    from distill_core import distil
    assert callable(distil) and distil is distill_core.distil and not hasattr(distil, "__path__")


def test_export_and_predict_use_the_students_own_tokenizer(tmp_path, two_tokenizer_run):
    import pandas as pd

    run = tmp_path / "two_tok"
    shutil.copytree(two_tokenizer_run, run)
    assert main(["export", str(run), "--model", "student"]) == 0
    from distill_core.ship.onnx_export import load_classifier

    onnx, torch_clf = load_classifier(run, "student", "onnx"), load_classifier(run, "student", "torch", device="cpu")
    assert onnx.tokenizer.get_vocab() == vocab(run / "student")
    texts = ["stocks rallied after the election", "the team won the cup"]
    assert abs(onnx.predict_logits(texts) - torch_clf.predict_logits(texts)).max() < 1e-3
    src = tmp_path / "in.csv"
    pd.DataFrame({"text": texts}).to_csv(src, index=False)
    assert main(["predict", str(run), "--input", str(src), "--output", str(tmp_path / "out.csv")]) == 0
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out["predicted_label"]) == [torch_clf.labels[i] for i in torch_clf.predict_logits(texts).argmax(-1)]
