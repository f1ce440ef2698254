"""Streamly: the course's one synthetic dataset, seeded, deterministic, drift known by construction.

Streamly is a fictional video-streaming subscription business. Every lesson uses the same
four tables (see ``datasets/README.md``, the dataset card):

- ``customers.csv``               one row per customer subscribed at some point in 2025
- ``events/<YYYY-MM-DD>.csv``      one file per day of 2025, one row per customer active that day
- ``customer_months.csv``          month-end snapshots with the two labels (churn, next month's spend)
- ``campaign_experiment.csv``      a randomised coupon campaign with a known true effect

The labels come from documented true models (``CHURN_MODEL``, ``SPEND_MODEL``) applied to
features anyone can recompute from the files (``snapshot_features``), so a model can
learn them and a lesson can compare learned coefficients with the true ones. Drift is
injected in known, non-overlapping windows (``DRIFT_WINDOWS``) so monitoring lessons can
prove they find exactly what was injected, and nothing in the clean months.

The same profile and seed give byte-identical files (with the numpy and pandas pinned in
``requirements.lock``); ``datasets/manifest.json`` records their sha256 and ``verify``
checks a generated folder against it.

Example:
    >>> paths = dataset_paths(Path("datasets/generated/ci"))
    >>> paths.customers.name
    'customers.csv'
    >>> DRIFT_WINDOWS["feature_drift"].start.isoformat()
    '2025-09-01'
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from course_utils.config import Settings
from course_utils.errors import CourseError

logger = logging.getLogger(__name__)


class DatasetError(CourseError, RuntimeError):
    """A generated dataset is missing, incomplete or differs from the manifest."""


# ---------------------------------------------------------------------------------------
# Profiles, timeline and file layout
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileSpec:
    """How big one data profile is."""

    name: str
    subscribers: int  # the subscriber base, kept flat: each month's sign-ups replace last month's leavers
    approx_customers: int  # about how many rows customers.csv gets (documentation only)


PROFILES: dict[str, ProfileSpec] = {
    "ci": ProfileSpec("ci", subscribers=580, approx_customers=1_000),
    "full": ProfileSpec("full", subscribers=11_600, approx_customers=20_000),
}

DEFAULT_SEED = 42
TIMELINE_START = date(2025, 1, 1)
TIMELINE_END = date(2025, 12, 31)
# Simulated but not written: five years of history so that the subscriber base on
# 2025-01-01 is already in its steady state (no survivorship trend inside 2025).
BURN_IN_START = date(2020, 1, 1)
FIRST_BASE_SIGNUP = date(2017, 1, 1)  # the starting base signed up between this and BURN_IN_START
FIRST_CUSTOMER_ID = 100_000
FEATURE_WINDOW_DAYS = 28

CUSTOMERS_FILE = "customers.csv"
EVENTS_DIR = "events"
CUSTOMER_MONTHS_FILE = "customer_months.csv"
CAMPAIGN_FILE = "campaign_experiment.csv"
# Key of the one combined sha256 over all daily event files in digests and the manifest.
EVENTS_DIGEST_KEY = "events/"
MANIFEST_FILE = "manifest.json"

CUSTOMER_COLUMNS = (
    "customer_id", "signup_date", "country", "plan", "age", "acquisition_channel", "monthly_fee",
)
EVENT_COLUMNS = (
    "event_date", "customer_id", "sessions", "minutes_watched", "support_tickets",
    "payment_failed", "event_ts",
)
CUSTOMER_MONTH_COLUMNS = ("customer_id", "snapshot_date", "churned_next_month", "next_month_spend")
CAMPAIGN_COLUMNS = ("customer_id", "variant", "assigned_date", "converted", "revenue")
FEATURE_COLUMNS = (
    "active_days_28d", "sessions_28d", "minutes_watched_28d", "support_tickets_28d",
    "payment_failures_28d", "tenure_months",
)


@dataclass(frozen=True)
class DatasetPaths:
    """Where the four tables of one generated profile live."""

    customers: Path
    events_dir: Path
    customer_months: Path
    campaign_experiment: Path


def dataset_paths(out_dir: Path) -> DatasetPaths:
    """The table paths inside a generated folder such as ``datasets/generated/ci``."""
    out_dir = Path(out_dir)
    return DatasetPaths(
        customers=out_dir / CUSTOMERS_FILE,
        events_dir=out_dir / EVENTS_DIR,
        customer_months=out_dir / CUSTOMER_MONTHS_FILE,
        campaign_experiment=out_dir / CAMPAIGN_FILE,
    )


def generated_dir(datasets_dir: Path, profile: str) -> Path:
    """The folder a profile is generated into: ``<datasets_dir>/generated/<profile>``."""
    return Path(datasets_dir) / "generated" / profile


def manifest_path(datasets_dir: Path) -> Path:
    """The committed manifest: ``<datasets_dir>/manifest.json``."""
    return Path(datasets_dir) / MANIFEST_FILE


def timeline_days() -> list[date]:
    """Every day of the timeline, 2025-01-01 .. 2025-12-31 (one events file each)."""
    day_count = (TIMELINE_END - TIMELINE_START).days + 1
    return [TIMELINE_START + timedelta(days=offset) for offset in range(day_count)]


# ---------------------------------------------------------------------------------------
# Drift windows: what is injected, when, and in which columns
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftWindow:
    """One period of the timeline and the drift injected in it (kind "none" = clean)."""

    name: str
    kind: str  # "none", "feature", "label", "concept" or "prediction"
    start: date
    end: date
    story: str  # what happened in the business
    changes: str  # what changes in the data, and what does not
    columns: tuple[str, ...]  # "table.column" whose distribution or relationship changes

    def contains(self, day: date) -> bool:
        """True when ``day`` (an event_date or snapshot_date) lies in this window."""
        return self.start <= day <= self.end


DRIFT_WINDOWS: dict[str, DriftWindow] = {
    "reference": DriftWindow(
        name="reference", kind="none", start=date(2025, 1, 1), end=date(2025, 6, 30),
        story="Business as usual; the period models are trained on.",
        changes="Nothing: all behaviour and both true models are the reference ones.",
        columns=(),
    ),
    "clean_control": DriftWindow(
        name="clean_control", kind="none", start=date(2025, 7, 1), end=date(2025, 8, 31),
        story="Business as usual after training; the coupon campaign runs (it changes nothing else).",
        changes="Nothing: a 'current' period a monitor must NOT flag.",
        columns=(),
    ),
    "feature_drift": DriftWindow(
        name="feature_drift", kind="feature", start=date(2025, 9, 1), end=date(2025, 9, 30),
        story="App release 5.0 turns on autoplay: people watch longer per session.",
        changes=(
            "Minutes per session x1.5, so events.minutes_watched shifts up. Sessions, activity "
            "and both labels are unchanged: the true models do not use minutes_watched, so P(y|x) "
            "and P(y) stay as in the reference."
        ),
        columns=("events.minutes_watched",),
    ),
    "concept_drift": DriftWindow(
        name="concept_drift", kind="concept", start=date(2025, 10, 1), end=date(2025, 10, 31),
        story="A new support desk answers every ticket with a retention credit.",
        changes=(
            "The support_tickets -> churn relationship flips: +0.8 logit per ticket in the "
            "reference, -0.8 here (intercept adjusted so the churn rate stays about the same). "
            "Every feature distribution stays as in the reference."
        ),
        columns=("customer_months.churned_next_month", "events.support_tickets"),
    ),
    "label_drift": DriftWindow(
        name="label_drift", kind="label", start=date(2025, 11, 1), end=date(2025, 11, 30),
        story="A competitor launches a cheaper service.",
        changes=(
            "Churn base rate rises: the churn model's intercept is +1.1 for snapshots in this window "
            "(about 5.5% -> 14%). Features and next_month_spend are unchanged. (The extra churners "
            "have cancelled, so December's snapshots no longer include them.)"
        ),
        columns=("customer_months.churned_next_month",),
    ),
    "prediction_drift": DriftWindow(
        name="prediction_drift", kind="prediction", start=date(2025, 12, 1), end=date(2025, 12, 31),
        story="A holiday bundle with a Brazilian telecom partner brings a wave of new subscribers.",
        changes=(
            "Extra sign-ups (20% of the base) on 1-20 Dec, mostly country BR, plan basic, channel "
            "partner_bundle: the country/plan/tenure mix of active customers shifts, which moves "
            "model predictions (new, basic and BR customers churn more, and pay less). The true "
            "models are unchanged (P(y|x) as in the reference)."
        ),
        columns=(
            "customers.country", "customers.plan", "customers.acquisition_channel",
            "customers.signup_date",
        ),
    ),
}


def drift_window_for(day: date) -> DriftWindow | None:
    """The drift window that contains ``day``, or None outside the 2025 timeline."""
    for window in DRIFT_WINDOWS.values():
        if window.contains(day):
            return window
    return None


# ---------------------------------------------------------------------------------------
# The business: catalogues and behaviour
# ---------------------------------------------------------------------------------------

COUNTRIES = ("US", "GB", "DE", "FR", "BR")
COUNTRY_SHARES = (0.40, 0.15, 0.15, 0.10, 0.20)
COUNTRY_PRICE_FACTOR = {"US": 1.00, "GB": 0.95, "DE": 0.95, "FR": 0.95, "BR": 0.55}
PLANS = ("basic", "standard", "premium")
PLAN_SHARES = (0.35, 0.45, 0.20)
PLAN_BASE_FEE = {"basic": 7.99, "standard": 13.99, "premium": 19.99}
ACQUISITION_CHANNELS = ("organic", "paid_search", "social", "referral", "partner_bundle")
CHANNEL_SHARES = (0.35, 0.25, 0.20, 0.12, 0.08)
# The December holiday bundle (prediction-drift window).
PROMO_SHARE_OF_BASE = 0.20
PROMO_COUNTRY_SHARES = (0.10, 0.03, 0.03, 0.04, 0.80)
PROMO_PLAN_SHARES = (0.80, 0.15, 0.05)
PROMO_CHANNEL_SHARES = (0.05, 0.03, 0.02, 0.0, 0.90)
PROMO_LAST_SIGNUP_DAY = 20

# Daily behaviour of a subscriber (a hidden per-customer engagement ~ N(0, 0.6) drives it).
ENGAGEMENT_SD = 0.6
ACTIVE_DAY_INTERCEPT = -0.95
ACTIVE_DAY_ENGAGEMENT = 0.9
ACTIVE_DAY_WEEKEND = 0.35
ACTIVE_DAY_PLAN = {"basic": -0.2, "standard": 0.0, "premium": 0.2}
EXTRA_SESSIONS_LOG_MEAN = -0.6  # sessions = 1 + Poisson(exp(-0.6 + 0.4 * engagement))
EXTRA_SESSIONS_ENGAGEMENT = 0.4
MINUTES_SHAPE_PER_SESSION = 2.0  # minutes per session ~ Gamma(2, 21): mean 42 minutes
MINUTES_SCALE = 21.0
FEATURE_DRIFT_MINUTES_FACTOR = 1.5
SUPPORT_TICKETS_PER_ACTIVE_DAY = 0.05
PAYMENT_FAILURE_PER_ACTIVE_DAY = 0.01
# Relative weight of each hour of the day (UTC) for event_ts: evening peak.
HOUR_WEIGHTS = (
    2, 1, 1, 1, 1, 1, 2, 3, 4, 4, 4, 5, 6, 5, 5, 5, 6, 8, 11, 14, 15, 12, 8, 4,
)


# ---------------------------------------------------------------------------------------
# The true models that generate the labels
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChurnModel:
    """Logistic true model: P(churned_next_month=1) = sigmoid(sum of the terms below)."""

    intercept: float
    active_days_28d: float  # per active day in the 28 days up to the snapshot
    support_tickets_28d: float  # per ticket
    payment_failures_28d: float  # per failed payment
    new_customer: float  # when tenure_months < 3
    plan_basic: float  # against plan standard
    plan_premium: float
    country_br: float  # against every other country
    age_per_decade: float  # per 10 years of (age - 40)


@dataclass(frozen=True)
class SpendModel:
    """Linear true model: next_month_spend = max(0, sum of the terms below + N(0, noise_sd))."""

    intercept: float
    monthly_fee: float
    sessions_28d: float
    payment_failures_28d: float
    age_per_decade: float  # per 10 years of (age - 40)
    noise_sd: float


CHURN_MODEL = ChurnModel(
    intercept=-2.7,
    active_days_28d=-0.12,
    support_tickets_28d=0.8,
    payment_failures_28d=1.2,
    new_customer=0.7,
    plan_basic=0.3,
    plan_premium=-0.3,
    country_br=0.2,
    age_per_decade=-0.1,
)
CHURN_MODEL_BY_WINDOW: dict[str, ChurnModel] = {
    "label_drift": replace(CHURN_MODEL, intercept=CHURN_MODEL.intercept + 1.1),
    # Intercept +0.63 keeps the mean churn rate at the reference's (tickets average ~0.44 per 28 days).
    "concept_drift": replace(CHURN_MODEL, support_tickets_28d=-0.8, intercept=CHURN_MODEL.intercept + 0.63),
}
SPEND_MODEL = SpendModel(
    intercept=0.5,
    monthly_fee=1.0,
    sessions_28d=0.3,
    payment_failures_28d=-2.0,
    age_per_decade=0.5,
    noise_sd=1.5,
)


def churn_model_for(snapshot_date: date) -> ChurnModel:
    """The true churn model in force for a snapshot date (reference unless a window changes it)."""
    window = drift_window_for(snapshot_date)
    if window is not None and window.name in CHURN_MODEL_BY_WINDOW:
        return CHURN_MODEL_BY_WINDOW[window.name]
    return CHURN_MODEL


def snapshot_features(
    events: pd.DataFrame, customers: pd.DataFrame, snapshots: pd.DataFrame
) -> pd.DataFrame:
    """The true models' inputs for each (customer_id, snapshot_date) row of ``snapshots``.

    Event features sum the 28 days ending on snapshot_date (inclusive), 0 when the customer
    had no activity; customer columns (signup_date, country, plan, age, monthly_fee) are
    joined; ``tenure_months`` counts whole months from signup_date to snapshot_date. Rows
    keep the order of ``snapshots``; the generator computes its labels with this function.
    """
    snapshot_customer = snapshots["customer_id"].to_numpy()
    snapshot_date = _as_days(snapshots["snapshot_date"])
    event_customer = events["customer_id"].to_numpy()
    event_date = _as_days(events["event_date"])
    sums = {name: np.zeros(len(snapshots)) for name in FEATURE_COLUMNS if name != "tenure_months"}
    for snapshot in np.unique(snapshot_date):
        rows = np.flatnonzero(snapshot_date == snapshot)
        in_window = (event_date > snapshot - FEATURE_WINDOW_DAYS) & (event_date <= snapshot)
        # Position of each event's customer among this snapshot's rows (-1: not snapshotted).
        position = _positions(snapshot_customer[rows], event_customer[in_window], what="snapshots")
        known = position >= 0
        position = position[known]

        def total(column: str | None) -> np.ndarray:
            weights = None if column is None else events[column].to_numpy()[in_window][known]
            return np.bincount(position, weights=weights, minlength=len(rows))

        sums["active_days_28d"][rows] = total(None)
        sums["sessions_28d"][rows] = total("sessions")
        sums["minutes_watched_28d"][rows] = total("minutes_watched")
        sums["support_tickets_28d"][rows] = total("support_tickets")
        sums["payment_failures_28d"][rows] = total("payment_failed")

    customer_row = _positions(customers["customer_id"].to_numpy(), snapshot_customer, what="customers")
    if (customer_row < 0).any():
        missing = snapshot_customer[customer_row < 0][:3].tolist()
        raise ValueError(f"snapshots name customers that are not in customers (for example {missing}).")
    signup_date = _as_days(customers["signup_date"])[customer_row]
    features = pd.DataFrame(
        {
            "customer_id": snapshot_customer,
            "snapshot_date": snapshot_date,
            "active_days_28d": sums["active_days_28d"].astype("int64"),
            "sessions_28d": sums["sessions_28d"].astype("int64"),
            "minutes_watched_28d": np.round(sums["minutes_watched_28d"], 1),
            "support_tickets_28d": sums["support_tickets_28d"].astype("int64"),
            "payment_failures_28d": sums["payment_failures_28d"].astype("int64"),
            "tenure_months": _whole_months_between(signup_date, snapshot_date),
            "signup_date": signup_date,
        }
    )
    for column in ("country", "plan", "age", "monthly_fee"):
        features[column] = customers[column].to_numpy()[customer_row]
    return features


def _as_days(values: pd.Series) -> np.ndarray:
    """Dates (strings, datetimes or dates) as a numpy datetime64[D] array."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.to_numpy().astype("datetime64[D]")
    return pd.to_datetime(values).to_numpy().astype("datetime64[D]")


def _positions(keys: np.ndarray, lookups: np.ndarray, what: str) -> np.ndarray:
    """Index of each lookup value in ``keys`` (-1 when absent); ``keys`` must be unique."""
    index = pd.Index(keys)
    if not index.is_unique:
        raise ValueError(f"{what} must have one row per customer_id (per snapshot_date); found duplicates.")
    return index.get_indexer(lookups)


def true_churn_probability(features: pd.DataFrame, model: ChurnModel | None = None) -> np.ndarray:
    """P(churned_next_month=1) for ``snapshot_features`` rows.

    With ``model=None`` each row uses the true model in force at its snapshot_date (what
    generated the labels); pass ``CHURN_MODEL`` to score every row with the reference model.
    """
    if model is not None:
        return _sigmoid(_churn_logit(features, model))
    snapshot_dates = _as_days(features["snapshot_date"])
    logit = np.zeros(len(features))
    for snapshot in np.unique(snapshot_dates):
        rows = snapshot_dates == snapshot
        logit[rows] = _churn_logit(features.loc[rows], churn_model_for(pd.Timestamp(snapshot).date()))
    return _sigmoid(logit)


def true_spend_mean(features: pd.DataFrame) -> np.ndarray:
    """Expected next_month_spend under the true linear model (before noise and the 0 floor)."""
    model = SPEND_MODEL
    return (
        model.intercept
        + model.monthly_fee * features["monthly_fee"].to_numpy(float)
        + model.sessions_28d * features["sessions_28d"].to_numpy(float)
        + model.payment_failures_28d * features["payment_failures_28d"].to_numpy(float)
        + model.age_per_decade * (features["age"].to_numpy(float) - 40.0) / 10.0
    )


def _churn_logit(features: pd.DataFrame, model: ChurnModel) -> np.ndarray:
    """The linear predictor of one churn model."""
    return (
        model.intercept
        + model.active_days_28d * features["active_days_28d"].to_numpy(float)
        + model.support_tickets_28d * features["support_tickets_28d"].to_numpy(float)
        + model.payment_failures_28d * features["payment_failures_28d"].to_numpy(float)
        + model.new_customer * (features["tenure_months"].to_numpy() < 3)
        + model.plan_basic * (features["plan"].to_numpy() == "basic")
        + model.plan_premium * (features["plan"].to_numpy() == "premium")
        + model.country_br * (features["country"].to_numpy() == "BR")
        + model.age_per_decade * (features["age"].to_numpy(float) - 40.0) / 10.0
    )


def _whole_months_between(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Whole calendar months from start to end, datetime64[D] arrays (2025-01-15 -> 2025-03-14 is 1)."""
    start_month, end_month = start.astype("datetime64[M]"), end.astype("datetime64[M]")
    months = (end_month - start_month).astype("int64")
    start_day = (start - start_month.astype("datetime64[D]")).astype("int64")
    end_day = (end - end_month.astype("datetime64[D]")).astype("int64")
    return months - (end_day < start_day)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# ---------------------------------------------------------------------------------------
# The campaign experiment
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignEffect:
    """The coupon campaign's true parameters (the numbers an A/B analysis should recover)."""

    name: str
    first_assignment: date
    assignment_days: int  # customers are assigned on one of these days (when they open the app)
    conversion_window_days: int  # converted = bought the Sports Pass within this many days
    control_conversion_rate: float
    treatment_conversion_rate: float
    control_revenue_per_converter: float  # mean of a Gamma(shape 4) revenue
    treatment_revenue_per_converter: float  # the coupon takes 10% off

    @property
    def conversion_lift(self) -> float:
        """Treatment minus control conversion rate (absolute, in probability)."""
        return self.treatment_conversion_rate - self.control_conversion_rate

    @property
    def control_revenue_per_customer(self) -> float:
        """Expected revenue per assigned control customer."""
        return self.control_conversion_rate * self.control_revenue_per_converter

    @property
    def treatment_revenue_per_customer(self) -> float:
        """Expected revenue per assigned treatment customer."""
        return self.treatment_conversion_rate * self.treatment_revenue_per_converter

    @property
    def revenue_lift_per_customer(self) -> float:
        """Treatment minus control expected revenue per assigned customer."""
        return self.treatment_revenue_per_customer - self.control_revenue_per_customer


TRUE_CAMPAIGN_EFFECT = CampaignEffect(
    name="sports_pass_coupon",
    first_assignment=date(2025, 7, 1),
    assignment_days=14,
    conversion_window_days=14,
    control_conversion_rate=0.10,
    treatment_conversion_rate=0.12,
    control_revenue_per_converter=30.0,
    treatment_revenue_per_converter=27.0,
)
REVENUE_GAMMA_SHAPE = 4.0


def _assign_campaign(rng: np.random.Generator, customer_ids: np.ndarray) -> pd.DataFrame:
    """Complete randomisation into two equal arms, then conversions and revenue by the true effect."""
    effect = TRUE_CAMPAIGN_EFFECT
    customer_ids = np.sort(np.asarray(customer_ids))
    count = len(customer_ids)
    is_treatment = np.zeros(count, dtype=bool)
    is_treatment[rng.permutation(count)[: count // 2]] = True
    assigned = np.datetime64(effect.first_assignment) + rng.integers(0, effect.assignment_days, count)
    converted = rng.random(count) < np.where(
        is_treatment, effect.treatment_conversion_rate, effect.control_conversion_rate
    )
    mean_revenue = np.where(
        is_treatment, effect.treatment_revenue_per_converter, effect.control_revenue_per_converter
    )
    revenue = rng.gamma(REVENUE_GAMMA_SHAPE, mean_revenue / REVENUE_GAMMA_SHAPE)
    return pd.DataFrame(
        {
            "customer_id": customer_ids,
            "variant": np.where(is_treatment, "treatment", "control"),
            "assigned_date": np.datetime_as_string(assigned, unit="D"),
            "converted": converted.astype("int64"),
            "revenue": np.where(converted, np.round(revenue, 2), 0.0),
        }
    )


# ---------------------------------------------------------------------------------------
# Simulation (in memory)
# ---------------------------------------------------------------------------------------


@dataclass
class _Population:
    """Everyone who ever subscribed, one array entry per customer (internal index)."""

    signup: np.ndarray  # datetime64[D]
    last_day: np.ndarray  # datetime64[D]; far future while no cancellation is pending
    cancelled: np.ndarray  # bool: churn decided, leaves at last_day
    engagement: np.ndarray
    country: np.ndarray  # indices into COUNTRIES, PLANS, ACQUISITION_CHANNELS
    plan: np.ndarray
    channel: np.ndarray
    age: np.ndarray

    def extend(self, other: _Population) -> None:
        """Append newly signed-up customers."""
        for name in self.__dataclass_fields__:
            setattr(self, name, np.concatenate([getattr(self, name), getattr(other, name)]))

    def frame(self, index: np.ndarray) -> pd.DataFrame:
        """The customers table (customer_id = internal index) for the given customers."""
        country = np.array(COUNTRIES)[self.country[index]]
        plan = np.array(PLANS)[self.plan[index]]
        fee = np.round(
            np.array([PLAN_BASE_FEE[p] for p in PLANS])[self.plan[index]]
            * np.array([COUNTRY_PRICE_FACTOR[c] for c in COUNTRIES])[self.country[index]],
            2,
        )
        return pd.DataFrame(
            {
                "customer_id": index,
                "signup_date": self.signup[index],
                "country": country,
                "plan": plan,
                "age": self.age[index],
                "acquisition_channel": np.array(ACQUISITION_CHANNELS)[self.channel[index]],
                "monthly_fee": fee,
            }
        )


_FAR_FUTURE = np.datetime64("2100-01-01")


def _new_customers(
    rng: np.random.Generator,
    count: int,
    first_signup: date,
    last_signup: date,
    country_shares: Iterable[float] = COUNTRY_SHARES,
    plan_shares: Iterable[float] = PLAN_SHARES,
    channel_shares: Iterable[float] = CHANNEL_SHARES,
) -> _Population:
    """``count`` customers signing up uniformly between two dates (inclusive)."""
    span = (last_signup - first_signup).days + 1
    return _Population(
        signup=np.datetime64(first_signup) + rng.integers(0, span, count),
        last_day=np.full(count, _FAR_FUTURE),
        cancelled=np.zeros(count, dtype=bool),
        engagement=rng.normal(0.0, ENGAGEMENT_SD, count),
        country=rng.choice(len(COUNTRIES), size=count, p=np.array(list(country_shares))),
        plan=rng.choice(len(PLANS), size=count, p=np.array(list(plan_shares))),
        channel=rng.choice(len(ACQUISITION_CHANNELS), size=count, p=np.array(list(channel_shares))),
        age=np.clip(np.round(rng.normal(38.0, 12.0, count)), 18, 80).astype("int64"),
    )


def _simulate_month(
    rng: np.random.Generator, population: _Population, first_day: date, last_day: date
) -> pd.DataFrame:
    """Daily activity of every subscriber in one month (customer_id = internal index)."""
    days = np.arange(np.datetime64(first_day), np.datetime64(last_day) + 1)
    in_month = np.flatnonzero((population.signup <= days[-1]) & (population.last_day >= days[0]))
    subscribed = (population.signup[in_month, None] <= days[None, :]) & (
        population.last_day[in_month, None] >= days[None, :]
    )
    weekday = (days.astype("int64") + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    plan_effect = np.array([ACTIVE_DAY_PLAN[p] for p in PLANS])[population.plan[in_month]]
    logit = (
        ACTIVE_DAY_INTERCEPT
        + ACTIVE_DAY_ENGAGEMENT * population.engagement[in_month, None]
        + plan_effect[:, None]
        + ACTIVE_DAY_WEEKEND * (weekday >= 5)[None, :]
    )
    active = subscribed & (rng.random(subscribed.shape) < _sigmoid(logit))
    row, column = np.nonzero(active)
    customer = in_month[row]
    event_day = days[column]
    count = len(customer)

    engagement = population.engagement[customer]
    sessions = 1 + rng.poisson(np.exp(EXTRA_SESSIONS_LOG_MEAN + EXTRA_SESSIONS_ENGAGEMENT * engagement))
    feature_window = DRIFT_WINDOWS["feature_drift"]
    in_feature_drift = (event_day >= np.datetime64(feature_window.start)) & (
        event_day <= np.datetime64(feature_window.end)
    )
    minutes_scale = MINUTES_SCALE * np.where(in_feature_drift, FEATURE_DRIFT_MINUTES_FACTOR, 1.0)
    minutes = np.round(rng.gamma(MINUTES_SHAPE_PER_SESSION * sessions, minutes_scale), 1)
    tickets = rng.poisson(SUPPORT_TICKETS_PER_ACTIVE_DAY, count)
    payment_failed = (rng.random(count) < PAYMENT_FAILURE_PER_ACTIVE_DAY).astype("int64")
    hour_weights = np.array(HOUR_WEIGHTS, dtype=float)
    hour = rng.choice(24, size=count, p=hour_weights / hour_weights.sum())
    second_of_hour = rng.integers(0, 3600, count)
    event_ts = event_day.astype("datetime64[s]") + (hour * 3600 + second_of_hour).astype("timedelta64[s]")
    return pd.DataFrame(
        {
            "event_date": event_day,
            "customer_id": customer,
            "sessions": sessions,
            "minutes_watched": minutes,
            "support_tickets": tickets,
            "payment_failed": payment_failed,
            "event_ts": event_ts,
        }
    )


@dataclass(frozen=True)
class _Tables:
    """The four tables in memory, with public customer ids, ready to write."""

    customers: pd.DataFrame
    events: pd.DataFrame
    customer_months: pd.DataFrame
    campaign_experiment: pd.DataFrame


def _month_ends(first: date, last: date) -> list[tuple[date, date]]:
    """(first day, last day) of every month from ``first``'s month to ``last``'s month."""
    months = pd.period_range(first, last, freq="M")
    return [(period.start_time.date(), period.end_time.date()) for period in months]


def _month_of(day: date) -> tuple[date, date]:
    """(first day, last day) of the month that contains ``day``."""
    return _month_ends(day, day)[0]


def _simulate(spec: ProfileSpec, seed: int) -> _Tables:
    """Run the business from the burn-in start to 2025-12-31 and return the 2025 tables."""
    population_rng, activity_rng, label_rng, campaign_rng = np.random.default_rng(seed).spawn(4)
    population = _new_customers(
        population_rng, spec.subscribers, FIRST_BASE_SIGNUP, BURN_IN_START - timedelta(days=1)
    )
    events_2025: list[pd.DataFrame] = []
    labels_2025: list[pd.DataFrame] = []
    promo = DRIFT_WINDOWS["prediction_drift"]

    for first_day, last_day in _month_ends(BURN_IN_START, TIMELINE_END):
        if first_day == promo.start:
            population.extend(
                _new_customers(
                    population_rng, round(PROMO_SHARE_OF_BASE * spec.subscribers), promo.start,
                    promo.start.replace(day=PROMO_LAST_SIGNUP_DAY), PROMO_COUNTRY_SHARES,
                    PROMO_PLAN_SHARES, PROMO_CHANNEL_SHARES,
                )
            )
        month_events = _simulate_month(activity_rng, population, first_day, last_day)
        if first_day >= TIMELINE_START:
            events_2025.append(month_events)

        # Month-end snapshot: label everyone still subscribed with no cancellation pending.
        snapshot = np.datetime64(last_day)
        eligible = np.flatnonzero((population.signup <= snapshot) & ~population.cancelled)
        snapshots = pd.DataFrame({"customer_id": eligible, "snapshot_date": pd.Timestamp(last_day)})
        features = snapshot_features(month_events, population.frame(eligible), snapshots)
        churned = label_rng.random(len(eligible)) < true_churn_probability(features)
        noise = label_rng.normal(0.0, SPEND_MODEL.noise_sd, len(eligible))
        spend = np.round(np.maximum(0.0, true_spend_mean(features) + noise), 2)
        if first_day >= TIMELINE_START:
            labels_2025.append(
                pd.DataFrame(
                    {
                        "customer_id": eligible,
                        "snapshot_date": last_day.isoformat(),
                        "churned_next_month": churned.astype("int64"),
                        "next_month_spend": spend,
                    }
                )
            )

        # Churners cancel during next month and are gone after its last day.
        next_first, next_last = _month_of(last_day + timedelta(days=1))
        leavers = eligible[churned]
        population.cancelled[leavers] = True
        population.last_day[leavers] = np.datetime64(next_last)
        # Marketing keeps the base flat: next month's sign-ups replace this month's leavers.
        leaving_now = int(np.count_nonzero(population.last_day == snapshot))
        population.extend(_new_customers(population_rng, leaving_now, next_first, next_last))

    return _public_tables(population, events_2025, labels_2025, campaign_rng)


def _public_tables(
    population: _Population,
    events_2025: list[pd.DataFrame],
    labels_2025: list[pd.DataFrame],
    campaign_rng: np.random.Generator,
) -> _Tables:
    """Keep the customers of 2025, give them public ids in sign-up order, and build the tables."""
    start, end = np.datetime64(TIMELINE_START), np.datetime64(TIMELINE_END)
    in_2025 = np.flatnonzero((population.signup <= end) & (population.last_day >= start))
    in_2025 = in_2025[np.lexsort((in_2025, population.signup[in_2025]))]
    public_id = np.full(len(population.signup), -1, dtype="int64")
    public_id[in_2025] = FIRST_CUSTOMER_ID + np.arange(len(in_2025))

    customers = population.frame(in_2025)
    customers["customer_id"] = public_id[in_2025]
    customers["signup_date"] = np.datetime_as_string(population.signup[in_2025], unit="D")

    events = pd.concat(events_2025, ignore_index=True)
    events["customer_id"] = public_id[events["customer_id"].to_numpy()]
    # Sorted by time, so each day is one contiguous slice (dates become text when written).
    events = events.sort_values(["event_ts", "customer_id"], kind="stable", ignore_index=True)

    customer_months = pd.concat(labels_2025, ignore_index=True)
    customer_months["customer_id"] = public_id[customer_months["customer_id"].to_numpy()]
    customer_months = customer_months.sort_values(["snapshot_date", "customer_id"], ignore_index=True)

    campaign_day = np.datetime64(TRUE_CAMPAIGN_EFFECT.first_assignment)
    eligible = np.flatnonzero((population.signup <= campaign_day) & (population.last_day >= campaign_day))
    campaign = _assign_campaign(campaign_rng, public_id[eligible])
    return _Tables(customers, events, customer_months, campaign)


# ---------------------------------------------------------------------------------------
# Writing, hashing, atomic replacement
# ---------------------------------------------------------------------------------------


def _write_csv(frame: pd.DataFrame, path: Path, float_format: str) -> None:
    """One CSV with fixed formatting, so the bytes depend only on the values."""
    frame.to_csv(path, index=False, lineterminator="\n", float_format=float_format)


def _write_tables(tables: _Tables, out_dir: Path) -> None:
    """Write the four tables into an (empty) folder."""
    paths = dataset_paths(out_dir)
    _write_csv(tables.customers[list(CUSTOMER_COLUMNS)], paths.customers, "%.2f")
    _write_csv(tables.customer_months[list(CUSTOMER_MONTH_COLUMNS)], paths.customer_months, "%.2f")
    _write_csv(tables.campaign_experiment[list(CAMPAIGN_COLUMNS)], paths.campaign_experiment, "%.2f")
    paths.events_dir.mkdir()
    events = tables.events[list(EVENT_COLUMNS)]
    days = timeline_days()
    # events is sorted by event_ts: day i is the slice between bounds[i] and bounds[i + 1].
    day_starts = np.array([np.datetime64(day, "s") for day in [*days, TIMELINE_END + timedelta(days=1)]])
    bounds = np.searchsorted(events["event_ts"].to_numpy().astype("datetime64[s]"), day_starts)
    for day, first_row, end_row in zip(days, bounds[:-1], bounds[1:]):
        # A day nobody was active still gets its (header-only) file: one file per day, always.
        day_rows = events.iloc[first_row:end_row]
        timestamps = day_rows["event_ts"].to_numpy().astype("datetime64[s]")
        day_rows = day_rows.assign(event_date=day.isoformat(), event_ts=np.datetime_as_string(timestamps, unit="s"))
        _write_csv(day_rows, paths.events_dir / f"{day.isoformat()}.csv", "%.1f")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_digest(out_dir: Path) -> dict[str, str]:
    """sha256 of each top-level table, plus one combined sha256 for all daily event files.

    The ``"events/"`` entry hashes the sorted lines ``"<file name> <sha256 of file>\\n"``
    of every ``events/*.csv``, so a changed, missing, renamed or extra daily file changes it
    while the manifest stays small (one entry instead of 365).
    """
    paths = dataset_paths(out_dir)
    top_level = (CUSTOMERS_FILE, CUSTOMER_MONTHS_FILE, CAMPAIGN_FILE)
    digest = {name: _sha256(Path(out_dir) / name) for name in top_level}
    listing = "".join(f"{path.name} {_sha256(path)}\n" for path in sorted(paths.events_dir.glob("*.csv")))
    digest[EVENTS_DIGEST_KEY] = hashlib.sha256(listing.encode()).hexdigest()
    return digest


def _row_counts(out_dir: Path) -> dict[str, int]:
    """Data rows (lines minus the header) of each table; events summed over all days."""

    def rows(path: Path) -> int:
        with path.open("rb") as handle:
            return sum(1 for _ in handle) - 1

    paths = dataset_paths(out_dir)
    return {
        CUSTOMERS_FILE: rows(paths.customers),
        CUSTOMER_MONTHS_FILE: rows(paths.customer_months),
        CAMPAIGN_FILE: rows(paths.campaign_experiment),
        EVENTS_DIGEST_KEY: sum(rows(path) for path in paths.events_dir.glob("*.csv")),
    }


def _replace_folder(new: Path, target: Path) -> None:
    """Move a complete ``new`` folder to ``target``, keeping the old one until the move succeeded."""
    if not target.exists():
        os.rename(new, target)
        return
    previous = target.with_name(f".{target.name}.previous-{os.getpid()}")
    shutil.rmtree(previous, ignore_errors=True)
    os.rename(target, previous)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(previous, target)  # put the old good dataset back
        raise
    shutil.rmtree(previous, ignore_errors=True)


def profile_spec(profile: str) -> ProfileSpec:
    """The size of a profile; raises ValueError naming the valid profiles."""
    if profile not in PROFILES:
        raise ValueError(f"Unknown data profile {profile!r}; use one of {', '.join(PROFILES)}.")
    return PROFILES[profile]


def generate(profile: str, out_dir: Path, seed: int = DEFAULT_SEED) -> dict[str, str]:
    """Write the profile's four tables into ``out_dir`` atomically; return ``dataset_digest``.

    The tables are written into a temporary sibling folder and renamed into place only when
    complete, so a failure never leaves a half-written dataset and an existing dataset stays
    until its replacement is complete.

    Example:
        >>> generate("ci", Path("datasets/generated/ci"))  # doctest: +SKIP
        {'customers.csv': '2e79…', 'customer_months.csv': '…', 'campaign_experiment.csv': '…', 'events/': '…'}
    """
    spec = profile_spec(profile)
    out_dir = Path(out_dir)
    started = time.perf_counter()
    tables = _simulate(spec, seed)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; the dataset is not
        _write_tables(tables, staging)
        digest = dataset_digest(staging)
        _replace_folder(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("Generated the %s dataset in %s in %.1f s", profile, out_dir, time.perf_counter() - started)
    return digest


# ---------------------------------------------------------------------------------------
# Manifest and verification
# ---------------------------------------------------------------------------------------


def _generate_command(profile: str) -> str:
    return f"run `.venv/bin/course datasets generate --profile {profile}`"


def read_manifest(datasets_dir: Path) -> dict[str, dict]:
    """The committed manifest: profile -> {"seed", "files" (sha256), "rows"}."""
    path = manifest_path(datasets_dir)
    if not path.is_file():
        raise DatasetError(
            f"The dataset manifest {path} is missing. It is part of the repository: restore it with "
            f"`git checkout -- {MANIFEST_FILE}` in {Path(datasets_dir)} (maintainers rebuild it with "
            "course_utils.datasets.write_manifest)."
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DatasetError(
            f"The dataset manifest {path} is not valid JSON ({error}); restore it from git."
        ) from error


def verify(profile: str, out_dir: Path, datasets_dir: Path) -> None:
    """Check a generated folder against the manifest; raise DatasetError naming the problem and the fix."""
    out_dir = Path(out_dir)
    fix = _generate_command(profile)
    manifest = read_manifest(datasets_dir)
    if profile not in manifest:
        raise DatasetError(
            f"The manifest {manifest_path(datasets_dir)} has no entry for profile {profile!r} "
            f"(it has: {', '.join(sorted(manifest)) or 'none'}); a maintainer adds it with write_manifest."
        )
    expected: dict[str, str] = manifest[profile]["files"]
    if not out_dir.is_dir():
        raise DatasetError(f"The {profile} dataset folder {out_dir} is missing. Fix: {fix}.")

    paths = dataset_paths(out_dir)
    for name in (CUSTOMERS_FILE, CUSTOMER_MONTHS_FILE, CAMPAIGN_FILE):
        if not (out_dir / name).is_file():
            raise DatasetError(f"{name} is missing from the {profile} dataset in {out_dir}. Fix: {fix}.")
    expected_days = {f"{day.isoformat()}.csv" for day in timeline_days()}
    found_days = {path.name for path in paths.events_dir.glob("*.csv")}  # empty when the folder is missing
    missing_days = sorted(expected_days - found_days)
    if missing_days:
        raise DatasetError(
            f"{len(missing_days)} of {len(expected_days)} daily event files are missing from "
            f"{paths.events_dir} (first: {missing_days[0]}). Fix: {fix}."
        )
    extra_days = sorted(found_days - expected_days)
    if extra_days:
        raise DatasetError(
            f"Unexpected files in {paths.events_dir}: {', '.join(extra_days[:3])}. Fix: {fix}."
        )

    actual = dataset_digest(out_dir)
    for name in sorted(expected):
        if actual.get(name) == expected[name]:
            continue
        what = (
            f"One or more of the {len(expected_days)} daily files in {paths.events_dir}"
            if name == EVENTS_DIGEST_KEY
            else f"{out_dir / name}"
        )
        raise DatasetError(
            f"{what} does not match the manifest (sha256 {actual.get(name, 'none')[:12]}…, expected "
            f"{expected[name][:12]}…): it was changed or corrupted. Fix: {fix}, which rebuilds the "
            "whole folder. If a fresh generate still differs, numpy/pandas differ from requirements.lock."
        )


def ensure_datasets(settings: Settings) -> Path:
    """The verified dataset folder for ``settings.profile``, generated first if it is absent.

    A folder that exists but differs from the manifest is not overwritten: DatasetError
    says what differs and how to rebuild it.
    """
    out_dir = generated_dir(settings.datasets, settings.profile)
    manifest = read_manifest(settings.datasets)
    if not out_dir.exists():
        seed = int(manifest.get(settings.profile, {}).get("seed", DEFAULT_SEED))
        generate(settings.profile, out_dir, seed=seed)
    verify(settings.profile, out_dir, settings.datasets)
    return out_dir


def write_manifest(
    datasets_dir: Path, profiles: Iterable[str] = ("ci", "full"), seed: int = DEFAULT_SEED
) -> Path:
    """Generate each profile in a temporary folder and record its hashes and row counts (maintainers)."""
    path = manifest_path(datasets_dir)
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    for profile in profiles:
        with tempfile.TemporaryDirectory(prefix=f"streamly-{profile}-") as scratch:
            out_dir = Path(scratch) / profile
            files = generate(profile, out_dir, seed=seed)
            manifest[profile] = {"seed": seed, "files": files, "rows": _row_counts(out_dir)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path
