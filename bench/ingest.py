"""Ingest throughput: our fetch -> decode -> hash -> dedup -> checks -> store -> rows, against img2dataset.

One command from a fresh clone: ``python bench/ingest.py`` (``--n`` images, default 2000). It builds a
corpus of photos of people re-encoded at varied sizes (400 to 2000 px) under ``bench/out/ingest``,
serves it from a local HTTP server (its own process, HTTP/1.1 keep-alive), then times on the same
URL list, each with ``--workers`` processes (default 2, both cores):

* img2dataset (installed by this script in ``.venv-bench-img2dataset``) keeping the original bytes
  (``--resize_mode no --disable_all_reencoding True --output_format webdataset``), and resizing to
  1024 (``--resize_mode keep_ratio --image_size 1024``) for reference;
* our ingest job through the real services (URL-list source, ingest job, inline executor on a
  process pool, SQLite rows, local object store): read, decode (JPEG draft), sha256 + pHash, exact
  dedup, size/aspect/blur checks, original stored, rows written;
* Pillow's decode-only throughput of the same bytes as the floor (full and draft decoding).

Per-stage milliseconds come from a single-process pass over a sample; the model-based stages
(BRISQUE, the MediaPipe human filter) are timed per image separately. Last line:
``ratio <ours / img2dataset keeping originals>``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "bench" / "out" / "ingest"
I2D_VENV = ROOT / ".venv-bench-img2dataset"
I2D_VERSION = "1.47.0"


# ----------------------------------------------------------------------------------------- corpus


def _base_images() -> list:
    import skimage.data
    from matplotlib import cbook
    from PIL import Image

    bases = [Image.open(p).convert("RGB") for p in sorted((ROOT / "tests" / "data" / "people-coco").glob("*.jpg"))]
    bases += [Image.fromarray(skimage.data.astronaut()), Image.fromarray(skimage.data.camera()).convert("RGB")]
    bases.append(Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))
    return bases


def _make(args: tuple[int, int, str]) -> int:
    start, stop, folder = args
    from PIL import Image

    bases = _base_images()
    total = 0
    for i in range(start, stop):
        rng = random.Random(i)
        base = bases[i % len(bases)]
        w, h = base.size
        cw, ch = int(w * rng.uniform(0.7, 1.0)), int(h * rng.uniform(0.7, 1.0))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        crop = base.crop((x, y, x + cw, y + ch))
        side = rng.randint(400, 2000)
        scale = side / max(crop.size)
        image = crop.resize((max(1, round(cw * scale)), max(1, round(ch * scale))), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=rng.randint(82, 95))
        (Path(folder) / f"{i:06d}.jpg").write_bytes(buf.getvalue())
        total += buf.tell()
    return total


def build_corpus(n: int, workers: int) -> Path:
    folder = OUT / f"images-{n}"
    if (folder / "DONE").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    step = (n + workers - 1) // workers
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_make, [(s, min(n, s + step), str(folder)) for s in range(0, n, step)]))
    (folder / "DONE").write_text(str(n))
    return folder


# ----------------------------------------------------------------------------------------- server


class _Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request, client_address) -> None:
        pass


def serve(folder: str, port_file: str) -> None:
    os.chdir(folder)
    httpd = _Server(("127.0.0.1", 0), _Handler)
    Path(port_file).write_text(str(httpd.server_address[1]))
    httpd.serve_forever()


def start_server(folder: Path) -> tuple[subprocess.Popen, int]:
    port_file = Path(tempfile.mkdtemp()) / "port"
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(folder), "--port-file", str(port_file)])
    for _ in range(100):
        if port_file.exists() and port_file.read_text():
            return proc, int(port_file.read_text())
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the image server did not start")


# ----------------------------------------------------------------------------------------- runners


def _decode_chunk(args: tuple[list[str], int | None]) -> int:
    from PIL import Image

    paths, draft = args
    for path in paths:
        with Image.open(io.BytesIO(Path(path).read_bytes())) as im:
            if draft:
                im.draft("RGB", (draft, draft))
            im.load()
    return len(paths)


def pillow_floor(paths: list[str], workers: int, draft: int | None) -> float:
    chunks = [(paths[i::workers], draft) for i in range(workers)]
    start = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        done = sum(pool.map(_decode_chunk, chunks))
    return done / (time.perf_counter() - start)


def ensure_img2dataset() -> Path:
    exe = I2D_VENV / "bin" / "img2dataset"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(I2D_VENV)], check=True)
        pip = [str(I2D_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, f"img2dataset=={I2D_VERSION}"], check=True)
    return exe


def run_img2dataset(exe: Path, url_list: Path, out: Path, workers: int, extra: list[str]) -> tuple[float, int]:
    shutil.rmtree(out, ignore_errors=True)
    argv = [
        str(exe),
        f"--url_list={url_list}",
        "--input_format=parquet",
        "--url_col=url",
        f"--output_folder={out}",
        f"--processes_count={workers}",
        "--thread_count=32",
        "--output_format=webdataset",
        "--number_sample_per_shard=1000",
        "--timeout=10",
        "--retries=0",
        "--enable_wandb=False",
        *extra,
    ]
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    ok = 0
    for stats in out.glob("*_stats.json"):
        ok += json.loads(stats.read_text()).get("successes", 0)
    return seconds, ok


def run_ours(url_list: Path, workers: int, stages: list[str], near: int | None) -> tuple[float, dict]:
    from sqlalchemy import func, select

    from annotate_anyone.db.base import session_scope
    from annotate_anyone.db.models import Image, Item
    from annotate_anyone.executors.inline import InlineExecutor
    from annotate_anyone.services import jobs
    from annotate_anyone.services.setup import init_home
    from annotate_anyone.services.sources import create_source
    from annotate_anyone.settings import QualityConfig, Settings

    home = Path(tempfile.mkdtemp(prefix="aa-bench-", dir=OUT))
    quality = QualityConfig(min_side=256, min_area=256 * 256, max_aspect=3.0, min_blur=20.0, max_brisque=None)
    settings = Settings(
        home=home, workers=workers, batch_size=64, quality=quality, ingest_stages=stages, near_dup_threshold=near
    )
    init_home(settings)
    start = time.perf_counter()
    with session_scope(settings.db_url) as session:
        source = create_source(session, name="bench", kind="url_list", uri=str(url_list), allow_private=True)
        job_id = jobs.create_job(session, kind="ingest", params={"source_ids": [source.id], "stages": stages}).id
    InlineExecutor(settings).run(job_id)
    seconds = time.perf_counter() - start
    with session_scope(settings.db_url) as session:
        outcome = dict(session.execute(select(Item.status, func.count()).group_by(Item.status)).all())
        images = session.scalar(select(func.count()).select_from(Image))
    shutil.rmtree(home, ignore_errors=True)
    return seconds, {
        "items": {str(k.value if hasattr(k, "value") else k): v for k, v in outcome.items()},
        "images": images,
    }


def stage_profile(urls: list[str], stages_names: list[str]) -> dict[str, float]:
    """Milliseconds per image of each stage, one process, batches of 64."""
    from annotate_anyone.pipeline.build import build_stages
    from annotate_anyone.pipeline.record import Record
    from annotate_anyone.pipeline.stage import run_stages
    from annotate_anyone.settings import QualityConfig, Settings

    home = Path(tempfile.mkdtemp(prefix="aa-profile-", dir=OUT))
    quality = QualityConfig(min_side=256, min_area=256 * 256, max_aspect=3.0, min_blur=20.0, max_brisque=None)
    settings = Settings(home=home, quality=quality)
    names = [n for n in stages_names if n != "seen"]  # exact dedup needs the job's database; timed in the job
    stages = build_stages(names, settings, {"allow_private": True})
    for i in range(0, len(urls), 64):
        records = [Record(item_id=j, uri=u) for j, u in enumerate(urls[i : i + 64], start=i)]
        run_stages(stages, records)
        for r in records:
            r.release_payload()
    shutil.rmtree(home, ignore_errors=True)
    return {s.name: s.stats.ms_per_record for s in stages}


def model_profile(paths: list[str]) -> dict[str, float]:
    """Per-image milliseconds of BRISQUE and the MediaPipe human filter (decoded images, one process)."""
    from annotate_anyone.pipeline.decode import DecodeStage
    from annotate_anyone.pipeline.humans import HumanFilter
    from annotate_anyone.pipeline.quality import BrisqueScorer
    from annotate_anyone.pipeline.record import Record

    records = [Record(item_id=i, uri=p, data=Path(p).read_bytes()) for i, p in enumerate(paths)]
    DecodeStage(max_pixels=80_000_000).process_batch(records)
    scorer = BrisqueScorer()
    scorer.score(records[0].image)  # warm up
    start = time.perf_counter()
    for r in records:
        scorer.score(r.image)
    brisque = 1000 * (time.perf_counter() - start) / len(records)
    humans = HumanFilter("mediapipe")
    humans.process_batch(records[:1])  # loads the graphs
    for r in records:
        r.drop_reason = None
    humans.stats.seconds, humans.stats.records_in = 0.0, 0
    humans.process_batch(records)
    return {"brisque (on 512 px)": brisque, "humans (mediapipe)": humans.stats.ms_per_record}


# ----------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample", type=int, default=256, help="images in the single-process stage profile")
    parser.add_argument("--model-sample", type=int, default=24)
    parser.add_argument("--no-near-dedup", action="store_true", help="skip pHash near-duplicate resolution")
    parser.add_argument("--serve")
    parser.add_argument("--port-file")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port_file)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    OUT.mkdir(parents=True, exist_ok=True)
    folder = build_corpus(args.n, args.workers)
    paths = sorted(str(p) for p in folder.glob("*.jpg"))
    megabytes = sum(Path(p).stat().st_size for p in paths) / 1e6
    exe = ensure_img2dataset()
    server, port = start_server(folder)
    rows: list[tuple[str, float, str]] = []
    try:
        urls = [f"http://127.0.0.1:{port}/{Path(p).name}" for p in paths]
        url_list = OUT / "urls.parquet"
        pq.write_table(pa.table({"url": urls}), url_list)
        stages = ["read", "decode", "seen", "quality", "store"]

        seconds, ok = run_img2dataset(
            exe, url_list, OUT / "i2d-keep", args.workers, ["--resize_mode=no", "--disable_all_reencoding=True"]
        )
        i2d_keep = ok / seconds
        rows.append(("img2dataset, originals kept", i2d_keep, f"{ok}/{len(urls)} ok in {seconds:.1f} s"))
        seconds, ok = run_img2dataset(
            exe, url_list, OUT / "i2d-1024", args.workers, ["--resize_mode=keep_ratio", "--image_size=1024"]
        )
        rows.append(("img2dataset, resize to 1024", ok / seconds, f"{ok}/{len(urls)} ok in {seconds:.1f} s"))

        seconds, outcome = run_ours(url_list, args.workers, stages, None if args.no_near_dedup else 4)
        ours = len(urls) / seconds
        rows.append(("annotate-anyone ingest", ours, f"{len(urls)} items in {seconds:.1f} s: {outcome}"))

        rows.append(("Pillow decode only (floor)", pillow_floor(paths, args.workers, None), "full decode"))
        rows.append(("Pillow decode only, draft 512", pillow_floor(paths, args.workers, 512), "JPEG DCT scaling"))

        profile = stage_profile(urls[: args.sample], stages)
        models = model_profile(paths[: args.model_sample])
    finally:
        server.terminate()
        server.wait()

    print(f"\n{len(paths)} JPEGs, {megabytes:.0f} MB, 400-2000 px, {args.workers} worker processes\n")
    print(f"| {'run':32} | {'images/s':>9} | notes |")
    print(f"|{'-' * 34}|{'-' * 11}|-------|")
    for name, rate, note in rows:
        print(f"| {name:32} | {rate:9.1f} | {note} |")
    print(f"\n| {'stage (one process)':32} | {'ms/image':>9} |")
    print(f"|{'-' * 34}|{'-' * 11}|")
    for name, ms in {**profile, **models}.items():
        print(f"| {name:32} | {ms:9.2f} |")
    print(f"\nratio {ours / i2d_keep:.2f}")


if __name__ == "__main__":
    main()
