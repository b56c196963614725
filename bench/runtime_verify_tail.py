"""What spot-checking the tail costs: end-to-end latency by `--verify-tail` rate, both modes.

ResNet-50 @224, batch 1, CPU, cut `layer2` (as `runtime_overhead.py`). One `privpart serve`
(the tail), one `privpart enclave` per rate (0, 0.1, 0.5, 1; `--epc-mib 0` for all four, since
the tail the worker verifies with does not fit SGX1's 93 MiB beside this head), and this script
as the client: enclave mode through each enclave, device mode with `DeviceClient(verify_tail=
RATE)`, and the plain in-process forward as the baseline. Each round times every mode once, in
rotating order; ratios are taken within the run (the host is shared and noisy).

A request picked for a check pays one more tail forward on the trusted side's CPU, so the
expected cost per request is RATE x (tail compute): the table gives the mean over the rounds
(which carries it) beside the median (which, at rate 0.1, mostly shows unchecked requests).
In enclave mode the worker recomputes while the tail server works; on this 2-core host both
compete for the same cores, so the overlap hides little.

Run: flock /tmp/privpart-cpu.lock .venv/bin/python bench/runtime_verify_tail.py [--rounds 40]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import torch

from _common import machine, paired_ratio, paired_ratio_ci, write
from privpart.runtime.channel.attestation import read_pin
from privpart.runtime.channel.policy import VerificationPolicy
from privpart.runtime.client import DeviceClient, EnclaveClient
from privpart.runtime.head import split_checkpoint
from privpart.training import load_checkpoint
from runtime_stack import Server, free_port, rerun_with_quiet_openmp, resnet50_checkpoint

RATES = (0.0, 0.1, 0.5, 1.0)


async def measure(args: argparse.Namespace, work: Path) -> dict:
    ck = resnet50_checkpoint(work / "resnet50-224")
    torch.set_num_threads(args.threads)
    model, _ = load_checkpoint(ck)
    split = split_checkpoint(ck, args.cut)
    threads = ["--threads", str(args.threads)]
    tail_port = free_port()
    tail = Server(
        ["serve", "--checkpoint", str(ck), "--cut", args.cut, "--port", str(tail_port),
         "--device", "cpu", *threads],
        tail_port, work / "tail.log",
    ).start()  # fmt: skip
    enclaves: dict[float, Server] = {}
    try:
        for rate in RATES:
            port = free_port()
            enclaves[rate] = Server(
                ["enclave", "--checkpoint", str(ck), "--cut", args.cut, "--tail", tail.url,
                 "--port", str(port), "--platform-dir", str(work / "platform"),
                 "--max-batch", "1", "--epc-mib", "0", "--verify-tail", f"{rate:g}", *threads],
                port, work / f"enclave-{rate:g}.log",
            ).start()  # fmt: skip
        pin = read_pin(work / "platform" / "platform.pub")
        policy = VerificationPolicy(allow_simulated=True, platform_pins=(pin,))  # knowingly
        clients: dict[str, EnclaveClient | DeviceClient] = {}
        for rate in RATES:
            clients[f"enclave {rate:g}"] = EnclaveClient(
                enclaves[rate].url, policy, split.info.measurement, timeout=120
            )
            clients[f"device {rate:g}"] = DeviceClient(split, tail.url, 120, verify_tail=rate)
        x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            reference = model(x)

        async def plain() -> float:
            t = time.perf_counter()
            with torch.inference_mode():
                model(x)
            return (time.perf_counter() - t) * 1e3

        async def remote(client: EnclaveClient | DeviceClient) -> float:
            t = time.perf_counter()
            r = await client.infer(x)
            total = (time.perf_counter() - t) * 1e3
            assert torch.allclose(r.logits, reference, atol=1e-4), "split answer differs"
            return total

        modes = {"plain": plain, **{n: (lambda c=c: remote(c)) for n, c in clients.items()}}
        names = list(modes)
        samples: dict[str, list[float]] = {m: [] for m in modes}
        for r in range(args.warmup + args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                ms = await modes[name]()
                if r >= args.warmup:
                    samples[name].append(ms)
            if r >= args.warmup and (r - args.warmup) % 10 == 9:
                print(f"round {r - args.warmup + 1}: "
                      + ", ".join(f"{m} {statistics.median(v):.0f}" for m, v in samples.items()),
                      flush=True)  # fmt: skip
        checks = {n: c.check.checked for n, c in clients.items() if isinstance(c, DeviceClient)}
        for c in clients.values():
            await c.close()
        with torch.inference_mode():
            features = split.head(x)
            t = time.perf_counter()
            for _ in range(10):
                split.tail(features)
            tail_ms = (time.perf_counter() - t) * 100
        base = samples["plain"]
        return {
            "model": "resnet50",
            "input": [1, 3, 224, 224],
            "cut": args.cut,
            "threads": args.threads,
            "rounds": args.rounds,
            "rates": list(RATES),
            "machine": machine(),
            "tail_compute_ms": round(tail_ms, 2),
            "device_checks": checks,
            "median_ms": {m: round(statistics.median(v), 2) for m, v in samples.items()},
            "mean_ms": {m: round(statistics.fmean(v), 2) for m, v in samples.items()},
            "mean_ratio": {
                m: round(statistics.fmean(v) / statistics.fmean(base), 4)
                for m, v in samples.items()
            },
            "paired_ratio": {m: paired_ratio(v, base) for m, v in samples.items()},
            "paired_ratio_ci95": {m: paired_ratio_ci(v, base) for m, v in samples.items()},
            "samples_ms": {m: [round(t, 3) for t in v] for m, v in samples.items()},
        }
    finally:
        for server in enclaves.values():
            server.stop()
        tail.stop()


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [
        f"# Tail verification cost: ResNet-50 @224, batch 1, CPU, cut `{r['cut']}`",
        "",
        f"{m['cpu']}, torch {m['torch']}, {r['threads']} threads per process, {r['rounds']} "
        "rounds (order rotated each round); enclave backend `process` (simulated), "
        "`--epc-mib 0`. Tail forward alone in this process: "
        f"{r['tail_compute_ms']:.1f} ms. Run: `flock /tmp/privpart-cpu.lock .venv/bin/python "
        "bench/runtime_verify_tail.py`.",
        "",
        "| mode | --verify-tail | mean ms | mean / plain | median ms | paired ratio (median) "
        "| 95% interval |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in r["median_ms"]:
        mode, _, rate = name.partition(" ")
        ci = r["paired_ratio_ci95"][name]
        lines.append(
            f"| {mode} | {rate or '-'} | {r['mean_ms'][name]:.1f} | **{r['mean_ratio'][name]:.3f}**"
            f" | {r['median_ms'][name]:.1f} | {r['paired_ratio'][name]:.3f} | "
            f"{ci[0]:.3f}-{ci[1]:.3f} |"
        )
    lines += [
        "",
        "Overhead of verification within each mode (mean at RATE / mean at 0):",
        "",
        "| --verify-tail | enclave | device |",
        "|---:|---:|---:|",
    ]
    for rate in r["rates"][1:]:
        cells = [
            f"{r['mean_ms'][f'{mode} {rate:g}'] / r['mean_ms'][f'{mode} 0']:.3f}"
            for mode in ("enclave", "device")
        ]
        lines.append(f"| {rate:g} | {cells[0]} | {cells[1]} |")
    lines += [
        "",
        f"Device-mode requests actually recomputed (CSPRNG draws): {r['device_checks']}.",
        "Expected cost per request: RATE x tail compute on the trusted side's CPU; at rate 0.1 "
        "the median shows unchecked requests and the mean carries the checks.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--cut", default="layer2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("runs/bench-runtime"))
    args = ap.parse_args()
    rerun_with_quiet_openmp()
    args.work.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(measure(args, args.work))
    write("runtime_verify_tail", result, markdown(result))


if __name__ == "__main__":
    main()
