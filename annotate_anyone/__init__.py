"""Annotate Anyone: a data flywheel for human-centric image datasets.

Importing the package is cheap: heavy dependencies (torch, transformers, mediapipe) are imported
only inside the stages and backends that need them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("annotate-anyone")  # from the installed distribution's metadata (pyproject.toml)
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
