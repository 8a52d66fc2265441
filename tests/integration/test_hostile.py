"""The platform tried as an attacker would (issue 14), on loopback only.

Every test here runs under :class:`tests.hostile.LoopbackGuard`: a connection or name lookup to anything
but loopback is refused in this process even where the code under test allows private addresses, and
the tests that redirect off loopback assert the guard had to refuse it (nothing left the machine).
Subprocesses (the CLI) only ever get loopback URLs and local folders.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import multiprocessing as mp
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select, update

from annotate_anyone import jobs
from annotate_anyone.access import auth
from annotate_anyone.access.home_secrets import check_listen
from annotate_anyone.access.ratelimit import MemoryRateLimiter
from annotate_anyone.api.app import create_app
from annotate_anyone.catalog.models import Image, Item, ItemStatus, Source
from annotate_anyone.catalog.sources import create_source
from annotate_anyone.db.base import session_scope, utcnow
from annotate_anyone.errors import ConfigError
from annotate_anyone.executors.inline import InlineExecutor
from annotate_anyone.home.setup import init_home
from annotate_anyone.jobs.models import Job, JobStatus
from annotate_anyone.jobs.recovery import recover
from annotate_anyone.pipeline.fetch import HttpFetcher
from annotate_anyone.review import media
from annotate_anyone.settings import SECRETS_FILE, Settings, reveal
from tests.hostile import ANY, DripServer, LoopbackGuard, jpeg_bytes, spend_tokens, write_corpus
from tests.servers import free_port

STAGES = ["read", "decode", "seen", "store"]  # no model stages: the hostile part is reading and decoding
CLI = [sys.executable, "-m", "annotate_anyone.cli"]


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[LoopbackGuard]:
    with LoopbackGuard.get().watching() as guard:
        yield guard


@pytest.fixture
def drip() -> Iterator[DripServer]:
    server = DripServer(interval=0.3)
    yield server
    server.close()


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    """An initialised embedded home, read back the way a fresh process reads it (generated secrets)."""
    init_home(Settings(home=tmp_path / "home", workers=1))
    return Settings(home=tmp_path / "home", workers=1, round_threshold=0)


def _ingest(settings: Settings, source_id: int, **params: Any) -> Job:
    with session_scope(settings.db_url) as session:
        job_id = jobs.create_job(
            session, kind="ingest", params={"source_ids": [source_id], "stages": STAGES, "auto_round": False, **params}
        ).id
    InlineExecutor(settings).run(job_id)
    with session_scope(settings.db_url) as session:
        return jobs.get_job(session, job_id)


def _items(settings: Settings, source_id: int) -> dict[str, Item]:
    with session_scope(settings.db_url) as session:
        return {i.uri: i for i in session.scalars(select(Item).where(Item.source_id == source_id))}


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "AA_HOME": str(settings.home),
        "AA_WORKERS": "1",
        "AA_ROUND_THRESHOLD": "0",
        "AA_INGEST_STAGES": json.dumps(STAGES),
        **extra,
    }


# ------------------------------------------------------------------------------------ 1. secrets


def test_init_generates_private_secrets_and_placeholders_are_refused(tmp_path: Path) -> None:
    bare = Settings(home=tmp_path / "home")
    assert bare.has_placeholder_secrets
    info = init_home(bare)
    path = Path(info["secrets"])
    assert path == bare.resolved_home / SECRETS_FILE and stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = Settings(home=tmp_path / "home")
    stored = json.loads(path.read_text())
    assert reveal(loaded.secret_key) == stored["secret_key"]
    assert reveal(loaded.webhook_secret) == stored["webhook_secret"]
    assert not loaded.has_placeholder_secrets and len(reveal(loaded.secret_key)) >= 32
    assert stored["secret_key"] not in repr(loaded)  # SecretStr: never in reprs or logs
    other = Settings(home=tmp_path / "other")
    assert reveal(loaded.secret_key) != reveal(other.secret_key)  # other homes: other secrets
    init_home(bare)
    assert json.loads(path.read_text()) == stored  # init again keeps them
    check_listen(loaded, "0.0.0.0")
    check_listen(bare, "127.0.0.1")
    check_listen(bare, "::1")
    for host in ("0.0.0.0", "::", "192.168.1.10"):
        with pytest.raises(ConfigError, match="placeholder"):
            check_listen(bare, host)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Settings(home=tmp_path / "home")


def test_forged_and_endless_media_links_are_refused(home: Settings) -> None:
    client = TestClient(create_app(home))
    now = int(time.time())
    forged = hmac.new(b"change-me", f"1:{now + 60}".encode(), hashlib.sha256).hexdigest()
    response = client.get("/review/media/1", params={"exp": now + 60, "sig": forged})
    assert response.status_code == 422 and "signature" in response.json()["detail"]
    endless = hmac.new(reveal(home.secret_key).encode(), f"1:{2**62}".encode(), hashlib.sha256).hexdigest()
    response = client.get("/review/media/1", params={"exp": 2**62, "sig": endless})  # even correctly signed
    assert response.status_code == 422 and "longer" in response.json()["detail"]
    url = media.signed_media_url(home, 1, ttl_s=10**9)  # asking for more gets the maximum
    exp = int(re.search(r"exp=(\d+)", url).group(1))
    assert exp <= time.time() + media.max_ttl(home) + 1
    assert client.get(url.removeprefix(home.public_url)).status_code == 404  # verifies; no person 1
    placeholder = Settings(home=home.home, secret_key="change-me")
    placeholder.secret_key = SecretStr("change-me")  # a home without generated secrets
    with pytest.raises(Exception, match="AA_SECRET_KEY"):
        media.verify_media(placeholder, 1, now + 60, forged)


def test_webhook_refuses_placeholder_and_checks_the_secret_before_the_body(home: Settings) -> None:
    client = TestClient(create_app(home), raise_server_exceptions=False)
    event = {"action": "ANNOTATION_CREATED", "project": {"id": 999}}
    assert client.post("/review/webhook", json=event, headers={"X-AA-Webhook-Secret": "change-me"}).status_code == 403
    nested = b"[" * 100_000 + b"]" * 100_000
    headers = {"content-type": "application/json"}
    assert client.post("/review/webhook", content=nested, headers=headers).status_code == 403  # not parsed
    with_secret = {**headers, "X-AA-Webhook-Secret": reveal(home.webhook_secret)}
    assert client.post("/review/webhook", content=nested, headers=with_secret).status_code == 422
    assert client.post("/review/webhook", content=b"{" * 10, headers=with_secret).status_code == 422


# ------------------------------------------------------------------------------------ 2. drip-feeding


@pytest.mark.parametrize("path", ["/drip-headers", "/drip-body"])
def test_a_dripping_server_cannot_outlast_the_deadline(drip: DripServer, path: str) -> None:
    with HttpFetcher(timeout=1.0, deadline=2.0, retries=2, backoff=0.01, allow_networks=("127.0.0.0/8",)) as fetcher:
        start = time.monotonic()
        result = fetcher.fetch(drip.base + path)
        elapsed = time.monotonic() - start
    assert result.reason == "fetch:timeout", result.detail
    assert elapsed < 2.0 + 1.5, elapsed  # one byte every 0.3 s never resets the clock; no retry past it


def test_an_ingest_moves_on_past_dripping_urls(home: Settings, drip: DripServer, tmp_path: Path) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{drip.base}/drip-headers\n{drip.base}/ok-1.jpg\n{drip.base}/drip-body\n")
    settings = home.model_copy(update={"fetch_deadline_s": 1.5, "fetch_timeout_s": 1.0})
    with session_scope(settings.db_url) as session:
        source_id = create_source(session, name="drip", kind="url_list", uri=str(urls), allow_private=True).id
    job = _ingest(settings, source_id)
    assert job.status == JobStatus.succeeded and (job.done, job.total) == (3, 3)
    outcome = {uri.rsplit("/", 1)[-1]: (i.status, i.reason) for uri, i in _items(settings, source_id).items()}
    assert outcome == {
        "drip-headers": (ItemStatus.failed, "fetch:timeout"),
        "drip-body": (ItemStatus.failed, "fetch:timeout"),
        "ok-1.jpg": (ItemStatus.kept, None),
    }


@pytest.mark.parametrize(
    ("options", "path", "reason"),
    [
        ({}, "/to-private", "fetch:ssrf_blocked"),  # the default guard: loopback itself is refused
        ({"allow_networks": ("127.0.0.0/8",)}, "/to-private", "fetch:ssrf_blocked"),  # the target is refused
        ({"allow_networks": ("127.0.0.0/8",)}, "/to-public", "fetch:connection"),  # public: only the test guard
        ({"allow_private": True}, "/to-private", "fetch:connection"),  # the SSRF guard lifted: the test guard
        ({"allow_private": True}, "/to-public", "fetch:connection"),
    ],
)
def test_no_redirect_leaves_loopback_even_with_allow_private(
    drip: DripServer, loopback_only: LoopbackGuard, options: dict[str, Any], path: str, reason: str
) -> None:
    with HttpFetcher(timeout=1.0, deadline=3.0, retries=0, **options) as fetcher:
        result = fetcher.fetch(drip.base + path)
    assert not result.ok and result.reason == reason, result.detail
    target = "10.255.255.1" if path == "/to-private" else "93.184.216.34"
    if reason == "fetch:connection":  # the fetcher tried; the guard stopped it at connect
        assert loopback_only.refused == [f"connect {target}:80"]
    else:
        assert loopback_only.refused == []


# ------------------------------------------------------------------------------- 3. local files


def test_hostile_folder_every_file_ends_with_a_reason(home: Settings, tmp_path: Path) -> None:
    folder, outside = tmp_path / "hostile", tmp_path / "outside"
    expected = write_corpus(folder, outside)
    with session_scope(home.db_url) as session:
        source_id = create_source(session, name="hostile", kind="folder", uri=str(folder)).id
    job = _ingest(home, source_id, batch_size=8)
    assert job.status == JobStatus.succeeded and job.done == job.total == len(expected), (job.done, job.total)
    items = {Path(uri).name: item for uri, item in _items(home, source_id).items()}
    assert set(items) == set(expected)  # nothing listed through linked-dir/, nothing missing
    for name, want in expected.items():
        item = items[name]
        assert item.status != ItemStatus.pending, name
        if item.status != ItemStatus.kept:
            assert item.reason, name
        if want != ANY:
            assert item.reason is not None and item.reason.startswith(want), (name, item.reason, item.detail)
    trio = sorted(items[n].status.value for n in ("good.jpg", "copy.jpg", "inside-link.jpg"))
    assert trio == ["duplicate", "duplicate", "kept"]
    secret = hashlib.sha256((outside / "secret.jpg").read_bytes()).hexdigest()
    with session_scope(home.db_url) as session:
        assert session.scalar(select(Image.id).where(Image.sha256 == secret)) is None  # never read


def test_url_lists_read_http_only_unless_local_and_then_only_under_the_root(
    home: Settings, drip: DripServer, tmp_path: Path
) -> None:
    root = tmp_path / "lists"
    (root / "imgs").mkdir(parents=True)
    (root / "imgs" / "a.jpg").write_bytes(jpeg_bytes(5))
    (tmp_path / "outside.jpg").write_bytes(jpeg_bytes(6))
    (root / "imgs" / "link.jpg").symlink_to(tmp_path / "outside.jpg")
    entries = [
        "file:///etc/passwd",
        "/etc/hostname",
        "../outside.jpg",
        "imgs/a.jpg",
        "imgs/link.jpg",
        "s3://some-bucket/key.jpg",
        "ftp://127.0.0.1/x.jpg",
        f"{drip.base}/ok-7.jpg",
    ]
    (root / "urls.txt").write_text("\n".join(entries) + "\n")
    (root / "local.txt").write_text("\n".join(entries[:5]) + "\n")
    with session_scope(home.db_url) as session:
        web = create_source(session, name="web", kind="url_list", uri=str(root / "urls.txt"), allow_private=True).id
        local = create_source(
            session, name="local", kind="url_list", uri=str(root / "local.txt"), options={"local": True}
        ).id
    assert _ingest(home, web).status == JobStatus.succeeded
    outcome = {uri: (i.status.value, i.reason) for uri, i in _items(home, web).items()}
    refused = ("failed", "read:scheme_refused")
    assert outcome == {
        "file:///etc/passwd": refused,
        "/etc/hostname": refused,
        "../outside.jpg": refused,
        "imgs/a.jpg": refused,
        "imgs/link.jpg": refused,
        "s3://some-bucket/key.jpg": refused,
        "ftp://127.0.0.1/x.jpg": refused,
        f"{drip.base}/ok-7.jpg": ("kept", None),
    }
    assert _ingest(home, local).status == JobStatus.succeeded
    outcome = {Path(uri).name: (i.status.value, i.reason) for uri, i in _items(home, local).items()}
    assert outcome == {
        "passwd": ("failed", "read:outside_root"),
        "hostname": ("failed", "read:outside_root"),
        "outside.jpg": ("failed", "read:outside_root"),
        "a.jpg": ("kept", None),
        "link.jpg": ("failed", "read:outside_root"),
    }


def test_only_admins_register_local_paths_and_only_under_source_roots(home: Settings, tmp_path: Path) -> None:
    roots = tmp_path / "allowed"
    (roots / "photos").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (roots / "sneaky").symlink_to(tmp_path / "secret", target_is_directory=True)
    settings = home.model_copy(update={"source_roots": [roots]})
    with session_scope(settings.db_url) as session:
        keys = {r: auth.create_api_key(session, name=r, role=r)[1] for r in ("admin", "engineer", "annotator")}
    client = TestClient(create_app(settings))

    def post(role: str, body: dict[str, Any]) -> httpx.Response:
        return client.post("/sources", json=body, headers={"Authorization": f"Bearer {keys[role]}"})

    for kind, uri in (("folder", "/etc"), ("url_list", "/etc/shadow"), ("folder", str(roots / "photos"))):
        assert post("engineer", {"name": f"e-{kind}-{uri}", "kind": kind, "uri": uri}).status_code == 403
        assert post("annotator", {"name": f"a-{kind}-{uri}", "kind": kind, "uri": uri}).status_code == 403
    lax = {"name": "lax", "kind": "s3_prefix", "uri": "s3://b/p/", "allow_private": True}
    assert post("engineer", lax).status_code == 403
    assert post("engineer", {"name": "s3", "kind": "s3_prefix", "uri": "s3://b/p/"}).status_code == 201
    for uri in ("/etc", str(tmp_path / "secret"), str(roots / "sneaky"), str(roots / ".." / "secret")):
        response = post("admin", {"name": f"x-{uri}", "kind": "folder", "uri": uri})
        assert response.status_code == 422 and "source root" in response.json()["detail"], uri
    created = post("admin", {"name": "photos", "kind": "folder", "uri": str(roots / "photos")})
    assert created.status_code == 201 and created.json()["root"] == str(roots.resolve())
    bad = post("admin", {"name": "l", "kind": "url_list", "uri": str(roots / "u.txt"), "options": {"local": "yes"}})
    assert bad.status_code == 422
    no_roots = TestClient(create_app(home))
    response = no_roots.post(
        "/sources",
        json={"name": "f", "kind": "folder", "uri": str(roots / "photos")},
        headers={"Authorization": f"Bearer {keys['admin']}"},
    )
    assert response.status_code == 422 and "AA_SOURCE_ROOTS" in response.json()["detail"]


# -------------------------------------------------------------------------------- 4. request limits


def test_request_limits_hold_before_parsing_and_no_anonymous_5xx(home: Settings, tmp_path: Path) -> None:
    settings = home.model_copy(update={"max_body_bytes": 64 * 1024})
    with session_scope(settings.db_url) as session:
        admin = auth.create_api_key(session, name="admin", role="admin")[1]
        trainer = auth.create_api_key(session, name="trainer", role="trainer")[1]
    client = TestClient(create_app(settings), raise_server_exceptions=False)
    as_admin = {"Authorization": f"Bearer {admin}"}
    big = json.dumps({"name": "big", "kind": "s3_prefix", "uri": "s3://b/p", "options": {"x": "a" * 100_000}})
    too_big = client.post("/sources", content=big, headers={**as_admin, "content-type": "application/json"})
    assert too_big.status_code == 413 and too_big.json()["error"] == "payload_too_large"
    options = {"name": "opts", "kind": "s3_prefix", "uri": "s3://b/p", "options": {"x": "a" * 20_000}}
    assert client.post("/sources", json=options, headers=as_admin).status_code == 422  # options are not data
    deep = b'{"name": "d", "kind": "s3_prefix", "uri": "s3://b/p", "options": ' + b'{"a":' * 70 + b"1" + b"}" * 71
    response = client.post("/sources", content=deep, headers={**as_admin, "content-type": "application/json"})
    assert response.status_code == 422 and "deeper" in response.json()["detail"]
    brackets_in_strings = json.dumps({"name": "[" * 150, "kind": "s3_prefix", "uri": "s3://b/{{{{"})
    ok = client.post("/sources", content=brackets_in_strings, headers={**as_admin, "content-type": "application/json"})
    assert ok.status_code == 201, ok.text
    as_trainer = {"Authorization": f"Bearer {trainer}"}
    for name in ("../../etc/passwd", "..%2f..%2fetc%2fpasswd", "%2e%2e/%2e%2e/etc/passwd", "/etc/passwd", "x/../../y"):
        response = client.get(f"/releases/2026.01.01.1/files/{name}", headers=as_trainer)
        assert response.status_code in (404, 422), (name, response.status_code)

    anonymous = [
        ("POST", "/review/webhook", b"[" * 100_000 + b"]" * 100_000, "application/json"),
        ("POST", "/review/webhook", b"x" * 200_000, "application/json"),
        ("POST", "/sources", b"{" * 100_000, "application/json"),
        ("POST", "/sources", b"x" * 200_000, "application/json"),
        ("POST", "/login", b"username=" + b"a" * 100_000, "application/x-www-form-urlencoded"),
        ("POST", "/login", b"\xff\xfe" * 1000, "multipart/form-data; boundary=x"),
        ("POST", "/jobs", b'{"kind": "ingest", "params": ' + b"[" * 5000 + b"]" * 5000 + b"}", "application/json"),
        ("GET", "/review/media/1?exp=99999999999999999999&sig=" + "0" * 64, b"", ""),
        ("GET", "/review/media/-1?exp=1&sig=zz", b"", ""),
        ("GET", "/review/media/..%2f..%2fetc%2fpasswd?exp=1&sig=" + "0" * 64, b"", ""),
        ("GET", "/releases/..%2f..%2fetc/files/passwd", b"", ""),
        ("GET", "/images/99999999999999999999999", b"", ""),
        ("GET", "/jobs?limit=-1&offset=99999999999999999999", b"", ""),
    ]
    for method, path, body, ctype in anonymous:
        headers = {"content-type": ctype} if ctype else {}
        response = client.request(method, path, content=body or None, headers=headers)
        assert response.status_code < 500, (method, path, response.status_code, response.text[:200])
    oversized = client.post("/review/webhook", content=b"x" * 200_000, headers={"content-type": "application/json"})
    assert oversized.status_code == 413


def test_chunked_bodies_are_cut_at_the_cap_on_a_live_server(home: Settings) -> None:
    from tests.servers import app_in_thread

    settings = home.model_copy(update={"max_body_bytes": 64 * 1024})

    def chunks() -> Iterator[bytes]:
        for _ in range(100):  # 6.4 MB, no Content-Length
            yield b"[" * 65536

    with app_in_thread(create_app(settings)) as base:
        for path, headers in (
            ("/review/webhook", {"X-AA-Webhook-Secret": reveal(settings.webhook_secret)}),
            ("/sources", {}),
        ):
            response = httpx.post(
                base + path, content=chunks(), headers={**headers, "content-type": "application/json"}
            )
            assert response.status_code == 413, (path, response.status_code, response.text[:200])


# ----------------------------------------------------------------------------- 5. concurrent ingests


def _photos(folder: Path, n: int, start: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, n):
        (folder / f"{i}.jpg").write_bytes(jpeg_bytes(1000 + i, side=32))
    return folder


def test_a_second_ingest_of_a_claimed_source_reports_already_running(home: Settings, tmp_path: Path) -> None:
    folder = _photos(tmp_path / "photos", 40)
    with session_scope(home.db_url) as session:
        source_id = create_source(session, name=str(folder), kind="folder", uri=str(folder)).id
        first = jobs.create_job(session, kind="ingest", params={"source_ids": [source_id], "stages": STAGES}).id
    units = jobs.plan_job(first, home)  # the first job has listed the folder and holds it
    cli = subprocess.run([*CLI, "ingest", str(folder)], env=_env(home), capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2, cli.stdout + cli.stderr
    assert "already running" in cli.stdout + cli.stderr and "Traceback" not in cli.stderr
    for unit in units:
        jobs.run_unit(first, unit, home)
    with session_scope(home.db_url) as session:
        done = jobs.get_job(session, first)
        assert (done.status, done.done, done.total) == (JobStatus.succeeded, 40, 40)
        refused = session.scalars(select(Job).where(Job.id != first)).one()
        assert refused.status == JobStatus.cancelled and refused.result["already_running"] == first
        assert session.scalar(select(Source.claimed_by).where(Source.id == source_id)) is None  # released
    # a holder whose heartbeat stopped (its process died after listing) is taken over; its items are done
    _photos(folder, 45, start=40)
    with session_scope(home.db_url) as session:
        stale = jobs.create_job(session, kind="ingest", params={"source_ids": [source_id], "stages": STAGES}).id
    assert len(jobs.plan_job(stale, home)) == 1
    with session_scope(home.db_url) as session:
        session.execute(update(Job).where(Job.id == stale).values(heartbeat_at=utcnow().replace(year=2000)))
    cli = subprocess.run([*CLI, "ingest", str(folder)], env=_env(home), capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert re.search(r"succeeded 5/5", cli.stdout), cli.stdout


def test_two_ingests_racing_over_one_folder_keep_their_counters_right(home: Settings, tmp_path: Path) -> None:
    folder = _photos(tmp_path / "race", 400)
    env = _env(home)
    procs = [
        subprocess.Popen(
            [*CLI, "ingest", str(folder)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes in ([0, 0], [0, 2]), (codes, outs)
    assert all("Traceback" not in err for _, err in outs), outs
    with session_scope(home.db_url) as session:
        items = session.scalars(select(Item)).all()
        assert len(items) == 400 and all(i.status != ItemStatus.pending for i in items)
        for job in session.scalars(select(Job)):
            mine = sum(1 for i in items if i.job_id == job.id)
            if job.status == JobStatus.succeeded:
                assert job.done == job.total == mine, (job.id, job.done, job.total, mine)
            else:
                assert job.status == JobStatus.cancelled and mine == 0
        assert sum(j.done for j in session.scalars(select(Job))) == 400


# --------------------------------------------------------------------------- 6. heartbeats, reclaim


def test_a_killed_job_is_interrupted_then_resumed_and_stale_shards_go(
    home: Settings, drip: DripServer, tmp_path: Path
) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{drip.base}/ok-11.jpg\n{drip.base}/drip-headers\n{drip.base}/ok-12.jpg\n")
    env = _env(
        home,
        AA_JOB_HEARTBEAT_S="0.2",
        AA_JOB_STALE_S="2",
        AA_FETCH_DEADLINE_S="600",
        AA_INGEST_STAGES=json.dumps(["read", "decode", "seen", "store"]),
    )
    shard = home.resolved_home / "objects" / "releases" / "2026.01.01.1" / ".tmp-shard-000.tar"
    shard.parent.mkdir(parents=True)
    shard.write_bytes(b"half a shard")  # what a killed export leaves
    os.utime(shard, (time.time() - 3600, time.time() - 3600))
    proc = subprocess.Popen(
        [*CLI, "ingest", str(urls), "--allow-private", "--name", "killed"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while "/drip-headers" not in drip.hits:
            assert time.monotonic() < deadline and proc.poll() is None, "the ingest never reached the dripping URL"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with session_scope(home.db_url) as session:
        job = session.scalars(select(Job)).one()
        assert job.status == JobStatus.running and job.heartbeat_at is not None
        job_id = job.id
    time.sleep(2.5)
    status = subprocess.run([*CLI, "status", "--job", str(job_id), "--json"], env=env, capture_output=True, text=True)
    info = json.loads(status.stdout)
    assert info["status"] == "interrupted" and f"annotate-anyone run {job_id}" in info["error"]
    assert f"run {job_id}" in status.stderr
    assert not shard.exists()  # swept on that start
    with session_scope(home.db_url) as session:
        assert session.scalar(select(Source.claimed_by)) is None
    resumed = subprocess.run(
        [*CLI, "run", str(job_id)], env={**env, "AA_FETCH_DEADLINE_S": "1.5"}, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    with session_scope(home.db_url) as session:
        job = jobs.get_job(session, job_id)
        assert (job.status, job.done, job.total) == (JobStatus.succeeded, 3, 3)
        reasons = sorted(str(i.reason) for i in session.scalars(select(Item)))
        assert reasons == ["None", "None", "fetch:timeout"]


def test_service_mode_requeues_stale_running_jobs_once(home: Settings) -> None:
    with session_scope(home.db_url) as session:
        fresh = jobs.create_job(session, kind="export", params={}).id
        stale = jobs.create_job(session, kind="export", params={}).id
        queued = jobs.create_job(session, kind="export", params={}).id
        long_ago = utcnow().replace(year=2000)
        session.execute(update(Job).where(Job.id.in_([fresh, stale])).values(status=JobStatus.running))
        session.execute(update(Job).where(Job.id == fresh).values(heartbeat_at=utcnow()))
        session.execute(update(Job).where(Job.id == stale).values(heartbeat_at=long_ago))
        session.execute(update(Job).where(Job.id == queued).values(created_at=long_ago))
    submitted: list[int] = []
    report = recover(home, requeue=submitted.append)
    assert report["requeued"] == [stale] and submitted == [stale]  # a queued job waits on the broker: left
    assert recover(home, requeue=submitted.append)["requeued"] == []  # its heartbeat was renewed
    assert recover(home)["interrupted"] == []  # nothing is silent now, and queued jobs are never reclaimed
    with session_scope(home.db_url) as session:
        assert jobs.get_job(session, stale).status == JobStatus.running
        assert jobs.get_job(session, fresh).status == JobStatus.running
        assert jobs.get_job(session, queued).status == JobStatus.queued


# ----------------------------------------------------------------------------------- 7. rate limits


def test_the_embedded_limiter_is_shared_by_processes(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=spend_tokens, args=(str(tmp_path / "rl.db"), "login:x", 10, out)) for _ in range(3)]
    for p in procs:
        p.start()
    allowed = sum(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(30)
    assert allowed == 5


def test_eviction_never_frees_a_locked_out_bucket() -> None:
    now = [0.0]
    limiter = MemoryRateLimiter(clock=lambda: now[0], max_keys=10)
    spent = [limiter.take("victim", capacity=5, rate=0.01) for _ in range(6)]
    assert spent[:5] == [0.0] * 5 and spent[5] > 0
    waits = [limiter.take(f"spray-{i}", capacity=5, rate=0.01) for i in range(50)]
    assert waits[:9] == [0.0] * 9 and all(w > 0 for w in waits[9:])  # full of live buckets: newcomers wait
    assert limiter.take("victim", capacity=5, rate=0.01) > 0  # still locked out
    now[0] = 1000.0  # every bucket has refilled: forgetting them changes nothing
    assert limiter.take("newcomer", capacity=5, rate=0.01) == 0.0


def test_login_attempts_are_limited_across_server_processes(home: Settings) -> None:
    port = free_port()
    server = subprocess.Popen(
        [*CLI, "serve", "--workers", "2", "--port", str(port)],
        env=_env(home, AA_AUTH__LOGIN_PER_SECOND="0.001"),  # no refill during the test: exactly the burst passes
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "server did not start"
            time.sleep(0.3)
        codes = []
        for _ in range(30):
            with httpx.Client(base_url=base) as client:  # a new connection each time: both workers answer
                page = client.get("/login")
                token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
                form = {"username": "admin", "password": "wrong", "csrf_token": token}
                codes.append(client.post("/login", data=form).status_code)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    assert sum(code != 429 for code in codes) == home.auth.login_burst, codes
