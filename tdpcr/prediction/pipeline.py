"""Overlapping I/O with compute: a reader thread ahead of the model, a writer thread behind it.

The engine reads a row strip, runs its windows through the model, blends them and writes the
finished rows. Reading (GDAL decode, normalisation) and writing (quantisation, GDAL encode)
release the GIL, so with :class:`Prefetcher` and :class:`BackgroundWriter` they run while the
model computes and the model does not wait on I/O. Both keep at most ``depth`` items in
flight, so memory stays bounded (a few row strips), and both re-raise a worker's exception in
the caller's thread (the first error wins; nothing later is written).

With ``threads=False`` (``--no-pipeline``) both run inline in the caller's thread, which is
what the per-phase timings of the benchmark use to give phase shares that add up to the wall
time.

:class:`PhaseTimes` adds up the seconds spent in each phase (thread-safe): with the pipeline
on, the read and write phases overlap the inference phase, so their sum exceeds the wall time.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_DONE = object()


class PhaseTimes:
    """Seconds per named phase, summed over calls from any thread."""

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(phase, time.perf_counter() - t0)

    def add(self, phase: str, seconds: float) -> None:
        with self._lock:
            self._seconds[phase] = self._seconds.get(phase, 0.0) + seconds

    def as_dict(self) -> dict[str, float]:
        with self._lock:
            return {k: round(v, 3) for k, v in self._seconds.items()}


class Prefetcher(Iterator[R]):
    """``fn(item)`` for each of ``items`` in order, computed up to ``depth`` items ahead.

    Iterate it from one thread; call :meth:`close` (or use it as a context manager) to stop
    the worker early. With ``threads=False`` it is a plain ``map``.
    """

    def __init__(
        self, fn: Callable[[T], R], items: Iterable[T], *, depth: int = 2, threads: bool = True
    ) -> None:
        self._fn, self._items = fn, iter(items)
        self._threads = threads
        self._stop = threading.Event()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._worker: threading.Thread | None = None
        if threads:
            self._worker = threading.Thread(target=self._run, name="tdpcr-reader", daemon=True)
            self._worker.start()

    def _put(self, value: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._items:
                if self._stop.is_set() or not self._put((True, self._fn(item))):
                    return
        except BaseException as err:  # handed to the consumer, raised there
            self._put((False, err))
            return
        self._put(_DONE)

    def __next__(self) -> R:
        if not self._threads:
            return self._fn(next(self._items))
        value = self._queue.get()
        if value is _DONE:
            raise StopIteration
        ok, payload = value
        if not ok:
            self.close()
            raise payload
        return payload

    def close(self) -> None:
        """Stop the worker (it finishes the item it is computing) and wait for it."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join()

    def __enter__(self) -> Prefetcher[R]:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class BackgroundWriter:
    """Runs submitted jobs one at a time, in submission order, in a writer thread.

    :meth:`submit` blocks while ``depth`` jobs are waiting (bounded memory) and raises the
    error of an earlier failed job; :meth:`close` waits for the queue to drain and raises it
    too. After a failure no further job runs. With ``threads=False`` jobs run inline.
    """

    def __init__(self, *, depth: int = 2, threads: bool = True) -> None:
        self._threads = threads
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self._worker: threading.Thread | None = None
        if threads:
            self._worker = threading.Thread(target=self._run, name="tdpcr-writer", daemon=True)
            self._worker.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is _DONE:
                return
            if self._error is None:
                try:
                    job()
                except BaseException as err:  # raised in the caller's thread
                    self._error = err

    def _raise_pending(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def submit(self, job: Callable[[], None]) -> None:
        """Queue ``job`` (run inline without threads)."""
        if not self._threads:
            job()
            return
        self._raise_pending()
        self._queue.put(job)

    def close(self) -> None:
        """Run what is queued, stop the thread, raise a job's error if one failed."""
        if self._worker is not None and self._worker.is_alive():
            self._queue.put(_DONE)
            self._worker.join()
        self._raise_pending()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
            return
        # Already failing: stop without masking the original error.
        if self._worker is not None and self._worker.is_alive():
            self._queue.put(_DONE)
            self._worker.join()
