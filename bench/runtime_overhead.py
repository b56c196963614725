"""End-to-end latency of the split runtime against a plain in-process forward.

ResNet-50 @224, batch 1, CPU, cut at `layer2` (default). Three processes on loopback, as a user
runs them: `privpart serve` (tail), `privpart enclave` (host + worker process, head), and this
script as the client. Each round times, in rotating order:

- plain:   `model(x)` in this process (the baseline);
- enclave: TEE + GPU partitioning, end to end: encrypt -> host -> worker (decrypt, head) ->
           tail server -> worker (encrypt) -> client (decrypt);
- device:  privacy partitioning on the user's device, end to end: head here -> tail server ->
           logits;
- enclave_stream, device_stream: the same two over the stream transport instead of HTTP
           (`privpart serve --stream-port` with a tcp:// tail URL; `privpart enclave
           --stream-port` with `EnclaveClient(stream=True)`): one persistent connection per
           hop, length-prefixed messages read straight into their buffers;
- split:   head then tail in this process (what splitting costs before any transport);
- floor:   head here, raw features over a bare TCP socket to a tail process with no HTTP,
           validation, batching or crypto (`_floor_tail.py`): what two processes cost at least.

Target (issue 6): median(enclave) / median(plain) <= 1.05, same for device. Ratios are taken
within one run because the machine is shared and noisy. The breakdown splits end-to-end time
into crypto, serialisation, compute and transport (HTTP + pipes + scheduling, the remainder).

This process stands for the client of `privpart infer` and, like it, quiets idle OpenMP threads
(`privpart.runtime.openmp_spin`; it re-executes itself with the setting before torch loads), so
plain, split and the device-mode head all run under the same setting; `--client-openmp
defaults` keeps the OpenMP defaults here instead (the servers still quiet theirs).

CPU placement: by default every process may run on every CPU, so on a small host the head and
the tail take turns on the same cores. `--head-cpus` and `--tail-cpus` (taskset lists) pin this
process (plain, split, the device client's head) and the enclave host with its worker to one
set and the tail servers to another: the layout of a deployment whose tail has hardware of its
own. Give each side `--threads` CPUs; the plain baseline then runs on the head's CPUs.

`--baseline FILE.json` adds a comparison with another run (another version of the code, run
just before on the same host): each mode's paired ratio here against the other run's 95%
interval, which says whether a change costs anything measurable per request.

Run: flock /tmp/privpart-cpu.lock .venv/bin/python bench/runtime_overhead.py [--rounds 40]
     [--head-cpus 0-3 --tail-cpus 4-7 --threads 4] [--baseline other.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

import torch

from _common import machine, paired_ratio, paired_ratio_ci, write
from privpart.runtime.channel.attestation import read_pin
from privpart.runtime.channel.policy import VerificationPolicy
from privpart.runtime.client import DeviceClient, EnclaveClient
from privpart.runtime.head import split_checkpoint
from privpart.runtime.openmp_spin import runtime_openmp, user_openmp
from privpart.training import load_checkpoint
from runtime_stack import (
    Server,
    free_port,
    parse_cpus,
    pin_to,
    rerun_with_quiet_openmp,
    resnet50_checkpoint,
)

CRYPTO = ("client_encrypt", "client_decrypt", "enclave_decrypt", "enclave_encrypt")
SERIAL = (
    "client_encode",
    "client_decode",
    "enclave_decode",
    "enclave_encode",
    "tail_decode",
    "tail_encode",
)
COMPUTE = ("enclave_head", "head", "tail_compute")
# the parts of transport that a hop reports itself (the rest: HTTP, sockets, wake-ups)
HOPS = {
    "tail_read": "tail server receives the features body",
    "tail_queue": "tail batcher queue",
    "tail_dispatch": "tail event loop -> compute thread -> loop",
    "enclave_ipc": "enclave host <-> worker pipe",
}


OTHER = "the rest: HTTP or stream framing, sockets, wake-ups"


def breakdown(timing: dict[str, float]) -> dict[str, float]:
    parts = {
        "crypto": sum(timing.get(k, 0.0) for k in CRYPTO),
        "serialisation": sum(timing.get(k, 0.0) for k in SERIAL),
        "compute": sum(timing.get(k, 0.0) for k in COMPUTE),
    }
    parts["transport"] = timing["total"] - sum(parts.values())
    for hop in HOPS:
        parts[hop] = timing.get(hop, 0.0)
    parts["other_transport"] = parts["transport"] - sum(parts[h] for h in HOPS)
    return parts


def med(values: list[float]) -> float:
    return statistics.median(values)


def p10(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[0]


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


async def measure(args: argparse.Namespace, work: Path) -> dict:
    ck = resnet50_checkpoint(work / "resnet50-224")
    torch.set_num_threads(args.threads)
    model, _ = load_checkpoint(ck)
    split = split_checkpoint(ck, args.cut)
    threads = ["--threads", str(args.threads)]
    tail_port, enclave_port, stream_port = free_port(), free_port(), free_port()
    enclave_stream_port = free_port()
    head_cpus, tail_cpus = args.head_cpus, args.tail_cpus
    tail = Server(
        [
            "serve",
            "--checkpoint",
            str(ck),
            "--cut",
            args.cut,
            "--port",
            str(tail_port),
            "--stream-port",
            str(stream_port),
            "--device",
            "cpu",
            *threads,
        ],
        tail_port,
        work / "tail.log",
        cpus=tail_cpus,
    ).start()

    def enclave_server(port: int, tail_url: str, name: str, *extra: str) -> Server:
        return Server(
            [
                "enclave",
                "--checkpoint",
                str(ck),
                "--cut",
                args.cut,
                "--tail",
                tail_url,
                "--port",
                str(port),
                "--platform-dir",
                str(work / "platform"),
                "--max-batch",
                "1",
                *threads,
                *extra,
            ],
            port,
            work / f"{name}.log",
            cpus=head_cpus,  # the worker, its child, inherits them
        ).start()

    stream_url = f"tcp://127.0.0.1:{stream_port}"
    enclave = enclave_server(enclave_port, tail.url, "enclave")
    enclave_stream = enclave_server(
        enclave_stream_port, stream_url, "enclave-stream", "--stream-port", str(free_port())
    )
    floor_tail = subprocess.Popen(  # the bare-socket tail: what any two-process split costs
        [
            sys.executable,
            str(Path(__file__).with_name("_floor_tail.py")),
            str(ck),
            args.cut,
            str(args.threads),
        ],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=pin_to(tail_cpus),
    )
    floor_port = int(floor_tail.stdout.readline())  # type: ignore[union-attr]
    try:
        pin = read_pin(work / "platform" / "platform.pub")
        # the process backend is simulated: the benchmark accepts it knowingly
        policy = VerificationPolicy(allow_simulated=True, platform_pins=(pin,))
        ec = EnclaveClient(enclave.url, policy, split.info.measurement, timeout=120)
        ecs = EnclaveClient(
            enclave_stream.url, policy, split.info.measurement, timeout=120, stream=True
        )
        dc = DeviceClient(split, tail.url, timeout=120)
        dcs = DeviceClient(split, stream_url, timeout=120)
        await dc.check_tail()
        await dcs.check_tail()
        attested = await ec.attest()
        await ecs.attest()
        x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            reference = model(x)

        def plain() -> tuple[float, dict]:
            t = time.perf_counter()
            with torch.inference_mode():
                model(x)
            return (time.perf_counter() - t) * 1e3, {}

        def in_process_split() -> tuple[float, dict]:
            t = time.perf_counter()
            with torch.inference_mode():
                features = split.head(x)
                t1 = time.perf_counter()
                split.tail(features)
            t2 = time.perf_counter()
            return (t2 - t) * 1e3, {"head": (t1 - t) * 1e3, "tail_compute": (t2 - t1) * 1e3}

        async def remote(client: EnclaveClient | DeviceClient) -> tuple[float, dict]:
            t = time.perf_counter()
            r = await client.infer(x)
            total = (time.perf_counter() - t) * 1e3
            assert torch.allclose(r.logits, reference, atol=1e-4), "split answer differs"
            return total, r.timing

        floor_sock = socket.create_connection(("127.0.0.1", floor_port))
        floor_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        logits = bytearray(reference.numel() * 4 + 8)  # + the floor tail's forward ms

        def floor() -> tuple[float, dict]:
            t = time.perf_counter()
            with torch.inference_mode():
                features = split.head(x)
            t1 = time.perf_counter()
            floor_sock.sendall(features.numpy())
            view, got = memoryview(logits), 0
            while got < len(logits):
                got += floor_sock.recv_into(view[got:])
            t2 = time.perf_counter()
            out = torch.frombuffer(logits, dtype=torch.float32, count=reference.numel())
            assert torch.allclose(out.reshape(reference.shape), reference, atol=1e-4), (
                "floor answer differs"
            )
            (tail_ms,) = struct.unpack_from("<d", logits, reference.numel() * 4)
            return (t2 - t) * 1e3, {
                "head": (t1 - t) * 1e3,
                "roundtrip": (t2 - t1) * 1e3,
                "tail_compute": tail_ms,
            }

        modes = {
            "plain": plain,
            "enclave": lambda: remote(ec),
            "device": lambda: remote(dc),
            "enclave_stream": lambda: remote(ecs),
            "device_stream": lambda: remote(dcs),
            "split": in_process_split,
            "floor": floor,
        }
        load_before = loadavg()
        samples: dict[str, list[float]] = {m: [] for m in modes}
        timings: dict[str, list[dict]] = {m: [] for m in ("split", "floor", *REMOTE)}
        names = list(modes)
        for r in range(args.warmup + args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]  # rotate the order
            for name in order:
                out = modes[name]()
                total, timing = await out if asyncio.iscoroutine(out) else out
                if r >= args.warmup:
                    samples[name].append(total)
                    if name in timings:
                        timings[name].append({**timing, "total": total})
            if r >= args.warmup and (r - args.warmup) % 10 == 9:
                print(
                    f"round {r - args.warmup + 1}: "
                    + ", ".join(f"{m} {med(v):.1f} ms" for m, v in samples.items()),
                    flush=True,
                )
        floor_sock.close()
        for client in (ec, ecs, dc, dcs):
            await client.close()
        plain_ms = med(samples["plain"])
        result = {
            "model": "resnet50",
            "input": [1, 3, 224, 224],
            "cut": args.cut,
            "feature_bytes": split.info.cut.bytes_per_sample,
            "threads": args.threads,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default (active spin)"),
            # this process (plain, split, the device client's head) vs the serve/enclave
            # processes, which quiet their idle OpenMP threads unless the environment chose
            "bench_openmp": user_openmp() or "defaults",
            "runtime_openmp": runtime_openmp(),
            "rounds": args.rounds,
            "cpus": {
                "head": sorted(head_cpus) if head_cpus else "any",
                "tail": sorted(tail_cpus) if tail_cpus else "any",
                "host": os.cpu_count(),
            },
            "simulated": attested.simulated,
            "machine": machine(),
            "load_average_before_after": [load_before, loadavg()],
            "median_ms": {m: round(med(v), 2) for m, v in samples.items()},
            "p10_ms": {m: round(p10(v), 2) for m, v in samples.items()},
            "ratio_p10": {m: round(p10(v) / p10(samples["plain"]), 4) for m, v in samples.items()},
            "ratio": {m: round(med(v) / plain_ms, 4) for m, v in samples.items()},
            "ratio_of_paired_rounds": {
                m: paired_ratio(v, samples["plain"]) for m, v in samples.items()
            },
            "paired_ratio_ci95": {
                m: paired_ratio_ci(v, samples["plain"]) for m, v in samples.items()
            },
            "samples_ms": {m: [round(t, 3) for t in v] for m, v in samples.items()},  # by round
            "ratio_to_floor": {
                m: round(med(v) / med(samples["floor"]), 4) for m, v in samples.items()
            },
            "paired_ratio_to_floor": {
                m: paired_ratio(v, samples["floor"]) for m, v in samples.items()
            },
            "paired_ratio_to_floor_ci95": {
                m: paired_ratio_ci(v, samples["floor"]) for m, v in samples.items()
            },
            "breakdown_ms": {},
            "parts_ms": {},
        }
        for mode, rows in timings.items():
            parts = [breakdown(t) for t in rows]
            result["breakdown_ms"][mode] = {
                k: round(med([p[k] for p in parts]), 3) for k in parts[0]
            }
            keys = sorted({k for t in rows for k in t})
            result["parts_ms"][mode] = {
                k: round(med([t.get(k, 0.0) for t in rows]), 3) for k in keys
            }
        return result
    finally:
        enclave.stop()
        enclave_stream.stop()
        tail.stop()
        floor_tail.kill()
        floor_tail.wait()


def layout(r: dict) -> str:
    cpus = r["cpus"]
    if cpus["head"] == "any" and cpus["tail"] == "any":
        return "CPU layout: every process may use every CPU (head and tail take turns on them)."
    return (
        f"CPU layout: this process (plain, split, device head) and the enclave host and worker on"
        f" CPUs {cpus['head']}; the tail servers (`privpart serve`, the floor's) on CPUs"
        f" {cpus['tail']}."
    )


def ci(r: dict, mode: str) -> str:
    lo, hi = r["paired_ratio_ci95"][mode]
    return f"{lo:.3f}-{hi:.3f}"


COMPARED = ("split", "floor", "device", "enclave", "device_stream", "enclave_stream")
FLOOR_TARGETS = {"device": 1.01, "enclave": 1.02, "device_stream": 1.01, "enclave_stream": 1.02}
REMOTE = ("device", "enclave", "device_stream", "enclave_stream")


def comparison(r: dict, base: dict) -> dict:
    """This run's paired ratios against a baseline run's 95% intervals, mode by mode."""
    out = {}
    for mode in COMPARED:
        if mode not in base["paired_ratio_ci95"]:
            continue  # the baseline run did not have this mode
        lo, hi = base["paired_ratio_ci95"][mode]
        ratio = r["ratio_of_paired_rounds"][mode]
        out[mode] = {
            "baseline_ratio": base["ratio_of_paired_rounds"][mode],
            "baseline_ci95": [lo, hi],
            "ratio": ratio,
            "ci95": r["paired_ratio_ci95"][mode],
            "within_baseline_interval": lo <= ratio <= hi,
        }
    return out


def comparison_markdown(r: dict) -> str:
    c = r.get("comparison")
    if not c:
        return ""

    def cell(ratio: float, ci: list[float]) -> str:
        return f"{ratio:.3f} ({ci[0]:.3f}-{ci[1]:.3f})"

    rows = "\n".join(
        f"| {m} | {cell(v['baseline_ratio'], v['baseline_ci95'])} | {cell(v['ratio'], v['ci95'])}"
        f" | {'yes' if v['within_baseline_interval'] else '**no**'} |"
        for m, v in c.items()
    )
    return f"""
Against the baseline run `{r["baseline"]["name"]}` ({r["baseline"]["what"]}), same host, run just
before: each mode's paired ratio here, and whether it falls inside the baseline's 95% interval
(inside: the difference is within this host's noise).

| mode | baseline paired ratio (95%) | this run (95%) | inside the baseline's interval |
|---|---:|---:|:---:|
{rows}
"""


def markdown(r: dict) -> str:
    rows = "\n".join(
        f"| {m} | {r['median_ms'][m]:.1f} | **{r['ratio'][m]:.3f}** | "
        f"{r['ratio_of_paired_rounds'][m]:.3f} | {ci(r, m)} | {r['p10_ms'][m]:.1f} | "
        f"{r['ratio_p10'][m]:.3f} |"
        for m in ("plain", "split", "floor", *REMOTE)
    )
    parts = "\n".join(
        f"| {mode} | "
        + " | ".join(
            f"{r['breakdown_ms'][mode][k]:.2f}"
            for k in ("compute", "crypto", "serialisation", "transport")
        )
        + " |"
        for mode in ("split", "floor", *REMOTE)
        if mode in r["breakdown_ms"]
    )
    pm = r["parts_ms"]
    here = {"head": pm["split"]["head"], "tail": pm["split"]["tail_compute"]}
    there = {
        mode: {
            "head": pm[mode]["enclave_head" if mode.startswith("enclave") else "head"],
            "tail": pm[mode]["tail_compute"],
        }
        for mode in REMOTE
    }
    if "tail_compute" in pm["floor"]:
        there["floor"] = {"head": pm["floor"]["head"], "tail": pm["floor"]["tail_compute"]}
    compute = "\n".join(
        f"| {mode} | {p['head']:.1f} ({p['head'] / here['head']:.3f}) | "
        f"{p['tail']:.1f} ({p['tail'] / here['tail']:.3f}) |"
        for mode, p in there.items()
    )
    floor_rows = "\n".join(
        f"| {m} | {r['ratio_to_floor'][m]:.3f} | {r['paired_ratio_to_floor'][m]:.3f} | "
        f"{r['paired_ratio_to_floor_ci95'][m][0]:.3f}-{r['paired_ratio_to_floor_ci95'][m][1]:.3f}"
        f" | {target} | {'meets' if r['paired_ratio_to_floor'][m] <= target else '**misses**'} |"
        for m, target in FLOOR_TARGETS.items()
    )
    hop_rows = "\n".join(
        f"| {what} | " + " | ".join(f"{r['breakdown_ms'][mode][hop]:.2f}" for mode in REMOTE) + " |"
        for hop, what in {**HOPS, "other_transport": OTHER}.items()
    )
    cores = r["cpus"]["host"]
    ok = {m: r["ratio"][m] <= 1.05 for m in REMOTE}
    verdict = ", ".join(f"{m} {'meets' if v else 'MISSES'} <= 1.05" for m, v in ok.items())
    return f"""# Runtime overhead: ResNet-50 @224, batch 1, CPU, cut `{r["cut"]}`

{r["machine"]["cpu"]}, torch {r["machine"]["torch"]}, {r["threads"]} threads per process,
OpenMP: this process (plain, split, device head) {r.get("bench_openmp", "defaults")}, `privpart
serve`/`enclave` and the worker {r.get("runtime_openmp", "defaults")}, {r["rounds"]} rounds
(order rotated each round); enclave backend `process`
(**simulated: {str(r["simulated"]).lower()}**). Features at the cut: {r["feature_bytes"]:,} bytes.
{layout(r)}

| mode | median ms | median / plain | paired ratio (median) | 95% interval | p10 ms | p10 / plain |
|---|---:|---:|---:|---:|---:|---:|
{rows}

95% interval: bootstrap over the rounds (`_common.paired_ratio_ci`), how far this host's noise
lets the paired ratio move; a target is missed beyond the noise only when the whole interval
is above it.

floor: head here, raw features over a bare TCP socket to a tail process (`bench/_floor_tail.py`:
no HTTP, validation, batching or encryption), raw logits back: what any split across two
processes on these cores costs before privpart adds anything.

Target: median end-to-end / median plain <= 1.05 -> {verdict}. Load average (1/5/15 min)
before and after: {r["load_average_before_after"]} on a {cores}-CPU machine shared with other jobs;
p10 (10th percentile) is the least contended view of the same rounds.

Against the floor (what two processes cost at least), the targets of issue 26:

| mode | median / floor | paired ratio to floor | 95% interval | target | |
|---|---:|---:|---:|---:|---|
{floor_rows}

Median breakdown (ms; transport = total - the other parts: HTTP on loopback, the host <-> worker
pipes, the tail's frame validation and queueing, process wake-ups):

| mode | compute | crypto | serialisation | transport |
|---|---:|---:|---:|---:|
{parts}

Transport, by hop (median ms; each hop times itself, Server-Timing; `other` is what no hop
can see: HTTP framing on both ends, loopback copies, process and thread wake-ups):

| part | device | enclave | device_stream | enclave_stream |
|---|---:|---:|---:|---:|
{hop_rows}

Where the remaining milliseconds go, process by process (py-spy profile, per-hop timings) and
why they stay: `runtime_profile.md`.

Compute per part, median ms (and / the same part in this process: head {here["head"]:.1f},
tail {here["tail"]:.1f}): how much the other processes slow the forward passes themselves.

| mode | head ms | tail ms |
|---|---:|---:|
{compute}
{comparison_markdown(r)}"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--cut", default="layer2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("runs/bench-runtime"))
    ap.add_argument("--name", default="runtime_overhead")
    ap.add_argument(
        "--client-openmp",
        choices=["privpart", "defaults"],
        default="privpart",
        help="this process's OpenMP idle spinning: like privpart infer, or the defaults",
    )
    ap.add_argument("--head-cpus", type=parse_cpus, help="CPUs of this process and the enclave")
    ap.add_argument("--tail-cpus", type=parse_cpus, help="CPUs of the tail servers")
    ap.add_argument("--baseline", type=Path, help="another run's JSON to compare with")
    ap.add_argument("--baseline-what", default="", help="what the baseline run was")
    args = ap.parse_args()
    if args.client_openmp == "privpart":
        rerun_with_quiet_openmp()
    if args.head_cpus:  # before torch starts its threads: they inherit this thread's CPUs
        os.sched_setaffinity(0, args.head_cpus)
    args.work.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(measure(args, args.work))
    if args.baseline is not None:
        base = json.loads(args.baseline.read_text())
        result["baseline"] = {"name": args.baseline.name, "what": args.baseline_what}
        result["comparison"] = comparison(result, base)
    write(args.name, result, markdown(result))


if __name__ == "__main__":
    main()
