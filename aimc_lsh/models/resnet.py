"""ResNet for CIFAR (He et al. 2016, section 4.2) in the two shortcut variants used by public weights.

Depth ``6n + 2`` (20, 32, 44, 56, 110): a 3x3 stem conv (16 channels) + BN + ReLU, three stages of ``n``
basic blocks with 16, 32 and 64 channels (the first block of stages 2 and 3 has stride 2), global
average pooling and a linear classifier. Convolutions are 3x3 and bias-free.

* **Option A** (``shortcut="A"``, akamaster/pytorch_resnet_cifar10 layout): where the shape changes the
  shortcut is parameter-free, ``x[:, :, ::2, ::2]`` zero-padded with ``planes // 4`` channels on each
  side; the classifier is named ``linear``.
* **Option B** (``shortcut="B"``, chenyaofo/pytorch-cifar-models layout): where the shape changes the
  shortcut is ``downsample = Sequential(1x1 conv (stride 2, no bias), BatchNorm)``; the classifier is
  named ``fc``.

Module names match those checkpoints (``conv1``, ``bn1``, ``layer1.0.conv1``, ...), so their state dicts
load strictly. An optional :class:`~aimc_lsh.models.normalize.Normalize` first submodule named
``normalize`` lets the model take images scaled to [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from aimc_lsh.models.normalize import Normalize

__all__ = ["BasicBlock", "PadShortcut", "CifarResNet", "resnet20_a", "resnet20_b", "cifar_resnet"]

SHORTCUTS = ("A", "B")


class PadShortcut(nn.Module):
    """Parameter-free option-A shortcut: spatial subsampling by ``stride`` plus zero channel padding."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        """Create the shortcut mapping ``in_planes`` channels to ``planes`` (``planes >= in_planes``)."""
        super().__init__()
        if planes < in_planes:
            raise ValueError(f"option-A shortcut cannot reduce channels ({in_planes} -> {planes})")
        self.stride = stride
        self.pad_before = (planes - in_planes) // 2  # = planes // 4 when the stage doubles the width
        self.pad_after = planes - in_planes - self.pad_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Subsample and zero-pad channels."""
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))

    def extra_repr(self) -> str:
        """Show stride and channel padding."""
        return f"stride={self.stride}, pad=({self.pad_before}, {self.pad_after})"


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with a residual connection (ReLU after the sum)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "A") -> None:
        """Create the block.

        Args:
            in_planes: Input channels.
            planes: Output channels.
            stride: Stride of the first convolution (and of the shortcut).
            shortcut: ``"A"`` (parameter-free, attribute ``shortcut``) or ``"B"`` (1x1 conv + BN,
                attribute ``downsample``) where the shape changes.

        """
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        reshape = stride != 1 or in_planes != planes
        if shortcut == "A":
            self.shortcut: nn.Module = PadShortcut(in_planes, planes, stride) if reshape else nn.Identity()
        elif shortcut == "B":
            self.downsample: nn.Module | None = (
                nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
                )
                if reshape
                else None
            )
        else:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        self.shortcut_type = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual forward pass."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut_type == "A":
            identity = self.shortcut(x)
        else:
            identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class CifarResNet(nn.Module):
    """CIFAR ResNet of depth ``6n + 2`` with option-A or option-B shortcuts."""

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        *,
        shortcut: str = "A",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        in_channels: int = 3,
    ) -> None:
        """Create the network (randomly initialised: Kaiming-normal convs/linear, BN weight 1 bias 0).

        Args:
            depth: ``6n + 2`` with ``n >= 1`` (20, 32, 44, 56, 110, ...).
            num_classes: Classifier outputs.
            shortcut: ``"A"`` (classifier ``linear``) or ``"B"`` (classifier ``fc``).
            mean: Per-channel input mean; with ``std`` adds a ``normalize`` first submodule so the model
                takes images in [0, 1]. ``None`` (both) means inputs are already normalised.
            std: Per-channel input std.
            in_channels: Input image channels.

        Raises:
            ValueError: On a depth that is not ``6n + 2``, a bad shortcut, class count or mean/std.

        """
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110), got {depth!r}")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std for input normalisation, or neither")
        blocks = (depth - 2) // 6
        self.depth, self.num_classes, self.shortcut_type = depth, num_classes, shortcut
        self.classifier_name = "linear" if shortcut == "A" else "fc"
        if mean is not None and std is not None:
            self.normalize = Normalize(mean, std)
        else:
            self.normalize = None
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        planes_in = 16
        for index, (planes, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
            layers = []
            for b in range(blocks):
                layers.append(BasicBlock(planes_in, planes, stride if b == 0 else 1, shortcut))
                planes_in = planes
            self.add_module(f"layer{index}", nn.Sequential(*layers))
        self.add_module(self.classifier_name, nn.Linear(64, num_classes))
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def classifier(self) -> nn.Module:
        """The final linear layer (``linear`` for option A, ``fc`` for option B)."""
        return getattr(self, self.classifier_name)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled 64-dimensional features (everything but the classifier)."""
        if self.normalize is not None:
            x = self.normalize(x)
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N, num_classes)."""
        return self.classifier(self.features(x))


def cifar_resnet(
    depth: int = 20,
    num_classes: int = 10,
    shortcut: str = "A",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> CifarResNet:
    """Build a randomly initialised CIFAR ResNet; see :class:`CifarResNet`."""
    return CifarResNet(depth, num_classes, shortcut=shortcut, mean=mean, std=std)


def resnet20_a(num_classes: int = 10, **kwargs) -> CifarResNet:
    """ResNet-20 with option-A shortcuts (akamaster layout, classifier ``linear``)."""
    return CifarResNet(20, num_classes, shortcut="A", **kwargs)


def resnet20_b(num_classes: int = 10, **kwargs) -> CifarResNet:
    """ResNet-20 with option-B shortcuts (chenyaofo layout, classifier ``fc``)."""
    return CifarResNet(20, num_classes, shortcut="B", **kwargs)
