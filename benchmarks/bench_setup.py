"""Set-up time: ``./setup.sh`` in a fresh clone of this repository, then again (the idempotent re-run).

The fresh run reuses the machine's uv download cache when it has one (reported), so it
measures install + jar fetch + dataset generation + doctor, not the download speed.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def _timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return round(time.perf_counter() - started, 1)


def _size_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True, check=True).stdout
    return float(out.split()[0])


def run(settings) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="course-setup-bench-"))
    clone = folder / "repo"
    try:
        subprocess.run(["git", "clone", "-q", str(settings.root), str(clone)], check=True)
        fresh = _timed(["./setup.sh"], clone)
        rerun = _timed(["./setup.sh"], clone)
        return {
            "setup_fresh_seconds": fresh,
            "setup_rerun_seconds": rerun,
            "venv_mb": _size_mb(clone / ".venv"),
            "jar_cache_mb": _size_mb(clone / ".cache" / "jars"),
            "uv_cache_warm": (Path.home() / ".cache" / "uv").exists(),
        }
    finally:
        subprocess.run([str(clone / ".venv" / "bin" / "course"), "services", "down"], cwd=clone,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(folder, ignore_errors=True)
