"""Registry layouts and the CI/CD steps around them: extra MLflow servers, validation, promotion.

Module 02 shows the two registry layouts of the slides for real:

- **one central registry**: every environment's models live on one server; promotion moves
  an alias or copies a version to another registered model (``MlflowClient.copy_model_version``);
- **one registry per environment**: a *dev* and a *prod* MLflow server; a CI/CD step exports
  the validated version from dev and imports it into prod (:func:`promote_across`).

Extra servers are started like the course's own (pid files, 127.0.0.1, a SQLite store) but
each on its own port with its own store under the lesson folder, optionally with the
settings registry webhooks need (:func:`webhook_server_env`).

The validation job (:func:`validate_model_version`) is what a webhook receiver runs when a
version is created: the candidate's input signature must equal the champion's, its
predictions must have the champion's dtype, and its F1 on a holdout must not be worse than
the champion's (within a tolerance). :func:`record_verdict` writes the outcome as version
tags, which the MLflow UI shows.

Example:
    >>> env = webhook_server_env("a-fernet-key")
    >>> env["MLFLOW_WEBHOOK_ALLOWED_SCHEMES"]
    'http,https'
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from course_utils.config import LOOPBACK, Settings
from course_utils.models import pinned_requirements  # noqa: F401  (the notebooks' import path)

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from course_utils.services import ServiceStatus

logger = logging.getLogger(__name__)

LABEL = "churned_next_month"
VALIDATION_STATUS_TAG = "validation_status"  # "passed" / "failed" / "error"
VALIDATION_TAG_PREFIX = "validation_"
PROMOTED_FROM_TAG = "promoted_from"
DEFAULT_F1_TOLERANCE = 0.02


class PromotionRefused(RuntimeError):
    """A CI/CD step refused to promote a model version (not validated, or failed validation)."""


# --- extra MLflow servers --------------------------------------------------------------------


def registry_server_command(port: int, store_dir: Path) -> list[str]:
    """``mlflow server`` on 127.0.0.1:port with a SQLite store and artifacts under ``store_dir``."""
    return [
        sys.executable, "-m", "mlflow", "server", "--host", LOOPBACK, "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{Path(store_dir) / 'mlflow.db'}",
        "--artifacts-destination", str(Path(store_dir) / "artifacts"),
    ]


def webhook_server_env(encryption_key: str, max_retries: int = 3, cache_ttl_s: int = 1) -> dict[str, str]:
    """Server settings for webhooks to a local receiver (development only, as MLflow warns).

    - ``MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY``: the Fernet key that encrypts webhook secrets in
      the database; it must stay the same for the life of the database, or stored secrets
      cannot be decrypted after a restart.
    - ``MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https`` and ``MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true``:
      by default MLflow only delivers to public ``https`` URLs (SSRF protection).
    - ``MLFLOW_WEBHOOK_CACHE_TTL``: how long the server caches the list of webhooks per event.
    """
    return {
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": encryption_key,
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_REQUEST_MAX_RETRIES": str(max_retries),
        "MLFLOW_WEBHOOK_CACHE_TTL": str(cache_ttl_s),
    }


def start_registry_server(
    name: str, port: int, store_dir: Path, settings: Settings, env: dict[str, str] | None = None
) -> ServiceStatus:
    """Start a fresh MLflow server under pid-file ``name`` (a leftover one is stopped first)."""
    from course_utils.services import check_tracking_server, start_process, stop, tracking_server_env

    stop(name, settings)  # a crashed earlier run may have left one, serving a deleted store
    Path(store_dir).mkdir(parents=True, exist_ok=True)
    url = f"http://{LOOPBACK}:{port}"
    state = start_process(name, registry_server_command(port, Path(store_dir)), port, url, settings,
                          env={**tracking_server_env(), **(env or {})},
                          port_setting="start_registry_server(..., port=free_port()) picks a free one")
    wait_until_healthy(url)
    check_tracking_server(url)
    return state


def wait_until_healthy(url: str, timeout_s: float = 120.0) -> None:
    """Poll ``<url>/health``: the port opens a few seconds before the app answers."""
    import time

    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=5).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)


def stop_at_exit(names: list[str], settings: Settings) -> None:
    """Stop these services when the Python process ends, even after a failing cell (kernel shutdown)."""
    from course_utils import services

    for name in names:
        services.stop_at_exit(name, settings)


def stop_registry_server(name: str, settings: Settings) -> bool:
    """Stop the server started under ``name``; True if one was running."""
    from course_utils.services import stop

    return stop(name, settings)


# --- validation ------------------------------------------------------------------------------


def _signature_inputs(model_uri: str) -> list[dict[str, Any]] | None:
    from mlflow.models import get_model_info

    signature = get_model_info(model_uri).signature
    return None if signature is None else signature.inputs.to_dict()


def validate_model_version(
    client: MlflowClient,
    name: str,
    version: str,
    holdout: pd.DataFrame,
    champion_alias: str = "champion",
    label: str = LABEL,
    f1_tolerance: float = DEFAULT_F1_TOLERANCE,
) -> dict[str, Any]:
    """Compare a candidate version with the current champion; returns checks and a verdict.

    Without a champion (the first version of a model) only the candidate's own checks run:
    it has a signature and predicts one 0/1 label per row.
    """
    import mlflow
    import numpy as np
    from mlflow.exceptions import MlflowException
    from sklearn.metrics import f1_score

    candidate_uri = f"models:/{name}/{version}"
    try:
        champion = client.get_model_version_by_alias(name, champion_alias)
        champion_uri = f"models:/{name}/{champion.version}"
    except MlflowException:
        champion, champion_uri = None, None
    features = holdout.drop(columns=[label])
    truth = holdout[label].to_numpy()

    checks: dict[str, bool] = {}
    candidate_inputs = _signature_inputs(candidate_uri)
    checks["has_signature"] = candidate_inputs is not None
    try:
        candidate_predictions = np.asarray(mlflow.pyfunc.load_model(candidate_uri).predict(features))
        checks["predicts"] = len(candidate_predictions) == len(features)
    except Exception as error:  # a candidate that cannot predict fails validation, with the reason
        logger.warning("candidate %s cannot predict: %s", candidate_uri, error)
        candidate_predictions = None
        checks["predicts"] = False
    candidate_f1 = None if candidate_predictions is None else float(f1_score(truth, candidate_predictions))
    result: dict[str, Any] = {"candidate_f1": candidate_f1, "champion_version": None, "champion_f1": None}
    if champion is not None and str(champion.version) != str(version):
        champion_predictions = np.asarray(mlflow.pyfunc.load_model(champion_uri).predict(features))
        champion_f1 = float(f1_score(truth, champion_predictions))
        checks["signature_matches_champion"] = candidate_inputs == _signature_inputs(champion_uri)
        checks["prediction_dtype_matches"] = (
            candidate_predictions is not None and candidate_predictions.dtype == champion_predictions.dtype
        )
        checks["f1_not_worse"] = candidate_f1 is not None and candidate_f1 >= champion_f1 - f1_tolerance
        result.update(champion_version=str(champion.version), champion_f1=champion_f1)
    result["checks"] = checks
    result["failed_checks"] = [check for check, ok in checks.items() if not ok]
    result["verdict"] = "passed" if all(checks.values()) else "failed"
    return result


def record_verdict(client: MlflowClient, name: str, version: str, result: dict[str, Any]) -> dict[str, str]:
    """Write the verdict as ``validation_*`` tags on the version (visible in the MLflow UI)."""
    tags = {
        VALIDATION_STATUS_TAG: str(result["verdict"]),
        f"{VALIDATION_TAG_PREFIX}failed_checks": ",".join(result.get("failed_checks", [])) or "none",
        f"{VALIDATION_TAG_PREFIX}candidate_f1": _fmt(result.get("candidate_f1")),
        f"{VALIDATION_TAG_PREFIX}champion_f1": _fmt(result.get("champion_f1")),
        f"{VALIDATION_TAG_PREFIX}champion_version": str(result.get("champion_version") or "none"),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    return tags


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.4f}"


def validation_job(tracking_uri: str, holdout_path: Path) -> Callable[[str, str], dict[str, Any]]:
    """The job a webhook receiver runs on ``model_version.created``: validate, then tag the verdict."""

    def run(name: str, version: str) -> dict[str, Any]:
        import mlflow
        import pandas as pd
        from mlflow import MlflowClient

        mlflow.set_tracking_uri(tracking_uri)  # model loading resolves models:/ URIs through it
        mlflow.set_registry_uri(tracking_uri)
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        result = validate_model_version(client, name, version, pd.read_parquet(holdout_path))
        record_verdict(client, name, version, result)
        return result

    return run


def unvalidated_versions(client: MlflowClient, name: str) -> list[str]:
    """Versions of ``name`` without a validation verdict (e.g. their webhook delivery was lost)."""
    versions = client.search_model_versions(f"name = '{name}'")
    return sorted((v.version for v in versions if VALIDATION_STATUS_TAG not in v.tags), key=int)


def reconcile(tracking_uri: str, name: str, holdout_path: Path) -> dict[str, dict[str, Any]]:
    """Validate every version that has no verdict yet: the catch-up for deliveries that never arrived."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    job = validation_job(tracking_uri, holdout_path)
    return {version: job(name, version) for version in unvalidated_versions(client, name)}


# --- promotion across registries (export / import) -------------------------------------------


def directory_digest(folder: Path) -> str:
    """sha256 over every file's relative path and bytes: equal digests mean identical artifacts."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def export_model_version(tracking_uri: str, name: str, version: str, destination: Path) -> Path:
    """Download a registered version's model files (MLmodel, model, environment) to ``destination``."""
    import mlflow
    from mlflow import MlflowClient

    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    # Resolve the version's storage location on *this* registry (a models:/ URI would be
    # resolved against whatever registry is the process default).
    location = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).get_model_version_download_uri(name, version)
    local = mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(destination), tracking_uri=tracking_uri)
    (Path(local) / "registered_model_meta").unlink(missing_ok=True)  # names the source registry's model
    return Path(local)


def import_model_version(
    tracking_uri: str,
    model_dir: Path,
    name: str,
    experiment_name: str,
    tags: dict[str, str] | None = None,
    description: str | None = None,
    model_tags: dict[str, str] | None = None,
) -> Any:
    """Log exported model files as a run's artifacts on another server and register them there."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(experiment_name)
    run = client.create_run(experiment_id, run_name=f"import-{name}", tags={"mlflow.source.type": "JOB"})
    client.log_artifacts(run.info.run_id, str(model_dir), artifact_path="model")
    client.set_terminated(run.info.run_id)
    try:
        client.create_registered_model(name, tags=model_tags or {})
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(tracking_uri)  # a runs:/ source is resolved through the process default
    mlflow.set_registry_uri(tracking_uri)
    try:
        return client.create_model_version(
            name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id, tags=tags or {}, description=description
        )
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])


def promote_across(
    source_uri: str,
    name: str,
    version: str,
    target_uri: str,
    target_name: str,
    workdir: Path,
    alias: str = "champion",
    model_tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The CI/CD promotion step between per-environment registries.

    Refuses a version whose validation verdict is not ``passed``; otherwise exports it from the
    source registry, imports it into the target, sets ``alias`` there, and returns both
    artifact digests (equal: the very same files were promoted).
    """
    from mlflow import MlflowClient

    source = MlflowClient(tracking_uri=source_uri, registry_uri=source_uri)
    candidate = source.get_model_version(name, version)
    status = candidate.tags.get(VALIDATION_STATUS_TAG)
    if status != "passed":
        raise PromotionRefused(
            f"{name} version {version} has {VALIDATION_STATUS_TAG}={status!r}; only a version whose "
            f"validation passed is promoted. Fix the model (failed checks: "
            f"{candidate.tags.get(VALIDATION_TAG_PREFIX + 'failed_checks', 'unknown')}) and register a new version."
        )
    exported = export_model_version(source_uri, name, version, Path(workdir) / f"{name}-v{version}")
    lineage = {
        PROMOTED_FROM_TAG: f"{source_uri}#{name}/{version}",
        "source_run_id": str(candidate.run_id),
        **{k: v for k, v in candidate.tags.items() if k.startswith(VALIDATION_TAG_PREFIX)},
    }
    imported = import_model_version(
        target_uri, exported, target_name, "/promotions", tags=lineage,
        description=candidate.description, model_tags=model_tags,
    )
    target = MlflowClient(tracking_uri=target_uri, registry_uri=target_uri)
    target.set_registered_model_alias(target_name, alias, imported.version)
    check_dir = export_model_version(target_uri, target_name, imported.version, Path(workdir) / f"check-{target_name}-v{imported.version}")
    return {
        "source_version": str(version),
        "target_version": str(imported.version),
        "source_digest": directory_digest(exported),
        "target_digest": directory_digest(check_dir),
        "lineage": lineage,
    }


def lineage_json(tags: dict[str, str]) -> str:
    """Tags as sorted JSON (for printing lineage compactly)."""
    return json.dumps(dict(sorted(tags.items())), indent=1)
