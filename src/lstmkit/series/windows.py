"""The windowing dataset: lookback and horizon windows cut from a series at forecast origins.

A forecast made at origin `o` sees rows `o - lookback .. o - 1` (targets, observed-past
covariates and known-future features) and the known-future features of rows
`o .. o + horizon - 1` (calendar features, known-future covariates), and forecasts the
targets of those rows. A gap in its history that runs up to `o`, interpolated in the table
towards the values from `o` on, holds the last value before it (`known_before`) where the
batch is taken as known at its origins: a validation window, a forecast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lstmkit.series.frame import known_before


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
    still get their known-future features. gaps (rows, k + p), bool: where a target's or
    covariate's value was missing and filled (none where not given).
    """

    def __init__(self, targets: Tensor, covariates: Tensor, known: Tensor, lookback: int, horizon: int,
                 gaps: Tensor | None = None) -> None:
        if lookback < 1 or horizon < 1:
            raise ValueError(f"lookback and horizon must be at least 1, got {lookback} and {horizon}")
        if len(targets) < lookback:  # a forecast from the end; training windows need horizon rows more
            raise ValueError(f"the series has {len(targets)} rows; a window needs lookback = {lookback}")
        self.targets, self.lookback, self.horizon = targets, lookback, horizon
        self.past = torch.cat([targets, covariates, known[:len(targets)]], dim=1)
        self.known = known
        self.gaps = torch.zeros(len(targets), targets.shape[1] + covariates.shape[1], dtype=torch.bool) \
            if gaps is None else gaps

    def __len__(self) -> int:
        return len(self.targets)

    def tensors(self) -> tuple[Tensor, ...]:
        """Everything the windows are cut from (the targets are among the past's columns)."""
        return self.past, self.known

    def origins(self) -> range:
        """Every origin whose window lies wholly in the observed rows."""
        return range(self.lookback, len(self.targets) - self.horizon + 1)

    def batch(self, origins: Sequence[int] | Tensor, as_known: bool = False) -> WindowBatch:
        """The windows at `origins`; `as_known`: each history as its origin knows it (a gap up
        to the origin holds the value before it), for validation and forecasts; training
        windows read the table as filled."""
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
        history = self.past[past_rows]
        if as_known:
            columns = self.gaps.shape[1]  # the targets' and covariates' (the known-future features are known)
            for k, origin in enumerate(origins.tolist()):
                if self.gaps[origin - 1].any():
                    known = known_before(self.past[:origin, :columns].numpy(), self.gaps[:origin].numpy(), origin)
                    history[k, :, :columns] = torch.from_numpy(known[-self.lookback:]).to(history.dtype)
        return WindowBatch(history, self.known[future_rows], self.targets[future_rows] if observed else None)


class PanelWindows:
    """Windows over many series of one target, for one global network: a window is a pair
    (series, origin), and `batch` takes a (B, 2) tensor of them.

    Each series comes scaled on its own. A window that reaches before its series' start is
    left-padded with the series' first value, so a series shorter than the lookback still
    gets windows; the history carries a mask channel, 1 where observed and 0 where padded:
    history (B, lookback, 2) = (value, mask); future (B, horizon, 0); targets (B, horizon, 1).
    """

    def __init__(self, series: Sequence[Tensor], lookback: int, horizon: int,
                 known: Sequence[Tensor] | None = None) -> None:
        """`known`: each series as its validation origin knows it (a gap up to the origin holding
        the value before it), read by `batch(..., as_known=True)`; `series` itself where not given."""
        if lookback < 1 or horizon < 1:
            raise ValueError(f"lookback and horizon must be at least 1, got {lookback} and {horizon}")
        if any(len(values) == 0 for values in series):
            raise ValueError("every series needs at least one value")
        self.lookback, self.horizon = lookback, horizon
        self.lengths = torch.tensor([len(values) for values in series])
        # Series k occupies rows offsets[k] .. offsets[k] + lookback + length + horizon - 1:
        # lookback rows of padding, its values, horizon rows for the steps after its end.
        self.offsets = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.int64),
                                               self.lengths[:-1] + lookback + horizon]), 0)
        if known is not None and [len(values) for values in known] != self.lengths.tolist():
            raise ValueError(f"known must hold one series as long as each given ({self.lengths.tolist()}), got "
                             f"{[len(values) for values in known]}")
        self.values = self.padded(series)
        self.known_values = self.values if known is None else self.padded(known)
        self.mask = torch.cat([torch.cat([torch.zeros(lookback), torch.ones(len(values)), torch.zeros(horizon)])
                               for values in series])

    def padded(self, series: Sequence[Tensor]) -> Tensor:
        """The series laid out at their offsets: each after `lookback` copies of its first value."""
        return torch.cat([torch.cat([values[:1].expand(self.lookback), values, torch.zeros(self.horizon)])
                          for values in series])

    def __len__(self) -> int:
        return len(self.lengths)

    def tensors(self) -> tuple[Tensor, ...]:
        """Everything the windows are cut from, which a resumed fit compares (not
        `known_values`: the same data, its gaps before each validation origin held)."""
        return self.values, self.mask, self.lengths

    def batch(self, keys: Sequence[Sequence[int]] | Tensor, as_known: bool = False) -> WindowBatch:
        """The windows of `keys`, (series, origin) pairs; `as_known`: the histories read from
        the series as known at their validation origin (`known`), for validation."""
        keys = torch.as_tensor(keys, dtype=torch.int64).reshape(-1, 2)
        series, origins = keys[:, 0], keys[:, 1]
        if len(keys) and (origins.min() < 1 or (origins > self.lengths[series]).any()):
            raise ValueError("window origins must lie in 1 .. the length of their series")
        past_rows = (self.offsets[series] + origins)[:, None] + torch.arange(self.lookback)
        future_rows = (self.offsets[series] + self.lookback + origins)[:, None] + torch.arange(self.horizon)
        history = torch.stack([(self.known_values if as_known else self.values)[past_rows], self.mask[past_rows]],
                              dim=-1)
        observed = bool((origins + self.horizon <= self.lengths[series]).all())
        return WindowBatch(history, torch.zeros(len(keys), self.horizon, 0),
                           self.values[future_rows][..., None] if observed else None)
