"""What the 04e CI/CD and testing notebook must have recorded (see ``lesson.record`` in the notebook).

Nothing here is typed in from the notebook: the test names, the CI workflow's triggers, jobs,
steps and artifacts, ``.ci/run``'s commands, pytest's markers and the alert names are read from
the repository's own files and compared with what the notebook recorded.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
FAST_LAYERS = ("featurisation", "data", "model behaviour", "alert rules")
SLOW_LAYERS = ("integration", "end-to-end")


def _test_functions(path: Path) -> set[str]:
    """Names of the test functions a test file defines (before parametrisation)."""
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def _workflow() -> dict[str, Any]:
    return yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())


def ci_cd_and_testing(r: dict[str, Any]) -> None:
    # The pyramid: every fast layer ran, has tests, and all of them passed.
    layers = r["layers"]
    assert list(layers) == list(FAST_LAYERS) or set(layers) == set(FAST_LAYERS)
    assert r["pyramid_returncode"] == 0
    for name, layer in layers.items():
        assert layer["tests"] > 0, f"{name}: no tests"
        assert layer["passed"] == layer["tests"], f"{name}: {layer}"
        assert layer["failed"] == layer["error"] == layer["skipped"] == 0, name
        # The recorded tests are the file's own test functions (parametrised ones once per case).
        defined = _test_functions(ROOT / layer["file"])
        ran = {re.sub(r"\[.*\]$", "", test) for test in layer["test_names"]}
        assert ran == defined, f"{name}: ran {sorted(ran ^ defined)} differently from {layer['file']}"
        assert len(layer["test_names"]) == layer["tests"]
    behaviour = set(layers["model behaviour"]["test_names"])
    for kind in ("invariance", "directional", "minimum_functionality"):
        assert any(test.startswith(f"test_{kind}") for test in behaviour), f"no {kind} test"
    data_tests = " ".join(layers["data"]["test_names"])
    for topic in ("schema", "null", "range", "after_the_snapshot"):
        assert topic in data_tests, f"no data test about {topic}"

    # The slow tiers are named and counted, not run.
    slow = r["slow_layers"]
    assert set(slow) == set(SLOW_LAYERS)
    for name, layer in slow.items():
        assert (ROOT / layer["path"]).is_dir() and layer["collected"] > 0, name

    # A broken model fails exactly the behaviour test that guards the feature it lost.
    broken = r["broken_model"]
    assert broken["returncode"] == 1
    assert broken["failed"] == [broken["guarding_test"]]
    assert broken["guarding_test"] in behaviour and broken["guarding_test"].startswith("test_directional")
    assert broken["feature"].split("_")[0] in broken["guarding_test"]
    assert broken["tests"] == len(behaviour) and broken["passed"] == broken["tests"] - 1

    # The CI workflow, as the file says (PyYAML reads the `on:` key as True).
    workflow = _workflow()
    ci = r["ci_workflow"]
    assert ci["name"] == workflow["name"]
    assert ci["triggers"] == sorted(workflow[True])
    assert set(ci["jobs"]) == set(workflow["jobs"])
    for name, job in workflow["jobs"].items():
        assert ci["jobs"][name] == {"runs-on": job["runs-on"], "timeout-minutes": job.get("timeout-minutes"), "steps": len(job["steps"])}
    declared = [(name, step.get("name") or step.get("uses")) for name, job in workflow["jobs"].items() for step in job["steps"]]
    assert [(step["job"], step["step"]) for step in ci["steps"]] == declared
    roles = {step["role"] for step in ci["steps"]}
    assert {"build + test", "artifact"} <= roles
    uploads = [step for job in workflow["jobs"].values() for step in job["steps"] if step.get("uses", "").startswith("actions/upload-artifact")]
    assert ci["artifacts"] == [{"name": s["with"]["name"], "path": s["with"]["path"], "if": s.get("if")} for s in uploads]

    # .ci/run's commands, in the script's order; pytest's markers as pyproject.toml declares them.
    script = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = r["ci_script"]["commands"]
    assert commands and all(command in (line.strip() for line in script) for command in commands)
    positions = [next(i for i, line in enumerate(script) if line.strip() == command) for command in commands]
    assert positions == sorted(positions)
    assert "./setup.sh" in commands and ".venv/bin/pytest" in commands
    assert commands.index("./setup.sh") < commands.index(".venv/bin/pytest")
    text = "\n".join(script)
    assert r["ci_script"]["apt_packages"] and all(package in text for package in r["ci_script"]["apt_packages"])
    markers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    assert r["ci_script"]["pytest_markers"] == [marker.split(":")[0] for marker in markers]

    # CM's alert rules are the repository's rule files.
    rule_alerts = sorted(
        rule["alert"]
        for path in sorted((ROOT / "monitoring" / "prometheus" / "rules").glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    )
    assert r["alert_rules"] == rule_alerts and rule_alerts


EXPECTATIONS = {"04e_ci_cd_and_testing": ci_cd_and_testing}
