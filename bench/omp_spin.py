"""Why a split forward across two processes is slower than in one, and what GOMP_SPINCOUNT does.

ResNet-50 @224, batch 1, cut at layer2, 2 threads per process. Four worker processes, two per
setting: D1/D2 with the OpenMP defaults (libgomp spins 300,000 times after every parallel
region), S1/S2 with the setting under test. Per round, in rotating order, with 50 ms of quiet
before each:
  plainD / plainS   the whole model in D1 / S1 (one process);
  crossD / crossS   the head in D1 / S1, then at once the tail in D2 / S2 (two processes taking
                    turns, as client and tail server or enclave worker and tail server do).
Times are measured inside the workers (compute only, no transport). The parent only waits on
pipes. Ratios are medians of per-round ratios, so machine drift cancels.

Run: flock /tmp/privpart-cpu.lock .venv/bin/python bench/omp_spin.py [--settings 30000 passive]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

from _common import machine, paired_ratio, write
from privpart.runtime.openmp_spin import USER_KNOBS as KNOBS
from runtime_stack import resnet50_checkpoint

CUT = "layer2"
HEADER = (
    "| setting S | D one process ms | D two processes ms | D penalty | S one process ms | "
    "S two processes ms | S penalty | S/D one process | S two / D one |"
)


def worker(conn, ckpt: str, threads: int) -> None:  # noqa: ANN001
    import torch

    from privpart.runtime.head import split_checkpoint
    from privpart.training import load_checkpoint

    torch.set_num_threads(threads)
    model, _ = load_checkpoint(Path(ckpt))
    split = split_checkpoint(Path(ckpt), CUT)
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    runs = {"full": lambda _: model(x), "head": lambda _: split.head(x), "tail": split.tail}
    with torch.inference_mode():
        for _ in range(3):
            model(x)
            split.tail(split.head(x))
        conn.send("ready")
        while (msg := conn.recv())[0] != "stop":
            cmd, arg = msg
            t = time.perf_counter()
            out = runs[cmd](arg)
            conn.send(((time.perf_counter() - t) * 1e3, out if cmd == "head" else None))


def env_for(setting: str) -> dict[str, str]:
    if setting == "default":
        return {}
    if setting == "passive":
        return {"OMP_WAIT_POLICY": "PASSIVE"}
    return {"GOMP_SPINCOUNT": setting}


@contextlib.contextmanager
def child_environment(env: dict[str, str]) -> Iterator[None]:
    """os.environ with the OpenMP knobs replaced by `env` (restored afterwards)."""
    saved = {k: os.environ.pop(k) for k in KNOBS if k in os.environ}
    os.environ.update(env)
    try:
        yield
    finally:
        for k in KNOBS:
            os.environ.pop(k, None)
        os.environ.update(saved)


def measure(ckpt: Path, setting: str, rounds: int, threads: int) -> dict:
    ctx = mp.get_context("spawn")
    pipes, procs = {}, []
    for name, env in [("D1", {}), ("D2", {}), ("S1", env_for(setting)), ("S2", env_for(setting))]:
        a, b = ctx.Pipe()
        p = ctx.Process(target=worker, args=(b, str(ckpt), threads), daemon=True)
        with child_environment(env):  # a spawned child reads it at exec, before torch loads
            p.start()
        pipes[name], procs = a, [*procs, p]
    for a in pipes.values():
        a.recv()

    def call(w: str, cmd: str, arg: object = None) -> tuple[float, object]:
        pipes[w].send((cmd, arg))
        return pipes[w].recv()

    def cross(p: str) -> float:
        head_ms, f = call(p + "1", "head")
        return head_ms + call(p + "2", "tail", f)[0]

    modes = {"plainD": lambda: call("D1", "full")[0], "plainS": lambda: call("S1", "full")[0],
             "crossD": lambda: cross("D"), "crossS": lambda: cross("S")}  # fmt: skip
    names = list(modes)
    res: dict[str, list[float]] = {m: [] for m in names}
    for r in range(rounds + 3):
        for m in names[r % 4 :] + names[: r % 4]:
            time.sleep(0.05)
            v = modes[m]()
            if r >= 3:
                res[m].append(v)
    for a in pipes.values():
        a.send(("stop", None))
    for p in procs:
        p.join(timeout=30)

    def paired(a: str, b: str) -> float:
        return paired_ratio(res[a], res[b])

    return {
        "setting": setting,
        "median_ms": {m: round(statistics.median(v), 2) for m, v in res.items()},
        "cross_penalty_default": paired("crossD", "plainD"),
        "cross_penalty_setting": paired("crossS", "plainS"),
        "one_process_cost": paired("plainS", "plainD"),
        "setting_cross_vs_default_plain": paired("crossS", "plainD"),
    }


def markdown(r: dict) -> str:
    rows = "\n".join(
        f"| {x['setting']} | {x['median_ms']['plainD']:.1f} | {x['median_ms']['crossD']:.1f} | "
        f"**{x['cross_penalty_default']:.3f}** | {x['median_ms']['plainS']:.1f} | "
        f"{x['median_ms']['crossS']:.1f} | **{x['cross_penalty_setting']:.3f}** | "
        f"{x['one_process_cost']:.3f} | {x['setting_cross_vs_default_plain']:.3f} |"
        for x in r["runs"]
    )
    return f"""# OpenMP idle spinning and split inference across processes

ResNet-50 @224, batch 1, cut `{CUT}`, {r["threads"]} threads per process, {r["rounds"]} paired
rounds per setting; compute only (timed inside the workers), {r["machine"]["cpu"]}, 2 cores.
D = OpenMP defaults (libgomp spins 300,000 times after each parallel region), S = the setting.

{HEADER}
|---|---:|---:|---:|---:|---:|---:|---:|---:|
{rows}

Penalty = two processes taking turns / one process (median of per-round ratios). privpart's
runtime commands and enclave worker use GOMP_SPINCOUNT={r["runtime_default"]}
(`privpart.runtime.openmp_spin`).
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", nargs="*", default=["10000", "30000", "100000", "passive"])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("runs/bench-runtime"))
    args = ap.parse_args()
    from privpart.runtime.openmp_spin import IDLE_SPINS

    ckpt = resnet50_checkpoint(args.work / "resnet50-224")
    runs = []
    for s in args.settings:
        runs.append(measure(ckpt, s, args.rounds, args.threads))
        print(runs[-1], flush=True)
    result = {"machine": machine(), "threads": args.threads, "rounds": args.rounds,
              "runtime_default": IDLE_SPINS, "runs": runs}  # fmt: skip
    write("omp_spin", result, markdown(result))


if __name__ == "__main__":
    main()
