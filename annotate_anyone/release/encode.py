"""Turn one database sample into its shard members (image, parsing map, JSON) and its index row."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

from annotate_anyone.errors import InvalidInput
from annotate_anyone.release import layout
from annotate_anyone.release.samples import Sample
from annotate_anyone.release.training_format import TrainingFormat
from annotate_anyone.storage.base import ObjectStore

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NPY_MAGIC = b"\x93NUMPY"
_EXT = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp"}
JPEG_QUALITY = 95


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
        parsing_key = (sample.person or {}).get("parsing_key")
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
        """The parsing map as a uint8 PNG (resized with nearest neighbour to ``size`` when given)."""
        import numpy as np

        if data[:6] == NPY_MAGIC:
            array = np.load(io.BytesIO(data), allow_pickle=False).astype(np.uint8)
        elif data[:8] == PNG_MAGIC and size is None:
            return data
        else:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as img:
                array = np.asarray(img.convert("L") if img.mode not in ("L", "P") else img, dtype=np.uint8)
        if size is not None and (array.shape[1], array.shape[0]) != size:
            from PIL import Image

            array = np.asarray(Image.fromarray(array).resize(size, Image.Resampling.NEAREST))
        return _png(array)

    def encode(self, sample: Sample, fetched: Fetched | None = None) -> tuple[dict[str, bytes], dict[str, Any]]:
        """``(members, row)``: shard members by extension and the index row (without ``shard``)."""
        fetched = fetched or self.fetch(sample)
        data, ext, width, height = self._image(sample, fetched.image)
        scale = width / sample.width if sample.width else 1.0
        members: dict[str, bytes] = {ext: data}
        person = dict(sample.person) if sample.person is not None else None
        segm_path = None
        if person is not None:
            person.pop("parsing_key", None)
            if fetched.parsing is not None:
                resize = (width, height) if scale != 1.0 else None
                members["parsing.png"] = self._parsing(fetched.parsing, resize)
                segm_path = layout.parsing_path(sample.key)
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
            "path": layout.image_path(sample.sha256, ext),
            "segm_path": segm_path,
            "height": height,
            "width": width,
            "person_type": person.get("shot_type") if person else None,
            "aa_text": None if aa_text is None else json.dumps(aa_text, ensure_ascii=False),
            "aa_ids": None if aa_ids is None else json.dumps(aa_ids),
            "key": sample.key,
            "sha256": sample.sha256,
            "person_index": person.get("index") if person else None,
            "caption": person.get("caption") if person else None,
            "source": sample.source_name,
            "labels": labels_json,
            "provenance": json.dumps(provenance, sort_keys=True, separators=(",", ":")),
        }
        return members, row
