"""The one training loop: objectives, schedules, callbacks."""

import pytest
import torch
from datasets import Dataset
from tiny_models import tiny_teacher

from distill_core.train.batching import make_loader
from distill_core.train.models import build_student_from_teacher
from distill_core.train.loop import (
    LoopSettings,
    cross_entropy_objective,
    kd_objective,
    make_accelerator,
    predict_logits,
    train,
)

LABELS = ["x", "y"]


class Recorder:
    def __init__(self):
        self.steps, self.evals = [], []

    def on_step(self, row):
        self.steps.append(row)

    def on_eval(self, row):
        self.evals.append(row)


@pytest.fixture()
def loaders(tokenizer):
    texts = ["the team won the cup ."] * 12 + ["stocks and shares fell in the market today ."] * 12
    ds = Dataset.from_dict({"text": texts, "label": [0] * 12 + [1] * 12})
    ds = ds.map(lambda b: {**tokenizer(b["text"]), "length": [len(tokenizer(t)["input_ids"]) for t in b["text"]]},
                batched=True).remove_columns(["token_type_ids"])
    return (make_loader(ds, tokenizer, 4, shuffle=True, seed=0), make_loader(ds, tokenizer, 8, shuffle=False), ds)


def test_teacher_learns_a_separable_task(loaders, tokenizer):
    train_dl, val_dl, _ = loaders
    torch.manual_seed(0)
    model = tiny_teacher(tokenizer.vocab_size, LABELS, hidden_dropout_prob=0.0)
    rec = Recorder()
    res = train(model, train_dl, val_dl, cross_entropy_objective,
                LoopSettings(epochs=4, learning_rate=3e-3, warmup_ratio=0.0), make_accelerator(cpu=True), [rec])
    assert res.steps == 24 and len(rec.steps) == 24
    assert len(rec.evals) == 4  # one per epoch
    assert rec.evals[-1]["val_accuracy"] == 1.0
    assert rec.steps[-1]["train_loss"] < rec.steps[0]["train_loss"]


def test_fractional_epochs_and_eval_every(loaders, tokenizer):
    train_dl, val_dl, _ = loaders
    rec = Recorder()
    res = train(tiny_teacher(tokenizer.vocab_size, LABELS), train_dl, val_dl, cross_entropy_objective,
                LoopSettings(epochs=0.5, eval_every=2), make_accelerator(cpu=True), [rec])
    assert res.steps == 3
    assert [e["step"] for e in rec.evals] == [2, 3]


def test_exponential_schedule_decays_every_n_batches(loaders, tokenizer):
    train_dl, _, _ = loaders
    rec = Recorder()
    train(tiny_teacher(tokenizer.vocab_size, LABELS), train_dl, None, cross_entropy_objective,
          LoopSettings(epochs=2, learning_rate=1e-3, scheduler="exponential", gamma=0.5, gamma_every=5),
          make_accelerator(cpu=True), [rec])
    lrs = [r["learning_rate"] for r in rec.steps]
    assert lrs[3] == pytest.approx(1e-3) and lrs[4] == pytest.approx(5e-4) and lrs[9] == pytest.approx(2.5e-4)


def test_kd_with_precomputed_logits_matches_live_teacher(loaders, tokenizer):
    """Caching the frozen teacher's logits gives the same loss as a teacher forward pass per step."""
    _, val_dl, ds = loaders
    teacher = tiny_teacher(tokenizer.vocab_size, LABELS).eval()
    logits, _ = predict_logits(teacher, val_dl)
    cached = make_loader(ds.add_column("teacher_logits", logits.tolist()), tokenizer, 8, shuffle=False)
    student = build_student_from_teacher(teacher, LABELS).eval()
    live = kd_objective(2.0, 0.5, teacher=teacher)
    pre = kd_objective(2.0, 0.5)
    for b_live, b_pre in zip(val_dl, cached):
        a, _ = live(student, b_live)
        b, _ = pre(student, b_pre)
        torch.testing.assert_close(a.loss, b.loss, atol=1e-5, rtol=1e-5)


def test_hidden_state_loss_is_added_when_weighted(loaders, tokenizer):
    train_dl, _, _ = loaders
    teacher = tiny_teacher(tokenizer.vocab_size, LABELS, num_hidden_layers=4).eval()
    student = build_student_from_teacher(teacher, LABELS)
    rec = Recorder()
    layer_map = student.config.distill_layer_map  # [0, 2]
    train(student, train_dl, None, kd_objective(2.0, 0.5, teacher, hidden_weight=1.0, layer_map=layer_map),
          LoopSettings(epochs=0.5), make_accelerator(cpu=True), [rec])
    assert all(r["hidden_loss"] >= 0 for r in rec.steps)
    r = rec.steps[0]
    assert r["train_loss"] == pytest.approx(0.5 * r["kd_loss"] + 0.5 * r["ce_loss"] + r["hidden_loss"], rel=1e-4)


def test_hidden_loss_needs_teacher_and_map():
    with pytest.raises(ValueError, match="hidden-state"):
        kd_objective(2.0, 0.5, teacher=None, hidden_weight=1.0)


# ----------------------------------------------------------------------------- speed: precision, logging, phases


def test_auto_precision_is_bf16_exactly_on_cpus_that_compute_it(monkeypatch):
    import distill_core.train.loop as tr

    monkeypatch.setattr(tr.torch.cuda, "is_available", lambda: False)
    for caps, expected in (({"avx512_bf16": True}, "bf16"), ({"amx_bf16": True}, "bf16"),
                           ({"avx512_bf16": False, "amx_bf16": False}, "no"), ({}, "no")):
        monkeypatch.setattr(tr.torch.cpu, "get_capabilities", lambda caps=caps: caps)
        assert tr.resolve_mixed_precision("auto") == expected
    assert tr.resolve_mixed_precision("no") == "no" and tr.resolve_mixed_precision("bf16") == "bf16"


def test_accelerators_of_different_precisions_in_one_process():
    """The bench trains in bf16 and fp32 one after the other; Accelerate's process-wide state must allow it."""
    assert make_accelerator("bf16", cpu=True).mixed_precision == "bf16"
    assert make_accelerator("no", cpu=True).mixed_precision == "no"
    assert make_accelerator("bf16", cpu=True).mixed_precision == "bf16"


def test_bf16_training_keeps_fp32_weights_and_logs_every_step(loaders, tokenizer):
    train_dl, val_dl, _ = loaders
    torch.manual_seed(0)
    model = tiny_teacher(tokenizer.vocab_size, LABELS, hidden_dropout_prob=0.0)
    rec = Recorder()
    res = train(model, train_dl, val_dl, cross_entropy_objective,
                LoopSettings(epochs=2, learning_rate=3e-3, warmup_ratio=0.0), make_accelerator("bf16", cpu=True), [rec])
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert [r["step"] for r in rec.steps] == list(range(1, res.steps + 1))
    assert all(isinstance(r["train_loss"], float) for r in rec.steps)
    assert rec.steps[-1]["train_loss"] < rec.steps[0]["train_loss"]


def test_step_rows_arrive_in_order_with_numbers_before_each_evaluation(loaders, tokenizer):
    """Rows are handed over in groups, but every step's row reaches the callbacks before the evaluation after it."""
    train_dl, val_dl, _ = loaders
    events = []

    class Order:
        def on_step(self, row):
            events.append(("step", row["step"], row["train_loss"], row["train_accuracy"]))

        def on_eval(self, row):
            events.append(("eval", row["step"]))

    train(tiny_teacher(tokenizer.vocab_size, LABELS), train_dl, val_dl, cross_entropy_objective,
          LoopSettings(epochs=1, eval_every=2), make_accelerator("no", cpu=True), [Order()])
    steps = [e[1] for e in events if e[0] == "step"]
    assert steps == list(range(1, 7))
    for i, e in enumerate(events):
        if e[0] == "eval":  # every step up to this evaluation was delivered before it, none after
            assert [x[1] for x in events[:i] if x[0] == "step"] == list(range(1, e[1] + 1))
    assert all(0.0 <= e[3] <= 1.0 and e[2] > 0 for e in events if e[0] == "step")


def test_phases_add_up_to_the_training_time(loaders, tokenizer):
    from distill_core.train.loop import PHASES

    train_dl, val_dl, _ = loaders
    res = train(tiny_teacher(tokenizer.vocab_size, LABELS), train_dl, val_dl, cross_entropy_objective,
                LoopSettings(epochs=1), make_accelerator("no", cpu=True))
    assert set(res.phases) == set(PHASES)
    assert res.phases["forward"] > 0 and res.phases["backward"] > 0 and res.phases["evaluation"] > 0
    assert sum(res.phases.values()) == pytest.approx(res.elapsed_s, rel=0.05, abs=0.02)


def test_a_batch_of_hidden_labels_logs_nan_accuracy(tokenizer):
    from distill_core.train.losses import IGNORE_INDEX

    ds = Dataset.from_dict({"text": ["the team won ."] * 4, "label": [IGNORE_INDEX] * 4})
    ds = ds.map(lambda b: {**tokenizer(b["text"]), "length": [5] * len(b["text"])}, batched=True
                ).remove_columns(["token_type_ids"])
    teacher = tiny_teacher(tokenizer.vocab_size, LABELS).eval()
    logits, _ = predict_logits(teacher, make_loader(ds, tokenizer, 4, shuffle=False))
    dl = make_loader(ds.add_column("teacher_logits", logits.tolist()), tokenizer, 4, shuffle=False)
    rec = Recorder()
    train(build_student_from_teacher(teacher, LABELS), dl, None, kd_objective(2.0, 0.5), LoopSettings(epochs=1),
          make_accelerator("no", cpu=True), [rec])
    assert len(rec.steps) == 1 and rec.steps[0]["train_accuracy"] != rec.steps[0]["train_accuracy"]  # NaN


def test_csv_rows_are_flushed_in_groups_and_all_on_close(tmp_path):
    from distill_core.files import CsvLog
    from distill_core.runs import read_metrics

    log = CsvLog(tmp_path / "teacher_train.csv", ["step", "train_loss"], flush_every_s=3600)
    for step in range(1, 4):
        log.write({"step": step, "train_loss": 1.0 / step})
    assert (tmp_path / "teacher_train.csv").read_text().strip() == "step,train_loss"  # held back, not lost
    log.flush()
    assert read_metrics(tmp_path, "teacher", "train")["step"].tolist() == [1, 2, 3]
    log.write({"step": 4, "train_loss": 0.25})
    log.close()
    assert read_metrics(tmp_path, "teacher", "train")["step"].tolist() == [1, 2, 3, 4]
