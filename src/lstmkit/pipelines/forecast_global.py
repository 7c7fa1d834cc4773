"""Many series, one network (`Forecaster(id=...)` on a long table), never silently worse than
its baselines.

    fit       long table -> each series normalised on its own (SeriesScaling) -> the windows of
              every series (PanelWindows; a series shorter than the lookback is padded, with a
              mask) -> one network trained on all of them by the training core, early stopping
              on each series' last-horizon window (its validation window); with several
              normalisations, one network per normalisation, trained in the order given, each
              in an equal share of the time budget left (one stopped early leaves the rest of
              its share to those after it), whose forecasts are averaged (a
              ScalingEnsemble) -> on those same validation windows the network, every
              baseline (fitted on the values before them) and the combinations are scored
              by M4's OWA (by sMAPE where OWA is not finite, `choice_metric`): the lowest,
              where it is clearly better than the network
              (lstmkit.series.choice), is the forecast `predict` uses (`PanelLayout.chosen`)
    backtest  fit on each series but its last `holdout` values, then score every method on
              them: M4's sMAPE, MASE and OWA (relative to Naive2), the mean over the series
    predict   the `horizon` steps after each series' end: id, time, y, y_lower_90, y_upper_90

The candidates, and the combinations among them, are lstmkit.series.choice's; the baselines
are `config.baselines` and Naive2. The choice never sees the rows a backtest holds out: they
are cut before `fit` runs.
"""

from __future__ import annotations

import numbers
import os
import sys
import time
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from lstmkit.caller import warn_at_caller
from lstmkit.extras import extra_imports

with extra_imports("forecast", __name__):
    import pandas as pd

from lstmkit.models.forecaster import ScalingEnsemble, interval_half_width
from lstmkit.models.modes import evaluating
from lstmkit.pipelines.forecast import (Forecaster, backtest_folder, budget_left, float_tensor, forecast_columns,
                                        history_length, warn_base_cycles_without_effect)
from lstmkit.series import Panel, PanelWindows, m4_scores, observed, owa, panel_baselines, read_panel, season_length
from lstmkit.series.choice import PAIR, choose, combination, combines, method_forecast
from lstmkit.series.intervals import centred_on, interval_scale, saved_interval_scales
from lstmkit.series.metrics import series_scores
from lstmkit.series.frame import STEP
from lstmkit.series.baselines import STATISTICAL, baseline_jobs
from lstmkit.series.scaling import SeriesScaling
from lstmkit.training.progress import seconds_text


M4_METRICS = ("sMAPE", "MASE", "OWA")


@dataclass(frozen=True)
class PanelLayout:
    """What a global forecaster learned about its data: the grid, m, the lookback, and the
    forecast `predict` uses (`chosen`), with the validation scores it was chosen on (method ->
    sMAPE, MASE, OWA; empty without early stopping, when the network is used), and the
    baseline best on them (`partner`), whose mean with the network is the method
    "model+<partner>", and the factor the network's interval half-widths are multiplied by,
    calibrated on the same windows around the chosen forecast (`interval_scale`,
    lstmkit.series.intervals; 1 without validation windows)."""

    frequency: str
    time_kind: str
    season: int
    lookback: int
    chosen: str
    validation: dict
    partner: str | None = None
    interval_scale: float = 1.0

    def to_dict(self) -> dict:
        return {field.name: getattr(self, field.name) for field in fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> PanelLayout:
        layout = cls(**{field.name: data[field.name] for field in fields(cls) if field.name in data})
        return replace(layout, interval_scale=saved_interval_scales(layout.interval_scale, 1)[0])


@dataclass
class PanelForecasts:
    """Forecasts of many series from their ends, in the data's units, each (series, horizon):
    every method's (model, combination, baselines), the network's interval (calibrated), and how
    many series' network forecasts were not finite (the naive forecast stands in for those)."""

    methods: dict[str, np.ndarray]
    lower: np.ndarray
    upper: np.ndarray
    not_finite: int

    def interval(self, method: str) -> tuple[np.ndarray, np.ndarray]:
        """The interval moved to centre on `method`'s forecast: its lower and upper bounds."""
        return centred_on(self.methods[method], self.methods["model"], self.lower, self.upper)


@dataclass
class PanelBacktest:
    """The outcome of a long table's backtest: scores (method -> sMAPE, MASE, OWA, the mean
    over `series` scored series), forecasts (one row per series and held-out step: id, time,
    actual, every method's forecast, the chosen one, and the interval `predict` would have given
    around it: chosen, chosen_lower, chosen_upper), the share of held-out values inside that
    interval (`coverage`), the fitted model (its layout holds the validation choice), and the
    series too short to score (no more values than holdout)."""

    scores: pd.DataFrame
    forecasts: pd.DataFrame
    holdout: int
    model: Forecaster
    series: int
    unscored: list
    coverage: float


def season_and_lookback(config, panel: Panel) -> tuple[int, int]:
    """m (the given one, or the frequency's: 1 for integer steps) and the history each window
    holds (forecast.history_length)."""
    season = config.season_of(1 if panel.frequency == STEP else season_length(panel.frequency), panel.frequency)
    return season, history_length(config, season)


def read(forecaster: Forecaster, data, frequency: str | None = None, fitted_kind: str | None = None) -> Panel:
    """`data` as a Panel, on the grid of `frequency` (a fitted forecaster's) or the one inferred,
    its dates read in the order of `fitted_kind` where they read either way."""
    config = forecaster.config
    return data if isinstance(data, Panel) else read_panel(data, config.id, config.time, config.target[0], frequency,
                                                           fitted_kind)


def fit(forecaster: Forecaster, data, held_out: int = 0) -> Forecaster:
    """Train one network on every series' windows, then choose the forecast on the validation
    windows (see the module docstring); `held_out`: the values a backtest took from the end of
    each series before this fit (for the message of series too short)."""
    panel, config = read(forecaster, data), forecaster.config
    horizon = config.horizon
    season, lookback = season_and_lookback(config, panel)
    warn_base_cycles_without_effect(config, season)
    longest = max(map(len, panel.values))
    for name, period in (("--season", season), ("--extra-seasons", max(config.extra_seasons, default=0))):
        if period > longest:  # silently, the seasonal baselines fell back to naive and MASE to m = 1
            warn_at_caller(f"a period of {period} steps ({name}) is longer than every series (the longest has "
                           f"{longest} values): no series holds one cycle, so neither the network nor the "
                           "baselines (fitted without a season) learn anything seasonal from it, and MASE scales by "
                           "m = 1")
    # Series k validates from origin n_k - horizon (when two values come before it, the fewest
    # MASE scales on) and trains
    # on the windows that end by then; its scaling sees only the values before that origin.
    validating = [config.early_stopping and len(values) > horizon + 1 for values in panel.values]
    ends = [len(values) - horizon if valid else len(values) for values, valid in zip(panel.values, validating)]
    short = sum(valid and end <= season for end, valid in zip(ends, validating))
    if season <= longest and short:  # their baselines were the naive forecast, without a word
        warn_at_caller(f"{short:,} of the {len(panel):,} series hold no more than one cycle of m = {season} values "
                       "before their validation origin: their MASE scales by m = 1 there, and where they hold fewer, "
                       "their baselines are fitted without a season (seasonal naive is naive), as statsforecast fits "
                       "them")
    unlogged = [panel.ids[k] for k, values in enumerate(panel.values) if (values <= 0).any()]
    logging = [name for name in config.normalisation if name != "standard"]
    if unlogged and logging:  # the report says log for the whole table
        warn_at_caller(f"{len(unlogged):,} of the {len(panel):,} series hold a value <= 0, which "
                       f"{' and '.join(logging)} normalisation cannot log: each is scaled as by 'standard' instead: "
                       + first_ids(unlogged))
    training = [(k, origin) for k, end in enumerate(ends)
                for origin in range(max(1, min(lookback, end - horizon)), end - horizon + 1)]
    validation = [(k, end) for k, end in enumerate(ends) if validating[k]]
    if not training:
        raise ValueError(f"no series of the {len(panel)} has a training window: one needs horizon + 1 = {horizon + 1} "
                         f"values{f', and {horizon} more for validation' if config.early_stopping else ''}; "
                         f"the longest has {max(map(len, panel.values))}"
                         f"{f' once its last {held_out} are held out for the backtest (--holdout)' if held_out else ''}")
    # Each series as its validation origin knows it (a gap up to the origin holds the value before
    # it): what the validation windows read, and the scaling fits on; training windows read the table.
    known = [np.concatenate([panel.history(k, end), values[end:]]) for k, (values, end) in
             enumerate(zip(panel.values, ends))]
    known = known if any(not np.array_equal(held, values) for held, values in zip(known, panel.values)) else None
    trained, seconds = [], 0.0
    for index, normalisation in enumerate(config.normalisation):
        _, windows = scaled_windows(panel.values, ends, normalisation, season, lookback, horizon, known)
        # One target; its value and the padding mask at each history step; no known-future features.
        seconds += forecaster.train_network(
            windows, training, validation, 1, 2, 0, season, lookback, epoch_windows=config.epoch_windows,
            time_budget=budget_left(config.time_budget, seconds, len(config.normalisation) - index), name=normalisation)
        trained.append((forecaster.network, forecaster.curve, forecaster.best_epoch))
    if len(trained) > 1:
        networks, curves, best_epochs = zip(*trained)
        forecaster.network = ScalingEnsemble(replace(networks[0].config, scalings=len(networks)), list(networks))
        forecaster.curve = [{"normalisation": name, **row} for name, curve in zip(config.normalisation, curves)
                            for row in curve]
        forecaster.best_epoch = list(best_epochs)
    forecaster.layout = PanelLayout(panel.frequency, panel.time_kind, season, lookback, "model", {})
    if validation:
        keys = [k for k, _ in validation]
        histories = [panel.history(k, ends[k]) for k in keys]
        # As in the backtest, a value that was missing, and interpolated, is neither scored nor
        # calibrated on (each series' last value is its own), nor in the histories MASE scales on.
        given = np.stack([~panel.filled[k][ends[k]:] for k in keys])  # (series, horizon)
        scale_histories = [observed(panel.values[k][:ends[k]], panel.filled[k][:ends[k]]) for k in keys]
        actuals = [panel.values[k][ends[k]:][kept] for k, kept in zip(keys, given)]
        validated = forecast(forecaster, histories)
        methods = validated.methods
        baselines = {name: methods[name] for name in config.baselines}  # Naive2 is OWA's reference, not a candidate

        def given_values(forecasts: np.ndarray) -> list[np.ndarray]:
            return [row[kept] for row, kept in zip(forecasts, given)]

        def score(candidates: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
            scored = score_methods({name: given_values(values) for name, values in
                                    {**candidates, "naive2": methods["naive2"]}.items()}, actuals, scale_histories,
                                  season)
            return {name: scored[name] for name in candidates}

        metric = choice_metric(score({"model": methods["model"], **baselines}))
        choice = choose(methods["model"], baselines, score, metric, lambda values: series_terms(
            metric, given_values(values), given_values(methods["naive2"]), actuals, scale_histories, season))
        model = methods["model"]
        actual = np.where(given, np.stack([panel.values[k][ends[k]:] for k in keys]), np.nan)
        scale = interval_scale(actual, method_forecast(choice.chosen, model, methods),
                               model - validated.lower, validated.upper - model, config.interval)
        forecaster.layout = PanelLayout(panel.frequency, panel.time_kind, season, lookback, choice.chosen,
                                        choice.scores, choice.partner, scale)
    return forecaster


def forecast(forecaster: Forecaster, histories: list[np.ndarray], method: str | None = None) -> PanelForecasts:
    """Every method's forecast of the `horizon` steps after the end of each history; given
    `method`, the network's and that method's alone, with only the baselines it needs (`predict`:
    AutoETS on hundreds of series takes minutes that a forecast not using it should not)."""
    network, layout = forecaster.fitted()
    config = forecaster.config
    members = network.members if isinstance(network, ScalingEnsemble) else [network]
    views = [network_forecast(member, normalisation, histories, layout, config)
             for member, normalisation in zip(members, config.normalisation)]
    with np.errstate(over="ignore", invalid="ignore"):
        # A ScalingEnsemble's forecast and bounds: the means of its members' (a single network's own).
        model, lower, upper = (np.mean(parts, axis=0) for parts in zip(*views))
        # Calibrated in the data's units, where interval_scale was measured (a log scaling is not linear).
        lower, upper = model - layout.interval_scale * (model - lower), model + layout.interval_scale * (upper - model)
    names = tuple(dict.fromkeys([*baselines_of(method, config.baselines), "naive"]))  # naive: the stand-in below
    baselines = announced_baselines(histories, config.horizon, layout.season, names)
    not_finite = ~(np.isfinite(model) & np.isfinite(lower) & np.isfinite(upper)).all(axis=1)
    if not_finite.any():
        warn_at_caller(f"the model's forecast is not finite (NaN or inf) for {int(not_finite.sum())} of "
                       f"{len(histories)} series; the naive forecast stands in for it, with no prediction interval")
        model[not_finite] = lower[not_finite] = upper[not_finite] = baselines["naive"][not_finite]
    if method is not None:
        methods = {"model": model, method: method_forecast(method, model, baselines)}
        return PanelForecasts(methods, lower, upper, int(not_finite.sum()))
    chosen_among = {name: baselines[name] for name in config.baselines}
    methods = {"model": model, **({"combination": combination(model, chosen_among)} if combines(chosen_among) else {}),
               **chosen_among, "naive2": baselines["naive2"]}
    if layout.partner is not None:
        methods[PAIR + layout.partner] = method_forecast(PAIR + layout.partner, model, methods)
    return PanelForecasts(methods, lower, upper, int(not_finite.sum()))


def announced_baselines(histories: list[np.ndarray], horizon: int, season: int, names: tuple[str, ...]
                        ) -> dict[str, np.ndarray]:
    """`panel_baselines`, with a line on stderr (rank 0's) before and after the statistical
    ones: statsforecast fits them for seconds a series, minutes on hundreds of series, in
    which nothing else is printed (a fit of M4 hourly said nothing for 269 s after training)."""
    fitted = [STATISTICAL[name] for name in names if name in STATISTICAL]
    said = bool(fitted) and os.environ.get("RANK", "0") == "0"  # torchrun's other ranks fit them too, silently
    if said:
        jobs = baseline_jobs()
        print(f"forecast: fitting {', '.join(fitted)} to {len(histories):,} series (statsforecast, "
              f"{jobs} process{'es' * (jobs != 1)})", file=sys.stderr, flush=True)
    started = time.perf_counter()
    baselines = panel_baselines(histories, horizon, season, names)
    if said:
        print(f"forecast: fitted {', '.join(fitted)} in {seconds_text(time.perf_counter() - started)} s",
              file=sys.stderr, flush=True)
    return baselines


def first_ids(ids: list) -> str:
    """The first five of the series `ids` a message names, then "..." for any more."""
    return ", ".join(map(str, ids[:5])) + (" ..." if len(ids) > 5 else "")


# The baselines no season changes.
UNSEASONAL = ("naive", "drift")


def baselines_of(method: str | None, configured: tuple[str, ...]) -> tuple[str, ...]:
    """The baselines the forecast of `method` is made from (None: every method's, Naive2 too)."""
    if method is None:
        return (*configured, "naive2")
    if method == "model":
        return ()
    if method == "combination":
        return tuple(name for name in configured if name in STATISTICAL)
    return (method.removeprefix(PAIR),)


def scaled_windows(series: list[np.ndarray], ends: list[int], normalisation: str, season: int, lookback: int,
                   horizon: int, known: list[np.ndarray] | None = None) -> tuple[list[SeriesScaling], PanelWindows]:
    """Each series normalised by `normalisation`, fitted on its values before `ends` as `known`
    there (PanelWindows; `series` where not given), and the windows of all of them."""
    known = series if known is None else known
    scalings = [SeriesScaling.fit(values[:end], normalisation, season, positive=bool((values > 0).all()))
                for values, end in zip(known, ends)]
    training, validation = ([float_tensor(scaling.transform(values)) for scaling, values in zip(scalings, each)]
                            for each in (series, known))
    return scalings, PanelWindows(training, lookback, horizon, None if known is series else validation)


def network_forecast(network, normalisation: str, histories: list[np.ndarray], layout: PanelLayout,
                     config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One network's forecast of the `horizon` steps after each history, read under
    `normalisation`, and its interval's bounds (not calibrated), in the data's units, each
    (series, horizon)."""
    scalings, windows = scaled_windows(histories, list(map(len, histories)), normalisation, layout.season,
                                       layout.lookback, config.horizon)
    parameter = next(network.parameters())  # the windows in its dtype: a network moved to bfloat16 runs
    with torch.no_grad(), evaluating(network):
        batch = windows.batch([(k, len(values)) for k, values in enumerate(histories)])
        mean, scale = network.forecast(batch.history.to(parameter.device, parameter.dtype),
                                       batch.future.to(parameter.device, parameter.dtype))
    mean, scale = mean[..., 0].double().cpu().numpy(), scale[..., 0].double().cpu().numpy()
    spread = interval_half_width(config.distribution, scale, config.interval)
    with np.errstate(over="ignore", invalid="ignore"):
        return tuple(np.stack([scaling.inverse(values[k], len(histories[k])) for k, scaling in enumerate(scalings)])
                     for values in (mean, mean - spread, mean + spread))


def score_methods(methods: dict[str, np.ndarray | list[np.ndarray]], actuals: list[np.ndarray],
                  histories: list[np.ndarray], season: int) -> dict[str, dict[str, float]]:
    """M4's sMAPE, MASE and OWA of every method (its forecast of each series), each forecast cut
    to its actual values."""
    scored = {name: m4_scores(actuals, [row[:len(actual)] for row, actual in zip(values, actuals)], histories, season)
              for name, values in methods.items()}
    return {name: {**values, "OWA": owa(values, scored["naive2"])} for name, values in scored.items()}


def choice_metric(scores: dict[str, dict[str, float]]) -> str:
    """What a long table's forecast is chosen by, given its candidates' `scores`: OWA, or sMAPE
    where some candidate's OWA is not finite. A series whose history repeats each season exactly
    (flat, or zeros before one sale) has a MASE scale of 0: every inexact method's MASE is
    inf, and so every OWA was inf or nan, and the network was kept by default."""
    return "OWA" if all(np.isfinite(values["OWA"]) for values in scores.values()) else "sMAPE"


def series_terms(metric: str, values: np.ndarray | list[np.ndarray], naive2: np.ndarray | list[np.ndarray],
                 actuals: list[np.ndarray], histories: list[np.ndarray], season: int) -> np.ndarray:
    """Each series' share of a forecast's `metric`, whose mean over the series is the metric:
    its sMAPE, or for OWA (sMAPE_k / sMAPE_Naive2 + MASE_k / MASE_Naive2) / 2 with Naive2's
    means over the series."""
    def each(forecast: np.ndarray) -> dict[str, np.ndarray]:
        return series_scores(actuals, [row[:len(actual)] for row, actual in zip(forecast, actuals)], histories, season)

    rows = each(values)
    if metric == "sMAPE":
        return rows["sMAPE"]
    reference = each(naive2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 0.5 * (rows["sMAPE"] / reference["sMAPE"].mean() + rows["MASE"] / reference["MASE"].mean())


def backtest(forecaster: Forecaster, data, holdout: int | None = None) -> PanelBacktest:
    """Fit a copy on each series but its last `holdout` values (default: horizon, at most
    horizon) and score every method on them; a series with fewer than holdout + 2 values is
    fitted on what is left of it and not scored (MASE needs two values before the holdout)."""
    from lstmkit.pipelines.forecast import Forecaster

    panel, config = read(forecaster, data), forecaster.config
    holdout = config.horizon if holdout is None else holdout
    if isinstance(holdout, bool) or not isinstance(holdout, numbers.Integral) or not 1 <= holdout <= config.horizon:
        raise ValueError(f"the holdout of a long table is forecast from one origin: 1 .. horizon = {config.horizon} "
                         f"values, got {holdout!r}")
    holdout = int(holdout)  # a NumPy integer too
    scored = [k for k, values in enumerate(panel.values) if len(values) > holdout + 1]
    if not scored:
        raise ValueError(f"no series has holdout + 2 = {holdout + 2} values or more to backtest on; the longest has "
                         f"{max(map(len, panel.values))}")
    training = panel.head(holdout)
    model = Forecaster(**{field.name: getattr(config, field.name) for field in fields(config)})
    with backtest_folder(forecaster.run_folder, holdout, config.horizon) as model.run_folder:
        fit(model, training, holdout)
    histories = [training.values[k] for k in scored]
    # A value that was missing, and interpolated, is neither scored nor written as an actual (a
    # series' last value is its own, so each has one to score).
    held_out = [panel.values[k][-holdout:] for k in scored]
    given = [~panel.filled[k][-holdout:] for k in scored]
    actuals = [values[kept] for values, kept in zip(held_out, given)]
    forecasts = forecast(model, histories)
    lower, upper = (bound[:, :holdout] for bound in forecasts.interval(model.layout.chosen))
    given_rows = np.concatenate(given)
    actual = np.where(given_rows, np.concatenate(held_out), np.nan)
    inside = (actual >= lower.ravel()) & (actual <= upper.ravel())
    coverage = float(np.mean(inside[given_rows]))
    held = {name: [row[:holdout][kept] for row, kept in zip(values, given)] for name, values in forecasts.methods.items()}
    scale_histories = [observed(training.values[k], training.filled[k]) for k in scored]
    scores = pd.DataFrame(score_methods(held, actuals, scale_histories, model.layout.season)).T[list(M4_METRICS)]
    records = {panel.id_name: np.repeat([panel.ids[k] for k in scored], holdout),
               panel.time_name: [time for k in scored for time in panel.times(k, len(panel.values[k]) - holdout, holdout)],
               "actual": actual,
               **{name: values[:, :holdout].ravel() for name, values in forecasts.methods.items()},
               "chosen": forecasts.methods[model.layout.chosen][:, :holdout].ravel(),
               "chosen_lower": lower.ravel(), "chosen_upper": upper.ravel()}
    return PanelBacktest(scores, pd.DataFrame(records), holdout, model, len(scored),
                         [panel.ids[k] for k in range(len(panel)) if k not in set(scored)], coverage)


def predict(forecaster: Forecaster, data) -> pd.DataFrame:
    """The `horizon` steps after each series' end, by the chosen method, as a long table: id
    and time (by their columns' names), then, as one table's `predict` names them, the target
    and its interval's bounds (`y`, `y_lower_90`, `y_upper_90`). The interval is the network's,
    calibrated, and moved to centre on the chosen forecast (where that is not the network's)."""
    _, layout = forecaster.fitted()
    panel = read(forecaster, data, None if layout.time_kind == STEP else layout.frequency, layout.time_kind)
    if panel.frequency != layout.frequency:
        raise ValueError(f"the data's frequency is {panel.frequency}, the forecaster was fitted on {layout.frequency}")
    constant = [panel.ids[k] for k, values in enumerate(panel.values) if (values == values[0]).all()]
    if constant:  # one table's fit says so of its series; a long table's are said at predict, each by its id
        holds = "holds" if len(constant) == 1 else "hold"
        warn_at_caller(f"{len(constant)} series {holds} one value in all the rows given (a single row, or a "
                       "constant): each is forecast as that value, with an interval of zero width: "
                       + first_ids(constant))
    seasonal = [name for name in baselines_of(layout.chosen, forecaster.config.baselines) if name not in UNSEASONAL]
    short = [panel.ids[k] for k, values in enumerate(panel.values)
             if len(values) < layout.season and panel.ids[k] not in constant]
    if seasonal and short:  # the fit says so of the series it validates on; new ids are said here
        holds = "holds" if len(short) == 1 else "hold"
        naive = " (seasonal naive is naive)" if "seasonal_naive" in seasonal else ""
        warn_at_caller(f"{len(short)} series {holds} fewer than m = {layout.season} values: the forecast's baselines "
                       f"({', '.join(seasonal)}) are fitted to each without a season{naive}, as statsforecast fits "
                       "them: " + first_ids(short))
    forecasts = forecast(forecaster, list(panel.values), layout.chosen)
    lower, upper = forecasts.interval(layout.chosen)
    horizon = forecaster.config.horizon
    table = pd.DataFrame({
        panel.id_name: np.repeat(panel.ids, horizon),
        panel.time_name: [time for k, values in enumerate(panel.values) for time in panel.times(k, len(values), horizon)],
        **forecast_columns(forecaster.config, forecaster.config.target[0], forecasts.methods[layout.chosen].ravel(),
                           lower.ravel(), upper.ravel())})
    table.attrs["forecast"] = layout.chosen
    table.attrs["baselines"] = list(forecaster.config.baselines)  # what that was chosen among
    return table
