"""A Delta table's data files, and which of them a query reads.

Two lessons measure data skipping: 01a (``OPTIMIZE`` and ``ZORDER BY`` on the silver events)
and 03a (looking up one customer's stored predictions). Both need the same three answers:

- **which files make up a version of the table**: :func:`table_files` reads the Delta log with
  ``deltalake`` (delta-rs, no Spark); :func:`files_on_disk` lists what is physically in the
  folder, which is more after a failed write or before ``VACUUM``;
- **what the log knows about each file**: :func:`file_ranges` gives each file's row count and
  the minimum and maximum of one column (the statistics data skipping uses), and
  :func:`files_to_read` applies data skipping's test to them: a file must be opened for
  ``column = value`` unless its range excludes the value;
- **what Spark actually read**: :func:`scan_metrics` runs a query and returns the file scan's
  SQL metrics (files, bytes, rows read after skipping) from the executed plan, the numbers of
  the Spark UI's SQL tab.

Example:
    >>> table_files("/tmp/events")                                       # doctest: +SKIP
    {'part-00000-….snappy.parquet', …}
    >>> files_to_read("/tmp/events", "customer_id", [100077, 100078])    # doctest: +SKIP
    [1, 1]
    >>> scan_metrics(spark.read.format("delta").load("/tmp/events").where("customer_id = 100077"))  # doctest: +SKIP
    {'files read': 1, 'bytes read': 285065, 'rows read': 21254}
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy imports only for type checkers
    import pandas as pd
    from pyspark.sql import DataFrame

LOG_FOLDER = "_delta_log"


def _delta_table(table_path: str | Path, version: int | None):
    from deltalake import DeltaTable

    if not (Path(table_path) / LOG_FOLDER).is_dir():
        raise FileNotFoundError(f"{table_path} is not a Delta table: it has no {LOG_FOLDER} folder.")
    return DeltaTable(str(table_path), version=version)


def table_files(table_path: str | Path, version: int | None = None) -> set[str]:
    """Names of the data files that make up ``version`` (default: the latest) of a Delta table, from its log."""
    return {Path(uri).name for uri in _delta_table(table_path, version).file_uris()}


def files_on_disk(table_path: str | Path) -> set[str]:
    """Names of all Parquet data files physically in the table's folder (its log's checkpoints excluded)."""
    root = Path(table_path)
    return {p.name for p in root.rglob("*.parquet") if LOG_FOLDER not in p.relative_to(root).parts}


def file_ranges(table_path: str | Path, column: str, version: int | None = None) -> pd.DataFrame:
    """Each data file's path, row count, and minimum and maximum of ``column``, from the statistics in the log.

    Columns of the result: ``path``, ``num_records``, ``min``, ``max``; sorted by ``min``.
    """
    import pyarrow as pa

    actions = pa.table(_delta_table(table_path, version).get_add_actions(flatten=True)).to_pandas()
    missing = [f"{kind}.{column}" for kind in ("min", "max") if f"{kind}.{column}" not in actions]
    if missing:
        raise KeyError(f"the log of {table_path} has no statistics {missing}; columns with statistics: "
                       f"{sorted(c[4:] for c in actions.columns if c.startswith('min.'))}")
    ranges = actions[["path", "num_records", f"min.{column}", f"max.{column}"]]
    ranges.columns = ["path", "num_records", "min", "max"]
    return ranges.sort_values("min", ignore_index=True)


def files_to_read(table_path: str | Path, column: str, values: Sequence[object], version: int | None = None) -> list[int]:
    """For each value, how many files a query ``column = value`` must open: those whose min–max range contains it.

    This is the test Delta's data skipping applies to the statistics in the log (the log is read once).
    """
    ranges = file_ranges(table_path, column, version)
    return [int(((ranges["min"] <= value) & (ranges["max"] >= value)).sum()) for value in values]


def scan_metrics(query: DataFrame) -> dict[str, int]:
    """Run ``query`` and return what its one file scan read: ``files read``, ``bytes read``, ``rows read``.

    The numbers are Spark's SQL metrics of the scan node in the executed plan (after Delta skipped
    the files that cannot match), read synchronously once the query has run.
    """
    query.collect()
    stack, scans = [query._jdf.queryExecution().executedPlan()], []
    while stack:
        node = stack.pop()
        kind = node.getClass().getSimpleName()
        if kind == "AdaptiveSparkPlanExec":  # adaptive execution wraps the final plan
            stack.append(node.executedPlan())
            continue
        if kind.endswith("QueryStageExec"):
            stack.append(node.plan())
            continue
        if kind == "FileSourceScanExec":
            metrics = node.metrics()
            scans.append({
                "files read": int(metrics.apply("numFiles").value()),
                "bytes read": int(metrics.apply("filesSize").value()),
                "rows read": int(metrics.apply("numOutputRows").value()),
            })
        children = node.children()
        stack.extend(children.apply(i) for i in range(children.size()))
    if len(scans) != 1:
        raise ValueError(f"expected a query with exactly one file scan, found {len(scans)}: {query._jdf.queryExecution().simpleString()}")
    return scans[0]
