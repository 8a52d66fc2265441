"""Database: engine/session (base.py), ORM models (models.py), migrations (migrate.py)."""
