"""One table's choice of forecast: on its validation windows, per target, among the network,
the baselines and their combinations (lstmkit.series.choice), the interval calibrated around it
(lstmkit.series.intervals), and `predict`'s forecast by it."""

from __future__ import annotations

import math

import numpy as np

from lstmkit.pipelines.forecast import Forecaster, Forecasts
from lstmkit.series import SeriesFrame, observed, panel_baselines, scores
from lstmkit.series.metrics import seasonal_naive_scale
from lstmkit.series.choice import PAIR, choose, method_forecast
from lstmkit.series.intervals import centred_on, interval_scale

# The most validation windows a forecast is chosen on: each costs a fit of every statistical baseline.
CHOICE_ORIGINS = 10


def choose_forecast(forecaster: Forecaster, frame: SeriesFrame, validation: list[int]) -> dict:
    """Per target, the forecast `predict` uses (lstmkit.series.choice's candidates, among
    `config.baselines`), chosen by MASE (by MAE where the target is flat over its history) on up
    to CHOICE_ORIGINS of the validation windows, evenly spaced and the latest among them, and the
    factor that calibrates the network's interval around it on the same windows: the layout's
    `chosen`, `validation` and `interval_scale`. A value that was missing, and interpolated, is
    neither scored nor calibrated on, as in the backtest."""
    horizon, season = forecaster.config.horizon, forecaster.layout.season
    origins = validation[::-math.ceil(len(validation) / CHOICE_ORIGINS)][::-1]
    network = forecaster.forecast_origins(frame, origins)
    model = network.mean
    chosen, scored, scales = [], {}, []
    for index, name in enumerate(frame.target_names):
        history = observed(frame.targets[:origins[0], index], frame.filled[:origins[0], index])
        actual = np.stack([frame.targets[origin:origin + horizon, index] for origin in origins])  # (origins, horizon)
        given = ~np.stack([frame.filled[origin:origin + horizon, index] for origin in origins])
        windows = given.any(axis=1)  # a window whose every value was interpolated has none to score
        scale_season = season if len(history) > season else 1

        def score(methods: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
            return {method: scores(actual[given], values[given], history, scale_season)
                    for method, values in methods.items()}

        # A target flat over its history has a MASE scale of 0: every inexact method's MASE is inf,
        # and the network was kept over a closer one. MAE ranks them as MASE does at any other scale.
        metric = "MAE" if seasonal_naive_scale(history, scale_season) == 0 else "MASE"

        def window_terms(values: np.ndarray) -> np.ndarray:
            """Each validation window's `metric` (without interpolated values, their mean is the metric of them all)."""
            return np.array([scores(actual[k][given[k]], values[k][given[k]], history, scale_season)[metric]
                             for k in np.flatnonzero(windows)])

        baselines = origin_baselines(forecaster, frame, origins, index, forecaster.config.baselines)
        choice = choose(model[..., index], baselines, score, metric, window_terms)
        chosen.append(choice.chosen)
        scored[name] = choice.scores
        centre = method_forecast(choice.chosen, model[..., index], baselines)
        scales.append(interval_scale(np.where(given, actual, np.nan), centre,
                                     model[..., index] - network.lower[..., index],
                                     network.upper[..., index] - model[..., index], forecaster.config.interval))
    return {"chosen": tuple(chosen), "validation": scored, "interval_scale": tuple(scales)}


def origin_baselines(forecaster: Forecaster, frame: SeriesFrame, origins: list[int], index: int,
                     names) -> dict[str, np.ndarray]:
    """Each baseline's forecasts of target `index` from each origin, from the history as that
    origin knows it: name -> (origins, horizon)."""
    return panel_baselines([frame.history(index, origin) for origin in origins],
                           forecaster.config.horizon, forecaster.layout.season, tuple(names))


def chosen_forecasts(forecaster: Forecaster, frame: SeriesFrame, origins: list[int],
                     forecasts: Forecasts) -> Forecasts:
    """`forecasts` (the network's, its interval calibrated) replaced, for each target, by its
    chosen forecast, the interval moved to centre on it (the centre the chosen forecast itself,
    not the model's plus the shift, which wrote a baseline's 93.3 as 93.30000000000001)."""
    for index, method in enumerate(forecaster.layout.chosen):
        if method == "model":
            continue
        model = forecasts.mean[..., index].copy()
        names = forecaster.config.baselines if method == "combination" else [method.removeprefix(PAIR)]
        centre = method_forecast(method, model, origin_baselines(forecaster, frame, origins, index, names))
        forecasts.lower[..., index], forecasts.upper[..., index] = centred_on(
            centre, model, forecasts.lower[..., index], forecasts.upper[..., index])
        forecasts.mean[..., index] = centre
    return forecasts
