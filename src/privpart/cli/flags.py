"""The one place that says which command-line flag stands for which Python parameter.

The library names parameters in backticks (`` `attack_steps` ``, `` `train=False` ``;
`privpart.errors`); `speak` rewrites them into flags (`--attack-steps`, `--no-train`) so a
command's errors read in the command's words. A backticked word is rewritten when it is the
error's own `param`, is written `name=value`, or is listed here; any other stays as it is (a
metric or architecture name in backticks is no flag). A parameter not listed is spelled the
usual way, `--` + its name with dashes. Listed: the parameters the command line renames, and
those a library message names besides its failing parameter.
"""

from __future__ import annotations

import re

from privpart.errors import PrivpartError

# Python parameter -> the flag that sets it, where the flag is not `--name-with-dashes`
FLAGS: dict[str, str] = {
    "n_aux": "--aux",
    "n_victim": "--victim",
    "train_epochs": "--epochs",
    "train_limit": "--train-limit",  # named in hints of other errors (a near-chance target)
    "attack_params": "--attack-param",
    "feature_memory_gib": "--feature-memory",
    "bandwidth_mbit_s": "--bandwidth",
    "link_latency_ms": "--link-ms",
    "memory_budget_bytes": "--epc-mib",
    "enforce_memory": "--ignore-memory",
    "limits": "--max-METRIC",
    "seconds": "--budget",
    # the defence search's settings (privpart.auditing.proposal.SearchSettings)
    "SearchSettings.methods": "--defend-methods",
    "SearchSettings.cuts": "--defend-cuts",
    "SearchSettings.minutes": "--defend-minutes",
    "SearchSettings.max_accuracy_drop": "--max-accuracy-drop",
}

# fields of the audit's declaration that are the library's only, with the reason
LIBRARY_ONLY: dict[str, str] = {
    "untrusted_device": "profiled on --device",
    "untrusted_threads": "the tail's threads: all cores of the untrusted side",
    "batch_size": "the audit profiles one sample per request",
    "warmup": "timing detail (privpart profile --repeats sets the count)",
    "repeats": "timing detail (privpart profile --repeats)",
    "max_seconds_per_part": "timing detail",
    "tie_tolerance": "latencies within it are a tie; a selection detail",
}

_NAMED = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)(?:=([^`\s]*))?`")


def flag(name: str) -> str:
    """The flag of Python parameter `name` (`n_aux` -> `--aux`, `attack_steps` ->
    `--attack-steps`)."""
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def _spoken(name: str, value: str | None) -> str:
    option = flag(name)
    if value is None:
        return option
    value = value.strip("'\"")
    if value == "True":
        return option
    if value == "False":
        return "--no-" + option.removeprefix("--")
    return f"{option} {value}"


def speak(text: str, param: str | None = None) -> str:
    """`text` with every backticked parameter the command line knows spelt as its flag:
    those listed in `FLAGS`, `param` (the failing one), and any `name=value`."""

    def one(m: re.Match[str]) -> str:
        name, value = m.group(1), m.group(2)
        if name in FLAGS or name == param or value is not None:
            return _spoken(name, value)
        return m.group(0)

    return _NAMED.sub(one, text)


def spoken(exc: PrivpartError) -> tuple[str, str]:
    """(message, hint) of a library error, in the command line's words."""
    return speak(exc.message, exc.param), speak(exc.hint, exc.param)


# options of `privpart audit` that steer the run rather than declare the audit (no config
# field): where results go, who runs the jobs, what may be loaded, and the defence search that
# follows a failed audit (privpart.auditing.proposal.SearchSettings)
AUDIT_RUN_OPTIONS: dict[str, str] = {
    "--out": "privpart.audit(out=...)",
    "--ray": "privpart.audit(executor=...)",
    "--ray-resources": "privpart.audit(executor=...)",
    "--trust-code": "privpart.audit(trust_code=...)",
    "--defend": "SearchSettings",
    "--defend-methods": "SearchSettings.methods",
    "--defend-cuts": "SearchSettings.cuts",
    "--defend-minutes": "SearchSettings.minutes",
    "--max-accuracy-drop": "SearchSettings.max_accuracy_drop",
}
