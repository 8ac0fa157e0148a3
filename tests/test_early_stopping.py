"""Early stopping: the best step on scripted metric sequences, the loop stopping after its patience, the kept
weights being the best step's, and the "still improving" rule behind an inconclusive verdict."""

import pytest
import torch
from test_training import loaders  # noqa: F401  (the fixture: a separable two-class task)
from tiny_models import tiny_teacher

import distill_core.train.loop as loop
from distill_core.train.early_stopping import EarlyStopping, still_improving

LABELS = ["x", "y"]


def test_best_step_and_patience_on_a_scripted_sequence():
    stopper = EarlyStopping(patience=2)
    news = [stopper.update(step, v) for step, v in [(10, 0.5), (20, 0.7), (30, 0.6), (40, 0.69)]]
    assert news == [True, True, False, False]
    assert stopper.best_step == 20 and stopper.best == 0.7 and stopper.should_stop
    s = stopper.summary(cap_steps=100, steps=40)
    assert s["stopped_early"] and not s["still_improving"] and s["best_step"] == 20 and s["cap_steps"] == 100


def test_without_patience_it_never_stops_but_tracks_the_best():
    stopper = EarlyStopping(patience=None)
    for step, v in enumerate([0.9, 0.1, 0.1, 0.1, 0.1]):
        stopper.update(step, v)
    assert not stopper.should_stop and stopper.best_step == 0


@pytest.mark.parametrize("values, rising", [
    ([0.689, 0.836, 0.832, 0.855], True),        # still climbing when the epochs ran out
    ([0.229, 0.584, 0.712, 0.751], True),
    ([0.80, 0.85, 0.853], False),                # a last gain under half a point is noise
    ([0.85, 0.84, 0.83], False),
    ([0.5], False),
])
def test_still_improving(values, rising):
    assert still_improving(values) is rising


def test_a_curve_rising_at_its_cap_is_flagged():
    stopper = EarlyStopping(patience=3)
    for step, v in [(16, 0.689), (32, 0.836), (48, 0.832), (64, 0.855)]:
        stopper.update(step, v)
    s = stopper.summary(cap_steps=64, steps=64)
    assert s["still_improving"] and not s["stopped_early"] and s["best_step"] == 64


class WeightsAtEachEval:
    """Keeps a copy of the model's weights at every evaluation, keyed by step."""

    def __init__(self, model):
        self.model, self.at = model, {}

    def on_step(self, row):
        pass

    def on_eval(self, row):
        self.at[row["step"]] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}


def test_the_loop_stops_after_its_patience_and_keeps_the_best_weights(loaders, tokenizer, monkeypatch):
    scripted = iter([0.5, 0.7, 0.6, 0.65, 0.9, 0.95])  # the best comes at the 2nd evaluation, then 2 worse ones
    monkeypatch.setattr(loop, "classification_metrics",
                        lambda lg, lb: {"loss": 1.0, "accuracy": 0.0, "macro_f1": next(scripted)})
    train_dl, val_dl, _ = loaders
    model = tiny_teacher(tokenizer.vocab_size, LABELS)
    weights = WeightsAtEachEval(model)
    res = loop.train(model, train_dl, val_dl, loop.cross_entropy_objective,
                     loop.LoopSettings(epochs=4, learning_rate=1e-2, eval_every=2, patience=2, monitor="macro_f1"),
                     loop.make_accelerator(cpu=True), [weights])
    assert res.steps == 8 and sorted(weights.at) == [2, 4, 6, 8]  # stopped at the 4th evaluation, of 24 steps
    v = res.validation
    assert v["best_step"] == 4 and v["stopped_early"] and v["cap_steps"] == 24 and v["steps_trained"] == 8
    final = model.state_dict()
    assert all(torch.equal(final[k], weights.at[4][k]) for k in final)
    assert not all(torch.equal(final[k], weights.at[8][k]) for k in final)


def test_without_patience_the_last_weights_stay(loaders, tokenizer, monkeypatch):
    scripted = iter([0.9, 0.5, 0.5])
    monkeypatch.setattr(loop, "classification_metrics",
                        lambda lg, lb: {"loss": 1.0, "accuracy": next(scripted), "macro_f1": 0.0})
    train_dl, val_dl, _ = loaders
    model = tiny_teacher(tokenizer.vocab_size, LABELS)
    weights = WeightsAtEachEval(model)
    res = loop.train(model, train_dl, val_dl, loop.cross_entropy_objective,
                     loop.LoopSettings(max_steps=6, learning_rate=1e-2, eval_every=2), loop.make_accelerator(cpu=True),
                     [weights])
    assert res.steps == 6 and res.validation["best_step"] == 2 and not res.validation["stopped_early"]
    assert all(torch.equal(v, weights.at[6][k]) for k, v in model.state_dict().items())


def test_settings_from_a_config_stop_early_only_when_it_asks():
    from distill_core.config import TrainConfig

    assert loop.LoopSettings.from_config(TrainConfig(), "baseline").patience is None  # the default patience is inert
    assert loop.LoopSettings.from_config(TrainConfig(early_stopping=True, patience=5), "teacher").patience == 5
