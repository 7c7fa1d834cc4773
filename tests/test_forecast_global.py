"""Many series, one network (issue 15): the long-table reader, M4's metrics and Naive2 by hand,
the windows of a panel, and the global forecaster's predictions against values."""

from __future__ import annotations

import ctypes
import ctypes.util
import gzip
import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import lstmkit
from helpers import record_forecast_budgets
from lstmkit.forecast import Forecaster
from lstmkit.pipelines import forecast_global
from lstmkit.pipelines.forecast import budget_left
from lstmkit.pipelines.forecast_report import chosen_line, epochs_line, lookback_text, panel_report
from lstmkit.series import (PanelWindows, baseline_forecast, m4_scores, observed, owa, panel_baselines, read_panel,
                            scores, seasonal_indices)
from lstmkit.series.baselines import baseline_jobs, seasonal_by_acf
from lstmkit.series.frame import MissingValuesWarning
from lstmkit.series.scaling import SeriesScaling

QUICK = dict(hidden_size=8, num_layers=1, epochs=2, batch_size=32, seed=0)


def write_csv(tmp_path, text: str):
    path = tmp_path / "long.csv"
    path.write_text(text)
    return path


def long_table(series: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame({"id": np.concatenate([[name] * len(values) for name, values in series.items()]),
                         "t": np.concatenate([np.arange(1, len(values) + 1) for values in series.values()]),
                         "y": np.concatenate(list(series.values()))})


# --- M4's metrics and Naive2, by hand -------------------------------------------------------

def test_m4_smape_mase_and_owa_by_hand():
    # Series 1: MAE (1 + 2) / 2 = 1.5, scale mean |diff| = 1 -> MASE 1.5;
    #           sMAPE = (200·1/9 + 200·2/14) / 2 = 25.3968...
    # Series 2: exact -> 0 and 0. M4 averages over the series.
    scored = m4_scores([np.array([5.0, 6.0]), np.array([4.0, 6.0])], [np.array([4.0, 8.0]), np.array([4.0, 6.0])],
                       [np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 4.0, 3.0, 5.0])], season=1)
    assert scored["sMAPE"] == pytest.approx((200 / 9 + 200 * 2 / 14) / 4)
    assert scored["MASE"] == pytest.approx(0.75)
    # OWA against a Naive2 of sMAPE 20, MASE 1.5: (12.698/20 + 0.75/1.5) / 2.
    assert owa(scored, {"sMAPE": 20.0, "MASE": 1.5}) == pytest.approx(((200 / 9 + 400 / 14) / 4 / 20 + 0.5) / 2)
    assert owa({"sMAPE": 0.0, "MASE": 0.0}, {"sMAPE": 0.0, "MASE": 0.0}) == 1.0  # as exact as an exact Naive2
    assert owa({"sMAPE": 1.0, "MASE": 0.0}, {"sMAPE": 0.0, "MASE": 0.0}) == np.inf


def test_mase_scales_by_the_in_sample_seasonal_naive_with_m_24():
    # Lag-24 differences of a series rising by 1 per step are all 24: MAE 12 scores 0.5.
    history = np.arange(100.0)
    scored = m4_scores([np.full(2, 200.0)], [np.full(2, 188.0)], [history], season=24)
    assert scored["MASE"] == pytest.approx(12 / 24)
    # A history no longer than m scales by lag-1 differences instead (here 1): MASE 12.
    assert m4_scores([np.full(2, 200.0)], [np.full(2, 188.0)], [history[:24]], season=24)["MASE"] == pytest.approx(12)


def test_mase_scales_on_the_pairs_of_given_values_alone():
    # m = 1 over 1, 2, (3, filled), 4, 8: the pairs 1 -> 2 and 4 -> 8 alone, scale (1 + 4) / 2.
    history = observed(np.array([1.0, 2.0, 3.0, 4.0, 8.0]), np.array([False, False, True, False, False]))
    assert scores(np.array([10.0]), np.array([5.0]), history, season=1)["MASE"] == 5 / 2.5
    # m = 2 over 1, (2), (4), 7: no two given values 2 apart; every pair, |4 - 1| and |7 - 2|, scale 4.
    history = observed(np.array([1.0, 2.0, 4.0, 7.0]), np.array([False, True, True, False]))
    assert scores(np.array([10.0]), np.array([6.0]), history, season=2)["MASE"] == 4 / 4
    # a plain history with a NaN (it scaled to NaN, and MASE read inf): its pairs left out, as a filled value's
    with_nan = np.array([1.0, np.nan, 3.0, 4.0, 8.0])
    assert scores(np.array([10.0]), np.array([5.0]), with_nan, season=1)["MASE"] == 5 / 2.5
    with pytest.raises(ValueError, match=re.escape("MASE needs two finite training values m = 1 steps apart, got")):
        scores(np.array([10.0]), np.array([5.0]), with_nan[:3], season=1)


def test_naive2_by_hand():
    """m = 4, five seasons of 5, 10, 15, 10 with the last value 12 instead of 10.

    M4's test: seasonal. The 2x4 moving average is 10 but at t = 17, where it reaches the 12:
    (0.5·10 + 5 + 10 + 15 + 0.5·12) / 4 = 10.25. The mean ratio y/trend by position (t mod 4):
    0: 0.5; 1: (1 + 1 + 1 + 10/10.25) / 4; 2: 1.5; 3: 1. The level is 12 / index 3, so the
    forecast is 12 × index_k / index_3 = (6, 3 (3 + 40/41), 18, 12, ...)."""
    series = np.array([5.0, 10, 15, 10] * 5)
    series[-1] = 12.0
    assert seasonal_by_acf(series, 4)
    figure = np.array([0.5, (3 + 40 / 41) / 4, 1.5, 1.0])
    np.testing.assert_allclose(seasonal_indices(series, 4), figure / figure.mean(), rtol=1e-12)
    np.testing.assert_allclose(baseline_forecast("naive2", series, 6, 4),
                               [6.0, 3 * (3 + 40 / 41), 18.0, 12.0, 6.0, 3 * (3 + 40 / 41)], rtol=1e-12)


def test_naive2_is_naive_without_a_season():
    rising = np.arange(1.0, 13.0)  # |r_4| is below the 90% limit: not seasonal
    assert not seasonal_by_acf(rising, 4)
    assert baseline_forecast("naive2", rising, 3, 4).tolist() == [12.0] * 3
    short = np.array([5.0, 10, 15, 10, 5, 10, 15, 9])  # fewer than 3m values: not tested, naive
    assert baseline_forecast("naive2", short, 2, 4).tolist() == [9.0, 9.0]
    assert baseline_forecast("naive2", series := np.array([3.0, 1.0, 2.0]), 2, 1).tolist() == [series[-1]] * 2


def r_decompose_indices(series: np.ndarray, season: int) -> np.ndarray:
    """R's decompose(type="multiplicative")$figure for an even season, step by step."""
    half = season // 2
    ratios = [[] for _ in range(season)]
    for t in range(half, len(series) - half):
        window = series[t - half:t + half + 1]
        trend = (0.5 * window[0] + window[1:-1].sum() + 0.5 * window[-1]) / season
        ratios[t % season].append(series[t] / trend)
    figure = np.array([np.mean(values) for values in ratios])
    return figure / figure.mean()


def test_naive2_deseasonalises_a_history_with_zeros_as_m4_s_code_does():
    """A single 0 made Naive2 plain naive (M4's H1 with one value 0: up to 264 off M4's forecast)."""
    series = np.array([5.0, 10, 15, 10] * 6)
    series[[4, 13]] = 0.0
    assert seasonal_by_acf(series, 4)
    indices = r_decompose_indices(series, 4)
    np.testing.assert_allclose(seasonal_indices(series, 4), indices, rtol=1e-12)
    np.testing.assert_allclose(baseline_forecast("naive2", series, 5, 4),
                               series[-1] / indices[3] * indices[[0, 1, 2, 3, 0]], rtol=1e-12)


@pytest.mark.parametrize("series", [
    np.sin(2 * np.pi * np.arange(40) / 4),  # negative values: a multiplicative season means nothing
    np.array([0.0, 10, 15, 10] * 5),  # every value of one position 0: deseasonalising divides by it
    np.r_[[5.0, 20, 45, 10] * 6, [0.0] * 8, [5.0, 20, 45, 10] * 6],  # a moving average of 0: the ratios divide by it
], ids=["negative", "position-of-zeros", "zero-trend"])
def test_naive2_is_naive_where_a_multiplicative_season_cannot_be_computed(series):
    assert seasonal_by_acf(series, 4)  # M4's test finds the season: the decomposition is what fails
    assert seasonal_indices(series, 4).tolist() == [1.0] * 4
    assert baseline_forecast("naive2", series, 3, 4).tolist() == [series[-1]] * 3


def test_ets_and_arima_of_a_season_longer_than_24_are_mstl_and_theta_keeps_its_own():
    from statsforecast.models import MSTL, AutoARIMA, AutoETS, Theta

    steps = np.arange(120)
    series = 10 + np.sin(2 * np.pi * steps / 30) + 0.01 * steps
    expected = {"ets": MSTL(30, trend_forecaster=AutoETS(model="ZZN")), "arima": MSTL(30, trend_forecaster=AutoARIMA()),
                "theta": Theta(season_length=30)}
    together = panel_baselines([series], 5, 30, list(expected))
    for name, model in expected.items():
        np.testing.assert_allclose(baseline_forecast(name, series, 5, 30), model.forecast(y=series, h=5)["mean"],
                                   rtol=1e-12)
        np.testing.assert_allclose(together[name][0], baseline_forecast(name, series, 5, 30), rtol=1e-9)



def test_a_series_shorter_than_a_season_has_its_baselines_fitted_without_one_as_statsforecast_fits_it():
    """They were all the naive forecast: a new product's ETS and Theta rows, its drift too."""
    from statsforecast.models import AutoETS, Theta

    short = 50 + 2.0 * np.arange(11) + np.sin(np.arange(11))
    long = 10 + np.sin(2 * np.pi * np.arange(48) / 12) + 0.1 * np.arange(48)
    names = ["naive", "seasonal_naive", "drift", "naive2", "ets", "theta"]
    together = panel_baselines([short, long, np.array([7.0])], 3, 12, names, jobs=1)
    expected = {"naive": [short[-1]] * 3, "seasonal_naive": [short[-1]] * 3, "naive2": [short[-1]] * 3,
                "drift": short[-1] + 2 * np.arange(1, 4) * (short[-1] - short[0]) / 20,
                "ets": AutoETS(season_length=12).forecast(y=short, h=3)["mean"],
                "theta": Theta(season_length=12).forecast(y=short, h=3)["mean"]}
    for name in names:
        np.testing.assert_allclose(together[name][0], expected[name], rtol=1e-9, err_msg=name)
        np.testing.assert_allclose(together[name][1], baseline_forecast(name, long, 3, 12), rtol=1e-9, err_msg=name)
        assert together[name][2].tolist() == [7.0] * 3, name  # a single value: naive
    assert not np.allclose(together["ets"][0], short[-1])


def test_the_baselines_of_many_series_fitted_in_two_processes_after_torch_trained_equal_one_process():
    # Torch's thread pool is running when a fit reaches its baselines: the processes must not hang on it.
    torch.nn.functional.linear(torch.randn(64, 64), torch.randn(64, 64)).sum().item()
    steps = np.arange(96)
    histories = [10 + k + np.sin(2 * np.pi * steps / 24) * (1 + k / 3) + 0.02 * k * steps for k in range(4)]
    alone, shared = (panel_baselines(histories, 6, 24, ["ets", "theta"], jobs) for jobs in (1, 2))
    for name in ("ets", "theta"):
        np.testing.assert_array_equal(shared[name], alone[name])


def test_the_baselines_take_the_cpus_this_process_may_use_shared_by_torchrun_processes(monkeypatch):
    from lstmkit.series import baselines

    monkeypatch.setattr(baselines.os, "sched_getaffinity", lambda _: {0, 1, 2, 3, 4, 5}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert baselines.baseline_jobs() == 6
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert baselines.baseline_jobs() == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert baselines.baseline_jobs() == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert baselines.baseline_jobs() == 1


def test_each_series_share_of_owa_averages_to_the_owa():
    from lstmkit.pipelines.forecast_global import score_methods, series_terms

    histories = [np.array([5.0, 6, 7, 8, 9, 10]), np.array([3.0, 1, 4, 1, 5, 9, 2, 6])]
    actuals = [np.array([11.0, 12]), np.array([5.0, 3])]
    methods = {"model": np.array([[10.5, 12.5], [4.0, 4.0]]), "naive2": np.array([[10.0, 10.0], [6.0, 6.0]])}
    terms = series_terms("OWA", methods["model"], methods["naive2"], actuals, histories, 1)
    assert terms.mean() == pytest.approx(score_methods(methods, actuals, histories, 1)["model"]["OWA"], rel=1e-12)
    # Series 0: sMAPE = mean(200·0.5/21.5, 200·0.5/24.5), MASE = 0.5 / 1; Naive2's means over both series.
    naive2_smape = np.mean([np.mean([200 / 21, 400 / 22]), np.mean([200 / 11, 600 / 9])])
    naive2_mase = np.mean([1.5, 2.0 / np.mean(np.abs(np.diff(histories[1])))])
    expected = 0.5 * (np.mean([100 / 21.5, 100 / 24.5]) / naive2_smape + 0.5 / naive2_mase)
    assert terms[0] == pytest.approx(expected, rel=1e-12)


# --- the long-table reader ---------------------------------------------------------------------

def test_a_ragged_long_table_reads_each_series_on_its_own_grid():
    table = pd.DataFrame({"store": ["b", "a", "a", "b", "a", "a"], "week": [4, 3, 1, 3, 2, 5],
                          "sales": [8.0, 3.0, 1.0, 7.0, 2.0, 5.0]})
    with pytest.warns(UserWarning, match=re.escape("column 'sales': 1 missing value(s) filled by linear "
                                                   "interpolation within their series")):
        panel = read_panel(table, "store", "week", "sales")
    assert panel.ids == ("b", "a") and panel.starts == (3, 1) and panel.frequency == "step"
    assert [values.tolist() for values in panel.values] == [[7.0, 8.0], [1.0, 2.0, 3.0, 4.0, 5.0]]
    assert panel.times(1, 5, 2) == [6, 7]


def test_a_series_runs_from_its_first_value_to_its_last_with_nothing_invented_at_its_ends():
    table = pd.DataFrame({"id": ["A"] * 5 + ["B"] * 2, "t": [1, 2, 3, 4, 5, 1, 2],
                          "y": [None, 1.0, 2.0, None, None, 5.0, 6.0]})
    with pytest.warns(UserWarning, match=re.escape("column 'y': 3 row(s) before a series' first value or after its "
                                                   "last are ignored")):
        panel = read_panel(table, "id", "t", "y")
    assert [values.tolist() for values in panel.values] == [[1.0, 2.0], [5.0, 6.0]] and panel.starts == (2, 1)


def test_a_gzipped_long_table_is_read_whatever_its_name(tmp_path):
    """gzip is found by its first bytes, as for one table: the ids' second read went by the
    suffix, and a gzipped panel named .csv failed with a bare "'utf-8' codec can't decode"."""
    text = "id,t,y\n007,1,1\n007,2,2\n7,1,3\n7,2,4\n"
    zipped = tmp_path / "zipped.csv"
    zipped.write_bytes(gzip.compress(text.encode()))
    panel = read_panel(zipped, "id", "t", "y")
    assert list(panel.ids) == ["007", "7"] and [values.tolist() for values in panel.values] == [[1.0, 2.0], [3.0, 4.0]]


def test_a_long_table_of_dates_writes_its_times_back_as_dates():
    table = pd.DataFrame({"id": ["x"] * 3 + ["y"] * 4, "day": ["2024-01-01", "2024-01-02", "2024-01-03",
                                                             "2024-02-01", "2024-02-02", "2024-02-03", "2024-02-04"],
                          "y": np.arange(7.0)})
    panel = read_panel(table, "id", "day", "y")
    assert panel.frequency == "D" and panel.times(0, 3, 2) == ["2024-01-04", "2024-01-05"]


def test_a_long_table_writes_its_times_back_in_the_form_they_were_written():
    table = pd.DataFrame({"id": ["x"] * 3 + ["y"] * 3, "hour": ["31.12.2023 22:00", "31.12.2023 23:00", "01.01.2024 00:00",
                                                                "05.01.2024 09:00", "05.01.2024 10:00", "05.01.2024 11:00"],
                          "y": np.arange(6.0)})
    panel = read_panel(table, "id", "hour", "y")
    assert (panel.frequency, panel.time_kind) == ("h", "%d.%m.%Y %H:%M")
    assert panel.times(0, 3, 2) == ["01.01.2024 01:00", "01.01.2024 02:00"]


def test_a_long_dataframe_of_timestamps_reads_them_as_dates_not_as_nanoseconds():
    table = pd.DataFrame({"unique_id": ["x"] * 3 + ["y"] * 2, "y": np.arange(5.0),
                          "ds": pd.to_datetime(["2024-01-31", "2024-02-29", "2024-03-31", "2024-03-31", "2024-04-30"])})
    panel = read_panel(table, "unique_id", "ds", "y")
    assert panel.frequency == "ME" and panel.starts == (pd.Timestamp("2024-01-31"), pd.Timestamp("2024-03-31"))
    assert panel.times(1, 2, 2) == [pd.Timestamp("2024-05-31"), pd.Timestamp("2024-06-30")]


@pytest.mark.parametrize("text, message", [
    ("id,t,y\nA,1,1\n,2,2\n", "column 'id' has a missing series id at line 3 of {path} (the header is line 1)"),
    ("id,t,y\nA,1,1\nA,2,2\nB,1,3\nA,2,4\n",
     "series 'A' has time 2 twice, at lines 3 and 5 of {path} (the header is line 1); a long table holds one row "
     "per id and time"),
    ("id,t,y\nA,1,1\nA,2,x\n", "column 'y' must hold numbers (or empty cells for missing values); line 3 of {path} "
     "(the header is line 1) holds 'x'"),
    ("id,t,y\nA,1,1\nB,1,\nB,2,\n", "series 'B' has no y values (its 2 row(s) hold none): there is nothing to fit "
                                   "or forecast it from; drop its rows from the table"),
    ("id,t,y\n", "the table has no rows, only the columns id, t, y"),
    ("id,day,y\n" + "".join(f"A,2024-01-{day:02d},1\n" for day in range(1, 11)) + "B,2024-01-01,1\nB,2024-01-08,2\n"
     "B,2024-01-15,3\n", "series 'B' has 3 times on the 15 steps of a D grid from 2024-01-01 to 2024-01-15: filling "
     "the other 12 would invent most of the series; give times of one frequency"),
    ("id,t,y\nA,1,1\nA,2,2\nA,3,3\nB,1,1\nB,2,\nB,3,\nB,4,\nB,5,5\n", "series 'B' has 2 values on the 5 steps of a "
     "step grid from 1 to 5: filling the other 3 would invent most of the series"),
    ("id,day,y\nA,2024-01-01,1\nA,2024-01-02,2\nA,2024-01-03,3\nB,2024-01-01 12:00,1\nB,2024-01-02,2\n",
     "series 'B' is not on the D grid of column 'day': '2024-01-02', at line 6 of {path} (the header is line 1), "
     "falls between its steps"),
    ("id,t,y\nA,1,1\nA,2,2\nA,3,3\nA,3.5,4\nB,1,1\n", "column 't' holds integer steps (1, 2, 3 ...), but line 5 of "
     "{path} (the header is line 1) holds 3.5, which is not an integer step"),
    ("id,t,y\nNA,1,1\nNA,2,2\n,3,3\n", "column 'id' has a missing series id at line 4 of {path} (the header is line 1)"),
])
def test_a_bad_long_table_is_refused_at_its_line(tmp_path, text, message):
    path = write_csv(tmp_path, text)
    with pytest.raises(ValueError, match=re.escape(message.format(path=path))):
        read_panel(path, "id", "day" if "day" in text else "t", "y")


def test_ids_are_read_as_written_so_that_leading_zeros_name_other_series(tmp_path):
    """pandas reads an id column of digits as numbers: 007 and 7 became one series, spliced
    over time, and 0042 came back as 42; statsforecast's unique_id is the text as written."""
    path = write_csv(tmp_path, "id,t,y\n007,1,1\n007,2,2\n7,3,3\n7,4,4\n0042,1,5\n0042,2,6\n")
    panel = read_panel(path, "id", "t", "y")
    assert panel.ids == ("007", "7", "0042")
    assert [series.tolist() for series in panel.values] == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]


def test_ids_that_pandas_would_read_as_missing_are_ids(tmp_path):
    path = write_csv(tmp_path, "id,t,y\nNA,1,1\nNA,2,2\nnull,1,3\nnull,2,4\n")  # Namibia; a literal id
    panel = read_panel(path, "id", "t", "y")
    assert panel.ids == ("NA", "null") and [series.tolist() for series in panel.values] == [[1.0, 2.0], [3.0, 4.0]]


def test_a_bad_long_table_in_a_dataframe_is_named_by_position():
    table = pd.DataFrame({"id": ["A", "A", "A"], "t": [1, 2, 1], "y": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match=re.escape(
            "series 'A' has time 1 twice, at rows 0 and 2 (0-based positions in the DataFrame)")):
        read_panel(table, "id", "t", "y")


def test_ids_written_alike_are_refused():
    """The number 7 and the string "7" were two series, whose forecasts were one id in the CSV."""
    table = pd.DataFrame({"id": [7, 7, "7", "7"], "t": [1, 2, 1, 2], "y": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(ValueError, match=re.escape(
            "column 'id' holds the ids 7 and '7', two series written alike (a number and a string?); give every id "
            "as one type")):
        read_panel(table, "id", "t", "y")


# --- windows and scaling -------------------------------------------------------------------------

def test_panel_windows_pad_a_short_series_with_a_mask_by_hand():
    windows = PanelWindows([torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), torch.tensor([7.0, 8.0])], lookback=3, horizon=2)
    batch = windows.batch([(0, 3), (1, 1)])
    assert batch.history[..., 0].tolist() == [[1.0, 2.0, 3.0], [7.0, 7.0, 7.0]]  # padded with the first value
    assert batch.history[..., 1].tolist() == [[1.0, 1.0, 1.0], [0.0, 0.0, 1.0]]  # the mask
    assert batch.targets is None  # the second window reaches past its series' end
    assert windows.batch([(0, 3)]).targets[..., 0].tolist() == [[4.0, 5.0]]
    assert windows.batch([(1, 2)]).history[..., 0].tolist() == [[7.0, 7.0, 8.0]]  # predict from the end
    with pytest.raises(ValueError, match="window origins must lie in 1 .. the length of their series"):
        windows.batch([(1, 3)])


@pytest.mark.parametrize("normalisation", ["standard", "log", "seasonal"])
def test_each_series_scaling_inverts_itself(normalisation):
    series = (10 + np.arange(48.0)) * np.tile([0.5, 1.0, 1.5, 1.0], 12)
    scaling = SeriesScaling.fit(series[:40], normalisation, 4)
    np.testing.assert_allclose(scaling.inverse(scaling.transform(series[40:], 40), 40), series[40:], rtol=1e-12)
    assert scaling.log == (normalisation != "standard")
    assert (scaling.indices == 1).all() == (normalisation != "seasonal")


# --- the global forecaster -----------------------------------------------------------------------

def test_two_constant_series_each_forecast_their_own_constant():
    table = long_table({"a": np.full(40, 5.0), "b": np.full(40, 300.0)})
    forecaster = Forecaster("t", "y", horizon=4, id="id", **QUICK).fit(table)
    prediction = forecaster.predict(table)
    assert prediction.columns.tolist() == ["id", "t", "y", "y_lower_90", "y_upper_90"]  # one table's names
    assert prediction["id"].tolist() == ["a"] * 4 + ["b"] * 4
    assert prediction["t"].tolist() == [41, 42, 43, 44] * 2
    for column in ("y", "y_lower_90", "y_upper_90"):
        np.testing.assert_allclose(prediction[column], [5.0] * 4 + [300.0] * 4, rtol=1e-12)


@pytest.fixture(scope="module")
def lines():
    """Two straight lines, one rising and one falling, and a series of 3 values (shorter than
    the lookback), backtested on their last 4 values."""
    table = long_table({"up": 10 + 2.0 * np.arange(60), "down": 500 - 3.0 * np.arange(60), "new": np.array([4.0, 5, 6])})
    forecaster = Forecaster("t", "y", horizon=4, id="id", **QUICK)
    return table, forecaster, forecaster.backtest(table)


def test_the_forecast_is_chosen_on_validation_windows_and_a_line_is_continued_exactly(lines):
    table, forecaster, result = lines
    # ETS continues a line exactly; the two-epoch network, alone or averaged with ETS, does not.
    assert result.model.layout.chosen == "ets"
    assert result.unscored == ["new"] and result.series == 2
    scores = result.scores
    assert scores.loc[result.model.layout.chosen, "OWA"] == pytest.approx(0, abs=1e-6)
    assert scores.loc["naive2", "OWA"] == 1.0 and scores.loc["model", "OWA"] > 0
    # Held-out rows: 2 scored series x 4 steps, with the actual values.
    rows = result.forecasts
    assert rows["id"].tolist() == ["up"] * 4 + ["down"] * 4 and rows["t"].tolist() == [57, 58, 59, 60] * 2
    assert rows["actual"].tolist() == [122.0, 124.0, 126.0, 128.0, 332.0, 329.0, 326.0, 323.0]
    text = panel_report(result)
    assert "the model is beaten on this backtest" in text
    assert f"predict uses the {result.model.layout.chosen} forecast" in text
    forecaster.fit(table)
    prediction = forecaster.predict(table)
    assert prediction["t"].tolist() == [61, 62, 63, 64] * 2 + [4, 5, 6, 7]
    np.testing.assert_allclose(prediction["y"][:8], [130, 132, 134, 136, 320, 317, 314, 311], rtol=1e-6)
    assert np.isfinite(prediction[["y", "y_lower_90", "y_upper_90"]].to_numpy()).all()  # the short series too
    assert prediction.attrs["forecast"] == forecaster.layout.chosen


@pytest.mark.filterwarnings("ignore:.*validation values:RuntimeWarning")  # 12 values, exact ones: the interval's
def test_a_series_flat_before_its_window_leaves_the_choice_to_smape_not_to_the_network():
    """Zeros, then a sale in the validation window: a MASE scale of 0 made every candidate's OWA
    nan, and the network, first among them, was chosen by default (over ETS, which continues the
    two lines exactly)."""
    flat = np.r_[np.zeros(57), 0, 0, 2.0]
    table = long_table({"up": 10 + 2.0 * np.arange(60), "down": 500 - 3.0 * np.arange(60), "flat": flat})
    forecaster = Forecaster("t", "y", horizon=4, id="id", **QUICK).fit(table)
    validation = forecaster.layout.validation
    assert all(np.isnan(scores["OWA"]) for scores in validation.values())
    assert forecaster.layout.chosen == min(validation, key=lambda method: validation[method]["sMAPE"]) == "ets"
    assert forecaster.layout.partner == "ets"
    assert chosen_line(forecaster).endswith(
        f"the lowest sMAPE ({validation['ets']['sMAPE']:.3f}) (OWA is not finite for every method: a series whose "
        "history repeats each season exactly, flat or not, has a MASE scale of 0)")


def test_baselines_none_keeps_the_network_where_ets_continues_the_lines_exactly(lines):
    table = lines[0]
    result = Forecaster("t", "y", horizon=4, id="id", baselines="none", **QUICK).backtest(table)
    assert result.model.layout.chosen == "model" and result.model.layout.partner is None
    assert result.scores.index.tolist() == ["model", "naive2"]  # Naive2, for OWA, is scored all the same
    assert "predict uses the model's forecast (--baselines none: nothing else to choose)" in panel_report(result)


def test_the_statistical_baselines_say_when_they_start_and_how_long_they_took(lines, capsys, monkeypatch):
    """statsforecast fits them for seconds a series: a fit of M4 hourly's 414 series printed
    nothing for 269 s after its last training step."""
    Forecaster("t", "y", horizon=4, id="id", baselines=("naive", "ets"), **QUICK).backtest(lines[0])
    said = [line for line in capsys.readouterr().err.splitlines() if "AutoETS" in line]
    assert said[0] == f"forecast: fitting AutoETS to 2 series (statsforecast, {baseline_jobs()} process" + (
        "es)" if baseline_jobs() != 1 else ")")  # those with validation windows: not the new one
    assert re.fullmatch(r"forecast: fitted AutoETS in [\d.]+ s", said[1])
    assert len(said) == 4  # the validation windows' choice, then the held-out values'
    from lstmkit.pipelines.forecast_global import announced_baselines

    monkeypatch.setenv("WORLD_SIZE", "2")  # without RANK (a script's own environment): said, not a ValueError
    announced_baselines([np.arange(30.0)], 4, 1, ("ets",))
    assert "forecast: fitting AutoETS to 1 series" in capsys.readouterr().err
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setenv("RANK", "1")  # torchrun's other ranks fit them too, silently
    Forecaster("t", "y", horizon=4, id="id", baselines=("naive", "ets"), **QUICK).backtest(lines[0])
    assert "AutoETS" not in capsys.readouterr().err


def test_a_long_tables_backtest_refuses_baselines_it_would_not_score(lines, monkeypatch):
    """It dropped them without a word, scoring config.baselines and Naive2."""
    forecaster = Forecaster("t", "y", horizon=4, id="id", baselines=("naive",), **QUICK)
    monkeypatch.setattr(Forecaster, "fit", lambda *arguments: pytest.fail("trained before the check"))
    with pytest.raises(ValueError, match=re.escape("a long table's backtest scores the forecaster's baselines setting "
                                                   "(naive) and Naive2, OWA's reference; baselines= is for one "
                                                   "table, got ('arima',)")):
        forecaster.backtest(lines[0], baselines=("arima",))


def test_predict_after_baselines_none_says_the_network_forecasts(tmp_path, capsys):
    from lstmkit.cli import main

    path = tmp_path / "long.csv"
    long_table({"up": 10 + 2.0 * np.arange(40), "down": 500 - 3.0 * np.arange(40)}).to_csv(path, index=False)
    main(["forecast", "fit", str(path), "--id", "id", "--time", "t", "--target", "y", "--horizon", "3",
          "--hidden-size", "8", "--num-layers", "1", "--epochs", "2", "--baselines", "none", "--out", str(tmp_path / "r")])
    capsys.readouterr()
    main(["forecast", "predict", str(tmp_path / "r"), str(path), "--out", str(tmp_path / "next.csv")])
    assert capsys.readouterr().out == (f"wrote 6 forecast rows to {tmp_path / 'next.csv'}; forecasts by the network: "
                                       "it was fitted with --baselines none\n")


def test_series_too_short_to_backtest_or_to_train_on_are_counted_as_the_user_gave_them():
    forecaster = Forecaster("t", "y", horizon=4, id="id", **QUICK)
    with pytest.raises(ValueError, match=re.escape(
            "no series has holdout + 2 = 6 values or more to backtest on; the longest has 5")):
        forecaster.backtest(long_table({"a": np.arange(5.0), "b": np.arange(3.0)}))
    with pytest.raises(ValueError, match=re.escape(
            "no series of the 1 has a training window: one needs horizon + 1 = 5 values, and 4 more for validation; "
            "the longest has 4 once its last 4 are held out for the backtest (--holdout)")):
        forecaster.backtest(long_table({"a": np.arange(8.0)}))


def test_predict_computes_only_the_baselines_its_forecast_needs(lines, monkeypatch):
    """Each forecast `predict` can use equals that method's row among every method's forecasts,
    made from its own baselines alone (and naive, the stand-in for a forecast that is not finite)."""
    from lstmkit.pipelines import forecast_global

    table, forecaster, _ = lines
    forecaster.fit(table)
    histories = list(forecast_global.read(forecaster, table).values)
    every = forecast_global.forecast(forecaster, histories).methods
    computed, all_baselines = [], forecast_global.panel_baselines

    def recorded(histories, horizon, season, names):
        computed.append(names)
        return all_baselines(histories, horizon, season, names)

    monkeypatch.setattr(forecast_global, "panel_baselines", recorded)
    fitted_layout = forecaster.layout  # the module's fixture: each method is set for this test only
    for method, needed, expected in [
            ("model", ("naive",), every["model"]),
            ("ets", ("ets", "naive"), every["ets"]),
            ("combination", ("theta", "ets", "naive"), every["combination"]),  # the statistical ones
            ("model+theta", ("theta", "naive"), (every["model"] + every["theta"]) / 2)]:
        computed.clear()
        monkeypatch.setattr(forecaster, "layout", dataclasses.replace(fitted_layout, chosen=method))
        prediction = forecaster.predict(table)
        assert computed == [needed], method
        np.testing.assert_allclose(prediction["y"].to_numpy(), expected.ravel(), rtol=1e-12, err_msg=method)


def test_a_series_of_one_value_is_forecast_with_an_interval_of_zero_width_and_said_so(lines):
    """A long table's constant series got a 90% interval of zero width in silence (one table's
    fit warns of it)."""
    table, forecaster, _ = lines
    forecaster.fit(table)
    given = pd.concat([table, long_table({"flat": np.full(8, 3.0), "one": np.array([7.0])})])
    with pytest.warns(UserWarning, match=re.escape(
            "2 series hold one value in all the rows given (a single row, or a constant): each is forecast as that "
            "value, with an interval of zero width: flat, one")):
        prediction = forecaster.predict(given)
    for name, value in (("flat", 3.0), ("one", 7.0)):
        rows = prediction[prediction["id"] == name]
        assert len(rows) == 4 and (rows["y_lower_90"] == rows["y"]).all() and (rows["y_upper_90"] == rows["y"]).all()
        np.testing.assert_allclose(rows["y"], value, rtol=1e-12)


def test_a_series_shorter_than_one_season_is_said_where_the_forecast_uses_seasonal_baselines(lines, monkeypatch):
    """A new id of fewer than m values had its baselines fitted without a season in silence
    (the fit warns of the series it validates on)."""
    table, forecaster, _ = lines
    forecaster.fit(table)
    monkeypatch.setattr(forecaster, "layout", dataclasses.replace(forecaster.layout, season=4, chosen="ets"))
    with pytest.warns(UserWarning, match=re.escape(
            "1 series holds fewer than m = 4 values: the forecast's baselines (ets) are fitted to each without a "
            "season, as statsforecast fits them: new")):
        forecaster.predict(pd.concat([table, long_table({"flat": np.full(2, 3.0)})]))  # a constant's is said apart
    monkeypatch.setattr(forecaster, "layout", dataclasses.replace(forecaster.layout, chosen="combination"))
    with pytest.warns(UserWarning, match=re.escape(  # the mean of the network and the statistical baselines
            "1 series holds fewer than m = 4 values: the forecast's baselines (theta, ets) are fitted to each without "
            "a season, as statsforecast fits them: new")):
        forecaster.predict(table)
    monkeypatch.setattr(forecaster, "layout", dataclasses.replace(forecaster.layout, chosen="seasonal_naive"))
    with pytest.warns(UserWarning, match=re.escape("(seasonal_naive) are fitted to each without a season (seasonal "
                                                   "naive is naive), as statsforecast fits them: new")):
        forecaster.predict(table)
    for chosen in ("model", "drift", "model+naive"):  # no baseline, or none a season changes
        monkeypatch.setattr(forecaster, "layout", dataclasses.replace(forecaster.layout, chosen=chosen))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            forecaster.predict(table)


def test_a_global_forecaster_saved_predicts_the_same_after_loading(lines, tmp_path):
    table, forecaster, _ = lines
    forecaster.fit(table).save(tmp_path / "model")
    loaded = Forecaster.load(tmp_path / "model")
    pd.testing.assert_frame_equal(loaded.predict(table), forecaster.predict(table))
    on_cpu = Forecaster.load(tmp_path / "model", device=torch.device("cpu"))  # as the other loaders take it
    pd.testing.assert_frame_equal(on_cpu.predict(table), forecaster.predict(table))
    assert json.loads((tmp_path / "model" / "config.json").read_text())["layout"]["chosen"] == forecaster.layout.chosen


def test_a_global_forecaster_saved_with_calendar_off_by_an_older_version_loads(lines, tmp_path):
    """Versions before the option was refused with id saved calendar=False, which did nothing there."""
    table, forecaster, _ = lines
    forecaster.fit(table).save(tmp_path / "model")
    config_file = tmp_path / "model" / "config.json"
    saved = json.loads(config_file.read_text())
    saved["forecaster"]["calendar"] = False
    config_file.write_text(json.dumps(saved))
    pd.testing.assert_frame_equal(Forecaster.load(tmp_path / "model").predict(table), forecaster.predict(table))


def test_two_normalisations_train_one_network_each_and_average_their_forecasts(tmp_path):
    # Growing seasonal series: standard and log scalings see them differently.
    steps = np.arange(48)
    table = long_table({name: level * (1 + 0.02 * steps) * (1 + 0.3 * np.sin(2 * np.pi * steps / 4))
                        for name, level in (("a", 10.0), ("b", 200.0), ("c", 50.0))})
    options = dict(horizon=4, id="id", season=4, baselines=("naive",), **QUICK)
    singles = [Forecaster("t", "y", normalisation=name, **options).fit(table) for name in ("standard", "log")]
    both = Forecaster("t", "y", normalisation="standard,log", **options).fit(table)
    assert both.config.normalisation == ("standard", "log")
    # Each member is the network its normalisation alone trains (same seed, same windows).
    for member, single in zip(both.network.members, singles):
        for (name, value), expected in zip(member.state_dict().items(), single.network.state_dict().values()):
            torch.testing.assert_close(value, expected, rtol=0, atol=0, msg=name)
    histories = [values for values in both.read(table).values]
    averaged = forecast_global.forecast(both, histories).methods["model"]
    alone = [forecast_global.forecast(single, histories).methods["model"] for single in singles]
    assert not np.allclose(alone[0], alone[1])
    np.testing.assert_allclose(averaged, (alone[0] + alone[1]) / 2, rtol=1e-12)
    assert both.best_epoch == [single.best_epoch for single in singles]
    assert epochs_line(both) == (f"one network per normalisation, epochs of up to 4096 windows: standard trained 2, "
                                 f"kept epoch {singles[0].best_epoch}; log trained 2, kept epoch {singles[1].best_epoch}")
    both.save(tmp_path / "model")
    pd.testing.assert_frame_equal(Forecaster.load(tmp_path / "model").predict(table), both.predict(table))


def test_series_that_log_normalisation_cannot_log_are_named():
    """A series with a value <= 0 is scaled as by 'standard': the report said log for the whole
    table, and nothing named the series."""
    steps = np.arange(30.0)
    tail = np.where(steps < 29, 10 + np.cos(steps), 0.0)  # its only 0 in the validation tail: log gave -inf there
    table = long_table({"up": 10 + np.sin(steps), "neg": np.sin(steps), "zero": np.zeros(30), "tail": tail})
    with pytest.warns(UserWarning, match=re.escape(
            "3 of the 4 series hold a value <= 0, which log normalisation cannot log: each is scaled as by 'standard' "
            "instead: neg, zero, tail")):
        Forecaster("t", "y", horizon=3, id="id", baselines=("naive",), normalisation="log", **QUICK).fit(table)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*cannot log")
        Forecaster("t", "y", horizon=3, id="id", baselines=("naive",), **QUICK).fit(table)


@pytest.mark.parametrize("epochs", [None, 2])
def test_normalisations_share_the_time_budget_left(epochs, monkeypatch):
    budgets, seconds = record_forecast_budgets(monkeypatch)
    table = long_table({"a": 10 + np.sin(np.arange(30.0)), "b": 5 + np.cos(np.arange(30.0))})
    budget = 0.6 if epochs is None else 600.0  # 2 epochs end each network long before 200 s
    Forecaster("t", "y", horizon=3, id="id", baselines=("naive",), normalisation="standard,log,seasonal",
               **{**QUICK, "epochs": epochs, "time_budget": budget}).fit(table)
    # Each trains in an equal share of what those before it left: a third, then half the rest, then the rest
    # (never 0: a step may overrun a share, by much on a busy machine).
    assert budgets == [budget / 3, max(budget - seconds[0], 1e-6) / 2, max(budget - (seconds[0] + seconds[1]), 1e-6)]
    if epochs is not None:  # stopped early, the first two leave most of their shares to the last
        assert budgets[2] > 2 * budget / 3


def test_the_budget_left_is_shared_and_never_zero():
    assert budget_left(None, 5.0, 2) is None  # no time budget: the epochs' or steps' alone
    assert budget_left(10.0, 4.0, 2) == 3.0
    # Overrun (a slow step, or a resume with a smaller budget): one step, not a refusal.
    assert budget_left(10.0, 12.0, 1) == 1e-6


@pytest.mark.parametrize("lookback, base", [(None, 4), (8, 4), (3, 1)])
def test_the_network_corrects_seasonal_naive_when_the_lookback_holds_a_season(lookback, base, tmp_path):
    table = long_table({"a": 10 + np.tile([1.0, 5, 2, 7], 10), "b": 50 + np.tile([3.0, 0, 4, 1], 10)})
    forecaster = Forecaster("t", "y", horizon=3, id="id", season=4, lookback=lookback, **QUICK).fit(table)
    assert forecaster.network.config.season == base
    forecaster.save(tmp_path / "model")
    loaded = Forecaster.load(tmp_path / "model")
    assert loaded.network.config.season == base
    pd.testing.assert_frame_equal(loaded.predict(table), forecaster.predict(table))


def test_a_global_forecasters_interval_is_the_laplace_quantile_of_the_predicted_scale():
    table = long_table({"up": 10 + 2.0 * np.arange(40), "down": 500 - 3.0 * np.arange(40)})
    # Without validation windows there is no calibration (lstmkit.series.intervals): the network's own interval.
    narrow, wide = (Forecaster("t", "y", horizon=3, id="id", interval=interval, early_stopping=False, **QUICK)
                    .fit(table).predict(table) for interval in (0.5, 0.95))
    np.testing.assert_allclose(wide["y"], narrow["y"], rtol=1e-12)  # same seed, same model
    ratio = (wide["y_upper_95"] - wide["y"]) / (narrow["y_upper_50"] - narrow["y"])
    np.testing.assert_allclose(ratio, math.log(20) / math.log(2), rtol=1e-9)  # w = −log(1 − coverage) · b


def test_cli_fit_and_predict_a_long_table(tmp_path, capsys):
    from lstmkit.cli import main

    path = tmp_path / "long.csv"
    long_table({"up": 10 + 2.0 * np.arange(40), "down": 500 - 3.0 * np.arange(40)}).to_csv(path, index=False)
    main(["forecast", "fit", str(path), "--id", "id", "--time", "t", "--target", "y", "--horizon", "3",
          "--hidden-size", "8", "--num-layers", "1", "--epochs", "2", "--baselines", "naive,naive2,ets",
          "--ensemble", "2", "--distribution", "normal", "--out", str(tmp_path / "run")])
    printed = capsys.readouterr().out
    assert "predict uses the ets forecast" in printed
    assert f"wrote {tmp_path / 'run'}/results.json and {tmp_path / 'run'}/backtest.csv\n" in printed  # no picture
    assert not (tmp_path / "run" / "backtest.png").exists()
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results["backtest"]) == {"model", "combination", "naive", "naive2", "ets", "model+ets"}
    saved = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    # The refit chooses again: results.json names its choice, what predict uses, beside the backtest's.
    assert results["predict_uses"] == saved["layout"]["chosen"] and results["backtest_chose"] == "ets"
    # ... with the refit's validation scores and interval scale, which predict uses, not the backtest's
    assert (results["validation"], results["interval_scale"]) == (saved["layout"]["validation"],
                                                                 saved["layout"]["interval_scale"])
    assert set(results["backtest_validation"]) == set(results["validation"]) and \
        isinstance(results["backtest_interval_scale"], float)
    assert (saved["forecaster"]["ensemble"], saved["forecaster"]["distribution"], saved["network"]["ensemble"]) == \
        (2, "normal", 2)
    main(["forecast", "predict", str(tmp_path / "run"), str(path), "--out", str(tmp_path / "next.csv")])
    prediction = pd.read_csv(tmp_path / "next.csv")
    assert prediction.columns.tolist() == ["id", "t", "y", "y_lower_90", "y_upper_90"]
    np.testing.assert_allclose(prediction["y"], [90, 92, 94, 380, 377, 374], rtol=1e-6)
    main(["forecast", "predict", str(tmp_path / "run"), str(path), "--horizon", "2", "--out", str(tmp_path / "two.csv")])
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "two.csv"), prediction.iloc[[0, 1, 3, 4]].reset_index(drop=True))
    backtest = pd.read_csv(tmp_path / "run" / "backtest.csv")  # the interval is the chosen forecast's, named so
    assert backtest.columns.tolist()[-3:] == ["chosen", "chosen_lower", "chosen_upper"]
    np.testing.assert_allclose(backtest["chosen"], backtest["ets"], rtol=1e-12)


@pytest.mark.parametrize("options, message", [
    (dict(normalisation="boxcox"), "normalisation must be one or more different names among standard, log, seasonal, "
                                   "got boxcox"),
    (dict(normalisation="log,log"), "normalisation must be one or more different names among standard, log, "
                                    "seasonal, got log,log"),
    (dict(normalisation=""), "normalisation must be one or more different names among standard, log, seasonal, "
                             "got none"),
    (dict(normalisation="standard,log", base="auto"), "normalisation standard,log trains a network per "
                                                      "normalisation, and base 'auto' two per normalisation"),
    (dict(id=None, normalisation="log"), "normalisation applies to long tables (id=...), got log without id"),
    (dict(baselines=("naive", "prophet")), "baselines must be among naive, seasonal_naive, drift, ets, arima, theta, "
                                           "naive2 (or none, alone: predict then forecasts by the network), got 'prophet'"),
    (dict(epoch_windows=0), "epoch_windows must be a positive integer, got 0"),
    (dict(id=None, epoch_windows=10), "epoch_windows (--epoch-windows) is the windows drawn per epoch of a long table "
                                      "(id=...), got 10 without id: an epoch of one table is all its windows"),
    (dict(target="y,z"), "a long table (id='id') has one target column, got y, z"),
    (dict(id="t"), "id, time and target must be three columns, got id='t' twice"),
    (dict(calendar=False), "a long table (id='id') has no calendar features to turn off"),
    (dict(covariates="price", future_covariates="promo,holiday"),
     "covariates are not read from a long table (id='id') yet; got covariates price (--covariates) and "
     "future_covariates promo, holiday (--future-covariates): leave them out"),
])
def test_long_table_options_are_refused_when_the_config_is_built(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Forecaster(**{"time": "t", "target": "y", "horizon": 3, "id": "id", **options})


def test_a_long_table_without_a_statistical_baseline_reports_no_combination():
    """The mean of the network and no statistical baseline would be the network's own forecast."""
    table = long_table({"up": 10 + 2.0 * np.arange(40), "down": 500 - 3.0 * np.arange(40)})
    result = Forecaster("t", "y", horizon=4, id="id", baselines=("naive", "drift"), **QUICK).backtest(table)
    assert result.scores.index.tolist() == ["model", "naive", "drift", "naive2", "model+drift"]
    assert set(result.model.layout.validation) == {"model", "naive", "drift", "model+drift"}


def test_a_long_table_backtest_scores_only_the_held_out_values_it_gives():
    """A value missing among a series' last `holdout` is interpolated for its grid, but not
    scored, counted in the coverage, or written as an actual."""
    up, down = 10 + 2.0 * np.arange(40), 500 - 3.0 * np.arange(40)
    table = long_table({"up": up, "down": down}).drop(index=[37, 74])  # up's 38th value (held out), down's 35th
    with pytest.warns(MissingValuesWarning, match="2 missing value"):
        result = Forecaster("t", "y", horizon=4, id="id", baselines=("naive", "drift"), **QUICK).backtest(table)
    actual = result.forecasts.set_index(["id", "t"])["actual"]
    assert actual.isna().tolist() == [False, True, False, False] + [False] * 4
    # naive repeats each history's last value (t 36); the lines interpolate exactly
    expected = m4_scores([up[[36, 38, 39]], down[36:]], [np.full(3, up[35]), np.full(4, down[35])],
                         [up[:36], down[:36]], 1)
    assert result.scores.loc["naive", ["sMAPE", "MASE"]].tolist() == pytest.approx([expected["sMAPE"], expected["MASE"]])


def test_a_long_table_backtest_forecasts_seeing_nothing_from_its_holdout_on():
    """A gap just before a series' holdout (up's 35th and 36th values): with the held-out values
    changed, every forecast is the same, and naive repeats up's 34th value, the last given."""
    steps = np.arange(40)
    up, down = 10 + 2.0 * steps + 5.0 * (steps % 2), 500 - 3.0 * steps + 7.0 * (steps % 3)
    table = long_table({"up": up, "down": down}).drop(index=[34, 35])
    changed = table.copy()
    changed.loc[(changed["t"] > 36).to_numpy(), "y"] += 1000.0
    forecasts = []
    for data in (table, changed):
        with pytest.warns(MissingValuesWarning, match="2 missing value"):
            result = Forecaster("t", "y", horizon=4, id="id", baselines=("naive", "drift"), **QUICK).backtest(data)
        forecasts.append(result.forecasts.drop(columns="actual"))
    pd.testing.assert_frame_equal(*forecasts)
    assert forecasts[0]["naive"].tolist() == [up[33]] * 4 + [down[35]] * 4


def test_a_long_tables_fit_validates_on_its_series_as_known_and_trains_on_them_filled(monkeypatch):
    """The fit's validation windows (early stopping) read up's 35th and 36th values, filled
    towards its 37th, the first validated; they now hold its 34th, and the training windows the
    table as filled; a table without gaps gives no second copy."""
    from lstmkit.pipelines import forecast_global

    steps = np.arange(40)
    up, down = 10 + 2.0 * steps + 5.0 * (steps % 2), 500 - 3.0 * steps
    cut, seen = forecast_global.scaled_windows, []

    def kept(series, ends, normalisation, season, lookback, horizon, known=None):
        if len(series[0]) == 40:  # the fit's, of whole series (a forecast's are cut at their origin)
            seen.append((series, ends, known))
        return cut(series, ends, normalisation, season, lookback, horizon, known)

    monkeypatch.setattr(forecast_global, "scaled_windows", kept)
    with pytest.warns(MissingValuesWarning, match="2 missing value"):
        Forecaster("t", "y", horizon=4, id="id", baselines=("naive",), **QUICK).fit(
            long_table({"up": up, "down": down}).drop(index=[34, 35]))
    series, ends, known = seen[0]
    assert ends == [36, 36] and series[0][34:36].tolist() == [up[33] + (up[36] - up[33]) / 3 * k for k in (1, 2)]
    assert known[0][:36].tolist() == [*up[:34], up[33], up[33]] and known[0][36:].tolist() == up[36:].tolist()
    assert known[1].tolist() == down.tolist()
    Forecaster("t", "y", horizon=4, id="id", baselines=("naive",), **QUICK).fit(long_table({"up": up, "down": down}))
    assert len(seen) == 2 and seen[1][2] is None


def test_a_long_table_chooses_without_the_interpolated_values():
    """As in the backtest, a value missing from a validation window is not scored in the choice."""
    steps = np.arange(40)
    up, down = 10 + 2.0 * steps + 5.0 * (steps % 2), 500 - 3.0 * steps + 7.0 * (steps % 3)  # interpolation misses
    table = long_table({"up": up, "down": down}).drop(index=[37])  # up's 38th value, in its validation window
    with pytest.warns(MissingValuesWarning, match="1 missing value"):
        forecaster = Forecaster("t", "y", horizon=4, id="id", baselines=("naive", "drift"), **QUICK).fit(table)
    # naive by hand: the last value before each validation window, against the values given
    expected = m4_scores([up[[36, 38, 39]], down[36:]], [np.full(3, up[35]), np.full(4, down[35])],
                         [up[:36], down[:36]], 1)
    naive = forecaster.layout.validation["naive"]
    assert [naive["sMAPE"], naive["MASE"]] == pytest.approx([expected["sMAPE"], expected["MASE"]], rel=1e-12)


def test_the_report_gives_the_lookback_asked_for_and_the_windows_the_base_needs():
    weekly = Forecaster("t", "y", horizon=48, id="id", season=24, extra_seasons=(168,), lookback=48).config
    layout = forecast_global.PanelLayout("h", "timestamp", 24, forecast_global.history_length(weekly, 24), "model", {})
    assert lookback_text(weekly, layout) == "lookback 48 (windows hold 336 steps for the seasonal base)"
    plain = Forecaster("t", "y", horizon=48, id="id", season=24).config
    assert lookback_text(plain, dataclasses.replace(layout, lookback=96)) == "lookback 96"  # 2 x max(48, 24)


def test_naive2_is_owas_reference_not_a_candidate_unless_given():
    """Seasonal series, where Naive2 (seasonally adjusted) beats the network by far; with
    --baselines naive,drift the choice stays among those, their pairs and the network."""
    steps, pattern = np.arange(48), np.array([1.0, 1.6, 0.7, 1.2])
    noise = np.random.default_rng(0).normal(0, 1, (2, 48))
    table = long_table({"a": 100 * pattern[steps % 4] + 3 * noise[0], "b": 50 * pattern[(steps + 1) % 4] + 2 * noise[1]})
    options = dict(horizon=4, id="id", season=4, **QUICK)
    given = Forecaster("t", "y", baselines=("naive", "drift"), **options).backtest(table).model.layout
    assert set(given.validation) == {"model", "naive", "drift", "model+naive"} and given.chosen == "model"
    with_naive2 = Forecaster("t", "y", baselines=("naive", "naive2"), **options).backtest(table).model.layout
    assert with_naive2.validation["naive2"]["OWA"] == pytest.approx(1.0)
    assert with_naive2.chosen == "model+naive2"


def test_integer_steps_that_leave_most_of_their_grid_empty_are_refused():
    table = pd.DataFrame({"id": ["a"] * 3, "t": [1, 10, 20], "y": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match=re.escape(
            "series 'a' has 3 times on the 20 steps of a step grid from 1 to 20: filling the other 17 would invent "
            "most of the series")):
        read_panel(table, "id", "t", "y")


def test_the_scores_table_widens_for_a_long_method_name():
    from lstmkit.pipelines.forecast_report import scores_table

    scores = pd.DataFrame({"sMAPE": [1.0, 2.0], "OWA": [0.3, 0.2]}, index=["model", "model+seasonal_naive"])
    assert scores_table(scores, "lstm", ("sMAPE", "OWA"), "6.3f") == [
        "method                 sMAPE    OWA",
        "model (lstm)          1.000* 0.300 ",
        "model+seasonal_naive  2.000  0.200*",
    ]


def test_a_long_tables_frequency_is_the_grid_that_holds_every_series():
    """The longest series' alone decided it: one weekday-only series made a daily table business
    days and refused the other series' weekends, at fit and at predict."""
    business, days = pd.bdate_range("2021-01-04", periods=30), pd.date_range("2021-02-01", periods=20)
    table = pd.DataFrame({"id": ["shop"] * 30 + ["store"] * 20, "t": np.r_[business, days].astype("datetime64[ns]"),
                          "y": np.arange(50.0)})
    with pytest.warns(MissingValuesWarning, match="column 'y': 10 missing value"):  # shop's 5 weekends
        assert read_panel(table, "id", "t", "y").frequency == "D"
    shop = table[table["id"] == "shop"]
    assert read_panel(shop, "id", "t", "y").frequency == "B"
    with pytest.warns(MissingValuesWarning):  # at predict, the fitted grid
        assert read_panel(shop, "id", "t", "y", frequency="D").frequency == "D"


def test_one_hourly_series_among_daily_ones_is_the_one_refused():
    """Its grid holds every row, with the fewest empty steps: the table was read as hourly, and a
    daily series was refused ("filling the other 1817 would invent most of the series")."""
    def dated(name, count, start, frequency="D"):
        return pd.DataFrame({"id": name, "t": pd.date_range(start, periods=count, freq=frequency),
                             "y": 10 + np.sin(np.arange(count))})

    table = pd.concat([dated("A", 80, "2020-01-01"), dated("B", 60, "2020-02-01"), dated("H", 200, "2020-01-01", "h")],
                      ignore_index=True)
    with pytest.raises(ValueError, match=re.escape(
            "series 'H' is not on the D grid of column 't': Timestamp('2020-01-01 01:00:00'), at row 141 (0-based "
            "position in the DataFrame), falls between its steps")):
        read_panel(table, "id", "t", "y")


def test_a_season_longer_than_every_series_is_said():
    """--season 200 on series of 150 values was taken in silence: the seasonal baselines became naive."""
    table = long_table({"a": 10 + np.sin(np.arange(40.0)), "b": 5 + np.cos(np.arange(30.0))})
    with pytest.warns(UserWarning, match=re.escape(
            "a period of 50 steps (--season) is longer than every series (the longest has 40 values): no series "
            "holds one cycle, so neither the network nor the baselines (fitted without a season) learn anything "
            "seasonal from it, and MASE scales by m = 1")):
        Forecaster("t", "y", horizon=4, id="id", season=50, lookback=8, **QUICK).fit(table)
    with pytest.warns(UserWarning, match=re.escape(
            "1 of the 2 series hold no more than one cycle of m = 30 values before their validation origin: their MASE "
            "scales by m = 1 there, and where they hold fewer, their baselines are fitted without a season (seasonal "
            "naive is naive), as statsforecast fits them")):
        Forecaster("t", "y", horizon=4, id="id", season=30, lookback=8, **QUICK).fit(table)


def test_numpy_integers_are_taken_for_the_holdout_and_the_horizon(lines):
    """np.int64 holdouts and horizons were refused as not integers, though the config takes them."""
    table, forecaster, result = lines
    again = forecaster.backtest(table, holdout=np.int64(4))
    assert again.scores.equals(result.scores)
    forecaster.fit(table)
    assert forecaster.predict(table, horizon=np.int64(2)).equals(forecaster.predict(table, horizon=2))


def test_the_baselines_run_in_this_process_in_a_pools_worker(monkeypatch):
    """A forecast in a multiprocessing.Pool's worker (a sweep in processes) failed after the
    network trained: statsforecast's processes are children, which a daemonic process may not
    start ("daemonic processes are not allowed to have children")."""
    import multiprocessing

    from lstmkit.series import baselines

    monkeypatch.setattr(baselines.os, "sched_getaffinity", lambda _: {0, 1, 2, 3}, raising=False)  # the fork's too
    assert baseline_jobs() == 4
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply(baseline_jobs) == 1


def pdeathsig(answers) -> None:
    """Put this process's parent-death signal (prctl PR_GET_PDEATHSIG) on `answers`."""
    signal_number = ctypes.c_int()
    ctypes.CDLL(ctypes.util.find_library("c")).prctl(2, ctypes.byref(signal_number))
    answers.put(signal_number.value)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux's")
def test_only_the_baselines_own_workers_are_asked_to_die_with_this_process():
    """A process another thread forked while the baselines ran got SIGKILL as its parent-death
    signal, which Linux sends when the forking thread ends: a user's worker died mid-work."""
    import multiprocessing
    import threading

    from lstmkit.series.baselines import workers_die_with_this_process

    context = multiprocessing.get_context("fork")

    def signal_of_a_child() -> int:
        answers = context.SimpleQueue()
        child = context.Process(target=pdeathsig, args=(answers,))
        child.start()
        child.join(timeout=60)
        return answers.get()

    from_another_thread = []
    with workers_die_with_this_process():
        other = threading.Thread(target=lambda: from_another_thread.append(signal_of_a_child()))
        other.start()
        other.join(timeout=60)
        own = signal_of_a_child()
    assert from_another_thread == [0] and own == signal.SIGKILL


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux's")
def test_the_baselines_worker_processes_die_with_a_killed_lstmkit(tmp_path):
    """statsforecast's workers, left behind by a `kill -9`, kept the run folder's lock (which
    they inherit) forever: `--resume` was refused as "in use" until they were found and killed."""
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent("""
        import os, time
        from concurrent.futures import ProcessPoolExecutor
        from lstmkit.series.baselines import workers_die_with_this_process
        with workers_die_with_this_process():
            executor = ProcessPoolExecutor(2)
            for _ in range(2):
                executor.submit(time.sleep, 120)
            time.sleep(1)
            print(*executor._processes, flush=True)
            os.kill(os.getpid(), 9)
    """))
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(Path(lstmkit.__file__).parents[1])})
    workers = [int(pid) for pid in run.stdout.split()]
    assert run.returncode == -9 and len(workers) == 2, run.stderr

    def running(pid: int) -> bool:  # a zombie no init reaped has ended too
        try:
            return "\tZ" not in Path(f"/proc/{pid}/status").read_text().split("State:")[1].splitlines()[0]
        except (FileNotFoundError, IndexError):
            return False

    deadline = time.monotonic() + 10
    while any(map(running, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(running, workers))


def test_base_cycles_on_a_period_of_one_is_said():
    """Integer steps without --season have m = 1: the base is the last value, with no cycles to
    take the median of."""
    table = long_table({"a": 10 + np.sin(np.arange(40.0)), "b": 5 + np.cos(np.arange(30.0))})
    with pytest.warns(UserWarning, match=re.escape(
            "base_cycles=3 (--base-cycles) does nothing here: the longest period is 1 (m = 1, no extra seasons), so "
            "the base is the last value, not a median of cycles")):
        Forecaster("t", "y", horizon=4, id="id", base_cycles=3, lookback=8, **QUICK).fit(table)


def test_a_long_tables_integer_steps_not_1_apart_are_named_and_unix_milliseconds_refused_at_once():
    """Steps 5 apart got "give times of one frequency (dates as yyyy-mm-dd)"; Unix milliseconds,
    read as steps, made a grid of 10⁹ steps per series before any check."""
    table = pd.DataFrame({"id": ["a"] * 30 + ["b"] * 30, "t": np.tile(np.arange(30) * 5, 2), "y": np.arange(60.0)})
    with pytest.raises(ValueError, match=re.escape(
            "series 'a' has 30 times on the 146 steps of a step grid from 0 to 145: filling the other 116 would invent "
            "most of the series; a long table's integer steps are 1 apart: number its times 0, 1, 2, ...")):
        read_panel(table, "id", "t", "y")
    milliseconds = pd.date_range("2024-01-01", periods=30, freq="D").astype(np.int64) // 10**6
    with pytest.raises(ValueError, match=re.escape("series 'a' has 30 times on the 2505600001 steps")):
        read_panel(table.assign(t=np.tile(milliseconds, 2)), "id", "t", "y")


def test_a_long_tables_pyarrow_timestamps_read_as_pandas_own_and_its_durations_are_refused():
    pytest.importorskip("pyarrow")
    days = pd.date_range("2024-01-01", periods=30, freq="D")
    table = pd.DataFrame({"id": ["a"] * 30 + ["b"] * 30, "t": np.tile(days, 2), "y": np.arange(60.0)})
    for arrow in ("timestamp[ns][pyarrow]", "date32[pyarrow]"):
        panel = read_panel(table.assign(t=table["t"].astype(arrow)), "id", "t", "y")
        assert (panel.time_kind, panel.frequency) == ("timestamp", "D") and panel.starts[0] == days[0]
    with pytest.raises(ValueError, match=re.escape("column 't' holds durations (timedelta64[ns]), not times")):
        read_panel(table.assign(t=table["t"] - days[0]), "id", "t", "y")
