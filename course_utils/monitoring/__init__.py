"""Drift monitoring for module 04, hand-written on scipy and numpy because it is the lesson.

- :mod:`~course_utils.monitoring.summary`: summary statistics with percent change, missing values;
- :mod:`~course_utils.monitoring.stattests`: one pure function per drift test (K-S, Mann-Whitney U,
  Levene, Wasserstein, PSI, Jensen-Shannon, chi-square), each with a descriptor, registered by name;
- :mod:`~course_utils.monitoring.binning`: the common bins PSI and Jensen-Shannon compare on;
- :mod:`~course_utils.monitoring.report`: :func:`drift_report`, the monitor combining them per column type;
- :mod:`~course_utils.monitoring.performance`: :func:`expected_accuracy`, performance without labels.

The shapes follow evidently's ``legacy/calculations/stattests`` and the values agree with
evidently 0.7.23 where it has the same test (``tests/unit/test_monitoring_drift.py``).

Example:
    >>> import pandas as pd
    >>> reference = pd.DataFrame({"plan": ["basic"] * 50 + ["premium"] * 50})
    >>> current = pd.DataFrame({"plan": ["basic"] * 80 + ["premium"] * 20})
    >>> drift_report(reference, current)[["test", "drifted"]].to_dict("list")
    {'test': ['chi2_contingency', 'psi', 'jensenshannon'], 'drifted': [True, True, True]}
"""

from course_utils.monitoring.binning import ColumnType, binned_shares
from course_utils.monitoring.performance import expected_accuracy
from course_utils.monitoring.report import DEFAULT_TESTS, drift_report
from course_utils.monitoring.stattests import (
    DRIFT_TESTS,
    DriftResult,
    DriftTest,
    chi2_contingency_test,
    chisquare_test,
    get_drift_test,
    jensenshannon_distance,
    ks_test,
    levene_test,
    mann_whitney_test,
    psi,
    wasserstein_normed,
)
from course_utils.monitoring.summary import column_type, summary_statistics

__all__ = [
    "DEFAULT_TESTS",
    "DRIFT_TESTS",
    "ColumnType",
    "DriftResult",
    "DriftTest",
    "binned_shares",
    "chi2_contingency_test",
    "chisquare_test",
    "column_type",
    "drift_report",
    "expected_accuracy",
    "get_drift_test",
    "jensenshannon_distance",
    "ks_test",
    "levene_test",
    "mann_whitney_test",
    "psi",
    "summary_statistics",
    "wasserstein_normed",
]
