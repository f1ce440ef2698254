"""The drift monitor: run the registered tests on every column and gather one table.

:func:`drift_report` runs, per column, the tests named for it (by default
:data:`DEFAULT_TESTS` for the column's type) and returns one row per (column, test).

- Missing values are dropped before testing (count them with ``summary_statistics``).
- p-value tests are Bonferroni-corrected across features: a test run on ``m`` columns
  compares each p-value with ``threshold / m``, so the chance of any false alarm over the
  ``m`` columns stays below ``threshold``. Distances keep their threshold.
- Input that would give a meaningless verdict raises ``ValueError`` naming the column and
  what to do: different column sets, an empty or all-missing column, infinite values, a
  column numeric in one frame and categorical in the other, a test that does not accept
  the column's type, or a test undefined on that data.

Example:
    >>> import pandas as pd
    >>> reference = pd.DataFrame({"age": [20.0, 30.0, 40.0, 50.0], "plan": ["a", "a", "b", "b"]})
    >>> current = pd.DataFrame({"age": [45.0, 55.0, 60.0, 70.0], "plan": ["a", "b", "b", "b"]})
    >>> report = drift_report(reference, current, tests={"age": ["ks", "wasserstein"], "plan": ["psi"]})
    >>> report[["column", "test", "drifted"]].to_dict("records")  # doctest: +NORMALIZE_WHITESPACE
    [{'column': 'age', 'test': 'ks', 'drifted': False},
     {'column': 'age', 'test': 'wasserstein', 'drifted': True},
     {'column': 'plan', 'test': 'psi', 'drifted': True}]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import numpy as np
import pandas as pd

from course_utils.monitoring.binning import ColumnType
from course_utils.monitoring.stattests import DriftTest, get_drift_test
from course_utils.monitoring.summary import check_same_columns, column_type

__all__ = ["DEFAULT_TESTS", "REPORT_COLUMNS", "drift_report"]

DEFAULT_TESTS: Mapping[ColumnType, tuple[str, ...]] = MappingProxyType(
    {
        "num": ("ks", "mannw", "levene", "wasserstein", "psi", "jensenshannon"),
        "cat": ("chi2_contingency", "psi", "jensenshannon"),
    }
)
REPORT_COLUMNS = ("column", "test", "statistic", "p_value", "threshold", "drifted")


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    tests: Mapping[str, Sequence[str | DriftTest]] | None = None,
    *,
    bonferroni: bool = True,
) -> pd.DataFrame:
    """One row per (column, test): ``column, test, statistic, p_value, threshold, drifted``.

    Args:
        reference: the data the model was trained or last validated on.
        current: the data to check, with the same columns.
        tests: column name -> test names (or :class:`DriftTest` objects, e.g. one with another
            ``default_threshold`` made by ``dataclasses.replace``); only these columns are
            tested. ``None`` runs :data:`DEFAULT_TESTS` on every column by its type.
        bonferroni: divide the threshold of p-value tests by the number of columns they run on.

    Returns:
        The report, rows in column order then test order; ``p_value`` is NaN for distances
        and ``threshold`` is the one actually applied.
    """
    check_same_columns(reference, current)
    plan = _plan(reference, current, tests)
    columns_per_test = Counter(test.name for column_tests in plan.values() for test in column_tests)
    rows = []
    for name, column_tests in plan.items():
        kind, reference_values, current_values = _column_samples(reference[name], current[name], name)
        for test in column_tests:
            threshold = test.default_threshold
            if bonferroni and test.has_p_value:
                threshold /= columns_per_test[test.name]
            try:
                result = test(reference_values, current_values, kind, threshold)
            except ValueError as error:
                raise ValueError(f"column {name!r}, test {test.name!r}: {error}") from error
            p_value = np.nan if result.p_value is None else result.p_value
            rows.append((name, test.name, result.statistic, p_value, result.threshold, result.drifted))
    return pd.DataFrame(rows, columns=list(REPORT_COLUMNS)).astype(
        {"statistic": float, "p_value": float, "threshold": float, "drifted": bool}
    )


def _plan(
    reference: pd.DataFrame, current: pd.DataFrame, tests: Mapping[str, Sequence[str | DriftTest]] | None
) -> dict[str, list[DriftTest]]:
    """Column -> the tests to run on it, each checked against the column's type."""
    if tests is None:
        requested: Mapping[str, Sequence[str | DriftTest]] = {
            name: DEFAULT_TESTS[_shared_type(reference[name], current[name], name)] for name in reference.columns
        }
    else:
        unknown = [name for name in tests if name not in reference.columns]
        if unknown:
            raise ValueError(f"tests names column(s) not in the data: {unknown}; columns: {list(reference.columns)}")
        requested = tests
    plan = {}
    for name, names in requested.items():
        if isinstance(names, str):
            raise TypeError(f"tests[{name!r}] must be a list of test names, got the string {names!r}")
        kind = _shared_type(reference[name], current[name], name)
        plan[name] = [_resolve(test, name, kind) for test in names]
    return plan


def _resolve(test: str | DriftTest, column: str, kind: ColumnType) -> DriftTest:
    try:
        resolved = test if isinstance(test, DriftTest) else get_drift_test(test)
    except ValueError as error:
        raise ValueError(f"column {column!r}: {error}") from None
    if kind not in resolved.column_types:
        accepted = ", ".join(sorted(resolved.column_types))
        raise ValueError(
            f"column {column!r} is {kind} but drift test {resolved.name!r} accepts only {accepted} columns"
        )
    return resolved


def _shared_type(reference: pd.Series, current: pd.Series, name: str) -> ColumnType:
    """The column's type in both frames; an all-missing side takes the other's type."""
    _require_values(reference, name, "reference")
    _require_values(current, name, "current")
    reference_type = column_type(reference.dropna().infer_objects())
    current_type = column_type(current.dropna().infer_objects())
    if reference_type != current_type:
        words = {"num": "numeric", "cat": "categorical"}
        raise ValueError(
            f"column {name!r} is {words[reference_type]} in the reference data but {words[current_type]} "
            "in the current data: cast both to one type first"
        )
    return reference_type


def _require_values(values: pd.Series, name: str, which: str) -> None:
    if len(values) == 0:
        raise ValueError(f"column {name!r} is empty in the {which} data (0 rows): drift needs values in both samples")
    missing = int(values.isna().sum())
    if missing == len(values):
        raise ValueError(
            f"column {name!r} has only missing values in the {which} data ({missing} of {len(values)} rows): "
            "fix what fills it, or leave it out of the drift tests"
        )


def _column_samples(reference: pd.Series, current: pd.Series, name: str) -> tuple[ColumnType, pd.Series, pd.Series]:
    """The column's type and both samples without missing values; infinite values raise."""
    kind = _shared_type(reference, current, name)
    samples = []
    for which, values in (("reference", reference), ("current", current)):
        present = values.dropna()
        if kind == "num":
            present = present.astype(float)
            infinite = int(np.isinf(present).sum())
            if infinite:
                raise ValueError(
                    f"column {name!r} has {infinite} infinite value(s) in the {which} data: "
                    "replace them with NaN (then they are dropped as missing) or fix their source"
                )
        samples.append(present.reset_index(drop=True))
    return kind, samples[0], samples[1]
