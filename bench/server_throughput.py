"""Tail-server throughput under 32 concurrent clients against an offline batched forward.

The tail server runs as `privpart serve --stream-port` in its own process (dynamic batching: max
batch 32, max wait 10 ms). 32 closed-loop clients in this process each send one sample's
features per request (every answer is checked against a local forward of that sample), over
HTTP and over the stream transport in alternating windows (`--transports`). Offline = the same
tail module forwarding batches of 32 in this process, with the same thread count. Windows of
server load and offline timing alternate, and the ratio is taken within the run.

Target (issue 6): server samples/s / offline samples/s >= 0.9, for ResNet-50 @224 cut at
layer2 (the deployment of bench/runtime_overhead.py). The tiny CNN is reported as well: its tail
costs microseconds per sample, so per-request HTTP cost, not batching, bounds it.

Run: flock /tmp/privpart-cpu.lock .venv/bin/python bench/server_throughput.py
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import urllib.request
from pathlib import Path

import aiohttp
import torch

from _common import machine, write
from privpart.models import ModelSpec, build_model
from privpart.runtime import frames
from privpart.runtime.client import StreamClient, TailClient
from privpart.runtime.client.load import closed_loop
from privpart.runtime.head import split_checkpoint
from privpart.runtime.malloc import keep_freed_memory
from privpart.runtime.openmp_spin import runtime_openmp
from privpart.training import save_checkpoint
from runtime_stack import Server, free_port, resnet50_checkpoint

CONFIGS = {
    "resnet50": {"cut": "layer2", "window_s": 45.0, "windows": 2, "warmup_s": 15.0},
    "tinycnn": {"cut": "block2", "window_s": 15.0, "windows": 2, "warmup_s": 5.0},
}


def tinycnn_checkpoint(folder: Path) -> Path:
    if (folder / "meta.json").is_file():
        return folder
    torch.manual_seed(0)
    spec = ModelSpec("tinycnn", 1, 10, (28, 28))
    return save_checkpoint(folder, build_model(spec), spec, {"input_shape": [1, 28, 28]})


def batch_histogram(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(("privpart_tail_batch_size_count", "privpart_tail_batch_size_sum")):
            name, value = line.split()
            out[name.rsplit("_", 1)[1]] = float(value)
    return out


async def measure(model: str, args: argparse.Namespace, work: Path) -> list[dict]:
    cfg = CONFIGS[model]
    ck = (
        resnet50_checkpoint(work / "resnet50-224")
        if model == "resnet50"
        else tinycnn_checkpoint(work / "tinycnn")
    )
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # the offline forward under the same malloc policy as the server
    split = split_checkpoint(ck, cfg["cut"])
    tail_module = split.tail
    g = torch.Generator().manual_seed(0)
    feats = [torch.rand(1, *split.info.cut.shape, generator=g) for _ in range(args.clients)]
    with torch.inference_mode():
        expected = [tail_module(f) for f in feats]
    encoded = [frames.encode(f) for f in feats]
    batch = torch.cat(feats)
    port, stream_port = free_port(), free_port()
    server = Server(
        [
            "serve",
            "--checkpoint",
            str(ck),
            "--cut",
            cfg["cut"],
            "--port",
            str(port),
            "--stream-port",
            str(stream_port),
            "--device",
            "cpu",
            "--threads",
            str(args.threads),
            "--max-batch",
            str(args.max_batch),
            "--max-wait-ms",
            str(args.max_wait_ms),
            "--max-queue",
            "256",
        ],
        port,
        work / f"tail-{model}.log",
    ).start()
    spec = frames.FrameSpec(max_batch=1 << 16)

    def offline(reps: int) -> list[float]:
        rates = []
        with torch.inference_mode():
            tail_module(batch)
            for _ in range(reps):
                t = time.perf_counter()
                tail_module(batch)
                rates.append(len(feats) / (time.perf_counter() - t))
        return rates

    stream_url = f"tcp://127.0.0.1:{stream_port}"
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            clients = {
                "http": [TailClient(server.url, 600, session) for _ in range(args.clients)],
                "stream": [StreamClient(stream_url, 600) for _ in range(args.clients)],
            }

            def requester(transport: str):  # noqa: ANN202
                async def request(c: int, i: int) -> bool:
                    body, _ = await clients[transport][c].infer_frame(encoded[c])
                    return torch.allclose(frames.decode(body, spec), expected[c], atol=1e-4)

                return request

            offline_rates: list[float] = []
            got = {t: {"ok": 0, "seconds": 0.0, "reports": [], "count": 0.0, "sum": 0.0}
                   for t in args.transports}  # fmt: skip
            for t in args.transports:  # warm-up, discarded
                await closed_loop(args.clients, cfg["warmup_s"], requester(t))
            for w in range(cfg["windows"]):
                offline_rates += offline(args.offline_reps)
                for t in args.transports:
                    before = batch_histogram(server.url)
                    report = await closed_loop(args.clients, cfg["window_s"], requester(t))
                    after = batch_histogram(server.url)
                    g = got[t]
                    g["reports"].append(report.to_json())
                    g["ok"] += report.ok
                    g["seconds"] += report.seconds
                    g["count"] += after["count"] - before["count"]
                    g["sum"] += after["sum"] - before["sum"]
                    print(
                        f"{model} {t} window {w + 1}: server {report.ok / report.seconds:.1f}/s,"
                        f" offline {statistics.median(offline_rates):.1f}/s",
                        flush=True,
                    )
            offline_rates += offline(args.offline_reps)
            for c in clients["stream"]:
                await c.close()
    finally:
        server.stop()
    off = statistics.median(offline_rates)
    runs = []
    for t, g in got.items():
        served = g["ok"] / g["seconds"]
        reports = g["reports"]
        runs.append(
            {
                "model": model,
                "transport": t,
                "cut": cfg["cut"],
                "feature_shape": list(split.info.cut.shape),
                "clients": args.clients,
                "max_batch": args.max_batch,
                "max_wait_ms": args.max_wait_ms,
                "threads": args.threads,
                "server_samples_per_s": round(served, 2),
                "offline_samples_per_s": round(off, 2),
                "ratio": round(served / off, 4),
                "mean_batch": round(g["sum"] / max(g["count"], 1), 2),
                "mismatched": sum(r["mismatched"] for r in reports),
                "errors": [r["errors"] for r in reports],
                "lost": sum(r["lost"] for r in reports),
                "p50_ms": [r["p50_ms"] for r in reports],
                "p99_ms": [r["p99_ms"] for r in reports],
                "windows": reports,
            }
        )
    return runs


def markdown(r: dict) -> str:
    rows = "\n".join(
        f"| {x['model']} | {x['cut']} | {x.get('transport', 'http')} | "
        f"{x['server_samples_per_s']:.1f} | "
        f"{x['offline_samples_per_s']:.1f} | **{x['ratio']:.3f}** | {x['mean_batch']:.1f} | "
        f"{'/'.join(f'{v:.0f}' for v in x['p50_ms'])} | {'/'.join(f'{v:.0f}' for v in x['p99_ms'])}"
        f" | {x['mismatched']} | {x['lost']} |"
        for x in r["runs"]
    )
    head = (
        "| model | cut | transport | server/s | offline/s | ratio | mean batch | p50 ms | p99 ms |"
    )
    head += " bad | lost |"
    n = r["runs"][0]["clients"]
    return f"""# Tail server throughput: {n} clients vs offline batched forward

{r["machine"]["cpu"]}, torch {r["machine"]["torch"]}, {r["runs"][0]["threads"]} threads in the
server and offline; dynamic batching max {r["runs"][0]["max_batch"]}, max wait
{r["runs"][0]["max_wait_ms"]:g} ms; one sample per request; every answer checked. Server OpenMP:
{r.get("server_openmp", "defaults")}.

{head}
|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|
{rows}

Samples per second; bad = answers that differ from a local forward of the same sample.
Target: ratio >= 0.9 (ResNet-50). p50/p99 are per window.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=list(CONFIGS))
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-wait-ms", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--offline-reps", type=int, default=3)
    ap.add_argument(
        "--transports", nargs="*", default=["http", "stream"], choices=["http", "stream"]
    )
    ap.add_argument("--work", type=Path, default=Path("runs/bench-runtime"))
    ap.add_argument("--name", default="runtime_throughput")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    runs = [run for m in args.models for run in asyncio.run(measure(m, args, args.work))]
    result = {"machine": machine(), "runs": runs, "server_openmp": runtime_openmp()}
    write(args.name, result, markdown(result))


if __name__ == "__main__":
    main()
