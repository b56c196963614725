"""The tail reports where a request's time went (Server-Timing), and the compute thread hands
results and failures back to the event loop directly."""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch

from privpart.runtime import frames, protocol
from privpart.runtime.compute_thread import ComputeThread
from privpart.runtime.head import SplitHead
from privpart.runtime.server import BatchConfig, TailConfig, build_tail_app
from privpart.runtime.server.runner import start_site
from tests.runtime.helpers import LoopThread, RawHttp

PARTS = ("read", "decode", "queue", "compute", "dispatch", "encode")


def test_server_timing_splits_receive_validation_queue_compute_and_encoding(
    tiny_split: SplitHead,
) -> None:
    loop = LoopThread()
    cfg = TailConfig(batch=BatchConfig(max_batch=4, max_wait_ms=0), device="cpu")
    runner, url = loop.run(start_site(build_tail_app(tiny_split, cfg), "127.0.0.1", 0))
    http = RawHttp(url)
    try:
        x = torch.rand(2, *tiny_split.info.cut.shape)
        status, body, headers = http.request(
            "POST", protocol.INFER.path, frames.encode(x), {"Content-Type": protocol.FRAME_TYPE}
        )
        assert status == 200, body[:200]
        timing = protocol.parse_server_timing(headers["Server-Timing"])
        assert set(PARTS) <= set(timing), timing
        assert all(timing[k] >= 0 for k in PARTS), timing
        assert timing["batch"] == 2.0
    finally:
        http.close()
        loop.run(runner.cleanup())
        loop.close()


def test_compute_thread_returns_results_and_raises_failures_in_the_awaiting_task() -> None:
    compute = ComputeThread(1)
    seen: list[str] = []

    def work(n: int) -> int:
        seen.append(threading.current_thread().name)
        if n < 0:
            raise ValueError("negative")
        return n * 2

    async def main() -> tuple[int, str]:
        ok = await compute.run(work, 21)
        with pytest.raises(ValueError, match="negative"):
            await compute.run(work, -1)
        # a request that goes away while the thread computes leaves the loop healthy
        slow = asyncio.ensure_future(compute.run(lambda: threading.Event().wait(0.05)))
        await asyncio.sleep(0)
        slow.cancel()
        await asyncio.sleep(0.1)
        return ok, await compute.run(lambda: "after")

    try:
        ok, after = asyncio.run(main())
    finally:
        compute.close()
    assert ok == 42 and after == "after"
    assert seen and all(name.startswith("privpart-compute") for name in seen)
