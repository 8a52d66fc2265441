"""Initialising a home: directories, database schema, generated secrets (embedded)."""

from __future__ import annotations

from annotate_anyone.db import migrate
from annotate_anyone.settings import Settings
from annotate_anyone.storage import open_store


def init_home(settings: Settings) -> dict[str, str]:
    """Create the home directory (embedded), migrate the database to head, open the object store, and
    generate the embedded profile's secrets (once, mode 0600; see access/home_secrets.py)."""
    from annotate_anyone.access.home_secrets import ensure_secrets

    if settings.database_url is None or settings.storage_url is None:
        settings.resolved_home.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.db_url)
    store = open_store(settings=settings)
    info = {"home": str(settings.resolved_home), "database": _redact(settings.db_url), "storage": store.url}
    if secrets_file := ensure_secrets(settings):
        info["secrets"] = str(secrets_file)
    return info


def _redact(url: str) -> str:
    """Hide a password in a database URL."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
