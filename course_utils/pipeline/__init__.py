"""Module 05: the ML lifecycle as idempotent steps over simulated days (notebook, CLI, MLflow Project).

- :mod:`~course_utils.pipeline.data`: each simulated day's raw file (module 04's generator, drift on a
  known day) and the batch contract it must meet;
- :mod:`~course_utils.pipeline.context`: where a pipeline keeps its state, and :func:`run_step`, which
  keys every step by its inputs' Delta versions, parameters and code version and skips finished keys;
- :mod:`~course_utils.pipeline.steps`: ingest, featurise, train, register, validate, promote, score
  (batch, stream, REST), monitor;
- :mod:`~course_utils.pipeline.runner`: the day loop, retraining on drift, the degraded-challenger drill
  and the champion's lineage read back from MLflow and Delta.

Nothing is imported at package import beyond these small modules (Spark, MLflow and Feast load when used).
"""

from course_utils.pipeline.context import STEPS, PipelineContext, PipelineError, StepRecord, run_step
from course_utils.pipeline.runner import (
    DayResult,
    challenge_with_degraded_model,
    current_champion,
    lineage,
    run_one_step,
    run_pipeline,
)

__all__ = [
    "STEPS",
    "DayResult",
    "PipelineContext",
    "PipelineError",
    "StepRecord",
    "challenge_with_degraded_model",
    "current_champion",
    "lineage",
    "run_one_step",
    "run_pipeline",
    "run_step",
]
