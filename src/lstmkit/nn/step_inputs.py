"""What a cell module is called with, checked and batched: x of one step and its state.

Every check names the module, what was expected and what was received.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from lstmkit.nn.inputs import (
    ShapeError, accepts_dtype, as_run_under_autocast, check_features, describe, quiet_when_traced,
)


class StepInput(NamedTuple):
    """x (B, I), h (B, H), c (B, H) or None without a cell state; batched: False for 1-D input
    (B = 1 inside)."""

    x: Tensor
    h: Tensor
    c: Tensor | None
    batched: bool


@quiet_when_traced  # one wrapper for every check of a step: each costs a call
def prepare_step(
    owner: str,
    input: object,
    hx: object,
    input_size: int,
    hidden_size: int,
    has_cell_state: bool,
    dtype: torch.dtype,
    device: torch.device,
) -> StepInput:
    """Check a cell module's `input` and `hx` (None for zeros) against parameters of `dtype`
    on `device`, and batch them; under autocast in the dtype a layer runs them in (`as_run_under_autocast`)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{owner}: input must be a Tensor, got {describe(input)}")
    if input.dim() not in (1, 2):
        raise ValueError(
            f"{owner}: input must be 2-D (batch, input_size) or 1-D (input_size,) unbatched, "
            f"got {input.dim()}-D with shape {tuple(input.shape)}"
        )
    try:
        check_features(input, input_size, dtype, device, "cell")
    except ShapeError as error:  # named as the other messages of a step, for a model of several cells
        raise ShapeError(f"{owner}: {error}") from None
    batched = input.dim() == 2
    x = as_run_under_autocast(input if batched else input.unsqueeze(0), dtype)
    if hx is None:  # in the input's dtype, as torch.nn's cells make them (bfloat16 input under autocast)
        h = torch.zeros(x.shape[0], hidden_size, dtype=x.dtype, device=x.device)
        return StepInput(x, h, h if has_cell_state else None, batched)
    expected = (x.shape[0], hidden_size) if batched else (hidden_size,)
    if not has_cell_state:
        h = as_run_under_autocast(check_state(owner, hx, "hx (h)", expected, input, dtype), dtype)
        return StepInput(x, h if batched else h.unsqueeze(0), None, batched)
    if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
        raise TypeError(f"{owner}: hx must be a tuple (h, c) of two tensors, got {describe(hx)}")
    h, c = (as_run_under_autocast(check_state(owner, state, label, expected, input, dtype), dtype)
            for state, label in ((hx[0], "hx[0] (h)"), (hx[1], "hx[1] (c)")))
    if not batched:
        h, c = h.unsqueeze(0), c.unsqueeze(0)
    return StepInput(x, h, c, batched)


def check_state(
    owner: str,
    tensor: object,
    label: str,
    expected: tuple[int, ...],
    input: Tensor,
    dtype: torch.dtype,
) -> Tensor:
    """One state tensor: the `expected` shape for `input`, the parameters' (or autocast's) dtype."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{owner}: {label} must be a Tensor, got {describe(tensor)}")
    if tensor.shape != expected:  # torch.Size is a tuple
        layout = "(batch, hidden_size) for input" if input.dim() == 2 else "(hidden_size,) for unbatched input"
        raise ShapeError(
            f"{owner}: {label} must have shape {expected} {layout} of shape "
            f"{tuple(input.shape)}, got {tuple(tensor.shape)}"
        )
    if not accepts_dtype(tensor, dtype):
        raise ShapeError(f"{owner}: {label} dtype must match the parameters ({dtype}), got {tensor.dtype}")
    if tensor.device != input.device:
        raise ShapeError(
            f"{owner}: {label} must be on the input's device ({input.device}), got a tensor on {tensor.device}"
        )
    return tensor
