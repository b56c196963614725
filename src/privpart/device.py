"""One device choice for everything privpart computes: `auto`, `cpu`, `cuda` or `cuda:N`.

Models, features, attacks and defences run on the device `resolve_device` returns; the trusted
side (the head, the enclave's stand-in) is still *timed* on the CPU by the profiler. Mixed
precision follows the device: bf16 autocast on CUDA where the GPU has bf16 units (fp16 with a
gradient scaler otherwise), bf16 on CPUs with bf16 hardware (AMX / AVX512-BF16), fp32 elsewhere.
Weights, optimiser state and checkpoints stay fp32 in every case.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from privpart.errors import PrivpartValueError

DEVICE_HELP = "auto (CUDA when present, else CPU), cpu, cuda or cuda:N"
AUTO = "auto"
PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def resolve_device(spec: str | torch.device | None = AUTO) -> torch.device:
    """`auto` -> the first CUDA device if there is one, else the CPU; `cuda[:N]` must exist."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = (spec or AUTO).strip().lower()
    if text == AUTO:
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise PrivpartValueError(
            f"unknown `device` {spec!r}", f"use {DEVICE_HELP}", param="device"
        ) from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise PrivpartValueError(
            f"`device` {spec!r} is not supported", f"use {DEVICE_HELP}", param="device"
        )
    if not torch.cuda.is_available():
        raise PrivpartValueError(
            f"`device={spec}` asks for CUDA, but torch sees no CUDA device here "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'})",
            "run with `device=cpu` (or auto), or check the driver with nvidia-smi",
            param="device",
        )
    index = 0 if device.index is None else device.index
    count = torch.cuda.device_count()
    if index >= count:
        raise PrivpartValueError(
            f"`device={spec}`: this machine has {count} CUDA device(s) (0..{count - 1})",
            f"use `device=cuda:{count - 1}` or lower",
            param="device",
        )
    return torch.device("cuda", index)


def describe(device: torch.device) -> str:
    """`cpu (2 threads)` or `cuda:0 (NVIDIA H100 80GB HBM3)`: for logs and results."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def cpu_native_bf16() -> bool:
    """True where the CPU computes bf16 in hardware (AMX tiles or AVX512-BF16)."""
    cpu = torch.cpu
    return any(
        getattr(cpu, probe, lambda: False)()
        for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    )


def auto_precision(device: torch.device) -> str:
    """The precision `auto` means on `device` (see the module docstring)."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_native_bf16() else "fp32"


def check_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of `precision` on `device` (None: fp32), or a clear error."""
    if precision not in PRECISIONS:
        raise PrivpartValueError(
            f"unknown training `precision` {precision!r}",
            f"choose one of {AUTO}, {', '.join(PRECISIONS)}",
            param="precision",
        )
    dtype = PRECISIONS[precision]
    if device.type == "cpu":
        if dtype is torch.float16:
            raise PrivpartValueError(
                "fp16 mixed precision is a CUDA mode",
                "on the CPU use `precision=bf16` or `precision=fp32`",
                param="precision",
            )
        if dtype is torch.bfloat16 and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            raise PrivpartValueError(
                "this CPU has no bf16 support for oneDNN (needs AVX512-BF16/AMX or AVX512)",
                "train with `precision=fp32`",
                param="precision",
            )
    elif dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise PrivpartValueError(
            f"{describe(device)} has no bf16 support",
            "use `precision=fp16` or `precision=fp32`",
            param="precision",
        )
    return dtype


@dataclass(frozen=True)
class Precision:
    """What a training loop needs for one precision on one device."""

    name: str  # fp32 | bf16 | fp16 (resolved: never auto)
    device: torch.device
    dtype: torch.dtype | None

    @property
    def layout(self) -> torch.memory_format:
        """Channels-last where mixed precision runs (oneDNN bf16, tensor cores)."""
        return torch.channels_last if self.dtype is not None else torch.contiguous_format

    def autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type, dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None
        )

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A loss scaler for fp16 (its small exponent underflows gradients); a no-op otherwise."""
        return torch.amp.GradScaler(self.device.type, enabled=self.dtype is torch.float16)


def resolve_precision(precision: str, device: torch.device) -> Precision:
    """`auto` or a name -> the checked `Precision` on `device`."""
    name = auto_precision(device) if precision == AUTO else precision
    return Precision(name, device, check_precision(name, device))


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy to `device` without blocking the host when the source is pinned memory."""
    return x.to(device, non_blocking=device.type == "cuda")


@contextlib.contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """cuDNN picks the same kernels every run (no autotuning): same seed, same result, as far as
    CUDA allows (a few backward kernels accumulate with atomics in any order)."""
    if device.type != "cuda":
        yield
        return
    before = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels: for timing code only (elsewhere it just stalls the pipeline)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
