"""Does a forward pass run as fast inside the tail server as in a plain process?

ResNet-50 @224 tail after `layer2`, batch 1, CPU. Two tail servers run at once on loopback,
each in its own process, differing only in how their threads use OpenMP:

- one team:  as `privpart serve` runs now (`privpart.runtime.compute_thread.serving_threads`): the
             main thread keeps one torch thread; only the compute thread starts an OpenMP team;
- two teams: as it ran before: the model loaded and warmed up on the main thread with N torch
             threads, forwards on the batcher's own thread: two OpenMP teams in one process.

Rounds of blocks (in rotating order): `--block` forwards of the tail in this process, then the
same features posted to each server. Reported: the server's own compute time (Server-Timing,
the forward on its compute thread) over this process's forward, median of the per-round
ratios, and the servers' context switches per request (/proc), which show the mechanism: with
more OpenMP threads than CPUs, libgomp stops spinning and sleeps between parallel regions.

Under load (`--load-windows`, 0 to skip): 32 closed-loop clients in this process against each
server in turn, alternating windows, for ResNet-50 and for the tiny CNN (whose forwards take
microseconds, so HTTP work on both sides dominates): samples/s per layout.

Run: flock /tmp/privpart-cpu.lock .venv/bin/python bench/server_compute.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import torch

from _common import machine, paired_ratio, write
from privpart.runtime import frames
from privpart.runtime.client.load import closed_loop
from privpart.runtime.client.tail import TailClient
from privpart.runtime.head import split_checkpoint
from privpart.runtime.openmp_spin import user_openmp
from runtime_stack import Server, free_port, rerun_with_quiet_openmp, resnet50_checkpoint
from server_throughput import tinycnn_checkpoint

LAYOUTS = ("one team", "two teams")


def serve(layout: str, checkpoint: Path, cut: str, threads: int, port: int) -> None:
    """The server process (this script re-run with --serve)."""
    from privpart.runtime.compute_thread import serving_threads
    from privpart.runtime.server import TailConfig, build_tail_app
    from privpart.runtime.server.runner import serve_until_signal

    config = TailConfig(device="cpu")
    if layout == "one team":
        compute = serving_threads(threads)
        app = build_tail_app(split_checkpoint(checkpoint, cut), config, compute)
    else:
        torch.set_num_threads(threads)
        split = split_checkpoint(checkpoint, cut)
        app = build_tail_app(split, config)  # the batcher's own compute thread, N threads
        with torch.inference_mode():  # the old warm-up, on the main thread
            split.tail(torch.zeros(1, *split.info.cut.shape))
    asyncio.run(serve_until_signal(app, "127.0.0.1", port))


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread of `pid` so far."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            lines = (task / "status").read_text().splitlines()
        except OSError:  # the thread ended meanwhile
            continue
        total += sum(int(line.split()[-1]) for line in lines if "ctxt_switches" in line)
    return total


def start_layouts(args: argparse.Namespace, checkpoint: Path, cut: str, tag: str) -> dict:
    """One server per layout (this script re-run with --serve); the caller stops them."""
    me = [sys.executable, str(Path(__file__).resolve()), "--serve"]
    servers: dict[str, Server] = {}
    try:
        for layout in LAYOUTS:
            port = free_port()
            argv = [layout, str(checkpoint), cut, str(args.threads), str(port)]
            log = args.work / f"server_compute_{tag}_{layout.replace(' ', '_')}.log"
            servers[layout] = Server(argv, port, log, command=me).start()
    except BaseException:
        for s in servers.values():
            s.stop()
        raise
    return servers


async def measure(args: argparse.Namespace) -> dict:
    ck = resnet50_checkpoint(args.work / "resnet50-224")
    torch.set_num_threads(args.threads)
    split = split_checkpoint(ck, args.cut)
    servers = start_layouts(args, ck, args.cut, "resnet50")
    try:
        clients = {name: TailClient(s.url, timeout=120) for name, s in servers.items()}
        x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            features = split.head(x)
        frame = frames.encode(features)
        for c in clients.values():  # warm both servers
            for _ in range(3):
                await c.infer_frame(frame)
        blocks: dict[str, list[float]] = {n: [] for n in ("local", *LAYOUTS)}
        switches: dict[str, list[float]] = {n: [] for n in LAYOUTS}
        names = list(blocks)
        for r in range(args.rounds):
            for name in names[r % 3 :] + names[: r % 3]:
                times = []
                if name == "local":
                    for _ in range(args.block):
                        t = time.perf_counter()
                        with torch.inference_mode():
                            split.tail(features)
                        times.append((time.perf_counter() - t) * 1e3)
                else:
                    pid = servers[name].proc.pid
                    before = context_switches(pid)
                    for _ in range(args.block):
                        _, timing = await clients[name].infer_frame(frame)
                        times.append(timing["compute"])
                    switches[name].append((context_switches(pid) - before) / args.block)
                blocks[name].append(statistics.median(times))
        for c in clients.values():
            await c.close()
    finally:
        for s in servers.values():
            s.stop()
    med = {n: round(statistics.median(v), 2) for n, v in blocks.items()}
    paired = {n: paired_ratio(blocks[n], blocks["local"]) for n in LAYOUTS}
    return {
        "model": "resnet50",
        "cut": args.cut,
        "threads": args.threads,
        "rounds": args.rounds,
        "block": args.block,
        "openmp": user_openmp(),
        "machine": machine(),
        "median_block_ms": med,
        "server_over_local": paired,
        "context_switches_per_request": {
            n: round(statistics.median(v), 1) for n, v in switches.items()
        },
    }


async def under_load(args: argparse.Namespace, model: str) -> dict[str, list[float]]:
    """Samples/s of each layout's server under 32 closed-loop clients, windows alternating."""
    if model == "tinycnn":
        ck, cut = tinycnn_checkpoint(args.work / "tinycnn"), "block2"
    else:
        ck, cut = resnet50_checkpoint(args.work / "resnet50-224"), args.cut
    split = split_checkpoint(ck, cut)
    frame = frames.encode(torch.rand(1, *split.info.cut.shape))
    rates: dict[str, list[float]] = {n: [] for n in LAYOUTS}
    servers = start_layouts(args, ck, cut, model)
    try:
        for w in range(-1, args.load_windows):  # window -1 warms both up
            for layout in LAYOUTS[w % 2 :] + LAYOUTS[: w % 2]:
                clients = [TailClient(servers[layout].url, timeout=60) for _ in range(32)]

                async def request(c: int, _: int, clients: list = clients) -> bool:
                    await clients[c].infer_frame(frame)
                    return True

                report = await closed_loop(32, args.load_seconds, request)
                for c in clients:
                    await c.close()
                if w >= 0:
                    rates[layout].append(report.ok / args.load_seconds)
    finally:
        for s in servers.values():
            s.stop()
    return rates


def markdown(r: dict) -> str:
    load = ""
    if r.get("under_load"):
        lines = "\n".join(
            f"| {m} | {statistics.median(v['one team']):.1f} | "
            f"{statistics.median(v['two teams']):.1f} | **{v['one_over_two']:.3f}** |"
            for m, v in r["under_load"].items()
        )
        load = f"""
Under load: 32 closed-loop clients in the bench process (the same two cores), windows of
{r["load_seconds"]:g} s alternating between the two servers, {r["load_windows"]} each; samples/s.

| model | one team | two teams | one / two (median of paired windows) |
|---|---:|---:|---:|
{lines}

The tiny CNN's forwards take microseconds: its throughput is bounded by HTTP work in the server
and in the clients, which share the two cores with the server's compute thread.
"""
    rows = "\n".join(
        f"| {n} | {r['median_block_ms'][n]:.1f} | **{r['server_over_local'][n]:.3f}** | "
        f"{r['context_switches_per_request'][n]:.0f} |"
        for n in LAYOUTS
    )
    return f"""# Tail compute inside the server against the same forward in a plain process

ResNet-50 @224 tail after `{r["cut"]}`, batch 1, {r["threads"]} torch threads,
{r["machine"]["cpu"]}, torch {r["machine"]["torch"]}; OpenMP settings {r["openmp"] or "defaults"};
{r["rounds"]} rounds of {r["block"]} forwards per block, order rotated.
In-process forward (this process, main thread): {r["median_block_ms"]["local"]:.1f} ms
(median block). Ratio: median over rounds of server compute / in-process forward.

| server threads | server compute ms | compute / in-process | context switches per request |
|---|---:|---:|---:|
{rows}

"one team" is how `privpart serve` (and each Ray replica) runs since this change: the main thread
keeps one torch thread and only the compute thread starts an OpenMP team. "two teams" is how it
ran before (model loaded and warmed up on the main thread with the same thread count). With more
OpenMP threads than CPUs, libgomp spins only ~100 times before sleeping, so every parallel
region of a forward wakes its threads again: the context switches show it.
{load}"""


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        layout, ck, cut, threads, port = sys.argv[2:7]
        serve(layout, Path(ck), cut, int(threads), int(port))
        return
    rerun_with_quiet_openmp()  # the servers run with privpart's OpenMP setting, as `serve` does
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--block", type=int, default=5)
    ap.add_argument("--cut", default="layer2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("runs/bench-runtime"))
    ap.add_argument("--load-windows", type=int, default=4, help="per layout and model; 0: skip")
    ap.add_argument("--load-seconds", type=float, default=8.0)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(measure(args))
    if args.load_windows > 0:
        result.update(load_windows=args.load_windows, load_seconds=args.load_seconds)
        result["under_load"] = {}
        for model in ("resnet50", "tinycnn"):
            rates = asyncio.run(under_load(args, model))
            ratio = paired_ratio(rates["one team"], rates["two teams"])
            result["under_load"][model] = {**rates, "one_over_two": ratio}
    write("server_compute", result, markdown(result))


if __name__ == "__main__":
    main()
