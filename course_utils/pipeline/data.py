"""Simulated days of raw data, the batch contract each day must meet, and broken files to test it.

Each simulated day the "source system" drops one CSV file, ``landing/day_NN.csv``: customers
scored that day with their inputs and (labels arriving with the batch, to keep the simulation
short) whether they churned. The rows come from module 04's seeded generator
(:func:`course_utils.monitoring.drift_data.make_rows`), so the drift is known by construction:
on ``drift_day`` the app's autoplay release makes ``minutes_per_session`` 1.5 times longer (and
5 % of it missing), which the true churn model ignores.

:func:`validate_batch` is the contract a batch must meet before it is loaded: the expected
columns, rows that parse, ranges, categories, and at most :data:`MAX_NULL_SHARE` missing
values per column (keys and labels: none).

Example:
    >>> frame = day_rows(day=1, seed=42, rows=5)
    >>> list(frame.columns) == list(RAW_COLUMNS), len(frame)
    (True, 5)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from course_utils.monitoring.drift_data import CATEGORICAL_INPUTS, NUMERIC_INPUTS, PLANS, make_rows

FIRST_DAY = date(2025, 7, 1)  # simulated day 1
LABEL = "churned"
INPUTS = (*NUMERIC_INPUTS, *CATEGORICAL_INPUTS)
RAW_COLUMNS = ("customer_id", "event_date", *INPUTS, LABEL)
RAW_SCHEMA = (
    "customer_id BIGINT, event_date DATE, tenure_months DOUBLE, sessions_28d DOUBLE, "
    "support_tickets_28d DOUBLE, minutes_per_session DOUBLE, plan STRING, churned INT"
)
NO_NULLS = ("customer_id", "event_date", "plan", LABEL)
MAX_NULL_SHARE = 0.10  # the app may fail to report a metric now and then (the drift day loses 5 %)
HOLDOUT_MODULUS = 5  # customer_id % 5 == 0: held out for validation, never trained on


def day_date(day: int) -> date:
    """The calendar date of simulated day ``day`` (day 1 is 2025-07-01)."""
    return FIRST_DAY + timedelta(days=day - 1)


def day_rows(day: int, seed: int, rows: int, drift_day: int | None = None) -> pd.DataFrame:
    """The raw rows of one simulated day: seeded by (seed, day), feature drift on ``drift_day``."""
    if isinstance(day, bool) or not isinstance(day, int) or day < 1:
        raise ValueError(f"day={day!r} should be a whole number of 1 or more.")
    rng = np.random.default_rng([seed, day])
    frame = make_rows(rng, rows, "feature" if day == drift_day else "none")
    frame.insert(0, "customer_id", np.arange(rows, dtype="int64") + day * 100_000)
    frame.insert(1, "event_date", day_date(day).isoformat())
    frame[LABEL] = frame[LABEL].astype("int64")
    return frame[list(RAW_COLUMNS)]


def raw_path(landing_dir: Path, day: int) -> Path:
    return Path(landing_dir) / f"day_{day:02d}.csv"


def land_day(landing_dir: Path, day: int, seed: int, rows: int, drift_day: int | None = None) -> Path:
    """Write day ``day``'s raw file unless it is already there (the source system delivers once)."""
    path = raw_path(landing_dir, day)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        day_rows(day, seed, rows, drift_day).to_csv(tmp, index=False, float_format="%.4f")
        tmp.replace(path)
    return path


def break_raw_file(path: Path, how: str) -> Path:
    """Damage a landed file the way real feeds break: ``"schema"`` (a renamed column) or ``"malformed"``."""
    text = Path(path).read_text()
    if how == "schema":
        text = text.replace("support_tickets_28d", "tickets_28d", 1)
    elif how == "malformed":
        lines = text.splitlines()
        lines[2] = "not,a,row"
        lines[5] = lines[5].replace(",", ";")
        text = "\n".join(lines) + "\n"
    else:
        raise ValueError(f"how={how!r}; use 'schema' or 'malformed'.")
    Path(path).write_text(text)
    return Path(path)


def file_digest(path: Path) -> str:
    """sha256 of a raw file (its identity: a re-delivered, changed file is a new input)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class BatchVerdict:
    """Whether a batch may be loaded, and if not, every reason why."""

    ok: bool
    reasons: tuple[str, ...]
    rows: int

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons) or "ok"


def header_of(path: Path) -> list[str]:
    """The column names on a CSV file's first line."""
    with open(path, encoding="utf-8") as handle:
        return handle.readline().strip().split(",")


def validate_batch(header: list[str], frame: pd.DataFrame, corrupt_rows: int) -> BatchVerdict:
    """The batch contract: schema, rows that parse, no missing keys/labels, ranges, categories, few nulls."""
    reasons: list[str] = []
    if header != list(RAW_COLUMNS):
        missing = [c for c in RAW_COLUMNS if c not in header]
        extra = [c for c in header if c not in RAW_COLUMNS]
        return BatchVerdict(False, (f"schema: missing columns {missing}, unexpected columns {extra}",), len(frame))
    if len(frame) == 0:
        return BatchVerdict(False, ("empty: the file has no rows",), 0)
    if corrupt_rows:
        reasons.append(f"malformed: {corrupt_rows} of {len(frame)} rows do not parse as {RAW_SCHEMA}")
    for column in NO_NULLS:
        nulls = int(frame[column].isna().sum())
        if nulls and not corrupt_rows:
            reasons.append(f"nulls: {column} has {nulls} missing values (none allowed)")
    for column in NUMERIC_INPUTS:
        share = float(frame[column].isna().mean())
        if share > MAX_NULL_SHARE:
            reasons.append(f"nulls: {column} is {share:.0%} missing (at most {MAX_NULL_SHARE:.0%} allowed)")
        if (frame[column].dropna() < 0).any():
            reasons.append(f"range: {column} has negative values")
    bad_plans = sorted(set(frame["plan"].dropna()) - set(PLANS))
    if bad_plans:
        reasons.append(f"category: plan has unknown values {bad_plans}")
    labels = set(frame[LABEL].dropna().astype(int))
    if not labels <= {0, 1}:
        reasons.append(f"range: {LABEL} should be 0 or 1, found {sorted(labels - {0, 1})}")
    return BatchVerdict(not reasons, tuple(reasons), len(frame))
