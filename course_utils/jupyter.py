"""What `course lab` opens: JupyterLab on the course overview with the course kernel, offline; the MLflow UI link.

JupyterLab's front-end settings (no news, no update checks) are in ``jupyter/lab-overrides.json``;
``setup.sh`` installs them into the virtual environment (see :data:`LAB_OVERRIDES_TARGET`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from course_utils.config import KERNEL_NAME, LOOPBACK, Settings

JUPYTERLAB = "jupyterlab"
# The notebook a learner starts with, relative to the repository root.
COURSE_OVERVIEW = "notebooks/00_intro/00_course_overview.ipynb"
LAB_OVERRIDES = Path("jupyter") / "lab-overrides.json"
# JupyterLab merges every file of <prefix>/share/jupyter/lab/settings/overrides.d/ into its defaults;
# a file of our own there leaves a learner's own overrides.json alone.
LAB_OVERRIDES_TARGET = Path("share") / "jupyter" / "lab" / "settings" / "overrides.d" / f"{KERNEL_NAME}.json"


def jupyterlab_command(settings: Settings, port: int) -> list[str]:
    """The ``jupyter lab`` command line: loopback only, on the course overview, only the course kernel, offline."""
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", f"--ServerApp.ip={LOOPBACK}", f"--ServerApp.port={port}",
        f"--ServerApp.root_dir={settings.root}",
        f"--LabApp.default_url=/lab/tree/{COURSE_OVERVIEW}",
        # Only the course's kernel: the bare "Python 3 (ipykernel)" (and any kernel of the learner's own)
        # lacks the course's packages, and picking it makes every import fail.
        f"--KernelSpecManager.allowed_kernelspecs={KERNEL_NAME}",
        f"--MappingKernelManager.default_kernel_name={KERNEL_NAME}",
        # Offline: no extension listing from PyPI, no update checks (news are off in lab-overrides.json).
        "--LabApp.extension_manager=readonly", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if os.geteuid() == 0:
        command.append("--ServerApp.allow_root=True")  # containers and CI machines run as root
    return command


def jupyterlab_url(port: int, token: str) -> str:
    """The address that opens JupyterLab on the course overview notebook, token included."""
    return f"http://{LOOPBACK}:{port}/lab/tree/{COURSE_OVERVIEW}?token={token}"


def start_jupyterlab(settings: Settings, port: int, tracking_uri: str) -> str:
    """Start JupyterLab (no-op when it already runs) and return the URL to open, token included.

    A JupyterLab that already runs keeps its port and token: the URL is the one recorded when it started.
    """
    from course_utils.services import start_process

    token = os.environ.get("JUPYTER_TOKEN") or os.urandom(16).hex()
    url = jupyterlab_url(port, token)
    # The token goes through the environment (Jupyter reads JUPYTER_TOKEN), not the command line `ps` shows.
    state = start_process(JUPYTERLAB, jupyterlab_command(settings, port), port, url, settings,
                          env={"MLFLOW_TRACKING_URI": tracking_uri, "JUPYTER_TOKEN": token},
                          port_setting=f"`course lab --port {port + 1}`")
    return state.url or url
