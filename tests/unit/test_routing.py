"""The routing policy without HTTP: weights, sticky hashing, failover order, canary steps, switch and rollback."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import replace

import pytest

from course_utils.routing import (
    CANARY_STEPS,
    Arm,
    ArmStats,
    Outcome,
    Policy,
    PolicyError,
    RollbackRule,
    ab_policy,
    arm_stats,
    blue_green_policy,
    canary_policy,
    canary_step,
    choose_arm,
    failover_order,
    hash_unit,
    percentile,
    pick_by_weight,
    policy_from_dict,
    policy_to_dict,
    rollback,
    rollback_reason,
    set_share,
    shadow_policy,
    switch_to,
    validate,
    weighted_policy,
)

A, B, C = "http://127.0.0.1:5001", "http://127.0.0.1:5002", "http://127.0.0.1:5003"


def _weights(policy: Policy) -> dict[str, float]:
    return {arm.name: arm.weight for arm in policy.arms}


# --- weights ---------------------------------------------------------------------------------


def test_pick_by_weight_slices_the_unit_interval_in_proportion() -> None:
    arms = (Arm("a", A, 1), Arm("b", B, 3))
    assert [pick_by_weight(arms, d).name for d in (0.0, 0.2499, 0.25, 0.9999)] == ["a", "a", "b", "b"]


def test_weighted_split_matches_weights_over_many_draws() -> None:
    policy = weighted_policy({"v1": A, "v2": B}, {"v1": 90, "v2": 10})
    rng = random.Random(7)
    counts = Counter(choose_arm(policy, draw=rng.random()).name for _ in range(20_000))
    assert counts["v2"] / 20_000 == pytest.approx(0.10, abs=0.01)


def test_zero_weight_arm_is_never_chosen() -> None:
    policy = blue_green_policy(A, B, live="blue")
    assert {choose_arm(policy, draw=d / 100).name for d in range(100)} == {"blue"}


@pytest.mark.parametrize("draw", [-0.1, 1.0, math.nan])
def test_draw_outside_unit_interval_is_refused(draw: float) -> None:
    with pytest.raises(PolicyError, match=r"must be in \[0, 1\)"):
        pick_by_weight((Arm("a", A),), draw)


def test_weighted_choice_without_draw_is_refused() -> None:
    with pytest.raises(PolicyError) as error:
        choose_arm(weighted_policy({"a": A}, {"a": 1}))
    assert str(error.value) == "Weighted routing (or a sticky request without a user id) needs a draw in [0, 1)."


# --- sticky ----------------------------------------------------------------------------------


def test_hash_unit_is_in_range_and_repeatable() -> None:
    values = [hash_unit(f"salt:user-{i}") for i in range(1000)]
    assert all(0 <= v < 1 for v in values)
    assert hash_unit("exp-1:user-42") == hash_unit("exp-1:user-42")


def test_hash_unit_is_sha256_not_pythons_salted_hash() -> None:
    import hashlib

    expected = int.from_bytes(hashlib.sha256(b"exp-1:user-42").digest()[:8], "big") / 2**64
    assert hash_unit("exp-1:user-42") == expected


def test_sticky_user_always_gets_the_same_arm_whatever_the_draw() -> None:
    policy = ab_policy(A, B, salt="exp-1")
    for user in (f"user-{i}" for i in range(200)):
        assert len({choose_arm(policy, user_id=user, draw=d / 10).name for d in range(10)}) == 1


def test_sticky_split_is_about_even_and_a_new_salt_reshuffles_users() -> None:
    users = [f"user-{i}" for i in range(4000)]
    first = {u: choose_arm(ab_policy(A, B, salt="exp-1"), user_id=u).name for u in users}
    second = {u: choose_arm(ab_policy(A, B, salt="exp-2"), user_id=u).name for u in users}
    assert Counter(first.values())["b"] / len(users) == pytest.approx(0.5, abs=0.03)
    moved = sum(first[u] != second[u] for u in users) / len(users)
    assert moved == pytest.approx(0.5, abs=0.05)  # independent experiments


def test_sticky_without_user_id_falls_back_to_the_draw() -> None:
    policy = ab_policy(A, B, salt="exp-1")
    assert choose_arm(policy, user_id=None, draw=0.1).name == "a"
    assert choose_arm(policy, user_id="", draw=0.9).name == "b"


# --- failover --------------------------------------------------------------------------------


def test_failover_tries_chosen_then_others_by_weight_and_never_a_shadow() -> None:
    policy = Policy("weighted", (Arm("small", A, 1), Arm("big", B, 9), Arm("idle", C, 0), Arm("shadow", C, 0)),
                    shadow=("shadow",))
    order = failover_order(policy, policy.arm("small"))
    assert [arm.name for arm in order] == ["small", "big", "idle"]


def test_failover_off_tries_only_the_chosen_arm() -> None:
    policy = replace(weighted_policy({"a": A, "b": B}, {"a": 1, "b": 1}), failover=False)
    assert [arm.name for arm in failover_order(policy, policy.arm("a"))] == ["a"]


# --- strategies ------------------------------------------------------------------------------


def test_canary_steps_through_the_schedule_to_full_traffic() -> None:
    policy = canary_policy(A, B, percent=CANARY_STEPS[0])
    shares = [_weights(policy)["canary"]]
    while _weights(policy)["canary"] < 100:
        policy = canary_step(policy, "canary")
        shares.append(_weights(policy)["canary"])
    assert shares == [1.0, 5.0, 25.0, 50.0, 100.0]
    assert _weights(policy)["stable"] == 0.0
    with pytest.raises(PolicyError) as error:
        canary_step(policy, "canary")
    assert str(error.value) == "Arm 'canary' already has 100% of traffic, the last step."


def test_set_share_keeps_the_other_arms_ratio() -> None:
    policy = weighted_policy({"a": A, "b": B, "c": C}, {"a": 2, "b": 1, "c": 1})
    assert _weights(set_share(policy, "c", 40)) == {"a": 40.0, "b": 20.0, "c": 40.0}


def test_set_share_refuses_to_leave_traffic_with_nobody() -> None:
    policy = blue_green_policy(A, B, live="blue")
    with pytest.raises(PolicyError) as error:
        set_share(policy, "blue", 50)
    assert str(error.value) == "No other arm with traffic can take the remaining 50% from 'blue'."


def test_switch_moves_all_traffic_and_keeps_the_other_arm_for_failover() -> None:
    blue = blue_green_policy(A, B, live="blue")
    green = switch_to(blue, "green")
    assert _weights(green) == {"blue": 0.0, "green": 100.0}
    assert [arm.name for arm in failover_order(green, green.arm("green"))] == ["green", "blue"]


def test_switch_to_unknown_arm_names_the_known_ones() -> None:
    with pytest.raises(PolicyError) as error:
        switch_to(blue_green_policy(A, B), "purple")
    assert str(error.value) == "No arm named 'purple'; the policy has blue, green."


def test_shadow_policy_answers_from_primary_only() -> None:
    policy = shadow_policy(A, B)
    assert policy.shadow == ("shadow",)
    assert {choose_arm(policy, draw=d / 10).name for d in range(10)} == {"primary"}


def test_rollback_takes_the_arm_out_and_retires_the_rule() -> None:
    policy = canary_policy(A, B, percent=25)
    rolled = rollback(policy, "canary")
    assert _weights(rolled) == {"stable": 75.0, "canary": 0.0}
    assert rolled.rollback is None


def test_rolling_back_a_canary_at_100_percent_gives_the_stable_arm_its_traffic_back() -> None:
    """Found in 04c: at 100 % the stable arm had weight 0, and a rollback left no arm to answer."""
    policy = canary_policy(A, B, percent=100)
    assert _weights(policy)["stable"] == 0.0
    rolled = rollback(policy, "canary")
    assert _weights(rolled) == {"stable": 100.0, "canary": 0.0}
    assert {choose_arm(rolled, draw=d / 10).name for d in range(10)} == {"stable"}


# --- rollback rule ---------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([0.3], 99) == 0.3
    assert percentile([], 99) == 0.0


def test_arm_stats_counts_failures_and_p99() -> None:
    outcomes = [Outcome(False, 0.01)] * 95 + [Outcome(True, 2.0)] * 5
    assert arm_stats(outcomes) == ArmStats(requests=100, errors=5, p99_s=2.0)


def test_no_rollback_before_min_requests() -> None:
    rule = RollbackRule("canary", min_requests=20)
    assert rollback_reason(ArmStats(19, 19, 9.0), rule) is None


def test_rollback_on_error_rate_says_why() -> None:
    rule = RollbackRule("canary", max_error_rate=0.05)
    assert rollback_reason(ArmStats(40, 6, 0.01), rule) == "error rate 0.150 > 0.05 (6 of the last 40 requests failed)"
    assert rollback_reason(ArmStats(40, 2, 0.01), rule) is None


def test_rollback_on_p99_says_why() -> None:
    rule = RollbackRule("canary", max_p99_s=0.5)
    assert rollback_reason(ArmStats(50, 0, 0.8), rule) == "p99 latency 0.800 s > 0.5 s over the last 50 requests"
    assert rollback_reason(ArmStats(50, 0, 0.5), rule) is None


# --- validation and JSON ---------------------------------------------------------------------


def test_policy_round_trips_through_json() -> None:
    policy = canary_policy(A, B, percent=5)
    assert policy_from_dict(policy_to_dict(policy)) == policy
    shadow = shadow_policy(A, B)
    assert policy_from_dict(policy_to_dict(shadow)) == shadow


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mode": "random", "arms": [{"name": "a", "url": A}]}, "mode='random' is not a routing mode; use one of weighted, sticky."),
        ({"arms": []}, "A policy needs at least one arm."),
        ({"arms": [{"name": "a", "url": A}, {"name": "a", "url": B}]}, "Arm names must be unique; repeated: a."),
        ({"arms": [{"name": "a", "url": "127.0.0.1:5001"}]},
         "Arm 'a' has url='127.0.0.1:5001'; give a base URL like http://127.0.0.1:5001."),
        ({"arms": [{"name": "a", "url": A, "weight": -1}]}, "Arm 'a' has weight=-1.0; weights are finite numbers >= 0."),
        ({"arms": [{"name": "a", "url": A, "weight": 0}]}, "No arm can answer: give at least one non-shadow arm a weight above 0."),
        ({"arms": [{"name": "a", "url": A}, {"name": "b", "url": B}], "shadow": ["b"]},
         "Shadow arm 'b' has weight 1.0; a shadow never answers, give it weight 0."),
        ({"arms": [{"name": "a", "url": A}], "shadow": "a"}, "shadow is a list of arm names, not the string 'a'."),
        ({"arms": [{"name": "a", "url": A}], "shadow": ["x"]}, "No arm named 'x'; the policy has a."),
        ({"arms": [{"url": A}]}, "Malformed arm or rollback rule (KeyError: 'name')."),
        ({"arms": [{"name": "a", "url": A}], "color": "blue"}, "Unknown policy field(s): color."),
        ({"arms": [{"name": "a", "url": A}], "rollback": {"arm": "a", "max_error_rate": 2}},
         "rollback max_error_rate=2 is not a rate between 0 and 1."),
        ({"arms": [{"name": "a", "url": A}], "rollback": {"arm": "a", "min_requests": 50, "window": 10}},
         "rollback needs max_p99_s > 0 and 1 <= min_requests <= window; got max_p99_s=0.5, min_requests=50, window=10."),
    ],
)
def test_bad_policies_are_refused_with_the_reason(data: dict, message: str) -> None:
    with pytest.raises(PolicyError) as error:
        policy_from_dict(data)
    assert str(error.value) == message


def test_policy_must_be_an_object() -> None:
    with pytest.raises(PolicyError) as error:
        policy_from_dict([1, 2])  # type: ignore[arg-type]
    assert str(error.value) == "A policy is a JSON object, not list."


def test_validate_returns_a_good_policy_unchanged() -> None:
    policy = ab_policy(A, B, salt="s")
    assert validate(policy) is policy
