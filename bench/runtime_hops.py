"""One hop, five senders: what the tail server costs beyond its forward pass.

The same features frame goes, round after round, to the same tail (`privpart serve
--stream-port`) over http.client (blocking, as the enclave worker sent it over HTTP), over
aiohttp (as the device client does over HTTP), over the stream transport (blocking, as the
enclave worker sends it to a tcp:// tail; asyncio, as the device client does), and as raw bytes
to the bare-socket tail of `_floor_tail.py`. Overhead = round trip minus the forward pass the
server reports (Server-Timing `compute`, the stream's reply meta, and for the floor the
milliseconds it sends after the logits). The server's own parts (read, decode, dispatch, encode)
are printed too: what is left is framing, loopback copies and wake-ups.

Run: flock /tmp/privpart-cpu.lock .venv/bin/python bench/runtime_hops.py --cut layer2
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

import torch

from privpart.runtime import frames, protocol
from privpart.runtime.client import StreamClient, TailClient
from privpart.runtime.head import split_checkpoint
from privpart.runtime.stream import wire
from privpart.runtime.stream.blocking import BlockingStream
from runtime_stack import Server, free_port, rerun_with_quiet_openmp, resnet50_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cut", default="layer2")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("runs/bench-runtime"))
    args = ap.parse_args()
    rerun_with_quiet_openmp()
    torch.set_num_threads(args.threads)
    ck = resnet50_checkpoint(args.work / "resnet50-224")
    split = split_checkpoint(ck, args.cut)
    port, stream_port = free_port(), free_port()
    serve = ["serve", "--checkpoint", str(ck), "--cut", args.cut, "--port", str(port),
             "--stream-port", str(stream_port)]  # fmt: skip
    server = Server(
        [*serve, "--device", "cpu", "--threads", str(args.threads)],
        port,
        args.work / "hops-tail.log",
    ).start()
    floor = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("_floor_tail.py")), str(ck), args.cut,
         str(args.threads)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    with torch.inference_mode():
        features = split.head(torch.rand(1, 3, 224, 224))
    frame, raw = frames.encode(features), features.numpy().tobytes()
    answer = bytearray(split.info.spec.num_classes * 4 + 8)  # logits + the floor's forward ms
    sock = socket.create_connection(("127.0.0.1", int(floor.stdout.readline())))  # type: ignore[union-attr]
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Content-Type": protocol.FRAME_TYPE}
    stream = BlockingStream("127.0.0.1", stream_port)
    parts = frames.encode_parts(features)

    def streamed() -> tuple[float, dict[str, float]]:
        t = time.perf_counter()
        status, meta, _ = stream.roundtrip(parts)
        assert status == 200, status
        return (time.perf_counter() - t) * 1e3, wire.timing_of(meta)

    def blocking() -> tuple[float, dict[str, float]]:
        t = time.perf_counter()
        conn.request("POST", protocol.INFER.path, body=frame, headers=headers)
        resp = conn.getresponse()
        resp.read()
        ms = (time.perf_counter() - t) * 1e3
        return ms, protocol.parse_server_timing(resp.getheader(protocol.TIMING_HEADER))

    def bare() -> tuple[float, dict[str, float]]:
        t = time.perf_counter()
        sock.sendall(raw)
        view, got = memoryview(answer), 0
        while got < len(answer):
            got += sock.recv_into(view[got:])
        (forward,) = struct.unpack_from("<d", answer, len(answer) - 8)
        return (time.perf_counter() - t) * 1e3, {"compute": forward}

    async def run() -> dict[str, list[tuple[float, dict[str, float]]]]:
        client = TailClient(server.url, 60)
        streamer = StreamClient(f"tcp://127.0.0.1:{stream_port}", 60)

        async def streamed_async() -> tuple[float, dict[str, float]]:
            t = time.perf_counter()
            _, timing = await streamer.infer_frame(parts)
            return (time.perf_counter() - t) * 1e3, timing

        async def evented() -> tuple[float, dict[str, float]]:
            t = time.perf_counter()
            _, timing = await client.infer_frame(frame)
            return (time.perf_counter() - t) * 1e3, timing

        rows: dict[str, list] = {
            "http.client": [],
            "aiohttp": [],
            "stream (blocking)": [],
            "stream (asyncio)": [],
            "floor (raw socket)": [],
        }
        for r in range(5 + args.rounds):
            got = [blocking(), await evented(), streamed(), await streamed_async(), bare()]
            if r >= 5:
                for name, row in zip(rows, got, strict=True):
                    rows[name].append(row)
        await client.close()
        await streamer.close()
        return rows

    try:
        rows = asyncio.run(run())
    finally:
        server.stop()
        floor.kill()
    print(f"cut {args.cut}, {len(frame):,} bytes, {args.rounds} rounds (median ms)")
    for name, samples in rows.items():
        over = statistics.median(ms - t["compute"] for ms, t in samples)
        parts = {
            k: round(statistics.median(t.get(k, 0.0) for _, t in samples), 3)
            for k in ("read", "decode", "queue", "dispatch", "compute", "encode")
        }
        print(f"{name:20s} round trip - forward {over:6.2f}  server parts {parts}")


if __name__ == "__main__":
    main()
