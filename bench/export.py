"""Release export vs ``webdataset.TarWriter`` on the same samples, in the same run.

Setup (not timed): a SQLite pool of N single-person images of realistic size (about 1500 x 1250 px
JPEGs, distinct bytes each), a parsing map per person and 25 labels per person, in a local store.

Timed, alternating, ``--rounds`` times each:

* ``TarWriter``: for each sample, read its original and parsing map from the store and write them
  plus a prepared JSON document with ``webdataset.TarWriter`` (new shard every ``--shard-mb``);
* ``export_release``: the real export from the database (query, label selection, shards with
  sha256, parquet index, diff, tombstones, manifest) into the same kind of store.

Prints a table (median of the rounds) and, last, ``ratio <ours samples/s / TarWriter samples/s>``.

    python bench/export.py --samples 20000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_pool(n: int, seed: int = 0) -> tuple[list[bytes], list[bytes], list[tuple[int, int]]]:
    """``n`` distinct JPEG photos-like images of realistic size, and a parsing PNG for each."""
    from annotate_anyone.annotation.parsing.base import encode_map

    rng = np.random.default_rng(seed)
    images, maps, sizes = [], [], []
    for _ in range(n):
        w, h = int(rng.integers(1300, 1700)), int(rng.integers(1100, 1400))
        coarse = rng.integers(0, 255, (h // 24, w // 24, 3), dtype=np.uint8)
        img = Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)
        noise = rng.normal(0, 6, (h, w, 3))
        pixels = np.clip(np.asarray(img, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG", quality=88)
        images.append(buf.getvalue())
        parsing = np.zeros((h, w), np.uint8)
        parsing[h // 8 : h // 4, w // 3 : 2 * w // 3] = 11
        parsing[h // 4 : h // 2, w // 4 : 3 * w // 4] = 4
        parsing[h // 2 :, w // 4 : 3 * w // 4] = 6
        maps.append(encode_map(parsing))  # as the annotation service stores them (palette PNG)
        sizes.append((w, h))
    return images, maps, sizes


def build_db(root: Path, samples: int, pool: int) -> tuple[str, object, list[tuple[str, str, str, bytes]]]:
    """Database + store with ``samples`` persons; returns (url, store, baseline sample list)."""
    from sqlalchemy import insert

    from annotate_anyone.catalog.models import Attribute, Person, Source
    from annotate_anyone.catalog.models import Image as ImageRow
    from annotate_anyone.db import migrate
    from annotate_anyone.db.base import session_factory
    from annotate_anyone.release import paths
    from annotate_anyone.storage.local import LocalStore

    url = f"sqlite:///{root / 'bench.db'}"
    migrate.upgrade(url)
    store = LocalStore(root / "objects")
    images, maps, sizes = make_pool(pool)
    parsing_keys = [store.put_content(m, prefix="parsing", ext="png")[1] for m in maps]
    keys = ["country", "age", "gender", "hair_color", "hair_style", "type", "color", "pattern", "material"]
    session = session_factory(url)()
    session.add(Source(name="bench", kind="folder", uri="/bench"))
    session.flush()
    baseline = []
    rows_img, rows_person, rows_attr = [], [], []
    for i in range(samples):
        j = i % pool
        data = images[j] + i.to_bytes(8, "big")  # distinct bytes after the JPEG end marker
        sha, key = store.put_content(data)
        w, h = sizes[j]
        rows_img.append(
            {"id": i + 1, "sha256": sha, "source_id": 1, "source_uri": f"https://bench.test/{i}.jpg",
             "storage_key": key, "width": w, "height": h, "format": "JPEG", "bytes": len(data)}
        )  # fmt: skip
        rows_person.append(
            {"id": i + 1, "image_id": i + 1, "index": 0, "box": [10.0, 20.0, w - 10.0, h - 5.0], "score": 0.9,
             "keypoints": [[float(k), float(k), 0.9] for k in range(33)], "shot_type": "full_body",
             "parsing_key": parsing_keys[j], "parsing_model": "parser@1", "caption": f"a person number {i}"}
        )  # fmt: skip
        for a in range(25):
            rows_attr.append(
                {"person_id": i + 1, "group": a % 20, "key": keys[a % len(keys)], "value": f"value{a % 7}",
                 "confidence": 0.9, "origin": "model", "model_version": "vlm@1", "taxonomy_version": "cm-1.0",
                 "state": "auto_accepted", "annotator": ""}
            )  # fmt: skip
        doc = json.dumps({"key": paths.sample_key(sha, 0), "labels": rows_attr[-25:], "person": rows_person[-1]})
        baseline.append((paths.sample_key(sha, 0), key, parsing_keys[j], doc.encode()))
    for table, rows in ((ImageRow, rows_img), (Person, rows_person), (Attribute, rows_attr)):
        for k in range(0, len(rows), 5000):
            session.execute(insert(table), rows[k : k + 5000])
    session.commit()
    session.close()
    return url, store, baseline


def run_tarwriter(store, baseline, out: Path, shard_bytes: int) -> tuple[float, int]:
    import webdataset as wds

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    shard, written, total = 0, 0, 0
    sink = wds.TarWriter(str(out / f"{shard:06d}.tar"))
    for key, image_key, parsing_key, doc in baseline:
        sample = {"__key__": key, "jpg": store.get_bytes(image_key), "parsing.png": store.get_bytes(parsing_key)}
        sample["json"] = doc
        size = sum(len(v) for k, v in sample.items() if k != "__key__")
        if written and written + size > shard_bytes:
            sink.close()
            shard, written = shard + 1, 0
            sink = wds.TarWriter(str(out / f"{shard:06d}.tar"))
        sink.write(sample)
        written += size
    sink.close()
    elapsed = time.perf_counter() - t0
    total = sum(p.stat().st_size for p in out.glob("*.tar"))
    return elapsed, total


def run_ours(url: str, store, version: str, shard_bytes: int) -> tuple[float, int]:
    from annotate_anyone.db.base import session_factory
    from annotate_anyone.release.export import export_release
    from annotate_anyone.release.manifest import load_manifest

    session = session_factory(url)()
    t0 = time.perf_counter()
    export_release(
        session, store, version=version, parent=None, shard_size_bytes=shard_bytes,
        expected_error_rate=0.05, routing={"bench": True},
    )  # fmt: skip
    session.commit()
    elapsed = time.perf_counter() - t0
    session.close()
    manifest = load_manifest(store, version)
    total = sum(f["size"] for f in manifest["shards"] + manifest["files"])
    return elapsed, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--pool", type=int, default=48, help="distinct base images")
    parser.add_argument("--shard-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    root = Path(args.workdir or tempfile.mkdtemp(prefix="aa-bench-export-"))
    root.mkdir(parents=True, exist_ok=True)
    shard_bytes = args.shard_mb * 1024 * 1024
    try:
        t0 = time.perf_counter()
        url, store, baseline = build_db(root, args.samples, args.pool)
        print(f"setup: {args.samples} samples in {time.perf_counter() - t0:.1f} s", flush=True)
        results: dict[str, list[tuple[float, int]]] = {"TarWriter": [], "export_release": []}
        for r in range(args.rounds):
            results["TarWriter"].append(run_tarwriter(store, baseline, root / "tarwriter", shard_bytes))
            shutil.rmtree(root / "objects" / "releases", ignore_errors=True)
            results["export_release"].append(run_ours(url, store, f"bench.{r}", shard_bytes))
            shutil.rmtree(root / "objects" / "releases", ignore_errors=True)
            print(f"round {r}: " + ", ".join(f"{k} {v[-1][0]:.1f} s" for k, v in results.items()), flush=True)
        print(f"\n{'writer':<16}{'seconds':>10}{'MB/s':>10}{'samples/s':>12}")
        rates = {}
        for name, runs in results.items():
            secs = statistics.median(s for s, _ in runs)
            size = runs[0][1]
            rates[name] = args.samples / secs
            print(f"{name:<16}{secs:>10.2f}{size / secs / 1e6:>10.1f}{rates[name]:>12.0f}")
        print(f"\n(cores: {os.cpu_count()}, shard size {args.shard_mb} MB, bytes per run {size / 1e9:.2f} GB)")
        print(f"ratio {rates['export_release'] / rates['TarWriter']:.2f}")
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
