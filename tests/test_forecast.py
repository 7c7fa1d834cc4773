"""The forecaster: it learns, its backtest scores what it should, it saves, loads and predicts."""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import assert_keeps_random_state
from lstmkit.forecast import Forecaster
from lstmkit.models.forecaster import (
    ForecastEnsemble,
    ForecastNetwork,
    ForecastNetworkConfig,
    interval_half_width,
    negative_log_likelihood,
)
from lstmkit.pipelines.configs import baseline_names
from lstmkit.series import baseline_forecast, read_series
from lstmkit.series.frame import MissingValuesWarning

QUICK = dict(hidden_size=16, num_layers=1, epochs=3, batch_size=64, seed=0)


def sine_table(rows: int = 300, period: int = 20) -> pd.DataFrame:
    steps = np.arange(rows)
    return pd.DataFrame({"day": pd.date_range("2024-01-01", periods=rows, freq="D").strftime("%Y-%m-%d"),
                         "signal": np.sin(2 * np.pi * steps / period),
                         "trend": 5 + 0.01 * steps + np.cos(2 * np.pi * steps / period)})


@pytest.fixture(scope="module")
def sine_backtest():
    forecaster = Forecaster("day", "signal", horizon=5, lookback=30, season=20, hidden_size=32, num_layers=1,
                            epochs=60, patience=60, batch_size=32, lr=3e-3, dropout=0.0, calendar=False)
    return forecaster.backtest(sine_table(), holdout=20, baselines=("naive", "seasonal_naive", "drift"))


def test_the_model_learns_a_noiseless_sine(sine_backtest):
    assert sine_backtest.scores.loc["model", "MAE"] < 0.03
    assert sine_backtest.scores.loc["seasonal_naive", "MAE"] < 1e-12  # the period is exactly 20


def test_the_backtest_forecasts_every_held_out_row_once_from_origins_a_horizon_apart(sine_backtest):
    forecasts = sine_backtest.forecasts
    assert sine_backtest.holdout == 20
    times = pd.date_range("2024-01-01", periods=300, freq="D")
    assert forecasts["time"].tolist() == [stamp.date().isoformat() for stamp in times[280:]]
    assert forecasts["origin"].unique().tolist() == [times[origin].date().isoformat() for origin in range(280, 300, 5)]
    series = sine_table()["signal"].to_numpy()
    np.testing.assert_array_equal(forecasts["actual"], series[280:])
    assert sine_backtest.model.layout.target_scaler.mean.tolist() == pytest.approx([series[:280].mean()], rel=1e-12)
    for origin in range(280, 300, 5):
        rows = forecasts.iloc[origin - 280:origin - 275]
        np.testing.assert_array_equal(rows["drift"], baseline_forecast("drift", series[:origin], 5, 20))
    tolerance = 1e-12  # seasonal naive, exact here, may be chosen: its calibrated interval has no width
    assert ((forecasts["chosen_lower"] <= forecasts["chosen"] + tolerance)
            & (forecasts["chosen"] <= forecasts["chosen_upper"] + tolerance)).all()
    curve = sine_backtest.model.curve
    assert sine_backtest.model.best_epoch == min(curve, key=lambda point: point["val_loss"])["epoch"]


def test_the_rollout_from_an_origin_inside_the_table_is_the_one_it_gives_among_others(sine_backtest):
    """forecast_origins([150]) failed: its windows were cut for 155 rows of the table's 300."""
    model = sine_backtest.model
    frame = model.read(sine_table())
    alone, among = model.forecast_origins(frame, [150]), model.forecast_origins(frame, [150, 295])
    np.testing.assert_allclose(alone.mean[0], among.mean[0], rtol=1e-5, atol=1e-6)  # float32 in batches of 1 and 2
    np.testing.assert_allclose(alone.upper[0], among.upper[0], rtol=1e-5, atol=1e-6)


def test_backtest_scores_match_the_forecasts_they_come_from(sine_backtest):
    forecasts, scores = sine_backtest.forecasts, sine_backtest.scores
    error = (forecasts["naive"] - forecasts["actual"]).abs()
    assert scores.loc["naive", "MAE"] == pytest.approx(error.mean())
    assert scores.loc["naive", "RMSE"] == pytest.approx(np.sqrt((error ** 2).mean()))
    history = sine_table()["signal"].to_numpy()[:280]
    assert scores.loc["naive", "MASE"] == pytest.approx(error.mean() / np.abs(history[20:] - history[:-20]).mean())
    inside = (forecasts["actual"] >= forecasts["chosen_lower"]) & (forecasts["actual"] <= forecasts["chosen_upper"])
    assert sine_backtest.coverage == pytest.approx(inside.mean())


def test_several_targets_are_scored_each_and_averaged():
    result = Forecaster("day", "signal,trend", horizon=5, lookback=20, **QUICK).backtest(
        sine_table(120), holdout=10, baselines=("naive",))
    assert set(result.per_target) == {"signal", "trend"}
    expected = (result.per_target["signal"] + result.per_target["trend"]) / 2
    pd.testing.assert_frame_equal(result.scores, expected)
    assert result.forecasts["target"].tolist() == ["signal"] * 10 + ["trend"] * 10
    # the baselines of --baselines the backtest does not score are written, so that the combination,
    # and a chosen baseline, can be rebuilt from backtest.csv (reportcheck)
    assert result.scores.index.tolist() == ["model", "naive", "combination", "chosen"]
    rows = result.forecasts
    assert {"seasonal_naive", "naive2", "theta", "ets"} <= set(rows.columns)
    np.testing.assert_allclose(rows["combination"], rows[["model", "theta", "ets"]].mean(axis=1), rtol=1e-12)
    from lstmkit.pipelines.forecast_report import backtest_report

    lines = backtest_report(result, read_series(sine_table(120), "day", ["signal", "trend"])).splitlines()
    assert lines[1] == "mean over the targets (MAE and RMSE mix their units; sMAPE and MASE do not):"
    trend = lines.index("trend:")
    assert lines[trend + 2].split()[:2] == ["model", "(lstm)"]
    assert float(lines[trend + 2].split()[2].rstrip("*")) == pytest.approx(
        result.per_target["trend"].loc["model", "MAE"], rel=1e-3)


def test_a_saved_forecaster_predicts_the_same_after_loading(tmp_path):
    table = sine_table(120)
    forecaster = Forecaster("day", "signal", horizon=4, lookback=12, covariates="trend", **QUICK).fit(table)
    forecaster.save(tmp_path / "model")
    loaded = Forecaster.load(tmp_path / "model")
    prediction = forecaster.predict(table)
    pd.testing.assert_frame_equal(loaded.predict(table), prediction)
    assert prediction.columns.tolist() == ["day", "signal", "signal_lower_90", "signal_upper_90"]
    assert prediction["day"].tolist() == ["2024-04-30", "2024-05-01", "2024-05-02", "2024-05-03"]
    assert (prediction["signal_lower_90"] < prediction["signal"]).all()
    pd.testing.assert_frame_equal(loaded.predict(table, horizon=2), prediction.head(2))  # darts' predict(n)
    with pytest.raises(ValueError, match=re.escape(
            "horizon must be an integer from 1 to the fitted horizon, 4 (a longer one needs a fit with that horizon), "
            "got 5")):
        loaded.predict(table, horizon=5)
    loaded.config = replace(loaded.config, interval=0.995)  # its columns once said 100
    wider = loaded.predict(table)
    assert wider.columns.tolist() == ["day", "signal", "signal_lower_99.5", "signal_upper_99.5"]
    assert (wider["signal_lower_99.5"] < prediction["signal_lower_90"]).all()
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["kind"] == "forecaster" and saved["layout"]["lookback"] == 12 and saved["layout"]["season"] == 7
    for dtype, tolerance in ((torch.float64, 1e-5), (torch.bfloat16, 0.1)):  # predict stopped: "convert the input"
        loaded.network.to(dtype)
        np.testing.assert_allclose(loaded.predict(table)["signal"], prediction["signal"], atol=tolerance)


@pytest.mark.parametrize("zone", [None, "America/New_York"], ids=["naive", "in-a-zone"])
def test_a_dataframe_of_timestamps_gets_its_forecasts_as_timestamps(zone):
    """"Written back in the same form": a DataFrame whose time column holds pandas timestamps
    (in a time zone or not) gets timestamps back, which join onto it; text stays text."""
    table = sine_table(60)
    table["day"] = pd.to_datetime(table["day"]).dt.tz_localize(zone)
    prediction = Forecaster("day", "signal", horizon=3, lookback=12, **QUICK).fit(table).predict(table)
    expected = pd.date_range("2024-03-01", periods=3, freq="D", tz=zone)
    assert prediction["day"].tolist() == list(expected) and prediction["day"].dtype == expected.dtype
    joined = pd.concat([table, prediction.rename(columns={"signal": "forecast"})])
    assert joined["day"].dtype == expected.dtype


@pytest.mark.parametrize("frequency, rows, lookback", [("MS", [-2, -1], 2), ("B", [-6, -5, -3, -2, -1], 5),
                                                        ("W-SUN", [-5, -3, -2, -1], 4)])
def test_predict_reads_its_rows_on_the_grid_fitted_on(frequency, rows, lookback):
    """predict inferred the frequency afresh from the rows it was given: two months were too
    few to infer one, business days Wed-Fri, Tue-Wed read as daily, and weeks with one missing
    as irregular, though each is lookback rows on the fitted grid."""
    times = pd.date_range("2020-01-01", periods=80, freq=frequency)
    table = pd.DataFrame({"t": times.strftime("%Y-%m-%d"), "y": np.sin(np.arange(80.0))})
    forecaster = Forecaster("t", "y", horizon=2, lookback=lookback, season=2, **QUICK).fit(table)
    tail = table.iloc[[80 + row for row in rows]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingValuesWarning)  # the rows between, filled
        prediction = forecaster.predict(tail)
    assert prediction["t"].tolist() == list(pd.date_range(times[-1], periods=3, freq=frequency)[1:]
                                             .strftime("%Y-%m-%d"))


def test_predict_warns_when_the_data_lie_far_from_what_the_model_was_fitted_on():
    table = sine_table(120)
    forecaster = Forecaster("day", "signal", horizon=4, lookback=12, **QUICK).fit(table)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        forecaster.predict(table)
    scaler = forecaster.layout.target_scaler
    moved = table.assign(signal=table["signal"] + 100)
    distance = np.abs((moved["signal"].to_numpy()[-12:] - scaler.mean[0]) / scaler.std[0]).max()
    with pytest.warns(UserWarning, match=re.escape(
            f"the last 12 values of 'signal' lie up to {distance:.3g} standard deviations from the mean of the data "
            f"the model was fitted on ({scaler.mean[0]:.4g}, standard deviation {scaler.std[0]:.4g}): its forecast "
            "extrapolates, and its interval's width is that of the fitted data's scale; refit on data like these")):
        forecaster.predict(moved)


def test_predict_warns_when_the_model_was_fitted_on_a_constant_and_the_data_are_not():
    """A constant target scales by std 0, which maps every output back to the constant: the
    forecast ignores the data, whatever they hold (the distance test above never fired)."""
    table = sine_table(120)
    with pytest.warns(UserWarning, match="hold one value in all 120 rows fitted on"):
        forecaster = Forecaster("day", "signal", horizon=4, lookback=12, **QUICK).fit(table.assign(signal=0.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (forecaster.predict(table.assign(signal=0.0))["signal"] == 0.0).all()
    with pytest.warns(UserWarning, match=re.escape(
            "the model was fitted on a constant 'signal' (0), so it forecasts 0 whatever it reads, and the last 12 "
            "values differ from it; refit on data like these")):
        assert (forecaster.predict(table)["signal"] == 0.0).all()


def saved_by_an_older_version(tmp_path, settings_then) -> Forecaster:
    """A fitted forecaster saved, its settings edited by `settings_then` (as an older version
    wrote them), loaded back: it forecasts as before the edit."""
    table = sine_table(120)
    Forecaster("day", "signal", horizon=4, lookback=12, **QUICK).fit(table).save(tmp_path / "model")
    path = tmp_path / "model" / "config.json"
    saved = json.loads(path.read_text())
    expected = Forecaster.load(tmp_path / "model").predict(table)
    path.write_text(json.dumps({**saved, "forecaster": settings_then(saved["forecaster"])}))
    loaded = Forecaster.load(tmp_path / "model")
    pd.testing.assert_frame_equal(loaded.predict(table), expected)
    return loaded


def test_a_forecaster_saved_under_the_old_setting_names_loads(tmp_path):
    """Before the training core the settings were hidden, layers and batch, with no device."""
    old_names = {"hidden_size": "hidden", "num_layers": "layers", "batch_size": "batch"}
    new_fields = ("steps", "warmup", "min_lr_fraction", "eval_every", "device", "precision", "distribution")
    loaded = saved_by_an_older_version(tmp_path, lambda settings: {
        old_names.get(name, name): value for name, value in settings.items() if name not in new_fields})
    assert (loaded.config.hidden_size, loaded.config.num_layers, loaded.config.batch_size) == (16, 1, 64)


def test_a_refit_saved_with_settings_of_validation_that_did_not_act_loads(tmp_path):
    """fit's refit kept the user's patience, anneal and nt-asgd (which never began averaging),
    which early_stopping=False now refuses, and a "last" base with extra seasons, which it took:
    the models it saved load, as what they were."""
    loaded = saved_by_an_older_version(tmp_path, lambda settings: {
        **settings, "early_stopping": False, "patience": 3, "on_plateau": "anneal", "min_lr_fraction": 0.1,
        "optimizer": "nt-asgd", "asgd_patience": 2, "lr": 0.1, "base": "last", "extra_seasons": [11]})
    config = loaded.config
    assert (config.early_stopping, config.patience, config.on_plateau, config.optimizer, config.asgd_patience) == \
        (False, 50, "stop", "sgd", 5)
    assert (config.base, config.extra_seasons) == ("seasonal", (11,))  # its "last" network took them


def test_a_forecaster_saved_with_the_eval_every_it_ignored_loads(tmp_path):
    """Versions that took eval_every (and evaluated each epoch all the same) saved it."""
    loaded = saved_by_an_older_version(tmp_path, lambda settings: {**settings, "eval_every": 100})
    assert loaded.config.eval_every is None


def test_the_prediction_interval_is_the_gaussian_quantile_of_the_predicted_scale():
    table = sine_table(120)
    # Without validation windows there is no calibration (lstmkit.series.intervals): the network's own interval.
    narrow, wide = (Forecaster("day", "signal", horizon=3, lookback=10, interval=interval, early_stopping=False,
                               **QUICK).fit(table).predict(table) for interval in (0.5, 0.95))
    np.testing.assert_allclose(wide["signal"], narrow["signal"], rtol=1e-12)  # same seed, same model
    ratio = (wide["signal_upper_95"] - wide["signal"]) / (narrow["signal_upper_50"] - narrow["signal"])
    np.testing.assert_allclose(ratio, 1.959963984540054 / 0.6744897501960817, rtol=1e-6)


@pytest.mark.parametrize("distribution, expected", [
    # μ 0, scale 2, y 3: log 2 + ½ (3 / 2)² and log 2 + |3| / 2
    ("normal", math.log(2) + 1.125), ("laplace", math.log(2) + 1.5),
])
def test_the_negative_log_likelihood_by_hand(distribution, expected):
    loss = negative_log_likelihood(distribution, torch.tensor([0.0]), torch.tensor([2.0]), torch.tensor([3.0]))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("distribution, law, constant", [
    ("normal", torch.distributions.Normal, 0.5 * math.log(2 * math.pi)), ("laplace", torch.distributions.Laplace, math.log(2)),
])
def test_each_distribution_is_torchs_likelihood_and_quantiles(distribution, law, constant):
    generator = torch.Generator().manual_seed(0)
    mean, target = torch.randn(2, 50, dtype=torch.float64, generator=generator)
    scale = torch.rand(50, dtype=torch.float64, generator=generator) + 0.1
    loss = negative_log_likelihood(distribution, mean, scale, target)
    assert loss.item() == pytest.approx(-law(mean, scale).log_prob(target).mean().item() - constant, rel=1e-12)
    for coverage in (0.5, 0.9, 0.99):
        width = interval_half_width(distribution, scale, coverage)
        held = law(mean, scale).cdf(mean + width) - law(mean, scale).cdf(mean - width)
        torch.testing.assert_close(held, torch.full_like(held, coverage), rtol=0, atol=1e-12)


@pytest.mark.parametrize("members", [2, 3])
def test_an_ensemble_forecasts_the_median_of_its_members_and_trains_on_the_mean_of_their_losses(members):
    torch.manual_seed(0)
    config = ForecastNetworkConfig("lstm", 1, 2, 1, 4, hidden_size=8, num_layers=1, ensemble=members)
    ensemble = ForecastEnsemble(config).double().eval()
    history, future = torch.randn(5, 6, 2, dtype=torch.float64), torch.randn(5, 4, 1, dtype=torch.float64)
    outputs = [member(history, future) for member in ensemble.members]
    mean, scale = ensemble.forecast(history, future)
    ordered = torch.stack([mean for mean, _ in outputs]).sort(dim=0).values
    expected = ordered[1] if members == 3 else (ordered[0] + ordered[1]) / 2
    torch.testing.assert_close(mean, expected, rtol=0, atol=1e-15)
    torch.testing.assert_close(scale, sum(scale for _, scale in outputs) / members, rtol=1e-15, atol=0)
    assert not torch.equal(outputs[0][0], outputs[1][0])  # members start from different weights
    target = torch.randn(5, 4, 1, dtype=torch.float64)
    loss = negative_log_likelihood("laplace", *ensemble(history, future), target)
    each = [negative_log_likelihood("laplace", mean, scale, target) for mean, scale in outputs]
    torch.testing.assert_close(loss, sum(each) / members, rtol=1e-14, atol=0)


@pytest.mark.parametrize("season, rows", [(3, [3, 4, 5, 3, 4]), (1, [5, 5, 5, 5, 5])])
def test_an_untrained_head_forecasts_the_seasonal_naive_of_the_window(season, rows):
    torch.manual_seed(0)
    network = ForecastNetwork(ForecastNetworkConfig("lstm", 1, 2, 0, 5, hidden_size=8, num_layers=1,
                                                    season=season)).double().eval()
    torch.nn.init.zeros_(network.head[-1].weight)
    torch.nn.init.zeros_(network.head[-1].bias)
    history = torch.randn(2, 6, 2, dtype=torch.float64)
    mean, scale = network(history, torch.zeros(2, 5, 0, dtype=torch.float64))
    torch.testing.assert_close(mean, history[:, rows, :1], rtol=0, atol=0)
    torch.testing.assert_close(scale, torch.full_like(scale, math.log(2) + 1e-3), rtol=1e-15, atol=0)


def test_a_seasonal_base_longer_than_the_history_is_refused():
    network = ForecastNetwork(ForecastNetworkConfig("lstm", 1, 2, 0, 5, hidden_size=8, num_layers=1, season=7))
    with pytest.raises(ValueError, match="the seasonal-naive base needs a lookback of at least season = 7 steps, "
                                         "got a history of 6"):
        network(torch.zeros(2, 6, 2), torch.zeros(2, 5, 0))


def test_a_forecaster_ensemble_saves_its_members_and_predicts_the_same_after_loading(tmp_path):
    table = sine_table(120)
    forecaster = Forecaster("day", "signal", horizon=3, lookback=10, ensemble=2, **QUICK).fit(table)
    assert isinstance(forecaster.network, ForecastEnsemble) and len(forecaster.network.members) == 2
    forecaster.save(tmp_path / "model")
    loaded = Forecaster.load(tmp_path / "model")
    assert isinstance(loaded.network, ForecastEnsemble) and loaded.config.ensemble == 2
    pd.testing.assert_frame_equal(loaded.predict(table), forecaster.predict(table))


def test_a_forecaster_reads_as_the_call_that_builds_it():
    """It was <lstmkit.pipelines.forecast.Forecaster object at 0x...>."""
    assert repr(Forecaster("day", "signal", horizon=3)) == "Forecaster(time='day', target='signal', horizon=3)"
    assert repr(Forecaster("t", "y,z", horizon=3, hidden_size=8)) == ("Forecaster(time='t', target=('y', 'z'), "
                                                                      "horizon=3, hidden_size=8)")
    # A long table's own defaults (laplace, seasonal) are not settings given.
    assert repr(Forecaster("t", "y", horizon=3, id="id", distribution="normal")) == (
        "Forecaster(time='t', target='y', horizon=3, distribution='normal', id='id')")


def test_the_distribution_defaults_to_laplace_for_a_long_table_and_normal_for_one():
    assert Forecaster("day", "signal", horizon=3).config.distribution == "normal"
    assert Forecaster("t", "y", horizon=3, id="id").config.distribution == "laplace"
    assert Forecaster("t", "y", horizon=3, id="id", distribution="normal").config.distribution == "normal"


@pytest.mark.parametrize("options, message", [
    (dict(horizon=3, distribution="student"), "distribution must be one of normal, laplace, got 'student'"),
    (dict(horizon=3, ensemble=0), "ensemble must be a positive integer, got 0"),
    (dict(horizon=0), "horizon must be a positive integer, got 0"),
    (dict(horizon=3, interval=1.5), "interval is the coverage of the prediction interval, in (0, 1); got 1.5"),
    (dict(horizon=3, lookback=0), "lookback must be a positive integer or None, got 0"),
    (dict(horizon=3, lr=-1.0), "lr must be positive, got -1.0"),
    (dict(horizon=3, eval_every=5), "eval_every does not apply to a forecaster: it is evaluated at the end of each "
                                    "epoch (patience counts epochs); got eval_every=5"),
    (dict(horizon=3, early_stopping=False, patience=5), "patience=5 acts on the validation windows, which "
                                                        "early_stopping=False leaves out"),
    (dict(horizon=3, early_stopping=False, optimizer="nt-asgd", validation_fraction=0.3),
     "validation_fraction=0.3, optimizer='nt-asgd' act on the validation windows, which early_stopping=False"),
])
def test_bad_options_are_refused_when_the_forecaster_is_built(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Forecaster("day", "signal", **options)


def test_the_backtests_baselines_are_checked_before_it_trains(monkeypatch):
    """An unknown name was refused after both networks trained; "naive" was read letter by letter."""
    forecaster = Forecaster("day", "signal", horizon=3, **QUICK)
    monkeypatch.setattr(Forecaster, "fit", lambda *arguments: pytest.fail("trained before the check"))
    with pytest.raises(ValueError, match=re.escape("baselines must be among naive, seasonal_naive, drift, ets, arima, "
                                                   "theta, naive2 (or none, alone: the backtest scores the model "
                                                   "alone), got 'xx'")):
        forecaster.backtest(sine_table(), baselines=("naive", "xx"))
    assert baseline_names("naive") == ("naive",)  # one name, not its letters


@pytest.mark.parametrize("time", [None, "", 3])
def test_a_time_that_is_not_a_column_name_is_named(time):
    """It said "give the time column", naming nothing received."""
    with pytest.raises(ValueError, match=f"^time must name the time column, got {re.escape(repr(time))}$"):
        Forecaster(time, "signal", horizon=3)


@pytest.mark.parametrize("target", [3, ["signal", 3]])
def test_a_target_that_is_not_column_names_is_named(target):
    with pytest.raises(TypeError, match=f"^target must be column names, got {re.escape(repr(target))}$"):
        Forecaster("day", target, horizon=3)


def test_a_backtest_scores_only_the_held_out_values_the_table_gives():
    """Values missing from the held-out rows are interpolated for the table's grid, but not
    scored, counted in the interval's coverage, or written as actual values; nor, in the
    training rows, taken into MASE's scale (three interpolated days cut MASE by a quarter)."""
    table = sine_table(80)
    table.loc[[20, 21, 40, 72, 73, 77], "signal"] = np.nan
    with pytest.warns(MissingValuesWarning, match="6 missing value"):
        result = Forecaster("day", "signal", horizon=10, lookback=14, baselines=("naive",), **QUICK).backtest(table)
    given = table["signal"][70:].notna().to_numpy()
    assert result.forecasts["actual"].isna().tolist() == (~given).tolist()
    actual, naive = table["signal"][70:][given], table["signal"][69]
    mae = np.abs(actual - naive).mean()
    history = table["signal"][:70].to_numpy()
    scale = np.nanmean(np.abs(history[7:] - history[:-7]))  # the pairs of given values a week apart
    assert np.isnan(history[7:] - history[:-7]).sum() == 6
    assert result.scores.loc["naive", "MAE"] == pytest.approx(mae)
    assert result.scores.loc["naive", "MASE"] == pytest.approx(mae / scale, rel=1e-12)
    inside = (result.forecasts["chosen_lower"] <= result.forecasts["actual"]) & (result.forecasts["actual"] <= result.forecasts["chosen_upper"])
    assert result.coverage == pytest.approx(inside[given].mean())


def test_a_backtest_forecasts_from_each_origin_seeing_nothing_from_it_on():
    """Gaps just before both origins (rows 58-59 and 68-69 of origins 60 and 70): the rows from
    each origin on changed, every forecast from it (the network's, the baselines', the chosen
    one and its interval) is the same, and naive repeats the last value given before it. Filled
    over the whole table, the gaps leaned on the first values after them, seen by every method."""
    table = sine_table(80)
    table.loc[[58, 59, 68, 69], "signal"] = np.nan
    changed = table.copy()
    changed.loc[70:, "signal"] += 100.0
    forecasts = []
    for data in (table, changed):
        with pytest.warns(MissingValuesWarning):
            result = Forecaster("day", "signal", horizon=10, lookback=14, **QUICK).backtest(data, holdout=20)
        forecasts.append(result.forecasts.drop(columns="actual"))
    first, second = forecasts
    pd.testing.assert_frame_equal(first, second)
    assert first["naive"].tolist() == [table["signal"][57]] * 10 + [table["signal"][67]] * 10


BASE_HISTORY = "which the seasonal base compares"


@pytest.mark.parametrize("options, cause, remedy", [
    ({"extra_seasons": (50,)}, f"2 cycles of the longest period, 50, {BASE_HISTORY}",
     "no extra_seasons with base_cycles 1 (drop --extra-seasons, give --base-cycles 1), shorter extra_seasons "
     "(--extra-seasons, now 50) or a shorter horizon"),
    ({"base_cycles": 9}, f"9 cycles of the longest period, 7, {BASE_HISTORY}",
     "fewer base_cycles (--base-cycles, now 9), a shorter season (--season, now 7) or a shorter horizon"),
    ({"base_cycles": 3, "extra_seasons": (30,)}, f"3 cycles of the longest period, 30, {BASE_HISTORY}",
     "fewer base_cycles (--base-cycles, now 3), shorter extra_seasons (--extra-seasons, now 30) or a shorter horizon"),
    # the season is the longest period: shorter extra seasons would not shorten the history
    ({"season": 30, "extra_seasons": (3,)}, f"2 cycles of the longest period, 30, {BASE_HISTORY}",
     "no extra_seasons with base_cycles 1 (drop --extra-seasons, give --base-cycles 1), a shorter season "
     "(--season, now 30) or a shorter horizon"),
])
def test_a_series_too_short_for_the_bases_history_names_the_options_that_set_it(options, cause, remedy):
    """The history was 1,000 rows for --extra-seasons 500, and the message asked for a shorter
    lookback or season, neither of which shortened it."""
    forecaster = Forecaster("day", "signal", horizon=10, lookback=20, **QUICK, **options)
    with pytest.raises(ValueError, match=re.escape(f"the 10 held out (the history is {cause}); give more rows, a "
                                                   f"smaller holdout (--holdout), or {remedy}")):
        forecaster.backtest(sine_table(60))
    with pytest.raises(ValueError, match=re.escape(f"early stopping) (the history is {cause}): give more rows, or "
                                                   f"{remedy}")):
        forecaster.fit(sine_table(60))


@pytest.mark.parametrize("horizon, lookback, fraction", [(1, 1, 0.1), (10, 20, 0.1), (7, 3, 0.5), (13, 40, 0.9)])
def test_the_rows_fit_needs_are_the_fewest_whose_split_trains(horizon, lookback, fraction):
    """Found by bisection, not a row at a time (a --horizon of 40,000 took a minute to be
    refused): the fewest rows whose validation split leaves a training origin."""
    forecaster = Forecaster("day", "signal", horizon=horizon, lookback=lookback, validation_fraction=fraction)

    def trains(rows):
        return bool(forecaster.split_origins(list(range(lookback, rows - horizon + 1)))[0])

    needed = forecaster.rows_needed(lookback)
    assert trains(needed) and not any(trains(rows) for rows in range(lookback + horizon, needed))


def test_data_too_short_or_not_fitted_is_refused():
    table = sine_table(60)
    forecaster = Forecaster("day", "signal", horizon=10, lookback=20, **QUICK)
    # fit needs 40 rows (rows_needed: a window and the early-stopping ones), more than 20 + 10 + 7.
    with pytest.raises(ValueError, match=re.escape(
            "the series has 60 rows; a backtest with holdout 30 needs at least 70: 40 to fit on (lookback + horizon + "
            "season = 20 + 10 + 7 = 37, and windows kept for early stopping) and the 30 held out; give more rows, a "
            "smaller holdout (--holdout), or a shorter lookback, horizon or season (--season)")):
        forecaster.backtest(table, holdout=30)
    assert forecaster.backtest(sine_table(70), holdout=30).holdout == 30  # the count given is enough
    with pytest.raises(RuntimeError, match="the forecaster is not fitted"):
        forecaster.predict(table)
    forecaster.fit(table)
    with pytest.raises(ValueError, match="predict needs at least lookback = 20 rows, got 15"):
        forecaster.predict(table.head(15))
    with pytest.raises(ValueError, match="the table has no rows, only the columns day, signal"):
        forecaster.predict(table.head(0))  # a CSV of its header: an IndexError in reading the fitted grid
    # lookback rows are enough (predict once asked for lookback + horizon): the forecast is the
    # one made from the whole table, which sees only its last 20 rows
    last = forecaster.predict(table.tail(20).reset_index(drop=True))
    whole = forecaster.predict(table)
    assert forecaster.layout.chosen == ("model",) and last.equals(whole)
    with pytest.raises(ValueError, match="the data's frequency is 2D, the forecaster was fitted on D"):
        forecaster.predict(table.iloc[::2])  # every other day: not the fitted grid's rows, however sparse
    weekly = table.assign(day=pd.date_range("2024-01-06", periods=60, freq="W-SAT").strftime("%Y-%m-%d"))
    with pytest.raises(ValueError, match="the data's frequency is W-SAT, the forecaster was fitted on D"):
        forecaster.predict(weekly)


@pytest.mark.parametrize("first_fit", [True, False])
def test_an_interrupted_fit_leaves_the_forecaster_as_it_was(first_fit, monkeypatch):
    """A re-fit stopped by Ctrl-C (a notebook cell run again) left the new fit's scaler and an
    uncalibrated interval beside the old network: predict forecast numbers of neither fit."""
    table = sine_table(120)
    forecaster = Forecaster("day", "signal", horizon=10, lookback=20, **QUICK)
    if first_fit:
        forecaster.fit(table)
    before = dict(forecaster.__dict__)
    expected = forecaster.predict(table) if first_fit else None

    def interrupted(*arguments, **keywords):
        raise KeyboardInterrupt

    monkeypatch.setattr(Forecaster, "train_network", interrupted)
    with pytest.raises(KeyboardInterrupt):
        forecaster.fit(table.head(90).assign(signal=lambda frame: frame.signal * 3))
    assert forecaster.__dict__ == before
    if first_fit:
        pd.testing.assert_frame_equal(forecaster.predict(table), expected)
    else:
        with pytest.raises(RuntimeError, match="the forecaster is not fitted"):
            forecaster.predict(table)


def test_a_language_model_checkpoint_is_not_a_forecaster(tmp_path):
    from lstmkit.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "lm", {"kind": "language_model"}, {})
    with pytest.raises(ValueError, match="holds a 'language_model' checkpoint, not a forecaster"):
        Forecaster.load(tmp_path / "lm")
    save_checkpoint(tmp_path / "old", {"kind": "forecaster", "forecaster": {"time": "day"}}, {})
    with pytest.raises(ValueError, match=re.escape(
            f"{tmp_path / 'old' / 'config.json'} has no 'network' object describing a forecaster")):
        Forecaster.load(tmp_path / "old")


def test_cli_fit_backtest_and_predict(tmp_path, capsys):
    from lstmkit.cli import main

    table = sine_table(150)
    table.loc[[40, 41], "signal"] = np.nan
    csv = tmp_path / "series.csv"
    table.to_csv(csv, index=False)
    common = [str(csv), "--time", "day", "--target", "signal", "--horizon", "5", "--lookback", "15", "--holdout", "10",
              "--hidden-size", "16", "--num-layers", "1", "--epochs", "3"]
    main(["forecast", "fit", *common, "--out", str(tmp_path / "run")])
    captured = capsys.readouterr()
    assert "lstmkit: warning: column 'signal': 2 missing value(s) filled by linear interpolation" in captured.err
    assert re.search(r"^seasonal_naive +\d", captured.out, re.MULTILINE) and "refitted on all 150 rows" in captured.out
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results["backtest"]) >= {"model", "naive", "seasonal_naive", "drift"}
    assert set(results["backtest"]["model"]) == {"MAE", "RMSE", "sMAPE", "MASE"}
    assert results["holdout"] == 10 and results["season"] == 7
    assert (tmp_path / "run" / "backtest.png").stat().st_size > 10_000
    backtest = pd.read_csv(tmp_path / "run" / "backtest.csv")
    assert len(backtest) == 10 and backtest["actual"].tolist() == pytest.approx(table["signal"][140:].tolist())

    main(["forecast", "predict", str(tmp_path / "run"), str(csv), "--out", str(tmp_path / "next.csv")])
    chosen = Forecaster.load(tmp_path / "run").layout.chosen[0]
    assert capsys.readouterr().out == (f"wrote 5 forecast rows to {tmp_path / 'next.csv'}; forecasts signal by {chosen}: "
                                       "what fit chose on its validation windows (results.json: predict_uses)\n")
    prediction = pd.read_csv(tmp_path / "next.csv")
    assert prediction["day"].tolist() == ["2024-05-30", "2024-05-31", "2024-06-01", "2024-06-02", "2024-06-03"]
    expected = Forecaster.load(tmp_path / "run" / "model").predict(csv)
    np.testing.assert_allclose(prediction["signal"], expected["signal"], rtol=1e-12)

    with pytest.raises(SystemExit):
        main(["forecast", "fit", *common, "--out", str(tmp_path / "run")])
    assert (f"{tmp_path / 'run'} already holds a fitted forecaster (model/, from the training runs in training/); "
            f"choose another --out, or remove {tmp_path / 'run'} to fit again") in capsys.readouterr().err


def test_the_shared_co2_table_reads_with_its_59_gaps():
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "co2_weekly.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent (the shared data sits beside the repository)")
    with pytest.warns(UserWarning, match=re.escape("column 'co2': 59 missing value(s)")):
        frame = read_series(path, "date", ["co2"])
    assert frame.frequency == "W-SAT" and len(frame) == 2284


def promotion_table(rows: int = 300, ahead: int = 0) -> pd.DataFrame:
    """sales = 2 * promo + 1, promo a random 0/1 planned in advance: only a model that reads
    the promotions of the days it forecasts can forecast the sales."""
    promo = np.random.default_rng(0).integers(0, 2, rows + ahead).astype(float)
    sales = np.concatenate([2 * promo[:rows] + 1, np.full(ahead, np.nan)])
    days = pd.date_range("2024-01-01", periods=rows + ahead, freq="D").strftime("%Y-%m-%d")
    return pd.DataFrame({"day": days, "sales": sales, "promo": promo})


def test_known_future_covariates_are_read_at_the_steps_they_belong_to():
    options = dict(horizon=3, lookback=6, hidden_size=16, num_layers=1, epochs=40, patience=40, lr=3e-3,
                   dropout=0.0, calendar=False, seed=0)
    table = promotion_table()
    informed = Forecaster("day", "sales", future_covariates="promo", **options).backtest(
        table, holdout=30, baselines=("naive",))
    blind = Forecaster("day", "sales", **options).backtest(table, holdout=30, baselines=("naive",))
    assert informed.scores.loc["model", "MAE"] < 0.1
    assert blind.scores.loc["model", "MAE"] > 0.5  # a fair coin's promotions: about 1 on average


@pytest.mark.parametrize("ahead, suggestion", [
    (0, ", once {csv} holds the 3 rows ahead with their promo (targets left empty)\n"),
    (3, "\n"),
])
def test_fit_suggests_the_predict_command_that_works(ahead, suggestion, tmp_path, capsys):
    from lstmkit.cli import main

    csv = tmp_path / "sales ☀.csv"  # quoted for the shell: pasted unquoted, the command failed
    promotion_table(120, ahead).to_csv(csv, index=False)
    main(["forecast", "fit", str(csv), "--time", "day", "--target", "sales", "--future-covariates", "promo",
          "--horizon", "3", "--lookback", "6", "--holdout", "6", "--hidden-size", "8", "--num-layers", "1",
          "--epochs", "2", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert out.endswith(f"forecast the next 3 steps with: lstmkit forecast predict {tmp_path / 'run'} '{csv}'"
                        + suggestion.format(csv=csv))


def test_predict_needs_the_known_future_covariates_of_the_horizon():
    forecaster = Forecaster("day", "sales", horizon=3, lookback=6, future_covariates="promo", **{
        **QUICK, "epochs": 2}).fit(promotion_table())
    prediction = forecaster.predict(promotion_table(ahead=3))
    assert prediction["day"].tolist() == ["2024-10-27", "2024-10-28", "2024-10-29"]
    with pytest.raises(ValueError, match=re.escape(
            "forecasting 3 row(s) past the last target value needs the known-future covariates (promo) there (the "
            "network reads them over the whole fitted horizon, whatever predict's horizon); the table has them for 1 "
            "row(s)")):
        forecaster.predict(promotion_table(ahead=1), horizon=1)
    with pytest.warns(UserWarning, match=re.escape(
            "the table has known-future covariates (promo) for 5 rows past its last target value; the forecast reads "
            "the fitted horizon's, 3, and the rest are ignored")):
        assert forecaster.predict(promotion_table(ahead=5)).equals(prediction)
    # Rows ahead whose covariate is empty are not filled from the last one given: they are left out.
    empty = promotion_table(ahead=3)
    empty.loc[empty.index[-2:], "promo"] = np.nan
    with pytest.warns(MissingValuesWarning, match=re.escape(
            "2 row(s) after the last target value lack a value of a known-future covariate (promo), after the last "
            "row with all of them, and are ignored")):
        with pytest.raises(ValueError, match=re.escape("the table has them for 1 row(s)")):
            forecaster.predict(empty)


def test_fit_and_backtest_keep_the_callers_random_state():
    table = sine_table(80)
    forecaster = Forecaster("day", "signal", horizon=3, lookback=12, **{**QUICK, "epochs": 1})
    assert_keeps_random_state(lambda: forecaster.fit(table))
    assert_keeps_random_state(lambda: forecaster.backtest(table, holdout=6))


def test_predict_evaluates_a_network_in_training_mode_and_leaves_it_so(sine_backtest):
    """predict put the caller's network into evaluation mode and left it there."""
    forecaster = sine_backtest.model
    expected = forecaster.predict(sine_table())
    forecaster.network.train()
    try:
        pd.testing.assert_frame_equal(forecaster.predict(sine_table()), expected)
        assert all(module.training for module in forecaster.network.modules())
    finally:
        forecaster.network.eval()


def test_a_float64_default_dtype_neither_breaks_nor_changes_a_backtest():
    """It stopped at the layer's "input dtype must match the layer's parameters
    (torch.float64), got torch.float32": the network was built in the default dtype, the
    windows in float32."""
    forecaster = Forecaster("day", "signal", horizon=5, **QUICK)
    expected = forecaster.backtest(sine_table(), holdout=5, baselines="none").scores
    torch.set_default_dtype(torch.float64)
    try:
        scores = forecaster.backtest(sine_table(), holdout=5, baselines="none").scores
    finally:
        torch.set_default_dtype(torch.float32)
    pd.testing.assert_frame_equal(scores, expected)


@pytest.mark.parametrize("options, times, message", [
    (dict(calendar=False), pd.date_range("1900", periods=80, freq="YS").strftime("%Y"),
     "calendar=False (--no-calendar) does nothing here: data of frequency YS-JAN has no calendar features"),
    (dict(calendar=False), np.arange(80),
     "calendar=False (--no-calendar) does nothing here: data of frequency step has no calendar features"),
    (dict(base_cycles=3), np.arange(80),
     "base_cycles=3 (--base-cycles) does nothing here: the longest period is 1 (m = 1, no extra seasons), so the "
     "base is the last value, not a median of cycles"),
    (dict(base="last", base_cycles=2, season=7), np.arange(80),
     "base_cycles=2 (--base-cycles) takes no median here: the base is the last value (base='last'); it only "
     "lengthens each window's history to 2 x 7 = 14 steps"),
])
def test_fit_warns_of_a_setting_the_data_give_nothing_to_act_on(options, times, message):
    """Yearly dates and integer steps have no calendar features, and a base of the last value
    no cycles to take the median of: the option would be ignored without a word."""
    table = pd.DataFrame({"day": times, "signal": np.sin(np.arange(80) / 3)})
    with pytest.warns(UserWarning, match=re.escape(message)):
        Forecaster("day", "signal", horizon=4, lookback=12, **{**QUICK, "epochs": 1}, **options).fit(table)


@pytest.mark.parametrize("options", [dict(calendar=False), dict(base_cycles=2, season=7), dict(base_cycles=1)])
def test_fit_does_not_warn_where_the_setting_acts(options):
    """Daily dates have calendar features, and m = 7 cycles to take the median of."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Forecaster("day", "signal", horizon=4, lookback=14, **{**QUICK, "epochs": 1}, **options).fit(sine_table(80))


def test_cli_fit_warns_once_of_a_setting_without_effect_and_not_of_the_base_it_chose(tmp_path, capsys):
    """The refit of `forecast fit` pins the base the backtest chose: it warned a second time, of
    base='last', which the user never gave."""
    from lstmkit.cli import main

    csv = tmp_path / "yearly.csv"
    pd.DataFrame({"year": np.arange(1900, 1980), "y": np.sin(np.arange(80) / 3)}).to_csv(csv, index=False)
    main(["forecast", "fit", str(csv), "--time", "year", "--target", "y", "--horizon", "4", "--lookback", "12",
          "--base-cycles", "2", "--hidden-size", "8", "--num-layers", "1", "--epochs", "1",
          "--out", str(tmp_path / "run")])
    warnings_given = [line for line in capsys.readouterr().err.splitlines() if "base_cycles=2" in line]
    assert warnings_given == ["lstmkit: warning: base_cycles=2 (--base-cycles) does nothing here: the longest period "
                              "is 1 (m = 1, no extra seasons), so the base is the last value, not a median of cycles"]
