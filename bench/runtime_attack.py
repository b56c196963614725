"""Attack a live local split as an outsider would, and report what held.

Each scenario starts `privpart serve` (the tail) and `privpart enclave --backend process` as
their own processes on loopback with their default limits, attacks them from other processes'
sockets (several loopback source addresses: Linux routes all of 127.0.0.0/8 to lo), checks
that a well-behaved client is still served, and returns a `Scenario`: held or not, and why.

    python bench/runtime_attack.py                    # every scenario
    python bench/runtime_attack.py --only session-flood

Results: a table on stdout and bench/results/runtime_attack.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from _common import RESULTS
from privpart.models import ModelSpec, build_model
from privpart.runtime.channel.attestation import read_pin
from privpart.runtime.channel.handshake import ClientHello
from privpart.runtime.channel.policy import VerificationPolicy
from privpart.runtime.client import DeviceClient, EnclaveClient
from privpart.runtime.head import SplitHead, split_checkpoint
from privpart.training import save_checkpoint
from runtime_stack import Server, free_port

CUT = "block2"
SERVED_WITHIN_S = 3.0  # what a new client may wait while an attack runs


@dataclass(frozen=True)
class Scenario:
    """What one attack left standing."""

    name: str
    held: bool
    detail: str
    seconds: float = 0.0


@dataclass
class Stack:
    """A live tail + enclave host (process backend) and what a client needs to use them."""

    tail_url: str
    enclave_url: str
    split: SplitHead
    policy: VerificationPolicy


def _checkpoint(folder: Path) -> Path:
    torch.manual_seed(0)
    spec = ModelSpec("tinycnn", 1, 10, (28, 28))
    meta = {"input_shape": [1, 28, 28], "classes": [f"class{i}" for i in range(10)]}
    return save_checkpoint(folder / "tiny", build_model(spec).eval(), spec, meta)


@contextmanager
def live_stack() -> Iterator[Stack]:
    """`privpart serve` + `privpart enclave` on loopback, with their default limits."""
    with tempfile.TemporaryDirectory(prefix="privpart-attack-") as tmp:
        folder = Path(tmp)
        ckpt = str(_checkpoint(folder))
        tail_port, enclave_port = free_port(), free_port()
        common = ["--checkpoint", ckpt, "--cut", CUT, "--threads", "1"]
        tail = Server(["serve", *common, "--port", str(tail_port)], tail_port, folder / "t.log")
        enclave = Server(
            [
                "enclave",
                *common,
                "--port",
                str(enclave_port),
                "--tail",
                f"http://127.0.0.1:{tail_port}",
                "--platform-dir",
                str(folder / "platform"),
            ],
            enclave_port,
            folder / "e.log",
        )
        tail.start()
        try:
            enclave.start()
            try:
                pin = read_pin(folder / "platform" / "platform.pub")
                policy = VerificationPolicy(allow_simulated=True, platform_pins=(pin,))
                yield Stack(tail.url, enclave.url, split_checkpoint(Path(ckpt), CUT), policy)
            finally:
                enclave.stop()
        finally:
            tail.stop()


def _connections(url: str, sources: list[str], each: int, head: bytes) -> list[socket.socket]:
    host, port = url.removeprefix("http://").split(":")
    socks = []
    for source in sources:
        for _ in range(each):
            sock = socket.create_connection((host, int(port)), 10, source_address=(source, 0))
            if head:
                sock.sendall(head)
            socks.append(sock)
    return socks


def _closed(sock: socket.socket) -> bool:
    """Whether the server has closed `sock` (after whatever it answered)."""
    sock.settimeout(0.01)
    try:
        while sock.recv(65536):
            pass
        return True
    except (TimeoutError, BlockingIOError):
        return False
    except OSError:
        return True


async def _device(stack: Stack) -> float:
    client = DeviceClient(stack.split, stack.tail_url, timeout=30)
    start = time.perf_counter()
    try:
        await client.infer(torch.rand(1, *stack.split.info.input_shape))
        return time.perf_counter() - start
    finally:
        await client.close()


async def _enclave(client: EnclaveClient, stack: Stack) -> float:
    start = time.perf_counter()
    await client.infer(torch.rand(1, *stack.split.info.input_shape))
    return time.perf_counter() - start


def _served(coro: Callable[[], object]) -> tuple[float | None, str]:
    try:
        return asyncio.run(coro()), ""  # type: ignore[arg-type]
    except Exception as exc:  # an attack that holds shows here
        return None, _one_line(exc)


def _one_line(exc: Exception) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def idle_connections() -> Scenario:
    """512 connections (the default cap) to each server from 8 addresses, half sending
    "GET / HTTP/1.1" and nothing more, the others nothing at all; then a new client of each."""
    start = time.perf_counter()
    with live_stack() as stack:
        socks: list[socket.socket] = []
        for url in (stack.tail_url, stack.enclave_url):
            sources = [f"127.0.0.{i}" for i in range(2, 10)]
            socks += _connections(url, sources[:4], 64, b"")
            socks += _connections(url, sources[4:], 64, b"GET / HTTP/1.1\r\n")
        device_s, device_err = _served(lambda: _device(stack))

        async def enclave() -> float:
            client = EnclaveClient(stack.enclave_url, stack.policy, stack.split.info.measurement)
            try:
                return await _enclave(client, stack)
            finally:
                await client.close()

        enclave_s, enclave_err = _served(enclave)
        time.sleep(5.0 + 1.0)  # the default request-head deadline, and a margin
        open_after = sum(not _closed(s) for s in socks)
        for sock in socks:
            sock.close()
    ok = [s is not None and s < SERVED_WITHIN_S for s in (device_s, enclave_s)]
    held = all(ok) and open_after == 0
    detail = (
        f"{len(socks)} idle/slow-drip connections (512 per server, 8 addresses): "
        f"device client {_fmt(device_s, device_err)}, attested enclave client "
        f"{_fmt(enclave_s, enclave_err)}; {open_after} of them still open 6 s later "
        "(request-head deadline 5 s)"
    )
    return Scenario("idle-connections", held, detail, time.perf_counter() - start)


def _fmt(seconds: float | None, error: str) -> str:
    return f"served in {seconds * 1e3:.0f} ms" if seconds is not None else f"NOT served ({error})"


def _attest(url: str, source: str, n: int) -> list[int]:
    host, port = url.removeprefix("http://").split(":")
    statuses = []
    with socket.create_connection((host, int(port)), 10, source_address=(source, 0)) as sock:
        reader = sock.makefile("rb")
        for _ in range(n):
            body = json.dumps(ClientHello().to_json()).encode()
            sock.sendall(
                f"POST /v1/attest HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            status = int(reader.readline().split()[1])
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            reader.read(length)
            statuses.append(status)
    return statuses


def session_flood() -> Scenario:
    """A client attests and uses its session; 40 attestations from its own address (NAT);
    1,104 attestations from 69 other addresses (more than the 1,024-session table); then a
    new address attests and the client sends again on the same session."""
    start = time.perf_counter()
    with live_stack() as stack:
        client = EnclaveClient(stack.enclave_url, stack.policy, stack.split.info.measurement)
        flood: list[int] = []

        async def scenario() -> tuple[float, list[int], list[int]]:
            await _enclave(client, stack)
            burst = await asyncio.to_thread(_attest, stack.enclave_url, "127.0.0.1", 40)
            await _enclave(client, stack)
            for i in range(69):
                flood.extend(
                    await asyncio.to_thread(_attest, stack.enclave_url, f"127.0.1.{i + 2}", 16)
                )
            t = time.perf_counter()
            newcomer = await asyncio.to_thread(_attest, stack.enclave_url, "127.0.2.1", 1)
            newcomer_s = time.perf_counter() - t
            await _enclave(client, stack)
            return newcomer_s, newcomer, burst

        try:
            (newcomer_s, newcomer, burst), error = asyncio.run(scenario()), ""
        except Exception as exc:
            (newcomer_s, newcomer, burst), error = (0.0, [0], [0]), _one_line(exc)
        finally:
            asyncio.run(client.close())
    refused = sum(s != 200 for s in flood)
    held = not error and newcomer == [200] and client.attestations == 1 and burst == [200] * 40
    detail = (
        f"{len(flood)} attestations from 69 addresses ({refused} refused), 40 from the "
        f"client's own address: new address {'served' if newcomer == [200] else 'REFUSED'} in "
        f"{newcomer_s * 1e3:.0f} ms; the client attested {client.attestations} time(s) "
        f"(1 = its session survived every flood){'; ' + error if error else ''}"
    )
    return Scenario("session-flood", held, detail, time.perf_counter() - start)


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "idle-connections": idle_connections,
    "session-flood": session_flood,
}


def report(results: list[Scenario]) -> str:
    lines = [
        "# Runtime attacks against a live local enclave + tail",
        "",
        "`python bench/runtime_attack.py`: `privpart serve` + `privpart enclave --backend "
        "process` with their default limits, on loopback; attacks from other source addresses "
        "in 127.0.0.0/8.",
        "",
        "| scenario | held | detail | s |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r.name} | {'held' if r.held else 'NOT HELD'} | {r.detail} | {r.seconds:.1f} |"
        for r in results
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), metavar="NAME")
    parser.add_argument("--out", type=Path, default=RESULTS / "runtime_attack.md")
    args = parser.parse_args(argv)
    results = [SCENARIOS[name]() for name in (args.only or list(SCENARIOS))]
    text = report(results)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0 if all(r.held for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
