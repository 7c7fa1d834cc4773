"""The forecasting data layer: reading and checking tables, calendar, windows, metrics, baselines."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import math
import os
import re
import warnings
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from lstmkit.series import (MissingValuesWarning, Scaler, Windows, baseline_forecast, calendar_features, future_times,
                            read_series, scores, season_length)
from lstmkit.series.frame import frequency_of, known_before, read_table


def weekly(values, start="2020-01-04") -> pd.DataFrame:
    return pd.DataFrame({"date": pd.date_range(start, periods=len(values), freq="W-SAT").strftime("%Y-%m-%d"),
                         "y": values})


def test_read_series_sorts_infers_the_frequency_and_keeps_the_values():
    table = weekly([1.0, 2.0, 3.0, 4.0]).iloc[[2, 0, 3, 1]]
    frame = read_series(table, "date", ["y"])
    assert frame.frequency == "W-SAT" and frame.time_kind == "datetime"
    assert frame.targets[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert frame.time_values(frame.time[:2]) == ["2020-01-04", "2020-01-11"]


def test_gaps_and_missing_rows_are_interpolated_with_a_warning_that_counts_them():
    table = weekly([1.0, None, 3.0, 4.0, 5.0, 6.0]).drop(index=4)  # row 4 missing altogether, row 1 empty
    with pytest.warns(MissingValuesWarning, match=re.escape("column 'y': 2 missing value(s) filled by linear")):
        frame = read_series(table, "date", ["y"])
    assert frame.targets[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_a_gap_up_to_an_origin_holds_the_value_before_it_as_that_origin_knows_it():
    """Filled over the whole table, a gap just before a forecast origin leaned on the values
    from the origin on (a backtest's naive forecast was the mean of the last value and the first
    held-out one); as known at the origin it holds the last value before it, as filling the
    rows before the origin alone gives. Gaps before an observed value are unchanged."""
    table = weekly([1.0, None, 3.0, 4.0, None, None, 10.0, 11.0])
    table["promotion"] = [1.0, 2.0, None, 4.0, 5.0, None, 7.0, 8.0]
    with pytest.warns(MissingValuesWarning):
        frame = read_series(table, "date", ["y"], ["promotion"])
    assert frame.targets[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 11.0]
    assert frame.history(0, 6).tolist() == [1.0, 2.0, 3.0, 4.0, 4.0, 4.0]
    head = frame.head(6)
    assert head.targets[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0, 4.0, 4.0]
    assert head.covariates[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 5.0]
    assert head.filled[:, 0].tolist() == [False, True, False, False, True, True]
    assert head.covariates_filled[:, 0].tolist() == [False, False, True, False, False, True]
    assert frame.history(0, 4).tolist() == [1.0, 2.0, 3.0, 4.0]  # no gap runs up to it: as filled
    assert frame.history(0, 8).tolist() == frame.targets[:, 0].tolist()
    assert known_before(np.array([[1.0, 5.0], [2.0, 6.0], [9.0, 7.0]]), np.array([[0, 0], [1, 0], [1, 0]]),
                        3).tolist() == [[1.0, 5.0], [1.0, 6.0], [1.0, 7.0]]


def test_rows_before_the_first_target_value_are_left_out_with_a_warning_not_filled():
    table = weekly([None, None, 3.0, 4.0, None, 6.0])  # a series that starts late: nothing is invented before it
    table["promotion"] = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    with pytest.warns(MissingValuesWarning) as warned:
        frame = read_series(table, "date", ["y"], ["promotion"])
    assert [str(warning.message) for warning in warned] == [
        "2 row(s) before the first one with every target's value are ignored",
        "column 'y': 1 missing value(s) filled by linear interpolation",
    ]
    assert {warning.filename for warning in warned} == {__file__}  # the user's line, not lstmkit's
    assert frame.targets[:, 0].tolist() == [3.0, 4.0, 5.0, 6.0]
    assert frame.covariates[:, 0].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert frame.time_values(frame.time[:1]) == ["2020-01-18"]


def test_a_target_with_most_values_empty_is_refused_as_missing_rows_are():
    values = [1.0, 2.0] + [None] * 5 + [8.0, 9.0]  # 4 values on 9 steps, empty cells where rows could be missing
    with pytest.raises(ValueError, match=re.escape(
            "column 'y' has 4 values on the 9 steps of a W-SAT grid from 2020-01-04 to 2020-02-29: "
            "filling the other 5 would invent most of the series")):
        read_series(weekly(values), "date", ["y"])


def test_integer_years_are_a_yearly_series_written_back_as_years():
    frame = read_series(pd.DataFrame({"year": [1700, 1701, 1702, 1703], "spots": [5, 11, 16, 23]}), "year", ["spots"])
    assert season_length(frame.frequency) == 1 and frame.time_kind == "year"
    assert frame.time_values(future_times(frame.time[-1], frame.frequency, 2)) == [1704, 1705]


def test_rows_after_the_last_target_value_carry_known_future_covariates():
    table = weekly([1.0, 2.0, 3.0, None, None]).assign(promo=[0, 1, None, 1, 0], price=[9, 8, 7, 6, 5])
    with pytest.warns(MissingValuesWarning, match=re.escape("column 'promo': 1 missing value(s)")):
        frame = read_series(table, "date", ["y"], ["price"], ["promo"])
    assert len(frame) == 3 and frame.ahead == 2 and frame.targets[:, 0].tolist() == [1, 2, 3]
    assert frame.covariates[:, 0].tolist() == [9, 8, 7]  # observed-past: only up to the last target value
    assert frame.future_covariates[:, 0].tolist() == [0, 1, 1, 1, 0]
    assert frame.head(2).future_covariates.shape == (5, 1)
    with pytest.warns(MissingValuesWarning, match=re.escape("2 row(s) after the last one with every target's value are ignored")):
        assert len(read_series(table, "date", ["y"])) == 3


@pytest.mark.parametrize("times, frequency", [
    (["20200101", "20200102", "20200103", "2020-01-04"], "D"),
    (["2017", "2018", "2019", "Jan 2020"], "YS-JAN"),
    (["202001010000", "202001010100", "202001010200", "2020-01-01 03:00"], "h"),
])
def test_times_mostly_numbers_that_all_read_as_times_are_read(times, frequency):
    """A check that named a typo among integer steps ran before the times were read, and refused
    these (`holds '2020-01-04', which is not a number`)."""
    table = pd.DataFrame({"t": times, "y": np.arange(4.0)})
    assert read_series(table, "t", ["y"]).frequency == frequency


def test_day_first_dates_are_read_in_the_order_that_puts_them_on_a_grid():
    months = pd.date_range("2010-01-01", periods=24, freq="MS")
    for written in (months.strftime("%d/%m/%Y"), months.strftime("%m/%d/%Y")):  # 01/02/2010: 1 February or 2 January
        frame = read_series(pd.DataFrame({"date": written, "y": np.arange(24.0)}), "date", ["y"])
        assert frame.frequency == "MS" and frame.time.equals(months)
    hours = pd.date_range("2024-02-01 22:00", periods=30, freq="h")  # not row by row: 02.02 would be 2 February
    for form in ("%d.%m.%Y %H:%M", "%m/%d/%Y %H:%M:%S"):
        frame = read_series(pd.DataFrame({"date": hours.strftime(form), "y": np.arange(30.0)}), "date", ["y"])
        assert (frame.frequency, frame.time_kind) == ("h", form) and frame.time.equals(hours)
        assert frame.time_values(pd.DatetimeIndex(["2024-02-03 05:00"])) == [pd.Timestamp("2024-02-03 05:00").strftime(form)]
    weeks = pd.date_range("1994-05-07", periods=10, freq="W-SAT")  # 14/05/1994 reads day-first only
    frame = read_series(pd.DataFrame({"date": weeks.strftime("%d/%m/%Y"), "y": np.arange(10.0)}), "date", ["y"])
    assert frame.time.equals(weeks)
    unreadable = [
        (["13/13/2010", "01/02/2010", "01/03/2010"], "at row 0 (0-based position in the DataFrame) holds '13/13/2010', "
                                                     "which is not a date read day-first or month-first"),
        (["01/02/2010", "13/01/2010", "01/13/2010"], "at row 1 (0-based position in the DataFrame) holds '13/01/2010', "
                                                     "which reads day-first only, where other rows read month-first "
                                                     "only; write the dates as yyyy-mm-dd"),
    ]
    for written, message in unreadable:
        with pytest.raises(ValueError, match=re.escape(message)):
            read_series(pd.DataFrame({"date": written, "y": [1.0, 2, 3]}), "date", ["y"])
    ambiguous = pd.DataFrame({"date": ["01/02/2010", "02/01/2010", "03/04/2010"], "y": [1.0, 2, 3]})
    with pytest.raises(ValueError, match=re.escape("column 'date' holds dates such as '01/02/2010' that read "
                                                   "day-first and month-first alike; write them as yyyy-mm-dd")):
        read_series(ambiguous, "date", ["y"])


def test_times_with_utc_offsets_are_read_and_written_back_in_utc():
    local = pd.date_range("2021-03-27 22:00", periods=6, freq="h", tz="Europe/Berlin")  # summer time from 02:00
    table = pd.DataFrame({"time": [stamp.isoformat() for stamp in local], "y": np.arange(6.0)})
    frame = read_series(table, "time", ["y"])
    assert frame.frequency == "h" and frame.time_kind == "utc"
    assert frame.time.equals(local.tz_convert("UTC").tz_localize(None))
    assert frame.time_values(frame.time[-1:]) == ["2021-03-28T02:00:00+00:00"]  # 04:00+02:00


def test_business_days_missing_a_holiday_stay_business_days():
    """pandas infers nothing once a day is missing; runs of three rows then vote, and Mon, Tue,
    Wed fit a daily grid as well as a business-day one: D won, and every weekend was invented
    (interpolated, then forecast). The grid that holds every row with fewest empty steps is B."""
    days = pd.bdate_range("2024-01-01", periods=40)
    table = pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "y": np.arange(40.0)}).drop(index=10)  # 2024-01-15
    with pytest.warns(MissingValuesWarning, match=re.escape("column 'y': 1 missing value(s) filled by linear")):
        frame = read_series(table, "date", ["y"])
    assert frame.frequency == "B" and len(frame) == 40 and frame.targets[:, 0].tolist() == list(np.arange(40.0))
    assert frame.time_values(future_times(frame.time[-1], frame.frequency, 3)) == ["2024-02-26", "2024-02-27",
                                                                                   "2024-02-28"]


@pytest.mark.parametrize("times, fitted, read", [
    (pd.date_range("2024-07-22", periods=5, freq="D"), "B", "B"),  # Mon-Fri of business days
    (pd.date_range("2024-01-01", periods=2, freq="MS"), "MS", "MS"),  # too few to infer
    (pd.bdate_range("2024-01-01", periods=30), "D", "B"),  # another frequency: named at predict
    (pd.date_range("2024-01-01", periods=30, freq="2D"), "D", "2D"),
    (pd.date_range("2020-01-01", periods=3650, freq="D"), "ns", "D"),  # integer steps' grid: not built
])
def test_predict_reads_rows_on_the_fitted_grid_only_where_it_holds_them_as_well(times, fitted, read):
    assert frequency_of(pd.DatetimeIndex(times), "t", "datetime", fitted) == read


def test_business_days_of_a_week_with_a_day_off_stay_business_days():
    """Tue-Fri: no run of three rows crosses a weekend, so B was never a candidate, and D
    invented every weekend (33 rows filled where B fills the 11 Mondays)."""
    days = pd.bdate_range("2024-01-01", periods=60)
    days = days[days.dayofweek != 0]
    table = pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "y": np.arange(len(days), dtype=float)})
    with pytest.warns(MissingValuesWarning, match=re.escape("column 'y': 11 missing value(s) filled by linear")):
        frame = read_series(table, "date", ["y"])
    assert frame.frequency == "B" and len(frame) == len(days) + 11
    assert frame.time_values(future_times(frame.time[-1], frame.frequency, 2)) == ["2024-03-25", "2024-03-26"]


def test_times_with_a_comma_fraction_and_an_offset_are_instants_across_daylight_saving():
    """ISO 8601's decimal comma (01:00:00,000000+01:00) fell out of the pattern of offsets."""
    local = pd.date_range("2021-03-27 22:00", periods=6, freq="h", tz="Europe/Berlin")
    times = [stamp.strftime("%Y-%m-%dT%H:%M:%S,%f") + stamp.strftime("%z")[:3] + ":00" for stamp in local]
    frame = read_series(pd.DataFrame({"time": times, "y": np.arange(6.0)}), "time", ["y"])
    assert (frame.frequency, frame.time_kind) == ("h", "utc")
    assert frame.time.equals(local.tz_convert("UTC").tz_localize(None))


@pytest.mark.parametrize("form, last", [("%m-%Y", "12-2019"), ("%-m/%Y", "12/2019"), ("%m/%Y", "12/2019")])
def test_months_written_month_then_year_are_months_written_back_so(form, last):
    """01-2018 was read as a time with a UTC offset of -20:18, and forecasts came back as ISO
    times in UTC."""
    months = pd.date_range("2015-01-01", periods=60, freq="MS")
    frame = read_series(pd.DataFrame({"t": months.strftime(form), "y": np.arange(60.0)}), "t", ["y"])
    assert (frame.frequency, frame.time_kind) == ("MS", form)
    assert frame.time_values(frame.time[-1:]) == [last]
    assert frame.time_values(future_times(frame.time[-1], frame.frequency, 1)) == [
        pd.Timestamp("2020-01-01").strftime(form)]


@pytest.mark.parametrize("times, said", [
    ([f"{year}-03-15" for year in range(1980, 2000)], "; yearly times must fall on the first or the last day of one "
                                                      "month (2020-03-01, 2020-02-29), or be written as years (2020)"),
    ([f"{month:02d}.{year}" for year in (2018, 2019) for month in range(1, 13)],
     "the column reads as months written mm.yyyy: write them as 2018-01"),
])
def test_yearly_times_off_every_grid_and_months_written_mm_yyyy_are_told_how_to_write_them(times, said):
    with pytest.raises(ValueError, match=re.escape(said)):
        read_series(pd.DataFrame({"t": times, "y": np.arange(len(times), dtype=float)}), "t", ["y"])


def test_daily_times_across_a_change_of_daylight_saving_time_say_so(tmp_path):
    """Local midnights written with their offset lie 24 hours apart in UTC but one: the message
    quotes the row as written, not its UTC stamp, and names the cause."""
    days = pd.date_range("2021-03-20", periods=14, freq="D", tz="Europe/Berlin")
    path = tmp_path / "daily.csv"
    pd.DataFrame({"ts": [day.isoformat() for day in days], "y": np.arange(14.0)}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=re.escape(
            f"column 'ts' is not on a regular D grid: '2021-03-29T00:00:00+02:00', at line 11 of {path} (the header "
            "is line 1), falls between its steps; times with a UTC offset or a time zone are put on a grid in UTC, "
            "where a step of a day or more moves by an hour when daylight saving time starts or ends: give local "
            "times without an offset")):
        read_series(path, "ts", ["y"])


@pytest.mark.parametrize("frequency, zone, last, following", [
    ("D", "Europe/Berlin", "2021-04-29", ["2021-04-30", "2021-05-01"]),
    ("MS", "US/Eastern", "2021-12-01", ["2022-01-01", "2022-02-01"]),
])
def test_a_dataframe_of_zoned_days_or_months_runs_on_the_wall_clock(frequency, zone, last, following):
    """Local midnights in a zone are a day apart on the wall clock but 23 or 25 hours apart in
    UTC at each change of daylight saving time: they were refused as off their grid, where
    statsforecast and darts take them. Forecasts come back at local midnights, in the zone."""
    times = pd.date_range("2020-01-01" if frequency == "MS" else "2021-03-01", periods=24 if frequency == "MS" else 60,
                          freq=frequency, tz=zone)
    frame = read_series(pd.DataFrame({"ts": times, "y": np.arange(len(times), dtype=float)}), "ts", ["y"])
    assert (frame.frequency, frame.time_kind, len(frame)) == (frequency, f"local@{zone}", len(times))
    assert frame.time_values(frame.time[-1:]) == [pd.Timestamp(last, tz=zone)]
    upcoming = future_times(frame.time[-1], frame.frequency, 2)
    assert frame.time_values(upcoming) == [pd.Timestamp(day, tz=zone) for day in following]


def test_months_stamped_mid_month_are_told_where_monthly_times_fall():
    table = pd.DataFrame({"date": [f"{2020 + month // 12}-{month % 12 + 1:02d}-15" for month in range(13)],
                          "y": np.arange(13.0)})
    with pytest.raises(ValueError, match=re.escape(
            "falls between its steps; monthly times must fall on the first day of their month (2020-01-01) or the "
            "last (2020-01-31), or be written as months (2020-01)")):
        read_series(table, "date", ["y"])


def test_dates_with_two_digit_years_are_refused_not_read_row_by_row():
    table = pd.DataFrame({"date": [f"01/{month:02d}/20" for month in range(1, 13)], "y": np.arange(12.0)})
    with pytest.raises(ValueError, match=re.escape(
            "column 'date' holds dates with two-digit years, such as '01/01/20', which read as day, month or year "
            "alike; write the year in four digits (31/01/2020) or the dates as yyyy-mm-dd")):
        read_series(table, "date", ["y"])
    months = pd.DataFrame({"date": ["Jan-15", "Feb-15", "Mar-15", "Apr-15"], "y": np.arange(4.0)})  # Excel's mmm-yy
    with pytest.raises(ValueError, match=re.escape(
            "column 'date' holds months with two-digit years, such as 'Jan-15' (a spreadsheet's mmm-yy); write the "
            "year in four digits (Jan 2015) or the months as yyyy-mm (2015-01)")):
        read_series(months, "date", ["y"])


def test_times_that_leave_most_of_their_grid_empty_are_refused():
    table = pd.DataFrame({"date": ["2020-01-01", "2020-01-02", "2020-01-03", "2020-02-01", "2020-03-01"],
                          "y": np.arange(5.0)})
    with pytest.raises(ValueError, match=re.escape(
            "column 'date' has 5 times on the 61 steps of a D grid from 2020-01-01 to 2020-03-01: "
            "filling the other 56 would invent most of the series; give times of one frequency (dates as yyyy-mm-dd)")):
        read_series(table, "date", ["y"])


def test_a_forecast_starts_after_the_last_row_with_every_target_not_from_an_invented_value():
    table = weekly([1.0, 2.0, 3.0, 4.0]).assign(z=[10.0, 20.0, None, None])
    with pytest.warns(MissingValuesWarning, match=re.escape("2 row(s) after the last one with every target's value")):
        frame = read_series(table, "date", ["y", "z"])
    assert frame.targets.tolist() == [[1, 10], [2, 20]]


def test_a_value_of_one_target_after_the_last_complete_row_is_said_to_be_ignored_beside_future_covariates():
    """With known-future covariates the rows after the last complete one are taken as future
    rows: a value given there of one target was dropped, and the forecast began before it,
    without a word."""
    table = weekly([1.0, 2.0, 3.0, 4.0]).assign(z=[10.0, 20.0, 30.0, None], promo=[0.0, 1.0, 0.0, 1.0])
    with pytest.warns(MissingValuesWarning, match=re.escape(
            "1 row(s) after the last one with every target's value hold values of y: those values are dropped (such "
            "rows serve known-future covariates only), and the forecast starts after the last row with every "
            "target's value")):
        frame = read_series(table, "date", ["y", "z"], future_covariates=["promo"])
    assert frame.targets.tolist() == [[1, 10], [2, 20], [3, 30]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # future rows without target values: as they should be
        read_series(table.assign(y=[1.0, 2.0, 3.0, None]), "date", ["y", "z"], future_covariates=["promo"])


def test_a_column_listed_twice_in_one_role_is_named_so():
    """It was said to hold two roles ("a column can be the time, a target, ... not two of them")."""
    table = weekly([1.0, 2.0, 3.0]).assign(x=[0.5, 0.25, 0.0])
    with pytest.raises(ValueError, match=re.escape("covariates (--covariates) names x twice; give each column once")):
        read_series(table, "date", ["y"], ["x", "x"])


def test_covariates_and_several_targets():
    table = weekly([1.0, 2.0, 3.0]).assign(z=[10, 20, 30], x=[0.5, 0.25, 0.0])
    frame = read_series(table, "date", ["y", "z"], ["x"])
    assert frame.targets.tolist() == [[1, 10], [2, 20], [3, 30]] and frame.covariates[:, 0].tolist() == [0.5, 0.25, 0]
    assert frame.head(2).targets.tolist() == [[1, 10], [2, 20]]


@pytest.mark.parametrize("table, targets, message", [
    (weekly([1.0, 2.0, 3.0]), ["co2"], "column 'co2' is not in the data; its columns are 'date', 'y'"),
    (weekly([1.0, 2.0, 3.0]).set_index("date"), ["y"], "column 'date' is not in the data; its columns are 'y'; 'date' "
     "is the DataFrame's index: make it a column with frame.reset_index()"),
    (weekly([1.0, 2.0, 3.0]).assign(date=["2020-01-04", "2020-01-11", "2020-01-11"]), ["y"],
     "column 'date' has 1 duplicate timestamp(s): the first, '2020-01-11', at rows 1 and 2 (0-based positions in "
     "the DataFrame); a table holds one row per time"),
    (weekly([1.0, 2.0, 3.0]).assign(date=["2020-01-04", "soon", "2020-01-18"]), ["y"],
     "column 'date' at row 1 (0-based position in the DataFrame) holds 'soon', which cannot be read as a time; "
     "the forms accepted are dates and times"),
    # ISO and day-first rows: pandas read 01/05/2020 as 5 January, 28/05/2020 as 28 May.
    (weekly([1.0, 2.0, 3.0]).assign(date=["2020-05-16", "23/05/2020", "30/05/2020"]), ["y"],
     "column 'date' mixes date forms: '2020-05-16' at row 0 (0-based position in the DataFrame), '23/05/2020' at row 1 "
     "(0-based position in the DataFrame); write every date in one form (yyyy-mm-dd)"),
    (weekly([1.0, "n/a", 3.0]), ["y"], "column 'y' must hold numbers (or empty cells for missing values); "
     "row 1 (0-based position in the DataFrame) holds 'n/a'"),
    (weekly([None, None, None]), ["y"], "the target column(s) y have no values"),
    # True/False and complex numbers were forecast as 0/1 and as their real parts without a word
    (weekly([True, False, True]), ["y"], "column 'y' holds True/False, not numbers to forecast; to forecast it as 0 "
     "and 1, give it as numbers (column.astype(float))"),
    (weekly([True, None, False]), ["y"], "column 'y' holds True/False, not numbers to forecast"),  # with a gap: objects
    (weekly([1.5, True, 2.0]), ["y"], "column 'y' holds True/False, not numbers to forecast"),  # among numbers
    (weekly([1 + 1j, 2.0, 3.0]), ["y"], "column 'y' must hold real numbers, got complex ones (complex128)"),
    (pd.DataFrame({"date": ["2020-01-01", "2020-01-02", "2020-01-05", "2020-01-15"], "y": [1, 2, 3, 4]}), ["y"],
     "cannot infer a regular frequency from column 'date'"),
    (weekly([1.0, 2.0]), ["y"], "column 'date' has 2 timestamp(s); at least 3 are needed to infer a frequency"),
    (weekly([1.0, 2.0, 3.0]), [], "give at least one target column"),
    (weekly([1.0, 2.0, 3.0]), ["date"], "a column can be the time, a target, an observed-past or a known-future covariate, not two of them: date"),
])
def test_bad_tables_are_refused_with_what_is_wrong(table, targets, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        read_series(table, "date", targets)


def test_a_covariate_of_true_and_false_is_read_as_0_and_1():
    frame = read_series(weekly([1.0, 2.0, 3.0]).assign(holiday=[True, False, True]), "date", ["y"], ["holiday"])
    assert frame.covariates[:, 0].tolist() == [1.0, 0.0, 1.0]


def test_a_spreadsheets_trailing_commas_are_read_and_rows_longer_than_the_header_refused(tmp_path):
    """Rows with one empty field more than the header (an Excel export) once made pandas take
    the first column as the index, and the reader failed with a Python error."""
    trailing = tmp_path / "trailing.csv"
    trailing.write_text("date,y\n2020-01-01,1.5,\n2020-02-01,2.5,\n2020-03-01,3.5,\n")
    frame = read_series(trailing, "date", ["y"])
    assert frame.targets[:, 0].tolist() == [1.5, 2.5, 3.5] and frame.frequency == "MS"
    expected = "lstmkit reads comma-separated values with '.' as the decimal point"
    for text, why in [
        ("date;y\n01.01.2020;1,5\n01.02.2020;2,5\n",
         f"its header 'date;y' is separated by semicolons; {expected}: save the table as CSV with those"),
        ("date;y\n2020-01-01;1.5\n2020-02-01;2.5\n",  # '.' decimals: one column, named "date;y"
         f"its header 'date;y' is separated by semicolons; {expected}: save the table as CSV with those"),
        ("date\ty\n2020-01-01\t1.5\n2020-02-01\t2.5\n",
         f"its header 'date\\ty' is separated by tabs; {expected}: save the table as CSV with those"),
        ("date,y\n2020-01-01,1,2,3\n2020-02-01,2,3,4\n",
         f"rows hold more fields than its header 'date,y' (2); {expected}, one field per column"),
    ]:
        path = tmp_path / "refused.csv"
        path.write_text(text)
        with pytest.raises(ValueError, match=f"^{re.escape(f'{path}: {why}')}$"):
            read_series(path, "date", ["y"])


@pytest.mark.parametrize("encoding, message", [
    ("utf-16", "is UTF-16 text (its byte-order mark is FF FE), not UTF-8: save it as UTF-8, or convert it with iconv "
               "-f UTF-16 -t UTF-8"),  # Excel's "Unicode text": it was named by its byte 0xff alone
    ("latin-1", "is not UTF-8 text: byte 0xe9 at offset 12 (line 1) does not decode; save the table as a UTF-8 CSV "
                "file"),
    ("utf-16-le", "looks like UTF-16LE text without a byte-order mark (a NUL byte in every other place), not UTF-8: "
                  "convert it with iconv -f UTF-16LE -t UTF-8"),
])
def test_a_csv_file_not_in_utf8_is_named_with_its_encoding_or_the_byte(tmp_path, encoding, message):
    path = tmp_path / "series.csv"
    path.write_bytes("year,activité\n1700,5\n1701,11\n1702,16\n".encode(encoding))
    with pytest.raises(ValueError, match=f"^{re.escape(f'{path} {message}')}$"):
        read_series(path, "year", ["activité"])


def test_a_compressed_csv_file_not_in_utf8_is_named_by_the_byte_pandas_met(tmp_path):
    """Its bytes on disk, bz2's, were read as the text: 'it contains NUL bytes'; lstmkit now
    decompresses it and names the byte where it lies, as in plain and gzip files."""
    import bz2

    path = tmp_path / "series.csv.bz2"
    path.write_bytes(bz2.compress("year,activité\n1700,5\n1701,11\n1702,16\n".encode("latin-1")))
    with pytest.raises(ValueError, match=re.escape(f"{path} is not UTF-8 text: byte 0xe9 at offset 12 (line 1) does "
                                                   "not decode; save the table as a UTF-8 CSV file")):
        read_series(path, "year", ["activité"])
    unnamed = tmp_path / "series.csv"  # gzip by its bytes, whatever its name: read as check_no_nul reads it
    unnamed.write_bytes(gzip.compress("year,y\n1700,5\n1701,11\n1702,16\n".encode()))
    assert read_series(unnamed, "year", ["y"]).targets[:, 0].tolist() == [5, 11, 16]
    for suffix in (".gz", ".bz2", ".xz", ".zip"):  # and plain text named so: the codec's bare error
        misnamed = tmp_path / f"plain.csv{suffix}"
        misnamed.write_text("year,y\n1700,5\n1701,11\n1702,16\n")
        assert read_series(misnamed, "year", ["y"]).targets[:, 0].tolist() == [5, 11, 16]


def test_a_csv_file_pandas_would_misread_without_a_word_is_refused(tmp_path):
    """A NUL byte ended the field it was in (15\\x004.4 read as 15); a header naming a column it
    reads twice had pandas rename the second (y.1), which the target y left out."""
    path = tmp_path / "series.csv.gz"
    content = b"year,y\n1700,5\n1701,15\x004.4\n1702,16\n"
    for data in (content, gzip.compress(content), bz2.compress(content), lzma.compress(content), zipped(content)):
        path.write_bytes(data)
        message = f"{path} is not text: it holds a NUL byte on line 3; expected a UTF-8 CSV file"
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            read_series(path, "year", ["y"])
    path.write_bytes(gzip.compress(b"year,y,note,y,note\n1700,5,a,6,b\n1701,11,c,12,d\n1702,16,e,17,f\n"))
    message = f"{path} names column 'y' twice in its header: give each column a name of its own"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        read_series(path, "year", ["y"])
    path.write_bytes(gzip.compress(b"year,y,note,note\n1700,5,a,b\n1701,11,c,d\n1702,16,e,f\n"))  # one not read
    assert read_series(path, "year", ["y"]).targets[:, 0].tolist() == [5, 11, 16]


def zipped(data: bytes, names: tuple[str, ...] = ("series.csv",)) -> bytes:
    """A zip archive holding `data` under each of `names`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_compressed_csv_file_is_known_by_its_bytes_and_a_damaged_one_or_a_workbook_named(tmp_path):
    """A plain CSV whose header began with BZh was read as bzip2 (a bare "Invalid data stream");
    a damaged bz2 file ended in a traceback; a workbook in pandas' "Multiple files found in ZIP
    file", without the file's name."""
    path = tmp_path / "series.csv"
    path.write_bytes(b"BZhours,y\n1,5\n2,11\n3,16\n")
    assert read_table(path)["y"].tolist() == [5, 11, 16]
    path.write_bytes(bz2.compress(b"year,y\n1700,5\n")[:20])
    with pytest.raises(ValueError, match="^" + re.escape(f"{path} is not a readable bz2 file (")):
        read_table(path)
    path.write_bytes(zipped(b"<xml/>", ("[Content_Types].xml", "xl/workbook.xml", "xl/worksheets/sheet1.xml", "a")))
    with pytest.raises(ValueError, match="^" + re.escape(
            f"{path} is a zip archive of 4 files ([Content_Types].xml, xl/workbook.xml, xl/worksheets/sheet1.xml ...), "
            "where a CSV file, or a zip of one, is read; an Excel or OpenDocument workbook is one: save its sheet as "
            "a UTF-8 CSV file") + "$"):
        read_table(path)
    path.write_bytes(zipped(b"", ()))
    with pytest.raises(ValueError, match="^" + re.escape(f"{path} is a zip archive of no files, where a CSV file, or "
                                                         "a zip of one, is read") + "$"):
        read_table(path)
    path.write_bytes(zipped(b"year,y\n1700,5\n1701,11\n"))
    assert read_table(path)["y"].tolist() == [5, 11]


def test_tar_zstd_and_old_mac_files_are_read_or_named(tmp_path):
    """Review29: a .tgz was read as raw gzip bytes; plain text named .zst needed zstandard, and a
    zstd file named .csv was "not text" (now named; review30: zstandard's reader dropped frames);
    rows longer than an old Mac file's header quoted the whole
    file as its header."""
    import tarfile

    data = b"year,y\n1700,5\n1701,11\n"
    with tarfile.open(tmp_path / "series.tgz", "w:gz") as archive:
        member = tarfile.TarInfo("series.csv")
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
    assert read_table(tmp_path / "series.tgz")["y"].tolist() == [5, 11]
    (tmp_path / "plain.zst").write_bytes(data)
    assert read_table(tmp_path / "plain.zst")["y"].tolist() == [5, 11]
    (tmp_path / "plain.tgz").write_bytes(data)  # review30: a name is not a tar archive
    assert read_table(tmp_path / "plain.tgz")["y"].tolist() == [5, 11]
    short = tmp_path / "cut.csv.gz"  # under a tar block: tarfile's bare EOFError (review31)
    short.write_bytes(gzip.compress(data)[:20])
    with pytest.raises(ValueError, match="^" + re.escape(f"{short} is not a readable gzip file")):
        read_table(short)
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes((tmp_path / "series.tgz").read_bytes()[:-30])
    with pytest.raises(ValueError, match="^" + re.escape(f"{truncated} is not a readable tar archive of one CSV file")):
        read_table(truncated)
    path = tmp_path / "series.csv"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(12))  # its reader dropped every frame after the first
    with pytest.raises(ValueError, match="^" + re.escape(f"{path} is compressed by zstd, which lstmkit does not read: "
                                                         "decompress it (zstd -d)")):
        read_table(path)
    path.write_bytes(b"date,y\r2020-01-01,1.5,1,2\r2020-01-02,2,3,4\r")
    with pytest.raises(ValueError, match="^" + re.escape(f"{path}: rows hold more fields than its header 'date,y' "
                                                         "(2)")):
        read_table(path)


@pytest.mark.parametrize("suffix, compress", [(".bz2", bz2.compress), (".xz", lzma.compress)])
def test_a_csv_file_compressed_by_its_suffix_and_one_of_carriage_returns_read(tmp_path, suffix, compress):
    """pandas decompresses .bz2, .xz and .zip: their bytes were refused as NULs; known by their
    first bytes, whatever the file's name."""
    for name in (f"series.csv{suffix}", "series.csv"):
        path = tmp_path / name
        path.write_bytes(compress(b"year,y\n1700,5\n1701,11\n1702,16\n"))
        assert read_series(path, "year", ["y"]).targets[:, 0].tolist() == [5, 11, 16]
    path = tmp_path / "old-mac.csv"
    path.write_bytes(b"year,y\r1700,5\r1701,11\r1702,16\r")
    assert read_series(path, "year", ["y"]).targets[:, 0].tolist() == [5, 11, 16]


@pytest.mark.parametrize("written, zone", [("2021-03-20 01:00 CET", "CET"), ("2021-11-07 01:00 EDT", "EDT"),
                                           ("2021-03-20 01:00 AM CET", "CET"), ("Sat Mar 20 01:00:00 CET 2021", "CET")])
def test_times_with_a_zones_name_are_refused_not_read_on_the_wall_clock(tmp_path, written, zone):
    """pandas drops a zone's name it does not know (with a FutureWarning per row) and reads the
    wall clock: CET and CEST read as one clock, an hour that never was filled, EDT and EST's
    repeated hour refused as a duplicate."""
    path = tmp_path / "zoned.csv"
    path.write_text(f"time,y\n{written},1\n")
    message = (f"column 'time' at line 2 of {path} (the header is line 1) holds {written!r}, which names a time zone, "
               f"{zone}, that pandas drops")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        read_series(path, "time", ["y"])


@pytest.mark.parametrize("times", [
    ["2021-03-20 01:00 UTC", "2021-03-20 02:00 UTC", "2021-03-20 03:00 UTC"], ["2020 JAN", "2020 FEB", "2020 MAR"],
    ["2020 JAN 1ST", "2020 JAN 2ND", "2020 JAN 3RD"],
    ["2020-01-01 01:00 PM", "2020-01-01 02:00 PM", "2020-01-01 03:00 PM"],
])
def test_times_ending_in_capitals_that_name_no_zone_are_read(tmp_path, times):
    path = tmp_path / "times.csv"
    path.write_text("time,y\n" + "".join(f"{time},{value}\n" for value, time in enumerate(times)))
    assert read_series(path, "time", ["y"]).targets[:, 0].tolist() == [0, 1, 2]


def test_a_missing_csv_and_a_non_table_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path / 'none.csv'} does not exist (expected a CSV "
                                                          "file)")):
        read_series(tmp_path / "none.csv", "date", ["y"])
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path} is a folder (expected a CSV file)")):
        read_series(tmp_path, "date", ["y"])
    os.mkfifo(tmp_path / "pipe")  # a folder and a pipe were said not to exist
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'pipe'} is not a regular file (a pipe or a device), "
                                                   "which a CSV is read from more than once: save it as a file first")):
        read_series(tmp_path / "pipe", "date", ["y"])
    with pytest.raises(TypeError, match="expected a CSV path or a pandas DataFrame, got list"):
        read_series([1, 2], "date", ["y"])


def test_any_os_pathlike_names_a_csv_as_a_path_does(tmp_path):
    """An os.PathLike other than pathlib.Path was refused as not a CSV path, where the language
    model's functions take it."""
    class Located:
        def __init__(self, path):
            self.path = path

        def __fspath__(self):
            return str(self.path)

    path = tmp_path / "series.csv"
    pd.DataFrame({"date": pd.date_range("2024-01-01", periods=6, freq="D"), "y": range(6)}).to_csv(path, index=False)
    expected = read_series(path, "date", ["y"])
    given = read_series(Located(path), "date", ["y"])
    assert np.array_equal(given.targets, expected.targets) and given.frequency == expected.frequency == "D"
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path / 'none.csv'} does not exist (expected a CSV")):
        read_series(Located(tmp_path / "none.csv"), "date", ["y"])


@pytest.mark.parametrize("frequency, season", [("W-SAT", 52), ("MS", 12), ("QS-OCT", 4), ("D", 7), ("h", 24),
                                               ("2h", 12), ("YS-JAN", 1), ("30min", 48), ("15min", 96),
                                               ("min", 1440), ("10s", 360), ("45min", 32), ("7min", 1),
                                               ("2D", 1)])
def test_season_length_of_each_frequency(frequency, season):
    assert season_length(frequency) == season


def test_calendar_features_by_hand():
    times = pd.DatetimeIndex(["2021-01-01 00:00", "2021-01-01 06:00"])  # a Friday, day 1 of the year
    values, names = calendar_features(times, "6h")
    assert names == ("year_sin", "year_cos", "week_sin", "week_cos", "day_sin", "day_cos")
    week = 2 * math.pi * (4 + 0.25) / 7
    expected = [0.0, 1.0, math.sin(2 * math.pi * 4 / 7), math.cos(2 * math.pi * 4 / 7), 0.0, 1.0]
    np.testing.assert_allclose(values[0], expected, atol=1e-12)
    np.testing.assert_allclose(values[1, 2:], [math.sin(week), math.cos(week), 1.0, 0.0], atol=1e-12)
    assert calendar_features(pd.DatetimeIndex(["2001-01-01", "2002-01-01"]), "YS-JAN")[1] == ()


def test_windows_of_a_tiny_series_by_hand():
    targets = torch.arange(6.0).unsqueeze(1)  # 0 1 2 3 4 5
    covariates = 10 * torch.arange(6.0).unsqueeze(1)
    calendar = 100 + torch.arange(7.0).unsqueeze(1)  # one row past the data
    windows = Windows(targets, covariates, calendar, lookback=3, horizon=2)
    assert list(windows.origins()) == [3, 4]
    batch = windows.batch([3, 4])
    assert batch.history.tolist() == [[[0, 0, 100], [1, 10, 101], [2, 20, 102]],
                                      [[1, 10, 101], [2, 20, 102], [3, 30, 103]]]
    assert batch.future.tolist() == [[[103], [104]], [[104], [105]]]
    assert batch.targets.tolist() == [[[3], [4]], [[4], [5]]]
    beyond = windows.batch([5])  # reaches row 6, past the data: calendar known, targets not
    assert beyond.targets is None and beyond.future.tolist() == [[[105], [106]]]


def test_a_window_as_known_at_its_origin_holds_the_value_before_a_gap_that_runs_up_to_it():
    """Rows 3 and 4 of the target and row 4 of the covariate were missing, filled towards row 5's
    values: taken as known at origin 5 they hold rows 2's and 3's; at origin 4 (its gap of one
    row, 3) row 2's; the calendar is known; a training batch reads the table as filled."""
    targets = torch.tensor([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]])
    covariates = torch.tensor([[10.0], [11.0], [12.0], [13.0], [14.0], [15.0]])
    calendar = 100 + torch.arange(7.0).unsqueeze(1)
    gaps = torch.tensor([[False, False], [False, False], [False, False], [True, False], [True, True], [False, False]])
    windows = Windows(targets, covariates, calendar, lookback=3, horizon=1, gaps=gaps)
    assert windows.batch([5, 4], as_known=True).history.tolist() == [
        [[2, 12, 102], [2, 13, 103], [2, 13, 104]], [[1, 11, 101], [2, 12, 102], [2, 13, 103]]]
    assert windows.batch([5]).history.tolist() == [[[2, 12, 102], [3, 13, 103], [4, 14, 104]]]
    assert windows.batch([3], as_known=True).history.tolist() == windows.batch([3]).history.tolist()


def test_a_panels_validation_windows_read_its_series_as_known_and_its_training_windows_as_filled():
    """Values 2 and 3 filled towards 4: the validation window at 4 reads them as the 1 before them
    (`known`); a training window, and every window's targets, read the table."""
    from lstmkit.series.windows import PanelWindows

    windows = PanelWindows([torch.arange(6.0)], lookback=2, horizon=1, known=[torch.tensor([0.0, 1, 1, 1, 4, 5])])
    assert windows.batch([(0, 4)]).history[..., 0].tolist() == [[2.0, 3.0]]
    known = windows.batch([(0, 4)], as_known=True)
    assert known.history[..., 0].tolist() == [[1.0, 1.0]] and known.targets[..., 0].tolist() == [[4.0]]


def test_windows_refuse_a_short_series_and_stray_origins():
    with pytest.raises(ValueError, match=re.escape("the series has 2 rows; a window needs lookback = 3")):
        Windows(torch.zeros(2, 1), torch.zeros(2, 0), torch.zeros(2, 0), 3, 2)
    assert list(Windows(torch.zeros(4, 1), torch.zeros(4, 0), torch.zeros(4, 0), 3, 2).origins()) == []
    windows = Windows(torch.zeros(6, 1), torch.zeros(6, 0), torch.zeros(6, 0), 3, 2)
    with pytest.raises(ValueError, match=re.escape("origins must lie in [3, 6] (lookback .. rows), got 2 .. 2")):
        windows.batch([2])
    with pytest.raises(ValueError, match=re.escape("origin 6 needs known-future features up to row 8, there are 6")):
        windows.batch([6])


def test_metrics_by_hand():
    actual, forecast = np.array([2.0, 4.0, 0.0]), np.array([1.0, 6.0, 0.0])
    history = np.array([1.0, 3.0, 2.0, 6.0])  # seasonal differences at m = 2: |2-1|, |6-3| -> scale 2
    result = scores(actual, forecast, history, season=2)
    assert result["MAE"] == pytest.approx(1.0)
    assert result["RMSE"] == pytest.approx(math.sqrt(5 / 3))
    assert result["sMAPE"] == pytest.approx((200 / 3 + 40 + 0) / 3)  # the 0/0 term counts as 0
    assert result["MASE"] == pytest.approx(0.5)


def test_metrics_refuse_what_they_cannot_score():
    with pytest.raises(ValueError, match=re.escape("same non-empty shape, got (2,) and (3,)")):
        scores(np.zeros(2), np.zeros(3), np.arange(5.0), 1)



def test_mase_of_a_history_that_repeats_exactly_is_0_when_exact_else_inf():
    repeating = np.array([1.0, 2.0, 1.0, 2.0])  # the seasonal naive's in-sample error is 0 at m = 2
    assert scores(np.ones(2), np.ones(2), repeating, 2)["MASE"] == 0.0
    assert scores(np.ones(2), np.zeros(2), repeating, 2)["MASE"] == math.inf
    # exact but for rounding: 123.456 through log and exp (it scored inf, and chose for a whole table)
    flat = np.full(4, 123.456)
    assert scores(flat[:2], np.exp(np.log(flat[:2])) + 2e-14, flat, 1)["MASE"] == 0.0
    assert scores(flat[:2], flat[:2] + 1e-6, flat, 1)["MASE"] == math.inf


def test_simple_baselines_by_hand():
    history = np.array([1.0, 5.0, 2.0, 6.0, 3.0, 7.0])
    assert baseline_forecast("naive", history, 3, 2).tolist() == [7.0, 7.0, 7.0]
    assert baseline_forecast("seasonal_naive", history, 5, 2).tolist() == [3.0, 7.0, 3.0, 7.0, 3.0]
    np.testing.assert_allclose(baseline_forecast("drift", history, 2, 2), [7 + 6 / 5, 7 + 12 / 5])
    with pytest.raises(ValueError, match="baseline must be one of naive, seasonal_naive, drift, ets, arima, theta, naive2, got 'mean'"):
        baseline_forecast("mean", history, 2, 2)
    with pytest.raises(ValueError, match="the seasonal_naive baseline needs at least 12 values, got 6"):
        baseline_forecast("seasonal_naive", history, 2, 12)
    # A season of 0 gave [0, 0, 0] and -2 gave [2, 9, 2]: numbers, silently wrong.
    for season in (0, -2, 2.5):
        with pytest.raises(ValueError, match=re.escape(f"season must be a positive integer, got {season!r}")):
            baseline_forecast("seasonal_naive", history, 3, season)
    with pytest.raises(ValueError, match=re.escape("history must be one series (1-D), got shape (3, 2)")):
        baseline_forecast("naive", history.reshape(3, 2), 3, 1)


def test_baselines_are_exact_where_their_assumption_holds():
    pattern = np.array([3.0, -1.0, 4.0, 1.0])
    seasonal = np.tile(pattern, 10)
    assert baseline_forecast("seasonal_naive", seasonal[:-6], 6, 4).tolist() == seasonal[-6:].tolist()
    line = 2.0 + 0.5 * np.arange(40)
    np.testing.assert_allclose(baseline_forecast("drift", line[:-5], 5, 1), line[-5:], rtol=1e-12)


def test_statistical_baselines_follow_a_clean_trend_and_season():
    steps = np.arange(120)
    series = 10 + 0.1 * steps + 2 * np.sin(2 * np.pi * steps / 12)
    for name in ("ets", "arima"):
        forecast = baseline_forecast(name, series[:-12], 12, 12)
        assert np.abs(forecast - series[-12:]).max() < 0.05, name


def test_scaler_by_hand():
    scaler = Scaler.fit(np.array([[1.0, 5.0], [3.0, 5.0]]))  # a constant column: std 0, only shifted
    assert scaler.mean.tolist() == [2.0, 5.0] and scaler.std.tolist() == [1.0, 0.0]
    assert scaler.transform(np.array([[4.0, 6.0]])).tolist() == [[2.0, 1.0]]
    assert scaler.inverse(np.array([[2.0, 1.0]])).tolist() == [[4.0, 5.0]]  # the constant, whatever is inverted
    assert Scaler.from_dict(scaler.to_dict()).mean.tolist() == [2.0, 5.0]


@pytest.mark.parametrize("magnitude", [1e-300, 1e-200, 1e-160, 1.0, 3.0, 1e160, 1e200, 1e300])
def test_spreads_at_every_magnitude(magnitude):
    """std and RMSE of values whose squares overflow or underflow float64 equal those of the
    same values near 1, scaled: before, 1e200-sized values had std inf, 1e-200-sized ones 0
    (read as constant)."""
    from lstmkit.series.metrics import root_mean_square
    from lstmkit.series.scaling import SeriesScaling, standard_deviation

    values = np.array([1.0, 2.0, 4.0, 7.0])
    assert standard_deviation(values * magnitude) == pytest.approx(np.std(values) * magnitude, rel=1e-15)
    assert root_mean_square(values * magnitude) == pytest.approx(math.sqrt(17.5) * magnitude, rel=1e-15)
    assert Scaler.fit((values * magnitude)[:, None]).std[0] == pytest.approx(np.std(values) * magnitude, rel=1e-15)
    assert SeriesScaling.fit(values * magnitude, "standard", 1).std == pytest.approx(np.std(values) * magnitude,
                                                                                    rel=1e-15)
    assert scores(values * magnitude, values * magnitude * 1.5, values * magnitude, 1)["RMSE"] == pytest.approx(
        0.5 * math.sqrt(17.5) * magnitude, rel=1e-15)


def test_spreads_near_the_largest_float64():
    """The scale stops at 2**1023 (2**1024 is inf): values up to float64's largest still get a
    finite std (it gave nan)."""
    from lstmkit.series.scaling import standard_deviation

    values = np.array([1e308, -1e308, 5e307])
    assert standard_deviation(values) == pytest.approx(np.std(values / 1e300) * 1e300, rel=1e-15)


def test_spreads_equal_numpy_where_squares_fit():
    """Dividing by a power of two is exact: within float64's range for squares, the results are
    numpy's to the last bit."""
    from lstmkit.series.metrics import root_mean_square
    from lstmkit.series.scaling import standard_deviation

    values = np.random.default_rng(0).normal(3.0, 2.0, (50, 3)) * np.array([1e-9, 1.0, 1e9])
    assert standard_deviation(values, axis=0).tolist() == values.std(axis=0).tolist()
    assert standard_deviation(np.zeros(4)) == 0.0 and root_mean_square(np.zeros(4)) == 0.0
    for column in values.T:
        assert root_mean_square(column) == float(np.sqrt(np.mean(column ** 2)))
