"""Load and faults against real processes: `privpart serve` + `privpart enclave` on loopback."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from types import SimpleNamespace

import aiohttp
import torch

from privpart.runtime.channel.attestation import read_pin
from privpart.runtime.client import DeviceClient, EnclaveClient
from privpart.runtime.client.load import closed_loop
from privpart.runtime.errors import RuntimeFailure
from privpart.runtime.head import SplitHead
from tests.runtime.helpers import ServerProcess, simulated_policy

SECONDS = float(os.environ.get("PRIVPART_LOAD_SECONDS", "30"))
CLIENTS, ENCLAVE_CLIENTS = 32, 8


def make_clients(
    stack: SimpleNamespace,
    split: SplitHead,
    session: aiohttp.ClientSession,
    n_device: int,
    n_enclave: int,
    timeout: float,
) -> list[object]:
    pin = read_pin(stack.pin)
    device = [DeviceClient(split, stack.tail_url, timeout, session) for _ in range(n_device)]
    enclave = [
        EnclaveClient(stack.url, simulated_policy(pin), split.info.measurement, timeout, session)
        for _ in range(n_enclave)
    ]
    return [*enclave, *device]


def test_32_clients_for_30_seconds_lose_and_mismatch_nothing(
    process_stack: SimpleNamespace, tiny_split: SplitHead, tiny_model: torch.nn.Module
) -> None:
    shape = tiny_split.info.input_shape

    async def scenario() -> dict:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            clients = make_clients(
                process_stack, tiny_split, session, CLIENTS - ENCLAVE_CLIENTS, ENCLAVE_CLIENTS, 30
            )

            async def request(c: int, i: int) -> bool:
                g = torch.Generator().manual_seed(c * 1_000_003 + i)
                x = torch.rand(1 + (i % 2), *shape, generator=g)  # every request is different
                result = await clients[c].infer(x)
                with torch.inference_mode():
                    expected = tiny_model(x)
                return result.logits.shape == expected.shape and torch.allclose(
                    result.logits, expected, atol=1e-5, rtol=1e-4
                )

            report = await closed_loop(CLIENTS, SECONDS, request, max_requests=500_000)
            return report.to_json()

    r = asyncio.run(scenario())
    print(f"\nload: {r}")
    assert r["lost"] == 0 and r["mismatched"] == 0 and r["errors"] == {}, r
    assert r["ok"] >= 20 * CLIENTS


def test_killing_the_tail_mid_load_gives_explicit_errors_then_recovers(
    process_stack: SimpleNamespace, tiny_split: SplitHead, tiny_model: torch.nn.Module
) -> None:
    shape = tiny_split.info.input_shape
    timeout = 5.0

    async def scenario() -> tuple[list[dict], float]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            clients = make_clients(process_stack, tiny_split, session, 8, 4, timeout)
            state = [
                {
                    "ok_before": 0,
                    "errors": Counter(),
                    "first_error": None,
                    "ok_after": 0,
                    "other": 0,
                }
                for _ in clients
            ]
            marks: dict[str, float] = {}

            async def run(i: int) -> None:
                s = state[i]
                while time.monotonic() < marks["deadline"] and not s["ok_after"]:
                    x = torch.rand(1, *shape)
                    try:
                        result = await asyncio.wait_for(clients[i].infer(x), timeout * 2)
                    except RuntimeFailure as exc:
                        s["errors"][exc.code] += 1
                        if s["first_error"] is None and "killed" in marks:
                            s["first_error"] = time.monotonic() - marks["killed"]
                        await asyncio.sleep(0.05)
                        continue
                    except Exception as exc:  # noqa: BLE001  (anything else is a failure)
                        s["other"] += 1
                        s["errors"][type(exc).__name__] += 1
                        continue
                    with torch.inference_mode():
                        assert torch.allclose(result.logits, tiny_model(x), atol=1e-5)
                    if "restarted" in marks:
                        s["ok_after"] += 1
                    elif "killed" not in marks:
                        s["ok_before"] += 1

            async def chaos() -> None:
                await asyncio.sleep(2.0)
                process_stack.tail.kill()
                marks["killed"] = time.monotonic()
                await asyncio.sleep(2.0)
                process_stack.tail = ServerProcess(
                    process_stack.tail_args,
                    process_stack.tail_url,
                    process_stack.logs / "tail2.log",
                )
                await asyncio.to_thread(process_stack.tail.start)
                marks["restarted"] = time.monotonic()

            marks["deadline"] = time.monotonic() + 120
            await asyncio.gather(chaos(), *(run(i) for i in range(len(clients))))
            return state, marks["restarted"] - marks["killed"]

    state, down = asyncio.run(scenario())
    print(f"\ntail down {down:.1f} s; per client: {[dict(s['errors']) for s in state]}")
    allowed = {
        "unreachable",
        "disconnected",
        "timeout",
        "tail_unreachable",
        "tail_disconnected",
        "tail_timeout",
    }
    for s in state:
        assert s["ok_before"] > 0 and s["ok_after"] > 0, s
        assert s["first_error"] is not None and s["first_error"] < timeout, s
        assert s["other"] == 0 and set(s["errors"]) <= allowed, s
