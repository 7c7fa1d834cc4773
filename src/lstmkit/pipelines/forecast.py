"""Time-series forecasting: fit a recurrent forecaster, backtest it against baselines, predict.

    fit       table -> checked series -> scaling fitted on it -> lookback/horizon windows ->
              Gaussian-likelihood training with early stopping on the latest windows
    backtest  fit on all but the last `holdout` rows, then forecast from origins stepping
              through them, `horizon` apart, so every held-out row is forecast once; the
              baselines forecast from the same origins; MAE, RMSE, sMAPE, MASE of each
    predict   the `horizon` rows after the table's end, with a prediction interval

The three pieces stay apart, as in darts: `lstmkit.series.Windows` cuts the windows,
`ForecastNetwork` maps one window to a forecast, and `Forecaster.forecast_origins` rolls
the network over a series.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from statistics import NormalDist

import numpy as np
import torch

from lstmkit.extras import extra_imports

with extra_imports("forecast", __name__):
    import pandas as pd

from lstmkit.checkpoint import load_checkpoint, save_checkpoint
from lstmkit.models.forecaster import ForecastNetwork, ForecastNetworkConfig, gaussian_loss
from lstmkit.progress import Progress
from lstmkit.series import (BASELINES, METRICS, Scaler, SeriesFrame, Windows, baseline_forecast,
                            calendar_features, future_times, read_series, scores, season_length)


@dataclass(frozen=True)
class ForecasterConfig:
    """What to forecast and how the forecaster is built and trained.

    lookback defaults to 2 * max(horizon, season); season (the m of seasonal naive and MASE)
    to the one of the data's frequency (52 weekly, 12 monthly, 1 yearly). Training runs up
    to `epochs` (or `time_budget` seconds), keeping the epoch with the lowest loss on the
    latest `validation_fraction` of the windows and stopping `patience` epochs after it;
    without early_stopping it trains on every window for exactly `epochs`.
    """

    time: str
    target: tuple[str, ...]
    horizon: int
    lookback: int | None = None
    season: int | None = None
    covariates: tuple[str, ...] = ()
    future_covariates: tuple[str, ...] = ()
    calendar: bool = True
    cell: str = "lstm"
    hidden: int = 64
    layers: int = 2
    dropout: float = 0.1
    epochs: int = 200
    time_budget: float | None = None
    patience: int = 50  # the validation windows of a short series are few and noisy: wait long
    early_stopping: bool = True
    validation_fraction: float = 0.1
    batch: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    clip: float = 1.0
    interval: float = 0.9
    seed: int = 0
    engine: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", as_names(self.target, "target"))
        object.__setattr__(self, "covariates", as_names(self.covariates, "covariates"))
        object.__setattr__(self, "future_covariates", as_names(self.future_covariates, "future_covariates"))
        if not self.target:
            raise ValueError("give at least one target column")
        for name in ("horizon", "hidden", "layers", "epochs", "patience", "batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("lookback", "season"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        for name in ("lr", "clip", "time_budget"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if not 0 < self.interval < 1:
            raise ValueError(f"interval is the coverage of the prediction interval, in (0, 1); got {self.interval!r}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}")


def as_names(value, what: str) -> tuple[str, ...]:
    """Column names from a name, a comma-separated string or a sequence of names."""
    if isinstance(value, str):
        return tuple(name.strip() for name in value.split(",") if name.strip())
    if not all(isinstance(name, str) for name in value):
        raise TypeError(f"{what} must be column names, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class SeriesLayout:
    """What a fitted forecaster learned about its data: the grid, the seasonal period, the
    lookback, the calendar features and the scalings of the targets, the observed-past and
    the known-future covariates."""

    frequency: str
    time_kind: str
    season: int
    lookback: int
    calendar_names: tuple[str, ...]
    target_scaler: Scaler
    covariate_scaler: Scaler
    future_scaler: Scaler

    def to_dict(self) -> dict:
        return {**{field.name: getattr(self, field.name) for field in fields(self)},
                "calendar_names": list(self.calendar_names), "target_scaler": self.target_scaler.to_dict(),
                "covariate_scaler": self.covariate_scaler.to_dict(), "future_scaler": self.future_scaler.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> SeriesLayout:
        return cls(data["frequency"], data["time_kind"], data["season"], data["lookback"],
                   tuple(data["calendar_names"]), Scaler.from_dict(data["target_scaler"]),
                   Scaler.from_dict(data["covariate_scaler"]), Scaler.from_dict(data["future_scaler"]))


@dataclass
class Forecasts:
    """Forecasts from several origins, in the data's units: mean, lower and upper bound, each
    (origins, horizon, targets)."""

    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


@dataclass
class Backtest:
    """The outcome of `Forecaster.backtest`.

    scores: one row per method (model and baselines), columns MAE, RMSE, sMAPE, MASE (the
    mean over targets); per_target: the same table for each target; forecasts: one row per
    held-out time and target with the actual value, the model's forecast and interval, and
    each baseline's forecast; coverage: the share of held-out values inside the model's
    interval; holdout: the rows held out; model: the forecaster fitted on the rows before them.
    """

    scores: pd.DataFrame
    per_target: dict[str, pd.DataFrame]
    forecasts: pd.DataFrame
    coverage: float
    holdout: int
    model: Forecaster


class Forecaster:
    """A recurrent forecaster with prediction intervals: `fit`, `predict`, `backtest`.

    >>> forecaster = Forecaster(time="date", target="co2", horizon=52)
    >>> result = forecaster.backtest("co2_weekly.csv", holdout=104)
    >>> result.scores          # model and baselines: MAE, RMSE, sMAPE, MASE
    >>> forecaster.fit("co2_weekly.csv").predict("co2_weekly.csv")   # the next 52 weeks

    Arguments are the fields of `ForecasterConfig`.
    """

    def __init__(self, time: str, target, horizon: int, **options) -> None:
        self.config = ForecasterConfig(time, target, horizon, **options)
        self.network: ForecastNetwork | None = None
        self.layout: SeriesLayout | None = None
        self.best_epoch: int | None = None
        self.curve: list[dict] = []

    def save(self, directory: str | Path) -> Path:
        """Write the fitted forecaster as a checkpoint folder (JSON and safetensors)."""
        return save_forecaster(self, directory)

    @staticmethod
    def load(directory: str | Path) -> Forecaster:
        """A fitted forecaster from a checkpoint folder or a `forecast fit` folder."""
        return load_forecaster(directory)

    def read(self, data) -> SeriesFrame:
        return read_series(data, self.config.time, self.config.target, self.config.covariates,
                           self.config.future_covariates)

    def fit(self, data) -> Forecaster:
        """Train on every window of `data` (a CSV path, a DataFrame or a SeriesFrame)."""
        frame = data if isinstance(data, SeriesFrame) else self.read(data)
        config = self.config
        season, lookback = self.season_and_lookback(frame)
        self.layout = SeriesLayout(frame.frequency, frame.time_kind, season, lookback,
                                   self.calendar_of(frame.time[:1], frame.frequency)[1], Scaler.fit(frame.targets),
                                   Scaler.fit(frame.covariates), Scaler.fit(frame.future_covariates[:len(frame)]))
        windows = self.windows(frame, len(frame))
        origins = list(windows.origins())
        if config.early_stopping:
            held = max(1, round(config.validation_fraction * len(origins)))
            validation = origins[-held:]
            training = [origin for origin in origins if origin + config.horizon <= validation[0]]
            if not training:
                raise ValueError(f"the series has {len(frame)} rows: too few to keep the latest windows for early "
                                 f"stopping with lookback {lookback} and horizon {config.horizon}")
        else:
            training, validation = origins, []
        torch.manual_seed(config.seed)
        self.network = ForecastNetwork(ForecastNetworkConfig(
            config.cell, len(config.target), windows.past.shape[1], windows.known.shape[1], config.horizon,
            config.hidden, config.layers, config.dropout, config.engine,
        ))
        self.best_epoch, self.curve = train_network(self.network, windows, training, validation, config)
        return self

    def season_and_lookback(self, frame: SeriesFrame) -> tuple[int, int]:
        """The given ones, or m from the frequency and a lookback of 2 * max(horizon, m)."""
        season = self.config.season or season_length(frame.frequency)
        return season, self.config.lookback or 2 * max(self.config.horizon, season)

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
                       float_tensor(self.known_features(frame, rows, pad)), layout.lookback, self.config.horizon)

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
                    f"({', '.join(frame.future_names)}) there; the table has them for {frame.ahead} row(s)")
            future = np.concatenate([future, np.repeat(future[-1:], rows - len(future), axis=0)])
        return np.concatenate([calendar, self.layout.future_scaler.transform(future)], axis=1)

    def fitted(self) -> tuple[ForecastNetwork, SeriesLayout]:
        if self.network is None or self.layout is None:
            raise RuntimeError("the forecaster is not fitted: call fit(data) or Forecaster.load(directory) first")
        return self.network, self.layout

    def forecast_origins(self, frame: SeriesFrame, origins: list[int], pad: bool = False) -> Forecasts:
        """The rollout: the network forecasts `horizon` rows from each origin, seeing only the
        rows before it (origins may reach the frame's end; see `known_features` for `pad`)."""
        network, layout = self.fitted()
        if frame.frequency != layout.frequency:
            raise ValueError(f"the data's frequency is {frame.frequency}, the forecaster was fitted on {layout.frequency}")
        windows = self.windows(frame, max(origins) + self.config.horizon, pad)
        network.eval()
        with torch.no_grad():
            batch = windows.batch(origins)
            mean, scale = network(batch.history, batch.future)
        mean = layout.target_scaler.inverse(mean.double().numpy())
        scale = scale.double().numpy() * layout.target_scaler.std
        spread = NormalDist().inv_cdf(0.5 + self.config.interval / 2) * scale
        return Forecasts(mean, mean - spread, mean + spread)

    def predict(self, data) -> pd.DataFrame:
        """The `horizon` rows after the end of `data`: the time, then for each target its point
        forecast and the bounds of its prediction interval (`<target>_lower_90` ... for 90%)."""
        _, layout = self.fitted()
        frame = self.read(data)
        if len(frame) < layout.lookback:
            raise ValueError(f"predict needs at least lookback = {layout.lookback} rows, got {len(frame)}")
        forecasts = self.forecast_origins(frame, [len(frame)])
        times = future_times(frame.time[-1], frame.frequency, self.config.horizon)
        table = {self.config.time: frame.time_values(times)}
        percent = round(100 * self.config.interval)
        for index, name in enumerate(self.config.target):
            table[name] = forecasts.mean[0, :, index]
            table[f"{name}_lower_{percent}"] = forecasts.lower[0, :, index]
            table[f"{name}_upper_{percent}"] = forecasts.upper[0, :, index]
        return pd.DataFrame(table)

    def backtest(self, data, holdout: int | None = None, baselines: tuple[str, ...] | None = None) -> Backtest:
        """Fit a copy of this forecaster on all but the last `holdout` rows (default: horizon)
        and score it, and each baseline, on them; see the module docstring."""
        frame = data if isinstance(data, SeriesFrame) else self.read(data)
        config, horizon = self.config, self.config.horizon
        holdout = horizon if holdout is None else holdout
        if isinstance(holdout, bool) or not isinstance(holdout, int) or holdout < 1:
            raise ValueError(f"holdout must be a positive integer, got {holdout!r}")
        start = len(frame) - holdout
        season, lookback = self.season_and_lookback(frame)
        if start < lookback + horizon + season:
            raise ValueError(f"the series has {len(frame)} rows; a backtest with holdout {holdout} needs at least "
                             f"lookback + horizon + season + holdout = {lookback} + {horizon} + {season} + {holdout} "
                             f"= {lookback + horizon + season + holdout}")
        model = Forecaster(**{field.name: getattr(config, field.name) for field in fields(config)})
        model.fit(frame.head(start))
        origins = list(range(start, len(frame), horizon))
        forecasts = model.forecast_origins(frame, origins, pad=True)
        methods = {"model": forecasts.mean}
        for name in baselines if baselines is not None else BASELINES:
            methods[name] = np.stack([
                np.stack([baseline_forecast(name, frame.targets[:origin, index], horizon, season)
                          for index in range(len(config.target))], axis=1)
                for origin in origins])
        return backtest_tables(frame, start, origins, methods, forecasts, season, model)


def backtest_tables(frame: SeriesFrame, start: int, origins: list[int], methods: dict[str, np.ndarray],
                    forecasts: Forecasts, season: int, model: Forecaster) -> Backtest:
    """Score every method on the held-out rows (each forecast cut at the frame's end)."""
    steps = [min(model.config.horizon, len(frame) - origin) for origin in origins]

    def held(values: np.ndarray) -> np.ndarray:
        """(origins, horizon, targets) -> (held-out rows, targets): each forecast cut at the end."""
        return np.concatenate([values[k, :steps[k]] for k in range(len(origins))])

    actual = frame.targets[start:]
    per_target = {}
    for index, name in enumerate(frame.target_names):
        history = frame.targets[:start, index]
        per_target[name] = pd.DataFrame(
            {method: scores(actual[:, index], held(values)[:, index], history, season)
             for method, values in methods.items()}).T[list(METRICS)]
    table = sum(per_target.values()) / len(per_target)
    lower, upper = held(forecasts.lower), held(forecasts.upper)
    coverage = float(np.mean((actual >= lower) & (actual <= upper)))
    origin_rows = np.concatenate([[origins[k]] * steps[k] for k in range(len(origins))])
    times, origin_times = frame.time_values(frame.time[start:]), frame.time_values(frame.time[origin_rows])
    forecast_values = {method: held(values) for method, values in methods.items()}
    records = [
        {"time": times[row], "origin": origin_times[row], "target": name, "actual": actual[row, index],
         "lower": lower[row, index], "upper": upper[row, index],
         **{method: values[row, index] for method, values in forecast_values.items()}}
        for index, name in enumerate(frame.target_names) for row in range(len(actual))
    ]
    return Backtest(table, per_target, pd.DataFrame(records), coverage, len(frame) - start, model)


def config_dict(config: ForecasterConfig) -> dict:
    """The config as JSON-ready values (column names as lists)."""
    return {**asdict(config), **{name: list(getattr(config, name))
                                 for name in ("target", "covariates", "future_covariates")}}


def float_tensor(values: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float32)


def train_network(network: ForecastNetwork, windows: Windows, training: list[int], validation: list[int],
                  config: ForecasterConfig) -> tuple[int, list[dict]]:
    """AdamW on the Gaussian loss over shuffled training windows; with validation windows,
    keeps the weights of the best epoch and stops `patience` epochs after it. Returns (the
    epoch kept, the loss curve)."""
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    validation_batch = windows.batch(validation) if validation else None
    report = Progress(f"forecast {config.cell} {config.layers}x{config.hidden}", config.epochs, unit="epoch")
    best_loss, best_epoch, best_state, curve = math.inf, config.epochs, None, []
    started = time.perf_counter()
    origins = torch.as_tensor(training)
    for epoch in range(1, config.epochs + 1):
        network.train()
        total = 0.0
        for chunk in origins[torch.randperm(len(origins), generator=generator)].split(config.batch):
            batch = windows.batch(chunk)
            loss = gaussian_loss(*network(batch.history, batch.future), batch.targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), config.clip)
            optimizer.step()
            total += loss.item() * len(chunk)
        point = {"epoch": epoch, "train_loss": total / len(origins)}
        if validation_batch is not None:
            network.eval()
            with torch.no_grad():
                point["val_loss"] = gaussian_loss(*network(validation_batch.history, validation_batch.future),
                                                  validation_batch.targets).item()
            if point["val_loss"] < best_loss:
                best_loss, best_epoch, best_state = point["val_loss"], epoch, copy.deepcopy(network.state_dict())
        curve.append(point)
        report.update(epoch, **{name: value for name, value in point.items() if name != "epoch"})
        out_of_time = config.time_budget is not None and time.perf_counter() - started >= config.time_budget
        if out_of_time or (validation_batch is not None and epoch - best_epoch >= config.patience):
            break
    if best_state is not None:
        network.load_state_dict(best_state)
    else:
        best_epoch = len(curve)
    report.close(len(curve), best_epoch=best_epoch)
    network.eval()
    return best_epoch, curve


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


def load_forecaster(directory: str | Path) -> Forecaster:
    """A fitted forecaster from a checkpoint folder, or from a `forecast fit` folder (its model/)."""
    directory = Path(directory)
    if (directory / "model").is_dir():
        directory = directory / "model"
    saved, tensors = load_checkpoint(directory)
    if saved.get("kind") != "forecaster":
        raise ValueError(f"{directory} holds a {saved.get('kind')!r} checkpoint, not a forecaster")
    try:
        forecaster = Forecaster(**saved["forecaster"])
        forecaster.network = ForecastNetwork(ForecastNetworkConfig(**saved["network"]))
        forecaster.network.load_state_dict(tensors)
        forecaster.layout = SeriesLayout.from_dict(saved["layout"])
        forecaster.best_epoch = saved["best_epoch"]
    except (KeyError, TypeError, RuntimeError) as error:
        raise ValueError(f"{directory} is a forecaster checkpoint this lstmkit cannot read "
                         f"(written by another version?): {error}") from None
    forecaster.network.eval()
    return forecaster
