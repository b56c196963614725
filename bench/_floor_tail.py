"""The least a two-process split can cost: a tail behind a bare TCP socket (bench helper).

No HTTP, no frame validation, no batching, no encryption: the client sends the raw float32
features (exactly the cut's size), this process runs the tail on its main thread and sends the
raw logits back. `runtime_overhead.py` times it beside the real runtime, so what privpart adds
can be told apart from what any split across two processes on the same cores costs.

Run by the bench: python bench/_floor_tail.py CHECKPOINT CUT THREADS  (prints its port, serves
one connection until it closes). It inherits the bench's OpenMP environment. After the logits it
sends its forward pass's milliseconds (float64), so the floor's time splits into compute and
transport like the runtime's.
"""

from __future__ import annotations

import socket
import struct
import sys
import time
from math import prod
from pathlib import Path

import torch

from privpart.runtime.head import split_checkpoint
from privpart.runtime.malloc import keep_freed_memory


def recv_exactly(conn: socket.socket, view: memoryview) -> bool:
    got = 0
    while got < len(view):
        n = conn.recv_into(view[got:])
        if n == 0:
            return False
        got += n
    return True


def serve(checkpoint: Path, cut: str, threads: int) -> None:
    torch.set_num_threads(threads)
    keep_freed_memory()  # as `privpart serve` does, so the floor's forward is not slower
    split = split_checkpoint(checkpoint, cut)
    tail = split.tail.eval()
    shape = (1, *split.info.cut.shape)
    buf = bytearray(prod(shape) * 4)
    x = torch.frombuffer(buf, dtype=torch.float32).reshape(shape)
    with torch.inference_mode():
        tail(x)  # warm up
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    view = memoryview(buf)
    while recv_exactly(conn, view):
        start = time.perf_counter()
        with torch.inference_mode():
            y = tail(x)
        ms = (time.perf_counter() - start) * 1e3
        conn.sendall(y.contiguous().numpy().tobytes() + struct.pack("<d", ms))


if __name__ == "__main__":
    serve(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
