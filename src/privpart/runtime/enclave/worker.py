"""The enclave worker: holds the head and every session key; the host only relays its bytes.

Started by the supervisor as `python -m privpart.runtime.enclave.worker --sealed FILE ...`
(or by `gramine-sgx`). Start-up, in this order:

1. forbid unpickling; import the runtime; start torch's threads and the tail threads;
2. cap the address space at the enclave budget (`budget.py`): from here on, every byte the head
   needs is charged;
3. read the sealed head, send its claimed measurement to the supervisor (`hello`), and receive
   the sealing key only if that is the expected measurement (`key`);
4. decrypt, rebuild the head from its spec (no pickle), re-measure it and refuse to serve if the
   measurement differs; run one full batch to prove the head fits the budget; report `ready`.

Then it answers messages (see `OPS`): `attest` (handshake), `infer` (decrypt, head; a tail
thread posts the features to the tail server, seals the logits and answers), `close`, `stats`.
The main thread keeps running heads while tail round trips are in flight. A failed request
closes its session and never stops the worker.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from privpart.errors import PrivpartError
from privpart.hardware import SGX1_EPC_BYTES
from privpart.runtime import frames
from privpart.runtime.channel.handshake import accept_hello
from privpart.runtime.channel.session import Session
from privpart.runtime.enclave import budget, ipc
from privpart.runtime.enclave.sealed import read_header, unseal_bytes
from privpart.runtime.enclave.tail_link import TailLink, TailPool
from privpart.runtime.errors import EnclaveError, RuntimeFailure
from privpart.runtime.head import HeadInfo, measure_head, rebuild_head
from privpart.runtime.nopickle import forbid_unpickling

Reply = tuple[dict[str, Any], bytes]
OPS: dict[str, Callable[[Worker, dict[str, Any], memoryview], Reply | None]] = {}


def op(name: str) -> Callable:
    def register(fn: Callable) -> Callable:
        OPS[name] = fn
        return fn

    return register


class Worker:
    """The loaded head, its input contract, and the live sessions (oldest dropped first)."""

    def __init__(
        self,
        head: torch.nn.Module,
        info: HeadInfo,
        args: argparse.Namespace,
        out: BinaryIO,
        pool: TailPool,
    ) -> None:
        self.head = head
        self.info = info
        self.max_sessions = args.max_sessions
        self.quote_source = args.quote_source
        self.input_spec = frames.FrameSpec.for_samples(info.input_shape, args.max_batch)
        self.output_spec = frames.FrameSpec(max_batch=args.max_batch, max_bytes=64 << 20)
        self.sessions: OrderedDict[str, Session] = OrderedDict()
        self.busy: set[str] = set()
        self.lock = threading.Lock()  # sessions: no two threads seal (nonce reuse) or mutate
        self.out = out
        self.write_lock = threading.Lock()
        self.pool = pool
        self.link = TailLink(args.tail_timeout)

    def reply(self, header: dict[str, Any], body: bytes | memoryview = b"") -> None:
        with self.write_lock:
            ipc.write_sync(self.out, header, body)

    def session(self, header: dict[str, Any]) -> Session:
        sid = header.get("session")
        session = self.sessions.get(sid) if isinstance(sid, str) else None
        if session is None:
            raise EnclaveError(
                "unknown_session",
                "unknown session (expired, closed, or the enclave restarted)",
                "attest again to open a new session",
                status=410,
            )
        return session

    def drop(self, header: dict[str, Any]) -> None:
        with self.lock:
            self.sessions.pop(header.get("session"), None)  # type: ignore[arg-type]


def _gramine_quote(report_data: bytes) -> str:
    """A DCAP quote from Gramine's attestation pseudo-files (only inside an SGX enclave)."""
    Path("/dev/attestation/user_report_data").write_bytes(report_data.ljust(64, b"\0"))
    return base64.b64encode(Path("/dev/attestation/quote").read_bytes()).decode()


@op("attest")
def _attest(w: Worker, header: dict[str, Any], _: bytes) -> Reply:
    session, enclave_pub, report_data = accept_hello(w.info.measurement, header.get("hello"))
    with w.lock:
        w.sessions[session.session_id] = session
        while len(w.sessions) > w.max_sessions:
            w.sessions.popitem(last=False)
    evidence = {"sgx_quote": _gramine_quote(report_data)} if w.quote_source == "gramine" else {}
    return {
        "session": session.session_id,
        "enclave_pub": enclave_pub.hex(),
        "report_data": report_data.hex(),
        "evidence": evidence,
    }, b""


@op("infer")
def _infer(w: Worker, header: dict[str, Any], record: memoryview) -> Reply | None:
    """Decrypt a client request and run the head; a tail thread finishes it (see `TailJob`)."""
    session = w.session(header)
    t0 = time.perf_counter()
    try:
        if session.session_id in w.busy:
            raise RuntimeFailure(
                "session_busy",
                "this session already has a request in flight",
                "send one request at a time per session",
                status=409,
            )
        with w.lock:
            plain = session.open(record)
        t1 = time.perf_counter()
        x = frames.decode(plain, w.input_spec)
        t2 = time.perf_counter()
        try:
            with torch.inference_mode():
                features = w.head(x)
        except (RuntimeError, MemoryError) as exc:
            if budget.is_out_of_memory(exc):
                raise EnclaveError(
                    "over_budget",
                    f"a batch of {x.shape[0]} does not fit the enclave budget",
                    "send smaller batches",
                    status=507,
                ) from None
            raise
        t3 = time.perf_counter()
        out = frames.encode(features)
        t4 = time.perf_counter()
    except RuntimeFailure:
        w.drop(header)
        raise
    ms = {"decrypt": t1 - t0, "decode": t2 - t1, "head": t3 - t2, "encode": t4 - t3}
    w.busy.add(session.session_id)
    w.pool.submit(
        TailJob(
            w,
            header.get("id"),
            session,
            str(header.get("tail", "")),
            out,
            {k: v * 1e3 for k, v in ms.items()},
        )
    )
    return None


@dataclass
class TailJob:
    """The second half of a request, on a tail thread: features to the tail, logits sealed."""

    worker: Worker
    msg_id: object
    session: Session
    tail: str
    features: bytes
    timing: dict[str, float]

    def run(self) -> None:
        w, sid = self.worker, self.session.session_id
        try:
            reply = self._finish()
        except RuntimeFailure as exc:
            w.drop({"session": sid})
            reply = ({**exc.to_json(), "status": exc.status, "id": self.msg_id},)
        except Exception as exc:  # a request must never take the enclave down
            w.drop({"session": sid})
            reply = (
                {
                    "error": "enclave_internal",
                    "status": 500,
                    "id": self.msg_id,
                    "message": f"enclave failed on this request: {type(exc).__name__}: {exc}",
                    "hint": "report this with the request that caused it",
                },
            )
        # Free the session before answering: a client may send its next request the moment
        # the answer arrives, and must not find its own finished request still "in flight".
        w.busy.discard(sid)
        w.reply(*reply)

    def _finish(self) -> tuple[dict[str, Any], bytes]:
        w = self.worker
        t0 = time.perf_counter()
        logits, tail_timing = w.link.post(self.tail, self.features)
        t1 = time.perf_counter()
        try:
            frames.decode(logits, w.output_spec)
        except RuntimeFailure as exc:
            raise RuntimeFailure(
                "bad_tail_answer",
                f"tail server answered a bad frame: {exc.message}",
                "check the tail server",
                status=502,
            ) from None
        with w.lock:
            record = self.session.seal(logits)
        t2 = time.perf_counter()
        timing = {
            **self.timing,
            "encrypt": (t2 - t1) * 1e3,
            "tail_roundtrip": (t1 - t0) * 1e3,
            **{f"tail_{k}": v for k, v in tail_timing.items()},
        }
        return {"id": self.msg_id, "timing": timing}, record


@op("close")
def _close(w: Worker, header: dict[str, Any], _: bytes) -> Reply:
    w.drop(header)
    return {}, b""


@op("stats")
def _stats(w: Worker, header: dict[str, Any], _: bytes) -> Reply:
    return {
        "sessions": len(w.sessions),
        "address_space": budget.address_space(),
        "resident": budget.resident(),
    }, b""


def _load(
    args: argparse.Namespace, inp: BinaryIO, out: BinaryIO, pool: TailPool
) -> tuple[Worker, dict]:
    blob = Path(args.sealed).read_bytes()
    claimed, _, _ = read_header(blob)
    ipc.write_sync(out, {"op": "hello", "measurement": claimed.measurement, "pid": os.getpid()})
    msg, key = ipc.read_sync(inp)
    if msg.get("op") != "key":
        raise PrivpartError(f"supervisor refused the key: {msg.get('message', msg)}")
    info, state = unseal_bytes(blob, key)
    del blob, key
    head = rebuild_head(info, state)
    del state
    measured = measure_head(head, info.input_shape)
    if measured != info.measurement:
        raise PrivpartError(
            f"decrypted head measures {measured[:16]}..., its seal says {info.measurement[:16]}...",
            "the sealed file or the runtime differs from the one sealed: re-seal the head",
        )
    budget.reset_peak_resident()
    rss0 = budget.resident()
    try:
        with torch.inference_mode():
            head(torch.zeros(args.max_batch, *info.input_shape))
    except (RuntimeError, MemoryError) as exc:
        why = "out of memory" if budget.is_out_of_memory(exc) else str(exc).splitlines()[0]
        raise PrivpartError(
            f"the head failed a batch of {args.max_batch} within the enclave budget of "
            f"{args.epc_bytes >> 20} MiB ({why})",
            "raise --epc-mib, lower --max-batch, or choose an earlier cut",
        ) from None
    peak = max(budget.peak_resident() - rss0, 0)
    params = sum(t.numel() * t.element_size() for t in head.state_dict().values())
    worker = Worker(head, info, args, out, pool)
    return worker, {
        "measurement": measured,
        "head_param_bytes": params,
        "head_peak_bytes": peak,
        "budget_bytes": args.epc_bytes,
    }


def serve(worker: Worker, inp: BinaryIO) -> None:
    """Answer messages until the supervisor closes the pipe; `infer` answers from a tail thread."""
    while True:
        try:
            header, payload = ipc.read_sync(inp)
        except ipc.PipeClosed:
            return
        handler = OPS.get(header.get("op", ""))
        reply: dict[str, Any]
        body: bytes | memoryview = b""
        try:
            if handler is None:
                raise RuntimeFailure("bad_op", f"unknown worker operation {header.get('op')!r}")
            answer = handler(worker, header, payload)
            if answer is None:
                continue
            reply, body = answer
        except RuntimeFailure as exc:
            reply = {**exc.to_json(), "status": exc.status}
        except PrivpartError as exc:
            reply = {
                "error": "enclave_error",
                "message": exc.message,
                "hint": exc.hint,
                "status": 500,
            }
        except Exception as exc:  # a request must never take the enclave down
            reply = {
                "error": "enclave_internal",
                "status": 500,
                "message": f"enclave failed on this request: {type(exc).__name__}: {exc}",
                "hint": "report this with the request that caused it",
            }
        reply["id"] = header.get("id")
        worker.reply(reply, body)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="privpart enclave worker (started by privpart)")
    parser.add_argument("--sealed", required=True)
    parser.add_argument("--epc-bytes", type=int, default=SGX1_EPC_BYTES)
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--max-sessions", type=int, default=1024)
    parser.add_argument("--quote-source", choices=("platform", "gramine"), default="platform")
    parser.add_argument("--tail-threads", type=int, default=4)
    parser.add_argument("--tail-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    forbid_unpickling()
    # the protocol owns the original stdout; stray prints go to stderr
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    inp = os.fdopen(os.dup(0), "rb")
    for stream in (inp, out):  # 1 MiB pipes: fewer context switches for feature-sized messages
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
    budget.warm_runtime(args.threads)
    pool = TailPool(args.tail_threads, lambda job: job.run())  # threads before the budget
    budget.apply_budget(args.epc_bytes)
    try:
        worker, ready = _load(args, inp, out, pool)
    except PrivpartError as exc:
        ipc.write_sync(out, {"op": "fatal", "message": exc.message, "hint": exc.hint})
        sys.exit(3)
    except MemoryError:
        ipc.write_sync(
            out,
            {
                "op": "fatal",
                "hint": "raise --epc-mib or choose an earlier cut",
                "message": f"the sealed head does not fit the enclave budget of "
                f"{args.epc_bytes >> 20} MiB",
            },
        )
        sys.exit(3)
    worker.reply({"op": "ready", **ready})
    serve(worker, inp)


if __name__ == "__main__":
    main()
