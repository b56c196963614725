"""Client <-> enclave host: TLS with the host's certificate pinned, session ids kept out of
URLs, `/v1/info` and `/metrics` behind the token, and plain HTTP refused off loopback. A real
host with the session-scoped worker behind it, on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from aiohttp import web

from privpart.errors import PrivpartError
from privpart.runtime import protocol
from privpart.runtime.client import EnclaveClient
from privpart.runtime.enclave.host import EnclaveHost, build_enclave_app
from privpart.runtime.errors import TransportError
from privpart.runtime.server.limits import ServerLimits
from privpart.runtime.server.runner import start_site
from privpart.runtime.tls import cert_fingerprint, server_context
from tests.runtime.helpers import RawHttp, simulated_policy
from tests.runtime.test_tls import self_signed

TOKEN = "host-token-0123456789abcdef"


@pytest.fixture(scope="module")
def tls_host(
    enclave_stack: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SimpleNamespace]:
    """A second host app on the shared worker, serving HTTPS with a token; it records the
    paths and session headers it is sent."""
    folder = tmp_path_factory.mktemp("host-tls")
    cert, key = self_signed(folder, "enclave-host")
    impostor, _ = self_signed(folder, "impostor")
    seen: list[tuple[str, str | None]] = []

    @web.middleware
    async def record(request: web.Request, handler):  # noqa: ANN001, ANN202
        seen.append((request.path_qs, request.headers.get(protocol.SESSION_HEADER)))
        return await handler(request)

    async def up() -> tuple[web.AppRunner, str]:
        host = EnclaveHost(
            enclave_stack.backend,
            enclave_stack.supervisor,
            enclave_stack.host.info,
            enclave_stack.tail_url,
            limits=ServerLimits(token=TOKEN),
        )
        app = build_enclave_app(host)
        app.on_cleanup.clear()  # the shared worker outlives this app
        app.middlewares.insert(0, record)
        return await start_site(app, "127.0.0.1", 0, tls=server_context(cert, key))

    runner, url = enclave_stack.loop.run(up())
    yield SimpleNamespace(url=url, cert=cert, impostor=impostor, seen=seen, stack=enclave_stack)
    enclave_stack.loop.run(runner.cleanup())


def client(t: SimpleNamespace, **kw: object) -> EnclaveClient:
    policy = simulated_policy(t.stack.backend.platform.public_raw)
    kw.setdefault("token", TOKEN)
    return EnclaveClient(t.url, policy, t.stack.host.info.measurement, **kw)  # type: ignore[arg-type]


def run(c: EnclaveClient, n: int = 2) -> None:
    async def go() -> None:
        try:
            for _ in range(n):
                await c.infer(torch.rand(1, *c.peer_shape))  # type: ignore[attr-defined]
        finally:
            await c.close()

    asyncio.run(go())


def test_a_pinned_tls_host_serves_and_session_ids_never_appear_in_urls(tls_host) -> None:  # noqa: ANN001
    c = client(tls_host, tls_pin=cert_fingerprint(tls_host.cert))
    c.peer_shape = tls_host.stack.host.info.input_shape  # type: ignore[attr-defined]
    tls_host.seen.clear()
    run(c)
    assert c.attestations == 1 and c.transport_warning is None
    paths = [p for p, _ in tls_host.seen]
    assert paths == ["/v1/attest", "/v1/infer", "/v1/infer"]
    session_ids = {s for _, s in tls_host.seen if s}
    assert len(session_ids) == 1 and not any(sid in p for p in paths for sid in session_ids)


def test_an_impostor_certificate_or_an_unverifiable_one_is_refused(tls_host) -> None:  # noqa: ANN001
    for kw, code in (
        ({"tls_pin": cert_fingerprint(tls_host.impostor)}, "tls_pin"),
        ({}, "tls_verify"),  # self-signed, no pin: the system's CAs do not vouch for it
    ):
        c = client(tls_host, **kw)
        with pytest.raises(TransportError) as err:
            asyncio.run(_attest_and_close(c))
        assert err.value.code == code, err.value.message


async def _attest_and_close(c: EnclaveClient) -> None:
    try:
        await c.attest()
    finally:
        await c.close()


def test_info_and_metrics_need_the_token_health_does_not(enclave_stack) -> None:  # noqa: ANN001
    host = enclave_stack.host
    saved = host.limits
    host.limits = ServerLimits(token=TOKEN)
    http = RawHttp(enclave_stack.url)
    try:
        for path in ("/v1/info", "/metrics"):
            status, _, headers = http.request("GET", path)
            assert status == 401 and headers["WWW-Authenticate"] == "Bearer", path
            assert http.request("GET", path, headers=protocol.bearer(TOKEN))[0] == 200
        assert http.request("GET", "/healthz")[0] == 200
    finally:
        host.limits = saved
        http.close()


def test_plain_http_is_refused_off_loopback_and_allowed_loudly() -> None:
    policy = simulated_policy(b"\0" * 32)
    with pytest.raises(PrivpartError, match="refusing plain HTTP") as err:
        EnclaveClient("http://192.0.2.10:8700", policy, "00" * 32)
    assert "--enclave-cert" in err.value.hint and "--allow-plain-http" in err.value.hint
    c = EnclaveClient("http://192.0.2.10:8700", policy, "00" * 32, allow_plain_http=True)
    assert c.transport_warning and "not encrypted" in c.transport_warning
    local = EnclaveClient("http://127.0.0.1:8700", policy, "00" * 32)
    assert local.transport_warning  # loopback: allowed, still said
    assert EnclaveClient("https://192.0.2.10:8700", policy, "00" * 32).transport_warning is None


def test_the_cli_refuses_plain_http_off_loopback_and_a_pin_without_https(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from privpart.cli import app

    runner = CliRunner()
    base = ["infer", "x.png", "--measurement", "00" * 32, "--allow-simulated", "--pin", "ab" * 32]
    result = runner.invoke(app, [*base, "--enclave", "http://192.0.2.10:8700"])
    assert isinstance(result.exception, PrivpartError)  # main() exits 2 with it
    assert "refusing plain HTTP" in result.exception.message
    cert, _ = self_signed(tmp_path, "h")
    result = runner.invoke(
        app, [*base, "--enclave", "http://127.0.0.1:1", "--enclave-cert", str(cert)]
    )
    assert isinstance(result.exception, PrivpartError)
    assert "not https://" in result.exception.message
