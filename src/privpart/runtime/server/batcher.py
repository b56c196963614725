"""Dynamic batching with a bounded queue: many small requests become one forward pass.

Policy:
- requests queue whole (a request is never split); a batch takes queued requests in arrival
  order up to `max_batch` samples;
- a lone client is never delayed: the batch waits up to `max_wait_ms` to fill only when there is
  evidence of concurrency (more than one request queued, or the previous batch held more than
  one request); a sequential client, however fast, gets its batch of one at once;
- the queue holds at most `max_queue` samples; beyond that `submit` raises `busy` (HTTP 429 with
  Retry-After) at once, so overload is explicit and nothing is dropped silently;
- `drain()` stops intake (HTTP 503) and returns when everything queued has been answered.
One thread (a `ComputeThread`) joins requests into a batch and runs the forward passes, so the
event loop keeps accepting and validating requests and never starts an OpenMP team itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from privpart.runtime.compute_thread import ComputeThread
from privpart.runtime.errors import RuntimeFailure


@dataclass(frozen=True)
class BatchConfig:
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 256  # samples waiting, across requests


@dataclass
class _Item:
    x: torch.Tensor
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)


@dataclass
class BatchStats:
    batches: int = 0
    samples: int = 0
    last_batch: int = 0
    last_requests: int = 0


class Batcher:
    """Collects requests into batches for `run` (a blocking function: tensor -> tensor), which
    runs on `compute` (by default a compute thread of its own with the caller's thread count)."""

    def __init__(
        self,
        run: Callable[[torch.Tensor], torch.Tensor],
        config: BatchConfig,
        on_batch: Callable[[int, float], None] | None = None,
        compute: ComputeThread | None = None,
    ) -> None:
        self.run = run
        self.config = config
        self.on_batch = on_batch
        self.stats = BatchStats()
        self._queue: deque[_Item] = deque()
        self._queued = 0
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._accepting = True
        self._own_compute = compute is None
        self.compute = compute or ComputeThread(name="privpart-batch")
        self._task: asyncio.Task | None = None

    @property
    def queued_samples(self) -> int:
        return self._queued

    @property
    def accepting(self) -> bool:
        return self._accepting

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def submit(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The output rows for `x` and where the time went (queue, compute, batch size)."""
        if not self._accepting:
            raise RuntimeFailure(
                "draining",
                "server is shutting down and takes no new requests",
                "retry against another replica or after the restart",
                status=503,
            )
        n = int(x.shape[0])
        if self._queued + n > self.config.max_queue:
            raise RuntimeFailure(
                "busy",
                f"server busy: {self._queued} samples queued, limit {self.config.max_queue}",
                "retry after a short backoff (Retry-After), or add tail replicas",
                status=429,
            )
        item = _Item(x, asyncio.get_running_loop().create_future())
        self._queue.append(item)
        self._queued += n
        self._idle.clear()
        self._wakeup.set()
        return await item.future

    def _take(self, batch: list[_Item], size: int) -> int:
        while self._queue:
            item = self._queue[0]
            n = int(item.x.shape[0])
            if item.future.done():  # the client went away: skip it
                self._queue.popleft()
                self._queued -= n
                continue
            if batch and size + n > self.config.max_batch:
                break
            self._queue.popleft()
            self._queued -= n
            batch.append(item)
            size += n
        return size

    async def _fill(self, batch: list[_Item], size: int) -> int:
        wait = self.config.max_wait_ms / 1e3
        busy = len(self._queue) > 1 or self.stats.last_requests > 1
        size = self._take(batch, size)
        if not busy or wait <= 0:
            return size
        deadline = time.perf_counter() + wait
        while size < self.config.max_batch and (left := deadline - time.perf_counter()) > 0:
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), left)
            size = self._take(batch, size)
        return size

    def _forward(self, parts: list[torch.Tensor]) -> tuple[torch.Tensor, float]:
        """The batch's output and the seconds of the forward pass itself, timed on the compute
        thread (so the thread hand-offs around it are reported apart, as `dispatch`)."""
        start = time.perf_counter()
        y = self.run(parts[0] if len(parts) == 1 else torch.cat(parts))
        return y, time.perf_counter() - start

    async def _loop(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch: list[_Item] = []
            size = await self._fill(batch, 0)
            if not batch:
                continue
            start = time.perf_counter()
            try:
                y, seconds = await self.compute.run(self._forward, [b.x for b in batch])
            except Exception as exc:
                failure = RuntimeFailure(
                    "compute_failed",
                    f"forward pass failed: {exc}",
                    "check the server log",
                    status=500,
                )
                for b in batch:
                    if not b.future.done():
                        b.future.set_exception(failure)
                continue
            done = time.perf_counter()
            compute = seconds * 1e3
            dispatch = (done - start) * 1e3 - compute  # loop -> compute thread -> loop
            self.stats.batches += 1
            self.stats.samples += size
            self.stats.last_batch = size
            self.stats.last_requests = len(batch)
            if self.on_batch is not None:
                self.on_batch(size, compute / 1e3)
            offset = 0
            for b in batch:
                n = int(b.x.shape[0])
                if not b.future.done():
                    timing = {
                        "queue": (start - b.arrived) * 1e3,
                        "compute": compute,
                        "dispatch": dispatch,
                        "batch": float(size),
                    }
                    b.future.set_result((y[offset : offset + n], timing))
                offset += n

    async def drain(self, timeout: float = 30.0) -> bool:
        """Stop intake and wait until every queued request is answered; False on timeout."""
        self._accepting = False
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for item in self._queue:
            if not item.future.done():
                item.future.set_exception(
                    RuntimeFailure("draining", "server stopped before answering", status=503)
                )
        if self._own_compute:
            self.compute.close()
