"""Where things live inside a release (object keys and file paths), and the version scheme that names its folder.

Versions follow the calendar scheme ``YYYY.MM.DD.N``: the UTC date of the export and ``N``, the
1-based count of releases made that day (``2026.11.24.1``, ``2026.11.24.2``, ...). They sort by
:func:`version_sort_key`. An explicit version is accepted if it is a safe name (letters, digits,
``.``, ``_``, ``-``; e.g. ``v1.0``), but never reused: a published version is immutable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date

from annotate_anyone.errors import InvalidInput

RELEASES = "releases"
MANIFEST = "manifest.json"
INDEX = "index.parquet"
CHANGES_JSON = "changes.json"
CHANGES_MD = "CHANGES.md"
TOMBSTONES = "tombstones.json"
FORMAT = "annotate-anyone-release/1"

_SAFE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$")
_CALENDAR = re.compile(r"^(\d{4})\.(\d{2})\.(\d{2})\.(\d+)$")


def check_version(version: str) -> str:
    """Return ``version`` if it is a safe release name, else raise :class:`InvalidInput`."""
    if not _SAFE.match(version) or ".." in version:
        raise InvalidInput(f"invalid release version {version!r} (use YYYY.MM.DD.N or letters, digits, . _ -)")
    return version


def next_version(existing: Iterable[str], today: date) -> str:
    """The next calendar version for ``today`` given the versions that already exist."""
    prefix = today.strftime("%Y.%m.%d")
    taken = [int(m.group(4)) for v in existing if (m := _CALENDAR.match(v)) and v.startswith(prefix + ".")]
    return f"{prefix}.{max(taken, default=0) + 1}"


def version_sort_key(version: str) -> tuple[int, tuple[int, ...], str]:
    """Calendar versions in date/counter order, after any other names (which sort by text)."""
    m = _CALENDAR.match(version)
    return (1, tuple(int(g) for g in m.groups()), version) if m else (0, (), version)


def prefix(version: str) -> str:
    return f"{RELEASES}/{check_version(version)}/"


def key(version: str, name: str) -> str:
    """The store key of file ``name`` (relative to the release folder) of ``version``."""
    return prefix(version) + name


def shard_name(index: int) -> str:
    return f"shards/{index:06d}.tar"


def image_path(sha256: str, ext: str) -> str:
    """``path`` in the index: where :func:`~annotate_anyone.release.materialize.materialize` puts the image."""
    return f"images/{sha256[:2]}/{sha256}.{ext}"


def parsing_path(sample_key: str) -> str:
    """``segm_path`` in the index (parsing maps are per person, hence keyed by sample)."""
    return f"parsing/{sample_key[:2]}/{sample_key}.png"


def sample_key(sha256: str, person_index: int | None) -> str:
    """A sample is a person ``{sha256}_p{index}``, or a whole image without a person row ``{sha256}_full``."""
    return f"{sha256}_full" if person_index is None else f"{sha256}_p{person_index}"
