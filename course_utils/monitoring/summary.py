"""Summary statistics of reference and current data side by side, with their percent change.

The first thing a monitor shows, before any test: per column, how many values and how many
missing, and for a numeric column mean, median, standard deviation (``ddof=1``), min and max;
for a categorical one the number of distinct values. ``percent_change`` is
``100 * (current - reference) / |reference|``; when the reference is 0 it is 0 if the current
is 0 too, else ``+inf``/``-inf`` (say, missing values appearing where there were none).
A column with no values gets NaN statistics (its count is 0); infinite values raise
``ValueError``, as they would turn the mean into ``inf`` and hide everything else.

Example:
    >>> import pandas as pd
    >>> reference = pd.DataFrame({"fee": [10.0, 12.0, None, 14.0]})
    >>> current = pd.DataFrame({"fee": [15.0, None, None, 21.0]})
    >>> table = summary_statistics(reference, current).set_index("statistic")
    >>> float(table.loc["mean", "percent_change"]), float(table.loc["missing", "percent_change"])
    (50.0, 100.0)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from course_utils.monitoring.binning import ColumnType

__all__ = ["column_type", "summary_statistics"]

NUMERIC_STATISTICS = ("count", "missing", "mean", "median", "std", "min", "max")
CATEGORICAL_STATISTICS = ("count", "missing", "distinct")


def column_type(values: pd.Series) -> ColumnType:
    """``"num"`` for a numeric dtype (booleans excluded), ``"cat"`` for anything else."""
    is_numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    return "num" if is_numeric else "cat"


def summary_statistics(reference: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """One row per (column, statistic): ``column, statistic, reference, current, percent_change``.

    A column is numeric when either frame holds it with a numeric dtype (an all-missing column
    may be ``object`` in one of them).
    """
    check_same_columns(reference, current)
    rows = []
    for name in reference.columns:
        kind: ColumnType = "num" if "num" in (column_type(reference[name]), column_type(current[name])) else "cat"
        reference_stats = _statistics(reference[name], kind, name, "reference")
        current_stats = _statistics(current[name], kind, name, "current")
        for statistic in reference_stats:
            before, after = reference_stats[statistic], current_stats[statistic]
            rows.append((name, statistic, before, after, _percent_change(before, after)))
    return pd.DataFrame(rows, columns=["column", "statistic", "reference", "current", "percent_change"])


def check_same_columns(reference: pd.DataFrame, current: pd.DataFrame) -> None:
    """``TypeError`` unless both are DataFrames; ``ValueError`` naming the columns unless they match."""
    for which, frame in (("reference", reference), ("current", current)):
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"{which} must be a pandas DataFrame, got {type(frame).__name__}")
        duplicated = sorted(set(frame.columns[frame.columns.duplicated()]), key=str)
        if duplicated:
            raise ValueError(f"{which} has duplicated column name(s) {duplicated}: rename them so each is one column")
    only_reference = [name for name in reference.columns if name not in current.columns]
    only_current = [name for name in current.columns if name not in reference.columns]
    if only_reference or only_current:
        raise ValueError(
            f"reference and current must have the same columns; only in reference: {only_reference}, "
            f"only in current: {only_current}; select the shared columns in both"
        )


def _statistics(values: pd.Series, kind: ColumnType, name: object, which: str) -> dict[str, float]:
    present = values.dropna()
    counts = {"count": float(len(present)), "missing": float(len(values) - len(present))}
    if kind == "cat":
        return {**counts, "distinct": float(present.nunique())}
    numbers = pd.to_numeric(present).astype(float)
    infinite = int(np.isinf(numbers).sum())
    if infinite:
        raise ValueError(
            f"column {name!r} has {infinite} infinite value(s) in the {which} data: "
            "replace them with NaN (then they count as missing) or fix their source"
        )
    return {
        **counts,
        "mean": numbers.mean(),
        "median": numbers.median(),
        "std": numbers.std(),
        "min": numbers.min(),
        "max": numbers.max(),
    }


def _percent_change(before: float, after: float) -> float:
    if before == 0:
        return 0.0 if after == 0 else float(np.copysign(np.inf, after))
    return float(100 * (after - before) / abs(before))
