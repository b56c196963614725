"""One device choice: CPU always works; CUDA is checked, and exercised where a GPU exists."""

from __future__ import annotations

import pytest
import torch

from privpart.device import (
    auto_precision,
    check_precision,
    resolve_device,
    resolve_precision,
)
from privpart.errors import PrivpartError

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device on this machine")


def test_cpu_and_auto() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto") == (torch.device("cuda", 0) if CUDA else torch.device("cpu"))
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_unknown_devices_name_the_choices() -> None:
    for bad in ("gpu0", "tpu"):
        with pytest.raises(PrivpartError) as err:
            resolve_device(bad)
        assert "cuda:N" in err.value.hint


@pytest.mark.skipif(CUDA, reason="checks the error a machine without CUDA gives")
def test_cuda_asked_for_but_absent_is_a_clear_error() -> None:
    for spec in ("cuda", "cuda:1"):
        with pytest.raises(PrivpartError) as err:
            resolve_device(spec)
        assert "no CUDA device" in err.value.message and "`device=cpu`" in err.value.hint
        assert err.value.param == "device" and isinstance(err.value, ValueError)


def test_cpu_precisions() -> None:
    cpu = torch.device("cpu")
    assert auto_precision(cpu) in ("bf16", "fp32")
    assert resolve_precision("fp32", cpu).dtype is None
    with pytest.raises(PrivpartError, match="CUDA mode"):
        check_precision("fp16", cpu)
    with pytest.raises(PrivpartError) as err:
        check_precision("fp8", cpu)
    assert all(p in err.value.hint for p in ("auto", "fp32", "bf16", "fp16"))


@needs_cuda
def test_cuda_devices_and_precision() -> None:
    dev = resolve_device("cuda")
    assert dev == torch.device("cuda", 0) and resolve_device("auto") == dev
    with pytest.raises(PrivpartError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")
    prec = resolve_precision("auto", dev)
    assert prec.name in ("bf16", "fp16")
    with prec.autocast():
        y = torch.nn.Linear(8, 4).to(dev)(torch.rand(2, 8, device=dev))
    assert y.dtype == prec.dtype
