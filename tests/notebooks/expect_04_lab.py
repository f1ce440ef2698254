"""What the 04 lab's solution must have recorded (see ``lesson.record`` in the notebook).

The batch of seed 2027 carries label drift by construction (the generator picks the drift type
from the seed): the churn label is the only drifted column, the scores do not move, the
validated model's accuracy drops, and that drop is explained by the label, not by concept drift.
"""

from typing import Any

LABEL_ACTIONS = ["Investigate label generation process", "Retrain using new data"]


def lab_monitor_a_batch(r: dict[str, Any]) -> None:
    assert r["params"]["seed"] == 2027
    assert r["scenario"] == "label"
    assert r["drifted_columns"] == ["churned"]
    assert r["prediction_drift"] is False
    assert r["accuracy_dropped"] is True and r["batch_accuracy"] <= r["holdout_accuracy"] - 0.05
    assert r["drift_type"] == r["scenario"]
    assert r["actions"] == LABEL_ACTIONS, "the slide's row for label drift"


EXPECTATIONS = {
    "04_lab_monitor_a_batch": lab_monitor_a_batch,
}
