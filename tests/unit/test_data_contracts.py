"""Data tests: the contract the course's churn pipeline relies on, checked on the generated files.

The model tier of the test pyramid assumes its inputs are sound. These tests state what
"sound" means for the Streamly tables, as a consumer of the files (not their generator,
which ``test_datasets.py`` covers): the schema and types, no nulls, values in their ranges,
keys unique and joinable, and **no leakage** — every feature of a month-end snapshot is
computed from data up to that snapshot, before the label's period begins, and no label is
among the model's features. Lesson 04e runs them as the pyramid's data layer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from course_utils import datasets
from course_utils.datasets import (
    FEATURE_WINDOW_DAYS,
    TIMELINE_END,
    TIMELINE_START,
    dataset_paths,
    ensure_datasets,
    snapshot_features,
)
from course_utils.features import LABELS
from course_utils.models import FEATURES

# Column -> the kind of values the pipeline expects (checked with pandas' dtype predicates).
CONTRACT_TYPES = {
    "customers": {"customer_id": "integer", "signup_date": "date", "country": "string", "plan": "string",
                  "age": "integer", "acquisition_channel": "string", "monthly_fee": "float"},
    "events": {"event_date": "date", "customer_id": "integer", "sessions": "integer", "minutes_watched": "float",
               "support_tickets": "integer", "payment_failed": "integer", "event_ts": "timestamp"},
    "customer_months": {"customer_id": "integer", "snapshot_date": "date", "churned_next_month": "integer",
                        "next_month_spend": "float"},
    "campaign": {"customer_id": "integer", "variant": "string", "assigned_date": "date", "converted": "integer",
                 "revenue": "float"},
}


@pytest.fixture(scope="module")
def tables(course_settings) -> dict[str, pd.DataFrame]:
    """The four tables of the verified ci dataset, as the pipeline reads them."""
    paths = dataset_paths(ensure_datasets(course_settings))
    events = pd.concat([pd.read_csv(path) for path in sorted(paths.events_dir.glob("*.csv"))], ignore_index=True)
    return {
        "customers": pd.read_csv(paths.customers),
        "events": events,
        "customer_months": pd.read_csv(paths.customer_months),
        "campaign": pd.read_csv(paths.campaign_experiment),
    }


def _has_kind(values: pd.Series, kind: str) -> bool:
    if kind == "integer":
        return pd.api.types.is_integer_dtype(values)
    if kind == "float":
        return pd.api.types.is_float_dtype(values)
    if kind == "string":
        return pd.api.types.is_object_dtype(values) and values.map(type).eq(str).all()
    fmt = "%Y-%m-%d" if kind == "date" else "%Y-%m-%dT%H:%M:%S"
    return pd.to_datetime(values, format=fmt, errors="coerce").notna().all()


# --- schema and nulls --------------------------------------------------------------------


@pytest.mark.parametrize("table", sorted(CONTRACT_TYPES))
def test_schema_names_and_types(tables: dict[str, pd.DataFrame], table: str) -> None:
    frame = tables[table]
    assert list(frame.columns) == list(CONTRACT_TYPES[table]), f"{table}: columns {list(frame.columns)}"
    wrong = [column for column, kind in CONTRACT_TYPES[table].items() if not _has_kind(frame[column], kind)]
    assert not wrong, f"{table}: columns not of their contract type: {wrong}"


@pytest.mark.parametrize("table", sorted(CONTRACT_TYPES))
def test_no_nulls(tables: dict[str, pd.DataFrame], table: str) -> None:
    nulls = tables[table].isna().sum()
    assert nulls.sum() == 0, f"{table}: null counts {nulls[nulls > 0].to_dict()}"


# --- ranges and categories ---------------------------------------------------------------


def test_value_ranges(tables: dict[str, pd.DataFrame]) -> None:
    customers, events, months = tables["customers"], tables["events"], tables["customer_months"]
    assert customers["age"].between(18, 80).all()
    assert customers["monthly_fee"].between(0.01, 100).all()
    assert set(customers["country"]) <= set(datasets.COUNTRIES)
    assert set(customers["plan"]) <= set(datasets.PLANS)
    assert events["sessions"].ge(1).all() and events["minutes_watched"].gt(0).all()
    assert events["support_tickets"].ge(0).all() and set(events["payment_failed"]) <= {0, 1}
    assert set(months["churned_next_month"]) <= {0, 1} and months["next_month_spend"].ge(0).all()
    first, last = TIMELINE_START.isoformat(), TIMELINE_END.isoformat()
    assert events["event_date"].between(first, last).all() and months["snapshot_date"].between(first, last).all()


def test_keys_are_unique_and_join(tables: dict[str, pd.DataFrame]) -> None:
    customers, events, months = tables["customers"], tables["events"], tables["customer_months"]
    assert customers["customer_id"].is_unique
    assert not events.duplicated(["customer_id", "event_date"]).any()
    assert not months.duplicated(["customer_id", "snapshot_date"]).any()
    for name in ("events", "customer_months", "campaign"):
        orphans = ~tables[name]["customer_id"].isin(customers["customer_id"])
        assert not orphans.any(), f"{name}: {int(orphans.sum())} rows name unknown customers"


# --- leakage -----------------------------------------------------------------------------


def test_no_label_is_a_feature() -> None:
    assert not set(FEATURES) & set(LABELS), f"labels among the features: {set(FEATURES) & set(LABELS)}"
    assert "customer_id" not in FEATURES and "snapshot_date" not in FEATURES


def test_features_use_no_event_after_the_snapshot(tables: dict[str, pd.DataFrame]) -> None:
    """Point in time: each snapshot's features are unchanged when every later event is deleted."""
    events, customers, months = tables["events"], tables["customers"], tables["customer_months"]
    checked = 0
    for snapshot_date in ("2025-03-31", "2025-06-30", "2025-11-30"):
        rows = months[months["snapshot_date"] == snapshot_date]
        with_future = snapshot_features(events, customers, rows)
        past_only = snapshot_features(events[events["event_date"] <= snapshot_date], customers, rows)
        pd.testing.assert_frame_equal(with_future, past_only)
        checked += len(rows)
    assert checked > 1000


def test_feature_window_ends_before_the_label_period(tables: dict[str, pd.DataFrame]) -> None:
    """The latest event a snapshot counts is no later than the snapshot; the label is about the month after."""
    events, months = tables["events"], tables["customer_months"]
    snapshot = pd.to_datetime(months["snapshot_date"])
    label_period_start = snapshot + pd.Timedelta(days=1)
    event_ts = pd.to_datetime(events["event_ts"])
    joined = months.assign(snapshot=snapshot, label_start=label_period_start).merge(
        events.assign(event_ts=event_ts, event_day=pd.to_datetime(events["event_date"]))[["customer_id", "event_ts", "event_day"]],
        on="customer_id",
    )
    in_window = joined[(joined["event_day"] > joined["snapshot"] - pd.Timedelta(days=FEATURE_WINDOW_DAYS))
                       & (joined["event_day"] <= joined["snapshot"])]
    latest = in_window.groupby(["customer_id", "snapshot"])[["event_ts", "label_start"]].max()
    assert len(latest) > 1000
    assert (latest["event_ts"] < latest["label_start"]).all(), "a feature counts an event from the label's period"


def test_no_feature_is_a_proxy_for_the_label(tables: dict[str, pd.DataFrame]) -> None:
    """Target leakage shows as a feature that predicts the label almost perfectly."""
    months = tables["customer_months"]
    features = snapshot_features(tables["events"], tables["customers"], months)
    label = months["churned_next_month"].to_numpy()
    numeric = [column for column in FEATURES if pd.api.types.is_numeric_dtype(features[column])]
    correlations = {column: abs(np.corrcoef(features[column].to_numpy(float), label)[0, 1]) for column in numeric}
    assert max(correlations.values()) < 0.5, f"suspiciously predictive features: {correlations}"
