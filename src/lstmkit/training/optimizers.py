"""The optimizers of the training core: AdamW, SGD, and non-monotonically triggered averaged
SGD (NT-ASGD, Merity et al. 2018).

NT-ASGD runs plain SGD until the validation loss stops improving: at an evaluation whose
loss is worse than the best of all but the last `asgd_patience` evaluations before it,

    switch  ⇔  len(L) > n  and  L_now > min(L[: len(L) − n])        (L: earlier losses, n: patience)

it turns to averaged SGD (torch.optim.ASGD with λ = 0, t0 = 0): the steps go on as SGD's,
and the optimizer keeps the running mean of the weights since the switch, which evaluations,
the best checkpoint and the final model use (`averaged_weights`).

With `ema_decay` set, AdamW and SGD keep an exponential moving average of the weights
instead (Polyak averaging; ES-RNN averages its last epochs' forecasts to the same end), used
in the same places (`update_moving_average`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn

OPTIMIZERS = ("adamw", "sgd", "nt-asgd")


def build_optimizer(name: str, parameters: Iterable[nn.Parameter], lr: float, weight_decay: float,
                    averaging: bool = False) -> torch.optim.Optimizer:
    """The optimizer `name`; for "nt-asgd", SGD before the switch and ASGD after (`averaging`)."""
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    if name == "nt-asgd" and averaging:
        return torch.optim.ASGD(parameters, lr=lr, lambd=0.0, t0=0, weight_decay=weight_decay)
    return torch.optim.SGD(parameters, lr=lr, weight_decay=weight_decay)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """This step's rate for every group. ASGD takes its step size from a per-weight `eta` it
    updates after each step from the rate then set (one step late); with λ = 0 that step
    size is the rate itself, set here at once."""
    for group in optimizer.param_groups:
        group["lr"] = lr
        for parameter in group["params"]:
            if averaging(optimizer) and "eta" in optimizer.state.get(parameter, {}):
                optimizer.state[parameter]["eta"].fill_(lr)


def update_moving_average(optimizer: torch.optim.Optimizer, ema_decay: float, step: int) -> None:
    """After step `step` (0-based), each weight's moving average ā (kept as the moment "ema"):

        ā = w                                       after the first step that trains w
        ā ← β_s · ā + (1 − β_s) · w,   β_s = min(ema_decay, (1 + s) / (10 + s))      after step s

    β's warm-up (timm's ModelEmaV3) averages about the last tenth of a short run's steps, so
    its first, untrained weights do not linger in the average; ema_decay caps the window of a
    long one at about 1 / (1 − ema_decay) steps."""
    beta = min(ema_decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                state = optimizer.state[parameter]
                if "ema" in state:
                    state["ema"].lerp_(parameter, 1 - beta)
                elif parameter.grad is not None:  # not before it trains: AdamW sets up its state first
                    state["ema"] = parameter.detach().clone()


def average_of(optimizer: torch.optim.Optimizer, parameter: nn.Parameter) -> torch.Tensor | None:
    """The average the optimizer keeps of `parameter`: ASGD's, or the moving average; None before any."""
    return optimizer.state.get(parameter, {}).get("ax" if averaging(optimizer) else "ema")


def averaging(optimizer: torch.optim.Optimizer) -> bool:
    """Whether `optimizer` keeps an average of the weights (NT-ASGD after its switch)."""
    return isinstance(optimizer, torch.optim.ASGD)


def should_average(losses: list[float], patience: int) -> bool:
    """NT-ASGD's trigger: the last of `losses` (every evaluation's, in order) is worse than the
    best of those before the `patience` evaluations that precede it."""
    *earlier, now = losses
    return len(earlier) > patience and now > min(earlier[: len(earlier) - patience])


def adopt_average(optimizer: torch.optim.Optimizer) -> None:
    """Give the parameters the optimizer's average for good (the trained model's weights)."""
    with torch.no_grad():
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                if (average := average_of(optimizer, parameter)) is not None:
                    parameter.copy_(average)


@contextlib.contextmanager
def averaged_weights(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """The parameters hold the optimizer's average (ASGD's or the moving one) inside the block,
    their own values after it; a no-op for an optimizer that keeps none (or before its first
    averaged step)."""
    parameters = [parameter for group in optimizer.param_groups for parameter in group["params"]
                  if average_of(optimizer, parameter) is not None]
    if not parameters:
        yield
        return
    own = [parameter.detach().clone() for parameter in parameters]
    with torch.no_grad():
        for parameter in parameters:
            parameter.copy_(average_of(optimizer, parameter))
    try:
        yield
    finally:
        with torch.no_grad():
            for parameter, value in zip(parameters, own, strict=True):
                parameter.copy_(value)
