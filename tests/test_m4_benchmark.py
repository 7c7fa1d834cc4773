"""benchmarks/m4.py: the forecaster its command line builds, and combine: several runs' networks and
their mean, scored as the backtest scores them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "m4.py"
spec = importlib.util.spec_from_file_location("m4_benchmark", SCRIPT)
m4 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m4)

# Two series of six values, the last two of each held out (m = 1).
TABLE = pd.DataFrame({"id": ["W1"] * 6 + ["W2"] * 6, "t": list(range(1, 7)) * 2,
                      "y": [10.0, 12, 11, 13, 12, 14, 5, 5, 6, 6, 7, 7]})


def run(model: list[float], actual: tuple[float, ...] = (12.0, 14, 7, 7)) -> pd.DataFrame:
    return pd.DataFrame({"id": ["W1", "W1", "W2", "W2"], "t": [5, 6, 5, 6], "actual": list(actual), "model": model,
                         "naive2": [13.0, 13, 6, 6]})


def test_each_run_and_their_mean_are_scored_by_m4s_definitions():
    scores = m4.combined_scores({"a": run([12.0, 12, 7, 6]), "b": run([12.0, 16, 7, 8])}, TABLE, season=1)
    # The histories' mean absolute one-step changes (MASE's scales): W1 (2 + 1 + 2) / 3, W2 (0 + 1 + 0) / 3.
    scale = {"W1": 5 / 3, "W2": 1 / 3}
    naive2_smape = ((200 / 25 + 200 / 27) / 2 + 200 / 13) / 2
    naive2_mase = (1 / scale["W1"] + 1 / scale["W2"]) / 2
    a_smape, b_smape = (200 * 2 / 26 / 2 + 200 / 13 / 2) / 2, (200 * 2 / 30 / 2 + 200 / 15 / 2) / 2
    mase = (1 / scale["W1"] + 0.5 / scale["W2"]) / 2  # both runs miss W1 by 2 once and W2 by 1 once
    expected = pd.DataFrame({"sMAPE": [a_smape, b_smape, 0.0, naive2_smape], "MASE": [mase, mase, 0.0, naive2_mase],
                             "OWA": [(a_smape / naive2_smape + mase / naive2_mase) / 2,
                                     (b_smape / naive2_smape + mase / naive2_mase) / 2, 0.0, 1.0]},
                            index=["model of a", "model of b", "their mean", "naive2"])  # the mean is exact
    pd.testing.assert_frame_equal(scores.astype(float), expected, rtol=1e-12)


def test_runs_on_other_held_out_values_are_refused():
    with pytest.raises(ValueError, match="b holds other series, times or actual values than a; combine the forecasts "
                                         "of runs on the same data and holdout"):
        m4.combined_scores({"a": run([12.0, 12, 7, 6]), "b": run([12.0, 16, 7, 8], actual=(12.0, 14, 7, 8))},
                           TABLE, season=1)


def test_the_command_line_trains_for_a_time_budget_or_for_epochs_whatever_the_time():
    timed = m4.forecaster_from(m4.parser().parse_args(["hourly", "--time-budget", "1410"])).config
    assert (timed.time_budget, timed.epochs, timed.horizon, timed.season) == (1410.0, None, 48, 24)
    counted = m4.forecaster_from(m4.parser().parse_args(
        ["hourly", "--time-budget", "1410", "--epochs", "300", "--weight-decay", "0.05", "--no-early-stopping"])).config
    assert (counted.time_budget, counted.epochs, counted.weight_decay, counted.early_stopping) == (None, 300, 0.05, False)
    assert m4.forecaster_from(m4.parser().parse_args(["weekly"])).config.weight_decay == 1e-4  # ForecasterConfig's
    assert (m4.budget(timed), m4.budget(counted)) == ("1410 s", "300 epochs")
    with pytest.raises(ValueError, match="epochs"):  # 0 is refused, not read as "no --epochs"
        m4.forecaster_from(m4.parser().parse_args(["hourly", "--epochs", "0"]))


def test_the_command_line_sets_the_cycles_of_the_base():
    arguments = m4.parser().parse_args(["hourly", "--extra-seasons", "168", "--base-cycles", "2"])
    config = m4.forecaster_from(arguments).config
    assert (config.extra_seasons, config.base_cycles) == ((168,), 2)
    default = m4.forecaster_from(m4.parser().parse_args(["hourly", "--extra-seasons", "168"])).config
    assert default.base_cycles == 2  # ForecasterConfig's, with extra seasons
    assert m4.forecaster_from(m4.parser().parse_args(["hourly"])).config.base_cycles == 1


def test_the_base_alone_is_scored_at_each_origin_by_hand():
    # m = 2; before the last two values, the last cycle (0 0) is a "holiday": one cycle copies
    # it, the median of three (0 0, 1 5, 2 5) does not. One horizon further back, both are 1 5.
    table = pd.DataFrame({"id": ["a"] * 10, "t": range(1, 11), "y": [1.0, 5, 2, 5, 1, 5, 0, 0, 1, 5]})
    scores = m4.base_scores(table, 2, 2, (), [1, 3], 2)
    assert list(scores.index) == ["steps -2 .. -1", "steps -4 .. -3"]
    values = table["y"].to_numpy()
    for row, cut, bases in (("steps -2 .. -1", 8, {"1 cycle": [0.0, 0], "3 cycles": [1.0, 5]}),
                            ("steps -4 .. -3", 6, {"1 cycle": [1.0, 5], "3 cycles": [1.0, 5]})):
        history, actual = values[:cut], values[cut:cut + 2]
        methods = {**m4.panel_baselines([history], 2, 2, ["naive2"]),
                   **{name: np.array([forecast]) for name, forecast in bases.items()}}
        expected = m4.score_methods(methods, [actual], [history], 2)
        assert scores.loc[row].to_dict() == pytest.approx({name: expected[name]["OWA"] for name in bases}, abs=1e-12)
    assert scores.loc["steps -2 .. -1", "3 cycles"] == 0.0
