"""A synthetic demo release in CosmicMan-HQ format (images, parsing maps, parquet index) for tests and benches.

Each image is a drawn figure (hair, face, top, bottoms, shoes, optional bag and belt) at a random
position and scale on a coloured background; the parsing map (a palette PNG, as releases write them)
carries the matching ATR ids and the attributes name the colours drawn, so captions, masks and pixels
agree. ``aa_text`` holds only what the taxonomy's rule keeps (release key spellings).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from annotate_anyone.annotation.phrases import SHOT_PHRASES
from annotate_anyone.annotation.taxonomy import load_taxonomy
from annotate_anyone.daring.training_captions import NUM_GROUPS

COLOURS = {
    "red": (200, 40, 40), "blue": (40, 60, 200), "green": (40, 160, 60), "yellow": (220, 200, 40),
    "black": (20, 20, 20), "white": (235, 235, 235), "pink": (230, 130, 170), "grey": (128, 128, 128),
}  # fmt: skip
TOPS, BOTTOMS, SHOES = ("t-shirt", "sweater", "shirt"), ("pants", "jeans", "shorts"), ("boots", "sneakers")
BACKGROUNDS = {"street": (150, 150, 140), "studio": (240, 240, 250), "indoor": (180, 150, 120)}


def _figure(rng: random.Random, h: int, w: int) -> tuple[np.ndarray, np.ndarray, list, list]:
    """Draw one figure: RGB image, ATR parsing map, ``aa_text`` and ``aa_ids``."""
    background = rng.choice(sorted(BACKGROUNDS))
    img = np.zeros((h, w, 3), np.uint8) + np.array(BACKGROUNDS[background], np.uint8)
    segm = np.zeros((h, w), np.uint8)
    fh = int(h * rng.uniform(0.7, 0.95))
    fw = int(fh * rng.uniform(0.3, 0.45))
    top, left = rng.randint(0, h - fh), rng.randint(0, max(0, w - fw))
    colour = {part: rng.choice(sorted(COLOURS)) for part in ("hair", "top", "bottom", "shoes", "bag", "belt")}

    def box(y0: float, y1: float, x0: float, x1: float, label: int, name: str) -> None:
        ys, ye = top + int(y0 * fh), top + int(y1 * fh)
        xs, xe = left + int(x0 * fw), left + int(x1 * fw)
        img[ys:ye, xs:xe] = COLOURS[name] if name in COLOURS else (225, 185, 160)
        segm[ys:ye, xs:xe] = label

    box(0.0, 0.08, 0.3, 0.7, 2, colour["hair"])  # hair
    box(0.08, 0.18, 0.33, 0.67, 11, "skin")  # face
    box(0.18, 0.5, 0.1, 0.9, 4, colour["top"])  # upper clothes
    box(0.5, 0.9, 0.2, 0.8, 6, colour["bottom"])  # pants
    box(0.9, 1.0, 0.15, 0.85, 9, colour["shoes"])  # shoes
    has_belt, has_bag = rng.random() < 0.5, rng.random() < 0.5
    if has_belt:
        box(0.47, 0.52, 0.2, 0.8, 8, colour["belt"])
    if has_bag:
        box(0.35, 0.55, 0.85, 1.0, 16, colour["bag"])
    text: list = [None] * NUM_GROUPS
    ids: list = [None] * NUM_GROUPS
    text[0], ids[0] = {"country": rng.choice(["asian", "caucasian", "latino"]), "age": "adult",
                       "gender": rng.choice(["female", "male"])}, [11]  # fmt: skip
    text[1] = {"body shape": rng.choice(["fit", "slim", "curvy"])}
    text[2], ids[2] = {"background": background}, [0]
    text[3], ids[3] = {"hair color": colour["hair"], "hair style": rng.choice(["wavy", "straight"])}, [2]
    text[6], ids[6] = {"color": colour["top"], "material": "cotton", "type": rng.choice(TOPS)}, [4]
    text[8], ids[8] = {"color": colour["bottom"], "type": rng.choice(BOTTOMS)}, [6]
    text[9], ids[9] = {"color": colour["shoes"], "type": rng.choice(SHOES)}, [9, 10]
    if has_bag:
        text[11] = {"material": "leather", "type": "handbag"}  # group 11 says no colour
    if has_belt:
        text[12] = {"material": "leather"}
    text[14] = {"overall-style": rng.choice(["casual", "formal", "sporty"])}
    taxonomy = load_taxonomy()
    text = taxonomy.release_aa_text(text)
    default_ids = taxonomy.aa_ids(text)  # groups not drawn with their own ids take the taxonomy's region
    ids = [None if t is None else (ids[i] or default_ids[i]) for i, t in enumerate(text)]
    return img, segm, text, ids


def build_demo_release(
    out_dir: Path, *, count: int = 8, sizes: tuple[tuple[int, int], ...] = ((128, 128),), seed: int = 0
) -> Path:
    """Write ``count`` synthetic samples under ``out_dir`` (``images/``, ``parsing/``, ``index.parquet``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from annotate_anyone.annotation.parsing.base import encode_map

    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "parsing").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        h, w = sizes[i % len(sizes)]
        img, segm, text, ids = _figure(rng, h, w)
        path, segm_path = f"images/{i:05d}.png", f"parsing/{i:05d}.png"
        Image.fromarray(img).save(out_dir / path)
        (out_dir / segm_path).write_bytes(encode_map(segm))
        rows.append(
            {
                "path": path,
                "segm_path": segm_path,
                "height": h,
                "width": w,
                "person_type": rng.choice(sorted(SHOT_PHRASES)),
                "aa_text": json.dumps(text),
                "aa_ids": json.dumps(ids),
            }
        )
    pq.write_table(pa.Table.from_pylist(rows), out_dir / "index.parquet")
    return out_dir / "index.parquet"
