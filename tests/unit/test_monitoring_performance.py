"""Performance without labels: the expected accuracy of a calibrated binary classifier."""

from __future__ import annotations

import numpy as np
import pytest

from course_utils.monitoring import expected_accuracy


def test_expected_accuracy_is_the_mean_of_the_likelier_class_probability() -> None:
    assert expected_accuracy([0.9, 0.2, 0.5]) == pytest.approx((0.9 + 0.8 + 0.5) / 3, rel=1e-15)
    assert expected_accuracy(np.array([0.0, 1.0])) == 1.0


def test_expected_accuracy_matches_the_accuracy_of_calibrated_labels() -> None:
    """Labels drawn with the scores' own probabilities: measured accuracy meets the expectation."""
    rng = np.random.default_rng(3)
    scores = rng.beta(2, 2, 200_000)
    labels = rng.random(scores.size) < scores
    measured = np.mean((scores >= 0.5) == labels)
    assert measured == pytest.approx(expected_accuracy(scores), abs=0.005)
    # Miscalibrated (labels no longer follow the scores): the gap shows.
    assert np.mean((scores >= 0.5) == (rng.random(scores.size) < 0.5)) < expected_accuracy(scores) - 0.1


NOT_A_1D_ARRAY = "scores must be a non-empty 1-D array of positive-class probabilities, got shape "
NOT_PROBABILITIES = "scores must be probabilities in [0, 1]; "
USE_PREDICT_PROBA = ": pass predict_proba(...)[:, 1], not labels or logits"


@pytest.mark.parametrize(
    ("scores", "message"),
    [
        ([], NOT_A_1D_ARRAY + "(0,)"),
        ([[0.2, 0.8]], NOT_A_1D_ARRAY + "(1, 2)"),
        ([0.2, 1.5, -1.0], NOT_PROBABILITIES + "scores[1] is 1.5 (2 bad value(s))" + USE_PREDICT_PROBA),
        ([0.2, np.nan], NOT_PROBABILITIES + "scores[1] is nan (1 bad value(s))" + USE_PREDICT_PROBA),
    ],
)
def test_expected_accuracy_refuses_what_is_not_probabilities(scores: list, message: str) -> None:
    with pytest.raises(ValueError) as error:
        expected_accuracy(scores)
    assert str(error.value) == message
