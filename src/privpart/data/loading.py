"""Batches of model inputs streamed through a `torch.utils.data.DataLoader`.

Each batch is one loader item: the sampler yields a tensor of dataset indices, a worker process
decodes those samples at the requested size (raw uint8 where possible), and the main process
copies the batch to the device (pinned memory and a non-blocking copy on CUDA) and converts it to
floats in [0, 1] there. In-memory stores are sliced in the main process (no workers: indexing a
tensor is cheaper than shipping it between processes).

A decoding failure inside a worker comes back as a `privpart.errors.PrivpartError` with its hint.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from privpart.data.store import ImageStore, Size, to_unit
from privpart.device import to_device
from privpart.errors import PrivpartError

WORKERS_ENV = "PRIVPART_DATA_WORKERS"


def default_workers() -> int:
    """Decoding processes: `$PRIVPART_DATA_WORKERS`, else one per CPU but one (at most 8): the
    main process keeps a core for the model."""
    text = os.environ.get(WORKERS_ENV)
    if text:
        try:
            return max(0, int(text))
        except ValueError:
            raise PrivpartError(
                f"{WORKERS_ENV}={text!r} is not a number", "set it to 0 or more worker processes"
            ) from None
    return min(8, max(1, (os.cpu_count() or 1) - 1))


@dataclass(frozen=True)
class _Failure:
    """A worker's PrivpartError, carried back as data (DataLoader re-raises without the hint)."""

    message: str
    hint: str


class _Batches(TorchDataset):
    """Loader item = one whole batch: `dataset[index_tensor] -> (raw batch, index)`."""

    def __init__(self, store: ImageStore, size: Size) -> None:
        self.store = store
        self.size = size

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: Tensor) -> tuple[Tensor | _Failure, Tensor]:
        try:
            return self.store.batch(index, self.size), index
        except PrivpartError as exc:
            return _Failure(exc.message, exc.hint), index


class BatchLoader:
    """Iterate `(inputs in [0, 1] on device, dataset indices)` over `batches`.

    `batches` is re-iterable (a list, or a sampler whose order changes each epoch); iterating the
    loader again starts a new pass over it, with the same worker processes.
    """

    def __init__(
        self,
        store: ImageStore,
        batches: Iterable[Tensor],
        size: Size,
        device: torch.device | None = None,
        workers: int | None = None,
    ) -> None:
        self.device = device or torch.device("cpu")
        if workers is None:
            workers = default_workers() if store.streamed else 0
        self.workers = workers
        pin = self.device.type == "cuda" and torch.cuda.is_available()
        self.loader = DataLoader(
            _Batches(store, tuple(size)),
            batch_size=None,  # the sampler yields whole batches of indices
            sampler=batches,
            num_workers=workers,
            pin_memory=pin,
            persistent_workers=workers > 0,
            prefetch_factor=2 if workers > 0 else None,
            # A private generator: DataLoader seeds its workers from it, so iterating never draws
            # from the global RNG (which seeds dropout and initialisation).
            generator=torch.Generator(),
        )

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for raw, index in self.loader:
            if isinstance(raw, _Failure):
                raise PrivpartError(raw.message, raw.hint)
            yield to_unit(to_device(raw, self.device)), index


def chunks(index: Tensor, batch_size: int) -> list[Tensor]:
    """`index` in consecutive batches of `batch_size` (the last may be shorter)."""
    return [index[i : i + batch_size] for i in range(0, index.numel(), batch_size)]
