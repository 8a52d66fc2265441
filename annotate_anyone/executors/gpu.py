"""What a model-serving (GPU) worker process needs: device and dtype, one load per model, a batcher.

* :func:`resolve_device` / :func:`resolve_dtype`: ``AA_MODELS__DEVICE`` (auto|cpu|cuda|cuda:N|mps) and
  ``AA_MODELS__DTYPE`` (auto|float32|bfloat16|float16); ``auto`` is bf16 on a CUDA device that supports
  it (fp16 otherwise) and fp32 on CPU.
* :func:`load_once`: a process-level cache of loaded labelers keyed by (kind, checkpoint, version,
  device, dtype, device_map): a worker process loads each model once, whatever number of units it runs.
* :class:`DynamicBatcher`: callers in several threads (a worker started with ``--pool threads``, one
  unit per thread) submit items; one thread runs the model on up to ``max_batch`` items collected within
  ``max_wait_s``. In a prefork worker each process has its own model and batches one unit at a time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Generic, TypeVar

from annotate_anyone.errors import ConfigError

logger = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}  # fmt: skip


def resolve_device(device: str | None = "auto") -> str:
    """``auto``: the first CUDA device when torch sees one, else ``cpu``. Asking for CUDA without one fails."""
    import torch

    device = (device or "auto").strip().lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"AA_MODELS__DEVICE={device} but torch sees no CUDA device (use auto or cpu)")
    if device != "cpu" and not device.startswith(("cuda", "mps")):
        raise ConfigError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps")
    return device


def resolve_dtype(dtype: str | None, device: str) -> Any:
    """The torch dtype: ``auto`` is bf16 on CUDA (fp16 where bf16 is unsupported) and fp32 elsewhere."""
    import torch

    name = (dtype or "auto").strip().lower()
    if name == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}: use auto, float32, bfloat16 or float16")
    return getattr(torch, DTYPES[name])


def checkpoint_version(path: str | Path) -> str:
    """A short content version of a checkpoint folder: its config and the sizes of its weight files."""
    p = Path(path)
    h = hashlib.sha256((p / "config.json").read_bytes() if (p / "config.json").is_file() else b"")
    for w in sorted(p.glob("*.safetensors")) + sorted(p.glob("*.bin")):
        h.update(f"{w.name}:{w.stat().st_size}:{int(w.stat().st_mtime)}".encode())
    return h.hexdigest()[:8]


_LOADED: dict[tuple[Hashable, ...], Any] = {}
_LOAD_LOCK = threading.Lock()
LOADS: dict[tuple[Hashable, ...], int] = {}  # how many times each key was loaded in this process (1 expected)


def load_once(kind: str, checkpoint: str | Path, factory: Callable[[], T], **options: Hashable) -> T:
    """The labeler for ``(kind, checkpoint, its version, options)``, built by ``factory`` at most once per process."""
    key = (kind, str(Path(checkpoint).resolve()), checkpoint_version(checkpoint), *sorted(options.items()))
    with _LOAD_LOCK:
        if key not in _LOADED:
            start = time.perf_counter()
            _LOADED[key] = factory()
            LOADS[key] = LOADS.get(key, 0) + 1
            logger.info("model loaded: %s %s (%s) in pid %d, %.1f s", kind, key[1], key[2], os.getpid(),
                           time.perf_counter() - start)  # fmt: skip
        return _LOADED[key]


def clear_loaded() -> None:
    """Forget every loaded model of this process (tests; a worker never needs it)."""
    with _LOAD_LOCK:
        _LOADED.clear()
        LOADS.clear()


class DynamicBatcher(Generic[T, R]):
    """Collects items from concurrent callers and runs ``fn`` on batches of up to ``max_batch``.

    A caller's items are queued; the first caller to find no batch running becomes the runner: it
    waits up to ``max_wait_s`` for the batch to fill, runs ``fn`` on it and hands each caller its
    results. Single-threaded use degenerates to one ``fn`` call per :meth:`run` (no waiting when
    a caller's own items already fill a batch).
    """

    def __init__(self, fn: Callable[[Sequence[T]], Sequence[R]], *, max_batch: int = 32, max_wait_s: float = 0.0):
        self.fn = fn
        self.max_batch = max(1, int(max_batch))
        self.max_wait_s = max(0.0, float(max_wait_s))
        self._cond = threading.Condition()
        self._pending: list[tuple[T, Future[R]]] = []
        self._running = False
        self.batches: list[int] = []  # sizes of the batches run (for reports and tests)

    def run(self, items: Sequence[T]) -> list[R]:
        futures: list[Future[R]] = []
        with self._cond:
            for item in items:
                fut: Future[R] = Future()
                self._pending.append((item, fut))
                futures.append(fut)
            self._cond.notify_all()
        while not all(f.done() for f in futures):
            self._drain()
        return [f.result() for f in futures]

    def _drain(self) -> None:
        with self._cond:
            if self._running:  # another caller is running a batch: wait for it, then look again
                self._cond.wait(timeout=0.05)
                return
            if not self._pending:
                return
            self._running = True
            if self.max_wait_s > 0 and len(self._pending) < self.max_batch:
                self._cond.wait_for(lambda: len(self._pending) >= self.max_batch, timeout=self.max_wait_s)
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        try:
            results = list(self.fn([item for item, _ in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)} items")
            for (_, fut), res in zip(batch, results, strict=True):
                fut.set_result(res)
        except BaseException as exc:  # every waiting caller gets the error, none hangs
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
        finally:
            with self._cond:
                self.batches.append(len(batch))
                self._running = False
                self._cond.notify_all()
