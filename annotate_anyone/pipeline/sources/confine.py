"""Confinement of local reads: what a source may read, and opening a file without leaving its root.

A source's ``root`` (set when it is registered) is the folder its local reads must stay in: the folder
of a folder source, or the folder holding a local URL list (see catalog/sources.py for how it is
chosen). Paths are resolved (symlinks followed) and must land under the root; the file is then opened
one path component at a time with ``O_NOFOLLOW`` from the root, so a symlink swapped in after the check
is refused too. Only regular files are read (a FIFO named ``x.jpg`` would block a reader forever).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from urllib.parse import unquote, urlsplit

LOCAL_KINDS = frozenset({"folder", "url_list"})  # kinds whose uri is a path on this machine


class Refused(Exception):
    """A read the source's confinement forbids; ``reason`` is the item's drop reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def real(path: str | Path) -> Path:
    """``path`` with ``~`` expanded and every symlink resolved."""
    return Path(os.path.realpath(Path(str(path)).expanduser()))


def local_path(uri: str) -> str:
    """The filesystem path of a local URI (a path or ``file://``)."""
    return unquote(urlsplit(uri).path) if uri.startswith("file://") else uri


def is_local(uri: str) -> bool:
    return uri.startswith("file://") or "://" not in uri


def within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def root_for(path: str | Path, roots: list[Path]) -> Path | None:
    """The first of ``roots`` that ``path`` (resolved) lies under, or ``None``."""
    target = real(path)
    for root in roots:
        resolved = real(root)
        if within(target, resolved):
            return resolved
    return None


def uri_refusal(kind: str, uri: str, *, source_uri: str, root: str | None, local_list: bool) -> Refused | None:
    """Why a listed ``uri`` may not be read for a source of ``kind``, or ``None`` when it may.

    URL lists give http(s) URLs only, unless the source is explicitly a local list (``local`` option) with
    a root; folders give local paths; S3 prefixes give objects of their own bucket.
    """
    scheme = urlsplit(uri).scheme.lower() if "://" in uri else ""
    if scheme in ("http", "https"):
        if kind == "url_list":
            return None
    elif scheme == "s3":
        if kind == "s3_prefix" and urlsplit(uri).netloc == urlsplit(source_uri).netloc:
            return None
    elif scheme in ("", "file"):
        if root and (kind == "folder" or (kind == "url_list" and local_list)):
            return None
    what = "a local path" if scheme in ("", "file") else f"a {scheme}:// URI"
    hint = " (register the list with the `local` option to read local files)" if kind == "url_list" else ""
    return Refused("read:scheme_refused", f"a {kind} source may not read {what}: {uri[:200]}{hint}")


def open_confined(path: str, root: str) -> int:
    """A read-only file descriptor of the regular file ``path``, which must resolve under ``root``.

    Raises :class:`Refused` (``read:outside_root``, ``read:not_regular_file``) or ``FileNotFoundError``.
    """
    if not os.path.isabs(path):
        raise Refused("read:outside_root", f"not an absolute path: {path[:200]}")
    base = real(root)
    target = real(path)
    if not within(target, base):
        raise Refused("read:outside_root", f"{path[:200]} resolves outside the source's root")
    parts = target.relative_to(base).parts
    if not parts:
        raise Refused("read:not_regular_file", f"{path[:200]} is the root folder itself")
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        if not stat.S_ISREG(os.stat(parts[-1], dir_fd=fd, follow_symlinks=False).st_mode):  # before any open:
            raise Refused("read:not_regular_file", f"{path[:200]} is not a regular file")  # devices, sockets
        file_fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=fd)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError | NotADirectoryError):
            raise FileNotFoundError(path) from exc
        if exc.errno == errno.ELOOP:  # a symlink appeared after the check
            raise Refused("read:outside_root", f"{path[:200]} changed into a symlink while being read") from exc
        raise
    finally:
        os.close(fd)
    return file_fd


def open_regular(path: str) -> int:
    """A read-only descriptor of ``path`` (no confinement), refusing anything but a regular file."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise Refused("read:not_regular_file", f"{path[:200]} is not a regular file")
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)


def check_regular(fd: int, path: str) -> os.stat_result:
    """``fstat`` of ``fd``; raises ``read:not_regular_file`` for FIFOs, devices, sockets and folders."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise Refused("read:not_regular_file", f"{path[:200]} is not a regular file")
    return info
