"""Talk to a tail server: features in, logits out (device mode)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import torch

from privpart.runtime import frames, protocol
from privpart.runtime.client.http import HttpPeer
from privpart.runtime.stream import wire
from privpart.runtime.stream.client import StreamClient

ANSWER_SPEC = frames.FrameSpec(max_batch=1 << 16, max_bytes=256 << 20)


class TailClient:
    def __init__(
        self,
        url: str,
        timeout: float = 30.0,
        session: aiohttp.ClientSession | None = None,
        token: str | None = None,
        tls_pin: bytes | None = None,
    ) -> None:
        self.peer = HttpPeer(url, timeout, session, token, tls_pin)
        self.url = self.peer.base_url

    async def info(self) -> dict[str, Any]:
        return await self.peer.get_json(protocol.INFO.path)

    async def infer_frame(
        self, frame: bytes | Sequence[bytes | memoryview]
    ) -> tuple[bytes, dict[str, float]]:
        """Send an encoded features frame (or its parts, `frames.encode_parts`); the encoded
        logits frame and the server's timings."""
        ep = protocol.INFER
        if not isinstance(frame, bytes):
            frame = b"".join(frame)
        _, body, headers = await self.peer.request(ep.method, ep.path, frame, ep.body)
        return body, protocol.parse_server_timing(headers.get(protocol.TIMING_HEADER))

    async def infer(self, features: torch.Tensor) -> torch.Tensor:
        body, _ = await self.infer_frame(frames.encode(features))
        return frames.decode(body, ANSWER_SPEC)

    async def close(self) -> None:
        await self.peer.close()


def tail_client(
    url: str,
    timeout: float = 30.0,
    session: aiohttp.ClientSession | None = None,
    token: str | None = None,
    tls_pin: bytes | None = None,
) -> TailClient | StreamClient:
    """The client for `url`: the stream transport for `tcp://` and `tls://` URLs (a tail
    started with `--stream-port`), HTTP(S) otherwise."""
    if urlsplit(url).scheme in wire.SCHEMES:
        return StreamClient(url, timeout, token, tls_pin)
    return TailClient(url, timeout, session, token, tls_pin)
