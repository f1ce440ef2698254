"""The drift-by-construction windows of lesson 04a: each window changes what its plan says and nothing else."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from course_utils.monitoring.drift_data import (
    CONCEPT_MODEL,
    INPUTS,
    LABEL,
    MINUTES_FACTOR,
    REFERENCE_MODEL,
    WINDOW_PLAN,
    drift_windows,
    make_rows,
    true_churn_probability,
    true_model_for,
)


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    return drift_windows(seed=7, reference_rows=40_000, window_rows=20_000)


def test_same_seed_same_rows_and_windows_independent_of_sizes() -> None:
    first_reference, first = drift_windows(seed=3, reference_rows=300, window_rows=200)
    second_reference, second = drift_windows(seed=3, reference_rows=300, window_rows=200)
    pd.testing.assert_frame_equal(first_reference, second_reference)
    for name in first:
        pd.testing.assert_frame_equal(first[name], second[name])
    _, longer = drift_windows(seed=3, reference_rows=900, window_rows=200)
    pd.testing.assert_frame_equal(first["week_04"], longer["week_04"])  # a window has its own stream
    assert list(first) == [spec.name for spec in WINDOW_PLAN]
    assert list(first_reference.columns) == [*INPUTS, LABEL] and first_reference[LABEL].dtype == bool


def test_plan_injects_each_kind_once_and_leaves_clean_windows() -> None:
    kinds = [spec.kind for spec in WINDOW_PLAN]
    assert sorted(k for k in kinds if k != "none") == ["concept", "feature", "label", "prediction"]
    assert kinds.count("none") >= 3


def test_only_the_feature_window_moves_minutes_and_has_missing_values(data) -> None:
    reference, windows = data
    reference_mean = reference["minutes_per_session"].mean()
    for spec in WINDOW_PLAN:
        window = windows[spec.name]
        ratio = window["minutes_per_session"].mean() / reference_mean
        missing = window[list(INPUTS)].isna().sum().sum()
        if spec.kind == "feature":
            assert ratio == pytest.approx(MINUTES_FACTOR, rel=0.02)
            assert window["minutes_per_session"].isna().mean() == pytest.approx(0.05, abs=0.01)
        else:
            assert ratio == pytest.approx(1.0, rel=0.02) and missing == 0, spec.name
        for column in ("tenure_months", "sessions_28d", "support_tickets_28d"):
            assert window[column].mean() == pytest.approx(reference[column].mean(), rel=0.03), (spec.name, column)


def test_only_the_label_window_moves_the_churn_rate(data) -> None:
    reference, windows = data
    for spec in WINDOW_PLAN:
        difference = windows[spec.name][LABEL].mean() - reference[LABEL].mean()
        if spec.kind == "label":
            assert difference > 0.15
        else:
            assert abs(difference) < 0.015, spec.name


def test_concept_model_keeps_the_churn_rate_and_flips_tickets() -> None:
    rows = make_rows(np.random.default_rng(11), 400_000)
    reference_rate = true_churn_probability(rows, REFERENCE_MODEL).mean()
    assert true_churn_probability(rows, CONCEPT_MODEL).mean() == pytest.approx(reference_rate, abs=0.002)
    assert CONCEPT_MODEL.tickets == -REFERENCE_MODEL.tickets
    assert true_model_for("feature") == true_model_for("prediction") == true_model_for("none") == REFERENCE_MODEL


def test_concept_window_changes_the_tickets_relationship(data) -> None:
    reference, windows = data
    concept = windows["week_05"]
    by_tickets = lambda frame: frame.groupby(frame["support_tickets_28d"] > 0)[LABEL].mean()  # noqa: E731
    assert by_tickets(reference)[True] > by_tickets(reference)[False] + 0.15
    assert by_tickets(concept)[True] < by_tickets(concept)[False] - 0.15


def test_minutes_do_not_enter_the_true_model() -> None:
    rows = make_rows(np.random.default_rng(5), 100)
    changed = rows.assign(minutes_per_session=np.nan)
    np.testing.assert_array_equal(true_churn_probability(rows), true_churn_probability(changed))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: drift_windows(seed=-1), "seed=-1 should be a whole number of 0 or more, e.g. seed=42"),
        (lambda: drift_windows(seed=True), "seed=True should be a whole number of 0 or more, e.g. seed=42"),
        (lambda: make_rows(np.random.default_rng(0), 0), "rows=0 should be a whole number of 1 or more"),
        (lambda: make_rows(np.random.default_rng(0), 10, "seasonal"), "unknown drift kind 'seasonal'; use one of none, feature, label, prediction, concept"),
    ],
)
def test_bad_arguments_are_named(call, message: str) -> None:
    with pytest.raises(ValueError) as error:
        call()
    assert str(error.value) == message
