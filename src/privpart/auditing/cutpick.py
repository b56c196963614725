"""The default audit cuts: one block boundary per feature-map resolution, shallow to deep.

Rule: for each spatial resolution below the input's, take the cut with the fewest bytes per
sample (the latest one on ties) — VGG's max-pools, ResNet's stem/`layer2`/`layer3`, EfficientNet's
stages. If that gives fewer than five, evenly spaced interior cuts fill up to five.
"""

from __future__ import annotations

from privpart.errors import PrivpartValueError
from privpart.partition import Cut, Partition


def block_boundary_cuts(part: Partition, minimum: int = 5) -> list[Cut]:
    interior = part.interior_cuts
    in_res = tuple(part.input_shape[1:])
    best: dict[tuple[int, ...], Cut] = {}
    for cut in interior:
        if len(cut.shape) != 3 or tuple(cut.shape[1:]) == in_res:
            continue
        res = tuple(cut.shape[1:])
        if res not in best or cut.bytes_per_sample <= best[res].bytes_per_sample:
            best[res] = cut
    chosen = {c.name: c for c in best.values()}
    if len(chosen) < minimum and interior:
        step = max(len(interior) / minimum, 1)
        for i in range(minimum):
            c = interior[min(int(i * step), len(interior) - 1)]
            chosen.setdefault(c.name, c)
            if len(chosen) >= minimum:
                break
    return sorted(chosen.values(), key=lambda c: c.index)


def resolve_cuts(part: Partition, spec: str) -> list[Cut]:
    """`default` (block boundaries), `all` (every interior cut) or a comma-separated list."""
    if spec == "default":
        return block_boundary_cuts(part)
    if spec == "all":
        return part.interior_cuts
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise PrivpartValueError(
            "`cuts` is empty", "give default, all, or names like features.4", param="cuts"
        )
    return sorted((part.cut(n) for n in names), key=lambda c: c.index)
