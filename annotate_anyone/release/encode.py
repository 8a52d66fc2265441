"""Turn one database sample into its shard members (image, parsing map, JSON) and its index row.

Every exported row is one CosmicMan's loader can train on: a person with a shot type and a parsing
map (a palette PNG of ATR ids 0..17), ``aa_text``/``aa_ids`` lists of 20. A sample that cannot be
one is left out with a reason (:class:`LeftOut`), which the export counts in the manifest.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

from annotate_anyone.annotation.parsing.base import decode_map, encode_map, is_atr_png
from annotate_anyone.errors import InvalidInput
from annotate_anyone.release import paths
from annotate_anyone.release.samples import Sample
from annotate_anyone.release.training_format import TrainingFormat
from annotate_anyone.storage.base import ObjectStore

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NO_PERSON = "export:no_person"  # a whole image: no shot type, no parsing map
NO_SHOT_TYPE = "export:no_shot_type"
NO_PARSING = "export:no_parsing"
BAD_PARSING = "export:bad_parsing"  # unreadable, or ids outside 0..17

NPY_MAGIC = b"\x93NUMPY"
_EXT = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp"}
JPEG_QUALITY = 95


class LeftOut(Exception):  # noqa: N818 - an outcome, not a failure
    """The sample is not exported; ``reason`` is counted in the manifest (``counts.left_out``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ImageMode:
    """``original`` keeps the original bytes; ``resize:N`` downsizes so the longer side is at most N (JPEG)."""

    max_side: int | None = None

    @classmethod
    def parse(cls, text: str) -> ImageMode:
        if text == "original":
            return cls()
        name, _, size = text.partition(":")
        if name == "resize" and size.isdigit() and int(size) >= 16:
            return cls(int(size))
        raise InvalidInput(f"image_mode must be 'original' or 'resize:N' (N >= 16), not {text!r}")

    def describe(self) -> str:
        return "original" if self.max_side is None else f"resize:{self.max_side}"


def _sniff(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == PNG_MAGIC:
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _png(array: Any) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=False, compress_level=3)
    return buf.getvalue()


@dataclass(frozen=True, slots=True)
class Fetched:
    image: bytes
    parsing: bytes | None


class SampleEncoder:
    """Reads originals and parsing maps from the store and encodes samples (caches the last image)."""

    def __init__(self, store: ObjectStore, mode: ImageMode, fmt: TrainingFormat) -> None:
        self.store = store
        self.mode = mode
        self.fmt = fmt
        self._cached: tuple[str, bytes, str, int, int] | None = None  # sha, bytes, ext, width, height

    def fetch(self, sample: Sample) -> Fetched:
        """Read the sample's original and parsing map (I/O only: safe to run ahead in another thread)."""
        if sample.person is None:  # left out (no person): nothing to read
            return Fetched(b"", None)
        parsing_key = sample.person.get("parsing_key")
        return Fetched(
            self.store.get_bytes(sample.storage_key), self.store.get_bytes(parsing_key) if parsing_key else None
        )

    def _image(self, sample: Sample, data: bytes) -> tuple[bytes, str, int, int]:
        if self._cached is not None and self._cached[0] == sample.sha256:
            return self._cached[1:]
        fmt = (sample.format or "").upper() or _sniff(data)
        width, height = sample.width, sample.height
        if self.mode.max_side is not None and max(width, height) > self.mode.max_side:
            data, width, height = self._resized(data)
            ext = "jpg"
        elif fmt in _EXT and _sniff(data) is not None:
            ext = _EXT[fmt]
        else:  # an exotic original format: store it losslessly as PNG
            import numpy as np
            from PIL import Image

            with Image.open(io.BytesIO(data)) as img:
                data, ext = _png(np.asarray(img.convert("RGB"))), "png"
        self._cached = (sample.sha256, data, ext, width, height)
        return data, ext, width, height

    def _resized(self, data: bytes) -> tuple[bytes, int, int]:
        from PIL import Image

        assert self.mode.max_side is not None
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("RGB")
            img.thumbnail((self.mode.max_side, self.mode.max_side), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=JPEG_QUALITY)
            return buf.getvalue(), img.width, img.height

    def _parsing(self, data: bytes, size: tuple[int, int] | None) -> bytes:
        """The parsing map as a palette PNG (see :func:`palette_parsing`), nearest-resized to ``size``."""
        try:
            return palette_parsing(data, size)
        except (InvalidInput, OSError, ValueError) as exc:
            raise LeftOut(BAD_PARSING) from exc

    def encode(self, sample: Sample, fetched: Fetched | None = None) -> tuple[dict[str, bytes], dict[str, Any]]:
        """``(members, row)``: shard members by extension and the index row (without ``shard``).

        Raises :class:`LeftOut` for a sample CosmicMan's loader could not train on.
        """
        if sample.person is None:
            raise LeftOut(NO_PERSON)
        if sample.person.get("shot_type") not in self.fmt.taxonomy.shot_types:
            raise LeftOut(NO_SHOT_TYPE)
        fetched = fetched or self.fetch(sample)
        if fetched.parsing is None:
            raise LeftOut(NO_PARSING)
        data, ext, width, height = self._image(sample, fetched.image)
        scale = width / sample.width if sample.width else 1.0
        members: dict[str, bytes] = {ext: data}
        person = dict(sample.person)
        person.pop("parsing_key", None)
        members["parsing.png"] = self._parsing(fetched.parsing, (width, height))
        segm_path = paths.parsing_path(sample.key)
        if scale != 1.0:
            person["box"] = [round(v * scale, 2) for v in person.get("box") or []]
            if person.get("keypoints"):
                person["keypoints"] = [[p[0] * scale, p[1] * scale, *p[2:]] for p in person["keypoints"]]
        label_values = {(lb.group, lb.key): lb.value for lb in sample.labels}
        aa_text, aa_ids = self.fmt.columns(label_values)
        labels_json = json.dumps(
            {lb.name: lb.as_dict() for lb in sample.labels}, ensure_ascii=False, sort_keys=True, separators=(",", ":")
        )
        provenance = sample.provenance()
        doc = {
            "key": sample.key,
            "sha256": sample.sha256,
            "width": width,
            "height": height,
            "scale": scale,
            "image": {"ext": ext, "width": sample.width, "height": sample.height, "format": sample.format},
            "source": {"id": sample.source_id, "name": sample.source_name, "uri": sample.source_uri},
            "person": person,
            "aa_text": aa_text,
            "aa_ids": aa_ids,
            "provenance": provenance,
            "taxonomy_version": self.fmt.version,
        }
        head = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
        members["json"] = f'{head[:-1]},"labels":{labels_json}}}'.encode()  # the labels are serialised once
        row = {
            "path": paths.image_path(sample.sha256, ext),
            "segm_path": segm_path,
            "height": height,
            "width": width,
            "person_type": person["shot_type"],
            "aa_text": json.dumps(aa_text, ensure_ascii=False),
            "aa_ids": json.dumps(aa_ids),
            "key": sample.key,
            "sha256": sample.sha256,
            "person_index": person.get("index"),
            "caption": person.get("caption"),
            "source": sample.source_name,
            "labels": labels_json,
            "provenance": json.dumps(provenance, sort_keys=True, separators=(",", ":")),
        }
        return members, row


def palette_parsing(data: bytes, size: tuple[int, int] | None = None) -> bytes:
    """A stored parsing map (PNG of any mode, or ``.npy``) as the palette PNG :func:`encode_map` writes,
    nearest-resized to ``size`` ``(width, height)`` when it differs. A map already in that form and
    size is returned as it is (no decode). Raises :class:`InvalidInput` for ids outside 0..17."""
    import numpy as np

    if data[:6] == NPY_MAGIC:
        array = np.load(io.BytesIO(data), allow_pickle=False)
        if array.ndim != 2 or array.min(initial=0) < 0 or array.max(initial=0) > 255:
            raise InvalidInput("a parsing map is a 2-D array of ATR ids")
        array = array.astype(np.uint8)
    else:
        if is_atr_png(data) and (size is None or _png_size(data) == size):
            return data
        array = decode_map(data)
    if size is not None and (array.shape[1], array.shape[0]) != size:
        from PIL import Image

        array = np.asarray(Image.fromarray(array).resize(size, Image.Resampling.NEAREST))
    return encode_map(np.ascontiguousarray(array))


def _png_size(data: bytes) -> tuple[int, int]:
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
