"""Ray, optional: one place that imports it, resolves `--ray [ADDRESS]` and asks for resources.

Both scale-out paths (the audit's `ray` executor and the Ray Serve tail) go through here, so a
missing extra, a mistyped address or an unreachable cluster fail the same way, with a hint, before
any work. Nothing in this module imports Ray at import time: a local run never loads it.

Addresses (`--ray ADDRESS`):
- `local` (what a bare `--ray` means): start a private Ray instance on this machine, stopped again
  when the command ends;
- `auto`: join the cluster that `ray start --head` started on this machine;
- `ray://HOST:10001`: a remote cluster through Ray Client;
- `HOST:6379`: the GCS address of a cluster this machine is a node of.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from privpart.errors import PrivpartError

LOCAL = "local"
INSTALL_HINT = "pip install 'privpart[ray]'  (or scripts/setup.sh --test, which adds it)"
CLUSTER_HINT = (
    "start a cluster with `ray start --head` and pass --ray auto (on a node) or "
    "--ray ray://HEAD:10001 (Ray Client); a bare --ray starts a private local one"
)


def import_ray() -> ModuleType:
    """`ray`, or a PrivpartError saying how to install it. Usage statistics stay off unless the
    user opted in: a privacy tool should not phone home by default."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise PrivpartError("--ray needs Ray, which is not installed", INSTALL_HINT) from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def check_address(address: str | None) -> str:
    """The normalised address, or an error naming what a valid one looks like.

    Click lets `--ray` take an optional value, so `privpart audit --ray tinycnn` would read the
    model name as an address: reject anything that is not an address, with that hint.
    """
    address = (address or LOCAL).strip()
    if address in (LOCAL, "auto") or _host_port(address) is not None:
        return address
    raise PrivpartError(
        f"--ray got {address!r}, which is not a Ray address",
        "use --ray (private local cluster), --ray auto, --ray ray://HOST:10001 or "
        "--ray HOST:6379; put positional arguments before --ray, or write --ray=ADDRESS",
    )


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds on a closed port: Ray itself retries for a minute before giving up."""
    target = _host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout):
            pass
    except OSError as exc:
        raise PrivpartError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}", CLUSTER_HINT
        ) from None


@contextlib.contextmanager
def ray_session(address: str | None, **init_kwargs: Any) -> Iterator[ModuleType]:
    """Ray, connected to `address` for the duration of the block.

    A session already open in this process (a test's `ray.init`, a notebook) is reused and left
    open; one opened here is shut down on exit, which also stops a private local instance.
    """
    address = check_address(address)
    _probe(address)
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"logging_level": "warning", **init_kwargs}
    if address == LOCAL:
        kwargs.setdefault("include_dashboard", False)
    else:
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PrivpartError(f"cannot connect to Ray at {address}: {first}", CLUSTER_HINT) from None
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class Resources:
    """What one Ray task or replica asks the scheduler for (`--ray-resources cpus=1,gpus=0.5`).

    Ray places work only where these are free, so they are the knob for parallelism (fewer CPUs
    per job: more jobs at once) and for GPU placement. `threads` is what the job then gives
    torch, so a job never runs more threads than the CPUs it was granted.
    """

    cpus: float = 1.0
    gpus: float = 0.0

    @classmethod
    def parse(cls, spec: str | None, **defaults: float) -> Resources:
        values: dict[str, float] = {**{"cpus": cls.cpus, "gpus": cls.gpus}, **defaults}
        for part in filter(None, (p.strip() for p in (spec or "").split(","))):
            key, sep, raw = part.partition("=")
            key = key.strip().lower()
            try:
                value = float(raw) if sep and key in values else -1.0
            except ValueError:
                value = -1.0
            if value < 0 or (key == "cpus" and value == 0):
                raise PrivpartError(
                    f"bad resource request {part!r}",
                    "write cpus=N,gpus=M (cpus > 0; fractions allowed), e.g. cpus=1,gpus=0.5",
                )
            values[key] = value
        return cls(**values)

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus))

    def ray_options(self) -> dict[str, float]:
        return {"num_cpus": self.cpus, "num_gpus": self.gpus}

    def to_dict(self) -> dict[str, float]:
        return {"cpus": self.cpus, "gpus": self.gpus}
