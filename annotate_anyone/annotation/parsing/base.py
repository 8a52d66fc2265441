"""The parser boundary: what a parser sees of a person, what it returns, and how maps are stored."""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from annotate_anyone.errors import ConfigError, InvalidInput

# MediaPipe pose landmark indices ("left" is the person's left).
NOSE, L_EAR, R_EAR, L_EYE, R_EYE = 0, 7, 8, 2, 5
L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 11, 12, 13, 14, 15, 16
L_HAND, R_HAND = (17, 19, 21), (18, 20, 22)
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 23, 24, 25, 26, 27, 28
L_HEEL, R_HEEL, L_TOE, R_TOE = 29, 30, 31, 32
NUM_KEYPOINTS = 33


@dataclass(slots=True)
class PersonView:
    """One person in an image: box and pose in pixels, person mask (full image), face boxes."""

    box: tuple[float, float, float, float]
    keypoints: np.ndarray | None = None  # (33, 3): x, y in pixels, visibility 0..1
    mask: np.ndarray | None = None  # (H, W) bool or float in 0..1
    face_boxes: list[tuple[float, float, float, float]] = field(default_factory=list)

    @classmethod
    def from_row(
        cls,
        box: Sequence[float],
        keypoints: Sequence[Sequence[float]] | None,
        face_boxes: Sequence[Sequence[float]] | None,
        mask: np.ndarray | None,
        size: tuple[int, int],
    ) -> PersonView:
        """Build from stored JSON (keypoints and boxes in pixels, or normalised 0..1: detected and scaled)."""
        w, h = size
        kp = None
        if keypoints:
            kp = np.asarray(keypoints, dtype=np.float32)
            if kp.ndim != 2 or kp.shape[1] < 2:
                raise InvalidInput(f"keypoints must be a list of [x, y, visibility], got shape {kp.shape}")
            if kp.shape[1] == 2:
                kp = np.concatenate([kp, np.ones((len(kp), 1), np.float32)], axis=1)
            if np.nanmax(np.abs(kp[:, :2])) <= 1.5:
                kp[:, 0] *= w
                kp[:, 1] *= h
            kp = kp[:, :3]
        faces = []
        for fb in face_boxes or []:
            x0, y0, x1, y1 = (float(v) for v in fb[:4])
            if max(abs(x0), abs(y0), abs(x1), abs(y1)) <= 1.5:
                x0, x1, y0, y1 = x0 * w, x1 * w, y0 * h, y1 * h
            faces.append((x0, y0, x1, y1))
        bx = tuple(float(v) for v in box[:4]) if box else (0.0, 0.0, float(w), float(h))
        if max(abs(v) for v in bx) <= 1.5 and (w > 2 or h > 2):
            bx = (bx[0] * w, bx[1] * h, bx[2] * w, bx[3] * h)
        return cls(box=bx, keypoints=kp, mask=mask, face_boxes=faces)  # type: ignore[arg-type]


class Parser(ABC):
    """Maps an RGB image and one person to a uint8 ATR label map of the image's size."""

    model_version: str
    labels_supported: frozenset[int]  # ATR ids this parser can ever output

    @abstractmethod
    def parse(self, image: np.ndarray, person: PersonView) -> np.ndarray: ...

    def parse_many(self, image: np.ndarray, persons: Sequence[PersonView]) -> list[np.ndarray]:
        """All persons of one image (backends override to batch)."""
        return [self.parse(image, p) for p in persons]


NUM_ATR = 18  # ATR ids 0..17


def atr_palette(count: int = NUM_ATR) -> list[int]:
    """The colour table of ATR parsing PNGs (as SCHP writes them): the PASCAL-VOC scheme, where the
    bits of the id, taken three at a time, set the red, green and blue bits from the top down."""
    palette = []
    for label in range(count):
        rgb, bits, shift = [0, 0, 0], label, 7
        while bits:
            for channel in range(3):
                rgb[channel] |= ((bits >> channel) & 1) << shift
            bits >>= 3
            shift -= 1
        palette += rgb
    return palette


ATR_PALETTE_BYTES = bytes(atr_palette())


def encode_map(label_map: np.ndarray) -> bytes:
    """An ATR label map as a palette ("P") PNG: pixel value = ATR id, the ATR palette (18 colours).

    A palette PNG is what CosmicMan's loader expects: it resizes "P" images with nearest neighbour
    (any other mode with LANCZOS, which invents ids). Ids outside 0..17 are refused.
    """
    from PIL import Image

    if label_map.dtype != np.uint8 or label_map.ndim != 2:
        raise InvalidInput("a parsing map is a 2-D uint8 array")
    if label_map.size and int(label_map.max()) >= NUM_ATR:
        raise InvalidInput(f"a parsing map holds ATR ids 0..{NUM_ATR - 1}, found {int(label_map.max())}")
    image = Image.frombytes("P", (label_map.shape[1], label_map.shape[0]), label_map.tobytes())
    image.putpalette(ATR_PALETTE_BYTES)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=3)
    return buf.getvalue()


def is_atr_png(data: bytes) -> bool:
    """Whether ``data`` is a PNG as :func:`encode_map` writes it (8-bit palette, the 18 ATR colours), read
    from its header only; such a map was checked for ids 0..17 when it was written."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR" or data[24] != 8 or data[25] != 3:
        return False
    pos = 33  # after the IHDR chunk
    while pos + 8 <= len(data):
        length, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        if kind == b"PLTE":
            return data[pos + 8 : pos + 8 + length] == ATR_PALETTE_BYTES
        if kind == b"IDAT":
            return False
        pos += 12 + length
    return False


def decode_map(data: bytes) -> np.ndarray:
    """The label map of a parsing PNG: palette PNGs (indices) and older greyscale ("L") ones alike."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L") if im.mode not in ("L", "P") else im, dtype=np.uint8).copy()


def make_parser(name: str, *, checkpoint: str | None = None, **options: Any) -> Parser:
    """The parser registry: ``geometric`` (offline default) or ``segformer`` (needs ``checkpoint``)."""
    if name == "geometric":
        from annotate_anyone.annotation.parsing.geometric import GeometricParser

        return GeometricParser(**options)
    if name == "segformer":
        if not checkpoint:
            raise ConfigError("the segformer parser needs a local checkpoint directory")
        from annotate_anyone.annotation.parsing.segformer import SegformerParser

        return SegformerParser(checkpoint, **options)
    raise ConfigError(f"unknown parser {name!r}; expected 'geometric' or 'segformer'")
