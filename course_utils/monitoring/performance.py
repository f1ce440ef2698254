"""Performance without labels: the accuracy a calibrated classifier should reach on its own scores.

When the labels of new data arrive late, a calibrated binary classifier still tells how often
it should be right: if it says "positive with probability p" and predicts the likelier class,
it is right with probability ``max(p, 1 - p)``. The mean of that over a batch is the batch's
expected accuracy; when the labels arrive, the measured accuracy should match it, and a gap
means the model is no longer calibrated on this data (concept drift).

Example:
    >>> expected_accuracy([0.9, 0.2, 0.5])
    0.7333333333333334
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["expected_accuracy"]


def expected_accuracy(scores: ArrayLike) -> float:
    """Mean of ``max(p, 1 - p)`` over positive-class probabilities ``scores``.

    Raises:
        ValueError: when ``scores`` is empty, not one-dimensional, or holds a value outside
            [0, 1] (NaN included); the message names the first bad value.
    """
    probabilities = np.asarray(scores, dtype=float)
    if probabilities.ndim != 1 or probabilities.size == 0:
        raise ValueError(
            f"scores must be a non-empty 1-D array of positive-class probabilities, got shape {probabilities.shape}"
        )
    outside = ~((probabilities >= 0) & (probabilities <= 1))  # NaN fails both comparisons
    if outside.any():
        index = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"scores must be probabilities in [0, 1]; scores[{index}] is {float(probabilities[index])!r} "
            f"({int(outside.sum())} bad value(s)): pass predict_proba(...)[:, 1], not labels or logits"
        )
    return float(np.mean(np.maximum(probabilities, 1 - probabilities)))
