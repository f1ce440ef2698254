"""Experiment-tracking helpers: the code and data versions a run carries, and the plots that read runs back.

The slides ask three questions of a set of tracked runs; each has a plot here:

- "How does tuning parameter X affect my metric?"  -> :func:`plot_metric_vs_param`
- "What is the best model?"                          -> :func:`plot_run_ranking`
- "Did I run training for long enough?"              -> :func:`metric_histories`, :func:`plot_metric_histories`

plus what tuning lessons show: :func:`plot_search_progress` (Hyperopt losses, best so far)
and :func:`plot_permutation_importance` (which inputs the chosen model relies on).

Example:
    >>> tags = code_version_tags(repo_root())            # doctest: +SKIP
    >>> tags["mlflow.source.git.commit"][:7]             # doctest: +SKIP
    '7a8d024'
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from mlflow import MlflowClient
    from mlflow.data.pandas_dataset import PandasDataset
    from pyspark.sql import SparkSession
    from sklearn.pipeline import Pipeline

logger = logging.getLogger(__name__)

UNKNOWN = "unknown"
GIT_COMMIT_TAG = "mlflow.source.git.commit"  # the tag the MLflow UI shows as the run's "Git commit"
GIT_DIRTY_TAG = "git_dirty"


# --- code and data versions ------------------------------------------------------------------


def git_commit(repo: Path) -> str:
    """The commit checked out in ``repo`` (full hash), or ``"unknown"`` outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True, timeout=30
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, FileNotFoundError, NotADirectoryError):
        return UNKNOWN
    return result.stdout.strip() or UNKNOWN


def code_version_tags(repo: Path) -> dict[str, str]:
    """Run tags naming the code version: the git commit and whether uncommitted changes were present.

    A commit alone does not reproduce a run made from a modified checkout, so ``git_dirty``
    says whether ``git status`` showed changes (``"unknown"`` outside a git checkout).
    """
    commit = git_commit(repo)
    dirty = UNKNOWN
    if commit != UNKNOWN:
        try:
            status = subprocess.run(
                ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True, timeout=30
            ).stdout
            dirty = "true" if status.strip() else "false"
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            dirty = UNKNOWN
    return {GIT_COMMIT_TAG: commit, GIT_DIRTY_TAG: dirty}


def delta_table_version(spark: SparkSession, table_path: str) -> int:
    """The latest version of the Delta table at ``table_path``, read from its history."""
    if not (Path(table_path) / "_delta_log").is_dir():
        raise FileNotFoundError(
            f"{table_path} is not a Delta table (no _delta_log folder): build it first, "
            "e.g. with course_utils.features.require_customer_features(lesson)."
        )
    latest = spark.sql(f"DESCRIBE HISTORY delta.`{table_path}` LIMIT 1").select("version").first()
    return int(latest["version"])


def delta_dataset(
    frame: pd.DataFrame, table_path: str, version: int, *, name: str, targets: str | None = None
) -> PandasDataset:
    """An MLflow dataset for ``frame`` whose source is the Delta table ``table_path`` at ``version``.

    Log it with ``mlflow.log_input(dataset, context="training")``: the run then records
    which table, and which version of it, the model was trained from (data lineage), and
    ``dataset.source.load()`` reads exactly that version back with Delta time travel.
    """
    import mlflow

    if version < 0:
        raise ValueError(f"Delta versions start at 0; got version={version}.")
    if targets is not None and targets not in frame.columns:
        raise ValueError(f"targets={targets!r} is not a column of the frame; columns are {list(frame.columns)}.")
    source = _versioned_delta_source(str(table_path), int(version))
    return mlflow.data.from_pandas(frame, source=source, name=name, targets=targets)


def _versioned_delta_source(table_path: str, version: int) -> Any:
    """A ``DeltaDatasetSource`` that always writes its version, including version 0.

    MLflow 3.17's ``DeltaDatasetSource.to_dict`` tests ``if self._delta_table_version:``, so
    version 0 is silently left out of the stored source and a reload reads the *latest*
    version instead. The subclass only fixes that; the stored JSON has the standard keys and
    source type, so MLflow reads it back with its own class.
    """
    from mlflow.data.delta_dataset_source import DeltaDatasetSource

    class _VersionedDeltaDatasetSource(DeltaDatasetSource):
        def to_dict(self) -> dict[Any, Any]:
            info = super().to_dict()
            if self._delta_table_version is not None:
                info["delta_table_version"] = self._delta_table_version
            return info

    return _VersionedDeltaDatasetSource(path=table_path, delta_table_version=version)


def list_artifact_files(client: MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    """Every artifact file of a run (folders walked), as sorted paths relative to the run's root."""
    files: list[str] = []
    for item in client.list_artifacts(run_id, path):
        files.extend(list_artifact_files(client, run_id, item.path) if item.is_dir else [item.path])
    return sorted(files)


# --- reading runs back: the three questions --------------------------------------------------


def _require_columns(runs: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [column for column in columns if column not in runs.columns]
    if missing:
        known = sorted(c for c in runs.columns if c.startswith(("params.", "metrics.", "tags.")))
        raise ValueError(f"{what}: the runs have no column {missing}; available: {known}.")


def plot_metric_vs_param(
    runs: pd.DataFrame, param: str, metrics: Sequence[str], *, ax: Axes | None = None, log_x: bool = False
) -> Axes:
    """One line per metric against a numeric parameter, from a ``mlflow.search_runs`` frame.

    Args:
        runs: the DataFrame returned by ``mlflow.search_runs`` (columns ``params.*``, ``metrics.*``).
        param: the parameter name, without the ``params.`` prefix.
        metrics: metric names, without the ``metrics.`` prefix.
        ax: where to draw (a new figure when omitted).
        log_x: use a log scale for the parameter (e.g. a regularisation strength).
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    columns = [f"params.{param}", *(f"metrics.{m}" for m in metrics)]
    _require_columns(runs, columns, "plot_metric_vs_param")
    values = pd.to_numeric(runs[f"params.{param}"], errors="coerce")
    if values.isna().all():
        raise ValueError(f"params.{param} holds no numbers ({runs[f'params.{param}'].unique()[:5]}); pick a numeric parameter.")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    table = runs.assign(_x=values).dropna(subset=["_x"]).sort_values("_x")
    for metric in metrics:
        ax.plot(table["_x"], table[f"metrics.{metric}"], marker="o", label=metric)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(param)
    ax.set_ylabel(", ".join(metrics))
    ax.set_title(f"How does {param} affect the metric?")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def plot_run_ranking(
    runs: pd.DataFrame,
    metric: str,
    *,
    label: str = "tags.mlflow.runName",
    higher_is_better: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """Horizontal bars of ``metric`` for every run, best on top and highlighted."""
    import matplotlib.pyplot as plt

    column = f"metrics.{metric}"
    _require_columns(runs, [column, label], "plot_run_ranking")
    table = runs.dropna(subset=[column]).sort_values(column, ascending=higher_is_better)
    if table.empty:
        raise ValueError(f"No run has the metric {metric!r}: log it in every run you want to compare.")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.35 * len(table) + 1.2))
    colors = ["tab:gray"] * (len(table) - 1) + ["tab:green"]
    ax.barh(table[label].astype(str), table[column], color=colors)
    ax.set_xlabel(metric)
    low, high = float(table[column].min()), float(table[column].max())
    margin = max((high - low) * 0.5, 0.01)
    ax.set_xlim(low - margin, high + margin)
    ax.set_title("Which is the best model?")
    return ax


def metric_histories(client: MlflowClient, runs: Mapping[str, str], key: str) -> pd.DataFrame:
    """Every logged value of ``key`` for each run, as rows (label, step, value), ordered by step.

    Args:
        client: an ``MlflowClient`` for the tracking server.
        runs: a label for each run id, e.g. ``{"learning_rate=0.3": run_id}``.
        key: the metric name.
    """
    import pandas as pd

    rows = []
    for label, run_id in runs.items():
        history = client.get_metric_history(run_id, key)
        if not history:
            raise ValueError(f"Run {run_id} ({label}) has no history for metric {key!r}: was it logged with steps?")
        rows.extend({"label": label, "step": m.step, "value": m.value} for m in history)
    return pd.DataFrame(rows).sort_values(["label", "step"], ignore_index=True)


def plot_metric_histories(histories: pd.DataFrame, key: str, *, ax: Axes | None = None) -> Axes:
    """Metric value by step, one line per run, the best (lowest) step of each marked."""
    import matplotlib.pyplot as plt

    _require_columns(histories, ["label", "step", "value"], "plot_metric_histories")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for label, history in histories.groupby("label", sort=True):
        (line,) = ax.plot(history["step"], history["value"], label=label)
        best = history.loc[history["value"].idxmin()]
        ax.scatter([best["step"]], [best["value"]], color=line.get_color(), zorder=3)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.set_title("Did training run long enough?")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


# --- models and tuning -----------------------------------------------------------------------


def logistic_churn_pipeline(c: float = 1.0, *, max_iter: int = 1000) -> Pipeline:
    """One-hot categoricals, scaled numerics, a class-balanced logistic regression (``C=c``).

    The same raw columns in as ``course_utils.models.churn_pipeline``, so the two can be
    compared run for run and logged with ``log_churn_model``.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from course_utils.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES

    if not c > 0:
        raise ValueError(f"C is the inverse regularisation strength and must be positive; got c={c!r}.")
    encode = ColumnTransformer(
        [
            ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), list(CATEGORICAL_FEATURES)),
            ("numeric", StandardScaler(), list(NUMERIC_FEATURES)),
        ],
        verbose_feature_names_out=False,
    )
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=max_iter)
    return Pipeline([("encode", encode), ("model", model)])



def plot_search_progress(losses: Sequence[float], *, ax: Axes | None = None, label: str = "trial loss") -> Axes:
    """The loss of each trial in order, and the best loss found so far."""
    import matplotlib.pyplot as plt
    import numpy as np

    if len(losses) == 0:
        raise ValueError("No trial losses to plot: run the search first.")
    values = np.asarray(losses, dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    trials = np.arange(1, len(values) + 1)
    ax.scatter(trials, values, label=label, color="tab:blue")
    ax.step(trials, np.minimum.accumulate(values), where="post", color="tab:green", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("loss")
    ax.set_title("Search progress")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def plot_permutation_importance(importances: Any, feature_names: Sequence[str], *, ax: Axes | None = None) -> Axes:
    """Box plot of ``sklearn.inspection.permutation_importance`` results, most important on top."""
    import matplotlib.pyplot as plt
    import numpy as np

    values = np.asarray(importances.importances)
    if values.shape[0] != len(feature_names):
        raise ValueError(
            f"{values.shape[0]} importance rows but {len(feature_names)} feature names: "
            "pass the columns of the frame given to permutation_importance."
        )
    order = np.argsort(values.mean(axis=1))
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.35 * len(feature_names) + 1.2))
    ax.boxplot(values[order].T, orientation="horizontal", tick_labels=[feature_names[i] for i in order])
    ax.axvline(0, color="gray", linestyle="--", linewidth=1)
    ax.set_xlabel("drop in score when the column is shuffled")
    ax.set_title("Permutation importance (validation data)")
    return ax
