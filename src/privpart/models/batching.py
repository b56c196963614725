"""How many samples one inference batch may hold, from the model's own activation sizes.

A fixed batch of 256 costs nothing on 28-px Fashion-MNIST but ~3 GiB of activations for a
224-px ResNet-50 (its stem alone writes 3.2 MB per image, several such tensors alive at once),
which was most of a 224-px audit's peak memory. Batches in evaluation and feature extraction
change only how the work is chunked, never a result: sizing them from the largest activation
keeps the peak bounded on any model and leaves small models at the old batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ACTIVATION_BUDGET_BYTES = 512 * 2**20  # activations of one batch, at most (about)
LIVE_TENSORS = 3  # activations alive at once in a forward pass: input, output, a residual
MAX_BATCH = 256


def largest_activation_bytes(model: nn.Module, sample_shape: Sequence[int]) -> int:
    """Bytes of the largest tensor any submodule outputs for one sample of `sample_shape`
    (C, H, W), measured by one forward pass on zeros with hooks (no gradients)."""
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    largest = 0

    def hook(_m: nn.Module, _i: object, out: object) -> None:
        nonlocal largest
        if isinstance(out, torch.Tensor):
            largest = max(largest, out.numel() * out.element_size())

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *sample_shape, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return largest


def inference_batch(
    model: nn.Module,
    sample_shape: Sequence[int],
    budget_bytes: int = ACTIVATION_BUDGET_BYTES,
    limit: int = MAX_BATCH,
) -> int:
    """Samples per eval-mode batch so that about `budget_bytes` of activations are alive at
    once: between 1 and `limit`."""
    per_sample = LIVE_TENSORS * max(largest_activation_bytes(model, sample_shape), 1)
    return max(1, min(limit, budget_bytes // per_sample))
