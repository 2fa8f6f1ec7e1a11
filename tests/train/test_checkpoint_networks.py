"""Checkpoints of merged and conventional networks: widths, kinds and the digital network they hold."""

import pytest
import torch
from torch import nn

from aimc_lsh.hardware import HardwareConfig
from aimc_lsh.kernels import HashConfig
from aimc_lsh.models import get_backbone
from aimc_lsh.nn import patch_model
from aimc_lsh.nn.merging import MergeConfig, merge_neurons
from aimc_lsh.train import (
    checkpoint_kind,
    digital_network,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)

X = torch.rand(8, 1, 8, 8)


@pytest.fixture(scope="module")
def merged():
    backbone = get_backbone("digits_cnn")
    model, report = merge_neurons(backbone, MergeConfig(target_ratio=0.5))
    assert model.conv.out_channels == 8 < backbone.conv.out_channels
    return model


def test_a_merged_network_round_trips_through_its_checkpoint(tmp_path, merged):
    path = save_checkpoint(tmp_path / "merged.pt", merged, backbone="digits_cnn")
    state = load_checkpoint(path)
    assert state["widths"]["conv"] == {"in": 1, "out": 8} and state["widths"]["fc"] == {"in": 128, "out": 10}
    assert checkpoint_kind(state) == "weights"
    rebuilt = model_from_checkpoint(path)  # the 16-channel backbone, resized, then loaded
    with torch.no_grad():
        assert torch.equal(rebuilt(X), merged(X))
    network = digital_network(state, get_backbone("digits_cnn"))
    with torch.no_grad():
        assert torch.equal(network(X), merged(X))


def test_without_recorded_widths_a_merged_checkpoint_does_not_fit(tmp_path, merged):
    path = save_checkpoint(tmp_path / "merged.pt", merged, backbone="digits_cnn")
    state = load_checkpoint(path)
    del state["widths"]  # as written before widths were recorded
    with pytest.raises(ValueError, match="do not fit the backbone"):
        digital_network(state, get_backbone("digits_cnn"))


def test_kinds_and_the_digital_network_of_a_conventional_checkpoint(tmp_path):
    backbone = get_backbone("digits_cnn")
    hashed = patch_model(backbone, HashConfig(hash_length=16))
    state = load_checkpoint(save_checkpoint(tmp_path / "hashed.pt", hashed, backbone="digits_cnn"))
    assert checkpoint_kind(state) == "hashed"
    with pytest.raises(ValueError, match="hashed checkpoint has no digital network"):
        digital_network(state, backbone)

    analog = patch_model(backbone, HardwareConfig(placement="conventional", device="pcm"))
    with torch.no_grad():
        analog.fc.weight.mul_(0.5)  # as if hardware-aware fine-tuned
    state = load_checkpoint(save_checkpoint(tmp_path / "conventional.pt", analog, backbone="digits_cnn"))
    assert checkpoint_kind(state) == "weights"
    network = digital_network(state, get_backbone("digits_cnn"))
    assert type(network.conv) is nn.Conv2d and type(network.fc) is nn.Linear
    assert torch.equal(network.fc.weight, 0.5 * backbone.fc.weight)
    assert torch.equal(network.conv.weight, backbone.conv.weight)


@pytest.mark.parametrize("content", [b"", b"hello\n", b"\x80\x02}q\x00(X", b"PK\x03\x04" + bytes(64)])
def test_a_corrupt_checkpoint_file_is_named_not_a_torch_traceback(tmp_path, content):
    from aimc_lsh.models import CheckpointError

    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"cannot load {path} as a weights-only torch checkpoint: "):
        load_checkpoint(path)
