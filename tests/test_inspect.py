"""Unit tests of the inspection tools: calibration, integrated gradients and rollout, layer CKA, and the pure
views of the Disagreements, Calibration, Explanations and Layer similarity pages. Tiny random models only."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from distill_core.evidence import attributions as at
from distill_core.evidence import calibration as cal
from distill_core.evidence import similarity as sim
from distill_core.errors import InputError, RunError
from distill_core.ship.inference import TextClassifier
from distill_core.train.models import build_student_from_teacher
from distill_core.runs import CALIBRATION_FILE
from distill_core.views import calibration as cv
from distill_core.views import disagreements as dv
from distill_core.views import explain as ev
from distill_core.views import layers as lyv
from tiny_models import tiny_teacher

LABELS = ["World", "Sports", "Business", "Sci/Tech"]
PNG = b"\x89PNG"


def onehot_probs(conf: float, predicted: int, n_classes: int = 2) -> np.ndarray:
    """A distribution with ``conf`` on ``predicted`` and the rest spread evenly."""
    p = np.full(n_classes, (1 - conf) / (n_classes - 1))
    p[predicted] = conf
    return p


# ----------------------------------------------------------------------------- calibration


def test_ece_of_a_perfectly_calibrated_case_is_zero():
    # Confidence 0.6 right 3 times in 5, 0.8 right 4 times in 5, 1.0 always right: every bin's accuracy is its confidence.
    rows, labels = [], []
    for conf, n, right in ((0.6, 5, 3), (0.8, 5, 4), (1.0, 4, 4)):
        for i in range(n):
            rows.append(onehot_probs(conf, 0))
            labels.append(0 if i < right else 1)
    assert cal.expected_calibration_error(np.array(rows), np.array(labels)) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_a_sampled_calibrated_model_is_about_zero():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1.0, size=200_000)
    right = rng.uniform(size=conf.size) < conf  # right exactly as often as it claims
    probs = np.stack([conf, 1 - conf], -1)
    labels = np.where(right, 0, 1)
    assert cal.expected_calibration_error(probs, labels) < 0.005


def test_ece_brier_and_nll_of_a_miscalibrated_case_match_a_hand_computation():
    # Bin (0.867, 0.933]: 10 texts at 0.88 and 0.92 (mean 0.90), 5 right. Bin (0.467, 0.533]: 10 at 0.5, 8 right.
    probs, labels = [], []
    for i in range(10):
        probs.append(onehot_probs(0.88 if i % 2 else 0.92, 0, 4))
        labels.append(0 if i < 5 else 1)
    for i in range(10):
        probs.append(onehot_probs(0.5, 2, 4))
        labels.append(2 if i < 8 else 3)
    probs, labels = np.array(probs), np.array(labels)
    # ECE = 10/20 * |0.5 - 0.9| + 10/20 * |0.8 - 0.5| = 0.2 + 0.15
    assert cal.expected_calibration_error(probs, labels) == pytest.approx(0.35)
    bins = cal.reliability_bins(probs, labels)
    assert bins["count"].sum() == 20 and len(bins) == cal.N_BINS
    full = bins[bins["count"] > 0]
    assert list(full["bin"]) == [7, 13]
    np.testing.assert_allclose(full["accuracy"], [0.8, 0.5])
    np.testing.assert_allclose(full["confidence"], [0.5, 0.9])
    # Brier of one text, by hand: right at 0.5 -> (0.5-1)^2 + 3 * (0.5/3)^2
    right_half = (0.5 - 1) ** 2 + 3 * (0.5 / 3) ** 2
    assert cal.brier_score(probs[10:11], labels[10:11]) == pytest.approx(right_half)
    assert cal.negative_log_likelihood(probs[10:11], labels[10:11]) == pytest.approx(-np.log(0.5))


def test_bins_hold_their_upper_edge_and_zero_goes_first():
    np.testing.assert_array_equal(cal.bin_index(np.array([0.0, 1 / 15, 1 / 15 + 1e-9, 1.0])), [0, 0, 1, 14])


def test_metrics_refuse_logits_and_bad_labels():
    with pytest.raises(ValueError, match="sum to 1"):
        cal.expected_calibration_error(np.array([[2.0, 0.5]]), np.array([0]))
    with pytest.raises(ValueError, match="class ids 0..1"):
        cal.brier_score(np.array([[0.5, 0.5]]), np.array([2]))


@pytest.mark.parametrize("t_true", [0.5, 1.0, 2.5])
def test_temperature_scaling_recovers_a_known_temperature(t_true):
    rng = np.random.default_rng(1)
    z = rng.normal(scale=2.0, size=(20_000, 4))  # the calibrated logits
    p = cal.softmax(z)
    labels = np.array([rng.choice(4, p=row) for row in p])
    logits = z * t_true  # what a model off by a factor t_true would output
    assert cal.fit_temperature(logits, labels) == pytest.approx(t_true, rel=0.05)


def test_calibrate_lowers_ece_and_keeps_accuracy():
    rng = np.random.default_rng(2)
    z = rng.normal(scale=2.0, size=(6000, 4))
    labels = np.array([rng.choice(4, p=row) for row in cal.softmax(z)])
    over = z * 3.0  # over-confident
    r = cal.calibrate(over[:3000], labels[:3000], over[3000:], labels[3000:])
    assert r["temperature"] == pytest.approx(3.0, rel=0.1)
    assert r["after"]["ece"] < r["before"]["ece"] / 3
    assert r["after"]["accuracy"] == r["before"]["accuracy"]
    assert r["after"]["nll"] < r["before"]["nll"]


def test_log_probabilities_scale_like_logits():
    z = np.random.default_rng(3).normal(size=(5, 4))
    np.testing.assert_allclose(cal.apply_temperature(cal.logits_from_probs(cal.softmax(z)), 1.7),
                               cal.apply_temperature(z, 1.7), atol=1e-9)


def test_calibration_is_stored_in_the_run_and_checked_when_read(tiny_run, tmp_path):
    import shutil

    run = tmp_path / tiny_run.name
    shutil.copytree(tiny_run, run)
    assert (run / CALIBRATION_FILE).is_file()  # evaluate wrote it at the end of training
    (run / CALIBRATION_FILE).unlink()
    assert cal.read_calibration(run) is None
    seen = []
    report = cal.calibrate_run(run, progress=lambda f, m: seen.append(f))
    assert seen[-1] == 1.0
    assert set(report["models"]) == {"teacher", "student", "baseline"}
    assert cal.read_calibration(run) == json.loads((run / CALIBRATION_FILE).read_text())
    preds = pd.read_parquet(run / "predictions.parquet")
    teacher_acc = (preds["teacher_pred"] == preds["label"]).mean()
    assert report["models"]["teacher"]["before"]["accuracy"] == pytest.approx(teacher_acc)
    assert report["models"]["teacher"]["after"]["accuracy"] == pytest.approx(teacher_acc)

    (run / CALIBRATION_FILE).write_text(json.dumps({"models": {"teacher": {"temperature": -1}}}))
    with pytest.raises(RunError, match="not a positive number"):
        cal.read_calibration(run)
    (run / CALIBRATION_FILE).write_text("{")
    with pytest.raises(RunError, match="not valid JSON"):
        cal.read_calibration(run)


# ----------------------------------------------------------------------------- integrated gradients and rollout


@pytest.fixture(scope="module")
def tiny_pair(tokenizer):
    """A tiny random BERT teacher and a DistilBERT student built from it, as TextClassifiers."""
    teacher = tiny_teacher(tokenizer.vocab_size, LABELS, num_hidden_layers=4, hidden_dropout_prob=0.0).eval()
    student = build_student_from_teacher(teacher, LABELS, layer_map=[0, 2]).eval()
    torch.manual_seed(1)
    for head in (student.pre_classifier, student.classifier):  # a fresh head: give it weights that matter
        torch.nn.init.normal_(head.weight, std=0.5)
    return (TextClassifier(teacher, tokenizer, max_length=32, name="teacher"),
            TextClassifier(student, tokenizer, max_length=32, name="student"))


TEXT = "the team won the cup after stocks fell on oil prices"


@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("method", at.METHODS)
def test_integrated_gradients_are_complete(tiny_pair, which, method):
    clf = tiny_pair[which]
    for target in (None, 2):
        a = at.integrated_gradients(clf, TEXT, target=target, n_steps=64, method=method)
        enc = clf.tokenizer([TEXT], return_tensors="pt")
        ids = enc["input_ids"]
        with torch.no_grad():
            f_x = clf.model(input_ids=ids).logits[0]
            f_b = clf.model(input_ids=at.baseline_ids(ids, clf.tokenizer)).logits[0]
        t = int(f_x.argmax()) if target is None else target
        assert a.target == t
        moved = float(f_x[t] - f_b[t])
        assert a.scores.sum() == pytest.approx(moved, abs=1e-3 + 0.01 * abs(moved))  # completeness
        assert abs(a.delta) <= 1e-3 + 0.01 * abs(moved)
        assert a.tokens == clf.tokenizer.convert_ids_to_tokens(ids[0].tolist())
        assert a.scores[0] == 0.0 and a.scores[-1] == 0.0  # [CLS] and [SEP] are the same in the baseline


@pytest.mark.parametrize("which", [0, 1])
def test_integrated_gradients_equal_captums_layer_integrated_gradients(tiny_pair, which):
    captum_attr = pytest.importorskip("captum.attr")
    clf = tiny_pair[which]
    enc = clf.tokenizer([TEXT], return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    lig = captum_attr.LayerIntegratedGradients(
        lambda i, m: clf.model(input_ids=i, attention_mask=m).logits, clf.model.get_input_embeddings())
    ref, delta = lig.attribute(ids, baselines=at.baseline_ids(ids, clf.tokenizer), target=1,
                               additional_forward_args=(mask,), n_steps=32, return_convergence_delta=True)
    ours = at.integrated_gradients(clf, TEXT, target=1, n_steps=32, method="gausslegendre")
    np.testing.assert_allclose(ours.scores, ref.sum(-1)[0].detach().numpy(), atol=1e-5)
    assert ours.delta == pytest.approx(float(delta), abs=1e-5)


def test_path_guided_grid_resolves_a_sudden_jump():
    # A logit that jumps by 4 within a few hundredths of the path, as fine-tuned models' logits do.
    f = lambda a: 4.0 / (1.0 + np.exp(-(a - 0.42) / 0.008))  # noqa: E731
    df = lambda a: f(a) * (1.0 - f(a) / 4.0) / 0.008  # noqa: E731
    exact = f(1.0) - f(0.0)
    grid = f(np.linspace(0, 1, 33))
    alphas, weights = at.path_guided_nodes(grid, 32)
    assert weights.sum() == pytest.approx(1.0) and np.all(np.diff(alphas) > 0) and 0 < alphas[0] and alphas[-1] < 1
    guided = float((weights * df(alphas)).sum())
    gl_a, gl_w = at.gauss_legendre(32)
    plain = float((gl_w * df(gl_a)).sum())
    assert abs(guided - exact) < 0.02 * exact < abs(plain - exact)
    flat_a, flat_w = at.path_guided_nodes(np.zeros(33), 32)  # no change anywhere: the even midpoint rule
    np.testing.assert_allclose(flat_w, 1 / 32)
    np.testing.assert_allclose(flat_a, (np.arange(32) + 0.5) / 32)


def test_integrated_gradients_refuse_empty_text_and_unknown_class(tiny_pair):
    with pytest.raises(InputError, match="empty"):
        at.integrated_gradients(tiny_pair[0], "  ")
    with pytest.raises(InputError, match="classes 0..3"):
        at.integrated_gradients(tiny_pair[0], TEXT, target=4)


def test_agreement_of_explanations(tiny_pair):
    a = at.integrated_gradients(tiny_pair[0], TEXT)
    same = at.agreement(a, a, k=3)
    assert same["spearman"] == pytest.approx(1.0) and same["top_k_overlap"] == 1.0 and same["k"] == 3
    flipped = at.Attribution(**{**a.__dict__, "scores": -a.scores})
    assert at.agreement(a, flipped)["spearman"] == pytest.approx(-1.0)
    assert at.agreement(a, flipped)["top_k_overlap"] == 1.0  # the same words matter, with opposite signs
    other = at.Attribution(**{**a.__dict__, "tokens": a.tokens[:-1] + ["x"]})  # another tokenizer's pieces
    assert at.agreement(a, other)["unit"] == "words"  # lined up by character offsets
    with pytest.raises(InputError, match="different tokens"):  # unless one tokenizer gives no offsets
        at.agreement(a, at.Attribution(**{**other.__dict__, "spans": None}))
    row = at.agreement_row(7, a, a, 1)
    assert row["row"] == 7 and row["student_agrees"] and row["true_label"] == "Sports"


def test_agreement_over_texts_explains_the_teachers_class(tiny_pair):
    table = at.agreement_over_texts(*tiny_pair, ["the team won", "stocks fell on oil"], labels=[1, 2], n_steps=8)
    assert len(table) == 2 and table["spearman"].between(-1, 1).all()
    assert (table["explained_class"] == table["teacher_pred"]).all()


def test_sample_rows_is_seeded_and_capped():
    np.testing.assert_array_equal(at.sample_rows(100, 10, seed=0), at.sample_rows(100, 10, seed=0))
    assert len(at.sample_rows(5, 10)) == 5 and sorted(at.sample_rows(5, 10)) == list(range(5))


def test_attention_rollout():
    rng = np.random.default_rng(0)
    att = rng.uniform(size=(3, 2, 5, 5))
    att /= att.sum(-1, keepdims=True)
    roll = at.attention_rollout(att)
    np.testing.assert_allclose(roll.sum(-1), 1.0)
    eye = np.broadcast_to(np.eye(4), (2, 3, 4, 4))
    np.testing.assert_allclose(at.attention_rollout(eye), np.eye(4))  # attending only to oneself moves nothing
    # One layer, uniform attention over 2 tokens: 0.5 * 0.5 + 0.5 * I
    np.testing.assert_allclose(at.attention_rollout(np.full((1, 1, 2, 2), 0.5)), [[0.75, 0.25], [0.25, 0.75]])
    with pytest.raises(ValueError, match="layers, heads, T, T"):
        at.attention_rollout(np.zeros((2, 5, 5)))


def test_time_integrated_gradients(tiny_run):
    times = at.time_integrated_gradients(tiny_run, kinds=("student",), n_steps=4, repeats=1)
    assert times["student"]["median_s"] > 0 and times["student"]["n_steps"] == 4


# ----------------------------------------------------------------------------- layer similarity (CKA)


def test_cka_of_a_representation_with_itself_is_one_and_invariant_to_rotation_and_scale():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16))
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))  # a random orthogonal matrix
    assert sim.linear_cka(x, x) == pytest.approx(1.0)
    assert sim.linear_cka(x, x @ q) == pytest.approx(1.0)
    assert sim.linear_cka(x, 7.5 * x) == pytest.approx(1.0)
    y = rng.normal(size=(200, 8))
    assert sim.linear_cka(x, y @ np.eye(8)) == pytest.approx(sim.linear_cka(x @ q * 3.0, y))
    assert sim.linear_cka(x, y) < 0.3  # unrelated
    assert sim.linear_cka(x, x + 5.0) == pytest.approx(1.0)  # centred, so a shift changes nothing
    with pytest.raises(ValueError, match="same N"):
        sim.linear_cka(x, y[:10])


def test_layer_similarity_of_a_student_built_from_its_teacher(tiny_pair):
    teacher, student = tiny_pair
    texts = [f"the {w} won the cup after {v} fell" for w in ("team", "bank", "nasa", "coach") for v in ("stocks", "oil", "peace")]
    s = sim.layer_similarity(teacher, student, texts)
    assert s.cls.shape == (5, 3) and s.mean.shape == (5, 3) and s.n_texts == 12
    assert s.layer_map == [0, 2] and s.mapped == [(0, 0), (1, 1), (3, 2)]
    assert s.mean[0, 0] == pytest.approx(1.0, abs=1e-6)  # the student's embedding output equals the teacher's
    table = lyv.cka_table(s)
    assert len(table) == 2 * 5 * 3 and table["initialised_from"].sum() == 2 * 3
    assert lyv.cka_png(s, "Distilled student").startswith(PNG)
    fig = lyv.cka_figure(s, "Distilled student")
    assert [t.type for t in fig.data] == ["heatmap", "scatter", "heatmap", "scatter"]


# ----------------------------------------------------------------------------- views


def fake_predictions(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=n)
    out = {"text": [f"text {i}" for i in range(n)], "label": labels, "label_name": [LABELS[i] for i in labels]}
    for k, s in (("teacher", 3.0), ("student", 2.0), ("baseline", 1.5)):
        p = cal.softmax(rng.normal(size=(n, 4)) + s * np.eye(4)[labels])
        out[f"{k}_pred"], out[f"{k}_probs"] = p.argmax(-1), list(p.astype(np.float32))
    return pd.DataFrame(out)


def test_disagreement_filters_partition_the_test_set():
    preds = fake_predictions()
    masks = dv.filter_masks(preds, "student")
    y, t, s = preds["label"], preds["teacher_pred"], preds["student_pred"]
    assert masks["lost"].sum() == ((t == y) & (s != y)).sum()
    assert masks["fixed"].sum() == ((t != y) & (s == y)).sum()
    both_right = ((t == y) & (s == y)).sum()
    assert masks["lost"].sum() + masks["fixed"].sum() + masks["both_wrong"].sum() + both_right == len(preds)
    assert masks["disagree"].sum() == (t != s).sum()
    counts = dv.filter_counts(masks)
    assert list(counts["Filter"]) == list(dv.FILTERS.values()) and counts["Texts"].iloc[0] == 40

    table = dv.disagreement_table(preds, LABELS, ["teacher", "student", "baseline"], "student")
    kl = dv.kl_column("student")
    assert (table[kl] >= 0).all() and list(table[dv.ROW]) == list(range(40))
    assert table["Teacher"].tolist() == [LABELS[i] for i in t]
    shown = dv.apply_filters(table, masks["disagree"], ["Sports", "World"], (0.2, 0.9), "student")
    assert shown["True label"].isin(["Sports", "World"]).all()
    assert shown[dv.confidence_column("student")].between(0.2, 0.9).all()
    assert set(shown[dv.ROW]) <= set(np.flatnonzero(masks["disagree"]))
    with pytest.raises(InputError, match="empty"):
        dv.apply_filters(table, masks["all"], None, (0.9, 0.1))
    ordered = dv.sort_table(table, kl)
    assert ordered[kl].is_monotonic_decreasing
    with pytest.raises(RunError, match="student_probs"):
        dv.disagreement_table(preds.drop(columns=["student_probs"]), LABELS, ["teacher", "student"], "student")


def test_confusion_pair_counts_rates_and_difference():
    preds = fake_predictions()
    cms = dv.confusion_pair(preds, 4, "student")
    assert cms["teacher"].sum() == 40
    np.testing.assert_array_equal(cms["difference"], cms["student"] - cms["teacher"])
    rates = dv.confusion_pair(preds, 4, "student", rates=True)
    np.testing.assert_allclose(rates["teacher"].sum(1)[cms["teacher"].sum(1) > 0], 1.0)
    assert len(dv.confusion_long(cms, LABELS, "student")) == 16
    assert dv.confusion_png(rates, LABELS, "student", True).startswith(PNG)
    assert len(dv.confusion_figure(cms, LABELS, "student", False).data) == 3
    probs = dv.text_probabilities(preds, 3, ["teacher", "student"])
    assert dv.probabilities_png(LABELS, probs, {}).startswith(PNG)
    with pytest.raises(InputError, match="does not exist"):
        dv.text_probabilities(preds, 40, ["teacher"])


def test_calibration_views():
    preds = fake_predictions(200)
    bins = cv.reliability_table(preds, ["teacher", "student"], {"teacher": 2.0})
    assert set(bins["model"]) == {"teacher", "student"} and len(bins) == 2 * cal.N_BINS
    assert bins.loc[bins["model"] == "teacher", "temperature"].iloc[0] == 2.0
    assert cv.reliability_png(bins).startswith(PNG)
    assert len(cv.reliability_figure(bins).data) == 2 * 3
    m = {"accuracy": 0.9, "mean_confidence": 0.8, "ece": 0.1, "brier": 0.2, "nll": 0.3}
    report = {"models": {"teacher": {"temperature": 1.1, "before": m, "after": m},
                         "student": {"temperature": 0.7, "before": m, "after": m}}}
    assert list(cv.metrics_table(report)["Model"]) == ["Teacher", "Distilled student"]
    assert "under-confident" in cv.underconfidence_note(report, 2.0)
    assert cv.underconfidence_note(report, 1.0) is None  # not distilled at T > 1: no claim about why
    report["models"]["student"]["temperature"] = 1.05
    assert cv.underconfidence_note(report, 2.0) is None


def test_explanation_views(tiny_pair):
    t = at.integrated_gradients(tiny_pair[0], TEXT)
    s = at.integrated_gradients(tiny_pair[1], TEXT, target=t.target)
    html = ev.highlight_html(t)
    assert html.count("<span") == len(ev.display_pieces(t.tokens)) and "[CLS]" not in html
    tagged = at.Attribution(**{**t.__dict__, "tokens": ["[CLS]", "<b>", "x", "[SEP]"], "scores": np.array([0, 1.0, -1, 0])})
    assert "&lt;b&gt;" in ev.highlight_html(tagged) and "<b>" not in ev.highlight_html(tagged)  # the text is escaped
    table = ev.attribution_table({"teacher": t, "student": s})
    assert list(table.columns[:2]) == ["position", "token"] and len(table) == len(t.tokens)
    assert ev.attribution_png([t, s], ["a", "b"]).startswith(PNG)
    assert "Convergence delta" in ev.completeness_caption(t)
    roll = ev.rollout_scores(t.tokens, np.eye(len(t.tokens)) * 0 + 1 / len(t.tokens))
    assert roll.sum() == pytest.approx(1.0) and len(roll) == len(ev.display_pieces(t.tokens))
    rt = ev.rollout_table(t.tokens, {"teacher": roll, "student": roll})
    assert ev.rollout_png(rt).startswith(PNG) and len(ev.rollout_figure(rt).data) == 2
    sample = pd.DataFrame([at.agreement_row(i, t, s, 0) for i in range(3)])
    assert ev.agreement_summary(sample)["n"] == 3
    assert ev.agreement_png(sample, "student").startswith(PNG)
    assert len(ev.agreement_figure(sample, "student").data) >= 2


def test_display_pieces_glue_word_pieces():
    assert ev.display_pieces(["[CLS]", "stock", "##s", "rallied", "[SEP]"]) == [(1, "stock"), (2, "s"), (3, " rallied")]
