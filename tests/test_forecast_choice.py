"""What is chosen on validation windows (issue 15, item 2): the forecast `predict` uses, among
the network, the baselines and their combinations (by hand, and on one table end to end), and
what the network corrects (`base`)."""

from __future__ import annotations

import dataclasses
import math
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from helpers import record_forecast_budgets
from lstmkit.forecast import Forecaster
from lstmkit.pipelines import forecast_choice
from lstmkit.pipelines.forecast import Forecasts, SeriesLayout
from lstmkit.pipelines.forecast_report import (backtest_then_refit, base_line, chosen_reason, epochs_line, kept_epoch,
                                              target_reason)
from lstmkit.series import MissingValuesWarning, baseline_forecast
from lstmkit.series.choice import choose, clearly_better, combination, method_forecast

QUICK = dict(hidden_size=8, num_layers=1, epochs=2, batch_size=64, seed=0)


def mean_absolute_error(actual: np.ndarray):
    return lambda methods: {name: {"MAE": float(np.abs(values - actual).mean())} for name, values in methods.items()}


def test_the_choice_by_hand():
    """Two items (say, two series) of one value each."""
    model, actual = np.array([1.0, 1.0]), np.array([2.0, 2.0])
    baselines = {"naive": np.array([0.0, 0.0]), "theta": np.array([3.5, 3.5]), "ets": np.array([5.0, 5.0])}
    choice = choose(model, baselines, mean_absolute_error(actual), "MAE", lambda values: np.abs(values - actual))
    # theta (1.5) is the best baseline alone: its pair with the model, (1 + 3.5) / 2 = 2.25, is off by 0.25;
    # the combination, the mean of the model, theta and ets (naive is not statistical), 9.5 / 3, by 7 / 6.
    # The pair is better on both items, by 0.75 each: clearly.
    assert choice.partner == "theta" and choice.chosen == choice.lowest == "model+theta"
    assert {name: scores["MAE"] for name, scores in choice.scores.items()} == pytest.approx(
        {"model": 1.0, "combination": 7 / 6, "naive": 2.0, "theta": 1.5, "ets": 3.0, "model+theta": 0.25}, abs=1e-15)
    assert method_forecast("model+theta", model, baselines).tolist() == [2.25, 2.25]
    assert method_forecast("combination", model, baselines).tolist() == pytest.approx([9.5 / 3] * 2, abs=1e-15)
    assert method_forecast("naive", model, baselines) is baselines["naive"]
    assert combination(model, {"naive": baselines["naive"]}).tolist() == [1.0, 1.0]  # no statistical baseline


def test_without_a_statistical_baseline_there_is_no_combination_to_choose_or_report(tmp_path):
    """The mean of the network and no statistical baseline would be the network's own forecast."""
    model, actual = np.array([1.0, 1.0]), np.array([2.0, 2.0])
    baselines = {"naive": np.array([0.0, 0.0]), "seasonal_naive": np.array([3.0, 3.0])}
    choice = choose(model, baselines, mean_absolute_error(actual), "MAE", lambda values: np.abs(values - actual))
    assert {name: scores["MAE"] for name, scores in choice.scores.items()} == pytest.approx(
        {"model": 1.0, "naive": 2.0, "seasonal_naive": 1.0, "model+seasonal_naive": 0.0}, abs=1e-15)
    result = Forecaster("day", "y", horizon=3, lookback=6, baselines=("naive", "drift"), **QUICK).backtest(
        line_table(), holdout=6, baselines=("naive", "drift"))
    assert result.scores.index.tolist() == ["model", "naive", "drift", "chosen"]
    assert "combination" not in result.forecasts.columns


def test_baselines_none_leaves_the_network_as_predict_s_forecast(capsys):
    """A darts user's model.predict: the network's forecast, whatever a baseline would score
    (baselines=() once failed deep inside the choice: min() of an empty sequence)."""
    model, actual = np.array([1.0, 1.0]), np.array([2.0, 2.0])
    choice = choose(model, {}, mean_absolute_error(actual), "MAE", lambda values: np.abs(values - actual))
    assert (choice.chosen, choice.partner, choice.lowest, choice.scores) == ("model", None, "model", {"model": {"MAE": 1.0}})
    forecaster = Forecaster("day", "y", horizon=3, lookback=6, baselines="none", **QUICK)
    assert forecaster.config.baselines == ()
    forecaster.fit(line_table())
    assert forecaster.layout.chosen == ("model",) and set(forecaster.layout.validation["y"]) == {"model"}
    prediction = forecaster.predict(line_table())
    frame = forecaster.read(line_table())
    network = forecaster.forecast_origins(frame, [len(frame)])
    assert prediction["y"].tolist() == pytest.approx(network.mean[0, :, 0].tolist(), rel=1e-12)


def test_a_score_of_nan_is_never_the_lowest():
    """An OWA of inf / inf (Naive2 inexact on a series of scale 0) is nan, and `min` took
    whichever method came first: the network, reported as "the lowest OWA (nan)"."""
    model = np.array([1.0, 1.0])
    baselines = {"naive": np.array([0.0, 0.0]), "theta": np.array([2.0, 2.0])}
    owa = {"model": math.nan, "combination": 0.9, "naive": math.nan, "theta": 0.5, "model+theta": math.nan}

    def score(methods):
        return {method: {"OWA": owa[method]} for method in methods}

    choice = choose(model, baselines, score, "OWA", lambda values: np.zeros(len(values)) - (values == 2.0).all())
    assert choice.partner == "theta" and choice.lowest == "theta" and choice.chosen == "theta"


def test_a_lower_score_that_is_not_clearly_better_keeps_the_network():
    model, actual = np.array([1.0, 3.0]), np.array([2.0, 2.0])
    baselines = {"theta": np.array([2.0, 3.9])}
    choice = choose(model, baselines, mean_absolute_error(actual), "MAE", lambda values: np.abs(values - actual))
    # theta's errors are 0 and 1.9 (mean 0.95), the network's 1 and 1 (mean 1): lower, but the differences
    # -1 and 0.9 have a mean of -0.05 and a standard error of 0.95, far from 1.645 of them below 0.
    assert choice.lowest == "theta" and choice.scores["theta"]["MAE"] == pytest.approx(0.95)
    assert choice.chosen == "model"


@pytest.mark.parametrize("differences, clear", [
    ([-1.0, -1.0], True),                      # the same gain on every item
    ([-0.2, -0.1, -0.3], True),                # mean -0.2, standard error 0.058: 3.5 of them below 0
    ([-0.2, -0.1, 0.1], False),                # mean -0.067, standard error 0.088
    ([-5.0], True),                            # one item: no spread to test against, the lower wins
    ([0.5], False),
    ([-5.0, np.nan], True),                    # one finite item
    ([np.nan], False),                         # none: the network stays
    ([-1.0, -1.0, np.nan], True),              # an item where both are infinite is left out
    ([-np.inf, 0.0, 0.0], True),               # one table's windows of scale 0: the method exact, the network not
    ([np.inf, 0.0], False),                    # the network exact, the method not
    ([-np.inf, np.inf], False),                # each exact where the other is not
    ([0.5, 0.5, -np.inf], False),              # series: one flat series weighs as one, [0.5, 0.5, -0.5]
    ([-1.0, -1.0, -1.0, -np.inf], True),       # ... [-1, -1, -1, -1]
    ([-1.0, -1.0, np.inf], False),             # ... [-1, -1, 1]
])
def test_clearly_better_is_a_one_sided_95_percent_test_paired_over_the_items(differences, clear):
    assert clearly_better(np.array(differences)) is clear


def test_a_series_its_seasonal_naive_forecasts_exactly_chooses_it():
    """A season repeated exactly: the history's seasonal-naive error, MASE's scale, is 0, so
    every other method's MASE is infinite; that was read as no evidence, and the network (wrong
    by up to 2.3 here) was kept over the exact forecast without a word."""
    frame = pd.DataFrame({"d": pd.date_range("2000-01-01", periods=100, freq="D"),
                          "y": (np.arange(100) % 7).astype(float)})
    forecaster = Forecaster("d", "y", horizon=7, **QUICK).fit(frame)
    assert forecaster.layout.chosen == ("seasonal_naive",)
    assert forecaster.layout.validation["y"]["seasonal_naive"]["MASE"] == 0
    assert math.isinf(forecaster.layout.validation["y"]["model"]["MASE"])
    assert forecaster.predict(frame)["y"].tolist() == [2.0, 3.0, 4.0, 5.0, 6.0, 0.0, 1.0]


def line_table(rows: int = 60) -> pd.DataFrame:
    """A straight line, which drift continues exactly and two epochs of training do not learn."""
    return pd.DataFrame({"day": pd.date_range("2024-01-01", periods=rows, freq="D").strftime("%Y-%m-%d"),
                         "y": 10 + 2.0 * np.arange(rows)})


@pytest.fixture(scope="module")
def line_forecaster():
    return Forecaster("day", "y", horizon=3, lookback=6, baselines=("naive", "drift"), **QUICK).fit(line_table())


def test_one_table_chooses_the_baseline_exact_on_its_validation_windows(line_forecaster):
    layout = line_forecaster.layout
    assert layout.chosen == ("drift",)
    mase = {method: scores["MASE"] for method, scores in layout.validation["y"].items()}
    # No statistical baseline to combine with: no combination, which would be the network's own forecast.
    assert set(mase) == {"model", "naive", "drift", "model+drift"}
    assert mase["drift"] == 0 < mase["model+drift"] < mase["model"]


def test_a_target_flat_over_its_history_is_chosen_for_by_mean_absolute_error(line_forecaster, monkeypatch):
    """Flat over its history, a target has a MASE scale of 0, and every inexact method's MASE is
    inf: the network, off by 9, was kept over naive, off by 0.5. MAE ranks the methods as MASE
    does at any other scale."""
    frame = line_forecaster.read(line_table())
    flat = dataclasses.replace(frame, targets=np.where(np.arange(60)[:, None] < 53, 10.0, 11.0))
    network = line_forecaster.forecast_origins(flat, [53, 57])
    off_by_9 = Forecasts(np.full_like(network.mean, 20.0), network.lower, network.upper, network.fallbacks)
    monkeypatch.setattr(line_forecaster, "forecast_origins", lambda *arguments: off_by_9)
    chosen = forecast_choice.choose_forecast(line_forecaster, flat, [53, 57])
    assert chosen["chosen"] == ("naive",)
    validation = chosen["validation"]["y"]
    assert math.isinf(validation["model"]["MASE"]) and math.isinf(validation["naive"]["MASE"])
    assert (validation["naive"]["MAE"], validation["model"]["MAE"]) == (0.5, 9.0)  # off by 1, then 0
    assert target_reason(validation, "naive") == (
        "the lowest MAE (0.500) (its history repeats each season exactly, flat or not: MASE's scale is 0, every "
        "inexact MASE inf)")


def test_one_table_chooses_and_calibrates_without_the_interpolated_values():
    """A value missing from a validation window is interpolated for the windows' histories, but
    not scored or calibrated on, as in the backtest: whatever it was filled with, the choice,
    its scores and the interval's factor are the same."""
    steps = np.arange(60)
    table = pd.DataFrame({"day": pd.date_range("2024-01-01", periods=60, freq="D").strftime("%Y-%m-%d"),
                          "y": 10 + 2.0 * steps + 5.0 * (steps % 2)})  # a zigzag, which interpolation misses
    table.loc[58, "y"] = np.nan
    forecaster = Forecaster("day", "y", horizon=3, lookback=6, baselines=("naive", "drift"), **QUICK)
    with pytest.warns(MissingValuesWarning, match="1 missing value"):
        forecaster.fit(table)
        frame = forecaster.read(table)
    assert frame.filled[:, 0].nonzero()[0].tolist() == [58]
    forecaster.layout = dataclasses.replace(forecaster.layout, interval_scale=(1.0,))  # as fit calibrates it
    chosen = forecast_choice.choose_forecast(forecaster, frame, [53, 57])
    refilled = dataclasses.replace(frame, targets=frame.targets.copy())
    refilled.targets[58] = 1e6
    assert forecast_choice.choose_forecast(forecaster, refilled, [53, 57]) == chosen
    assert chosen["chosen"] == ("drift",) and chosen["interval_scale"][0] != 1
    # naive by hand: each window's values given (the second window's 58 left out) against the last before it
    y, season = frame.targets[:, 0], forecaster.layout.season
    errors = np.abs(np.r_[y[53:56] - y[52], y[[57, 59]] - y[56]])
    scale = np.abs(y[season:53] - y[:53 - season]).mean()
    assert chosen["validation"]["y"]["naive"]["MASE"] == pytest.approx(errors.mean() / scale, rel=1e-12)


def test_predict_forecasts_by_the_chosen_method_with_the_networks_interval_moved_onto_it(line_forecaster):
    table = line_table()
    prediction = line_forecaster.predict(table)
    network = line_forecaster.forecast_origins(line_forecaster.read(table), [60])
    drift = baseline_forecast("drift", table["y"].to_numpy(), 3, 7)
    assert prediction["y"].tolist() == drift.tolist()  # the baseline's own numbers: it was the model's + the shift
    mean, lower, upper = network.mean[0, :, 0], network.lower[0, :, 0], network.upper[0, :, 0]
    np.testing.assert_allclose(prediction["y_upper_90"] - prediction["y"], upper - mean, rtol=1e-9)
    np.testing.assert_allclose(prediction["y"] - prediction["y_lower_90"], mean - lower, rtol=1e-9)
    assert prediction.attrs["forecast"] == {"y": "drift"}


def test_the_choice_is_saved_and_a_layout_from_before_it_forecasts_by_the_network(line_forecaster, tmp_path):
    loaded = Forecaster.load(line_forecaster.save(tmp_path / "model"))
    assert loaded.layout.chosen == ("drift",) and loaded.layout.validation == line_forecaster.layout.validation
    saved = line_forecaster.layout.to_dict()
    del saved["chosen"], saved["validation"]
    older = SeriesLayout.from_dict(saved)
    assert older.chosen == ("model",) and older.validation == {}


def test_the_backtest_scores_the_combination_and_the_chosen_forecast_and_fit_keeps_the_choice(tmp_path):
    forecaster = Forecaster("day", "y", horizon=3, lookback=6, baselines=("naive", "drift", "theta"), **QUICK)
    fitted = backtest_then_refit(forecaster, line_table(), tmp_path / "run", holdout=6)
    forecasts, chosen = fitted.backtest.forecasts, fitted.backtest.model.layout.chosen[0]
    expected = method_forecast(chosen, forecasts["model"].to_numpy(),
                               {name: forecasts[name].to_numpy() for name in ("naive", "drift", "theta")})
    np.testing.assert_allclose(forecasts["chosen"], expected, rtol=1e-12)
    np.testing.assert_allclose(forecasts["combination"], (forecasts["model"] + forecasts["theta"]) / 2, rtol=1e-12)
    assert fitted.final.layout.chosen == (chosen,)  # the refit has no validation windows: it keeps this one
    assert Forecaster.load(tmp_path / "run").layout.chosen == (chosen,)


def sine_table(rows: int = 80) -> pd.DataFrame:
    return pd.DataFrame({"day": pd.date_range("2024-01-01", periods=rows, freq="D").strftime("%Y-%m-%d"),
                         "y": 5 + np.sin(2 * np.pi * np.arange(rows) / 7)})


def test_base_auto_trains_both_networks_keeps_the_closer_on_validation_and_shares_the_time_budget(monkeypatch):
    budgets, seconds = record_forecast_budgets(monkeypatch)
    options = {**QUICK, "epochs": None, "time_budget": 1.0}
    model = Forecaster("day", "y", horizon=3, lookback=14, baselines=("naive",), **options).fit(sine_table())
    # Half each; the second takes what the first left (its last step may overrun its half).
    assert budgets == [0.5, max(1.0 - seconds[0], 1e-6)] and model.config.base == "auto"
    assert set(model.base_errors) == {"seasonal", "last"}
    kept = min(model.base_errors, key=model.base_errors.get)
    assert model.base == kept and model.network.config.season == (7 if kept == "seasonal" else 1)
    # The error is the kept network's on the validation windows, by hand in scaled units.
    frame = model.read(sine_table())
    validation = model.split_origins(list(model.windows(frame, len(frame)).origins()))[1]
    forecast = model.forecast_origins(frame, validation).mean[..., 0]
    actual = np.stack([frame.targets[origin:origin + 3, 0] for origin in validation])
    assert model.base_errors[kept] == pytest.approx(
        np.abs(forecast - actual).mean() / model.layout.target_scaler.std[0], rel=1e-5)
    assert base_line(model) == (
        "the network corrects " + ("the seasonal-naive forecast (m=7)" if kept == "seasonal" else "the last value")
        + ": the closer forecast on the validation windows (mean absolute error, scaled) of "
        + f"seasonal {model.base_errors['seasonal']:.4g}, last {model.base_errors['last']:.4g}")


@pytest.mark.parametrize("options, seasons", [
    (dict(base="seasonal"), {"seasonal": 7}),
    (dict(base="last"), {"last": 1}),
    (dict(early_stopping=False), {"seasonal": 7}),  # auto without validation windows
    (dict(season=1), {"last": 1}),                  # m = 1: seasonal naive is the last value
    (dict(lookback=5), {"last": 1}),                # a lookback shorter than m holds no season
])
def test_one_base_is_trained_where_asked_or_where_the_two_are_the_same(options, seasons):
    model = Forecaster("day", "y", **{"horizon": 3, "lookback": 14, "baselines": ("naive",), **QUICK, **options}
                       ).fit(sine_table())
    (base, season), = seasons.items()
    assert model.base == base and model.network.config.season == season
    # Without validation windows there is no error to record (and no NaN to write to results.json).
    assert list(model.base_errors) == ([] if options.get("early_stopping") is False else [base])


def test_the_base_defaults_to_auto_for_one_table_and_seasonal_for_a_long_one_and_is_checked():
    assert Forecaster("t", "y", horizon=3).config.base == "auto"
    assert Forecaster("t", "y", horizon=3, id="series").config.base == "seasonal"
    with pytest.raises(ValueError, match=re.escape("base must be one of seasonal, last, auto, got 'trend'")):
        Forecaster("t", "y", horizon=3, base="trend")


def test_the_refit_keeps_the_base_the_backtest_kept(tmp_path):
    forecaster = Forecaster("day", "y", horizon=3, lookback=14, baselines=("naive",), **QUICK)
    fitted = backtest_then_refit(forecaster, sine_table(), tmp_path / "run", holdout=6)
    assert fitted.final.config.base == fitted.backtest.model.base == Forecaster.load(tmp_path / "run").base


def test_the_command_line_sets_the_base_and_reports_what_the_network_corrects(tmp_path, capsys):
    from lstmkit.cli import main

    sine_table().to_csv(path := tmp_path / "series.csv", index=False)
    main(["forecast", "backtest", str(path), "--time", "day", "--target", "y", "--horizon", "3", "--lookback", "14",
          "--base", "last", "--baselines", "naive", "--hidden-size", "8", "--num-layers", "1", "--epochs", "2"])
    assert "the network corrects the last value\n" in capsys.readouterr().out


def test_the_report_says_when_a_lower_score_was_not_clearly_better():
    scores = {"model": {"OWA": 0.947}, "model+naive": {"OWA": 0.946}}
    assert chosen_reason(scores, "model", "OWA", "series") == (
        "model+naive's OWA was lower (0.946 against 0.947), but not clearly (a one-sided 95% test paired over the "
        "series)")
    assert chosen_reason(scores, "model+naive", "OWA", "series") == "the lowest OWA (0.946)"


def test_the_report_names_the_kept_epoch_and_says_when_the_budget_cut_it():
    budget = SimpleNamespace(time_budget=60.0, epochs=None, epoch_windows=4096)
    assert [kept_epoch(epoch, budget) for epoch in (24, 24.0, 73.4219)] == [
        "24", "24", "73.42 (the last, cut short by the time budget)"]
    assert kept_epoch(0.02, SimpleNamespace(time_budget=None, epochs=0.02, steps=None)) == (
        "0.02 (the last, part of an epoch as --epochs asks)")
    # --steps 20 printed "as --epochs asks", which was never given
    assert kept_epoch(2.22, SimpleNamespace(time_budget=None, epochs=None, steps=20)) == (
        "2.22 (the last, part of an epoch as --steps asks)")
    cut = SimpleNamespace(best_epoch=3.12, curve=[{"epoch": 1}, {"epoch": 2}, {"epoch": 3}, {"epoch": 3.12}],
                          config=budget)
    assert epochs_line(cut) == ("trained 3.12 epochs of up to 4096 windows, kept epoch 3.12 (the last, cut short by "
                                "the time budget)")
