"""Entry point ``main`` of the churn MLflow Project: train, log, and optionally register.

MLflow runs it as ``python train.py ...`` with ``MLFLOW_RUN_ID`` set, so ``start_run()``
continues the run that ``mlflow run`` created, in the experiment it was given.
"""

from __future__ import annotations

import argparse

import mlflow
import pandas as pd
from sklearn.metrics import f1_score

from course_utils.models import LABEL, churn_pipeline, feature_frame, log_churn_model
from course_utils.registry import pinned_requirements
from course_utils.tracking import skip_unused_request_header_providers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--training-data", required=True, help="parquet with the model features and the label")
    parser.add_argument("--n-estimators", type=float, default=50)
    parser.add_argument("--max-depth", type=float, default=8)
    parser.add_argument("--seed", type=float, default=42)
    parser.add_argument("--registered-model", default="none", help="register the model under this name ('none': do not)")
    args = parser.parse_args()
    skip_unused_request_header_providers()  # Feast's MLflow plugin would add ~5 s to the first request

    frame = pd.read_parquet(args.training_data)
    inputs = feature_frame(frame)
    pipeline = churn_pipeline(int(args.seed), n_estimators=int(args.n_estimators), max_depth=int(args.max_depth))
    pipeline.fit(inputs, frame[LABEL])
    with mlflow.start_run() as run:
        mlflow.log_params({"n_estimators": int(args.n_estimators), "max_depth": int(args.max_depth), "rows": len(frame)})
        mlflow.log_metric("train_f1", f1_score(frame[LABEL], pipeline.predict(inputs)))
        info = log_churn_model(pipeline, inputs, pip_requirements=pinned_requirements())
        if args.registered_model != "none":
            version = mlflow.register_model(info.model_uri, args.registered_model)
            mlflow.set_tag("registered_version", version.version)
        print(f"run {run.info.run_id} logged {info.model_uri}")


if __name__ == "__main__":
    main()
