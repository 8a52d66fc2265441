"""Folders that sit at the top of the repository and ship inside the package.

``migrations/`` (Alembic) and ``web/`` (the dashboard's templates and static files) are mapped by setup.py to
``annotate_anyone._resources.migrations`` and ``annotate_anyone._resources.web``; :func:`resource_dir` finds
them through importlib.resources, so an installed wheel and an editable checkout read the same files.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

NAMES = ("migrations", "web")


def resource_dir(name: str) -> Path:
    """The directory of the packaged folder ``name`` (one of :data:`NAMES`) on the file system.

    Alembic, Jinja2 and Starlette's StaticFiles read directories, so the package must be installed as files
    (any pip install is), not imported from a zip archive."""
    if name not in NAMES:
        raise ValueError(f"unknown resource folder {name!r}; known: {', '.join(NAMES)}")
    root = files(f"{__name__}.{name}")
    if not isinstance(root, Path) or not root.is_dir():
        raise FileNotFoundError(
            f"the packaged folder {name!r} is not a directory on disk ({root}): reinstall annotate-anyone"
        )
    return root
