"""Model behaviour tests on the course churn pipeline: invariance, directional, minimum functionality.

Metrics say how often a model is right; behaviour tests say whether it is right *for the right
reasons* (the taxonomy is Ribeiro et al.'s CheckList, as Made-With-ML applies it):

- **invariance**: changing what must not matter (the customer id, the sign-up date once tenure
  is known, the customer's acquisition channel) leaves the score unchanged;
- **directional**: more support tickets or more failed payments raise the churn probability
  (the dataset's true churn model says so, ``course_utils.datasets.CHURN_MODEL``);
- **minimum functionality**: clear-cut customers are classified right.

The model is ``course_utils.models.churn_pipeline`` trained on the reference window of the ci
dataset (a few seconds). Lesson 04e runs these as the pyramid's model layer and then proves a
check can fail: with ``COURSE_BEHAVIOUR_DROP_FEATURE=<numeric feature>`` the pipeline is trained
with that feature blanked out (a release that lost a feature), and the matching directional
test must fail.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from course_utils.datasets import dataset_paths, ensure_datasets, snapshot_features
from course_utils.features import NUMERIC_FEATURES
from course_utils.models import LABEL, churn_pipeline, feature_frame, reference_window

BROKEN_FEATURE_VARIABLE = "COURSE_BEHAVIOUR_DROP_FEATURE"
SEED = 42


def _blank(column: str):
    """A transformer that sets ``column`` to 0: the model never sees the feature."""

    def blank(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(**{column: 0.0})

    return FunctionTransformer(blank)


def behaviour_pipeline(drop_feature: str | None = None) -> Pipeline:
    """The course churn pipeline, optionally with one numeric feature blanked before it (the broken release)."""
    pipeline = churn_pipeline(SEED, n_estimators=50, max_depth=8)
    if not drop_feature:
        return pipeline
    if drop_feature not in NUMERIC_FEATURES:
        raise ValueError(f"{BROKEN_FEATURE_VARIABLE}={drop_feature!r} is not a numeric feature; use one of {NUMERIC_FEATURES}.")
    return Pipeline([("drop", _blank(drop_feature)), *pipeline.steps])


@pytest.fixture(scope="module")
def snapshots(course_settings) -> pd.DataFrame:
    """Month-end snapshots of the reference window with their features and label."""
    paths = dataset_paths(ensure_datasets(course_settings))
    start, end = reference_window()
    months = pd.read_csv(paths.customer_months)
    months = months[months["snapshot_date"].between(start, end)].reset_index(drop=True)
    events = pd.concat([pd.read_csv(path) for path in sorted(paths.events_dir.glob("2025-0[1-6]-*.csv"))], ignore_index=True)
    frame = snapshot_features(events, pd.read_csv(paths.customers), months)
    frame[LABEL] = months[LABEL].to_numpy()
    return frame


@pytest.fixture(scope="module")
def model(snapshots: pd.DataFrame) -> Pipeline:
    drop_feature = os.environ.get(BROKEN_FEATURE_VARIABLE) or None
    return behaviour_pipeline(drop_feature).fit(feature_frame(snapshots), snapshots[LABEL])


@pytest.fixture(scope="module")
def typical(snapshots: pd.DataFrame) -> pd.DataFrame:
    """Customers of the last reference snapshot, one row each."""
    return snapshots[snapshots["snapshot_date"] == snapshots["snapshot_date"].max()].reset_index(drop=True)


def churn_probability(model: Pipeline, rows: pd.DataFrame) -> np.ndarray:
    return model.predict_proba(feature_frame(rows))[:, 1]


# --- invariance --------------------------------------------------------------------------


def test_invariance_customer_id(model: Pipeline, typical: pd.DataFrame) -> None:
    relabelled = typical.assign(customer_id=typical["customer_id"].to_numpy()[::-1] + 10_000_000)
    assert np.array_equal(churn_probability(model, typical), churn_probability(model, relabelled))


def test_invariance_fields_outside_the_features(model: Pipeline, typical: pd.DataFrame) -> None:
    """The sign-up date (tenure already carries it), snapshot date and acquisition channel must not move a score."""
    changed = typical.assign(signup_date=np.datetime64("2020-01-01"), snapshot_date=np.datetime64("2030-01-01"),
                             acquisition_channel="partner_bundle")
    assert np.array_equal(churn_probability(model, typical), churn_probability(model, changed))


def test_invariance_row_order(model: Pipeline, typical: pd.DataFrame) -> None:
    shuffled = typical.sample(frac=1.0, random_state=SEED)
    by_position = pd.Series(churn_probability(model, shuffled), index=shuffled.index).sort_index()
    assert np.array_equal(by_position.to_numpy(), churn_probability(model, typical))


# --- directional -------------------------------------------------------------------------


def _assert_raises_churn(model: Pipeline, typical: pd.DataFrame, column: str, extra: int) -> None:
    before = churn_probability(model, typical)
    after = churn_probability(model, typical.assign(**{column: typical[column] + extra}))
    rise = after - before
    assert rise.mean() > 0.05, f"{extra} more {column}: mean churn probability moved by {rise.mean():+.4f}"
    assert (rise > 0).mean() > 0.5, f"{extra} more {column}: probability rose for only {(rise > 0).mean():.0%} of customers"
    # A forest is not monotone: a few customers may move the other way, but not many.
    assert (rise < -0.05).mean() < 0.10, f"{extra} more {column}: probability fell clearly for {(rise < -0.05).mean():.0%}"


def test_directional_more_support_tickets_raise_churn(model: Pipeline, typical: pd.DataFrame) -> None:
    _assert_raises_churn(model, typical, "support_tickets_28d", 3)


def test_directional_more_payment_failures_raise_churn(model: Pipeline, typical: pd.DataFrame) -> None:
    _assert_raises_churn(model, typical, "payment_failures_28d", 2)


# --- minimum functionality ---------------------------------------------------------------


def _customer(**overrides) -> dict:
    base = {"active_days_28d": 20, "sessions_28d": 30, "minutes_watched_28d": 1200.0, "support_tickets_28d": 0,
            "payment_failures_28d": 0, "tenure_months": 36, "age": 40, "monthly_fee": 13.99, "country": "US",
            "plan": "standard"}
    return {**base, **overrides}


def test_minimum_functionality_clear_cut_customers(model: Pipeline) -> None:
    """Loyal, active, trouble-free customers stay; new, inactive customers with failed payments leave."""
    loyal = pd.DataFrame([_customer(active_days_28d=28, sessions_28d=45, plan="premium", monthly_fee=19.99),
                          _customer(active_days_28d=26, tenure_months=60, country="DE", monthly_fee=13.29)])
    leaving = pd.DataFrame([_customer(active_days_28d=1, sessions_28d=1, minutes_watched_28d=30.0, support_tickets_28d=3,
                                      payment_failures_28d=2, tenure_months=1, plan="basic", monthly_fee=7.99),
                            _customer(active_days_28d=2, sessions_28d=2, minutes_watched_28d=60.0, support_tickets_28d=4,
                                      payment_failures_28d=3, tenure_months=2, country="BR", plan="basic", monthly_fee=4.39)])
    assert (model.predict(feature_frame(loyal)) == 0).all(), churn_probability(model, loyal)
    assert (model.predict(feature_frame(leaving)) == 1).all(), churn_probability(model, leaving)


def test_a_broken_feature_name_is_refused() -> None:
    with pytest.raises(ValueError, match="'tickets' is not a numeric feature"):
        behaviour_pipeline("tickets")
