"""Time-series forecasting: fit a recurrent forecaster, backtest it against baselines, predict.

    fit       table -> checked series -> scaling fitted on it -> lookback/horizon windows ->
              likelihood training (normal or Laplace) with early stopping on the latest windows,
              a network per `base` -> on those windows, the forecast `predict` uses
              (lstmkit.pipelines.forecast_choice)
    backtest  fit on all but the last `holdout` rows, then forecast from origins stepping
              through them, `horizon` apart, so every held-out row is forecast once; the
              baselines forecast from the same origins; MAE, RMSE, sMAPE, MASE of each
    predict   the `horizon` rows after the table's end, with a prediction interval

No forecast is NaN: where the network's is not finite (a diverged or corrupted model, data
far outside the scale it was fitted on), the baseline that did best at the end of the
fitting rows (`SeriesLayout.fallback`) stands in for it, with a warning, and the stand-ins
are recorded (`Forecasts.fallbacks`, `Backtest.fallbacks`, the prediction's attrs).

The three pieces stay apart, as in darts: `lstmkit.series.Windows` cuts the windows,
`ForecastNetwork` maps one window to a forecast, and `Forecaster.forecast_origins` rolls
the network over a series.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lstmkit.caller import warn_at_caller
from lstmkit.extras import extra_imports

with extra_imports("forecast", __name__):
    import pandas as pd

from lstmkit.checkpoint import (
    CheckpointError,
    CheckpointKind,
    checkpoint_folder,
    existing,
    load_model_checkpoint,
    read_json,
    save_checkpoint,
)
from lstmkit.files import (atomic_path, check_not_read, check_output_file, fingerprint, folders_to_make,
                           remove_empty_folders, write_json)
from lstmkit.models.forecaster import (
    ForecastEnsemble,
    ForecastNetwork,
    ForecastNetworkConfig,
    build_forecast_network,
    interval_half_width,
    negative_log_likelihood,
)
from lstmkit.models.modes import evaluating
from lstmkit.pipelines.configs import BASES, WITHOUT_VALIDATION, ForecasterConfig, baseline_names
from lstmkit.series import (BASELINES, METRICS, Panel, PanelWindows, Scaler, SeriesFrame, Windows, baseline_forecast, best_baseline,
                            calendar_features, future_times, observed, read_series, scores, season_length)
from lstmkit.series.choice import combination, combines, method_forecast
from lstmkit.series.frame import frequency_name
from lstmkit.series.intervals import centred_on, percent, saved_interval_scales
from lstmkit.training import Job, Processes, Trainer, current_names, resolve_device
from lstmkit.training.device import runnable_engines
from lstmkit.training.config import ADDED_SETTINGS
from lstmkit.training.isolation import isolated_from_caller

# How far the values predict starts from may lie from the fitted data's mean, in its standard
# deviations, before predict warns: a trending series ends 2 or 3 away; 10 is other data.
FAR_FROM_FITTED = 10.0
# Beside a fit's training runs (out/training): the rows its backtest holds out.
HOLDOUT_FILE = "holdout.json"


@dataclass(frozen=True)
class SeriesLayout:
    """What a fitted forecaster learned about its data: the grid, the seasonal period, the
    lookback, the calendar features and the scalings of the targets, the observed-past and
    the known-future covariates; per target, the baseline that stands in for a forecast that
    is not finite, and the forecast `predict` uses (`chosen`: "model", a baseline or a
    combination, see lstmkit.series.choice), with the validation scores it was chosen on
    (target -> method -> MAE, RMSE, sMAPE, MASE; empty when there were no validation windows),
    and the factor its interval's half-widths are multiplied by, calibrated on the same
    windows (`interval_scale`, lstmkit.series.intervals; 1 without validation windows)."""

    frequency: str
    time_kind: str
    season: int
    lookback: int
    calendar_names: tuple[str, ...]
    target_scaler: Scaler
    covariate_scaler: Scaler
    future_scaler: Scaler
    fallback: tuple[str, ...]
    chosen: tuple[str, ...]
    validation: dict
    interval_scale: tuple[float, ...]

    def to_dict(self) -> dict:
        return {**{field.name: getattr(self, field.name) for field in fields(self)},
                "calendar_names": list(self.calendar_names), "fallback": list(self.fallback),
                "chosen": list(self.chosen), "interval_scale": list(self.interval_scale),
                "target_scaler": self.target_scaler.to_dict(),
                "covariate_scaler": self.covariate_scaler.to_dict(), "future_scaler": self.future_scaler.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> SeriesLayout:
        """A saved layout; one saved before `fallback` existed falls back on naive, one saved
        before `chosen` existed forecasts by the network, and one saved before `interval_scale`
        existed gives the network's interval unscaled, as they did."""
        target_scaler = Scaler.from_dict(data["target_scaler"])
        targets = len(target_scaler.mean)
        return cls(data["frequency"], data["time_kind"], data["season"], data["lookback"],
                   tuple(data["calendar_names"]), target_scaler, Scaler.from_dict(data["covariate_scaler"]),
                   Scaler.from_dict(data["future_scaler"]), tuple(data.get("fallback", ["naive"] * targets)),
                   tuple(data.get("chosen", ["model"] * targets)), data.get("validation", {}),
                   saved_interval_scales(data.get("interval_scale", [1.0] * targets), targets))


@dataclass
class Forecasts:
    """Forecasts from several origins, in the data's units: mean, lower and upper bound, each
    (origins, horizon, targets); fallbacks: where a baseline stood in for the network, one
    {"origin": row index, "target": name, "baseline": name} each."""

    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    fallbacks: list[dict] = field(default_factory=list)


@dataclass
class Backtest:
    """The outcome of `Forecaster.backtest`.

    scores: one row per method (model, baselines, "combination" where a statistical baseline is
    among config.baselines, and "chosen": the forecast `predict` would have made, by the method
    chosen on validation windows), columns MAE, RMSE, sMAPE, MASE (the mean over targets);
    per_target: the same table for each target;
    forecasts: one row per held-out time and target with the actual value, every method's
    forecast, and the interval `predict` would have given (the network's, calibrated, around
    the chosen forecast: chosen_lower, chosen_upper); coverage: the share of held-out values
    inside that interval;
    holdout: the rows held out; model: the forecaster fitted on the rows before them;
    fallbacks: where a baseline stood in for a model forecast that was not finite, one
    {"origin": time, "target": name, "baseline": name} each.
    """

    scores: pd.DataFrame
    per_target: dict[str, pd.DataFrame]
    forecasts: pd.DataFrame
    coverage: float
    holdout: int
    model: Forecaster
    fallbacks: list[dict]


class Forecaster:
    """A recurrent forecaster with prediction intervals: `fit`, `predict`, `backtest`.

        forecaster = Forecaster(time="date", target="co2", horizon=52)
        result = forecaster.backtest("co2_weekly.csv", holdout=104)
        print(result.scores)       # model and baselines: MAE, RMSE, sMAPE, MASE
        print(forecaster.fit("co2_weekly.csv").predict("co2_weekly.csv"))   # the next 52 weeks

    With `id` (the series column of a long table) one network serves every series of the
    table; fit, backtest and predict are then lstmkit.pipelines.forecast_global's.

    Arguments are the fields of `ForecasterConfig`.
    """

    def __init__(self, time: str, target, horizon: int, **options) -> None:
        self.config = ForecasterConfig(time=time, target=target, horizon=horizon, **options)
        self.network: ForecastNetwork | ForecastEnsemble | None = None
        self.layout: SeriesLayout | None = None
        # A ScalingEnsemble's: each member's best epoch, and its curve's rows named by normalisation.
        self.best_epoch: float | list[float] | None = None
        self.curve: list[dict] = []
        self.runtime: dict = {}  # where it was fitted: device, precision, processes
        self.base_errors: dict[str, float] = {}  # each base trained and validated: its error (train_network)
        # Where each network's training run is written (checkpoints, metrics.csv) and, when it
        # is there, continued or reused (`forecast fit --resume`); None: in memory only.
        self.run_folder: Path | None = None

    def __repr__(self) -> str:
        """As the call that builds it: the columns, the horizon, and the id and settings given
        otherwise than by default (the defaults of its kind of table)."""
        config = self.config
        defaults = ForecasterConfig(time=config.time, target=config.target, horizon=config.horizon, id=config.id)
        given = [f"{field.name}={getattr(config, field.name)!r}" for field in fields(config)
                 if field.name not in ("time", "target", "horizon", "id")
                 and getattr(config, field.name) != getattr(defaults, field.name)]
        target = config.target[0] if len(config.target) == 1 else config.target
        table = [f"id={config.id!r}"] if config.id is not None else []
        parts = [f"time={config.time!r}", f"target={target!r}", f"horizon={config.horizon}", *given, *table]
        return f"Forecaster({', '.join(parts)})"

    @property
    def base(self) -> str:
        """What the fitted network corrects: "seasonal" (seasonal naive, of m or an extra season)
        or "last" (the last value)."""
        network = self.fitted()[0].config
        return "seasonal" if network.season > 1 or network.extra_seasons else "last"

    def save(self, directory: str | Path) -> Path:
        """Write the fitted forecaster as a checkpoint folder (JSON and safetensors)."""
        return save_forecaster(self, directory)

    @staticmethod
    def load(directory: str | Path, device: str | torch.device = "cpu") -> Forecaster:
        """A fitted forecaster from a checkpoint folder or a `forecast fit` folder, on `device`."""
        return load_forecaster(directory, device)

    def read(self, data, as_fitted: bool = False) -> SeriesFrame | Panel:
        """`data` (a CSV path or a DataFrame) read and checked as this forecaster's columns say:
        a SeriesFrame, or with `id` a Panel of series. `as_fitted` (predict's): its time column
        read as the data of the fit were where it could read otherwise (integers as steps,
        dates in the fit's day and month order, rows on the fit's grid however few, where they
        fill at least half of it: `frequency_of`);
        a fit or backtest reads its data afresh."""
        if self.config.id is not None:
            return forecast_global.read(self, data)
        fitted = self.layout if as_fitted else None
        return read_series(data, self.config.time, self.config.target, self.config.covariates,
                           self.config.future_covariates, *((fitted.time_kind, fitted.frequency) if fitted else ()))

    @isolated_from_caller
    def fit(self, data) -> Forecaster:
        """Train on every window of `data` (a CSV path, a DataFrame or a SeriesFrame; with `id`,
        a long table or a Panel: see lstmkit.pipelines.forecast_global). A fit that fails or is
        interrupted leaves the forecaster as it was: fitted as before, or not fitted."""
        before = dict(self.__dict__)
        try:
            return self.fit_data(data)
        except BaseException:  # a Ctrl-C in a notebook too: half of a new fit beside the old network forecast wrongly
            self.__dict__.clear()
            self.__dict__.update(before)
            raise

    def fit_data(self, data) -> Forecaster:
        """`fit`, which restores the forecaster should this fail or be interrupted."""
        if self.config.id is not None:
            return forecast_global.fit(self, data)
        frame = data if isinstance(data, SeriesFrame) else self.read(data)
        config = self.config
        season, lookback = self.season_and_lookback(frame)
        warn_base_cycles_without_effect(config, season)
        if not config.calendar and not calendar_features(frame.time[:1], frame.frequency)[1]:
            warn_at_caller(f"calendar=False (--no-calendar) does nothing here: data of frequency "
                           f"{frame.shown_frequency} has no calendar features to turn off (dates less than a year "
                           "apart have them)")
        needed = self.rows_needed(lookback)
        if len(frame) < needed:
            why, remedy = history_remedies(config, season, lookback, "a shorter lookback or horizon")
            first, last = frame.time_values(frame.time[[0, -1]])
            raise ValueError(
                f"the series {', '.join(frame.target_names)} has {len(frame)} rows ({first} .. {last}); fitting with "
                f"lookback {lookback} and horizon {config.horizon} needs at least {needed} (lookback + horizon = "
                f"{lookback + config.horizon} for one window, and windows kept for early stopping){why}: give "
                f"more rows, or {remedy}")
        self.layout = SeriesLayout(frame.frequency, frame.time_kind, season, lookback,
                                   self.calendar_of(frame.time[:1], frame.frequency)[1], Scaler.fit(frame.targets),
                                   Scaler.fit(frame.covariates), Scaler.fit(frame.future_covariates[:len(frame)]),
                                   tuple(best_baseline(frame.targets[:, index], config.horizon, season)
                                         for index in range(len(config.target))),
                                   ("model",) * len(config.target), {}, (1.0,) * len(config.target))
        constant = [name for name, std in zip(frame.target_names, self.layout.target_scaler.std) if std == 0]
        if constant:
            warn_at_caller(f"target column(s) {', '.join(constant)} hold one value in all {len(frame)} rows fitted on: "
                           "forecast as that value, with an interval of zero width")
        windows = self.windows(frame, len(frame))
        training, validation = self.split_origins(list(windows.origins()))
        self.train_network(windows, training, validation, len(config.target), windows.past.shape[1],
                           windows.known.shape[1], season, lookback)
        if validation:
            self.layout = replace(self.layout, **forecast_choice.choose_forecast(self, frame, validation))
        return self

    def train_network(self, windows: Windows | PanelWindows, training: list, validation: list, targets: int,
                      past_features: int, future_features: int, season: int, lookback: int,
                      epoch_windows: int | None = None, time_budget: float | None = None, name: str = "") -> float:
        """Build the network (an ensemble when config.ensemble > 1; `lookback`: the history
        each window holds, `history_length`) and train it on `training`
        windows by the training core, in `time_budget` seconds (config.time_budget when not
        given), keeping the epoch best on `validation`; with `base`
        "auto", one network per base, each given an equal share of the seconds left (a network
        that stops early leaves the rest of its share to the next), keeping the
        one whose forecast is closer on the validation windows (`ForecastJob.point_error`: the
        backtests score point forecasts, and a likelihood also weighs the interval's width).
        Records the network, its curve, best epoch and where it ran, and each base's
        validation error (`base_errors`). With a `run_folder`, each base's run is written to
        run_folder/name/base, and one found there is continued, or kept if it had finished.
        Returns the seconds trained (`budget_left` shares the rest of a budget among networks)."""
        seasonal = season if season <= lookback else 1
        encoder_steps = encoder_lookback(self.config, season)
        encoder_steps = encoder_steps if encoder_steps < lookback else None  # None: the whole history
        if seasonal == 1 and not self.config.extra_seasons:  # the seasonal-naive forecast is the last value
            bases = {"last": 1}
        elif self.config.base == "auto":
            bases = {"seasonal": seasonal, "last": 1} if validation else {"seasonal": seasonal}
        else:
            bases = {self.config.base: seasonal if self.config.base == "seasonal" else 1}
        self.check_bases_of_run(name, bases)
        time_budget = self.config.time_budget if time_budget is None else time_budget
        errors, trained, seconds = {}, {}, 0.0
        for index, (base, base_season) in enumerate(bases.items()):
            config = replace(self.config, time_budget=budget_left(time_budget, seconds, len(bases) - index))
            trainer = Trainer(config)
            torch.manual_seed(config.seed)
            network = build_forecast_network(ForecastNetworkConfig(
                config.cell, targets, past_features, future_features, config.horizon, config.hidden_size,
                config.num_layers, config.dropout, config.engine, ensemble=config.ensemble, season=base_season,
                extra_seasons=config.extra_seasons if base == "seasonal" else (), encoder_steps=encoder_steps,
                base_cycles=config.base_cycles,
            ))
            job = ForecastJob(network, windows, training, validation, config, trainer.processes, trainer.device,
                              epoch_windows=epoch_windows)
            folder = None if self.run_folder is None else self.run_folder / name / base
            run = None if folder is None else trainer.finished_run(job, folder)
            if run is None:
                resume = folder is not None and existing(folder / "last").exists()
                run = trainer.run(job, folder, resume=resume, keep_best=True)
            curve = [{"epoch": row["epoch"], "train_loss": row["train_loss"],
                      **({"val_loss": row["val_loss"]} if "val_loss" in row else {})} for row in run.history]
            errors[base] = job.point_error()
            trained[base] = network, curve, run
            seconds += run.seconds
        kept = min(trained, key=lambda base: (math.isnan(errors[base]), errors[base]))  # a NaN one loses
        self.base_errors = {base: error for base, error in errors.items() if not math.isnan(error)}
        self.network, self.curve, run = trained[kept]
        self.best_epoch = run.best["epoch"] if run.best is not None else self.curve[-1]["epoch"]
        self.runtime = run.runtime()
        return seconds

    def check_bases_of_run(self, name: str, bases: dict[str, int]) -> None:
        """Refuse to continue the runs in run_folder/name (`forecast fit --resume`) with other
        bases than they trained: each base's run has its own folder, so another `--base` trained
        anew beside them, unchecked."""
        folder = None if self.run_folder is None else existing(self.run_folder / name)
        if folder is None or not folder.is_dir():
            return
        others = sorted(entry.name for entry in folder.iterdir() if entry.name in BASES and entry.name not in bases)
        if others:
            raise ValueError(f"{folder} holds the training run of base {', '.join(others)}; --resume needs the same "
                             f"bases (--base: {', '.join(others)} in the run, {', '.join(bases)} now)")

    def validation_count(self, origins: int) -> int:
        """How many of `origins` consecutive origins validate: with early stopping the latest
        `validation_fraction` (one at least), else none."""
        config = self.config
        return max(1, round(config.validation_fraction * origins)) if config.early_stopping else 0

    def split_origins(self, origins: list[int]) -> tuple[list[int], list[int]]:
        """The training and the validation origins: with early stopping the latest
        `validation_fraction` validate, and training ends where their horizons begin."""
        validating = self.validation_count(len(origins))
        if not validating:
            return origins, []
        validation = origins[-validating:]
        return [origin for origin in origins if origin + self.config.horizon <= validation[0]], validation

    def rows_needed(self, lookback: int) -> int:
        """The fewest rows `fit` can train on: one window, and the validation windows. Found by
        bisection over counts (whether the split leaves a training origin only grows with the
        rows): a row at a time, a --horizon of 40,000 took a minute to be refused."""
        horizon = self.config.horizon

        def trains(rows: int) -> bool:  # `split_origins` of origins lookback .. rows - horizon, counted
            origins = rows - horizon - lookback + 1
            validating = self.validation_count(origins)
            return origins >= 1 and (not validating or origins - validating >= horizon)

        fewest, enough = lookback + horizon, 2 * (lookback + horizon)  # none below `fewest` trains
        while not trains(enough):
            fewest, enough = enough + 1, 2 * enough
        while fewest < enough:
            middle = (fewest + enough) // 2
            fewest, enough = (fewest, middle) if trains(middle) else (middle + 1, enough)
        return fewest

    def season_and_lookback(self, frame: SeriesFrame) -> tuple[int, int]:
        """m (the given one, or the frequency's) and the history each window holds (`history_length`)."""
        season = self.config.season_of(season_length(frame.frequency), frame.shown_frequency)
        return season, history_length(self.config, season)

    def calendar_of(self, times: pd.DatetimeIndex, frequency: str) -> tuple[np.ndarray, tuple[str, ...]]:
        if not self.config.calendar:
            return np.zeros((len(times), 0)), ()
        return calendar_features(times, frequency)

    def windows(self, frame: SeriesFrame, rows: int, pad: bool = False) -> Windows:
        """The frame's windows in scaled units, with known-future features for its first
        `rows` rows (which may reach past its observed rows)."""
        layout = self.layout
        return Windows(float_tensor(layout.target_scaler.transform(frame.targets)),
                       float_tensor(layout.covariate_scaler.transform(frame.covariates)),
                       float_tensor(self.known_features(frame, rows, pad)), layout.lookback, self.config.horizon,
                       torch.from_numpy(np.concatenate([frame.filled, frame.covariates_filled], axis=1)))

    def known_features(self, frame: SeriesFrame, rows: int, pad: bool = False) -> np.ndarray:
        """Calendar features and scaled known-future covariates of the first `rows` rows. Past
        the rows the table gives covariates for, `pad` repeats its last one (for backtest
        steps past the table's end, which are cut from the scores); else it is an error."""
        beyond = rows - len(frame)
        times = frame.time.append(future_times(frame.time[-1], frame.frequency, beyond)) if beyond > 0 else frame.time
        calendar = self.calendar_of(times[:rows], frame.frequency)[0]
        if not frame.future_names:
            return calendar
        future = frame.future_covariates[:rows]
        if len(future) < rows:
            if not pad:
                raise ValueError(
                    f"forecasting {beyond} row(s) past the last target value needs the known-future covariates "
                    f"({', '.join(frame.future_names)}) there (the network reads them over the whole fitted horizon, "
                    f"whatever predict's horizon); the table has them for {frame.ahead} row(s)")
            future = np.concatenate([future, np.repeat(future[-1:], rows - len(future), axis=0)])
        return np.concatenate([calendar, self.layout.future_scaler.transform(future)], axis=1)

    def fitted(self) -> tuple[ForecastNetwork | ForecastEnsemble, SeriesLayout]:
        if self.network is None or self.layout is None:
            raise RuntimeError("the forecaster is not fitted: call fit(data) or Forecaster.load(directory) first")
        return self.network, self.layout

    def forecast_origins(self, frame: SeriesFrame, origins: list[int], pad: bool = False) -> Forecasts:
        """The rollout: the network forecasts `horizon` rows from each origin, seeing only the
        rows before it (origins may reach the frame's end; see `known_features` for `pad`),
        with its interval calibrated (`layout.interval_scale`)."""
        network, layout = self.fitted()
        if frame.frequency != layout.frequency:
            raise ValueError(f"the data's frequency is {frame.shown_frequency}, the forecaster was fitted on "
                             f"{frequency_name(layout.frequency, layout.time_kind)}")
        windows = self.windows(frame, max(len(frame), max(origins) + self.config.horizon), pad)
        parameter = next(network.parameters())  # the windows in its dtype: a network moved to bfloat16 runs
        with torch.no_grad(), evaluating(network):
            batch = windows.batch(origins, as_known=True)
            mean, scale = network.forecast(batch.history.to(parameter.device, parameter.dtype),
                                           batch.future.to(parameter.device, parameter.dtype))
        mean = layout.target_scaler.inverse(mean.double().cpu().numpy())
        scale = scale.double().cpu().numpy() * layout.target_scaler.std
        spread = interval_half_width(self.config.distribution, scale, self.config.interval) * layout.interval_scale
        return self.finite_forecasts(frame, origins, Forecasts(mean, mean - spread, mean + spread))

    def finite_forecasts(self, frame: SeriesFrame, origins: list[int], forecasts: Forecasts) -> Forecasts:
        """`forecasts` with each origin's forecast of a target that is not finite replaced by
        the target's fallback baseline (naive where the history is shorter than a season),
        its bounds equal to it; warns once per target and baseline."""
        layout, horizon = self.layout, self.config.horizon
        finite = np.isfinite(forecasts.mean) & np.isfinite(forecasts.lower) & np.isfinite(forecasts.upper)
        for k, index in zip(*np.nonzero(~finite.all(axis=1))):
            origin = origins[k]
            baseline = layout.fallback[index] if origin >= max(2, layout.season) else "naive"
            stand_in = baseline_forecast(baseline, frame.history(index, origin), horizon, layout.season)
            forecasts.mean[k, :, index] = forecasts.lower[k, :, index] = forecasts.upper[k, :, index] = stand_in
            forecasts.fallbacks.append({"origin": origin, "target": frame.target_names[index], "baseline": baseline})
        for target, baseline in dict.fromkeys((row["target"], row["baseline"]) for row in forecasts.fallbacks):
            count = sum(row["target"] == target and row["baseline"] == baseline for row in forecasts.fallbacks)
            warn_at_caller(f"the model's forecast of {target!r} is not finite (NaN or inf) from {count} of "
                           f"{len(origins)} origin(s); the {baseline} baseline's forecast stands in for it, with no "
                           "prediction interval (its bounds equal the forecast)")
        return forecasts

    def predict(self, data, horizon: int | None = None) -> pd.DataFrame:
        """The `horizon` rows after the end of `data` (the fitted horizon, or its first
        `horizon` steps, as darts' predict(n) within a model's output length): the time, then
        for each target its point forecast and the bounds of its prediction interval
        (`<target>_lower_90` ... for 90%). With `id`: a long table of id, time and the same
        three columns, `horizon` rows per series (forecast_global.predict)."""
        if horizon is not None and (isinstance(horizon, bool) or not isinstance(horizon, numbers.Integral)
                                    or not 1 <= horizon <= self.config.horizon):
            raise ValueError(f"horizon must be an integer from 1 to the fitted horizon, {self.config.horizon} (a "
                             f"longer one needs a fit with that horizon), got {horizon!r}")
        table = forecast_global.predict(self, data) if self.config.id is not None else self.predict_table(data)
        if horizon is None or horizon == self.config.horizon:
            return table
        series = table[self.config.id] if self.config.id is not None else pd.Series(0, index=table.index)
        return table[series.groupby(series, sort=False).cumcount() < horizon].reset_index(drop=True)

    def predict_table(self, data) -> pd.DataFrame:
        """One table's `predict` over the fitted horizon."""
        _, layout = self.fitted()
        frame = self.read(data, as_fitted=True)
        if len(frame) < layout.lookback:
            raise ValueError(f"predict needs at least lookback = {layout.lookback} rows, got {len(frame)}")
        warn_far_from_fitted(frame, layout)
        if frame.ahead > self.config.horizon:
            warn_at_caller(f"the table has known-future covariates ({', '.join(frame.future_names)}) for {frame.ahead} "
                           f"rows past its last target value; the forecast reads the fitted horizon's, "
                           f"{self.config.horizon}, and the rest are ignored")
        forecasts = forecast_choice.chosen_forecasts(self, frame, [len(frame)],
                                                     self.forecast_origins(frame, [len(frame)]))
        times = future_times(frame.time[-1], frame.frequency, self.config.horizon)
        table = {self.config.time: frame.time_values(times)}
        for index, name in enumerate(self.config.target):
            table |= forecast_columns(self.config, name, forecasts.mean[0, :, index], forecasts.lower[0, :, index],
                                      forecasts.upper[0, :, index])
        prediction = pd.DataFrame(table)
        prediction.attrs["forecast"] = dict(zip(self.config.target, layout.chosen))
        prediction.attrs["baselines"] = list(self.config.baselines)  # what that was chosen among
        prediction.attrs["fallbacks"] = [{"target": row["target"], "baseline": row["baseline"]}
                                         for row in forecasts.fallbacks]
        return prediction

    @isolated_from_caller
    def backtest(self, data, holdout: int | None = None,
                 baselines: tuple[str, ...] | None = None) -> Backtest | forecast_global.PanelBacktest:
        """Fit a copy of this forecaster on all but the last `holdout` rows (default: horizon)
        and score it, and each baseline, on them (lstmkit.pipelines.forecast's docstring). `baselines`: those
        scored beside the model (default: every baseline; "none": none), rows of the table only:
        what `predict` would forecast by (the row `chosen`) is chosen among the forecaster's own
        `baselines` setting. With `id`: a PanelBacktest (forecast_global.backtest), which scores
        the `baselines` setting and Naive2."""
        if self.config.id is not None:
            if baselines is not None:  # it used to be dropped without a word
                raise ValueError(f"a long table's backtest scores the forecaster's baselines setting "
                                 f"({', '.join(self.config.baselines) or 'none'}) and Naive2, OWA's reference; "
                                 f"baselines= is for one table, got {baselines!r}")
            return forecast_global.backtest(self, data, holdout)
        shown = (BASELINES if baselines is None  # checked before any training
                 else baseline_names(baselines, none_means="the backtest scores the model alone"))
        frame = data if isinstance(data, SeriesFrame) else self.read(data)
        config, horizon = self.config, self.config.horizon
        holdout = horizon if holdout is None else holdout
        if isinstance(holdout, bool) or not isinstance(holdout, numbers.Integral) or holdout < 1:
            raise ValueError(f"holdout must be a positive integer, got {holdout!r}")
        holdout = int(holdout)  # a NumPy integer too
        start = len(frame) - holdout
        season, lookback = self.season_and_lookback(frame)
        fitted = max(lookback + horizon + season, self.rows_needed(lookback))  # fit's own check, on `start` rows
        if start < fitted:
            why, remedy = history_remedies(config, season, lookback, "a shorter lookback, horizon or season (--season)")
            raise ValueError(f"the series has {len(frame)} rows; a backtest with holdout {holdout} needs at least "
                             f"{fitted + holdout}: {fitted} to fit on (lookback + horizon + season = {lookback} + "
                             f"{horizon} + {season} = {lookback + horizon + season}, and windows kept for early "
                             f"stopping) and the {holdout} held out{why}; give more rows, a smaller holdout "
                             f"(--holdout), or {remedy}")
        model = Forecaster(**{field.name: getattr(config, field.name) for field in fields(config)})
        with backtest_folder(self.run_folder, holdout, horizon) as model.run_folder:
            model.fit(frame.head(start))
        origins = list(range(start, len(frame), horizon))
        forecasts = model.forecast_origins(frame, origins, pad=True)
        per_target = [forecast_choice.origin_baselines(model, frame, origins, index,
                                                       dict.fromkeys([*shown, *config.baselines]))
                      for index in range(len(config.target))]
        chosen_among = [{name: computed[name] for name in config.baselines} for computed in per_target]
        methods = {"model": forecasts.mean,
                   **{name: np.stack([computed[name] for computed in per_target], axis=-1) for name in shown},
                   **({"combination": np.stack([combination(forecasts.mean[..., index], among)
                                                for index, among in enumerate(chosen_among)], axis=-1)}
                      if combines(config.baselines) else {}),
                   "chosen": np.stack([method_forecast(method, forecasts.mean[..., index], chosen_among[index])
                                       for index, method in enumerate(model.layout.chosen)], axis=-1)}
        # the interval as predict gives it: around the chosen forecast
        interval = Forecasts(methods["chosen"], *centred_on(methods["chosen"], forecasts.mean, forecasts.lower,
                                                            forecasts.upper), forecasts.fallbacks)
        # written, not scored: the baselines combination and chosen are made of that the backtest leaves out
        unscored = {name: np.stack([computed[name] for computed in per_target], axis=-1)
                    for name in config.baselines if name not in shown}
        return backtest_tables(frame, start, origins, methods, interval, season, model, unscored)


def backtest_tables(frame: SeriesFrame, start: int, origins: list[int], methods: dict[str, np.ndarray],
                    interval: Forecasts, season: int, model: Forecaster,
                    unscored: dict[str, np.ndarray]) -> Backtest:
    """Score every method on the held-out rows (each forecast cut at the frame's end), and the
    coverage of `interval` (its lower and upper bounds, and where a baseline stood in); a value
    that was missing, and interpolated, is neither scored nor written as an actual. The
    `unscored` forecasts are written beside the methods' (a combination made of them could not
    be rebuilt from the file)."""
    steps = [min(model.config.horizon, len(frame) - origin) for origin in origins]

    def held(values: np.ndarray) -> np.ndarray:
        """(origins, horizon, targets) -> (held-out rows, targets): each forecast cut at the end."""
        return np.concatenate([values[k, :steps[k]] for k in range(len(origins))])

    actual, given = frame.targets[start:].copy(), ~frame.filled[start:]  # the last row has every target's value
    per_target = {}
    for index, name in enumerate(frame.target_names):
        history = observed(frame.targets[:start, index], frame.filled[:start, index])
        per_target[name] = pd.DataFrame(
            {method: scores(actual[given[:, index], index], held(values)[given[:, index], index], history, season)
             for method, values in methods.items()}).T[list(METRICS)]
    table = sum(per_target.values()) / len(per_target)
    lower, upper = held(interval.lower), held(interval.upper)
    coverage = float(np.mean(((actual >= lower) & (actual <= upper))[given]))
    actual[~given] = np.nan
    origin_rows = np.concatenate([[origins[k]] * steps[k] for k in range(len(origins))])
    times, origin_times = frame.time_values(frame.time[start:]), frame.time_values(frame.time[origin_rows])
    forecast_values = {method: held(values) for method, values in {**methods, **unscored}.items()}
    records = [
        {"time": times[row], "origin": origin_times[row], "target": name, "actual": actual[row, index],
         **{method: values[row, index] for method, values in forecast_values.items()},
         "chosen_lower": lower[row, index], "chosen_upper": upper[row, index]}
        for index, name in enumerate(frame.target_names) for row in range(len(actual))
    ]
    fallbacks = [{**row, "origin": frame.time_values(frame.time[[row["origin"]]])[0]} for row in interval.fallbacks]
    return Backtest(table, per_target, pd.DataFrame(records), coverage, len(frame) - start, model, fallbacks)


def forecast_columns(config: ForecasterConfig, target: str, forecast: np.ndarray, lower: np.ndarray,
                     upper: np.ndarray) -> dict[str, np.ndarray]:
    """`predict`'s columns of one target: the forecast named after the target, and its
    interval's bounds with the level in percent (y, y_lower_90, y_upper_90)."""
    level = percent(config.interval)
    return {target: forecast, f"{target}_lower_{level}": lower, f"{target}_upper_{level}": upper}


def budget_left(time_budget: float | None, spent: float, networks: int) -> float | None:
    """The seconds of `time_budget` the next of `networks` networks still to train may take: an
    equal share of what the ones before left (`spent`: the seconds they trained), so that one
    stopped early gives its unused time to those after it. Never 0, which the training core
    refuses: where the ones before overran the whole budget (a slow last step on a busy machine,
    or a resume with a smaller budget), the next still trains one step."""
    return None if time_budget is None else max(time_budget - spent, 1e-6) / networks


def encoder_lookback(config: ForecasterConfig, season: int) -> int:
    """The steps of history the encoder reads: `lookback`, or 2 * max(horizon, m)."""
    return config.lookback or 2 * max(config.horizon, season)


def history_length(config: ForecasterConfig, season: int) -> int:
    """The steps of history each window holds: the encoder's, or, where that is more, twice the
    longest period with extra seasons (the base compares each period's seasonal-naive forecast
    of the window's own latest steps) and base_cycles times it (the base's median of cycles;
    ForecastNetwork.base)."""
    cycles, longest = base_cycles_and_period(config, season)
    return max(encoder_lookback(config, season), cycles * longest if cycles > 1 and longest > 1 else 0)


def base_cycles_and_period(config: ForecasterConfig, season: int) -> tuple[int, int]:
    """The cycles of its longest period the seasonal base compares, and that period."""
    return max(2 if config.extra_seasons else 1, config.base_cycles), max((season, *config.extra_seasons))


def warn_base_cycles_without_effect(config: ForecasterConfig, season: int) -> None:
    """Warn where base_cycles > 1 has no period to take the median over: the base is the last
    value (base 'last', or m = 1 without extra seasons)."""
    if config.base_cycles == 1:
        return
    cycles, longest = base_cycles_and_period(config, season)
    if longest == 1:
        warn_at_caller(f"base_cycles={config.base_cycles} (--base-cycles) does nothing here: the longest period is 1 "
                       "(m = 1, no extra seasons), so the base is the last value, not a median of cycles")
    elif config.base == "last":
        longer = cycles * longest > encoder_lookback(config, season)
        effect = (f"it only lengthens each window's history to {cycles} x {longest} = {cycles * longest} steps"
                  if longer else "it does nothing")
        warn_at_caller(f"base_cycles={config.base_cycles} (--base-cycles) takes no median here: the base is the last "
                       f"value (base='last'); {effect}")


def history_remedies(config: ForecasterConfig, season: int, lookback: int, encoder_remedy: str) -> tuple[str, str]:
    """For a series too short for windows of `lookback` steps: why they are that long (a
    parenthetical; empty where the encoder's lookback sets them), and what shortens them
    (`encoder_remedy` there)."""
    if lookback <= encoder_lookback(config, season):
        return "", encoder_remedy
    cycles, longest = base_cycles_and_period(config, season)
    remedies = []
    if config.base_cycles > (2 if config.extra_seasons else 1):
        remedies.append(f"fewer base_cycles (--base-cycles, now {config.base_cycles})")
    elif config.extra_seasons:  # 2 cycles, their least (the default, or given: a resolved config cannot tell)
        remedies.append("no extra_seasons with base_cycles 1 (drop --extra-seasons, give --base-cycles 1)")
    if longest > season:
        remedies.append(f"shorter extra_seasons (--extra-seasons, now {', '.join(map(str, config.extra_seasons))})")
    else:
        remedies.append(f"a shorter season (--season, now {season})")
    remedies.append("a shorter horizon")
    return (f" (the history is {cycles} cycles of the longest period, {longest}, which the seasonal base compares)",
            ", ".join(remedies[:-1]) + " or " + remedies[-1])


def config_dict(config: ForecasterConfig) -> dict:
    """The config as JSON-ready values (column names as lists)."""
    return {**asdict(config), **{name: list(getattr(config, name))
                                 for name in ("target", "covariates", "future_covariates")}}


def float_tensor(values: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float32)


class ForecastJob(Job):
    """The negative log-likelihood of `config.distribution` (an ensemble's: the mean of its
    members') over the training windows, shuffled anew each epoch by a seeded generator,
    scored each epoch on the validation windows (when there are any). Several processes each
    take a share of every batch of windows."""

    item = "window"
    evaluate_every_epoch = True

    def __init__(self, network: ForecastNetwork | ForecastEnsemble, windows: Windows | PanelWindows, training: list,
                 validation: list, config: ForecasterConfig, processes: Processes, device: torch.device,
                 epoch_windows: int | None = None) -> None:
        processes.check_divides(config.batch_size, "batch_size (--batch-size, windows)")  # a batch of 1: an empty share
        processes.check_shares(len(training), "training windows")
        self.model, self.windows, self.config, self.processes, self.device = network, windows, config, processes, device
        self.origins = torch.as_tensor(training)
        # An epoch: every training window, or a fresh random sample of epoch_windows of them.
        self.epoch_windows = len(training) if epoch_windows is None else min(epoch_windows, len(training))
        processes.check_shares(self.epoch_windows, "windows an epoch (epoch_windows, --epoch-windows)")
        self.validation = windows.batch(validation, as_known=True) if validation else None
        self.validation_origins = torch.as_tensor(validation, dtype=torch.int64)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.label = f"forecast {config.cell} {config.num_layers}x{config.hidden_size}" + (
            f", an ensemble of {config.ensemble}" if config.ensemble > 1 else "") + (
            f", correcting {network.config.describe_base()}")
        self.chunks: list[Tensor] = []

    def batch_sizes(self) -> list[int]:
        """The windows of each step of an epoch (Processes.batch_sizes)."""
        return self.processes.batch_sizes(self.epoch_windows, self.config.batch_size)

    def steps_per_epoch(self) -> int:
        return len(self.batch_sizes())

    def train_loss(self, model, step: int) -> tuple[Tensor, int]:
        position = step % self.steps_per_epoch()
        if position == 0:
            order = torch.randperm(len(self.origins), generator=self.generator)[:self.epoch_windows]
            self.chunks = list(self.origins[order].split(self.batch_sizes()))
        batch = self.windows.batch(self.processes.shard(self.chunks[position]))
        mean, scale = model(batch.history.to(self.device), batch.future.to(self.device))
        return self.loss(mean, scale, batch.targets), len(batch.history)

    def evaluate(self) -> dict[str, float]:
        if self.validation is None:
            return {}
        batch = self.validation
        mean, scale = self.model(batch.history.to(self.device), batch.future.to(self.device))
        return {"val_loss": self.loss(mean, scale, batch.targets).item()}

    def point_error(self) -> float:
        """The mean absolute error of the forecast's centre on the validation windows, in the
        scaled units the network sees (NaN without validation windows)."""
        if self.validation is None:
            return math.nan
        self.model.eval()
        with torch.no_grad():
            mean, _ = self.model.forecast(self.validation.history.to(self.device), self.validation.future.to(self.device))
        return (mean.float().cpu() - self.validation.targets).abs().mean().item()

    def loss(self, mean: Tensor, scale: Tensor, targets: Tensor) -> Tensor:
        return negative_log_likelihood(self.config.distribution, mean.float(), scale.float(), targets.to(self.device))

    def checkpoint_config(self) -> dict:
        return {"kind": "forecast-training"}

    def data_fingerprint(self) -> dict[str, dict]:
        """The scaled series and the windows that train and validate: a resumed fit refuses others."""
        tensors = (*self.windows.tensors(), self.origins, self.validation_origins)
        return {"windows": fingerprint(b"".join(tensor.contiguous().numpy().tobytes() for tensor in tensors))}

    def state_tensors(self) -> dict[str, Tensor]:
        """The shuffling generator's state (checkpoints fall at epoch ends, where it draws next)."""
        return {"generator": self.generator.get_state()}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        self.generator.set_state(tensors["generator"].cpu())


def save_forecaster(forecaster: Forecaster, directory: str | Path) -> Path:
    """A checkpoint folder: JSON (config, layout, best epoch) and safetensors weights."""
    network, layout = forecaster.fitted()
    config = {
        "kind": "forecaster",
        "forecaster": config_dict(forecaster.config),
        "network": network.config.to_dict(),
        "layout": layout.to_dict(),
        "best_epoch": forecaster.best_epoch,
    }
    return save_checkpoint(directory, config, network.state_dict())


def warn_far_from_fitted(frame: SeriesFrame, layout: SeriesLayout) -> None:
    """Warn where the window predict reads lies FAR_FROM_FITTED or more standard deviations
    from the mean of the data the network was fitted on: its forecast there extrapolates."""
    scaler = layout.target_scaler
    distances = np.abs(scaler.transform(frame.targets[-layout.lookback:])).max(axis=0)
    for name, distance, mean, std in zip(frame.target_names, distances, scaler.mean, scaler.std):
        if std == 0 and distance > 0:  # infinitely many standard deviations: the scale maps any output to mean
            warn_at_caller(f"the model was fitted on a constant {name!r} ({mean:.4g}), so it forecasts {mean:.4g} "
                           f"whatever it reads, and the last {layout.lookback} values differ from it; refit on "
                           "data like these")
        elif std > 0 and distance >= FAR_FROM_FITTED:
            warn_at_caller(f"the last {layout.lookback} values of {name!r} lie up to {distance:.3g} standard "
                           f"deviations from the mean of the data the model was fitted on ({mean:.4g}, standard "
                           f"deviation {std:.4g}): its forecast extrapolates, and its interval's width is that "
                           "of the fitted data's scale; refit on data like these")


FORECASTER = CheckpointKind(
    "forecaster", "a forecaster", "network",
    ("targets", "past_features", "future_features", "horizon", "hidden_size"),
    lambda section: build_forecast_network(ForecastNetworkConfig(**section)),
    counts=("num_layers", "ensemble", "scalings"),
)


@isolated_from_caller  # a load builds the model, drawing initial weights it replaces
def load_forecaster(directory: str | Path, device: str | torch.device = "cpu") -> Forecaster:
    """A fitted forecaster from a checkpoint folder, or from a `forecast fit` folder (its
    model/), on `device` whatever device trained it. Checkpoints of older versions, whose
    settings had other names (hidden, layers, batch), load too."""
    directory = checkpoint_folder(directory)
    saved, network = load_model_checkpoint(directory, FORECASTER)
    try:
        # Checkpoints from before `distribution` was a setting were trained as normal; those
        # from before another added setting, as ADDED_SETTINGS says.
        added = {name: value for name, value in ADDED_SETTINGS.items()
                 if name in {field.name for field in fields(ForecasterConfig)}}
        settings = {"distribution": "normal", **added, **current_names(saved["forecaster"])}
        if settings.get("id") is not None:  # older versions took calendar=False there, where it did nothing
            settings["calendar"] = True
        else:  # and epoch_windows without id
            settings.pop("epoch_windows", None)
        settings.pop("eval_every", None)  # saved by versions that took it, unused
        if settings.get("early_stopping") is False:  # a refit saved by a version that kept settings that did not act
            settings |= WITHOUT_VALIDATION
            if settings.get("optimizer") == "nt-asgd":  # which never began averaging: plain SGD
                settings |= {"optimizer": "sgd", "asgd_patience": ForecasterConfig.asgd_patience}
        if settings.get("base") == "last" and settings.get("extra_seasons"):  # an older version's "last" network
            settings["base"] = "seasonal"  # took them: the seasonal base of m = 1 and the extra periods (its
            # network's config says m = 1; its own, season, stays as saved: the baselines of predict read it)
        forecaster = Forecaster(**settings)
        network_horizon = saved["network"].get("horizon")
        if forecaster.config.horizon != network_horizon:  # an edited file: dates past pandas' range
            raise ValueError(f"its forecaster.horizon, {forecaster.config.horizon}, is not its network.horizon, "
                             f"{network_horizon}")
        layout = forecast_global.PanelLayout if forecaster.config.id is not None else SeriesLayout
        forecaster.layout = layout.from_dict(saved["layout"])
        forecaster.best_epoch = saved["best_epoch"]
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(f"{directory} is a forecaster checkpoint this lstmkit cannot read "
                              f"(written by another version?): {error}") from None
    forecaster.network = network
    device = resolve_device(str(device))  # a torch.device too, as the other pipelines' loaders take
    forecaster.network.to(device).eval()
    runnable_engines(forecaster.network, device)  # a network trained with engine="triton" on a GPU runs on a CPU
    return forecaster


def predict_to_csv(directory: str | Path, data, out: str | Path | None = None, device: str = "cpu",
                   horizon: int | None = None) -> pd.DataFrame:
    """`lstmkit forecast predict`: the forecast of the saved forecaster in `directory` after the
    end of `data` (its first `horizon` steps where given), written atomically to the CSV file
    `out` if given; returns the table."""
    if out is not None:
        check_output_file(out, "out", (".csv",))
        check_not_read({"out": out}, {})
    table = load_forecaster(directory, device).predict(data, horizon)
    if out is not None:
        with atomic_path(out) as temporary:
            table.to_csv(temporary, index=False)
    return table


@contextlib.contextmanager
def backtest_folder(run_folder: Path | None, holdout: int, horizon: int) -> Iterator[Path | None]:
    """Where a backtest's networks write their runs (None without a `run_folder`): its
    backtest/ folder, beside which the rows it holds out are recorded (holdout.json, rank 0)
    when it begins. A resumed backtest that holds out other rows is refused by that setting's
    name: its windows differ, which the runs' data checks would name instead (another horizon,
    whose default holdout it is, the runs' settings check names; a backtest begun before the
    record, the data checks). A backtest refused or stopped before any of its networks wrote
    there leaves no record (nor the folder made for it, left empty): it began nothing to resume."""
    if run_folder is None:
        yield None
        return
    record, runs = run_folder / HOLDOUT_FILE, run_folder / "backtest"
    made, wrote = [], False
    if runs.exists():
        before = read_json(record) if record.is_file() else {}
        if not isinstance(before, dict):
            raise CheckpointError(f"{record} holds a JSON {type(before).__name__}, expected an object (the holdout "
                                  "and horizon the backtest began with)")
        if before.get("horizon") == horizon and before.get("holdout") != holdout:
            raise ValueError(f"{run_folder.parent} was backtested with other settings; --resume needs the same ones "
                             f"(holdout: {before.get('holdout')} in the run, {holdout} now)")
    elif Processes.from_environment().main:  # none of its networks has written a checkpoint yet
        made = folders_to_make(run_folder)
        run_folder.mkdir(parents=True, exist_ok=True)
        write_json(record, {"holdout": holdout, "horizon": horizon})
        wrote = True
    try:
        yield runs
    except BaseException:
        if wrote and not runs.exists():
            record.unlink(missing_ok=True)
            remove_empty_folders(made)
        raise


from lstmkit.pipelines import forecast_choice, forecast_global  # noqa: E402  (both import Forecaster from here)
