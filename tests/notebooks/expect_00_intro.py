"""What the 00_intro notebooks must have recorded (see ``lesson.record`` in each notebook)."""

import inspect
from typing import Any

from course_utils.models import churn_pipeline


def course_overview(r: dict[str, Any]) -> None:
    assert r["java_major"] >= 17
    assert r["delta_rows_v0"] > 0 and r["delta_rows_latest"] == r["delta_rows_v0"] + 10
    assert r["delta_versions"] == 2
    assert 0.5 < r["mlflow_accuracy"] <= 1.0
    assert r["feast_entities"] == ["customer"]
    # The "ML code" box is counted from the repository, not typed in: the model definition's non-blank lines.
    assert r["ml_code_lines"] == sum(1 for line in inspect.getsource(churn_pipeline).splitlines() if line.strip())
    assert r["ml_code_share"] < 0.05
    assert r["pillars_with_evidence"] == 4
    # MLflow's four components, each touched: flavors read from the MLmodel file, a registry version
    # loaded by alias, the project's entry points parsed from projects/churn/MLproject.
    components = r["mlflow_components"]
    assert {"sklearn", "python_function"} <= set(components["flavors"])
    assert components["registered_version"] == "1", "a reset deletes the lesson's registered model: v1 on every run"
    assert components["champion_same_predictions"] is True
    assert components["project_entry_points"] == ["main"]
    # Every layer of the stack is installed here: its version was read from the package or the binary.
    assert r["stack_versions_found"] == len(r["stack_layers"])
    # Python, REST and the CLI read the same stored metric.
    access = r["mlflow_access"]
    assert access["python"] == access["rest"] == access["cli"] == r["mlflow_accuracy"]


EXPECTATIONS = {"00_course_overview": course_overview}
