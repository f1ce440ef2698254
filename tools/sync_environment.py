"""Write environment.yml (conda) from requirements.lock, so both carry the same pins.

    .venv/bin/python tools/sync_environment.py          # rewrite environment.yml
    .venv/bin/python tools/sync_environment.py --check  # exit 1 when they disagree
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;#]+)")

HEADER = """\
# Conda users without Python 3.11 or Java 17: `conda env create -f environment.yml`,
# `conda activate ml-in-production`, then `./setup.sh` (it builds .venv from this Python 3.11 and uses this Java 17).
# The pip section carries the same pins, so the conda environment alone also runs the notebooks.
# Generated from requirements.lock by tools/sync_environment.py; a test fails when they disagree.
name: ml-in-production
channels:
  - conda-forge
dependencies:
  - python=3.11
  - openjdk=17
  - maven
  - pip
  - pip:
"""


def read_pins(text: str) -> dict[str, str]:
    """``name==version`` lines (of a lock file or a YAML pip list) as {normalised name: version}."""
    pins: dict[str, str] = {}
    for line in text.splitlines():
        match = PIN.match(line.strip().removeprefix("- ").strip())
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


def render_environment(lock_text: str) -> str:
    """environment.yml text carrying exactly the lock's pins."""
    return HEADER + "".join(f"    - {name}=={version}\n" for name, version in sorted(read_pins(lock_text).items()))


def main(argv: list[str]) -> int:
    expected = render_environment((ROOT / "requirements.lock").read_text())
    target = ROOT / "environment.yml"
    if "--check" in argv:
        same = target.exists() and target.read_text() == expected
        print("environment.yml matches requirements.lock" if same else "environment.yml is stale: run tools/sync_environment.py")
        return 0 if same else 1
    target.write_text(expected)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
