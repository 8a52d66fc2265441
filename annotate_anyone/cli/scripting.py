"""What makes the CLI script well: one-line errors with exit status 2, ``--version``, quiet third-party
model logs, and following a job until it ends."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from annotate_anyone.errors import AnnotateAnyoneError

PROJECT_ERROR_EXIT = 2  # a project error (bad input, missing row, bad configuration): one line on stderr
UNEXPECTED_EXIT = 1  # a bug or an unforeseen failure: one line, the traceback with --verbose
# a followed job's final state -> exit status (``--wait`` / ``--follow``)
JOB_EXIT = {"succeeded": 0, "failed": 1, "interrupted": 4, "cancelled": 3}
FINAL_STATES = frozenset(JOB_EXIT)

_state = {"verbose": False}


def set_verbose(verbose: bool) -> None:
    _state["verbose"] = verbose


def is_verbose() -> bool:
    return _state["verbose"]


def package_version() -> str:
    """The installed distribution's version (package metadata), ``unknown`` when run from a bare checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("annotate-anyone")
    except PackageNotFoundError:
        return "unknown"


# ------------------------------------------------------------------------------------------- errors
def _settings_message(exc: Exception) -> str | None:
    """A settings validation error, named by its environment variables (``AA_PROFILE: ...``)."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError) or not exc.title.endswith("Settings"):
        return None
    parts = []
    for err in exc.errors():
        name = "AA_" + "__".join(str(p) for p in err["loc"]).upper() if err["loc"] else "settings"
        parts.append(f"{name}: {err['msg']}")
    return "bad configuration: " + "; ".join(parts)


def _database_message(exc: Exception) -> str | None:
    """The database cannot be opened or has no schema: say which one, and that ``init`` creates it."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    if not isinstance(exc, OperationalError | ProgrammingError):
        return None
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    try:
        from sqlalchemy.engine import make_url

        from annotate_anyone.settings import get_settings

        where = make_url(get_settings().db_url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 (the settings themselves may be what is broken)
        where = "the configured database"
    hint = ""
    if "unable to open database file" in reason or "no such table" in reason or "does not exist" in reason:
        hint = "; run `annotate-anyone init` first"
    return f"database {where}: {reason}{hint}"


def _os_message(exc: Exception) -> str | None:
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError):
        return f"{exc.strerror or type(exc).__name__}: {exc.filename}" if exc.filename else str(exc)
    return None


def expected_message(exc: BaseException) -> str | None:
    """The one line a project error prints; None for an unexpected exception."""
    if isinstance(exc, AnnotateAnyoneError):
        return str(exc) or type(exc).__name__
    if not isinstance(exc, Exception):
        return None
    for explain in (_settings_message, _database_message, _os_message):
        if (message := explain(exc)) is not None:
            return message
    return None


def report_error(exc: BaseException) -> int:
    """Print what went wrong on stderr (the traceback first with ``--verbose``); returns the exit status."""
    message = expected_message(exc)
    if is_verbose():
        traceback.print_exception(exc, file=sys.stderr)
    if message is not None:
        typer.echo(f"error: {message}", err=True)
        return PROJECT_ERROR_EXIT
    hint = "" if is_verbose() else " (run with --verbose for the traceback)"
    typer.echo(f"internal error: {type(exc).__name__}: {exc}{hint}", err=True)
    return UNEXPECTED_EXIT


class ProjectGroup(TyperGroup):
    """The top-level command group: every subcommand's failure goes through :func:`report_error`.

    Usage errors (typer's) and explicit exits pass through unchanged."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):  # usage errors and deliberate exits: typer's
            raise
        except Exception as exc:  # noqa: BLE001 (this is the CLI's one error boundary)
            raise typer.Exit(report_error(exc)) from None


# ---------------------------------------------------------------------------------- third-party logs
_NOISY_LOGGERS = ("absl", "tensorflow", "mediapipe", "transformers", "onnxruntime", "h5py", "PIL", "urllib3")
_QUIET_ENV = {
    "GLOG_minloglevel": "2",  # MediaPipe's glog: errors and worse only
    "TF_CPP_MIN_LOG_LEVEL": "3",  # TensorFlow Lite's C++ logs
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


# lines the model libraries' C++ code writes straight to file descriptor 2 (absl/glog INFO and WARNING lines,
# TensorFlow Lite's delegate notices); errors (E...) and fatal lines (F...) pass
_NATIVE_NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+:\d+\] "
    rb"|INFO: (Created|Initialized) TensorFlow Lite"
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \[[IW]:onnxruntime:)"
)


class NativeStderrFilter:
    """Route file descriptor 2 through a pipe whose reader drops :data:`_NATIVE_NOISE` lines.

    Python's own ``sys.stderr`` is moved to a duplicate of the real descriptor first, so rich's bars and
    click's messages reach the terminal directly (and still see a TTY); only native writes are filtered.
    Child processes inherit the filtered descriptor."""

    def __init__(self) -> None:
        self.saved_fd = os.dup(2)
        self.saved_stderr = sys.stderr
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self.reader = threading.Thread(target=self._pump, args=(read_fd,), name="stderr-filter", daemon=True)
        self.reader.start()
        encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
        self.python_stderr = open(  # noqa: SIM115 (open until exit: handlers may hold it)
            os.dup(self.saved_fd), "w", buffering=1, encoding=encoding, errors="backslashreplace"
        )
        sys.stderr = self.python_stderr

    def _pump(self, read_fd: int) -> None:
        pending = b""
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                *lines, pending = (pending + chunk).split(b"\n")
                kept = b"".join(line + b"\n" for line in lines if not _NATIVE_NOISE.match(line))
                if kept:
                    os.write(self.saved_fd, kept)
        if pending and not _NATIVE_NOISE.match(pending):
            os.write(self.saved_fd, pending)

    def close(self) -> None:
        """Put the real descriptor back and let the reader forward what is left.

        The Python-side stream stays open (a log handler may still hold it): it writes to the real stderr too."""
        try:
            self.python_stderr.flush()
        finally:
            sys.stderr = self.saved_stderr
            os.dup2(self.saved_fd, 2)  # closes the pipe's last write end: the reader sees end of file
            self.reader.join(timeout=2)
            os.close(self.saved_fd)


def filter_native_stderr() -> NativeStderrFilter | None:
    """Install :class:`NativeStderrFilter` when ``sys.stderr`` is the process's real descriptor 2 (not under a
    test runner's capture); returns it so that the caller can close it."""
    try:
        if sys.stderr is None or sys.stderr.fileno() != 2:
            return None
    except (AttributeError, OSError, ValueError):
        return None
    sys.stderr.flush()
    return NativeStderrFilter()


def quiet_third_party(verbose: bool) -> None:
    """Silence the model libraries' own chatter (unless ``--verbose``); call before they are imported.

    Only variables the user has not set are touched, so ``GLOG_minloglevel=0 annotate-anyone ...`` still works."""
    if verbose:
        return
    for name, value in _QUIET_ENV.items():
        os.environ.setdefault(name, value)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for module in ("google.protobuf", "mediapipe", "transformers", "onnxruntime", "torch", "timm", "huggingface_hub"):
        warnings.filterwarnings("ignore", module=module + r"(\..*)?")
    warnings.filterwarnings("ignore", message=r".*SymbolDatabase\.GetPrototype\(\) is deprecated.*")
    warnings.filterwarnings("ignore", message=r".*Protobuf gencode version.*")
    try:
        from absl import logging as absl_logging  # light: no TensorFlow behind it
    except ImportError:
        return
    absl_logging.set_verbosity(absl_logging.ERROR)
    absl_logging.set_stderrthreshold("error")


# ------------------------------------------------------------------------------------ following jobs
def job_exit_status(status: str) -> int:
    return JOB_EXIT.get(status, UNEXPECTED_EXIT)


def follow_job(
    job_id: int,
    read: Callable[[int], dict[str, Any]],
    *,
    interval: float = 1.0,
    tty: bool | None = None,
    out: Any = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll ``read(job_id)`` (the job row as a dict) until the job reaches a final state, showing its progress:
    a live bar on a terminal, else one plain line per change (at most one every ``5 * interval`` seconds, and
    always the last). Progress goes to stderr so that stdout stays clean for ``--json``."""
    from rich.console import Console

    console = Console(file=out or sys.stderr)
    tty = console.is_terminal if tty is None else tty
    info = read(job_id)
    if not tty:
        last_line = ""
        last_at = 0.0
        while True:
            line = f"job {job_id} {info['kind']}: {info['status']} {info['done']}/{info['total']}"
            final = info["status"] in FINAL_STATES
            if line != last_line and (final or time.monotonic() - last_at >= 5 * interval):
                console.print(line, highlight=False, soft_wrap=True)
                last_line, last_at = line, time.monotonic()
            if final:
                return info
            sleep(interval)
            info = read(job_id)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(f"job {job_id} {info['kind']} ({info['status']})", total=info["total"] or None)
        while True:
            bar.update(
                task,
                completed=info["done"],
                total=info["total"] or None,
                description=f"job {job_id} {info['kind']} ({info['status']})",
            )
            if info["status"] in FINAL_STATES:
                return info
            sleep(interval)
            info = read(job_id)
