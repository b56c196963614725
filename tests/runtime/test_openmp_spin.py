from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from privpart.runtime.openmp_spin import (
    IDLE_SPINS,
    idle_spin_env,
    quiet_idle_threads,
    runtime_openmp,
    user_openmp,
)


def test_idle_spin_is_added_unless_the_user_chose() -> None:
    assert idle_spin_env({}) == {"GOMP_SPINCOUNT": str(IDLE_SPINS)}
    assert idle_spin_env({"GOMP_SPINCOUNT": "5"}) == {}
    assert idle_spin_env({"OMP_WAIT_POLICY": "PASSIVE"}) == {}


def test_recorded_settings_name_the_users_choice_or_the_runtimes() -> None:
    assert user_openmp({"PATH": "/bin"}) == {} and user_openmp({"GOMP_SPINCOUNT": "5"}) == {
        "GOMP_SPINCOUNT": "5"
    }
    assert runtime_openmp({}) == {"GOMP_SPINCOUNT": str(IDLE_SPINS)}
    assert runtime_openmp({"OMP_WAIT_POLICY": "PASSIVE"}) == {"OMP_WAIT_POLICY": "PASSIVE"}


def test_quiet_idle_threads_says_it_is_too_late_once_torch_is_loaded() -> None:
    import torch  # noqa: F401  (loaded: libgomp has read its settings already)

    env: dict[str, str] = {}
    assert quiet_idle_threads(env) is False and env == {"GOMP_SPINCOUNT": str(IDLE_SPINS)}


def cli_environment(command: str, extra: dict[str, str]) -> str:
    """GOMP_SPINCOUNT as a real `privpart COMMAND` process sees it when torch loads."""
    code = (
        f"import sys; sys.argv = ['privpart', {command!r}]\n"
        "import privpart.cli, os\n"
        "print(os.environ.get('GOMP_SPINCOUNT', 'unset'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, **extra}, check=True, timeout=120)  # fmt: skip
    return out.stdout.strip()


@pytest.mark.parametrize("command", ["serve", "enclave", "infer"])
def test_runtime_commands_quiet_idle_threads_before_torch_loads(command: str) -> None:
    assert cli_environment(command, {}) == str(IDLE_SPINS)
    assert cli_environment(command, {"GOMP_SPINCOUNT": "7"}) == "7"  # the user's choice wins


def test_other_commands_keep_openmp_defaults() -> None:
    assert cli_environment("train", {}) == "unset"


def test_the_enclave_worker_process_starts_with_quiet_idle_threads(enclave_stack) -> None:  # noqa: ANN001
    if "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ:
        pytest.skip("the test runner chose its own OpenMP wait policy")
    environ = Path(f"/proc/{enclave_stack.supervisor.pid}/environ").read_bytes().split(b"\0")
    assert f"GOMP_SPINCOUNT={IDLE_SPINS}".encode() in environ
