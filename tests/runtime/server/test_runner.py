"""The runner every privpart server starts through: its request bodies stream in with the large
read buffer (no flow-control pauses inside a feature frame), on a real loopback socket."""

from __future__ import annotations

import asyncio
import os

import aiohttp
from aiohttp import web

from privpart.runtime.server.runner import READ_BUFFER, start_site


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
