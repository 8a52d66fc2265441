"""The Alembic chain upgrades and downgrades cleanly on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from annotate_anyone.db import migrate
from annotate_anyone.db.base import Base
from annotate_anyone.db.registry import load_all_models

load_all_models()

pytestmark = pytest.mark.services


def _roundtrip(url: str) -> None:
    migrate.upgrade(url)
    head = migrate.current(url)
    assert head is not None
    engine = create_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert set(Base.metadata.tables) <= tables  # every ORM table exists after upgrade
        for name, table in Base.metadata.tables.items():
            columns = {c["name"] for c in inspect(engine).get_columns(name)}
            assert {c.name for c in table.columns} <= columns, name
    finally:
        engine.dispose()
    migrate.downgrade(url, "base")
    assert migrate.current(url) is None
    engine = create_engine(url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    migrate.upgrade(url)
    assert migrate.current(url) == head


def test_sqlite_upgrade_downgrade(tmp_path: Path) -> None:
    _roundtrip(f"sqlite:///{tmp_path / 'm.db'}")


def test_postgres_upgrade_downgrade(pg_url: str) -> None:
    _roundtrip(pg_url)


def test_migrations_match_the_models(pg_url: str) -> None:
    """Autogenerate finds nothing to do after the chain: the models and migrations name the same tables,
    columns and indexes (a model change without its migration fails here)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    migrate.upgrade(pg_url)
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": False})
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    structural = [d for d in diff if not (isinstance(d, list) or d[0].startswith("modify_"))]
    assert structural == [], structural
