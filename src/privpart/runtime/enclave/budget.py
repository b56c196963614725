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
