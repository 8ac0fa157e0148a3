"""The BiLSTM student (``--student lstm``): the model, its embeddings' initialisations, a run trained by the CLI with
it, and the dashboard's pages on that run."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from datasets import Dataset

from conftest import LABELS, make_texts, train_args
from distill_core.train.batching import make_loader
from distill_core.cli import main
from distill_core.config import ModelConfig, RunConfig
from distill_core.errors import ConfigError, ModelError
from distill_core.train.lstm import LstmConfig, LstmForSequenceClassification, train_word2vec
from distill_core.train.models import build_student, label_maps, load_trained
from distill_core.train.loop import LoopSettings, cross_entropy_objective, make_accelerator, train

TINY = dict(embedding_dim=32, hidden_size=16, attention_dim=16)


def tiny_lstm(tokenizer, seed: int = 0, **overrides) -> LstmForSequenceClassification:
    torch.manual_seed(seed)
    cfg = LstmConfig(vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id,
                     **{**TINY, **overrides}, **label_maps(LABELS))
    return LstmForSequenceClassification(cfg).eval()


def batch(tokenizer, texts: list[str]) -> dict[str, torch.Tensor]:
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


SHORT, LONG = "the team won the cup .", "stocks and shares fell in the market after the bank said the price was new ."


# ----------------------------------------------------------------------------- the model


def test_padding_does_not_change_a_texts_logits(tokenizer):
    model = tiny_lstm(tokenizer)
    with torch.no_grad():
        alone = model(**batch(tokenizer, [SHORT])).logits[0]  # (C,)
        padded = model(**batch(tokenizer, [SHORT, LONG]))
    assert batch(tokenizer, [SHORT, LONG])["attention_mask"][0].eq(0).sum() > 5  # SHORT really is padded
    torch.testing.assert_close(padded.logits[0], alone, rtol=0, atol=1e-6)
    assert padded.logits.shape == (2, len(LABELS))


def test_pooling_weights_sum_to_one_over_real_tokens_and_are_zero_on_padding(tokenizer):
    model = tiny_lstm(tokenizer)
    # Trained weights are not uniform; make the scorer sharp so the check is not about a flat softmax.
    for layer in (model.attention_proj, model.attention_score):
        torch.nn.init.normal_(layer.weight, std=3.0)
    b = batch(tokenizer, [SHORT, LONG])
    with torch.no_grad():
        w = model(**b, output_attentions=True).attentions  # (B, T)
    mask = b["attention_mask"].bool()
    assert w.shape == mask.shape
    torch.testing.assert_close(w.sum(-1), torch.ones(2))
    assert w[~mask].abs().max() == 0
    assert w[0][mask[0]].std() > 0.01  # not uniform
    assert model(**b).attentions is None  # only when asked


def test_hidden_states_are_the_embeddings_and_each_layer(tokenizer):
    model = tiny_lstm(tokenizer)
    with torch.no_grad():
        out = model(**batch(tokenizer, [SHORT, LONG]), output_hidden_states=True)
    assert [tuple(h.shape[2:]) for h in out.hidden_states] == [(32,), (32,), (32,)]  # E; 2 x 16 per layer
    assert len(out.hidden_states) == 1 + model.config.num_layers


def test_left_padding_is_refused_with_the_fix(tokenizer):
    model = tiny_lstm(tokenizer)
    b = batch(tokenizer, [SHORT, LONG])
    with pytest.raises(ValueError, match="padding on the right"):
        model(input_ids=b["input_ids"].flip(1), attention_mask=b["attention_mask"].flip(1))


def test_save_pretrained_and_load_trained_give_identical_logits(tokenizer, tmp_path):
    model = tiny_lstm(tokenizer, seed=3)
    model.save_pretrained(tmp_path, safe_serialization=True)
    assert (tmp_path / "model.safetensors").is_file()
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "distill_bilstm"
    loaded = load_trained(tmp_path).eval()
    assert type(loaded) is LstmForSequenceClassification
    b = batch(tokenizer, [SHORT, LONG])
    saved, back = model.state_dict(), loaded.state_dict()
    assert saved.keys() == back.keys() and all(torch.equal(saved[k], back[k]) for k in saved)
    with torch.no_grad():  # same weights; the LSTM kernels may sum in another order (differences ~1e-11)
        torch.testing.assert_close(loaded(**b).logits, model(**b).logits, rtol=0, atol=1e-6)


def test_trains_through_the_one_loop_and_the_loss_drops(tokenizer):
    texts = ["the team won the cup ."] * 16 + ["stocks and shares fell in the market today ."] * 16
    ds = Dataset.from_dict({"text": texts, "label": [1] * 16 + [2] * 16})
    ds = ds.map(lambda b: {**tokenizer(b["text"]), "length": [len(tokenizer(t)["input_ids"]) for t in b["text"]]},
                batched=True).remove_columns(["token_type_ids"])
    model = tiny_lstm(tokenizer)

    class Losses:
        def __init__(self):
            self.rows = []

        def on_step(self, row):
            self.rows.append(row["train_loss"])

        def on_eval(self, row):
            pass

    rec = Losses()
    res = train(model, make_loader(ds, tokenizer, 8, shuffle=True, seed=0), None, cross_entropy_objective,
                LoopSettings(max_steps=24, learning_rate=1e-2, warmup_ratio=0.0), make_accelerator("no", cpu=True), [rec])
    assert res.steps == 24 and len(rec.rows) == 24
    assert np.mean(rec.rows[-4:]) < 0.5 * np.mean(rec.rows[:4])


@pytest.mark.parametrize("tokens", [1, 9])
def test_bench_flops_count_every_matmul_of_the_lstm(tokenizer, tokens):
    from distill_core.bench.measure import forward_flops

    model = tiny_lstm(tokenizer)
    per_token = sum(p.numel() for n, p in model.named_parameters() if n.startswith("layers.") and "weight" in n)
    per_token += model.attention_proj.weight.numel() + model.attention_score.weight.numel()
    assert forward_flops(model.config, tokens) == 2 * tokens * per_token + 2 * model.classifier.weight.numel()


# ----------------------------------------------------------------------------- building it: embeddings


def lstm_cfg(teacher_dir, **kw) -> ModelConfig:
    return ModelConfig(teacher=str(teacher_dir), student="lstm", lstm_hidden=16, **kw)


def test_teacher_init_copies_the_pretrained_teachers_word_embeddings(teacher_dir):
    from transformers import AutoModel

    student = build_student(lstm_cfg(teacher_dir), LABELS)
    teacher = AutoModel.from_pretrained(teacher_dir)
    assert student.config.embedding_dim == teacher.config.hidden_size == 32
    torch.testing.assert_close(student.embeddings.weight, teacher.get_input_embeddings().weight, rtol=0, atol=0)
    assert student.config.embedding_init == "teacher" and student.config.id2label[1] == "Sports"


def test_word2vec_init_copies_the_learned_vectors(teacher_dir, tokenizer):
    texts = list(make_texts(64, 1)["text"])
    cfg = lstm_cfg(teacher_dir, lstm_init="word2vec", lstm_embedding_dim=24)
    student = build_student(cfg, LABELS, texts=texts, tokenizer=tokenizer, seed=7)
    again = build_student(cfg, LABELS, texts=texts, tokenizer=tokenizer, seed=7)
    w2v = train_word2vec(texts, tokenizer, 24, seed=7)
    emb = student.embeddings.weight.detach()  # (V, 24)
    learned = list(w2v.wv.key_to_index)
    assert {"team", "bank", "the"} <= set(learned) and len(learned) > 20
    for piece in learned:
        row = emb[tokenizer.convert_tokens_to_ids(piece)]
        np.testing.assert_array_equal(row.numpy(), w2v.wv[piece])
    # A piece the texts never use keeps a random row; padding stays 0; the same seed gives the same student.
    unused = tokenizer.convert_tokens_to_ids("[MASK]")
    assert emb[unused].abs().sum() > 0 and "[MASK]" not in w2v.wv.key_to_index
    assert emb[tokenizer.pad_token_id].abs().sum() == 0
    torch.testing.assert_close(again.embeddings.weight, student.embeddings.weight, rtol=0, atol=0)


def test_lstm_config_mistakes_are_config_errors_with_the_fix(teacher_dir, dataset_dir):
    from distill_core.train.run_inputs import check_models

    cfg = RunConfig()
    cfg.model.student, cfg.kd.hidden_weight = "lstm", 0.5
    with pytest.raises(ConfigError, match="--hidden-weight 0.5 .* use --hidden-weight 0 with --student lstm"):
        cfg.validate()
    cfg = RunConfig()
    cfg.model.lstm_init = "word2vec"
    with pytest.raises(ConfigError, match="--lstm-init .* add --student lstm"):
        cfg.validate()
    cfg.model.student, cfg.model.lstm_init = "lstm", "glove"
    with pytest.raises(ConfigError, match="--lstm-init 'glove' is not valid: choose one of teacher, word2vec, random"):
        cfg.validate()
    cfg.model.lstm_init, cfg.model.lstm_hidden = "teacher", 0
    with pytest.raises(ConfigError, match="--lstm-hidden 0 is out of range"):
        cfg.validate()
    cfg.model.lstm_hidden, cfg.model.layer_map = 16, [0, 2]
    with pytest.raises(ConfigError, match="leave out --layer-map with --student lstm"):
        cfg.validate()
    cfg = RunConfig()
    cfg.data.dataset, cfg.model.teacher = str(dataset_dir), str(teacher_dir)
    cfg.model.student, cfg.model.lstm_embedding_dim = "lstm", 100
    with pytest.raises(ConfigError, match="copies the teacher's 32-wide embeddings. Leave out --lstm-embedding-dim"):
        check_models(cfg.validate())


def test_cli_refuses_the_hidden_state_loss_for_the_lstm_before_any_folder(tmp_path, dataset_dir, teacher_dir, caplog):
    code = main(train_args(dataset_dir, teacher_dir, tmp_path, "bad", "--student", "lstm", "--hidden-weight", "0.5"))
    assert code == 2 and "use --hidden-weight 0 with --student lstm" in caplog.text
    assert not any(tmp_path.iterdir())


def test_teacher_embeddings_that_do_not_fit_are_a_model_error(teacher_dir):
    with pytest.raises(ModelError, match="Leave out --lstm-embedding-dim"):
        build_student(lstm_cfg(teacher_dir, lstm_embedding_dim=20), LABELS)


# ----------------------------------------------------------------------------- a whole run, by the CLI


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory, dataset_dir, teacher_dir):
    """A complete run whose distilled and baseline students are BiLSTMs (embeddings from the teacher)."""
    out = tmp_path_factory.mktemp("lstm_runs")
    args = train_args(dataset_dir, teacher_dir, out, "tiny_lstm", "--student", "lstm", "--lstm-hidden", "16",
                      "--student-lr", "5e-3")
    assert main(args) == 0
    return out / "tiny_lstm"


def test_cli_run_with_lstm_students_is_complete_and_evaluate_accepts_it(lstm_run):
    from distill_core.runs import load_run

    info = load_run(lstm_run)
    assert info.status == "complete" and set(info.models) == {"teacher", "student", "baseline"}
    cfg = json.loads((lstm_run / "config.json").read_text())
    assert cfg["model"]["student"] == "lstm" and cfg["model"]["lstm_init"] == "teacher"
    for kind in ("student", "baseline"):
        arch = cfg["architectures"][kind]
        assert arch["class"] == "LstmForSequenceClassification" and arch["heads"] is None
        assert arch["layers"] == 2 and arch["hidden"] == 32 and arch["embedding_init"] == "teacher"
        model = load_trained(lstm_run / kind)
        assert type(model) is LstmForSequenceClassification and model.config.distill_max_length == 32
    before = json.loads((lstm_run / "results.json").read_text())
    assert before["models"]["student"]["layers"] == 2
    assert main(["evaluate", str(lstm_run)]) == 0
    after = json.loads((lstm_run / "results.json").read_text())
    for kind in ("teacher", "student", "baseline"):
        assert after["models"][kind]["accuracy"] == pytest.approx(before["models"][kind]["accuracy"])
    assert after["models"]["student"]["parameters"] == before["models"]["student"]["parameters"]
    from distill_core.views.runs import run_details_markdown

    details = run_details_markdown(info)
    assert "LstmForSequenceClassification: 2 layers, n/a heads" in details


def test_lstm_run_serves_pooling_not_attention_maps(lstm_run):
    from distill_core.ship.inference import TextClassifier

    clf = TextClassifier.load(lstm_run / "student")
    assert clf.is_recurrent and clf.num_heads is None and clf.num_layers == 2 and clf.max_length == 32
    pool = clf.pooling("the team won the cup after a new season .")
    assert len(pool.tokens) == len(pool.weights) and abs(pool.weights.sum() - 1) < 1e-5
    assert pool.probs.shape == (len(LABELS),)
    with pytest.raises(ModelError, match="no self-attention maps"):
        clf.attention("the team won the cup .")


def test_lstm_student_exports_to_onnx_and_matches_pytorch(lstm_run, tmp_path):
    from distill_core.ship.onnx_export import export_onnx

    run = tmp_path / lstm_run.name
    shutil.copytree(lstm_run, run)
    report = export_onnx(run, "student", int8=True)
    assert report["architecture"] == "LstmForSequenceClassification"
    assert report["verification"]["onnx"]["agreement"] == 1.0
    assert report["verification"]["onnx"]["max_abs_logit_diff"] < 1e-4
    assert report["files"]["model_int8.onnx"] < report["files"]["model.onnx"]
    assert 0 <= report["verification"]["onnx_int8"]["agreement"] <= 1


# ----------------------------------------------------------------------------- the dashboard on that run


PAGES = ["overview", "training_curves", "live_classification", "attention", "disagreements", "calibration",
         "explain", "layers", "performance", "sweep"]


@pytest.fixture
def lstm_runs(tmp_path, monkeypatch, lstm_run):
    root = tmp_path / "runs"
    shutil.copytree(lstm_run, root / lstm_run.name)
    monkeypatch.setenv("DISTILL_RUNS_DIR", str(root))
    return root


def test_attention_page_shows_the_pooling_weights_beside_the_teachers_cls_row(lstm_runs):
    from test_dashboard import array, chart, downloads, open_app, texts

    at = open_app("app_pages/attention.py")
    assert at.title[0].value == "Attention" and not at.error and not at.exception
    assert "has attention-pooling weights, one per token, not self-attention maps" in texts(at.info)
    fig = chart(at, "att_pooling")
    z = array(fig["data"][0]["z"]).astype(float)
    assert list(fig["data"][0]["y"]) == ["Teacher: [CLS] attention", "Distilled student: pooling weight"]
    assert z.shape[0] == 2 and np.allclose(z.sum(1), 1, atol=1e-5)  # both rows over every token of the text
    assert {"Pooling weights (PNG)", "Pooling weights (CSV)"} <= set(downloads(at))
    at.toggle(key="att_hide").set_value(True).run()
    z_hidden = array(chart(at, "att_pooling")["data"][0]["z"]).astype(float)
    assert z_hidden.shape[1] < z.shape[1] and np.allclose(z_hidden.sum(1), 1, atol=1e-5)
    at.radio(key="att_other").set_value("baseline").run()
    assert "Baseline student: pooling weight" in list(chart(at, "att_pooling")["data"][0]["y"])
    assert not at.exception and not at.error


@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs_on_an_lstm_run(lstm_runs, page):
    from test_dashboard import open_app, texts

    at = open_app(f"app_pages/{page}.py")  # asserts no exception
    # A release check the tiny random students fail, and the answer it gives, are shown in red on the Overview;
    # nothing else may be an error.
    errors = [e for e in at.error if "(threshold" not in str(e.value) and "Ready to ship?" not in str(e.value)]
    assert not errors, texts(errors)
    if page == "explain":
        assert "is a BiLSTM and has none" in texts(at.info)  # attention rollout does not apply
        assert len([h for h in at.get("html")]) == 2  # integrated gradients do, for both models
    if page == "layers":
        assert "is a BiLSTM: its columns are its word embeddings" in texts(at.caption)
