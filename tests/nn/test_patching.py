import pytest
import torch
from torch import nn

from aimc_lsh.kernels import HashConfig
from aimc_lsh.nn import HashedConv2d, HashedLinear, hashed_layers, patch_model, to_digital


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.block = nn.Sequential(
            nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2)
        )
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = self.block(torch.relu(self.conv1(x)))
        return self.head(x.mean(dim=(2, 3)))


def test_patch_swaps_all_layers_and_keeps_the_original_intact():
    model = Small().eval()
    patched = patch_model(model, HashConfig(hash_length=32))
    assert [type(m) for _, m in hashed_layers(patched)] == [
        HashedConv2d,
        HashedConv2d,
        HashedConv2d,
        HashedLinear,
    ]
    assert type(model.conv1) is nn.Conv2d  # not in place
    assert torch.equal(patched.block[0].weight, model.block[0].weight)
    assert patched(torch.randn(2, 3, 8, 8)).shape == (2, 4)


def test_skip_leaves_layers_untouched_including_prefixes():
    model = Small()
    patched = patch_model(model, HashConfig(), skip=["conv1", "block"])
    assert type(patched.conv1) is nn.Conv2d and type(patched.block[0]) is nn.Conv2d
    assert type(patched.block[3]) is nn.Conv2d and type(patched.head) is HashedLinear
    assert torch.equal(patched.conv1.weight, model.conv1.weight)


def test_overrides_by_module_path_and_filter_fn():
    patched = patch_model(
        Small(),
        HashConfig(hash_length=32),
        overrides={
            "block.3": {"hash_length": 8},
            "head": None,
            "conv1": HashConfig(kernel="learned_projection"),
        },
        filter_fn=lambda path, m: path != "block.0",
    )
    assert patched.block[3].config.hash_length == 8
    assert type(patched.head) is nn.Linear and type(patched.block[0]) is nn.Conv2d
    assert patched.conv1.config.kernel == "learned_projection"


def test_unknown_paths_are_rejected_with_the_list_of_layers():
    with pytest.raises(ValueError, match="skip names no Linear/Conv2d layer: conv9; patchable layers: conv1"):
        patch_model(Small(), HashConfig(), skip=["conv9"])
    with pytest.raises(ValueError, match="overrides names no"):
        patch_model(Small(), HashConfig(), overrides={"block.1": {"hash_length": 4}})


def test_arguments_of_the_wrong_type_are_named():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        patch_model("resnet20", HashConfig())
    with pytest.raises(TypeError, match="config must be a HashConfig or a hardware config, got dict"):
        patch_model(Small(), {"hash_length": 8})
    with pytest.raises(TypeError, match=r"overrides\['head'\] must be a HashConfig, a dict .* got int"):
        patch_model(Small(), HashConfig(), overrides={"head": 8})


def test_layers_with_nan_weights_are_named_by_path():
    model = Small()
    with torch.no_grad():
        model.block[3].weight[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="layer 'block.3': its weight holds 1 NaN or inf value"):
        patch_model(model, HashConfig(hash_length=8))
    patch_model(model, HashConfig(hash_length=8), skip=["block.3"])  # a layer left digital may hold them


def test_round_trip_to_digital_reproduces_the_original_outputs():
    model = Small().eval()
    x = torch.randn(2, 3, 8, 8)
    restored = to_digital(patch_model(model, HashConfig(hash_length=16)))
    assert not list(hashed_layers(restored))
    torch.testing.assert_close(restored(x), model(x))


def test_to_digital_only_replaces_the_named_layers_and_names_unknown_ones():
    hashed = patch_model(Small(), HashConfig(hash_length=16))
    partly = to_digital(hashed, only=["block.0"])
    assert isinstance(partly.block[0], nn.Conv2d) and not isinstance(partly.block[0], HashedConv2d)
    assert [path for path, _ in hashed_layers(partly)] == ["conv1", "block.3", "head"]
    assert torch.equal(partly.block[0].weight, hashed.block[0].weight)
    assert isinstance(hashed.block[0], HashedConv2d)  # a copy unless inplace
    assert to_digital(hashed, only=[], inplace=True) is hashed and len(list(hashed_layers(hashed))) == 4
    with pytest.raises(
        ValueError, match=r"'block\.1' is not a hashed or PQ layer .*patched layers: conv1, block\.0"
    ):
        to_digital(hashed, only=["block.1"])


def test_inplace_patching_and_distinct_layer_seeds():
    model = Small()
    same = patch_model(model, HashConfig(hash_length=16, seed=3), inplace=True)
    assert same is model and isinstance(model.conv1, HashedConv2d)
    assert model.block[0].seed != model.block[3].seed
    again = patch_model(Small(), HashConfig(hash_length=16, seed=3))
    assert torch.equal(again.block[0].kernels[0].P, model.block[0].kernels[0].P)


def test_a_model_without_a_layer_to_swap_is_an_error_that_says_what_to_do():
    config = HashConfig(hash_length=8)
    with pytest.raises(ValueError, match=r"bare Linear: .*HashedLinear\.from_digital"):
        patch_model(nn.Linear(4, 3), config)
    with pytest.raises(ValueError, match=r"bare Conv2d: .*HashedConv2d\.from_digital"):
        patch_model(nn.Conv2d(2, 3, 3), config)
    patched = patch_model(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)), config)
    with pytest.raises(ValueError, match=r"its 2 layer\(s\) are patched already; .*to_digital"):
        patch_model(patched, config.replace(hash_length=16))
    with pytest.raises(ValueError, match="no nn.Linear / nn.Conv2d layer in this Sequential: there is"):
        patch_model(nn.Sequential(nn.ReLU()), config)
