"""M4 hourly or weekly on the last-horizon validation split: our global model, its combination
with the baselines, and every baseline, next to the published rows (sMAPE / MASE / OWA).

    python benchmarks/m4.py weekly --time-budget 240 --baselines naive,naive2,theta,ets   # ~10 min
    python benchmarks/m4.py weekly --ensemble 3 --normalisation log --time-budget 2400    # README, ~21 min
    python benchmarks/m4.py hourly --time-budget 2820 --threads 2 --extra-seasons 168 --normalisation standard,log \
        --lookback 48 --min-lr-fraction 0.1                # README, 23.6 min (early stopping; budget 47)
    python benchmarks/m4.py convert ../shared/data/m4/Hourly-train.csv hourly_long.csv
    python benchmarks/m4.py hourly --normalisation standard --threads 1 ... --forecasts-out standard.csv &
    python benchmarks/m4.py hourly --normalisation log --threads 1 ... --forecasts-out log.csv
    python benchmarks/m4.py combine hourly standard.csv log.csv      # README: each network and their mean
    python benchmarks/m4.py hourly --epochs 550 ...    # 550 epochs of 4096 windows, on a fast machine or a slow one
    python benchmarks/m4.py bases hourly --extra-seasons 168 --cycles 1,2,3 --origins 6   # the base alone, ~1 min

The official M4 test values are not in the repository, so each training series' last horizon
(48 hourly, 13 weekly) is held out and scored; the published rows are on the official test
set, so they are a reference, not the same exam. `convert` writes the long table (id, t, y:
t = 1, 2, ... per series) that `lstmkit forecast fit ... --id id --time t --target y` reads.
`--forecasts-out` keeps a run's held-out forecasts (one row per series and hour: id, t,
actual, every method's forecast, the interval); `combine` scores the mean of several runs'
networks, as `--normalisation standard,log` averages its networks, so that networks trained
in separate processes (one per core) can be compared with it. `bases` scores what the network
corrects, alone (no training): at the last horizon and at each horizon before it, so that a
change of the base is judged on more than one exam.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lstmkit.cli.arguments import positive_int
from lstmkit.forecast import Forecaster
from lstmkit.models.forecaster import DISTRIBUTIONS, ForecastNetwork, ForecastNetworkConfig
from lstmkit.pipelines.configs import ForecasterConfig
from lstmkit.pipelines.forecast import history_length
from lstmkit.pipelines.forecast_global import M4_METRICS, score_methods
from lstmkit.series.baselines import panel_baselines
from lstmkit.series.windows import PanelWindows
from lstmkit.pipelines.forecast_report import chosen_line, epochs_line, interval_line
from lstmkit.training.config import PLATEAU_ACTIONS

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "m4"
# Horizon and the m of MASE and Naive2, as M4 sets them.
SUBSETS = {"hourly": ("Hourly-train.csv", 48, 24), "weekly": ("Weekly-train.csv", 13, 1)}
# Published results on the official test set (Makridakis et al. 2020; issue 15): sMAPE, MASE, OWA.
PUBLISHED = {
    "hourly": {"Naive2": (18.383, 2.395, 1.000), "seasonal naive": (13.912, 1.193, 0.627),
               "Theta": (18.138, 2.455, 1.006), "M4 RNN benchmark": (14.698, 3.048, 1.036),
               "ES-RNN (Smyl)": (9.328, 0.893, 0.440), "FFORMA": (11.506, 0.819, 0.484),
               "best (Doornik et al.)": (8.913, 0.801, 0.410)},
    "weekly": {"Naive2": (9.161, 2.777, 1.000), "Theta": (9.093, 2.637, 0.971),
               "M4 RNN benchmark": (15.220, 5.132, 1.755), "ES-RNN (Smyl)": (7.817, 2.356, 0.851),
               "FFORMA": (7.625, 2.108, 0.796), "best (Forecast Pro)": (6.582, 2.107, 0.739)},
}


def wide_to_long(path: str | Path) -> pd.DataFrame:
    """An M4 file (one row per series: "V1" the id, then its values, empty cells after its
    end) as a long table: id, t (1, 2, ... within each series), y."""
    wide = pd.read_csv(path)
    long = wide.melt(id_vars="V1", var_name="column", value_name="y").dropna(subset=["y"])
    long["t"] = long["column"].str[1:].astype(int) - 1  # V2 holds a series' first value
    return long.rename(columns={"V1": "id"})[["id", "t", "y"]].sort_values(["id", "t"], kind="stable",
                                                                           key=series_order).reset_index(drop=True)


def series_order(column: pd.Series) -> pd.Series:
    """H2 before H10: ids by their number."""
    return column.str[1:].astype(int) if column.name == "id" else column


def run(arguments: argparse.Namespace) -> None:
    file, horizon, season = SUBSETS[arguments.subset]
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    table = wide_to_long(Path(arguments.data) / file)
    if arguments.series:
        table = table[table["id"].isin(table["id"].unique()[:arguments.series])]
    forecaster = forecaster_from(arguments)
    start = time.perf_counter()
    result = forecaster.backtest(table, holdout=horizon)
    seconds = time.perf_counter() - start
    print(f"M4 {arguments.subset}: {result.series} series, the last {horizon} values of each held out "
          f"(validation split of the training file); m = {season}; {seconds / 60:.1f} min in all "
          f"(training budget {budget(forecaster.config)}, "
          f"normalisation {'+'.join(forecaster.config.normalisation)}, "
          f"distribution {forecaster.config.distribution}, ensemble {forecaster.config.ensemble}, "
          f"extra seasons {', '.join(map(str, forecaster.config.extra_seasons)) or 'none'}"
          + (f" (base: the median of {forecaster.config.base_cycles} cycles)"
             if forecaster.config.base_cycles > 1 else "")
          + f", learning-rate floor {forecaster.config.min_lr_fraction:g} of the peak"
          + (f", weights' moving average {forecaster.config.ema_decay:g}" if forecaster.config.ema_decay else "") + ")")
    print_scores(result.scores)
    print("published, on the official test set:")
    for method, values in PUBLISHED[arguments.subset].items():
        print(f"{method:<26}" + "".join(f"{value:>9.3f}" for value in values))
    print(chosen_line(result.model))
    print(interval_line(result.model, result.coverage))
    print(epochs_line(result.model))
    if arguments.forecasts_out:
        result.forecasts.to_csv(arguments.forecasts_out, index=False)
        print(f"wrote the held-out forecasts to {arguments.forecasts_out}")


def forecaster_from(arguments: argparse.Namespace) -> Forecaster:
    """The global forecaster the command line asks for: M4's horizon and m, the time budget or,
    given --epochs, that many epochs whatever the time, and every setting given."""
    _, horizon, season = SUBSETS[arguments.subset]
    chosen = {name: getattr(arguments, name) for name in ("normalisation", "distribution", "ensemble", "extra_seasons",
                                                          "base_cycles", "min_lr_fraction", "batch_size", "lr",
                                                          "on_plateau", "ema_decay", "dropout", "weight_decay",
                                                          "patience")
              if getattr(arguments, name) is not None}
    return Forecaster("t", "y", horizon=horizon, season=season, id="id", lookback=arguments.lookback,
                      time_budget=arguments.time_budget if arguments.epochs is None else None, epochs=arguments.epochs,
                      hidden_size=arguments.hidden_size, seed=arguments.seed, baselines=tuple(arguments.baselines),
                      early_stopping=arguments.early_stopping, **chosen)


def budget(config) -> str:
    """The training budget a config holds, in words: "550 epochs" or "1410 s"."""
    return f"{config.epochs:g} epochs" if config.epochs is not None else f"{config.time_budget:.0f} s"


def combined_scores(runs: dict[str, pd.DataFrame], table: pd.DataFrame, season: int) -> pd.DataFrame:
    """Each run's network (its forecasts' "model" column, the run named "model of <name>"), the
    mean of them all ("their mean") and Naive2, scored as the backtest scores them (sMAPE, MASE,
    OWA) on the held-out values the runs share; `table`: the long series (id, t, y) whose last
    values the runs held out."""
    (first_name, first), *others = runs.items()
    for name, run in others:
        if not run[["id", "t", "actual"]].equals(first[["id", "t", "actual"]]):
            raise ValueError(f"{name} holds other series, times or actual values than {first_name}; "
                             "combine the forecasts of runs on the same data and holdout")
    series = {key: group["y"].to_numpy() for key, group in table.groupby("id", sort=False)}
    held_out = first.groupby("id", sort=False)
    histories = [series[key][:-len(group)] for key, group in held_out]

    def by_series(column: pd.Series) -> list[np.ndarray]:
        return [part.to_numpy() for _, part in column.groupby(first["id"], sort=False)]

    methods = {**{f"model of {name}": by_series(run["model"]) for name, run in runs.items()},
               "their mean": by_series(sum(run["model"] for run in runs.values()) / len(runs)),
               "naive2": by_series(first["naive2"])}
    return pd.DataFrame(score_methods(methods, by_series(first["actual"]), histories, season)).T[list(M4_METRICS)]


def combine(arguments: argparse.Namespace) -> None:
    file, _, season = SUBSETS[arguments.subset]
    runs = {path: pd.read_csv(path) for path in arguments.forecasts}
    print_scores(combined_scores(runs, wide_to_long(Path(arguments.data) / file), season))


def base_scores(table: pd.DataFrame, horizon: int, season: int, extra_seasons: tuple[int, ...],
                cycles: list[int], origins: int) -> pd.DataFrame:
    """The OWA of the network's base alone (ForecastNetwork.base: what an untrained network
    forecasts) for each number of base cycles (columns), at `origins` origins (rows): each
    series' last horizon held out, then the horizon before it, and so on. A series with fewer
    than two values before an origin is not scored there (MASE needs two); a shorter history
    than the base reads is padded with its first value, as for training (PanelWindows)."""
    series = [group["y"].to_numpy() for _, group in table.groupby("id", sort=False)]
    # Per count: the history the base reads (forecast.history_length) and a network to read it.
    readers = {count: (history_length(ForecasterConfig(time="t", target="y", horizon=horizon, lookback=season,
                                                       extra_seasons=extra_seasons, base_cycles=count), season),
                       ForecastNetwork(ForecastNetworkConfig("lstm", 1, 1, 0, horizon, season=season,
                                                             extra_seasons=extra_seasons, base_cycles=count)))
               for count in cycles}
    rows = {}
    for back in range(1, origins + 1):
        kept = [values for values in series if len(values) >= back * horizon + 2]
        histories = [values[:len(values) - back * horizon] for values in kept]
        actuals = [values[len(history):len(history) + horizon] for values, history in zip(kept, histories)]
        methods = panel_baselines(histories, horizon, season, ["naive2"])
        for count, (length, network) in readers.items():
            windows = PanelWindows([torch.as_tensor(history, dtype=torch.float64) for history in histories],
                                   length, horizon)
            history = windows.batch([(k, len(values)) for k, values in enumerate(histories)]).history[..., :1]
            methods[f"{count} cycle{'s' if count > 1 else ''}"] = network.base(history)[..., 0].numpy()
        scores = score_methods(methods, actuals, histories, season)
        rows[f"steps {-back * horizon} .. {-(back - 1) * horizon - 1}"] = {
            name: values["OWA"] for name, values in scores.items() if name != "naive2"}
    return pd.DataFrame(rows).T


def bases(arguments: argparse.Namespace) -> None:
    file, horizon, season = SUBSETS[arguments.subset]
    scores = base_scores(wide_to_long(Path(arguments.data) / file), horizon, season, arguments.extra_seasons,
                         arguments.cycles, arguments.origins)
    print(f"OWA of the base alone (no network), M4 {arguments.subset}, m = {season}, extra seasons "
          f"{', '.join(map(str, arguments.extra_seasons)) or 'none'}; rows: the steps held out from each series' end")
    print(scores.to_string(float_format="{:.3f}".format))


def print_scores(scores: pd.DataFrame) -> None:
    """A table of methods' sMAPE, MASE and OWA, one row per method."""
    width = max(26, *(len(method) + 2 for method in scores.index))
    print(f"{'method':<{width}}" + "".join(f"{metric:>9}" for metric in M4_METRICS))
    for method, row in scores.iterrows():
        print(f"{method:<{width}}" + "".join(f"{row[metric]:>9.3f}" for metric in M4_METRICS))


def convert(arguments: argparse.Namespace) -> None:
    table = wide_to_long(arguments.wide)
    table.to_csv(arguments.long, index=False)
    print(f"wrote {table['id'].nunique()} series, {len(table)} rows, to {arguments.long}")


def integers(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated integers."""
    return tuple(int(part) for part in text.split(","))


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", required=True)
    for subset in SUBSETS:
        runner = actions.add_parser(subset, help=f"backtest M4 {subset}")
        runner.add_argument("--data", default=str(DATA), help="the folder of the M4 files")
        runner.add_argument("--time-budget", type=float, default=300.0, help="training seconds")
        runner.add_argument("--epochs", type=float, help="train this many epochs (each of ForecasterConfig's "
                            "epoch_windows windows) instead, whatever the time: the same training on a fast or a slow "
                            "machine")
        runner.add_argument("--lookback", type=int, help="the encoder's; default 2 x max(horizon, m)")
        runner.add_argument("--extra-seasons", type=integers,
                            help="more periods the base may take per window (hourly: 168, a week)")
        runner.add_argument("--base-cycles", type=int, help="the base of the longest period is the median of its "
                            "last this many cycles (default: ForecasterConfig's)")
        runner.add_argument("--hidden-size", type=int, default=64)
        runner.add_argument("--normalisation",
                            help="each series' (default: ForecasterConfig's); several, comma-separated (standard,log), "
                                 "train a network per normalisation and average them")
        runner.add_argument("--ensemble", type=int, help="networks trained side by side (default 1)")
        runner.add_argument("--min-lr-fraction", type=float, help="where the cosine decay of the learning rate ends, "
                            "a fraction of the peak (default 1: constant)")
        runner.add_argument("--on-plateau", choices=PLATEAU_ACTIONS, help="when validation stalls: stop, or "
                            "anneal the rate to its floor first (default: ForecasterConfig's)")
        runner.add_argument("--ema-decay", type=float, help="average the weights (0.999: about the last 1,000 steps) "
                            "and forecast with the average (default: none)")
        runner.add_argument("--patience", type=lambda text: None if text == "none" else int(text),
                            help="epochs without a better validation loss before a network stops; none: train "
                                 "its whole share, keeping its best epoch (default: ForecasterConfig's)")
        runner.add_argument("--no-early-stopping", dest="early_stopping", action="store_false",
                            help="train on every window, the validation windows' too, and keep the last epoch")
        runner.add_argument("--forecasts-out", help="write the held-out forecasts to this CSV (for combine)")
        runner.add_argument("--dropout", type=float, help="between the layers and before the head "
                            "(default: ForecasterConfig's)")
        runner.add_argument("--weight-decay", type=float, help="AdamW's decoupled weight decay "
                            "(default: ForecasterConfig's)")
        runner.add_argument("--batch-size", type=int, help="windows per step (default: ForecasterConfig's)")
        runner.add_argument("--lr", type=float, help="the peak learning rate (default: ForecasterConfig's)")
        runner.add_argument("--distribution", choices=DISTRIBUTIONS, help="the head's (default: ForecasterConfig's)")
        runner.add_argument("--baselines", type=lambda text: text.split(","),
                            default=["naive", "seasonal_naive", "naive2", "theta", "ets"],
                            help="comma-separated (arima: ~100 s per hourly series, see ForecasterConfig)")
        runner.add_argument("--series", type=positive_int, help="only the first N series (a quick look)")
        runner.add_argument("--seed", type=int, default=0)
        runner.add_argument("--threads", type=positive_int,
                            help="torch's threads (1 is ~15x faster than 2 on a machine others load)")
        runner.set_defaults(run=run, subset=subset)
    combiner = actions.add_parser("combine", help="score the mean of several runs' networks (--forecasts-out files)")
    combiner.add_argument("subset", choices=SUBSETS)
    combiner.add_argument("forecasts", nargs="+", help="files written by --forecasts-out")
    combiner.add_argument("--data", default=str(DATA), help="the folder of the M4 files")
    combiner.set_defaults(run=combine)
    scorer = actions.add_parser("bases", help="score the network's base alone, at several origins")
    scorer.add_argument("subset", choices=SUBSETS)
    scorer.add_argument("--extra-seasons", type=integers, default=(), help="as for a run (hourly: 168)")
    scorer.add_argument("--cycles", type=integers, default=(1, 2, 3), help="the base cycles to compare (1,2,3)")
    scorer.add_argument("--origins", type=positive_int, default=6, help="horizons back from each series' end (6)")
    scorer.add_argument("--data", default=str(DATA), help="the folder of the M4 files")
    scorer.set_defaults(run=bases)
    converter = actions.add_parser("convert", help="an M4 wide file as a long table")
    converter.add_argument("wide")
    converter.add_argument("long")
    converter.set_defaults(run=convert)
    return parser


def main() -> None:
    commands = parser()
    arguments = commands.parse_args()
    try:
        arguments.run(arguments)
    except (ValueError, FileNotFoundError) as error:  # the library's checks name what was expected and got
        commands.exit(2, f"m4.py: error: {error}\n")


if __name__ == "__main__":
    main()
