"""JupyterLab for the course: started on 127.0.0.1 through the services seam, offline."""

from __future__ import annotations

import os
import sys

from course_utils.config import LOOPBACK, Settings

JUPYTERLAB = "jupyterlab"


def jupyterlab_command(settings: Settings, port: int) -> list[str]:
    """The ``jupyter lab`` command line: loopback only, opened on the repository, no online checks."""
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", f"--ServerApp.ip={LOOPBACK}", f"--ServerApp.port={port}",
        f"--ServerApp.root_dir={settings.root}",
        # Offline: no extension listing from PyPI, no update or news checks.
        "--LabApp.extension_manager=readonly", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if os.geteuid() == 0:
        command.append("--ServerApp.allow_root=True")  # containers and CI machines run as root
    return command


def start_jupyterlab(settings: Settings, port: int, tracking_uri: str) -> str:
    """Start JupyterLab (no-op when it already runs) and return the URL to open, token included."""
    from course_utils.services import start_process

    token = os.environ.get("JUPYTER_TOKEN") or os.urandom(16).hex()
    url = f"http://{LOOPBACK}:{port}/lab?token={token}"
    # The token goes through the environment (Jupyter reads JUPYTER_TOKEN), not the command line `ps` shows.
    start_process(JUPYTERLAB, jupyterlab_command(settings, port), port, url, settings,
                  env={"MLFLOW_TRACKING_URI": tracking_uri, "JUPYTER_TOKEN": token})
    return url
