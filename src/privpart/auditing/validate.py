"""Everything an audit's configuration must satisfy, checked before any expensive work.

Messages name the Python parameters (`attack_steps`, `train=False`); the command line turns
them into its flags (`privpart.cli.flags`).
"""

from __future__ import annotations

from pathlib import Path

from privpart import attacks as attack_pkg
from privpart.attacks import ATTACKS
from privpart.auditing.config import AuditConfig, Figures
from privpart.auditing.search import Search
from privpart.device import resolve_device
from privpart.errors import PrivpartFileNotFoundError, PrivpartValueError
from privpart.models import ZOO
from privpart.models.user import is_user_arch


def validate(cfg: AuditConfig, target_given: bool = False) -> None:
    """Fail before any expensive work, with messages a user can act on."""
    building = cfg.checkpoint is None and not target_given
    if building and not (is_user_arch(cfg.model) or cfg.model in ZOO):
        ZOO.get(cfg.model)  # raises the "unknown model" error listing known ones
    if not cfg.attacks:
        raise PrivpartValueError(
            "no attacks to run",
            f"pass `attacks={','.join(attack_pkg.DEFAULT_ATTACKS)}`",
            param="attacks",
        )
    for name in cfg.attacks:
        ATTACKS.get(name)
    for name, params in cfg.attack_params.items():
        adaptive = cfg.adaptive and bool(ATTACKS.get(name).adaptive_to)  # may join on a defence
        if name not in cfg.attacks and not adaptive:
            raise PrivpartValueError(
                f"parameters given for attack {name!r}, which this audit does not run",
                f"add it to the attacks ({', '.join(cfg.attacks)}) or drop its parameters",
                param="attack_params",
            )
        attack_pkg.make_attack(name, **params)  # validates every value before any work
    if cfg.attack_steps is not None and cfg.attack_steps <= 0:
        raise PrivpartValueError(
            f"`attack_steps` must be positive, got {cfg.attack_steps}",
            "omit it to use time budgets, or give e.g. `attack_steps=500`",
            param="attack_steps",
        )
    if cfg.budget_scale <= 0:
        raise PrivpartValueError(
            f"`budget_scale` must be positive, got {cfg.budget_scale}",
            "use e.g. `budget_scale=0.5` for a quick look or `budget_scale=4` for a stronger audit",
            param="budget_scale",
        )
    if not cfg.train and not cfg.weights and cfg.checkpoint is None and not target_given:
        raise PrivpartValueError(
            "`train=False` needs the model's weights",
            "give `weights` (a weights file), or `checkpoint` (a checkpoint folder)",
            param="train",
        )
    if cfg.checkpoint and cfg.weights:
        raise PrivpartValueError(
            "`weights` and `checkpoint` both name the model", "give one of them", param="weights"
        )
    for what, path in (("weights", cfg.weights), ("attributes", cfg.attributes)):
        if path is not None and building and not Path(path).is_file():
            raise PrivpartFileNotFoundError(
                f"{what} file {path} does not exist", f"check `{what}`", param=what
            )
    if cfg.checkpoint and not (Path(cfg.checkpoint) / "meta.json").is_file():
        raise PrivpartFileNotFoundError(
            f"{cfg.checkpoint} is not a privpart checkpoint (no meta.json)",
            "create one with `privpart train` (or privpart.training.train_to_checkpoint), or "
            "leave `checkpoint` out",
            param="checkpoint",
        )
    choices: tuple[tuple[str, type[Search] | type[Figures]], ...] = (
        ("search", Search),
        ("figures", Figures),
    )
    for name, kind in choices:
        value = getattr(cfg, name)
        if value not in {k.value for k in kind}:
            names = ", ".join(k.value for k in kind)
            first = next(iter(kind)).value
            raise PrivpartValueError(
                f"`{name}` {value!r} is not one of: {names}",
                f"give `{name}={first}` (the default) or another of them",
                param=name,
            )
    resolve_device(cfg.device)
