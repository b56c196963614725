from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from privpart.runtime.compute_thread import ComputeThread

# A fresh process: torch work on the main thread and on a compute thread, then the number of
# OS threads. Each OpenMP team of 3 adds 2 worker threads to the process.
PROBE = """
import json, os, sys, torch
from privpart.runtime.compute_thread import ComputeThread, serving_threads

def work():
    a = torch.rand(512, 512)
    conv = torch.nn.Conv2d(8, 8, 3)
    with torch.inference_mode():
        (a @ a).sum(), conv(torch.rand(1, 8, 64, 64)).sum(), torch.cat([a, a]).sum()

def threads():
    return len(os.listdir("/proc/self/task"))

serving = sys.argv[1] == "serving"
compute = serving_threads(3) if serving else ComputeThread(3)
compute.call(work)
before = threads()
work()                  # main-thread torch work after the compute thread has its team
compute.call(work)
print(json.dumps({"before": before, "after": threads(),
                  "compute": compute.call(torch.get_num_threads),
                  "main": torch.get_num_threads()}))
"""


def probe(mode: str) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_serving_threads_leave_the_process_one_openmp_team() -> None:
    served = probe("serving")
    assert served["compute"] == 3 and served["main"] == 1
    assert served["after"] == served["before"], "main-thread torch work started a second team"
    # the control: without serving_threads the main thread starts its own team of 3
    shared = probe("plain")
    assert shared["after"] == shared["before"] + 2


def test_compute_thread_runs_with_its_own_thread_count_and_leaves_the_callers() -> None:
    mine = torch.get_num_threads()
    compute = ComputeThread(mine + 1)
    try:
        assert compute.call(torch.get_num_threads) == mine + 1
        assert asyncio.run(compute.run(torch.get_num_threads)) == mine + 1
        assert torch.get_num_threads() == mine
        with pytest.raises(ValueError, match="boom"):
            compute.call(lambda: (_ for _ in ()).throw(ValueError("boom")))
    finally:
        compute.close()
