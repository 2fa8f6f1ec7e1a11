"""Optimiser with separate learning rates for projections and weights, and a warm-up cosine schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from aimc_lsh.train.config import TrainConfig


def projection_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Trainable kernel parameters of every hashed layer: projections ``P`` and comparator thresholds.

    ``P`` is trainable in ``learned_projection`` kernels, the thresholds exist with
    ``HashConfig.comparator_thresholds``.
    """
    from aimc_lsh.kernels import HashKernel

    params = []
    for module in model.modules():
        if isinstance(module, HashKernel):
            for name in ("P", "threshold"):
                p = getattr(module, name, None)
                if isinstance(p, nn.Parameter) and p.requires_grad:
                    params.append(p)
    return params


def parameter_groups(
    model: nn.Module, lr_weights: float, lr_projection: float, weight_decay: float
) -> list[dict]:
    """Split trainable parameters into weights and projections (P and thresholds; no weight decay).

    Returns:
        One or two parameter groups for a torch optimiser (empty groups are left out).

    """
    proj_ids = {id(p) for p in projection_parameters(model)}
    proj = [p for p in model.parameters() if p.requires_grad and id(p) in proj_ids]
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in proj_ids]
    groups = []
    if rest:
        groups.append({"params": rest, "lr": lr_weights, "weight_decay": weight_decay, "name": "weights"})
    if proj:
        groups.append({"params": proj, "lr": lr_projection, "weight_decay": 0.0, "name": "projections"})
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return groups


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam or AdamW over :func:`parameter_groups`."""
    groups = parameter_groups(model, config.lr_weights, config.lr_projection, config.weight_decay)
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(groups)


class WarmupCosine:
    """Linear warm-up to each group's base learning rate, then cosine decay to ``min_lr_ratio`` of it.

    ``total_steps`` may be set after construction (time-budgeted runs measure it first); the state
    (``step``, ``total_steps``, base rates) is saved with :meth:`state_dict` for exact resumption.

    Args:
        optimizer: The optimiser whose groups are scheduled.
        total_steps: Number of optimiser steps of the whole run (>= 1).
        warmup_steps: Warm-up steps.
        min_lr_ratio: Final learning rate over the base learning rate.

    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.0,
    ) -> None:
        self.optimizer = optimizer
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = int(warmup_steps)
        self.min_lr_ratio = float(min_lr_ratio)
        self.step_count = 0
        self._apply()

    def factor(self, step: int) -> float:
        """Learning-rate multiplier at optimiser step ``step`` (0-based)."""
        if self.warmup_steps and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def _apply(self) -> None:
        f = self.factor(self.step_count)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * f

    def step(self) -> None:
        """Advance one optimiser step."""
        self.step_count += 1
        self._apply()

    def set_total_steps(self, total_steps: int) -> None:
        """Refit the schedule to ``total_steps`` (keeps the current step)."""
        self.total_steps = max(1, int(total_steps))
        self._apply()

    def get_last_lr(self) -> list[float]:
        """Current learning rate of every group."""
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        """Everything needed to resume."""
        return {
            "base_lrs": list(self.base_lrs),
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "min_lr_ratio": self.min_lr_ratio,
            "step_count": self.step_count,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output."""
        self.base_lrs = list(state["base_lrs"])
        self.total_steps = int(state["total_steps"])
        self.warmup_steps = int(state["warmup_steps"])
        self.min_lr_ratio = float(state["min_lr_ratio"])
        self.step_count = int(state["step_count"])
        self._apply()
