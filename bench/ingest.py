"""Ingest throughput: our fetch -> decode -> hash -> dedup -> checks -> store -> rows, against img2dataset.

One command from a fresh clone: ``python bench/ingest.py`` (``--n`` images, default 2000). It builds a
corpus of photos of people re-encoded at varied sizes (400 to 2000 px) under ``bench/out/ingest``,
serves it from a local HTTP server (its own process, HTTP/1.1 keep-alive), then times on the same
URL list, each with ``--workers`` processes (default 2, both cores), ``--repeat`` times in turn
(default 3; the machine may be shared, so the table gives the best and the median run and the load
average when each run started):

* img2dataset (installed by this script in ``.venv-bench-img2dataset``) keeping the original bytes
  (``--resize_mode no --disable_all_reencoding True --output_format webdataset``), and, once,
  resizing to 1024 (``--resize_mode keep_ratio --image_size 1024``) for reference;
* our ingest job through the real services (URL-list source, ingest job, inline executor on a
  process pool, SQLite rows, local object store): read, decode (JPEG draft), sha256 + pHash, exact
  and near dedup, size/aspect/blur checks, original stored content-addressed, rows written;
* Pillow's decode-only throughput of the same bytes as the floor (full and draft decoding).

Both tools write under ``--scratch`` (default: a folder in the system temp dir; file creation cost
differs a lot between folders of a crowded ext4 disk, and we write one file per image where
img2dataset writes one tar per 1,000). CPU milliseconds per image are given for img2dataset (its
process tree, from rusage) and for our job run in one process over ``--sample`` images, with that
run's per-stage milliseconds (reading overlaps the other stages in a thread); the model-based stages
(BRISQUE, the MediaPipe human filter) are timed per image separately. Last line:
``ratio <median ours / median img2dataset keeping originals>``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import shutil
import statistics
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
SCRATCH = Path(tempfile.gettempdir()) / "annotate-anyone-bench-ingest"
STAGES = ["read", "decode", "seen", "quality", "store"]
QUALITY = {"min_side": 256, "min_area": 256 * 256, "max_aspect": 3.0, "min_blur": 20.0, "max_brisque": None}
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
    """Open and load each file; with ``draft``, at the DCT scale our decode stage picks for that side."""
    import math

    from PIL import Image

    from annotate_anyone.pipeline.decode import DRAFT_FLOOR

    paths, draft = args
    for path in paths:
        with Image.open(io.BytesIO(Path(path).read_bytes())) as im:
            if draft and max(im.size) > draft:
                f = DRAFT_FLOOR * draft / max(im.size)
                im.draft("RGB", (math.ceil(im.width * f), math.ceil(im.height * f)))
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


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """CPU seconds used so far by a live process (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_img2dataset(exe: Path, url_list: Path, out: Path, workers: int, extra: list[str]) -> tuple[float, int, float]:
    """Seconds, successes and CPU seconds of its whole process tree."""
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
    cpu = _children_cpu()
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    cpu = _children_cpu() - cpu
    ok = 0
    for stats in out.glob("*_stats.json"):
        ok += json.loads(stats.read_text()).get("successes", 0)
    shutil.rmtree(out, ignore_errors=True)
    return seconds, ok, cpu


def run_ours(url_list: Path, scratch: Path, workers: int, batch: int, near: int | None) -> tuple[float, float, dict]:
    """Seconds of our ingest job (source, plan, units on ``workers`` processes, finish), CPU seconds of
    this process over the same span (all of it when ``workers`` is 1), and the job's outcome."""
    from sqlalchemy import func, select

    from annotate_anyone import jobs
    from annotate_anyone.catalog.models import Image, Item
    from annotate_anyone.catalog.sources import create_source
    from annotate_anyone.db.base import dispose_engines, session_scope
    from annotate_anyone.executors.inline import InlineExecutor
    from annotate_anyone.home.setup import init_home
    from annotate_anyone.settings import QualityConfig, Settings

    home = Path(tempfile.mkdtemp(prefix="home-", dir=scratch))
    settings = Settings(
        home=home,
        workers=workers,
        batch_size=batch,
        quality=QualityConfig(**QUALITY),
        ingest_stages=STAGES,
        near_dup_threshold=near,
        round_threshold=0,
    )
    init_home(settings)
    cpu = time.process_time()
    start = time.perf_counter()
    with session_scope(settings.db_url) as session:
        source = create_source(session, name="bench", kind="url_list", uri=str(url_list), allow_private=True)
        job_id = jobs.create_job(session, kind="ingest", params={"source_ids": [source.id], "stages": STAGES}).id
    InlineExecutor(settings).run(job_id)
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    with session_scope(settings.db_url) as session:
        outcome = dict(session.execute(select(Item.status, func.count()).group_by(Item.status)).all())
        images = session.scalar(select(func.count()).select_from(Image))
    dispose_engines()
    shutil.rmtree(home, ignore_errors=True)
    return (
        seconds,
        cpu,
        {
            "items": {str(k.value if hasattr(k, "value") else k): v for k, v in sorted(outcome.items())},
            "images": images,
        },
    )


def stage_profile(url_list: Path, scratch: Path, near: int | None) -> tuple[float, dict[str, float]]:
    """CPU ms per image of our job in one process (reading threads included), and ms/image per stage."""
    from annotate_anyone.catalog import ingest

    _seconds, cpu, outcome = run_ours(url_list, scratch, 1, 64, near)
    cpu_ms = 1000 * cpu / sum(outcome["items"].values())
    return cpu_ms, {name: stats.ms_per_record for name, stats in ingest.stage_stats().items()}


def model_profile(paths: list[str]) -> dict[str, float]:
    """Per-image milliseconds of BRISQUE and the MediaPipe human filter (decoded images, one process)."""
    from annotate_anyone.pipeline.decode import DecodeStage
    from annotate_anyone.pipeline.humans import HumanFilter
    from annotate_anyone.pipeline.quality import BrisqueScorer
    from annotate_anyone.pipeline.record import Record
    from annotate_anyone.settings import get_settings

    records = [Record(item_id=i, uri=p, data=Path(p).read_bytes()) for i, p in enumerate(paths)]
    DecodeStage(max_pixels=80_000_000).process_batch(records)
    scorer = BrisqueScorer()
    scorer.score(records[0].image)  # warm up
    start = time.perf_counter()
    for r in records:
        scorer.score(r.image)
    brisque = 1000 * (time.perf_counter() - start) / len(records)
    humans = HumanFilter("mediapipe", cache_dir=get_settings().model_cache_dir)
    humans.process_batch(records[:1])  # loads the graphs
    for r in records:
        r.drop_reason = None
    humans.stats.seconds, humans.stats.records_in = 0.0, 0
    humans.process_batch(records)
    return {"brisque (on 512 px)": brisque, "humans (mediapipe)": humans.stats.ms_per_record}


# ----------------------------------------------------------------------------------------- main


def _row(name: str, rates: list[float], loads: list[float], note: str) -> tuple[str, float, float, str]:
    load = ", ".join(f"{x:.1f}" for x in loads)
    return name, max(rates), statistics.median(rates), f"{note}; load {load}" if loads else note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of img2dataset and ours")
    parser.add_argument("--batch-size", type=int, default=64, help="items per unit of our job")
    parser.add_argument("--sample", type=int, default=400, help="images in the one-process CPU and stage profile")
    parser.add_argument("--model-sample", type=int, default=24)
    parser.add_argument("--no-near-dedup", action="store_true", help="skip pHash near-duplicate resolution")
    parser.add_argument("--scratch", type=Path, default=SCRATCH, help="where both tools write (emptied first)")
    parser.add_argument("--serve")
    parser.add_argument("--port-file")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port_file)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    OUT.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.scratch, ignore_errors=True)
    args.scratch.mkdir(parents=True)
    near = None if args.no_near_dedup else 4
    folder = build_corpus(args.n, args.workers)
    paths = sorted(str(p) for p in folder.glob("*.jpg"))
    megabytes = sum(Path(p).stat().st_size for p in paths) / 1e6
    exe = ensure_img2dataset()
    server, port = start_server(folder)
    keep: list[float] = []
    ours: list[float] = []
    keep_loads: list[float] = []
    ours_loads: list[float] = []
    notes: dict[str, str] = {}
    try:
        urls = [f"http://127.0.0.1:{port}/{Path(p).name}" for p in paths]
        url_list = args.scratch / "urls.parquet"
        pq.write_table(pa.table({"url": urls}), url_list)
        sample_list = args.scratch / "sample.parquet"
        pq.write_table(pa.table({"url": urls[: args.sample]}), sample_list)
        keep_cpu: list[float] = []
        server_cpu: dict[str, list[float]] = {"i2d": [], "ours": []}
        for _ in range(args.repeat):
            keep_loads.append(os.getloadavg()[0])
            before = process_cpu(server.pid)
            seconds, ok, cpu = run_img2dataset(
                exe,
                url_list,
                args.scratch / "i2d-keep",
                args.workers,
                ["--resize_mode=no", "--disable_all_reencoding=True"],
            )
            server_cpu["i2d"].append(1000 * (process_cpu(server.pid) - before) / max(ok, 1))
            keep.append(ok / seconds)
            keep_cpu.append(1000 * cpu / max(ok, 1))
            notes["i2d"] = f"{ok}/{len(urls)} ok"
            ours_loads.append(os.getloadavg()[0])
            before = process_cpu(server.pid)
            seconds, _cpu, outcome = run_ours(url_list, args.scratch, args.workers, args.batch_size, near)
            server_cpu["ours"].append(1000 * (process_cpu(server.pid) - before) / len(urls))
            ours.append(len(urls) / seconds)
            notes["ours"] = f"{len(urls)} items: {outcome['items']}, {outcome['images']} image rows"
        resize_load = os.getloadavg()[0]
        seconds, ok, _ = run_img2dataset(
            exe, url_list, args.scratch / "i2d-1024", args.workers, ["--resize_mode=keep_ratio", "--image_size=1024"]
        )
        resize = ok / seconds
        floor_full = pillow_floor(paths, args.workers, None)
        floor_draft = pillow_floor(paths, args.workers, 512)
        ours_cpu, profile = stage_profile(sample_list, args.scratch, near)
        models = model_profile(paths[: args.model_sample])
    finally:
        server.terminate()
        server.wait()
    shutil.rmtree(args.scratch, ignore_errors=True)

    rows = [
        _row("img2dataset, originals kept", keep, keep_loads, notes["i2d"]),
        _row("annotate-anyone ingest", ours, ours_loads, notes["ours"]),
        _row("img2dataset, resize to 1024", [resize], [resize_load], f"{ok}/{len(urls)} ok, one run"),
        _row("Pillow decode only (floor)", [floor_full], [], "full decode"),
        _row("Pillow decode only, draft 512", [floor_draft], [], "the DCT scale our decode picks (>= 384 px)"),
    ]
    print(f"\n{len(paths)} JPEGs, {megabytes:.0f} MB, 400-2000 px, {args.workers} worker processes, {args.repeat} runs")
    print(f"\n| {'run':30} | {'best/s':>7} | {'median/s':>8} | notes |")
    print(f"|{'-' * 32}|{'-' * 9}|{'-' * 10}|-------|")
    for name, best, median, note in rows:
        print(f"| {name:30} | {best:7.1f} | {median:8.1f} | {note} |")
    med = statistics.median
    print(f"\n| {'CPU ms per image':30} | {'tool':>7} | {'server':>8} |")
    print(f"|{'-' * 32}|{'-' * 9}|{'-' * 10}|")
    print(f"| {'img2dataset, originals kept':30} | {med(keep_cpu):7.2f} | {med(server_cpu['i2d']):8.2f} |")
    print(f"| {'annotate-anyone (one process)':30} | {ours_cpu:7.2f} | {med(server_cpu['ours']):8.2f} |")
    print(f"\n| {'stage (one process)':30} | {'ms/image':>9} |")
    print(f"|{'-' * 32}|{'-' * 11}|")
    for name, ms in {**profile, **models}.items():
        label = f"{name} (overlapped)" if name == "read" else name
        print(f"| {label:30} | {ms:9.2f} |")
    print(f"\nbest ratio {max(ours) / max(keep):.2f}")
    print(f"ratio {med(ours) / med(keep):.2f}")


if __name__ == "__main__":
    main()
