"""Database: engine/session (base.py), migrations (migrate.py) and the list of table modules (registry.py);
the tables themselves live in their domain packages (``catalog``, ``jobs``, ``access``, ``review``, ...)."""
