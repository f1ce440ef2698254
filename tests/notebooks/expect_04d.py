"""What the 04d A/B testing notebook must have recorded (see ``lesson.record`` in the notebook).

Every true effect is known by construction (the dataset's campaign, and the effects the notebook
injects), so the checks are: hand-written statistics equal SciPy's, simulated error rates sit
where theory puts them (with margins several standard errors wide), and every confidence interval
covers its true effect.
"""

from math import sqrt
from typing import Any

# The dataset's coupon campaign (course_utils.datasets.TRUE_CAMPAIGN_EFFECT): 10% -> 12% conversion.
CAMPAIGN_TRUE_LIFT = 0.02


def _covers(test: dict[str, Any], truth: float) -> bool:
    return test["ci_low"] < truth < test["ci_high"]


def ab_testing(r: dict[str, Any]) -> None:
    alpha = r["alpha"]
    assert alpha == 0.05

    # Goals: the churn model ranks better than chance and concentrates risk in the flagged group.
    assert 0.6 < r["ml_metrics"]["roc_auc"] < 0.95
    assert r["ml_metrics"]["pr_auc"] > r["churn_rate_later"] > 0
    assert r["targeting_lift"] > 1.5

    # Power: the sample size is the smallest n reaching the target, and simulation agrees.
    power = r["planned_power"]
    assert power["formula_at_n"] >= power["target"] > power["formula_at_n_minus_1"]
    assert abs(power["simulated"] - power["target"]) < 0.03
    assert abs(power["revenue_exact_t"] - power["target"]) < 0.01
    sizes = r["sample_size"]
    assert 3500 < sizes["campaign"] < 4200, "10% -> 12% needs about 3,800 per arm"
    assert 0 < sizes["offer"] < sizes["revenue"] < sizes["campaign"]

    # Variations: sticky hash assignment with no sample-ratio mismatch.
    assignment = r["assignment"]
    assert assignment["srm_p_value"] > 0.001
    assert 0.4 < assignment["in_b"] / assignment["customers"] < 0.6

    # Randomisation unit: requests as units inflate the A/A false-positive rate; customers keep alpha.
    unit = r["randomisation_unit"]
    assert unit["share_seeing_both_arms"] > 0.9
    assert unit["naive_false_positive_rate"] > 3 * alpha
    se = sqrt(alpha * (1 - alpha) / unit["experiments"])
    assert abs(unit["per_customer_false_positive_rate"] - alpha) < max(0.02, 5 * se)

    # Peeking: many looks inflate false positives, one look keeps alpha, a per-look correction restores it.
    peeking = r["peeking"]
    se = sqrt(alpha * (1 - alpha) / peeking["experiments"])
    assert abs(peeking["fixed_horizon_rate"] - alpha) < max(0.015, 5 * se)
    assert peeking["peeking_rate"] > 3 * alpha
    assert peeking["bonferroni_rate"] <= alpha + 0.01
    by_looks = peeking["rate_by_looks"]
    assert len(by_looks) == peeking["looks"] and by_looks == sorted(by_looks), "more looks, more false positives"
    assert by_looks[-1] == peeking["peeking_rate"]

    # Two-proportion z-test: equals SciPy; the campaign's interval covers its true lift.
    coupon = r["coupon_test"]
    assert coupon["scipy_gap"] < 1e-9
    assert abs(coupon["true_effect"] - CAMPAIGN_TRUE_LIFT) < 1e-12 and _covers(coupon, coupon["true_effect"])
    assert 0 <= coupon["p_value"] <= 1

    # Revenue: Welch equals SciPy; CUPED narrows the interval by about sqrt(1 - rho^2); both cover the truth.
    cuped = r["cuped"]
    for name in ("plain", "CUPED"):
        test = r["revenue_tests"][name]
        assert test["scipy_gap"] < 1e-9, name
        assert _covers(test, cuped["true_effect"]), name
    widths = {name: t["ci_high"] - t["ci_low"] for name, t in r["revenue_tests"].items()}
    assert abs(widths["CUPED"] / widths["plain"] - cuped["width_ratio"]) < 1e-9
    assert cuped["width_ratio"] < 0.75
    assert abs(cuped["width_ratio"] - sqrt(1 - cuped["correlation"] ** 2)) < 0.05
    assert r["revenue_tests"]["CUPED"]["p_value"] < alpha, "CUPED detects the lift"

    # The churn row: the offer's true effect (known by construction) is inside the analysis's interval.
    offer = r["offer_test"]
    assert offer["scipy_gap"] < 1e-9
    assert offer["true_effect"] < 0 and _covers(offer, offer["true_effect"])
    assert offer["entrants"] > 300
    assert offer["true_effect"] < offer["untargeted_true_effect"] < 0, "the model's targeting makes the offer count more"
    assert abs(offer["relative_reduction"] - offer["offer_prevents"]) < 0.3


EXPECTATIONS = {"04d_ab_testing": ab_testing}
