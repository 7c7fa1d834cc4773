"""`lstmkit forecast fit / backtest / predict`: time-series forecasting."""

from __future__ import annotations

import argparse
from pathlib import Path

from lstmkit.cells import CELLS
from lstmkit.cli.arguments import positive_float, positive_int
from lstmkit.engines import ENGINE_CHOICES


def column_list(text: str) -> tuple[str, ...]:
    """argparse type: comma-separated column names."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated column names, got {text!r}")
    return names


def forecaster_from(arguments: argparse.Namespace, **overrides):
    from lstmkit.pipelines.forecast import Forecaster

    options = dict(
        lookback=arguments.lookback, season=arguments.season, covariates=arguments.covariates,
        future_covariates=arguments.future_covariates,
        calendar=not arguments.no_calendar, cell=arguments.cell, hidden=arguments.hidden, layers=arguments.layers,
        dropout=arguments.dropout, epochs=arguments.epochs, time_budget=arguments.time_budget,
        patience=arguments.patience, batch=arguments.batch, lr=arguments.lr, interval=arguments.interval,
        seed=arguments.seed, engine=arguments.engine,
    )
    return Forecaster(arguments.time, arguments.target, arguments.horizon, **{**options, **overrides})


def run_backtest(arguments: argparse.Namespace, out: Path | None):
    """Backtest, print the table, and write results.json, backtest.csv and backtest.png to `out`."""
    from lstmkit.pipelines.forecast_report import backtest_report, write_backtest

    forecaster = forecaster_from(arguments)
    frame = forecaster.read(arguments.csv)
    result = forecaster.backtest(frame, arguments.holdout)
    print(backtest_report(result, frame))
    if out is not None:
        write_backtest(result, frame, out)
        print(f"wrote {out}/results.json, {out}/backtest.csv and {out}/backtest.png")
    return forecaster, frame, result


def fit_command(arguments: argparse.Namespace) -> None:
    out = Path(arguments.out)
    if (out / "model").exists():
        raise ValueError(f"{out} already holds a fitted forecaster; choose another --out or remove {out / 'model'}")
    _, frame, result = run_backtest(arguments, out)
    epochs = result.model.best_epoch
    print(f"refitting on all {len(frame)} rows for {epochs} epochs (the backtest's best)", flush=True)
    final = forecaster_from(arguments, epochs=epochs, early_stopping=False, time_budget=None).fit(frame)
    final.save(out / "model")
    print(f"wrote {out}/model; forecast the next {arguments.horizon} steps with: "
          f"lstmkit forecast predict {out} {arguments.csv}")


def backtest_command(arguments: argparse.Namespace) -> None:
    run_backtest(arguments, Path(arguments.out) if arguments.out else None)


def predict_command(arguments: argparse.Namespace) -> None:
    from lstmkit.files import atomic_path
    from lstmkit.pipelines.forecast import load_forecaster

    table = load_forecaster(arguments.directory).predict(arguments.csv)
    if arguments.out is None:
        print(table.to_csv(index=False), end="")
        return
    with atomic_path(arguments.out) as temporary:
        table.to_csv(temporary, index=False)
    print(f"wrote {len(table)} forecast rows to {arguments.out}")


def add_series_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("csv", help="a CSV file with a time column and target columns")
    parser.add_argument("--time", required=True, help="the time column (dates, or integer years)")
    parser.add_argument("--target", required=True, type=column_list, help="target column(s), comma-separated")
    parser.add_argument("--horizon", required=True, type=positive_int, help="steps to forecast")
    parser.add_argument("--lookback", type=positive_int, help="steps the model sees (default 2 x max(horizon, season))")
    parser.add_argument("--season", type=positive_int, help="seasonal period m (default: from the frequency)")
    parser.add_argument("--holdout", type=positive_int, help="last rows to backtest on (default: horizon)")
    parser.add_argument("--covariates", type=column_list, default=(), help="observed-past covariate columns")
    parser.add_argument("--future-covariates", type=column_list, default=(),
                        help="known-future covariate columns (given in rows after the last target value too)")
    parser.add_argument("--no-calendar", action="store_true", help="no calendar features from the time column")
    parser.add_argument("--cell", choices=list(CELLS), default="lstm", help="recurrent cell (default lstm)")
    parser.add_argument("--hidden", type=positive_int, default=64, help="hidden units (default 64)")
    parser.add_argument("--layers", type=positive_int, default=2, help="recurrent layers (default 2)")
    parser.add_argument("--dropout", type=float, default=0.1, help="dropout probability (default 0.1)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=positive_int, default=200, help="most epochs (default 200)")
    budget.add_argument("--time-budget", type=positive_float, help="most seconds of training")
    parser.add_argument("--patience", type=positive_int, default=50,
                        help="epochs without a better validation loss before stopping (default 50)")
    parser.add_argument("--batch", type=positive_int, default=32, help="windows per step (default 32)")
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    parser.add_argument("--interval", type=float, default=0.9, help="prediction-interval coverage (default 0.9)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--engine", choices=ENGINE_CHOICES, default="auto")


def add_forecast_commands(commands) -> None:
    forecast = commands.add_parser("forecast", help="time-series forecasting: fit, backtest, predict")
    forecast.set_defaults(extra="forecast")
    actions = forecast.add_subparsers(dest="forecast", required=True)
    fit = actions.add_parser("fit", help="backtest against baselines, then refit on all data and save")
    add_series_arguments(fit)
    fit.add_argument("--out", required=True, help="output folder: results, plot and model/")
    fit.set_defaults(run=fit_command)

    backtest = actions.add_parser("backtest", help="backtest against baselines only")
    add_series_arguments(backtest)
    backtest.add_argument("--out", help="folder for results.json, backtest.csv and backtest.png")
    backtest.set_defaults(run=backtest_command)

    predict = actions.add_parser("predict", help="forecast the horizon after a CSV's end")
    predict.add_argument("directory", help="a `forecast fit` folder or a forecaster checkpoint")
    predict.add_argument("csv", help="the series, with the columns the forecaster was fitted on")
    predict.add_argument("--out", help="CSV file to write (default: print)")
    predict.set_defaults(run=predict_command)
