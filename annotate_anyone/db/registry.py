"""Import every module that defines ORM tables, so ``Base.metadata`` is complete (Alembic, tests)."""

from __future__ import annotations

import importlib

MODEL_MODULES = (
    "annotate_anyone.catalog.models",
    "annotate_anyone.jobs.models",
    "annotate_anyone.annotation.models",
    "annotate_anyone.access.models",
    "annotate_anyone.release.models",
    "annotate_anyone.review.models",
)


def load_all_models() -> None:
    for name in MODEL_MODULES:
        importlib.import_module(name)
