"""What every privpart server enforces whatever its transport: body size and read time, a cap on
open connections, and an optional bearer token.

- A body is refused from its declared length before it is read (413), and must arrive within
  `body_timeout_s` (408, connection closed): a client that trickles bytes holds a connection
  for at most that long, and is not counted as in flight meanwhile.
- A request's headers must arrive within `header_timeout_s` (in total, not per byte), and a
  keep-alive connection idles at most `idle_timeout_s`; at most `max_connections` connections
  are open, at most `max_connections_per_address` from one address, and at the cap the address
  holding the most gives one up (`guard.py`), so idle and slow clients cannot lock others out.
- With a token, every endpoint but `/healthz` needs `Authorization: Bearer <token>` (401).
  Token files must be readable by their owner only (`read_token`).
"""

from __future__ import annotations

import asyncio
import hmac
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from privpart.errors import PrivpartError
from privpart.runtime.errors import RuntimeFailure


@dataclass(frozen=True)
class ServerLimits:
    body_timeout_s: float = 10.0
    max_connections: int = 512
    token: str | None = None  # bearer token every client must present (None: no auth)
    header_timeout_s: float = 5.0  # from accept (or a keep-alive request's first byte)
    idle_timeout_s: float = 30.0  # keep-alive between requests (clients' pools idle 15 s)
    max_connections_per_address: int = 64  # an IPv4 address or an IPv6 /64


def read_token(path: Path | None) -> str | None:
    """A bearer token from a file (its first line): never on the command line, where `ps` shows
    it to every user of the machine."""
    if path is None:
        return None
    try:
        token = path.read_text().strip().splitlines()[0].strip() if path.stat().st_size else ""
    except (OSError, IndexError):
        token = ""
    if len(token) < 16 or any(c.isspace() for c in token):
        raise PrivpartError(
            f"token file {path} holds no usable token (at least 16 characters, no spaces)",
            "write one only you can read, e.g. "
            "`(umask 077; python -c 'import secrets; print(secrets.token_urlsafe(32))' > FILE)`",
        )
    _check_private(path)
    return token


def _check_private(path: Path) -> None:
    """A token that others on the machine can read is not a secret: refuse it."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise PrivpartError(
            f"cannot read token file {path}: {exc.strerror or exc}",
            "pass an existing file holding the token",
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PrivpartError(
            f"token file {path} is readable or writable by other users "
            f"(mode {stat.S_IMODE(mode):04o}); a token others can read is not a secret",
            f"run `chmod 600 {path}` (and rotate the token if others may have read it)",
        )


def check_token(expected: str | None, header: str | None) -> None:
    """Refuse a request without the server's bearer token (constant-time comparison)."""
    if expected is None:
        return
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), expected):
        raise RuntimeFailure(
            "unauthorized",
            "missing or wrong bearer token",
            "pass the server's token (privpart infer --token-file FILE)",
        )


async def read_limited(
    chunks: AsyncIterator[bytes], declared: int | None, limit: int, timeout_s: float
) -> bytearray:
    """The whole body within `timeout_s`, refused as soon as it declares or sends more than
    `limit` bytes. With a declared length the body goes straight into one buffer of that size
    (the frame decoder then uses it in place)."""
    if declared is not None and declared > limit:
        raise RuntimeFailure(
            "too_large", f"request body of {declared} bytes exceeds {limit}", "send smaller batches"
        )
    try:
        async with asyncio.timeout(timeout_s):
            return await _collect(chunks, declared, limit)
    except TimeoutError:
        raise RuntimeFailure(
            "body_timeout",
            f"request body did not arrive within {timeout_s:g} s",
            "send the whole body at once; the connection was closed",
        ) from None


async def _collect(chunks: AsyncIterator[bytes], declared: int | None, limit: int) -> bytearray:
    if declared is None:
        body = bytearray()
        async for chunk in chunks:
            body += chunk
            if len(body) > limit:
                raise RuntimeFailure(
                    "too_large", f"request body exceeds {limit} bytes", "send smaller batches"
                )
        return body
    body = bytearray(declared)
    view, pos = memoryview(body), 0
    async for chunk in chunks:
        if pos + len(chunk) > declared:
            raise RuntimeFailure(
                "too_large", f"request body exceeds its Content-Length of {declared}", "send less"
            )
        view[pos : pos + len(chunk)] = chunk
        pos += len(chunk)
    if pos < declared:
        raise RuntimeFailure(
            "truncated", f"body ended after {pos} of {declared} bytes", "send the whole frame"
        )
    return body
