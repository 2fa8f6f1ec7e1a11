"""Forward hooks that keep the outputs of named modules, for feature distillation during training."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn


def default_feature_layers(model: nn.Module) -> list[str]:
    """Direct children of ``model`` that hold a convolution or linear layer, except the last.

    A child counts when any of its parameters is a weight of two or more dimensions (convolutions and
    linear layers, digital or swapped; BatchNorm's are one-dimensional). The last such child is the
    classifier, whose output logit distillation already matches. ResNet-20: ``conv1``, ``layer1``,
    ``layer2``, ``layer3``.
    """
    holders = [
        name
        for name, child in model.named_children()
        if any(p.dim() >= 2 for n, p in child.named_parameters() if n.rsplit(".", 1)[-1] == "weight")
    ]
    return holders[:-1]


def check_module_paths(model: nn.Module, paths: Sequence[str]) -> dict[str, nn.Module]:
    """The modules of ``model`` at ``paths``, by path.

    Raises:
        ValueError: If a path names no module of ``model``, or no path is given.

    """
    if not paths:
        raise ValueError(
            "feature distillation needs at least one module path to match: give feature_kd_layers "
            "(the model has no default ones, see default_feature_layers)"
        )
    modules = dict(model.named_modules())
    missing = [p for p in paths if p not in modules]
    if missing:
        children = ", ".join(name for name, _ in model.named_children())
        raise ValueError(
            f"no module {missing} in the model for feature distillation; its children: {children}"
        )
    return {p: modules[p] for p in paths}


class FeatureTaps:
    """Keep the latest output of each named module of a model (forward hooks; :meth:`close` removes them).

    Args:
        model: The model whose modules are tapped.
        paths: Dotted module paths.

    Raises:
        ValueError: If a path names no module of ``model``, or no path is given.

    """

    def __init__(self, model: nn.Module, paths: Sequence[str]) -> None:
        modules = check_module_paths(model, paths)
        self.paths = list(paths)
        self._outputs: dict[str, Tensor] = {}
        self._handles = [modules[p].register_forward_hook(self._keeper(p)) for p in self.paths]

    def _keeper(self, path: str) -> Callable[[nn.Module, tuple, Tensor], None]:
        def keep(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
            self._outputs[path] = output

        return keep

    def take(self) -> list[Tensor]:
        """The outputs of the last forward, in ``paths`` order, and forget them.

        Raises:
            RuntimeError: If a tapped module did not run since the last call.

        """
        missing = [p for p in self.paths if p not in self._outputs]
        if missing:
            raise RuntimeError(f"tapped modules {missing} did not run in the last forward")
        outputs = [self._outputs[p] for p in self.paths]
        self._outputs = {}
        return outputs

    def close(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._outputs = {}
