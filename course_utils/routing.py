"""Traffic routing policy for deployment strategies: which model version answers a request.

This is the lesson of ``04c_deployment_strategies``; :mod:`course_utils.router` is only the
HTTP plumbing around it. Everything here is a pure function or a frozen dataclass, so each
strategy can be tried without a server:

- **weighted** (canary, rolling): each request draws a number in [0, 1) and lands on an arm
  with probability proportional to the arm's weight. :func:`canary_step` moves a canary
  along ``1 → 5 → 25 → 50 → 100`` per cent; :func:`set_share` does any step of a rolling update.
- **sticky** (A/B): the draw is a stable hash of ``salt:user_id`` (:func:`hash_unit`), so one
  user always gets the same arm, and a new experiment (a new salt) reshuffles users.
- **shadow**: arms named in ``Policy.shadow`` get a copy of every request; their answers are
  logged, never returned (a shadow arm has weight 0).
- **switch** (blue-green): :func:`switch_to` returns a policy with all traffic on one arm; the
  router replaces its policy in one assignment, so no request sees half a switch.
- **failover** and **rollback**: :func:`failover_order` says which arms to try when the chosen
  one is down, slow, answers 5xx or its model crashed in ``predict``; :func:`rollback_reason`
  decides from an arm's recent error rate and p99 latency whether :func:`rollback` should take
  its traffic away.

Example:
    >>> policy = canary_policy("http://127.0.0.1:5001", "http://127.0.0.1:5002", percent=5)
    >>> [(arm.name, arm.weight) for arm in policy.arms]
    [('stable', 95.0), ('canary', 5.0)]
    >>> choose_arm(policy, draw=0.97).name
    'canary'
    >>> ab = ab_policy("http://127.0.0.1:5001", "http://127.0.0.1:5002", salt="exp-1")
    >>> choose_arm(ab, user_id="user-42").name == choose_arm(ab, user_id="user-42").name
    True
    >>> [(arm.name, arm.weight) for arm in canary_step(policy, "canary").arms]
    [('stable', 75.0), ('canary', 25.0)]
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Mapping, Sequence

MODES = ("weighted", "sticky")
Mode = Literal["weighted", "sticky"]
CANARY_STEPS: tuple[float, ...] = (1.0, 5.0, 25.0, 50.0, 100.0)
# Rollback defaults; monitoring/prometheus/rules/router.yml alerts on the same thresholds.
DEFAULT_MAX_ERROR_RATE = 0.05
DEFAULT_MAX_P99_S = 0.5
DEFAULT_MIN_REQUESTS = 20
DEFAULT_WINDOW = 100


class PolicyError(ValueError):
    """A routing policy is inconsistent (unknown arm, negative weight, no arm to serve, ...)."""


@dataclass(frozen=True)
class Arm:
    """One backend: a name for metrics and logs, its base URL and its share of traffic."""

    name: str
    url: str
    weight: float = 1.0


@dataclass(frozen=True)
class RollbackRule:
    """Take an arm's traffic away when its recent error rate or p99 latency is too high.

    Judged over the arm's last ``window`` requests, once it has served ``min_requests``.
    """

    arm: str
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    max_p99_s: float = DEFAULT_MAX_P99_S
    min_requests: int = DEFAULT_MIN_REQUESTS
    window: int = DEFAULT_WINDOW


@dataclass(frozen=True)
class Policy:
    """How the router splits traffic: a mode, the arms, shadows, failover and a rollback rule."""

    mode: Mode
    arms: tuple[Arm, ...]
    shadow: tuple[str, ...] = ()
    salt: str = ""
    failover: bool = True
    rollback: RollbackRule | None = None

    def arm(self, name: str) -> Arm:
        """The arm called ``name``; PolicyError naming the known arms otherwise."""
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise PolicyError(f"No arm named {name!r}; the policy has {', '.join(a.name for a in self.arms)}.")

    @property
    def serving_arms(self) -> tuple[Arm, ...]:
        """Arms that can be chosen to answer: weight above 0 and not a shadow."""
        return tuple(arm for arm in self.arms if arm.weight > 0 and arm.name not in self.shadow)


@dataclass(frozen=True)
class ArmStats:
    """An arm's recent record: requests, failures (5xx, model crash, timeout, unreachable) and p99 latency."""

    requests: int
    errors: int
    p99_s: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Outcome:
    """One request to one arm: did it fail (5xx, model crash, timeout, unreachable), and how long it took."""

    failed: bool
    seconds: float = field(default=0.0)


# --- validation and JSON ---------------------------------------------------------------------


def validate(policy: Policy) -> Policy:
    """Return ``policy`` unchanged when it is consistent; raise PolicyError saying what is wrong."""
    if policy.mode not in MODES:
        raise PolicyError(f"mode={policy.mode!r} is not a routing mode; use one of {', '.join(MODES)}.")
    if not policy.arms:
        raise PolicyError("A policy needs at least one arm.")
    names = [arm.name for arm in policy.arms]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PolicyError(f"Arm names must be unique; repeated: {', '.join(duplicates)}.")
    for arm in policy.arms:
        if not arm.name:
            raise PolicyError("Every arm needs a non-empty name.")
        if not arm.url.startswith(("http://", "https://")):
            raise PolicyError(f"Arm {arm.name!r} has url={arm.url!r}; give a base URL like http://127.0.0.1:5001.")
        if not (math.isfinite(arm.weight) and arm.weight >= 0):
            raise PolicyError(f"Arm {arm.name!r} has weight={arm.weight!r}; weights are finite numbers >= 0.")
    for name in policy.shadow:
        if policy.arm(name).weight > 0:
            raise PolicyError(f"Shadow arm {name!r} has weight {policy.arm(name).weight}; a shadow never answers, give it weight 0.")
    if not policy.serving_arms:
        raise PolicyError("No arm can answer: give at least one non-shadow arm a weight above 0.")
    if policy.rollback is not None:
        rule = policy.rollback
        policy.arm(rule.arm)
        if not 0 <= rule.max_error_rate <= 1:
            raise PolicyError(f"rollback max_error_rate={rule.max_error_rate!r} is not a rate between 0 and 1.")
        if rule.max_p99_s <= 0 or rule.min_requests < 1 or rule.window < rule.min_requests:
            raise PolicyError(
                f"rollback needs max_p99_s > 0 and 1 <= min_requests <= window; got max_p99_s={rule.max_p99_s}, "
                f"min_requests={rule.min_requests}, window={rule.window}."
            )
    return policy


def policy_from_dict(data: Mapping[str, Any]) -> Policy:
    """Build and validate a policy from its JSON form (what ``PUT /admin/policy`` accepts)."""
    if not isinstance(data, Mapping):
        raise PolicyError(f"A policy is a JSON object, not {type(data).__name__}.")
    unknown = sorted(set(data) - {"mode", "arms", "shadow", "salt", "failover", "rollback"})
    if unknown:
        raise PolicyError(f"Unknown policy field(s): {', '.join(unknown)}.")
    if isinstance(data.get("shadow", ()), str):
        raise PolicyError(f"shadow is a list of arm names, not the string {data['shadow']!r}.")
    try:
        arms = tuple(Arm(str(a["name"]), str(a["url"]), float(a.get("weight", 1.0))) for a in data.get("arms", []))
        rule_data = data.get("rollback")
        rule = RollbackRule(**rule_data) if rule_data else None
    except (KeyError, TypeError, ValueError) as error:
        raise PolicyError(f"Malformed arm or rollback rule ({type(error).__name__}: {error}).") from None
    policy = Policy(
        mode=data.get("mode", "weighted"),
        arms=arms,
        shadow=tuple(data.get("shadow", ())),
        salt=str(data.get("salt", "")),
        failover=bool(data.get("failover", True)),
        rollback=rule,
    )
    return validate(policy)


def policy_to_dict(policy: Policy) -> dict[str, Any]:
    """The JSON form of ``policy``; ``policy_from_dict`` reads it back unchanged."""
    data = asdict(policy)
    data["arms"] = [asdict(arm) for arm in policy.arms]
    data["shadow"] = list(policy.shadow)
    return data


# --- choosing an arm -------------------------------------------------------------------------


def hash_unit(key: str) -> float:
    """A stable number in [0, 1) for ``key``: the same on every machine, process and run.

    Python's ``hash()`` is salted per process, so it cannot give sticky assignment.
    """
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def pick_by_weight(arms: Sequence[Arm], draw: float) -> Arm:
    """The arm whose slice of [0, 1) contains ``draw``; slices are proportional to weights."""
    if not 0 <= draw < 1:
        raise PolicyError(f"draw={draw!r} must be in [0, 1).")
    total = sum(arm.weight for arm in arms)
    if total <= 0:
        raise PolicyError("No arm has a weight above 0.")
    cumulative = 0.0
    for arm in arms:
        cumulative += arm.weight / total
        if draw < cumulative:
            return arm
    return arms[-1]  # draw within rounding of 1.0


def choose_arm(policy: Policy, user_id: str | None = None, draw: float | None = None) -> Arm:
    """The arm that should answer this request.

    Sticky mode hashes ``salt:user_id``; weighted mode (and a sticky request without a user id)
    uses ``draw``, a uniform random number the caller supplies (so this stays pure and testable).
    """
    if policy.mode == "sticky" and user_id:
        return pick_by_weight(policy.serving_arms, hash_unit(f"{policy.salt}:{user_id}"))
    if draw is None:
        raise PolicyError("Weighted routing (or a sticky request without a user id) needs a draw in [0, 1).")
    return pick_by_weight(policy.serving_arms, draw)


def failover_order(policy: Policy, chosen: Arm) -> tuple[Arm, ...]:
    """Arms to try in turn: the chosen one, then other non-shadow arms by weight (a blue-green idle arm last).

    Shadows are never used as a fallback: they are the versions not yet trusted with answers.
    """
    if not policy.failover:
        return (chosen,)
    others = [arm for arm in policy.arms if arm.name != chosen.name and arm.name not in policy.shadow]
    return (chosen, *sorted(others, key=lambda arm: (-arm.weight, arm.name)))


# --- strategies as policy changes ------------------------------------------------------------


def weighted_policy(urls: Mapping[str, str], weights: Mapping[str, float]) -> Policy:
    """A weighted split over named backends, e.g. ``{"v1": 90, "v2": 10}``."""
    missing = sorted(set(urls) - set(weights))
    if missing:
        raise PolicyError(f"No weight given for arm(s): {', '.join(missing)}.")
    return validate(Policy("weighted", tuple(Arm(name, url, float(weights[name])) for name, url in urls.items())))


def canary_policy(stable_url: str, canary_url: str, percent: float = CANARY_STEPS[0]) -> Policy:
    """``percent`` of traffic to the canary, the rest to stable; rolls the canary back on errors."""
    policy = weighted_policy({"stable": stable_url, "canary": canary_url}, {"stable": 100 - percent, "canary": percent})
    return validate(replace(policy, rollback=RollbackRule(arm="canary")))


def ab_policy(a_url: str, b_url: str, salt: str, b_share: float = 0.5) -> Policy:
    """A/B: each user (by a stable hash of the user id) always sees the same arm."""
    return validate(Policy("sticky", (Arm("a", a_url, 1 - b_share), Arm("b", b_url, b_share)), salt=salt))


def shadow_policy(primary_url: str, shadow_url: str) -> Policy:
    """The primary answers; the shadow gets a copy of each request and is only logged."""
    return validate(Policy("weighted", (Arm("primary", primary_url, 1.0), Arm("shadow", shadow_url, 0.0)), shadow=("shadow",)))


def blue_green_policy(blue_url: str, green_url: str, live: str = "blue") -> Policy:
    """All traffic on ``live``; the other colour idles, ready to take over (and to fail over to)."""
    policy = Policy("weighted", (Arm("blue", blue_url, 0.0), Arm("green", green_url, 0.0)))
    return switch_to(policy, live)


def switch_to(policy: Policy, arm_name: str) -> Policy:
    """Blue-green switch: all traffic to ``arm_name``, every other arm idle at weight 0."""
    policy.arm(arm_name)
    if arm_name in policy.shadow:
        raise PolicyError(f"Arm {arm_name!r} is a shadow; take it out of shadow before switching traffic to it.")
    arms = tuple(replace(arm, weight=100.0 if arm.name == arm_name else 0.0) for arm in policy.arms)
    return validate(replace(policy, arms=arms))


def set_share(policy: Policy, arm_name: str, percent: float) -> Policy:
    """Give ``arm_name`` ``percent`` of traffic; the other serving arms share the rest in their current ratio.

    One step of a rolling update or a canary. Arms at weight 0 stay at 0 unless they are the one set.
    """
    if not 0 <= percent <= 100:
        raise PolicyError(f"percent={percent!r} must be between 0 and 100.")
    target = policy.arm(arm_name)
    others = [arm for arm in policy.arms if arm.name != target.name and arm.weight > 0 and arm.name not in policy.shadow]
    other_total = sum(arm.weight for arm in others)
    if percent < 100 and not others:
        raise PolicyError(f"No other arm with traffic can take the remaining {100 - percent}% from {arm_name!r}.")
    weights = {arm.name: (100 - percent) * arm.weight / other_total for arm in others}
    weights[target.name] = float(percent)
    arms = tuple(replace(arm, weight=weights.get(arm.name, 0.0)) for arm in policy.arms)
    return validate(replace(policy, arms=arms))


def canary_step(policy: Policy, arm_name: str, steps: Sequence[float] = CANARY_STEPS) -> Policy:
    """Move the canary to the next step above its current share (1 → 5 → 25 → 50 → 100 per cent)."""
    total = sum(arm.weight for arm in policy.serving_arms)
    current = 100 * policy.arm(arm_name).weight / total if total else 0.0
    following = [step for step in steps if step > current + 1e-9]
    if not following:
        raise PolicyError(f"Arm {arm_name!r} already has {current:g}% of traffic, the last step.")
    return set_share(policy, arm_name, following[0])


def rollback(policy: Policy, arm_name: str) -> Policy:
    """Take all traffic away from ``arm_name`` (weight 0) and retire the rollback rule that fired.

    The other serving arms keep their weights. When none has any (a canary already at 100 %),
    the rolled-back arm's weight is shared equally by the other non-shadow arms, so some arm
    always answers. PolicyError when there is no other non-shadow arm to roll back to.
    """
    target = policy.arm(arm_name)
    others = [arm for arm in policy.arms if arm.name != arm_name and arm.name not in policy.shadow]
    if not others:
        raise PolicyError(f"Arm {arm_name!r} cannot be rolled back: no other non-shadow arm can take its traffic.")
    weights = {arm.name: arm.weight for arm in others}
    if not any(weight > 0 for weight in weights.values()):
        weights = {name: target.weight / len(others) for name in weights}
    arms = tuple(replace(arm, weight=0.0 if arm.name == arm_name else weights.get(arm.name, arm.weight)) for arm in policy.arms)
    return validate(replace(policy, arms=arms, rollback=None))


# --- when to roll back -----------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``values``; 0.0 for none."""
    if not 0 < q <= 100:
        raise ValueError(f"q={q!r} must be in (0, 100].")
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def arm_stats(outcomes: Sequence[Outcome]) -> ArmStats:
    """Requests, failures and p99 latency of an arm's recent outcomes."""
    return ArmStats(
        requests=len(outcomes),
        errors=sum(outcome.failed for outcome in outcomes),
        p99_s=percentile([outcome.seconds for outcome in outcomes], 99),
    )


def rollback_reason(stats: ArmStats, rule: RollbackRule) -> str | None:
    """Why the arm should be rolled back, or None while it is healthy or has too few requests to judge."""
    if stats.requests < rule.min_requests:
        return None
    if stats.error_rate > rule.max_error_rate:
        return (
            f"error rate {stats.error_rate:.3f} > {rule.max_error_rate:g} "
            f"({stats.errors} of the last {stats.requests} requests failed)"
        )
    if stats.p99_s > rule.max_p99_s:
        return f"p99 latency {stats.p99_s:.3f} s > {rule.max_p99_s:g} s over the last {stats.requests} requests"
    return None
