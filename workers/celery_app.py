"""The worker's Celery app, configured from the one Settings class."""

from typing import Any

from celery.signals import setup_logging

from annotate_anyone.executors.celery import make_celery
from annotate_anyone.logs import configure_from_settings
from annotate_anyone.settings import get_settings

app = make_celery(get_settings())


@setup_logging.connect
def _logging(**_: Any) -> None:
    """Workers and beat log through annotate_anyone/logs.py (JSON lines); Celery leaves the root logger alone."""
    configure_from_settings(get_settings())
