"""Record what evidently 0.7.23 says on fixed data, so the unit tests can pin course_utils to it.

evidently is not a dependency of the course (nor in requirements.lock): this script runs once,
in a throwaway virtual environment outside the repository, and writes
``tests/unit/data/drift_evidently_reference.json`` holding both the fixed samples (drawn here
from a seeded numpy Generator, stored so the tests never depend on numpy's random streams)
and evidently's result for each test. Regenerate it from the repository root with::

    .venv/bin/uv venv /tmp/evidently-venv --python 3.11
    .venv/bin/uv pip install --python /tmp/evidently-venv/bin/python \\
        evidently==0.7.23 pandas==2.3.3 scipy==1.17.1 numpy==2.4.6
    /tmp/evidently-venv/bin/python tools/record_evidently_reference.py

(pandas, scipy and numpy pinned to requirements.lock's versions; evidently 0.7.23 does not
import with pandas 3.) The results come from evidently's own stattest objects, called the
way its data-drift calculation calls them, with their default thresholds.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

EVIDENTLY_VERSION = "0.7.23"
SEED = 20250904
OUTPUT = Path(__file__).resolve().parents[1] / "tests" / "unit" / "data" / "drift_evidently_reference.json"
REGENERATE = "/tmp/evidently-venv/bin/python tools/record_evidently_reference.py  (see its docstring for the venv)"
TESTS_BY_TYPE = {"num": ("ks", "psi", "jensenshannon", "wasserstein"), "cat": ("chisquare", "psi", "jensenshannon")}


def fixed_cases(seed: int) -> dict[str, dict]:
    """The samples: numeric ones as values (3 decimals, so ties occur), categorical ones as counts."""
    rng = np.random.default_rng(seed)

    def values(array: np.ndarray) -> list[float]:
        return [float(v) for v in np.round(array, 3)]

    def counts(probabilities: dict[str, float], size: int) -> dict[str, int]:
        drawn = rng.multinomial(size, list(probabilities.values()))
        return {key: int(count) for key, count in zip(probabilities, drawn, strict=True) if count}

    return {
        # Sturges bins over the combined sample (the reference has > 20 distinct values).
        "num_shifted": {
            "column_type": "num",
            "reference": values(rng.normal(0, 1, 400)),
            "current": values(rng.normal(0.4, 1.3, 300)),
        },
        "num_same": {
            "column_type": "num",
            "reference": values(rng.normal(5, 2, 400)),
            "current": values(rng.normal(5, 2, 300)),
        },
        # Far apart: many bins empty in one sample or the other (the 1e-4 fill).
        "num_disjoint": {
            "column_type": "num",
            "reference": values(rng.normal(0, 1, 200)),
            "current": values(rng.normal(6, 1, 200)),
        },
        # 21 distinct reference values: just over evidently's limit, so Sturges bins.
        "num_21_distinct": {
            "column_type": "num",
            "reference": values(rng.integers(0, 21, 300)),
            "current": values(rng.integers(2, 23, 250)),
        },
        # 20 distinct reference values: one bin per value instead.
        "num_20_distinct": {
            "column_type": "num",
            "reference": values(rng.integers(0, 20, 300)),
            "current": values(rng.integers(2, 22, 250)),
        },
        # Few reference values, a continuous current: one bin per value of either sample.
        "num_reference_few_distinct": {
            "column_type": "num",
            "reference": values(rng.integers(0, 10, 300)),
            "current": values(rng.normal(5, 3, 200)),
        },
        "cat_shifted": {
            "column_type": "cat",
            "reference_counts": {"A": 400, "B": 300, "C": 200, "D": 100},
            "current_counts": {"A": 250, "B": 300, "C": 250, "D": 200},
        },
        "cat_same": {
            "column_type": "cat",
            "reference_counts": counts({"basic": 0.5, "standard": 0.3, "premium": 0.2}, 1000),
            "current_counts": counts({"basic": 0.5, "standard": 0.3, "premium": 0.2}, 800),
        },
        # C disappears and E appears: categories that differ between the samples.
        "cat_new_and_gone": {
            "column_type": "cat",
            "reference_counts": {"A": 500, "B": 300, "C": 200},
            "current_counts": {"A": 300, "B": 300, "E": 150},
        },
        # A reference share of 1/20000 <= 1e-4: empty bins get a millionth of it instead.
        "cat_rare": {
            "column_type": "cat",
            "reference_counts": {"a": 15000, "b": 4999, "c": 1},
            "current_counts": {"a": 700, "b": 290, "d": 10},
        },
        # The slide's table: expected 25/25/25/25, observed 35/20/25/20.
        "slide_abcd": {
            "column_type": "cat",
            "reference_counts": {"A": 25, "B": 25, "C": 25, "D": 25},
            "current_counts": {"A": 35, "B": 20, "C": 25, "D": 20},
        },
    }


def sample(case: dict, which: str) -> pd.Series:
    """A case's reference or current sample as evidently receives it."""
    if f"{which}_counts" in case:
        counts = case[f"{which}_counts"]
        return pd.Series(np.repeat(list(counts), list(counts.values())), dtype=object)
    return pd.Series(case[which], dtype=float)


def evidently_results(case: dict) -> dict[str, dict]:
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.core import ColumnType

    column_type = ColumnType.Numerical if case["column_type"] == "num" else ColumnType.Categorical
    reference, current = sample(case, "reference"), sample(case, "current")
    results = {}
    for name in TESTS_BY_TYPE[case["column_type"]]:
        stattest = get_stattest(reference, current, column_type, name)
        result = stattest(reference, current, column_type, None)
        results[name] = {
            "drift_score": float(result.drift_score),
            "drifted": bool(result.drifted),
            "threshold": float(result.actual_threshold),
        }
    return results


def main() -> None:
    import evidently
    import scipy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    arguments = parser.parse_args()
    if evidently.__version__ != EVIDENTLY_VERSION:
        raise SystemExit(
            f"evidently {evidently.__version__} found, {EVIDENTLY_VERSION} needed: see this script's docstring"
        )
    cases = fixed_cases(SEED)
    for case in cases.values():
        case["evidently"] = evidently_results(case)
    record = {
        "regenerate": REGENERATE,
        "seed": SEED,
        "versions": {
            "evidently": evidently.__version__,
            "scipy": scipy.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
        },
        "cases": cases,
    }
    # One line per sample keeps the file short enough to read; the lists stay valid JSON.
    text = re.sub(
        r"\[\s+([^\[\]{}]*?)\s+\]",
        lambda match: "[" + " ".join(match.group(1).split()) + "]",
        json.dumps(record, indent=1),
    )
    arguments.output.write_text(text + "\n")
    print(f"wrote {len(cases)} cases to {arguments.output}")


if __name__ == "__main__":
    main()
