"""Run every benchmark and write ``build/bench.json``.

    .venv/bin/python benchmarks/run.py              # all of them
    .venv/bin/python benchmarks/run.py spark doctor # only bench_spark.py and bench_doctor.py

Each ``benchmarks/bench_<name>.py`` defines ``run(settings) -> dict`` and measures one
thing on this machine. Numbers are written, never asserted: timings belong in benchmarks,
not in tests. Results of earlier runs are kept and updated per benchmark; a result measured on
a data profile other than ``ci`` goes under ``<name>_<profile>`` (e.g. ``cluster_full``), so both
profiles' figures are kept.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

from course_utils.config import load_settings

HERE = Path(__file__).resolve().parent


def discover(names: list[str]) -> dict[str, Path]:
    """bench_<name>.py files, all or the ones named."""
    found = {p.stem.removeprefix("bench_"): p for p in sorted(HERE.glob("bench_*.py"))}
    unknown = sorted(set(names) - set(found))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; available: {sorted(found)}")
    return {name: path for name, path in found.items() if not names or name in names}


def run_one(path: Path, settings) -> dict:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    started = time.perf_counter()
    result = module.run(settings)
    return {**result, "benchmark_seconds": round(time.perf_counter() - started, 2)}


def main(argv: list[str]) -> int:
    settings = load_settings()
    out = settings.build / "bench.json"
    machine = {"cpus": __import__("os").cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    for name, path in discover(argv).items():
        print(f"▶ {name}", flush=True)
        result = run_one(path, settings)
        key = name if result.get("profile", "ci") == "ci" else f"{name}_{result['profile']}"
        # Read just before writing: another run may have updated other keys meanwhile.
        report = json.loads(out.read_text()) if out.exists() else {}
        report.update({"machine": machine, key: result})
        print(json.dumps(result, indent=2), flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, sort_keys=True))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
