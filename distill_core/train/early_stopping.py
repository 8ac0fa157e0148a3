"""Early stopping on a validation metric, and the question the verdict asks of every curve: was it still rising?

    stopper = EarlyStopping(patience=3)
    for step, value in evaluations:            # validation accuracy or macro-F1, higher is better
        if stopper.update(step, value):        # True: a new best, keep this checkpoint
            best_state = snapshot(model)
        if stopper.should_stop:
            break
    stopper.summary(cap_steps=342)             # {"best_step", "best", "evaluations", "stopped_early", "still_improving", ...}

``still_improving(values)`` is the check behind "inconclusive: the baseline was still improving when it stopped":
the last evaluation beats every earlier one by at least ``RISING_MIN_GAIN``. A model stopped by its patience has, by
definition, stopped improving; a model stopped by its cap (``--epochs``) with its best at the very end has not.
Pure Python, no torch, so the rule is tested on scripted sequences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

# Half a point of accuracy or macro-F1: a rise smaller than this over the last evaluation is within the noise of a
# few hundred validation texts (one text in 200), and is not taken as "still improving".
RISING_MIN_GAIN = 0.005
DEFAULT_PATIENCE = 3  # evaluations without a new best before training stops


def still_improving(values: Sequence[float], min_gain: float = RISING_MIN_GAIN) -> bool:
    """Whether a validation curve was still rising when it ended: its last value beats the best of the earlier
    ones by at least ``min_gain``. A curve of one evaluation says nothing either way (False)."""
    values = [float(v) for v in values]
    if len(values) < 2:
        return False
    return values[-1] >= max(values[:-1]) + min_gain


@dataclass
class EarlyStopping:
    """Tracks the best value of a higher-is-better metric and how many evaluations have passed without a new best.

    Args:
        patience: evaluations without improvement before ``should_stop``; None keeps training to the cap (the
            best step is still tracked and restored).
        min_delta: how much a value must beat the best by to count as a new best.
    """

    patience: int | None = DEFAULT_PATIENCE
    min_delta: float = 0.0
    history: list[tuple[int, float]] = field(default_factory=list)  # (step, value) per evaluation
    best: float = float("-inf")
    best_step: int = 0
    bad_evals: int = 0

    def update(self, step: int, value: float) -> bool:
        """Record one evaluation; True when it is a new best (the caller keeps this checkpoint)."""
        self.history.append((int(step), float(value)))
        if value > self.best + self.min_delta or not self.history[:-1]:
            self.best, self.best_step, self.bad_evals = float(value), int(step), 0
            return True
        self.bad_evals += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_evals >= self.patience

    def summary(self, cap_steps: int, steps: int) -> dict[str, Any]:
        """What the run records for this model: the best step of at most ``cap_steps``, the ``steps`` trained,
        whether patience ended it, and whether its curve was still rising at the end."""
        stopped = self.should_stop and steps < cap_steps
        return {"best_step": self.best_step, "best_value": None if not self.history else round(self.best, 6),
                "steps_trained": int(steps), "cap_steps": int(cap_steps), "stopped_early": bool(stopped),
                "patience": self.patience, "evaluations": [[s, round(v, 6)] for s, v in self.history],
                "still_improving": (not stopped) and still_improving([v for _, v in self.history])}
