"""Feast on the course's customer feature table: repository config, definitions, lookups.

The customer features (``course_utils.features``) are computed with Spark and stored as a
Delta table. This module puts a Feast feature store in front of them:

- **offline source**: a Parquet snapshot exported from one version of the Delta table
  (:func:`export_offline_source`); Feast's file offline store does the point-in-time joins.
  The file name and the source's tags carry the Delta version, so the registry knows which
  table version it serves.
- **registry and online store**: two SQLite files in the lesson's ``feature_repo`` folder
  (:func:`repo_config`, :func:`feature_store_yaml`).
- **definitions**: the ``customer`` entity, two feature views and two feature services, each
  with a description, an owner and tags (:func:`customer_feature_definitions`).
- **lookups**: :func:`lookup_online` reports which entity keys the online store does not know
  (Feast returns nulls for them rather than failing); :func:`historical_features` gives
  point-in-time-correct rows in the caller's order.
- **keys-only scoring**: :class:`FeatureLookup` fetches a model's features from Feast and
  predicts; :func:`log_feature_lookup_model` logs it as an MLflow ``pyfunc`` (model from
  code) that takes only ``customer_id`` (and optionally ``event_timestamp``).

Lessons that only need a working store call :func:`require_feature_store`; a model server
opens the same store through the repo's ``feature_store.yaml``.

Example:
    >>> settings = repo_settings(Path("/tmp/repo"), project="streamly")
    >>> settings["online_store"]["type"]
    'sqlite'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Sequence, Union

from course_utils.features import CATEGORICAL_FEATURES, ENTITY_KEY, NUMERIC_FEATURES, TIMESTAMP_COLUMN

if TYPE_CHECKING:
    import pandas as pd
    from feast import Entity, FeatureService, FeatureStore, FeatureView, FileSource, RepoConfig
    from sklearn.pipeline import Pipeline

    from course_utils.lesson import Lesson

ENTITY_NAME = "customer"
EVENT_TIMESTAMP = "event_timestamp"  # Feast's name for "when this row's values were true"
AS_OF_FEATURE = "features_as_of"  # the snapshot time, exposed as a feature so joins can be audited
ACTIVITY_VIEW = "customer_activity_28d"
PROFILE_VIEW = "customer_profile"
CHURN_SERVICE = "churn_model_v1"
ENGAGEMENT_SERVICE = "engagement_v1"
DEFAULT_PROJECT = "streamly"
ACTIVITY_FEATURES = (
    "active_days_28d",
    "sessions_28d",
    "minutes_watched_28d",
    "support_tickets_28d",
    "payment_failures_28d",
)
PROFILE_FEATURES = ("tenure_months", "age", "monthly_fee", "country", "plan")
# A snapshot stays valid until the next month-end snapshot replaces it: at most 31 days.
SNAPSHOT_TTL = timedelta(days=31)
OnUnknown = Literal["error", "null"]


class UnknownEntityKeysError(KeyError):
    """Some requested entity keys have no features in the store."""

    def __init__(self, keys: Sequence[int], where: str = "online store") -> None:
        self.keys = list(keys)
        shown = ", ".join(str(k) for k in self.keys[:10]) + (" …" if len(self.keys) > 10 else "")
        super().__init__(
            f"{len(self.keys)} {ENTITY_KEY} value(s) have no features in the {where}: {shown}. "
            "Feast returns nulls for keys it does not know instead of failing. Check the keys, or "
            "materialize the period they are active in (store.materialize(start, end))."
        )

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


# ---------------------------------------------------------------------------------------
# The repository: feature_store.yaml, as a dict, a RepoConfig and YAML text
# ---------------------------------------------------------------------------------------


def repo_settings(repo_dir: Path, project: str = DEFAULT_PROJECT) -> dict[str, Any]:
    """The content of ``feature_store.yaml`` for a local repo: SQLite registry and online store.

    Paths are absolute so a copy of the file (e.g. logged with a model) still points at the store.
    """
    if not project.replace("_", "").isalnum() or not project[0].isalpha():
        raise ValueError(
            f"Feast project name {project!r} must start with a letter and use only letters, digits "
            "and underscores, e.g. 'streamly'."
        )
    repo_dir = Path(repo_dir).resolve()
    return {
        "project": project,
        "provider": "local",
        "registry": {"registry_type": "file", "path": str(repo_dir / "registry.db")},
        "online_store": {"type": "sqlite", "path": str(repo_dir / "online_store.db")},
        "offline_store": {"type": "file"},
        "entity_key_serialization_version": 3,
    }


def repo_config(repo_dir: Path, project: str = DEFAULT_PROJECT) -> RepoConfig:
    """The same settings as a Feast ``RepoConfig`` object."""
    from feast import RepoConfig

    return RepoConfig(repo_path=Path(repo_dir).resolve(), **repo_settings(repo_dir, project))


def feature_store_yaml(repo_dir: Path, project: str = DEFAULT_PROJECT) -> str:
    """The settings as ``feature_store.yaml`` text (what ``feast init`` would have written)."""
    import yaml

    return yaml.safe_dump(repo_settings(repo_dir, project), sort_keys=False)


def write_feature_store_yaml(repo_dir: Path, project: str = DEFAULT_PROJECT) -> Path:
    """Write ``<repo_dir>/feature_store.yaml`` so the ``feast`` CLI and other processes can open the repo."""
    repo_dir = Path(repo_dir)
    repo_dir.mkdir(parents=True, exist_ok=True)
    path = repo_dir / "feature_store.yaml"
    path.write_text(feature_store_yaml(repo_dir, project))
    return path


def open_feature_store(repo_dir: Path, project: str = DEFAULT_PROJECT) -> FeatureStore:
    """A ``FeatureStore`` on the repo (folders are created; nothing is applied)."""
    from feast import FeatureStore

    Path(repo_dir).mkdir(parents=True, exist_ok=True)
    return FeatureStore(config=repo_config(repo_dir, project))


# ---------------------------------------------------------------------------------------
# The offline source: a Parquet snapshot of one Delta version
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OfflineExport:
    """A Parquet file exported from one version of the Delta feature table."""

    path: Path
    delta_path: str
    delta_version: int
    rows: int


def delta_version(delta_path: str) -> int:
    """The latest version of a Delta table (read from its transaction log, no Spark needed)."""
    from deltalake import DeltaTable

    _require_delta_table(delta_path)
    return int(DeltaTable(delta_path).version())


def read_feature_table(delta_path: str, version: int | None = None) -> pd.DataFrame:
    """The Delta feature table (optionally at ``version``) as pandas, in Feast's layout.

    Adds ``event_timestamp`` (the snapshot date as a UTC timestamp: when the values were
    true) and ``features_as_of`` (the same instant, as a feature, to audit joins); dates
    become UTC timestamps. Rows are sorted by time, then customer.
    """
    import pandas as pd
    from deltalake import DeltaTable

    _require_delta_table(delta_path)
    table = DeltaTable(delta_path, version=version)
    frame = table.to_pandas()
    missing = [c for c in (ENTITY_KEY, TIMESTAMP_COLUMN, *NUMERIC_FEATURES, *CATEGORICAL_FEATURES) if c not in frame]
    if missing:
        raise ValueError(
            f"The Delta table {delta_path} lacks the feature column(s) {missing}; build it with "
            "course_utils.features.compute_customer_features."
        )
    snapshot = pd.to_datetime(frame.pop(TIMESTAMP_COLUMN)).dt.tz_localize("UTC")
    frame.insert(1, EVENT_TIMESTAMP, snapshot)
    frame[AS_OF_FEATURE] = snapshot
    if "signup_date" in frame:
        frame["signup_date"] = pd.to_datetime(frame["signup_date"]).dt.tz_localize("UTC")
    return frame.sort_values([EVENT_TIMESTAMP, ENTITY_KEY], ignore_index=True)


def export_offline_source(delta_path: str, out_dir: Path, version: int | None = None) -> OfflineExport:
    """Write one Delta version as ``<out_dir>/customer_features_v<version>.parquet`` for Feast.

    Args:
        delta_path: the Delta feature table (``compute_customer_features`` output).
        out_dir: folder for the Parquet file (created).
        version: Delta version to export; default the latest.
    """
    resolved = delta_version(delta_path) if version is None else int(version)
    frame = read_feature_table(delta_path, resolved)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"customer_features_v{resolved}.parquet"
    frame.to_parquet(path, index=False)
    return OfflineExport(path=path.resolve(), delta_path=str(delta_path), delta_version=resolved, rows=len(frame))


def _require_delta_table(delta_path: str) -> None:
    if not (Path(delta_path) / "_delta_log").is_dir():
        raise FileNotFoundError(
            f"{delta_path} is not a Delta table (no _delta_log folder). Write the features first, e.g. "
            "features.write.format('delta').save(path), or call course_utils.features.require_customer_features(lesson)."
        )


# ---------------------------------------------------------------------------------------
# Definitions: entity, feature views, feature services
# ---------------------------------------------------------------------------------------


@dataclass
class FeatureDefinitions:
    """Everything ``store.apply`` registers for the customer features."""

    customer: Entity
    source: FileSource
    activity: FeatureView
    profile: FeatureView
    churn_service: FeatureService
    engagement_service: FeatureService

    @property
    def objects(self) -> list[Any]:
        """The objects in the order ``FeatureStore.apply`` takes them."""
        return [self.customer, self.source, self.activity, self.profile, self.churn_service, self.engagement_service]


def customer_feature_definitions(export: OfflineExport) -> FeatureDefinitions:
    """The course's Feast definitions over an exported snapshot of the customer feature table."""
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, Int32, Int64, String, UnixTimestamp

    customer = Entity(
        name=ENTITY_NAME,
        join_keys=[ENTITY_KEY],
        value_type=ValueType.INT64,
        description="A Streamly subscriber, identified by customer_id.",
        owner="data-engineering@streamly.example",
        tags={"domain": "customers"},
    )
    source = FileSource(
        name="customer_features_source",
        path=str(export.path),
        timestamp_field=EVENT_TIMESTAMP,
        description=f"Month-end customer snapshots, exported from Delta version {export.delta_version}.",
        owner="data-engineering@streamly.example",
        tags={"delta_path": export.delta_path, "delta_version": str(export.delta_version)},
    )
    activity = FeatureView(
        name=ACTIVITY_VIEW,
        entities=[customer],
        ttl=SNAPSHOT_TTL,
        source=source,
        schema=[
            Field(name="active_days_28d", dtype=Int64, description="Days with at least one session in the 28 days up to the snapshot."),
            Field(name="sessions_28d", dtype=Int64, description="Sessions in the 28 days up to the snapshot."),
            Field(name="minutes_watched_28d", dtype=Float64, description="Minutes watched in the 28 days up to the snapshot."),
            Field(name="support_tickets_28d", dtype=Int64, description="Support tickets opened in the 28 days up to the snapshot."),
            Field(name="payment_failures_28d", dtype=Int64, description="Failed payments in the 28 days up to the snapshot."),
        ],
        description="How much a customer used the service in the 28 days before each month-end snapshot.",
        owner="data-engineering@streamly.example",
        tags={"domain": "engagement", "window": "28d", "pii": "false", "computed_by": "compute_customer_features"},
    )
    profile = FeatureView(
        name=PROFILE_VIEW,
        entities=[customer],
        ttl=SNAPSHOT_TTL,
        source=source,
        schema=[
            Field(name="tenure_months", dtype=Int64, description="Whole calendar months since sign-up at the snapshot."),
            Field(name="age", dtype=Int32, description="Age in years at sign-up."),
            Field(name="monthly_fee", dtype=Float64, description="Monthly fee paid, in the customer's currency converted to USD."),
            Field(name="country", dtype=String, description="Country code (US, GB, DE, FR, BR)."),
            Field(name="plan", dtype=String, description="Subscription plan: basic, standard or premium."),
            Field(name=AS_OF_FEATURE, dtype=UnixTimestamp, description="The snapshot these values describe (for auditing joins; not a model input)."),
        ],
        description="Who the customer is: account attributes and tenure at each month-end snapshot.",
        owner="data-engineering@streamly.example",
        tags={"domain": "account", "pii": "age,country", "computed_by": "compute_customer_features"},
    )
    churn_service = FeatureService(
        name=CHURN_SERVICE,
        features=[activity, profile[list(PROFILE_FEATURES)]],
        description="The ten inputs of the Streamly churn model (course_utils.models.FEATURES).",
        owner="data-science@streamly.example",
        tags={"version": "1", "model": "streamly-churn", "stage": "production"},
    )
    engagement_service = FeatureService(
        name=ENGAGEMENT_SERVICE,
        features=[activity],
        description="Engagement signals for the recommendations team's ranking model (reuses the activity view).",
        owner="recommendations@streamly.example",
        tags={"version": "1", "model": "home-ranking"},
    )
    return FeatureDefinitions(customer, source, activity, profile, churn_service, engagement_service)


def feature_dictionary(store: FeatureStore) -> pd.DataFrame:
    """The registry as a feature dictionary: one row per feature, with its view, type, owner, tags and users."""
    import pandas as pd

    services = store.list_feature_services()
    rows = []
    for view in sorted(store.list_feature_views(), key=lambda v: v.name):
        for feature in view.features:
            used_by = sorted(
                s.name
                for s in services
                for projection in s.feature_view_projections
                if projection.name == view.name and feature.name in {f.name for f in projection.features}
            )
            rows.append(
                {
                    "feature_view": view.name,
                    "feature": feature.name,
                    "dtype": str(feature.dtype),
                    "description": feature.description,
                    "owner": view.owner,
                    "view_tags": ", ".join(f"{k}={v}" for k, v in sorted(view.tags.items())),
                    "used_by": ", ".join(used_by),
                }
            )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------
# Materialisation and online lookups
# ---------------------------------------------------------------------------------------


def _utc_midnight(day: date | datetime | str) -> datetime:
    if isinstance(day, str):
        day = date.fromisoformat(day)
    if isinstance(day, datetime):
        return day if day.tzinfo else day.replace(tzinfo=timezone.utc)
    return datetime.combine(day, time(0), tzinfo=timezone.utc)


def materialize_days(store: FeatureStore, first: date | str, last: date | str) -> None:
    """Load the latest values per customer from snapshots dated ``first`` .. ``last`` (inclusive) online."""
    start, end = _utc_midnight(first), _utc_midnight(last) + timedelta(days=1)
    if end <= start:
        raise ValueError(f"materialize_days: first={first} is after last={last}; give an increasing range.")
    store.materialize(start_date=start, end_date=end)


FeatureRefs = Union[str, "FeatureService", Sequence[str]]


def _resolve_features(store: FeatureStore, features: FeatureRefs) -> Any:
    """A feature service name becomes the service; a list of 'view:feature' refs stays as it is."""
    if isinstance(features, str):
        if ":" in features:
            return [features]
        from feast.errors import FeatureServiceNotFoundException

        try:
            return store.get_feature_service(features)
        except FeatureServiceNotFoundException as error:
            known = ", ".join(s.name for s in store.list_feature_services()) or "none (run store.apply first)"
            raise ValueError(f"No feature service {features!r} in the registry; known services: {known}.") from error
    return features


def _requested_names(features: Any) -> list[str]:
    """Feature column names in the order they were asked for."""
    if isinstance(features, list):
        return [ref.split(":", 1)[1] for ref in features]
    return [f.name for projection in features.feature_view_projections for f in projection.features]


@dataclass(frozen=True)
class OnlineLookup:
    """Online features for requested keys (request order) and the keys the store did not know."""

    features: pd.DataFrame
    unknown_keys: list[int] = field(default_factory=list)

    def require_known(self) -> pd.DataFrame:
        """The features, or :class:`UnknownEntityKeysError` naming every unknown key."""
        if self.unknown_keys:
            raise UnknownEntityKeysError(self.unknown_keys)
        return self.features


def lookup_online(store: FeatureStore, customer_ids: Iterable[int], features: FeatureRefs = CHURN_SERVICE) -> OnlineLookup:
    """Online features for ``customer_ids``; keys whose features are all missing are reported.

    Feast answers an unknown key with nulls (status NOT_FOUND), not an error: this reads
    the per-value statuses so callers can tell "unknown customer" from "value is null".
    """
    from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

    ids = [int(k) for k in customer_ids]
    if not ids:
        raise ValueError("lookup_online needs at least one customer_id.")
    resolved = _resolve_features(store, features)
    response = store.get_online_features(features=resolved, entity_rows=[{ENTITY_KEY: k} for k in ids])
    names = list(response.proto.metadata.feature_names.val)
    found = [False] * len(ids)
    for name, vector in zip(names, response.proto.results):
        if name == ENTITY_KEY:
            continue
        for row, status in enumerate(vector.statuses):
            found[row] = found[row] or status == FieldStatus.PRESENT
    frame = response.to_df()
    ordered = [ENTITY_KEY, *[n for n in _requested_names(resolved) if n in frame.columns]]
    unknown = [k for k, ok in zip(ids, found) if not ok]
    return OnlineLookup(features=frame[ordered], unknown_keys=unknown)


def online_features(
    store: FeatureStore,
    customer_ids: Iterable[int],
    features: FeatureRefs = CHURN_SERVICE,
    on_unknown: OnUnknown = "error",
) -> pd.DataFrame:
    """Online features, one row per key in request order.

    Args:
        on_unknown: ``"error"`` raises :class:`UnknownEntityKeysError` naming unknown keys;
            ``"null"`` keeps Feast's behaviour (null features for them).
    """
    if on_unknown not in ("error", "null"):
        raise ValueError(f"on_unknown={on_unknown!r}; use 'error' or 'null'.")
    lookup = lookup_online(store, customer_ids, features)
    return lookup.require_known() if on_unknown == "error" else lookup.features


def historical_features(store: FeatureStore, entity_df: pd.DataFrame, features: FeatureRefs = CHURN_SERVICE) -> pd.DataFrame:
    """Point-in-time-correct features for (customer_id, event_timestamp) rows: one row per input row, same order.

    Feast returns rows in its own order, and its file offline store drops an entity row whose
    customer has feature rows but none valid at that time (all later, or older than the TTL);
    here such a row comes back with null features, like a customer with no rows at all.
    """
    import pandas as pd

    missing = {ENTITY_KEY, EVENT_TIMESTAMP} - set(entity_df.columns)
    if missing:
        raise ValueError(
            f"The entity dataframe needs columns {ENTITY_KEY!r} and {EVENT_TIMESTAMP!r} (missing: {sorted(missing)}); "
            "event_timestamp is the time each label or prediction is made."
        )
    entities = entity_df.reset_index(drop=True)
    entities[EVENT_TIMESTAMP] = pd.to_datetime(entities[EVENT_TIMESTAMP], utc=True)
    entities["_row"] = range(len(entities))
    result = store.get_historical_features(entity_df=entities, features=_resolve_features(store, features)).to_df()
    feature_columns = [c for c in result.columns if c not in entities.columns]
    joined = entities.merge(result[["_row", *feature_columns]], on="_row", how="left", validate="one_to_one")
    return joined.drop(columns="_row")


# ---------------------------------------------------------------------------------------
# A model that looks up its own features: keys in, predictions out
# ---------------------------------------------------------------------------------------


class FeatureLookup:
    """Churn scoring from entity keys: look the features up in Feast, then predict.

    Input ``customer_id`` (and optionally ``event_timestamp``), output churn probability.
    Without a timestamp the features come from the online store (the latest materialized
    values); with one, from the offline store as of that time (point-in-time correct; naive
    times are read as UTC). Unknown keys raise :class:`UnknownEntityKeysError`
    (``on_unknown="error"``) or score as NaN (``on_unknown="null"``).

    The MLflow model logged by :func:`log_feature_lookup_model` wraps exactly this class.
    """

    def __init__(
        self, store: FeatureStore, pipeline: Pipeline, feature_service: str = CHURN_SERVICE, on_unknown: OnUnknown = "error"
    ) -> None:
        if on_unknown not in ("error", "null"):
            raise ValueError(f"on_unknown={on_unknown!r}; use 'error' or 'null'.")
        self.store = store
        self.pipeline = pipeline
        self.service = _resolve_features(store, feature_service)
        self.on_unknown = on_unknown

    @classmethod
    def from_mlflow_context(cls, artifacts: dict[str, str], model_config: dict[str, Any] | None) -> FeatureLookup:
        """Build from a pyfunc context: artifacts ``churn_model`` and ``feature_store``, config as logged."""
        import mlflow
        from feast import FeatureStore

        config = model_config or {}
        return cls(
            store=FeatureStore(fs_yaml_file=Path(artifacts["feature_store"])),
            pipeline=mlflow.sklearn.load_model(artifacts["churn_model"]),
            feature_service=config.get("feature_service", CHURN_SERVICE),
            on_unknown=config.get("on_unknown", "error"),
        )

    def features(self, model_input: pd.DataFrame) -> tuple[pd.DataFrame, list[bool]]:
        """The feature rows for the input rows (same order) and which rows had features."""
        if ENTITY_KEY not in model_input:
            raise ValueError(f"Send a {ENTITY_KEY!r} column (and optionally {EVENT_TIMESTAMP!r}); got {list(model_input.columns)}.")
        keys = model_input[ENTITY_KEY].astype("int64").tolist()
        if EVENT_TIMESTAMP in model_input and model_input[EVENT_TIMESTAMP].notna().all():
            rows = historical_features(self.store, model_input[[ENTITY_KEY, EVENT_TIMESTAMP]], self.service)
            known = rows[_requested_names(self.service)].notna().any(axis=1).tolist()
            where = "offline store at the given times"
        else:
            lookup = lookup_online(self.store, keys, self.service)
            rows = lookup.features
            unknown = set(lookup.unknown_keys)
            known = [k not in unknown for k in keys]
            where = "online store"
        unknown_keys = [k for k, ok in zip(keys, known) if not ok]
        if unknown_keys and self.on_unknown == "error":
            raise UnknownEntityKeysError(unknown_keys, where)
        return rows, known

    def predict(self, model_input: pd.DataFrame) -> pd.DataFrame:
        """``customer_id`` and ``churn_probability`` for each input row."""
        import pandas as pd

        from course_utils.models import feature_frame

        rows, known = self.features(model_input)
        probabilities = pd.Series(float("nan"), index=range(len(rows)))
        if any(known):
            probabilities[known] = self.pipeline.predict_proba(feature_frame(rows[known]))[:, 1]
        return pd.DataFrame({ENTITY_KEY: rows[ENTITY_KEY].astype("int64").to_numpy(), "churn_probability": probabilities.to_numpy()})


# MLflow "models from code": this file is the model's entry point, so no pickled Python
# object is stored (MLflow warns about those), only code and artifacts; and importing
# course_utils.feature_store does not import MLflow.
MODEL_CODE = """\
# The MLflow model-from-code entry point written by course_utils.feature_store.
import mlflow
import pandas as pd

from course_utils.feature_store import FeatureLookup


class FeatureLookupModel(mlflow.pyfunc.PythonModel):
    \"\"\"customer_id (+ optional event_timestamp) in, churn_probability out; features from Feast.\"\"\"

    def load_context(self, context):
        self.lookup = FeatureLookup.from_mlflow_context(context.artifacts, context.model_config)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.lookup.predict(model_input)


mlflow.models.set_model(FeatureLookupModel())
"""
MODEL_REQUIREMENTS = ("mlflow", "feast", "scikit-learn", "skops", "pandas", "pyarrow", "dask")


def _feature_lookup_model_args(
    pipeline: Pipeline, feature_store_yaml_path: Path, scratch: Path, feature_service: str, on_unknown: OnUnknown
) -> dict[str, Any]:
    """Arguments shared by save and log: code file, artifacts, config, signature, requirements."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from course_utils.models import TRUSTED_TREE_TYPES, pinned_requirements

    if not Path(feature_store_yaml_path).is_file():
        raise FileNotFoundError(f"{feature_store_yaml_path} does not exist; write it with write_feature_store_yaml(repo_dir).")
    if on_unknown not in ("error", "null"):
        raise ValueError(f"on_unknown={on_unknown!r}; use 'error' or 'null'.")
    code = scratch / "feature_lookup_model.py"
    code.write_text(MODEL_CODE)
    churn_model = scratch / "churn_model"
    mlflow.sklearn.save_model(
        pipeline, str(churn_model), skops_trusted_types=TRUSTED_TREE_TYPES, pip_requirements=pinned_requirements(MODEL_REQUIREMENTS)
    )
    return {
        "python_model": str(code),
        "artifacts": {"churn_model": str(churn_model), "feature_store": str(feature_store_yaml_path)},
        "model_config": {"feature_service": feature_service, "on_unknown": on_unknown},
        "signature": ModelSignature(
            inputs=Schema([ColSpec("long", ENTITY_KEY), ColSpec("datetime", EVENT_TIMESTAMP, required=False)]),
            outputs=Schema([ColSpec("long", ENTITY_KEY), ColSpec("double", "churn_probability")]),
        ),
        "pip_requirements": pinned_requirements(MODEL_REQUIREMENTS),
    }


def log_feature_lookup_model(
    pipeline: Pipeline,
    feature_store_yaml_path: Path,
    input_example: pd.DataFrame | None = None,
    feature_service: str = CHURN_SERVICE,
    on_unknown: OnUnknown = "error",
    name: str = "keys_only_model",
    **kwargs: Any,
) -> Any:
    """Log a :class:`FeatureLookupModel` in the active MLflow run; returns the ``ModelInfo``.

    Args:
        pipeline: a fitted churn pipeline (raw feature columns in).
        feature_store_yaml_path: the repo's ``feature_store.yaml`` (absolute paths inside).
        input_example: a few ``customer_id`` values the online store knows (MLflow runs the
            model on them while logging, so they must be known).
        kwargs: passed to ``mlflow.pyfunc.log_model`` (e.g. ``registered_model_name``).
    """
    import tempfile

    import mlflow

    with tempfile.TemporaryDirectory(prefix="feature-lookup-model-") as scratch:
        args = _feature_lookup_model_args(pipeline, feature_store_yaml_path, Path(scratch), feature_service, on_unknown)
        return mlflow.pyfunc.log_model(name=name, input_example=input_example, **args, **kwargs)


def save_feature_lookup_model(
    path: Path,
    pipeline: Pipeline,
    feature_store_yaml_path: Path,
    input_example: pd.DataFrame | None = None,
    feature_service: str = CHURN_SERVICE,
    on_unknown: OnUnknown = "error",
) -> Path:
    """Save a :class:`FeatureLookupModel` to a local folder (no tracking server needed)."""
    import tempfile

    import mlflow

    with tempfile.TemporaryDirectory(prefix="feature-lookup-model-") as scratch:
        args = _feature_lookup_model_args(pipeline, feature_store_yaml_path, Path(scratch), feature_service, on_unknown)
        mlflow.pyfunc.save_model(str(path), input_example=input_example, **args)
    return Path(path)


# ---------------------------------------------------------------------------------------
# For later lessons: a ready store over the shared feature table
# ---------------------------------------------------------------------------------------


def build_feature_store(
    repo_dir: Path,
    delta_path: str,
    project: str = DEFAULT_PROJECT,
    materialize_from: date | str = "2025-12-01",
    materialize_to: date | str = "2025-12-31",
) -> FeatureStore:
    """Export the Delta table, apply the definitions, materialize a period; returns the store."""
    repo_dir = Path(repo_dir)
    export = export_offline_source(delta_path, repo_dir / "data")
    write_feature_store_yaml(repo_dir, project)
    store = open_feature_store(repo_dir, project)
    store.apply(customer_feature_definitions(export).objects)
    materialize_days(store, materialize_from, materialize_to)
    return store


def require_feature_store(lesson: Lesson, project: str = DEFAULT_PROJECT) -> FeatureStore:
    """The lesson's feature store over the shared customer feature table; built once if missing.

    The repo lives in ``<lesson folder>/feature_repo`` with ``feature_store.yaml`` inside, so
    model servers started by the lesson can open it too.
    """
    from course_utils.features import require_customer_features

    repo_dir = lesson.path("feature_repo", "feature_store.yaml").parent
    if (repo_dir / "registry.db").is_file() and (repo_dir / "online_store.db").is_file():
        store = open_feature_store(repo_dir, project)
        if any(s.name == CHURN_SERVICE for s in store.list_feature_services()):
            return store
    return build_feature_store(repo_dir, require_customer_features(lesson), project)
