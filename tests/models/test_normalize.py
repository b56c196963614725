"""Input normalisation lives inside the model: cut names, exact splits and pickling unchanged."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torchvision

from privpart.errors import PrivpartError
from privpart.models import IMAGENET, ModelSpec, build_model, parse_normalization
from privpart.models.normalize import normalization_of
from privpart.partition import Partition


def test_normalised_model_keeps_its_cuts_and_splits_exactly() -> None:
    arch = "tinycnn"
    torch.manual_seed(0)
    plain = build_model(ModelSpec(arch, 3, 5, (32, 32))).eval()
    torch.manual_seed(0)
    norm = build_model(ModelSpec(arch, 3, 5, (32, 32), IMAGENET)).eval()
    assert type(norm).__name__ == type(plain).__name__ and isinstance(norm, type(plain))
    x = torch.rand(2, 3, 32, 32)
    mean, std = torch.tensor(IMAGENET.mean).view(1, 3, 1, 1), torch.tensor(IMAGENET.std)
    assert torch.allclose(norm(x), plain((x - mean) / std.view(1, 3, 1, 1)), atol=1e-5)
    p_plain, p_norm = Partition(plain, (3, 32, 32)), Partition(norm, (3, 32, 32))
    assert [c.name for c in p_norm.cuts] == [c.name for c in p_plain.cuts]
    cut = p_norm.interior_cuts[1]
    split = p_norm.split(cut)
    assert torch.equal(split.tail(split.head(x)), norm(x))
    assert "input_normalization" in dict(split.head.named_modules())
    assert "input_normalization" in dict(p_norm.split("input").tail.named_modules())


def test_normalisation_survives_checkpoints_pickle_and_copies() -> None:
    spec = ModelSpec("tinycnn", 3, 4, (16, 16), IMAGENET)
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert "normalization" not in ModelSpec("tinycnn").to_dict()  # old meta.json unchanged
    model = build_model(spec).eval()
    assert set(model.state_dict()) >= {"input_normalization.mean", "input_normalization.std"}
    x = torch.rand(1, 3, 16, 16)
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert torch.equal(clone(x), model(x))
        assert normalization_of(clone) is not None


def test_parse_normalization() -> None:
    assert parse_normalization("auto", 3, pretrained=True) == IMAGENET
    assert parse_normalization("auto", 1, pretrained=True) is None
    assert parse_normalization("auto", 3, pretrained=False) is None
    custom = parse_normalization("0.5/0.25", 1, pretrained=False)
    assert custom is not None and custom.mean == (0.5,) and custom.std == (0.25,)
    with pytest.raises(PrivpartError, match="one mean and one std per channel"):
        parse_normalization("0.5,0.5/0.2,0.2", 3, pretrained=False)
    with pytest.raises(PrivpartError, match="MEANS/STDS"):
        parse_normalization("zscore", 3, pretrained=False)


def test_a_bad_normalisation_names_the_parameter_and_the_command_line_its_flag(
    idx_dir, monkeypatch, capsys  # noqa: ANN001
) -> None:
    from privpart.cli import main
    from privpart.errors import PrivpartValueError

    with pytest.raises(ValueError) as err:
        parse_normalization("zscore", 3, pretrained=False)
    assert isinstance(err.value, PrivpartValueError) and err.value.param == "normalize"
    assert '`normalize="0.5,0.5,0.5/0.25,0.25,0.25"`' in err.value.hint
    assert "--" not in str(err.value)
    monkeypatch.setattr("sys.argv", ["privpart", "train", "tinycnn", "--dataset",
                                     f"idx:{idx_dir}", "--normalize", "zscore", "--out",
                                     str(idx_dir.parent / "never")])  # fmt: skip
    with pytest.raises(SystemExit) as stop:
        main()
    said = "".join("".join(capsys.readouterr()).split())
    assert stop.value.code == 2 and "--normalize0.5,0.5,0.5/0.25,0.25,0.25" in said


def test_weights_shape_reads_a_torchvision_file(tmp_path) -> None:  # noqa: ANN001
    from safetensors.torch import save_file

    from privpart.models.pretrained import weights_shape

    tv = torchvision.models.efficientnet_b0(weights=None)
    f = tmp_path / "b0.safetensors"
    save_file({k: v.contiguous() for k, v in tv.state_dict().items()}, str(f))
    assert weights_shape("efficientnet_b0", f) == (3, 1000)
    with pytest.raises(PrivpartError, match="not resnet50 weights"):
        weights_shape("resnet50", f)


def test_the_runtime_rebuilds_a_normalising_head_with_its_measurement(tmp_path) -> None:  # noqa: ANN001
    """The enclave rebuilds the head from its description and weights: the normalisation (and
    its mean/std, in the head's state) is part of the head and of its measurement."""
    from privpart.runtime.head import head_state, rebuild_head, split_checkpoint
    from privpart.training import save_checkpoint

    spec = ModelSpec("tinycnn", 3, 4, (16, 16), IMAGENET)
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "ck", build_model(spec).eval(), spec,
                           {"input_shape": [3, 16, 16]})  # fmt: skip
    split = split_checkpoint(ckpt, "block2")
    state = head_state(split.head)
    assert {"input_normalization.mean", "input_normalization.std"} <= set(state)
    head = rebuild_head(split.info, state)
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(head(x), split.head(x))
    plain = ModelSpec("tinycnn", 3, 4, (16, 16))
    torch.manual_seed(0)
    other = save_checkpoint(tmp_path / "plain", build_model(plain).eval(), plain,
                            {"input_shape": [3, 16, 16]})  # fmt: skip
    assert split_checkpoint(other, "block2").info.measurement != split.info.measurement
