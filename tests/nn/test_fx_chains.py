"""Chain discovery with torch.fx: which channels may be merged and which must keep their width."""

import torch
from torch import nn

from aimc_lsh.models import DigitsNet, resnet20_a
from aimc_lsh.nn.fx_chains import MergeChain, find_merge_chains


class _Branches(nn.Module):
    """a -> relu feeds a residual add; b -> relu feeds a concat; c -> bn -> relu -> mean -> fc is a chain."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 1)
        self.c, self.bn = nn.Conv2d(8, 6, 1), nn.BatchNorm2d(6)
        self.mix = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        y = torch.relu(self.a(x))
        y = self.mix(y) + y  # the ReLU output has two users: residual
        z = torch.cat([torch.relu(self.b(y)), y], dim=1)  # concat: b's channels keep their width
        z = torch.relu(self.bn(self.c(z)))
        return self.fc(z.mean((2, 3)))


class _NoFlatten(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(5, 3)

    def forward(self, x):  # a linear layer on (N, C, H, W) mixes the width, not the channels
        return self.fc(torch.relu(self.conv(x)))


class _Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)

    def forward(self, x):  # conv1 is called twice, so its width cannot change
        return self.conv2(torch.relu(self.conv1(torch.relu(self.conv1(x)))))


def test_residual_and_concat_channels_are_never_chain_members():
    chains = find_merge_chains(_Branches())
    assert chains == [MergeChain("c", "bn", "fc", ("mean",), True)]


def test_flatten_pooling_and_layout_rules():
    assert find_merge_chains(DigitsNet()) == [MergeChain("conv", None, "fc", ("max_pool2d", "flatten"), True)]
    assert find_merge_chains(_NoFlatten()) == []
    assert find_merge_chains(_Shared()) == []
    seq = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(), nn.Conv2d(4, 2, 1))
    assert find_merge_chains(seq) == [MergeChain("0", None, "4", ("MaxPool2d", "Dropout"), False)]


def test_resnet_stem_and_block_outputs_stay_out_of_chains():
    producers = {c.producer for c in find_merge_chains(resnet20_a(mean=[0.5] * 3, std=[0.25] * 3))}
    assert producers == {f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in (0, 1, 2)}
