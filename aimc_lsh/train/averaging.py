"""Exponential moving average of a model's weights (Polyak averaging) over the end of a recovery run.

Once a hashed model is fully hashed, its test accuracy moves by one to two points from one evaluation to
the next (about the test set's sampling error, and the weights' codes flip as they move). An average of
the weights over the last steps is a cheap way to land in the middle of that walk instead of wherever
the last step left it. :class:`WeightAverage` keeps

    shadow <- d * shadow + (1 - d) * live,   d = min(decay, (1 + n) / (10 + n))

after the n-th update (the second term lets the first updates follow the live weights closely instead of
remembering the starting point for ``1 / (1 - decay)`` steps), for every parameter and the running
statistics of every BatchNorm layer (``num_batches_tracked`` and other buffers stay the live model's).
The hashed layers compute their codes from the averaged weights and projections when the average is
applied: nothing else has to change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

_BN_STATISTICS = ("running_mean", "running_var")


def averaged_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The tensors :class:`WeightAverage` averages: every parameter and BatchNorm's running statistics.

    Keys are the names ``model.state_dict()`` uses.
    """
    tensors = dict(model.named_parameters())
    for path, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            for name in _BN_STATISTICS:
                tensors[f"{path}.{name}" if path else name] = getattr(module, name)
    return tensors


class WeightAverage:
    """Exponential moving average of a model's parameters and BatchNorm statistics (see the module docstring).

    Args:
        decay: Upper bound of the per-update decay ``d``, in (0, 1) (0.999 averages over roughly the last
            thousand updates).

    Raises:
        ValueError: If ``decay`` is not in (0, 1).

    """

    def __init__(self, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay!r}")
        self.decay = float(decay)
        self.updates = 0
        self.shadow: dict[str, Tensor] = {}

    def reset(self) -> None:
        """Forget the average: the next :meth:`update` starts it from the live weights."""
        self.updates = 0
        self.shadow = {}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average (the first update copies them)."""
        if not self.shadow:
            self.shadow = {name: tensor.detach().clone() for name, tensor in averaged_tensors(model).items()}
        else:
            weight = 1.0 - min(self.decay, (1 + self.updates) / (10 + self.updates))
            for name, tensor in self._live_tensors(model).items():
                self.shadow[name].lerp_(tensor.detach(), weight)
        self.updates += 1

    def _live_tensors(self, model: nn.Module) -> dict[str, Tensor]:
        """The model's averaged tensors, checked against the average's names."""
        if not self.shadow:
            raise ValueError("the average holds no weights yet: call update() first")
        live = averaged_tensors(model)
        if set(live) != set(self.shadow):
            raise ValueError("the model's parameters are not the ones this average was started with")
        return live

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the model's parameters and BatchNorm statistics with the average (in place)."""
        for name, tensor in self._live_tensors(model).items():
            tensor.copy_(self.shadow[name])

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """Within the block the model holds the average; its own weights are put back afterwards."""
        live = self._live_tensors(model)
        kept = {name: tensor.detach().clone() for name, tensor in live.items()}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, tensor in live.items():
                    tensor.copy_(kept[name])

    def state_dict(self) -> dict[str, Any]:
        """Plain-data state (loadable with ``torch.load(weights_only=True)``)."""
        return {"decay": self.decay, "updates": self.updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the decay must match)."""
        if float(state["decay"]) != self.decay:
            raise ValueError(f"the saved average used decay {state['decay']}, this one {self.decay}")
        self.updates = int(state["updates"])
        self.shadow = {name: tensor.clone() for name, tensor in state["shadow"].items()}
