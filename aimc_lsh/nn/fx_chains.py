"""Find the channel chains of a network whose neurons can be merged, by tracing it with ``torch.fx``.

A *merge chain* is ``producer -> [BatchNorm] -> ReLU -> [pass-through ops] -> consumer`` where

* the producer is a plain ``nn.Conv2d`` (``groups=1``) or ``nn.Linear`` and the consumer is one too;
* the optional norm is an affine ``BatchNorm1d``/``BatchNorm2d`` with running statistics;
* the ReLU is ``nn.ReLU``, ``F.relu``, ``torch.relu`` or ``Tensor.relu`` (in place or not);
* the pass-through ops act on every channel separately and commute with a positive scale per channel:
  max/average pooling (plain and adaptive), dropout, identity, and one ``flatten`` from dimension 1 or
  one spatial ``mean`` over dimensions (2, 3) (only in front of a linear consumer);
* every node from the producer to the last op before the consumer has **exactly one user**, and the
  producer, norm and consumer modules are each called once and never read as attributes elsewhere.

The one-user rule is what keeps residual networks consistent: a channel that also flows into a residual
addition, a concatenation or the network output has two users (or a non-ReLU user) and is never part
of a chain. In a CIFAR ResNet only the block-internal channels ``layerX.Y.conv1 -> bn1 -> relu ->
conv2`` qualify; the stem, every ``conv2``/``bn2`` output, the option-B ``downsample`` convolutions
and the classifier input all belong to the residual stream and keep their width.

Modules that contain no convolution, linear or BatchNorm layer (e.g. input normalisation, option-A
shortcuts) are traced as opaque leaves, so their Python control flow does not stop the trace.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["MergeChain", "find_merge_chains", "trace_model"]

_LAYERS = (nn.Conv2d, nn.Linear)
_STRUCTURAL = (nn.Conv2d, nn.Linear, _BatchNorm)
_RELU_FUNCTIONS = {F.relu, torch.relu, torch.relu_}
_SPATIAL_FUNCTIONS = {"max_pool2d", "_max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d"}
_SPATIAL_MODULES = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_NEUTRAL_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)


@dataclass(frozen=True)
class MergeChain:
    """One mergeable ``producer -> [norm] -> ReLU -> ... -> consumer`` chain (module paths)."""

    producer: str
    """Path of the layer whose output channels (neurons) are merged."""
    norm: str | None
    """Path of the BatchNorm between producer and ReLU, or None."""
    consumer: str
    """Path of the layer that reads the channels (its input columns are merged accordingly)."""
    ops: tuple[str, ...]
    """Names of the pass-through ops between the ReLU and the consumer (e.g. ``("max_pool2d",
    "flatten")``)."""
    flattened: bool
    """True if the channels are flattened before a linear consumer (each channel then feeds
    ``in_features / channels`` consecutive consumer inputs)."""


class _ChainTracer(fx.Tracer):
    """fx tracer that keeps modules without conv/linear/BatchNorm layers opaque."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, _STRUCTURAL) or super().is_leaf_module(m, module_qualified_name):
            return True
        return not any(isinstance(sub, _STRUCTURAL) for sub in m.modules())


def trace_model(model: nn.Module) -> fx.Graph:
    """Trace ``model`` symbolically (see the module docstring for which modules stay opaque).

    Args:
        model: The network.

    Returns:
        The fx graph; ``call_module`` targets are module paths as in ``named_modules()``.

    Raises:
        ValueError: If the model cannot be traced, naming its class and the tracer's message.

    """
    try:
        return _ChainTracer().trace(model)
    except Exception as err:  # fx raises TraceError, TypeError, NotImplementedError, ...
        raise ValueError(
            f"cannot trace {type(model).__name__} with torch.fx ({type(err).__name__}: {err}); neuron "
            "merging needs a symbolically traceable forward (data-dependent checks can be moved into a "
            "function registered with torch.fx.wrap)"
        ) from err


def _module(model: nn.Module, node: fx.Node) -> nn.Module | None:
    return model.get_submodule(str(node.target)) if node.op == "call_module" else None


def _is_relu(model: nn.Module, node: fx.Node) -> bool:
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS
    if node.op == "call_method":
        return node.target in ("relu", "relu_")
    return isinstance(_module(model, node), nn.ReLU)


def _flatten_from_1(node: fx.Node, model: nn.Module) -> bool:
    module = _module(model, node)
    if isinstance(module, nn.Flatten):
        return module.start_dim == 1 and module.end_dim == -1
    if (node.op == "call_function" and node.target is torch.flatten) or (
        node.op == "call_method" and node.target == "flatten"
    ):
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        return start == 1 and end == -1
    return False


def _spatial_mean(node: fx.Node) -> bool:
    """``x.mean((2, 3))`` / ``torch.mean(x, (-2, -1))`` without keepdim: global average pooling + flatten."""
    if not (
        (node.op == "call_method" and node.target == "mean")
        or (node.op == "call_function" and node.target is torch.mean)
    ):
        return False
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    return isinstance(dims, tuple | list) and sorted(dims) in ([2, 3], [-2, -1]) and not keepdim


def _passthrough(model: nn.Module, node: fx.Node, spatial_ok: bool) -> str | None:
    """Name of a channel-wise, positively homogeneous op, or None if ``node`` is not one."""
    module = _module(model, node)
    if isinstance(module, _NEUTRAL_MODULES):
        return type(module).__name__
    if node.op == "call_function" and node.target is F.dropout:
        return "dropout"
    if not spatial_ok:
        return None
    if isinstance(module, _SPATIAL_MODULES):
        return None if getattr(module, "return_indices", False) else type(module).__name__
    if node.op == "call_function" and getattr(node.target, "__name__", "") in _SPATIAL_FUNCTIONS:
        if node.kwargs.get("return_indices", False):
            return None
        return node.target.__name__.lstrip("_")
    return None


def _single_user(node: fx.Node) -> fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _mergeable_layer(module: nn.Module | None) -> bool:
    if type(module) not in _LAYERS:
        return False
    return not isinstance(module, nn.Conv2d) or module.groups == 1


def _foldable_norm(module: nn.Module | None) -> bool:
    return (
        isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d)
        and module.affine
        and module.running_mean is not None
        and module.running_var is not None
    )


def _follow(model: nn.Module, producer: fx.Node, calls: Counter[str], blocked: set[str]) -> MergeChain | None:
    """The chain starting at ``producer``, or None if its channels reach anything but one consumer."""
    module = _module(model, producer)

    def once(node: fx.Node) -> bool:
        return calls[str(node.target)] == 1 and str(node.target) not in blocked

    if not _mergeable_layer(module) or not once(producer):
        return None
    channels_first = isinstance(module, nn.Conv2d)
    node = _single_user(producer)
    norm = None
    if node is not None and _foldable_norm(_module(model, node)) and once(node):
        norm, node = str(node.target), _single_user(node)
    if node is None or not _is_relu(model, node):
        return None
    ops: list[str] = []
    flattened = False
    while True:
        nxt = _single_user(node)
        if nxt is None:
            return None
        consumer = _module(model, nxt)
        if _mergeable_layer(consumer) and nxt.args and nxt.args[0] is node and once(nxt):
            if isinstance(consumer, nn.Conv2d) and (flattened or not channels_first):
                return None
            if isinstance(consumer, nn.Linear) and channels_first and not flattened:
                return None  # a linear layer on (N, C, H, W) mixes the last dimension, not channels
            return MergeChain(str(producer.target), norm, str(nxt.target), tuple(ops), flattened)
        if channels_first and not flattened and _flatten_from_1(nxt, model):
            ops.append("flatten")
            flattened = True
        elif channels_first and not flattened and _spatial_mean(nxt):
            ops.append("mean")
            flattened = True
        else:
            name = _passthrough(model, nxt, spatial_ok=channels_first and not flattened)
            if name is None:
                return None
            ops.append(name)
        node = nxt


def find_merge_chains(model: nn.Module) -> list[MergeChain]:
    """All mergeable chains of ``model``, in execution order (see the module docstring).

    Args:
        model: The network (plain ``nn.Conv2d``/``nn.Linear`` layers; hashed or analog layers are
            opaque and never part of a chain, so merge before patching).

    Returns:
        The chains; a layer may be the consumer of one chain and the producer of the next.

    Raises:
        ValueError: If ``model`` cannot be traced with ``torch.fx``.

    """
    graph = trace_model(model)
    calls = Counter(str(n.target) for n in graph.nodes if n.op == "call_module")
    blocked: set[str] = set()
    for node in graph.nodes:  # parameters read directly in forward: leave their modules alone
        if node.op == "get_attr":
            parts = str(node.target).split(".")
            blocked.update(".".join(parts[:i]) for i in range(1, len(parts)))
    shared: Counter[int] = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    for path, module in model.named_modules():
        if any(shared[id(p)] > 1 for p in module.parameters(recurse=False)):
            blocked.add(path)  # tied weights
    chains = []
    for node in graph.nodes:
        if node.op == "call_module":
            chain = _follow(model, node, calls, blocked)
            if chain is not None:
                chains.append(chain)
    return chains
