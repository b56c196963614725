"""Talk to a tail server: features in, logits out (device mode, and the enclave host's hop)."""

from __future__ import annotations

from typing import Any

import aiohttp
import torch

from privpart.runtime import frames
from privpart.runtime.client.http import HttpPeer
from privpart.runtime.server.http import FRAME_TYPE, parse_server_timing

ANSWER_SPEC = frames.FrameSpec(max_batch=1 << 16, max_bytes=256 << 20)


class TailClient:
    def __init__(
        self, url: str, timeout: float = 30.0, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.peer = HttpPeer(url, timeout, session)
        self.url = self.peer.base_url

    async def info(self) -> dict[str, Any]:
        return await self.peer.get_json("/v1/info")

    async def infer_frame(self, frame: bytes) -> tuple[bytes, dict[str, float]]:
        """Send an encoded features frame; the encoded logits frame and the server's timings."""
        _, body, headers = await self.peer.request("POST", "/v1/infer", frame, FRAME_TYPE)
        return body, parse_server_timing(headers.get("Server-Timing"))

    async def infer(self, features: torch.Tensor) -> torch.Tensor:
        body, _ = await self.infer_frame(frames.encode(features))
        return frames.decode(body, ANSWER_SPEC)

    async def close(self) -> None:
        await self.peer.close()
