"""A malicious enclave host, played by a proxy in front of the real one: it substitutes keys of
its own in the attestation, to read what the client sends. The client refuses before it sends
anything, whichever key the host swaps in."""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace

import aiohttp
import pytest
import torch
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privpart.runtime.channel.envelope import SIMULATED, QuoteEnvelope, report_data
from privpart.runtime.channel.handshake import accept_hello
from privpart.runtime.channel.simulated import SimulatedQuoter, public_bytes
from privpart.runtime.client import EnclaveClient
from privpart.runtime.errors import AttestationError
from privpart.runtime.server.runner import start_site
from tests.runtime.helpers import simulated_policy

Forge = Callable[[dict, dict, str], dict]


def own_platform(hello: dict, genuine: dict, measurement: str) -> dict:
    """The host answers as an enclave of its own, certified by a platform key of its own."""
    session, enclave_pub, transcript = accept_hello(measurement, hello)
    quoter = SimulatedQuoter(Ed25519PrivateKey.generate(), measurement, "v")
    evidence = quoter.quote(report_data(transcript))
    quote = QuoteEnvelope("process", SIMULATED, evidence, measurement, "v").to_json()
    return {"session": session.session_id, "enclave_pub": enclave_pub.hex(), "quote": quote}


def own_attestation_key(hello: dict, genuine: dict, measurement: str) -> dict:
    """The host keeps the genuine platform certificate and signs a quote for its own key share
    with an attestation key of its own."""
    session, enclave_pub, transcript = accept_hello(measurement, hello)
    evidence = json.loads(base64.b64decode(genuine["quote"]["evidence"]))
    body = json.loads(base64.b64decode(evidence["quote"]))
    key = Ed25519PrivateKey.generate()
    body["report_data"] = report_data(transcript).hex()
    body["attestation_key"] = public_bytes(key.public_key()).hex()
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    evidence["quote"] = base64.b64encode(raw).decode()
    evidence["quote_signature"] = base64.b64encode(key.sign(raw)).decode()
    forged = json.dumps(evidence, sort_keys=True, separators=(",", ":")).encode()
    quote = {**genuine["quote"], "evidence": base64.b64encode(forged).decode()}
    return {"session": session.session_id, "enclave_pub": enclave_pub.hex(), "quote": quote}


def own_key_share(hello: dict, genuine: dict, measurement: str) -> dict:
    """The host relays the genuine quote but puts its own X25519 key share beside it."""
    _, enclave_pub, _ = accept_hello(measurement, hello)
    return {**genuine, "enclave_pub": enclave_pub.hex()}


async def malicious_host(upstream: str, forge: Forge, measurement: str, seen: Counter) -> tuple:
    http = aiohttp.ClientSession()

    async def attest(request: web.Request) -> web.Response:
        hello = await request.json()
        async with http.post(upstream + "/v1/attest", json=hello) as resp:
            genuine = await resp.json()  # the real worker's answer, to borrow from
        return web.json_response(forge(hello, genuine, measurement))

    async def relay(request: web.Request) -> web.Response:
        seen[request.path.rsplit("/", 1)[-1]] += 1
        body = await request.read()
        async with http.request(request.method, upstream + request.path, data=body) as resp:
            return web.Response(body=await resp.read(), status=resp.status)

    app = web.Application()
    app.router.add_post("/v1/attest", attest)
    app.router.add_route("*", "/{tail:.*}", relay)
    runner, url = await start_site(app, "127.0.0.1", 0)
    return runner, url, http


@pytest.mark.parametrize(
    ("forge", "code"),
    [
        (own_platform, "unpinned_key"),
        (own_attestation_key, "bad_signature"),
        (own_key_share, "wrong_report_data"),
    ],
)
def test_a_host_substituting_its_own_key_is_refused_before_anything_is_sent(
    enclave_stack: SimpleNamespace, forge: Forge, code: str
) -> None:
    measurement = enclave_stack.host.info.measurement
    seen: Counter = Counter()
    runner, url, http = enclave_stack.loop.run(
        malicious_host(enclave_stack.url, forge, measurement, seen)
    )
    policy = simulated_policy(enclave_stack.backend.platform.public_raw)

    async def victim() -> None:
        client = EnclaveClient(url, policy, measurement)
        try:
            await client.infer(torch.rand(1, *enclave_stack.host.info.input_shape))
        finally:
            await client.close()

    try:
        with pytest.raises(AttestationError) as err:
            asyncio.run(victim())
        assert err.value.code == code
        assert seen["infer"] == 0  # no input ever reached the malicious host
    finally:

        async def down() -> None:
            await http.close()
            await runner.cleanup()

        enclave_stack.loop.run(down())
