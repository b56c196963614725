"""The protocol is defined once: endpoints, media types, statuses and the error format live in
`runtime/protocol.py`, and every server, client and the worker take them from there."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import privpart.runtime
from privpart.runtime import protocol
from privpart.runtime.errors import ChannelError, EnclaveError, FrameError, RuntimeFailure

RUNTIME = Path(privpart.runtime.__file__).parent
WIRE_STRINGS = ("/v1/", "/healthz", "/metrics", "application/x-privpart", "application/json")


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """String literals of a module that are not docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_paths_and_media_types_are_spelled_only_in_protocol() -> None:
    found = [
        f"{path.relative_to(RUNTIME)}:{line}: {text!r}"
        for path in RUNTIME.rglob("*.py")
        if path.name != "protocol.py"
        for line, text in _code_strings(path)
        if any(w in text for w in WIRE_STRINGS)
    ]
    assert not found, "define these in runtime/protocol.py:\n" + "\n".join(found)


def test_routes_match_templates_and_say_what_exists() -> None:
    ep, params = protocol.route(protocol.ENCLAVE_ENDPOINTS, "POST", "/v1/sessions/ab12/infer")
    assert ep is protocol.SESSION_INFER and params == {"session": "ab12"}
    assert ep.url(session="ff") == "/v1/sessions/ff/infer"
    assert protocol.route(protocol.TAIL_ENDPOINTS, "GET", "/healthz")[0].public
    with pytest.raises(LookupError) as err:
        protocol.route(protocol.TAIL_ENDPOINTS, "GET", "/v1/infer")
    assert err.value.args[0] == "method_not_allowed" and "POST" in err.value.args[2]
    with pytest.raises(LookupError) as err:
        protocol.route(protocol.TAIL_ENDPOINTS, "GET", "/v2/nothing")
    assert err.value.args[0] == "not_found" and "POST /v1/infer" in err.value.args[2]


def test_failures_take_their_status_from_the_table() -> None:
    assert FrameError("too_large", "x").status == 413
    assert ChannelError("tampered", "x").status == 401
    assert EnclaveError("unknown_session", "x").status == 410
    assert EnclaveError("over_budget", "x").status == 507
    assert RuntimeFailure("busy", "x").status == 429
    assert RuntimeFailure("busy", "x", status=503).status == 503  # a raise site may say
    assert RuntimeFailure("something_new", "x").status == RuntimeFailure.default_status
    reply = RuntimeFailure("draining", "stopping", "retry").reply()
    assert reply.status == 503 and reply.headers == {"Retry-After": "1"}
    err = protocol.parse_error(503, reply.body, "u")  # type: ignore[arg-type]
    assert (err.code, err.message, err.hint, err.status) == ("draining", "stopping", "retry", 503)
    other = protocol.parse_error(502, b"<html>bad gateway</html>", "http://x")
    assert other.code == "http_502" and "bad gateway" in other.message
    assert protocol.parse_server_timing(protocol.server_timing({"a": 1.5, "b": 2})) == {
        "a": 1.5,
        "b": 2.0,
    }
