"""Monitoring windows with drift injected by construction, for lesson 04a.

A seeded generator of churn-like rows: a reference sample (what the model is trained and
validated on) and a sequence of current windows, each drawn from the same process except
for the one change listed in :data:`WINDOW_PLAN`:

==========  ==========  ================================================================
window      kind        what changes (and what does not)
==========  ==========  ================================================================
week_01     none        nothing
week_02     feature     ``minutes_per_session`` x1.5 and 5% of it missing; the true model
                        does not use it, so labels (P(y) and P(y|x)) are unchanged
week_03     none        nothing
week_04     label       churn base rate up (true model's intercept +1.1); inputs unchanged
week_05     concept     ``support_tickets_28d`` -> churn flips sign, intercept re-set so the
                        churn rate stays the reference's; inputs unchanged
week_06     prediction  nothing in the data: the *served* model is a faulty retrain (class
                        weights balanced), so predictions move while inputs and labels don't
week_07     none        nothing
==========  ==========  ================================================================

The labels come from a documented true logistic model (:func:`true_churn_probability`), so
a lesson can say why each monitor should or should not fire. The same seed and sizes give
identical frames; every window has its own random stream (``numpy.random.SeedSequence.spawn``),
so a window's rows do not depend on the size of the others.

Example:
    >>> reference, windows = drift_windows(seed=42, reference_rows=1_000, window_rows=500)
    >>> sorted(windows) == [w.name for w in WINDOW_PLAN], len(windows["week_02"])
    (True, 500)
    >>> {w.name: w.kind for w in WINDOW_PLAN if w.kind != "none"}
    {'week_02': 'feature', 'week_04': 'label', 'week_05': 'concept', 'week_06': 'prediction'}
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "CATEGORICAL_INPUTS",
    "DRIFT_KINDS",
    "INPUTS",
    "LABEL",
    "NUMERIC_INPUTS",
    "WINDOW_PLAN",
    "TrueModel",
    "WindowSpec",
    "drift_windows",
    "make_rows",
    "true_churn_probability",
    "true_model_for",
]

NUMERIC_INPUTS = ("tenure_months", "sessions_28d", "support_tickets_28d", "minutes_per_session")
CATEGORICAL_INPUTS = ("plan",)
INPUTS = NUMERIC_INPUTS + CATEGORICAL_INPUTS
LABEL = "churned"
DRIFT_KINDS = ("feature", "label", "prediction", "concept")

PLANS = ("basic", "standard", "premium")
PLAN_SHARES = (0.35, 0.45, 0.20)
MINUTES_FACTOR = 1.5  # the feature-drift window: autoplay makes sessions longer
MINUTES_MISSING_SHARE = 0.05  # ... and the new app version fails to report some of them
LABEL_DRIFT_INTERCEPT_SHIFT = 1.1  # the label-drift window: a competitor's cheaper offer


@dataclass(frozen=True)
class TrueModel:
    """P(churned) = sigmoid(intercept + tickets * support_tickets_28d + the fixed terms below).

    Fixed terms: -0.08 per session above 18, -0.04 per month of tenure above 18, +0.6 for plan
    basic and -0.6 for premium (against standard). ``minutes_per_session`` has no effect.
    """

    intercept: float
    tickets: float


REFERENCE_MODEL = TrueModel(intercept=-1.75, tickets=1.0)
# Tickets now lower churn (every ticket answered with a retention credit); the intercept, found by
# root finding on 2 million reference rows, keeps the mean churn rate at the reference's
# (``tests/unit/test_monitoring_drift_data.py`` checks it).
CONCEPT_MODEL = TrueModel(intercept=-0.2060, tickets=-1.0)
LABEL_MODEL = TrueModel(intercept=REFERENCE_MODEL.intercept + LABEL_DRIFT_INTERCEPT_SHIFT, tickets=1.0)


@dataclass(frozen=True)
class WindowSpec:
    """One current window: its name, the drift kind injected ("none" when clean) and what changes."""

    name: str
    kind: str
    changes: str


WINDOW_PLAN: tuple[WindowSpec, ...] = (
    WindowSpec("week_01", "none", "nothing"),
    WindowSpec(
        "week_02",
        "feature",
        f"minutes_per_session x{MINUTES_FACTOR} and {MINUTES_MISSING_SHARE:.0%} of it missing (the true model ignores it)",
    ),
    WindowSpec("week_03", "none", "nothing"),
    WindowSpec("week_04", "label", f"churn base rate up: true intercept +{LABEL_DRIFT_INTERCEPT_SHIFT}"),
    WindowSpec("week_05", "concept", "support tickets now lower churn; churn rate and inputs as in the reference"),
    WindowSpec("week_06", "prediction", "data as in the reference; the served model is a retrain with balanced class weights"),
    WindowSpec("week_07", "none", "nothing"),
)


def true_model_for(kind: str) -> TrueModel:
    """The true model that labels a window of drift kind ``kind`` ("none", "feature", ...)."""
    models = {"label": LABEL_MODEL, "concept": CONCEPT_MODEL}
    if kind not in ("none", *DRIFT_KINDS):
        raise ValueError(f"unknown drift kind {kind!r}; use one of none, {', '.join(DRIFT_KINDS)}")
    return models.get(kind, REFERENCE_MODEL)


def true_churn_probability(rows: pd.DataFrame, model: TrueModel = REFERENCE_MODEL) -> np.ndarray:
    """The probability of churn the generator labels ``rows`` with (missing minutes are irrelevant)."""
    plan_effect = np.select([rows["plan"] == "basic", rows["plan"] == "premium"], [0.6, -0.6], 0.0)
    logit = (
        model.intercept
        + model.tickets * rows["support_tickets_28d"].to_numpy(dtype=float)
        - 0.08 * (rows["sessions_28d"].to_numpy(dtype=float) - 18)
        - 0.04 * (rows["tenure_months"].to_numpy(dtype=float) - 18)
        + plan_effect
    )
    return 1 / (1 + np.exp(-logit))


def make_rows(rng: np.random.Generator, rows: int, kind: str = "none") -> pd.DataFrame:
    """``rows`` labelled rows of drift kind ``kind``: the inputs, then ``churned`` (bool)."""
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 1:
        raise ValueError(f"rows={rows!r} should be a whole number of 1 or more")
    model = true_model_for(kind)
    minutes = rng.gamma(4.0, 10.5, rows)  # mean 42 minutes per session
    frame = pd.DataFrame(
        {
            "tenure_months": rng.gamma(2.0, 9.0, rows),
            "sessions_28d": rng.poisson(18, rows).astype(float),
            "support_tickets_28d": rng.poisson(0.8, rows).astype(float),
            "minutes_per_session": minutes,
            "plan": rng.choice(PLANS, rows, p=PLAN_SHARES),
        }
    )
    churn_draws = rng.random(rows)  # drawn before the feature change so every kind uses as many numbers
    missing_draws = rng.random(rows)
    if kind == "feature":
        frame["minutes_per_session"] = np.where(missing_draws < MINUTES_MISSING_SHARE, np.nan, minutes * MINUTES_FACTOR)
    frame[LABEL] = churn_draws < true_churn_probability(frame, model)
    return frame


def drift_windows(
    seed: int = 42, reference_rows: int = 20_000, window_rows: int = 5_000
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The reference sample and every window of :data:`WINDOW_PLAN`, by name, in plan order.

    Prediction drift is not in the data (a window of kind "prediction" is drawn like the
    reference): the lesson injects it by serving another model on that window.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} should be a whole number of 0 or more, e.g. seed=42")
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(1 + len(WINDOW_PLAN))]
    reference = make_rows(streams[0], reference_rows)
    windows = {
        spec.name: make_rows(stream, window_rows, spec.kind if spec.kind != "prediction" else "none")
        for spec, stream in zip(WINDOW_PLAN, streams[1:])
    }
    return reference, windows
