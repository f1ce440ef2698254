"""The workspace is the course's own: marked when the course creates it, reset only in what it created.

``COURSE_WORKSPACE`` may point anywhere (a home folder, shared storage), so the course never
assumes a folder is its own: :func:`claim_workspace` marks a new or empty folder with
``.course-workspace``, refuses one that already holds other files, and :func:`reset_workspace`
deletes only :data:`WORKSPACE_ENTRIES` of a marked workspace.

Example:
    >>> from course_utils.config import load_settings
    >>> claim_workspace(load_settings()).name      # doctest: +SKIP
    'workspace'
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from course_utils.config import Settings
from course_utils.errors import CourseError

WORKSPACE_MARKER = ".course-workspace"
# Everything the course creates at the top of its workspace; a reset deletes these and nothing else.
WORKSPACE_ENTRIES = ("run", "mlflow", "results", "lessons", "shared", "derby", "spark-warehouse", WORKSPACE_MARKER)


class WorkspaceError(CourseError, RuntimeError):
    """The workspace folder is not the course's to write into or reset."""


def write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only (0600), atomically: a reader sees the old or the new file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply to a file that already existed
    tmp.replace(path)


def claim_workspace(settings: Settings) -> Path:
    """Create the workspace if needed and mark it as the course's; refuse a folder that is someone else's.

    A new or empty folder, and the repository's own ``workspace/``, become the course's. A folder
    that already holds other files and no marker is left alone: the course never writes into (or
    later resets) a home folder or shared storage it did not create.
    """
    workspace, marker = settings.workspace, settings.workspace / WORKSPACE_MARKER
    if marker.is_file():
        return workspace
    if workspace.is_dir() and any(workspace.iterdir()) and workspace != settings.root / "workspace":
        raise WorkspaceError(
            f"COURSE_WORKSPACE={str(workspace)!r} already holds files and is not a course workspace (no "
            f"{WORKSPACE_MARKER} file), so the course will not write into it or reset it. Point COURSE_WORKSPACE at "
            f"a new or empty folder; if it is a course workspace from an earlier version, create {marker} yourself."
        )
    workspace.mkdir(parents=True, exist_ok=True)
    marker.write_text("This folder is a workspace of the ML-in-Production course; `course reset` may delete "
                      f"only these entries in it: {', '.join(WORKSPACE_ENTRIES)}.\n")
    return workspace


def reset_workspace(settings: Settings) -> list[str]:
    """Delete the course's entries of its workspace; returns the names of other entries, which are kept.

    Stop the services first (:func:`course_utils.services.stop_all`): their files are in ``run/``.

    Raises:
        WorkspaceError: the folder is not marked as the course's.
    """
    workspace = settings.workspace
    if not workspace.exists():
        return []
    if not (workspace / WORKSPACE_MARKER).is_file() and workspace != settings.root / "workspace":
        raise WorkspaceError(
            f"COURSE_WORKSPACE={str(workspace)!r} is not a course workspace (no {WORKSPACE_MARKER} file), so reset "
            "deletes nothing in it. Check COURSE_WORKSPACE points where you ran the course; delete the folder yourself "
            "if you are sure."
        )
    for name in WORKSPACE_ENTRIES:
        entry = workspace / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif entry.exists() or entry.is_symlink():
            entry.unlink()
    kept = sorted(path.name for path in workspace.iterdir())
    if not kept:
        workspace.rmdir()
    return kept
