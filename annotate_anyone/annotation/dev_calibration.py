"""Round-0 calibration of the packaged labelers, fitted on the labelled dev set and shipped as data.

Before any human answer exists, a labeler's raw confidence is not a probability. ``bench/labels.py
--fit-calibration`` runs the labelers on the hand-labelled dev set (``tests/data/labels/dev_set.json``),
fits one calibrator per (model version, category) and measures it out of fold; the result ships in
``calibration_offline.json`` next to this module. The annotation service applies it until human
answers recalibrate the category, and lets its dev-set accuracy stand in for the gold-set gate until
the gold set is big enough.

A category is *covered* offline when a packaged labeler answers it with such a calibration; every
other category "needs a model or a person" (a local VLM or parser checkpoint, the learned heads, or
an annotator), and routing says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from annotate_anyone.annotation.taxonomy import Taxonomy
from annotate_anyone.errors import InvalidInput

CALIBRATION_FILE = Path(__file__).with_name("calibration_offline.json")
NEEDS_PERSON = "needs a model or a person"


@dataclass(frozen=True, slots=True)
class DevCalibration:
    """One category's calibration for one model version, fitted on the dev set (read like a
    ``CalibrationRecord``: ``params``, ``n``, ``accuracy``, ``threshold``)."""

    model_version: str
    category: str
    method: str
    params: dict[str, Any]
    n: int
    accuracy: float
    ece_before: float
    ece: float  # out of fold (5-fold), the mean over several random splits (ece_splits)
    threshold: float
    confident: int = 0  # dev-set answers at calibrated confidence >= 0.9 (out of fold)
    confident_wrong: int = 0
    fitted_with: dict[str, str] = field(default_factory=dict)  # e.g. the parser version
    ece_in_sample: float = 0.0  # fitted and measured on the same items (optimistic)
    ece_splits: list[float] = field(default_factory=list)  # out-of-fold ECE of several random 5-fold splits
    confident_in_sample: int = 0
    confident_wrong_in_sample: int = 0
    confident_pooled: int = 0  # answers at >= 0.9 out of fold, summed over the ece_splits
    confident_wrong_pooled: int = 0
    ece_chance: float = 0.0  # mean ECE of a perfectly calibrated labeler with the same confidences and n


def parse_calibrations(data: Mapping[str, Any]) -> dict[tuple[str, str], DevCalibration]:
    """Entries of a calibration file keyed by (model version, category id)."""
    out = {}
    try:
        for entry in data["calibrations"]:
            cal = DevCalibration(**entry)
            out[(cal.model_version, cal.category)] = cal
    except (KeyError, TypeError) as exc:
        raise InvalidInput(f"not a dev-set calibration file: {exc}") from exc
    return out


@lru_cache(maxsize=4)
def dev_calibrations(path: str | None = None) -> dict[tuple[str, str], DevCalibration]:
    """The shipped calibrations (empty when the file is absent)."""
    file = Path(path) if path else CALIBRATION_FILE
    if not file.exists():
        return {}
    return parse_calibrations(json.loads(file.read_text()))


def write_calibrations(path: Path, calibrations: list[DevCalibration], about: Mapping[str, Any]) -> None:
    """Write a calibration file (sorted, stable, one entry per (model version, category))."""
    rows = sorted((asdict(c) for c in calibrations), key=lambda r: (r["model_version"], r["category"]))
    path.write_text(json.dumps({**about, "calibrations": rows}, indent=1) + "\n")


def coverage(
    taxonomy: Taxonomy, model_versions: Mapping[str, str], calibrations: Mapping[tuple[str, str], DevCalibration]
) -> dict[str, DevCalibration | None]:
    """Per category id: the calibration of the labeler that answers it offline, or ``None`` (needs a
    model or a person). ``model_versions`` maps a category to the version of its offline labeler."""
    out: dict[str, DevCalibration | None] = {}
    for cat in taxonomy.categories():
        version = model_versions.get(cat.id)
        out[cat.id] = calibrations.get((version, cat.id)) if version else None
    return out


def packaged_versions() -> frozenset[str]:
    """Model versions of the labelers that ship in the package (the default engine's)."""
    from annotate_anyone.annotation.labelers.demographics import MODEL_VERSION
    from annotate_anyone.annotation.labelers.offline import OfflineLabeler

    return frozenset({OfflineLabeler.model_version, MODEL_VERSION})


def coverage_rows(taxonomy: Taxonomy | None = None) -> list[dict[str, Any]]:
    """Every category with how it is answered before anyone labels: by a packaged labeler with a
    dev-set calibration (its dev accuracy and out-of-fold ECE), or "needs a model or a person"."""
    from annotate_anyone.annotation.taxonomy import load_taxonomy

    taxonomy = taxonomy or load_taxonomy()
    versions = packaged_versions()
    by_cat = {cat: cal for (version, cat), cal in dev_calibrations().items() if version in versions}
    rows = []
    for cat in taxonomy.categories():
        cal = by_cat.get(cat.id)
        how = (
            f"offline ({cal.model_version}), dev set n={cal.n}, accuracy {cal.accuracy:.0%}, ECE {cal.ece:.2f}"
            if cal is not None
            else NEEDS_PERSON
        )
        rows.append({"category": cat.id, "covered": cal is not None, "how": how})
    return rows
