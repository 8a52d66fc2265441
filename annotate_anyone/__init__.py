"""Annotate Anyone: a data flywheel for human-centric image datasets.

Importing the package is cheap: heavy dependencies (torch, transformers, mediapipe) are imported
only inside the stages and backends that need them.
"""

__version__ = "0.1.0"
