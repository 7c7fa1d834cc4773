"""What every Triton kernel of the engine shares: the launch grid and the activations."""

from __future__ import annotations

import triton
import triton.language as tl

MAX_BLOCK = 1024  # columns one program handles; a row of H > 1024 spans several programs


@triton.jit
def tanh(x):
    """tanh(x) = 2σ(2x) − 1, in the dtype of x."""
    return 2 * tl.sigmoid(2 * x) - 1


def block_size(hidden_size: int) -> int:
    return min(MAX_BLOCK, triton.next_power_of_2(hidden_size))


def grid(rows: int, hidden_size: int) -> tuple[int, int]:
    """One program per row and block of columns."""
    return rows, triton.cdiv(hidden_size, block_size(hidden_size))
