"""Evidence that distillation paid off: fidelity to the teacher, paired intervals, a verdict, ship checks.

    fid = fidelity(p_teacher, p_student, labels, names)       # agreement, KL, JS, per-class agreement
    cmp = compare(labels, pred_student, pred_baseline)         # accuracy/macro-F1 difference, 95% intervals, McNemar
    verdict(cmp)                                               # ("helps" | "no measurable difference" | "hurts", sentence)
    headline_metric([9507, 1196, 73, 168])                     # "macro_f1": imbalanced classes (else "accuracy")
    ship_checks(results, bench, ShipConfig())                  # the user's own release thresholds, passed or failed

Pure functions of arrays and of the run's JSON documents; ``evaluate`` stores their output in results.json.
Intervals come from a paired bootstrap over the test examples (the same resampled examples for both models,
so what they share cancels out), alongside McNemar's exact test on the examples where exactly one is right.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from ..config import ShipConfig

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


def verdict(comparison: dict[str, Any], seeds: dict[str, Any] | None = None,
            metric: str = "accuracy") -> tuple[str, str]:
    """Distillation helps / makes no measurable difference / hurts, decided by the interval of ``metric``.

    Args:
        comparison: ``compare(labels, distilled, baseline)``.
        seeds: optional ``{"student": [value, ...], "baseline": [value, ...]}``: ``metric`` on test across seeds.
        metric: ``accuracy`` or ``macro_f1`` (the run's headline metric: macro-F1 where classes are imbalanced).

    Returns:
        (verdict, one or two plain sentences with the interval that decides it).
    """
    d = comparison[f"{metric}_diff_points"]
    name = METRIC_WORDS[metric]
    ci = (f"{d['estimate']:+.2f} {name} points, {comparison['confidence']:.0%} interval {d['low']:+.2f} to "
          f"{d['high']:+.2f}")
    if d["low"] > 0:
        word, text = "helps", f"Distillation helps: the distilled student beats the baseline by {ci}."
    elif d["high"] < 0:
        word, text = "hurts", f"Distillation hurts: the distilled student trails the baseline by {ci}."
    else:
        word, text = ("no measurable difference",
                      f"No measurable difference between the distilled student and the baseline ({ci}; the "
                      f"interval includes 0).")
    m = comparison.get("mcnemar")
    if m:
        text += (f" On the {m['a_only'] + m['b_only']} test texts exactly one of them gets right, the distilled "
                 f"student wins {m['a_only']} (McNemar p = {m['p_value']:.3g}).")
    if seeds and len(seeds.get("student", [])) > 1 and len(seeds.get("baseline", [])) > 1:
        s, b = (np.asarray(seeds[k]) * 100 for k in ("student", "baseline"))
        text += (f" Across {len(s)} seeds: distilled {s.mean():.2f} ± {s.std(ddof=1):.2f}, baseline "
                 f"{b.mean():.2f} ± {b.std(ddof=1):.2f} (mean ± sd, test {name} %).")
    return word, text


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


# ----------------------------------------------------------------------------- ship checks


@dataclass
class Check:
    """One release criterion: what was measured against the user's threshold."""

    name: str
    passed: bool | None  # None: not measured
    value: float | None
    threshold: float
    evidence: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def ship_checks(results: dict[str, Any], bench: dict[str, Any] | None, thresholds: ShipConfig,
                model: str = "student") -> list[Check]:
    """The user's release criteria for ``model`` against the run's test results and its bench.

    A figure the run does not hold yet (no bench) is a check not measured (``passed`` None), never a pass.
    """
    models = results.get("models") or {}
    t, s = models.get("teacher") or {}, models.get(model) or {}
    checks = []
    drop = (t["accuracy"] - s["accuracy"]) * 100 if t.get("accuracy") is not None and s.get("accuracy") is not None else None
    cmp = _get(results, "comparisons", f"teacher_vs_{model}", "accuracy_diff_points")
    evidence = (f"teacher {t.get('accuracy', 0):.2%} vs {s.get('accuracy', 0):.2%} on {results.get('test_rows', '?')} test "
                f"texts" + (f"; 95% interval of the drop {cmp['low']:+.2f} to {cmp['high']:+.2f} points" if cmp else ""))
    checks.append(Check("Accuracy drop from the teacher (points)", None if drop is None else drop <= thresholds.max_drop,
                        drop, thresholds.max_drop, evidence if drop is not None else "no test results for both models"))
    fid = s.get("fidelity") or {}
    agree = fid.get("agreement", s.get("agreement_with_teacher"))
    checks.append(Check("Agreement with the teacher", None if agree is None else agree >= thresholds.min_agreement,
                        agree, thresholds.min_agreement,
                        f"same top-1 class on {agree:.1%} of test texts" + (
                            f"; mean KL(teacher || student) {fid['mean_kl']:.3f} nats" if "mean_kl" in fid else "")
                        if agree is not None else "no agreement figure: re-run `evaluate`"))
    key = "student_vs_teacher_median_len" if model == "student" else None
    speed = _get(bench, "speedup", key) if key else None
    checks.append(Check("Speed-up over the teacher at batch 1", None if speed is None else speed >= thresholds.min_speedup,
                        speed, thresholds.min_speedup,
                        f"p50 latency ratio at the median test length ({_get(bench, 'settings', 'median_tokens')} tokens)"
                        if speed is not None else "not measured: run `python -m distill_core bench RUN`"))
    int8 = _get(bench, "int8", "accuracy_drop_points") if model == "student" else None
    checks.append(Check("Accuracy lost to int8 (points)", None if int8 is None else int8 <= thresholds.max_int8_drop,
                        int8, thresholds.max_int8_drop,
                        "fp32 minus int8 student on the bench's test texts" if int8 is not None
                        else "not measured: run `python -m distill_core bench RUN`"))
    return checks


def format_checks(checks: Sequence[Check]) -> str:
    """The checks as the ``check`` command prints them."""
    lines = []
    for c in checks:
        state = "not measured" if c.passed is None else ("PASS" if c.passed else "FAIL")
        value = "-" if c.value is None else f"{c.value:.3g}"
        lines.append(f"{state:<13} {c.name}: {value} (threshold {c.threshold:g}); {c.evidence}")
    return "\n".join(lines)
