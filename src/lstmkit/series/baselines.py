"""The forecasts a model must beat, each from one series' history alone.

    naive           ŷ_{n+h} = y_n
    seasonal_naive  ŷ_{n+h} = y_{n+h-m·k}, k = ⌈h/m⌉ (the last value of the same season)
    drift           ŷ_{n+h} = y_n + h (y_n - y_1) / (n - 1)
    naive2          M4's benchmark: naive on the multiplicatively deseasonalised series,
                    reseasonalised, when the series is seasonal by M4's 90% ACF test at lag m
                    (see `seasonal_indices`); plain naive otherwise
    ets             statsforecast's AutoETS (error, trend, season by AICc; season of period m)
    arima           statsforecast's AutoARIMA (Hyndman-Khandakar stepwise search; seasonal m)
                    (for m > LONGEST_SEASON, both are statsforecast's MSTL: the season removed by
                    STL, the rest forecast by AutoETS without a season or by AutoARIMA)
    theta           statsforecast's Theta (the M4 Theta benchmark: SES with drift, on data
                    deseasonalised by statsforecast's own test, the 90% ACF test at lag m
                    where m >= 4 and n >= 2m, additively where a value is not positive)

h = 1 .. horizon. The statistical baselines run in statsforecast, which the forecast extra
brings, and `panel_baselines` computes them for hundreds of series at once. A constant
history is forecast as that constant by every baseline (it is each one's forecast).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import multiprocessing
import numbers
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from lstmkit.warning_filters import warnings_filtered

BASELINES = ("naive", "seasonal_naive", "drift", "ets", "arima", "theta", "naive2")
# The ones statsforecast fits, by its model classes' names.
STATISTICAL = {"ets": "AutoETS", "arima": "AutoARIMA", "theta": "Theta"}
# The baselines that stand in for a model's forecast that is not finite: quick, and never failing.
SIMPLE_BASELINES = ("naive", "seasonal_naive", "drift")
BASELINE_TRIALS = 3  # origins, a horizon apart, at the end of a history on which best_baseline scores them
# The longest season ETS and ARIMA fit as such: AutoETS drops a longer one (as R's ets does), and
# a seasonal AutoARIMA of period 52 took over 10 minutes on CO2's 2180 weeks; MSTL takes 1 s.
LONGEST_SEASON = 24
# M4's seasonality test: |acf_m| above this one-sided 90% normal quantile times its standard error.
M4_CRITICAL = 1.645


def baseline_forecast(name: str, history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """The `horizon` next values of the 1-D `history` by the baseline `name`."""
    forecasts = {"naive": naive, "seasonal_naive": seasonal_naive, "drift": drift, "ets": ets, "arima": arima,
                 "theta": theta, "naive2": naive2}
    if name not in forecasts:
        raise ValueError(f"baseline must be one of {', '.join(forecasts)}, got {name!r}")
    for setting, value in (("horizon", horizon), ("season", season)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{setting} must be a positive integer, got {value!r}")
    history = np.asarray(history, np.float64)
    if history.ndim != 1:
        raise ValueError(f"history must be one series (1-D), got shape {history.shape}")
    if len(history) < max(2, season):
        raise ValueError(f"the {name} baseline needs at least {max(2, season)} values, got {len(history)}")
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


def naive2(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """M4's Naive2: the last deseasonalised value times the seasonal indices of the next steps."""
    indices = seasonal_indices(history, season)
    level = history[-1] / indices[(len(history) - 1) % season]
    return level * indices[(len(history) + np.arange(horizon)) % season]


def seasonal_indices(history: np.ndarray, season: int) -> np.ndarray:
    """The m multiplicative seasonal indices of `history` (position k: the steps t with t mod m = k,
    t counted from 0), all 1 unless M4's test finds it seasonal, as M4's R benchmarks compute them
    (a value of 0 included; all 1 for a history with a negative value, where a multiplicative
    season means nothing, and where the decomposition would divide by zero: a moving average of
    0, or a position whose values are all 0, which deseasonalising divides by; M4's series are
    all positive):

        seasonal  m > 1, n >= 3m and |r_m| > 1.645 sqrt((1 + 2 Σ_{k<m} r_k²) / n), r_k the lag-k ACF
        indices   classical multiplicative decomposition (R's decompose): the centred moving average
                  of order m (2×m for even m) as the trend, the mean ratio y/trend of each season
                  position, normalised to mean 1
    """
    history = np.asarray(history, np.float64)
    n = len(history)
    no_season = np.ones(max(season, 1))
    if season <= 1 or n < 3 * season or (history < 0).any() or not seasonal_by_acf(history, season):
        return no_season
    weights = np.r_[0.5, np.ones(season - 1), 0.5] / season if season % 2 == 0 else np.ones(season) / season
    half = len(weights) // 2
    trend = np.full(n, np.nan)
    trend[half:n - half] = np.convolve(history, weights, mode="valid")
    if (trend == 0).any():
        return no_season
    ratios = history / trend
    figure = np.array([np.nanmean(ratios[position::season]) for position in range(season)])
    return figure / figure.mean() if (figure > 0).all() else no_season


def seasonal_by_acf(history: np.ndarray, season: int) -> bool:
    """M4's 90% test (see `seasonal_indices`), with R's acf: r_k = Σ (y_t - ȳ)(y_{t-k} - ȳ) / Σ (y_t - ȳ)²."""
    centred = history - history.mean()
    total = float(centred @ centred)
    if total == 0:
        return False
    acf = np.array([centred[lag:] @ centred[:-lag] for lag in range(1, season + 1)]) / total
    limit = M4_CRITICAL * math.sqrt((1 + 2 * float(acf[:-1] @ acf[:-1])) / len(history))
    return bool(abs(acf[-1]) > limit)


def ets(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    return statistical("ets", history, horizon, season)


def arima(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    return statistical("arima", history, horizon, season)


def theta(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    return statistical("theta", history, horizon, season)


def statistical_model(name: str, season: int):
    """The statsforecast model of the baseline `name` (one of STATISTICAL), named as its class
    (the column statsforecast writes its forecasts to)."""
    from statsforecast import models

    if season > LONGEST_SEASON and name != "theta":
        remainder = models.AutoETS(model="ZZN") if name == "ets" else models.AutoARIMA()
        return models.MSTL(season, trend_forecaster=remainder, alias=STATISTICAL[name])
    return getattr(models, STATISTICAL[name])(season_length=season)


def statistical(name: str, history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    with warnings_filtered("ignore"):  # statsforecast's ACF divides by a zero variance of a flat stretch
        return statistical_model(name, season).forecast(y=history, h=horizon)["mean"]


def panel_baselines(histories: Sequence[np.ndarray], horizon: int, season: int, names: Sequence[str],
                    jobs: int | None = None) -> dict[str, np.ndarray]:
    """Each baseline's forecasts of many series at once: name -> (series, horizon). The
    statistical ones run in statsforecast (`jobs` processes; None: `baseline_jobs()`, which
    halved the 11 minutes of M4 hourly's AutoETS and Theta on 2 cores). A series of fewer than
    m values (a new product in a monthly table) has every baseline fitted without a season, as
    statsforecast fits it (its seasonal naive is naive); one of a single value, or on which a
    fit fails, gets the naive forecast (statsforecast's fallback model)."""
    unknown = [name for name in names if name not in BASELINES]
    if unknown:
        raise ValueError(f"baselines must be among {', '.join(BASELINES)}, got {', '.join(map(repr, unknown))}")
    histories = [np.asarray(series, np.float64) for series in histories]
    forecasts = {}
    for name in names:
        if name in STATISTICAL:
            continue
        forecasts[name] = np.stack([
            baseline_forecast(name, series, horizon, history_season(series, season)) if len(series) >= 2
            else naive(series, horizon, season) for series in histories])
    statistical_names = [name for name in names if name in STATISTICAL]
    if statistical_names:
        forecasts |= statsforecast_panel(histories, horizon, season, statistical_names,
                                         baseline_jobs() if jobs is None else jobs)
    return {name: forecasts[name] for name in names}


def history_season(history: np.ndarray, season: int) -> int:
    """The season a baseline is fitted with: m, or 1 for a history shorter than one cycle."""
    return season if len(history) >= season else 1


def baseline_jobs() -> int:
    """The processes statsforecast fits series in: the CPUs this process may use, shared by the
    processes torchrun started on this machine (LOCAL_WORLD_SIZE), which each fit the baselines;
    one (this process) in a daemonic process, a multiprocessing.Pool's worker, which may start
    none ("daemonic processes are not allowed to have children", after the network trained)."""
    if multiprocessing.current_process().daemon:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cpus // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


PR_SET_PDEATHSIG = 1  # linux/prctl.h: the signal a process gets when the thread that forked it ends
# While `workers_die_with_this_process` runs: this process's id, the thread's that forks the
# workers, and libc's prctl, read before any fork.
FORKING_PARENT: list[tuple[int, int, Callable]] = []


@contextlib.contextmanager
def workers_die_with_this_process() -> Iterator[None]:
    """Processes the block's thread forks (statsforecast's workers) are killed when that thread
    ends, as it does when this process dies. After a `kill -9` of lstmkit they waited forever on
    the pipe they hold to one another, keeping the run folder's lock (which they no longer
    inherit: `files.release_inherited_locks`) and the command's output open. A worker a pool
    forks later from a thread of its own, to replace one that died, is not asked. Linux only;
    elsewhere nothing."""
    library = ctypes.util.find_library("c") if sys.platform == "linux" else None
    prctl = getattr(ctypes.CDLL(library), "prctl", None) if library else None
    if prctl is None:
        yield
        return
    FORKING_PARENT.append((os.getpid(), threading.get_ident(), prctl))
    try:
        yield
    finally:
        FORKING_PARENT.pop()


def die_with_parent() -> None:
    """In a process just forked inside `workers_die_with_this_process` by the thread that runs
    it: ask for SIGKILL when the parent ends (its own forks are its own: the request is not
    passed on). A process another thread forks meanwhile (a user's) is left alone: the signal
    comes when the thread that forked it ends, which killed such a worker while it worked."""
    if not FORKING_PARENT:
        return
    parent, thread, prctl = FORKING_PARENT[-1]
    FORKING_PARENT.clear()
    if threading.get_ident() != thread:  # the forking thread is the child's only one, under its ident
        return
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent ended before the request was made
        os._exit(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=die_with_parent)


def statsforecast_panel(histories: list[np.ndarray], horizon: int, season: int, names: list[str],
                        jobs: int) -> dict[str, np.ndarray]:
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast.models import Naive

    forecasts = {name: np.stack([naive(series, horizon, season) for series in histories]) for name in names}
    groups: dict[int, list[tuple[int, np.ndarray]]] = {}  # by the season fitted: m, or 1 for short series
    for index, series in enumerate(histories):
        if len(series) >= 2:
            groups.setdefault(history_season(series, season), []).append((index, series))
    for fitted_season, fitted in groups.items():
        table = pd.DataFrame({"unique_id": np.concatenate([np.full(len(series), index) for index, series in fitted]),
                              "ds": np.concatenate([np.arange(len(series)) for _, series in fitted]),
                              "y": np.concatenate([series for _, series in fitted])})
        engine = StatsForecast(models=[statistical_model(name, fitted_season) for name in names], freq=1,
                               n_jobs=jobs, fallback_model=Naive())
        with warnings_filtered("ignore"), workers_die_with_this_process():
            result = engine.forecast(df=table, h=horizon).sort_values(["unique_id", "ds"])
        rows = np.array([index for index, _ in fitted])
        for name in names:
            forecasts[name][rows] = result[STATISTICAL[name]].to_numpy().reshape(len(fitted), horizon)
    return forecasts
