"""What the 04_production notebooks must have recorded (see ``lesson.record`` in each notebook).

04a: the drift verdicts must equal the drift injected by construction, window for window; the online
detectors (river) must catch the concept drift inside its window, with nothing before it.
"""

from typing import Any

WINDOWS = ["week_01", "week_02", "week_03", "week_04", "week_05", "week_06", "week_07"]
INJECTED = {
    "week_01": "none",
    "week_02": "feature",
    "week_03": "none",
    "week_04": "label",
    "week_05": "concept",
    "week_06": "prediction",
    "week_07": "none",
}
SLIDE_ACTIONS = {
    "feature": ["Investigate feature generation process", "Retrain using new data"],
    "label": ["Investigate label generation process", "Retrain using new data"],
    "prediction": ["Investigate model training process", "Assess business impact of change in predictions"],
    "concept": [
        "Investigate additional feature engineering",
        "Consider alternative approach/solution",
        "Retrain/tune using new data",
    ],
}


def drift_monitoring(r: dict[str, Any]) -> None:
    assert r["windows"] == WINDOWS
    assert r["injected"] == INJECTED
    # every drift flagged in exactly the window it was injected in, and nothing in the clean windows
    flagged = {tuple(pair) for pair in r["flagged"]}
    assert flagged == {(window, kind) for window, kind in INJECTED.items() if kind != "none"}, sorted(flagged)
    assert r["feature_drift_columns"] == {w: (["minutes_per_session"] if w == "week_02" else []) for w in WINDOWS}
    assert {w for w, counts in r["missing_by_window"].items() if counts} == {"week_02"}
    assert r["bonferroni_ks_threshold"] == 0.05 / 4
    # label drift costs accuracy too; concept drift is the drop with inputs and labels unchanged
    assert r["accuracy_dropped"] == ["week_04", "week_05"]
    assert r["expected_vs_observed_gap_concept"] > 0.1
    # the slide's A/B/C/D table
    slide = r["slide_chisquare"]
    assert slide["statistic"] == 6.0 and round(slide["p_value"], 4) == 0.1116 and slide["drifted"] is False
    assert abs(slide["p_value"] - slide["scipy_p_value"]) < 1e-12
    assert abs(slide["homogeneity_statistic"] - 25 / 9) < 1e-9
    # large samples: KS flags a negligible shift, the distances do not
    large = r["large_sample"]
    assert large["rows"] >= 1_000_000
    assert large["ks_drifted"] is True and large["ks_p_value"] < 1e-6
    assert large["wasserstein"] < 0.1 and large["psi"] < 0.1 and large["distance_drifted_any_size"] is False
    # the slide's drift type -> action table, applied to each window's verdicts
    assert r["drift_actions"] == SLIDE_ACTIONS
    for window, kind in INJECTED.items():
        assert r["actions"][window] == (SLIDE_ACTIONS[kind] if kind != "none" else ["Keep monitoring"]), window
    assert r["prediction_drift_cause"] == {"logisticregression__class_weight": ["None", "'balanced'"]}
    retraining = r["retraining"]
    assert retraining["week_05"]["retrained"] > retraining["week_05"]["reference model"] + 0.1
    assert retraining["week_04"]["retrained"] > retraining["week_04"]["reference model"]
    online_detectors(r["online_detectors"])


DETECTORS = ("ADWIN", "DDM", "PageHinkley")


def online_detectors(online: dict[str, Any]) -> None:
    """river's ADWIN, DDM and Page-Hinkley on the served model's 0/1 errors, each window replayed after the reference stretch."""
    assert online["concept_window"] == "week_05"
    # by construction the errors change where another true model labels (label, concept) or another model serves (prediction)
    assert online["error_changed"] == ["week_04", "week_05", "week_06"]
    rates = online["error_rate_by_construction"]
    assert rates["week_05"] > rates["reference"] + 0.1
    assert all(abs(rates[w] - rates["reference"]) < 0.01 for w in WINDOWS if w not in online["error_changed"])
    # nothing before the drift: no alarm on the reference stretch every window is replayed after
    assert online["reference_alarms"] == {name: [] for name in DETECTORS}
    for name in DETECTORS:
        delay = online["concept_detection_delay"][name]
        assert delay is not None and 0 <= delay < online["window_rows"] // 10, (name, delay)
        assert set(online["error_changed"]) <= set(online["alarm_windows"][name]), name
        # an error alarm with no feature, label or prediction drift in its window: concept drift, only in week_05
        assert online["online_concept_drift"][name] == ["week_05"], name
    # ADWIN and Page-Hinkley (allowance = half the accuracy drop worth acting on): exactly the changed windows
    assert online["alarm_windows"]["ADWIN"] == online["error_changed"]
    assert online["alarm_windows"]["PageHinkley"] == online["error_changed"]
    # DDM: its false alarms (shown and explained in the notebook) are in windows whose error rate is the reference's
    assert online["ddm_false_alarms"] == sorted(set(online["alarm_windows"]["DDM"]) - set(online["error_changed"]))
    assert len(online["ddm_false_alarms"]) <= 1
    # river's default Page-Hinkley allowance false-alarms on the stationary reference stretch
    assert online["default_page_hinkley_reference_alarms"] >= 1


EXPECTATIONS = {
    "04a_drift_monitoring": drift_monitoring,
}
