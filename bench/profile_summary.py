"""Where each process of a runtime benchmark spends its CPU: a py-spy profile, by category.

py-spy samples every process of the benchmark (`--subprocesses`) and writes collapsed stacks
(`-f raw`); this script files each sample under its process (client, tail server, enclave host,
enclave worker, floor tail) and under the first category its stack matches (startup, crypto,
frames, torch forward, pipe, HTTP client/server, event loop), and prints a Markdown table of
the shares. Samples without Python frames (OpenMP worker threads) count as `other`.

Run: flock /tmp/privpart-cpu.lock .venv/bin/py-spy record --subprocesses --nonblocking -r 250
     -f raw -o prof.txt -- .venv/bin/python bench/runtime_overhead.py --rounds 20
     .venv/bin/python bench/profile_summary.py prof.txt
"""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

CATEGORIES: dict[str, str] = {  # first match wins, over the whole stack
    "startup": r"_find_and_load|_compile_bytecode|reset_parameters|warm|load_checkpoint|"
    r"split_checkpoint|rebuild_head|measure_head|save_checkpoint|build_model|_spawn|unseal",
    "crypto": r"Session\.(seal|open)|encrypt_into|decrypt_into",
    "frames": r"frames\.py",
    "torch forward": r"forward|_conv_forward|batch_norm|relu|max_pool|adaptive_avg",
    "pipe (ipc)": r"ipc\.py|read_sync|write_sync|read_async",
    "HTTP client": r"client_reqrep|ClientSession|connector|http/client\.py|TailLink",
    "HTTP server": r"web_protocol|web_response|web_app|http_parser|http_writer|guard\.py|"
    r"limits\.py|read_body",
    "event loop": r"_run_once|select|_read_ready|call_soon|_worker \(|queue\.py|threading",
}
PROCESSES = {  # the process's command line -> its role
    "enclave.worker": "enclave worker",
    "main() enclave": "enclave host",
    "main() serve": "tail server",
    "_floor_tail": "floor tail",
}


def role(frame: str) -> str:
    return next((name for key, name in PROCESSES.items() if key in frame), "client (bench)")


def summarise(path: Path) -> tuple[Counter, dict[str, Counter]]:
    totals: Counter = Counter()
    shares: dict[str, Counter] = defaultdict(Counter)
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        # nested processes: the innermost process frame owns the sample
        owner = max(i for i, f in enumerate(frames) if f.startswith("process ") or "main() " in f)
        who, rest, n = role(frames[owner]), ";".join(frames[owner + 1 :]), int(count)
        totals[who] += n
        what = next((c for c, pat in CATEGORIES.items() if re.search(pat, rest)), "other")
        shares[who][what] += n
    return totals, shares


def markdown(totals: Counter, shares: dict[str, Counter]) -> str:
    names = [*CATEGORIES, "other"]
    rows = [
        f"| {who} | {n} | " + " | ".join(f"{100 * shares[who][c] / n:.1f}%" for c in names) + " |"
        for who, n in totals.most_common()
    ]
    head = "| process | samples | " + " | ".join(names) + " |"
    return "\n".join([head, "|---|---:|" + "---:|" * len(names), *rows])


if __name__ == "__main__":
    print(markdown(*summarise(Path(sys.argv[1]))))
