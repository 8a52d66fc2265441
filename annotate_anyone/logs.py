"""Logging, configured in one place: one JSON object per line on stderr, with the context of the event.

Every entry point calls :func:`configure_logging` once: the API server (``create_app``), the CLI, the Celery
worker (its ``setup_logging`` signal, so Celery keeps its hands off the root logger) and the embedded
executor's worker processes. ``AA_LOG_LEVEL`` sets the level (default INFO for servers and workers, WARNING
for the CLI), ``AA_LOG_FORMAT=text`` gives plain lines instead of JSON.

A line carries ``ts``, ``level``, ``logger``, ``event`` (a dotted name such as ``job.finished``, or
``message`` for plain log calls), ``message``, the fields the call passed, and the context in force:
``request_id`` (set by the API's request-id middleware from ``X-Request-ID``), ``job_id`` and ``unit``
(set while a job plans or runs a unit). Context lives in :mod:`contextvars`, so it follows a request or a
unit through its thread (and asyncio tasks), never leaking into another.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from annotate_anyone.settings import Settings

_CONTEXT: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("aa_log_context", default={})  # noqa: B039
_FIELDS = "aa_fields"  # LogRecord attribute holding an event's own fields
_EVENT = "aa_event"
HANDLER_NAME = "annotate-anyone"


def context() -> dict[str, Any]:
    """The fields in force now (``request_id``, ``job_id``, ``unit``, ...)."""
    return dict(_CONTEXT.get())


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (``None`` values skipped) to every log line written inside the block."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def bind(**fields: Any) -> contextvars.Token[dict[str, Any]]:
    """Add ``fields`` to the context until :func:`unbind` (for code that cannot use a ``with`` block)."""
    return _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})


def unbind(token: contextvars.Token[dict[str, Any]]) -> None:
    _CONTEXT.reset(token)


def event(logger: logging.Logger, name: str, level: int = logging.INFO, /, **fields: Any) -> None:
    """Log the event ``name`` (``job.finished``, ``item.dropped``, ...) with ``fields`` as JSON keys."""
    if not logger.isEnabledFor(level):
        return
    text = " ".join(f"{k}={v}" for k, v in fields.items())
    logger.log(level, "%s %s" if text else "%s", name, text, extra={_EVENT: name, _FIELDS: fields}, stacklevel=2)


class _ContextFilter(logging.Filter):
    """Stamps the context in force onto each record when it is made (the handler may run elsewhere)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "aa_context"):
            record.aa_context = _CONTEXT.get()
        return True


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring for the keys)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, _EVENT, "message"),
            "message": record.getMessage(),
        }
        out.update(getattr(record, "aa_context", None) or {})
        out.update(getattr(record, _FIELDS, None) or {})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(_jsonable(out), ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``time level logger message [context]``, for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ctx = getattr(record, "aa_context", None)
        return f"{line} [{' '.join(f'{k}={v}' for k, v in ctx.items())}]" if ctx else line


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at each record (test runners and CLI runners swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(
    level: str | int | None = None, fmt: str = "json", *, default_level: str = "INFO", stream: Any = None
) -> logging.Handler:
    """Install the one handler on the root logger (replacing an earlier one of ours); returns it.

    ``level`` is ``AA_LOG_LEVEL`` (``None``: ``default_level``); ``fmt`` is ``AA_LOG_FORMAT``.
    Uvicorn's and Celery's loggers propagate to it, so their lines come out in the same format.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    root.addHandler(handler)
    resolved = level if level is not None else default_level
    root.setLevel(resolved.upper() if isinstance(resolved, str) else resolved)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery"):
        named = logging.getLogger(name)  # their own handlers would print each line twice, unformatted
        named.handlers = []
        named.propagate = True
    return handler


def configure_from_settings(settings: Settings, *, default_level: str = "INFO") -> logging.Handler:
    """:func:`configure_logging` with ``AA_LOG_LEVEL`` and ``AA_LOG_FORMAT`` from ``settings``."""
    return configure_logging(settings.log_level, settings.log_format, default_level=default_level)


def current_config() -> tuple[str | int, str] | None:
    """``(level, format)`` of the handler :func:`configure_logging` installed, or ``None`` (not configured):
    what a child process needs to log the same way."""
    root = logging.getLogger()
    for handler in root.handlers:
        if handler.get_name() == HANDLER_NAME:
            return logging.getLevelName(root.level), "json" if isinstance(handler.formatter, JsonFormatter) else "text"
    return None
