"""The drift statistics of module 04: pinned to scipy/numpy, to evidently 0.7.23, and on bad input.

evidently's numbers come from ``tests/unit/data/drift_evidently_reference.json``, written by
``tools/record_evidently_reference.py`` (its docstring has the command); evidently itself is
not installed here.
"""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from course_utils.monitoring import (
    DEFAULT_TESTS,
    DRIFT_TESTS,
    binned_shares,
    chi2_contingency_test,
    chisquare_test,
    drift_report,
    get_drift_test,
    jensenshannon_distance,
    ks_test,
    levene_test,
    mann_whitney_test,
    psi,
    summary_statistics,
    wasserstein_normed,
)

EVIDENTLY_REFERENCE = Path(__file__).parent / "data" / "drift_evidently_reference.json"
REPORT_COLUMNS = ["column", "test", "statistic", "p_value", "threshold", "drifted"]


@pytest.fixture(scope="module")
def numeric_samples() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    return rng.normal(0, 1, 300), rng.normal(0.3, 1.4, 200)


@pytest.fixture(scope="module")
def category_samples() -> tuple[pd.Series, pd.Series]:
    rng = np.random.default_rng(5)
    return (
        pd.Series(rng.choice(["basic", "standard", "premium"], 500, p=[0.5, 0.3, 0.2])),
        pd.Series(rng.choice(["basic", "standard", "premium"], 400, p=[0.4, 0.3, 0.3])),
    )


def _counts(reference: pd.Series, current: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    categories = sorted(set(reference) | set(current))
    return (
        np.array([(reference == c).sum() for c in categories], dtype=float),
        np.array([(current == c).sum() for c in categories], dtype=float),
    )


# --- every statistic equals scipy's or numpy's on fixed data -------------------------------


def test_ks_is_scipys_two_sample_test(numeric_samples) -> None:
    reference, current = numeric_samples
    expected = stats.ks_2samp(reference, current)
    result = ks_test(reference, current)
    assert (result.statistic, result.p_value, result.threshold) == (expected.statistic, expected.pvalue, 0.05)
    assert result.drifted == (expected.pvalue <= 0.05)


def test_mann_whitney_is_scipys_two_sided_test(numeric_samples) -> None:
    reference, current = numeric_samples
    expected = stats.mannwhitneyu(reference, current, alternative="two-sided")
    result = mann_whitney_test(reference, current)
    assert (result.statistic, result.p_value) == (expected.statistic, expected.pvalue)
    assert result.drifted == (expected.pvalue < 0.05)


def test_levene_is_scipys_test(numeric_samples) -> None:
    reference, current = numeric_samples
    expected = stats.levene(reference, current)
    result = levene_test(reference, current)
    assert (result.statistic, result.p_value) == (expected.statistic, expected.pvalue)
    assert result.drifted  # the current spread is 1.4 times the reference's


def test_wasserstein_is_scipys_distance_over_the_reference_std(numeric_samples) -> None:
    reference, current = numeric_samples
    result = wasserstein_normed(reference, current)
    assert result.statistic == pytest.approx(
        stats.wasserstein_distance(reference, current) / np.std(reference), rel=1e-12
    )
    assert result.p_value is None and result.threshold == 0.1 and result.drifted


def test_psi_is_the_sum_over_sturges_bins_of_the_combined_sample(numeric_samples) -> None:
    reference, current = numeric_samples
    edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
    reference_shares = np.histogram(reference, edges)[0] / len(reference)
    current_shares = np.histogram(current, edges)[0] / len(current)
    reference_shares[reference_shares == 0] = 1e-4
    current_shares[current_shares == 0] = 1e-4
    expected = np.sum((reference_shares - current_shares) * np.log(reference_shares / current_shares))
    result = psi(reference, current)
    assert result.statistic == pytest.approx(expected, rel=1e-12)
    assert result.drifted == (expected >= 0.1)


def test_jensenshannon_is_scipys_distance_on_unfilled_bins(numeric_samples, category_samples) -> None:
    reference, current = numeric_samples
    edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
    expected = jensenshannon(np.histogram(reference, edges)[0] / 300, np.histogram(current, edges)[0] / 200)
    assert jensenshannon_distance(reference, current).statistic == pytest.approx(expected, rel=1e-12)
    reference_counts, current_counts = _counts(*category_samples)
    expected = jensenshannon(reference_counts / 500, current_counts / 400)
    assert jensenshannon_distance(*category_samples, column_type="cat").statistic == pytest.approx(expected, rel=1e-12)


def test_chisquare_is_scipys_goodness_of_fit_against_the_reference_shares(category_samples) -> None:
    reference_counts, current_counts = _counts(*category_samples)
    expected = stats.chisquare(current_counts, reference_counts * 400 / 500)
    result = chisquare_test(*category_samples)
    assert (result.statistic, result.p_value) == pytest.approx((expected.statistic, expected.pvalue), rel=1e-12)
    assert result.drifted


def test_chi2_contingency_is_scipys_test_on_the_table_of_counts(category_samples) -> None:
    reference_counts, current_counts = _counts(*category_samples)
    expected = stats.chi2_contingency(np.vstack([reference_counts, current_counts]))
    result = chi2_contingency_test(*category_samples)
    assert (result.statistic, result.p_value) == pytest.approx((expected.statistic, expected.pvalue), rel=1e-12)
    # Two categories: scipy's Yates correction applies, as it does by default.
    reference, current = pd.Series(["a"] * 30 + ["b"] * 20), pd.Series(["a"] * 20 + ["b"] * 30)
    corrected = stats.chi2_contingency([[30, 20], [20, 30]], correction=True)
    assert chi2_contingency_test(reference, current).statistic == pytest.approx(corrected.statistic, rel=1e-12)


def test_the_slides_expected_observed_table() -> None:
    """Expected 25/25/25/25, observed 35/20/25/20: chi-square 6 on 3 degrees of freedom."""
    expected = pd.Series(np.repeat(list("ABCD"), [25, 25, 25, 25]))
    observed = pd.Series(np.repeat(list("ABCD"), [35, 20, 25, 20]))
    goodness_of_fit = chisquare_test(expected, observed)
    assert goodness_of_fit.statistic == pytest.approx(6.0, rel=1e-12)
    assert goodness_of_fit.p_value == pytest.approx(stats.chi2.sf(6.0, 3), rel=1e-12)
    assert not goodness_of_fit.drifted
    # Counting both columns as samples (homogeneity): 2 * (25/30 + 2 * 6.25/22.5) = 25/9.
    assert chi2_contingency_test(expected, observed).statistic == pytest.approx(25 / 9, rel=1e-12)


# --- binning as evidently 0.7.23's get_binned_data ----------------------------------------


def test_empty_bins_get_1e_4_and_shares_are_not_renormalised() -> None:
    reference_shares, current_shares = binned_shares(["a", "a", "a", "b"], ["a", "a", "c", "c"], "cat")
    assert reference_shares.tolist() == [0.75, 0.25, 1e-4]
    assert current_shares.tolist() == [0.5, 1e-4, 0.5]


def test_a_share_below_1e_4_makes_the_fill_a_millionth_of_it() -> None:
    reference = ["a"] * 19_999 + ["b"]  # b's share: 5e-5
    reference_shares, current_shares = binned_shares(reference, ["a", "c"], "cat")
    assert reference_shares[2] == pytest.approx(5e-5 / 10**6, rel=1e-12)
    assert current_shares[1] == 1e-4  # current's smallest share (0.5) is large: the usual fill


def test_jensenshannon_bins_are_not_filled() -> None:
    reference_shares, current_shares = binned_shares(["a", "b"], ["b", "c"], "cat", fill_empty=False)
    assert reference_shares.tolist() == [0.5, 0.5, 0.0] and current_shares.tolist() == [0.0, 0.5, 0.5]


def test_sturges_bins_start_above_20_distinct_reference_values() -> None:
    twenty, twenty_one = np.arange(20.0), np.arange(21.0)
    # 20 distinct reference values: one bin per value of either sample, however many the current has.
    assert len(binned_shares(twenty, np.arange(100) + 0.5, "num")[0]) == 20 + 100
    # 21: Sturges, ceil(log2(n) + 1) bins over the combined n = 42 values.
    assert len(binned_shares(twenty_one, twenty_one, "num")[0]) == math.ceil(math.log2(42) + 1)
    # A categorical column never gets Sturges bins.
    assert len(binned_shares(twenty_one, twenty_one, "cat")[0]) == 21


# --- the same numbers as evidently 0.7.23 --------------------------------------------------


def _evidently_cases() -> list:
    record = json.loads(EVIDENTLY_REFERENCE.read_text())
    assert record["versions"]["evidently"] == "0.7.23"
    return [
        pytest.param(test, case, id=f"{name}-{test}")
        for name, case in record["cases"].items()
        for test in case["evidently"]
    ]


def _recorded_sample(case: dict, which: str) -> pd.Series:
    if f"{which}_counts" in case:
        counts = case[f"{which}_counts"]
        return pd.Series(np.repeat(list(counts), list(counts.values())), dtype=object)
    return pd.Series(case[which], dtype=float)


@pytest.mark.parametrize(("test_name", "case"), _evidently_cases())
def test_same_score_and_verdict_as_evidently(test_name: str, case: dict) -> None:
    recorded = case["evidently"][test_name]
    test = get_drift_test(test_name)
    result = test(_recorded_sample(case, "reference"), _recorded_sample(case, "current"), case["column_type"])
    # evidently's drift score is the p-value for a test that has one, else the distance.
    score = result.p_value if test.has_p_value else result.statistic
    assert score == pytest.approx(recorded["drift_score"], rel=1e-12, abs=1e-300)
    assert (result.drifted, result.threshold) == (recorded["drifted"], recorded["threshold"])


def test_evidently_reference_covers_every_binning_path() -> None:
    cases = {param.id.split("-")[0] for param in _evidently_cases()}
    assert {"num_21_distinct", "num_20_distinct", "num_reference_few_distinct", "cat_rare", "cat_new_and_gone"} <= cases


# --- the monitor ---------------------------------------------------------------------------


def _frames(seed: int = 11) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drift known by construction: ``minutes`` and ``plan`` drift, ``age`` and ``country`` do not."""
    rng = np.random.default_rng(seed)

    def frame(n: int, minutes_mean: float, plan_shares: list[float]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "age": rng.normal(40, 10, n),
                "minutes": rng.normal(minutes_mean, 20, n),
                "country": rng.choice(["DE", "FR", "IT"], n, p=[0.5, 0.3, 0.2]),
                "plan": rng.choice(["basic", "premium"], n, p=plan_shares),
            }
        )

    return frame(600, 100, [0.7, 0.3]), frame(500, 115, [0.5, 0.5])


def test_report_has_one_row_per_column_and_default_test() -> None:
    report = drift_report(*_frames())
    assert list(report.columns) == REPORT_COLUMNS
    expected_pairs = [
        (column, test)
        for column, kind in [("age", "num"), ("minutes", "num"), ("country", "cat"), ("plan", "cat")]
        for test in DEFAULT_TESTS[kind]
    ]
    assert list(zip(report["column"], report["test"], strict=True)) == expected_pairs
    assert report.dtypes.to_dict() == {
        "column": object,
        "test": object,
        "statistic": float,
        "p_value": float,
        "threshold": float,
        "drifted": bool,
    }
    assert report.loc[report["test"] == "psi", "p_value"].isna().all()


def test_report_finds_the_drift_built_in_and_nothing_else() -> None:
    report = drift_report(*_frames())
    drifted = report.groupby("column")["drifted"].any()
    assert drifted.to_dict() == {"age": False, "country": False, "minutes": True, "plan": True}
    assert report.loc[report["column"] == "minutes"].set_index("test")["drifted"][["ks", "mannw", "wasserstein"]].all()


def test_report_rows_are_the_test_functions_with_bonferroni_thresholds() -> None:
    reference, current = _frames()
    report = drift_report(reference, current).set_index(["column", "test"])
    row = report.loc[("minutes", "ks")]
    expected = ks_test(reference["minutes"], current["minutes"], threshold=0.05 / 2)  # two numeric columns
    assert (row["statistic"], row["p_value"], row["threshold"]) == (expected.statistic, expected.p_value, 0.025)
    row = report.loc[("plan", "psi")]
    assert (row["statistic"], row["threshold"]) == (
        psi(reference["plan"], current["plan"], column_type="cat").statistic,
        0.1,
    )


def test_bonferroni_turns_a_borderline_p_value_into_no_drift() -> None:
    base = np.arange(40.0)
    reference = pd.DataFrame({"a": base, "b": base, "c": base})
    current = pd.DataFrame({"a": base + 13, "b": base, "c": base})  # K-S p = 0.0286, between 0.05/3 and 0.05
    tests = {name: ["ks"] for name in "abc"}
    corrected = drift_report(reference, current, tests).set_index("column").loc["a"]
    assert 0.05 / 3 < corrected["p_value"] < 0.05
    assert corrected["threshold"] == pytest.approx(0.05 / 3) and not corrected["drifted"]
    uncorrected = drift_report(reference, current, tests, bonferroni=False).set_index("column").loc["a"]
    assert uncorrected["threshold"] == 0.05 and uncorrected["drifted"]


def test_tests_argument_chooses_columns_tests_and_thresholds() -> None:
    reference, current = _frames()
    strict_psi = dataclasses.replace(DRIFT_TESTS["psi"], default_threshold=0.5)
    report = drift_report(reference, current, {"minutes": ["wasserstein", strict_psi], "plan": ["chisquare"]})
    assert list(zip(report["column"], report["test"], report["threshold"], strict=True)) == [
        ("minutes", "wasserstein", 0.1),
        ("minutes", "psi", 0.5),
        ("plan", "chisquare", 0.05),
    ]


def test_missing_values_are_dropped_before_testing() -> None:
    reference, current = _frames()
    holed = current.copy()
    holed.loc[:49, "minutes"] = np.nan
    holed.loc[:9, "plan"] = None
    with_gaps = drift_report(reference, holed)
    expected = ks_test(reference["minutes"], current["minutes"].iloc[50:])
    assert with_gaps.set_index(["column", "test"]).loc[("minutes", "ks"), "p_value"] == expected.p_value
    expected_psi = psi(reference["plan"], current["plan"].iloc[10:], column_type="cat")
    assert with_gaps.set_index(["column", "test"]).loc[("plan", "psi"), "statistic"] == expected_psi.statistic


# --- bad input: a clear error or a documented result ---------------------------------------


def test_mismatched_column_sets_are_refused() -> None:
    reference, current = _frames()
    with pytest.raises(ValueError) as error:
        drift_report(reference, current.rename(columns={"age": "age_years"}))
    assert str(error.value) == (
        "reference and current must have the same columns; only in reference: ['age'], "
        "only in current: ['age_years']; select the shared columns in both"
    )
    with pytest.raises(TypeError, match="^current must be a pandas DataFrame, got ndarray$"):
        drift_report(reference, current.to_numpy())
    twice = pd.concat([reference["age"], reference["age"]], axis=1)
    with pytest.raises(ValueError) as error:
        drift_report(twice, twice)
    assert str(error.value) == "reference has duplicated column name(s) ['age']: rename them so each is one column"


def test_an_empty_column_is_refused() -> None:
    reference, current = _frames()
    with pytest.raises(ValueError) as error:
        drift_report(reference, current.iloc[0:0])
    assert str(error.value) == "column 'age' is empty in the current data (0 rows): drift needs values in both samples"


def test_an_all_missing_column_is_refused() -> None:
    reference, current = _frames()
    with pytest.raises(ValueError) as error:
        drift_report(reference, current.assign(minutes=np.nan))
    assert str(error.value) == (
        "column 'minutes' has only missing values in the current data (500 of 500 rows): "
        "fix what fills it, or leave it out of the drift tests"
    )


def test_infinite_values_are_refused() -> None:
    reference, current = _frames()
    reference.loc[3, "age"] = np.inf
    with pytest.raises(ValueError) as error:
        drift_report(reference, current)
    assert str(error.value) == (
        "column 'age' has 1 infinite value(s) in the reference data: "
        "replace them with NaN (then they are dropped as missing) or fix their source"
    )


def test_the_pure_functions_refuse_nan_inf_and_empty_samples() -> None:
    with pytest.raises(
        ValueError, match=r"^the current sample has 1 missing value\(s\): drop them first \(drift_report does\)$"
    ):
        ks_test([1.0, 2.0], [1.0, np.nan])
    with pytest.raises(
        ValueError, match=r"^the reference sample has 2 infinite value\(s\): replace or drop them first$"
    ):
        psi([np.inf, -np.inf, 1.0], [1.0])
    with pytest.raises(
        ValueError, match="^the reference sample is empty: a drift test needs at least one value in each sample$"
    ):
        chisquare_test([], ["a"])
    with pytest.raises(
        ValueError, match="^the reference sample must be numeric, got dtype <U1: this test is for num columns$"
    ):
        wasserstein_normed(["a"], [1.0])


def test_a_column_numeric_in_one_frame_and_text_in_the_other_is_refused() -> None:
    reference, current = _frames()
    with pytest.raises(ValueError) as error:
        drift_report(reference, current.assign(age=current["age"].round().astype(int).astype(str)))
    assert str(error.value) == (
        "column 'age' is numeric in the reference data but categorical in the current data: cast both to one type first"
    )


def test_unknown_tests_columns_and_types_are_refused() -> None:
    reference, current = _frames()
    with pytest.raises(ValueError) as error:
        drift_report(reference, current, {"age": ["kolmogorov"]})
    assert str(error.value) == (
        "column 'age': unknown drift test 'kolmogorov'; registered tests: "
        "ks, mannw, levene, wasserstein, psi, jensenshannon, chisquare, chi2_contingency"
    )
    with pytest.raises(ValueError) as error:
        drift_report(reference, current, {"plan": ["ks"]})
    assert str(error.value) == "column 'plan' is cat but drift test 'ks' accepts only num columns"
    with pytest.raises(ValueError) as error:
        drift_report(reference, current, {"income": ["ks"]})
    assert (
        str(error.value)
        == "tests names column(s) not in the data: ['income']; columns: ['age', 'minutes', 'country', 'plan']"
    )
    with pytest.raises(TypeError, match="^tests\\['age'\\] must be a list of test names, got the string 'ks'$"):
        drift_report(reference, current, {"age": "ks"})
    with pytest.raises(ValueError, match="^drift test 'chisquare' accepts cat columns, not 'num'$"):
        DRIFT_TESTS["chisquare"]([1.0], [2.0], "num")


def test_categories_that_differ_are_compared_over_their_union() -> None:
    """Documented: a category one sample lacks counts 0 there; new in current makes chisquare inf."""
    reference = pd.Series(["a"] * 50 + ["b"] * 50)
    current = pd.Series(["a"] * 50 + ["c"] * 50)  # b gone, c new
    goodness_of_fit = chisquare_test(reference, current)
    assert (goodness_of_fit.statistic, goodness_of_fit.p_value, goodness_of_fit.drifted) == (math.inf, 0.0, True)
    homogeneity = chi2_contingency_test(reference, current)
    expected = stats.chi2_contingency([[50, 50, 0], [50, 0, 50]])
    assert homogeneity.statistic == pytest.approx(expected.statistic) and homogeneity.drifted
    assert psi(reference, current, column_type="cat").statistic == pytest.approx(
        2 * (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    )


def test_a_single_distinct_value() -> None:
    """Documented results, and an error where the statistic is undefined."""
    constant = np.full(30, 3.0)
    assert (ks_test(constant, constant).statistic, ks_test(constant, constant).p_value) == (0.0, 1.0)
    # A constant reference: Wasserstein divides by evidently's floor of 0.001.
    assert wasserstein_normed(constant, np.full(30, 3.0005)).statistic == pytest.approx(0.5)
    one_category = pd.Series(["basic"] * 10)
    for test in (chisquare_test, chi2_contingency_test):
        result = test(one_category, one_category)
        assert (result.statistic, result.p_value, result.drifted) == (0.0, 1.0, False)
    frame = pd.DataFrame({"fee": constant})
    with pytest.raises(ValueError) as error:
        drift_report(frame, frame, {"fee": ["levene"]})
    assert str(error.value) == (
        "column 'fee', test 'levene': Levene's test is undefined when both samples are constant "
        "(its statistic is 0/0): compare the two values directly, or use 'ks'"
    )


# --- summary statistics --------------------------------------------------------------------


def test_summary_statistics_and_their_percent_change() -> None:
    reference = pd.DataFrame({"fee": [10.0, 12.0, np.nan, 14.0], "plan": ["a", "b", "b", None]})
    current = pd.DataFrame({"fee": [15.0, np.nan, np.nan, 21.0], "plan": ["a", "c", "d", "e"]})
    table = summary_statistics(reference, current).set_index(["column", "statistic"])
    fee = table.loc["fee"]
    assert list(fee.index) == ["count", "missing", "mean", "median", "std", "min", "max"]
    assert fee.loc["mean"].tolist() == [12.0, 18.0, 50.0]
    assert fee.loc["std", "current"] == pytest.approx(np.std([15.0, 21.0], ddof=1))
    assert fee.loc["missing"].tolist() == [1.0, 2.0, 100.0]
    plan = table.loc["plan"]
    assert list(plan.index) == ["count", "missing", "distinct"]
    assert plan.loc["distinct"].tolist() == [2.0, 4.0, 100.0]
    assert plan.loc["missing"].tolist() == [1.0, 0.0, -100.0]
    # The other way round, missing values where there were none: +inf, not a division error.
    assert (
        summary_statistics(current, reference)
        .set_index(["column", "statistic"])
        .loc[("plan", "missing"), "percent_change"]
        == math.inf
    )


def test_summary_statistics_of_an_all_missing_column_and_bad_input() -> None:
    reference = pd.DataFrame({"fee": [10.0, 12.0]})
    table = summary_statistics(reference, pd.DataFrame({"fee": [None, None]})).set_index("statistic")
    assert table.loc["count", "current"] == 0 and np.isnan(table.loc["mean", "current"])
    with pytest.raises(ValueError) as error:
        summary_statistics(reference, pd.DataFrame({"fee": [1.0, np.inf]}))
    assert str(error.value) == (
        "column 'fee' has 1 infinite value(s) in the current data: "
        "replace them with NaN (then they count as missing) or fix their source"
    )
    with pytest.raises(
        ValueError, match=r"^reference and current must have the same columns; only in reference: \['fee'\]"
    ):
        summary_statistics(reference, pd.DataFrame({"price": [1.0]}))


@pytest.mark.parametrize("module", ["", ".binning", ".stattests", ".summary", ".report", ".performance"])
def test_docstring_examples_run(module: str) -> None:
    results = doctest.testmod(
        importlib.import_module("course_utils.monitoring" + module), optionflags=doctest.NORMALIZE_WHITESPACE
    )
    assert results.attempted > 0 and results.failed == 0
