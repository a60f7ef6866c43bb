"""The worker processes that analyze image files for a scan.

`Workers` starts its processes the first time a batch of at least `INLINE_BELOW` files needs
them, and every split of the scan shares them after that; fewer files are analyzed in this
process, where a pool's start-up would cost more than it saves. While the workers start,
this process analyzes chunks itself, so no core waits. A few chunks per worker are in
flight at a time: memory stays flat however many files there are.

The workers come from a fork server (where the system has one): a fresh process, started
once, that imports numpy and Pillow and forks each worker from itself, so the imports are
paid once, not once per worker. Never a fork of this process: the gate holds threads and
locks.
"""

from __future__ import annotations

import itertools
import multiprocessing
import multiprocessing.context
import os
from collections import deque
from collections.abc import Iterable, Iterator
from multiprocessing.pool import AsyncResult, Pool
from types import TracebackType
from typing import TypeVar

from dlgate.dataanalysis import Chunk, Counts, Row, analyze_chunk

T = TypeVar("T")
CHUNK = 512  # files per worker task: large enough to vectorize, small enough to stream
INLINE_BELOW = 2048  # fewer files than this are analyzed in-process (no pool start-up)
Result = tuple[list[Row], Counts]


class Workers:
    """Analyzes chunks of files for one scan; close it (or use it as a context manager)."""

    def __init__(self, count: int, max_pixels: int) -> None:
        self.count = count
        self.max_pixels = max_pixels
        self._pool: Pool | None = None
        self._warm = False  # a worker has answered: they have started

    def __enter__(self) -> Workers:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def map(self, chunks: Iterable[tuple[T, Chunk]]) -> Iterator[tuple[T, list[Row], Counts]]:
        """(tag, cache rows, counters) of each (tag, chunk), in no particular order; the tag
        is the caller's, kept here while its chunk is analyzed."""
        todo = iter(chunks)
        if self._pool is None:
            first: list[tuple[T, Chunk]] = []
            files = 0
            while files < INLINE_BELOW and (item := next(todo, None)) is not None:
                first.append(item)
                files += len(item[1].paths)
            todo = itertools.chain(first, todo)
            if files < INLINE_BELOW or self.count <= 1:
                for tag, chunk in todo:
                    yield tag, *analyze_chunk(chunk, self.max_pixels)
                return
            self._pool = _start_method().Pool(self.count)
        pool = self._pool
        pending: deque[tuple[T, AsyncResult[Result]]] = deque()
        for tag, chunk in todo:
            if not self._warm and len(pending) >= 2 * self.count:
                # The workers are still importing: read on here meanwhile.
                yield tag, *analyze_chunk(chunk, self.max_pixels)
                self._warm = pending[0][1].ready()
                continue
            pending.append((tag, pool.apply_async(analyze_chunk, (chunk, self.max_pixels))))
            while pending and (len(pending) >= 3 * self.count or pending[0][1].ready()):
                self._warm = True
                done, result = pending.popleft()
                yield done, *result.get()
        while pending:
            done, result = pending.popleft()
            yield done, *result.get()


def _start_method() -> multiprocessing.context.BaseContext:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload(["dlgate.dataanalysis"])  # (before its server starts)
    return forkserver


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of `size` items (the last one shorter); `itertools.batched` from Python 3.12."""
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
