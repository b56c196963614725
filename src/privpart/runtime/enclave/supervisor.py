"""The supervisor: starts the enclave worker, relays calls to it, restarts it.

It holds no key and makes no quote: the worker derives its own sealing key, checks its own
measurement and produces its own evidence; the supervisor only checks, before starting anything,
that the sealed file is for the expected measurement (a clear error early; the worker refuses it
anyway). When a worker dies (crash, kill, out of memory), every call in flight fails with
`worker_restarted`, the supervisor starts a fresh worker (which knows no sessions: clients
attest again), and gives up after `max_restarts` within `restart_window_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from privpart.errors import PrivpartError
from privpart.runtime.enclave import ipc
from privpart.runtime.enclave.base import TEEBackend
from privpart.runtime.enclave.sealed import read_header
from privpart.runtime.errors import EnclaveError, RuntimeFailure
from privpart.runtime.openmp_spin import idle_spin_env

# a large stream limit: feature-sized messages are read without pausing the pipe every 128 KiB
PIPE_BUFFER = 16 << 20


class WorkerSupervisor:
    """Runs one worker at a time for a sealed head; `call` is the only way to reach it."""

    def __init__(self, backend: TEEBackend, sealed: Path, expected_measurement: str) -> None:
        self.backend = backend
        self.sealed = sealed
        self.expected = expected_measurement
        self.config = backend.config
        self.proc: asyncio.subprocess.Process | None = None
        self.state = "stopped"  # starting | ready | restarting | failed | stopped
        self.generation = 0
        self.restarts = 0
        self.last_exit: str = ""
        self.ready_info: dict[str, Any] = {}
        self._ready = asyncio.Event()
        self._pending: dict[int, asyncio.Future] = {}
        self._next_id = 0
        self._restart_times: deque[float] = deque()
        self._stopping = False
        self._tasks: list[asyncio.Task] = []

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def start(self) -> dict[str, Any]:
        """Start the first worker; a worker that cannot load its head fails here, loudly."""
        self.state = "starting"
        await self._spawn()
        self._tasks.append(asyncio.create_task(self._watch()))
        return self.ready_info

    async def _spawn(self) -> None:
        with self.sealed.open("rb") as fh:
            claimed = read_header(fh.read(1 << 17))[0].measurement
        if claimed != self.expected:  # the worker would refuse it: say so before starting
            raise PrivpartError(
                f"{self.sealed.name} is sealed for head {claimed[:16]}..., the enclave is to "
                f"serve {self.expected[:16]}...: key withheld",
                "seal the head you mean to serve (privpart enclave --checkpoint ... --cut ...)",
            )
        argv, env, cwd = self.backend.worker_command(self.sealed, self.expected)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, **idle_spin_env(), **env},  # the worker shares cores
            cwd=cwd,
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            ready, _ = await asyncio.wait_for(
                ipc.read_async(proc.stdout), self.config.ready_timeout_s
            )
        except (ipc.PipeClosed, TimeoutError) as exc:
            await self._reap(proc)
            why = "did not start in time" if isinstance(exc, TimeoutError) else str(exc)
            raise PrivpartError(
                f"enclave worker failed to start: {why}", "see the worker's messages above"
            ) from None
        if ready.get("op") != "ready":
            await self._reap(proc)
            raise PrivpartError(
                f"enclave worker refused to start: {ready.get('message')}",
                str(ready.get("hint", "")),
            )
        self.proc = proc
        self.generation += 1
        self.ready_info = ready
        self.state = "ready"
        self._ready.set()
        self._tasks.append(asyncio.create_task(self._read_loop(proc)))

    async def _reap(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()

    async def _read_loop(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            try:
                header, payload = await ipc.read_async(proc.stdout)
            except ipc.PipeClosed:
                return
            fut = self._pending.pop(header.get("id", -1), None)
            if fut is not None and not fut.done():
                fut.set_result((header, payload))

    def _fail_pending(self, why: str) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(
                    EnclaveError(
                        "worker_restarted",
                        f"the enclave worker stopped ({why}); your session is gone",
                        "attest again (the client library retries once by itself)",
                    )
                )
        self._pending.clear()

    async def _watch(self) -> None:
        """Restart the worker whenever it exits, until stopped or out of restarts."""
        while not self._stopping:
            proc = self.proc
            assert proc is not None
            code = await proc.wait()
            if self._stopping:
                return
            self.last_exit = f"exit code {code}" if code >= 0 else f"killed by signal {-code}"
            self.state = "restarting"
            self._ready.clear()
            self._fail_pending(self.last_exit)
            print(
                f"privpart enclave: worker {proc.pid} stopped ({self.last_exit}); restarting",
                file=sys.stderr,
            )
            while not self._stopping:
                now = time.monotonic()
                self._restart_times.append(now)
                while self._restart_times and now - self._restart_times[0] > (
                    self.config.restart_window_s
                ):
                    self._restart_times.popleft()
                if len(self._restart_times) > self.config.max_restarts:
                    self.state = "failed"
                    print("privpart enclave: too many worker restarts; giving up", file=sys.stderr)
                    return
                try:
                    await self._spawn()
                    self.restarts += 1
                    break
                except PrivpartError as exc:
                    print(f"privpart enclave: restart failed: {exc}", file=sys.stderr)
                    await asyncio.sleep(0.5)

    async def call(
        self,
        op: str,
        header: dict[str, Any] | None = None,
        payload: bytes = b"",
        timeout: float = 60.0,
        wait_ready: float = 0.0,
    ) -> tuple[dict[str, Any], bytes]:
        """Send one operation to the worker and await its answer; errors come back raised."""
        if self.state != "ready" and wait_ready > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), wait_ready)
        proc = self.proc
        if self.state != "ready" or proc is None or proc.stdin is None:
            raise EnclaveError(
                "worker_unavailable", f"the enclave worker is {self.state}", "retry in a moment"
            )
        self._next_id += 1
        msg_id = self._next_id
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        try:
            for part in ipc.pack_parts({**(header or {}), "op": op, "id": msg_id}, payload):
                proc.stdin.write(part)
            await proc.stdin.drain()
            reply, body = await asyncio.wait_for(fut, timeout)
        except (ConnectionError, BrokenPipeError):
            self._pending.pop(msg_id, None)
            raise EnclaveError(
                "worker_restarted", "the enclave worker stopped mid-request", "attest again"
            ) from None
        except TimeoutError:
            self._pending.pop(msg_id, None)
            raise EnclaveError(
                "worker_timeout", f"the enclave worker did not answer in {timeout}s", "retry later"
            ) from None
        if "error" in reply:
            raise RuntimeFailure(
                str(reply["error"]),
                str(reply.get("message", "")),
                str(reply.get("hint", "")),
                int(reply.get("status", 500)),
            )
        return reply, body

    async def stop(self) -> None:
        """Close the worker's stdin (it exits cleanly), kill it if it lingers."""
        self._stopping = True
        self.state = "stopped"
        proc = self.proc
        if proc is not None and proc.returncode is None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                await self._reap(proc)
        self._fail_pending("enclave shutting down")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def launch(backend: TEEBackend, sealed: Path, expected_measurement: str) -> WorkerSupervisor:
    """A supervisor (not yet started) that runs and restarts the worker for `sealed`; fails now
    if this machine cannot run the backend."""
    backend.check_available()
    return WorkerSupervisor(backend, sealed, expected_measurement)
