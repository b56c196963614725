"""The tail service: the split's tail on its device, its batcher, input contract and metrics.

Transport-free: `handlers.py` answers requests with it, `app.py` (aiohttp) and `ray_serve.py`
(Ray Serve) carry them. The tail runs on CUDA when present (unless told otherwise), else on the
CPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from privpart.runtime import frames
from privpart.runtime.compute_thread import ComputeThread
from privpart.runtime.head import SplitHead
from privpart.runtime.server.batcher import BatchConfig, Batcher
from privpart.runtime.server.limits import ServerLimits
from privpart.runtime.server.metrics import BATCH_BUCKETS, LATENCY_BUCKETS, ServerMetrics
from privpart.runtime.version import RUNTIME_VERSION


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


@dataclass(frozen=True)
class TailConfig:
    batch: BatchConfig = field(default_factory=BatchConfig)
    device: str = "auto"
    drain_timeout_s: float = 30.0
    limits: ServerLimits = field(default_factory=ServerLimits)


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
        m = self.metrics = ServerMetrics()
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
            "auth": self.config.limits.token is not None,
            **asdict(self.config.batch),
        }

    def warm_up(self) -> None:
        self.batcher.compute.call(self.forward, torch.zeros(1, *self.info.cut.shape))
