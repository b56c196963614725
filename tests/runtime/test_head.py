from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from privpart.errors import PrivpartError
from privpart.runtime.enclave.sealed import read_header, seal_bytes, unseal_bytes
from privpart.runtime.head import head_state, measure_head, rebuild_head, split_checkpoint
from privpart.runtime.version import RUNTIME_VERSION


def _no_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object, **__: object) -> None:
        raise AssertionError("something tried to unpickle")

    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "Unpickler", boom)
    monkeypatch.setattr(torch, "load", boom)


def test_checkpoint_to_sealed_head_to_worker_head_never_unpickles(
    runtime_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_pickle(monkeypatch)
    split = split_checkpoint(runtime_checkpoint, "block2")
    key = bytes(range(32))
    blob = seal_bytes(split.info, head_state(split.head), key)
    info, state = unseal_bytes(blob, key)
    head = rebuild_head(info, state)
    x = torch.rand(3, *info.input_shape)
    with torch.no_grad():
        assert torch.equal(head(x), split.head(x))
    assert measure_head(head, info.input_shape) == split.info.measurement


def test_measurement_is_reproducible_and_covers_weights_config_and_version(tiny_split) -> None:
    head, shape = tiny_split.head, tiny_split.info.input_shape
    m = measure_head(head, shape)
    assert m == tiny_split.info.measurement and len(m) == 64
    assert measure_head(head, shape, RUNTIME_VERSION + "-other") != m
    assert measure_head(head, (shape[0], shape[1] + 1, shape[2])) != m
    conv = next(mod for mod in head.modules() if isinstance(mod, torch.nn.Conv2d))
    with torch.no_grad():
        conv.weight[0, 0, 0, 0] += 1e-6
    try:
        assert measure_head(head, shape) != m
    finally:
        with torch.no_grad():
            conv.weight[0, 0, 0, 0] -= 1e-6
    old = conv.padding
    conv.padding = (0, 0)  # configuration the graph code does not show
    try:
        assert measure_head(head, shape) != m
    finally:
        conv.padding = old
    assert measure_head(head, shape) == m


def test_head_rebuild_does_not_build_the_full_model_in_memory(tiny_split) -> None:
    info = tiny_split.info
    head = rebuild_head(info, head_state(tiny_split.head))
    names = {n for n, _ in head.named_parameters()}
    assert not any(n.startswith(("block3", "fc")) for n in names)  # tail weights never exist
    assert all(not t.is_meta for t in head.state_dict().values())


def test_sealed_header_is_authenticated(tiny_split) -> None:
    key = bytes(32)
    blob = bytearray(seal_bytes(tiny_split.info, head_state(tiny_split.head), key))
    info, _, offset = read_header(bytes(blob))
    assert info.measurement == tiny_split.info.measurement
    i = bytes(blob).index(b'"cut"')
    blob[i + 10] ^= 1  # a header byte
    with pytest.raises(PrivpartError, match="does not decrypt|corrupt"):
        unseal_bytes(bytes(blob), key)
    with pytest.raises(PrivpartError, match="does not decrypt"):
        unseal_bytes(seal_bytes(tiny_split.info, head_state(tiny_split.head), key), bytes([1]) * 32)


def test_runtime_processes_refuse_unpickling() -> None:
    code = (
        "import pickle, torch\n"
        "from privpart.runtime.nopickle import forbid_unpickling\n"
        "forbid_unpickling()\n"
        "for f in (lambda: pickle.loads(pickle.dumps(1)), lambda: torch.load('x')):\n"
        "    try:\n        f()\n    except Exception as e:\n        print(type(e).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["PrivpartError", "PrivpartError"], out.stderr
