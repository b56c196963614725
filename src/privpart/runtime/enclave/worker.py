"""The enclave worker: holds the head and every session key; the host only relays its bytes.

Started by the supervisor as `python -m privpart.runtime.enclave.worker --sealed FILE
--expect-measurement HEX ...` (or by `gramine-sgx`, whose manifest fixes these arguments, so the
expected measurement is part of MRENCLAVE). Start-up, in this order:

1. forbid unpickling; import the runtime; start torch's threads and the tail threads;
2. cap the address space at the enclave budget (`budget.py`): from here on, every byte the head
   needs is charged;
3. read the sealed head; refuse one sealed for another measurement than the expected one, or
   whose architecture is a user's Python file (unless `--trust-code`); derive the sealing key
   for the expected measurement itself (EGETKEY's role, from the platform folder);
4. decrypt, rebuild the head from its spec (no pickle), re-measure it and refuse to serve if the
   measurement differs; with `--verify-tail RATE`, rebuild the tail from `--tail-weights` the
   same way and refuse to serve unless it measures `--expect-tail-measurement` (both arguments,
   like the head's, are fixed in the Gramine manifest); set up its quote source (`quoting.py`:
   simulated keys generated here, Gramine's /dev/attestation, or configfs-tsm); run one full
   batch to prove the head (and the tail it verifies with) fits the budget; report `ready`.

Then it answers messages (see `OPS`): `attest` (handshake; the quote is made here and the host
only relays it), `infer` (decrypt, head; a tail thread posts the features to the tail server,
checks the answer against the request, seals the logits and answers), `close`, `stats`. The main
thread keeps running heads while tail round trips are in flight; for a request picked for a
spot check (`integrity.TailCheck`, drawn from the OS CSPRNG) it also recomputes the tail while
the tail server works, and the tail thread withholds an answer that differs
(`tail_forgery_detected`). A failed request closes its
session and never stops the worker.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from privpart.errors import PrivpartError
from privpart.hardware import SGX1_EPC_BYTES
from privpart.runtime import frames
from privpart.runtime.channel.envelope import QuoteEnvelope, report_data
from privpart.runtime.channel.handshake import accept_hello
from privpart.runtime.channel.session import Session
from privpart.runtime.enclave import budget, ipc
from privpart.runtime.enclave.platform import PlatformKeys
from privpart.runtime.enclave.quoting import (
    GRAMINE_DIR,
    QUOTE_SOURCES,
    TSM_DIR,
    QuoteContext,
    QuoteSource,
)
from privpart.runtime.enclave.sealed import read_header, unseal_bytes
from privpart.runtime.enclave.sessions import SessionLimits, SessionTable
from privpart.runtime.enclave.tail_link import TailLink, TailPool
from privpart.runtime.errors import EnclaveError, RuntimeFailure
from privpart.runtime.head import HeadInfo, check_inert, measure_head, rebuild_head, rebuild_tail
from privpart.runtime.integrity import TailCheck
from privpart.runtime.nopickle import forbid_unpickling
from privpart.runtime.version import RUNTIME_VERSION

Reply = tuple[dict[str, Any], bytes]
OPS: dict[str, Callable[[Worker, dict[str, Any], memoryview], Reply | None]] = {}


def op(name: str) -> Callable:
    def register(fn: Callable) -> Callable:
        OPS[name] = fn
        return fn

    return register


class Worker:
    """The loaded head, its input and output contracts, its quote source and live sessions."""

    def __init__(
        self,
        head: torch.nn.Module,
        info: HeadInfo,
        args: argparse.Namespace,
        out: BinaryIO,
        pool: TailPool,
        quotes: QuoteSource,
        check: TailCheck | None = None,
    ) -> None:
        self.head = head
        self.check = check or TailCheck(None, 0.0)
        self.info = info
        self.backend = args.backend
        self.quotes = quotes
        self.input_spec = frames.FrameSpec.for_samples(info.input_shape, args.max_batch)
        # what the tail must answer: [batch, classes] float32 logits
        self.output_spec = frames.FrameSpec.for_samples(
            (info.spec.num_classes,), args.max_batch, "float32"
        )
        self.sessions = SessionTable(
            SessionLimits(
                args.max_sessions,
                args.max_sessions_per_client,
                args.session_ttl,
                # a Namespace built by hand (tests, embedding) may predate this limit
                getattr(args, "session_unused_ttl", SessionLimits.unused_ttl_s),
            )
        )
        self.busy: set[str] = set()
        self.lock = threading.Lock()  # sessions: no two threads seal (nonce reuse) or mutate
        self.out = out
        self.write_lock = threading.Lock()
        self.pool = pool
        self.link = TailLink(args.tail_timeout, bytes.fromhex(args.tail_pin or ""))

    def reply(self, header: dict[str, Any], body: bytes | memoryview = b"") -> None:
        with self.write_lock:
            ipc.write_sync(self.out, header, body)

    def session(self, header: dict[str, Any]) -> Session:
        with self.lock:
            session = self.sessions.get(header.get("session"))
        if session is None:
            raise EnclaveError(
                "unknown_session",
                "unknown session (expired, closed, or the enclave restarted)",
                "attest again to open a new session",
            )
        return session

    def drop(self, header: dict[str, Any]) -> None:
        with self.lock:
            self.sessions.drop(header.get("session"))


def failure_reply(exc: RuntimeFailure, msg_id: object) -> dict[str, Any]:
    """A pipe reply carrying the protocol's error object and its status."""
    return {**exc.to_json(), "status": exc.status, "id": msg_id}


def internal_failure(exc: BaseException) -> RuntimeFailure:
    return RuntimeFailure(
        "enclave_internal",
        f"enclave failed on this request: {type(exc).__name__}: {exc}",
        "report this with the request that caused it",
    )


@op("attest")
def _attest(w: Worker, header: dict[str, Any], _: bytes) -> Reply:
    session, enclave_pub, transcript = accept_hello(w.info.measurement, header.get("hello"))
    with w.lock:
        w.sessions.add(session, str(header.get("client", "")))
    evidence = w.quotes.quote(report_data(transcript))
    envelope = QuoteEnvelope(
        backend=w.backend,
        evidence_type=w.quotes.evidence_type,
        evidence=evidence,
        measurement=w.info.measurement,
        runtime_version=RUNTIME_VERSION,
    )
    return {
        "session": session.session_id,
        "enclave_pub": enclave_pub.hex(),
        "quote": envelope.to_json(),
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
                ) from None
            raise
        t3 = time.perf_counter()
        out = frames.encode_parts(features)  # sent without joining over the stream
        t4 = time.perf_counter()
    except RuntimeFailure:
        w.drop(header)
        raise
    ms = {"decrypt": t1 - t0, "decode": t2 - t1, "head": t3 - t2, "encode": t4 - t3}
    w.busy.add(session.session_id)
    job = TailJob(
        w,
        header.get("id"),
        session,
        str(header.get("tail", "")),
        header.get("tail_token") or None,
        out,
        int(x.shape[0]),
        {k: v * 1e3 for k, v in ms.items()},
        Future() if w.check.pick() else None,  # drawn now: the tail cannot know
    )
    w.pool.submit(job)
    if job.expected is not None:  # recompute here (one OpenMP team) while the tail works
        t5 = time.perf_counter()
        try:
            job.expected.set_result((w.check.recompute(features), time.perf_counter() - t5))
        except Exception as exc:  # reported by the tail thread, with the request
            job.expected.set_exception(exc)
    return None


@dataclass
class TailJob:
    """The second half of a request, on a tail thread: features to the tail, logits sealed."""

    worker: Worker
    msg_id: object
    session: Session
    tail: str
    tail_token: str | None
    features: tuple[bytes, memoryview]
    batch: int
    timing: dict[str, float]
    expected: Future | None = None  # (trusted logits, seconds) when this request is checked

    def run(self) -> None:
        w, sid = self.worker, self.session.session_id
        try:
            reply: tuple = self._finish()
        except RuntimeFailure as exc:
            w.drop({"session": sid})
            reply = (failure_reply(exc, self.msg_id),)
        except Exception as exc:  # a request must never take the enclave down
            w.drop({"session": sid})
            reply = (failure_reply(internal_failure(exc), self.msg_id),)
        # Free the session before answering: a client may send its next request the moment
        # the answer arrives, and must not find its own finished request still "in flight".
        w.busy.discard(sid)
        w.reply(*reply)

    def _finish(self) -> tuple[dict[str, Any], bytes]:
        w = self.worker
        t0 = time.perf_counter()
        logits, tail_timing = w.link.post(self.tail, self.features, self.tail_token)
        t1 = time.perf_counter()
        check_logits(logits, w.output_spec, self.batch)
        verify: dict[str, float] = {}
        if self.expected is not None:
            want, seconds = self.expected.result()
            w.check.verify(frames.decode(logits, w.output_spec), want)
            verify["verify_tail"] = seconds * 1e3
        with w.lock:
            record = self.session.seal(logits)
        t2 = time.perf_counter()
        timing = {
            **self.timing,
            **verify,
            "encrypt": (t2 - t1) * 1e3,
            "tail_roundtrip": (t1 - t0) * 1e3,
            **{f"tail_{k}": v for k, v in tail_timing.items()},
        }
        return {"id": self.msg_id, "timing": timing}, record


def check_logits(logits: bytes, spec: frames.FrameSpec, batch: int) -> None:
    """The tail's answer must be float32 logits `[batch, classes]` for this request's batch.

    This keeps malformed answers from reaching the client sealed by the enclave; it cannot tell
    right logits from wrong ones of the right shape: that takes recomputing them
    (`--verify-tail`, `integrity.TailCheck`)."""
    try:
        y = frames.decode(logits, spec)
        if y.shape[0] != batch:
            raise RuntimeFailure(
                "wrong_shape", f"{y.shape[0]} rows of logits for a batch of {batch}"
            )
    except RuntimeFailure as exc:
        classes = spec.sample_shape[0] if spec.sample_shape else "?"
        raise RuntimeFailure(
            "bad_tail_answer",
            f"tail server answered a bad logits frame ({exc.message}; expected [{batch}, "
            f"{classes}] float32): not passed on",
            "check the tail server: it must serve the same checkpoint and cut",
        ) from None


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


def _load(args: argparse.Namespace, out: BinaryIO, pool: TailPool) -> tuple[Worker, dict]:
    blob = Path(args.sealed).read_bytes()
    claimed, _, _ = read_header(blob)
    if claimed.measurement != args.expect_measurement:
        raise PrivpartError(
            f"the sealed head is for measurement {claimed.measurement[:16]}..., this enclave "
            f"serves {args.expect_measurement[:16]}...: key withheld",
            "seal the head you mean to serve (privpart enclave --checkpoint ... --cut ...)",
        )
    check_inert(claimed.spec, args.trust_code)
    platform = PlatformKeys(Path(args.platform_dir))
    info, state = unseal_bytes(blob, platform.sealing_key(args.expect_measurement))
    del blob
    head = rebuild_head(info, state)
    del state
    measured = measure_head(head, info.input_shape)
    if measured != info.measurement:
        raise PrivpartError(
            f"decrypted head measures {measured[:16]}..., its seal says {info.measurement[:16]}...",
            "the sealed file or the runtime differs from the one sealed: re-seal the head",
        )
    ctx = QuoteContext(
        platform, measured, Path(args.attestation_dir), Path(args.tsm_dir), args.tsm_entry
    )
    quotes = QUOTE_SOURCES.get(args.quote_source).start(ctx)
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
    check = _load_tail_check(args, info)
    peak = max(budget.peak_resident() - rss0, 0)
    params = sum(t.numel() * t.element_size() for t in head.state_dict().values())
    worker = Worker(head, info, args, out, pool, quotes, check)
    return worker, {
        "measurement": measured,
        "verify_tail": check.rate,
        "tail_measurement": args.expect_tail_measurement if check.rate > 0 else None,
        "head_param_bytes": params,
        "head_peak_bytes": peak,
        "budget_bytes": args.epc_bytes,
    }


def _load_tail_check(args: argparse.Namespace, info: HeadInfo) -> TailCheck:
    """The trusted tail for spot checks, inside the budget, or none at rate 0. It must measure
    what the (measured) arguments name: the host can no more swap it than the head."""
    if args.verify_tail <= 0:
        return TailCheck(None, 0.0)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tail = rebuild_tail(info, load_file(args.tail_weights))
    except (OSError, SafetensorError) as exc:
        raise PrivpartError(
            f"cannot read the tail weights {args.tail_weights}: {exc}",
            "start the enclave again: it writes them next to the sealed head",
        ) from None
    measured = measure_head(tail, info.cut.shape)
    if measured != args.expect_tail_measurement:
        raise PrivpartError(
            f"the tail weights measure {measured}, this enclave verifies against "
            f"{args.expect_tail_measurement}: refused",
            "the tail file was altered or belongs to another checkpoint: start the enclave again",
        )
    try:
        with torch.inference_mode():
            tail(torch.zeros(args.max_batch, *info.cut.shape))
    except (RuntimeError, MemoryError) as exc:
        why = "out of memory" if budget.is_out_of_memory(exc) else str(exc).splitlines()[0]
        raise PrivpartError(
            f"the tail (for --verify-tail) failed a batch of {args.max_batch} within the enclave "
            f"budget of {args.epc_bytes >> 20} MiB ({why})",
            "raise --epc-mib, lower --max-batch, or verify without it (--verify-tail 0)",
        ) from None
    return TailCheck(tail, args.verify_tail, where="tail server", confidential=True)


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
        msg_id = header.get("id")
        try:
            if handler is None:
                raise RuntimeFailure("bad_op", f"unknown worker operation {header.get('op')!r}")
            answer = handler(worker, header, payload)
            if answer is None:
                continue
            reply, body = answer
            reply["id"] = msg_id
        except RuntimeFailure as exc:
            reply = failure_reply(exc, msg_id)
        except PrivpartError as exc:
            reply = failure_reply(RuntimeFailure("enclave_error", exc.message, exc.hint), msg_id)
        except Exception as exc:  # a request must never take the enclave down
            reply = failure_reply(internal_failure(exc), msg_id)
        worker.reply(reply, body)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="privpart enclave worker (started by privpart)")
    parser.add_argument("--sealed", required=True)
    parser.add_argument("--expect-measurement", required=True)
    parser.add_argument("--platform-dir", required=True)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--quote-source", choices=QUOTE_SOURCES.names(), required=True)
    parser.add_argument("--attestation-dir", default=str(GRAMINE_DIR))
    parser.add_argument("--tsm-dir", default=str(TSM_DIR))
    parser.add_argument("--tsm-entry", default=None, help="report entry (default privpart-PID)")
    parser.add_argument("--epc-bytes", type=int, default=SGX1_EPC_BYTES)
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--max-sessions", type=int, default=1024)
    parser.add_argument("--max-sessions-per-client", type=int, default=16)
    parser.add_argument("--session-ttl", type=float, default=600.0)
    parser.add_argument("--session-unused-ttl", type=float, default=30.0)
    parser.add_argument("--tail-threads", type=int, default=4)
    parser.add_argument("--tail-timeout", type=float, default=60.0)
    parser.add_argument("--tail-pin", default="", help="SHA-256 of the tail's TLS certificate")
    parser.add_argument("--trust-code", action="store_true")
    parser.add_argument("--verify-tail", type=float, default=0.0)
    parser.add_argument("--expect-tail-measurement", default="")
    parser.add_argument("--tail-weights", default="")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
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
        worker, ready = _load(args, out, pool)
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
