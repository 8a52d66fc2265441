"""The default ingest chain, stage by stage, against its floor (decode + multi-person pose) on the same photos.

    python bench/funnel.py [--photos DIR] [--repeat 3]

Photos: ``--photos`` (default: the repository's COCO fixtures) plus the three package photos (see
``bench/photos.py``), served by a loopback HTTP server in its own process.

* The chain: ``Settings().ingest_stages`` (fetch, decode with sha256/pHash/blur, takedown, exact
  dedup, quality with BRISQUE, persons, NSFW, store), then the commit (rows, near dedup), in a fresh
  embedded home. The stages run one after the other over all photos in this process, so the process
  CPU time (all threads) spent in each is its own. Size thresholds are lowered to 256 px: the COCO
  photos are 640 px at most, and at the default 512 px most would stop at ``quality:too_small``
  without reaching a model. Every other threshold is the default (``--max-nsfw`` overrides the NSFW
  one, and says so).
* The floor, in the same run, on the same bytes: the Pillow decode at the JPEG draft scale a 512 px
  pose model needs (``decode_image``) and the default person backend (``person_backend()``) on each.

Both run ``--repeat`` times in turn; the tables give the median run. "ms/photo" is CPU milliseconds
per photo entering the chain (one core), "ms/in" per image reaching that stage. Last line:
``ratio <floor ms / chain ms>``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

RELAXED_SIZE = {"min_side": 256, "min_area": 256 * 256}


def _items(settings: Any, urls: list[str]) -> tuple[int, list[int]]:
    from annotate_anyone.catalog.models import Item
    from annotate_anyone.catalog.sources import create_source
    from annotate_anyone.db.base import session_scope

    with session_scope(settings.db_url) as session:
        source = create_source(session, name="funnel", kind="folder", uri="/funnel")
        items = [Item(source_id=source.id, uri=url) for url in urls]
        session.add_all(items)
        session.flush()
        return source.id, [item.id for item in items]


def run_chain(urls: list[str], names: list[str], max_nsfw: float | None, scratch: Path) -> dict[str, Any]:
    """One pass of the chain over ``urls`` in a fresh home: per-stage counts, drops and CPU/wall seconds."""
    from annotate_anyone.catalog.ingest import POOL_CHECKS, commit_records
    from annotate_anyone.db.base import dispose_engines, session_scope
    from annotate_anyone.home.setup import init_home
    from annotate_anyone.pipeline.build import build_stages
    from annotate_anyone.pipeline.record import Record
    from annotate_anyone.pipeline.stage import StageStats
    from annotate_anyone.settings import SafetyConfig, Settings

    base = Settings()
    settings = Settings(
        home=Path(tempfile.mkdtemp(prefix="home-", dir=scratch)),
        workers=1,
        round_threshold=0,
        quality=base.quality.model_copy(update=RELAXED_SIZE),
        safety=SafetyConfig(max_nsfw=base.safety.max_nsfw if max_nsfw is None else max_nsfw),
    )
    init_home(settings)
    source_id, ids = _items(settings, urls)
    stages = build_stages(names, settings, {"allow_private": True}, POOL_CHECKS)
    warm = [Record(item_id=-1 - i, uri=url) for i, url in enumerate(urls[:2])]
    for stage in stages:  # load every model and run it once, whatever the earlier stages decide
        if stage.name != "store":
            stage.process_batch(warm)
            for record in warm:
                record.drop_reason = None
        stage.stats = StageStats(stage.name)
    records = [Record(item_id=i, uri=url, source_id=source_id) for i, url in zip(ids, urls, strict=True)]
    rows = []
    for stage in [*stages, None]:
        live = sum(not r.dropped for r in records)
        before = Counter(r.drop_reason for r in records if r.dropped)
        cpu, wall = time.process_time(), time.perf_counter()
        if stage is None:
            with session_scope(settings.db_url) as session:
                commit_records(session, records, near_threshold=settings.near_dup_threshold)
        else:
            stage.process_batch(records)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        after = Counter(r.drop_reason for r in records if r.dropped)
        drops = dict(after - before) if stage is not None else {}
        name = "commit (rows, near dedup)" if stage is None else stage.name
        rows.append(
            {"stage": name, "in": live, "out": live - sum(drops.values()), "drops": drops, "cpu": cpu, "wall": wall}
        )
    outcome = [(Path(r.uri).name, r.drop_reason, dict(r.metrics)) for r in records]
    dispose_engines()
    shutil.rmtree(settings.home, ignore_errors=True)
    return {"rows": rows, "outcome": outcome}


def run_floor(datas: list[bytes], backend: Any) -> tuple[float, float]:
    """CPU seconds of the floor over all photos: (decode at the draft scale, default multi-person pose)."""
    from annotate_anyone.pipeline.decode import decode_image

    decode = pose = 0.0
    for data in datas:
        start = time.process_time()
        image, _ = decode_image(data, max_pixels=80_000_000, draft_side=512)
        middle = time.process_time()
        backend.detect(image)
        decode += middle - start
        pose += time.process_time() - middle
    return decode, pose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=None, help="folder of photos (default: tests/data/people-coco)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stages", nargs="+", default=None, help="stage names (default: Settings().ingest_stages)")
    parser.add_argument("--max-nsfw", type=float, default=None, help="override the NSFW threshold (reported)")
    args = parser.parse_args()
    import cv2
    from ingest import start_server
    from photos import photo_files

    from annotate_anyone.perception import person_backend
    from annotate_anyone.pipeline.decode import decode_image
    from annotate_anyone.settings import Settings, get_settings

    cv2.setNumThreads(1)  # one core per worker process, as the ingest workers run
    names = args.stages or Settings().ingest_stages
    files = photo_files(args.photos)
    scratch = Path(tempfile.mkdtemp(prefix="aa-bench-funnel-"))
    folder = scratch / "photos"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    server, port = start_server(folder)
    urls = [f"http://127.0.0.1:{port}/{name}" for name in files]
    backend = person_backend(cache_dir=get_settings().model_cache_dir)
    backend.detect(decode_image(next(iter(files.values())), max_pixels=80_000_000)[0])  # loads the graphs
    loads, floors, chains = [os.getloadavg()[0]], [], []
    try:
        for _ in range(args.repeat):
            floors.append(run_floor(list(files.values()), backend))
            chains.append(run_chain(urls, names, args.max_nsfw, scratch))
            loads.append(os.getloadavg()[0])
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(scratch, ignore_errors=True)
    report(files, names, args, backend, loads, floors, chains)


def report(files: dict[str, bytes], names: list[str], args: argparse.Namespace, backend: Any, loads, floors, chains):
    n = len(files)
    med = statistics.median
    totals = [sum(row["cpu"] for row in chain["rows"]) for chain in chains]
    median_run = chains[sorted(range(len(chains)), key=lambda i: totals[i])[len(chains) // 2]]
    threshold = "default" if args.max_nsfw is None else f"OVERRIDDEN to {args.max_nsfw}"
    print(f"\n{n} photos ({args.photos or 'tests/data/people-coco'} + 3 package photos), {args.repeat} runs, ")
    print(f"stages {names}; sizes >= 256 px, other thresholds default, NSFW threshold {threshold}")
    print(f"load average {', '.join(f'{x:.1f}' for x in loads)}\n")
    print(f"| {'stage':26} | {'in':>3} | {'out':>3} | {'ms/photo':>8} | {'ms/in':>7} | {'wall/photo':>10} | dropped |")
    print(f"|{'-' * 28}|{'-' * 5}|{'-' * 5}|{'-' * 10}|{'-' * 9}|{'-' * 12}|---------|")
    for i, row in enumerate(median_run["rows"]):
        cpu = [chain["rows"][i]["cpu"] for chain in chains]
        wall = [chain["rows"][i]["wall"] for chain in chains]
        per_in = 1000 * med(cpu) / row["in"] if row["in"] else 0.0
        drops = ", ".join(f"{k} {v}" for k, v in sorted(row["drops"].items())) or "-"
        print(
            f"| {row['stage']:26} | {row['in']:3} | {row['out']:3} | {1000 * med(cpu) / n:8.2f} | {per_in:7.2f} "
            f"| {1000 * med(wall) / n:10.2f} | {drops} |"
        )
    chain_ms = 1000 * med(totals) / n
    decode_ms = 1000 * med(f[0] for f in floors) / n
    pose_ms = 1000 * med(f[1] for f in floors) / n
    floor_ms = 1000 * med(sum(f) for f in floors) / n
    print(f"| {'chain, all stages':26} | {n:3} |     | {chain_ms:8.2f} |         |            |         |")
    print(f"\n| {'floor (same photos, same run)':40} | {'ms/photo':>8} |")
    print(f"|{'-' * 42}|{'-' * 10}|")
    print(f"| {'Pillow decode at the draft scale (512)':40} | {decode_ms:8.2f} |")
    print(f"| {'pose: ' + getattr(backend, 'name', type(backend).__name__):40} | {pose_ms:8.2f} |")
    print(f"| {'floor total':40} | {floor_ms:8.2f} |")
    print(f"\n| {'photo':32} | {'outcome':18} | {'brisque':>7} | {'nsfw':>6} |")
    print(f"|{'-' * 34}|{'-' * 20}|{'-' * 9}|{'-' * 8}|")
    for name, reason, metrics in median_run["outcome"]:
        brisque = f"{metrics['brisque']:7.2f}" if "brisque" in metrics else f"{'-':>7}"
        nsfw = f"{metrics['nsfw']:6.4f}" if "nsfw" in metrics else f"{'-':>6}"
        print(f"| {name:32} | {reason or 'kept':18} | {brisque} | {nsfw} |")
    print(f"\nchain {chain_ms:.1f} ms/photo/core, floor {floor_ms:.1f} (best runs: {1000 * min(totals) / n:.1f}, "
          f"{1000 * min(sum(f) for f in floors) / n:.1f})")  # fmt: skip
    print(f"ratio {floor_ms / chain_ms:.2f}")


if __name__ == "__main__":
    main()
