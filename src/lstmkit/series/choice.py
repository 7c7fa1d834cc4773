"""Choosing a forecast on validation windows: the network's, a baseline's, or a combination.

M4's lesson is that combinations win. The candidates:

    model             the network's forecast
    <baseline>        each baseline's
    combination       the mean of the network's and the statistical baselines' (theta, ets,
                      arima among those given; no candidate when none is given, as the mean
                      would be the network's own forecast)
    model+<partner>   the mean of the network's and the baseline's that scored best

The one with the lowest score is chosen, but over the network only when it is clearly
better: the mean of its per-item differences from the network's (items: the series, or the
validation windows of one series) lies below zero by CLEARLY standard errors. With fewer than
two items there is no spread to test against, and the lowest is chosen as it is. The choice
never sees test rows: callers score on windows that end before them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lstmkit.series.baselines import STATISTICAL

PAIR = "model+"  # the prefix of a pair's name: "model+theta"
# A one-sided 95% test, paired over the items. One validation window per series could not tell
# the network from its mean with naive on M4 weekly: chosen by a hair (OWA 0.948 against
# 0.962), the mean then did worse than the network on the held-out weeks by 0.04-0.06.
CLEARLY = 1.645


@dataclass(frozen=True)
class Choice:
    """The method chosen, the baseline best on its own (`partner`; None without baselines),
    every candidate's scores, and the lowest scoring (`lowest`: not `chosen` where it was not
    clearly better than the network)."""

    chosen: str
    partner: str | None
    scores: dict[str, dict[str, float]]
    lowest: str


def uses_network(method: str) -> bool:
    """Whether the forecast of the candidate `method` is made from the network's."""
    return method in ("model", "combination") or method.startswith(PAIR)


def combination(model: np.ndarray, baselines: dict[str, np.ndarray]) -> np.ndarray:
    return np.mean([model, *(values for name, values in baselines.items() if name in STATISTICAL)], axis=0)


def combines(names) -> bool:
    """Whether the baselines `names` hold a statistical one, so that `combination` is a candidate."""
    return any(name in STATISTICAL for name in names)


def method_forecast(method: str, model: np.ndarray, baselines: dict[str, np.ndarray]) -> np.ndarray:
    """The forecast of the candidate `method`, from the network's and the baselines' forecasts."""
    if method == "model":
        return model
    if method == "combination":
        return combination(model, baselines)
    if method.startswith(PAIR):
        return (model + baselines[method.removeprefix(PAIR)]) / 2
    return baselines[method]


def clearly_better(differences: np.ndarray) -> bool:
    """Whether per-item differences (a method's metric minus the network's) lie below zero by
    CLEARLY standard errors of their mean. On an item whose scale is 0 (its history repeats its
    season exactly) MASE is infinite for any error: −∞ is a method exact where the network is
    not, +∞ the reverse (one table chooses by MAE there, `forecast_choice`; a long table's OWA
    keeps MASE). Where no item says more (the rest are 0), those decide: some −∞ and no +∞.
    Among items that do, an infinite one weighs as much as the largest finite one, not more, so
    that one flat series does not choose for a table. Items where both are infinite (nan) are left out.
    With fewer than two items, untestable: whether their sum is below zero."""
    differences = differences[~np.isnan(differences)]
    infinite, finite = differences[np.isinf(differences)], differences[np.isfinite(differences)]
    if infinite.size and not finite.any():
        return bool((infinite < 0).any() and not (infinite > 0).any())
    if infinite.size:
        bound = np.abs(finite).max()
        differences = np.clip(differences, -bound, bound)
    if len(differences) < 2:
        return bool(differences.sum() < 0)
    return bool(differences.mean() + CLEARLY * differences.std(ddof=1) / math.sqrt(len(differences)) < 0)


def nan_last(value: float) -> tuple[bool, float]:
    """A sort key that puts a score of nan (an OWA of ∞ / ∞) after every number, where `min`
    would take whichever came first."""
    return math.isnan(value), value


def choose(model: np.ndarray, baselines: dict[str, np.ndarray],
           score: Callable[[dict[str, np.ndarray]], dict[str, dict[str, float]]], metric: str,
           terms: Callable[[np.ndarray], np.ndarray]) -> Choice:
    """Score every candidate (`score` maps method -> forecast to method -> metrics) and choose
    the lowest `metric` where it is clearly better than the network by its per-item `terms`
    (a forecast -> the metric's value per item, whose mean is the metric). Without baselines the
    network is the only candidate."""
    methods = {"model": model, **({"combination": combination(model, baselines)} if combines(baselines) else {}),
               **baselines}
    alone = score(methods)
    if not baselines:
        return Choice("model", None, alone, "model")
    partner = min(baselines, key=lambda name: nan_last(alone[name][metric]))
    methods[PAIR + partner] = method_forecast(PAIR + partner, model, baselines)
    scored = score(methods)
    lowest = min(scored, key=lambda method: nan_last(scored[method][metric]))
    clear = lowest == "model" or clearly_better(terms(methods[lowest]) - terms(model))
    return Choice(lowest if clear else "model", partner, scored, lowest)
