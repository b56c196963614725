"""`privpart serve`, `privpart enclave`, `privpart infer`: run a split for real.

Three terminals (docs/runtime.md): `serve` runs the tail on the untrusted accelerator,
`enclave` runs the head in an attested worker (seed A), `infer` sends images through either the
enclave (`--enclave URL`) or a head on this device (`--device`).
"""

from __future__ import annotations

import asyncio
import json
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import torch
import typer
from rich.table import Table

from privpart.cli.app import app
from privpart.errors import PrivpartError
from privpart.hardware import SGX1_EPC_MIB
from privpart.ui import console

if TYPE_CHECKING:  # the runtime is imported lazily, inside the commands
    from privpart.runtime.client import DeviceClient, EnclaveClient
    from privpart.runtime.head import SplitHead
    from privpart.runtime.server import TailConfig
    from privpart.runtime.server.ray_serve import RayTail

LOOPBACK = "127.0.0.1"
CheckpointOpt = Annotated[Path, typer.Option(help="checkpoint folder (privpart train)")]
CutOpt = Annotated[str, typer.Option(help="cut name (see `privpart cuts`)")]


def _set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


@app.command()
def serve(
    checkpoint: CheckpointOpt,
    cut: CutOpt,
    host: Annotated[str, typer.Option(help="address to bind")] = LOOPBACK,
    port: Annotated[int, typer.Option(help="TCP port")] = 8600,
    max_batch: Annotated[int, typer.Option(min=1, help="samples per forward pass")] = 32,
    max_wait_ms: Annotated[
        float, typer.Option(min=0, help="under load, wait this long to fill a batch")
    ] = 5.0,
    max_queue: Annotated[int, typer.Option(min=1, help="queued samples before 'busy'")] = 256,
    device: Annotated[str, typer.Option(help="auto (CUDA if present), cpu or cuda")] = "auto",
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            metavar="[ADDRESS]",
            help="serve on Ray Serve: bare --ray starts a local Ray, or auto, ray://HOST:10001, "
            "HOST:6379 (docs/scale.md)",
        ),
    ] = None,
    replicas: Annotated[int, typer.Option(min=1, help="Ray: tail replicas")] = 1,
    autoscale: Annotated[
        str | None,
        typer.Option(help="Ray: MIN,MAX replicas, or a JSON Ray Serve autoscaling_config"),
    ] = None,
    ray_resources: Annotated[
        str | None, typer.Option(help="Ray: per replica, e.g. cpus=1,gpus=0.5 (default cpus=1)")
    ] = None,
) -> None:
    """Serve the tail of a split over HTTP: dynamic batching, backpressure, /metrics."""
    from privpart.runtime.server import BatchConfig, TailConfig, build_tail_app, tail_service

    batch = BatchConfig(max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue)
    if ray is not None:
        config = TailConfig(batch=batch, device=device)
        _serve_on_ray(
            ray, checkpoint, cut, host, port, config, replicas, autoscale, ray_resources, threads
        )
        return
    from privpart.runtime.compute import serving_threads
    from privpart.runtime.head import split_checkpoint
    from privpart.runtime.nopickle import forbid_unpickling
    from privpart.runtime.server.runner import serve_until_signal

    compute = serving_threads(threads)  # before any torch work here: one OpenMP team per process
    forbid_unpickling()
    split = split_checkpoint(checkpoint, cut)
    web_app = build_tail_app(split, TailConfig(batch=batch, device=device), compute)
    service = tail_service(web_app)
    service.warm_up()

    def started(url: str) -> None:
        shape = "x".join(map(str, split.info.cut.shape))
        console.print(
            f"[green]tail server[/] {split.info.spec.arch} after cut [bold]{cut}[/] on "
            f"{service.device} at [bold]{url}[/]\n  features {shape} float32; batches <= "
            f"{max_batch} (wait <= {max_wait_ms:g} ms under load); queue <= {max_queue} "
            "samples, then 429 busy\n  endpoints: POST /v1/infer, GET /v1/info /healthz /metrics;"
            " Ctrl-C drains and stops"
        )

    asyncio.run(
        serve_until_signal(web_app, host, port, started, lambda: console.print("draining..."))
    )
    console.print("[green]stopped[/] (queue drained)")


def _serve_on_ray(
    address: str,
    checkpoint: Path,
    cut: str,
    host: str,
    port: int,
    config: TailConfig,
    replicas: int,
    autoscale: str | None,
    resources: str | None,
    threads: int | None,
) -> None:
    """`serve --ray`: the same tail as Ray Serve replicas (runtime/server/ray_serve.py)."""
    from privpart.cluster import Resources, check_address, import_ray

    check_address(address)
    import_ray()  # a missing extra fails here with the install hint
    from privpart.runtime.server.ray_serve import Scale, serve_on_ray

    scale = Scale.parse(replicas, autoscale)
    res = Resources.parse(resources, gpus=1.0 if config.device == "cuda" else 0.0)

    def started(tail: RayTail) -> None:
        how = ", ".join(f"{k} {v}" for k, v in scale.describe().items())
        console.print(
            f"[green]tail on Ray Serve[/] {tail.split.info.spec.arch} after cut [bold]{cut}[/] "
            f"at [bold]{tail.url}[/]\n  {how}; each cpus={res.cpus:g} gpus={res.gpus:g}\n"
            "  same endpoints as `privpart serve`; /metrics per replica (X-Privpart-Replica); "
            "Ctrl-C drains and stops"
        )

    def stopping() -> None:
        console.print("draining...")

    serve_on_ray(
        address, checkpoint, cut, config, scale, res, host, port, threads, started, stopping
    )
    console.print("[green]stopped[/] (replicas drained)")


@app.command()
def enclave(
    checkpoint: CheckpointOpt,
    cut: CutOpt,
    tail: Annotated[str, typer.Option(help="tail server URL (privpart serve)")],
    backend: Annotated[str, typer.Option(help="TEE backend: process (simulated) or gramine")] = (
        "process"
    ),
    host: Annotated[str, typer.Option(help="address to bind")] = LOOPBACK,
    port: Annotated[int, typer.Option(help="TCP port")] = 8700,
    platform_dir: Annotated[
        Path | None, typer.Option(help="platform keys (default ~/.privpart/platform)")
    ] = None,
    epc_mib: Annotated[
        int, typer.Option(min=0, help="enclave memory budget for the head")
    ] = SGX1_EPC_MIB,
    max_batch: Annotated[int, typer.Option(min=1, help="samples per client request")] = 4,
    threads: Annotated[int | None, typer.Option(help="torch threads in the worker")] = None,
) -> None:
    """Run the head in an attested enclave worker that relays features to the tail server."""
    import os

    from privpart.runtime.channel.attestation import fingerprint
    from privpart.runtime.enclave import (
        TEE_BACKENDS,
        EnclaveConfig,
        PlatformKeys,
        default_platform_dir,
    )
    from privpart.runtime.enclave.host import EnclaveHost, build_enclave_app
    from privpart.runtime.head import split_checkpoint
    from privpart.runtime.server.runner import serve_until_signal

    backend_cls = TEE_BACKENDS.get(backend)
    config = EnclaveConfig(
        epc_mib=epc_mib, max_batch=max_batch, threads=threads or os.cpu_count() or 1
    )
    platform = PlatformKeys.load_or_create(platform_dir or default_platform_dir())
    tee = backend_cls(platform, config)
    tee.check_available()
    split = split_checkpoint(checkpoint, cut)
    sealed = tee.seal(split, platform.directory / "heads")
    sim = "[bold yellow]simulated: true[/] (no hardware TEE: a software platform key signs quotes)"
    console.print(f"sealed head -> {sealed}")

    async def run() -> None:
        supervisor = tee.launch(sealed, split.info.measurement)
        ready = await supervisor.start()
        web_app = build_enclave_app(EnclaveHost(tee, supervisor, split.info, tail))

        def started(url: str) -> None:
            console.print(
                f"[green]enclave host[/] at [bold]{url}[/]  backend {tee.name}  "
                f"{sim if tee.simulated else 'simulated: false'}\n"
                f"  head {split.info.spec.arch} up to cut [bold]{cut}[/], measurement "
                f"{split.info.measurement}\n  worker pid {supervisor.pid}, budget {epc_mib} MiB "
                f"(head peak {ready['head_peak_bytes'] / 2**20:.1f} MiB), tail {tail}\n"
                f"  clients pin {platform.public_file} "
                f"({fingerprint(platform.public_raw)}...)"
            )

        await serve_until_signal(web_app, host, port, started)

    asyncio.run(run())
    console.print("[green]stopped[/]")


def _attestation_line(body: object) -> str:
    b = body  # QuoteBody
    sim = "simulated: true" if b.simulated else "simulated: false"  # type: ignore[attr-defined]
    return (
        f"attested: backend {b.backend}, {sim}, measurement "  # type: ignore[attr-defined]
        f"{b.measurement[:16]}..., platform key {b.platform_key[:16]}..."  # type: ignore[attr-defined]
    )


@app.command()
def infer(
    images: Annotated[list[Path], typer.Argument(help="image files (PNG, JPEG, ...)")],
    enclave_url: Annotated[
        str | None, typer.Option("--enclave", help="enclave host URL (seed A)")
    ] = None,
    device: Annotated[bool, typer.Option("--device", help="run the head here (seed B)")] = False,
    tail: Annotated[str | None, typer.Option(help="tail server URL (device mode)")] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="the checkpoint you trust (head, measurement, classes)")
    ] = None,
    cut: Annotated[str | None, typer.Option(help="the cut you accept")] = None,
    pin: Annotated[
        str | None, typer.Option(help="pinned platform key: platform.pub file or 64 hex digits")
    ] = None,
    measurement: Annotated[
        str | None, typer.Option(help="expected measurement (instead of --checkpoint/--cut)")
    ] = None,
    repeat: Annotated[int, typer.Option(min=1, help="run each image N times (timing)")] = 1,
    timeout: Annotated[float, typer.Option(help="seconds to wait for an answer")] = 30.0,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads (device mode)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Classify images through the split: via the attested enclave, or head-on-device."""
    _set_threads(threads)
    if (enclave_url is None) == (not device):
        raise PrivpartError(
            "choose one mode: --enclave URL or --device",
            "seed A: --enclave URL --pin ...; seed B: --device --tail URL",
        )
    if device and (tail is None or checkpoint is None or cut is None):
        raise PrivpartError(
            "--device needs --tail URL, --checkpoint DIR and --cut NAME",
            "the head runs here, so it needs the checkpoint and the cut",
        )
    if enclave_url is not None and (
        pin is None or (measurement is None and (checkpoint is None or cut is None))
    ):
        raise PrivpartError(
            "--enclave needs --pin and either --checkpoint DIR --cut NAME or --measurement HEX",
            "the client must know which platform key and which head to trust before sending data",
        )
    asyncio.run(
        _infer(
            images, enclave_url, tail, checkpoint, cut, pin, measurement, repeat, timeout, as_json
        )
    )


async def _connect(
    client: EnclaveClient | DeviceClient, split: SplitHead | None, tail: str | None, as_json: bool
) -> tuple[dict, tuple[int, ...]]:
    """Attest the enclave or check the tail: the result header and the input shape to send."""
    from privpart.runtime.client import EnclaveClient

    if isinstance(client, EnclaveClient):
        info = await client.info()
        body = await client.attest()
        if not as_json:
            console.print(_attestation_line(body))
        header = {
            "mode": "enclave",
            "backend": body.backend,
            "simulated": body.simulated,
            "measurement": body.measurement,
            "platform_key": body.platform_key,
        }
        return header, tuple(info["input_shape"])
    assert split is not None
    await client.check_tail()
    return {"mode": "device", "cut": split.info.cut.name, "tail": tail}, split.info.input_shape


async def _infer(
    images: list[Path],
    enclave_url: str | None,
    tail: str | None,
    checkpoint: Path | None,
    cut: str | None,
    pin: str | None,
    measurement: str | None,
    repeat: int,
    timeout: float,
    as_json: bool,
) -> None:
    from privpart.runtime.channel.attestation import read_pin
    from privpart.runtime.client import DeviceClient, EnclaveClient
    from privpart.runtime.client.images import load_images
    from privpart.runtime.head import split_checkpoint
    from privpart.training import read_meta

    split = split_checkpoint(checkpoint, cut) if checkpoint is not None and cut else None
    classes = read_meta(checkpoint).get("classes") if checkpoint is not None else None
    client: EnclaveClient | DeviceClient
    if enclave_url is not None:
        assert pin is not None
        expected = measurement or (split.info.measurement if split else "")
        client = EnclaveClient(enclave_url, [read_pin(pin)], expected, timeout)
    else:
        assert split is not None and tail is not None
        client = DeviceClient(split, tail, timeout)
    try:  # the client's connections close whatever fails, attestation included
        header, input_shape = await _connect(client, split, tail, as_json)
        x = load_images(images, input_shape)
        rows = []
        for path, sample in zip(images, x, strict=True):
            results = [await client.infer(sample[None]) for _ in range(repeat)]
            probs = torch.softmax(results[-1].logits[0], 0)
            k = int(probs.argmax())
            label = classes[k] if classes and k < len(classes) else str(k)
            totals = [r.timing["total"] for r in results]
            rows.append(
                {
                    "image": str(path),
                    "prediction": label,
                    "class_index": k,
                    "confidence": round(float(probs[k]), 4),
                    "median_ms": round(statistics.median(totals), 2),
                    "timing_ms": {k2: round(v, 3) for k2, v in results[-1].timing.items()},
                }
            )
    finally:
        await client.close()
    if as_json:
        print(json.dumps({**header, "results": rows}, indent=2))
        return
    table = Table(title=f"{header['mode']}-mode inference ({len(rows)} images)")
    for col in ("image", "prediction", "confidence", "ms"):
        table.add_column(col, justify="left" if col in ("image", "prediction") else "right")
    for r in rows:
        table.add_row(
            Path(r["image"]).name,
            r["prediction"],
            f"{r['confidence']:.1%}",
            f"{r['median_ms']:.1f}",
        )
    console.print(table)
    parts = ", ".join(f"{k} {v:.2f}" for k, v in rows[-1]["timing_ms"].items() if k != "total")
    console.print(f"timing of the last request (ms): {parts}")
