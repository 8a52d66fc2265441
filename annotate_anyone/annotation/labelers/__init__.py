"""Attribute labelers: per attribute a value, a distribution over the allowed values and a model version."""

from annotate_anyone.annotation.labelers.base import Labeler, PersonContext, Prediction

__all__ = ["Labeler", "PersonContext", "Prediction"]
