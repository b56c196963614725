"""The tail server's limits over real sockets: body timeouts, the connection cap and bearer
tokens, each refusing exactly the request that breaks it while others are served."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import torch

from privpart.runtime import frames
from privpart.runtime.client import DeviceClient, TailClient
from privpart.runtime.errors import RemoteError
from privpart.runtime.head import SplitHead
from privpart.runtime.protocol import bearer
from privpart.runtime.server import BatchConfig, ServerLimits, TailConfig, build_tail_app
from privpart.runtime.server.limits import read_token
from privpart.runtime.server.runner import start_site
from tests.runtime.helpers import LoopThread, RawHttp, read_reply, slow_body

TOKEN = "tail-token-0123456789abcdef"
FRAME = {"Content-Type": "application/x-privpart-frame"}


@pytest.fixture(scope="module")
def limited(tiny_split: SplitHead) -> Iterator[SimpleNamespace]:
    loop = LoopThread()
    limits = ServerLimits(body_timeout_s=1.0, max_connections=6, token=TOKEN)
    cfg = TailConfig(batch=BatchConfig(max_wait_ms=0), device="cpu", limits=limits)
    runner, url = loop.run(start_site(build_tail_app(tiny_split, cfg), "127.0.0.1", 0))
    yield SimpleNamespace(url=url, split=tiny_split)
    loop.run(runner.cleanup())
    loop.close()


def infer(t: SimpleNamespace, token: str | None = TOKEN) -> torch.Tensor:
    async def go() -> torch.Tensor:
        client = DeviceClient(t.split, t.url, token=token)
        try:
            return (await client.infer(torch.rand(1, *t.split.info.input_shape))).logits
        finally:
            await client.close()

    return asyncio.run(go())


def test_a_slow_body_times_out_while_others_are_served(limited: SimpleNamespace) -> None:
    slow = slow_body(limited.url, "/v1/infer", 5000, b"PPT1", bearer(TOKEN))
    assert infer(limited).shape == (1, 10)
    status, err = read_reply(slow)
    assert status == 408 and err["error"] == "body_timeout"


def test_connections_beyond_the_cap_are_refused_then_served_again(
    limited: SimpleNamespace,
) -> None:
    host, port = limited.url.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port))) for _ in range(6)]
    try:
        status, _, headers = RawHttp(limited.url).request("GET", "/healthz")
        assert status == 503 and headers["Retry-After"] == "1"
    finally:
        for sock in idle:
            sock.close()
    for _ in range(50):  # the server notices the closed sockets within a few ms
        status, _, _ = RawHttp(limited.url).request("GET", "/healthz")
        if status == 200:
            break
        asyncio.run(asyncio.sleep(0.05))
    assert status == 200 and infer(limited).shape == (1, 10)


def test_only_clients_holding_the_token_get_in(limited: SimpleNamespace, tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(RemoteError) as err:
        infer(limited, token=None)
    assert err.value.code == "unauthorized" and err.value.status == 401
    status, body, headers = RawHttp(limited.url).request(
        "POST", "/v1/infer", frames.encode(torch.rand(1, 32, 14, 14)), FRAME
    )
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
    status, _, _ = RawHttp(limited.url).request("GET", "/metrics")
    assert status == 401
    assert RawHttp(limited.url).request("GET", "/healthz")[0] == 200  # probes stay open

    async def info() -> dict:
        client = TailClient(limited.url, token=TOKEN)
        try:
            return await client.info()
        finally:
            await client.close()

    assert asyncio.run(info())["auth"] is True
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "token").chmod(0o600)  # a token file others can read is refused
    assert read_token(tmp_path / "token") == TOKEN
    (tmp_path / "short").write_text("abc")
    with pytest.raises(Exception, match="no usable token"):
        read_token(tmp_path / "short")


def test_a_token_file_others_can_read_is_refused_with_the_chmod_to_run(
    tmp_path,
    runtime_checkpoint,  # noqa: ANN001
) -> None:
    from typer.testing import CliRunner

    from privpart.cli import app
    from privpart.errors import PrivpartError

    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    for mode in (0o644, 0o640, 0o604):
        token.chmod(mode)
        with pytest.raises(PrivpartError) as err:
            read_token(token)
        assert f"chmod 600 {token}" in err.value.hint and f"{mode:04o}" in err.value.message
    token.chmod(0o644)
    result = CliRunner().invoke(
        app,
        [
            "serve",
            "--checkpoint",
            str(runtime_checkpoint),
            "--cut",
            "block2",
            "--auth-token-file",
            str(token),
        ],
    )
    assert isinstance(result.exception, PrivpartError)  # main() exits 2 with it
    assert "chmod 600" in result.exception.hint
    token.chmod(0o600)
    assert read_token(token) == TOKEN
