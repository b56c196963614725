"""CPU time per request of the tail server and of its clients, by transport (HTTP, stream).

Why: the tiny CNN's tail costs ~150 us of core time per sample offline, so its served
throughput is bound by what each one-sample request costs in CPU on both sides, not by the
forward pass. This measures it: `privpart serve --stream-port` in its own process, 32
closed-loop clients in this one, a warm-up, then a window per transport during which the
server's CPU (utime + stime from /proc/PID/stat) and this process's CPU are read before and
after. The answers are not checked here (`server_throughput.py` checks every one), so the
client figure is the transport's cost alone.

Run: flock /tmp/privpart-cpu.lock .venv/bin/python bench/server_cpu.py [--window 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

import aiohttp
import torch

from _common import machine, write
from privpart.runtime import frames
from privpart.runtime.client import StreamClient, TailClient
from privpart.runtime.client.load import closed_loop
from privpart.runtime.head import split_checkpoint
from privpart.runtime.malloc import keep_freed_memory
from runtime_stack import Server, free_port
from server_throughput import tinycnn_checkpoint


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # the offline forward under the same malloc policy as the server
    ck = tinycnn_checkpoint(args.work / "tinycnn")
    split = split_checkpoint(ck, "block2")
    port, stream_port = free_port(), free_port()
    server = Server(
        ["serve", "--checkpoint", str(ck), "--cut", "block2", "--port", str(port),
         "--stream-port", str(stream_port), "--device", "cpu", "--threads", str(args.threads),
         "--max-batch", "32", "--max-wait-ms", "10"],
        port,
        args.work / "tail-cpu.log",
    ).start()  # fmt: skip
    g = torch.Generator().manual_seed(0)
    encoded = [frames.encode(torch.rand(1, *split.info.cut.shape, generator=g))
               for _ in range(args.clients)]  # fmt: skip
    batch = torch.cat([frames.decode(bytearray(e), frames.FrameSpec()) for e in encoded])
    rates: list[float] = []

    def offline(reps: int = 20) -> None:
        """The same tail on batches of `clients` in this process, between the windows (this
        host's speed drifts, so the reference is taken around the measurements)."""
        with torch.inference_mode():
            split.tail(batch)
            for _ in range(reps):
                t = time.perf_counter()
                split.tail(batch)
                rates.append(len(batch) / (time.perf_counter() - t))

    rows = []
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            clients = {
                "http": [TailClient(server.url, 60, session) for _ in range(args.clients)],
                "stream": [StreamClient(f"tcp://127.0.0.1:{stream_port}", 60)
                           for _ in range(args.clients)],
            }  # fmt: skip
            for transport, pool in clients.items():

                async def request(c: int, i: int, pool: list = pool) -> bool:
                    await pool[c].infer_frame(encoded[c])
                    return True

                await closed_loop(args.clients, args.warmup, request)
                offline()
                pid = server.proc.pid  # type: ignore[union-attr]
                s0, c0, t0 = cpu_seconds(pid), time.process_time(), time.perf_counter()
                report = await closed_loop(args.clients, args.window, request)
                s1, c1, t1 = cpu_seconds(pid), time.process_time(), time.perf_counter()
                n = report.ok
                rows.append(
                    {
                        "transport": transport,
                        "requests": n,
                        "samples_per_s": round(n / (t1 - t0), 1),
                        "server_cpu_us_per_request": round(1e6 * (s1 - s0) / n, 1),
                        "client_cpu_us_per_request": round(1e6 * (c1 - c0) / n, 1),
                        "errors": dict(report.errors),
                    }
                )
                print(rows[-1], flush=True)
            offline()
            for c in clients["stream"]:
                await c.close()
    finally:
        server.stop()
    rate = sorted(rates)[len(rates) // 2]
    core = args.threads * 1e6 / rate
    for row in rows:  # the server's CPU beyond its share of the forward passes
        row["server_own_us_per_request"] = round(row["server_cpu_us_per_request"] - core, 1)
        row["ratio_to_offline"] = round(row["samples_per_s"] / rate, 3)
    return {
        "machine": machine(),
        "model": "tinycnn",
        "cut": "block2",
        "clients": args.clients,
        "threads": args.threads,
        "window_s": args.window,
        "offline_samples_per_s": round(rate, 1),
        "offline_core_us_per_sample": round(core, 1),
        "rows": rows,
    }


def markdown(r: dict) -> str:
    rows = "\n".join(
        f"| {x['transport']} | {x['samples_per_s']:.0f} | {x['ratio_to_offline']:.3f} | "
        f"{x['server_cpu_us_per_request']:.0f} | {x['server_own_us_per_request']:.0f} | "
        f"{x['client_cpu_us_per_request']:.0f} |"
        for x in r["rows"]
    )
    core = r["offline_core_us_per_sample"]
    client = min(x["client_cpu_us_per_request"] for x in r["rows"])
    rate = r["offline_samples_per_s"]
    bound = r["threads"] * 1e6 / (core + client) / rate
    budget = r["threads"] * 1e6 / (0.6 * rate) - core - client
    return f"""# CPU per request: tail server and clients, by transport

{r["machine"]["cpu"]}, {r["machine"]["cores"]} cores shared by the server and {r["clients"]}
closed-loop clients (one process), tiny CNN after `block2`, one sample per request, server on
{r["threads"]} threads, {r["window_s"]:g} s per transport after a warm-up; answers not checked.

| transport | samples/s | / offline | server us/req | beyond the forward | client us/req |
|---|---:|---:|---:|---:|---:|
{rows}

CPU in microseconds per request; "beyond the forward": the server's CPU less one sample's share
of the offline forward pass. Offline (the same tail, batches of {r["clients"]}, in this process):
{r["offline_samples_per_s"]:.0f} samples/s, {core:.0f} us of core time per sample. With
clients costing {client:.0f} us per request on the same cores, a server whose own work cost
nothing would reach {r["threads"]} cores / ({core:.0f} + {client:.0f} us) = {bound:.2f} of
offline; 0.6 of offline leaves the server {budget:.0f} us of its own work per request.
Offline is measured between the windows (this host's speed drifts).
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--work", type=Path, default=Path("runs/bench-runtime"))
    ap.add_argument("--name", default="runtime_cpu")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(measure(args))
    write(args.name, result, markdown(result))


if __name__ == "__main__":
    main()
