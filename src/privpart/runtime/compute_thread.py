"""One thread per serving process runs torch with intra-op threads; every other thread runs it
with one.

Why: libgomp (PyTorch's OpenMP) counts the threads of every OpenMP team in the process. Once
there are more than the CPUs it may use, its idle threads spin only ~100 times instead of
`GOMP_SPINCOUNT` and then sleep on a futex (libgomp's documented throttling), so each of a
forward pass's ~150 parallel regions has to wake them again. The tail server used to load and
warm up its model on the main thread (one team) and run forwards on its batch thread (a second
team): on 2 CPUs that is 4 OpenMP threads, and every forward paid for it. Measured with the
ResNet-50 tail after `layer2` on 2 threads (`bench/server_compute.py`, two runs): ~350 context
switches per request and tail compute 1.11-1.14x the same forward in a plain process; with one
team, 12 context switches and 0.96-1.03x.

`serving_threads(n)` is for a process that serves: the calling thread keeps one torch thread
(it loads, decodes, batches, but never starts a team) and the returned `ComputeThread` owns the
process's only team of `n` threads. A `ComputeThread` on its own changes nothing for its
caller (tests and notebooks keep their thread settings).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")


class ComputeThread:
    """A single worker thread whose torch calls use `threads` intra-op threads."""

    def __init__(self, threads: int | None = None, name: str = "privpart-compute") -> None:
        self.threads = max(1, threads or torch.get_num_threads())
        self._pool = ThreadPoolExecutor(
            1, thread_name_prefix=name, initializer=torch.set_num_threads, initargs=(self.threads,)
        )

    def call(self, fn: Callable[..., T], *args: object) -> T:
        """Run `fn(*args)` on the compute thread and wait for it."""
        return self._pool.submit(fn, *args).result()

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run `fn(*args)` on the compute thread without blocking the event loop.

        The compute thread hands the result straight to the loop (one `call_soon_threadsafe`)
        instead of going through `run_in_executor`'s chain of a concurrent future, its done
        callback and a wrapping asyncio future: one wake-up of the loop either way, fewer
        Python calls on the serial path of every request."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()

        def job() -> None:
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the awaiting task
                loop.call_soon_threadsafe(_settle, done, None, exc)
                return
            loop.call_soon_threadsafe(_settle, done, result, None)

        self._pool.submit(job)
        return await done

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _settle(done: asyncio.Future, result: object, exc: BaseException | None) -> None:
    if done.cancelled():  # the awaiting request went away while the thread computed
        return
    if exc is not None:
        done.set_exception(exc)
    else:
        done.set_result(result)


def serving_threads(threads: int | None = None) -> ComputeThread:
    """Give this process's only OpenMP team to a new compute thread; the caller keeps one thread.

    Call it before the calling thread does any torch work with more than one thread (a team,
    once started, stays for the life of the process).
    """
    # torch gives each thread its count lazily, from the last count set by *any* thread: ask
    # once so this thread is initialised now and keeps the 1 set below for good
    default = torch.get_num_threads()
    torch.set_num_threads(1)
    return ComputeThread(threads or default)
