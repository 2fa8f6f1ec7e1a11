"""Hardware-in-the-loop training of conventional layers: every training forward runs on simulated arrays.

:class:`HardwareInTheLoop` keeps one :class:`aimc_lsh.hardware.ConventionalArray` per ``nn.Conv2d`` /
``nn.Linear`` of a digital model. Inside :meth:`HardwareInTheLoop.engaged` (one training step), every
array is programmed with its layer's current weights (fresh programming noise and drift exponents, seeded
by the step), drifted to ``t_inference`` and drift-compensated, and a forward hook replaces the layer's
output by the array's (per-read noise, abs-max noise management, ADC, compensation factor). The backward
pass goes through the digital layer (straight-through), so the optimiser updates the digital weights, as
in aihwkit's hardware-aware training. Evaluation-mode forwards and code outside the block are untouched,
and the model's ``state_dict`` stays that of a plain digital model.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import torch
from torch import Tensor, nn

from aimc_lsh.hardware import ConventionalArray, HardwareConfig
from aimc_lsh.hardware.programming import derive_seed
from aimc_lsh.kernels import ConvGeometry
from aimc_lsh.nn.digital import check_zero_padding, conv_geometry
from aimc_lsh.train.noise import NoiseSpec


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


class HardwareInTheLoop:
    """Runs the training forwards of a digital model's Conv2d/Linear layers on simulated analog arrays.

    Args:
        model: The digital model being trained (its ``nn.Conv2d`` and ``nn.Linear`` layers go on arrays;
            other modules, hashed layers included, are left alone).
        config: Hardware of the arrays (device profile, ADC, tile size, drift compensation and its
            reference read-out); the fast backend is used.
        t_inference: Seconds after programming every training forward sees.
        seed: Seed of the draws; at step ``s`` layer ``path`` is programmed with
            ``derive_seed(seed, "loop", s, path)``.

    Raises:
        ValueError: If the model has no Conv2d/Linear layer, a layer cannot go on an array (groups,
            padding mode) or the device has no data for ``t_inference``.

    """

    def __init__(
        self, model: nn.Module, config: HardwareConfig, t_inference: float, *, seed: int = 0
    ) -> None:
        if not isinstance(config, HardwareConfig):
            raise TypeError(f"config must be a HardwareConfig, got {type(config).__name__}")
        self.config = config
        self.t_inference = config.device.check_time(t_inference)
        self.seed = int(seed)
        self.layers: dict[str, tuple[nn.Module, ConventionalArray]] = {}
        for path, module in model.named_modules():
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
                continue
            self.layers[path] = (module, ConventionalArray(config, outputs, inputs, kernel, geometry))
        if not self.layers:
            raise ValueError("HardwareInTheLoop found no nn.Conv2d / nn.Linear layer to put on analog arrays")

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
            drift_reference="random_sign",
        )
        return cls(model, config, spec.weight_t_inference, seed=seed)

    @contextmanager
    def engaged(self, step: int) -> Iterator[None]:
        """Program and drift every array for training step ``step``; training forwards in the block use them.

        Layers in eval mode when the block is entered get no array and keep their digital forward.
        """
        handles = []
        try:
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
