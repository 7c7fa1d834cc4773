"""The learning-rate schedule: linear warm-up, then cosine decay (see TrainingConfig)."""

from __future__ import annotations

import math

from lstmkit.training.config import TrainingConfig


def learning_rate(config: TrainingConfig, step: int, total_steps: int | None) -> float:
    """The rate of `step` (counted from 0): linear warm-up over `warmup` steps, then cosine
    decay to `min_lr_fraction` of the peak at `total_steps` (held at the peak until the total
    is known)."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    if total_steps is None:
        return config.lr
    progress = min(1.0, (step - config.warmup) / max(1, total_steps - config.warmup))
    fraction = config.min_lr_fraction
    return config.lr * (fraction + (1 - fraction) * 0.5 * (1 + math.cos(math.pi * progress)))
