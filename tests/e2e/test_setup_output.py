"""`./setup.sh` prints the course's own lines only; the tools' output goes to build/setup.log.

Both tests re-run set-up on this checkout (done already, so every step is skipped or quick); the
first run of a fresh clone is measured by hand (the README gives its line count and time).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOG = ROOT / "build" / "setup.log"
# The course's own lines: its `==>` steps, and the doctor's report (a ✔/✘ row per check, a fix under a
# failed one, the summary, the note on skipped round trips).
OWN_LINE = re.compile(r"==> |[✔✘] |    fix: |All checks passed\.$|\d+ check\(s\) failed\.$|Spark \+ Delta and MLflow round trips skipped")

pytestmark = pytest.mark.slow


def _setup(**env: str) -> subprocess.CompletedProcess[str]:
    # Not a terminal: no colours, so the lines compare as text.
    return subprocess.run(["./setup.sh"], capture_output=True, text=True, cwd=ROOT, timeout=900,
                          env={**os.environ, **env})


def test_setup_prints_only_its_own_lines_and_names_the_log(course_settings) -> None:
    result = _setup()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert result.stderr == ""
    assert [line for line in lines if not OWN_LINE.match(line)] == []
    assert len(lines) <= 20
    assert lines[-1].startswith("==> Set-up finished in ")
    assert lines[-1].endswith(" s (tools' output: build/setup.log). Next: .venv/bin/pytest   or   .venv/bin/course lab")
    assert "==> course doctor" in LOG.read_text().splitlines()


def test_a_failed_step_shows_the_end_of_the_log_and_keeps_the_commands_exit_code(course_settings) -> None:
    # A mistyped profile: the first `course` command of the set-up refuses it.
    expected = subprocess.run([".venv/bin/course", "fetch-jars"], capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, "COURSE_PROFILE": "bogus"})
    assert expected.returncode != 0
    result = _setup(COURSE_PROFILE="bogus")
    assert result.returncode == expected.returncode
    assert result.stdout.splitlines()[-1] == "==> Delta jars"
    error_lines = result.stderr.splitlines()
    assert error_lines[0] == (f"setup.sh: `.venv/bin/course fetch-jars` failed (exit {expected.returncode}). "
                              "The end of build/setup.log:")
    assert expected.stderr.strip() in result.stderr  # the command's own message, from the log
    assert error_lines[-1] == "Full log: build/setup.log"
