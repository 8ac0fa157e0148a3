"""The service's model calls, off the event loop, and only for clients that are still there.

    pool = WorkerPool(workers=1, queue=32)
    with pool.admit():                                              # Busy when every worker and queue place is taken
        result, waited_ms = await pool.call(fn, gone=request.is_disconnected)   # ClientGone once the client has left

A request is admitted once and may then make several calls one after another (a batch runs in chunks), so a
single /predict waits behind one chunk of a large batch, never behind the whole of it. While a call waits for
a worker, or runs, the client is asked every ``POLL_S`` whether it is still connected: a call that has not
started when its client leaves never runs; one already running is let finish (a forward pass cannot be stopped
half-way) and its request ends there, its remaining chunks never started.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable, Iterator

POLL_S = 0.1  # how often a waiting request asks whether its client is still connected


class Busy(Exception):
    """Every worker is busy and the queue is full."""


class ClientGone(Exception):
    """The client closed its connection before its answer was ready; the rest of its work was dropped."""


class WorkerPool:
    """Runs model calls on ``workers`` threads, off the event loop, with at most ``queue`` more requests waiting.

    ``pending`` (requests admitted and not finished) is only touched on the event loop's thread, so it needs no
    lock. A request counts until its last call's thread has finished, even when its client has gone meanwhile.
    """

    def __init__(self, workers: int, queue: int):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="model")
        self.limit = workers + queue
        self.pending = 0

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Count one request for the time of the block; Busy at once when ``limit`` requests are already in."""
        if self.pending >= self.limit:
            raise Busy()
        self.pending += 1
        try:
            yield
        finally:
            self.pending -= 1

    async def call(self, fn: Callable[[], Any], gone: Callable[[], Awaitable[bool]] | None = None) -> tuple[Any, float]:
        """``fn()`` on a worker thread; returns its result and the milliseconds it waited for a free worker.

        Raises:
            ClientGone: ``gone()`` answered True first; ``fn`` never ran, or ran to its end with its result dropped.
        """
        submitted = time.perf_counter()
        started: list[float] = []

        def timed() -> Any:
            started.append(time.perf_counter())
            return fn()

        future = self._pool.submit(timed)
        waiter = asyncio.wrap_future(future)
        try:
            while True:
                done, _ = await asyncio.wait({waiter}, timeout=POLL_S if gone is not None else None)
                if done:
                    return waiter.result(), (started[0] - submitted) * 1000.0
                if await gone():
                    if not future.cancel():  # already running: let it finish, so `pending` stays true
                        with contextlib.suppress(Exception):
                            await waiter
                    raise ClientGone()
        except asyncio.CancelledError:  # the server is stopping: a call not yet started is dropped
            future.cancel()
            raise

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
