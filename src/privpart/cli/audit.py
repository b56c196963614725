"""`privpart audit` (the main job), `privpart profile` and `privpart report`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel
from rich.table import Table

from privpart.audit import AuditConfig, Auditor, AuditResult, resolve_cuts
from privpart.cli.app import app
from privpart.cli.defend import check_defence_options, defence_params
from privpart.cli.options import DataDirOpt, DatasetOpt, ModelArg, SeedOpt, TaskOpt
from privpart.partition import Partition
from privpart.profiling import ProfileConfig, profile_cuts
from privpart.report import render_report
from privpart.selection import Constraints
from privpart.training import load_checkpoint
from privpart.ui import console

Opt = typer.Option


def _profile_cfg(
    trusted_threads: int,
    bandwidth: float,
    link_ms: float,
    slowdown: float,
    epc_mib: float,
    device: str,
) -> ProfileConfig:
    return ProfileConfig(
        trusted_threads=trusted_threads,
        bandwidth_mbit_s=bandwidth,
        link_latency_ms=link_ms,
        enclave_slowdown=slowdown,
        epc_bytes=int(epc_mib * 2**20),
        untrusted_device=device,
    )


def print_summary(r: AuditResult) -> None:
    table = Table(title=f"{r.model['arch']} on {r.data['dataset']}: {len(r.cuts)} cuts audited")
    table.add_column("cut")
    table.add_column("total ms", justify="right")
    for a in r.config["attacks"]:
        table.add_column(a, justify="right")
    table.add_column("verdict")
    for c in r.cuts:
        cells = []
        for a in r.config["attacks"]:
            m = c.attacks.get(a, {}).get("metrics", {})
            key = next((k for k in ("ssim", "accuracy", "feature_mae") if k in m), None)
            cells.append(f"{m[key]:.2f}" if key else "-")
        colour = {"selected": "green", "passes": "blue", "rejected": "red"}[c.verdict["status"]]
        table.add_row(
            c.name,
            f"{c.latency['total_ms']:.2f}",
            *cells,
            f"[{colour}]{c.verdict['status']}[/]: {c.verdict['reason']}",
        )
    console.print(table)
    sel = r.selection
    text = sel["summary"] + (
        f"\n[yellow]{sel['recommendation']}[/]" if sel["recommendation"] else ""
    )
    console.print(Panel(text, title="verdict", border_style="green" if r.selected_cut else "red"))


@app.command()
def audit(
    model: ModelArg = "vgg16",
    dataset: DatasetOpt = "fashion-mnist",
    out: Annotated[Path, Opt(help="output folder (results.json, index.html)")] = Path("runs/audit"),
    checkpoint: Annotated[
        Path | None, Opt(help="audit this checkpoint instead of training")
    ] = None,
    data_dir: DataDirOpt = None,
    cuts: Annotated[str, Opt(help="default (block boundaries), all, or a,b,c")] = "default",
    attacks: Annotated[
        str, Opt(help="comma-separated attacks")
    ] = "cgan,decoder,whitebox,attribute",
    attribute: Annotated[str | None, Opt(help="private attribute for the attribute attack")] = None,
    budget_scale: Annotated[float, Opt(help="multiply every attack's default budget")] = 1.0,
    train_limit: Annotated[int, Opt(help="training samples when no checkpoint is given")] = 12000,
    epochs: Annotated[int, Opt(min=1, help="training epochs when no checkpoint is given")] = 1,
    task: TaskOpt = None,
    seed: SeedOpt = 0,
    trusted_threads: Annotated[int, Opt(help="CPU threads for the head (the enclave)")] = 1,
    device: Annotated[str, Opt(help="tail device: auto, cpu, cuda")] = "auto",
    bandwidth: Annotated[float, Opt(help="link bandwidth, Mbit/s")] = 1000.0,
    link_ms: Annotated[float, Opt(help="link latency, ms")] = 0.5,
    enclave_slowdown: Annotated[
        float, Opt(help="multiply head latency (profiling outside an enclave); 1 = not applied")
    ] = 1.0,
    epc_mib: Annotated[float, Opt(help="enclave memory budget, MiB (SGX1: 93)")] = 93.0,
    max_ssim: Annotated[float, Opt(help="reconstruction SSIM above this breaks a cut")] = 0.4,
    max_attribute_advantage: Annotated[
        float, Opt(help="attribute accuracy above max(majority, task floor) + this breaks a cut")
    ] = 0.1,
    ignore_memory: Annotated[bool, Opt(help="do not reject cuts over the memory budget")] = False,
    defence: Annotated[
        str | None, Opt(help="audit a defended model: adversarial, nopeek or noise")
    ] = None,
    defence_cut: Annotated[str | None, Opt(help="the cut the defence protects")] = None,
    alpha: Annotated[float | None, Opt(help="defence: reconstruction / dCor weight")] = None,
    beta: Annotated[float | None, Opt(help="defence: attribute weight (adversarial)")] = None,
    sigma: Annotated[float | None, Opt(help="defence: relative noise std (noise)")] = None,
    private_attribute: Annotated[
        str | None, Opt(help="defence: attribute to hide (adversarial)")
    ] = None,
    defence_epochs: Annotated[int | None, Opt(help="defence: fine-tuning epochs")] = None,
    defence_limit: Annotated[int | None, Opt(help="defence: training samples")] = None,
    ray: Annotated[
        str | None,
        Opt(
            metavar="[ADDRESS]",
            help="run the attack jobs as Ray tasks: bare --ray starts a local Ray, or auto, "
            "ray://HOST:10001, HOST:6379 (docs/scale.md)",
        ),
    ] = None,
    ray_resources: Annotated[
        str | None, Opt(help="per Ray job, e.g. cpus=1,gpus=0.5 (default cpus=1)")
    ] = None,
) -> None:
    """The main job: train (or load) the target, attack and profile every cut, pick the cut.

    Writes OUT/results.json and OUT/index.html. Re-running with the same settings resumes:
    finished (cut, attack) results are reused. With --defence, the model is first fine-tuned
    with that defence at --defence-cut, then audited by fresh attackers.
    """
    params = defence_params(alpha, beta, sigma, private_attribute, defence_epochs, defence_limit)
    check_defence_options(defence, defence_cut, params)  # fail before any training
    cfg = AuditConfig(
        model=model,
        dataset=dataset,
        data_dir=str(data_dir) if data_dir else None,
        checkpoint=str(checkpoint) if checkpoint else None,
        cuts=cuts,
        attacks=[a.strip() for a in attacks.split(",") if a.strip()],
        attribute=attribute,
        budget_scale=budget_scale,
        train_limit=train_limit,
        train_epochs=epochs,
        task=task,
        seed=seed,
        profile=_profile_cfg(
            trusted_threads, bandwidth, link_ms, enclave_slowdown, epc_mib, device
        ),
        constraints=Constraints(
            max_ssim=max_ssim,
            max_attribute_advantage=max_attribute_advantage,
            memory_budget_bytes=int(epc_mib * 2**20),
            enforce_memory=not ignore_memory,
        ),
        defence=defence,
        defence_cut=defence_cut,
        defence_params=params,
    )
    executor = None
    if ray is not None:
        from privpart.audit.executors import EXECUTORS
        from privpart.cluster import Resources

        executor = EXECUTORS.get("ray")(ray, Resources.parse(ray_resources))
    result = Auditor(cfg, out, executor=executor).run()
    page = render_report(out / "results.json")
    print_summary(result)
    console.print(
        f"report: [link=file://{page.resolve()}]{page}[/link]  results: {out}/results.json"
    )


@app.command()
def profile(
    checkpoint: Annotated[Path, Opt(help="checkpoint folder")],
    cuts: Annotated[str, Opt(help="default, all, or a,b,c")] = "default",
    trusted_threads: Annotated[int, Opt()] = 1,
    device: Annotated[str, Opt(help="tail device: auto, cpu, cuda")] = "auto",
    bandwidth: Annotated[float, Opt(help="Mbit/s")] = 1000.0,
    link_ms: Annotated[float, Opt()] = 0.5,
    enclave_slowdown: Annotated[float, Opt()] = 1.0,
    epc_mib: Annotated[float, Opt()] = 93.0,
    repeats: Annotated[int, Opt(min=3)] = 15,
    as_json: Annotated[bool, Opt("--json")] = False,
) -> None:
    """Latency (head / transfer / tail) and head memory of each cut, without attacking."""
    net, meta = load_checkpoint(checkpoint)
    part = Partition(net, tuple(meta["input_shape"]))
    base = _profile_cfg(trusted_threads, bandwidth, link_ms, enclave_slowdown, epc_mib, device)
    cfg = ProfileConfig(**{**base.to_dict(), "repeats": repeats})
    prof = profile_cuts(part, resolve_cuts(part, cuts), cfg, show_progress=not as_json)
    if as_json:
        print(json.dumps(prof.to_dict(), indent=2))
        return
    table = Table(title=f"{meta['spec']['arch']} latency per cut (ms, median)")
    for col in ("cut", "head", "transfer", "tail", "total", "head memory", "fits EPC"):
        table.add_column(col, justify="left" if col == "cut" else "right")
    rows = [*prof.cuts.values(), prof.whole_trusted, prof.whole_untrusted]
    labels = [*prof.cuts, "whole model trusted", "whole model untrusted"]
    for label, p in zip(labels, rows, strict=True):
        table.add_row(
            label,
            f"{p.head_ms:.2f}",
            f"{p.transfer_ms:.2f}",
            f"{p.tail.median_ms:.2f}",
            f"{p.total_ms:.2f}",
            f"{p.head_memory['total'] / 2**20:.1f} MiB",
            "yes" if p.fits_epc else "[red]no[/]",
        )
    console.print(table)
    if enclave_slowdown == 1.0:
        console.print("enclave slowdown factor: not applied (measured on this CPU)")


@app.command()
def report(
    results: Annotated[Path, typer.Argument(help="results.json of an audit")],
    out: Annotated[Path | None, Opt(help="folder to write (default: beside results.json)")] = None,
) -> None:
    """Re-render the HTML report from a results.json."""
    page = render_report(results, out)
    console.print(f"report: {page}")
