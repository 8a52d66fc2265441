"""The photos the ingest benchmarks read: a folder of photos plus the three photos of people in packages.

The folder defaults to the repository's COCO fixtures (``tests/data/people-coco``); any folder of
JPEG/PNG photos can be given instead. The package photos are scikit-image's astronaut and camera
(written as PNG, as they ship as arrays) and matplotlib's Grace Hopper (its JPEG bytes as shipped).
"""

from __future__ import annotations

import io
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FOLDER = ROOT / "tests" / "data" / "people-coco"


def package_photos() -> dict[str, bytes]:
    import skimage.data
    from matplotlib import cbook
    from PIL import Image

    out = {}
    for name, pixels in (("astronaut.png", skimage.data.astronaut()), ("camera.png", skimage.data.camera())):
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "PNG")
        out[name] = buf.getvalue()
    out["grace_hopper.jpg"] = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).read_bytes()
    return out


def photo_files(folder: Path | None = None) -> dict[str, bytes]:
    """``{file name: bytes}`` of the folder's photos (sorted) followed by the package photos."""
    folder = folder or DEFAULT_FOLDER
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})
    if not paths:
        raise SystemExit(f"no photos in {folder}")
    return {**{p.name: p.read_bytes() for p in paths}, **package_photos()}
