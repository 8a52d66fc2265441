"""Celery entry points: ``celery -A workers.celery_app worker`` (or ``annotate-anyone worker``)."""
