"""The runner every privpart server starts through: its request bodies stream in with the large
read buffer (no flow-control pauses inside a feature frame), on a real loopback socket."""

from __future__ import annotations

import asyncio
import os
import socket

import aiohttp
import pytest
from aiohttp import web

from privpart.errors import PrivpartError
from privpart.runtime.server import TailConfig, build_tail_app
from privpart.runtime.server.runner import READ_BUFFER, serve_until_signal, start_site
from privpart.runtime.stream.server import tail_stream_site


def test_bodies_are_read_with_the_large_buffer() -> None:
    async def main() -> tuple[list[int], int]:
        async def echo_limits(request: web.Request) -> web.Response:
            low, high = request.content.get_read_buffer_limits()  # before read() raises them
            n = 0
            while chunk := await request.content.readany():  # how read_body streams a frame
                n += len(chunk)
            return web.json_response([low, high, n])

        app = web.Application(client_max_size=8 << 20)
        app.router.add_post("/", echo_limits)
        runner, url = await start_site(app, "127.0.0.1", 0)
        try:
            payload = os.urandom(3 << 20)  # larger than aiohttp's default buffer many times over
            async with aiohttp.ClientSession() as s, s.post(url + "/", data=payload) as r:
                low, high, n = await r.json()
                return [low, high], n
        finally:
            await runner.cleanup()

    (low, high), n = asyncio.run(main())
    assert n == 3 << 20
    assert high >= READ_BUFFER > 64 * 1024  # aiohttp's default would pause at 128 KiB
    assert low <= high


def test_a_port_in_use_is_a_clear_error_for_the_http_and_the_stream_listener(tiny_split) -> None:  # noqa: ANN001
    """Whichever listener cannot bind, the caller gets the address and what to do, and nothing
    is left listening."""
    holder = socket.create_server(("127.0.0.1", 0))
    taken = holder.getsockname()[1]
    try:
        for port, stream_port in ((taken, 0), (0, taken)):
            app = build_tail_app(tiny_split, TailConfig(device="cpu"))
            site = tail_stream_site(app, "127.0.0.1", stream_port)
            with pytest.raises(PrivpartError, match=f"cannot listen on 127.0.0.1:{taken}") as err:
                asyncio.run(serve_until_signal(app, "127.0.0.1", port, sites=[site]))
            assert "free port" in err.value.hint
    finally:
        holder.close()
