"""What a backtest leaves behind: a printed table, results.json, backtest.csv and backtest.png."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from lstmkit.warning_filters import warnings_filtered
from lstmkit.extras import extra_imports

with extra_imports("forecast", __name__):
    import pandas as pd

    from lstmkit import plots
from lstmkit.checkpoint import existing, held_kind
from lstmkit.files import atomic_path, check_nothing_overwritten, claimed_folder, write_json
from lstmkit.pipelines.configs import WITHOUT_VALIDATION
from lstmkit.pipelines.forecast import HOLDOUT_FILE, Backtest, Forecaster, config_dict, encoder_lookback
from lstmkit.pipelines.forecast_global import M4_METRICS, PanelBacktest, choice_metric, first_ids
from lstmkit.series import BASELINES, METRICS, Panel, SeriesFrame
from lstmkit.series.intervals import percent
from lstmkit.training import Processes


def backtest_report(result: Backtest | PanelBacktest, frame: SeriesFrame | Panel) -> str:
    """The scores table (the mean over targets, then, for several targets, each one's), the
    best value of each metric marked with *, and the interval's coverage (a long table's:
    `panel_report`)."""
    if isinstance(result, PanelBacktest):
        return panel_report(result)
    config, layout = result.model.config, result.model.layout
    origins = result.forecasts["origin"].unique()
    lines = [f"backtest of {', '.join(config.target)} ({frame.shown_frequency}, m={layout.season}): "
             f"{len(frame) - result.holdout} training rows, {result.holdout} held out, forecast from {len(origins)} origin(s) "
             f"({', '.join(map(shown_time, origins))}), horizon {config.horizon}, {lookback_text(config, layout)}"]
    if len(config.target) == 1:
        lines += scores_table(result.scores, config.cell)
    else:
        lines += ["mean over the targets (MAE and RMSE mix their units; sMAPE and MASE do not):",
                  *scores_table(result.scores, config.cell)]
        for name, table in result.per_target.items():
            lines += [f"{name}:", *scores_table(table, config.cell)]
    lines += [beaten_line(result.scores, "MASE"), chosen_line(result.model)]
    lines.append(interval_line(result.model, result.coverage))
    lines.append(f"trained {epoch_count(epochs_trained(result.model))} epochs, kept epoch "
                 f"{kept_epoch(result.model.best_epoch, result.model.config)}")
    lines.append(base_line(result.model))
    if result.fallbacks:
        lines.append("the model's forecast was not finite, and a baseline stood in for it, at: " + ", ".join(
            f"{row['target']} from {row['origin']} ({row['baseline']})" for row in result.fallbacks))
    return "\n".join(lines)


def interval_line(forecaster: Forecaster, coverage: float) -> str:
    """How the interval was calibrated, and how much of the held-out values it holds."""
    config, scales = forecaster.config, np.atleast_1d(forecaster.layout.interval_scale)  # a long table's: one
    if not forecaster.layout.validation:
        how = "the network's, uncalibrated (no validation windows)"
    elif (scales == 1).all():  # interval_scale's fallback: no factor found (it warned why)
        how = "the network's, uncalibrated (its validation values could not calibrate it)"
    else:
        factors = ["1 (uncalibrated)" if scale == 1 else f"{scale:.3g}" for scale in scales]
        if len(factors) > 1:  # one per target, named
            factors = [f"{target} {factor}" for target, factor in zip(config.target, factors, strict=True)]
        how = ("the network's, its half-widths scaled by " + ", ".join(factors)
               + " to hold that share of the validation values")
    return (f"the {percent(config.interval)}% interval around the forecast predict uses ({how}) holds {coverage:.1%} "
            "of the held-out values")


def scores_table(scores: pd.DataFrame, cell: str, metrics: tuple[str, ...] = METRICS, number: str = "10.4g"
                 ) -> list[str]:
    """One line per method and the header, the best of each column starred (none where the
    best is not finite: a column of inf has no best); each number written with the format
    `number` (its width, and one more for the star)."""
    lowest = scores.min()
    best = lowest.where(np.isfinite(lowest.to_numpy(dtype=float)))
    width = int(number.split(".")[0]) + 1
    names = [f"{method} ({cell})" if method == "model" else method for method in scores.index]
    column = max(16, *(len(name) + 1 for name in names))  # "model+seasonal_naive" is longer than most
    lines = [f"{'method':<{column}}" + "".join(f"{metric:>{width}}" for metric in metrics)]
    for name, (_, row) in zip(names, scores.iterrows(), strict=True):
        lines.append(f"{name:<{column}}" + "".join(
            f"{row[metric]:>{number}}{'*' if row[metric] == best[metric] else ' '}" for metric in metrics))
    return lines


def shown_time(time) -> str:
    """A time as the report shows it: a DataFrame's timestamp at midnight as its date
    (2000-01-08), anything else as written."""
    if isinstance(time, pd.Timestamp) and time == time.normalize():
        return time.date().isoformat()
    return str(time)


def lookback_text(config, layout) -> str:
    """The lookback the encoder reads, and the windows' history where the base needs more
    (forecast.history_length)."""
    encoder = encoder_lookback(config, layout.season)
    if encoder == layout.lookback:
        return f"lookback {encoder}"
    return f"lookback {encoder} (windows hold {layout.lookback} steps for the seasonal base)"


def panel_report(result: PanelBacktest) -> str:
    """The scores table (best starred), which baselines beat the model, what predict uses, and
    its interval's coverage."""
    config, layout = result.model.config, result.model.layout
    lines = [f"backtest of {result.series} series ({layout.frequency}, m={layout.season}): the last {result.holdout} "
             f"value(s) of each held out, horizon {config.horizon}, {lookback_text(config, layout)}, "
             f"normalisation {'+'.join(config.normalisation)}"]
    if result.unscored:
        lines.append(f"{len(result.unscored)} series with fewer than {result.holdout + 2} values are not scored: "
                     + first_ids(result.unscored))
    lines += scores_table(result.scores, config.cell, M4_METRICS, "9.3f")
    lines.append(beaten_line(result.scores, "OWA"))
    lines.append(chosen_line(result.model))
    lines.append(interval_line(result.model, result.coverage))
    lines.append(epochs_line(result.model))
    lines.append(base_line(result.model))
    return "\n".join(lines)


def beaten_line(scores: pd.DataFrame, metric: str) -> str:
    """Which methods score a lower `metric` than the model on the backtest, said plainly; by
    sMAPE where `metric` is not finite for every method: a series (or target) flat over its
    training values has a MASE scale of 0, so every inexact method's MASE is inf and its OWA
    nan, from which "beats every baseline" or "score alike" was read."""
    why = ""
    if not np.isfinite(scores[metric].to_numpy(dtype=float)).all():
        why = (f"{metric} is not finite for every method (a series whose training values repeat each season exactly, "
               "flat or not, has a MASE scale of 0); by sMAPE, ")
        metric = "sMAPE"
    model = scores.loc["model", metric]
    better = [name for name in scores.index if name != "model" and scores.loc[name, metric] < model]
    # no baseline scored, and nothing better: "score alike" or "beats every baseline" was read there
    if not set(scores.index) & set(BASELINES) and not better:
        return why + f"the model's {metric} on this backtest is {model:.3f}; no baseline was scored beside it"
    if not better and (scores[metric] == model).all():
        return why + f"the model and every baseline score alike on this backtest ({metric} {model:.3f})"
    if not better:
        return why + f"the model beats every baseline on this backtest ({metric} {model:.3f})"
    return why + f"the model is beaten on this backtest ({metric} {model:.3f}) by: " + ", ".join(
        f"{name} ({scores.loc[name, metric]:.3f})" for name in better)


def epochs_trained(forecaster: Forecaster) -> float | list[float]:
    """The epochs the network trained (a fraction where the time budget cut the last): one
    count per normalisation for a ScalingEnsemble."""
    if not isinstance(forecaster.best_epoch, list):
        return forecaster.curve[-1]["epoch"]
    return [[row for row in forecaster.curve if row["normalisation"] == name][-1]["epoch"]
            for name in forecaster.config.normalisation]


def epoch_count(epoch: float) -> str:
    return str(int(epoch)) if float(epoch).is_integer() else f"{epoch:.2f}"


def epochs_line(forecaster: Forecaster) -> str:
    """How long a long table's network trained, and the epoch kept; each one's of a ScalingEnsemble."""
    windows = f"of up to {forecaster.config.epoch_windows} windows"
    if not isinstance(forecaster.best_epoch, list):
        return (f"trained {epoch_count(epochs_trained(forecaster))} epochs {windows}, kept epoch "
                f"{kept_epoch(forecaster.best_epoch, forecaster.config)}")
    return f"one network per normalisation, epochs {windows}: " + "; ".join(
        f"{name} trained {epoch_count(epochs)}, kept epoch {kept_epoch(best, forecaster.config)}"
        for name, epochs, best in zip(forecaster.config.normalisation, epochs_trained(forecaster), forecaster.best_epoch))


def kept_epoch(epoch: float, config) -> str:
    """The epoch whose network was kept; the last is a fraction where the time budget ended it,
    or where `steps` or `epochs` asked for one."""
    if float(epoch).is_integer():
        return epoch_count(epoch)
    if config.time_budget is not None and (config.epochs is None or epoch < config.epochs):
        return f"{epoch_count(epoch)} (the last, cut short by the time budget)"
    asked = "--steps" if config.steps is not None else "--epochs"
    return f"{epoch_count(epoch)} (the last, part of an epoch as {asked} asks)"


def base_line(forecaster: Forecaster) -> str:
    """What the network corrects, and, where both bases were trained, their validation errors."""
    line = "the network corrects " + forecaster.network.config.describe_base()
    if len(forecaster.base_errors) > 1:
        line += ": the closer forecast on the validation windows (mean absolute error, scaled) of " + ", ".join(
            f"{base} {error:.4g}" for base, error in forecaster.base_errors.items())
    return line


def chosen_line(forecaster: Forecaster) -> str:
    """Which forecast `predict` uses, and the validation scores it was chosen by."""
    layout = forecaster.layout
    if not layout.validation:
        return "predict uses the model's forecast (no validation windows to choose on: early stopping is off)"
    if not forecaster.config.baselines:
        return "predict uses the model's forecast (--baselines none: nothing else to choose)"
    if forecaster.config.id is not None:
        metric = choice_metric(layout.validation)
        flat = "" if metric == "OWA" else (" (OWA is not finite for every method: a series whose history repeats "
                                           "each season exactly, flat or not, has a MASE scale of 0)")
        return (f"predict uses the {layout.chosen} forecast, chosen on the validation windows (each series' last "
                "horizon before the rows it forecasts): " + chosen_reason(layout.validation, layout.chosen, metric,
                                                                          "series") + flat)
    return ("predict forecasts by what the validation windows chose among the model, the baselines and their "
            "combinations (the row 'chosen'): " + "; ".join(
                f"{target} by {method}, {target_reason(layout.validation[target], method)}"
                for target, method in zip(forecaster.config.target, layout.chosen)))


def target_reason(scores: dict[str, dict[str, float]], chosen: str) -> str:
    """Why one table's target was forecast by `chosen`: by MASE, or by MAE where its history
    repeats each season exactly (MASE's scale is 0, every inexact method's MASE inf: the choice
    goes by MAE there)."""
    mase = [method["MASE"] for method in scores.values()]
    if any(map(math.isinf, mase)) and all(math.isinf(value) or value == 0 for value in mase):  # scale 0: exact or inf
        return chosen_reason(scores, chosen, "MAE", "windows") + (" (its history repeats each season exactly, flat "
                                                                  "or not: MASE's scale is 0, every inexact MASE inf)")
    return chosen_reason(scores, chosen, "MASE", "windows")


def chosen_reason(scores: dict[str, dict[str, float]], chosen: str, metric: str, items: str) -> str:
    """Why `chosen`: the lowest `metric`, or the model's kept over a lower one not clearly better."""
    lowest = min(scores, key=lambda method: scores[method][metric])
    if lowest == chosen:
        return f"the lowest {metric} ({scores[chosen][metric]:.3f})"
    return (f"{lowest}'s {metric} was lower ({scores[lowest][metric]:.3f} against {scores[chosen][metric]:.3f}), "
            f"but not clearly (a one-sided 95% test paired over the {items})")


def write_backtest(result: Backtest, frame: SeriesFrame, out: str | Path) -> None:
    out = Path(out)
    model = result.model
    write_json(out / "results.json", {
        "backtest": {method: {metric: float(row[metric]) for metric in METRICS}
                     for method, row in result.scores.iterrows()},
        "per_target": {name: {method: {metric: float(row[metric]) for metric in METRICS}
                              for method, row in table.iterrows()} for name, table in result.per_target.items()},
        "interval": model.config.interval,
        "interval_scale": list(model.layout.interval_scale),
        "interval_coverage": result.coverage,
        "holdout": result.holdout,
        "origins": [shown_time(origin) for origin in result.forecasts["origin"].unique()],
        "frequency": frame.shown_frequency,
        "season": model.layout.season,
        "lookback": model.layout.lookback,
        "epochs_trained": epochs_trained(model),
        "best_epoch": model.best_epoch,
        "base": model.base, "base_errors": model.base_errors,
        "model_fallbacks": result.fallbacks,
        "predict_uses": dict(zip(model.config.target, model.layout.chosen)), "validation": model.layout.validation,
        **model.runtime,
        "config": config_dict(model.config),
    })
    with atomic_path(out / "backtest.csv") as temporary:
        result.forecasts.to_csv(temporary, index=False)
    start = len(frame) - result.holdout
    shown = max(start - 3 * result.holdout, start - 2 * model.layout.lookback, 0)
    panels = {}
    for name in model.config.target:
        rows = result.forecasts[result.forecasts["target"] == name]
        panels[name] = {"history": (frame.axis_times(frame.time[shown:]),
                                    np.where(frame.filled[shown:, frame.target_names.index(name)], np.nan,
                                             frame.targets[shown:, frame.target_names.index(name)])),
                        "time": frame.axis_times(frame.time[start:]), "forecast": rows["chosen"].to_numpy(),
                        "method": model.layout.chosen[model.config.target.index(name)],
                        "lower": rows["chosen_lower"].to_numpy(), "upper": rows["chosen_upper"].to_numpy(),
                        "seasonal_naive": rows["seasonal_naive"].to_numpy() if "seasonal_naive" in rows else None}
    plots.forecast_backtest(panels, f"{percent(model.config.interval)}% interval", out / "backtest.png")


@dataclass
class Fitted:
    """The outcome of `backtest_then_refit`: the backtest, the data, and the forecaster refitted
    on all of it (None for a backtest alone)."""

    backtest: Backtest
    frame: SeriesFrame
    final: Forecaster | None = None


def run_backtest(forecaster: Forecaster, data, holdout: int | None = None, out: str | Path | None = None,
                 resume: bool = False, baselines: tuple[str, ...] | None = None) -> Fitted:
    """`lstmkit forecast backtest`: backtest `forecaster` on `data`, scoring `baselines` beside
    it (Forecaster.backtest), and write results.json, backtest.csv and backtest.png to `out`
    (if given; rank 0 alone under torchrun), with each network's training run in out/training
    (`resume`: continue those found there)."""
    with claimed_folder(None if out is None or not Processes.from_environment().main else Path(out)):
        if out is not None:  # on a copy: the caller's forecaster keeps fitting in memory
            forecaster = copy.copy(forecaster)
            forecaster.run_folder = training_folder(Path(out), resume)
            if not resume:  # without runs in training/ (refused above with them), these files are someone else's
                check_nothing_overwritten(Path(out), ("results.json", "backtest.csv", "backtest.png"),
                                          "no fit or backtest (no training/ folder)")
        elif resume:
            raise ValueError("resume needs the folder of the run to continue (--out)")
        frame = forecaster.read(data)
        result = forecaster.backtest(frame, holdout, baselines)
        if out is not None and Processes.from_environment().main:
            (write_panel_backtest if isinstance(result, PanelBacktest) else write_backtest)(result, frame, out)
        return Fitted(result, frame)


def write_panel_backtest(result: PanelBacktest, panel: Panel, out: str | Path) -> None:
    """results.json (every method's M4 scores, the validation choice) and backtest.csv."""
    model = result.model
    write_json(Path(out) / "results.json", {
        "backtest": {method: {metric: float(row[metric]) for metric in M4_METRICS}
                     for method, row in result.scores.iterrows()},
        "series": result.series, "unscored": [str(name) for name in result.unscored], "holdout": result.holdout,
        "frequency": panel.frequency, "season": model.layout.season, "lookback": model.layout.lookback,
        "predict_uses": model.layout.chosen, "validation": model.layout.validation,
        "interval": model.config.interval, "interval_scale": model.layout.interval_scale,
        "interval_coverage": result.coverage, "epochs_trained": epochs_trained(model), "best_epoch": model.best_epoch,
        **model.runtime,
        "config": config_dict(model.config),
    })
    with atomic_path(Path(out) / "backtest.csv") as temporary:
        result.forecasts.to_csv(temporary, index=False)


def training_folder(out: Path, resume: bool) -> Path:
    """out/training, where fit and backtest write each network's training run: refused when it
    holds runs without `resume` (they would be overwritten; the holdout's record alone, of a
    backtest stopped before its first checkpoint, is none), or is missing with it."""
    folder = out / "training"
    held = held_kind(existing(out / "last"))
    if held is not None:  # another pipeline's run, stopped before its results.json
        raise ValueError(f"{out} holds a {held!r} run, where a forecast fit or backtest cannot start; choose another "
                         "folder")
    holds_runs = folder.exists() and (not folder.is_dir() or {path.name for path in folder.iterdir()} - {HOLDOUT_FILE})
    if holds_runs and not resume:
        raise ValueError(f"{out} holds training runs already ({folder}): pass --resume to continue them (finished "
                         "networks are kept), or choose another --out")
    if resume and not folder.is_dir():
        raise FileNotFoundError(f"{out} holds no fit or backtest to resume (no {folder}); start one without --resume")
    return folder


def backtest_then_refit(forecaster: Forecaster, data, out: str | Path, holdout: int | None = None,
                        resume: bool = False, baselines: tuple[str, ...] | None = None) -> Fitted:
    """`lstmkit forecast fit`: backtest (written to `out`; `baselines` as run_backtest's), then
    refit on all rows for the number of epochs the backtest kept, without early stopping, and
    save it as out/model (a long table refits with early stopping and its choice of forecast,
    as the backtest did; one table keeps the backtest's choice, made on validation windows
    before the held-out rows).
    Every network's training run is checkpointed in out/training/{backtest,refit}; `resume`
    continues an interrupted fit from them, keeping the networks that had finished."""
    if forecaster.config.id is None and forecaster.config.optimizer == "nt-asgd":
        begun = " (a fit an earlier lstmkit began with it cannot be resumed: fit again)" if resume else ""
        raise ValueError("forecast fit refits one table on every window, with no validation windows, which nt-asgd "
                         "needs to begin averaging: give optimizer adamw or sgd (--optimizer; --ema-decay averages "
                         f"the weights without them){begun}")
    with claimed_folder(Path(out) if Processes.from_environment().main else None):  # the whole fit, not each run
        out = Path(out)
        if (out / "model").exists():
            raise ValueError(f"{out} already holds a fitted forecaster (model/, from the training runs in training/); "
                             f"choose another --out, or remove {out} to fit again")  # model/ alone: --resume refits it
        fitted = run_backtest(forecaster, data, holdout, out, resume, baselines)
        settings = {field.name: getattr(forecaster.config, field.name) for field in fields(forecaster.config)}
        if forecaster.config.id is None:
            base = fitted.backtest.model.base
            settings |= {"steps": None, "epochs": fitted.backtest.model.best_epoch, "time_budget": None,
                         "early_stopping": False, "base": base, **WITHOUT_VALIDATION}
            if base == "last":  # the extra seasons are the seasonal base's periods
                settings["extra_seasons"] = ()
        # A long table refits as it was fitted: early stopping and the choice of forecast need
        # each series' validation window.
        final = Forecaster(**settings)
        final.run_folder = out / "training" / "refit"
        # the backtest said so, of the settings given, not of the base it chose
        with warnings_filtered("ignore", UserWarning, r"(base_cycles=\d+|calendar=False) \(--"):
            final.fit(fitted.frame)
        if forecaster.config.id is None:
            layout = fitted.backtest.model.layout
            final.layout = replace(final.layout, chosen=layout.chosen, validation=layout.validation,
                                   interval_scale=layout.interval_scale)
        if Processes.from_environment().main:
            final.save(out / "model")
            if forecaster.config.id is not None:  # the refit chose again: results.json names what predict uses,
                results = json.loads((out / "results.json").read_text())  # on what scores, with what interval
                write_json(out / "results.json", {
                    **results, "backtest_chose": results["predict_uses"], "backtest_validation": results["validation"],
                    "backtest_interval_scale": results["interval_scale"], "predict_uses": final.layout.chosen,
                    "validation": final.layout.validation, "interval_scale": final.layout.interval_scale})
        fitted.final = final
        return fitted
