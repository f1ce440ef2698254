"""What ``04c_deployment_strategies`` must have recorded (see ``lesson.record`` in the notebook).

Traffic is random (weighted draws, thread timing), so shares are checked against the margins the
notebook recorded, and counts against each other; timings are never asserted as numbers.
"""

from typing import Any

CANARY_STEPS = [1.0, 5.0, 25.0, 50.0, 100.0]  # course_utils.routing.CANARY_STEPS


def _broken_canary(c: dict[str, Any], reason: str) -> None:
    assert c["failed"] == 0, "no user saw a failure of the broken canary"
    assert len(c["router_log"]) == 1 and reason in c["router_log"][0], c["router_log"]
    assert c["steps"] == CANARY_STEPS[: len(c["steps"])] and 100.0 not in c["steps"], "rolled back before full traffic"
    assert c["final_weights"]["canary"] == 0 and c["final_weights"]["stable"] > 0 and c["rule_retired"] is True
    assert sum(c["answered_by"].values()) == c["requests"] and set(c["answered_by"]) <= {"stable", "canary"}
    assert len(c["stable_answers_per_step"]) == len(c["steps"]) and min(c["stable_answers_per_step"]) > 0, \
        "the healthy version answered in every step"


def deployment_strategies(r: dict[str, Any]) -> None:
    assert r["model_versions"] == {"v1": "1", "v2": "2", "v3": "3"}
    assert r["servers_start_seconds"] > 0
    # shadow: answers unchanged, both predictions logged, some disagreement
    assert r["shadow_statuses"] == [[200, r["shadow_requests"]]]
    assert r["shadow_unchanged"] is True and r["shadow_log_matches_direct_v2"] is True
    assert r["shadow_log_records"] == r["shadow_requests"] == r["metrics_shadow_requests"] > 0
    assert 0 < r["disagreement_rate"] < 0.5
    # rolling: each step's share within its recorded margin, the last step all on v2
    steps = r["rolling_steps"]
    assert [s["v2 weight"] for s in steps] == sorted(s["v2 weight"] for s in steps) and steps[-1]["v2 weight"] == 1.0
    for step in steps:
        assert step["failed"] == 0 and step["requests"] > 0
        assert abs(step["v2 share"] - step["v2 weight"]) <= step["margin"], step
    assert steps[-1]["v2 share"] == 1.0
    # blue-green: no failure, only green after the switch, both colours served
    assert r["blue_green_failed"] == 0 and r["blue_green_requests"] > r["blue_green_requests_after_switch"] > 0
    assert r["blue_green_arms_after_switch"] == ["green"] and r["blue_green_arms"] == ["blue", "green"]
    # canary: the healthy one promoted through every step, the broken one rolled back for each reason
    assert r["healthy_canary_steps"] == CANARY_STEPS and r["healthy_canary_failed"] == 0
    assert r["healthy_canary_final_weights"] == {"stable": 0.0, "canary": 100.0}
    _broken_canary(r["error_canary"], "error rate")
    _broken_canary(r["slow_canary"], "p99 latency")
    assert r["rollback_from_full_weights"] == {"stable": 100.0, "canary": 0.0}
    # A/B: sticky, as computed without the router, split within the recorded margin
    assert r["ab_requests"] == 2 * r["ab_users"] and r["ab_failed"] == 0
    assert r["ab_sticky"] is True and r["ab_matches_choose_arm"] is True
    assert abs(r["ab_users_in_b"] - r["ab_b_share"]) <= r["ab_margin"]
    # the router's /metrics agree with what the clients saw
    assert r["metrics_match_clients"] is True
    assert r["metrics_canary_rollbacks"] == 2 and r["metrics_canary_5xx"] > 0
    assert r["all_servers_stopped"] is True


EXPECTATIONS = {
    "04c_deployment_strategies": deployment_strategies,
}
