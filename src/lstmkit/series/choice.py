"""Choosing a forecast on validation windows: the network's, a baseline's, or a combination.

M4's lesson is that combinations win. The candidates:

    model             the network's forecast
    <baseline>        each baseline's
    combination       the mean of the network's and the statistical baselines' (theta, ets,
                      arima among those given; the network's alone when there are none)
    model+<partner>   the mean of the network's and the baseline's that scored best

The one with the lowest score is chosen. The choice never sees test rows: callers score on
windows that end before them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lstmkit.series.baselines import STATISTICAL

PAIR = "model+"  # the prefix of a pair's name: "model+theta"


@dataclass(frozen=True)
class Choice:
    """The method chosen, the baseline best on its own (`partner`), and every candidate's scores."""

    chosen: str
    partner: str
    scores: dict[str, dict[str, float]]


def combination(model: np.ndarray, baselines: dict[str, np.ndarray]) -> np.ndarray:
    return np.mean([model, *(values for name, values in baselines.items() if name in STATISTICAL)], axis=0)


def method_forecast(method: str, model: np.ndarray, baselines: dict[str, np.ndarray]) -> np.ndarray:
    """The forecast of the candidate `method`, from the network's and the baselines' forecasts."""
    if method == "model":
        return model
    if method == "combination":
        return combination(model, baselines)
    if method.startswith(PAIR):
        return (model + baselines[method.removeprefix(PAIR)]) / 2
    return baselines[method]


def choose(model: np.ndarray, baselines: dict[str, np.ndarray],
           score: Callable[[dict[str, np.ndarray]], dict[str, dict[str, float]]], metric: str) -> Choice:
    """Score every candidate (`score` maps method -> forecast to method -> metrics) and choose
    the lowest `metric`; `baselines` must not be empty."""
    methods = {"model": model, "combination": combination(model, baselines), **baselines}
    alone = score(methods)
    partner = min(baselines, key=lambda name: alone[name][metric])
    methods[PAIR + partner] = method_forecast(PAIR + partner, model, baselines)
    scored = score(methods)
    return Choice(min(scored, key=lambda method: scored[method][metric]), partner, scored)
