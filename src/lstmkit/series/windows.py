"""The windowing dataset: lookback and horizon windows cut from a series at forecast origins.

A forecast made at origin `o` sees rows `o - lookback .. o - 1` (targets, observed-past
covariates and known-future features) and the known-future features of rows
`o .. o + horizon - 1` (calendar features, known-future covariates), and forecasts the
targets of those rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class WindowBatch:
    """history: (B, lookback, targets + covariates + known); future: (B, horizon, known);
    targets: (B, horizon, targets), or None when a window reaches past the known rows."""

    history: Tensor
    future: Tensor
    targets: Tensor | None


class Windows:
    """Windows of `lookback` past rows and `horizon` future rows over one series.

    targets (rows, k) and covariates (rows, p) are the observed rows; known (rows + extra, f),
    the known-future features, may run past them, so that windows reaching beyond the data
    still get their known-future features.
    """

    def __init__(self, targets: Tensor, covariates: Tensor, known: Tensor, lookback: int, horizon: int) -> None:
        if lookback < 1 or horizon < 1:
            raise ValueError(f"lookback and horizon must be at least 1, got {lookback} and {horizon}")
        if len(targets) < lookback + horizon:
            raise ValueError(f"the series has {len(targets)} rows; a window needs lookback + horizon = "
                             f"{lookback} + {horizon} = {lookback + horizon}")
        self.targets, self.lookback, self.horizon = targets, lookback, horizon
        self.past = torch.cat([targets, covariates, known[:len(targets)]], dim=1)
        self.known = known

    def __len__(self) -> int:
        return len(self.targets)

    def origins(self) -> range:
        """Every origin whose window lies wholly in the observed rows."""
        return range(self.lookback, len(self.targets) - self.horizon + 1)

    def batch(self, origins: Sequence[int] | Tensor) -> WindowBatch:
        origins = torch.as_tensor(origins, dtype=torch.int64)
        if len(origins) and (origins.min() < self.lookback or origins.max() > len(self.targets)):
            raise ValueError(f"origins must lie in [{self.lookback}, {len(self.targets)}] (lookback .. rows), "
                             f"got {origins.min().item()} .. {origins.max().item()}")
        if len(origins) and origins.max() + self.horizon > len(self.known):
            raise ValueError(f"origin {origins.max().item()} needs known-future features up to row "
                             f"{origins.max().item() + self.horizon}, there are {len(self.known)}")
        past_rows = origins[:, None] + torch.arange(-self.lookback, 0)
        future_rows = origins[:, None] + torch.arange(self.horizon)
        observed = len(origins) == 0 or origins.max() + self.horizon <= len(self.targets)
        return WindowBatch(self.past[past_rows], self.known[future_rows],
                           self.targets[future_rows] if observed else None)
