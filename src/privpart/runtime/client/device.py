"""Device-mode client: the head runs here, only its features go to the tail server.

With `verify_tail=RATE` the client also holds the tail (from the checkpoint it trusts) and
recomputes a random share of answers on its own CPU (`privpart.runtime.integrity`)."""

from __future__ import annotations

import time

import aiohttp
import torch

from privpart.errors import PrivpartError
from privpart.runtime import frames
from privpart.runtime.client.enclave import ANSWER_SPEC, InferResult
from privpart.runtime.client.tail import tail_client
from privpart.runtime.errors import FrameError
from privpart.runtime.head import SplitHead
from privpart.runtime.integrity import TOLERANCE, TailCheck, Tolerance


class DeviceClient:
    def __init__(
        self,
        split: SplitHead,
        tail_url: str,
        timeout: float = 30.0,
        session: aiohttp.ClientSession | None = None,
        token: str | None = None,
        tls_pin: bytes | None = None,
        verify_tail: float = 0.0,
        tolerance: Tolerance = TOLERANCE,
    ) -> None:
        self.head = split.head.eval()
        # the trusted copy of the tail: on the CPU, in fp32, only when answers are spot-checked
        self.check = TailCheck(
            split.tail.eval() if verify_tail > 0 else None, verify_tail, tolerance,
            f"tail server at {tail_url}",
        )  # fmt: skip
        self.info = split.info
        self.tail = tail_client(tail_url, timeout, session, token, tls_pin)
        self.answer_spec = frames.FrameSpec.for_samples(
            (split.info.spec.num_classes,), ANSWER_SPEC.max_batch, "float32"
        )

    async def check_tail(self) -> dict:
        """The tail's description, after checking it serves the rest of *this* head."""
        info = await self.tail.info()
        mine = (self.info.cut.name, list(self.info.cut.shape))
        theirs = (info.get("cut"), info.get("feature_shape"))
        if mine != theirs:
            raise PrivpartError(
                f"tail server at {self.tail.url} serves cut {theirs[0]} {theirs[1]}, "
                f"but this head ends at {mine[0]} {mine[1]}",
                "start the tail with the same --cut, or pass the cut the tail serves",
            )
        return info

    async def infer(self, x: torch.Tensor) -> InferResult:
        start = time.perf_counter()
        with torch.inference_mode():
            features = self.head(x)
        t1 = time.perf_counter()
        verify = self.check.pick()  # drawn after the features exist, before anything is sent
        frame = frames.encode_parts(features)
        t2 = time.perf_counter()
        body, server = await self.tail.infer_frame(frame)
        t3 = time.perf_counter()
        logits = frames.decode(body, self.answer_spec)
        if logits.shape[0] != x.shape[0]:
            raise FrameError(
                "wrong_shape",
                f"the tail answered {logits.shape[0]} rows of logits for a batch of {x.shape[0]}",
                "check the tail server: it must serve the same checkpoint and cut",
            )
        t4 = time.perf_counter()
        timing = {f"tail_{k}": v for k, v in server.items()}
        if verify:
            self.check.verify(logits, self.check.recompute(features))
            timing["verify_tail"] = (time.perf_counter() - t4) * 1e3
        timing.update(
            head=(t1 - start) * 1e3,
            client_encode=(t2 - t1) * 1e3,
            roundtrip=(t3 - t2) * 1e3,
            client_decode=(t4 - t3) * 1e3,
            total=(time.perf_counter() - start) * 1e3,
        )
        return InferResult(logits, timing)

    async def close(self) -> None:
        await self.tail.close()
