"""The library surface: audit an `nn.Module` on a torch `Dataset`, list its cuts, run one attack.

    import privpart
    result = privpart.audit(model, dataset, input_shape=(1, 32, 32))
    result.selected_cut, result.verdicts["features.16"].reasons
    result.leakage("features.16", "decoder").ssim
    privpart.cuts(model, (1, 32, 32))
    privpart.attack(model, dataset, cut="features.16", attack="decoder", input_shape=(1, 32, 32))

Keyword arguments mirror the CLI's options; nothing is written unless `out=` is given. The CLI
commands are thin layers over these functions (one load path: `Target`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset as TorchDataset

from privpart.attacks import (
    DEFAULT_ATTACKS,
    AttackResult,
    Budget,
    compute_feature_sets,
    make_attack,
    run_attack,
)
from privpart.auditing import AuditConfig, Auditor, AuditResult
from privpart.auditing.executors import Executor
from privpart.data import Dataset, from_torch, load_dataset
from privpart.device import resolve_device
from privpart.errors import PrivpartError
from privpart.partition import Cut, Partition
from privpart.profiling import ProfileConfig
from privpart.selection import Constraints
from privpart.training.target import Target

ModelLike = nn.Module | str | Path
DataLike = Dataset | TorchDataset | str


def as_dataset(data: DataLike, data_dir: Path | None = None) -> Dataset:
    """A privpart `Dataset` from a registry name (`fashion-mnist`, `imagefolder:DIR`, ...), a
    torch `Dataset` of (image, label[, attributes]), or a privpart `Dataset` as is."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, str):
        return load_dataset(data, data_dir)
    if isinstance(data, TorchDataset) or hasattr(data, "__getitem__"):
        return from_torch(data, name=type(data).__name__)
    raise PrivpartError(
        f"cannot use a {type(data).__name__} as a dataset",
        "pass a torch Dataset of (image, label[, attributes]), or a name like fashion-mnist",
    )


def _shape(input_shape: Sequence[int] | None, ds: Dataset) -> tuple[int, int, int]:
    if input_shape is not None:
        return tuple(int(v) for v in input_shape)  # type: ignore[return-value]
    return (ds.channels, *ds.native_size)


def target_of(
    model: nn.Module,
    dataset: DataLike,
    input_shape: Sequence[int] | None = None,
    *,
    task: str | None = None,
    seed: int = 0,
    n_aux: int | None = None,
    n_victim: int | None = None,
    data_dir: Path | None = None,
) -> Target:
    """A trained model in memory and its data, ready to audit or attack."""
    ds = as_dataset(dataset, data_dir)
    return Target.from_module(model, ds, _shape(input_shape, ds), task=task, seed=seed,
                              n_aux=n_aux, n_victim=n_victim)  # fmt: skip


def cuts(
    model: ModelLike,
    input_shape: Sequence[int] = (1, 32, 32),
    *,
    interior: bool = False,
    leaf_modules: Iterable[str] = (),
) -> list[Cut]:
    """Every legal cut of `model` for inputs of `input_shape` (C, H, W), shallow to deep.

    `model` is a module, a zoo name (`vgg16`), or `path/to/file.py:factory`.
    """
    if not isinstance(model, nn.Module):
        from privpart.models import ModelSpec, build_model

        c, h, w = (int(v) for v in input_shape)
        model = build_model(ModelSpec(str(model), c, 10, (h, w)))
    part = Partition(model.eval(), tuple(input_shape), leaf_modules)
    return part.interior_cuts if interior else part.cuts


def audit(
    model: ModelLike = "vgg16",
    dataset: DataLike = "fashion-mnist",
    *,
    input_shape: Sequence[int] | None = None,
    cuts: str | Sequence[str] = "default",
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    attack_params: Mapping[str, Mapping[str, Any]] | None = None,
    attribute: str | None = None,
    budget_scale: float = 1.0,
    attack_steps: int | None = None,
    device: str = "auto",
    seed: int = 0,
    out: str | Path | None = None,
    checkpoint: str | Path | None = None,
    task: str | None = None,
    train_limit: int | None = None,
    epochs: int = 1,
    n_aux: int | None = None,
    n_victim: int | None = None,
    weights: str | Path | None = None,
    train: bool = True,
    attributes: str | Path | None = None,
    normalize: str = "auto",
    allow_weak_target: bool = False,
    feature_memory_gib: float | None = None,
    search: str = "monotone",
    figures: str = "verdict",
    wide: bool = False,
    confirm: bool = False,
    adaptive: bool = True,
    constraints: Constraints | None = None,
    profile: ProfileConfig | None = None,
    defence: str | None = None,
    defence_cut: str | None = None,
    defence_params: Mapping[str, Any] | None = None,
    data_dir: str | Path | None = None,
    executor: Executor | None = None,
    show_progress: bool = False,
    trust_code: bool = False,
) -> AuditResult:
    """Attack and profile every cut of `model`, pick the fastest cut no attack breaks.

    `model`: a trained `nn.Module` (audited as it is), a zoo name or `file.py:factory` (trained
    first, on `dataset`), or a checkpoint folder. `dataset`: a torch `Dataset` of
    (image, label[, {attribute: value}]) with images in [0, 1], a privpart `Dataset`, or a name.
    `cuts`: "default" (block boundaries), "all", or cut names. Files are written only with `out`.
    `search`: "monotone" attacks the deepest cut first, then bisects (a breach implies every
    shallower cut broken); "exhaustive" attacks every cut. `figures`: "verdict" stops attacking
    a cut at a clear breach; "all" runs every attack there.
    `weights`: a torchvision-format weights file for a zoo name or `file.py:factory`, audited as
    it is with `train=False` (its own classifier and input size), else where training starts.
    `attributes`: per-image attributes of an image folder (CSV, or CelebA's layout). A target
    near chance on its test split stops the audit unless `allow_weak_target`.
    A checkpoint whose architecture is a Python file (`file.py:factory`) is refused unless
    `trust_code=True`: loading it would import and run that file.
    """
    if isinstance(model, Path) or (isinstance(model, str) and Path(model, "meta.json").is_file()):
        checkpoint, model = Path(model), "vgg16"
    cut_spec = cuts if isinstance(cuts, str) else ",".join(cuts)
    dev = str(resolve_device(device))
    sizes = {k: v for k, v in (("n_aux", n_aux), ("n_victim", n_victim)) if v is not None}
    cfg = AuditConfig(
        model=model if isinstance(model, str) else type(model).__name__,
        dataset=dataset if isinstance(dataset, str) else getattr(dataset, "name", "dataset"),
        data_dir=None if data_dir is None else str(data_dir),
        checkpoint=None if checkpoint is None else str(checkpoint),
        cuts=cut_spec,
        attacks=list(attacks),
        attack_params={k: dict(v) for k, v in (attack_params or {}).items()},
        attribute=attribute,
        budget_scale=budget_scale,
        attack_steps=attack_steps,
        train_limit=train_limit,
        train_epochs=epochs,
        task=task,
        **sizes,
        weights=None if weights is None else str(weights),
        train=train,
        attributes=None if attributes is None else str(attributes),
        normalize=normalize,
        allow_weak_target=allow_weak_target,
        feature_memory_gib=feature_memory_gib,
        search=search,  # type: ignore[arg-type]  # checked by validate, before any work
        figures=figures,  # type: ignore[arg-type]
        wide=wide,
        seed=seed,
        device=dev,
        confirm=confirm,
        adaptive=adaptive,
        profile=profile or ProfileConfig(untrusted_device=dev),
        constraints=constraints or Constraints(),
        defence=defence,
        defence_cut=defence_cut,
        defence_params=dict(defence_params or {}),
    )
    auditor = Auditor(
        cfg, None if out is None else Path(out), show_progress, executor, trust_code=trust_code
    )
    target = None
    if isinstance(model, nn.Module):
        if defence is not None:
            raise PrivpartError(
                "a defence trains a checkpoint: it needs a model given by name or checkpoint",
                "save the model with privpart.training.save_checkpoint, or audit it undefended",
            )
        target = target_of(model, dataset, input_shape, task=task, seed=seed, n_aux=n_aux,
                           n_victim=n_victim,
                           data_dir=None if data_dir is None else Path(data_dir))  # fmt: skip
    return auditor.run(target)


def attack(
    model: nn.Module | Target,
    dataset: DataLike | None = None,
    *,
    cut: str,
    attack: str,
    input_shape: Sequence[int] | None = None,
    budget: Budget | None = None,
    seed: int = 0,
    device: str = "auto",
    task: str | None = None,
    **params: Any,
) -> AttackResult:
    """One attack at one cut: fit on the attacker's aux data, scored on the held-out victims.

    `params` are the attack's own (e.g. `lr=1e-3`, `attribute="group"`), validated first.
    """
    runner = make_attack(attack, budget, seed, **params)  # bad names and values fail here
    if isinstance(model, Target):
        target = model
    else:
        if dataset is None:
            raise PrivpartError("attack() needs the dataset", "pass dataset=...")
        target = target_of(model, dataset, input_shape, task=task, seed=seed)
    the_cut = target.partition.cut(cut)
    fs = compute_feature_sets(
        target.partition, target.dataset, target.splits, [the_cut], target.input_size,
        show_progress=False, task=target.task, device=resolve_device(device),
    )[the_cut.name]  # fmt: skip
    return run_attack(runner, fs)
