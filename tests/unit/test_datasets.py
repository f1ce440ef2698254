"""The Streamly dataset: deterministic, well-formed, with exactly the drift it documents."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from course_utils import datasets
from course_utils.config import Settings, repo_root
from course_utils.datasets import (
    CHURN_MODEL,
    DRIFT_WINDOWS,
    SPEND_MODEL,
    TRUE_CAMPAIGN_EFFECT,
    DatasetError,
    dataset_digest,
    dataset_paths,
    ensure_datasets,
    generate,
    manifest_path,
    snapshot_features,
    true_churn_probability,
    true_spend_mean,
    verify,
)

DATASETS_DIR = repo_root() / "datasets"
FIX_COMMAND = ".venv/bin/course datasets generate --profile ci"


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, datasets._Tables]:
    """One real ci generation: its folder (read-only: copy it before changing it) and its in-memory tables."""
    out_dir = tmp_path_factory.mktemp("generated") / "ci"
    captured: list[datasets._Tables] = []
    real_simulate = datasets._simulate

    def simulate_and_keep(spec: datasets.ProfileSpec, seed: int) -> datasets._Tables:
        captured.append(real_simulate(spec, seed))
        return captured[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets, "_simulate", simulate_and_keep)
        generate("ci", out_dir)
    return out_dir, captured[0]


@pytest.fixture(scope="module")
def ci_dir(ci_run: tuple[Path, datasets._Tables]) -> Path:
    return ci_run[0]


@pytest.fixture
def reuse_ci_simulation(ci_run: tuple[Path, datasets._Tables], monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip the (slow, already tested) simulation: generate() writes the ci tables simulated once."""
    monkeypatch.setattr(datasets, "_simulate", lambda spec, seed: ci_run[1])


@pytest.fixture(scope="module")
def tables(ci_dir: Path) -> dict[str, pd.DataFrame]:
    """The four ci tables read back from the files, plus the snapshot features and their month."""
    paths = dataset_paths(ci_dir)
    customers = pd.read_csv(paths.customers)
    events = pd.concat([pd.read_csv(path) for path in sorted(paths.events_dir.glob("*.csv"))], ignore_index=True)
    months = pd.read_csv(paths.customer_months)
    features = snapshot_features(events, customers, months)
    features["churned_next_month"] = months["churned_next_month"].to_numpy()
    features["next_month_spend"] = months["next_month_spend"].to_numpy()
    features["month"] = months["snapshot_date"].str[:7].to_numpy()
    events["month"] = events["event_date"].str[:7]
    events = events.merge(customers[["customer_id", "country", "plan"]], on="customer_id", how="left")
    return {
        "customers": customers,
        "events": events,
        "customer_months": months,
        "campaign": pd.read_csv(paths.campaign_experiment),
        "features": features,
    }


def _months(window_name: str) -> list[str]:
    """The 'YYYY-MM' months a drift window covers."""
    window = DRIFT_WINDOWS[window_name]
    return [str(period) for period in pd.period_range(window.start, window.end, freq="M")]


def _rows_in(frame: pd.DataFrame, *window_names: str) -> pd.DataFrame:
    months = [month for name in window_names for month in _months(name)]
    return frame[frame["month"].isin(months)]


def _copy(ci_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "generated" / "ci"
    shutil.copytree(ci_dir, target)
    return target


def _flip_one_byte(path: Path, offset: int = 40) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


# --- determinism and the manifest -------------------------------------------------------


def test_generate_is_deterministic_and_matches_the_committed_manifest(ci_dir: Path, tmp_path: Path) -> None:
    second = generate("ci", tmp_path / "ci")
    manifest = json.loads(manifest_path(DATASETS_DIR).read_text())
    assert dataset_digest(ci_dir) == second
    assert second == manifest["ci"]["files"]
    assert datasets._row_counts(ci_dir) == manifest["ci"]["rows"]
    assert manifest["ci"]["seed"] == datasets.DEFAULT_SEED
    assert set(manifest) == {"ci", "full"}


def test_unknown_profile_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Unknown data profile 'huge'; use one of ci, full"):
        generate("huge", tmp_path / "huge")


# --- schema -----------------------------------------------------------------------------


def test_customers_schema(tables: dict[str, pd.DataFrame]) -> None:
    customers = tables["customers"]
    assert tuple(customers.columns) == datasets.CUSTOMER_COLUMNS
    assert 900 <= len(customers) <= 1_200
    assert customers["customer_id"].tolist() == list(range(100_000, 100_000 + len(customers)))
    assert set(customers["country"]) == set(datasets.COUNTRIES)
    assert set(customers["plan"]) == set(datasets.PLANS)
    assert set(customers["acquisition_channel"]) <= set(datasets.ACQUISITION_CHANNELS)
    assert customers["age"].between(18, 80).all()
    assert (customers["monthly_fee"] > 0).all()
    assert (pd.to_datetime(customers["signup_date"]) <= "2025-12-31").all()
    # Fees follow plan and country: one fee per (plan, country).
    assert customers.groupby(["plan", "country"])["monthly_fee"].nunique().eq(1).all()


def test_events_schema(ci_dir: Path, tables: dict[str, pd.DataFrame]) -> None:
    event_files = sorted(dataset_paths(ci_dir).events_dir.glob("*.csv"))
    assert [path.name for path in event_files] == [f"{day.isoformat()}.csv" for day in datasets.timeline_days()]
    assert len(event_files) == 365
    first_day = pd.read_csv(event_files[0])
    assert tuple(first_day.columns) == datasets.EVENT_COLUMNS
    assert (first_day["event_date"] == "2025-01-01").all()

    events = tables["events"]
    assert events["customer_id"].isin(tables["customers"]["customer_id"]).all()
    assert not events.duplicated(["customer_id", "event_date"]).any()
    assert (events["sessions"] >= 1).all() and (events["minutes_watched"] > 0).all()
    assert set(events["payment_failed"]) == {0, 1}
    assert (events["support_tickets"] >= 0).all()
    assert (events["event_ts"].str[:10] == events["event_date"]).all()
    signup = events["customer_id"].map(tables["customers"].set_index("customer_id")["signup_date"])
    assert (events["event_date"] >= signup).all(), "activity before sign-up"


def test_customer_months_schema_and_labels_agree_with_activity(tables: dict[str, pd.DataFrame]) -> None:
    months = tables["customer_months"]
    assert tuple(months.columns) == datasets.CUSTOMER_MONTH_COLUMNS
    month_ends = [str(period.end_time.date()) for period in pd.period_range("2025-01", "2025-12", freq="M")]
    assert sorted(months["snapshot_date"].unique()) == month_ends
    assert not months.duplicated(["customer_id", "snapshot_date"]).any()
    assert set(months["churned_next_month"]) == {0, 1}
    assert (months["next_month_spend"] >= 0).all()

    # A churner cancels during the next month: active at most until its end, then gone.
    churners = months[months["churned_next_month"] == 1]
    leaves_after = (pd.to_datetime(churners["snapshot_date"]) + pd.offsets.MonthEnd(1)).dt.strftime("%Y-%m-%d")
    last_event = tables["events"].groupby("customer_id")["event_date"].max()
    assert (churners["customer_id"].map(last_event).fillna("") <= leaves_after.to_numpy()).all()
    last_snapshot = months.groupby("customer_id")["snapshot_date"].max()
    assert (churners["customer_id"].map(last_snapshot) == churners["snapshot_date"]).all()


def test_campaign_schema(tables: dict[str, pd.DataFrame]) -> None:
    campaign = tables["campaign"]
    assert tuple(campaign.columns) == datasets.CAMPAIGN_COLUMNS
    assert campaign["customer_id"].is_unique
    assert campaign["customer_id"].isin(tables["customers"]["customer_id"]).all()
    counts = campaign["variant"].value_counts()
    assert set(counts.index) == {"control", "treatment"} and abs(counts["control"] - counts["treatment"]) <= 1
    assert campaign["assigned_date"].between("2025-07-01", "2025-07-14").all()
    assert ((campaign["revenue"] > 0) == (campaign["converted"] == 1)).all()


# --- the true models are what generated the labels ---------------------------------------


def test_labels_follow_the_documented_true_models(tables: dict[str, pd.DataFrame]) -> None:
    features = tables["features"]
    probability = true_churn_probability(features)
    for month, rows in features.groupby("month"):
        expected, observed = probability[rows.index].mean(), rows["churned_next_month"].mean()
        standard_error = np.sqrt(expected * (1 - expected) / len(rows))
        assert abs(observed - expected) < 4 * standard_error, month

    # A least-squares fit on the reference months recovers the spend model's coefficients.
    reference = _rows_in(features, "reference")
    design = np.column_stack(
        [np.ones(len(reference)), reference["monthly_fee"], reference["sessions_28d"], reference["payment_failures_28d"]]
    )
    coefficients, *_ = np.linalg.lstsq(design, reference["next_month_spend"], rcond=None)
    assert coefficients[1] == pytest.approx(SPEND_MODEL.monthly_fee, abs=0.05)
    assert coefficients[2] == pytest.approx(SPEND_MODEL.sessions_28d, abs=0.03)
    residual = reference["next_month_spend"] - true_spend_mean(reference)
    assert abs(residual.mean()) < 0.1 and residual.std() == pytest.approx(SPEND_MODEL.noise_sd, rel=0.1)


# --- drift, each in its window and nowhere else -------------------------------------------


def test_windows_cover_2025_without_overlap() -> None:
    windows = sorted(DRIFT_WINDOWS.values(), key=lambda window: window.start)
    assert windows[0].start == date(2025, 1, 1) and windows[-1].end == date(2025, 12, 31)
    for earlier, later in zip(windows, windows[1:]):
        assert (later.start - earlier.end).days == 1
    assert {window.kind for window in windows} == {"none", "feature", "label", "concept", "prediction"}
    assert datasets.drift_window_for(date(2025, 9, 15)).name == "feature_drift"
    assert datasets.drift_window_for(date(2024, 12, 31)) is None


def test_feature_drift_moves_minutes_watched_in_september_only(tables: dict[str, pd.DataFrame]) -> None:
    events = tables["events"]
    reference_minutes = _rows_in(events, "reference")["minutes_watched"].mean()
    reference_sessions = _rows_in(events, "reference")["sessions"].mean()
    minutes_by_month = events.groupby("month")["minutes_watched"].mean() / reference_minutes
    assert minutes_by_month[_months("feature_drift")].min() > 1.35
    clean = minutes_by_month.drop(_months("feature_drift"))
    assert clean.between(0.95, 1.05).all(), clean.to_dict()
    # Only minutes changed: sessions per active day are as in the reference.
    september_sessions = _rows_in(events, "feature_drift")["sessions"].mean()
    assert september_sessions == pytest.approx(reference_sessions, rel=0.03)


def test_label_drift_raises_churn_in_its_window_only(tables: dict[str, pd.DataFrame]) -> None:
    features = tables["features"]
    reference_rate = _rows_in(features, "reference")["churned_next_month"].mean()
    assert _rows_in(features, "label_drift")["churned_next_month"].mean() > 2 * reference_rate
    # ~550 snapshots a month in ci: a clean month's churn rate has a standard error of ~0.01.
    for window in ("clean_control", "feature_drift", "concept_drift"):
        assert _rows_in(features, window)["churned_next_month"].mean() == pytest.approx(reference_rate, abs=0.03)
    # The inputs did not change: what the reference model predicts stays the same.
    predicted = pd.Series(true_churn_probability(features, CHURN_MODEL), index=features.index)
    reference_predicted = predicted[_rows_in(features, "reference").index].mean()
    label_predicted = predicted[_rows_in(features, "label_drift").index].mean()
    assert label_predicted == pytest.approx(reference_predicted, rel=0.1)


def _ticket_effect(rows: pd.DataFrame) -> float:
    """Churn rate of customers with support tickets minus churn rate of those without."""
    with_tickets = rows["support_tickets_28d"] > 0
    return rows.loc[with_tickets, "churned_next_month"].mean() - rows.loc[~with_tickets, "churned_next_month"].mean()


def test_concept_drift_flips_the_ticket_churn_relationship_only(tables: dict[str, pd.DataFrame]) -> None:
    features = tables["features"]
    reference, concept = _rows_in(features, "reference"), _rows_in(features, "concept_drift")
    assert _ticket_effect(reference) > 0.02
    assert _ticket_effect(_rows_in(features, "clean_control", "feature_drift")) > 0.01
    assert _ticket_effect(concept) < -0.02
    # ... while the features and the churn rate stay as in the reference.
    for column in ("support_tickets_28d", "active_days_28d", "sessions_28d"):
        assert concept[column].mean() == pytest.approx(reference[column].mean(), rel=0.12), column
    assert concept["churned_next_month"].mean() == pytest.approx(reference["churned_next_month"].mean(), abs=0.03)


def test_prediction_drift_shifts_the_mix_and_the_predictions_in_december(tables: dict[str, pd.DataFrame]) -> None:
    events, features = tables["events"], tables["features"]

    def share(rows: pd.DataFrame, column: str, value: str) -> float:
        return float((rows[column] == value).mean())

    reference_events, december_events = _rows_in(events, "reference"), _rows_in(events, "prediction_drift")
    assert share(december_events, "country", "BR") > share(reference_events, "country", "BR") + 0.04
    assert share(december_events, "plan", "basic") > share(reference_events, "plan", "basic") + 0.03
    clean_events = _rows_in(events, "clean_control")
    # ci has ~550 subscribers, so a clean month's BR share wanders by ~0.02 around the reference.
    assert share(clean_events, "country", "BR") == pytest.approx(share(reference_events, "country", "BR"), abs=0.035)

    predicted = pd.Series(true_churn_probability(features, CHURN_MODEL), index=features.index)
    by_month = predicted.groupby(features["month"]).mean() / predicted[_rows_in(features, "reference").index].mean()
    assert by_month[_months("prediction_drift")].min() > 1.15
    assert by_month.drop(_months("prediction_drift")).between(0.9, 1.1).all(), by_month.to_dict()


# --- the campaign ---------------------------------------------------------------------------


def test_campaign_lift_in_the_ci_file_is_consistent_with_the_true_effect(tables: dict[str, pd.DataFrame]) -> None:
    rates = tables["campaign"].groupby("variant")["converted"].agg(["mean", "size"])
    lift = rates.loc["treatment", "mean"] - rates.loc["control", "mean"]
    standard_error = np.sqrt(sum(row["mean"] * (1 - row["mean"]) / row["size"] for _, row in rates.iterrows()))
    assert abs(lift - TRUE_CAMPAIGN_EFFECT.conversion_lift) < 3 * standard_error


def test_campaign_generator_recovers_the_true_effect_on_a_large_sample() -> None:
    campaign = datasets._assign_campaign(np.random.default_rng(0), np.arange(200_000))
    arms = campaign.groupby("variant")
    conversion = arms["converted"].mean()
    assert conversion["control"] == pytest.approx(TRUE_CAMPAIGN_EFFECT.control_conversion_rate, abs=0.003)
    assert conversion["treatment"] - conversion["control"] == pytest.approx(TRUE_CAMPAIGN_EFFECT.conversion_lift, abs=0.004)
    per_converter = campaign[campaign["converted"] == 1].groupby("variant")["revenue"].mean()
    assert per_converter["control"] == pytest.approx(TRUE_CAMPAIGN_EFFECT.control_revenue_per_converter, rel=0.02)
    assert per_converter["treatment"] == pytest.approx(TRUE_CAMPAIGN_EFFECT.treatment_revenue_per_converter, rel=0.02)
    assert TRUE_CAMPAIGN_EFFECT.conversion_lift == pytest.approx(0.02)


# --- verify, ensure_datasets and atomic writes -------------------------------------------------


def test_verify_accepts_a_good_copy(ci_dir: Path, tmp_path: Path) -> None:
    verify("ci", _copy(ci_dir, tmp_path), DATASETS_DIR)


def test_verify_names_a_corrupted_file_and_the_fix(ci_dir: Path, tmp_path: Path) -> None:
    copy = _copy(ci_dir, tmp_path)
    _flip_one_byte(dataset_paths(copy).customer_months)
    with pytest.raises(DatasetError) as error:
        verify("ci", copy, DATASETS_DIR)
    message = str(error.value)
    assert "customer_months.csv" in message and "sha256" in message and FIX_COMMAND in message


def test_verify_names_a_corrupted_event_file(ci_dir: Path, tmp_path: Path) -> None:
    copy = _copy(ci_dir, tmp_path)
    _flip_one_byte(dataset_paths(copy).events_dir / "2025-09-15.csv")
    with pytest.raises(DatasetError, match=r"daily files in .*events.* does not match the manifest"):
        verify("ci", copy, DATASETS_DIR)


def test_verify_names_missing_folder_and_files(ci_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dataset folder .* is missing") as error:
        verify("ci", tmp_path / "nowhere", DATASETS_DIR)
    assert FIX_COMMAND in str(error.value)

    copy = _copy(ci_dir, tmp_path)
    dataset_paths(copy).campaign_experiment.unlink()
    with pytest.raises(DatasetError, match="campaign_experiment.csv is missing"):
        verify("ci", copy, DATASETS_DIR)
    (dataset_paths(copy).events_dir / "2025-03-02.csv").unlink()
    shutil.copy(dataset_paths(ci_dir).campaign_experiment, dataset_paths(copy).campaign_experiment)
    with pytest.raises(DatasetError, match="1 of 365 daily event files are missing .* 2025-03-02.csv"):
        verify("ci", copy, DATASETS_DIR)


def test_verify_without_manifest_says_how_to_restore_it(ci_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="manifest .* is missing"):
        verify("ci", ci_dir, tmp_path)


def test_a_failed_generate_keeps_the_previous_dataset(
    ci_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reuse_ci_simulation: None
) -> None:
    good = _copy(ci_dir, tmp_path)
    before = dataset_digest(good)
    real_write_csv = datasets._write_csv
    calls = {"count": 0}

    def write_then_fail(frame: pd.DataFrame, path: Path, float_format: str) -> None:
        calls["count"] += 1
        if calls["count"] == 100:  # in the middle of the daily event files
            raise OSError("disk full (simulated)")
        real_write_csv(frame, path, float_format)

    monkeypatch.setattr(datasets, "_write_csv", write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        generate("ci", good)
    assert calls["count"] == 100
    assert dataset_digest(good) == before
    assert [path.name for path in good.parent.iterdir()] == ["ci"], "a partial folder was left behind"
    calls["count"] = 0  # a first generation that fails leaves nothing behind either
    with pytest.raises(OSError):
        generate("ci", tmp_path / "generated" / "fresh")
    assert not (tmp_path / "generated" / "fresh").exists()


def _settings(root: Path) -> Settings:
    return Settings(
        root=root, workspace=root / "workspace", spark_master="local[1]", mlflow_port=5005,
        external_tracking_uri=None, profile="ci",
    )


def test_ensure_datasets_generates_when_absent_and_refuses_to_overwrite_a_corrupt_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reuse_ci_simulation: None
) -> None:
    settings = _settings(tmp_path)
    settings.datasets.mkdir()
    shutil.copy(manifest_path(DATASETS_DIR), manifest_path(settings.datasets))

    out_dir = ensure_datasets(settings)
    assert out_dir == settings.datasets / "generated" / "ci"
    assert dataset_paths(out_dir).customers.is_file()

    def must_not_generate(*args: object, **kwargs: object) -> None:
        raise AssertionError("ensure_datasets regenerated an existing dataset")

    monkeypatch.setattr(datasets, "generate", must_not_generate)
    assert ensure_datasets(settings) == out_dir
    _flip_one_byte(dataset_paths(out_dir).customers)
    corrupted = dataset_paths(out_dir).customers.read_bytes()
    with pytest.raises(DatasetError, match="customers.csv"):
        ensure_datasets(settings)
    assert dataset_paths(out_dir).customers.read_bytes() == corrupted
