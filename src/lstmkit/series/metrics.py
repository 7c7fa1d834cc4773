"""Point-forecast accuracy: MAE, RMSE, sMAPE and MASE.

    MAE   = mean |y - ŷ|
    RMSE  = sqrt(mean (y - ŷ)²)
    sMAPE = mean 200 |y - ŷ| / (|y| + |ŷ|)            (percent; a 0/0 term counts as 0)
    MASE  = MAE / mean_t |y_t - y_{t-m}|               (the in-sample seasonal naive's MAE, t over
                                                        the training part, m the seasonal period;
                                                        as for sMAPE, 0/0 counts as 0, and x/0 is inf)

The MASE scale is 0 when the training values repeat exactly every m steps, a constant
series among them: a forecast that is exact scores 0 there, any other inf.
"""

from __future__ import annotations

import math

import numpy as np

METRICS = ("MAE", "RMSE", "sMAPE", "MASE")


def seasonal_naive_scale(history: np.ndarray, season: int) -> float:
    """The in-sample one-step MAE of the seasonal naive forecast y_t = y_{t-m} on `history`."""
    if len(history) <= season:
        raise ValueError(f"MASE needs more than m = {season} training values, got {len(history)}")
    return float(np.mean(np.abs(history[season:] - history[:-season])))


def scores(actual: np.ndarray, forecast: np.ndarray, history: np.ndarray, season: int) -> dict[str, float]:
    """MAE, RMSE, sMAPE and MASE of `forecast` against `actual` (same shape, one series)."""
    actual, forecast = np.asarray(actual, np.float64), np.asarray(forecast, np.float64)
    if actual.shape != forecast.shape or actual.size == 0:
        raise ValueError(f"actual and forecast must have the same non-empty shape, got {actual.shape} and {forecast.shape}")
    error = np.abs(actual - forecast)
    denominator = np.abs(actual) + np.abs(forecast)
    ratio = np.divide(200 * error, denominator, out=np.zeros_like(error), where=denominator > 0)
    mae = float(error.mean())
    scale = seasonal_naive_scale(np.asarray(history, np.float64), season)
    return {"MAE": mae, "RMSE": float(np.sqrt(np.mean(error ** 2))), "sMAPE": float(ratio.mean()),
            "MASE": mae / scale if scale > 0 else (0.0 if mae == 0 else math.inf)}
