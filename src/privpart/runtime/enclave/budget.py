"""The enclave memory budget of a worker process, enforced by the kernel (RLIMIT_AS).

An SGX enclave has a fixed size and the EPC (about 93 MiB usable on SGX1) beyond which paging
makes it crawl. A torch process maps about 3 GiB of address space for its own libraries before
any model exists, so a bare limit of 93 MiB could not even import torch. What is enforced is
therefore: once the runtime is imported and torch's thread pool started, the address-space
limit is set to (current size + budget). Everything the head needs from then on - the sealed
blob, the decrypted weights, the parameters, activations and I/O buffers - must fit in the
budget, or the allocation fails with a clear error and the worker keeps serving.
"""

from __future__ import annotations

import os
import resource
import sys

import torch

from privpart.runtime.malloc import MMAP_THRESHOLD_MAX

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MIB = 1 << 20


def address_space() -> int:
    """Current virtual size of this process in bytes."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * PAGE


def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def resident() -> int:
    return _status("VmRSS")


def reset_peak_resident() -> None:
    """Restart VmHWM (peak resident set) from now, so a later peak is the head's own."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def peak_resident() -> int:
    return _status("VmHWM")




def malloc_env(budget_bytes: int) -> dict[str, str]:
    """glibc malloc settings for the worker: one arena, and freed activations kept for reuse.

    One arena: per-thread arenas reserve 64 MiB of address space each, charged to the budget
    without ever being used. Keeping freed memory: by default glibc serves the head's
    activations (0.8-3.2 MiB each for ResNet-50 at 224) from fresh mmaps or trims them off the
    heap when freed, so the next request touches new pages. Two enclave hosts side by side (30
    paired requests, ResNet-50 head to `layer2`): 3,579 page faults per request and the head at
    1.20x its in-process time by default; 25 faults and 1.10x with mmap only above 32 MiB and no
    trimming below the budget (`bench/results/runtime_overhead.md` now shows the worker's head at
    0.99x). Kept memory cannot outgrow the budget: the address-space cap still applies, and the
    peak was proven at start-up.
    """
    env = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD_MAX)}
    env["MALLOC_TRIM_THRESHOLD_"] = str(max(budget_bytes, MMAP_THRESHOLD_MAX))
    return env


def warm_runtime(threads: int) -> None:
    """Start torch's intra-op threads now, so their stacks are not charged to the budget."""
    torch.set_num_threads(max(1, threads))
    a = torch.ones(256, 256)
    (a @ a).sum()
    torch.nn.functional.conv2d(torch.ones(1, 4, 16, 16), torch.ones(4, 4, 3, 3)).sum()


def apply_budget(budget_bytes: int) -> int:
    """Cap the address space at current size + budget; returns the cap (0 if not capped)."""
    if budget_bytes <= 0 or not sys.platform.startswith("linux"):
        return 0
    limit = address_space() + budget_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return limit


OOM_SIGNS = ("can't allocate memory", "Cannot allocate", "could not create a primitive")


def is_out_of_memory(exc: BaseException) -> bool:
    """An allocation refused under the cap (torch's allocator and oneDNN word it differently)."""
    return isinstance(exc, MemoryError) or any(sign in str(exc) for sign in OOM_SIGNS)
