"""The enclave host: the untrusted HTTP front of the enclave (seed A).

It relays bytes it cannot read: a client's sealed request goes down the pipe to the worker,
which decrypts it, runs the head, posts the features to the tail server itself (over the
host's network, as an SGX enclave does through Gramine), seals the logits and returns the sealed
record, which the host hands back. Keys and plaintext inputs never leave the worker.

Endpoints (errors are JSON `{error, message, hint}`):

- `GET  /v1/info`    backend, `simulated`, measurement, platform key, cut, input shape, limits;
- `POST /v1/attest`  JSON `{nonce, client_pub}` (hex) -> `{session, enclave_pub, quote}`;
- `POST /v1/sessions/{id}/infer`  body: one sealed record (`channel/session.py`) whose plaintext
  is an input frame; answer: one sealed record holding the logits frame;
  401 tampered/replayed/out-of-order (session closed), 410 unknown session (re-attest),
  502/504 tail failure, 503 worker restarting;
- `GET  /healthz`, `GET /metrics` (Prometheus).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

from aiohttp import web

from privpart.runtime import frames
from privpart.runtime.enclave.base import TEEBackend
from privpart.runtime.enclave.supervisor import WorkerSupervisor
from privpart.runtime.errors import RuntimeFailure
from privpart.runtime.head import HeadInfo
from privpart.runtime.server.http import (
    RECORD_TYPE,
    Handler,
    json_errors,
    read_body,
    server_timing,
)
from privpart.runtime.server.metrics import LATENCY_BUCKETS, PROMETHEUS_TYPE, Registry
from privpart.runtime.version import RUNTIME_VERSION

SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
HELLO_LIMIT = 4096
HOST_KEY = web.AppKey("privpart_enclave_host", object)


@dataclass
class EnclaveHost:
    """What the host app needs: the backend, the running supervisor, the head and the tail."""

    backend: TEEBackend
    supervisor: WorkerSupervisor
    info: HeadInfo
    tail_url: str
    tail_timeout_s: float = 60.0
    max_inflight: int = 256  # requests inside the enclave path before answering 429 busy

    def __post_init__(self) -> None:
        self.record_limit = (
            frames.FrameSpec.for_samples(
                self.info.input_shape, self.backend.config.max_batch
            ).max_bytes
            + 64
        )
        m = self.metrics = Registry()
        self.requests = m.counter(
            "privpart_enclave_requests_total",
            "requests by endpoint and HTTP status",
            ("endpoint", "code"),
        )
        self.latency = m.histogram(
            "privpart_enclave_infer_seconds", "end-to-end infer latency", LATENCY_BUCKETS
        )
        self.restarts = m.gauge("privpart_enclave_worker_restarts", "worker restarts so far")
        self.generation = m.gauge("privpart_enclave_worker_generation", "current worker number")
        self.simulated = m.gauge("privpart_enclave_simulated", "1 when no hardware TEE is used")
        self.simulated.set(1 if self.backend.simulated else 0)
        self.inflight = 0

    def describe(self) -> dict:
        return {
            "service": "privpart-enclave",
            "backend": self.backend.name,
            "simulated": self.backend.simulated,
            "measurement": self.info.measurement,
            "platform_key": self.backend.platform.public_raw.hex(),
            "runtime_version": RUNTIME_VERSION,
            "arch": self.info.spec.arch,
            "cut": self.info.cut.name,
            "input_shape": list(self.info.input_shape),
            "max_batch": self.backend.config.max_batch,
            "epc_mib": self.backend.config.epc_mib,
            "worker": {
                "state": self.supervisor.state,
                "generation": self.supervisor.generation,
                "restarts": self.supervisor.restarts,
            },
            "tail": self.tail_url,
        }

    async def attest(self, hello: object) -> dict:
        reply, _ = await self.supervisor.call(
            "attest", {"hello": hello}, wait_ready=self.backend.config.ready_timeout_s
        )
        report_data = bytes.fromhex(reply["report_data"])
        quote = self.backend.quote(self.info.measurement, report_data, reply.get("evidence", {}))
        return {"session": reply["session"], "enclave_pub": reply["enclave_pub"], "quote": quote}

    async def infer(self, session: str, record: bytearray) -> tuple[bytes, dict[str, float]]:
        """One sealed request through the worker (head, tail round trip, seal): sealed answer."""
        t0 = time.perf_counter()
        reply, sealed = await self.supervisor.call(
            "infer",
            {"session": session, "tail": self.tail_url},
            record,
            timeout=self.tail_timeout_s + 30,
        )
        worker_ms = (time.perf_counter() - t0) * 1e3
        timing = {
            f"enclave_{k}" if not k.startswith("tail_") else k: v
            for k, v in reply["timing"].items()
        }
        inside = sum(v for k, v in timing.items() if k.startswith("enclave_"))
        timing["enclave_ipc"] = worker_ms - inside - timing.get("tail_roundtrip", 0.0)
        return sealed, timing


def build_enclave_app(host: EnclaveHost) -> web.Application:
    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        endpoint = "infer" if request.path.endswith("/infer") else request.path.strip("/")
        host.requests.inc(endpoint[:32], str(response.status))
        return response

    app = web.Application(middlewares=[count, json_errors], client_max_size=host.record_limit)
    app[HOST_KEY] = host

    async def info(_: web.Request) -> web.Response:
        return web.json_response(host.describe())

    async def attest(request: web.Request) -> web.Response:
        body = await read_body(request, HELLO_LIMIT)
        try:
            hello = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise RuntimeFailure(
                "bad_hello", "attest body is not JSON", "send {nonce, client_pub} as hex"
            ) from None
        return web.json_response(await host.attest(hello))

    async def infer(request: web.Request) -> web.Response:
        start = time.perf_counter()
        session = request.match_info["session"]
        if not SESSION_ID.match(session):
            raise RuntimeFailure(
                "unknown_session",
                "malformed session id",
                "attest first: POST /v1/attest",
                status=410,
            )
        if host.inflight >= host.max_inflight:
            raise RuntimeFailure(
                "busy",
                f"enclave busy: {host.inflight} requests in flight",
                "retry after a short backoff (Retry-After)",
                status=429,
            )
        host.inflight += 1
        try:
            record = await read_body(request, host.record_limit)
            sealed, timing = await host.infer(session, record)
        finally:
            host.inflight -= 1
        host.latency.observe(time.perf_counter() - start)
        return web.Response(
            body=sealed, content_type=RECORD_TYPE, headers={"Server-Timing": server_timing(timing)}
        )

    async def healthz(_: web.Request) -> web.Response:
        state = host.supervisor.state
        return web.json_response(
            {"status": "ok" if state == "ready" else state, "simulated": host.backend.simulated},
            status=200 if state == "ready" else 503,
        )

    async def metrics(_: web.Request) -> web.Response:
        host.restarts.set(host.supervisor.restarts)
        host.generation.set(host.supervisor.generation)
        return web.Response(
            body=host.metrics.render().encode(), headers={"Content-Type": PROMETHEUS_TYPE}
        )

    async def on_cleanup(_: web.Application) -> None:
        await host.supervisor.stop()

    app.router.add_get("/v1/info", info)
    app.router.add_post("/v1/attest", attest)
    app.router.add_post("/v1/sessions/{session}/infer", infer)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.on_cleanup.append(on_cleanup)
    return app
