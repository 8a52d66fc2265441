"""Safe decoding of original bytes: sha256, guarded Pillow decode to RGB, perceptual hash and blur metric."""

from __future__ import annotations

import hashlib
import io
import math
import warnings
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from annotate_anyone.pipeline.record import Record
from annotate_anyone.pipeline.stage import Stage

BLUR_SIDE = 512  # the blur metric is measured on a grey image of about this long side
WORK_SIDE = 512  # long side of the shared working copy the model stages read (BRISQUE, NSFW, persons)
DRAFT_FLOOR = 0.75  # a JPEG draft may come out this much smaller than the requested side
_TRANSPOSED = {5, 6, 7, 8}  # EXIF orientations that swap width and height
_DCT_SIZE = 32


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    return (2.0 * np.cos(np.pi * (2 * i + 1) * k / (2 * n))).astype(np.float64)


_DCT = _dct_matrix(_DCT_SIZE)


def phash64(grey: Image.Image) -> str:
    """64-bit DCT perceptual hash (same bits as ``imagehash.phash``), as 16 hex chars."""
    small = grey.convert("L").resize((_DCT_SIZE, _DCT_SIZE), Image.Resampling.LANCZOS, reducing_gap=2.0)
    pixels = np.asarray(small, dtype=np.float64)
    low = (_DCT @ pixels @ _DCT.T)[:8, :8]
    bits = low > np.median(low)
    return np.packbits(bits.ravel()).tobytes().hex()


def laplacian_variance(grey: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of a 2-D grey array (higher is sharper), interior pixels.

    For 8-bit input the Laplacian is exact in int16 (-1020..1020), summed exactly in int64, squared
    and summed in float32 by ``einsum`` (no BLAS threads): under half the time of a float64 ``var``.
    """
    if grey.ndim != 2 or grey.shape[0] < 3 or grey.shape[1] < 3:
        return 0.0
    g = grey.astype(np.int16) if grey.dtype == np.uint8 else grey.astype(np.float32)
    lap = g[:-2, 1:-1] + g[2:, 1:-1]
    lap += g[1:-1, :-2]
    lap += g[1:-1, 2:]
    lap -= 4 * g[1:-1, 1:-1]
    mean = float(lap.sum(dtype=np.int64 if lap.dtype == np.int16 else np.float64)) / lap.size
    flat = lap.ravel().astype(np.float32, copy=False)
    return max(0.0, float(np.einsum("i,i->", flat, flat)) / lap.size - mean * mean)


def blur_grey(image: Image.Image, side: int = BLUR_SIDE) -> Image.Image:
    """Grey copy reduced by an integer box factor to a long side near ``side`` (the blur metric's input)."""
    factor = max(1, round(max(image.size) / side))
    grey = image.convert("L")  # grey first: the box reduce then touches one channel, not three
    return grey.reduce(factor) if factor > 1 else grey


def work_image(record: Record, side: int = WORK_SIDE) -> Image.Image:
    """``record.image`` reduced to a long side of at most ``side``, made once per record and shared.

    The model stages each need a small copy (BRISQUE scores at 512 px, the NSFW model reads 256 px,
    the pose models 512 px): the first stage that asks makes it (Pillow's antialiased bicubic, with a
    box reduce first for large factors) and the later ones reuse it from ``record.views``.
    """
    view = record.views.get(side)
    if view is None:
        if record.image is None:
            raise ValueError("the record has no decoded image")
        view = record.views[side] = downscale(record.image, side)
    return view


def downscale(image: Image.Image, side: int) -> Image.Image:
    """``image`` itself when its long side is at most ``side``, else a copy reduced to that long side."""
    scale = side / max(image.size)
    if scale >= 1:
        return image
    size = (max(8, round(image.width * scale)), max(8, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB: 16-bit and float scaled, alpha composited on white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        peak = float(arr.max(initial=0.0))
        if mode == "F":
            top = 1.0 if peak <= 1.0 else 255.0
        else:
            top = 65535.0 if mode.startswith("I;16") or peak > 255 else 255.0
        grey = np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "PA", "La", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


class DecodeFailure(Exception):
    """Decoding failed; ``reason`` is the drop reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def decode_image(data: bytes, *, max_pixels: int, draft_side: int | None = 512) -> tuple[Image.Image, dict[str, Any]]:
    """Decode ``data`` safely to an upright RGB image; returns ``(image, info)``.

    ``info`` holds the true ``width``/``height`` (after EXIF orientation), ``format``, ``frames`` and
    ``mode``. With ``draft_side`` a JPEG is decoded at the smallest DCT scale whose long side stays at
    least 3/4 of ``draft_side`` (e.g. a 2000 px photo at 1/4, 500 px, for 512). The whole entropy-coded
    stream is still decoded, so truncated and corrupt data fail as in a full decode. Raises
    :class:`DecodeFailure` (``decode:not_image`` / ``bomb`` / ...).
    """
    try:
        with warnings.catch_warnings():  # our own max_pixels check below replaces Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise DecodeFailure("decode:not_image", "bytes are not an image Pillow can read") from exc
    except Image.DecompressionBombError as exc:
        raise DecodeFailure("decode:bomb", str(exc)) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise DecodeFailure("decode:corrupt", f"{type(exc).__name__}: {exc}") from exc
    width, height = im.size
    if width <= 0 or height <= 0:
        raise DecodeFailure("decode:corrupt", f"image size {width}x{height}")
    if width * height > max_pixels:
        raise DecodeFailure("decode:bomb", f"{width}x{height} exceeds {max_pixels} pixels")
    info: dict[str, Any] = {"format": im.format, "mode": im.mode, "frames": getattr(im, "n_frames", 1)}
    orientation = _orientation(im)
    if orientation in _TRANSPOSED:
        width, height = height, width
    info.update(width=width, height=height, orientation=orientation)
    if draft_side and im.format == "JPEG" and max(im.size) > draft_side:
        # the smallest DCT scale (1/2, 1/4, 1/8) whose long side stays >= 3/4 of draft_side: about
        # draft_side px, as the blur metric wants, with no IDCT spent on pixels a box reduce would drop
        scale = DRAFT_FLOOR * draft_side / max(im.size)
        im.draft("RGB", (max(1, math.ceil(im.width * scale)), max(1, math.ceil(im.height * scale))))
    try:
        im.seek(0)
        im.load()
        out = ImageOps.exif_transpose(im) if orientation not in (None, 1) else im
        rgb = to_rgb(out)
        if rgb is im and info["frames"] > 1:
            rgb = im.copy()  # detach the first frame from the multi-frame decoder
    except Image.DecompressionBombError as exc:
        raise DecodeFailure("decode:bomb", str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        message = str(exc)
        bomb = "too large" in message.lower()
        truncated = "truncated" in message or isinstance(exc, EOFError) or "broken data stream" in message
        reason = "decode:bomb" if bomb else "decode:truncated" if truncated else "decode:corrupt"
        raise DecodeFailure(reason, f"{type(exc).__name__}: {message}") from exc
    return rgb, info


def _orientation(im: Image.Image) -> int | None:
    try:
        value = im.getexif().get(0x0112)
    except Exception:  # a malformed EXIF block must not fail the image; it is simply ignored
        return None
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else None


class DecodeStage(Stage):
    """sha256 of the original bytes, safe decode to RGB (``record.image``), pHash and blur metric."""

    name = "decode"

    def __init__(self, *, max_pixels: int, draft_side: int | None = 512) -> None:
        """``max_pixels``: the decompression-bomb limit (``Settings.quality.max_pixels``)."""
        super().__init__()
        self.max_pixels = max_pixels
        self.draft_side = draft_side

    def process(self, record: Record) -> Record:
        if record.data is None:
            return record.drop("decode:no_data", "nothing was read for this item")
        record.sha256 = hashlib.sha256(record.data).hexdigest()
        try:
            image, info = decode_image(record.data, max_pixels=self.max_pixels, draft_side=self.draft_side)
        except DecodeFailure as failure:
            return record.drop(failure.reason, failure.detail)
        record.image = image
        record.width, record.height, record.format = info["width"], info["height"], info["format"]
        if info["frames"] > 1:
            record.meta["frames"] = info["frames"]
        grey = blur_grey(image)
        record.phash = phash64(grey)
        record.metrics["blur"] = round(laplacian_variance(np.asarray(grey)), 3)
        return record
