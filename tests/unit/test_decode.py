"""Safe decode: modes, orientation, animation, draft decoding, failures, pHash and blur."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageFilter

from annotate_anyone.catalog.dedup import hamming
from annotate_anyone.pipeline.decode import DecodeStage, laplacian_variance, phash64
from annotate_anyone.pipeline.record import Record

ASTRONAUT = Image.fromarray(skimage.data.astronaut())


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def decode(data: bytes, **kwargs) -> Record:
    record = Record(item_id=1, uri="mem://x", data=data)
    DecodeStage(max_pixels=kwargs.pop("max_pixels", 50_000_000), **kwargs).process_batch([record])
    return record


def test_jpeg_fields():
    data = encode(ASTRONAUT, "JPEG", quality=90)
    r = decode(data)
    assert r.drop_reason is None
    assert (r.width, r.height, r.format) == (512, 512, "JPEG")
    assert r.sha256 == hashlib.sha256(data).hexdigest()
    assert r.image.mode == "RGB" and len(r.phash) == 16 and r.metrics["blur"] > 100


def test_exif_orientation_applied_and_reported():
    crop = ASTRONAUT.crop((0, 0, 300, 200))  # landscape pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    r = decode(encode(crop, "JPEG", exif=exif))
    assert (r.width, r.height) == (200, 300) and r.image.size == (200, 300)


@pytest.mark.parametrize("mode", ["CMYK", "L", "1", "P", "LA", "RGBA", "I;16"])
def test_modes_become_rgb(mode):
    if mode == "I;16":
        arr = (np.asarray(ASTRONAUT.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
        source = Image.fromarray(arr)  # uint16 -> mode I;16
    else:
        source = ASTRONAUT.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    r = decode(encode(source, fmt))
    assert r.drop_reason is None and r.image.mode == "RGB" and r.image.size == (512, 512)
    mean = np.asarray(r.image).mean()
    assert 40 < mean < 200  # 16-bit scaled down, not clipped to white


def test_alpha_is_composited_on_white():
    rgba = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 32, 64))
    pixels = np.asarray(decode(encode(rgba)).image)
    assert tuple(pixels[10, 10]) == (0, 0, 255) and tuple(pixels[10, 50]) == (255, 255, 255)


def test_animated_takes_first_frame():
    frames = [Image.new("RGB", (40, 30), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    r = decode(data)
    assert r.meta["frames"] == 3 and (r.width, r.height) == (40, 30)
    assert tuple(np.asarray(r.image)[5, 5]) == (255, 0, 0)


def test_draft_decoding_keeps_true_size():
    big = ASTRONAUT.resize((2048, 1536))
    r = decode(encode(big, "JPEG", quality=90), draft_side=512)
    assert (r.width, r.height) == (2048, 1536)
    assert max(r.image.size) == 512  # decoded at 1/4 scale
    full = decode(encode(big, "JPEG", quality=90), draft_side=None)
    assert full.image.size == (2048, 1536) and hamming(full.phash, r.phash) <= 4


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<html>hello</html>", "decode:not_image"),
        (b"", "decode:not_image"),
        (encode(ASTRONAUT, "JPEG")[:4000], "decode:truncated"),
        (encode(ASTRONAUT, "PNG")[:20000], "decode:truncated"),
    ],
)
def test_failures(data, reason):
    r = decode(data)
    assert r.drop_reason == reason and r.error and r.image is None


def test_pixel_limit_is_a_bomb():
    r = decode(encode(ASTRONAUT), max_pixels=100_000)
    assert r.drop_reason == "decode:bomb" and "512x512" in r.error


def test_no_data_dropped():
    record = Record(item_id=1, uri="x")
    DecodeStage(max_pixels=10).process_batch([record])
    assert record.drop_reason == "decode:no_data"


def test_phash_matches_dct_reference_and_separates_images():
    from scipy.fft import dct

    grey = ASTRONAUT.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    low = dct(dct(np.asarray(grey, dtype=float), axis=0), axis=1)[:8, :8]
    reference = np.packbits((low > np.median(low)).ravel()).tobytes().hex()
    assert phash64(ASTRONAUT) == reference
    camera = Image.fromarray(skimage.data.camera())
    assert hamming(phash64(ASTRONAUT), phash64(camera)) > 16
    recoded = Image.open(io.BytesIO(encode(ASTRONAUT.resize((300, 300)), "JPEG", quality=60)))
    assert hamming(phash64(ASTRONAUT), phash64(recoded)) <= 4


def test_blur_metric_orders_sharp_and_blurred():
    sharp = decode(encode(ASTRONAUT)).metrics["blur"]
    blurred = decode(encode(ASTRONAUT.filter(ImageFilter.GaussianBlur(4)))).metrics["blur"]
    assert blurred < sharp / 5


def test_laplacian_variance_is_exact_on_8_bit_grey():
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (240, 320), dtype=np.uint8)
    g = grey.astype(np.float64)
    reference = (g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4 * g[1:-1, 1:-1]).var()
    assert laplacian_variance(grey) == pytest.approx(reference, rel=1e-5)
    assert laplacian_variance(np.full((50, 50), 7, dtype=np.uint8)) == 0.0
    assert laplacian_variance(grey[:2]) == 0.0  # no interior pixels


@pytest.mark.parametrize(("size", "expected"), [((2000, 1500), 500), ((1400, 1000), 700), ((700, 500), 700)])
def test_draft_takes_the_smallest_scale_near_the_blur_side(size, expected):
    """A 2000 px photo decodes at 1/4 (500 px), not 1/2: the blur grey is about 512 px either way."""
    r = decode(encode(ASTRONAUT.resize(size), "JPEG", quality=90), draft_side=512)
    assert (r.width, r.height) == size and max(r.image.size) == expected


def test_truncation_is_caught_at_draft_scale():
    """Draft decoding still reads the whole entropy-coded stream, so a cut file fails."""
    data = encode(ASTRONAUT.resize((2048, 2048)), "JPEG", quality=90)
    r = decode(data[: len(data) * 2 // 3], draft_side=512)
    assert r.drop_reason == "decode:truncated"


def test_work_image_is_made_once_per_side_and_freed_with_the_payload():
    from annotate_anyone.pipeline.decode import work_image

    big = decode(encode(ASTRONAUT.resize((1200, 900))))
    view = work_image(big)
    assert view.size == (512, 384) and work_image(big) is view  # shared: the second stage gets the same copy
    assert work_image(big, 256).size == (256, 192) and big.views.keys() == {512, 256}
    small = decode(encode(ASTRONAUT.resize((400, 300))))
    assert work_image(small) is small.image  # never enlarged
    big.release_payload()
    assert big.views == {} and big.image is None
    with pytest.raises(ValueError):
        work_image(big)
