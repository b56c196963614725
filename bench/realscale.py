"""The setting privpart's users deploy: 224-px RGB images on disk, torchvision models, a GPU if
there is one. Writes a generated ImageFolder (N JPEGs at 224 px + attributes.csv), then for
VGG-16, ResNet-50 and EfficientNet-B0:

- peak resident memory of the data path as N grows (list N files, read the attributes file,
  split by the default rule, stream a fixed number of images through the model): must stay flat
  within 10% from 2k to 20k images; beside it, what the old eager loader (every image decoded
  into one tensor) took for the smallest N;
- feature-extraction throughput (images/s through the whole model, streamed from disk);
- attack steps/s per default cut, and one full default ResNet-50 audit at 224 px with 1000-class
  torchvision-format weights given (`--phase audit`; see `audit_phase`).

Every measurement of memory runs in a fresh process (`_probe`), so peaks do not carry over.
Run: .venv/bin/python bench/realscale.py [--sizes 2000 5000 20000] [--device auto]
     [--phase data memory attacks audit] [--root runs/realscale]
It runs unchanged on a CUDA machine (`--device auto` picks the GPU; the head's latency is still
profiled on the CPU). Results: bench/results/realscale{,_cuda}.{md,json}.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from _common import RESULTS, machine, plural, run_child, write

MODELS = ("vgg16", "resnet50", "efficientnet_b0")
SIZE = 224
CLASSES = 10
STREAM_IMAGES = 64  # images streamed through the model in every memory probe (same for all N)
BATCH = 32


def _peak_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: KiB


# -- data -----------------------------------------------------------------------------------
def folder_for(root: Path, n: int) -> Path:
    return root / f"images-{n}"


def make_folders(root: Path, sizes: list[int]) -> dict:
    """The largest folder is written once; smaller ones hard-link its first files."""
    from privpart.data.synthetic import write_image_folder

    biggest = folder_for(root, max(sizes))
    t = time.perf_counter()
    if not (biggest / "attributes.csv").is_file():
        write_image_folder(biggest, max(sizes), classes=CLASSES, size=SIZE, fmt="jpg", seed=0)
    written = time.perf_counter() - t
    rows = (biggest / "attributes.csv").read_text().splitlines()
    for n in sizes:
        folder = folder_for(root, n)
        if n == max(sizes) or (folder / "attributes.csv").is_file():
            continue
        keep = rows[1 : n + 1]
        for line in keep:
            rel = line.split(",")[0]
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            if not (folder / rel).exists():
                os.link(biggest / rel, folder / rel)
        (folder / "attributes.csv").write_text("\n".join([rows[0], *keep]) + "\n")
    disk = sum(f.stat().st_size for f in biggest.rglob("*.jpg"))
    return {"images": max(sizes), "disk_mib": disk / 2**20, "write_seconds": written}


# -- one probe (a fresh process) ----------------------------------------------------------------
def probe(model_name: str, n: int, root: Path, device: str, eager: bool) -> dict:
    """Peak RSS of the data path for N images, and streamed images/s through the model."""
    from privpart.data import load_dataset, make_splits
    from privpart.data.loading import chunks, default_workers
    from privpart.device import resolve_device, synchronize
    from privpart.models import IMAGENET, ModelSpec, build_model

    dev = resolve_device(device)
    folder = folder_for(root, n)
    base = _peak_mib(resource.RUSAGE_SELF)
    ds = load_dataset(f"imagefolder:{folder}@{SIZE}", attributes=folder / "attributes.csv")
    splits = make_splits(ds, seed=0)
    if eager:  # what `imagefolder:` did before streaming: every image in one uint8 tensor
        everything = ds.store.batch(torch.arange(len(ds)), (SIZE, SIZE))
        return {
            "n": n,
            "eager_tensor_mib": everything.numel() / 2**20,
            "peak_rss_mib": _peak_mib(resource.RUSAGE_SELF),
            "baseline_rss_mib": base,
        }
    model = build_model(ModelSpec(model_name, 3, 1000, (SIZE, SIZE), IMAGENET)).eval().to(dev)
    index = torch.cat([splits.victim, splits.target_test])[:STREAM_IMAGES]
    seen, start = 0, None
    loader = ds.loader(chunks(index, BATCH), (SIZE, SIZE), dev)
    with torch.no_grad():
        for x, idx in loader:
            model(x)
            if start is None:  # the first batch pays for worker start-up and kernel choice
                synchronize(dev)
                start = time.perf_counter()
                continue
            seen += idx.numel()
    synchronize(dev)
    seconds = time.perf_counter() - start
    del loader
    gc.collect()
    return {
        "n": n,
        "splits": splits.sizes(),
        "images_per_s": seen / seconds,
        "peak_rss_mib": _peak_mib(resource.RUSAGE_SELF),
        "worker_peak_rss_mib": _peak_mib(resource.RUSAGE_CHILDREN),
        "baseline_rss_mib": base,
        "device": str(dev),
        "workers": default_workers(),
    }


def run_probe(model: str, n: int, root: Path, device: str, eager: bool = False) -> dict:
    cmd = [sys.executable, __file__, "_probe", "--model", model, "--n", str(n),
           "--root", str(root), "--device", device] + (["--eager"] if eager else [])  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"probe {model} n={n} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_phase(root: Path, sizes: list[int], models: list[str], device: str) -> dict:
    rows: dict[str, list[dict]] = {}
    for model in models:
        rows[model] = []
        for n in sizes:
            r = run_probe(model, n, root, device)
            print(f"{model} n={n}: peak {r['peak_rss_mib']:.0f} MiB, "
                  f"{r['images_per_s']:.1f} img/s", flush=True)  # fmt: skip
            rows[model].append(r)
    eager = run_probe("resnet50", min(sizes), root, device, eager=True)
    return {"models": rows, "eager": eager}


# -- attacks: steps/s per default cut ---------------------------------------------------------
ATTACK_STEPS = 3
ATTACK_AUX, ATTACK_VICTIMS = 32, 8


def attacks_phase(root: Path, n: int, models: list[str], device: str) -> dict:
    """Each attack for ATTACK_STEPS steps at every default cut (random ImageNet-format weights;
    speed does not depend on the weights): wall seconds per step, fit + run + scoring."""
    from privpart.attacks import DEFAULT_ATTACKS, compute_feature_sets
    from privpart.auditing.cutpick import block_boundary_cuts
    from privpart.data import load_dataset
    from privpart.device import resolve_device
    from privpart.models import IMAGENET, ModelSpec, build_model
    from privpart.training import Target

    dev = resolve_device(device)
    folder = folder_for(root, n)
    ds = load_dataset(f"imagefolder:{folder}@{SIZE}", attributes=folder / "attributes.csv")
    out: dict[str, dict] = {}
    for model_name in models:
        torch.manual_seed(0)
        model = build_model(ModelSpec(model_name, 3, CLASSES, (SIZE, SIZE), IMAGENET))
        target = Target.from_module(model, ds, (3, SIZE, SIZE), n_aux=ATTACK_AUX,
                                    n_victim=ATTACK_VICTIMS)  # fmt: skip
        cuts = block_boundary_cuts(target.partition)
        t = time.perf_counter()
        sets = compute_feature_sets(target.partition, ds, target.splits, cuts, (SIZE, SIZE),
                                    batch_size=BATCH, show_progress=False, device=dev)  # fmt: skip
        feature_s = time.perf_counter() - t
        rows = {}
        for cut in cuts:
            rows[cut.name] = {}
            for attack in DEFAULT_ATTACKS:
                rows[cut.name][attack] = attack_rate(attack, sets[cut.name], dev)
            print(f"{model_name} {cut.name}: " + ", ".join(
                f"{a} {v:.2f}/s" for a, v in rows[cut.name].items()), flush=True)  # fmt: skip
        out[model_name] = {"steps_per_s": rows, "feature_seconds": feature_s,
                           "feature_images": ATTACK_AUX + ATTACK_VICTIMS}  # fmt: skip
        del sets
    return {"steps": ATTACK_STEPS, "aux": ATTACK_AUX, "victims": ATTACK_VICTIMS, "models": out}


def attack_rate(name: str, fs, dev: torch.device) -> float:  # noqa: ANN001 (FeatureSet)
    """Steps per second of one attack's optimisation loop: `fit` for the trained attacks (with
    their periodic validation), `run` for the white-box inversion (its steps are there)."""
    from privpart.attacks import AttackerView, Budget, make_attack
    from privpart.device import synchronize

    params = {"attribute": "tint"} if name == "attribute" else {}
    attack = make_attack(name, Budget(steps=ATTACK_STEPS), 0, **params)
    view = AttackerView.of(fs, attack.threat_model)
    synchronize(dev)
    t0 = time.perf_counter()
    attack.fit(view)
    attack.fitted = True
    synchronize(dev)
    t1 = time.perf_counter()
    attack.run(view)
    synchronize(dev)
    t2 = time.perf_counter()
    return ATTACK_STEPS / ((t2 - t1) if name == "whitebox" else (t1 - t0))


# -- one full default audit ------------------------------------------------------------------
def audit_phase(root: Path, n: int, device: str, out: Path, cuts: str = "default") -> dict:
    """`privpart audit resnet50 --weights FILE --no-train ...` at 224 px with the defaults (cuts,
    all four attacks, attack budgets, split sizes, search), timed end to end as a user runs it;
    `cuts="all"` audits every legal cut instead of the block boundaries. The
    weights are a 1000-class torchvision-format state dict (random: nothing can be downloaded
    here; speed does not depend on the values), so the target is near chance and the audit runs
    with --allow-weak-target."""
    import shutil

    weights = root / "resnet50-imagenet-format.pth"
    if not weights.is_file():
        import torchvision

        torch.manual_seed(0)
        torch.save(torchvision.models.resnet50(weights=None).state_dict(), weights)
    folder = folder_for(root, n)
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-c", "from privpart.cli import main; main()", "audit", "resnet50",
           "--weights", str(weights), "--no-train", "--dataset", f"imagefolder:{folder}@{SIZE}",
           "--attributes", str(folder / "attributes.csv"), "--allow-weak-target",
           "--device", device, "--out", str(out)]  # fmt: skip
    if cuts != "default":
        cmd += ["--cuts", cuts]
    log = out.parent / f"{out.name}.log"
    out.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as sink:
        child = run_child(cmd, stdout=sink)
    if child.returncode != 0:
        raise RuntimeError(f"audit failed ({child.returncode}):\n{log.read_text()[-4000:]}")
    result = json.loads((out / "results.json").read_text())
    names = [c["cut"]["name"] for c in result["cuts"]]
    search = result.get("search", {})
    return {
        "command": " ".join(["privpart", *cmd[3:]]),
        "cut_set": cuts,
        "search": search.get("mode"),
        "attack_runs": search.get("attack_runs"),
        "attacked_cuts": sum(1 for c in result["cuts"] if c["attacks"]),
        "n": n,
        "wall_minutes": child.wall_seconds / 60,
        "stage_minutes": {k: v / 60 for k, v in result["stage_seconds"].items()},
        "cuts": names,
        "attacks": result["config"]["attacks"],
        "split_sizes": result["data"]["split_sizes"],
        "selected_cut": result["selection"].get("selected"),
        "peak_rss_mib": child.peak_rss_mib,
        "device": device,
    }


# -- report ---------------------------------------------------------------------------------
def flatness(rows: list[dict]) -> float:
    peaks = [r["peak_rss_mib"] for r in rows]
    return max(peaks) / min(peaks) - 1


def report(data: dict) -> str:
    m = data["machine"]
    gpu = m["cuda"] or "none"
    lines = [
        f"# Real-scale setting: {SIZE}-px RGB ImageFolder, torchvision models ({data['device']})",
        "",
        f"machine: {m}",
        "",
        f"GPU: {gpu}."
        + (
            ""
            if m["cuda"]
            else " No GPU run was possible on this machine; the "
            "same script runs unchanged on a CUDA host (`--device auto`)."
        ),
        "",
        f"data: {data['data']['images']} generated JPEGs at {SIZE}x{SIZE} "
        f"({data['data']['disk_mib']:.0f} MiB on disk, {CLASSES} classes, attributes.csv with "
        "a per-image `tint`); smaller N are hard-linked subsets.",
        "",
    ]
    mem = data.get("memory")
    if mem:
        sizes = [r["n"] for r in next(iter(mem["models"].values()))]
        lines += [
            "## Peak resident memory of the data path as N grows",
            "",
            f"Each cell: a fresh process lists N files, reads attributes.csv, splits by the "
            f"default rule, and streams {STREAM_IMAGES} images (victims, then target-test) "
            f"through the model in batches of {BATCH} with DataLoader workers. Peak RSS of the "
            "main process (workers in brackets).",
            "",
            "| model | " + " | ".join(f"N = {n:,}" for n in sizes) + " | spread | flat (<= 10%) |"
            " images/s |",
            "| --- | " + " | ".join("---" for _ in sizes) + " | --- | --- | --- |",
        ]
        for model, rows in mem["models"].items():
            cells = [f"{r['peak_rss_mib']:.0f} MiB ({r['worker_peak_rss_mib']:.0f})" for r in rows]
            spread = flatness(rows)
            rate = sum(r["images_per_s"] for r in rows) / len(rows)
            lines.append(
                f"| {model} | {' | '.join(cells)} | {spread:+.1%} | "
                f"{'yes' if spread <= 0.10 else 'NO'} | {rate:.1f} |"
            )
        e = mem["eager"]
        lines += [
            "",
            f"The eager loader privpart had before (every image decoded into one uint8 tensor) "
            f"needs {e['eager_tensor_mib']:.0f} MiB for the images alone at N = {e['n']:,} "
            f"(measured peak RSS {e['peak_rss_mib']:.0f} MiB, no model loaded) and grows "
            f"linearly: {e['eager_tensor_mib'] * max(sizes) / e['n']:.0f} MiB at N = "
            f"{max(sizes):,}.",
            "",
            "images/s: feature extraction, whole model in eval mode, fp32, streamed from disk "
            "(mean over the N columns; the first batch, which pays for worker start-up, is "
            "not counted).",
            "",
        ]
    att = data.get("attacks")
    if att:
        lines += [
            "## Attack steps per second at each default cut",
            "",
            f"Steps per second of each attack's optimisation loop over {att['steps']} steps "
            f"({att['aux']} aux, {att['victims']} victims; the trained attacks' fit with its "
            "periodic validation, the white-box inversion's run). What the default budgets buy: "
            "40 s (cgan), 30 s (decoder, whitebox) and 10 s (attribute) times these rates.",
            "",
        ]
        for model, r in att["models"].items():
            names = list(next(iter(r["steps_per_s"].values())))
            lines += [
                f"**{model}** (features of {r['feature_images']} images for all cuts: "
                f"{r['feature_seconds']:.0f} s)",
                "",
                "| cut | " + " | ".join(names) + " |",
                "| --- | " + " | ".join("---" for _ in names) + " |",
            ]
            for cut, row in r["steps_per_s"].items():
                lines.append(f"| {cut} | " + " | ".join(f"{row[a]:.2f}" for a in names) + " |")
            lines.append("")
    auds = data.get("audit")
    if isinstance(auds, dict):  # written before the cut set was recorded: the default cuts
        auds = [{**auds, "cut_set": "default"}]
    for aud in auds or []:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in aud["stage_minutes"].items() if k != "total")
        shown = ", ".join(aud["cuts"]) if len(aud["cuts"]) <= 8 else f"{aud['cuts'][0]} ... "
        search = (
            f"{aud['search']} search, {plural(aud['attack_runs'], 'attack run')} at "
            f"{aud['attacked_cuts']} of the cuts; "
            if aud.get("search")
            else ""
        )
        lines += [
            f"## A full ResNet-50 audit at 224 px, {aud['cut_set']} cuts",
            "",
            f"`{aud['command']}`",
            "",
            f"wall time **{aud['wall_minutes']:.1f} min** on {aud['device']} ({stages} min); "
            f"{len(aud['cuts'])} cuts ({shown}), attacks {', '.join(aud['attacks'])}, default "
            f"budgets; {search}splits {aud['split_sizes']} (N = {aud['n']:,}); peak RSS "
            f"**{aud['peak_rss_mib']:.0f} MiB** (the audit process and its children); selected: "
            f"{aud['selected_cut'] or 'keep the whole model trusted'}.",
            "",
        ]
    for extra in data.get("sections", []):
        lines += [extra, ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="*", default=[2000, 5000, 20000])
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--root", type=Path, default=Path("runs/realscale"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--phase", nargs="*", default=["data", "memory", "attacks", "audit"])
    ap.add_argument("--audit-n", type=int, help="images in the audited folder (default: most)")
    ap.add_argument(
        "--audit-cuts",
        nargs="*",
        default=["default"],
        help="cut sets to audit, one audit each: default (block boundaries), all",
    )
    args = ap.parse_args()
    from privpart.device import resolve_device

    dev = resolve_device(args.device)
    name = "realscale" if dev.type == "cpu" else "realscale_cuda"
    previous = RESULTS / f"{name}.json"
    data = json.loads(previous.read_text()) if previous.is_file() else {}
    data.update({"machine": machine(), "device": str(dev), "sizes": args.sizes})
    data["data"] = make_folders(args.root, args.sizes)
    if "memory" in args.phase:
        data["memory"] = memory_phase(args.root, args.sizes, args.models, args.device)
    if "attacks" in args.phase:
        data["attacks"] = attacks_phase(args.root, min(args.sizes), args.models, args.device)
    if "audit" in args.phase:
        runs = data.get("audit")
        runs = {r["cut_set"]: r for r in runs} if isinstance(runs, list) else {}
        for cuts in args.audit_cuts:
            runs[cuts] = audit_phase(args.root, args.audit_n or max(args.sizes), args.device,
                                     args.root / f"audit-resnet50-{cuts}", cuts)  # fmt: skip
        data["audit"] = list(runs.values())
    write(name, data, report(data))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_probe":
        ap = argparse.ArgumentParser()
        ap.add_argument("_probe")
        ap.add_argument("--model")
        ap.add_argument("--n", type=int)
        ap.add_argument("--root", type=Path)
        ap.add_argument("--device", default="auto")
        ap.add_argument("--eager", action="store_true")
        a = ap.parse_args()
        print(json.dumps(probe(a.model, a.n, a.root, a.device, a.eager)))
    else:
        main()
