"""`privpart attack`: run one leakage attack at one cut of a checkpoint; write result.json and
grid.png (victim originals above what the attacker recovered)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from privpart.attacks import (
    ATTACKS,
    AttackResult,
    Budget,
    available_attributes,
    compute_feature_sets,
    make_attack,
)
from privpart.cli.app import app
from privpart.cli.options import DataDirOpt
from privpart.data import load_dataset, splits_from_meta
from privpart.errors import PrivpartError
from privpart.partition import Partition
from privpart.training import load_checkpoint
from privpart.ui import console


def save_grid(result: AttackResult, path: Path) -> Path | None:
    """Originals (top row) above reconstructions; attribute attacks: truth -> prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    originals = result.sample_inputs
    if originals is None:
        return None
    k = originals.shape[0]
    rows = 1 if result.samples is None else 2
    fig, axes = plt.subplots(rows, k, figsize=(1.1 * k, 1.25 * rows + 0.4), squeeze=False)

    def show(ax, img, title: str = "") -> None:  # noqa: ANN001
        img = img.detach().float().clamp(0, 1)
        pixels = (img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)).numpy()
        ax.imshow(pixels, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=6)
        ax.axis("off")

    truth = result.config.get("sample_truth")
    pred = result.config.get("sample_predictions")
    for i in range(k):
        title = f"{truth[i]}\n-> {pred[i]}" if truth and pred else ""
        show(axes[0][i], originals[i], title)
        if result.samples is not None:
            show(axes[1][i], result.samples[i])
    axes[0][0].set_ylabel("victim")
    m = result.metrics
    headline = ", ".join(f"{key} {m[key]:.3f}" for key in ("ssim", "psnr", "feature_mae",
                                                           "accuracy") if key in m)  # fmt: skip
    fig.suptitle(f"{result.attack} @ {result.cut}: {headline}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


@app.command()
def attack(
    checkpoint: Annotated[Path, typer.Option(help="checkpoint folder (privpart train --out)")],
    cut: Annotated[str, typer.Option(help="cut name, see `privpart cuts`")],
    attack: Annotated[str, typer.Option(help="cgan, decoder, whitebox or attribute")],
    out: Annotated[Path, typer.Option(help="folder for result.json and grid.png")],
    budget: Annotated[
        float | None, typer.Option(help="wall-clock seconds for the attack (default per attack)")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="optimisation steps (exact, no clock)")] = None,
    attribute: Annotated[
        str | None, typer.Option(help="private attribute for --attack attribute")
    ] = None,
    data_dir: DataDirOpt = None,
    model: Annotated[
        str | None, typer.Option(help="expected architecture: refuse a checkpoint of another")
    ] = None,
    seed: Annotated[int, typer.Option(help="attack seed")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="batch for feature extraction")] = 256,
) -> None:
    """Attack one cut: fit on the attacker's aux data, score on held-out victims."""
    # Cheap checks first: the attack, its budget, the checkpoint, the cut, then the data.
    cls = ATTACKS.get(attack)
    the_budget = Budget(seconds=budget, steps=steps).validate()
    if attribute is not None and attack != "attribute":
        raise PrivpartError(
            f"--attribute only applies to --attack attribute (got --attack {attack})",
            "drop --attribute, or use --attack attribute",
        )
    params = {"show_progress": True}
    if attribute is not None:
        params["attribute"] = attribute
    runner = make_attack(attack, the_budget, seed, **params)
    net, meta = load_checkpoint(checkpoint, expect_arch=model)
    input_shape = tuple(meta["input_shape"])
    partition = Partition(net, input_shape)
    the_cut = partition.cut(cut)
    ds = load_dataset(meta["dataset_spec"], data_dir)
    task = meta.get("task", "class")
    if task != "class":
        ds = ds.with_task(task)
    if attribute is not None and attribute not in available_attributes(ds):
        raise PrivpartError(
            f"dataset {ds.name} has no private attribute {attribute!r}",
            f"available: {', '.join(sorted(available_attributes(ds)))}",
        )
    splits = splits_from_meta(ds, meta)
    fs = compute_feature_sets(partition, ds, splits, [the_cut], input_shape[1:], batch_size,
                              task=task)[the_cut.name]  # fmt: skip
    console.print(f"[bold]{cls.name}[/] ({cls.threat_model}) at cut [bold]{the_cut.name}[/] "
                  f"{'x'.join(map(str, the_cut.shape))}: {fs.sizes()['aux']} aux, "
                  f"{fs.sizes()['victim']} victims")  # fmt: skip
    runner.fit(fs)
    result = runner.evaluate(fs)
    result.config["checkpoint"] = str(checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result.to_dict(), indent=2))
    grid = save_grid(result, out / "grid.png")
    for key, value in result.metrics.items():
        base = result.baselines.get(key)
        extra = f" (baseline {base:.4f})" if base is not None else ""
        console.print(f"  {key}: {value:.4f}{extra}")
    if "chance" in result.baselines:
        console.print(f"  chance: {result.baselines['chance']:.4f}")
    console.print(f"[green]wrote[/] {out / 'result.json'}" + (f" and {grid}" if grid else "")
                  + f" in {result.seconds:.1f} s")  # fmt: skip
