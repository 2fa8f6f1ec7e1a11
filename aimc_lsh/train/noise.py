"""Hardware-aware training: device non-idealities sampled in the forward pass while training.

Hashed layers: :func:`inject_training_noise` wraps each hashed layer's stage object
(:class:`aimc_lsh.kernels.HashStages` or a hardware subclass) in :class:`NoisyTrainingStages`, which in
training mode only perturbs

* the projection ``P`` (programming/drift noise on an array holding P): ``P + s_p max|P| e``,
* the pre-activations before the sense amplifier: a static-per-forward column offset and per-read noise,
  both relative to the RMS of the pre-activations of that tile (the sign ignores a common scale),
* the weight codes ``h_W`` (+-1 on a differential pair): ``h_W (1 + s_c e)``,
* the code match ``S`` (read-out / ADC noise): ``S + s_o sqrt(k) e``,

with fresh ``e ~ N(0, 1)`` every forward. Evaluation mode runs the wrapped stages unchanged, so the
trained model is evaluated (and programmed) exactly as without the wrapper; :func:`remove_training_noise`
unwraps before saving if desired (the wrapper has no state of its own).

Conventional analog baseline (aihwkit's HWA style): :class:`WeightNoise` perturbs the weights of
``nn.Conv2d`` / ``nn.Linear`` (or any module with ``weight``) for the forward and backward pass of one
step and restores the clean weights before the optimiser step. The perturbation is either Gaussian
noise relative to each layer's max |W| (``additive``), or the error of the device itself
(``NoiseSpec.weight_device``): every tile is programmed with the aihwkit noise model, drifted to
``NoiseSpec.weight_t_inference`` and globally drift-compensated, afresh at every step, so the network
trains against the state-dependent programming noise, the spread of drift exponents and the read noise
it meets at inference.

Noise levels can be measured from an aihwkit noise model with :func:`relative_weight_noise`, which
programs unit conductances, drifts them to ``t_inference`` with global drift compensation and returns
the relative spread.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Self

import torch
from torch import Tensor, nn

from aimc_lsh.hardware.programming import DRIFT_REFERENCES
from aimc_lsh.hardware.specs import TileSpec
from aimc_lsh.kernels import ConvGeometry, HashStages, TilePair

HASHED_PLACEMENTS = ("codes_on_array", "projection_on_array")
"""Placements hashed layers train on with the arrays in the loop (:attr:`NoiseSpec.hardware_placement`)."""


_TEXT_FIELDS = ("weight_device", "hardware_profile", "hardware_placement", "hardware_drift_reference")


@dataclass
class NoiseSpec:
    """Standard deviations of the non-idealities sampled during hardware-aware training."""

    projection_std: float = 0.0
    """Noise on P relative to max |P| of the tile (P programmed on the array)."""

    code_std: float = 0.0
    """Multiplicative noise on the +-1 weight codes (codes programmed on the array)."""

    sa_offset_std: float = 0.0
    """Sense-amplifier input offset per code column (one draw per forward), relative to the RMS of the
    tile's pre-activations."""

    sa_noise_std: float = 0.0
    """Sense-amplifier input noise per decision, relative to the RMS of the tile's pre-activations."""

    output_std: float = 0.0
    """Noise on the code match S in units of sqrt(k) (read-out / ADC noise)."""

    weight_std: float = 0.0
    """Conventional baseline only: additive weight noise relative to each layer's max |W| (ignored when
    ``weight_device`` is set)."""

    weight_device: str | None = None
    """Conventional baseline only: draw the weight error from this aihwkit device (``pcm``, ``hermes``,
    ``reram``): each tile programmed, drifted to ``weight_t_inference`` and drift-compensated, every step.
    None: additive ``weight_std`` noise."""

    weight_t_inference: float = 86_400.0
    """Seconds after programming at which ``weight_device`` errors are drawn."""

    hardware_profile: str | None = None
    """Run every training forward on simulated arrays of this device profile (a name from ``devices/`` or
    a YAML path), programmed and drifted to ``weight_t_inference`` afresh every step, with the profile's
    read noise, ADC, sense amplifiers and drift compensation (``hardware_drift_reference``); gradients
    pass straight through (:class:`aimc_lsh.train.hardware_loop.HardwareInTheLoop`). Hashed models: the
    hashed layers, in ``hardware_placement``; conventional models: every ``nn.Conv2d`` / ``nn.Linear``.
    Excludes ``weight_device``."""

    hardware_placement: str = "codes_on_array"
    """Hashed models with ``hardware_profile``: where the hashed layers compute in the loop
    (``codes_on_array`` or ``projection_on_array``, as in :class:`aimc_lsh.hardware.HardwareConfig`)."""

    hardware_drift_reference: str = "random_sign"
    """With ``hardware_profile``: the arrays' drift-compensation read-out (``random_sign`` or aihwkit's
    ``one_hot``, as :attr:`aimc_lsh.hardware.HardwareConfig.drift_reference`); train with the read-out the
    model will be evaluated with."""

    weight_clip_sigma: float = 0.0
    """Conventional baseline only: after every optimiser step, clip each layer's weights to this many
    standard deviations of that layer's weights (aihwkit's layer-Gaussian clipping), so the abs-max that
    sets the conductance scale is not a rare outlier and most weights sit above the programming-noise
    floor. 0: no clipping."""

    def __post_init__(self) -> None:
        if self.weight_device is not None:
            from aimc_lsh.train.devices import DEVICE_NAMES

            if self.weight_device not in DEVICE_NAMES:
                raise ValueError(
                    f"NoiseSpec.weight_device must be None or one of {', '.join(DEVICE_NAMES)}, "
                    f"got {self.weight_device!r}"
                )
        if self.hardware_profile is not None:
            from aimc_lsh.hardware import load_device

            load_device(self.hardware_profile)  # raises for an unknown profile, naming the known ones
            if self.weight_device is not None:
                raise ValueError(
                    "NoiseSpec: give weight_device (sampled weight errors) or hardware_profile (the whole "
                    f"array in the loop), not both; got {self.weight_device!r} and {self.hardware_profile!r}"
                )
        if self.hardware_placement not in HASHED_PLACEMENTS:
            raise ValueError(
                f"NoiseSpec.hardware_placement must be one of {', '.join(HASHED_PLACEMENTS)}, "
                f"got {self.hardware_placement!r}"
            )
        if self.hardware_drift_reference not in DRIFT_REFERENCES:
            raise ValueError(
                f"NoiseSpec.hardware_drift_reference must be one of {', '.join(DRIFT_REFERENCES)}, "
                f"got {self.hardware_drift_reference!r}"
            )
        for f in dataclasses.fields(self):
            if f.name in _TEXT_FIELDS:
                continue
            value = getattr(self, f.name)
            if (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"NoiseSpec.{f.name} must be a finite number >= 0, got {value!r}")

    @property
    def active(self) -> bool:
        """Whether any hashed-layer noise is non-zero."""
        return any(
            (self.projection_std, self.code_std, self.sa_offset_std, self.sa_noise_std, self.output_std)
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"NoiseSpec has no field(s) {', '.join(unknown)}; fields: {', '.join(sorted(known))}"
            )
        return cls(**data)


def relative_weight_noise(noise_model: Any, t_inference: float, *, n: int = 20_000, seed: int = 0) -> float:
    """Relative spread of unit weights after programming and drift to ``t_inference`` in an aihwkit model.

    Programs ``n`` weights of value 1 (g_max) through ``noise_model.apply_noise``, applies global drift
    compensation (divides by the mean), and returns the standard deviation: the multiplicative noise a
    +-1 code (or max-|P| entry) sees on that device.

    Args:
        noise_model: An aihwkit ``BaseNoiseModel`` (e.g. ``PCMLikeNoiseModel()``).
        t_inference: Seconds after programming, a finite number > 0 (aihwkit's models fail at 0).
        n: Monte-Carlo samples.
        seed: Seed of the draw.

    Raises:
        ValueError: For a time that is not a finite number > 0, or one the noise model has no data for
            (``ReRamWan2022NoiseModel``: 1 s, 1 day, 2 days only); the message names the time.

    """
    from aihwkit.exceptions import ArgumentError

    t = _check_inference_time(t_inference)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        w = noise_model.apply_noise(torch.ones(n), t)
    except ArgumentError as err:  # e.g. a ReRAM model measured at a few times only
        raise ValueError(
            f"{type(noise_model).__name__} has no data at t_inference = {t:g} s: {err}"
        ) from None
    finally:
        torch.random.set_rng_state(state)
    return float((w / w.mean()).std())


def _check_inference_time(t_inference: object) -> float:
    """``t_inference`` as a float, or a ValueError naming it unless it is a finite number > 0."""
    ok = isinstance(t_inference, numbers.Real) and not isinstance(t_inference, bool)
    if not ok or not math.isfinite(t_inference) or t_inference <= 0:
        raise ValueError(f"t_inference must be a finite number of seconds > 0, got {t_inference!r}")
    return float(t_inference)


def noise_spec_for_device(
    name: str, t_inference: float = 86_400.0, *, sa_offset_std: float = 0.0, sa_noise_std: float = 0.0
) -> NoiseSpec:
    """NoiseSpec with code, projection and conventional weight noise measured from an aihwkit device.

    Args:
        name: ``pcm`` (``PCMLikeNoiseModel``), ``hermes`` (``HermesNoiseModel``), ``reram``
            (``ReRamWan2022NoiseModel``, t = 1 s, 1 day or 2 days only) or ``ideal``.
        t_inference: Seconds after programming the noise is measured at.
        sa_offset_std: Sense-amplifier offset (relative, see :class:`NoiseSpec`).
        sa_noise_std: Sense-amplifier noise (relative).

    Raises:
        ValueError: For an unknown device, or a time that is not a finite number > 0 or that the
            device's noise model has no data for.

    """
    _check_inference_time(t_inference)
    if name == "ideal":
        return NoiseSpec(sa_offset_std=sa_offset_std, sa_noise_std=sa_noise_std)
    from aimc_lsh.train.devices import aihwkit_noise_model

    std = relative_weight_noise(aihwkit_noise_model(name), t_inference)
    return NoiseSpec(
        projection_std=std,
        code_std=std,
        sa_offset_std=sa_offset_std,
        sa_noise_std=sa_noise_std,
        weight_std=std,
    )


DEFAULT_WEIGHT_CLIP_SIGMA = 3.0
"""Clip level (std of each layer's weights) of hardware-aware training of conventional layers: on PCM at
1 day, clipping is part of HWA's gain over plain fine-tuning (docs/training.md)."""


def hardware_loop_spec(
    profile: str,
    t_inference: float = 86_400.0,
    *,
    conventional: bool,
    placement: str = "codes_on_array",
    drift_reference: str = "random_sign",
) -> NoiseSpec:
    """The default hardware-aware training: the simulated arrays of ``profile`` in every training forward.

    Conventional models also get their weights clipped to :data:`DEFAULT_WEIGHT_CLIP_SIGMA` standard
    deviations after every step; hashed layers compute in ``placement``. No sampled noise is added on top
    (the arrays draw the device's errors themselves).

    Args:
        profile: Device profile (a name from ``devices/`` or a YAML path).
        t_inference: Seconds after programming every training forward sees.
        conventional: Whether the model is the conventional (real-weight) baseline.
        placement: Where hashed layers compute (``codes_on_array`` or ``projection_on_array``).
        drift_reference: The arrays' drift-compensation read-out (``random_sign`` or ``one_hot``).

    """
    return NoiseSpec(
        hardware_profile=profile,
        weight_t_inference=float(t_inference),
        hardware_placement=placement,
        hardware_drift_reference=drift_reference,
        weight_clip_sigma=DEFAULT_WEIGHT_CLIP_SIGMA if conventional else 0.0,
    )


class NoisyTrainingStages(HashStages):
    """Wraps a layer's stages and samples :class:`NoiseSpec` non-idealities in training mode only.

    Args:
        inner: The stages the layer computed with (kept as the submodule ``inner``).
        spec: Noise levels.
        in_eval: Also sample the noise in eval mode (to *evaluate* a model under these statistics).

    """

    def __init__(self, inner: HashStages, spec: NoiseSpec, in_eval: bool = False) -> None:
        super().__init__(ste=inner.ste)
        self.inner = inner
        self.spec = spec
        self.in_eval = in_eval

    @property
    def noisy(self) -> bool:
        """Whether this forward samples noise (training mode, or ``in_eval``)."""
        return self.training or self.in_eval

    def project(self, x: Tensor, filters: Tensor, geometry: ConvGeometry, tile: TilePair) -> Tensor:  # noqa: D102
        if self.noisy and self.spec.projection_std > 0:
            scale = filters.detach().abs().amax()
            filters = filters + self.spec.projection_std * scale * torch.randn_like(filters)
        pre = self.inner.project(x, filters, geometry, tile)
        if self.noisy and (self.spec.sa_offset_std > 0 or self.spec.sa_noise_std > 0):
            rms = pre.detach().pow(2).mean().sqrt()
            if self.spec.sa_offset_std > 0:
                offset = torch.randn(1, pre.shape[1], 1, 1, device=pre.device, dtype=pre.dtype)
                pre = pre + self.spec.sa_offset_std * rms * offset
            if self.spec.sa_noise_std > 0:
                pre = pre + self.spec.sa_noise_std * rms * torch.randn_like(pre)
        return pre

    def patch_norms(self, x: Tensor, kernel_size: tuple[int, int], geometry: ConvGeometry) -> Tensor:
        """The wrapped stages' patch norms (analog stages keep them for their comparators)."""
        return self.inner.patch_norms(x, kernel_size, geometry)

    def apply_thresholds(self, pre: Tensor, x_norm: Tensor, shift: Tensor, tile: TilePair) -> Tensor:  # noqa: D102
        return self.inner.apply_thresholds(pre, x_norm, shift, tile)

    def binarize(self, pre: Tensor, tile: TilePair) -> Tensor:  # noqa: D102
        return self.inner.binarize(pre, tile)

    def match(self, h_x: Tensor, codes: Tensor, tile: TilePair) -> Tensor:  # noqa: D102
        if self.noisy and self.spec.code_std > 0:
            codes = codes * (1.0 + self.spec.code_std * torch.randn_like(codes))
        s = self.inner.match(h_x, codes, tile)
        if self.noisy and self.spec.output_std > 0:
            s = s + self.spec.output_std * math.sqrt(codes.shape[1]) * torch.randn_like(s)
        return s

    def reconstruct(self, similarity: Tensor, w_norm: Tensor, x_norm: Tensor, tile: TilePair) -> Tensor:  # noqa: D102
        return self.inner.reconstruct(similarity, w_norm, x_norm, tile)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = super().__getattr__("inner")
            return getattr(inner, name)


def inject_training_noise(model: nn.Module, spec: NoiseSpec, *, in_eval: bool = False) -> int:
    """Wrap the stages of every hashed layer of ``model`` in :class:`NoisyTrainingStages` (in place).

    Args:
        model: The model.
        spec: Noise levels.
        in_eval: Sample the noise in eval mode too (evaluation under noise).

    Returns:
        The number of layers wrapped (layers already wrapped get the new spec).

    """
    from aimc_lsh.nn import hashed_layers

    count = 0
    for _path, layer in hashed_layers(model):
        if isinstance(layer.stages, NoisyTrainingStages):
            layer.stages.spec = spec
            layer.stages.in_eval = in_eval
        else:
            layer.stages = NoisyTrainingStages(layer.stages, spec, in_eval).train(layer.training)
        count += 1
    return count


def remove_training_noise(model: nn.Module) -> int:
    """Undo :func:`inject_training_noise` (in place); returns the number of layers unwrapped."""
    from aimc_lsh.nn import hashed_layers

    count = 0
    for _path, layer in hashed_layers(model):
        if isinstance(layer.stages, NoisyTrainingStages):
            layer.stages = layer.stages.inner
            count += 1
    return count


def _noisy_weight_modules(model: nn.Module) -> list[nn.Module]:
    from aimc_lsh.nn import HashedLayer

    return [
        m
        for m in model.modules()
        if not isinstance(m, HashedLayer)
        and isinstance(getattr(m, "weight", None), nn.Parameter)
        and not isinstance(m, nn.modules.batchnorm._BatchNorm | nn.LayerNorm | nn.GroupNorm)
        and m.weight.dim() >= 2
    ]


class WeightNoise:
    """aihwkit-style HWA for conventional (real-weight) layers: noisy forward/backward, clean update.

    Use :meth:`perturbed` around the forward and backward pass of a step::

        with weight_noise.perturbed(model):
            loss = criterion(model(x), y)
            loss.backward()
        optimizer.step()

    Args:
        std: Additive noise standard deviation relative to each layer's max |W| (0 disables); ignored
            when ``device`` is given.
        in_eval: Also perturb in eval mode (to evaluate a conventional model under this noise).
        device: Draw the perturbation from this aihwkit device instead (see :func:`device_weights`).
        t_inference: Seconds after programming for ``device``.

    """

    def __init__(
        self, std: float, in_eval: bool = False, *, device: str | None = None, t_inference: float = 86_400.0
    ) -> None:
        if not math.isfinite(std) or std < 0:
            raise ValueError(f"weight noise std must be a finite number >= 0, got {std!r}")
        if not math.isfinite(t_inference) or t_inference <= 0:
            raise ValueError(f"weight noise t_inference must be a finite number > 0 s, got {t_inference!r}")
        self.std = float(std)
        self.in_eval = in_eval
        self.t_inference = float(t_inference)
        self.noise_model: Any = None
        if device is not None:
            from aimc_lsh.train.devices import aihwkit_noise_model

            self.noise_model = aihwkit_noise_model(device)

    @classmethod
    def from_spec(cls, spec: NoiseSpec | None, in_eval: bool = False) -> WeightNoise:
        """The weight noise a :class:`NoiseSpec` asks for (none for None)."""
        if spec is None:
            return cls(0.0, in_eval)
        return cls(spec.weight_std, in_eval, device=spec.weight_device, t_inference=spec.weight_t_inference)

    @property
    def enabled(self) -> bool:
        """Whether :meth:`perturbed` changes anything."""
        return self.noise_model is not None or self.std > 0

    def _noisy(self, w: Tensor) -> Tensor:
        if self.noise_model is not None:
            return device_weights(self.noise_model, w, self.t_inference)
        return w + self.std * w.abs().amax() * torch.randn_like(w)

    @contextmanager
    def perturbed(self, model: nn.Module) -> Iterator[None]:
        """Replace the weights by noisy ones for the body of the ``with`` block, then restore them."""
        if not self.enabled or not (model.training or self.in_eval):
            yield
            return
        saved = []
        with torch.no_grad():
            for m in _noisy_weight_modules(model):
                w = m.weight
                saved.append((w, w.detach().clone()))
                w.copy_(self._noisy(w.detach()))
        try:
            yield
        finally:
            with torch.no_grad():
                for w, clean in saved:
                    w.copy_(clean)


@torch.no_grad()
def clip_weights(model: nn.Module, sigma: float) -> int:
    """Clip the weights of every conventional layer of ``model`` to +-``sigma`` times their std (in place).

    Args:
        model: The model; hashed layers and normalisation layers are left alone.
        sigma: Clip level in standard deviations of each layer's weights; <= 0 does nothing.

    Returns:
        The number of layers clipped.

    """
    if not math.isfinite(sigma):
        raise ValueError(f"weight clip sigma must be a finite number, got {sigma!r}")
    if sigma <= 0:
        return 0
    modules = _noisy_weight_modules(model)
    for m in modules:
        bound = float(m.weight.std()) * sigma
        m.weight.clamp_(-bound, bound)
    return len(modules)


@torch.no_grad()
def device_weights(
    noise_model: Any, weight: Tensor, t_inference: float, tile: TileSpec | None = None
) -> Tensor:
    """``weight`` as a conventional AIMC array holds it ``t_inference`` seconds after programming.

    The weight, flattened to (out, in), is cut into tiles as :class:`aimc_lsh.hardware.ConventionalArray`
    cuts it; each tile is scaled to abs-max 1, programmed (``apply_programming_noise``), drifted
    (``apply_drift_noise``: drift exponents and accumulated read noise), multiplied by its ideal global
    drift-compensation factor (the tile's mean |W| at programming over its mean |W| after drift) and
    scaled back. Draws from torch's global generator (aihwkit's models do), so a seeded run repeats.

    Args:
        noise_model: An aihwkit noise model (e.g. ``PCMLikeNoiseModel()``).
        weight: Any weight with the output dimension first.
        t_inference: Seconds after programming.
        tile: Tile size (default :class:`aimc_lsh.hardware.TileSpec`).

    Returns:
        The perturbed weight, same shape, dtype and device.

    """
    from aimc_lsh.hardware.programming import TilePlan

    flat = weight.detach().reshape(weight.shape[0], -1).to(device="cpu", dtype=torch.float32)
    out = torch.empty_like(flat)
    for _block, rows, cols in TilePlan.for_matrix(*flat.shape, tile or TileSpec()).blocks():
        part = flat[rows, cols]
        top = part.abs().max().clamp(min=1e-12)
        programmed, nu = noise_model.apply_programming_noise(part / top)
        drifted = noise_model.apply_drift_noise(programmed, nu, float(t_inference))
        alpha = programmed.abs().mean() / drifted.abs().mean().clamp(min=1e-12)
        out[rows, cols] = drifted * (alpha * top)
    return out.view_as(weight).to(weight)
