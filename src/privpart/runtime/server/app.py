"""The tail server: the untrusted accelerator's side of the split, over HTTP.

Endpoints (all errors are JSON `{error, message, hint}`, see `http.py`):

- `POST /v1/infer`  body: one tensor frame (`frames.py`) of features `[batch, *cut shape]`
  float32; answer: a frame of logits `[batch, classes]`, `Server-Timing: queue, compute, batch`.
  400 malformed frame, 413 too large, 429 busy (queue full, Retry-After), 503 draining.
- `GET /v1/info`    JSON: model, cut, feature shape, limits, device, runtime version.
- `GET /healthz`    200 `{"status": "ok"}`, or 503 while draining.
- `GET /metrics`    Prometheus text format.

The tail runs on CUDA when present (unless told otherwise), else on the CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from aiohttp import web

from privpart.runtime import frames
from privpart.runtime.compute import ComputeThread
from privpart.runtime.head import SplitHead
from privpart.runtime.server.batcher import BatchConfig, Batcher
from privpart.runtime.server.http import FRAME_TYPE, Handler, json_errors, read_body, server_timing
from privpart.runtime.server.metrics import (
    BATCH_BUCKETS,
    LATENCY_BUCKETS,
    PROMETHEUS_TYPE,
    Registry,
)
from privpart.runtime.version import RUNTIME_VERSION

TAIL_KEY = web.AppKey("privpart_tail", object)


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


@dataclass(frozen=True)
class TailConfig:
    batch: BatchConfig = field(default_factory=BatchConfig)
    device: str = "auto"
    drain_timeout_s: float = 30.0


class TailService:
    """The tail module, its batcher, its input contract and its metrics.

    Every forward pass, the warm-up included, runs on the batcher's compute thread: pass the
    process's `serving_threads()` when this service owns the process (see `compute.py`).
    """

    def __init__(
        self, split: SplitHead, config: TailConfig, compute: ComputeThread | None = None
    ) -> None:
        self.info = split.info
        self.config = config
        self.device = pick_device(config.device)
        self.tail = split.tail.to(self.device).eval()
        self.spec = frames.FrameSpec.for_samples(split.info.cut.shape, config.batch.max_batch)
        m = self.metrics = Registry()
        self.requests = m.counter(
            "privpart_tail_requests_total", "requests by HTTP status", ("code",)
        )
        self.samples = m.counter("privpart_tail_samples_total", "samples answered")
        self.batches = m.counter("privpart_tail_batches_total", "forward passes run")
        self.batch_size = m.histogram(
            "privpart_tail_batch_size", "samples per forward pass", BATCH_BUCKETS
        )
        self.latency = m.histogram(
            "privpart_tail_request_seconds", "request latency, seconds", LATENCY_BUCKETS
        )
        self.compute = m.histogram(
            "privpart_tail_compute_seconds", "forward pass time, seconds", LATENCY_BUCKETS
        )
        self.queue = m.gauge("privpart_tail_queue_samples", "samples waiting for a batch")
        self.draining = m.gauge("privpart_tail_draining", "1 while shutting down")
        self.batcher = Batcher(self.forward, config.batch, self._on_batch, compute)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tail(x.to(self.device, non_blocking=True))
        return y.float().cpu()

    def _on_batch(self, size: int, seconds: float) -> None:
        self.batches.inc()
        self.samples.inc(by=size)
        self.batch_size.observe(size)
        self.compute.observe(seconds)

    def describe(self) -> dict:
        return {
            "service": "privpart-tail",
            "runtime_version": RUNTIME_VERSION,
            "arch": self.info.spec.arch,
            "cut": self.info.cut.name,
            "feature_shape": list(self.info.cut.shape),
            "dtype": self.spec.dtype,
            "max_body_bytes": self.spec.max_bytes,
            "device": str(self.device),
            **asdict(self.config.batch),
        }

    def warm_up(self) -> None:
        self.batcher.compute.call(self.forward, torch.zeros(1, *self.info.cut.shape))


def _counting(service: TailService) -> Callable:
    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        response = await handler(request)
        if request.path == "/v1/infer":
            service.requests.inc(str(response.status))
            service.latency.observe(time.perf_counter() - start)
        return response

    return count


def build_tail_app(
    split: SplitHead, config: TailConfig | None = None, compute: ComputeThread | None = None
) -> web.Application:
    service = TailService(split, config or TailConfig(), compute)
    app = web.Application(
        middlewares=[_counting(service), json_errors], client_max_size=service.spec.max_bytes
    )
    app[TAIL_KEY] = service

    async def infer(request: web.Request) -> web.Response:
        body = await read_body(request, service.spec.max_bytes)
        x = frames.decode(body, service.spec)
        y, timing = await service.batcher.submit(x)
        return web.Response(
            body=frames.encode(y),
            content_type=FRAME_TYPE,
            headers={"Server-Timing": server_timing(timing)},
        )

    async def info(_: web.Request) -> web.Response:
        return web.json_response(service.describe())

    async def healthz(_: web.Request) -> web.Response:
        if not service.batcher.accepting:
            return web.json_response({"status": "draining"}, status=503)
        return web.json_response({"status": "ok", "queued": service.batcher.queued_samples})

    async def metrics(_: web.Request) -> web.Response:
        service.queue.set(service.batcher.queued_samples)
        service.draining.set(0 if service.batcher.accepting else 1)
        return web.Response(
            body=service.metrics.render().encode(), headers={"Content-Type": PROMETHEUS_TYPE}
        )

    async def on_startup(_: web.Application) -> None:
        service.batcher.start()

    async def on_shutdown(_: web.Application) -> None:
        await service.batcher.drain(service.config.drain_timeout_s)

    async def on_cleanup(_: web.Application) -> None:
        await service.batcher.close()

    app.router.add_post("/v1/infer", infer)
    app.router.add_get("/v1/info", info)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app


def tail_service(app: web.Application) -> TailService:
    return app[TAIL_KEY]  # type: ignore[return-value]
