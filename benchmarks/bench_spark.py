"""Spark session start (JVM + Delta jars) and a first Delta write/read, in a fresh process each time."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

PROBE = """
import json, time, tempfile
started = time.perf_counter()
from course_utils.spark import get_spark
spark = get_spark("bench-spark")
session = time.perf_counter() - started
with tempfile.TemporaryDirectory() as folder:
    spark.range(1000).write.format("delta").save(folder + "/t")
    spark.read.format("delta").load(folder + "/t").count()
print(json.dumps({"session_seconds": session, "first_delta_roundtrip_seconds": time.perf_counter() - started - session}))
"""


def run(settings, repeats: int = 3) -> dict:
    samples = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
        samples.append(json.loads(out.strip().splitlines()[-1]))
    return {
        "repeats": repeats,
        "spark_session_start_seconds_median": round(statistics.median(s["session_seconds"] for s in samples), 2),
        "first_delta_roundtrip_seconds_median": round(statistics.median(s["first_delta_roundtrip_seconds"] for s in samples), 2),
    }
