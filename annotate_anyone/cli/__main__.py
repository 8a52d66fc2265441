"""``python -m annotate_anyone.cli``."""

from annotate_anyone.cli import app

app()
