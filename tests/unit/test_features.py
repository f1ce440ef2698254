"""The Spark feature computation agrees row for row with the dataset's own definition."""

from __future__ import annotations

import pandas as pd
import pytest

from course_utils.datasets import dataset_paths, ensure_datasets, snapshot_features
from course_utils.features import compute_customer_features
from course_utils.spark import get_spark


@pytest.mark.slow
def test_spark_features_equal_the_true_models_inputs(course_settings) -> None:
    paths = dataset_paths(ensure_datasets(course_settings))
    spark = get_spark("test-features", course_settings)
    snapshots = pd.read_csv(paths.customer_months)
    wanted = snapshots[snapshots.snapshot_date.isin(["2025-03-31", "2025-09-30"])]
    events = pd.concat(pd.read_csv(p) for p in sorted(paths.events_dir.glob("2025-0[23]-*.csv")) + sorted(paths.events_dir.glob("2025-09-*.csv")))
    expected = snapshot_features(events, pd.read_csv(paths.customers), wanted)

    spark_rows = (
        compute_customer_features(spark, paths)
        .where("snapshot_date IN (DATE'2025-03-31', DATE'2025-09-30')")
        .toPandas()
    )
    key = ["customer_id", "snapshot_date"]
    expected["snapshot_date"] = pd.to_datetime(expected["snapshot_date"])
    spark_rows["snapshot_date"] = pd.to_datetime(spark_rows["snapshot_date"])
    merged = expected.merge(spark_rows, on=key, suffixes=("_pandas", "_spark"), how="outer", indicator=True)
    assert (merged["_merge"] == "both").all(), "both implementations must produce the same snapshot rows"
    assert len(merged) == len(wanted) > 100
    for column in ("active_days_28d", "sessions_28d", "support_tickets_28d", "payment_failures_28d", "tenure_months", "age"):
        assert (merged[f"{column}_pandas"] == merged[f"{column}_spark"]).all(), column
    assert (merged["minutes_watched_28d_pandas"] - merged["minutes_watched_28d_spark"]).abs().max() < 0.051
    assert (merged["country_pandas"] == merged["country_spark"]).all()
    # The feature-drift window really moves the feature the Spark pipeline computes.
    by_month = merged.groupby(merged.snapshot_date.dt.month)["minutes_watched_28d_spark"].mean()
    assert by_month[9] > 1.2 * by_month[3]
