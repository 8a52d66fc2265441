"""Alembic migrations (shipped in the package as annotate_anyone._resources.migrations)."""
