"""What identifies a target architecture: enough to rebuild it without unpickling anything."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from privpart.errors import PrivpartError
from privpart.models.normalize import Normalization


@dataclass(frozen=True)
class ModelSpec:
    """Architecture name (zoo name or `file.py:factory`) plus the input/output adaptation.

    `normalization`: what the model does to its [0, 1] inputs first (ImageNet's statistics for
    torchvision weights); None for models trained on raw [0, 1] inputs.
    """

    arch: str
    in_channels: int = 1
    num_classes: int = 10
    input_size: tuple[int, int] = (32, 32)
    normalization: Normalization | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, *self.input_size)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        if self.normalization is None:
            del d["normalization"]  # models on raw [0, 1] inputs: meta.json as before
        else:
            d["normalization"] = self.normalization.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        return cls(
            arch=str(d["arch"]),
            in_channels=int(d["in_channels"]),
            num_classes=int(d["num_classes"]),
            input_size=(int(d["input_size"][0]), int(d["input_size"][1])),
            normalization=Normalization.from_dict(d["normalization"])
            if d.get("normalization")
            else None,
        )


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """Parse `CxHxW` (e.g. `1x32x32`) as given on the command line."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        c, h, w = (int(p) for p in parts)
    except ValueError:
        raise PrivpartError(
            f"input shape {text!r} is not of the form CxHxW", "write it like 1x32x32 or 3x224x224"
        ) from None
    if min(c, h, w) <= 0:
        raise PrivpartError(f"input shape {text!r} has a non-positive size", "use positive sizes")
    return c, h, w
