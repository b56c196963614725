"""A small local Ray cluster for the Ray tests: two CPUs, no dashboard, a small object store."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from types import ModuleType

import pytest


@contextlib.contextmanager
def local_ray() -> Iterator[ModuleType]:
    """Ray for one test module, always shut down afterwards (even when a test failed)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (privpart[ray])")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=256 * 2**20,
        logging_level="warning",
    )
    try:
        yield ray
    finally:
        ray.shutdown()
