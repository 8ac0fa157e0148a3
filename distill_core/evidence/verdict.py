"""Evidence that distillation paid off: fidelity to the teacher, paired intervals, the verdict, the headline metric.

    fid = fidelity(p_teacher, p_student, labels, names)       # agreement, KL, JS, per-class agreement
    cmp = compare(labels, pred_student, pred_baseline)         # accuracy/macro-F1 difference, 95% intervals, McNemar
    verdict(cmp, training={...})                               # ("helps" | ... | "inconclusive", sentences)
    collapsed_classes(results["models"]["student"]["per_class"])    # classes it never finds
    headline_metric([9507, 1196, 73, 168])                     # "macro_f1": imbalanced classes (else "accuracy")

Pure functions of arrays and of the run's JSON documents; ``evaluate`` stores their output in results.json.
Intervals come from a paired bootstrap over the test examples (the same resampled examples for both models,
so what they share cancels out), alongside McNemar's exact test on the examples where exactly one is right.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

N_RESAMPLES = 2000
CONFIDENCE = 0.95
EPS = 1e-12


# ----------------------------------------------------------------------------- fidelity


def kl_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p || q) in nats per row. Args: p, q (N, C) probabilities. Returns (N,)."""
    p, q = np.clip(p, EPS, 1.0), np.clip(q, EPS, 1.0)
    return np.sum(p * (np.log(p) - np.log(q)), axis=-1)


def js_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence in nats per row (symmetric, at most ln 2). Args: (N, C). Returns (N,)."""
    m = 0.5 * (p + q)
    return 0.5 * kl_rows(p, m) + 0.5 * kl_rows(q, m)


def fidelity(teacher_probs: np.ndarray, student_probs: np.ndarray, labels: np.ndarray,
             names: Sequence[str]) -> dict[str, Any]:
    """How closely a student follows its teacher on the same texts.

    Args:
        teacher_probs, student_probs: (N, C) probabilities. labels: (N,) true class ids. names: (C,).

    Returns:
        ``agreement`` (top-1), ``mean_kl`` (KL(teacher || student), nats), ``mean_js`` (nats) and
        ``per_class_agreement`` (agreement among the texts of each true class; None for a class without texts).
    """
    t, s = np.asarray(teacher_probs, float), np.asarray(student_probs, float)
    if t.shape != s.shape or t.ndim != 2 or len(labels) != len(t):
        raise ValueError(f"teacher {t.shape} and student {s.shape} probabilities must both be (N, C) for "
                         f"{len(labels)} labels")
    agree = t.argmax(-1) == s.argmax(-1)
    labels = np.asarray(labels)
    per_class = {n: (float(agree[labels == i].mean()) if (labels == i).any() else None) for i, n in enumerate(names)}
    return {"agreement": float(agree.mean()), "mean_kl": float(kl_rows(t, s).mean()),
            "mean_js": float(js_rows(t, s).mean()), "per_class_agreement": per_class}


# ----------------------------------------------------------------------------- paired comparison


def macro_f1_batch(labels: np.ndarray, preds: np.ndarray, n_classes: int) -> np.ndarray:
    """Macro-F1 of many resampled prediction sets at once (sklearn's definition, zero_division=0).

    Args:
        labels, preds: (R, N) class ids, one resample per row. Returns (R,).
    """
    r = labels.shape[0]
    idx = labels * n_classes + preds + (np.arange(r)[:, None] * n_classes * n_classes)  # (R, N)
    cm = np.bincount(idx.ravel(), minlength=r * n_classes * n_classes).reshape(r, n_classes, n_classes)
    tp = np.diagonal(cm, axis1=1, axis2=2).astype(float)  # (R, C)
    support, predicted = cm.sum(2), cm.sum(1)  # (R, C) each
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    present = (support > 0) | (predicted > 0)  # sklearn averages over the labels that occur in y_true or y_pred
    return np.where(present, f1, 0.0).sum(1) / np.maximum(present.sum(1), 1)


def _interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    lo, hi = np.percentile(samples, [50 * (1 - confidence), 50 * (1 + confidence)])
    return float(lo), float(hi)


def mcnemar(labels: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> dict[str, Any]:
    """McNemar's exact test: of the texts exactly one model gets right, is the split 50/50?

    Returns ``a_only`` (A right, B wrong), ``b_only`` and the two-sided exact binomial ``p_value``.
    """
    from scipy.stats import binomtest

    a_ok, b_ok = np.asarray(pred_a) == labels, np.asarray(pred_b) == labels
    a_only, b_only = int((a_ok & ~b_ok).sum()), int((~a_ok & b_ok).sum())
    p = 1.0 if a_only + b_only == 0 else float(binomtest(a_only, a_only + b_only, 0.5).pvalue)
    return {"a_only": a_only, "b_only": b_only, "p_value": p}


def compare(labels: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, n_classes: int | None = None,
            n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE, seed: int = 0) -> dict[str, Any]:
    """Model A minus model B on the same test texts: accuracy and macro-F1 differences in points, each with a
    paired-bootstrap interval, plus McNemar's exact test.

    Args:
        labels, pred_a, pred_b: (N,) class ids.

    Returns:
        ``accuracy_diff_points`` / ``macro_f1_diff_points``: {"estimate", "low", "high"}; ``mcnemar``;
        ``n``, ``n_resamples``, ``confidence``.
    """
    labels, pred_a, pred_b = (np.asarray(x, dtype=np.int64) for x in (labels, pred_a, pred_b))
    n = len(labels)
    if not n or len(pred_a) != n or len(pred_b) != n:
        raise ValueError(f"labels ({n}) and both predictions ({len(pred_a)}, {len(pred_b)}) must be the same length")
    c = n_classes or int(max(labels.max(), pred_a.max(), pred_b.max())) + 1
    idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))  # (R, N), shared by A and B
    y, a, b = labels[idx], pred_a[idx], pred_b[idx]
    acc = ((a == y).mean(1) - (b == y).mean(1)) * 100
    f1 = (macro_f1_batch(y, a, c) - macro_f1_batch(y, b, c)) * 100
    full_f1 = macro_f1_batch(labels[None], pred_a[None], c)[0] - macro_f1_batch(labels[None], pred_b[None], c)[0]
    out = {"n": n, "n_resamples": n_resamples, "confidence": confidence}
    for key, samples, estimate in (("accuracy_diff_points", acc, ((pred_a == labels).mean() - (pred_b == labels).mean()) * 100),
                                   ("macro_f1_diff_points", f1, full_f1 * 100)):
        lo, hi = _interval(samples, confidence)
        out[key] = {"estimate": float(estimate), "low": lo, "high": hi}
    out["mcnemar"] = mcnemar(labels, pred_a, pred_b)
    return out


METRIC_WORDS = {"accuracy": "accuracy", "macro_f1": "macro-F1"}
MODEL_WORDS = {"teacher": "teacher", "student": "distilled student", "baseline": "baseline"}
# The verdicts withheld when a model was still improving as it stopped: a longer-trained baseline can erase a gain
# (and an under-trained teacher makes a gain over it doubtful too), a longer-trained student can erase a loss. Any
# other verdict stands, with a note that the model was cut short.
OVERTURNED_BY = {"teacher": {"helps"}, "baseline": {"helps"}, "student": {"hurts"}}


def _ci(comparison: dict[str, Any], metric: str) -> str:
    d = comparison[f"{metric}_diff_points"]
    return (f"{d['estimate']:+.2f} {METRIC_WORDS[metric]} points, {comparison['confidence']:.0%} interval "
            f"{d['low']:+.2f} to {d['high']:+.2f}")


def _sign(comparison: dict[str, Any], metric: str) -> int:
    """+1 / -1 when the interval of ``metric`` excludes 0 on that side, else 0."""
    d = comparison[f"{metric}_diff_points"]
    return 1 if d["low"] > 0 else (-1 if d["high"] < 0 else 0)


def _budget(kind: str, v: dict[str, Any]) -> str:
    if v.get("patience") is None:  # no early stopping: the model kept is the last step's
        return (f"{MODEL_WORDS[kind]} trained {v['steps_trained']} steps, the last kept (best validation at step "
                f"{v['best_step']})")
    how = "stopped early" if v.get("stopped_early") else "ran to its cap"
    return f"{MODEL_WORDS[kind]} best at step {v['best_step']} of at most {v['cap_steps']} ({how})"


def verdict(comparison: dict[str, Any], seeds: dict[str, Any] | None = None, metric: str = "accuracy",
            training: dict[str, dict[str, Any] | None] | None = None) -> tuple[str, str]:
    """Distillation helps / makes no measurable difference / hurts, decided by the interval of ``metric``, or
    "inconclusive" when a model that more training could change it for was still improving when it stopped.

    Args:
        comparison: ``compare(labels, distilled, baseline)``.
        seeds: optional ``{"student": [value, ...], "baseline": [value, ...]}``: ``metric`` on test across seeds.
        metric: ``accuracy`` or ``macro_f1`` (the run's headline metric: macro-F1 where classes are imbalanced).
        training: optional ``{model: TrainResult.validation}`` for teacher, student and baseline: each one's best
            step, step cap and whether its validation curve was still rising at the end (``still_improving``).

    Returns:
        (verdict, plain sentences: the interval that decides it, what each model was given, and the other metric
        when it points the other way with an interval that excludes 0).
    """
    ci = _ci(comparison, metric)
    sign = _sign(comparison, metric)
    if sign > 0:
        word, text = "helps", f"Distillation helps: the distilled student beats the baseline by {ci}."
    elif sign < 0:
        word, text = "hurts", f"Distillation hurts: the distilled student trails the baseline by {ci}."
    else:
        word, text = ("no measurable difference",
                      f"No measurable difference between the distilled student and the baseline ({ci}; the "
                      f"interval includes 0).")
    training = {k: v for k, v in (training or {}).items() if v}
    cut = [k for k in ("teacher", "baseline", "student") if training.get(k, {}).get("still_improving")]
    if cut:
        who = " and the ".join(MODEL_WORDS[k] for k in cut)
        curves = "; ".join(f"{MODEL_WORDS[k]}: " + ", ".join(f"{v:.3f}" for _, v in training[k]["evaluations"][-4:])
                           for k in cut)
        why = (f"the {who} {'was' if len(cut) == 1 else 'were'} still improving when training stopped (last validation "
               f"{METRIC_WORDS[metric]} values: {curves})")
        fix = ("Train longer (a larger --epochs, --student-epochs or --baseline-epochs) with --early-stopping, and "
               "compare again.")
        if any(word in OVERTURNED_BY[k] for k in cut):
            word, text = ("inconclusive", f"Inconclusive: {why}, so more training could change the measured "
                                          f"difference ({ci}). {fix}")
        else:
            text += f" Note: {why}. {fix}"
    other = "macro_f1" if metric == "accuracy" else "accuracy"
    if f"{other}_diff_points" in comparison and sign * _sign(comparison, other) < 0:
        text += (f" By {METRIC_WORDS[other]} the difference points the other way ({_ci(comparison, other)}): the "
                 f"two metrics disagree, so look at the per-class figures before trusting either.")
    if "student" in training and "baseline" in training:
        text += f" Budgets: {_budget('student', training['student'])}; {_budget('baseline', training['baseline'])}."
    m = comparison.get("mcnemar")
    if m:
        text += (f" On the {m['a_only'] + m['b_only']} test texts exactly one of them gets right, the distilled "
                 f"student wins {m['a_only']} (McNemar p = {m['p_value']:.3g}).")
    if seeds and len(seeds.get("student", [])) > 1 and len(seeds.get("baseline", [])) > 1:
        s, b = (np.asarray(seeds[k]) * 100 for k in ("student", "baseline"))
        text += (f" Across {len(s)} seeds: distilled {s.mean():.2f} ± {s.std(ddof=1):.2f}, baseline "
                 f"{b.mean():.2f} ± {b.std(ddof=1):.2f} (mean ± sd, test {METRIC_WORDS[metric]} %).")
    return word, text


# A class counts as collapsed for a model when its F1 is at most this while the model's best class reaches
# COLLAPSE_CONTRAST: the model has learnt the task but never (or almost never) finds that class.
COLLAPSED_F1 = 0.05
COLLAPSE_CONTRAST = 0.3


def collapsed_classes(per_class: dict[str, dict[str, float]]) -> list[str]:
    """The classes a model never finds: test F1 at most ``COLLAPSED_F1`` (a class it never predicts has F1 0) while
    its best class has F1 of at least ``COLLAPSE_CONTRAST``. Classes without test texts are left out.

    Args:
        per_class: ``{class: {"f1-score", "support", ...}}`` as in results.json.
    """
    scored = {n: m for n, m in per_class.items() if m.get("support", 0) > 0}
    if not scored or max(m["f1-score"] for m in scored.values()) < COLLAPSE_CONTRAST:
        return []
    return [n for n, m in scored.items() if m["f1-score"] <= COLLAPSED_F1]


def collapse_sentence(collapsed: dict[str, list[str]]) -> str | None:
    """One sentence naming, per model, the classes it never finds; None when there are none."""
    parts = [f"{MODEL_WORDS.get(k, k)}: {', '.join(v)}" for k, v in collapsed.items() if v]
    return f"Classes a model never finds (test F1 at most {COLLAPSED_F1:g}): {'; '.join(parts)}." if parts else None


def seed_summary(values: Sequence[float]) -> dict[str, float | int]:
    """Mean, sample standard deviation, min and max of one figure across seeds."""
    v = np.asarray(values, float)
    return {"n": int(len(v)), "mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max())}


# ----------------------------------------------------------------------------- the headline metric

# Training classes count as imbalanced when the largest holds more than this many times the rows of the smallest.
IMBALANCE_RATIO = 3.0
HEADLINE_METRICS = ("accuracy", "macro_f1")


def imbalance_ratio(train_counts: Sequence[int]) -> float:
    """Rows of the largest training class over rows of the smallest (inf when a class has none)."""
    counts = [int(c) for c in train_counts]
    if not counts:
        return 1.0
    return max(counts) / min(counts) if min(counts) > 0 else float("inf")


def headline_metric(train_counts: Sequence[int]) -> str:
    """The metric a run leads with: ``macro_f1`` when its training classes are imbalanced (the largest has more than
    ``IMBALANCE_RATIO`` times the rows of the smallest), else ``accuracy``.

    On imbalanced classes accuracy rewards always predicting the majority class; macro-F1 weighs every class alike.
    """
    return "macro_f1" if imbalance_ratio(train_counts) > IMBALANCE_RATIO else "accuracy"
