"""A process-wide guard: refuse every unpickling entry point the runtime could reach.

The enclave worker and the tail server handle host- and client-controlled bytes; a single
`pickle.loads` on them would be remote code execution. They never need pickle (weights travel as
safetensors, tensors as frames), so they switch it off at start-up and a stray call fails loudly.
"""

from __future__ import annotations

import pickle
from typing import Any, NoReturn

from privpart.errors import PrivpartError


def _refuse(*_: Any, **__: Any) -> NoReturn:
    raise PrivpartError(
        "unpickling is forbidden in this privpart runtime process",
        "weights must be safetensors and tensors must be privpart frames",
    )


class _RefusingUnpickler:
    def __init__(self, *_: Any, **__: Any) -> None:
        _refuse()


def forbid_unpickling() -> None:
    """Replace pickle.load(s), pickle.Unpickler and torch.load with functions that raise."""
    pickle.loads = _refuse  # type: ignore[assignment]
    pickle.load = _refuse  # type: ignore[assignment]
    pickle.Unpickler = _RefusingUnpickler  # type: ignore[assignment,misc]
    import torch
    import torch.serialization

    torch.load = _refuse  # type: ignore[assignment]
    torch.serialization.load = _refuse  # type: ignore[assignment]
