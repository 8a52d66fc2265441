"""A release read the way CosmicMan's trainer reads it, by a reader written here from the published format
(the brief's cosmicman.md, sections 2-4), not from our export code.

The demo release and a release of the COCO fixtures are materialized in the ``cosmicman`` layout; every row
must load (image, palette parsing map of ids 0..17, ``aa_text``/``aa_ids`` of 20 entries with keys the
trainer reads), and every labelled value must reach at least one of 30 captions composed by the format's
rules.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from annotate_anyone.settings import Settings

pytest.importorskip("mediapipe")

COCO = Path(__file__).resolve().parents[1] / "data" / "people-coco"

# --- the published format (brief, cosmicman.md) -----------------------------------------------------------
SHOT_PHRASES = {
    "full_body": "a full-body shot",
    "nearly_full_body": "a nearly full-body shot",
    "upper_body": "a upper body shot",
    "portrait": "a close up portrait shot",
    "headshot": "a headshot",
}
TYPE, GENDER = "<type>", "<gender>"  # the phrase ends with that key's value
FABRIC = ["pattern", "material"]
GROUPS: list[tuple[list[str], str | None]] = [  # (adjective keys, the noun the phrase ends with)
    (["country", "age"], GENDER),
    (["body shape"], None),
    (["background"], None),
    (["hair color", "hair style", "hair length"], "hair"),
    (["sleeve length"], TYPE),
    ([*FABRIC, "sleeve length", "collar shape", "length", "shoulder exposure level"], TYPE),
    ([*FABRIC, "sleeve length", "top length", "collar shape", "color", "graphic"], TYPE),
    ([*FABRIC, "coat length", "collar shape", "color", "graphic"], TYPE),
    ([*FABRIC, "length", "bottom shape", "color", "graphic"], TYPE),
    ([*FABRIC, "boots length", "color"], TYPE),
    (["material"], TYPE),
    (["material"], TYPE),
    (["material"], "belt"),
    (FABRIC, "scarf"),
    (["overall-style"], None),
    *[(FABRIC, noun) for noun in ("headband", "headscarf", "veil", "socks", "ties")],
]
NOUN_KEYS = {TYPE: "type", GENDER: "gender"}
CAPTIONS = 30


def dataset_files(dataset: Path) -> list[Path]:
    """``--dataset``: every entry is a parquet file named ``<prefix>_<int>...``; sorted by that int."""
    files = list(dataset.iterdir())
    for f in files:
        assert f.is_file() and f.suffix == ".parquet", f"{f.name}: the trainer reads every file in --dataset"
        assert f.name.split("_")[1].isdigit(), f"{f.name}: the trainer sorts by the int after the first '_'"
    files.sort(key=lambda f: int(f.name.split("_")[1]))
    assert 1 <= len(files) <= 3, "the trainer reads the first three files only"
    return files


def load_row(row: dict, root: Path) -> tuple[list, list]:
    """One row as the trainer loads it; returns ``(aa_text, aa_ids)``."""
    height, width = int(float(row["height"])), int(float(row["width"]))
    with Image.open(root / row["path"]) as image:
        assert image.convert("RGB").size == (width, height)
    with Image.open(root / row["segm_path"]) as segm:
        assert segm.mode == "P", "a non-palette parsing map is resized with LANCZOS and gains ids"
        ids = np.asarray(segm)
        shrunk = np.asarray(segm.resize((max(1, width // 3), max(1, height // 3))))  # P: nearest neighbour
    assert ids.shape == (height, width) and ids.dtype == np.uint8
    assert int(ids.max()) <= 17 and int(shrunk.max()) <= 17
    onehot = np.eye(19)[ids]  # 18 ATR labels + the empty channel
    assert row["person_type"] in SHOT_PHRASES
    aa_text, aa_ids = json.loads(row["aa_text"]), json.loads(row["aa_ids"])
    assert isinstance(aa_text, list) and isinstance(aa_ids, list) and len(aa_text) == len(aa_ids) == 20
    for index, (entry, group_ids) in enumerate(zip(aa_text, aa_ids, strict=True)):
        if entry is None:
            continue
        adjectives, noun = GROUPS[index]
        readable = set(adjectives) | ({NOUN_KEYS[noun]} if noun in NOUN_KEYS else set())
        assert isinstance(entry, dict) and set(entry) <= readable, f"group {index}: {entry} has keys it skips"
        assert all(isinstance(v, str) and v for v in entry.values())
        assert noun not in NOUN_KEYS or NOUN_KEYS[noun] in entry, f"group {index} lacks its noun: {entry}"
        if index != 1:  # body shape uses the foreground
            assert group_ids and all(0 <= i <= 17 for i in group_ids)
            _ = onehot[:, :, group_ids].max(-1)
    return aa_text, aa_ids


def phrase(index: int, entry: dict, rng: random.Random) -> str:
    adjectives, noun = GROUPS[index]
    words = [entry[k] for k in adjectives if k in entry]
    rng.shuffle(words)
    if noun in NOUN_KEYS:
        if NOUN_KEYS[noun] not in entry:
            return ""
        words.append(entry[NOUN_KEYS[noun]])
    elif noun:
        words.append(noun)
    text = " ".join(words)
    return "a " + text if index == 0 and text else text


def clip_tokens(text: str) -> int:
    """About CLIP's count: words and punctuation, plus start and end (the exact BPE is not available offline)."""
    return len(re.findall(r"[a-z0-9]+|[^a-z0-9\s]", text.lower())) + 2


def compose(person_type: str, aa_text: list, rng: random.Random) -> list[tuple[int | None, str]]:
    """Shot phrase; groups 0-2 in order, 3-19 shuffled; groups 14+ kept half the time; each group dropped
    with probability 0.1; trailing groups removed until the caption fits 77 tokens."""
    parts: list[tuple[int | None, str]] = [(None, SHOT_PHRASES[person_type])]
    for index in [0, 1, 2, *rng.sample(range(3, 20), 17)]:
        entry = aa_text[index]
        if entry is None or (index >= 14 and rng.random() < 0.5) or rng.random() < 0.1:
            continue
        if text := phrase(index, entry, rng):
            parts.append((index, text))
    while len(parts) > 1 and clip_tokens(", ".join(p for _, p in parts)) > 77:
        parts.pop()
    return parts


def check_release(dataset: Path, root: Path) -> int:
    """Read every row; returns how many labelled values were checked."""
    rows = [r for f in dataset_files(dataset) for r in pq.read_table(f).to_pylist()]
    assert rows, "an empty release"
    checked = 0
    for n, row in enumerate(rows):
        aa_text, _ = load_row(row, root)
        rng = random.Random(n)
        captions = [compose(row["person_type"], aa_text, rng) for _ in range(CAPTIONS)]
        for index, entry in enumerate(aa_text):
            for key, value in (entry or {}).items():
                said = any(
                    g == index and re.search(rf"(^| ){re.escape(value)}( |$)", p) for c in captions for g, p in c
                )
                assert said, f"{row['key']}: group {index} {key}={value!r} is in no caption"
                checked += 1
    return checked


# --- the releases ------------------------------------------------------------------------------------------
def _materialized(summary: dict, settings: Settings, dest: Path) -> tuple[Path, Path]:
    from annotate_anyone.release.materialize import materialize_cosmicman
    from annotate_anyone.storage import open_store

    manifest = json.loads((Path(summary["release_path"]) / "manifest.json").read_text())
    assert all(":" in reason for reason in manifest["counts"]["left_out"])  # counted, with stage:reason
    done = materialize_cosmicman(open_store(settings.store_url), summary["version"], dest)
    assert done.rows == manifest["counts"]["samples"] and not done.left_out
    return done.dataset, done.data_root


def test_the_demo_release_reads_as_published(tmp_path: Path) -> None:
    from annotate_anyone.home.demo import run_demo

    settings = Settings(home=tmp_path / "home", workers=1)
    dataset, root = _materialized(run_demo(settings), settings, tmp_path / "cosmicman")
    assert check_release(dataset, root) > 0


def test_a_release_of_the_coco_fixtures_reads_as_published(tmp_path: Path) -> None:
    from annotate_anyone.home.demo import demo_settings, run_flywheel

    settings = demo_settings(Settings(home=tmp_path / "home", workers=1))
    summary = run_flywheel(settings, COCO, name="people-coco")
    dataset, root = _materialized(summary, settings, tmp_path / "cosmicman")
    assert check_release(dataset, root) > 0
