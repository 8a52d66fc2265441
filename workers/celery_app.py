"""The worker's Celery app, configured from the one Settings class."""

from annotate_anyone.executors.celery import make_celery
from annotate_anyone.settings import get_settings

app = make_celery(get_settings())
