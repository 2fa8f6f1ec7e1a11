"""A two-layer probe with two hidden neurons that differ only on inputs the data never uses."""

import torch
from torch import nn


class TwinNeuronProbe(nn.Module):
    """``fc2(ReLU(fc1(x)))`` with 6 inputs, ``hidden`` hidden neurons and 2 outputs."""

    def __init__(self, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, hidden), nn.Linear(hidden, 2)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def twin_neuron_probe(hidden: int, seed: int) -> tuple[TwinNeuronProbe, torch.Tensor]:
    """The probe (drawn with ``seed``) and 256 inputs; neurons 0 and 1 differ only on inputs 3..5 (zero)."""
    torch.manual_seed(seed)
    model = TwinNeuronProbe(hidden)
    with torch.no_grad():
        model.fc1.weight[1] = model.fc1.weight[0]
        model.fc1.weight[1, 3:] += torch.tensor([2.0, -1.0, 1.5])
        model.fc1.bias[1] = model.fc1.bias[0]
    x = torch.cat([torch.randn(256, 3), torch.zeros(256, 3)], dim=1)
    return model, x
