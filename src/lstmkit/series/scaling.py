"""Standardising columns with statistics of the training rows only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scaler:
    """Standardises each column with the mean and standard deviation of the rows it was fitted on.

    A constant column has mean its value and std 0 exactly (not the rounding residue of
    numpy's std): `transform` only subtracts its value, and `inverse` maps anything back to
    that value, so a constant series is forecast as itself, with an interval of zero width.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> Scaler:
        """The statistics of `values` (rows, columns), at least one row."""
        constant = (values == values[:1]).all(axis=0)
        return cls(np.where(constant, values[0], values.mean(axis=0)),
                   np.where(constant, 0.0, standard_deviation(values, axis=0)))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / np.where(self.std > 0, self.std, 1.0)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return values * self.std + self.mean

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> Scaler:
        return cls(np.asarray(data["mean"], np.float64), np.asarray(data["std"], np.float64))


def magnitude_scale(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    """The power of two at or just above the largest |value| (along `axis`, kept as a length-1
    dimension; 1 where every value is 0, or there is none), at most 2**1023, the largest a
    float64 holds: dividing by it is exact and brings the values to magnitudes of at most 2,
    whose squares neither overflow (values beyond ~1e154) nor underflow (below ~1e-154)."""
    if np.size(values) == 0:
        return np.ones_like(np.sum(values, axis=axis, keepdims=True), dtype=np.float64)
    _, exponent = np.frexp(np.max(np.abs(values), axis=axis, keepdims=True))
    return np.ldexp(1.0, np.minimum(exponent, 1023))


def standard_deviation(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    """numpy's std, computed on the values divided by their `magnitude_scale` and multiplied
    back: at any magnitude a float64 holds, not only where the squares do."""
    scale = magnitude_scale(values, axis)
    return (values / scale).std(axis=axis) * np.squeeze(scale, axis)


# How a global model normalises each series (see SeriesScaling).
NORMALISATIONS = ("standard", "log", "seasonal")


@dataclass(frozen=True)
class SeriesScaling:
    """One series' own normalisation, fitted on its history, for a model shared by many series:

        z_t = (f(y_t / s_{t mod m}) - mean) / std

    f is log for "log" and "seasonal" (so a seasonal swing that grows with the level becomes a
    constant one), the identity for "standard"; s are the multiplicative seasonal indices M4's
    Naive2 uses for "seasonal" (ES-RNN's idea: remove level and season per series; all 1 when M4's
    test finds no season), else 1. A series with a value <= 0 is neither logged nor
    deseasonalised. Positions t count from the series' first value. std 0 (a constant) maps
    everything back to the constant, as `Scaler` does.
    """

    log: bool
    indices: np.ndarray
    mean: float
    std: float

    @classmethod
    def fit(cls, history: np.ndarray, normalisation: str, season: int, positive: bool | None = None
            ) -> SeriesScaling:
        """Fitted on `history`; `positive`: whether every value it will transform is > 0 (the
        history's, where not given: a validation tail of a 0 made log's -inf)."""
        from lstmkit.series.baselines import seasonal_indices

        if normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {', '.join(NORMALISATIONS)}, got {normalisation!r}")
        positive = bool((history > 0).all()) if positive is None else positive
        log = positive and normalisation != "standard"
        indices = seasonal_indices(history, season) if positive and normalisation == "seasonal" else np.ones(season)
        shaped = cls(log, indices, 0.0, 1.0).shape(history, 0)
        constant = bool((shaped == shaped[0]).all())
        return cls(log, indices, float(shaped[0] if constant else shaped.mean()),
                   0.0 if constant else float(standard_deviation(shaped)))

    def shape(self, values: np.ndarray, first: int) -> np.ndarray:
        """f(y / s) of the values at positions first, first + 1, ..."""
        values = values / self.indices[(first + np.arange(len(values))) % len(self.indices)]
        return np.log(values) if self.log else values

    def transform(self, values: np.ndarray, first: int = 0) -> np.ndarray:
        return (self.shape(values, first) - self.mean) / (self.std if self.std > 0 else 1.0)

    def inverse(self, values: np.ndarray, first: int) -> np.ndarray:
        """y of z values at positions first, first + 1, ... along the last axis."""
        shaped = values * self.std + self.mean
        season = self.indices[(first + np.arange(values.shape[-1])) % len(self.indices)]
        return (np.exp(shaped) if self.log else shaped) * season
