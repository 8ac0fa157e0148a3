"""The teacher's-prediction loss (--hard-weight) and LoRA training (--lora): the loss by hand, merging, the
trainable counts, and a tiny end-to-end run whose folders load with from_pretrained alone."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from transformers import BertModel

from conftest import LABELS, train_args
from distill_core.cli import main
from distill_core.config import LoraSpec, RunConfig, parse_lora
from distill_core.errors import ConfigError
from distill_core.train.losses import IGNORE_INDEX, kd_loss
from distill_core.train.models import apply_lora, build_student_from_teacher, load_trained, merge_lora, trainable_parameters
from distill_core.runs import read_metrics
from distill_core.views import overview as ov
from tiny_models import tiny_teacher

# ----------------------------------------------------------------------------- --hard-weight


def _logits(seed: int, shape=(6, 4)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_hard_term_is_zero_when_the_student_is_certain_of_the_teachers_class():
    t = _logits(0)
    s = F.one_hot(t.argmax(-1), 4).float() * 100.0  # a huge margin on the teacher's argmax
    out = kd_loss(s, t, torch.full((6,), IGNORE_INDEX), hard_weight=1.0)
    assert out.parts["hard_loss"].item() < 1e-6
    # ... and not zero when the student puts its mass elsewhere.
    wrong = F.one_hot((t.argmax(-1) + 1) % 4, 4).float() * 100.0
    assert kd_loss(wrong, t, torch.full((6,), IGNORE_INDEX), hard_weight=1.0).parts["hard_loss"].item() > 50


def test_hard_term_is_cross_entropy_to_the_teachers_argmax_times_its_weight():
    s, t, y = _logits(1), _logits(2), torch.tensor([0, 1, 2, 3, 0, 1])
    w = 0.7
    ce_teacher = F.cross_entropy(s, t.argmax(-1))
    with_hard, without = kd_loss(s, t, y, 2.0, 0.5, hard_weight=w), kd_loss(s, t, y, 2.0, 0.5)
    torch.testing.assert_close(with_hard.parts["hard_loss"], ce_teacher)
    torch.testing.assert_close(with_hard.loss - without.loss, w * ce_teacher)


def test_hard_weight_zero_is_exactly_the_loss_without_it():
    s, t, y, T, a = _logits(3), _logits(4), torch.tensor([3, 2, 1, 0, 3, 2]), 3.0, 0.3
    out = kd_loss(s, t, y, T, a, hard_weight=0.0)
    assert torch.equal(out.loss, kd_loss(s, t, y, T, a).loss)
    assert set(out.parts) == {"kd_loss", "ce_loss"}
    kl = F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), reduction="batchmean", log_target=True)
    torch.testing.assert_close(out.loss, a * T**2 * kl + (1 - a) * F.cross_entropy(s, y))


def test_hidden_labels_reach_the_hard_term_but_never_cross_entropy_to_labels():
    s, t = _logits(5), _logits(6)
    y = torch.tensor([1, IGNORE_INDEX, IGNORE_INDEX, 2, IGNORE_INDEX, 0])
    out = kd_loss(s, t, y, 2.0, 0.5, hard_weight=1.0)
    known = y != IGNORE_INDEX
    torch.testing.assert_close(out.parts["ce_loss"], F.cross_entropy(s[known], y[known]))
    torch.testing.assert_close(out.parts["hard_loss"], F.cross_entropy(s, t.argmax(-1)))  # all six rows
    # Every label hidden: CE to labels is 0, the hard term still trains the student.
    hidden = kd_loss(s.clone().requires_grad_(True), t, torch.full((6,), IGNORE_INDEX), 2.0, 0.0, hard_weight=1.0)
    assert hidden.parts["ce_loss"].item() == 0.0
    torch.testing.assert_close(hidden.loss, F.cross_entropy(s, t.argmax(-1)))


def test_a_negative_hard_weight_is_refused():
    with pytest.raises(ValueError, match="hard_weight"):
        kd_loss(_logits(0), _logits(1), torch.zeros(6, dtype=torch.long), hard_weight=-0.1)
    cfg = RunConfig()
    cfg.kd.hard_weight = -1.0
    with pytest.raises(ConfigError, match="--hard-weight"):
        cfg.validate()


# ----------------------------------------------------------------------------- --lora: parsing and checks


def test_lora_spec_parses_with_defaults():
    assert parse_lora("r=8,alpha=16,dropout=0.1") == LoraSpec(8, 16.0, 0.1)
    assert parse_lora(" R=4 ") == LoraSpec(4, 8.0, 0.0)  # alpha 2*r, dropout 0


@pytest.mark.parametrize("bad", ["", "8", "r=0", "r=abc", "alpha=16", "r=8,alpha=-1", "r=8,dropout=1",
                                 "r=8,foo=1", "r=8,r=4", "r=2.5"])
def test_bad_lora_strings_are_config_errors_naming_the_flag_and_the_form(bad):
    cfg = RunConfig()
    cfg.model.lora = bad
    with pytest.raises(ConfigError, match="--lora") as e:
        cfg.validate()
    assert "r=8,alpha=16,dropout=0.1" in str(e.value)


def test_lora_models_choose_which_models_and_are_checked():
    cfg = RunConfig()
    cfg.model.lora, cfg.model.lora_models = "r=4", ["student"]
    cfg.validate()
    assert cfg.model.lora_for("student") == LoraSpec(4, 8.0, 0.0)
    assert cfg.model.lora_for("teacher") is None and cfg.model.lora_for("baseline") is None
    cfg.model.lora = None
    assert cfg.model.lora_for("student") is None
    with pytest.raises(ConfigError, match="--lora-models.*add --lora"):
        cfg.validate()
    cfg.model.lora, cfg.model.lora_models = "r=4", ["student", "pupil"]
    with pytest.raises(ConfigError, match="--lora-models student,pupil"):
        cfg.validate()


def test_lora_on_the_lstm_student_is_refused_but_the_teacher_alone_may_use_it():
    cfg = RunConfig()
    cfg.model.student, cfg.model.lora = "lstm", "r=8"
    with pytest.raises(ConfigError, match="LSTM student.*--lora-models teacher"):
        cfg.validate()
    cfg.model.lora_models = ["teacher"]
    cfg.validate()


def test_a_bad_lora_flag_exits_2_before_any_run_folder(tmp_path, dataset_dir, teacher_dir):
    assert main(train_args(dataset_dir, teacher_dir, tmp_path, "badlora", "--lora", "rank=8")) == 2
    assert not (tmp_path / "badlora").exists()


# ----------------------------------------------------------------------------- --lora: the models


def test_only_adapters_and_head_train_and_the_count_is_as_computed_by_hand():
    teacher = tiny_teacher(100, LABELS)  # hidden 32, 2 layers, 4 classes
    total = sum(p.numel() for p in teacher.parameters())
    model = apply_lora(teacher, LoraSpec(4, 8.0, 0.1))
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(".lora_A." in n or ".lora_B." in n or ".classifier." in n for n in names)
    # query, key, value in 2 layers: A (4 x 32) + B (32 x 4) each; classifier 32 x 4 + 4.
    assert trainable_parameters(model) == 2 * 3 * (4 * 32 + 32 * 4) + (32 * 4 + 4) == 1668
    merged = merge_lora(model)
    assert sum(p.numel() for p in merged.parameters()) == total  # no adapter or head copies left behind

    student = build_student_from_teacher(tiny_teacher(100, LABELS), LABELS)  # 1 layer, fresh pre_classifier
    s = apply_lora(student, LoraSpec(4, 8.0, 0.0))
    # q_lin, k_lin, v_lin in 1 layer; pre_classifier 32 x 32 + 32; classifier 32 x 4 + 4.
    assert trainable_parameters(s) == 3 * (4 * 32 + 32 * 4) + (32 * 32 + 32) + (32 * 4 + 4) == 1956


@pytest.mark.parametrize("make", [lambda: tiny_teacher(100, LABELS),
                                  lambda: build_student_from_teacher(tiny_teacher(100, LABELS), LABELS)])
def test_merging_leaves_logits_unchanged(make):
    torch.manual_seed(1)
    model = apply_lora(make(), LoraSpec(4, 8.0, 0.1))
    with torch.no_grad():  # non-zero adapters (B starts at zero) and a changed head, as after training
        for n, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.5)
    model.eval()
    ids = torch.randint(1, 100, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    before = model(input_ids=ids, attention_mask=mask).logits
    merged = merge_lora(model).eval()
    assert type(merged).__name__ in ("BertForSequenceClassification", "DistilBertForSequenceClassification")
    assert not [k for k in merged.state_dict() if "lora" in k or "base_layer" in k or "modules_to_save" in k]
    after = merged(input_ids=ids, attention_mask=mask).logits
    assert (before - after).abs().max().item() < 1e-5
    assert (before - make().eval()(input_ids=ids, attention_mask=mask).logits).abs().max().item() > 1e-3


# ----------------------------------------------------------------------------- a tiny end-to-end run


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, dataset_dir, teacher_dir):
    out = tmp_path_factory.mktemp("lora_runs")
    assert main(train_args(dataset_dir, teacher_dir, out, "lora", "--lora", "r=4,alpha=8,dropout=0.1",
                           "--hard-weight", "0.5")) == 0
    return out / "lora"


def test_lora_run_saves_plain_folders_with_the_trainable_counts(lora_run, teacher_dir):
    arch = json.loads((lora_run / "config.json").read_text())["architectures"]
    # conftest's teacher: hidden 32, 4 layers; the student built from it: 2 layers plus a fresh pre_classifier.
    want = {"teacher": 4 * 3 * 256 + 132, "student": 2 * 3 * 256 + 1056 + 132, "baseline": 2 * 3 * 256 + 1056 + 132}
    pretrained = BertModel.from_pretrained(teacher_dir)
    for kind, trainable in want.items():
        a = arch[kind]
        assert a["lora"] == {"r": 4, "alpha": 8.0, "dropout": 0.1}
        assert a["trainable_parameters"] == trainable < a["parameters"]
        folder = lora_run / kind
        assert not list(folder.glob("adapter_*")), "adapters must be merged, not saved beside the model"
        model = load_trained(folder)
        assert sum(p.numel() for p in model.parameters()) == a["parameters"]
        body = model.base_model
        # Embeddings are frozen under LoRA: the saved ones are the pretrained teacher's.
        torch.testing.assert_close(body.embeddings.word_embeddings.weight, pretrained.embeddings.word_embeddings.weight)
        # The trained adapters are merged into the attention projections.
        if kind == "teacher":
            q, q0 = body.encoder.layer[0].attention.self.query.weight, pretrained.encoder.layer[0].attention.self.query.weight
        else:
            q, q0 = body.transformer.layer[0].attention.q_lin.weight, pretrained.encoder.layer[0].attention.self.query.weight
        assert (q - q0).abs().max().item() > 1e-6


def test_lora_run_logs_the_hard_term_in_the_student_csv(lora_run):
    st = read_metrics(lora_run, "student", "train")
    assert st["hard_loss"].gt(0).all()
    assert (st["train_loss"] - (0.5 * (st["kd_loss"] + st["ce_loss"]) + 0.5 * st["hard_loss"])).abs().max() < 1e-3


def test_overview_shows_trainable_against_total_parameters(lora_run):
    results = json.loads((lora_run / "results.json").read_text())
    arch = json.loads((lora_run / "config.json").read_text())["architectures"]
    table = ov.overview_table(results, None, arch)
    assert table.loc["student", "Trainable parameters"] == arch["student"]["trainable_parameters"]
    assert table.loc["teacher", "Parameters"] == arch["teacher"]["parameters"]
    note = ov.lora_note(arch)
    assert f"{arch['student']['trainable_parameters']:,} of {arch['student']['parameters']:,}" in note
    # A run without LoRA keeps its table as it was.
    plain = {k: {**v, "lora": None} for k, v in arch.items()}
    assert "Trainable parameters" not in ov.overview_table(results, None, plain) and ov.lora_note(plain) is None


def test_sweep_trains_its_cells_as_the_run_did(lora_run, tmp_path):
    from distill_core.train.sweep import SweepSettings, run_sweep

    run = tmp_path / "lora"
    shutil.copytree(lora_run, run)
    state = run_sweep(run, SweepSettings(temperatures=[2.0], alphas=[0.5], epochs=0.5, baseline=False))
    assert len(state["cells"]) == 1 and 0 <= state["best"]["test_accuracy"] <= 1


def test_overview_page_shows_the_trainable_column_and_note(lora_run, tmp_path, monkeypatch):
    from test_dashboard import open_app, texts

    shutil.copytree(lora_run, tmp_path / "runs" / lora_run.name)
    monkeypatch.setenv("DISTILL_RUNS_DIR", str(tmp_path / "runs"))
    threads = torch.get_num_threads()
    try:
        at = open_app()
    finally:
        torch.set_num_threads(threads)  # dashboard.py sets the thread count for its process
    table = at.dataframe[0].value
    assert list(table["Trainable parameters"]) == [f"{n:,}" for n in (4 * 3 * 256 + 132, 2 * 3 * 256 + 1056 + 132,
                                                                       2 * 3 * 256 + 1056 + 132)]  # as shown
    assert "Trained with LoRA" in texts(at.caption)
