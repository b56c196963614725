"""`privpart serve`, `privpart enclave`, `privpart infer`: run a split for real.

Three terminals (docs/runtime.md): `serve` runs the tail on the untrusted accelerator,
`enclave` runs the head in an attested worker (TEE + GPU partitioning), `infer` sends images
through either the enclave (`--enclave URL`, after verifying its quote against the client's
policy) or a head on this device (`--device`).
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

from privpart.cli.application import app
from privpart.cli.verify import (
    AdvisoryOpt,
    CollateralOpt,
    IsvProdOpt,
    MinSvnOpt,
    MrenclaveOpt,
    MrsignerOpt,
    MrtdOpt,
    RtmrOpt,
    StatusOpt,
    policy_from,
)
from privpart.errors import PrivpartError
from privpart.extras import SERVE, needs
from privpart.hardware import SGX1_EPC_MIB
from privpart.ui import console

if TYPE_CHECKING:  # the runtime is imported lazily, inside the commands
    from privpart.runtime.channel.attestation import Attestation
    from privpart.runtime.channel.policy import VerificationPolicy
    from privpart.runtime.client import DeviceClient, EnclaveClient
    from privpart.runtime.enclave import TEEBackend
    from privpart.runtime.head import SplitHead
    from privpart.runtime.server import ServerLimits, TailConfig
    from privpart.runtime.server.ray_serve import RayTail

LOOPBACK = "127.0.0.1"
CheckpointOpt = Annotated[Path, typer.Option(help="checkpoint folder (privpart train)")]
CutOpt = Annotated[str, typer.Option(help="cut name (see `privpart cuts`)")]
TrustCodeOpt = Annotated[
    bool,
    typer.Option(
        "--trust-code",
        help="allow a checkpoint whose architecture is a Python file (it is imported and run)",
    ),
]
VerifyTailOpt = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        metavar="RATE",
        help="recompute the tail on this trusted side for a random fraction RATE of requests "
        "and withhold any answer that differs (tail_forgery_detected): 1 checks every request, "
        "0.1 one in ten; 0 (default) checks none, so answers are NOT integrity-protected "
        "against the tail server (docs/runtime.md)",
    ),
]
TokenFileOpt = Annotated[
    Path | None,
    typer.Option(help="require this bearer token from clients (a file holding it); /healthz open"),
]
BodyTimeoutOpt = Annotated[
    float, typer.Option(min=0.1, help="seconds a request body may take to arrive")
]
MaxConnOpt = Annotated[int, typer.Option(min=1, help="open connections at most")]
HeaderTimeoutOpt = Annotated[
    float,
    typer.Option(
        min=0.1, help="seconds a request's head (line + headers) may take in total, from accept"
    ),
]
PerAddressOpt = Annotated[
    int, typer.Option(min=1, help="open connections at most from one address (IPv6: one /64)")
]
TlsCertOpt = Annotated[
    Path | None, typer.Option(help="serve HTTPS with this PEM certificate (and --tls-key)")
]
TlsKeyOpt = Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert")]
TailCertOpt = Annotated[
    Path | None,
    typer.Option(
        help="pin the tail's TLS certificate (PEM): only an https:// or tls:// tail presenting it"
    ),
]


StreamPortOpt = Annotated[
    int | None,
    typer.Option(
        min=0,
        help="also serve the stream transport on this port (0: any free port): one persistent "
        "connection per client, length-prefixed messages, for clients given a tcp:// or "
        "tls:// URL; the same limits, token and TLS as HTTP",
    ),
]


def _limits(
    body_timeout: float,
    max_connections: int,
    token_file: Path | None,
    header_timeout: float,
    per_address: int,
) -> ServerLimits:
    """What `serve` and `enclave` enforce on every connection (same options, same meaning)."""
    from privpart.runtime.server import ServerLimits
    from privpart.runtime.server.limits import read_token

    return ServerLimits(
        body_timeout,
        max_connections,
        read_token(token_file),
        header_timeout_s=header_timeout,
        max_connections_per_address=per_address,
    )


def _set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


@app.command()
@needs(SERVE, "privpart serve")
def serve(
    checkpoint: CheckpointOpt,
    cut: CutOpt,
    host: Annotated[str, typer.Option(help="address to bind")] = LOOPBACK,
    port: Annotated[int, typer.Option(help="TCP port")] = 8600,
    stream_port: StreamPortOpt = None,
    max_batch: Annotated[int, typer.Option(min=1, help="samples per forward pass")] = 32,
    max_wait_ms: Annotated[
        float, typer.Option(min=0, help="under load, wait this long to fill a batch")
    ] = 5.0,
    max_queue: Annotated[int, typer.Option(min=1, help="queued samples before 'busy'")] = 256,
    device: Annotated[str, typer.Option(help="auto (CUDA if present), cpu or cuda")] = "auto",
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
    auth_token_file: TokenFileOpt = None,
    body_timeout: BodyTimeoutOpt = 10.0,
    max_connections: MaxConnOpt = 512,
    max_connections_per_address: PerAddressOpt = 64,
    header_timeout: HeaderTimeoutOpt = 5.0,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    trust_code: TrustCodeOpt = False,
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
    """Serve the tail of a split over HTTP(S): dynamic batching, backpressure, /metrics."""
    from privpart.runtime.head import refuse_code
    from privpart.runtime.server import BatchConfig, TailConfig

    refuse_code(checkpoint, trust_code)  # before anything runs: the refusal costs nothing
    if (tls_cert is None) != (tls_key is None):
        raise PrivpartError("--tls-cert and --tls-key go together", "pass both, or neither")
    batch = BatchConfig(max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue)
    limits = _limits(
        body_timeout, max_connections, auth_token_file, header_timeout, max_connections_per_address
    )
    config = TailConfig(batch=batch, device=device, limits=limits)
    if ray is not None:
        if tls_cert is not None:
            raise PrivpartError(
                "--tls-cert is not supported with --ray", "terminate TLS in front of Ray Serve"
            )
        if stream_port is not None:
            raise PrivpartError(
                "--stream-port is not supported with --ray (Ray Serve speaks HTTP only)",
                "drop --stream-port, or serve without --ray",
            )
        _serve_on_ray(
            ray,
            checkpoint,
            cut,
            host,
            port,
            config,
            replicas,
            autoscale,
            ray_resources,
            threads,
            trust_code,
        )
        return
    from privpart.runtime.compute_thread import serving_threads
    from privpart.runtime.head import split_checkpoint
    from privpart.runtime.malloc import keep_freed_memory
    from privpart.runtime.nopickle import forbid_unpickling
    from privpart.runtime.server import build_tail_app, tail_service
    from privpart.runtime.server.runner import serve_until_signal
    from privpart.runtime.stream.server import tail_stream_site
    from privpart.runtime.tls import server_context

    compute = serving_threads(threads)  # before any torch work here: one OpenMP team per process
    keep_freed_memory()  # freed activations reused, not faulted in again (runtime/malloc.py)
    forbid_unpickling()
    split = split_checkpoint(checkpoint, cut, trust_code=trust_code)
    tls = server_context(tls_cert, tls_key) if tls_cert and tls_key else None
    web_app = build_tail_app(split, config, compute)
    service = tail_service(web_app)
    service.warm_up()
    sites = [] if stream_port is None else [tail_stream_site(web_app, host, stream_port, tls)]

    def started(url: str) -> None:
        from privpart.runtime.protocol import TAIL_ENDPOINTS

        endpoints = ", ".join(f"{ep.method} {ep.path}" for ep in TAIL_ENDPOINTS)
        shape = "x".join(map(str, split.info.cut.shape))
        auth = "bearer token required" if limits.token else "no authentication"
        console.print(
            f"[green]tail server[/] {split.info.spec.arch} after cut [bold]{cut}[/] on "
            f"{service.device} at [bold]{url}[/]\n  features {shape} float32; batches <= "
            f"{max_batch} (wait <= {max_wait_ms:g} ms under load); queue <= {max_queue} "
            f"samples, then 429 busy\n  {auth}; request heads within {header_timeout:g} s, "
            f"bodies within {body_timeout:g} s; <= {max_connections} connections, <= "
            f"{max_connections_per_address} per address\n  endpoints: {endpoints}; Ctrl-C "
            "drains and stops"
        )
        for site in sites:
            console.print(f"  stream transport at [bold]{site.url}[/] (tcp:// or tls:// clients)")

    asyncio.run(
        serve_until_signal(
            web_app,
            host,
            port,
            started,
            lambda: console.print("draining..."),
            tls=tls,
            sites=sites,
        )
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
    trust_code: bool,
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
        address,
        checkpoint,
        cut,
        config,
        scale,
        res,
        host,
        port,
        threads,
        started,
        stopping,
        trust_code,
    )
    console.print("[green]stopped[/] (replicas drained)")


@app.command()
@needs(SERVE, "privpart enclave")
def enclave(
    checkpoint: CheckpointOpt,
    cut: CutOpt,
    tail: Annotated[str | None, typer.Option(help="tail server URL (privpart serve)")] = None,
    backend: Annotated[
        str,
        typer.Option(
            help="TEE backend: process (simulated: no confidentiality against the host), "
            "gramine (Intel SGX) or tdx (Intel TDX VM)"
        ),
    ] = "process",
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
    max_sessions_per_client: Annotated[
        int, typer.Option(min=1, help="live sessions per client address (IPv6: one /64)")
    ] = 16,
    max_sessions: Annotated[
        int, typer.Option(min=1, help="live sessions in all (then the heaviest address gives one)")
    ] = 1024,
    unused_session_ttl: Annotated[
        float, typer.Option(min=1.0, help="seconds a session never used after its handshake lives")
    ] = 30.0,
    auth_token_file: TokenFileOpt = None,
    tail_token_file: Annotated[
        Path | None, typer.Option(help="the tail server's bearer token (a file holding it)")
    ] = None,
    tail_cert: TailCertOpt = None,
    body_timeout: BodyTimeoutOpt = 10.0,
    max_connections: MaxConnOpt = 512,
    max_connections_per_address: PerAddressOpt = 64,
    header_timeout: HeaderTimeoutOpt = 5.0,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    stream_port: StreamPortOpt = None,
    isv_prod_id: Annotated[int, typer.Option(min=0, help="gramine: ISV product id")] = 0,
    isv_svn: Annotated[int, typer.Option(min=0, help="gramine: ISV SVN")] = 0,
    print_mrenclave: Annotated[
        bool,
        typer.Option(
            "--print-mrenclave",
            help="gramine: sign the enclave and print what clients pin (MRENCLAVE, MRSIGNER), "
            "then exit",
        ),
    ] = False,
    trust_code: TrustCodeOpt = False,
    verify_tail: VerifyTailOpt = 0.0,
) -> None:
    """Run the head in an attested enclave worker that relays features to the tail server."""
    import os

    from privpart.runtime.channel.simulated import fingerprint
    from privpart.runtime.enclave import (
        TEE_BACKENDS,
        EnclaveConfig,
        PlatformKeys,
        default_platform_dir,
    )
    from privpart.runtime.enclave.host import EnclaveHost, build_enclave_app, host_stream_site
    from privpart.runtime.enclave.supervisor import launch
    from privpart.runtime.head import split_checkpoint
    from privpart.runtime.server.limits import read_token
    from privpart.runtime.server.runner import serve_until_signal
    from privpart.runtime.tls import cert_fingerprint, server_context

    backend_cls = TEE_BACKENDS.get(backend)
    if tail is None and not print_mrenclave:
        raise PrivpartError("--tail URL is required", "pass the tail server's URL")
    if (tls_cert is None) != (tls_key is None):
        raise PrivpartError("--tls-cert and --tls-key go together", "pass both, or neither")
    tls = server_context(tls_cert, tls_key) if tls_cert and tls_key else None
    config = EnclaveConfig(
        epc_mib=epc_mib,
        max_batch=max_batch,
        threads=threads or os.cpu_count() or 1,
        max_sessions_per_client=max_sessions_per_client,
        max_sessions=max_sessions,
        session_unused_ttl_s=unused_session_ttl,
        tail_pin=cert_fingerprint(tail_cert).hex() if tail_cert else "",
        trust_code=trust_code,
        isv_prod_id=isv_prod_id,
        isv_svn=isv_svn,
        verify_tail=verify_tail,
    )
    platform = PlatformKeys.load_or_create(platform_dir or default_platform_dir())
    tee = backend_cls(platform, config)
    split = split_checkpoint(checkpoint, cut, trust_code=trust_code)
    if print_mrenclave:
        _print_mrenclave(tee, split, platform.directory / "heads")
        return
    assert tail is not None
    tee.check_available()  # before sealing anything
    sealed = tee.seal(split, platform.directory / "heads")
    limits = _limits(
        body_timeout, max_connections, auth_token_file, header_timeout, max_connections_per_address
    )
    tail_token = read_token(tail_token_file)
    sim = (
        "[bold yellow]simulated: true[/] (no hardware TEE: NO confidentiality against this host;"
        " clients must pass --allow-simulated)"
    )
    console.print(f"sealed head -> {sealed}")

    async def run() -> None:
        supervisor = launch(tee, sealed, split.info.measurement)
        ready = await supervisor.start()
        host_state = EnclaveHost(
            tee, supervisor, split.info, tail, limits=limits, tail_token=tail_token
        )
        web_app = build_enclave_app(host_state)
        sites = (
            [] if stream_port is None else [host_stream_site(host_state, host, stream_port, tls)]
        )

        def started(url: str) -> None:
            pin = (
                f"\n  clients pin {platform.public_file} ({fingerprint(platform.public_raw)}...)"
                if tee.simulated
                else ""
            )
            console.print(
                f"[green]enclave host[/] at [bold]{url}[/]  backend {tee.name}  "
                f"{sim if tee.simulated else 'simulated: false'}\n"
                f"  head {split.info.spec.arch} up to cut [bold]{cut}[/], measurement "
                f"{split.info.measurement}\n  worker pid {supervisor.pid}, budget {epc_mib} MiB "
                f"(head peak {ready['head_peak_bytes'] / 2**20:.1f} MiB), tail {tail}"
                f"{' (TLS, pinned)' if tail_cert else ''}{pin}\n  {_verify_line(verify_tail)}"
            )
            for site in sites:
                console.print(
                    f"  stream transport at [bold]{site.url}[/] (clients: privpart infer --stream)"
                )

        await serve_until_signal(web_app, host, port, started, tls=tls, sites=sites)

    if tls is None and not _is_loopback_host(host):
        console.print(
            f"[bold yellow]warning:[/] plain HTTP on {host}: clients' bearer token and session "
            "ids cross the network unencrypted; pass --tls-cert FILE --tls-key FILE (clients "
            "then pin the certificate with `privpart infer --enclave-cert FILE`)"
        )
    asyncio.run(run())
    console.print("[green]stopped[/]")


def _verify_line(rate: float) -> str:
    """What the operator is told about the integrity of the tail's answers."""
    if rate <= 0:
        return (
            "tail answers: [bold yellow]not verified[/] (--verify-tail 0): a tail server that "
            "forges logits goes undetected"
        )
    return (
        f"tail answers: recomputed here on {rate:.0%} of requests (--verify-tail {rate:g}), "
        "a mismatch is withheld as tail_forgery_detected"
    )


def _is_loopback_host(host: str) -> bool:
    from privpart.runtime.client.enclave import is_loopback

    return is_loopback(f"http://{host}/") if ":" not in host else is_loopback(f"http://[{host}]/")


def _print_mrenclave(tee: TEEBackend, split: SplitHead, heads: Path) -> None:
    """`enclave --backend gramine --print-mrenclave`: what SGX clients pin for this head."""
    from privpart.runtime.enclave.gramine import GramineBackend

    if not isinstance(tee, GramineBackend):
        raise PrivpartError(
            "--print-mrenclave is for --backend gramine",
            "a tdx deployment's clients pin the TD image's MRTD/RTMRs (see docs/runtime.md)",
        )
    sealed = tee.seal(split, heads)
    ident = tee.identity(sealed, split.info.measurement)
    console.print(
        f"head measurement {split.info.measurement}\nenclave signed: {ident.sigfile}\n"
        f"  debug enclave: {str(ident.debug).lower()}"
    )
    print(f"mrenclave = {ident.mrenclave}\nmrsigner = {ident.mrsigner}")
    print(f"isv_prod_id = {ident.isv_prod_id}\nisv_svn = {ident.isv_svn}")


def _attestation_line(att: Attestation) -> str:
    ident = ", ".join(
        f"{k} {v[:16]}..." if len(v) > 16 else f"{k} {v}"
        for k, v in att.identity.items()
        if k in ("MRENCLAVE", "MRSIGNER", "MRTD", "attestation key")
    )
    if att.simulated:
        what = "simulated: true (no hardware TEE)"
    else:
        what = f"{att.tee}, simulated: false, TCB {att.tcb_status}"
    key = f", platform key {att.platform_key[:16]}..." if att.platform_key else ""
    return (
        f"attested: backend {att.backend}, {what}, {ident}, measurement "
        f"{att.measurement[:16]}...{key}"
    )


@app.command()
@needs(SERVE, "privpart infer")
def infer(
    images: Annotated[list[Path], typer.Argument(help="image files (PNG, JPEG, ...)")],
    enclave_url: Annotated[
        str | None,
        typer.Option("--enclave", help="enclave host URL (the head in an attested enclave)"),
    ] = None,
    on_device: Annotated[
        bool, typer.Option("--on-device", help="run the head here, on this device")
    ] = False,
    tail: Annotated[str | None, typer.Option(help="tail server URL (device mode)")] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="the checkpoint you trust (head, measurement, classes)")
    ] = None,
    cut: Annotated[str | None, typer.Option(help="the cut you accept")] = None,
    measurement: Annotated[
        str | None, typer.Option(help="expected measurement (instead of --checkpoint/--cut)")
    ] = None,
    allow_simulated: Annotated[
        bool,
        typer.Option(
            "--allow-simulated",
            help="accept a simulated quote (process backend): NO confidentiality against the "
            "enclave host; tests only",
        ),
    ] = False,
    pin: Annotated[
        str | None,
        typer.Option(help="simulated: pinned platform key (platform.pub file or 64 hex digits)"),
    ] = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="a JSON verification policy (docs/runtime.md)")
    ] = None,
    mrenclave: MrenclaveOpt = None,
    mrsigner: MrsignerOpt = None,
    isv_prod_id: IsvProdOpt = None,
    min_isv_svn: MinSvnOpt = None,
    mrtd: MrtdOpt = None,
    rtmr: RtmrOpt = None,
    collateral: CollateralOpt = None,
    accept_status: StatusOpt = None,
    accept_advisory: AdvisoryOpt = None,
    token_file: Annotated[
        Path | None, typer.Option(help="bearer token of the server you talk to (a file)")
    ] = None,
    tail_cert: TailCertOpt = None,
    enclave_cert: Annotated[
        Path | None,
        typer.Option(
            help="pin the enclave host's TLS certificate (PEM): only an https:// host "
            "presenting exactly it (without it, https:// verifies against the system's CAs)"
        ),
    ] = None,
    allow_plain_http: Annotated[
        bool,
        typer.Option(
            "--allow-plain-http",
            help="talk plain http:// to an enclave host off this machine: the token and session "
            "ids then cross the network in clear (inputs and logits stay sealed)",
        ),
    ] = False,
    trust_code: TrustCodeOpt = False,
    verify_tail: VerifyTailOpt = 0.0,
    stream: Annotated[
        bool,
        typer.Option(
            "--stream",
            help="send the sealed requests over the enclave host's stream port (privpart "
            "enclave --stream-port): one persistent connection, less per-request overhead",
        ),
    ] = False,
    repeat: Annotated[int, typer.Option(min=1, help="run each image N times (timing)")] = 1,
    timeout: Annotated[float, typer.Option(help="seconds to wait for an answer")] = 30.0,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads (device mode)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Classify images through the split: via the attested enclave, or head-on-device."""
    _set_threads(threads)
    if (enclave_url is None) == (not on_device):
        raise PrivpartError(
            "choose one mode: --enclave URL or --on-device",
            "head in an enclave: --enclave URL with a verification policy; head on this "
            "device: --on-device --tail URL",
        )
    if on_device and stream:
        raise PrivpartError(
            "--stream is for --enclave: in device mode the tail URL picks the transport",
            "pass the tail's stream URL to --tail (tcp://HOST:PORT or tls://HOST:PORT, printed "
            "by `privpart serve --stream-port`) and drop --stream",
        )
    if on_device and (tail is None or checkpoint is None or cut is None):
        raise PrivpartError(
            "--on-device needs --tail URL, --checkpoint DIR and --cut NAME",
            "the head runs here, so it needs the checkpoint and the cut",
        )
    pol = None
    if enclave_url is not None and verify_tail > 0:
        raise PrivpartError(
            "--verify-tail is for device mode here: in enclave mode the enclave worker "
            "recomputes the tail, since it holds the features",
            "start the enclave with `privpart enclave ... --verify-tail RATE` (its /v1/info "
            "shows the rate), and drop --verify-tail here",
        )
    if enclave_url is not None:
        if measurement is None and (checkpoint is None or cut is None):
            raise PrivpartError(
                "--enclave needs either --checkpoint DIR --cut NAME or --measurement HEX",
                "the client must know which head to trust before sending data",
            )
        if allow_simulated and pin is None:
            raise PrivpartError(
                "--allow-simulated needs --pin: a simulated quote is only as good as the "
                "platform key it is checked against",
                "pass --pin platform.pub (written by `privpart enclave`)",
            )
        pol = _policy(
            policy,
            allow_simulated,
            pin,
            collateral,
            mrenclave,
            mrsigner,
            isv_prod_id,
            min_isv_svn,
            mrtd,
            rtmr,
            accept_status,
            accept_advisory,
        )
    from privpart.runtime.server.limits import read_token

    token = read_token(token_file)
    if enclave_url is not None:
        _check_enclave_transport(enclave_url, enclave_cert, allow_plain_http)
    asyncio.run(
        _infer(
            images,
            enclave_url,
            tail,
            checkpoint,
            cut,
            pol,
            measurement,
            token,
            tail_cert,
            enclave_cert,
            allow_plain_http,
            trust_code,
            repeat,
            timeout,
            as_json,
            verify_tail,
            stream,
        )
    )


def _check_enclave_transport(url: str, cert: Path | None, allow_plain_http: bool) -> None:
    """Refuse plain HTTP off this machine before anything is sent; say loudly when allowed."""
    from privpart.runtime.client.enclave import check_transport

    plain = check_transport(url, allow_plain_http)
    if plain:
        console.print(f"[bold yellow]warning:[/] {plain}")
    if cert is not None and not url.startswith("https://"):
        raise PrivpartError(
            "--enclave-cert pins a TLS certificate, but the enclave URL is not https://",
            "pass https://HOST:PORT of an enclave host started with --tls-cert/--tls-key",
        )


def _policy(
    policy_file: Path | None,
    allow_simulated: bool,
    pin: str | None,
    collateral: str | None,
    mrenclave: str | None,
    mrsigner: str | None,
    isv_prod_id: int | None,
    min_isv_svn: int | None,
    mrtd: str | None,
    rtmr: list[str] | None,
    accept_status: list[str] | None,
    accept_advisory: list[str] | None,
) -> VerificationPolicy:
    from privpart.runtime.channel.attestation import read_pin

    return policy_from(
        policy_file,
        allow_simulated=allow_simulated,
        pins=(read_pin(pin),) if pin else (),
        collateral=collateral,
        mrenclave=mrenclave,
        mrsigner=mrsigner,
        isv_prod_id=isv_prod_id,
        min_isv_svn=min_isv_svn,
        mrtd=mrtd,
        rtmr=rtmr,
        accept_status=accept_status,
        accept_advisory=accept_advisory,
    )


async def _connect(
    client: EnclaveClient | DeviceClient, split: SplitHead | None, tail: str | None, as_json: bool
) -> tuple[dict, tuple[int, ...]]:
    """Attest the enclave or check the tail: the result header and the input shape to send."""
    from privpart.runtime.client import EnclaveClient

    if isinstance(client, EnclaveClient):
        info = await client.info()
        att = await client.attest()
        if att.warning:  # always on stderr, even with --json
            console.print(f"[bold yellow]warning:[/] {att.warning}")
        if not as_json:
            console.print(_attestation_line(att))
        header = {
            "mode": "enclave",
            "backend": att.backend,
            "simulated": att.simulated,
            "tee": att.tee,
            "measurement": att.measurement,
            "identity": att.identity,
            "tcb_status": att.tcb_status,
            "advisories": list(att.advisories),
            "platform_key": att.platform_key,
            "verify_tail": info.get("verify_tail", 0.0),  # as the host reports it: not attested
        }
        return header, tuple(info["input_shape"])
    assert split is not None
    await client.check_tail()
    header = {"mode": "device", "cut": split.info.cut.name, "tail": tail,
              "verify_tail": client.check.rate}  # fmt: skip
    return header, split.info.input_shape


async def _infer(
    images: list[Path],
    enclave_url: str | None,
    tail: str | None,
    checkpoint: Path | None,
    cut: str | None,
    policy: VerificationPolicy | None,
    measurement: str | None,
    token: str | None,
    tail_cert: Path | None,
    enclave_cert: Path | None,
    allow_plain_http: bool,
    trust_code: bool,
    repeat: int,
    timeout: float,
    as_json: bool,
    verify_tail: float = 0.0,
    stream: bool = False,
) -> None:
    from privpart.runtime.client import DeviceClient, EnclaveClient
    from privpart.runtime.client.images import load_images
    from privpart.runtime.head import split_checkpoint
    from privpart.runtime.tls import cert_fingerprint
    from privpart.training import read_meta

    split = (
        split_checkpoint(checkpoint, cut, trust_code=trust_code)
        if checkpoint is not None and cut
        else None
    )
    classes = read_meta(checkpoint).get("classes") if checkpoint is not None else None
    client: EnclaveClient | DeviceClient
    if enclave_url is not None:
        assert policy is not None
        expected = measurement or (split.info.measurement if split else "")
        client = EnclaveClient(
            enclave_url,
            policy,
            expected,
            timeout,
            token=token,
            tls_pin=cert_fingerprint(enclave_cert) if enclave_cert else None,
            allow_plain_http=allow_plain_http,
            stream=stream,
        )
    else:
        assert split is not None and tail is not None
        pin = cert_fingerprint(tail_cert) if tail_cert else None
        client = DeviceClient(
            split, tail, timeout, token=token, tls_pin=pin, verify_tail=verify_tail
        )
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
