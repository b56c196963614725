"""The tail server's endpoints, once, for every transport.

Each handler takes the request's parts (the body already read within the limits) and returns a
`protocol.Reply`; the aiohttp server (`app.py`) and the Ray Serve replicas (`ray_serve.py`) are
thin adapters that read bodies, route with `protocol.TAIL_ENDPOINTS` and turn replies into their
own response objects.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from privpart.runtime import frames, protocol
from privpart.runtime.protocol import Reply
from privpart.runtime.server.service import TailService

Handler = Callable[..., Awaitable[Reply]]  # (body[, read_ms]) -> Reply


class TailHandlers:
    """`handler(endpoint)` answers one endpoint of `protocol.TAIL_ENDPOINTS`."""

    def __init__(self, service: TailService, extra_info: dict[str, Any] | None = None) -> None:
        self.service = service
        self.extra_info = extra_info or {}
        self._by_name: dict[str, Handler] = {
            protocol.INFER.name: self.infer,
            protocol.INFO.name: self.info,
            protocol.HEALTHZ.name: self.healthz,
            protocol.METRICS.name: self.metrics,
        }

    def handler(self, endpoint: protocol.Endpoint) -> Handler:
        return self._by_name[endpoint.name]

    @property
    def body_limit(self) -> int:
        return self.service.spec.max_bytes

    async def infer(self, body: bytearray, read_ms: float | None = None) -> Reply:
        """`read_ms`: how long the transport took to receive the body, reported with the rest
        (Server-Timing), so a client can tell receiving, validating, queueing, computing and
        encoding apart."""
        answer, parts = await self.infer_frame(body, read_ms)
        return Reply(
            200,
            answer,
            protocol.FRAME_TYPE,
            {protocol.TIMING_HEADER: protocol.server_timing(parts)},
        )

    async def infer_frame(
        self, body: bytearray, read_ms: float | None = None
    ) -> tuple[bytes, dict[str, float]]:
        """The logits frame for one features frame, and where the time went: what every
        transport answers `infer` with (HTTP puts the parts in Server-Timing, the stream in its
        reply's meta)."""
        t0 = time.perf_counter()
        x = frames.decode(body, self.service.spec)
        t1 = time.perf_counter()
        y, timing = await self.service.batcher.submit(x)
        t2 = time.perf_counter()
        answer = frames.encode(y)
        parts = {} if read_ms is None else {"read": read_ms}
        parts.update(timing)
        parts["decode"] = (t1 - t0) * 1e3
        parts["encode"] = (time.perf_counter() - t2) * 1e3
        return answer, parts

    def describe(self) -> dict[str, Any]:
        """What `GET /v1/info` and the stream's hello answer: the service and its extras."""
        return {**self.service.describe(), **self.extra_info}

    async def info(self, _: bytearray) -> Reply:
        return Reply.json(self.describe())

    async def healthz(self, _: bytearray) -> Reply:
        batcher = self.service.batcher
        if not batcher.accepting:
            return Reply.json({"status": "draining"}, status=503)
        return Reply.json({"status": "ok", "queued": batcher.queued_samples})

    async def metrics(self, _: bytearray) -> Reply:
        service = self.service
        service.queue.set(service.batcher.queued_samples)
        service.draining.set(0 if service.batcher.accepting else 1)
        return Reply(200, service.metrics.render().encode(), protocol.PROMETHEUS_TYPE)

    def count(self, endpoint: protocol.Endpoint | None, status: int, seconds: float) -> None:
        """Metrics of the infer endpoint, whichever transport answered."""
        if endpoint is protocol.INFER:
            self.service.requests.inc(str(status))
            self.service.latency.observe(seconds)
