"""Ready to ship? The user's release thresholds against what the run measured, each check with its evidence.

    checks = ship_checks(results, bench, ShipConfig(max_drop=1.0, min_agreement=0.95))
    print(format_checks(checks))                 # what `python -m distill_core check RUN` prints
    any(c.passed is not True for c in checks)    # exit code 3: a check failed or was not measured

Pure functions of the run's JSON documents (``results.json``, ``bench.json``); the Overview page shows the same checks
with the thresholds editable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

from ..config import ShipConfig
from .verdict import COLLAPSED_F1, collapsed_classes


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
                            f"; mean KL(teacher || {model}) {fid['mean_kl']:.3f} nats" if "mean_kl" in fid else "")
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
    checks.append(_classes_check(s, t))
    checks.append(_trained_check(s))
    return checks


def _classes_check(s: dict[str, Any], t: dict[str, Any]) -> Check:
    """Fails when the model ``s`` never finds a class (``verdict.collapsed_classes``), saying whether the teacher ``t``
    does."""
    if not s.get("per_class"):
        return Check("Classes the model never finds", None, None, 0, "no per-class figures: re-run `evaluate`")
    lost = collapsed_classes(s["per_class"])
    lost_t = collapsed_classes(t["per_class"]) if t.get("per_class") else []
    if not lost:
        evidence = f"every class with test texts is found (test F1 above {COLLAPSED_F1:g} for each)"
    else:
        shared = [c for c in lost if c in lost_t]
        evidence = (f"never or almost never predicted: {', '.join(lost)} (test F1 at most {COLLAPSED_F1:g})"
                    + (f"; the teacher misses {', '.join(shared)} too" if shared else "; the teacher finds them")
                    + ". More labelled rows of those classes, or --class-weights balanced, are the usual fixes")
    return Check("Classes the model never finds", not lost, float(len(lost)), 0, evidence)


def _trained_check(s: dict[str, Any]) -> Check:
    """Fails when the model's validation curve was still rising when its training ended: a longer run would likely
    ship a better model."""
    v = _get(s, "training", "validation")
    name = "Trained until validation stopped improving"
    if not v:
        return Check(name, None, None, 0, "no validation curve recorded for this model: re-train the run")
    tail = ", ".join(f"{x:.3f}" for _, x in v["evaluations"][-4:])
    if v.get("still_improving"):
        return Check(name, False, None, 0, f"still rising at its last evaluations ({tail}, step {v['steps_trained']} of "
                     f"{v['cap_steps']}): train it longer with early stopping on")
    how = "stopped early by its patience" if v.get("stopped_early") else "flat at its end"
    return Check(name, True, None, 0, f"best at step {v['best_step']} of {v['steps_trained']}, {how} ({tail})")


def format_checks(checks: Sequence[Check]) -> str:
    """The checks as the ``check`` command prints them."""
    lines = []
    for c in checks:
        state = "not measured" if c.passed is None else ("PASS" if c.passed else "FAIL")
        value = "" if c.value is None and c.threshold == 0 else (
            " " + ("-" if c.value is None else f"{c.value:.3g}") + f" (threshold {c.threshold:g})")
        lines.append(f"{state:<13} {c.name}:{value}; {c.evidence}")
    return "\n".join(lines)
