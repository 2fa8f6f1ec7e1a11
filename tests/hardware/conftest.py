"""Small models and inputs shared by the hardware tests."""

import pytest
import torch
from torch import nn


class TinyNet(nn.Module):
    """Conv (8 -> 16, 3x3) -> ReLU -> strided conv (16 -> 12) -> linear: every layer kind, small."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(8, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 12, 3, stride=2, padding=1)
        self.fc = nn.Linear(12 * 4 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = self.conv2(x)
        return self.fc(x.flatten(1))


@pytest.fixture
def tiny_net():
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture
def tiny_input():
    return torch.randn(4, 8, 8, 8, generator=torch.Generator().manual_seed(1))
