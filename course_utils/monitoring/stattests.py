"""Drift tests as small pure functions on scipy/numpy, each described and registered by name.

Every test compares a reference sample with a current one (missing values already dropped)
and returns a :class:`DriftResult`: the statistic, its p-value when it has one, the threshold
and the verdict. A :class:`DriftTest` descriptor gives each function a name, the column
types it accepts (``"num"``, ``"cat"``) and a default threshold; :data:`DRIFT_TESTS` maps the
names to them, the way evidently's ``legacy/calculations/stattests/registry.py`` does.

====================  ========  =========  ==============================================
name                  columns   threshold  drifted when
====================  ========  =========  ==============================================
``ks``                num       0.05       p-value <= threshold (two-sided K-S)
``mannw``             num       0.05       p-value < threshold (two-sided Mann-Whitney U)
``levene``            num       0.05       p-value < threshold (spread differs)
``wasserstein``       num       0.1        distance / std(reference) >= threshold
``psi``               num, cat  0.1        PSI >= threshold
``jensenshannon``     num, cat  0.1        distance >= threshold (natural log)
``chisquare``         cat       0.05       p-value < threshold (current vs reference shares)
``chi2_contingency``  cat       0.05       p-value < threshold (2 x k table of counts)
====================  ========  =========  ==============================================

``ks``, ``psi``, ``jensenshannon``, ``wasserstein`` and ``chisquare`` give the numbers
evidently 0.7.23 gives (``tests/unit/data/drift_evidently_reference.json``). Two differences
on purpose: ``mannw`` is two-sided (evidently's is one-sided, ``alternative="less"``), and
``chi2_contingency`` (not in evidently) is the test of homogeneity on the 2 x k table, which
counts the reference as a sample too; ``chisquare`` treats the reference shares as known.

Documented results on awkward input:

- a category only one sample has counts 0 in the other; if the reference lacks it,
  ``chisquare``'s statistic is ``inf`` and its p-value 0 (drifted);
- one category in both samples: ``chisquare`` and ``chi2_contingency`` give statistic 0 and
  p-value 1 (nothing can have changed);
- a constant reference: ``wasserstein`` divides by 0.001 instead of 0, as evidently does;
- both samples constant: ``levene`` raises ``ValueError`` (its statistic is 0/0).

Example:
    >>> result = ks_test([1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0])
    >>> result.statistic, round(result.p_value, 3), result.drifted
    (0.5, 0.771, False)
    >>> sorted(DRIFT_TESTS["psi"].column_types), DRIFT_TESTS["psi"].default_threshold
    (['cat', 'num'], 0.1)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats
from scipy.spatial import distance

from course_utils.monitoring.binning import ColumnType, binned_shares

__all__ = [
    "DRIFT_TESTS",
    "DriftResult",
    "DriftTest",
    "chi2_contingency_test",
    "chisquare_test",
    "get_drift_test",
    "jensenshannon_distance",
    "ks_test",
    "levene_test",
    "mann_whitney_test",
    "psi",
    "wasserstein_normed",
]

P_VALUE_THRESHOLD = 0.05
DISTANCE_THRESHOLD = 0.1
WASSERSTEIN_MIN_NORM = 0.001  # evidently's floor for std(reference), so a constant reference still divides


@dataclass(frozen=True)
class DriftResult:
    """The outcome of one drift test: ``p_value`` is ``None`` for a distance."""

    statistic: float
    p_value: float | None
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftTest:
    """A drift test's name, the column types it accepts, its default threshold and function.

    ``binned`` tests (PSI, Jensen-Shannon) bin by column type, so they receive it.
    Call the descriptor to run its function with the default or a given threshold.
    """

    name: str
    description: str
    column_types: frozenset[ColumnType]
    default_threshold: float
    has_p_value: bool
    function: Callable[..., DriftResult]
    binned: bool = False

    def __call__(
        self, reference: ArrayLike, current: ArrayLike, column_type: ColumnType, threshold: float | None = None
    ) -> DriftResult:
        if column_type not in self.column_types:
            accepted = ", ".join(sorted(self.column_types))
            raise ValueError(f"drift test {self.name!r} accepts {accepted} columns, not {column_type!r}")
        keywords: dict[str, object] = {"threshold": self.default_threshold if threshold is None else threshold}
        if self.binned:
            keywords["column_type"] = column_type
        return self.function(reference, current, **keywords)


def ks_test(reference: ArrayLike, current: ArrayLike, *, threshold: float = P_VALUE_THRESHOLD) -> DriftResult:
    """Two-sample Kolmogorov-Smirnov: the largest gap between the two empirical CDFs."""
    result = stats.ks_2samp(_numeric(reference, "reference"), _numeric(current, "current"))
    return _p_value_result(result.statistic, result.pvalue, threshold, drifted=result.pvalue <= threshold)


def mann_whitney_test(reference: ArrayLike, current: ArrayLike, *, threshold: float = P_VALUE_THRESHOLD) -> DriftResult:
    """Two-sided Mann-Whitney U: is a value from one sample typically larger than from the other?"""
    reference_values, current_values = _numeric(reference, "reference"), _numeric(current, "current")
    result = stats.mannwhitneyu(reference_values, current_values, alternative="two-sided")
    return _p_value_result(result.statistic, result.pvalue, threshold, drifted=result.pvalue < threshold)


def levene_test(reference: ArrayLike, current: ArrayLike, *, threshold: float = P_VALUE_THRESHOLD) -> DriftResult:
    """Levene's test (median-centred, scipy's default): has the spread changed?"""
    reference_values, current_values = _numeric(reference, "reference"), _numeric(current, "current")
    if np.ptp(reference_values) == 0 and np.ptp(current_values) == 0:
        raise ValueError(
            "Levene's test is undefined when both samples are constant (its statistic is 0/0): "
            "compare the two values directly, or use 'ks'"
        )
    result = stats.levene(reference_values, current_values)
    return _p_value_result(result.statistic, result.pvalue, threshold, drifted=result.pvalue < threshold)


def wasserstein_normed(
    reference: ArrayLike, current: ArrayLike, *, threshold: float = DISTANCE_THRESHOLD
) -> DriftResult:
    """Wasserstein-1 distance in units of the reference's (population) standard deviation."""
    reference_values, current_values = _numeric(reference, "reference"), _numeric(current, "current")
    norm = max(float(np.std(reference_values)), WASSERSTEIN_MIN_NORM)
    value = stats.wasserstein_distance(reference_values, current_values) / norm
    return DriftResult(statistic=float(value), p_value=None, threshold=threshold, drifted=bool(value >= threshold))


def psi(
    reference: ArrayLike, current: ArrayLike, *, column_type: ColumnType = "num", threshold: float = DISTANCE_THRESHOLD
) -> DriftResult:
    """Population stability index: sum over bins of (ref - cur) * ln(ref / cur), empty bins filled."""
    reference_values, current_values = (
        _sample(reference, "reference", column_type),
        _sample(current, "current", column_type),
    )
    reference_shares, current_shares = binned_shares(reference_values, current_values, column_type)
    value = float(np.sum((reference_shares - current_shares) * np.log(reference_shares / current_shares)))
    return DriftResult(statistic=value, p_value=None, threshold=threshold, drifted=value >= threshold)


def jensenshannon_distance(
    reference: ArrayLike, current: ArrayLike, *, column_type: ColumnType = "num", threshold: float = DISTANCE_THRESHOLD
) -> DriftResult:
    """Jensen-Shannon distance (natural log, between 0 and sqrt(ln 2)) of the binned shares."""
    reference_values, current_values = (
        _sample(reference, "reference", column_type),
        _sample(current, "current", column_type),
    )
    reference_shares, current_shares = binned_shares(reference_values, current_values, column_type, fill_empty=False)
    value = float(distance.jensenshannon(reference_shares, current_shares))
    return DriftResult(statistic=value, p_value=None, threshold=threshold, drifted=value >= threshold)


def chisquare_test(reference: ArrayLike, current: ArrayLike, *, threshold: float = P_VALUE_THRESHOLD) -> DriftResult:
    """Chi-square goodness of fit: current counts against the reference shares scaled to the current size."""
    reference_counts, current_counts = _category_counts(reference, current)
    if len(reference_counts) == 1:
        return _p_value_result(0.0, 1.0, threshold, drifted=False)  # scipy gives NaN: zero degrees of freedom
    expected = reference_counts * (current_counts.sum() / reference_counts.sum())
    with np.errstate(divide="ignore"):  # a category new in current: expected 0, statistic inf, p-value 0
        result = stats.chisquare(current_counts, expected)
    return _p_value_result(result.statistic, result.pvalue, threshold, drifted=result.pvalue < threshold)


def chi2_contingency_test(
    reference: ArrayLike, current: ArrayLike, *, threshold: float = P_VALUE_THRESHOLD
) -> DriftResult:
    """Chi-square test of homogeneity on the 2 x k table of counts (Yates-corrected when k == 2, as scipy does)."""
    reference_counts, current_counts = _category_counts(reference, current)
    result = stats.chi2_contingency(np.vstack([reference_counts, current_counts]))
    return _p_value_result(result.statistic, result.pvalue, threshold, drifted=result.pvalue < threshold)


def get_drift_test(name: str) -> DriftTest:
    """The registered test called ``name``; ``ValueError`` lists the names when there is none."""
    try:
        return DRIFT_TESTS[name]
    except KeyError:
        raise ValueError(f"unknown drift test {name!r}; registered tests: {', '.join(DRIFT_TESTS)}") from None


def _p_value_result(statistic: float, p_value: float, threshold: float, *, drifted: bool) -> DriftResult:
    return DriftResult(statistic=float(statistic), p_value=float(p_value), threshold=threshold, drifted=bool(drifted))


def _numeric(values: ArrayLike, which: str) -> np.ndarray:
    """A 1-D float array with at least one value, none missing or infinite."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"the {which} sample must be one-dimensional, got shape {array.shape}")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"the {which} sample must be numeric, got dtype {array.dtype}: this test is for num columns")
    array = array.astype(float)
    if array.size == 0:
        raise ValueError(f"the {which} sample is empty: a drift test needs at least one value in each sample")
    missing = int(np.isnan(array).sum())
    if missing:
        raise ValueError(f"the {which} sample has {missing} missing value(s): drop them first (drift_report does)")
    infinite = int(np.isinf(array).sum())
    if infinite:
        raise ValueError(f"the {which} sample has {infinite} infinite value(s): replace or drop them first")
    return array


def _sample(values: ArrayLike, which: str, column_type: ColumnType) -> pd.Series:
    """A checked sample: numeric checks for a num column; non-empty and no missing values for a cat one."""
    if column_type == "num":
        return pd.Series(_numeric(values, which))
    series = pd.Series(values)
    if series.empty:
        raise ValueError(f"the {which} sample is empty: a drift test needs at least one value in each sample")
    missing = int(series.isna().sum())
    if missing:
        raise ValueError(f"the {which} sample has {missing} missing value(s): drop them first (drift_report does)")
    return series


def _category_counts(reference: ArrayLike, current: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Checked counts of every category seen in either sample, aligned; absent categories count 0."""
    reference_values, current_values = _sample(reference, "reference", "cat"), _sample(current, "current", "cat")
    categories = pd.Index(pd.unique(pd.concat([reference_values, current_values], ignore_index=True)))
    return (
        reference_values.value_counts().reindex(categories, fill_value=0).to_numpy(dtype=float),
        current_values.value_counts().reindex(categories, fill_value=0).to_numpy(dtype=float),
    )


_NUM: frozenset[ColumnType] = frozenset({"num"})
_CAT: frozenset[ColumnType] = frozenset({"cat"})
_BOTH: frozenset[ColumnType] = frozenset({"num", "cat"})

DRIFT_TESTS: Mapping[str, DriftTest] = MappingProxyType(
    {
        test.name: test
        for test in (
            DriftTest("ks", "Kolmogorov-Smirnov", _NUM, P_VALUE_THRESHOLD, True, ks_test),
            DriftTest("mannw", "Mann-Whitney U", _NUM, P_VALUE_THRESHOLD, True, mann_whitney_test),
            DriftTest("levene", "Levene", _NUM, P_VALUE_THRESHOLD, True, levene_test),
            DriftTest(
                "wasserstein", "Wasserstein distance (normed)", _NUM, DISTANCE_THRESHOLD, False, wasserstein_normed
            ),
            DriftTest("psi", "Population stability index", _BOTH, DISTANCE_THRESHOLD, False, psi, binned=True),
            DriftTest(
                "jensenshannon",
                "Jensen-Shannon distance",
                _BOTH,
                DISTANCE_THRESHOLD,
                False,
                jensenshannon_distance,
                binned=True,
            ),
            DriftTest("chisquare", "chi-square goodness of fit", _CAT, P_VALUE_THRESHOLD, True, chisquare_test),
            DriftTest(
                "chi2_contingency",
                "chi-square on a contingency table",
                _CAT,
                P_VALUE_THRESHOLD,
                True,
                chi2_contingency_test,
            ),
        )
    }
)
