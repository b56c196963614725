from __future__ import annotations

import asyncio
import time

import pytest
import torch

from privpart.runtime.errors import RuntimeFailure
from privpart.runtime.server.batcher import BatchConfig, Batcher


def run_async(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


def slow_double(delay: float, sizes: list[int]):  # noqa: ANN201
    def run(x: torch.Tensor) -> torch.Tensor:
        sizes.append(int(x.shape[0]))
        time.sleep(delay)
        return x * 2

    return run


def test_concurrent_requests_are_batched_and_answered_in_place() -> None:
    sizes: list[int] = []

    async def scenario() -> list[torch.Tensor]:
        b = Batcher(slow_double(0.02, sizes), BatchConfig(max_batch=8, max_wait_ms=5))
        b.start()
        xs = [torch.full((1 + i % 2, 3), float(i)) for i in range(20)]
        outs = await asyncio.gather(*(b.submit(x) for x in xs))
        await b.close()
        return [y for y, _ in outs], xs

    ys, xs = run_async(scenario())
    assert all(torch.equal(y, x * 2) for y, x in zip(ys, xs, strict=True))
    assert max(sizes) <= 8 and len(sizes) < 20  # batched, never above the limit


def test_a_sequential_client_is_never_delayed_however_fast() -> None:
    async def scenario() -> float:
        b = Batcher(lambda x: x, BatchConfig(max_batch=32, max_wait_ms=200))
        b.start()
        t = time.perf_counter()
        for _ in range(10):  # back to back, no gap
            await b.submit(torch.zeros(2, 1))
        await b.close()
        return time.perf_counter() - t

    assert run_async(scenario()) < 0.5  # 10 waits of 200 ms would be 2 s


def test_under_concurrency_batches_wait_to_fill() -> None:
    sizes: list[int] = []

    async def scenario() -> None:
        b = Batcher(slow_double(0.01, sizes), BatchConfig(max_batch=8, max_wait_ms=50))
        b.start()

        async def client(i: int) -> None:
            for _ in range(3):
                await b.submit(torch.zeros(1, 1))
                await asyncio.sleep(0.002 * (i % 3))  # clients come back at different times

        await asyncio.gather(*(client(i) for i in range(8)))
        await b.close()

    run_async(scenario())
    assert max(sizes) == 8 and len(sizes) <= 6, sizes  # 24 samples: mostly full batches


def test_full_queue_says_busy() -> None:
    async def scenario() -> list[object]:
        b = Batcher(slow_double(0.05, []), BatchConfig(max_batch=1, max_wait_ms=0, max_queue=3))
        b.start()
        outs = await asyncio.gather(
            *(b.submit(torch.zeros(1, 1)) for _ in range(10)), return_exceptions=True
        )
        await b.close()
        return outs

    outs = run_async(scenario())
    busy = [o for o in outs if isinstance(o, RuntimeFailure)]
    assert busy and all(o.code == "busy" and o.status == 429 for o in busy)
    assert len(busy) + sum(isinstance(o, tuple) for o in outs) == 10


def test_a_failing_forward_fails_its_batch_and_the_batcher_survives() -> None:
    calls = []

    def flaky(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return x

    async def scenario() -> None:
        b = Batcher(flaky, BatchConfig(max_batch=4, max_wait_ms=0))
        b.start()
        with pytest.raises(RuntimeFailure, match="boom"):
            await b.submit(torch.zeros(1, 1))
        y, _ = await b.submit(torch.ones(1, 1))
        assert torch.equal(y, torch.ones(1, 1))
        await b.close()

    run_async(scenario())


def test_drain_refuses_new_work_and_finishes_queued_work() -> None:
    async def scenario() -> None:
        b = Batcher(slow_double(0.02, []), BatchConfig(max_batch=1, max_wait_ms=0))
        b.start()
        pending = [asyncio.create_task(b.submit(torch.ones(1, 1))) for _ in range(5)]
        await asyncio.sleep(0)
        assert await b.drain(5)
        assert all(t.done() and not t.exception() for t in pending)
        with pytest.raises(RuntimeFailure) as err:
            await b.submit(torch.ones(1, 1))
        assert err.value.code == "draining" and err.value.status == 503
        await b.close()

    run_async(scenario())
