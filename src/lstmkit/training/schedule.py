"""The learning-rate schedule: linear warm-up, then cosine decay (see TrainingConfig)."""

from __future__ import annotations

import math

from lstmkit.training.config import TrainingConfig


def learning_rate(config: TrainingConfig, step: int, decay: float | None, annealing_from: int | None = None
                  ) -> float:
    """The rate of `step` (counted from 0): linear warm-up over `warmup` steps, then cosine
    decay to `min_lr_fraction` of the peak, `decay` (0 to 1, `decay_progress`) of the way
    down (the peak while no budget bounds the run: None). An anneal a plateau began in the
    warm-up (at step `annealing_from`) ends it there: the cosine runs from the rate of that
    step down to the floor, or, below the floor, holds that rate (it went on rising to the
    peak, and the run stopped there, saying its rate had annealed to its floor)."""
    fraction = config.min_lr_fraction
    if annealing_from is not None and annealing_from < config.warmup:
        peak = config.lr * (annealing_from + 1) / config.warmup
        floor = min(config.lr * fraction, peak)  # a rate below the floor stays there, not raised to it
        return peak if decay is None else floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * decay))
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    if decay is None:
        return config.lr
    # this very expression: a run begun by an earlier version resumes rounding as it began
    return config.lr * (fraction + (1 - fraction) * 0.5 * (1 + math.cos(math.pi * decay)))


def decay_progress(config: TrainingConfig, step: int, step_limit: int | None = None, train_seconds: float = 0.0,
                   decay_from_seconds: float | None = None) -> float | None:
    """How far down the cosine `step` is: the larger of its share of the steps between the
    warm-up and `step_limit`, and, under a time budget, of the training seconds between the
    warm-up's end (`decay_from_seconds`) and the budget's. A time budget decays by the clock,
    not by a count of steps estimated from the first ones' speed, so a run whose first steps
    are slow still reaches the floor as its budget ends, not before; None where no budget
    bounds the run."""
    shares = []
    if step_limit is not None:
        shares.append((step - config.warmup) / max(1, step_limit - config.warmup))
    if config.time_budget is not None and decay_from_seconds is not None:
        shares.append((train_seconds - decay_from_seconds) / max(1e-9, config.time_budget - decay_from_seconds))
    return min(1.0, max(0.0, *shares)) if shares else None


def annealed_progress(decay: float | None, step: int, annealing_from: int, annealing_decay: float,
                      anneal_steps: int) -> float:
    """How far down the cosine `step` is once a plateau began an anneal (on_plateau "anneal")
    at step s_a, `annealing_decay` p_a of the way down: the rest of the way in the n =
    `anneal_steps` steps s_a ... s_a + n − 1, p = p_a + (1 − p_a) · (step − s_a + 1) / n, the
    last at the floor; or the budget's own `decay` where that is further down."""
    annealed = annealing_decay + (1 - annealing_decay) * (step - annealing_from + 1) / anneal_steps
    return min(1.0, max(annealed, decay or 0.0))
