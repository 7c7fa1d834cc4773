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
        return cls(np.where(constant, values[0], values.mean(axis=0)), np.where(constant, 0.0, values.std(axis=0)))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / np.where(self.std > 0, self.std, 1.0)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return values * self.std + self.mean

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> Scaler:
        return cls(np.asarray(data["mean"], np.float64), np.asarray(data["std"], np.float64))
