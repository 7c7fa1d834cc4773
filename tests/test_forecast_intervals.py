"""Prediction intervals calibrated on validation windows (lstmkit.series.intervals): the
factor by hand, its coverage, and its use in fit, backtest, predict and save/load."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from lstmkit.forecast import Forecaster
from lstmkit.pipelines import forecast_global
from lstmkit.pipelines.forecast_choice import CHOICE_ORIGINS, origin_baselines
from lstmkit.series.choice import method_forecast
from lstmkit.series.intervals import centred_on, interval_scale, percent

QUICK = dict(hidden_size=8, num_layers=1, epochs=3, batch_size=32, seed=0)

# Centre 10; ratios (y − c)/w⁺ above it, (c − y)/w⁻ below: 0, 1, 1.5, 0, 2.5 -> sorted 0, 0, 1, 1.5, 2.5.
ACTUAL = np.array([10.0, 12, 7, 10, 15])
CENTRE = np.full(5, 10.0)
BELOW = np.array([1.0, 1, 2, 1, 1])
ABOVE = np.full(5, 2.0)


@pytest.mark.parametrize("coverage, factor", [
    (0.5, 1.0),   # the ⌈6 · 0.5⌉ = 3rd smallest ratio
    (0.6, 1.5),   # the ⌈6 · 0.6⌉ = 4th
    (0.8, 2.5),   # the ⌈6 · 0.8⌉ = 5th, the largest
])
def test_the_factor_is_the_conformal_rank_of_the_ratios_by_hand(coverage, factor):
    assert interval_scale(ACTUAL, CENTRE, BELOW, ABOVE, coverage) == factor


def test_too_few_values_for_the_coverage_take_the_largest_ratio_and_say_what_it_holds():
    """⌈6 · 0.9⌉ = 6 > 5 values: the largest ratio holds about 5/6 of new values, not 90 %; a
    horizon-1 forecast calibrated on 10 windows gave its 91 %, 95 % and 99 % intervals alike."""
    with pytest.warns(RuntimeWarning, match=re.escape(
            "the 90% interval is calibrated on 5 validation values, too few for that coverage (it needs 9): it is "
            "stretched to hold all of them, which holds about 83% of new values; give a lower interval (--interval)")):
        assert interval_scale(ACTUAL, CENTRE, BELOW, ABOVE, 0.9) == 2.5


def test_the_rank_is_not_pushed_up_by_the_floating_point_residue_of_the_coverage():
    """100 × 0.55 is 55.000000000000007: its ceiling took the 56th of 99 ratios, not the 55th."""
    assert interval_scale(np.arange(1, 100.0), np.zeros(99), np.ones(99), np.ones(99), 0.55) == 55.0


def test_values_without_an_interval_are_left_out_and_none_leave_the_interval_as_it_is():
    with_fallback = interval_scale(np.append(ACTUAL, 100.0), np.append(CENTRE, 10.0), np.append(BELOW, 0.0),
                                   np.append(ABOVE, 0.0), 0.5)
    assert with_fallback == 1.0  # the stand-in value (no width) is not one of the ratios
    assert interval_scale(ACTUAL, CENTRE, np.zeros(5), np.zeros(5), 0.9) == 1.0
    assert interval_scale(np.append(ACTUAL, np.nan), np.append(CENTRE, 10.0), np.append(BELOW, 1.0),
                          np.append(ABOVE, 1.0), 0.5) == 1.0


def test_values_forecast_exactly_keep_the_networks_interval_rather_than_a_point():
    """An intermittent series' validation zeros, forecast as zeros: 4 of 5 ratios are 0."""
    actual, centre = np.array([0.0, 0.0, 0.0, 0.0, 3.0]), np.zeros(5)
    with pytest.warns(RuntimeWarning, match=re.escape(
            "80% of the validation values were forecast exactly, so calibrating the interval on them would shrink it "
            "to a point; the network's own 50% interval is kept, uncalibrated")):
        assert interval_scale(actual, centre, np.ones(5), np.ones(5), 0.5) == 1.0  # the ⌈6 · 0.5⌉ = 3rd ratio is 0
    assert interval_scale(actual, centre, np.ones(5), np.ones(5), 0.8) == 3.0  # the 5th is not
    # On a large level, "exactly" is within a billionth of the values' range, not of the level:
    # a forecast 9 off values of 1e12 that vary by 35 was taken for exact.
    actual = 1e12 + np.array([0.0, 7.0, 14.0, 21.0, 35.0])
    assert interval_scale(actual, actual - 9.0, np.ones(5), np.ones(5), 0.5) == 9.0


def test_a_too_narrow_interval_is_widened_to_hold_the_coverage():
    generator = np.random.default_rng(0)
    errors = 2.0 * generator.standard_normal(999)  # σ = 2, the network says 1
    width = np.full(999, 1.645)                    # its 90% half-width
    factor = interval_scale(errors, np.zeros(999), width, width, 0.9)
    assert factor == pytest.approx(2.0, rel=0.08)  # σ's ratio, up to sampling
    inside = np.abs(errors) <= factor * width
    assert inside.mean() == math.ceil(1000 * 0.9) / 999  # the ⌈(n + 1) · 0.9⌉-th value is the last inside


def noisy_table(rows: int = 200) -> pd.DataFrame:
    generator = np.random.default_rng(1)
    steps = np.arange(rows)
    return pd.DataFrame({"day": pd.date_range("2024-01-01", periods=rows, freq="D").strftime("%Y-%m-%d"),
                         "y": 10 + np.sin(2 * np.pi * steps / 7) + 0.5 * generator.standard_normal(rows)})


@pytest.fixture(scope="module")
def noisy_forecaster():
    return Forecaster("day", "y", horizon=4, lookback=14, season=7, baselines=("naive", "seasonal_naive"),
                      calendar=False, **QUICK).fit(noisy_table())


def test_the_interval_moves_onto_the_chosen_forecast_by_its_widths_without_cancelling_digits():
    """Each bound shifted by centre − model lost the centre's digits to a huge network forecast:
    a baseline's 3 got [−16, 16] from a network's 1e17 ± 16, and 2.9 got [0, 0] from 1e39."""
    lower, upper = centred_on(np.array([3.0]), np.array([1e17]), np.array([1e17 - 16]), np.array([1e17 + 16]))
    assert (lower.item(), upper.item()) == (-13.0, 19.0)
    lower, upper = centred_on(np.array([2.9]), np.array([1e39]), np.array([1e39]), np.array([1e39]))
    assert lower.item() == upper.item() == 2.9


def test_fit_calibrates_the_networks_interval_around_the_chosen_forecast_on_the_validation_windows(noisy_forecaster):
    forecaster = noisy_forecaster
    frame = forecaster.read(noisy_table())
    windows = forecaster.windows(frame, len(frame))
    validation = forecaster.split_origins(list(windows.origins()))[1]
    origins = validation[::-math.ceil(len(validation) / CHOICE_ORIGINS)][::-1]
    scale = forecaster.layout.interval_scale
    forecaster.layout = replace(forecaster.layout, interval_scale=(1.0,))
    try:
        network = forecaster.forecast_origins(frame, origins)
    finally:
        forecaster.layout = replace(forecaster.layout, interval_scale=scale)
    mean = network.mean[..., 0]
    centre = method_forecast(forecaster.layout.chosen[0], mean, origin_baselines(
        forecaster, frame, origins, 0, forecaster.config.baselines))
    actual = np.stack([frame.targets[origin:origin + 4, 0] for origin in origins])
    expected = interval_scale(actual, centre, mean - network.lower[..., 0], network.upper[..., 0] - mean, 0.9)
    assert scale == (expected,) and expected not in (0.0, 1.0)
    calibrated = forecaster.forecast_origins(frame, origins)
    np.testing.assert_allclose(calibrated.upper - calibrated.mean, expected * (network.upper - network.mean), rtol=1e-12)


def test_predict_and_a_saved_forecaster_give_the_calibrated_interval(noisy_forecaster, tmp_path):
    table = noisy_table()
    prediction = noisy_forecaster.predict(table)
    loaded = Forecaster.load(noisy_forecaster.save(tmp_path / "model"))
    assert loaded.layout.interval_scale == noisy_forecaster.layout.interval_scale
    pd.testing.assert_frame_equal(loaded.predict(table), prediction)
    saved = noisy_forecaster.layout.to_dict()
    del saved["interval_scale"]  # a layout saved before the calibration: the network's interval as it was
    assert type(noisy_forecaster.layout).from_dict(saved).interval_scale == (1.0,)
    for edited in ([-1.0], [math.nan], [1.0, 2.0], "2", [True]):  # swapped bounds, points, another table's
        with pytest.raises(ValueError, match=re.escape(f"its interval_scale must be 1 finite number(s) of at least 0, "
                                                       f"one per target; got {edited!r}")):
            type(noisy_forecaster.layout).from_dict({**saved, "interval_scale": edited})


def test_the_backtest_scores_the_interval_predict_would_have_given():
    result = Forecaster("day", "y", horizon=4, lookback=14, season=7, baselines=("naive",), calendar=False,
                        **QUICK).backtest(noisy_table(), holdout=8)
    model, forecasts = result.model, result.forecasts
    network = model.forecast_origins(model.read(noisy_table()), [192, 196])
    shift = forecasts["chosen"].to_numpy() - network.mean.ravel()
    np.testing.assert_allclose(forecasts["chosen_lower"], network.lower.ravel() + shift, rtol=1e-12)
    np.testing.assert_allclose(forecasts["chosen_upper"], network.upper.ravel() + shift, rtol=1e-12)
    inside = (forecasts["actual"] >= forecasts["chosen_lower"]) & (forecasts["actual"] <= forecasts["chosen_upper"])
    assert result.coverage == inside.mean()


def noisy_long_table(length: int = 60) -> pd.DataFrame:
    generator = np.random.default_rng(2)
    steps = np.arange(length)
    series = {name: level * (1 + np.sin(2 * np.pi * steps / 6) / 10 + generator.standard_normal(length) / 20)
              for name, level in (("a", 10.0), ("b", 100.0), ("c", 50.0))}
    return pd.DataFrame({"id": np.repeat(list(series), length), "t": np.tile(steps + 1, len(series)),
                         "y": np.concatenate(list(series.values()))})


@pytest.mark.parametrize("normalisation", ["standard", "log"])  # log: the factor scales the data's units
def test_a_long_table_calibrates_one_factor_over_every_series_validation_window(normalisation, tmp_path):
    table = noisy_long_table()
    forecaster = Forecaster("t", "y", horizon=4, id="id", season=6, baselines=("naive",), normalisation=normalisation,
                            **QUICK).fit(table)
    scale, panel = forecaster.layout.interval_scale, forecaster.read(table)
    forecaster.layout = replace(forecaster.layout, interval_scale=1.0)
    try:
        validated = forecast_global.forecast(forecaster, [values[:-4] for values in panel.values])
        raw = forecast_global.forecast(forecaster, list(panel.values))
    finally:
        forecaster.layout = replace(forecaster.layout, interval_scale=scale)
    model = validated.methods["model"]
    centre = method_forecast(forecaster.layout.chosen, model, validated.methods)
    actual = np.stack([values[-4:] for values in panel.values])
    expected = interval_scale(actual, centre, model - validated.lower, validated.upper - model, 0.9)
    assert scale == expected and expected not in (0.0, 1.0)
    prediction = forecaster.predict(table)
    widths = (raw.upper - raw.methods["model"]).ravel()
    np.testing.assert_allclose(prediction["y_upper_90"] - prediction["y"], expected * widths, rtol=1e-9)
    loaded = Forecaster.load(forecaster.save(tmp_path / "model"))
    assert loaded.layout.interval_scale == scale
    pd.testing.assert_frame_equal(loaded.predict(table), prediction)
    saved = forecaster.layout.to_dict()
    del saved["interval_scale"]  # a layout saved before the calibration
    assert type(forecaster.layout).from_dict(saved).interval_scale == 1.0
    with pytest.warns(RuntimeWarning, match="saved with an interval factor of 0, which shrank its interval to a "
                                            "point where the validation values were forecast exactly; the network's "
                                            "own interval is given there instead"):
        assert type(forecaster.layout).from_dict({**saved, "interval_scale": 0.0}).interval_scale == 1.0
    with pytest.raises(ValueError, match=re.escape("its interval_scale must be 1 finite number(s) of at least 0, one "
                                                   "per target; got -0.5")):
        type(forecaster.layout).from_dict({**saved, "interval_scale": -0.5})


def test_a_coverage_is_named_in_percent_without_rounding():
    assert [percent(coverage) for coverage in (0.9, 0.5, 0.975, 0.995, 0.999, 0.57, 0.9999999)] == [
        "90", "50", "97.5", "99.5", "99.9", "57", "99.99999"]
