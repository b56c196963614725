"""`pip install privpart` audits; the serving stack is the `serve` extra. An interpreter that
cannot import aiohttp, cryptography or dcap_qvl (as after a plain `pip install privpart`)
still audits, and a serving command says how to install what it needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from privpart.extras import SERVE

# run before privpart is imported: every module of the serve extra fails to import
BLOCK = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {set(SERVE.modules)!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
"""


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True, text=True)


def test_an_audit_runs_without_the_serving_stack(tiny_checkpoint: Path) -> None:
    proc = run(f"""
import privpart
from privpart.profiling import ProfileConfig
r = privpart.audit({str(tiny_checkpoint)!r}, None, cuts=["block2"], attacks=["decoder"],
                   device="cpu", attack=privpart.AttackOptions(attack_steps=2),
                   profile=ProfileConfig(repeats=3, warmup=1, untrusted_threads=1))
assert "block2" in r.verdicts
assert not {{"aiohttp", "cryptography", "dcap_qvl"}} & set(sys.modules)
print("AUDITED")
""")
    assert proc.returncode == 0 and "AUDITED" in proc.stdout, proc.stderr


def test_a_serving_command_says_how_to_get_the_serving_stack(tiny_checkpoint: Path) -> None:
    proc = run(f"""
sys.argv = ["privpart", "serve", "--checkpoint", {str(tiny_checkpoint)!r}, "--cut", "block2"]
from privpart.cli import main
main()
""")
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'privpart[serve]'" in proc.stderr and "aiohttp" in proc.stderr
    assert "Traceback" not in proc.stderr
