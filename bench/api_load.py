"""API and dashboard under load: 100,000 images with persons and attributes in a fresh PostgreSQL database.

Bulk-loads the pool with COPY, starts the real app (uvicorn, ``--workers`` processes) on loopback, and runs a
bounded closed-loop load generator (``--concurrency`` keep-alive clients, each with its own API key, for
``--seconds``) over the list/filter endpoints and the dashboard pages. Prints p50/p99 and requests/s per
endpoint, then ``ratio X`` = target p99 (100 ms) / worst p99 (> 1 means the target is met).

    .venv/bin/python bench/api_load.py --images 100000 --concurrency 4 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
TARGET_P99_MS = 100.0
SHOTS = ["full_body", "nearly_full_body", "upper_body", "portrait", "headshot"]
ATTRS = [
    (0, "gender", ["man", "woman"]),
    (0, "age", ["child", "young adult", "adult", "senior"]),
    (3, "hair color", ["black", "brown", "blonde", "red", "grey"]),
    (3, "hair length", ["short", "medium", "long"]),
    (6, "color", ["black", "white", "blue", "red", "green"]),
    (6, "sleeve length", ["short sleeve", "long sleeve", "sleeveless"]),
    (8, "color", ["black", "blue", "grey", "khaki"]),
    (14, "overall-style", ["casual", "formal", "sporty"]),
]
REASONS = ["quality:blur", "quality:small", "humans:none", "humans:many", "decode:truncated"]


def _copy(conn: psycopg.Connection, table: str, columns: list[str], rows: list[tuple]) -> None:
    cols = ", ".join(f'"{c}"' for c in columns)
    with conn.cursor().copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def load(dsn: str, n_images: int, seed: int = 0) -> dict[str, int]:
    """Bulk-insert sources, items, images (80% kept), persons (kept images) and 8 attributes per person."""
    rng = random.Random(seed)
    now = "2026-11-24 12:00:00+00"
    counts = {"images": 0, "persons": 0, "attributes": 0, "items": 0}
    with psycopg.connect(dsn) as conn:
        _copy(
            conn,
            "sources",
            ["id", "name", "kind", "uri", "options", "allow_private", "taken_down", "created_at"],
            [
                (i, f"source-{i}", "url_list", f"https://example.org/list-{i}.csv", "{}", False, False, now)
                for i in (1, 2, 3)
            ],
        )
        chunk = 20_000
        person_id = attribute_id = 0
        for start in range(1, n_images + 1, chunk):
            images, items, persons, attributes = [], [], [], []
            for image_id in range(start, min(start + chunk, n_images + 1)):
                kept = rng.random() < 0.8
                source = rng.choice((1, 2, 3))
                uri = f"https://example.org/{source}/{image_id}.jpg"
                status, reason = ("kept", None) if kept else ("dropped", rng.choice(REASONS))
                metrics = json.dumps({"blur": round(rng.uniform(20, 900), 1), "brisque": round(rng.uniform(5, 60), 1)})
                images.append(
                    (
                        image_id,
                        uuid.UUID(int=rng.getrandbits(128)).hex * 2,
                        uri,
                        f"originals/{image_id}.jpg",
                        1024,
                        1280,
                        250_000,
                        status,
                        reason,
                        metrics,
                        "{}",
                        now,
                        source,
                    )
                )
                items.append((image_id, source, uri, "{}", "kept" if kept else "dropped", reason, 1, image_id, now))
                if not kept:
                    continue
                for index in range(1 if rng.random() < 0.85 else 2):
                    person_id += 1
                    x0, y0 = rng.uniform(0, 300), rng.uniform(0, 300)
                    box = json.dumps([x0, y0, x0 + 500, y0 + 900])
                    kps = json.dumps(
                        [
                            [round(x0 + rng.uniform(0, 500), 1), round(y0 + rng.uniform(0, 900), 1), 0.9]
                            for _ in range(33)
                        ]
                    )
                    persons.append((person_id, image_id, index, box, 0.95, kps, rng.choice(SHOTS), now))
                    for group, key, values in ATTRS:
                        attribute_id += 1
                        state = "auto_accepted" if rng.random() < 0.7 else "needs_review"
                        attributes.append(
                            (
                                attribute_id,
                                person_id,
                                group,
                                key,
                                rng.choice(values),
                                round(rng.uniform(0.3, 1.0), 3),
                                "model",
                                "offline-1",
                                "bench",
                                state,
                                "",
                                now,
                                now,
                            )
                        )
            _copy(
                conn,
                "images",
                [
                    "id",
                    "sha256",
                    "source_uri",
                    "storage_key",
                    "width",
                    "height",
                    "bytes",
                    "status",
                    "drop_reason",
                    "metrics",
                    "meta",
                    "created_at",
                    "source_id",
                ],
                images,
            )
            _copy(
                conn,
                "items",
                ["id", "source_id", "uri", "meta", "status", "reason", "attempts", "image_id", "created_at"],
                items,
            )
            _copy(
                conn,
                "persons",
                ["id", "image_id", "index", "box", "score", "keypoints", "shot_type", "created_at"],
                persons,
            )
            _copy(
                conn,
                "attributes",
                [
                    "id",
                    "person_id",
                    "group",
                    "key",
                    "value",
                    "confidence",
                    "origin",
                    "model_version",
                    "taxonomy_version",
                    "state",
                    "annotator",
                    "created_at",
                    "updated_at",
                ],
                attributes,
            )
            conn.commit()
            counts["images"] += len(images)
            counts["items"] += len(items)
            counts["persons"] += len(persons)
            counts["attributes"] += len(attributes)
        for table in ("sources", "items", "images", "persons", "attributes"):
            conn.execute(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))")
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return counts


def make_keys(url: str, n: int) -> list[str]:
    from annotate_anyone.access import auth
    from annotate_anyone.db.base import dispose_engines, session_scope

    with session_scope(url) as session:
        keys = [auth.create_api_key(session, name=f"bench-{i}", role="admin")[1] for i in range(n)]
    dispose_engines()
    return keys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def endpoints(n_images: int, rng: random.Random) -> dict[str, callable]:
    """Name -> a function giving the next request path."""
    off = lambda: rng.randrange(0, 20) * 50  # noqa: E731 (first 1000 rows, as people page)
    img = lambda: rng.randrange(1, n_images + 1)  # noqa: E731
    return {
        "api /images": lambda: f"/images?limit=50&offset={off()}",
        "api /images?status&shot_type": lambda: f"/images?status=kept&shot_type={rng.choice(SHOTS)}&limit=50",
        "api /images?attribute": lambda: f"/images?attribute=hair%20color%3D{rng.choice(ATTRS[2][2])}&limit=50",
        "api /images?drop_reason": lambda: f"/images?status=dropped&drop_reason={rng.choice(REASONS)}&limit=50",
        "api /images?expand=persons": lambda: f"/images?expand=persons&limit=50&offset={off()}",
        "api /images/{id}": lambda: f"/images/{img()}",
        "api /jobs": lambda: "/jobs?limit=50",
        "api /sources/{id}/funnel": lambda: f"/sources/{rng.choice((1, 2, 3))}/funnel",
        "api /releases": lambda: "/releases",
        "ui overview": lambda: "/ui/",
        "ui images": lambda: f"/ui/images?offset={off()}",
        "ui images filtered": lambda: f"/ui/images?status=kept&attribute=gender%3Dwoman&shot_type={rng.choice(SHOTS)}",
        "ui image": lambda: f"/ui/images/{img()}",
        "ui jobs": lambda: "/ui/jobs",
        "ui releases": lambda: "/ui/releases",
    }


async def client_loop(
    base: str,
    key: str,
    names: list[str],
    paths: dict,
    stop: float,
    warm: float,
    samples: dict[str, list[float]],
    errors: dict[str, int],
    seed: int,
) -> None:
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30.0) as client:
        while (now := time.perf_counter()) < stop:
            name = rng.choice(names)
            t0 = time.perf_counter()
            response = await client.get(paths[name]())
            elapsed = (time.perf_counter() - t0) * 1000
            if response.status_code != 200:
                errors[name] = errors.get(name, 0) + 1
            elif now >= warm:
                samples.setdefault(name, []).append(elapsed)


async def run_load(
    base: str, keys: list[str], seconds: float, warmup: float, n_images: int
) -> tuple[dict, dict, float]:
    paths = endpoints(n_images, random.Random(1))
    names = list(paths)
    samples: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    start = time.perf_counter()
    warm, stop = start + warmup, start + warmup + seconds
    await asyncio.gather(
        *(client_loop(base, k, names, paths, stop, warm, samples, errors, i) for i, k in enumerate(keys))
    )
    return samples, errors, seconds


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()

    name = f"aa_bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(PG_ADMIN, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    server = None
    try:
        from annotate_anyone.db import migrate

        migrate.upgrade(url)
        t0 = time.perf_counter()
        counts = load(f"host=127.0.0.1 port=5432 user=postgres dbname={name}", args.images)
        load_s = time.perf_counter() - t0
        keys = make_keys(url, args.concurrency)
        port = free_port()
        home = Path(tempfile.mkdtemp(prefix="aa-bench-"))
        env = {**os.environ, "AA_DATABASE_URL": url, "AA_HOME": str(home), "AA_PROFILE": "embedded"}
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "annotate_anyone.api.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(args.workers),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=REPO,
            env=env,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        samples, errors, seconds = asyncio.run(run_load(base, keys, args.seconds, args.warmup, args.images))
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(20)
        if not args.keep_db:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

    total = sum(len(v) for v in samples.values())
    print(
        f"\npool: {counts['images']:,} images, {counts['persons']:,} persons, {counts['attributes']:,} attributes, "
        f"{counts['items']:,} items (COPY load {load_s:.1f} s); PostgreSQL; uvicorn {args.workers} workers; "
        f"{args.concurrency} concurrent keep-alive clients; {args.seconds:.0f} s after {args.warmup:.0f} s warm-up; "
        f"{os.cpu_count()} cores shared by server, load generator and database"
    )
    print(f"{'endpoint':34} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    worst = 0.0
    for name in endpoints(args.images, random.Random(0)):
        values = samples.get(name, [])
        if not values:
            print(f"{name:34} {0:>9} {'-':>8} {'-':>8} {'-':>8} {errors.get(name, 0):>7}")
            continue
        p50, p99 = statistics.median(values), pct(values, 0.99)
        worst = max(worst, p99)
        print(
            f"{name:34} {len(values):>9} {len(values) / seconds:>8.1f} {p50:>8.1f} {p99:>8.1f} {errors.get(name, 0):>7}"
        )
    every = [v for values in samples.values() for v in values]
    print(
        f"{'all':34} {total:>9} {total / seconds:>8.1f} {statistics.median(every):>8.1f} "
        f"{pct(every, 0.99):>8.1f} {sum(errors.values()):>7}"
    )
    print(f"target: p99 < {TARGET_P99_MS:.0f} ms per endpoint; worst p99 {worst:.1f} ms")
    print(f"ratio {TARGET_P99_MS / worst:.2f}")


if __name__ == "__main__":
    main()
