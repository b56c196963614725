"""The library surface: audit an `nn.Module` on a torch `Dataset`, list its cuts, run one attack.

    import privpart
    result = privpart.audit(model, dataset, input_shape=(1, 32, 32))
    result.selected_cut, result.verdicts["features.16"].reasons
    result.leakage("features.16", "decoder").ssim
    privpart.cuts(model, (1, 32, 32))
    privpart.attack(model, dataset, cut="features.16", attack="decoder", input_shape=(1, 32, 32))

`audit` takes the handful of keywords a notebook needs at top level and the rest in groups
(`TargetOptions`, `AttackOptions`, ...: privpart.auditing.config, the one declaration the CLI is
checked against); nothing is written unless `out=` is given. The CLI commands are thin layers
over these functions (one load path: `Target`). Bad arguments raise `ValueError` /
`TypeError` / `FileNotFoundError` subclasses of `PrivpartError` naming the parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
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
from privpart.auditing import AuditConfig, Auditor, AuditResult, validate
from privpart.auditing.config import (
    AttackOptions,
    DefenceOptions,
    ExecutionOptions,
    SearchOptions,
    TargetOptions,
)
from privpart.auditing.executors import Executor
from privpart.data import Dataset, from_torch, load_dataset
from privpart.device import resolve_device
from privpart.errors import PrivpartFileNotFoundError, PrivpartTypeError, PrivpartValueError
from privpart.partition import Cut, Partition
from privpart.profiling import ProfileConfig
from privpart.selection import Constraints
from privpart.training.checkpoint import META, read_meta
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
    raise PrivpartTypeError(
        f"cannot use a {type(data).__name__} as a dataset",
        "pass a torch Dataset of (image, label[, attributes]), or a name like fashion-mnist",
        param="dataset",
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
    model: ModelLike,
    dataset: DataLike | None,
    *,
    out: str | Path | None = None,
    input_shape: Sequence[int] | None = None,
    cuts: str | Sequence[str] = "default",
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    seed: int = 0,
    device: str = "auto",
    target: TargetOptions | None = None,
    attack: AttackOptions | None = None,
    search: SearchOptions | None = None,
    limits: Constraints | None = None,
    profile: ProfileConfig | None = None,
    defence: DefenceOptions | None = None,
    execution: ExecutionOptions | None = None,
    executor: Executor | None = None,
    show_progress: bool = False,
    trust_code: bool = False,
) -> AuditResult:
    """Attack and profile every cut of `model`, pick the fastest cut no attack breaks.

    `model`: a trained `nn.Module` (audited as it is), a checkpoint folder (audited with its own
    architecture and data: `dataset` None), or a zoo name / `file.py:factory` (trained first on
    `dataset`: give `out`, where the checkpoint is written). `dataset`: a torch `Dataset` of
    (image, label[, {attribute: value}]) with images in [0, 1], a privpart `Dataset`, or a name
    (`fashion-mnist`, `imagefolder:DIR`). `cuts`: "default" (block boundaries), "all", or cut
    names. `input_shape` (C, H, W) is for an `nn.Module` (default: the dataset's). Files are
    written only with `out`.

    The rest is grouped (privpart.auditing.config): `target` how the model and data are made,
    `attack` budgets and parameters, `search` which cuts are attacked (`monotone`: the deepest
    first, then bisection, a breach implying every shallower cut broken; `exhaustive`: every
    cut) and whether a cut's attacks stop at a clear breach (`figures`), `limits` what breaks
    a cut, `profile` how latency is measured, `defence` a defended model, `execution` how work
    is laid out and shown. `executor` runs the attack jobs (default: in this process;
    privpart.auditing.executors has Ray's). A checkpoint whose architecture is a Python file is
    refused unless `trust_code=True`: loading it would import and run that file.
    """
    target = target or TargetOptions()
    arch = model if isinstance(model, str) else type(model).__name__
    if isinstance(model, str | Path) and Path(model, META).is_file():
        if target.checkpoint is not None:
            raise PrivpartValueError(
                f"`model` is the checkpoint {model} and `target` names {target.checkpoint}",
                "give the checkpoint once, as `model`",
                param="model",
            )
        target = replace(target, checkpoint=str(model))
        meta = read_meta(Path(model))
        arch = meta["spec"]["arch"]  # the checkpoint's own architecture and data
        if dataset is not None and dataset != meta["dataset"]:
            raise PrivpartValueError(
                f"the checkpoint {model} is audited on its own data ({meta['dataset']}), "
                f"not on {dataset if isinstance(dataset, str) else type(dataset).__name__}",
                "pass `dataset=None` for a checkpoint",
                param="dataset",
            )
        dataset = meta["dataset"]
    elif isinstance(model, Path):
        raise PrivpartFileNotFoundError(
            f"{model} is not a privpart checkpoint (no {META})",
            "pass a checkpoint folder, an nn.Module, or a model name like vgg16",
            param="model",
        )
    if dataset is None:
        raise PrivpartValueError(
            "`dataset` is None, and only a checkpoint brings its own data",
            "pass a torch Dataset, a privpart Dataset, or a name like fashion-mnist",
            param="dataset",
        )
    dev = str(resolve_device(device))
    cfg = AuditConfig.of(
        dict(
            model=arch,
            dataset=dataset if isinstance(dataset, str) else getattr(dataset, "name", "dataset"),
            cuts=cuts if isinstance(cuts, str) else ",".join(cuts),
            attacks=list(attacks),
            seed=seed,
            device=dev,
        ),
        target=target,
        attack=attack,
        search=search,
        limits=limits,
        profile=profile or ProfileConfig(untrusted_device=dev),
        defence=defence,
        execution=execution,
    )
    validate(cfg, target_given=isinstance(model, nn.Module))
    auditor = Auditor(
        cfg, None if out is None else Path(out), show_progress, executor, trust_code=trust_code
    )
    built = None
    if isinstance(model, nn.Module):
        if cfg.defence is not None:
            raise PrivpartValueError(
                "a defence trains a checkpoint: it needs a model given by name or checkpoint",
                "save the model with privpart.training.save_checkpoint, or audit it undefended",
                param="defence",
            )
        data_dir = None if cfg.data_dir is None else Path(cfg.data_dir)
        built = target_of(model, dataset, input_shape, task=cfg.task, seed=seed,
                          n_aux=cfg.n_aux, n_victim=cfg.n_victim, data_dir=data_dir)  # fmt: skip
    return auditor.run(built)


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
            raise PrivpartValueError(
                "attack() needs the data of a model that is not a Target",
                "pass `dataset`",
                param="dataset",
            )
        target = target_of(model, dataset, input_shape, task=task, seed=seed)
    the_cut = target.partition.cut(cut)
    fs = compute_feature_sets(
        target.partition, target.dataset, target.splits, [the_cut], target.input_size,
        show_progress=False, task=target.task, device=resolve_device(device),
    )[the_cut.name]  # fmt: skip
    return run_attack(runner, fs)
