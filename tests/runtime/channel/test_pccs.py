"""Collateral from a PCCS URL, as production gets it: dcap-qvl's own fetching code against a
PCCS stand-in on loopback that serves the fixture's Intel-signed collateral the way a PCCS does
(v4 API: PCK CRL, TCB info, QE identity, root CA CRL). No test reaches the network."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote as urlquote

import pytest
from aiohttp import web

from privpart.runtime.channel.attestation import collateral_for, verify_evidence
from privpart.runtime.channel.dcap import without_padding
from privpart.runtime.channel.envelope import QuoteEnvelope
from privpart.runtime.channel.policy import VerificationPolicy, collateral_source
from privpart.runtime.errors import AttestationError
from privpart.runtime.server.runner import start_site
from tests.runtime.helpers import LoopThread

DATA = Path(__file__).parent.parent / "data" / "attestation"
MRTD = (
    "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407"
    "de03ae6dc5f87f27428b2538873118b7"
)


def pccs_app(kind: str, served: Counter) -> web.Application:
    c = json.loads((DATA / f"{kind}_quote_collateral.json").read_text())
    tee = "sgx" if kind == "sgx" else "tdx"

    def chain(name: str, text: str) -> dict[str, str]:
        return {name: urlquote(text)}

    async def pckcrl(request: web.Request) -> web.Response:
        served["pckcrl"] += 1
        headers = chain("SGX-PCK-CRL-Issuer-Chain", c["pck_crl_issuer_chain"])
        return web.Response(body=bytes.fromhex(c["pck_crl"]), headers=headers)

    async def tcb(request: web.Request) -> web.Response:
        served["tcb"] += 1
        body = f'{{"tcbInfo":{c["tcb_info"]},"signature":"{c["tcb_info_signature"]}"}}'
        headers = chain("TCB-Info-Issuer-Chain", c["tcb_info_issuer_chain"])
        return web.Response(text=body, headers=headers, content_type="application/json")

    async def qe(request: web.Request) -> web.Response:
        served["qe"] += 1
        body = (
            f'{{"enclaveIdentity":{c["qe_identity"]},"signature":"{c["qe_identity_signature"]}"}}'
        )
        headers = chain("SGX-Enclave-Identity-Issuer-Chain", c["qe_identity_issuer_chain"])
        return web.Response(text=body, headers=headers, content_type="application/json")

    async def rootcacrl(request: web.Request) -> web.Response:
        served["rootcacrl"] += 1
        return web.Response(text=c["root_ca_crl"])  # a PCCS answers it hex-encoded

    app = web.Application()
    app.router.add_get("/sgx/certification/v4/pckcrl", pckcrl)
    app.router.add_get(f"/{tee}/certification/v4/tcb", tcb)
    app.router.add_get(f"/{tee}/certification/v4/qe/identity", qe)
    app.router.add_get("/sgx/certification/v4/rootcacrl", rootcacrl)
    return app


@pytest.fixture(scope="module")
def pccs() -> Iterator[SimpleNamespace]:
    loop, served = LoopThread(), Counter()
    runner, url = loop.run(start_site(pccs_app("tdx", served), "127.0.0.1", 0))
    yield SimpleNamespace(url=url, served=served)
    loop.run(runner.cleanup())
    loop.close()


def test_collateral_fetched_from_a_pccs_verifies_the_quote(pccs: SimpleNamespace) -> None:
    raw = without_padding((DATA / "tdx_quote.bin").read_bytes())  # the sample's buffer padding
    envelope = QuoteEnvelope("tdx", "tdx-dcap", raw, "m", "v")
    policy = VerificationPolicy(
        mrtd=MRTD, at=datetime(2025, 7, 1, tzinfo=UTC), collateral=collateral_source(pccs.url)
    )
    collateral = asyncio.run(collateral_for(envelope, policy))
    att = verify_evidence(envelope, policy, collateral)
    assert att.tee == "TDX" and att.tcb_status == "UpToDate"
    assert {"pckcrl", "tcb", "qe"} <= set(pccs.served)


def test_an_unreachable_pccs_is_a_clear_error() -> None:
    raw = without_padding((DATA / "tdx_quote.bin").read_bytes())  # the sample's buffer padding
    policy = VerificationPolicy(mrtd=MRTD, collateral=collateral_source("http://127.0.0.1:9"))
    with pytest.raises(AttestationError) as err:
        asyncio.run(collateral_for(QuoteEnvelope("tdx", "tdx-dcap", raw, "m", "v"), policy))
    assert err.value.code == "collateral_unavailable" and "127.0.0.1:9" in err.value.message
