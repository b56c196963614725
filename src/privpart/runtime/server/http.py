"""What both servers share over HTTP: JSON errors, bounded body reads, timing headers.

Every failure a server answers is JSON `{"error": code, "message": ..., "hint": ...}` with a 4xx
or 5xx status, including aiohttp's own (404, 405, 413) and unexpected exceptions (500): a client
never has to parse an HTML error page, and a bad request never takes the server down.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Awaitable, Callable

from aiohttp import ClientPayloadError, web

from privpart.runtime.errors import RuntimeFailure
from privpart.runtime.frames import MEDIA_TYPE
from privpart.runtime.timing import parse_server_timing, server_timing

__all__ = ["parse_server_timing", "server_timing"]

FRAME_TYPE = MEDIA_TYPE
RECORD_TYPE = "application/x-privpart-record"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(
    status: int, code: str, message: str, hint: str = "", **headers: str
) -> web.Response:
    body = json.dumps({"error": code, "message": message, "hint": hint})
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)


def failure_response(exc: RuntimeFailure) -> web.Response:
    extra = {"Retry-After": "1"} if exc.status in (429, 503) else {}
    return json_error(exc.status, exc.code, exc.message, exc.hint, **extra)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a JSON error response; log the unexpected ones."""
    try:
        return await handler(request)
    except RuntimeFailure as exc:
        return failure_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        return json_error(
            exc.status,
            code.get(exc.status, f"http_{exc.status}"),
            exc.reason,
            "see docs/runtime.md for the endpoints and their limits",
        )
    except (ConnectionError, TimeoutError):
        raise  # the client went away: aiohttp closes the connection
    except Exception as exc:
        print(f"privpart server: internal error on {request.path}:", file=sys.stderr)
        traceback.print_exc()
        return json_error(
            500,
            "internal",
            f"server failed on this request: {type(exc).__name__}",
            "report this with the request that caused it",
        )


async def read_body(request: web.Request, limit: int) -> bytearray:
    """The request body, refused with 413 before reading when it declares more than `limit`.

    With a Content-Length the body is read straight into one buffer of that size (one copy,
    and the frame decoder can then use it in place); without one, the application's
    `client_max_size` bounds it.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise RuntimeFailure(
            "too_large",
            f"request body of {declared} bytes exceeds {limit}",
            "send smaller batches",
            status=413,
        )
    try:
        if declared is None:
            body = bytearray(await request.read())
        else:
            body = bytearray(declared)
            view, pos = memoryview(body), 0
            while pos < declared:
                chunk = await request.content.readany()
                if not chunk:
                    break
                view[pos : pos + len(chunk)] = chunk
                pos += len(chunk)
            if pos < declared:
                raise RuntimeFailure(
                    "truncated",
                    f"body ended after {pos} of {declared} bytes",
                    "send the whole frame",
                )
    except ClientPayloadError as exc:
        raise RuntimeFailure(
            "truncated", f"request body is incomplete: {exc}", "send the whole frame"
        ) from None
    if len(body) > limit:
        raise RuntimeFailure(
            "too_large", f"request body exceeds {limit} bytes", "send smaller batches", status=413
        )
    return body
