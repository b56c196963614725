"""The tail server on Ray Serve: N replicas (or an autoscaled range) behind one HTTP address.

Same protocol, same clients (`TailClient`, `DeviceClient`, the enclave host). Each replica *is*
the ordinary tail: `TailService` holds the split's tail on its device, the dynamic batcher with
its bounded queue, the frame limits and the metrics, and the same `TailHandlers` answer every
endpoint of `protocol.TAIL_ENDPOINTS`, exactly as in `privpart serve` (body limits, bearer
token, JSON errors). Only the transport adapter differs, because Ray Serve's proxy speaks ASGI
(Starlette) where the single server speaks aiohttp. What a client may notice:

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
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
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
from privpart.runtime import protocol
from privpart.runtime.compute_thread import serving_threads
from privpart.runtime.errors import RuntimeFailure
from privpart.runtime.head import SplitHead, split_checkpoint
from privpart.runtime.malloc import keep_freed_memory
from privpart.runtime.server.handlers import TailHandlers
from privpart.runtime.server.http import redacted
from privpart.runtime.server.limits import check_token, read_limited
from privpart.runtime.server.service import TailConfig, TailService
from privpart.training.checkpoint import META, WEIGHTS

try:
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import Response
except ImportError as exc:  # starlette comes with the optional extra, ray[serve]
    raise PrivpartError("--ray needs Ray Serve, which is not installed", INSTALL_HINT) from exc

APP_NAME = "privpart-tail"
REPLICA_HEADER = protocol.REPLICA_HEADER


def _starlette(reply: protocol.Reply) -> Response:
    return Response(bytes(reply.body), reply.status, reply.headers, media_type=reply.content_type)


async def _chunks(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            if chunk:
                yield chunk
    except ClientDisconnect:
        raise RuntimeFailure(
            "truncated", "request body is incomplete: the client went away", "send the whole frame"
        ) from None


class TailReplica:
    """One Ray Serve replica: the tail's `TailHandlers` behind a Starlette adapter.

    The constructor runs on the replica's event loop (Ray Serve awaits async constructors), so
    the batcher's loop task starts where requests will be served.
    """

    async def __init__(
        self,
        checkpoint: list[Any],
        cut: str,
        config: TailConfig,
        threads: int,
        scale: dict,
        trust_code: bool = False,
    ) -> None:
        from ray import serve

        compute = serving_threads(threads)  # the replica's only OpenMP team (compute.py)
        keep_freed_memory()  # freed activations reused (runtime/malloc.py)
        # The checkpoint's files, as an ObjectRef wrapped in a list so that Ray hands over the
        # reference instead of resolving it at deploy time.
        files: dict[str, bytes] = await checkpoint[0]
        with tempfile.TemporaryDirectory(prefix="privpart-tail-") as tmp:
            for name, data in files.items():
                (Path(tmp) / name).write_bytes(data)
            split = split_checkpoint(Path(tmp), cut, trust_code=trust_code)
        self.service = TailService(split, config, compute)
        self.service.warm_up()
        self.service.batcher.start()
        self.replica = serve.get_replica_context().replica_tag
        self.handlers = TailHandlers(
            self.service, {"ray_serve": {**scale, "replica": self.replica}}
        )

    async def __call__(self, request: Request) -> Response:
        start = time.perf_counter()
        endpoint: protocol.Endpoint | None = None
        limits = self.service.config.limits
        try:
            try:
                endpoint, _ = protocol.route(
                    protocol.TAIL_ENDPOINTS, request.method, request.url.path
                )
            except LookupError as exc:
                code, message, hint = exc.args
                raise RuntimeFailure(code, message, hint) from None
            if not endpoint.public:
                check_token(limits.token, request.headers.get(protocol.AUTH_HEADER))
            body = bytearray()
            if endpoint.body is not None:
                declared = request.headers.get("content-length", "")
                body = await read_limited(
                    _chunks(request),
                    int(declared) if declared.isdigit() else None,
                    self.handlers.body_limit,
                    limits.body_timeout_s,
                )
            reply = await self.handlers.handler(endpoint)(body)
        except RuntimeFailure as exc:  # server-side detail to the log, not the client
            reply = redacted(exc, f"{request.method} {request.url.path[:64]}").reply()
        except Exception as exc:  # never take a replica down for one request
            failure = RuntimeFailure("internal", f"{type(exc).__name__}: {exc}")
            reply = redacted(failure, f"{request.method} {request.url.path[:64]}").reply()
        self.handlers.count(endpoint, reply.status, time.perf_counter() - start)
        reply.headers[REPLICA_HEADER] = self.replica
        return _starlette(reply)

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


def check_tail(
    checkpoint: Path,
    cut: str,
    config: TailConfig,
    resources: Resources,
    trust_code: bool = False,
) -> SplitHead:
    """The split, built here first: a bad checkpoint, cut or device request fails before any
    Ray work (starting a local Ray alone takes seconds)."""
    if config.device == "cuda" and resources.gpus <= 0:
        raise PrivpartError(
            "--device cuda on Ray needs a GPU per replica", "add --ray-resources gpus=1 (or 0.5)"
        )
    return split_checkpoint(checkpoint, cut, trust_code=trust_code)


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
    trust_code: bool = False,
) -> RayTail:
    """Deploy the tail of `checkpoint` at `cut` on the Ray cluster this process is connected to
    and wait until every replica is up."""
    ray = import_ray()
    from ray import serve

    split = split or check_tail(checkpoint, cut, config, resources, trust_code)
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
    app = deployment.bind(
        [ref], cut, config, threads or resources.threads, scale.describe(), trust_code
    )
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
    trust_code: bool = False,
) -> None:
    """`privpart serve --ray`: deploy, serve until SIGINT/SIGTERM, then drain and remove."""
    split = check_tail(checkpoint, cut, config, resources, trust_code)
    private = check_address(address) == LOCAL and not import_ray().is_initialized()
    with ray_session(address):
        from ray import serve

        # Ours, not Ray's exit-on-SIGTERM: a signal during the deploy stops right after it.
        with _stop_on_signal() as stop:
            tail = deploy_tail(
                checkpoint,
                cut,
                config,
                scale,
                resources,
                host,
                port,
                threads,
                split=split,
                trust_code=trust_code,
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
