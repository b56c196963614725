"""A near-chance target is refused in the caller's words: parameters for the library, flags
for the command line."""

from __future__ import annotations

import pytest

from privpart.cli.flags import spoken
from privpart.errors import PrivpartValueError
from privpart.training import TargetCheck, require_useful


def test_a_weak_target_error_names_parameters_and_reads_as_flags() -> None:
    weak = TargetCheck(accuracy=0.26, chance=0.25, bar=0.35, samples=200)
    assert weak.weak
    require_useful(weak, allow_weak=True)  # allowed: no error
    with pytest.raises(ValueError) as err:
        require_useful(weak, allow_weak=False)
    assert isinstance(err.value, PrivpartValueError)
    hint = err.value.hint
    assert "`train_epochs`, `train_limit`" in hint and "`allow_weak_target=True`" in hint
    assert "--" not in hint
    cli = spoken(err.value)[1]
    assert "--epochs, --train-limit" in cli and "--allow-weak-target" in cli and "`" not in cli
