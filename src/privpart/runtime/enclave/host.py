"""The enclave host: the untrusted HTTP front of the enclave (TEE + GPU partitioning).

It relays bytes it cannot read: a client's sealed request goes down the pipe to the worker,
which decrypts it, runs the head, posts the features to the tail server itself (over the
host's network, as an SGX enclave does through Gramine), checks and seals the logits and returns
the sealed record, which the host hands back. Attestation evidence, keys and plaintext never
come from or reach the host: it forwards the worker's quote envelope as it is.

Endpoints (`protocol.ENCLAVE_ENDPOINTS`; errors are JSON `{error, message, hint}`):

- `GET  /v1/info`    backend, `simulated`, measurement, platform key (simulated), cut, limits;
- `POST /v1/attest`  JSON `{nonce, client_pub}` (hex) -> `{session, enclave_pub, quote}`;
- `POST /v1/infer` with header `X-Privpart-Session: <id>`  body: one sealed record
  (`channel/session.py`) whose plaintext is an input frame; answer: one sealed record holding
  the logits frame; 401 tampered/replayed/out-of-order (session closed), 410 unknown session
  (re-attest), 502/504 tail failure, 503 worker restarting. `POST /v1/sessions/{id}/infer`
  is the same for clients of earlier versions (the id then shows in URLs and logs);
- `GET  /healthz`, `GET /metrics` (Prometheus).

With a stream port (`privpart enclave --stream-port`, `runtime/stream`), the same sealed infer
also travels over one persistent connection per client: each request is the session id (32 hex
characters) followed by the sealed record, each reply the sealed answer (`HostStream`), with the
same checks, in-flight limit and metrics.

Limits (`server/limits.py`): bodies must arrive within the body timeout and are counted in
flight only once read; connections are capped; with a token, clients must present it.
"""

from __future__ import annotations

import json
import re
import ssl
import time
from dataclasses import dataclass, field

from aiohttp import web

from privpart.runtime import frames, protocol
from privpart.runtime.enclave.base import TEEBackend
from privpart.runtime.enclave.supervisor import WorkerSupervisor
from privpart.runtime.errors import RuntimeFailure
from privpart.runtime.head import HeadInfo
from privpart.runtime.integrity import FORGERY
from privpart.runtime.server.http import (
    LIMITS_KEY,
    Handler,
    auth,
    json_errors,
    read_body,
    to_response,
)
from privpart.runtime.server.limits import ServerLimits
from privpart.runtime.server.metrics import LATENCY_BUCKETS, ServerMetrics
from privpart.runtime.stream.server import StreamSite
from privpart.runtime.version import RUNTIME_VERSION

SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
SESSION_BYTES = 32
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
    limits: ServerLimits = field(default_factory=ServerLimits)
    tail_token: str | None = None  # bearer token of the tail server, passed to the worker
    stream_url: str = ""  # the stream port's URL, once it listens (`host_stream_site`)

    def __post_init__(self) -> None:
        self.record_limit = (
            frames.FrameSpec.for_samples(
                self.info.input_shape, self.backend.config.max_batch
            ).max_bytes
            + 64
        )
        m = self.metrics = ServerMetrics()
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
        self.tail_checks = m.counter(
            "privpart_enclave_tail_checks_total",
            "requests whose tail the worker recomputed (--verify-tail)",
        )
        self.tail_forgeries = m.counter(
            "privpart_enclave_tail_forgeries_total",
            "checked requests whose tail answer differed from the recomputation (withheld)",
        )
        self.inflight = 0

    def describe(self) -> dict:
        return {
            "service": "privpart-enclave",
            "backend": self.backend.name,
            "simulated": self.backend.simulated,
            "measurement": self.info.measurement,
            "platform_key": self.backend.platform.public_raw.hex()
            if self.backend.simulated
            else None,
            "runtime_version": RUNTIME_VERSION,
            "arch": self.info.spec.arch,
            "cut": self.info.cut.name,
            "input_shape": list(self.info.input_shape),
            "num_classes": self.info.spec.num_classes,
            "max_batch": self.backend.config.max_batch,
            "epc_mib": self.backend.config.epc_mib,
            "auth": self.limits.token is not None,
            "worker": {
                "state": self.supervisor.state,
                "generation": self.supervisor.generation,
                "restarts": self.supervisor.restarts,
            },
            "tail": self.tail_url,
            "stream": self.stream_url or None,
            "verify_tail": self.backend.config.verify_tail,
            "tail_measurement": self.backend.tail_measurement or None,
        }

    async def attest(self, hello: object, client: str) -> dict:
        """The worker's answer, relayed: session, enclave key share and its quote envelope."""
        reply, _ = await self.supervisor.call(
            "attest",
            {"hello": hello, "client": client},
            wait_ready=self.backend.config.ready_timeout_s,
        )
        return {
            "session": reply["session"],
            "enclave_pub": reply["enclave_pub"],
            "quote": reply["quote"],
        }

    async def relay(
        self, session: str, record: bytearray | memoryview, start: float
    ) -> tuple[bytes, dict[str, float]]:
        """A received sealed request through the in-flight limit and the worker (whatever the
        transport; `start`: when its first byte arrived, for the latency metric)."""
        if self.inflight >= self.max_inflight:
            raise RuntimeFailure(
                "busy",
                f"enclave busy: {self.inflight} requests in flight",
                "retry after a short backoff (Retry-After)",
            )
        self.inflight += 1
        try:
            sealed, timing = await self.infer(session, record)
        finally:
            self.inflight -= 1
        self.latency.observe(time.perf_counter() - start)
        return sealed, timing

    async def infer(
        self, session: str, record: bytearray | memoryview
    ) -> tuple[bytes, dict[str, float]]:
        """One sealed request through the worker (head, tail round trip, seal): sealed answer."""
        t0 = time.perf_counter()
        header = {"session": session, "tail": self.tail_url}
        if self.tail_token:
            header["tail_token"] = self.tail_token
        try:
            reply, sealed = await self.supervisor.call(
                "infer", header, record, timeout=self.tail_timeout_s + 30
            )
        except RuntimeFailure as exc:
            if exc.code == FORGERY:
                self.tail_checks.inc()
                self.tail_forgeries.inc()
            raise
        worker_ms = (time.perf_counter() - t0) * 1e3
        if "verify_tail" in reply["timing"]:
            self.tail_checks.inc()
        timing = {
            f"enclave_{k}" if not k.startswith("tail_") else k: v
            for k, v in reply["timing"].items()
        }
        # the recomputation overlaps the tail round trip: not part of the serial path
        inside = sum(
            v for k, v in timing.items() if k.startswith("enclave_") and k != "enclave_verify_tail"
        )
        timing["enclave_ipc"] = worker_ms - inside - timing.get("tail_roundtrip", 0.0)
        return sealed, timing


def check_session_id(session: str, where: str = f"in the {protocol.SESSION_HEADER} header") -> None:
    if not SESSION_ID.match(session):
        raise RuntimeFailure(
            "unknown_session",
            "malformed session id",
            f"attest first ({protocol.ATTEST.method} {protocol.ATTEST.path}), then send "
            f"the session id {where}",
        )


class HostStream:
    """The enclave host's stream (`runtime/stream`): a request is the session id, 32 ASCII hex
    characters, then the sealed record; the reply is the sealed answer."""

    def __init__(self, host: EnclaveHost) -> None:
        self.host = host

    @property
    def body_limit(self) -> int:
        return SESSION_BYTES + self.host.record_limit

    def describe(self) -> dict:
        return self.host.describe()

    async def answer(self, body: bytearray, read_ms: float) -> tuple[bytes, dict[str, float]]:
        session = bytes(body[:SESSION_BYTES]).decode("ascii", errors="replace")
        check_session_id(session, "as the first 32 bytes of each stream request")
        start = time.perf_counter() - read_ms / 1e3
        return await self.host.relay(session, memoryview(body)[SESSION_BYTES:], start)

    def count(self, status: int, seconds: float) -> None:
        self.host.requests.inc("infer", str(status))


def host_stream_site(
    host: EnclaveHost, bind: str, port: int, tls: ssl.SSLContext | None = None
) -> StreamSite:
    """The enclave host's stream port, for `serve_until_signal(..., sites=[...])`."""

    def advertise(url: str) -> None:
        host.stream_url = url

    return StreamSite(lambda: HostStream(host), bind, port, tls, advertise)


def build_enclave_app(host: EnclaveHost) -> web.Application:
    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        endpoint = "infer" if request.path.endswith("/infer") else request.path.strip("/")
        host.requests.inc(endpoint[:32], str(response.status))
        return response

    public = {ep.path for ep in protocol.ENCLAVE_ENDPOINTS if ep.public}
    app = web.Application(
        middlewares=[count, json_errors, auth(lambda: host.limits, public)],
        client_max_size=host.record_limit,
    )
    app[HOST_KEY] = host
    app[LIMITS_KEY] = host.limits

    async def info(_: web.Request) -> web.Response:
        return web.json_response(host.describe())

    async def attest(request: web.Request) -> web.Response:
        body = await read_body(request, HELLO_LIMIT, host.limits)
        try:
            hello = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise RuntimeFailure(
                "bad_hello", "attest body is not JSON", "send {nonce, client_pub} as hex"
            ) from None
        return web.json_response(await host.attest(hello, request.remote or ""))

    async def sealed_infer(request: web.Request) -> web.Response:
        return await infer(request, request.headers.get(protocol.SESSION_HEADER, ""))

    async def session_infer(request: web.Request) -> web.Response:
        return await infer(request, request.match_info["session"])

    async def infer(request: web.Request, session: str) -> web.Response:
        start = time.perf_counter()
        check_session_id(session)
        # read first: a client still sending its body is not in flight (a slow sender cannot
        # fill the enclave's slots), and the body timeout bounds how long it holds its socket
        record = await read_body(request, host.record_limit, host.limits)
        sealed, timing = await host.relay(session, record, start)
        return to_response(
            protocol.Reply(
                200,
                sealed,
                protocol.SEALED_INFER.answer,
                {protocol.TIMING_HEADER: protocol.server_timing(timing)},
            )
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
        return to_response(
            protocol.Reply(200, host.metrics.render().encode(), protocol.PROMETHEUS_TYPE)
        )

    async def on_cleanup(_: web.Application) -> None:
        await host.supervisor.stop()

    handlers = {
        protocol.INFO.name: info,
        protocol.ATTEST.name: attest,
        protocol.SEALED_INFER.name: sealed_infer,
        protocol.SESSION_INFER.name: session_infer,
        protocol.HEALTHZ.name: healthz,
        protocol.METRICS.name: metrics,
    }
    for endpoint in protocol.ENCLAVE_ENDPOINTS:
        app.router.add_route(endpoint.method, endpoint.path, handlers[endpoint.name])
    app.on_cleanup.append(on_cleanup)
    return app
