"""Training losses: label-smoothed cross-entropy, distillation of the FP32 model's logits and features."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """KL(teacher || student) on logits softened by ``temperature``, scaled by ``temperature**2``.

    The ``T**2`` factor keeps gradient magnitudes comparable across temperatures (Hinton et al. 2015).
    """
    log_p = F.log_softmax(student_logits / temperature, dim=1)
    log_q = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    return F.kl_div(log_p, log_q, reduction="batchmean", log_target=True) * temperature**2


def recovery_loss(
    student_logits: Tensor,
    labels: Tensor,
    teacher_logits: Tensor | None = None,
    *,
    label_smoothing: float = 0.0,
    kd_alpha: float = 0.0,
    kd_temperature: float = 4.0,
) -> Tensor:
    """``(1 - a) CE_ls(student, labels) + a KD(student, teacher)`` with ``a = kd_alpha`` (CE alone if 0).

    Raises:
        ValueError: If ``kd_alpha > 0`` but no teacher logits are given.

    """
    ce = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    if kd_alpha <= 0:
        return ce
    if teacher_logits is None:
        raise ValueError("kd_alpha > 0 needs teacher logits (pass the FP32 model as teacher)")
    return (1.0 - kd_alpha) * ce + kd_alpha * distillation_loss(
        student_logits, teacher_logits, kd_temperature
    )


def feature_distillation_loss(student: Sequence[Tensor], teacher: Sequence[Tensor]) -> Tensor:
    """Mean over paired module outputs of ``||s - t||^2 / ||t||^2`` (the batch's relative error).

    Each term is scale-free, so modules whose outputs differ in size weigh the same (the relative
    reconstruction error of layer-wise calibration, :mod:`aimc_lsh.train.calibration`, per module).

    Raises:
        ValueError: If the lists differ in length or are empty, or a pair differs in shape.

    """
    if len(student) != len(teacher) or not student:
        raise ValueError(
            f"need as many student as teacher outputs (>= 1), got {len(student)} and {len(teacher)}"
        )
    terms = []
    for s, t in zip(student, teacher, strict=True):
        if s.shape != t.shape:
            raise ValueError(f"student output {tuple(s.shape)} does not match the teacher's {tuple(t.shape)}")
        t = t.detach()
        terms.append((s - t).pow(2).sum() / t.pow(2).sum().clamp_min(1e-12))
    return torch.stack(terms).mean()
