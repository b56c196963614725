"""The head as the runtime sees it: its identity (measurement) and how to rebuild it without pickle.

The measurement is what an attested enclave proves it runs, and what a client recomputes from the
checkpoint it trusts. It is SHA-256 over, each field length-prefixed:

- a domain tag and the runtime version (a different runtime is a different enclave);
- the input shape the enclave accepts;
- the head's torch.fx graph code (every operation, in order);
- every submodule's path, class and configuration (`extra_repr`: stride, padding, eps, ... which the
  graph code does not show);
- every parameter and buffer: name, dtype, shape and raw bytes, in sorted name order.

A defended checkpoint's inference-time modules (a bottleneck, cut noise) are part of the head
and so of its measurement; the noise they add is drawn from the OS CSPRNG in every head the
runtime builds (`secure_noise`), fresh for every request, and `extra_repr` puts that source in
the measurement too.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from privpart.errors import PrivpartError
from privpart.models import ModelSpec, build_model
from privpart.models.user import refuse_user_code
from privpart.models.wrappers import restore_inference, secure_noise
from privpart.partition import Cut, Partition
from privpart.partition.split import split_graph
from privpart.partition.tracer import trace
from privpart.runtime.version import RUNTIME_VERSION

DOMAIN = b"privpart-head-measurement-v1"


@dataclass(frozen=True)
class HeadInfo:
    """Enough to rebuild a head from weights alone, plus the measurement it must reproduce."""

    spec: ModelSpec
    cut: Cut
    input_shape: tuple[int, ...]
    measurement: str
    runtime_version: str = RUNTIME_VERSION
    defence: dict[str, Any] | None = None  # a defended checkpoint's record (inference wrapper)

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "cut": self.cut.to_dict(),
            "input_shape": list(self.input_shape),
            "measurement": self.measurement,
            "runtime_version": self.runtime_version,
            "defence": self.defence,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> HeadInfo:
        try:
            cut = dict(d["cut"])
            cut["shape"] = tuple(int(s) for s in cut["shape"])
            return cls(
                spec=ModelSpec.from_dict(d["spec"]),
                cut=Cut(**cut),
                input_shape=tuple(int(s) for s in d["input_shape"]),
                measurement=str(d["measurement"]),
                runtime_version=str(d["runtime_version"]),
                defence=d.get("defence"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PrivpartError(
                f"head description is malformed: {exc}", "re-seal the head with this privpart"
            ) from exc


@dataclass
class SplitHead:
    """A checkpoint split at a cut: the halves, in eval mode, and the head's description."""

    head: fx.GraphModule
    tail: fx.GraphModule
    info: HeadInfo


def _field(h: Any, data: bytes | str) -> None:
    raw = data.encode() if isinstance(data, str) else data
    h.update(struct.pack("<Q", len(raw)))
    h.update(raw)


def _raw_bytes(t: torch.Tensor) -> bytes:
    return t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def measure_head(
    head: fx.GraphModule, input_shape: tuple[int, ...], runtime_version: str = RUNTIME_VERSION
) -> str:
    """Hex SHA-256 identity of `head` (see the module docstring for exactly what it covers)."""
    h = hashlib.sha256()
    _field(h, DOMAIN)
    _field(h, runtime_version)
    _field(h, "x".join(str(int(s)) for s in input_shape))
    _field(h, head.code)
    for name, module in head.named_modules():
        if name:
            _field(h, name)
            _field(h, f"{type(module).__module__}.{type(module).__qualname__}")
            _field(h, module.extra_repr())
    for name, tensor in sorted(head.state_dict().items()):
        _field(h, name)
        _field(h, str(tensor.dtype))
        _field(h, "x".join(map(str, tensor.shape)))
        _field(h, _raw_bytes(tensor))
    return h.hexdigest()


def check_inert(spec: ModelSpec, trust_code: bool, where: str = "the checkpoint") -> None:
    """`refuse_user_code` (the one rule for code in checkpoints), under the runtime's name."""
    refuse_user_code(spec, trust_code, where)


def refuse_code(ckpt: Path, trust_code: bool) -> None:
    """`check_inert` for a checkpoint folder, reading only its meta.json (no torch work)."""
    from privpart.training.checkpoint import checkpoint_spec

    check_inert(checkpoint_spec(ckpt), trust_code, f"checkpoint {ckpt}")


def split_checkpoint(ckpt: Path, cut: str, trust_code: bool = False) -> SplitHead:
    """Load a trusted checkpoint (safetensors, no pickle) and split it at `cut`. A checkpoint
    whose architecture is a user file is refused unless `trust_code` (see `check_inert`)."""
    from privpart.training import load_checkpoint

    model, meta = load_checkpoint(ckpt, trust_code=trust_code)
    secure_noise(model)  # a defence's noise: fresh from the OS CSPRNG for every request
    spec = ModelSpec.from_dict(meta["spec"])
    input_shape = tuple(meta.get("input_shape") or spec.input_shape)
    part = Partition(model, input_shape)
    split = part.split(cut)
    split.head.eval()
    split.tail.eval()
    info = HeadInfo(
        spec, split.cut, input_shape, measure_head(split.head, input_shape),
        defence=meta.get("defence"),
    )  # fmt: skip
    return SplitHead(split.head, split.tail, info)


def head_state(head: nn.Module) -> dict[str, torch.Tensor]:
    """The head's tensors, contiguous on the CPU, ready for safetensors."""
    return {k: v.detach().to("cpu").contiguous() for k, v in head.state_dict().items()}


def _load_into(
    part: fx.GraphModule,
    state: dict[str, torch.Tensor],
    what: str = "sealed weights do not fit the head architecture",
    hint: str = "re-seal the head from its checkpoint",
) -> None:
    try:
        part.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise PrivpartError(f"{what}: {str(exc).splitlines()[0]}", hint) from exc


def rebuild_head(info: HeadInfo, state: dict[str, torch.Tensor]) -> fx.GraphModule:
    """The head from its description and weights, without allocating the rest of the model.

    The model is built on the `meta` device (no memory), traced and cut; only the head is then
    materialised on the CPU and filled. A model whose head keeps tensors outside its state dict
    (fx constants, non-persistent buffers) is rebuilt on the CPU instead.
    """
    with torch.device("meta"):
        model = restore_inference(build_model(info.spec), info.defence)
    head = split_graph(trace(secure_noise(model)), info.cut).head.to_empty(device="cpu")
    _load_into(head, state)
    leftover = [t for t in (*head.parameters(), *head.buffers()) if t.is_meta]
    leftover += [v for v in vars(head).values() if isinstance(v, torch.Tensor) and v.is_meta]
    if leftover:
        model = restore_inference(build_model(info.spec), info.defence)
        head = split_graph(trace(secure_noise(model)), info.cut).head
        _load_into(head, state)
    return head.eval()


def measure_tail(split: SplitHead) -> str:
    """The tail's identity, by the same rules as the head's (its input is the cut's shape)."""
    return measure_head(split.tail, split.info.cut.shape)


def rebuild_tail(info: HeadInfo, state: dict[str, torch.Tensor]) -> fx.GraphModule:
    """The tail of `info`'s model at its cut, on the CPU in eval mode, filled with `state`: the
    trusted side's copy, which its caller re-measures (`measure_tail`'s rules)."""
    model = secure_noise(restore_inference(build_model(info.spec), info.defence))
    tail = split_graph(trace(model), info.cut).tail  # built as split_checkpoint builds it
    _load_into(tail, state, "the tail weights do not fit the tail architecture",
               "write them again from the checkpoint (privpart enclave --verify-tail does it)")
    return tail.eval()
