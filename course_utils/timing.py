"""Phase timings: where a notebook's time goes, for ``course run``'s report and the benchmarks.

The runner points ``COURSE_TIMINGS_FILE`` at a file per notebook; course_utils wraps its costly
steps (Spark start, prerequisite builds, server starts) in :func:`timed`, which appends one JSON
line per phase there. Without the variable, :func:`timed` only runs the block.

Example:
    >>> with timed("example phase"):
    ...     pass
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TIMINGS_ENV = "COURSE_TIMINGS_FILE"


@contextmanager
def timed(phase: str) -> Iterator[None]:
    """Time the block and record it as ``phase`` when a timings file is configured."""
    started = time.time()
    try:
        yield
    finally:
        target = os.environ.get(TIMINGS_ENV)
        if target:
            with open(target, "a", encoding="utf-8") as log:
                log.write(json.dumps({"phase": phase, "start": started, "end": time.time()}) + "\n")


def read_phases(path: Path) -> dict[str, float]:
    """Exclusive seconds per phase kind (the text before ':') from a timings file.

    Phases nest (building the champion starts Spark and builds the feature table), so each
    phase counts only the time not spent in a phase inside it: the kinds add up to wall time.
    """
    if not path.is_file():
        return {}
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    totals: dict[str, float] = {}
    for record in records:
        inside = [r for r in records if r is not record and record["start"] <= r["start"] and r["end"] <= record["end"]]
        direct = [r for r in inside if not any(o is not r and o["start"] <= r["start"] and r["end"] <= o["end"] for o in inside)]
        exclusive = (record["end"] - record["start"]) - sum(r["end"] - r["start"] for r in direct)
        kind = record["phase"].split(":")[0]
        totals[kind] = round(totals.get(kind, 0.0) + exclusive, 2)
    return totals
