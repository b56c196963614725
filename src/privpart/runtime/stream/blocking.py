"""A blocking stream connection (`wire.py`), for callers that run round trips on their own
threads: the enclave worker's tail link, and scripts.

The reply is read with `recv_into` straight into a buffer of its declared size; the request's
parts are sent without joining them (`sendmsg` on a plain socket).
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Sequence
from typing import Any

from privpart.runtime.errors import RuntimeFailure
from privpart.runtime.stream import wire
from privpart.runtime.tls import presents_pin

Part = bytes | bytearray | memoryview


class StreamClosed(ConnectionError):
    """The server closed the stream (between or during a round trip)."""


def _recv_exactly(sock: socket.socket, size: int) -> bytearray:
    buf = bytearray(size)
    view, got = memoryview(buf), 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            raise StreamClosed(f"the server closed the stream after {got} of {size} bytes")
        got += n
    return buf


def _send_all(sock: socket.socket, parts: Sequence[Part]) -> None:
    if isinstance(sock, ssl.SSLSocket):  # no sendmsg over TLS
        for part in parts:
            sock.sendall(part)
        return
    views = [memoryview(p).cast("B") for p in parts]
    while views:
        sent = sock.sendmsg(views)
        while views and sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        if views and sent:
            views[0] = views[0][sent:]


class BlockingStream:
    """One connection: `hello` done on open, then `roundtrip` per request."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        pin: bytes = b"",
        token: str | None = None,
        timeout: float = 60.0,
        max_reply: int = 256 << 20,
    ) -> None:
        self.max_reply = max_reply
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=None if pin else host)
                if pin and not presents_pin(sock, pin):
                    raise RuntimeFailure(
                        "tls_pin",
                        f"{host}:{port} presented a certificate other than the pinned one",
                        "something on the path impersonates the server; nothing was sent",
                        status=502,
                    )
            self.sock = sock
            status, _, body = self.roundtrip([wire.hello(token)], prefixed=True)
        except BaseException:
            sock.close()
            raise
        try:
            self.info: dict[str, Any] = json.loads(body) if status == 200 else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            sock.close()
            raise StreamClosed(
                f"{host}:{port} answered the hello with something that is not JSON: "
                "not a privpart stream port?"
            ) from None
        self.hello_status, self.hello_body = status, bytes(body)

    def roundtrip(
        self, parts: Sequence[Part], prefixed: bool = False
    ) -> tuple[int, dict[str, Any], bytearray]:
        """Send one request (its parts; `prefixed`: they already hold their own prefix) and
        read its reply: status, meta, body."""
        if not prefixed:
            parts = [wire.request_prefix(wire.frame_size(parts)), *parts]
        _send_all(self.sock, parts)
        size, status, meta_len = wire.REPLY.unpack(_recv_exactly(self.sock, wire.REPLY.size))
        if size > self.max_reply or meta_len > wire.MAX_META:
            self.close()
            raise StreamClosed(
                f"reply of {size} bytes (meta {meta_len}) exceeds this client's limit"
            )
        meta = wire.parse_meta(_recv_exactly(self.sock, meta_len)) if meta_len else {}
        return status, meta, _recv_exactly(self.sock, size)

    def close(self) -> None:
        self.sock.close()
