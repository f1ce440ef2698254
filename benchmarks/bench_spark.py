"""Spark session start (JVM + Delta jars) and a first Delta write/read, in a fresh process each time,
with the course's JVM options (class archive + C1 JIT) and without them (the settings before them)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

PROBE = """
import json, sys, time, tempfile
started = time.perf_counter()
import course_utils.spark as course_spark
if sys.argv[1] == "without":  # the driver options as they were: no archive, both JIT compilers
    course_spark.driver_java_options = lambda settings, archive_at_exit=None: f"-Dderby.system.home={settings.workspace / 'derby'}"
spark = course_spark.get_spark("bench-spark")
session = time.perf_counter() - started
with tempfile.TemporaryDirectory() as folder:
    spark.range(1000).write.format("delta").save(folder + "/t")
    spark.range(1000, 2000).write.format("delta").mode("append").save(folder + "/t")
    spark.read.format("delta").load(folder + "/t").count()
print(json.dumps({"session_seconds": session, "first_delta_roundtrip_seconds": time.perf_counter() - started - session}))
"""


def _median(samples: list[dict], key: str) -> float:
    return round(statistics.median(s[key] for s in samples), 2)


def run(settings, repeats: int = 3) -> dict:
    result: dict = {"repeats": repeats}
    for variant in ("with", "without"):
        samples = []
        for _ in range(repeats):
            out = subprocess.run([sys.executable, "-c", PROBE, variant], capture_output=True, text=True, check=True).stdout
            samples.append(json.loads(out.strip().splitlines()[-1]))
        result[f"{variant}_class_archive_and_c1"] = {
            "spark_session_start_seconds_median": _median(samples, "session_seconds"),
            "first_delta_write_append_read_seconds_median": _median(samples, "first_delta_roundtrip_seconds"),
        }
    return result
