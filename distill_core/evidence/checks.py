"""Ready to ship? The user's release thresholds against what the run measured, each check with its evidence.

    checks = ship_checks(results, bench, ShipConfig(max_drop=1.0, min_agreement=95))
    print(format_checks(checks))                 # what `python -m distill_core check RUN` prints
    decision(checks)                             # "ready", "not ready" or "not enough evidence"

Each check is judged on its 95% interval where the run has one (``judge``): it passes when the whole interval is on
the good side of the threshold, fails when the whole interval is on the bad side, and is inconclusive in between.

Pure functions of the run's JSON documents (``results.json``, ``bench.json``); the Overview page shows the same checks
with the thresholds editable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

from ..config import ShipConfig
from .verdict import COLLAPSED_F1, collapsed_classes


PASS, FAIL, INCONCLUSIVE, NOT_MEASURED = "pass", "fail", "inconclusive", "not measured"
READY, NOT_READY, NOT_ENOUGH = "ready", "not ready", "not enough evidence"


@dataclass
class Check:
    """One release criterion: what was measured against the user's threshold, in the units the tables use.

    ``state`` is judged on the 95% interval where the run has one: ``pass`` when all of it is on the good side of the
    threshold, ``fail`` when all of it is on the bad side, ``inconclusive`` when it straddles the threshold (the test
    set is too small to tell), ``not measured`` without the figure.
    """

    name: str
    state: str
    value: float | None
    threshold: float
    evidence: str
    unit: str = ""  # "points", "%", "x" or "" (a count)
    interval: tuple[float, float] | None = None  # 95% interval of ``value``, in ``unit``

    @property
    def passed(self) -> bool | None:
        """True: pass; False: fail; None: inconclusive or not measured."""
        return {PASS: True, FAIL: False}.get(self.state)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(value: float, threshold: float, higher_is_better: bool,
          interval: tuple[float, float] | None = None) -> str:
    """``pass``, ``fail`` or ``inconclusive`` for ``value`` (and its interval, when there is one) against
    ``threshold``; without an interval the point value decides."""
    low, high = interval if interval is not None else (value, value)
    if higher_is_better:
        return PASS if low >= threshold else FAIL if high < threshold else INCONCLUSIVE
    return PASS if high <= threshold else FAIL if low > threshold else INCONCLUSIVE


def decision(checks: Sequence[Check]) -> str:
    """The overall answer: ``ready`` (every check passes), ``not ready`` (one fails), else ``not enough evidence``."""
    if any(c.state == FAIL for c in checks):
        return NOT_READY
    return READY if all(c.state == PASS for c in checks) else NOT_ENOUGH


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def share_interval(hits: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson interval of a share (``hits`` of ``n``), as fractions."""
    from scipy.stats import binomtest

    ci = binomtest(int(round(hits)), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def ship_checks(results: dict[str, Any], bench: dict[str, Any] | None, thresholds: ShipConfig,
                model: str = "student") -> list[Check]:
    """The user's release criteria for ``model`` against the run's test results and its bench.

    A figure the run does not hold yet (no bench) is a check not measured, never a pass; a bench whose timings
    contradict themselves or ran beside other load (``bench.report.unreliable_reasons``) makes the speed check
    inconclusive.
    """
    from ..bench.report import SPEEDUP_DEFINITION, headline_speedup, unreliable_reasons

    models = results.get("models") or {}
    t, s = models.get("teacher") or {}, models.get(model) or {}
    n = results.get("test_rows")
    checks = []
    name = "Accuracy drop from the teacher"
    if t.get("accuracy") is not None and s.get("accuracy") is not None:
        drop = (t["accuracy"] - s["accuracy"]) * 100
        cmp = _get(results, "comparisons", f"teacher_vs_{model}", "accuracy_diff_points")
        interval = (cmp["low"], cmp["high"]) if cmp else None
        evidence = (f"teacher {t['accuracy']:.2%} vs {s['accuracy']:.2%} on {n or '?'} test texts"
                    + (f"; 95% interval of the drop {interval[0]:+.2f} to {interval[1]:+.2f} points" if interval else ""))
        checks.append(Check(name, judge(drop, thresholds.max_drop, False, interval), drop, thresholds.max_drop, evidence,
                            "points", interval))
    else:
        checks.append(Check(name, NOT_MEASURED, None, thresholds.max_drop, "no test results for both models", "points"))
    fid = s.get("fidelity") or {}
    agree = fid.get("agreement", s.get("agreement_with_teacher"))
    name = "Agreement with the teacher"
    if agree is not None:
        interval = tuple(100 * x for x in share_interval(agree * n, n)) if n else None
        evidence = (f"same top-1 class on {agree:.1%} of {n or '?'} test texts"
                    + (f"; 95% interval {interval[0]:.1f}% to {interval[1]:.1f}%" if interval else "")
                    + (f"; mean KL(teacher || {model}) {fid['mean_kl']:.3f} nats" if "mean_kl" in fid else ""))
        checks.append(Check(name, judge(agree * 100, thresholds.min_agreement, True, interval), agree * 100,
                            thresholds.min_agreement, evidence, "%", interval))
    else:
        checks.append(Check(name, NOT_MEASURED, None, thresholds.min_agreement, "no agreement figure: re-run `evaluate`",
                            "%"))
    speed = headline_speedup(bench, model) if model == "student" else None
    name = "Speed-up over the teacher"
    if speed is None:
        checks.append(Check(name, NOT_MEASURED, None, thresholds.min_speedup,
                            "not measured: run `python -m distill_core bench RUN`", "x"))
    else:
        why = unreliable_reasons(bench)
        tokens = _get(bench, "settings", "median_tokens")
        evidence = f"{SPEEDUP_DEFINITION} ({tokens} tokens)"
        if why:
            checks.append(Check(name, INCONCLUSIVE, speed, thresholds.min_speedup,
                                f"the bench's timings are unreliable ({'; '.join(why)}): re-run `python -m distill_core "
                                "bench RUN` on a quiet machine", "x"))
        else:
            checks.append(Check(name, judge(speed, thresholds.min_speedup, True), speed, thresholds.min_speedup,
                                evidence, "x"))
    int8 = _get(bench, "int8", "accuracy_drop_points") if model == "student" else None
    name = "Accuracy lost to int8"
    checks.append(Check(name, NOT_MEASURED if int8 is None else judge(int8, thresholds.max_int8_drop, False), int8,
                        thresholds.max_int8_drop,
                        f"fp32 minus int8 student on the bench's {_get(bench, 'settings', 'texts') or '?'} test texts"
                        if int8 is not None else "not measured: run `python -m distill_core bench RUN`", "points"))
    checks.append(_classes_check(s, t))
    checks.append(_trained_check(s))
    return checks


def _classes_check(s: dict[str, Any], t: dict[str, Any]) -> Check:
    """Fails when the model ``s`` never finds a class (``verdict.collapsed_classes``), saying whether the teacher ``t``
    does."""
    if not s.get("per_class"):
        return Check("Classes the model never finds", NOT_MEASURED, None, 0, "no per-class figures: re-run `evaluate`")
    lost = collapsed_classes(s["per_class"])
    lost_t = collapsed_classes(t["per_class"]) if t.get("per_class") else []
    if not lost:
        evidence = f"every class with test texts is found (test F1 above {COLLAPSED_F1:g} for each)"
    else:
        shared = [c for c in lost if c in lost_t]
        evidence = (f"never or almost never predicted: {', '.join(lost)} (test F1 at most {COLLAPSED_F1:g})"
                    + (f"; the teacher misses {', '.join(shared)} too" if shared else "; the teacher finds them")
                    + ". More labelled rows of those classes, or --class-weights balanced, are the usual fixes")
    return Check("Classes the model never finds", FAIL if lost else PASS, float(len(lost)), 0, evidence)


def _trained_check(s: dict[str, Any]) -> Check:
    """Fails when the model's validation curve was still rising when its training ended: a longer run would likely
    ship a better model."""
    v = _get(s, "training", "validation")
    name = "Trained until validation stopped improving"
    if not v:
        return Check(name, NOT_MEASURED, None, 0, "no validation curve recorded for this model: re-train the run")
    tail = ", ".join(f"{x:.3f}" for _, x in v["evaluations"][-4:])
    if v.get("still_improving"):
        return Check(name, FAIL, None, 0, f"still rising at its last evaluations ({tail}, step {v['steps_trained']} of "
                     f"{v['cap_steps']}): train it longer with early stopping on")
    how = "stopped early by its patience" if v.get("stopped_early") else "flat at its end"
    return Check(name, PASS, None, 0, f"best at step {v['best_step']} of {v['steps_trained']}, {how} ({tail})")


def with_unit(value: float | None, unit: str) -> str:
    """``1.32 points``, ``97.0%``, ``1.92x``, ``2``: a check's figure as the tables show it."""
    if value is None:
        return "-"
    if unit == "%":
        return f"{value:.1f}%"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "points":
        return f"{value:.2f} points"
    return f"{value:g}"


def threshold_words(c: Check) -> str:
    """``at most 1 point``, ``at least 95%``, ``at least 1.5x``: the threshold in the check's units."""
    side = "at least" if c.unit in ("%", "x") else "at most"
    return f"{side} {with_unit(c.threshold, c.unit)}"


def format_checks(checks: Sequence[Check]) -> str:
    """The checks as the ``check`` command prints them, then the overall answer."""
    lines = []
    for c in checks:
        figure = "" if c.value is None and c.threshold == 0 else (
            f" {with_unit(c.value, c.unit)} (threshold {threshold_words(c)})")
        lines.append(f"{c.state.upper():<13} {c.name}:{figure}; {c.evidence}")
    return "\n".join(lines)


DECISION_WORDS = {READY: "Ready to ship. Every check passes.",
                  NOT_READY: "Not ready: a check fails.",
                  NOT_ENOUGH: "Not enough evidence: no check fails, but one is inconclusive (its 95% interval straddles "
                              "the threshold) or not measured."}
