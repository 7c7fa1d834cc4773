"""`lstmkit forecast fit / backtest / predict`: time-series forecasting."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from lstmkit.cells import CELL_NAMES
from lstmkit.cli.arguments import (add_setting, add_training_arguments, config_from, csv_file, device_name,
                                   output_csv, output_folder, positive_int, positive_ints, report_stream)
from lstmkit.engines import ENGINE_CHOICES
from lstmkit.checkpoint import run_folder
from lstmkit.files import check_not_read
from lstmkit.models.forecaster import DISTRIBUTIONS
from lstmkit.pipelines.configs import BASES, ForecasterConfig, baseline_names
from lstmkit.training.config import PLATEAU_ACTIONS
from lstmkit.training.device import check_runtime


def name_list(what: str) -> Callable[[str], tuple[str, ...]]:
    """argparse type: comma-separated names of `what` ("column names", "baseline names")."""

    def names(text: str) -> tuple[str, ...]:
        given = tuple(name.strip() for name in text.split(",") if name.strip())
        if not given:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}")
        return given

    return names


column_list = name_list("column names")


def scored_baselines(text: str) -> tuple[str, ...]:
    """argparse type of --backtest-baselines: baseline names, checked (`baseline_names`), or none."""
    try:
        return baseline_names(name_list("baseline names")(text), none_means="the backtest scores the model alone")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def forecaster_from(arguments: argparse.Namespace):
    from lstmkit.pipelines.forecast import Forecaster

    if arguments.id is not None and arguments.backtest_baselines is not None:
        raise ValueError(f"--backtest-baselines is for one table: a long table's backtest (--id) scores --baselines "
                         f"and Naive2, OWA's reference; got --backtest-baselines "
                         f"{','.join(arguments.backtest_baselines) or 'none'} with --id {arguments.id}")
    config = config_from(arguments, ForecasterConfig, calendar=not arguments.no_calendar)
    check_runtime(config.device, config.precision, config.engine, config.cell)  # before the run is announced
    return Forecaster(**vars(config))


def fit_command(arguments: argparse.Namespace) -> None:
    from lstmkit.pipelines.forecast_report import backtest_report, backtest_then_refit, chosen_line

    out = Path(arguments.out)
    fitted = backtest_then_refit(forecaster_from(arguments), arguments.csv, out, arguments.holdout, arguments.resume,
                                 arguments.backtest_baselines)
    print(backtest_report(fitted.backtest, fitted.frame))
    print(wrote_line(out, arguments.id))
    if arguments.id is None:
        epochs = fitted.backtest.model.best_epoch
        frame, horizon = fitted.frame, arguments.horizon
        ahead = ""
        if frame.future_names and frame.ahead < horizon:  # predict needs the horizon's known-future covariates
            ahead = (f", once {arguments.csv} holds the {horizon} rows ahead with their "
                     f"{', '.join(frame.future_names)} (targets left empty)")
        print(f"refitted on all {len(frame)} rows for {epochs} epoch{'s' * (epochs != 1)} "
              f"(the backtest's best), keeping its choice of forecast: wrote {out}/model; forecast the next "
              f"{horizon} steps with: {predict_line(out, arguments.csv)}{ahead}")
    else:
        print(f"refitted on all {len(fitted.frame)} series: {chosen_line(fitted.final)}; wrote {out}/model; forecast "
              f"the next {arguments.horizon} steps of each with: {predict_line(out, arguments.csv)}")


def predict_line(out: Path, csv: str) -> str:
    """The command that forecasts from the fitted run, quoted for a shell (a path with spaces)."""
    return shlex.join(["lstmkit", "forecast", "predict", str(out), str(csv)])


def backtest_command(arguments: argparse.Namespace) -> None:
    from lstmkit.pipelines.forecast_report import backtest_report, run_backtest

    fitted = run_backtest(forecaster_from(arguments), arguments.csv, arguments.holdout, arguments.out,
                          arguments.resume, arguments.backtest_baselines)
    print(backtest_report(fitted.backtest, fitted.frame))
    if arguments.out is not None:
        print(wrote_line(arguments.out, arguments.id))


def wrote_line(out: str | Path, id_column: str | None) -> str:
    """What a backtest wrote: a long table's has no picture (one panel per series would be thousands)."""
    if id_column is not None:
        return f"wrote {out}/results.json and {out}/backtest.csv"
    return f"wrote {out}/results.json, {out}/backtest.csv and {out}/backtest.png"


def predict_command(arguments: argparse.Namespace) -> None:
    from lstmkit.pipelines.forecast import predict_to_csv
    from lstmkit.series.choice import uses_network

    fit_backtest = run_folder(arguments.directory) / "backtest.csv"  # of a fit's folder, or of its model/
    check_not_read({"--out": arguments.out}, {"the CSV file it forecasts from": arguments.csv,
                                              "the fit's backtest forecasts": fit_backtest})
    table = predict_to_csv(arguments.directory, arguments.csv, arguments.out, arguments.device, arguments.horizon)
    used = table.attrs["forecast"]
    stand_ins = {row["target"]: row["baseline"] for row in table.attrs.get("fallbacks", [])}
    stood_in = {target: f" (the {stand_ins[target]} baseline standing in for the network's forecast, which was not "
                        "finite)" for target, method in (used.items() if isinstance(used, dict) else ())
                if target in stand_ins and uses_network(method)}
    used = (", ".join(f"{target} by {method}{stood_in.get(target, '')}" for target, method in used.items())
            if isinstance(used, dict) else f"every series by {used}")
    note = f"forecasts {used}: what fit chose on its validation windows (results.json: predict_uses)"
    if not table.attrs["baselines"]:
        note = ("forecasts by the network: it was fitted with --baselines none"
                + "".join(f"; {target}{said}" for target, said in stood_in.items()))
    if arguments.out is None:
        print(table.to_csv(index=False), end="")
        print(note, file=sys.stderr)
    else:
        print(f"wrote {len(table)} forecast rows to {arguments.out}; {note}", file=report_stream(arguments.out))


def add_series_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("csv", type=csv_file, help="a CSV file with a time column and target columns")
    parser.add_argument("--time", required=True,
                        help="the time column (dates, integer years, decimal years or integer steps 1, 2, 3 ...)")
    parser.add_argument("--id", help="the series-id column of a long table (one row per series and time): "
                        "one network for all series")
    parser.add_argument("--target", required=True, type=column_list, help="target column(s), comma-separated")
    parser.add_argument("--horizon", required=True, type=positive_int, help="steps to forecast")
    parser.add_argument("--lookback", type=positive_int, help="steps the encoder reads (default 2 x max(horizon, season))")
    parser.add_argument("--season", type=positive_int, help="seasonal period m (default: from the frequency)")
    parser.add_argument("--extra-seasons", type=positive_ints, default=(),
                        help="more seasonal periods the network's base may take per window, comma-separated "
                             "(e.g. 168, a week of hours, beside --season 24)")
    add_setting(parser, ForecasterConfig, "base_cycles", "the base of the longest period is the median of its last "
                "this many cycles (default 2 with --extra-seasons: with 168, the last two weeks; else 1)",
                type=positive_int)
    parser.add_argument("--holdout", type=positive_int, help="last rows to backtest on (default: horizon)")
    parser.add_argument("--covariates", type=column_list, default=(), help="observed-past covariate columns")
    parser.add_argument("--future-covariates", type=column_list, default=(),
                        help="known-future covariate columns (given in rows after the last target value too)")
    parser.add_argument("--no-calendar", action="store_true", help="no calendar features from the time column")
    add_setting(parser, ForecasterConfig, "cell", "recurrent cell", choices=list(CELL_NAMES))
    add_setting(parser, ForecasterConfig, "hidden_size", "hidden units", type=positive_int)
    add_setting(parser, ForecasterConfig, "num_layers", "recurrent layers", type=positive_int)
    add_setting(parser, ForecasterConfig, "dropout", "dropout probability", type=float)
    add_setting(parser, ForecasterConfig, "patience", "epochs without a better validation loss before stopping",
                type=positive_int)
    add_setting(parser, ForecasterConfig, "on_plateau", "then: stop, or anneal (decay the learning rate to "
                "--min-lr-fraction over as many epochs again, then stop)", choices=list(PLATEAU_ACTIONS))
    add_setting(parser, ForecasterConfig, "batch_size", "windows per step", type=positive_int)
    add_setting(parser, ForecasterConfig, "interval", "prediction-interval coverage", type=float)
    add_setting(parser, ForecasterConfig, "ensemble", "networks trained side by side, forecasting together "
                "(the median of their forecasts)", type=positive_int)
    add_setting(parser, ForecasterConfig, "distribution", "the head's distribution, trained by its likelihood "
                "(default laplace for a long table, normal for one table)", choices=DISTRIBUTIONS)
    add_setting(parser, ForecasterConfig, "engine", "recurrent engine", choices=ENGINE_CHOICES)
    add_setting(parser, ForecasterConfig, "normalisation",
                "each series' normalisation (long tables): standard, log or seasonal; several, comma-separated "
                "(standard,log), train a network per normalisation, sharing the time budget, and average them")
    add_setting(parser, ForecasterConfig, "baselines", "baselines the forecast predict uses is chosen among and "
                "combined with, comma-separated; none: predict forecasts by the network (one table's backtest still "
                "scores --backtest-baselines, a long table's Naive2)", type=name_list("baseline names"))
    parser.add_argument("--backtest-baselines", type=scored_baselines,
                        help="baselines one table's backtest scores beside the model, comma-separated (default: every "
                             "baseline, AutoARIMA's fit included; none: none); a long table's scores --baselines and "
                             "Naive2")
    add_setting(parser, ForecasterConfig, "base", "what the network corrects: seasonal (seasonal naive), last (the "
                "last value) or auto (both trained, the closer on validation kept; default auto for one table, "
                "seasonal for a long table)", choices=BASES)
    add_setting(parser, ForecasterConfig, "epoch_windows", "windows drawn per epoch of a long table",
                type=positive_int)
    add_training_arguments(parser, ForecasterConfig, evaluations=False)


def add_forecast_commands(commands) -> None:
    forecast = commands.add_parser("forecast", help="time-series forecasting: fit, backtest, predict")
    forecast.set_defaults(extra="forecast")
    actions = forecast.add_subparsers(dest="forecast", required=True)
    fit = actions.add_parser("fit", help="backtest against baselines, then refit on all data and save")
    add_series_arguments(fit)
    fit.add_argument("--out", required=True, type=output_folder,
                     help="output folder: results, plot (of one table) and model/")
    fit.add_argument("--resume", action="store_true", help="continue the interrupted fit in --out (with the same "
                     "data and settings; the budget may change), keeping the networks that had finished")
    fit.set_defaults(run=fit_command)

    backtest = actions.add_parser("backtest", help="backtest against baselines only")
    add_series_arguments(backtest)
    backtest.add_argument("--out", type=output_folder,
                          help="folder for results.json, backtest.csv and (of one table) backtest.png (default "
                               "none: nothing is saved, and an interrupted backtest cannot be resumed)")
    backtest.add_argument("--resume", action="store_true", help="continue the interrupted backtest in --out")
    backtest.set_defaults(run=backtest_command)

    predict = actions.add_parser("predict", help="forecast the horizon after a CSV's end")
    predict.add_argument("directory", help="a `forecast fit` folder or a forecaster checkpoint")
    predict.add_argument("csv", type=csv_file, help="the series, with the columns the forecaster was fitted on")
    predict.add_argument("--out", type=output_csv, help="CSV file to write (default or -: print)")
    predict.add_argument("--horizon", type=positive_int,
                         help="forecast only the first steps of the fitted horizon (default: all of it; known-future "
                              "covariates are still read over all of it)")
    predict.add_argument("--device", type=device_name, default="cpu", help="where to run the model (default cpu)")
    predict.set_defaults(run=predict_command)
