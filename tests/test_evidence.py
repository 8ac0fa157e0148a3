"""Evidence that distillation paid off: intervals, fidelity, the verdict, ship checks, seeds and the few-labels setting."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from conftest import train_args
from distill_core.cli import CHECK_FAILED, CHECK_UNSURE, main
from distill_core.config import ShipConfig
from distill_core.bench.report import unreliable_reasons
from distill_core.evidence.checks import decision, ship_checks
from distill_core.fingerprints import BENCH_KINDS, record
from distill_core.evidence.verdict import compare, fidelity, macro_f1_batch, mcnemar, verdict
from distill_core.train.losses import IGNORE_INDEX, kd_loss

NAMES = ["a", "b", "c"]


def test_identical_predictions_give_zero_difference_and_an_interval_around_zero():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    pred = np.where(rng.random(300) < 0.8, y, rng.integers(0, 3, 300))
    c = compare(y, pred, pred, 3)
    for key in ("accuracy_diff_points", "macro_f1_diff_points"):
        assert c[key] == {"estimate": 0.0, "low": 0.0, "high": 0.0}
    assert c["mcnemar"] == {"a_only": 0, "b_only": 0, "p_value": 1.0}
    assert verdict(c)[0] == "no measurable difference"


def test_a_known_case_mcnemar_and_the_bootstrap_agree_with_hand_figures():
    # 100 texts, all class 0. A is right on all; B is wrong on the first 20: A - B = +20 points.
    y = np.zeros(100, int)
    a = np.zeros(100, int)
    b = np.zeros(100, int)
    b[:20] = 1
    m = mcnemar(y, a, b)
    assert (m["a_only"], m["b_only"]) == (20, 0)
    assert m["p_value"] == pytest.approx(2 * 0.5**20)  # two-sided exact binomial, 20 of 20
    c = compare(y, a, b, 2, n_resamples=4000)
    d = c["accuracy_diff_points"]
    assert d["estimate"] == pytest.approx(20.0)
    # The bootstrap distribution of a 20% rate over 100 texts: sd = sqrt(.2 * .8 / 100) = 4 points.
    assert d["low"] == pytest.approx(20 - 1.96 * 4, abs=1.5) and d["high"] == pytest.approx(20 + 1.96 * 4, abs=1.5)
    word, text = verdict(c)
    assert word == "helps" and "+20.00 accuracy points" in text
    assert verdict(compare(y, b, a, 2))[0] == "hurts"


def test_on_imbalanced_classes_the_verdict_follows_macro_f1():
    """Same accuracy, but A finds the rare class and B never does: accuracy sees no difference, macro-F1 does."""
    y = np.array([0] * 180 + [1] * 20)
    a = y.copy()
    a[:20] = 1  # A: finds every rare text, mislabels 20 common ones
    b = np.zeros(200, int)  # B: always the majority class (the same 90% accuracy)
    c = compare(y, a, b, 2)
    assert c["accuracy_diff_points"]["estimate"] == pytest.approx(0.0)
    assert verdict(c)[0] == "no measurable difference"
    word, text = verdict(c, metric="macro_f1")
    assert word == "helps" and "macro-F1 points" in text


def test_batched_macro_f1_equals_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, (5, 50))
    p = rng.integers(0, 4, (5, 50))
    p[0] = 3  # a degenerate resample: one predicted class
    ours = macro_f1_batch(y, p, 4)
    ref = [f1_score(y[i], p[i], average="macro", zero_division=0) for i in range(5)]
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


def test_fidelity_of_equal_distributions_is_perfect():
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(3), size=40)
    y = rng.integers(0, 3, 40)
    f = fidelity(p, p, y, NAMES)
    assert f["agreement"] == 1.0 and f["mean_kl"] == pytest.approx(0.0, abs=1e-12)
    assert f["mean_js"] == pytest.approx(0.0, abs=1e-12)
    assert set(f["per_class_agreement"]) == set(NAMES)
    q = p[:, ::-1]  # another distribution: KL > 0, JS at most ln 2
    g = fidelity(p, q, y, NAMES)
    assert g["mean_kl"] > 0 and 0 < g["mean_js"] <= np.log(2)


def test_hidden_labels_never_reach_the_cross_entropy():
    """A transfer text's label is hidden: the CE part and its gradient ignore that row entirely."""
    torch.manual_seed(0)
    student = torch.randn(4, 3, requires_grad=True)
    teacher = torch.randn(4, 3)
    labels = torch.tensor([0, IGNORE_INDEX, 2, IGNORE_INDEX])
    out = kd_loss(student, teacher, labels, temperature=2.0, alpha=0.0)  # CE alone
    expected = torch.nn.functional.cross_entropy(student[[0, 2]], labels[[0, 2]])
    torch.testing.assert_close(out.parts["ce_loss"], expected)
    out.loss.backward()
    assert torch.count_nonzero(student.grad[[1, 3]]) == 0  # no gradient from a hidden label
    none_known = kd_loss(student.detach(), teacher, torch.full((4,), IGNORE_INDEX), 2.0, 0.5)
    assert torch.isfinite(none_known.loss) and none_known.parts["ce_loss"] == 0


def test_ship_checks_pass_fail_inconclusive_and_not_measured():
    results = {"test_rows": 100, "models": {"teacher": {"accuracy": 0.90}, "student": {
        "accuracy": 0.885, "fidelity": {"agreement": 0.96, "mean_kl": 0.05}}}}
    bench = {"speedup": {"student_vs_teacher_median_len": 2.0}, "int8": {"accuracy_drop_points": 0.7},
             "settings": {"median_tokens": 50}}
    by = {c.name: c for c in ship_checks(results, bench, ShipConfig())}
    drop = by["Accuracy drop from the teacher"]
    assert drop.value == pytest.approx(1.5) and drop.state == "fail" and drop.unit == "points"  # no interval: the point
    agree = by["Agreement with the teacher"]  # in percent, as the tables show it
    assert agree.value == pytest.approx(96.0) and agree.unit == "%"
    # 96 of 100 texts: the Wilson interval (90.1% to 98.4%) straddles 95%, so the test set cannot tell
    assert agree.state == "inconclusive" and agree.interval[0] < 95 < agree.interval[1]
    assert by["Speed-up over the teacher"].state == "pass"
    assert by["Accuracy lost to int8"].state == "fail"
    assert decision(list(by.values())) == "not ready"
    unmeasured = ship_checks(results, None, ShipConfig(max_drop=2.0, min_agreement=80))
    # without a bench, per-class figures or a validation curve, those checks are not measured, never passed
    assert [c.state for c in unmeasured] == ["pass", "pass"] + ["not measured"] * 4
    assert decision(unmeasured) == "not enough evidence"


@pytest.mark.parametrize("low, high, state", [(-0.72, 0.99, "inconclusive"), (-0.5, 0.05, "pass"), (0.2, 0.9, "fail")])
def test_a_drop_is_judged_on_its_interval(low, high, state):
    """A drop of 0.132 points against a threshold of 0.1: its 95% interval decides, not the point."""
    results = {"test_rows": 1520, "models": {"teacher": {"accuracy": 0.9032}, "student": {"accuracy": 0.90188}},
               "comparisons": {"teacher_vs_student": {"accuracy_diff_points": {"estimate": 0.132, "low": low,
                                                                                "high": high}}}}
    drop = ship_checks(results, None, ShipConfig(max_drop=0.1))[0]
    assert drop.state == state and drop.interval == (low, high)
    assert f"{low:+.2f} to {high:+.2f} points" in drop.evidence


def test_a_speed_up_from_an_unreliable_bench_is_inconclusive():
    lat = lambda p50_med, p50_max: {"median_len": {"p50": p50_med}, "max_len": {"p50": p50_max}}  # noqa: E731
    bench = {"settings": {"median_tokens": 51}, "machine": {"other_processes_cpu_share": 0.43},
             "models": {"teacher": {"parameters": 22, "latency_ms": lat(30.0, 56.0)},
                        "student": {"parameters": 17, "latency_ms": lat(15.0, 31.0)}}}
    speed = ship_checks({"models": {}}, bench, ShipConfig())[2]
    assert speed.value == pytest.approx(2.0) and speed.state == "inconclusive" and "43% of the CPU" in speed.evidence
    bench["machine"]["other_processes_cpu_share"] = 0.01
    assert ship_checks({"models": {}}, bench, ShipConfig())[2].state == "pass"
    bench["models"]["teacher"]["latency_ms"] = lat(30.0, 12.0)  # a longer text answered faster: contradictory
    assert "longer text faster" in " ".join(unreliable_reasons(bench))
    assert ship_checks({"models": {}}, bench, ShipConfig())[2].state == "inconclusive"


@pytest.fixture(scope="module")
def seeded_run(tmp_path_factory, dataset_dir, teacher_dir):
    out = tmp_path_factory.mktemp("seeded")
    assert main(train_args(dataset_dir, teacher_dir, out, "seeds", "--seeds", "42,7")) == 0
    return out / "seeds"


def test_seeds_train_each_student_per_seed_and_keep_one_checkpoint(seeded_run):
    results = json.loads((seeded_run / "results.json").read_text())
    for kind in ("student", "baseline"):
        entry = results["seeds"][kind]
        assert [r["seed"] for r in entry["runs"]] == [42, 7]
        assert entry["accuracy"]["n"] == 2 and entry["accuracy"]["std"] >= 0
        # The first seed's model is the one kept and evaluated: its figures are the run's own.
        assert entry["runs"][0]["accuracy"] == pytest.approx(results["models"][kind]["accuracy"])
        assert (seeded_run / f"{kind}_seed7_train.csv").is_file() and not (seeded_run / f"{kind}_seed7").exists()
    assert "Across 2 seeds" in results["verdict"]["text"]
    assert {"teacher_vs_student", "student_vs_baseline"} <= set(results["comparisons"])


def test_check_exit_codes(seeded_run, tmp_path, capsys):
    run = tmp_path / seeded_run.name
    shutil.copytree(seeded_run, run)
    code = main(["check", str(run), "--max-drop", "100", "--min-agreement", "1", "--min-speedup", "0.01",
                 "--max-int8-drop", "100"])
    out = capsys.readouterr().out
    assert code == CHECK_FAILED and "not measured" in out  # no bench yet: never a silent pass
    (run / "bench.json").write_text(json.dumps({"speedup": {"student_vs_teacher_median_len": 1.8},
                                                "int8": {"accuracy_drop_points": 0.1}, "settings": {"median_tokens": 9},
                                                "weights": record(run, BENCH_KINDS)}))  # measured on these weights
    assert main(["check", str(run), "--max-drop", "100", "--min-agreement", "1"]) == CHECK_FAILED
    assert "FAIL          Classes the model never finds" in capsys.readouterr().out  # the tiny random student
    # The same run with a student that finds every class and whose validation curve had flattened out passes.
    results = json.loads((run / "results.json").read_text())
    student = results["models"]["student"]
    student["per_class"] = {n: {**m, "f1-score": 0.9} for n, m in student["per_class"].items()}
    student.setdefault("training", {})["validation"] = _curve([0.8, 0.9, 0.89, 0.88], stopped=True)
    (run / "results.json").write_text(json.dumps(results))
    assert main(["check", str(run), "--max-drop", "100", "--min-agreement", "1"]) == 0
    assert "Ready to ship" in capsys.readouterr().out
    assert main(["check", str(run), "--max-drop", "100", "--min-agreement", "1", "--min-speedup", "5"]) == CHECK_FAILED
    assert main(["check", str(run), "--min-agreement", "0.95"]) == 2  # agreement is in percent: 95, not 0.95
    # No check fails, but the int8 figure is missing from the bench: not enough evidence, its own exit code.
    (run / "bench.json").write_text(json.dumps({"speedup": {"student_vs_teacher_median_len": 1.8},
                                                "settings": {"median_tokens": 9}, "weights": record(run, BENCH_KINDS)}))
    assert main(["check", str(run), "--max-drop", "100", "--min-agreement", "1"]) == CHECK_UNSURE
    assert "Not enough evidence" in capsys.readouterr().out


def test_few_labels_teacher_and_baseline_see_only_the_labelled_rows(tmp_path, dataset_dir, teacher_dir):
    assert main(train_args(dataset_dir, teacher_dir, tmp_path, "few", "--labelled", "16", "--epochs", "4")) == 0
    run = tmp_path / "few"
    cfg = json.loads((run / "config.json").read_text())
    rows = cfg["dataset_info"]["rows"]
    assert rows["train"] == 16 and rows["transfer"] > 16  # the rest of train, labels hidden
    steps = {k: len((run / f"{k}_train.csv").read_text().splitlines()) - 1 for k in ("teacher", "student", "baseline")}
    # 16 labelled rows / batch 8 = 2 steps per epoch: teacher 4 epochs, baseline 2 (--student-epochs).
    assert steps["teacher"] == 8 and steps["baseline"] == 4
    # The distilled student: the 16 labelled rows and the 41 hidden-label texts (57 = 64 - 10% validation), 2 epochs.
    assert rows["train"] + rows["transfer"] == 57 and steps["student"] == 2 * 8
    results = json.loads((run / "results.json").read_text())
    assert results["test_rows"] == 24 and "verdict" in results


def test_few_labels_with_early_stopping_gives_both_students_one_cap_and_keeps_each_best_step(
        tmp_path, dataset_dir, teacher_dir, capsys):
    """The few-labels setting end to end on tiny models, with early stopping as its preset turns it on."""
    assert main(train_args(dataset_dir, teacher_dir, tmp_path, "fewes", "--labelled", "16", "--epochs", "6",
                           "--early-stopping", "--patience", "2")) == 0
    run = tmp_path / "fewes"
    results = json.loads((run / "results.json").read_text())
    v = {k: results["models"][k]["training"]["validation"] for k in ("teacher", "student", "baseline")}
    # --eval-every 4 (train_args): validation every 4 steps for every model; the students share the larger cap:
    # the distilled student's 2 epochs over 57 texts (2 x 8 steps) against the baseline's 2 x 2.
    assert v["student"]["cap_steps"] == v["baseline"]["cap_steps"] == 16 and v["teacher"]["cap_steps"] == 12
    for k, c in v.items():
        steps = [s for s, _ in c["evaluations"]]
        assert all(s % 4 == 0 or s == c["steps_trained"] for s in steps)
        assert c["best_step"] in steps and c["best_value"] == max(x for _, x in c["evaluations"])
        val = [line.split(",") for line in (run / f"{k}_val.csv").read_text().splitlines()[1:]]
        assert len(val) == len(c["evaluations"])  # the curve recorded is the one written to <kind>_val.csv
        if c["stopped_early"]:
            assert c["steps_trained"] < c["cap_steps"]
    assert "Budgets: distilled student best at step" in results["verdict"]["text"]
    out = capsys.readouterr().out
    assert results["verdict"]["text"] in out  # `train` ends by saying the verdict


def test_sweep_scores_cells_on_validation_resumes_and_reports_test_once(tmp_path, tiny_run, monkeypatch, capsys):
    from distill_core.train import sweep as sweep_mod
    from distill_core.views.sweep import format_sweep, heatmap_figure, heatmap_png, sweep_table

    run = tmp_path / tiny_run.name
    shutil.copytree(tiny_run, run)
    assert main(["sweep", str(run), "--temperature", "1,4", "--alpha", "0.5", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    s = json.loads((run / "sweep" / "sweep.json").read_text())
    assert len(s["cells"]) == 3 and s["cells"][0]["alpha"] == 0  # the baseline, then T=1 and T=4
    assert all(0 <= c["val_accuracy"] <= 1 and 0 <= c["val_agreement"] <= 1 for c in s["cells"])
    best = max((c for c in s["cells"] if c["alpha"] > 0), key=lambda c: (c["val_accuracy"], c["val_macro_f1"]))
    assert (s["best"]["temperature"], s["best"]["alpha"]) == (best["temperature"], best["alpha"])
    assert "test_accuracy" in s["best"] and not any("test_accuracy" in c for c in s["cells"])  # test: once, the choice
    assert "Chosen on validation" in out and not (run / ".progress-sweep.json").exists()

    # Widen the grid: finished cells are kept, only the new one trains.
    trained = []
    real = sweep_mod._Context.train_cell
    monkeypatch.setattr(sweep_mod._Context, "train_cell",
                        lambda self, t, a, e: (trained.append((t, a)), real(self, t, a, e))[1])
    assert main(["sweep", str(run), "--temperature", "1,4", "--alpha", "0.5,0.9", "--epochs", "1"]) == 0
    s2 = json.loads((run / "sweep" / "sweep.json").read_text())
    assert s2["cells"][:3] == s["cells"] and len(s2["cells"]) == 5
    assert trained[:2] == [(1.0, 0.9), (4.0, 0.9)]  # (+ the chosen cell again if it was an earlier session's)
    table = sweep_table(s2)
    assert len(table) == 5 and table["Cell"][0] == "baseline (no teacher)"
    fig = heatmap_figure(s2)
    assert np.asarray(fig.data[0].z).shape == (2, 2) and fig.layout.shapes  # the best cell is outlined
    assert heatmap_png(s2).startswith(b"\x89PNG") and "T=4, alpha=0.9" in format_sweep(s2)
    assert main(["sweep", str(run), "--alpha", "0"]) == 2  # alpha 0 is the baseline cell, not a grid value


def test_overview_verdict_ship_checks_and_sweep_page(tiny_run, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    root = tmp_path / "runs"
    run = root / tiny_run.name
    shutil.copytree(tiny_run, run)
    monkeypatch.setenv("DISTILL_RUNS_DIR", str(root))
    at = AppTest.from_file("../dashboard.py", default_timeout=60).run()
    assert not at.exception
    shown = " ".join(str(e.value) for e in [*at.success, *at.info, *at.warning])
    assert "Distillation" in shown or "No measurable difference" in shown  # the verdict, in words
    assert any(c.key == "evidence_intervals" for c in at.get("plotly_chart"))
    assert any("Speed-up over the teacher" in str(e.value) and "not measured" in str(e.value) for e in at.info)
    # the answer first: no bench yet, so at best not enough evidence
    assert "Ready to ship? Not" in " ".join(str(e.value) for e in [*at.warning, *at.error])
    at.number_input(key="ship_max_drop").set_value(100.0).run()
    assert any("Accuracy drop from the teacher" in str(e.value) for e in at.success)
    at.switch_page("app_pages/sweep.py").run()
    assert not at.exception and "No sweep for this run yet" in " ".join(str(e.value) for e in at.info)
    assert main(["sweep", str(run), "--temperature", "2", "--alpha", "0.5"]) == 0
    at.run()
    assert not at.exception and any(c.key == "sweep_heatmap" for c in at.get("plotly_chart"))
    # green only for a measurable win over the baseline cell, blue otherwise
    assert "Chosen on validation" in " ".join(str(e.value) for e in [*at.success, *at.info])


def test_curves_page_overlays_the_other_seeds(seeded_run, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    root = tmp_path / "runs"
    shutil.copytree(seeded_run, root / seeded_run.name)
    monkeypatch.setenv("DISTILL_RUNS_DIR", str(root))
    at = AppTest.from_file("../dashboard.py", default_timeout=60).run()
    at.switch_page("app_pages/training_curves.py").run()
    names = lambda: {t.get("name") for t in json.loads(next(  # noqa: E731
        c for c in at.get("plotly_chart") if c.key == "curves_main").proto.spec)["data"]}
    assert "Distilled student (seed 7) train" not in names()
    at.toggle(key="curves_seeds").set_value(True).run()
    assert not at.exception
    assert {"Distilled student (seed 7) train", "Baseline student (seed 7) train"} <= names()


def _curve(values, stopped=False, cap=100):
    ev = [[16 * (i + 1), v] for i, v in enumerate(values)]
    best = max(range(len(values)), key=lambda i: values[i])
    from distill_core.train.early_stopping import still_improving
    return {"best_step": ev[best][0], "best_value": values[best], "steps_trained": ev[-1][0], "cap_steps": cap,
            "stopped_early": stopped, "patience": 3, "evaluations": ev,
            "still_improving": not stopped and still_improving(values)}


def _helps_comparison():
    y = np.zeros(400, int)
    a, b = y.copy(), y.copy()
    b[:40] = 1  # the distilled student is right on 40 more texts: +10 points, an interval well above 0
    return compare(y, a, b, 2)


def test_a_baseline_still_rising_at_its_end_gives_inconclusive_never_helps():
    c = _helps_comparison()
    assert verdict(c)[0] == "helps"
    training = {"teacher": _curve([0.80, 0.85, 0.86, 0.86]), "student": _curve([0.7, 0.8, 0.85, 0.85]),
                "baseline": _curve([0.689, 0.836, 0.832, 0.855], cap=64)}
    word, text = verdict(c, training=training)
    assert word == "inconclusive" and "baseline was still improving" in text and "0.855" in text
    assert "baseline best at step 64 of at most 64" in text  # the budgets, stated
    # A baseline whose curve flattened out (stopped by its patience) leaves the verdict standing.
    training["baseline"] = _curve([0.7, 0.84, 0.83, 0.83, 0.82], stopped=True, cap=342)
    word, text = verdict(c, training=training)
    assert word == "helps" and "baseline best at step 32 of at most 342 (stopped early)" in text


def test_a_teacher_cut_short_withholds_helps_and_a_rising_student_withholds_hurts():
    c = _helps_comparison()
    word, text = verdict(c, training={"teacher": _curve([0.5, 0.6, 0.7])})
    assert word == "inconclusive" and "teacher was still improving" in text
    hurts = compare(np.zeros(400, int), np.r_[np.ones(40, int), np.zeros(360, int)], np.zeros(400, int), 2)
    assert verdict(hurts)[0] == "hurts"
    assert verdict(hurts, training={"student": _curve([0.5, 0.6, 0.7])})[0] == "inconclusive"
    # More baseline training cannot turn a loss into a gain: the verdict stands, with the note.
    word, text = verdict(hurts, training={"baseline": _curve([0.5, 0.6, 0.7])})
    assert word == "hurts" and "Note: the baseline was still improving" in text


def test_no_difference_with_a_baseline_still_rising_keeps_its_word_and_says_so():
    y = np.zeros(300, int)
    word, text = verdict(compare(y, y, y, 2), training={"baseline": _curve([0.873, 0.882])})
    assert word == "no measurable difference" and "Note: the baseline was still improving" in text and "0.882" in text
    # Without early stopping the model kept is the last step's, and the budget says so.
    fixed = {k: {**_curve([0.88, 0.87], cap=342), "patience": None} for k in ("student", "baseline")}
    assert "distilled student trained 32 steps, the last kept (best validation at step 16)" in verdict(
        compare(y, y, y, 2), training=fixed)[1]


def test_the_verdict_says_when_accuracy_and_macro_f1_point_opposite_ways():
    # 300 texts, 30 of them the rare class 1. A finds every rare text but mislabels 60 common ones (accuracy 0.8,
    # macro-F1 up); B always says class 0 (accuracy 0.9, macro-F1 about 0.47).
    y = np.r_[np.ones(30, int), np.zeros(270, int)]
    a = np.r_[np.ones(30, int), np.ones(60, int), np.zeros(210, int)]
    b = np.zeros(300, int)
    c = compare(y, a, b, 2)
    word, text = verdict(c, metric="accuracy")
    assert word == "hurts" and "By macro-F1 the difference points the other way" in text


def test_a_class_never_predicted_is_named_in_the_verdict_and_fails_check():
    from distill_core.evidence.verdict import collapse_sentence, collapsed_classes

    per_class = {"a": {"f1-score": 0.9, "support": 50}, "b": {"f1-score": 0.8, "support": 40},
                 "ABBR": {"f1-score": 0.0, "support": 9}, "none": {"f1-score": 0.0, "support": 0}}
    assert collapsed_classes(per_class) == ["ABBR"]  # a class without test texts is not a collapse
    assert collapsed_classes({"a": {"f1-score": 0.2, "support": 5}, "b": {"f1-score": 0.0, "support": 5}}) == []
    assert "distilled student: ABBR" in collapse_sentence({"teacher": [], "student": ["ABBR"]})
    results = {"test_rows": 99, "models": {"teacher": {"accuracy": 0.9, "per_class": {**per_class, "ABBR": {
        "f1-score": 0.5, "support": 9}}}, "student": {"accuracy": 0.89, "per_class": per_class}}}
    by = {c.name: c for c in ship_checks(results, None, ShipConfig())}
    lost = by["Classes the model never finds"]
    assert lost.passed is False and "ABBR" in lost.evidence and "the teacher finds them" in lost.evidence


def test_check_fails_a_student_still_improving_and_labels_kl_by_model():
    results = {"test_rows": 10, "models": {
        "teacher": {"accuracy": 0.9}, "baseline": {"accuracy": 0.9, "fidelity": {"agreement": 0.99, "mean_kl": 0.01},
                                                   "training": {"validation": _curve([0.5, 0.6, 0.7])}}}}
    by = {c.name: c for c in ship_checks(results, None, ShipConfig(), model="baseline")}
    assert "KL(teacher || baseline)" in by["Agreement with the teacher"].evidence
    assert by["Trained until validation stopped improving"].passed is False


def test_sweep_ranks_cells_by_the_headline_metric_with_an_interval_to_the_baseline():
    from distill_core.train.sweep import _best, _compare_to_baseline

    labels = np.r_[np.zeros(180, int), np.ones(20, int)]
    base = {"temperature": 1.0, "alpha": 0.0, "val_accuracy": 0.9, "val_macro_f1": 0.47, "val_pred": [0] * 200}
    finds_rare = np.r_[np.zeros(150, int), np.ones(50, int)]  # all 20 rare texts, 30 common ones wrong: acc 0.85
    rare = {"temperature": 2.0, "alpha": 0.5, "val_accuracy": 0.85, "val_macro_f1": 0.76, "val_pred": finds_rare.tolist()}
    common = {"temperature": 4.0, "alpha": 0.5, "val_accuracy": 0.9, "val_macro_f1": 0.47, "val_pred": [0] * 200}
    cells = [base, rare, common]
    assert _best(cells, "accuracy", exclude_baseline=True) is common
    assert _best(cells, "macro_f1", exclude_baseline=True) is rare
    _compare_to_baseline(cells, labels, "macro_f1")
    assert rare["beats_baseline"] and rare["vs_baseline"]["low"] > 0
    assert not common["beats_baseline"] and common["vs_baseline"]["estimate"] == 0


def test_transfer_texts_that_are_test_or_validation_texts_are_dropped_and_counted(tmp_path, dataset_dir, teacher_dir,
                                                                                  caplog):
    from distill_core.train.transfer import without_overlap

    kept, dropped = without_overlap(["a b", " c ", "d", "e"], {"test": ["c"], "validation": ["a b"], "labelled": []})
    assert kept == ["d", "e"] and dropped == {"test": 1, "validation": 1, "labelled": 0}
    # The training folder's own test split as the transfer texts: none of them may reach the distilled student.
    with caplog.at_level("INFO"):
        assert main(train_args(dataset_dir, teacher_dir, tmp_path, "leak", "--labelled", "16", "--transfer-dataset",
                               str(dataset_dir), "--transfer-split", "test", "--models", "teacher,student")) == 0
    cfg = json.loads((tmp_path / "leak" / "config.json").read_text())
    assert cfg["dataset_info"]["rows"]["transfer"] == 41  # the 41 hidden-label training texts, no test text
    assert "--transfer-dataset texts dropped as already in the run: 24 test" in caplog.text


def test_the_sweep_table_shows_a_dash_for_the_baselines_temperature(tiny_run, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    root = tmp_path / "runs"
    run = root / tiny_run.name
    shutil.copytree(tiny_run, run)
    monkeypatch.setenv("DISTILL_RUNS_DIR", str(root))
    assert main(["sweep", str(run), "--temperature", "2", "--alpha", "0.5"]) == 0
    at = AppTest.from_file("../dashboard.py", default_timeout=60).run()
    at.switch_page("app_pages/sweep.py").run()
    table = at.dataframe[0].value
    assert not at.exception and list(table["T"]) == ["—", "2"]
