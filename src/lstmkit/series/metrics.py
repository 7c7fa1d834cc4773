"""Point-forecast accuracy: MAE, RMSE, sMAPE and MASE.

    MAE   = mean |y - ŷ|
    RMSE  = sqrt(mean (y - ŷ)²)
    sMAPE = mean 200 |y - ŷ| / (|y| + |ŷ|)            (percent; a 0/0 term counts as 0)
    MASE  = MAE / mean_t |y_t - y_{t-m}|               (the in-sample seasonal naive's MAE, t over
                                                        the training part where both values are
                                                        given (where no two are, every t), m the
                                                        seasonal period; as for sMAPE, 0/0 counts
                                                        as 0, and x/0 is inf)

M4 scores a set of series by the mean over series of each one's sMAPE and MASE, and ranks a
method by its overall weighted average relative to the Naive2 benchmark:

    OWA   = (sMAPE / sMAPE_Naive2 + MASE / MASE_Naive2) / 2      (each the mean over the series)

The MASE scale is 0 when the training values repeat exactly every m steps, a constant
series among them: a forecast that is exact scores 0 there, any other inf. Exact within
EXACT_TOLERANCE of the values' size: a forecast computed through logs and back (123.456 as
123.45600000000001) is exact, not infinitely worse than one that is.
"""

from __future__ import annotations

import math

import numpy as np

from lstmkit.series.scaling import magnitude_scale

METRICS = ("MAE", "RMSE", "sMAPE", "MASE")
# Relative to the largest actual value: a forecast error below it is rounding (float64 carries
# 16 digits; a round trip through log and exp loses a few), where the MASE scale is 0.
EXACT_TOLERANCE = 1e-9


def seasonal_naive_scale(history: np.ndarray, season: int) -> float:
    """The in-sample one-step MAE of the seasonal naive forecast y_t = y_{t-m} on `history`,
    over the pairs of values it gives: a masked value (one that was missing and was
    interpolated, `observed`) or one that is not finite leaves out the two pairs it is in; where
    that leaves none, the masked ones count too."""
    if len(history) <= season:
        raise ValueError(f"MASE needs more than m = {season} training values, got {len(history)}")
    history = np.ma.masked_invalid(np.ma.asarray(history, dtype=np.float64))
    differences = np.ma.abs(history[season:] - history[:-season])
    if np.ma.count(differences) == 0:  # no two given values m apart: the filled ones too
        values = np.ma.getdata(history)
        differences = np.abs(values[season:] - values[:-season])
        differences = differences[np.isfinite(differences)]
        if differences.size == 0:
            raise ValueError(f"MASE needs two finite training values m = {season} steps apart, got none")
    return float(differences.mean())


def observed(values: np.ndarray, filled: np.ndarray) -> np.ma.MaskedArray:
    """`values` masked where `filled` marks a value that was missing (and interpolated): a
    history as MASE scales on it, the table's own values."""
    return np.ma.masked_array(np.asarray(values, np.float64), mask=filled)


def scores(actual: np.ndarray, forecast: np.ndarray, history: np.ndarray, season: int) -> dict[str, float]:
    """MAE, RMSE, sMAPE and MASE of `forecast` against `actual` (same shape, one series)."""
    actual, forecast = np.asarray(actual, np.float64), np.asarray(forecast, np.float64)
    if actual.shape != forecast.shape or actual.size == 0:
        raise ValueError(f"actual and forecast must have the same non-empty shape, got {actual.shape} and {forecast.shape}")
    error = np.abs(actual - forecast)
    denominator = np.abs(actual) + np.abs(forecast)
    ratio = 200 * np.divide(error, denominator, out=np.zeros_like(error), where=denominator > 0)  # 200 × 1e307: inf
    mae = float(error.mean())
    scale = seasonal_naive_scale(history, season)
    exact = error.max() <= EXACT_TOLERANCE * np.abs(actual).max()
    return {"MAE": mae, "RMSE": root_mean_square(error), "sMAPE": float(ratio.mean()),
            "MASE": mae / scale if scale > 0 else (0.0 if exact else math.inf)}


def root_mean_square(values: np.ndarray) -> float:
    """sqrt(mean(values²)), on the values divided by their `magnitude_scale` and multiplied
    back, so that squares neither overflow nor underflow."""
    scale = magnitude_scale(values).item()
    return float(np.sqrt(np.mean((values / scale) ** 2)) * scale)


def series_scores(actuals, forecasts, histories, season: int) -> dict[str, np.ndarray]:
    """Each series' sMAPE and MASE (`scores`) of one forecast, as arrays over the series; the
    MASE of a series no longer than m uses m = 1."""
    rows = [scores(actual, forecast, history, season if len(history) > season else 1)
            for actual, forecast, history in zip(actuals, forecasts, histories, strict=True)]
    if not rows:
        raise ValueError("M4 scores need at least one series")
    return {metric: np.array([row[metric] for row in rows]) for metric in ("sMAPE", "MASE")}


def m4_scores(actuals, forecasts, histories, season: int) -> dict[str, float]:
    """sMAPE and MASE as M4 scores a set of series: each the mean over the series of its
    value (`series_scores`)."""
    return {metric: float(values.mean()) for metric, values in series_scores(actuals, forecasts, histories,
                                                                              season).items()}


def owa(method: dict[str, float], naive2: dict[str, float]) -> float:
    """M4's overall weighted average of `method`'s sMAPE and MASE relative to Naive2's. Where
    Naive2 scores 0 (exact), a term is 1 for a method as exact and inf for any other."""
    def relative(metric: str) -> float:
        if naive2[metric] > 0:
            return method[metric] / naive2[metric]
        return 1.0 if method[metric] == 0 else math.inf

    return 0.5 * (relative("sMAPE") + relative("MASE"))
