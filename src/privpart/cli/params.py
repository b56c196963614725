"""Command-line options generated from `Param` declarations, so a parameter's name, type and
help are written once (in its attack or defence) and every command offers the same flag.

    @with_params({"adversarial": AdversarialDefence.declared(), ...}, dest="params")
    def defend(..., params: dict[str, Any]) -> None: ...

adds `--alpha`, `--sigma`, ... (the union over the groups, help saying which group takes what);
the command receives only the options the user gave, as `params`, and the attack or defence
validates them against its own declarations. A name that clashes with one of the command's own
options (or is listed in `prefixed`) is prefixed with `prefix` (`privpart audit --defence-epochs`).

`parse_assignments` reads repeated `ATTACK.NAME=VALUE` options (`--attack-param`), converting
each value by its declaration.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any

import typer

from privpart.errors import PrivpartError
from privpart.metrics.spec import LimitOption
from privpart.params import Param

SKIP = frozenset({"show_progress"})  # how a run looks, not what it does: not an option


def union(groups: Mapping[str, Mapping[str, Param]]) -> dict[str, tuple[type, str]]:
    """name -> (type, help saying which group takes it and its default), first-seen order."""
    found: dict[str, tuple[type, dict[str, str]]] = {}
    for group, declared in groups.items():
        for name, p in declared.items():
            if name in SKIP:
                continue
            kind, helps = found.setdefault(name, (p.kind, {}))
            if kind is not p.kind:
                raise TypeError(f"parameter {name!r} is a {kind.__name__} and a {p.kind.__name__}")
            helps[group] = p.help + ("" if p.default is None else f" (default {p.default})")
    out = {}
    for name, (kind, helps) in found.items():
        texts = set(helps.values())
        one = len(texts) == 1 and len(helps) == len(groups) > 1
        out[name] = (kind, texts.pop() if one else "; ".join(f"{g}: {h}" for g, h in helps.items()))
    return out


def with_params(
    groups: Mapping[str, Mapping[str, Param]],
    dest: str,
    prefix: str = "",
    prefixed: Iterable[str] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add one option per declared parameter to a Typer command (see the module docstring).

    Names in `prefixed`, and names that clash with the command's own options, get `prefix`.
    """
    always = set(prefixed)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn, eval_str=True)
        own = set(sig.parameters) - {dest}
        mapping: dict[str, str] = {}
        extra = []
        for name, (kind, help_text) in union(groups).items():
            pname = f"{prefix}_{name}" if prefix and (name in own or name in always) else name
            if pname in own:
                raise TypeError(f"option {pname!r} clashes with a parameter of {fn.__name__}")
            mapping[pname] = name
            flag = "--" + pname.replace("_", "-")
            ann = Annotated[kind | None, typer.Option(flag, help=help_text)]  # type: ignore[valid-type]
            kw = inspect.Parameter.KEYWORD_ONLY
            extra.append(inspect.Parameter(pname, kw, default=None, annotation=ann))

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = {}
            for pname, name in mapping.items():
                value = kwargs.pop(pname, None)
                if value is not None:
                    given[name] = value
            return fn(*args, **kwargs, **{dest: given})

        kept = [p for p in sig.parameters.values() if p.name != dest]
        wrapper.__signature__ = sig.replace(parameters=[*kept, *extra])  # type: ignore[attr-defined]
        return wrapper

    return decorate


def with_limits(
    options: Mapping[str, LimitOption], dest: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add `--max-<option>` per metric that declares a `LimitOption`; the command receives
    `{metric: value}` of the ones given, as `dest` (for `Constraints.from_options`)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn, eval_str=True)
        mapping = {f"max_{o.name}": metric for metric, o in options.items()}
        clash = set(mapping) & set(sig.parameters)
        if clash:
            raise TypeError(f"limit options {sorted(clash)} clash with {fn.__name__}'s own")
        extra = [
            inspect.Parameter(
                pname, inspect.Parameter.KEYWORD_ONLY, default=None,
                annotation=Annotated[float | None, typer.Option(help=options[metric].help)],
            )
            for pname, metric in mapping.items()
        ]  # fmt: skip

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = {m: kwargs.pop(p, None) for p, m in mapping.items()}
            return fn(*args, **kwargs, **{dest: {m: v for m, v in given.items() if v is not None}})

        kept = [p for p in sig.parameters.values() if p.name != dest]
        wrapper.__signature__ = sig.replace(parameters=[*kept, *extra])  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _convert(p: Param, text: str, where: str) -> Any:
    if p.kind is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
    if text.strip().lower() in ("none", "null") and (p.optional or p.default is None):
        return None
    try:
        return p.kind(text) if p.kind is not bool else bool(text)
    except ValueError:
        raise PrivpartError(
            f"{where}: {text!r} is not a {p.kind.__name__}",
            f"give a {p.kind.__name__} ({p.help})",
        ) from None


def parse_assignments(
    items: Iterable[str], groups: Mapping[str, Mapping[str, Param]], option: str
) -> dict[str, dict[str, Any]]:
    """`["decoder.lr=0.01", "whitebox.victims=32"]` -> {"decoder": {"lr": 0.01}, ...}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, eq, text = item.partition("=")
        group, dot, name = target.strip().partition(".")
        if not (eq and dot and group and name):
            raise PrivpartError(
                f"{option} {item!r} is not GROUP.NAME=VALUE",
                f"write it like {option} decoder.lr=0.001",
            )
        if group not in groups:
            raise PrivpartError(
                f"{option} {item!r}: unknown {group!r}",
                f"choose one of: {', '.join(groups)}",
            )
        declared = groups[group]
        if name not in declared:
            raise PrivpartError(
                f"{option} {item!r}: {group} has no parameter {name!r}",
                f"its parameters: {', '.join(sorted(set(declared) - SKIP))}",
            )
        out.setdefault(group, {})[name] = _convert(declared[name], text, f"{option} {item}")
    return out
