"""The forecasts a model must beat, each from one series' history alone.

    naive           ŷ_{n+h} = y_n
    seasonal_naive  ŷ_{n+h} = y_{n+h-m·k}, k = ⌈h/m⌉ (the last value of the same season)
    drift           ŷ_{n+h} = y_n + h (y_n - y_1) / (n - 1)
    ets             Holt-Winters exponential smoothing: additive damped trend, additive season
                    of period m (when m > 1 and two seasons are known), statsmodels
    arima           ARIMA(p, d, q), d from a KPSS test (with drift when d = 1), p, q ≤ 2 by
                    AIC, seasonality as Fourier terms of period m (dynamic harmonic
                    regression), statsmodels

h = 1 .. horizon. ets and arima use statsmodels, which the forecast extra brings. A constant
history is forecast as that constant by every baseline (it is each one's forecast, and
statsmodels' fits divide by the series' zero variance).
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np

BASELINES = ("naive", "seasonal_naive", "drift", "ets", "arima")
# The baselines that stand in for a model's forecast that is not finite: quick, and never failing.
SIMPLE_BASELINES = ("naive", "seasonal_naive", "drift")
BASELINE_TRIALS = 3  # origins, a horizon apart, at the end of a history on which best_baseline scores them
FOURIER_PAIRS = 3  # sine-cosine pairs per season in the ARIMA's regression


def baseline_forecast(name: str, history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """The `horizon` next values of the 1-D `history` by the baseline `name`."""
    forecasts = {"naive": naive, "seasonal_naive": seasonal_naive, "drift": drift, "ets": ets, "arima": arima}
    if name not in forecasts:
        raise ValueError(f"baseline must be one of {', '.join(forecasts)}, got {name!r}")
    if len(history) < max(2, season):
        raise ValueError(f"the {name} baseline needs at least {max(2, season)} values, got {len(history)}")
    history = np.asarray(history, np.float64)
    if (history == history[0]).all():
        return np.full(horizon, history[0])
    return np.asarray(forecasts[name](history, horizon, season), np.float64)


def best_baseline(history: np.ndarray, horizon: int, season: int) -> str:
    """The simple baseline with the lowest MAE forecasting the end of the 1-D `history` from up
    to BASELINE_TRIALS origins a horizon apart; naive when the history is too short to try."""
    origins = [origin for origin in range(len(history) - horizon, 0, -horizon)[:BASELINE_TRIALS]
               if origin >= max(2, season)]
    if not origins:
        return "naive"

    def error(name: str) -> float:
        return sum(np.abs(baseline_forecast(name, history[:origin], horizon, season)
                          - history[origin:origin + horizon]).mean() for origin in origins)

    return min(SIMPLE_BASELINES, key=error)


def naive(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    return np.full(horizon, history[-1])


def seasonal_naive(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    last_season = history[-season:]
    return last_season[np.arange(horizon) % season]


def drift(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    slope = (history[-1] - history[0]) / (len(history) - 1)
    return history[-1] + slope * np.arange(1, horizon + 1)


def ets(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    seasonal = season > 1 and len(history) >= 2 * season
    model = ExponentialSmoothing(history, trend="add", damped_trend=True, seasonal="add" if seasonal else None,
                                 seasonal_periods=season if seasonal else None, initialization_method="estimated")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit().forecast(horizon)


def arima(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    from statsmodels.tsa.arima.model import ARIMA

    steps = np.arange(len(history) + horizon)
    regressors = fourier_terms(steps, season) if season > 1 else None
    past = None if regressors is None else regressors[:len(history)]
    future = None if regressors is None else regressors[len(history):]
    differences = differences_needed(history)
    best = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p, q in itertools.product(range(3), range(3)):
            try:
                fitted = ARIMA(history, exog=past, order=(p, differences, q),
                               trend="t" if differences else "c").fit()
            except (np.linalg.LinAlgError, ValueError):
                continue
            if np.isfinite(fitted.aic) and (best is None or fitted.aic < best.aic):
                best = fitted
    if best is None:
        raise ValueError("no ARIMA(p, d, q) with p, q <= 2 could be fitted to the series")
    return best.forecast(horizon, exog=future)


def fourier_terms(steps: np.ndarray, season: int) -> np.ndarray:
    pairs = min(FOURIER_PAIRS, season // 2)
    angles = 2 * np.pi * steps[:, None] * np.arange(1, pairs + 1) / season
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def differences_needed(history: np.ndarray) -> int:
    """1 when a KPSS test rejects level-stationarity at 5%, else 0."""
    from statsmodels.tsa.stattools import kpss

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the p-value is clipped to the table's range; fine for a 5% test
        p_value = kpss(history, regression="c", nlags="auto")[1]
    return int(p_value < 0.05)
