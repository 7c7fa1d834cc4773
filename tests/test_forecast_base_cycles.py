"""The base of the longest period as the median of its last cycles (ForecastNetwork.base with
base_cycles): by hand, in the history each window holds, in the config's checks, and from the CLI
through a saved model."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import torch

from lstmkit.forecast import Forecaster
from lstmkit.models.forecaster import ForecastNetworkConfig
from lstmkit.pipelines.configs import ForecasterConfig
from lstmkit.pipelines.forecast import history_length
from test_forecast_seasons import QUICK, untrained, weekly_long_table

FUTURE = torch.zeros(1, 5, 0, dtype=torch.float64)


def base_of(values: list[float], **options) -> list[float]:
    """The forecast of an untrained network (its head outputs 0): its base, horizon 5."""
    history = torch.tensor(values, dtype=torch.float64)[None, :, None]
    return untrained(**options)(history, FUTURE)[0][0, :, 0].tolist()


def test_the_base_is_the_median_of_the_last_cycles_so_one_unusual_cycle_is_not_copied():
    # Three cycles of m = 4; the last one (a "holiday") is low. Cycle by cycle, the median of
    # (5, 9, 1), (6, 8, 0), (7, 7, 2), (8, 6, 1) is 5, 6, 7, 6; the fifth step wraps to the first.
    history = [5.0, 6, 7, 8, 9, 8, 7, 6, 1, 0, 2, 1]
    assert base_of(history, season=4, base_cycles=3) == [5.0, 6, 7, 6, 5]
    assert base_of(history, season=4) == [1.0, 0, 2, 1, 1]  # seasonal naive copies the holiday
    # Two cycles: the mean of the middle two, here of the last two cycles.
    assert base_of(history, season=4, base_cycles=2) == [5.0, 4, 4.5, 3.5, 5]


def test_with_extra_seasons_the_median_is_of_the_longest_period_and_the_choice_compares_one_cycle():
    # Period 4 forecast the last four steps (1 5 3 8) from the four before them (1 5 2 6) with an
    # error of 0 + 0 + 1 + 2 = 3; period 2 (steps 6, 7 repeated: 2 6 2 6) with 1 + 1 + 1 + 2 = 5.
    # So the base is the median of the last cycles of 4: of two, the means of 1|1, 5|5, 2|3, 6|8;
    # of three, the medians of 5|1|1, 3|5|5, 1|2|3, 2|6|8.
    history = [5.0, 3, 1, 2, 1, 5, 2, 6, 1, 5, 3, 8]
    assert base_of(history, season=2, extra_seasons=(4,), base_cycles=2) == [1.0, 5, 2.5, 7, 1]
    assert base_of(history, season=2, extra_seasons=(4,), base_cycles=3) == [1.0, 5, 2, 6, 1]
    # Period 2 chosen (the last four steps alternate): its forecast stays one cycle, the last.
    history = [5.0, 3, 1, 2, 9, 9, 9, 9, 1, 2, 1, 2]
    assert base_of(history, season=2, extra_seasons=(4,), base_cycles=3) == [1.0, 2, 1, 2, 1]


def test_the_last_value_stays_the_last_value():
    assert base_of([4.0, 1, 7], season=1, base_cycles=3) == [7.0] * 5


def test_a_history_shorter_than_the_cycles_is_refused():
    with pytest.raises(ValueError, match=re.escape("the seasonal-naive base needs a lookback of at least 3 x 4 = 12 "
                                                   "(the median of 3 cycles of m = 4) steps, got a history of 11")):
        base_of([1.0] * 11, season=4, base_cycles=3)
    with pytest.raises(ValueError, match="base_cycles must be at least 1, got 0"):
        ForecastNetworkConfig("lstm", 1, 1, 0, 5, base_cycles=0)


@pytest.mark.parametrize("value", [0, 2.0, -1])
def test_base_cycles_is_checked_when_the_config_is_built(value):
    with pytest.raises(ValueError, match=re.escape(f"base_cycles must be a positive integer, got {value!r}")):
        ForecasterConfig(time="t", target="y", horizon=3, base_cycles=value)


def test_a_bool_base_cycles_is_refused_as_not_a_number():
    with pytest.raises(TypeError, match=re.escape("base_cycles must be an integer or None, got True (bool)")):
        ForecasterConfig(time="t", target="y", horizon=3, base_cycles=True)


@pytest.mark.parametrize("season, extra, cycles, expected", [(2, (), 1, 6), (2, (), 3, 6), (2, (), 4, 8),
                                                             (2, (6,), 2, 12), (2, (6,), 3, 18), (1, (), 9, 6)])
def test_each_window_holds_the_cycles_of_the_longest_period(season, extra, cycles, expected):
    config = ForecasterConfig(time="t", target="y", horizon=3, extra_seasons=extra, base_cycles=cycles)
    assert history_length(config, season) == expected  # the encoder's default: 2 x max(horizon 3, m)


def test_the_default_is_two_cycles_with_extra_seasons_and_one_without():
    assert ForecasterConfig(time="t", target="y", horizon=3, extra_seasons=(6,)).base_cycles == 2
    assert ForecasterConfig(time="t", target="y", horizon=3, extra_seasons=[6]).base_cycles == 2
    assert ForecasterConfig(time="t", target="y", horizon=3).base_cycles == 1


def test_the_cli_trains_a_base_of_cycles_that_a_saved_model_keeps(tmp_path, capsys):
    from lstmkit.cli import main

    path = tmp_path / "long.csv"
    weekly_long_table().to_csv(path, index=False)
    main(["forecast", "fit", str(path), "--id", "id", "--time", "t", "--target", "y", "--horizon", "3",
          "--season", "3", "--extra-seasons", "12", "--base-cycles", "3", "--epochs", "1", "--hidden-size", "8",
          "--baselines", "naive", "--out", str(tmp_path / "model")])
    assert ("the network corrects the closest seasonal-naive forecast of m=3, 12, per window (the median of the last "
            "3 cycles of m=12 where m=12 is chosen)") in capsys.readouterr().out
    loaded = Forecaster.load(tmp_path / "model" / "model")
    assert (loaded.network.config.base_cycles, loaded.layout.lookback) == (3, 36)


def test_a_model_with_a_base_of_cycles_saves_and_predicts_with_it(tmp_path):
    table = weekly_long_table()
    forecaster = Forecaster("t", "y", horizon=3, id="id", season=3, extra_seasons=(12,), base_cycles=2,
                            **QUICK).fit(table)
    assert (forecaster.network.config.base_cycles, forecaster.layout.lookback) == (2, 24)
    loaded = Forecaster.load(forecaster.save(tmp_path / "model"))
    assert loaded.network.config == forecaster.network.config
    pd.testing.assert_frame_equal(loaded.predict(table), forecaster.predict(table))


def test_a_model_saved_before_base_cycles_loads_with_its_base_of_one_cycle(tmp_path):
    table = weekly_long_table()
    forecaster = Forecaster("t", "y", horizon=3, id="id", season=3, extra_seasons=(12,), base_cycles=1, **QUICK)
    forecaster.fit(table).save(tmp_path / "model")
    expected = forecaster.predict(table)
    path = tmp_path / "model" / "config.json"
    saved = json.loads(path.read_text())
    del saved["forecaster"]["base_cycles"], saved["network"]["base_cycles"]
    path.write_text(json.dumps(saved))
    loaded = Forecaster.load(tmp_path / "model")
    assert (loaded.config.base_cycles, loaded.network.config.base_cycles) == (1, 1)  # not the default 2 of today
    pd.testing.assert_frame_equal(loaded.predict(table), expected)


def test_a_run_begun_before_base_cycles_resumes_only_on_its_base_of_one_cycle(tmp_path, monkeypatch):
    from helpers import Killed
    from lstmkit.pipelines.forecast_report import backtest_then_refit
    from test_forecast_resume import dies_in_network

    path = tmp_path / "long.csv"
    weekly_long_table().to_csv(path, index=False)
    settings = dict(id="id", horizon=3, season=3, extra_seasons=(12,), baselines=("naive",), **QUICK)
    dies_in_network(monkeypatch, network=2, step=1)  # in the refit: the backtest's run has finished
    with pytest.raises(Killed):
        backtest_then_refit(Forecaster("t", "y", base_cycles=1, **settings), path, tmp_path / "run")
    monkeypatch.undo()
    for config in (tmp_path / "run" / "training").rglob("last/config.json"):  # as a run saved before the setting
        saved = json.loads(config.read_text())
        del saved["training"]["base_cycles"]
        config.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=re.escape("was trained with other settings; --resume needs the same ones "
                                                   "(base_cycles: 1 in the run, 2 now)")):
        backtest_then_refit(Forecaster("t", "y", **settings), path, tmp_path / "run", resume=True)
    resumed = backtest_then_refit(Forecaster("t", "y", base_cycles=1, **settings), path, tmp_path / "run", resume=True)
    assert resumed.final.network.config.base_cycles == 1
