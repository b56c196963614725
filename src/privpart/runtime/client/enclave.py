"""Enclave-mode client (TEE + GPU partitioning): attest the enclave, then send sealed inputs,
get sealed logits.

Nothing leaves the client before the quote checks out against the client's
`VerificationPolicy` (a DCAP quote verified to Intel's root with pinned MRENCLAVE/MRSIGNER or
MRTD and an accepted TCB status; a simulated quote only with `allow_simulated` and a pinned
platform key), for the expected measurement (recomputed from the checkpoint the client trusts),
bound to this handshake. Any failure drops the session; when the server says the session is
gone (the worker restarted, or closed the session) the client attests again and retries the
request once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
import torch

from privpart.errors import PrivpartError
from privpart.runtime import frames, protocol
from privpart.runtime.channel.attestation import Attestation, collateral_for
from privpart.runtime.channel.envelope import QuoteEnvelope
from privpart.runtime.channel.handshake import ClientHello
from privpart.runtime.channel.policy import VerificationPolicy
from privpart.runtime.channel.session import Session
from privpart.runtime.client.http import HttpPeer
from privpart.runtime.errors import RuntimeFailure
from privpart.runtime.stream.client import StreamClient

ANSWER_SPEC = frames.FrameSpec(max_batch=1 << 16, max_bytes=256 << 20)
SESSION_GONE = {"unknown_session", "worker_restarted", "worker_unavailable", "session_closed"}


@dataclass
class InferResult:
    """Logits and where the time went, in milliseconds (client parts + server-reported parts)."""

    logits: torch.Tensor
    timing: dict[str, float] = field(default_factory=dict)


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_transport(url: str, allow_plain_http: bool) -> str | None:
    """Refuse plain HTTP (or a plain tcp:// stream) to an enclave host off this machine (the
    bearer token, session ids and request metadata would cross the network in clear); the
    warning to print for plain HTTP that is allowed, else None."""
    scheme = urlsplit(url).scheme
    if scheme in ("https", "tls"):
        return None
    if scheme not in ("http", "tcp"):
        raise PrivpartError(
            f"enclave URL {url!r} is neither https:// nor http://",
            "pass https://HOST:PORT (the enclave host serves TLS with --tls-cert/--tls-key)",
        )
    if not (is_loopback(url) or allow_plain_http):
        raise PrivpartError(
            f"refusing plain HTTP to {url}: the bearer token, session ids and request metadata "
            "would cross the network unencrypted (inputs and logits stay sealed)",
            "serve the enclave host with --tls-cert/--tls-key and use https:// with "
            "--enclave-cert FILE (API: tls_pin=cert_fingerprint(FILE)); or, on a network you "
            "control, pass --allow-plain-http (API: allow_plain_http=True)",
        )
    return (
        f"plain HTTP to the enclave host {url}: the bearer token and session ids are not "
        "encrypted on the way (loopback only, or --allow-plain-http); use https:// in production"
    )


class EnclaveClient:
    """`tls_pin` (SHA-256 of the host's certificate, `tls.cert_fingerprint`) accepts an
    https:// host presenting exactly that certificate; without it, https:// verifies against
    the system's CAs. Plain http:// is refused unless the host is on loopback or
    `allow_plain_http` (`transport_warning` then says what that exposes).

    With `stream=True` the sealed requests go over the host's stream port (`privpart enclave
    --stream-port`, named by its `/v1/info`), one persistent connection, under the same TLS
    pin and transport rule; attestation stays on HTTP(S)."""

    def __init__(
        self,
        url: str,
        policy: VerificationPolicy,
        measurement: str,
        timeout: float = 30.0,
        session: aiohttp.ClientSession | None = None,
        token: str | None = None,
        tls_pin: bytes | None = None,
        allow_plain_http: bool = False,
        stream: bool = False,
    ) -> None:
        self.transport_warning = check_transport(url, allow_plain_http)  # the CLI prints it
        self.peer = HttpPeer(url, timeout, session, token, tls_pin)
        self.allow_plain_http = allow_plain_http
        self.stream = stream
        self._stream: StreamClient | None = None
        self._stream_args = (timeout, token, tls_pin)
        self.policy = policy
        self.measurement = measurement
        self.attestation: Attestation | None = None
        self.attestations = 0
        self._session: Session | None = None
        self._lock = asyncio.Lock()

    async def info(self) -> dict:
        return await self.peer.get_json(protocol.INFO.path)

    async def attest(self) -> Attestation:
        """Handshake + quote verification; on success a fresh session is ready."""
        self._session = None
        hello = ClientHello()
        answer = await self.peer.post_json(protocol.ATTEST.path, hello.to_json())
        collateral = None
        if isinstance(answer, dict):  # hardware evidence needs Intel's collateral
            collateral = await collateral_for(
                QuoteEnvelope.from_json(answer.get("quote")), self.policy
            )
        self._session, self.attestation = hello.finish(
            answer, self.policy, self.measurement, collateral
        )
        self.attestations += 1
        return self.attestation

    async def _stream_client(self) -> StreamClient:
        """The host's stream, from the URL its `/v1/info` names (checked like the HTTP URL)."""
        if self._stream is None:
            url = (await self.info()).get("stream")
            if not isinstance(url, str) or not url:
                raise PrivpartError(
                    f"the enclave host at {self.peer.base_url} has no stream port",
                    "start it with --stream-port, or connect without stream (stream=False; "
                    "CLI: without --stream)",
                )
            # the port the host listens on, at the address this client reached it by
            named, reached = urlsplit(url), urlsplit(self.peer.base_url).hostname or ""
            host = f"[{reached}]" if ":" in reached else reached
            url = f"{named.scheme}://{host}:{named.port}"
            check_transport(url, self.allow_plain_http)
            self._stream = StreamClient(url, *self._stream_args)
        return self._stream

    async def _send(self, session: Session, record: bytes) -> tuple[bytes, dict[str, float]]:
        """One sealed request over HTTP or the stream: the sealed answer, the host's timing."""
        if self.stream:
            stream = await self._stream_client()
            return await stream.infer_frame([session.session_id.encode(), record])
        ep = protocol.SEALED_INFER
        _, body, headers = await self.peer.request(
            ep.method, ep.path, record, ep.body, {protocol.SESSION_HEADER: session.session_id}
        )
        return body, protocol.parse_server_timing(headers.get(protocol.TIMING_HEADER))

    async def _once(self, frame: bytes, timing: dict[str, float]) -> torch.Tensor:
        if self._session is None or self._session.closed:
            t = time.perf_counter()
            await self.attest()
            timing["attest"] = timing.get("attest", 0.0) + (time.perf_counter() - t) * 1e3
        session = self._session
        assert session is not None
        t0 = time.perf_counter()
        record = session.seal(frame)
        t1 = time.perf_counter()
        try:
            body, server = await self._send(session, record)
        except RuntimeFailure:
            self._session = None
            raise
        t2 = time.perf_counter()
        try:
            plain = session.open(body)
        except RuntimeFailure:
            self._session = None
            raise
        t3 = time.perf_counter()
        logits = frames.decode(plain, ANSWER_SPEC)
        t4 = time.perf_counter()
        timing.update(server)
        timing["client_encrypt"] = (t1 - t0) * 1e3
        timing["client_decrypt"] = (t3 - t2) * 1e3
        timing["client_decode"] = (t4 - t3) * 1e3
        timing["roundtrip"] = (t2 - t1) * 1e3
        return logits

    async def infer(self, x: torch.Tensor) -> InferResult:
        """Logits for the input batch `x` ([batch, C, H, W]), through the attested enclave."""
        start = time.perf_counter()
        timing: dict[str, float] = {}
        frame = frames.encode(x)
        timing["client_encode"] = (time.perf_counter() - start) * 1e3
        async with self._lock:
            try:
                logits = await self._once(frame, timing)
            except RuntimeFailure as exc:
                if exc.code not in SESSION_GONE:
                    raise
                timing["retried"] = 1.0
                logits = await self._once(frame, timing)
        timing["total"] = (time.perf_counter() - start) * 1e3
        return InferResult(logits, timing)

    async def close(self) -> None:
        await self.peer.close()
        if self._stream is not None:
            await self._stream.close()
