"""What pyproject.toml cannot say: which folders become which packages.

The metadata (name, dependencies, extras, scripts) is in pyproject.toml. The top-level ``migrations/`` and
``web/`` folders stay where the design puts them and ship inside the package as
``annotate_anyone._resources.migrations`` and ``annotate_anyone._resources.web`` (``package_dir`` below); the
code finds them with importlib.resources (``annotate_anyone._resources``), the same way in a wheel and in an
editable checkout. ``workers/`` is the top-level ``workers`` package (``celery -A workers.celery_app``).
"""

from setuptools import find_packages, setup

RESOURCES = "annotate_anyone._resources"
NO_CACHE = ["__pycache__/*", "*/__pycache__/*", "*.pyc"]

setup(
    packages=[
        *find_packages(include=["annotate_anyone", "annotate_anyone.*", "workers", "workers.*"]),
        f"{RESOURCES}.migrations",
        f"{RESOURCES}.web",
    ],
    package_dir={f"{RESOURCES}.migrations": "migrations", f"{RESOURCES}.web": "web"},
    package_data={
        "annotate_anyone": ["**/*.yaml", "**/*.json", "**/*.html", "**/*.css", "**/*.js", "**/*.ini", "**/*.mako"],
        f"{RESOURCES}.migrations": ["script.py.mako", "versions/*.py"],
        f"{RESOURCES}.web": ["templates/**/*", "static/**/*"],
    },
    exclude_package_data={"": NO_CACHE},
)
