"""`privpart audit` (the main job), `privpart profile` and `privpart report`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from privpart import api
from privpart.attacks import ATTACKS, DEFAULT_ATTACKS
from privpart.auditing import AuditResult, resolve_cuts
from privpart.auditing.config import (
    AttackOptions,
    DefenceOptions,
    ExecutionOptions,
    SearchOptions,
    TargetOptions,
)
from privpart.auditing.proposal import LADDERS, SearchSettings, propose_defence
from privpart.auditing.results import CutReport, DefenceProposal
from privpart.cli.application import app
from privpart.cli.defend import DEFENCE_PARAMS, TRAINING_KNOBS, check_defence_options
from privpart.cli.options import (
    NORMALIZE_HELP,
    AttributesOpt,
    DataDirOpt,
    DatasetOpt,
    DeviceOpt,
    ModelArg,
    SeedOpt,
    TaskOpt,
    TrustCodeOpt,
)
from privpart.cli.params import parse_assignments, with_limits, with_params
from privpart.errors import PrivpartError
from privpart.hardware import SGX1_EPC_MIB
from privpart.metrics import limit_options
from privpart.partition import Partition
from privpart.profiling import ProfileConfig, profile_cuts
from privpart.report import render_report
from privpart.report.render import judged_figures
from privpart.selection import Constraints, Status
from privpart.training import load_checkpoint
from privpart.ui import console

Opt = typer.Option


def _profile_cfg(
    trusted_threads: int,
    bandwidth: float,
    link_ms: float,
    slowdown: float,
    device: str,
) -> ProfileConfig:
    return ProfileConfig(
        trusted_threads=trusted_threads,
        bandwidth_mbit_s=bandwidth,
        link_latency_ms=link_ms,
        enclave_slowdown=slowdown,
        untrusted_device=device,
    )


WIDE_COLUMNS = 160  # from this terminal width on, the summary shows every figure


def print_summary(r: AuditResult, wide: bool | None = None) -> None:
    """One line per cut (name, ms, verdict, the figure that decided it) on a normal terminal;
    every attack's figures on a wide one or with --wide. Everything else is in the report."""
    wide = r.config.wide if wide is None else wide
    if wide or console.width >= WIDE_COLUMNS:
        _print_table(r)
    else:
        _print_lines(r)
    if r.search is not None:
        s = r.search
        attacked = list(dict.fromkeys(s.probes))
        line = (f"{s.mode} search: attacked {len(attacked)} of {len(r.cuts)} cuts in "
                f"{s.attack_runs} attack run{'s' if s.attack_runs != 1 else ''}")  # fmt: skip
        if len(attacked) < len(r.cuts) or s.figures != "all":
            line += "; for every figure: --search exhaustive --figures all"
        console.print(escape(line))
        if s.note:
            console.print(f"[yellow]{escape(s.note)}[/]")
    for attack, why in {a: w for c in r.cuts for a, w in c.skipped.items()}.items():
        console.print(f"[yellow]not run:[/] {attack}: {escape(why)}")
    sel = r.selection
    text = escape(sel.summary) + (
        f"\n[yellow]{escape(sel.recommendation)}[/]" if sel.recommendation else ""
    )
    console.print(Panel(text, title="verdict", border_style="green" if r.selected_cut else "red"))


COLOURS = {Status.SELECTED: "green", Status.PASSES: "blue", Status.REJECTED: "red"}
CERTIFIED_NOTE = (
    "attack figures are empirical (the best attack tried: a lower bound on leakage); "
    "'certified' is a Fisher-information bound that holds for every unbiased attacker "
    "(attackers with an image prior may go below it)"
)


def deciding(c: CutReport) -> str:
    """The one figure (or implication) that decided a cut's verdict, in words."""
    v = c.verdict
    implied = v.implied_breach
    if implied is not None and not v.breaches:
        return implied.text
    worst = v.worst
    if worst is None:
        return "no attack breaks it" if c.attacks else "-"
    return ("closest: " if not v.breaches else "") + worst.text


def _print_lines(r: AuditResult) -> None:
    """A table that fits 80 columns: cut and verdict never wrap, the figure folds."""
    table = Table(title=f"{r.model['arch']} on {r.data['dataset']}: {len(r.cuts)} cuts",
                  title_justify="left", pad_edge=False, box=None)  # fmt: skip
    table.add_column("cut", no_wrap=True)
    table.add_column("ms", justify="right", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("deciding figure", overflow="fold", ratio=1)
    for c in r.cuts:
        v = c.verdict
        tag = " (implied)" if c.implied else " (borderline)" if v.borderline else ""
        bound = "" if c.certified is None else f"; certified MSE>={c.certified.mse_floor:.3g}"
        table.add_row(c.name, f"{c.latency.total_ms:.2f}",
                      f"[{COLOURS[v.status]}]{v.status.value}[/]{tag}",
                      escape(deciding(c) + bound))  # fmt: skip
    console.print(table)
    if any(c.certified for c in r.cuts):
        console.print(CERTIFIED_NOTE)


def _print_table(r: AuditResult) -> None:
    """Every attack's headline figure with its interval, per cut."""
    ran = [a for a in dict.fromkeys([*r.config.attacks, *(a for c in r.cuts for a in c.attacks)])
           if any(a in c.attacks for c in r.cuts)]  # fmt: skip
    table = Table(title=f"{r.model['arch']} on {r.data['dataset']}: {len(r.cuts)} cuts audited")
    table.add_column("cut")
    table.add_column("total ms", justify="right")
    for a in ran:
        table.add_column(a, justify="right")
    certified = any(c.certified for c in r.cuts)
    if certified:
        table.add_column("certified", justify="right")
    table.add_column("verdict")
    for c in r.cuts:
        cells = []
        for a in ran:
            cells.append("\n".join(judged_figures(c.attacks[a])) if a in c.attacks else "-")
        if certified:
            b = c.certified
            floor = None if b is None else f"MSE>={b.mse_floor:.3g}\nPSNR<={b.psnr_ceiling_db:.1f}"
            cells.append(floor or "-")
        v = c.verdict
        tag = " [yellow](borderline)[/]" if v.borderline else ""
        table.add_row(
            c.name,
            f"{c.latency.total_ms:.2f}",
            *cells,
            f"[{COLOURS[v.status]}]{v.status.value}[/]{tag}: {escape(v.short)}",
        )
    console.print(table)
    if certified:
        console.print(CERTIFIED_NOTE)


def print_proposal(p: DefenceProposal) -> None:
    """Every defended head the search tried, and the proposal (or what came closest)."""
    table = Table(title="defence search (each defended head audited by fresh attackers)")
    for col in ("cut", "defence", "accuracy cost", "certified MSE floor", "outcome"):
        table.add_column(col, overflow="fold")
    for t in p.trials:
        cost = "-" if t.accuracy_cost is None else f"{t.accuracy_cost:+.1f} pts"
        floor = "-" if t.certified is None else f">= {t.certified.mse_floor:.3g}"
        strength = ", ".join(f"{k} {v}" for k, v in t.params.items())
        table.add_row(t.served_cut, f"{t.method} ({strength})", cost, floor,
                      f"{t.outcome}: {escape(t.reason)}")  # fmt: skip
    console.print(table)
    console.print(f"search: {p.spent_minutes:.1f} of {p.budget_minutes:g} min")
    style = "green" if p.chosen else "red"
    console.print(Panel(escape(p.summary), title="defence proposal", border_style=style))


@app.command()
@with_params(DEFENCE_PARAMS, dest="defence_params", prefix="defence", prefixed=TRAINING_KNOBS)
@with_limits(limit_options(), dest="maxima")
def audit(
    model: ModelArg = "vgg16",
    dataset: DatasetOpt = "fashion-mnist",
    out: Annotated[Path, Opt(help="output folder (results.json, index.html)")] = Path("runs/audit"),
    checkpoint: Annotated[
        Path | None, Opt(help="audit this checkpoint instead of training")
    ] = None,
    data_dir: DataDirOpt = None,
    cuts: Annotated[str, Opt(help="default (block boundaries), all, or a,b,c")] = "default",
    attacks: Annotated[str, Opt(help="comma-separated attacks")] = ",".join(DEFAULT_ATTACKS),
    attack_param: Annotated[
        list[str] | None,
        Opt(help="an attack's parameter, ATTACK.NAME=VALUE (repeatable), e.g. decoder.lr=0.001"),
    ] = None,
    attribute: Annotated[str | None, Opt(help="private attribute for the attribute attack")] = None,
    budget_scale: Annotated[float, Opt(help="multiply every attack's default budget")] = 1.0,
    attack_steps: Annotated[
        int | None,
        Opt(help="exactly this many steps for every attack, no clock (reproducible runs)"),
    ] = None,
    train_limit: Annotated[
        int | None,
        Opt(
            min=1,
            help="train on exactly this many samples (default: what the split rule "
            "leaves, at most 12,000)",
        ),
    ] = None,
    max_train: Annotated[
        int, Opt(min=1, help="the most training samples the split rule takes")
    ] = 12000,
    epochs: Annotated[int, Opt(min=1, help="training epochs when no checkpoint is given")] = 1,
    weights: Annotated[
        Path | None,
        Opt(
            help="local torchvision-format weights of MODEL: audited as they are with "
            "--no-train (own classifier and input size), else where training starts"
        ),
    ] = None,
    train: Annotated[
        bool,
        Opt(help="--no-train: audit --weights as they are (privpart import), no training"),
    ] = True,
    attributes: AttributesOpt = None,
    normalize: Annotated[str, Opt(help=NORMALIZE_HELP)] = "auto",
    aux: Annotated[
        int | None,
        Opt(min=1, help="attacker-auxiliary samples (default min(2000, 1/3 of the training side))"),
    ] = None,
    victim: Annotated[
        int | None, Opt(min=1, help="victim samples (default min(256, 1/3 of the test side))")
    ] = None,
    allow_weak_target: Annotated[
        bool, Opt(help="audit a target whose test accuracy is near chance instead of stopping")
    ] = False,
    feature_memory: Annotated[
        float | None,
        Opt(
            min=0.01,
            help="GiB of features one pass keeps when a batch of cuts is attacked "
            "(--search exhaustive --figures all); default: one cut at a time, the least memory",
        ),
    ] = None,
    task: TaskOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    search: Annotated[
        str,
        Opt(
            help="monotone: attack the deepest cut, then bisect (a breach implies every "
            "shallower cut broken; needs a white-box attack); exhaustive: attack every cut"
        ),
    ] = "monotone",
    figures: Annotated[
        str,
        Opt(help="verdict: stop attacking a cut at a clear breach; all: every attack's figures"),
    ] = "verdict",
    wide: Annotated[
        bool, Opt(help="show every attack's figures in the terminal (default: when it is wide)")
    ] = False,
    confirm: Annotated[
        bool, Opt(help="re-run the strongest attack with another seed on borderline cuts")
    ] = False,
    adaptive: Annotated[
        bool, Opt(help="on a defended checkpoint, also run the attacks that know its defence")
    ] = True,
    trusted_threads: Annotated[int, Opt(help="CPU threads for the head (the enclave)")] = 1,
    bandwidth: Annotated[float, Opt(help="link bandwidth, Mbit/s")] = 1000.0,
    link_ms: Annotated[float, Opt(help="link latency, ms")] = 0.5,
    enclave_slowdown: Annotated[
        float, Opt(help="multiply head latency (profiling outside an enclave); 1 = not applied")
    ] = 1.0,
    epc_mib: Annotated[
        float, Opt(help=f"enclave memory budget, MiB (SGX1: {SGX1_EPC_MIB})")
    ] = SGX1_EPC_MIB,
    ignore_memory: Annotated[bool, Opt(help="do not reject cuts over the memory budget")] = False,
    defence: Annotated[
        str | None, Opt(help=f"audit a defended model: {', '.join(DEFENCE_PARAMS)}")
    ] = None,
    defence_cut: Annotated[str | None, Opt(help="the cut the defence protects")] = None,
    defend: Annotated[
        bool,
        Opt(
            "--defend",
            help="when no cut passes, search defences at the fastest cuts (trains and audits "
            "defended heads; bounded by --defend-minutes) and propose the fastest that passes",
        ),
    ] = False,
    defend_methods: Annotated[
        str, Opt(help=f"defences the search tries, from: {', '.join(LADDERS)}")
    ] = "bottleneck",
    defend_cuts: Annotated[int, Opt(min=1, help="how many of the fastest cuts to defend")] = 2,
    defend_minutes: Annotated[
        float, Opt(help="clock budget of the defence search, minutes")
    ] = 60.0,
    max_accuracy_drop: Annotated[
        float, Opt(help="test-accuracy points a proposed defence may cost")
    ] = 2.0,
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
    trust_code: TrustCodeOpt = False,
    defence_params: dict[str, Any] | None = None,
    maxima: dict[str, float] | None = None,
) -> None:
    """The main job: train (or load) the target, attack and profile every cut, pick the cut.

    Writes OUT/results.json and OUT/index.html. Re-running with the same settings resumes:
    finished (cut, attack) results are reused. With --defence, the model is first fine-tuned
    with that defence at --defence-cut, then audited by fresh attackers.
    """
    params = defence_params or {}
    defending = None  # the defence search after a failed audit (--defend)
    if defend:
        if defence:
            raise PrivpartError(
                "--defend searches defences itself, and --defence names one",
                "give --defend to search, or --defence METHOD --defence-cut CUT to audit one",
            )
        knobs = {k: v for k, v in params.items() if k in TRAINING_KNOBS}
        strengths = sorted(set(params) - set(knobs))
        if strengths:
            raise PrivpartError(
                "--defend sets each defence's strength itself; drop "
                + ", ".join("--" + k.replace("_", "-") for k in strengths),
                "training knobs (--defence-epochs, --defence-limit, ...) are allowed",
            )
        defending = SearchSettings(
            methods=tuple(m.strip() for m in defend_methods.split(",") if m.strip()),
            cuts=defend_cuts, minutes=defend_minutes, max_accuracy_drop=max_accuracy_drop,
            training=knobs,
        )  # fmt: skip
        defending.check()  # fail before any training
        params = {}
    check_defence_options(defence, defence_cut, params)  # fail before any training
    names = [a.strip() for a in attacks.split(",") if a.strip()]
    per_attack = parse_assignments(
        attack_param or [], {a: ATTACKS.get(a).params for a in names}, "--attack-param"
    )
    executor = None
    if ray is not None:
        from privpart.auditing.executors import EXECUTORS
        from privpart.cluster import Resources

        executor = EXECUTORS.get("ray")(ray, Resources.parse(ray_resources))
    constraints = Constraints.from_options(
        maxima or {},
        memory_budget_bytes=int(epc_mib * 2**20),
        enforce_memory=not ignore_memory,
    )
    result = api.audit(
        checkpoint if checkpoint is not None else model,
        None if checkpoint is not None else dataset,  # a checkpoint brings its own data
        out=out,
        cuts=cuts,
        attacks=names,
        seed=seed,
        device=device,
        target=TargetOptions(
            data_dir=data_dir,
            task=task,
            train_limit=train_limit,
            max_train=max_train,
            train_epochs=epochs,
            n_aux=aux,
            n_victim=victim,
            weights=weights,
            train=train,
            attributes=attributes,
            normalize=normalize,
            allow_weak_target=allow_weak_target,
        ),
        attack=AttackOptions(
            attack_params=per_attack,
            attribute=attribute,
            budget_scale=budget_scale,
            attack_steps=attack_steps,
            confirm=confirm,
            adaptive=adaptive,
        ),
        search=SearchOptions(search=search, figures=figures),
        limits=constraints,
        profile=_profile_cfg(
            trusted_threads, bandwidth, link_ms, enclave_slowdown, device
        ),
        defence=DefenceOptions(defence=defence, defence_cut=defence_cut, defence_params=params),
        execution=ExecutionOptions(feature_memory_gib=feature_memory, wide=wide),
        executor=executor,
        show_progress=True,
        trust_code=trust_code,
    )
    print_summary(result)
    if defending is not None and result.selected_cut is None:
        console.rule("no cut passes: searching defences (--defend)")
        result.proposal = propose_defence(
            result, result.config, out, defending, say=console.print,
            trust_code=trust_code or checkpoint is None,  # as the audit itself loaded it
        )  # fmt: skip
        result.save(out / "results.json")
        print_proposal(result.proposal)
    elif defending is not None:
        console.print(f"--defend: not needed, {result.selected_cut} passes undefended")
    page = render_report(out / "results.json")
    console.print(
        f"report: [link=file://{page.resolve()}]{page}[/link]  results: {out}/results.json"
    )


@app.command()
def profile(
    checkpoint: Annotated[Path, Opt(help="checkpoint folder")],
    cuts: Annotated[str, Opt(help="default, all, or a,b,c")] = "default",
    trusted_threads: Annotated[int, Opt()] = 1,
    device: Annotated[str, Opt(help="tail device: auto, cpu, cuda[:N]")] = "auto",
    bandwidth: Annotated[float, Opt(help="Mbit/s")] = 1000.0,
    link_ms: Annotated[float, Opt()] = 0.5,
    enclave_slowdown: Annotated[float, Opt()] = 1.0,
    epc_mib: Annotated[float, Opt()] = SGX1_EPC_MIB,
    repeats: Annotated[int, Opt(min=3)] = 15,
    as_json: Annotated[bool, Opt("--json")] = False,
    trust_code: TrustCodeOpt = False,
) -> None:
    """Latency (head / transfer / tail) and head memory of each cut, without attacking."""
    net, meta = load_checkpoint(checkpoint, trust_code=trust_code)
    part = Partition(net, tuple(meta["input_shape"]))
    base = _profile_cfg(trusted_threads, bandwidth, link_ms, enclave_slowdown, device)
    budget = int(epc_mib * 2**20)  # what Constraints.memory_budget_bytes would be
    cfg = ProfileConfig(**{**base.to_dict(), "repeats": repeats})
    prof = profile_cuts(part, resolve_cuts(part, cuts), cfg, show_progress=not as_json)
    if as_json:
        print(json.dumps({**prof.to_dict(), "memory_budget_bytes": budget}, indent=2))
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
            "yes" if p.fits(budget) else "[red]no[/]",
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
