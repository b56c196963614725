"""The tail server on Ray Serve: N replicas (or an autoscaled range) behind one HTTP address.

Same protocol, same clients (`TailClient`, `DeviceClient`, the enclave host). Each replica *is*
the ordinary tail: `TailService` holds the split's tail on its device, the dynamic batcher with
its bounded queue, the frame limits and the metrics; requests are validated by `frames.decode`
and failures encoded by `http.json_error`, exactly as in `privpart serve`. Only the transport
adapter differs, because Ray Serve's proxy speaks ASGI (Starlette) where the single server speaks
aiohttp. What a client may notice:

- Ray's proxy picks a replica per request; each replica batches what it receives, so a batch
  never mixes requests of two replicas.
- `/metrics` and `/healthz` answer for the replica that got the request (named in the
  `X-Privpart-Replica` header and in `/v1/info`); cluster-wide numbers come from Ray's metrics.
- The checkpoint reaches replicas through the object store, so a replica on another node needs
  no copy of the folder; it is loaded with the same code (`split_checkpoint`: safetensors only).
- Ray's proxy hands requests to replicas with pickle (its own RPC), so the no-unpickling guard
  of `privpart serve` cannot be switched on inside a replica. Client bytes are still only ever
  decoded as frames; treat the Ray cluster as one trust domain and keep its ports private.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from privpart.cluster import (
    INSTALL_HINT,
    LOCAL,
    Resources,
    check_address,
    import_ray,
    ray_session,
)
from privpart.errors import PrivpartError
from privpart.runtime import frames
from privpart.runtime.compute import serving_threads
from privpart.runtime.errors import RuntimeFailure
from privpart.runtime.head import SplitHead, split_checkpoint
from privpart.runtime.server.app import TailConfig, TailService
from privpart.runtime.server.http import FRAME_TYPE, failure_response, json_error, server_timing
from privpart.runtime.server.metrics import PROMETHEUS_TYPE
from privpart.training.checkpoint import META, WEIGHTS

try:
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response
except ImportError as exc:  # starlette comes with the optional extra, ray[serve]
    raise PrivpartError("--ray needs Ray Serve, which is not installed", INSTALL_HINT) from exc

APP_NAME = "privpart-tail"
REPLICA_HEADER = "X-Privpart-Replica"
ENDPOINTS: dict[str, dict[str, str]] = {
    "/v1/infer": {"POST": "infer"},
    "/v1/info": {"GET": "info"},
    "/healthz": {"GET": "healthz"},
    "/metrics": {"GET": "metrics"},
}


def _starlette(response: Any) -> Response:
    """An aiohttp error response (built by the single server's helpers) as a Starlette one."""
    return Response(response.body, response.status, headers=dict(response.headers))


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it declares or sends more than `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RuntimeFailure(
            "too_large",
            f"request body of {declared} bytes exceeds {limit}",
            "send smaller batches",
            status=413,
        )
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RuntimeFailure(
                    "too_large",
                    f"request body exceeds {limit} bytes",
                    "send smaller batches",
                    status=413,
                )
            chunks.append(chunk)
    except ClientDisconnect:
        raise RuntimeFailure(
            "truncated", "request body is incomplete: the client went away", "send the whole frame"
        ) from None
    return b"".join(chunks)


class TailReplica:
    """One Ray Serve replica: a `TailService` behind a Starlette adapter (see module docstring).

    The constructor runs on the replica's event loop (Ray Serve awaits async constructors), so
    the batcher's loop task starts where requests will be served.
    """

    async def __init__(
        self, checkpoint: list[Any], cut: str, config: TailConfig, threads: int, scale: dict
    ) -> None:
        from ray import serve

        compute = serving_threads(threads)  # the replica's only OpenMP team (compute.py)
        # The checkpoint's files, as an ObjectRef wrapped in a list so that Ray hands over the
        # reference instead of resolving it at deploy time.
        files: dict[str, bytes] = await checkpoint[0]
        with tempfile.TemporaryDirectory(prefix="privpart-tail-") as tmp:
            for name, data in files.items():
                (Path(tmp) / name).write_bytes(data)
            split = split_checkpoint(Path(tmp), cut)
        self.service = TailService(split, config, compute)
        self.service.warm_up()
        self.service.batcher.start()
        self.replica = serve.get_replica_context().replica_tag
        self.scale = scale

    async def __call__(self, request: Request) -> Response:
        start = time.perf_counter()
        path = request.url.path
        methods = ENDPOINTS.get(path)
        try:
            if methods is None:
                response = _starlette(
                    json_error(404, "not_found", f"no endpoint {path}", self._endpoints_hint())
                )
            elif request.method not in methods:
                response = _starlette(
                    json_error(
                        405,
                        "method_not_allowed",
                        f"{request.method} is not allowed on {path}",
                        f"use {', '.join(methods)}",
                    )
                )
            else:
                handler: Callable[[Request], Awaitable[Response]] = getattr(
                    self, methods[request.method]
                )
                response = await handler(request)
        except RuntimeFailure as exc:
            response = _starlette(failure_response(exc))
        except Exception as exc:  # never take a replica down for one request
            print(f"privpart ray tail: internal error on {path}:", file=sys.stderr)
            traceback.print_exc()
            response = _starlette(
                json_error(
                    500,
                    "internal",
                    f"server failed on this request: {type(exc).__name__}",
                    "report this with the request that caused it",
                )
            )
        if path == "/v1/infer":
            self.service.requests.inc(str(response.status_code))
            self.service.latency.observe(time.perf_counter() - start)
        response.headers[REPLICA_HEADER] = self.replica
        return response

    @staticmethod
    def _endpoints_hint() -> str:
        listed = ", ".join(f"{m} {p}" for p, ms in ENDPOINTS.items() for m in ms)
        return f"endpoints: {listed} (docs/runtime.md)"

    async def infer(self, request: Request) -> Response:
        service = self.service
        body = await _read_body(request, service.spec.max_bytes)
        x = frames.decode(body, service.spec)
        y, timing = await service.batcher.submit(x)
        return Response(
            frames.encode(y),
            media_type=FRAME_TYPE,
            headers={"Server-Timing": server_timing(timing)},
        )

    async def info(self, _: Request) -> Response:
        return JSONResponse(
            {**self.service.describe(), "ray_serve": {**self.scale, "replica": self.replica}}
        )

    async def healthz(self, _: Request) -> Response:
        batcher = self.service.batcher
        if not batcher.accepting:
            return JSONResponse({"status": "draining"}, status_code=503)
        return JSONResponse({"status": "ok", "queued": batcher.queued_samples})

    async def metrics(self, _: Request) -> Response:
        service = self.service
        service.queue.set(service.batcher.queued_samples)
        service.draining.set(0 if service.batcher.accepting else 1)
        return Response(service.metrics.render(), headers={"Content-Type": PROMETHEUS_TYPE})

    async def __del__(self) -> None:
        """Ray Serve's graceful shutdown: stop intake, answer everything queued, then stop."""
        batcher = self.service.batcher
        await batcher.drain(self.service.config.drain_timeout_s)
        await batcher.close()


@dataclass(frozen=True)
class Scale:
    """How many replicas: a fixed `replicas`, or Ray Serve autoscaling (`autoscale`)."""

    replicas: int = 1
    autoscale: dict[str, Any] | None = None

    @classmethod
    def parse(cls, replicas: int, autoscale: str | None) -> Scale:
        """`--autoscale MIN,MAX` or a JSON object of Ray Serve `autoscaling_config` fields
        (passed through as given); `--replicas` is then the initial count."""
        if replicas < 1:
            raise PrivpartError(f"--replicas must be >= 1, got {replicas}", "e.g. --replicas 2")
        if not autoscale:
            return cls(replicas)
        text = autoscale.strip()
        try:
            if text.startswith("{"):
                cfg = json.loads(text)
            else:
                low, high = (int(v) for v in text.split(","))
                cfg = {"min_replicas": low, "max_replicas": high}
            low, high = int(cfg.get("min_replicas", 1)), int(cfg["max_replicas"])
        except (ValueError, KeyError, TypeError, AttributeError):
            raise PrivpartError(
                f"--autoscale {autoscale!r} is neither MIN,MAX nor a JSON object with max_replicas",
                'e.g. --autoscale 1,4 or --autoscale \'{"min_replicas": 1, "max_replicas": 4, '
                '"target_ongoing_requests": 8}\'',
            ) from None
        if not 0 <= low <= high or high < 1:
            raise PrivpartError(
                f"--autoscale needs 0 <= min <= max and max >= 1, got {low},{high}",
                "e.g. --autoscale 1,4",
            )
        cfg.setdefault("initial_replicas", min(max(replicas, low), high))
        return cls(replicas, cfg)

    def deployment_options(self) -> dict[str, Any]:
        if self.autoscale is None:
            return {"num_replicas": self.replicas}
        return {"autoscaling_config": self.autoscale}

    def describe(self) -> dict[str, Any]:
        if self.autoscale is None:
            return {"replicas": self.replicas}
        return {"autoscale": self.autoscale}


@dataclass
class RayTail:
    """A running Ray Serve tail: its URL, and the object-store copy of the checkpoint it needs
    (kept referenced here, so replicas started later by the autoscaler can still read it)."""

    url: str
    name: str
    split: SplitHead
    checkpoint_ref: Any

    def stop(self) -> None:
        """Delete the application: Ray Serve drains each replica (its `__del__`), then stops it."""
        from ray import serve

        serve.delete(self.name)


def check_tail(checkpoint: Path, cut: str, config: TailConfig, resources: Resources) -> SplitHead:
    """The split, built here first: a bad checkpoint, cut or device request fails before any
    Ray work (starting a local Ray alone takes seconds)."""
    if config.device == "cuda" and resources.gpus <= 0:
        raise PrivpartError(
            "--device cuda on Ray needs a GPU per replica", "add --ray-resources gpus=1 (or 0.5)"
        )
    return split_checkpoint(checkpoint, cut)


def deploy_tail(
    checkpoint: Path,
    cut: str,
    config: TailConfig,
    scale: Scale,
    resources: Resources,
    host: str = "127.0.0.1",
    port: int = 8600,
    threads: int | None = None,
    name: str = APP_NAME,
    split: SplitHead | None = None,
) -> RayTail:
    """Deploy the tail of `checkpoint` at `cut` on the Ray cluster this process is connected to
    and wait until every replica is up."""
    ray = import_ray()
    from ray import serve

    split = split or check_tail(checkpoint, cut, config, resources)
    files = {n: (checkpoint / n).read_bytes() for n in (META, WEIGHTS)}
    ref = ray.put(files)
    serve.start(http_options={"host": host, "port": port})
    deployment = serve.deployment(TailReplica).options(
        name="tail",
        ray_actor_options=resources.ray_options(),
        # Serve's default (5) would cap a replica's batches; the batcher's own bounded queue
        # answers 429 before this many requests can be in flight.
        max_ongoing_requests=config.batch.max_queue,
        graceful_shutdown_timeout_s=config.drain_timeout_s,
        **scale.deployment_options(),
    )
    app = deployment.bind([ref], cut, config, threads or resources.threads, scale.describe())
    try:
        # No per-request access log: like `privpart serve`, and it costs CPU per request.
        quiet = {"enable_access_log": False, "log_level": "WARNING"}
        serve.run(app, name=name, route_prefix="/", logging_config=quiet)
    except Exception as exc:  # Ray raises several types for a deployment that cannot start
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise PrivpartError(
            f"the Ray Serve tail did not start: {first}",
            "check `ray status` for free resources, and the replica logs in "
            "/tmp/ray/session_latest/logs/serve",
        ) from None
    return RayTail(f"http://{host}:{port}", name, split, ref)


@contextlib.contextmanager
def _stop_on_signal() -> Iterator[threading.Event]:
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve_on_ray(
    address: str | None,
    checkpoint: Path,
    cut: str,
    config: TailConfig,
    scale: Scale,
    resources: Resources,
    host: str,
    port: int,
    threads: int | None = None,
    on_started: Callable[[RayTail], None] | None = None,
    on_stopping: Callable[[], None] | None = None,
) -> None:
    """`privpart serve --ray`: deploy, serve until SIGINT/SIGTERM, then drain and remove."""
    split = check_tail(checkpoint, cut, config, resources)
    private = check_address(address) == LOCAL and not import_ray().is_initialized()
    with ray_session(address):
        from ray import serve

        # Ours, not Ray's exit-on-SIGTERM: a signal during the deploy stops right after it.
        with _stop_on_signal() as stop:
            tail = deploy_tail(
                checkpoint, cut, config, scale, resources, host, port, threads, split=split
            )
            if on_started is not None and not stop.is_set():
                on_started(tail)
            while not stop.wait(0.5):
                pass
            if on_stopping is not None:
                on_stopping()
            tail.stop()
        if private:  # our own local Ray: stop Serve's proxy and controller too
            serve.shutdown()
