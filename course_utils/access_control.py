"""Access control on an MLflow server: MLflow's built-in basic-auth app, its users and permissions.

``mlflow server --app-name basic-auth`` puts every request behind HTTP basic authentication
and every experiment and registered model behind a permission (``READ``, ``USE``, ``EDIT``,
``MANAGE``). This module starts such a server through the course's one seam
(:func:`course_utils.services.start_process`) on 127.0.0.1, with its own backend store,
artifact root and user database under a folder of the (git-ignored) workspace, and gives
small typed helpers to act as one user or another:

- :func:`start_auth_server` generates the admin password, the Flask secret key and the auth
  configuration into that folder (files of mode 0600, never printed, never in the repository)
  and starts (or reuses) the server; it returns an :class:`AuthServer`;
- :meth:`AuthServer.create_user` creates a user with a generated password;
- :meth:`AuthServer.signed_in` yields an ``MlflowClient`` acting as a user;
- :meth:`AuthServer.grant` / :meth:`AuthServer.revoke` change a user's permission on an
  experiment (by id) or a registered model (by name), as the admin or as a user who has
  ``MANAGE`` on it (its creator does);
- :meth:`AuthServer.env` gives the environment a subprocess (or a test) needs to use the
  server as a user: ``MLFLOW_TRACKING_URI``, ``MLFLOW_TRACKING_USERNAME``, ``MLFLOW_TRACKING_PASSWORD``.

MLflow's client reads the credentials from ``os.environ`` at every request, so
:meth:`AuthServer.signed_in` sets the two variables for the ``with`` block only and restores
what was there before (also when the block raises). It never changes the tracking URI. Do
not use two users at once from several threads of one process.

A request without credentials gets MLflow's ``401``; a user without permission gets ``403``,
which MLflow's client raises as ``MlflowException`` with ``error_code == "PERMISSION_DENIED"``
(see :func:`http_status`).

Example:
    >>> server = start_auth_server(lesson.path("auth-server"), settings, fresh=True)  # doctest: +SKIP
    >>> server.create_user("alice")                                                  # doctest: +SKIP
    Credentials(username='alice')
    >>> with server.signed_in("alice") as alice:                                      # doctest: +SKIP
    ...     experiment_id = alice.create_experiment("/team/churn")
    >>> server.grant("bob", EXPERIMENT, experiment_id, "READ", granted_by="alice")    # doctest: +SKIP
    >>> server.stop()                                                                 # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from course_utils.config import LOOPBACK, Settings, redact_uri
from course_utils.errors import CourseError
from course_utils.workspace import claim_workspace, write_private

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.server.auth.client import AuthServiceClient

    from course_utils.services import ServiceStatus

logger = logging.getLogger(__name__)

AUTH_APP = "basic-auth"
DEFAULT_SERVICE = "mlflow-auth"
ADMIN = "admin"
EXPERIMENT = "experiment"  # resource id: the experiment id
REGISTERED_MODEL = "registered_model"  # resource id: the model's name
RESOURCE_TYPES = (EXPERIMENT, REGISTERED_MODEL)
# What a user may be granted on one experiment or model, weakest first (DENY vetoes).
PERMISSIONS = ("READ", "USE", "EDIT", "MANAGE", "DENY")
# What a user gets on a resource nobody granted them anything on. MLflow's own default is READ
# (every user reads everything); the course's default shows a private-by-default server.
DEFAULT_PERMISSION = "NO_PERMISSIONS"
DEFAULT_PERMISSIONS = ("NO_PERMISSIONS", "READ", "USE", "EDIT", "MANAGE")
CONFIG_FILE = "basic_auth.ini"
SECRETS_FILE = "credentials.json"
AUTH_DATABASE = "basic_auth.db"
AUTH_CACHE_TTL_S = 300
USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"


class AccessControlError(CourseError, RuntimeError):
    """The basic-auth server cannot be set up or used: app missing, unknown user, wrong password."""


@dataclass(frozen=True)
class Credentials:
    """A user's name and password; the password is never shown (``repr`` leaves it out)."""

    username: str
    password: str = field(repr=False)

    def env(self) -> dict[str, str]:
        """``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD``, the variables MLflow's client reads."""
        return {USERNAME_ENV: self.username, PASSWORD_ENV: self.password}


def basic_auth_from_env(environ: dict[str, str] | None = None) -> tuple[str, str] | None:
    """The (username, password) MLflow's client sends, for a raw REST call: ``requests.post(..., auth=...)``.

    None when ``MLFLOW_TRACKING_USERNAME`` is not set (the course's own server needs no credentials).

    Example:
        >>> basic_auth_from_env({"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "s3cret"})
        ('alice', 's3cret')
        >>> basic_auth_from_env({}) is None
        True
    """
    env = os.environ if environ is None else environ
    username = env.get(USERNAME_ENV)
    return (username, env.get(PASSWORD_ENV, "")) if username else None


def http_status(error: BaseException) -> int | None:
    """The HTTP status MLflow's client raised ``error`` for (401, 403, ...), or None for other errors.

    Example:
        >>> from mlflow.exceptions import MlflowException
        >>> from mlflow.protos.databricks_pb2 import PERMISSION_DENIED
        >>> http_status(MlflowException("Permission denied", error_code=PERMISSION_DENIED))
        403
    """
    from mlflow.exceptions import MlflowException

    return error.get_http_status_code() if isinstance(error, MlflowException) else None


def require_auth_app() -> None:
    """Raise AccessControlError with the fix when MLflow's basic-auth app cannot run here."""
    import importlib.metadata
    import importlib.util

    apps = [entry.name for entry in importlib.metadata.entry_points(group="mlflow.app")]
    if AUTH_APP not in apps:
        raise AccessControlError(f"This MLflow has no {AUTH_APP!r} server app (it has: {apps or 'none'}); "
                                 "reinstall the course's environment with ./setup.sh.")
    if importlib.util.find_spec("flask_wtf") is None:
        raise AccessControlError(f"MLflow's {AUTH_APP} app needs Flask-WTF, which is not installed in this "
                                 "environment. It comes with `mlflow[auth]`, which requirements.lock pins: rerun "
                                 "./setup.sh (or `.venv/bin/pip install -r requirements.lock`).")


def _read_secrets(folder: Path) -> dict:
    path = folder / SECRETS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as error:
        raise AccessControlError(f"{path} is damaged ({type(error).__name__}); start the server again with "
                                 "start_auth_server(..., fresh=True), which recreates its users.") from None
    return data if isinstance(data, dict) else {}


def _write_secrets(folder: Path, data: dict) -> None:
    write_private(folder / SECRETS_FILE, json.dumps(data, indent=2, sort_keys=True))


def write_auth_config(
    folder: Path, admin_password: str, default_permission: str = DEFAULT_PERMISSION, auth_cache_ttl_s: int = AUTH_CACHE_TTL_S
) -> Path:
    """Write the basic-auth app's configuration (``MLFLOW_AUTH_CONFIG_PATH``) into ``folder``, mode 0600.

    It names the user database (``basic_auth.db`` in ``folder``), the admin user and the
    permission users get on resources nobody granted them anything on. MLflow reads
    ``admin_password`` only when it creates the admin, on the first start.

    ``auth_cache_ttl_s``: how long the server remembers a verified (user, password). Without the
    cache every request pays a deliberately slow password hash (~0.1-0.5 s); MLflow's caveat, a
    stale entry on *other* workers after a password change, cannot arise with the one worker the
    course runs. 0 switches it off.
    """
    if default_permission not in DEFAULT_PERMISSIONS:
        raise ValueError(f"default_permission={default_permission!r} is not one of {', '.join(DEFAULT_PERMISSIONS)}.")
    path = Path(folder) / CONFIG_FILE
    write_private(path, "\n".join([
        "[mlflow]",
        f"default_permission = {default_permission}",
        f"database_uri = sqlite:///{Path(folder).resolve() / AUTH_DATABASE}",
        f"admin_username = {ADMIN}",
        f"admin_password = {admin_password}",
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
        f"auth_cache_ttl_seconds = {int(auth_cache_ttl_s)}",
        "",
    ]))
    return path


def auth_server_command(port: int, folder: Path) -> list[str]:
    """``mlflow server --app-name basic-auth`` on 127.0.0.1:port, its stores under ``folder``."""
    from course_utils.registry import registry_server_command

    return [*registry_server_command(port, Path(folder)), "--app-name", AUTH_APP]


def auth_server_env(folder: Path, flask_secret_key: str) -> dict[str, str]:
    """The server's environment: the course's defaults, the auth configuration and the Flask secret key.

    The app signs its sign-up form with ``MLFLOW_FLASK_SERVER_SECRET_KEY`` (CSRF protection) and
    refuses to start without it; it only comes from the environment.
    """
    from course_utils.services import tracking_server_env

    return {
        **tracking_server_env(),
        "MLFLOW_AUTH_CONFIG_PATH": str(Path(folder).resolve() / CONFIG_FILE),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": flask_secret_key,
    }


@contextmanager
def _credentials_in_env(credentials: Credentials) -> Iterator[None]:
    """Set MLflow's two credential variables for the block, then restore what was there."""
    saved = {key: os.environ.get(key) for key in (USERNAME_ENV, PASSWORD_ENV)}
    os.environ.update(credentials.env())
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass(frozen=True)
class AuthServer:
    """A running MLflow server with the basic-auth app, and the generated credentials of its users."""

    name: str
    url: str
    port: int
    folder: Path
    settings: Settings = field(repr=False)

    # --- where things live -----------------------------------------------------------------
    @property
    def secrets_file(self) -> Path:
        """The 0600 JSON file with every user's generated password (and the Flask secret key)."""
        return self.folder / SECRETS_FILE

    @property
    def config_file(self) -> Path:
        """The 0600 auth configuration the server reads (``MLFLOW_AUTH_CONFIG_PATH``)."""
        return self.folder / CONFIG_FILE

    @property
    def auth_database(self) -> Path:
        """The SQLite database of users, password hashes and permissions."""
        return self.folder / AUTH_DATABASE

    # --- users ------------------------------------------------------------------------------
    def users(self) -> list[str]:
        """The users whose generated passwords this folder holds (the admin first)."""
        passwords = _read_secrets(self.folder).get("passwords", {})
        return sorted(passwords, key=lambda name: (name != ADMIN, name))

    def credentials(self, username: str) -> Credentials:
        """The generated credentials of ``username``.

        Raises:
            AccessControlError: no password was generated for that user here.
        """
        passwords = _read_secrets(self.folder).get("passwords", {})
        if username not in passwords:
            raise AccessControlError(f"No user {username!r} was created on {self.name} (users: {', '.join(self.users())}); "
                                     f"create it with server.create_user({username!r}).")
        return Credentials(username, passwords[username])

    @property
    def admin(self) -> Credentials:
        """The admin's credentials (the admin passes every permission check)."""
        return self.credentials(ADMIN)

    def create_user(self, username: str) -> Credentials:
        """Create ``username`` with a generated password (kept in :attr:`secrets_file`); reuse an existing one.

        Raises:
            AccessControlError: the user exists on the server but its password is not in this folder.
        """
        from mlflow.exceptions import MlflowException

        if not username or not username.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ValueError(f"username={username!r} should be letters, digits, '-', '_' or '.', e.g. 'alice'.")
        data = _read_secrets(self.folder)
        passwords = data.setdefault("passwords", {})
        if username in passwords:
            return Credentials(username, passwords[username])
        password = secrets.token_urlsafe(24)  # 32 characters; MLflow asks for at least 12
        with self.admin_client() as admin:
            try:
                admin.create_user(username, password)
            except MlflowException as error:
                if error.error_code == "RESOURCE_ALREADY_EXISTS":
                    raise AccessControlError(
                        f"User {username!r} already exists on {self.name}, but its password is not in {self.secrets_file}; "
                        "start the server with start_auth_server(..., fresh=True) to recreate its users.") from None
                raise
        passwords[username] = password
        _write_secrets(self.folder, data)
        return Credentials(username, password)

    def env(self, username: str) -> dict[str, str]:
        """What a subprocess or a test needs to use this server as ``username``.

        ``MLFLOW_TRACKING_URI`` plus the two credential variables; e.g. pass it as ``env=`` to
        ``subprocess.run``, or to ``monkeypatch.setenv`` in a test.
        """
        return {"MLFLOW_TRACKING_URI": self.url, **self.credentials(username).env()}

    def check_credentials(self, credentials: Credentials) -> None:
        """Raise AccessControlError (naming the user, never the password) when the server rejects them."""
        import requests

        session = requests.Session()
        session.trust_env = False  # loopback never goes through a proxy
        try:
            response = session.get(f"{self.url}/api/2.0/mlflow/users/current",
                                   auth=(credentials.username, credentials.password), timeout=30)
        except requests.RequestException as error:
            raise AccessControlError(f"The MLflow server {self.name} at {redact_uri(self.url)} is not answering "
                                     f"({type(error).__name__}); start it with start_auth_server(...).") from None
        if response.status_code == 401:
            raise AccessControlError(
                f"The MLflow server at {redact_uri(self.url)} rejected the password of user {credentials.username!r} "
                f"(HTTP 401). Use server.credentials({credentials.username!r}), generated into {self.secrets_file}; if "
                "the server's user database was recreated since, start it with start_auth_server(..., fresh=True).")
        response.raise_for_status()

    @contextmanager
    def signed_in(self, user: str | Credentials) -> Iterator[MlflowClient]:
        """An ``MlflowClient`` (tracking and registry) acting as ``user`` inside the ``with`` block.

        ``user`` is a name created with :meth:`create_user` (or ``"admin"``), or explicit
        :class:`Credentials`. The credentials are checked first (a wrong password raises
        AccessControlError), then set in ``os.environ`` for the block only; use the client
        inside the block. MLflow's own 403 (``PERMISSION_DENIED``) passes through unchanged.
        """
        from mlflow import MlflowClient

        from course_utils.tracking import skip_unused_request_header_providers

        credentials = user if isinstance(user, Credentials) else self.credentials(user)
        skip_unused_request_header_providers()
        self.check_credentials(credentials)
        with _credentials_in_env(credentials):
            yield MlflowClient(tracking_uri=self.url, registry_uri=self.url)

    @contextmanager
    def admin_client(self, user: str | Credentials = ADMIN) -> Iterator[AuthServiceClient]:
        """MLflow's ``AuthServiceClient`` acting as ``user`` (default the admin) inside the ``with`` block."""
        from course_utils.tracking import skip_unused_request_header_providers

        with warnings.catch_warnings():
            # Importing the client loads the auth app, whose Starlette import warns of a
            # deprecation inside MLflow: nothing a learner can act on.
            warnings.filterwarnings("ignore", message="starlette.middleware.wsgi is deprecated")
            from mlflow.server.auth.client import AuthServiceClient

        credentials = user if isinstance(user, Credentials) else self.credentials(user)
        skip_unused_request_header_providers()  # ~5-9 s saved at this process's first MLflow request
        with _credentials_in_env(credentials):
            yield AuthServiceClient(self.url)

    # --- permissions ------------------------------------------------------------------------
    def grant(self, username: str, resource_type: str, resource_id: str, permission: str, *, granted_by: str = ADMIN) -> None:
        """Give ``username`` ``permission`` on an experiment (by id) or registered model (by name).

        ``granted_by`` must be the admin or a user with ``MANAGE`` on the resource (its creator
        has it); anyone else gets MLflow's 403. A permission the user already has there is replaced.
        """
        from mlflow.exceptions import MlflowException

        _validate_grant(resource_type, permission)
        with self.admin_client(granted_by) as client:
            try:
                client.grant_user_permission(username, resource_type, str(resource_id), permission)
            except MlflowException as error:
                if error.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                # MLflow grants once per (user, resource); changing the level is revoke + grant.
                client.revoke_user_permission(username, resource_type, str(resource_id))
                client.grant_user_permission(username, resource_type, str(resource_id), permission)

    def revoke(self, username: str, resource_type: str, resource_id: str, *, revoked_by: str = ADMIN) -> None:
        """Remove what ``username`` was granted on the resource (the default permission applies again)."""
        _validate_grant(resource_type, "READ")
        with self.admin_client(revoked_by) as client:
            client.revoke_user_permission(username, resource_type, str(resource_id))

    def permission(self, username: str, resource_type: str, resource_id: str) -> str:
        """The permission MLflow resolves for ``username`` on the resource (asked as the admin), e.g. ``"READ"``."""
        _validate_grant(resource_type, "READ")
        with self.admin_client() as client:
            return client.get_user_permission(username, resource_type, str(resource_id)).permission

    # --- lifecycle --------------------------------------------------------------------------
    def status(self) -> ServiceStatus:
        """The server's status from the seam (pid, url, log)."""
        from course_utils.services import status

        return status(self.name, self.settings)

    def stop(self) -> bool:
        """Stop the server through the seam; True if something was stopped. Its folder is kept."""
        from course_utils.services import stop

        return stop(self.name, self.settings)


def _validate_grant(resource_type: str, permission: str) -> None:
    if resource_type not in RESOURCE_TYPES:
        raise ValueError(f"resource_type={resource_type!r} is not one of {', '.join(RESOURCE_TYPES)} "
                         "(an experiment by its id, a registered model by its name).")
    if permission not in PERMISSIONS:
        raise ValueError(f"permission={permission!r} is not one of {', '.join(PERMISSIONS)}.")


def _inside_workspace(folder: Path, settings: Settings) -> Path:
    folder = Path(folder).expanduser().resolve()
    if not folder.is_relative_to(settings.workspace):
        raise AccessControlError(f"The auth server's folder {folder} is outside the workspace {settings.workspace}; "
                                 "its generated passwords must stay in the git-ignored workspace: use e.g. "
                                 "lesson.path('auth-server') or settings.workspace / 'auth-server'.")
    return folder


def _running_from(name: str, folder: Path, settings: Settings) -> tuple[str, int] | None:
    """(url, port) of service ``name`` when it runs with its stores in ``folder``."""
    from course_utils.services import _read_record, status

    current = status(name, settings)
    record = _read_record(settings, name) or {}
    if current.running and current.port and str(folder / "mlflow.db") in " ".join(record.get("command", [])):
        return str(current.url), int(current.port)
    return None


def start_auth_server(
    folder: Path,
    settings: Settings,
    *,
    name: str = DEFAULT_SERVICE,
    port: int | None = None,
    default_permission: str = DEFAULT_PERMISSION,
    fresh: bool = False,
    env: dict[str, str] | None = None,
    stop_at_exit: bool = False,
) -> AuthServer:
    """Start an MLflow server with the basic-auth app, its stores and credentials in ``folder``.

    ``folder`` (inside the workspace) gets the backend store ``mlflow.db``, ``artifacts/``, the
    user database, the auth configuration and the generated secrets (files of mode 0600). A
    server already running from ``folder`` under ``name`` is reused, as are the users of an
    earlier start.

    Args:
        folder: where its state lives, e.g. ``lesson.path("auth-server")``.
        settings: the course settings (workspace, pid files).
        name: its service name for the seam (``course services status`` lists it).
        port: a port on 127.0.0.1; default a free one.
        default_permission: what users get on resources nobody granted them anything on
            (read on the first start: MLflow stores nothing of it, the file is rewritten each start).
        fresh: stop it and delete ``folder`` first (its users, runs and models), for a clean lesson.
        env: extra server environment (e.g. :func:`course_utils.registry.webhook_server_env`).
        stop_at_exit: stop it when this Python process exits (a notebook kernel).

    Raises:
        AccessControlError: the app is missing, ``folder`` is outside the workspace, or its
            user database exists without the generated admin password.
        ServiceError, PortInUseError: from :func:`course_utils.services.start_process`.
    """
    from course_utils.ports import free_port
    from course_utils.services import start_process, stop

    require_auth_app()
    claim_workspace(settings)  # before anything is written into it
    folder = _inside_workspace(folder, settings)
    if fresh:
        stop(name, settings)
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = _read_secrets(folder)
    if (folder / AUTH_DATABASE).exists() and ADMIN not in data.get("passwords", {}):
        raise AccessControlError(f"{folder / AUTH_DATABASE} exists but the admin password generated for it is not in "
                                 f"{folder / SECRETS_FILE}; start with start_auth_server(..., fresh=True), which deletes "
                                 "its users, runs and models and starts over.")
    if not data.get("passwords", {}).get(ADMIN) or not data.get("flask_secret_key"):
        data.setdefault("passwords", {})[ADMIN] = secrets.token_urlsafe(24)
        data["flask_secret_key"] = secrets.token_hex(32)
        _write_secrets(folder, data)
    write_auth_config(folder, data["passwords"][ADMIN], default_permission)

    running = _running_from(name, folder, settings)
    if running is None:
        stop(name, settings)  # a leftover of this name serving another folder, or a crashed one
        port = port or free_port()
        url = f"http://{LOOPBACK}:{port}"
        start_process(name, auth_server_command(port, folder), port, url, settings,
                      env={**auth_server_env(folder, data["flask_secret_key"]), **(env or {})},
                      ready_path="/health",  # unprotected: it answers before anyone signs in
                      port_setting="start_auth_server(..., port=None) picks a free one",
                      stop_at_exit=stop_at_exit)
    else:
        url, port = running
        if stop_at_exit:
            from course_utils.services import stop_at_exit as stop_service_at_exit

            stop_service_at_exit(name, settings)
    server = AuthServer(name=name, url=url, port=port, folder=folder, settings=settings)
    server.check_credentials(server.admin)
    return server
