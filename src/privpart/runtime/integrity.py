"""Spot-checking the untrusted tail: the trusted side recomputes a random share of its answers.

The tail server is the party the cut protects against; nothing a TEE does on the head's side
makes its arithmetic honest. A tail that answers right-shaped, wrong logits passes every frame
check. `TailCheck` is the remedy both trusted sides use (the enclave worker in enclave mode, the
device client in device mode): for a fraction `rate` of requests, chosen with the operating
system's CSPRNG (`secrets`) *after* the features are computed, so the tail cannot tell a checked
request from an unchecked one, the trusted side runs the tail itself on its CPU, from weights it
loaded and measured, and compares. A forging tail that forges a fraction f of answers is caught
per forged answer with probability `rate`; after n forged answers it has escaped with
probability (1 - rate)^n (rate 0.1: 2.7e-5 after 100).

Tolerance (`TOLERANCE`): the row of logits the tail answers may differ from the trusted fp32 CPU
recomputation by at most `atol + rtol * max|trusted row|` in every entry. Scaling by the row's
largest logit (not entry by entry) keeps near-zero logits from failing on rounding. Honest
differences: fp32 on another device, batched with other requests, or with TF32 convolutions
(cuDNN's default) stay near 1e-3 of the row's scale; a tail run in bf16 (8 mantissa bits, 2^-9
relative rounding per operation) reached at worst 0.5 % of it (tiny CNN after block2, VGG-16
after features.18) and 0.9 % (ResNet-50 after layer2), batches of 8, CPU autocast
(`test_a_bf16_tail_passes_the_default_tolerance_and_a_forgery_does_not` keeps the first). The
default, 3 % of the row scale, leaves 3x room for that; a forgery inside it cannot move any logit
by more than 3 % of the largest one, so it can only swap classes already that close. fp16 tails
(10 mantissa bits) round finer than bf16.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
from dataclasses import dataclass

import torch

from privpart.errors import PrivpartError
from privpart.runtime.errors import RuntimeFailure

LOG = logging.getLogger("privpart.runtime.integrity")
FORGERY = "tail_forgery_detected"
_RNG = secrets.SystemRandom()  # os.urandom underneath: the tail cannot predict the draws


@dataclass(frozen=True)
class Tolerance:
    """How far an honest tail's logits may be from the trusted recomputation (module docstring)."""

    rtol: float = 0.03  # of the largest |logit| of the row
    atol: float = 1e-3

    def bound(self, want: torch.Tensor) -> torch.Tensor:
        """Per-row allowed absolute difference, shape [batch, 1]."""
        scale = want.abs().amax(dim=1, keepdim=True)
        return self.atol + self.rtol * scale


TOLERANCE = Tolerance()


@dataclass(frozen=True)
class Mismatch:
    """Where the tail's answer left the tolerance: worst row, its difference and bound."""

    row: int
    difference: float
    bound: float
    tail_top: int
    trusted_top: int

    def describe(self, values: bool = True) -> str:
        """Where and by how much; without `values` only the row (the bound and the classes
        would tell a reader the trusted logits' scale and top class)."""
        if not values:
            return f"row {self.row}: logits out of tolerance"
        return (
            f"row {self.row}: logits differ by {self.difference:.4g} (allowed {self.bound:.4g}); "
            f"tail's top class {self.tail_top}, recomputed top class {self.trusted_top}"
        )


def compare(got: torch.Tensor, want: torch.Tensor, tol: Tolerance = TOLERANCE) -> Mismatch | None:
    """None if every row of `got` is within `tol` of `want` (same shape), else the worst row."""
    got, want = got.float(), want.float()
    bound = tol.bound(want)
    diff = (got - want).abs().nan_to_num(math.inf, math.inf, math.inf)  # NaN never passes
    excess = (diff - bound).amax(dim=1)  # > 0: the row is out of tolerance
    if bool((excess <= 0).all()):
        return None
    row = int(excess.argmax())
    return Mismatch(
        row, float(diff[row].max()), float(bound[row]), int(got[row].argmax()),
        int(want[row].argmax()),
    )  # fmt: skip


def parse_rate(rate: float, what: str = "--verify-tail") -> float:
    """A sampling rate in [0, 1], with an error in the caller's terms otherwise."""
    if not (isinstance(rate, int | float) and 0.0 <= float(rate) <= 1.0):
        raise PrivpartError(
            f"{what} must be a fraction between 0 and 1, got {rate!r}",
            f"{what} 1 recomputes every request's tail, 0.1 one in ten, 0 none",
        )
    return float(rate)


@dataclass
class TailCheck:
    """A trusted side's spot checks of the tail: which requests, how compared, what was found.

    `tail` is the trusted copy (eval mode, CPU); `rate` the fraction of requests recomputed.
    `confidential`: the failure's message and the alarm line leave the trusted side (the enclave
    worker's errors and stderr pass through its untrusted host), so they name the row only: with
    the recomputed top class in them, a host that alters the tail's answers in transit would
    learn the enclave's prediction from each detection."""

    tail: torch.nn.Module | None
    rate: float = 0.0
    tolerance: Tolerance = TOLERANCE
    where: str = "tail"
    confidential: bool = False

    def __post_init__(self) -> None:
        self.rate = parse_rate(self.rate)
        if self.rate > 0 and self.tail is None:
            raise PrivpartError(
                "tail verification needs the tail's weights on the trusted side",
                "load the split from the checkpoint you trust (split_checkpoint)",
            )
        self.checked = 0  # requests recomputed
        self.forgeries = 0  # of which the tail's answer was out of tolerance
        self._lock = threading.Lock()

    def pick(self) -> bool:
        """Recompute this request? Drawn from the OS CSPRNG; rate 1 always, 0 never."""
        if self.rate >= 1.0:
            return True
        return self.rate > 0.0 and _RNG.random() < self.rate

    def recompute(self, features: torch.Tensor) -> torch.Tensor:
        assert self.tail is not None
        with torch.inference_mode():
            return self.tail(features).float()

    def verify(self, got: torch.Tensor, want: torch.Tensor) -> None:
        """Count the check; a forged answer raises `tail_forgery_detected` and logs one alarm."""
        mismatch = compare(got, want, self.tolerance)
        with self._lock:
            self.checked += 1
            if mismatch is not None:
                self.forgeries += 1
        if mismatch is None:
            return
        what = mismatch.describe(values=not self.confidential)
        LOG.error("ALARM %s: %s answered forged logits (%s)", FORGERY, self.where, what)
        raise RuntimeFailure(
            FORGERY,
            f"the {self.where} answered logits that differ from the trusted recomputation of "
            f"the same features ({what}): the answer was withheld",
            "the tail server is faulty or malicious: stop sending it requests and check it "
            "serves the same checkpoint and cut",
        )
