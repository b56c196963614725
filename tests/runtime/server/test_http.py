"""What a client reads when the server fails, and what the server's log gets: generic messages
for server-side failures with the detail in one log line under a reference, and junk HTTP by
the hundred costing a bounded number of one-line log entries, never a traceback."""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest
from aiohttp import web

from privpart.runtime.errors import RuntimeFailure
from privpart.runtime.logs import LOGGER_NAME, rate_limit, server_log
from privpart.runtime.server.http import json_errors
from privpart.runtime.server.runner import start_site
from tests.runtime.helpers import LoopThread, RawHttp

SECRET = "/srv/private/tail-10.0.0.7:8600"


async def crash(_: web.Request) -> web.Response:
    raise RuntimeError(f"disk full under {SECRET}")


async def tail_down(_: web.Request) -> web.Response:
    raise RuntimeFailure("tail_unreachable", f"cannot connect to http://{SECRET}", "check it")


async def bad_answer(_: web.Request) -> web.Response:
    raise RuntimeFailure("bad_tail_answer", "tail answered 3 rows for a batch of 1", "check it")


@pytest.fixture(scope="module")
def server():  # noqa: ANN201
    loop = LoopThread()
    app = web.Application(middlewares=[json_errors])
    for path, handler in (("/crash", crash), ("/tail", tail_down), ("/bad", bad_answer)):
        app.router.add_get(path, handler)
    runner, url = loop.run(start_site(app, "127.0.0.1", 0))
    yield url
    loop.run(runner.cleanup())
    loop.close()


def ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER_NAME]


def test_server_side_failures_reach_clients_generic_and_the_log_in_one_line(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    http = RawHttp(server)
    for path, code, status in (("/crash", "internal", 500), ("/tail", "tail_unreachable", 502)):
        caplog.clear()
        got, body, _ = http.request("GET", path)
        err = json.loads(body)
        assert got == status and err["error"] == code
        assert SECRET not in body.decode() and "RuntimeError" not in body.decode()
        ref = err["hint"].rsplit(" ", 1)[-1]
        (line,) = [r.getMessage() for r in ours(caplog)]
        assert SECRET in line and ref in line and "\n" not in line
        assert all(r.exc_info is None for r in ours(caplog))
    got, body, _ = http.request("GET", "/bad")  # about the request itself: said as it is
    assert got == 502 and "3 rows for a batch of 1" in json.loads(body)["message"]


def test_junk_http_by_the_hundred_costs_a_bounded_number_of_one_line_entries(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER_NAME)
    host, port = server.removeprefix("http://").split(":")
    limit = rate_limit(server_log())
    dropped_before = limit.dropped_total
    caplog.clear()
    start = time.monotonic()
    for i in range(300):  # malformed header lines: aiohttp answers 400 and logs each one
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(f"GET /crash HTTP/1.1\r\nBad Header {i}\r\n\r\n".encode())
            assert b" 400 " in sock.recv(100).split(b"\r\n")[0]
    elapsed = time.monotonic() - start
    records = ours(caplog)
    assert len(records) <= limit.burst + limit.rate * elapsed + 1
    assert limit.dropped_total - dropped_before >= 300 - len(records)
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in records)
    assert all(len(r.getMessage()) <= limit.max_chars + 80 for r in records)
    assert RawHttp(server).request("GET", "/bad")[0] == 502  # still serving
