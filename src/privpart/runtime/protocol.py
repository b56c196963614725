"""The runtime's HTTP protocol, defined once: endpoints, media types, headers, the error format
and the HTTP status of every error code.

Both tail servers (aiohttp `server/app.py`, Ray Serve `server/ray_serve.py`), both tail callers
(`client/tail.py`, `enclave/tail_link.py`), the enclave host and its client, and the enclave
worker (whose pipe replies carry the same error objects) read endpoints and errors from here, so
changing an endpoint or an error's status is a one-line change. This module imports nothing
from the rest of the runtime: everything else depends on it, never the other way.

Error format: every failure is JSON `{"error": code, "message": what was wrong, "hint": what to
do}` with the status `STATUS[code]` (`Retry-After: 1` on 429 and 503).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

FRAME_TYPE = "application/x-privpart-frame"
RECORD_TYPE = "application/x-privpart-record"
JSON_TYPE = "application/json"
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"

TIMING_HEADER = "Server-Timing"
AUTH_HEADER = "Authorization"
REPLICA_HEADER = "X-Privpart-Replica"
SESSION_HEADER = "X-Privpart-Session"  # the enclave session a sealed record belongs to


@dataclass(frozen=True)
class Endpoint:
    """One HTTP endpoint: method, path (with at most one `{param}`), media types, auth."""

    name: str
    method: str
    path: str
    body: str | None  # media type of the request body, None when there is none
    answer: str  # media type of a successful answer
    public: bool = False  # answered without the bearer token (health probes)

    def url(self, **params: str) -> str:
        return self.path.format(**params)


INFER = Endpoint("infer", "POST", "/v1/infer", FRAME_TYPE, FRAME_TYPE)
INFO = Endpoint("info", "GET", "/v1/info", None, JSON_TYPE)
HEALTHZ = Endpoint("healthz", "GET", "/healthz", None, JSON_TYPE, public=True)
METRICS = Endpoint("metrics", "GET", "/metrics", None, PROMETHEUS_TYPE)
ATTEST = Endpoint("attest", "POST", "/v1/attest", JSON_TYPE, JSON_TYPE)
# the session id travels in SESSION_HEADER, never in the URL (which proxies and logs keep)
SEALED_INFER = Endpoint("sealed_infer", "POST", "/v1/infer", RECORD_TYPE, RECORD_TYPE)
# the same with the session id in the path: still answered for clients of earlier versions
SESSION_INFER = Endpoint(
    "session_infer", "POST", "/v1/sessions/{session}/infer", RECORD_TYPE, RECORD_TYPE
)

TAIL_ENDPOINTS: tuple[Endpoint, ...] = (INFER, INFO, HEALTHZ, METRICS)
ENCLAVE_ENDPOINTS: tuple[Endpoint, ...] = (
    ATTEST,
    SEALED_INFER,
    SESSION_INFER,
    INFO,
    HEALTHZ,
    METRICS,
)

# The status of every error code a privpart server or worker answers (docs/runtime.md).
STATUS: dict[str, int] = {
    # frames (frames.py) and requests
    **dict.fromkeys(
        (
            "truncated",
            "bad_magic",
            "bad_header_length",
            "bad_header",
            "unknown_dtype",
            "bad_shape",
            "trailing_bytes",
            "wrong_dtype",
            "wrong_shape",
            "non_finite",
            "unsupported_dtype",
            "bad_hello",
            "bad_key_share",
            "bad_op",
        ),
        400,
    ),
    "too_large": 413,
    "batch_too_large": 413,
    "not_found": 404,
    "method_not_allowed": 405,
    "body_timeout": 408,
    "header_timeout": 408,  # answered by server/guard.py before any request exists
    # authentication and the record layer (channel/session.py)
    "unauthorized": 401,
    "tampered": 401,
    "replayed": 401,
    "out_of_order": 401,
    "record_truncated": 401,
    "sequence_exhausted": 401,
    "session_busy": 409,
    "unknown_session": 410,
    "session_closed": 410,
    # load and availability
    "busy": 429,
    "sessions_full": 503,
    "draining": 503,
    "worker_restarted": 503,
    "worker_unavailable": 503,
    "worker_timeout": 504,
    "over_budget": 507,
    # failures on the server side
    "compute_failed": 500,
    "internal": 500,
    "enclave_error": 500,
    "enclave_internal": 500,
    "quote_failed": 500,
    "bad_tail_answer": 502,
    "tail_forgery_detected": 502,
    "tail_unreachable": 502,
    "tail_disconnected": 502,
    "tail_tls": 502,
    "tail_timeout": 504,
    "tail_bad_url": 500,
}
RETRY_AFTER = frozenset({429, 503})
# Server-side failures (5xx) whose message a client may read: it is about the client's request
# or the server's load. Every other 5xx message (exception text, the tail's address, network
# errors) stays in the server's log and the client gets a generic one (`server/http.py`).
PUBLIC_5XX: frozenset[str] = frozenset(
    {
        "bad_tail_answer",
        "tail_forgery_detected",  # the client's answer was withheld: it must know why
        "sessions_full",
        "draining",
        "busy",
        "worker_restarted",
        "worker_unavailable",
        "over_budget",
    }
)


def status_of(code: str, default: int = 500) -> int:
    """The HTTP status of an error code (`default` for codes outside the table)."""
    return STATUS.get(code, default)


def error_body(code: str, message: str, hint: str = "") -> dict[str, str]:
    return {"error": code, "message": message, "hint": hint}


def error_headers(status: int) -> dict[str, str]:
    return {"Retry-After": "1"} if status in RETRY_AFTER else {}


@dataclass(frozen=True)
class ErrorReply:
    """An error answer as a peer received it."""

    code: str
    message: str
    hint: str
    status: int


def parse_error(status: int, body: bytes, where: str) -> ErrorReply:
    """A server's JSON error, or a description of whatever else it answered."""
    try:
        err = json.loads(body)
        if not isinstance(err, dict) or "error" not in err:
            raise ValueError
        return ErrorReply(
            str(err["error"]), str(err.get("message", "")), str(err.get("hint", "")), status
        )
    except (ValueError, UnicodeDecodeError):
        text = body[:200].decode("utf-8", "replace")
        return ErrorReply(
            f"http_{status}",
            f"{where} answered HTTP {status}: {text}",
            "is this a privpart server?",
            status,
        )


@dataclass
class Reply:
    """A transport-neutral answer: the adapters turn it into an aiohttp or Starlette response."""

    status: int
    body: bytes | bytearray | memoryview
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, obj: Any, status: int = 200) -> Reply:
        return cls(status, json.dumps(obj).encode(), JSON_TYPE)

    @classmethod
    def error(cls, code: str, message: str, hint: str = "", status: int | None = None) -> Reply:
        status = status if status is not None else status_of(code)
        return cls(
            status,
            json.dumps(error_body(code, message, hint)).encode(),
            JSON_TYPE,
            error_headers(status),
        )


def server_timing(timings: dict[str, float]) -> str:
    """The standard `Server-Timing` header (`name;dur=milliseconds, ...`): how each hop reports
    where its time went, so a client can break latency down without trusting anyone's clock."""
    return ", ".join(f"{k};dur={v:.3f}" for k, v in timings.items())


def parse_server_timing(value: str | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in (value or "").split(","):
        name, _, dur = part.strip().partition(";dur=")
        try:
            out[name] = float(dur)
        except ValueError:
            continue
    return out


def bearer(token: str | None) -> dict[str, str]:
    """The request header that carries a bearer token (none without a token)."""
    return {AUTH_HEADER: f"Bearer {token}"} if token else {}


def route(
    endpoints: tuple[Endpoint, ...], method: str, path: str
) -> tuple[Endpoint, dict[str, str]]:
    """The endpoint serving (method, path) and its path parameter; else a `not_found` or
    `method_not_allowed` error as (code, message, hint) in a `LookupError`."""
    matches = [(ep, params) for ep in endpoints if (params := _match(ep.path, path)) is not None]
    for ep, params in matches:
        if ep.method == method:
            return ep, params
    if matches:
        allowed = ", ".join(ep.method for ep, _ in matches)
        raise LookupError(
            "method_not_allowed", f"{method} is not allowed on {path}", f"use {allowed}"
        )
    listed = ", ".join(f"{ep.method} {ep.path}" for ep in endpoints)
    raise LookupError("not_found", f"no endpoint {path}", f"endpoints: {listed} (docs/runtime.md)")


def _match(template: str, path: str) -> dict[str, str] | None:
    want, got = template.strip("/").split("/"), path.strip("/").split("/")
    if len(want) != len(got):
        return None
    params: dict[str, str] = {}
    for w, g in zip(want, got, strict=True):
        if w.startswith("{") and w.endswith("}"):
            if not g:
                return None
            params[w[1:-1]] = g
        elif w != g:
            return None
    return params
