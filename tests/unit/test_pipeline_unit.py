"""Module 05's pipeline pieces that need no Spark or server: simulated days, the batch contract,
step keys, and the bad input of ``course pipeline run``."""

from __future__ import annotations

import pandas as pd
import pytest

from course_utils.cli import main
from course_utils.pipeline.context import PipelineError, check_name, source_hash, step_key
from course_utils.pipeline.data import RAW_COLUMNS, break_raw_file, day_rows, header_of, land_day, validate_batch
from course_utils.pipeline.runner import STEPS, check_days, check_step, forced_steps


def test_a_day_is_seeded_and_the_drift_lands_on_its_day_only() -> None:
    assert day_rows(2, 42, 300).equals(day_rows(2, 42, 300))
    assert not day_rows(2, 42, 300).equals(day_rows(2, 43, 300))
    clean, drifted = day_rows(3, 42, 2000, drift_day=4), day_rows(4, 42, 2000, drift_day=4)
    assert drifted["minutes_per_session"].mean() > 1.3 * clean["minutes_per_session"].mean()
    assert drifted["minutes_per_session"].isna().any() and not clean["minutes_per_session"].isna().any()
    assert set(day_rows(1, 42, 50)["customer_id"]).isdisjoint(day_rows(2, 42, 50)["customer_id"])


def test_a_clean_day_meets_the_contract_and_the_drift_day_too() -> None:
    for day in (1, 3):
        rows = day_rows(day, 42, 400, drift_day=3)
        verdict = validate_batch(list(RAW_COLUMNS), rows, corrupt_rows=0)
        assert verdict.ok, verdict.reason


@pytest.mark.parametrize("how, damage, reason", [
    ("schema", None, "schema: missing columns ['support_tickets_28d'], unexpected columns ['tickets_28d']"),
    ("nulls", ("plan", None), "nulls: plan has 1 missing values (none allowed)"),
    ("range", ("sessions_28d", -1.0), "range: sessions_28d has negative values"),
    ("category", ("plan", "gold"), "category: plan has unknown values ['gold']"),
    ("label", ("churned", 2), "range: churned should be 0 or 1, found [2]"),
])
def test_a_broken_batch_is_refused_with_its_reason(tmp_path, how, damage, reason) -> None:
    path = land_day(tmp_path, 1, seed=42, rows=60)
    if how == "schema":
        break_raw_file(path, "schema")
    frame = pd.read_csv(path)
    if damage:
        column, value = damage
        frame[column] = frame[column].astype(object)
        frame.loc[3, column] = value
    verdict = validate_batch(header_of(path), frame, corrupt_rows=0)
    assert not verdict.ok
    assert reason in verdict.reason


def test_too_many_missing_values_and_an_empty_file_are_refused() -> None:
    rows = day_rows(1, 42, 100)
    rows.loc[:19, "minutes_per_session"] = None
    assert "minutes_per_session is 20% missing (at most 10% allowed)" in validate_batch(list(RAW_COLUMNS), rows, 0).reason
    assert validate_batch(list(RAW_COLUMNS), rows.iloc[:0], 0).reason == "empty: the file has no rows"


def test_a_landed_file_is_never_overwritten(tmp_path) -> None:
    path = land_day(tmp_path, 1, seed=42, rows=20)
    break_raw_file(path, "malformed")
    broken = path.read_text()
    assert land_day(tmp_path, 1, seed=42, rows=20).read_text() == broken


def test_the_key_changes_with_every_input_parameter_and_code_version() -> None:
    base = step_key("featurise", 1, {"bronze": 0}, {"holdout": 5}, "abc")
    assert base == step_key("featurise", 1, {"bronze": 0}, {"holdout": 5}, "abc")
    variants = [
        step_key("featurise", 2, {"bronze": 0}, {"holdout": 5}, "abc"),
        step_key("featurise", 1, {"bronze": 1}, {"holdout": 5}, "abc"),
        step_key("featurise", 1, {"bronze": 0}, {"holdout": 4}, "abc"),
        step_key("featurise", 1, {"bronze": 0}, {"holdout": 5}, "abd"),
        step_key("train", 1, {"bronze": 0}, {"holdout": 5}, "abc"),
    ]
    assert base not in variants and len(set(variants)) == len(variants)


def test_the_code_version_follows_the_source(tmp_path) -> None:
    (tmp_path / "step.py").write_text("x = 1\n")
    before = source_hash(tmp_path)
    (tmp_path / "step.py").write_text("x = 2\n")
    assert source_hash(tmp_path) != before and len(before) == 12


def test_from_reruns_the_step_and_every_later_one() -> None:
    assert forced_steps(None, False) == frozenset()
    assert forced_steps("monitor", False) == frozenset(STEPS[STEPS.index("monitor"):])
    assert forced_steps(None, True) == frozenset(STEPS)


@pytest.mark.parametrize("days", [0, -1, 61, True, "3"])
def test_bad_days_are_refused(days) -> None:
    with pytest.raises(PipelineError, match="give a whole number of simulated days from 1 to 60"):
        check_days(days)


def test_an_unknown_step_or_name_is_refused() -> None:
    with pytest.raises(PipelineError, match="'retrian' is not a pipeline step; use one of ingest, featurise"):
        check_step("retrian")
    with pytest.raises(PipelineError, match="should use only letters"):
        check_name("../elsewhere")


@pytest.mark.parametrize("argv, message", [
    (["--days", "0"], "course pipeline: --days 0: give a whole number of simulated days from 1 to 60"),
    (["--days", "2", "--from", "bogus"], "course pipeline: --from 'bogus' is not a pipeline step; use one of ingest,"),
])
def test_the_command_explains_bad_input_in_one_line(capsys, argv, message) -> None:
    assert main(["pipeline", "run", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
