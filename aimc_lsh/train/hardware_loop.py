"""Hardware-in-the-loop training: every training forward runs on freshly programmed simulated arrays.

:class:`HardwareInTheLoop` puts the layers that go on arrays at inference on arrays while training:

* **hashed models** (any :class:`aimc_lsh.nn.HashedLayer`): each hashed layer gets
  :class:`aimc_lsh.hardware.AnalogHashStages` of the chosen placement (``codes_on_array``: the current
  weight codes programmed as conductances, match read by the ADC; ``projection_on_array``: P programmed,
  sense amplifiers decide h_x), exactly the stages :func:`aimc_lsh.train.hardware_model` evaluates with.
  Digital layers that stay digital at inference (skipped ``conv1``, a digital classifier) stay digital.
* **conventional models** (no hashed layer): one :class:`aimc_lsh.hardware.ConventionalArray` per
  ``nn.Conv2d`` / ``nn.Linear``; a forward hook replaces the layer's output by the array's (per-read noise,
  abs-max noise management, ADC, compensation factor).

Inside :meth:`HardwareInTheLoop.engaged` (one training step) every array is programmed with its layer's
current weights (fresh programming noise and drift exponents, seeded by the step), drifted to
``t_inference`` and drift-compensated. The backward pass goes straight through to the digital weights
(the hashed stages' straight-through sign and code match; the digital layer for conventional ones), so
the optimiser updates the digital model, as in aihwkit's hardware-aware training. Evaluation-mode forwards
and code outside the block are untouched, and the model's ``state_dict`` stays that of the digital
(or digitally hashed) model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import torch
from torch import Tensor, nn

from aimc_lsh.hardware import AnalogHashStages, ConventionalArray, HardwareConfig
from aimc_lsh.hardware.programming import derive_seed
from aimc_lsh.kernels import ConvGeometry, HashStages
from aimc_lsh.nn.digital import check_zero_padding, conv_geometry
from aimc_lsh.nn.layers import HashedLayer
from aimc_lsh.train.noise import HASHED_PLACEMENTS, NoiseSpec


def _weight_4d(module: nn.Module) -> Tensor:
    return module.weight if module.weight.dim() == 4 else module.weight[:, :, None, None]


def _analog_output(array: ConventionalArray, module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
    """Forward hook: the array's output in the forward pass, the digital layer's gradient in the backward."""
    x = inputs[0].detach()
    with torch.no_grad():
        if isinstance(module, nn.Linear):
            flat = x.reshape(-1, module.in_features, 1, 1)
            analog = array(flat).reshape(*x.shape[:-1], module.out_features)
            bias_shape: tuple[int, ...] = (module.out_features,)
        else:
            analog = array(x.contiguous(memory_format=torch.channels_last))
            bias_shape = (1, -1, 1, 1)
        if module.bias is not None:
            analog = analog + module.bias.detach().view(bias_shape)
    return output + (analog.to(output.dtype) - output).detach()


def _innermost(layer: HashedLayer) -> tuple[nn.Module, str]:
    """The module holding the layer's own stages and its attribute name, below training wrappers.

    Wrappers (:class:`aimc_lsh.train.noise.NoisyTrainingStages`, the STE scaling of
    :mod:`aimc_lsh.train.ste_scale`) keep the stages they wrap as the submodule ``inner``.
    """
    holder, name = layer, "stages"
    while isinstance(getattr(holder, name)._modules.get("inner"), HashStages):
        holder, name = getattr(holder, name), "inner"
    return holder, name


class HardwareInTheLoop:
    """Runs a model's training forwards on simulated analog arrays (hashed or conventional layers).

    Args:
        model: The model being trained. If it has hashed layers, those go on arrays (placement
            ``placement``) and every other module is left alone; otherwise its ``nn.Conv2d`` and
            ``nn.Linear`` layers go on conventional arrays.
        config: Hardware of the arrays (device profile, ADC, sense amplifiers, tile size, drift
            compensation and its reference read-out); the fast backend is used. Its ``placement`` is
            ignored for hashed layers, which keep their own kernel, k, seed and tiling.
        t_inference: Seconds after programming every training forward sees.
        seed: Seed of the draws; at step ``s`` layer ``path`` is programmed with
            ``derive_seed(seed, "loop", s, path)``.
        placement: Where hashed layers compute (:data:`HASHED_PLACEMENTS`).

    Raises:
        ValueError: If the model has no layer to put on arrays, a layer cannot go on an array (groups,
            padding mode, a hashed layer already on simulated hardware), the placement is unknown or
            the device has no data for ``t_inference``.

    """

    def __init__(
        self,
        model: nn.Module,
        config: HardwareConfig,
        t_inference: float,
        *,
        seed: int = 0,
        placement: str = "codes_on_array",
    ) -> None:
        if not isinstance(config, HardwareConfig):
            raise TypeError(f"config must be a HardwareConfig, got {type(config).__name__}")
        if placement not in HASHED_PLACEMENTS:
            raise ValueError(
                f"hashed layers train on placement {', '.join(HASHED_PLACEMENTS)}; got {placement!r}"
            )
        self.config = config
        self.placement = placement
        self.t_inference = config.device.check_time(t_inference)
        self.seed = int(seed)
        self.hashed: dict[str, tuple[HashedLayer, AnalogHashStages]] = {}
        for path, module in model.named_modules():
            if isinstance(module, HashedLayer):
                self.hashed[path] = (module, self._hashed_stages(path, module))
        self.layers: dict[str, tuple[nn.Module, ConventionalArray]] = {}
        if not self.hashed:
            for path, module in model.named_modules():
                array = _conventional_array(path, module, config)
                if array is not None:
                    self.layers[path] = (module, array)
        if not self.hashed and not self.layers:
            raise ValueError(
                "HardwareInTheLoop found no hashed layer and no nn.Conv2d / nn.Linear layer to put on "
                "analog arrays"
            )

    def _hashed_stages(self, path: str, layer: HashedLayer) -> AnalogHashStages:
        holder, name = _innermost(layer)
        if isinstance(getattr(holder, name), AnalogHashStages):
            raise ValueError(
                f"HardwareInTheLoop: hashed layer {path!r} already runs on simulated hardware; train the "
                "digitally hashed model (patched with a HashConfig) and let the loop add the arrays"
            )
        config = dataclasses.replace(
            self.config, **layer.config.hash_settings(), placement=self.placement, analog_projection=None,
            backend="fast",
        )  # fmt: skip
        return config.build_stages()

    @classmethod
    def from_spec(
        cls, model: nn.Module, spec: NoiseSpec | None, *, seed: int = 0
    ) -> HardwareInTheLoop | None:
        """The loop a :class:`NoiseSpec` asks for (``hardware_profile``), or None."""
        if spec is None or spec.hardware_profile is None:
            return None
        from aimc_lsh.hardware import load_device

        config = HardwareConfig(
            device=load_device(spec.hardware_profile),
            placement="conventional",
            drift_compensation=True,
            drift_reference=spec.hardware_drift_reference,
        )
        return cls(model, config, spec.weight_t_inference, seed=seed, placement=spec.hardware_placement)

    @contextmanager
    def engaged(self, step: int) -> Iterator[None]:
        """Program and drift every array for training step ``step``; training forwards in the block use them.

        Layers in eval mode when the block is entered get no array and keep their digital forward.
        """
        handles = []
        swapped: list[tuple[nn.Module, str, nn.Module]] = []
        try:
            for path, (layer, stages) in self.hashed.items():
                if not layer.training:
                    continue
                stages.program_layer(layer, derive_seed(self.seed, "loop", int(step), path))
                stages.drift_layer(self.t_inference)
                stages.train()
                holder, name = _innermost(layer)
                swapped.append((holder, name, getattr(holder, name)))
                setattr(holder, name, stages)
            for path, (module, array) in self.layers.items():
                if not module.training:
                    continue
                array.program(_weight_4d(module), derive_seed(self.seed, "loop", int(step), path))
                array.drift(self.t_inference)
                handles.append(module.register_forward_hook(partial(_analog_output, array)))
            yield
        finally:
            for handle in handles:
                handle.remove()
            for holder, name, original in reversed(swapped):
                setattr(holder, name, original)


def _conventional_array(path: str, module: nn.Module, config: HardwareConfig) -> ConventionalArray | None:
    """The conventional array of an ``nn.Conv2d`` / ``nn.Linear`` (exact types), else None."""
    if type(module) is nn.Conv2d:
        name = f"HardwareInTheLoop ({path})"
        kernel, geometry = conv_geometry(
            name, module.kernel_size, module.stride, module.padding, module.dilation, module.groups
        )
        check_zero_padding(name, module)
        outputs, inputs = module.out_channels, module.in_channels
    elif type(module) is nn.Linear:
        kernel, geometry = (1, 1), ConvGeometry()
        outputs, inputs = module.out_features, module.in_features
    else:
        return None
    return ConventionalArray(config, outputs, inputs, kernel, geometry)
