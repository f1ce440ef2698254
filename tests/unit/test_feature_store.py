"""course_utils.feature_store on a tiny Delta table written with delta-rs (no Spark, no server)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import yaml

from course_utils import feature_store as fs

# Three customers, three month-end snapshots; customer 3 leaves after February.
SNAPSHOTS = [date(2025, 1, 31), date(2025, 2, 28), date(2025, 3, 31)]
CUSTOMERS = {1: ("US", "basic", 30, 7.99), 2: ("DE", "premium", 45, 18.99), 3: ("BR", "standard", 25, 7.5)}


def _rows(snapshots: list[date]) -> pa.Table:
    records = []
    for snapshot in snapshots:
        month = SNAPSHOTS.index(snapshot)
        for customer_id, (country, plan, age, fee) in CUSTOMERS.items():
            if customer_id == 3 and snapshot > date(2025, 2, 28):
                continue
            records.append(
                {
                    "customer_id": customer_id,
                    "snapshot_date": snapshot,
                    "active_days_28d": 10 * customer_id + month,
                    "sessions_28d": 20 * customer_id + month,
                    "minutes_watched_28d": 100.5 * customer_id + month,
                    "support_tickets_28d": month % 2,
                    "payment_failures_28d": int(customer_id == 3),
                    "tenure_months": 12 + month,
                    "signup_date": date(2024, 1, 15),
                    "country": country,
                    "plan": plan,
                    "age": age,
                    "monthly_fee": fee,
                }
            )
    schema = pa.schema(
        [
            ("customer_id", pa.int64()), ("snapshot_date", pa.date32()), ("active_days_28d", pa.int64()),
            ("sessions_28d", pa.int64()), ("minutes_watched_28d", pa.float64()), ("support_tickets_28d", pa.int64()),
            ("payment_failures_28d", pa.int64()), ("tenure_months", pa.int64()), ("signup_date", pa.date32()),
            ("country", pa.string()), ("plan", pa.string()), ("age", pa.int32()), ("monthly_fee", pa.float64()),
        ]
    )
    return pa.Table.from_pylist(records, schema=schema)


@pytest.fixture(scope="module")
def delta_table(tmp_path_factory: pytest.TempPathFactory) -> str:
    from deltalake import write_deltalake

    path = str(tmp_path_factory.mktemp("delta") / "customer_features")
    write_deltalake(path, _rows(SNAPSHOTS[:2]), partition_by=["snapshot_date"])  # version 0
    write_deltalake(path, _rows(SNAPSHOTS[2:]), mode="append", partition_by=["snapshot_date"])  # version 1
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, delta_table: str):
    repo_dir = tmp_path_factory.mktemp("feature_repo")
    return fs.build_feature_store(repo_dir, delta_table, project="unit", materialize_from="2025-03-01", materialize_to="2025-03-31")


def test_repo_settings_round_trip_through_yaml(tmp_path: Path) -> None:
    settings = fs.repo_settings(tmp_path, "streamly")
    assert yaml.safe_load(fs.feature_store_yaml(tmp_path, "streamly")) == settings
    config = fs.repo_config(tmp_path, "streamly")
    assert config.online_store.type == "sqlite" and config.online_store.path == str(tmp_path.resolve() / "online_store.db")
    assert config.entity_key_serialization_version == 3
    written = fs.write_feature_store_yaml(tmp_path / "repo", "streamly")
    assert written.name == "feature_store.yaml" and "registry.db" in written.read_text()


@pytest.mark.parametrize("project", ["01b", "my-project", ""])
def test_bad_project_names_are_refused_with_the_rule(tmp_path: Path, project: str) -> None:
    with pytest.raises((ValueError, IndexError)):
        fs.repo_settings(tmp_path, project)
    if project:
        with pytest.raises(ValueError, match="must start with a letter"):
            fs.repo_settings(tmp_path, project)


def test_export_names_the_delta_version_and_time_travels(delta_table: str, tmp_path: Path) -> None:
    assert fs.delta_version(delta_table) == 1
    latest = fs.export_offline_source(delta_table, tmp_path)
    first = fs.export_offline_source(delta_table, tmp_path, version=0)
    assert latest.path.name == "customer_features_v1.parquet" and latest.delta_version == 1 and latest.rows == 8
    assert first.path.name == "customer_features_v0.parquet" and first.rows == 6
    frame = pd.read_parquet(latest.path)
    assert str(frame[fs.EVENT_TIMESTAMP].dt.tz) == "UTC"
    assert (frame[fs.EVENT_TIMESTAMP] == frame[fs.AS_OF_FEATURE]).all()
    assert "snapshot_date" not in frame and frame[fs.EVENT_TIMESTAMP].is_monotonic_increasing


def test_missing_delta_table_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a Delta table.*require_customer_features"):
        fs.export_offline_source(str(tmp_path / "nowhere"), tmp_path)


def test_registry_is_a_feature_dictionary(store) -> None:
    dictionary = fs.feature_dictionary(store)
    assert sorted(dictionary.feature_view.unique()) == [fs.ACTIVITY_VIEW, fs.PROFILE_VIEW]
    assert len(dictionary) == len(fs.ACTIVITY_FEATURES) + len(fs.PROFILE_FEATURES) + 1
    assert (dictionary.description.str.len() > 10).all() and (dictionary.owner != "").all()
    as_of = dictionary.set_index("feature").loc[fs.AS_OF_FEATURE]
    assert as_of.used_by == "", "the audit column is not a model input"
    sessions = dictionary.set_index("feature").loc["sessions_28d"]
    assert sessions.used_by == f"{fs.CHURN_SERVICE}, {fs.ENGAGEMENT_SERVICE}"
    assert {s.name for s in store.list_feature_services()} == {fs.CHURN_SERVICE, fs.ENGAGEMENT_SERVICE}
    assert store.get_data_source("customer_features_source").tags["delta_version"] == "1"


def test_historical_features_are_point_in_time_correct_and_keep_row_order(store) -> None:
    entities = pd.DataFrame(
        {
            "customer_id": [2, 1, 1, 3],
            "event_timestamp": ["2025-03-15", "2025-02-28", "2025-01-10", "2025-03-31"],
        }
    )
    rows = fs.historical_features(store, entities, [f"{fs.PROFILE_VIEW}:{fs.AS_OF_FEATURE}", f"{fs.ACTIVITY_VIEW}:sessions_28d"])
    assert rows.customer_id.tolist() == [2, 1, 1, 3]
    as_of = rows[fs.AS_OF_FEATURE].dt.strftime("%Y-%m-%d").tolist()
    # mid-March sees February's snapshot; a label time on a snapshot date sees that snapshot;
    # before the first snapshot there is nothing; customer 3's February snapshot is still within the TTL.
    assert as_of[:2] == ["2025-02-28", "2025-02-28"] and pd.isna(rows[fs.AS_OF_FEATURE][2])
    assert as_of[3] == "2025-02-28"
    assert rows.sessions_28d.tolist()[:2] == [41, 21]
    with pytest.raises(ValueError, match="event_timestamp"):
        fs.historical_features(store, entities.drop(columns="event_timestamp"))


def test_online_lookup_reports_unknown_keys(store) -> None:
    lookup = fs.lookup_online(store, [2, 3, 999, 1])
    assert lookup.unknown_keys == [3, 999], "3 left before March (not materialized), 999 never existed"
    assert lookup.features.customer_id.tolist() == [2, 3, 999, 1]
    assert list(lookup.features.columns) == ["customer_id", *fs.ACTIVITY_FEATURES, *fs.PROFILE_FEATURES]
    assert lookup.features.set_index("customer_id").loc[1, "sessions_28d"] == 22
    assert lookup.features.set_index("customer_id").loc[999].isna().all()
    with pytest.raises(fs.UnknownEntityKeysError, match=r"2 customer_id value\(s\).*3, 999.*materialize"):
        fs.online_features(store, [2, 3, 999])
    assert fs.online_features(store, [1, 999], on_unknown="null").shape == (2, 11)
    with pytest.raises(ValueError, match="on_unknown"):
        fs.online_features(store, [1], on_unknown="skip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="No feature service 'churn_v9'.*churn_model_v1"):
        fs.lookup_online(store, [1], "churn_v9")


def test_keys_only_model_matches_predictions_on_full_rows(store, tmp_path: Path) -> None:
    import mlflow

    from course_utils.models import churn_pipeline, feature_frame

    training = fs.read_feature_table(store.get_data_source("customer_features_source").tags["delta_path"])
    training["churned_next_month"] = (training.customer_id == 3).astype(int)
    pipeline = churn_pipeline(seed=1, n_estimators=5).fit(feature_frame(training), training.churned_next_month)
    repo_dir = Path(store.config.registry.path).parent
    yaml_path = fs.write_feature_store_yaml(repo_dir, "unit")
    model_dir = fs.save_feature_lookup_model(tmp_path / "model", pipeline, yaml_path, input_example=pd.DataFrame({"customer_id": [1]}))
    assert (model_dir / "feature_lookup_model.py").is_file(), "saved as code + artifacts, not a pickle"
    model = mlflow.pyfunc.load_model(str(model_dir))

    online = model.predict(pd.DataFrame({"customer_id": [2, 1]}))
    march = training[training.event_timestamp == "2025-03-31"].set_index("customer_id").loc[[2, 1]]
    expected = pipeline.predict_proba(feature_frame(march))[:, 1]
    assert online.customer_id.tolist() == [2, 1]
    assert online.churn_probability.tolist() == pytest.approx(expected.tolist(), abs=1e-12)

    as_of = model.predict(pd.DataFrame({"customer_id": [3], "event_timestamp": [pd.Timestamp("2025-02-28")]}))
    february = training[(training.event_timestamp == "2025-02-28") & (training.customer_id == 3)]
    assert as_of.churn_probability[0] == pytest.approx(pipeline.predict_proba(feature_frame(february))[0, 1], abs=1e-12)

    with pytest.raises(fs.UnknownEntityKeysError, match="999"):
        model.predict(pd.DataFrame({"customer_id": [1, 999]}))
    with pytest.raises(Exception, match="customer_id"):
        model.predict(pd.DataFrame({"id": [1]}))
    lenient = mlflow.pyfunc.load_model(str(model_dir), model_config={"on_unknown": "null"})
    scores = lenient.predict(pd.DataFrame({"customer_id": [1, 999]})).churn_probability
    assert scores.notna().tolist() == [True, False]


def test_feature_lookup_refuses_unknown_policies_and_services(store) -> None:
    with pytest.raises(ValueError, match="on_unknown='skip'"):
        fs.FeatureLookup(store, pipeline=None, on_unknown="skip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="No feature service 'nope'"):
        fs.FeatureLookup(store, pipeline=None, feature_service="nope")  # type: ignore[arg-type]
