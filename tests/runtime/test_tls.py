"""TLS to the tail with its certificate pinned: the device client and the enclave worker talk
only to the server presenting exactly that certificate (real sockets, a real worker process)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from privpart.runtime.client import DeviceClient, EnclaveClient
from privpart.runtime.enclave import EnclaveConfig, PlatformKeys
from privpart.runtime.enclave.host import EnclaveHost, build_enclave_app
from privpart.runtime.enclave.process import ProcessBackend
from privpart.runtime.enclave.supervisor import launch
from privpart.runtime.errors import RemoteError, TransportError
from privpart.runtime.head import SplitHead
from privpart.runtime.server import TailConfig, build_tail_app
from privpart.runtime.server.runner import start_site
from privpart.runtime.tls import cert_fingerprint, server_context
from tests.runtime.helpers import LoopThread, simulated_policy


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, as an operator would make with openssl req -x509."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tails_over_tls_are_reached_only_with_the_pinned_certificate(
    tmp_path: Path, tiny_split: SplitHead, tiny_model: torch.nn.Module
) -> None:
    loop = LoopThread()
    good, rogue = self_signed(tmp_path, "tail"), self_signed(tmp_path, "impostor")
    pin = cert_fingerprint(good[0])

    def tail(cert: tuple[Path, Path] | None) -> tuple[object, str]:
        app = build_tail_app(tiny_split, TailConfig(device="cpu"))
        tls = server_context(*cert) if cert else None
        return loop.run(start_site(app, "127.0.0.1", 0, tls=tls))

    (r1, url), (r2, impostor_url), (r3, plain_url) = tail(good), tail(rogue), tail(None)
    assert url.startswith("https://") and plain_url.startswith("http://")
    x = torch.rand(2, *tiny_split.info.input_shape)
    with torch.inference_mode():
        want = tiny_model(x)

    async def device(target: str, tls_pin: bytes) -> torch.Tensor:
        client = DeviceClient(tiny_split, target, tls_pin=tls_pin)
        try:
            return (await client.infer(x)).logits
        finally:
            await client.close()

    assert torch.allclose(asyncio.run(device(url, pin)), want, atol=1e-5)
    with pytest.raises(TransportError) as err:
        asyncio.run(device(impostor_url, pin))
    assert err.value.code == "tls_pin"

    platform = PlatformKeys.load_or_create(tmp_path / "p")
    backend = ProcessBackend(platform, EnclaveConfig(threads=1, tail_pin=pin.hex()))
    sealed = backend.seal(tiny_split, tmp_path / "heads")
    policy = simulated_policy(platform.public_raw)

    async def start() -> SimpleNamespace:
        supervisor = launch(backend, sealed, tiny_split.info.measurement)
        await supervisor.start()
        hosts = {}
        for name, target in (("tls", url), ("impostor", impostor_url), ("plain", plain_url)):
            host = EnclaveHost(backend, supervisor, tiny_split.info, target)
            hosts[name] = await start_site(build_enclave_app(host), "127.0.0.1", 0)
        return SimpleNamespace(supervisor=supervisor, hosts=hosts)

    stack = loop.run(start())

    async def through(name: str) -> torch.Tensor:
        client = EnclaveClient(stack.hosts[name][1], policy, tiny_split.info.measurement)
        try:
            return (await client.infer(x)).logits
        finally:
            await client.close()

    try:
        assert torch.allclose(asyncio.run(through("tls")), want, atol=1e-5)
        for name, code in (("impostor", "tail_tls"), ("plain", "tail_bad_url")):
            with pytest.raises(RemoteError) as err:
                asyncio.run(through(name))
            assert err.value.code == code, err.value.message
    finally:

        async def down() -> None:
            for runner, _ in stack.hosts.values():
                await runner.cleanup()  # the first cleanup stops the shared worker
            for runner in (r1, r2, r3):
                await runner.cleanup()

        loop.run(down())
        loop.close()
