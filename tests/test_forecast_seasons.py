"""Extra seasonal periods: the base takes, per window, the period whose seasonal naive
forecast the window's own latest steps best (ForecastNetwork.base), the encoder reads only its
lookback of the longer history, and the settings reach the network from the config and CLI."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch

from lstmkit.forecast import Forecaster
from lstmkit.models.forecaster import ForecastNetwork, ForecastNetworkConfig
from lstmkit.pipelines.configs import ForecasterConfig
from lstmkit.pipelines import forecast
from lstmkit.pipelines.forecast import history_length

QUICK = dict(hidden_size=8, num_layers=1, epochs=2, batch_size=32, seed=0)


def untrained(**options) -> ForecastNetwork:
    """A network whose head outputs zero: its forecast is its base."""
    torch.manual_seed(0)
    network = ForecastNetwork(ForecastNetworkConfig("lstm", 1, 1, 0, 5, hidden_size=8, num_layers=1,
                                                    **options)).double().eval()
    torch.nn.init.zeros_(network.head[-1].weight)
    torch.nn.init.zeros_(network.head[-1].bias)
    return network


def test_each_window_takes_the_period_that_forecast_its_latest_steps_best_by_hand():
    network = untrained(season=2, extra_seasons=(4,))
    history = torch.tensor([
        # Period 4: forecasting steps 4-7 from steps 0-3, period 4 is exact; period 2 (steps
        # 2, 3 repeated: 2 7 2 7) misses by 1 + 2 = 3. Base: steps 4-7 repeated.
        [1.0, 5, 2, 7, 1, 5, 2, 7],
        # Period 2 (3 8 3 8) misses steps 4-7 (3 8 4 9) by 2, period 4 (0 0 3 8) by 13. Base: steps 6, 7 repeated.
        [0.0, 0, 3, 8, 3, 8, 4, 9],
    ], dtype=torch.float64)[..., None]
    mean, _ = network(history, torch.zeros(2, 5, 0, dtype=torch.float64))
    torch.testing.assert_close(mean[..., 0], torch.tensor([[1.0, 5, 2, 7, 1], [4.0, 9, 4, 9, 4]],
                                                         dtype=torch.float64), rtol=0, atol=0)


def test_a_history_shorter_than_two_of_the_longest_periods_is_refused():
    with pytest.raises(ValueError, match=r"choosing the base among the periods 2, 4 needs a history of at least "
                                         r"2 x 4 = 8 steps, got 7"):
        untrained(season=2, extra_seasons=(4,))(torch.zeros(1, 7, 1), torch.zeros(1, 5, 0))
    with pytest.raises(ValueError, match=r"extra_seasons must be periods of at least 2 steps, got \(1,\)"):
        ForecastNetworkConfig("lstm", 1, 1, 0, 5, extra_seasons=(1,))


def test_the_encoder_reads_only_its_latest_steps_of_the_history():
    network = untrained(season=1, encoder_steps=3)
    torch.nn.init.normal_(network.head[-1].weight)  # the encoder's state now moves the forecast
    history = torch.randn(1, 6, 1, dtype=torch.float64)
    future = torch.zeros(1, 5, 0, dtype=torch.float64)
    mean = network(history, future)[0]
    earlier = history.clone()
    earlier[:, :3] += 1.0  # before the encoder's three steps, and not the base's (the last value)
    torch.testing.assert_close(network(earlier, future)[0], mean, rtol=0, atol=0)
    read = history.clone()
    read[:, 3] += 1.0
    assert not torch.allclose(network(read, future)[0], mean)


@pytest.mark.parametrize("lookback, extra, expected", [(None, (), 6), (None, (6,), 12), (20, (6,), 20), (4, (), 4)])
def test_each_window_holds_the_encoders_lookback_or_two_of_the_longest_period(lookback, extra, expected):
    config = ForecasterConfig(time="t", target="y", horizon=3, lookback=lookback, extra_seasons=extra)
    assert history_length(config, 2) == expected  # the encoder's default: 2 x max(horizon 3, m 2)


@pytest.mark.parametrize("extra, shown", [((1,), "(1,)"), ((4, True), "(4, True)"), ((2.5,), "(2.5,)"),
                                          (24.0, "(24.0,)"), (None, "(None,)"), ("24,x", "(24, 'x')")])
def test_extra_seasons_are_checked_when_the_config_is_built(extra, shown):
    """A float or None ended in "'float' object is not iterable"; "24" was read as (2, 4)."""
    assert ForecasterConfig(time="t", target="y", horizon=3, extra_seasons="24, 168").extra_seasons == (24, 168)
    with pytest.raises(ValueError, match=re.escape(f"extra_seasons must be periods of at least 2 steps, got {shown}")):
        ForecasterConfig(time="t", target="y", horizon=3, extra_seasons=extra)
    for season, said, extra in ((11, "m = 11", (11, 22)), (None, "m", (168, 168))):
        with pytest.raises(ValueError, match=re.escape(f"extra_seasons are periods besides season ({said}), "
                                                       f"each once; got {extra!r}")):
            ForecasterConfig(time="t", target="y", horizon=3, season=season, extra_seasons=extra)


def test_an_extra_season_that_is_the_frequencys_m_is_refused_at_the_fit():
    """It was refused where m was given, and taken where m came from the frequency: the period
    listed twice."""
    days = pd.date_range("2024-01-01", periods=60, freq="D").strftime("%Y-%m-%d")
    table = pd.DataFrame({"t": days, "y": np.sin(np.arange(60.0))})
    with pytest.raises(ValueError, match=re.escape("extra_seasons are periods besides season (m = 7, that of the "
                                                   "data's frequency D); got (7,): leave 7 out")):
        Forecaster("t", "y", horizon=3, extra_seasons=(7,), **QUICK).fit(table)


def weekly_long_table() -> pd.DataFrame:
    generator = np.random.default_rng(3)
    day = np.array([1.0, 3, 2])  # m = 3, and every fourth "day" is higher: a period of 12
    series = {}
    for name, level in (("a", 10.0), ("b", 40.0)):
        steps = np.arange(72)
        series[name] = level + np.tile(day, 24) + 5.0 * ((steps // 3) % 4 == 0) + 0.1 * generator.standard_normal(72)
    return pd.DataFrame({"id": np.repeat(list(series), 72), "t": np.tile(np.arange(1, 73), 2),
                         "y": np.concatenate(list(series.values()))})


def test_a_long_table_with_an_extra_season_trains_saves_and_predicts_with_it(tmp_path):
    table = weekly_long_table()
    forecaster = Forecaster("t", "y", horizon=3, id="id", season=3, extra_seasons=(12,), **QUICK).fit(table)
    config = forecaster.network.config
    assert (config.season, config.extra_seasons, config.encoder_steps) == (3, (12,), 6)
    assert forecaster.layout.lookback == 24  # 2 x 12 steps of history; the encoder reads 2 x max(3, 3)
    loaded = Forecaster.load(forecaster.save(tmp_path / "model"))
    assert loaded.network.config == config
    pd.testing.assert_frame_equal(loaded.predict(table), forecaster.predict(table))


def test_the_cli_reads_extra_seasons(tmp_path, capsys):
    from lstmkit.cli import main

    path = tmp_path / "long.csv"
    weekly_long_table().to_csv(path, index=False)
    main(["forecast", "backtest", str(path), "--id", "id", "--time", "t", "--target", "y", "--horizon", "3",
          "--season", "3", "--extra-seasons", "12", "--epochs", "1", "--hidden-size", "8", "--baselines", "naive"])
    assert "the network corrects the closest seasonal-naive forecast of m=3, 12, per window" in capsys.readouterr().out


def test_one_table_with_an_extra_season_holds_its_history_and_takes_the_period_that_repeats():
    series = weekly_long_table().query("id == 'a'")
    table = pd.DataFrame({"day": pd.date_range("2024-01-01", periods=72, freq="D").strftime("%Y-%m-%d"),
                          "y": series["y"].to_numpy()})
    forecaster = Forecaster("day", "y", horizon=3, season=3, extra_seasons=(12,), base="seasonal", calendar=False,
                            **QUICK).fit(table)
    config = forecaster.network.config
    assert (config.season, config.extra_seasons, config.encoder_steps, forecaster.layout.lookback) == (3, (12,), 6, 24)
    frame = forecaster.read(table)
    history = torch.as_tensor(forecaster.layout.target_scaler.transform(frame.targets[-24:]))[None]
    base = forecaster.network.base(history)  # what the head corrected, in the data's units:
    # m = 12 won, and its base is the median of the last two weeks of 12 days (the default
    # with extra seasons): the mean of days 48-50 and 60-62.
    values = series["y"].to_numpy()
    np.testing.assert_allclose(forecaster.layout.target_scaler.inverse(base.numpy())[0, :, 0],
                               (values[[48, 49, 50]] + values[[60, 61, 62]]) / 2, rtol=1e-12)


def test_the_last_value_base_takes_no_extra_season_and_one_of_period_one_takes_them(monkeypatch):
    """Base "last" was built with the extra seasons, so it chose among 1 and 12 as the seasonal
    base did, and results.json called it the last value; a series of m = 1 with extra seasons
    trained only that "last" network."""
    built = []
    real = forecast.build_forecast_network
    monkeypatch.setattr(forecast, "build_forecast_network", lambda config: built.append(config) or real(config))
    series = weekly_long_table().query("id == 'a'")["y"].to_numpy()
    table = pd.DataFrame({"t": np.arange(1, 73), "y": series})
    Forecaster("t", "y", horizon=3, season=3, extra_seasons=(12,), **QUICK).fit(table)
    assert [(config.season, config.extra_seasons) for config in built] == [(3, (12,)), (1, ())]
    built.clear()
    forecaster = Forecaster("t", "y", horizon=3, season=1, extra_seasons=(12,), **QUICK).fit(table)
    assert [(config.season, config.extra_seasons) for config in built] == [(1, (12,)), (1, ())]
    assert forecaster.base == ("seasonal" if forecaster.network.config.extra_seasons else "last")
    with pytest.raises(ValueError, match=re.escape(
            "extra_seasons (--extra-seasons) are periods the seasonal base may take; base 'last' corrects the last "
            "value: give base 'seasonal' or 'auto' with them, got extra_seasons=(12,) with base 'last'")):
        Forecaster("t", "y", horizon=3, extra_seasons=(12,), base="last")
