"""Spark's Python workers run the course interpreter, whatever ``python3`` is first on PATH."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

UDF_SCRIPT = textwrap.dedent(
    """
    import pandas as pd
    from pyspark.sql.functions import pandas_udf
    from course_utils.spark import get_spark

    spark = get_spark("worker-python-check")

    @pandas_udf("string")
    def worker_python(s: pd.Series) -> pd.Series:
        import sys
        return s.map(lambda _: sys.executable)

    print("WORKER", spark.range(1).select(worker_python("id")).first()[0])
    spark.stop()
    """
)


@pytest.mark.slow
def test_pandas_udf_workers_use_the_course_interpreter(course_settings) -> None:
    # A PATH without the venv, as when a learner runs `.venv/bin/python script.py`.
    env = {**os.environ, "PATH": "/usr/local/bin:/usr/bin:/bin", "COURSE_WORKSPACE": str(course_settings.workspace)}
    env.pop("PYSPARK_PYTHON", None)
    result = subprocess.run([sys.executable, "-c", UDF_SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    worker = result.stdout.split("WORKER ", 1)[1].strip()
    assert worker == sys.executable
