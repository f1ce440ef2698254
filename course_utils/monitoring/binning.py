"""Turn two samples into two arrays of shares over the same bins, as evidently 0.7.23 does.

PSI and Jensen-Shannon compare *distributions*, so both samples are first put on one grid
(evidently's ``get_binned_data`` in ``legacy/calculations/stattests/utils.py``):

- a numeric column whose **reference** has more than 20 distinct values is cut into Sturges
  bins (``numpy.histogram_bin_edges(..., bins="sturges")``) computed over reference and
  current together, so both share the same edges;
- any other column (categorical, or numeric with few distinct values) gets one bin per
  value seen in either sample; a value one sample lacks counts 0 there;
- with ``fill_empty`` (PSI; Jensen-Shannon does not fill), an empty bin becomes ``1e-4``,
  or a millionth of the smallest non-empty share when that share is itself ``<= 1e-4``,
  so ``log(share)`` stays finite. The shares are not renormalised afterwards (neither are
  evidently's).

Example:
    >>> reference_shares, current_shares = binned_shares(["a", "a", "a", "b"], ["a", "a", "c", "c"], "cat")
    >>> reference_shares.tolist(), current_shares.tolist()
    ([0.75, 0.25, 0.0001], [0.5, 0.0001, 0.5])
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

__all__ = ["ColumnType", "EMPTY_BIN_SHARE", "MAX_DISTINCT_FOR_CATEGORIES", "binned_shares"]

ColumnType = Literal["num", "cat"]

MAX_DISTINCT_FOR_CATEGORIES = 20  # evidently: a numeric reference with more distinct values gets Sturges bins
EMPTY_BIN_SHARE = 1e-4  # evidently's share for an empty bin


def binned_shares(
    reference: ArrayLike, current: ArrayLike, column_type: ColumnType, *, fill_empty: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Shares of each sample in common bins (Sturges edges or one bin per distinct value).

    Args:
        reference: the reference sample, without missing values.
        current: the current sample, without missing values.
        column_type: ``"num"`` or ``"cat"``; only a ``"num"`` column can get Sturges bins.
        fill_empty: replace empty bins by a small share (see the module docstring).

    Returns:
        ``(reference_shares, current_shares)``, aligned bin by bin; categories come in order of
        first appearance, reference first.
    """
    reference_series, current_series = pd.Series(reference), pd.Series(current)
    if column_type == "num" and reference_series.nunique() > MAX_DISTINCT_FOR_CATEGORIES:
        reference_values = reference_series.to_numpy(dtype=float)
        current_values = current_series.to_numpy(dtype=float)
        edges = np.histogram_bin_edges(np.concatenate([reference_values, current_values]), bins="sturges")
        reference_shares = np.histogram(reference_values, edges)[0] / len(reference_values)
        current_shares = np.histogram(current_values, edges)[0] / len(current_values)
    else:
        categories = pd.Index(pd.unique(pd.concat([reference_series, current_series], ignore_index=True)))
        reference_shares = _category_shares(reference_series, categories)
        current_shares = _category_shares(current_series, categories)
    if fill_empty:
        reference_shares, current_shares = _fill_empty_bins(reference_shares), _fill_empty_bins(current_shares)
    return reference_shares, current_shares


def _category_shares(values: pd.Series, categories: pd.Index) -> np.ndarray:
    counts = values.value_counts().reindex(categories, fill_value=0)
    return counts.to_numpy(dtype=float) / len(values)


def _fill_empty_bins(shares: np.ndarray) -> np.ndarray:
    smallest = shares[shares > 0].min()
    # A fill larger than a real share would rank an empty bin above an observed one.
    fill = smallest / 10**6 if smallest <= EMPTY_BIN_SHARE else EMPTY_BIN_SHARE
    return np.where(shares == 0, fill, shares)
