"""Local directories, recursive by glob.

Cursor: a high-water mark over each file's change time, ``t = max(mtime, ctime)`` in nanoseconds:
``{"mark_ns": t, "at_mark": [relative paths whose t equals the mark]}``. A re-scan lists files with
``t > mark`` plus files at exactly the mark not listed before. The ctime matters: a file copied in
with its old mtime preserved (``cp -p``, ``rsync -a``) still gets a fresh ctime, so it is seen as new.
Files are listed in ``(t, path)`` order, so a scan cut short by ``limit`` continues where it stopped.

Symlinked folders are not descended into; symlinked files, FIFOs and other special files with an image
extension are listed, and reading them is confined (pipeline/sources/confine.py): one that leads out of
the source's root ends ``read:outside_root``, one that is not a regular file ``read:not_regular_file``.
"""

from __future__ import annotations

from pathlib import Path
from stat import S_ISDIR
from typing import Any

from annotate_anyone.errors import InvalidInput
from annotate_anyone.pipeline.sources.base import IMAGE_EXTENSIONS, SourceItem, SourceReader
from annotate_anyone.pipeline.sources.confine import real, within


class FolderReader(SourceReader):
    """Image files under ``root`` matching ``pattern`` (default all files, filtered by image extension)."""

    def __init__(
        self,
        root: str | Path,
        *,
        pattern: str = "**/*",
        extensions: list[str] | None = None,
        confine_to: str | None = None,
    ) -> None:
        self.root = Path(str(root).removeprefix("file://")).expanduser().resolve()
        self.pattern = pattern
        self.extensions = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions or IMAGE_EXTENSIONS}
        self.confine_to = confine_to

    def scan(self, cursor: dict[str, Any] | None = None, limit: int | None = None) -> tuple[list[SourceItem], dict]:
        if self.confine_to is not None and not within(real(self.root), real(self.confine_to)):
            raise InvalidInput(f"{self.root} is outside the source's root {self.confine_to}")
        if not self.root.is_dir():
            raise InvalidInput(f"not a directory: {self.root}")
        mark = int((cursor or {}).get("mark_ns", -1))
        at_mark = set((cursor or {}).get("at_mark", []))
        fresh: list[tuple[int, str, Path]] = []
        for path in self.root.glob(self.pattern):
            if path.suffix.lower() not in self.extensions or path.name.startswith("."):
                continue
            try:
                stat = path.stat()
            except OSError:
                continue  # vanished while listing, or a dangling symlink
            if S_ISDIR(stat.st_mode):
                continue
            changed = max(stat.st_mtime_ns, stat.st_ctime_ns)
            rel = path.relative_to(self.root).as_posix()
            if changed > mark or (changed == mark and rel not in at_mark):
                fresh.append((changed, rel, path))
        fresh.sort()
        if limit is not None:
            fresh = fresh[:limit]
        items = [SourceItem(uri=str(path), meta={"path": rel, "mtime_ns": t}) for t, rel, path in fresh]
        if fresh:
            new_mark = fresh[-1][0]
            same = {rel for t, rel, _ in fresh if t == new_mark}
            at_mark = (at_mark | same) if new_mark == mark else same
            mark = new_mark
        return items, {"mark_ns": mark, "at_mark": sorted(at_mark)}
