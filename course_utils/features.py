"""Customer features computed with Spark from the raw event files, stored as a Delta table.

The feature definitions are the dataset's own (``course_utils.datasets.snapshot_features``,
the inputs of the true churn and spend models): for each month-end snapshot of a customer,
sums over the 28 days ending on the snapshot date, plus the customer's static attributes
and tenure. Here they are computed at scale with Spark SQL; a unit test proves both
implementations agree row for row.

Lessons that need the features but do not teach how they are built call
:func:`require_customer_features`, which builds the shared table once (the prerequisite
an earlier lesson would have built) and returns its path.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from course_utils.datasets import FEATURE_WINDOW_DAYS, DatasetPaths
from course_utils.timing import timed

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

    from course_utils.lesson import Lesson

FEATURE_TABLE = "customer_features"
ENTITY_KEY = "customer_id"
TIMESTAMP_COLUMN = "snapshot_date"
NUMERIC_FEATURES = (
    "active_days_28d",
    "sessions_28d",
    "minutes_watched_28d",
    "support_tickets_28d",
    "payment_failures_28d",
    "tenure_months",
    "age",
    "monthly_fee",
)
CATEGORICAL_FEATURES = ("country", "plan")
LABELS = ("churned_next_month", "next_month_spend")

EVENT_SCHEMA = (
    "event_date DATE, customer_id BIGINT, sessions INT, minutes_watched DOUBLE, "
    "support_tickets INT, payment_failed INT, event_ts TIMESTAMP"
)
CUSTOMER_SCHEMA = (
    "customer_id BIGINT, signup_date DATE, country STRING, plan STRING, age INT, "
    "acquisition_channel STRING, monthly_fee DOUBLE"
)
LABEL_SCHEMA = "customer_id BIGINT, snapshot_date DATE, churned_next_month INT, next_month_spend DOUBLE"


def read_events(spark: SparkSession, paths: DatasetPaths) -> DataFrame:
    """All daily event files, with an explicit schema (no inference pass over the files)."""
    return spark.read.csv(str(paths.events_dir), header=True, schema=EVENT_SCHEMA)


def read_customers(spark: SparkSession, paths: DatasetPaths) -> DataFrame:
    """The customers table with an explicit schema."""
    return spark.read.csv(str(paths.customers), header=True, schema=CUSTOMER_SCHEMA)


def read_labels(spark: SparkSession, paths: DatasetPaths) -> DataFrame:
    """Month-end snapshots with both labels."""
    return spark.read.csv(str(paths.customer_months), header=True, schema=LABEL_SCHEMA)


def compute_customer_features(spark: SparkSession, paths: DatasetPaths) -> DataFrame:
    """One row per (customer_id, snapshot_date): 28-day activity sums, attributes, tenure.

    Matches ``datasets.snapshot_features`` exactly (a unit test checks it).
    """
    read_events(spark, paths).createOrReplaceTempView("course_events")
    read_customers(spark, paths).createOrReplaceTempView("course_customers")
    read_labels(spark, paths).createOrReplaceTempView("course_snapshots")
    return spark.sql(
        f"""
        WITH activity AS (
            SELECT s.customer_id, s.snapshot_date,
                   COUNT(e.customer_id)                     AS active_days_28d,
                   COALESCE(SUM(e.sessions), 0)             AS sessions_28d,
                   ROUND(COALESCE(SUM(e.minutes_watched), 0), 1) AS minutes_watched_28d,
                   COALESCE(SUM(e.support_tickets), 0)      AS support_tickets_28d,
                   COALESCE(SUM(e.payment_failed), 0)       AS payment_failures_28d
            FROM course_snapshots s
            LEFT JOIN course_events e
              ON e.customer_id = s.customer_id
             AND e.event_date >  date_sub(s.snapshot_date, {FEATURE_WINDOW_DAYS})
             AND e.event_date <= s.snapshot_date
            GROUP BY s.customer_id, s.snapshot_date
        )
        SELECT a.customer_id, a.snapshot_date,
               CAST(a.active_days_28d AS BIGINT)      AS active_days_28d,
               CAST(a.sessions_28d AS BIGINT)         AS sessions_28d,
               CAST(a.minutes_watched_28d AS DOUBLE)  AS minutes_watched_28d,
               CAST(a.support_tickets_28d AS BIGINT)  AS support_tickets_28d,
               CAST(a.payment_failures_28d AS BIGINT) AS payment_failures_28d,
               -- whole calendar months: 2025-01-15 -> 2025-03-14 is 1
               CAST((year(a.snapshot_date) - year(c.signup_date)) * 12
                    + month(a.snapshot_date) - month(c.signup_date)
                    - IF(day(a.snapshot_date) < day(c.signup_date), 1, 0) AS BIGINT) AS tenure_months,
               c.signup_date, c.country, c.plan, c.age, c.monthly_fee
        FROM activity a JOIN course_customers c ON a.customer_id = c.customer_id
        """
    )


def shared_table_path(lesson: Lesson, table: str) -> Path:
    """Tables several lessons share live in ``workspace/shared/delta/<table>``."""
    return lesson.settings.workspace / "shared" / lesson.profile / "delta" / table


def require_customer_features(lesson: Lesson) -> str:
    """The shared customer feature Delta table, built once if no lesson has built it yet."""
    path = shared_table_path(lesson, FEATURE_TABLE)
    if not (path / "_delta_log").is_dir():
        with timed("prerequisite: customer features"):
            features = compute_customer_features(lesson.spark, lesson.datasets)
            features.write.format("delta").mode("overwrite").partitionBy(TIMESTAMP_COLUMN).save(str(path))
    return str(path)


def training_frame(lesson: Lesson, start: str | None = None, end: str | None = None) -> pd.DataFrame:
    """Features joined with both labels as pandas, for snapshot dates in [start, end]."""
    spark = lesson.spark
    features = spark.read.format("delta").load(require_customer_features(lesson))
    labels = read_labels(spark, lesson.datasets)
    joined = features.join(labels, [ENTITY_KEY, TIMESTAMP_COLUMN])
    if start:
        joined = joined.where(f"{TIMESTAMP_COLUMN} >= DATE'{start}'")
    if end:
        joined = joined.where(f"{TIMESTAMP_COLUMN} <= DATE'{end}'")
    return joined.orderBy(TIMESTAMP_COLUMN, ENTITY_KEY).toPandas()
