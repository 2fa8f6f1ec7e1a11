"""Periphery arithmetic on tensors: ADC conversion, comparator decisions, norm quantisation.

Pure functions shared by the fast path (:mod:`aimc_lsh.hardware.stages`,
:mod:`aimc_lsh.hardware.conventional`) and the aihwkit reference backend
(:mod:`aimc_lsh.hardware.reference`), so both convert read-outs identically. Random draws take an
explicit ``torch.Generator`` (same seed => same numbers).
"""

from __future__ import annotations

import torch
from torch import Tensor

from aimc_lsh.hardware.specs import ADC

_POOL_SIZE = 2**22
_POOL_SEED = 20261123
_POOLS: dict[tuple[str, torch.dtype], Tensor] = {}


def randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like ``x`` from ``generator`` (on ``x``'s device and dtype).

    A generator on another device (e.g. a CPU generator for CUDA tensors) draws there and the noise
    is moved, so the same seed gives the same noise wherever the tensors live.
    """
    where = x.device if generator is None else generator.device
    return torch.randn(x.shape, generator=generator, device=where, dtype=x.dtype).to(x.device)


def gaussian_pool(device: torch.device, dtype: torch.dtype, min_size: int = _POOL_SIZE) -> Tensor:
    """A cached pool of at least ``min_size`` standard normal values (fixed seed) on ``device``."""
    key = (str(device), dtype)
    pool = _POOLS.get(key)
    if pool is None or pool.numel() < min_size:
        size = max(_POOL_SIZE, 1 << (int(min_size) - 1).bit_length())
        generator = torch.Generator().manual_seed(_POOL_SEED)
        pool = torch.randn(size, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)
        _POOLS[key] = pool
    return pool


def pooled_noise(like: Tensor, generator: torch.Generator) -> Tensor:
    """Per-read standard normal noise shaped like ``like`` (N, C, H, W), as a view of the pool.

    Drawing tens of millions of normals per forward would cost more than the hashed layer itself, so
    each read takes a window of a pre-drawn pool (:func:`gaussian_pool`) at a random offset, with a
    random stride between samples; the offsets come from ``generator`` (CPU), so the same seed gives
    the same noise. Every element is exactly standard normal and distinct reads use different
    windows; samples of one read may share values shifted by the random stride, which leaves every
    element's distribution and the independence of elements at the same position intact.
    The view is channels-last, matching the layers' activations.
    """
    n, c, h, w = like.shape if like.dim() == 4 else (like.shape[0], like[0].numel(), 1, 1)
    per_sample = c * h * w
    pool = gaussian_pool(like.device, like.dtype, 4 * per_sample)
    room = pool.numel() - per_sample
    stride = int(torch.randint(1, room // max(n - 1, 1) + 1, (1,), generator=generator)) if n > 1 else 0
    start = int(torch.randint(0, room - (n - 1) * stride + 1, (1,), generator=generator))
    view = pool.as_strided((n, c, h, w), (stride, 1, w * c, c), start)
    return view if like.dim() == 4 else view.reshape(like.shape)


def quantize_midrise(x: Tensor, bits: int, full_scale: Tensor | float, clip: bool = True) -> Tensor:
    """Symmetric mid-rise quantiser with ``2**bits`` levels over [-full_scale, full_scale].

    Levels sit at odd multiples of ``delta / 2`` with ``delta = 2 * full_scale / 2**bits``; one bit
    gives ``+-full_scale / 2`` (a comparator). A value exactly on a threshold goes up.

    >>> quantize_midrise(torch.tensor([-3.0, -0.1, 0.0, 0.7, 3.0]), 2, 2.0)
    tensor([-1.5000, -0.5000,  0.5000,  0.5000,  1.5000])
    """
    half = 2 ** (bits - 1)
    delta = full_scale / half
    index = torch.floor(x / delta)
    if clip:
        index = index.clamp(-half, half - 1)
    return (index + 0.5) * delta


def adc_convert(
    x: Tensor,
    adc: ADC,
    full_scale: Tensor | float,
    generator: torch.Generator | None = None,
    extra_noise_std: Tensor | float | None = None,
    *,
    noise: Tensor | None = None,
    gain: Tensor | float | None = None,
    inplace: bool = False,
) -> Tensor:
    """Read an analog quantity through an ADC: add noise, then quantise and saturate.

    Args:
        x: Analog read-outs in normalised output units.
        adc: The converter.
        full_scale: Its half-range (a number, or a tensor broadcasting against ``x``, e.g. per column).
        generator: Source of the per-read noise when ``noise`` is not given.
        extra_noise_std: Other Gaussian noise referred to the same read-out (e.g. per-read weight
            noise), combined with the ADC's own noise in a single draw.
        noise: Standard normal values shaped like ``x`` to use instead of drawing.
        gain: Digital factor applied to the converted value (e.g. drift compensation).
        inplace: Overwrite ``x`` (cheaper; only where nothing else needs ``x``). Ignored when ``x``
            needs a gradient: the conversion is then straight-through (identity gradient).

    Returns:
        The converted values (still in normalised units, times ``gain``).

    """
    std: Tensor | float = adc.noise_std
    if extra_noise_std is not None:
        std = (std**2 + extra_noise_std**2) ** 0.5
    has_noise = not (isinstance(std, float | int) and std == 0)
    if not has_noise and adc.bits is None and gain is None:
        return x
    live = x if (torch.is_grad_enabled() and x.requires_grad) else None
    if live is not None:
        converted = adc_convert(
            x.detach(), adc, full_scale, generator, extra_noise_std, noise=noise, gain=gain
        )
        scaled = live if gain is None else live * gain
        return scaled + (converted - scaled).detach()  # straight-through: identity gradient
    if not inplace:
        x = x.clone()
    if has_noise:
        if noise is None:
            noise = randn_like(x, generator)
        if isinstance(std, Tensor):
            x.addcmul_(noise, std)
        else:
            x.add_(noise, alpha=float(std))
    if adc.bits is None:
        return x if gain is None else x.mul_(gain)
    half = 2 ** (adc.bits - 1)
    delta = full_scale / half
    x.div_(delta).floor_()
    if adc.clip:
        x.clamp_(-half, half - 1)
    return x.add_(0.5).mul_(delta if gain is None else delta * gain)


def comparator(
    margin: Tensor,
    band: Tensor | float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Decide +-1 from a comparator margin; inside ``|margin| < band`` the result is a coin flip.

    Args:
        margin: The comparator input minus its threshold (offset and noise included).
        band: Half-width of the metastability band, in the units of ``margin`` (broadcasts).
        generator: Source of the coin flips.

    Returns:
        +-1 in ``margin``'s dtype (+1 where ``margin >= 0`` outside the band).

    """
    decision = torch.where(margin >= 0, 1.0, -1.0).to(margin.dtype)
    if isinstance(band, float | int) and band == 0:
        return decision
    where = margin.device if generator is None else generator.device
    uniform = torch.rand(margin.shape, generator=generator, device=where).to(margin.device)
    coin = torch.where(uniform < 0.5, 1.0, -1.0)
    return torch.where(margin.abs() < band, coin.to(margin.dtype), decision)


def quantize_norms(norms: Tensor, bits: int | None, dim: tuple[int, ...] | None = None) -> Tensor:
    """Uniform unsigned quantisation of non-negative norms to ``2**bits`` levels in [0, max].

    Args:
        norms: Non-negative values.
        bits: Resolution, or None to return ``norms`` unchanged.
        dim: Dimensions over which the maximum (the converter's range) is taken; None: all.

    >>> quantize_norms(torch.tensor([0.0, 0.26, 1.0]), 2)
    tensor([0.0000, 0.3333, 1.0000])
    """
    if bits is None:
        return norms
    top = norms.amax() if dim is None else norms.amax(dim=dim, keepdim=True)
    step = torch.where(top > 0, top, torch.ones_like(top)) / (2**bits - 1)
    quantised = torch.round(norms / step) * step
    # Straight-through: quantised forward, identity gradient (norms carry weight gradients in training).
    return norms + (quantised - norms).detach()
