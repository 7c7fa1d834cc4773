"""Bad and unusual forecast data (issue 17, items 10 and 11): time columns in every accepted
form, constant series, non-finite and non-numeric cells, series too short, a model whose
forecast is not finite, and forecast options refused when the config is built."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from lstmkit.cli import main
from lstmkit.forecast import Forecaster
from lstmkit.pipelines.forecast_report import backtest_report, beaten_line, scores_table, shown_time
from lstmkit.series import BASELINES, baseline_forecast, best_baseline, read_series

QUICK = dict(hidden_size=8, num_layers=1, epochs=2, batch_size=64, seed=0)
FORMS = ("the forms accepted are dates and times (2020-01-31, 2020-01-31 12:00, 31/01/2020 or 01/31/2020 13:00, or what "
         "pandas.to_datetime reads; with a UTC offset or a time zone they are written back in UTC), "
         "ISO periods (1959Q2, 1959-04), integer years (1959), decimal years on month starts (1959.25 for April "
         "1959, the second quarter; 1959.0833 for February) and integer steps (1, 2, 3 ...)")
NOT_A_NUMBER = ("which is not a finite number, where most of the column's times are numbers (integer steps or years, "
                "decimal or not); " + FORMS)


def write_csv(tmp_path, text: str):
    path = tmp_path / "series.csv"
    path.write_text(text)
    return path


def test_decimal_years_of_quarters_are_quarters_not_nanoseconds(tmp_path):
    """Today 1959.25 is read as nanoseconds since 1970 and 60 quarters as '45 duplicate timestamps'."""
    years = 1959 + 0.25 * np.arange(60)
    path = tmp_path / "macro.csv"
    pd.DataFrame({"year": years, "gdp": np.arange(60.0)}).to_csv(path, index=False)
    frame = read_series(path, "year", ["gdp"])
    assert (frame.frequency, frame.time_kind, len(frame)) == ("QS-JAN", "decimal_year@2", 60)
    assert [stamp.date().isoformat() for stamp in frame.time[:3]] == ["1959-01-01", "1959-04-01", "1959-07-01"]
    assert frame.time_values(frame.time[-2:]) == [1973.5, 1973.75]


@pytest.mark.parametrize("decimals, kind, february", [(4, "decimal_year@4", 1959.0833), (2, "decimal_year@2", 1959.08),
                                                      (None, "decimal_year", 1959 + 1 / 12)])
def test_decimal_years_of_months_are_months_and_written_back_with_their_decimals(decimals, kind, february):
    years = 1959 + np.arange(14) / 12
    years = years if decimals is None else np.round(years, decimals)  # 1959.0833 or 1959.08 for February
    frame = read_series(pd.DataFrame({"t": years, "y": np.arange(14.0)}), "t", ["y"])
    assert (frame.frequency, frame.time_kind) == ("MS", kind)
    assert frame.time[1] == pd.Timestamp("1959-02-01") and frame.time[13] == pd.Timestamp("1960-02-01")
    assert frame.time_values(frame.time[[1, 12, 13]]) == [february, 1960.0, february + 1]


@pytest.mark.parametrize("times, frequency, first, kind, written", [
    ([1959, 1960, 1961, 1962], "YS-JAN", "1959-01-01", "year", [1959, 1960]),
    (["2020-01-31", "2020-02-29", "2020-03-31", "2020-04-30"], "ME", "2020-01-31", "datetime",
     ["2020-01-31", "2020-02-29"]),
    # Times written otherwise are written back in their own form.
    (["Jan 2020", "Feb 2020", "Mar 2020", "Apr 2020"], "MS", "2020-01-01", "%b %Y", ["Jan 2020", "Feb 2020"]),
    (["2021-04-05 15:00", "2021-04-05 16:00", "2021-04-05 17:00", "2021-04-05 18:00"], "h", "2021-04-05 15:00",
     "%Y-%m-%d %H:%M", ["2021-04-05 15:00", "2021-04-05 16:00"]),
    (["28/02/2021", "01/03/2021", "02/03/2021", "03/03/2021"], "D", "2021-02-28", "%d/%m/%Y",
     ["28/02/2021", "01/03/2021"]),
    (["April 29, 2021", "April 30, 2021", "May 1, 2021", "May 2, 2021"], "D", "2021-04-29", "%B %-d, %Y",
     ["April 29, 2021", "April 30, 2021"]),
    (["5/04/2021", "6/04/2021", "7/04/2021", "8/04/2021"], "D", "2021-04-05", "%-d/%m/%Y",  # one field unpadded
     ["5/04/2021", "6/04/2021"]),
    (["1959Q2", "1959Q3", "1959-Q4", "1960q1"], "QS-JAN", "1959-04-01", "quarter", ["1959Q2", "1959Q3"]),
    (["1959-Q2", "1959-Q3", "1959-Q4", "1960-Q1"], "QS-JAN", "1959-04-01", "dashed_quarter", ["1959-Q2", "1959-Q3"]),
    (["1959-04", "1959-05", "1959-06", "1959-07"], "MS", "1959-04-01", "month", ["1959-04", "1959-05"]),
    # A DataFrame's own timestamps (datetime64, as pandas and statsforecast give them), not their
    # nanoseconds, written back as timestamps (in their zone: on a grid in UTC, across a DST change).
    (pd.date_range("2020-01-31", periods=4, freq="ME"), "ME", "2020-01-31", "timestamp",
     [pd.Timestamp("2020-01-31"), pd.Timestamp("2020-02-29")]),
    (pd.date_range("2021-03-28 01:00", periods=4, freq="h", tz="Europe/Berlin"), "h", "2021-03-28 00:00",
     "timestamp@Europe/Berlin", [pd.Timestamp("2021-03-28 01:00", tz="Europe/Berlin"),
                                 pd.Timestamp("2021-03-28 03:00", tz="Europe/Berlin")]),
    # pandas Periods, held as their start times and written back as Periods of their frequency.
    (pd.period_range("2020-01", periods=4, freq="M"), "MS", "2020-01-01", "period@M",
     [pd.Period("2020-01", "M"), pd.Period("2020-02", "M")]),
    (pd.period_range("2020Q3", periods=4, freq="Q"), "QS-JAN", "2020-07-01", "period@Q-DEC",
     [pd.Period("2020Q3", "Q"), pd.Period("2020Q4", "Q")]),
    (pd.period_range("2021-01-04", periods=4, freq="W-SUN"), "W-MON", "2021-01-04", "period@W-SUN",
     [pd.Period("2021-01-04", "W-SUN"), pd.Period("2021-01-11", "W-SUN")]),
])
def test_integer_years_dates_and_iso_periods_are_read_and_written_back_alike(times, frequency, first, kind, written):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas' deprecated quarter parsing is not used
        frame = read_series(pd.DataFrame({"t": times, "y": [1.0, 2.0, 3.0, 4.0]}), "t", ["y"])
    assert (frame.frequency, frame.time_kind, frame.time[0]) == (frequency, kind, pd.Timestamp(first))
    assert frame.time_values(frame.time[:2]) == written


def test_predict_reads_dates_that_read_either_way_in_the_order_the_fit_read_them(tmp_path):
    """Twelve days of January written 01/01/2021 .. 12/01/2021 read day-first as days and
    month-first as months, each a full grid: predict refused them as a tie, though the
    forecaster had been fitted on day-first dates (13/06/2020 reads no other way)."""
    days = pd.date_range("2020-06-01", periods=200, freq="D")
    table = pd.DataFrame({"t": days.strftime("%d/%m/%Y"), "y": 10 + np.sin(2 * np.pi * np.arange(200) / 7)})
    forecaster = Forecaster("t", "y", horizon=3, lookback=10, **QUICK).fit(table)
    january = pd.DataFrame({"t": pd.date_range("2021-01-01", periods=12, freq="D").strftime("%d/%m/%Y"),
                            "y": 10 + np.sin(2 * np.pi * np.arange(12) / 7)})
    with pytest.raises(ValueError, match="read day-first and month-first alike"):
        read_series(january, "t", ["y"])  # on their own, a tie
    assert forecaster.predict(january)["t"].tolist() == ["13/01/2021", "14/01/2021", "15/01/2021"]
    loaded = Forecaster.load(forecaster.save(tmp_path / "model"))
    assert loaded.predict(january)["t"].tolist() == ["13/01/2021", "14/01/2021", "15/01/2021"]
    # a new fit reads its data afresh: months written month-first, after a day-first fit
    months = pd.DataFrame({"t": pd.date_range("2010-01-01", periods=60, freq="MS").strftime("%m/%d/%Y"),
                           "y": 10 + np.sin(2 * np.pi * np.arange(60) / 12)})
    assert forecaster.fit(months).layout.frequency == "MS"
    # a long table's predict too
    long = pd.concat([table.assign(id="a"), table.assign(id="b", y=table.y * 2)], ignore_index=True)
    panel = Forecaster("t", "y", id="id", horizon=3, lookback=10, **QUICK).fit(long)
    both = pd.concat([january.assign(id="a"), january.assign(id="b")], ignore_index=True)
    assert panel.predict(both)["t"].tolist()[:3] == ["13/01/2021", "14/01/2021", "15/01/2021"]


def test_a_series_on_periods_is_forecast_in_periods(tmp_path):
    """A DataFrame's Period column came back as strings ('2010-01'): its forecasts are Periods
    of its frequency, after a save and load too."""
    months = pd.period_range("2000-01", periods=60, freq="M")
    table = pd.DataFrame({"t": months, "y": 10 + np.sin(2 * np.pi * np.arange(60) / 12)})
    assert read_series(table, "t", ["y"]).shown_frequency == "M"  # as reports name it, not its starts' MS
    forecaster = Forecaster("t", "y", horizon=3, lookback=12, **QUICK).fit(table)
    prediction = forecaster.predict(table)
    assert prediction["t"].dtype == pd.PeriodDtype("M")
    assert prediction["t"].tolist() == list(pd.period_range("2005-01", periods=3, freq="M"))
    pd.testing.assert_frame_equal(Forecaster.load(forecaster.save(tmp_path / "model")).predict(table), prediction)


def test_one_series_on_integer_steps_is_read_forecast_and_written_back_in_steps(tmp_path):
    """Once refused ("a number outside the years"): a single series indexed 1, 2, 3 ..., as
    darts' and statsforecast's integer indexes, needs no id column."""
    frame = read_series(pd.DataFrame({"t": [-5, 0, 5, 10, 20], "y": [1.0, 2.0, 3.0, 4.0, 5.0]}), "t", ["y"])
    assert (frame.time_kind, frame.shown_frequency, len(frame)) == ("step", "5 steps", 6)  # 15 filled in
    assert frame.time_values(frame.time) == [-5, 0, 5, 10, 15, 20] and frame.filled[:, 0].tolist() == [False] * 4 + [
        True, False]
    steps = np.arange(1, 61)
    table = pd.DataFrame({"t": steps, "y": 10 + np.sin(2 * np.pi * steps / 6)})
    forecaster = Forecaster("t", "y", horizon=3, lookback=12, **QUICK).fit(table)
    assert forecaster.layout.season == 1 and forecaster.layout.calendar_names == ()  # no calendar in steps
    prediction = forecaster.predict(table)
    assert prediction["t"].tolist() == [61, 62, 63]
    loaded = Forecaster.load(forecaster.save(tmp_path / "model"))
    pd.testing.assert_frame_equal(loaded.predict(table), prediction)
    late = pd.DataFrame({"t": steps + 1940, "y": table["y"]})  # every step reads as a year: the fit says steps
    assert loaded.predict(late)["t"].tolist() == [2001, 2002, 2003]
    with pytest.raises(ValueError, match=re.escape("the steps between timestamps vary (5, 2, 3, ...)")):
        read_series(pd.DataFrame({"t": [0, 5, 7, 10], "y": [1.0, 2.0, 3.0, 4.0]}), "t", ["y"])
    with pytest.warns(UserWarning, match=re.escape(
            "column 't' looks like Unix time in seconds (1577836800 is 2020-01-01 00:00:00); it is read as integer "
            "steps")):
        unix = read_series(pd.DataFrame({"t": 1577836800 + 3600 * np.arange(5), "y": np.arange(5.0)}), "t", ["y"])
    assert unix.shown_frequency == "3600 steps"
    with pytest.warns(UserWarning, match=re.escape(
            "column 't' looks like Unix time in milliseconds (1577836800000 is 2020-01-01 00:00:00); it is read as "
            "integer steps, with no calendar and m = 1 unless a season is given: convert it to dates "
            "(pandas.to_datetime(column, unit='ms')) for those")):
        unix = read_series(pd.DataFrame({"t": 1577836800000 + 3600000 * np.arange(5), "y": np.arange(5.0)}), "t",
                           ["y"])
    assert unix.shown_frequency == "3600000 steps"  # pandas names that grid "3600us"
    with pytest.warns(UserWarning, match=re.escape(  # weekly data exported from Excel lost its yearly season
            "column 't' looks like Excel serial dates (days since 1899-12-30) (35161 is 1996-04-06 00:00:00); it is "
            "read as integer steps, with no calendar and m = 1 unless a season is given: convert it to dates "
            "(pandas.to_datetime(column, unit='D', origin='1899-12-30')) for those")):
        read_series(pd.DataFrame({"t": 35161 + 7 * np.arange(5), "y": np.arange(5.0)}), "t", ["y"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_series(pd.DataFrame({"t": 35161 + 5 * np.arange(5), "y": np.arange(5.0)}), "t", ["y"])  # no calendar's
        read_series(pd.DataFrame({"t": 30000 + np.arange(5), "y": np.arange(5.0)}), "t", ["y"])  # a step counter
    weekly = read_series(pd.DataFrame({"t": pd.date_range("2024-01-07", periods=8, freq="W").asi8,
                                       "y": np.arange(8.0)}), "t", ["y"])  # nanoseconds a week apart: "W-SUN"
    assert weekly.shown_frequency == "604800000000000 steps"  # it failed: "<Week: weekday=6> is a non-fixed …"
    result = Forecaster("t", "y", horizon=3, lookback=12, **QUICK).backtest(table, holdout=3, baselines=("naive",))
    assert result.forecasts["time"].tolist() == [58, 59, 60]
    assert backtest_report(result, read_series(table, "t", ["y"])).startswith("backtest of y (step, m=1): 57 training rows")


def test_offsets_written_in_several_ways_are_read_as_offsets():
    """`+01`, ` +01:00` and ` UTC` beside `+01:00` were taken for times without an offset."""
    times = ["2021-03-28 00:00:00+01:00", "2021-03-28 01:00:00+01", "2021-03-28 02:00:00 +01:00",
             "2021-03-28 02:00:00 UTC"]
    frame = read_series(pd.DataFrame({"t": times, "y": np.arange(4.0)}), "t", ["y"])
    assert frame.time.strftime("%H:%M").tolist() == ["23:00", "00:00", "01:00", "02:00"]
    zero = ["2021-03-28 00:00:00 UTC+0", "2021-03-28 01:00:00 GMT-00:00", "2021-03-28 02:00:00 UTC"]
    frame = read_series(pd.DataFrame({"t": zero, "y": np.arange(3.0)}), "t", ["y"])  # alike read either way
    assert frame.time.strftime("%H:%M").tolist() == ["00:00", "01:00", "02:00"]
    postgres = ["2021-03-28 00:00:00+01", "2021-03-28 01:00:00+01", "2021-03-28 03:00:00+02"]  # timestamptz as text
    frame = read_series(pd.DataFrame({"t": postgres, "y": np.arange(3.0)}), "t", ["y"])  # pandas: "Tz-aware …"
    assert frame.time.strftime("%H:%M").tolist() == ["23:00", "00:00", "01:00"]


@pytest.mark.parametrize("time_cells, message", [
    (["2020-01-01", "soon", "2020-01-03"], "column 't' at line 3 of {path} (the header is line 1) holds 'soon', "
                                           "which cannot be read as a time; " + FORMS),
    (["1959.0", "1959.1", "1959.2"], "column 't' at line 3 of {path} (the header is line 1) holds 1959.1, which is a "
                                     "decimal year that does not fall on a month start; " + FORMS),
    (["1959", "1960", "20200101"], "column 't' at line 4 of {path} (the header is line 1) holds 20200101, which is "
                                   "a number outside the years 1678..2261 (the dates pandas holds); more than half of the "
                                   "column's numbers read as years, so all are read as years (integer steps are a column "
                                   "of integers at most half of which are such years); " + FORMS),
    (["1.5", "2.5", "3.5"], "column 't' at line 2 of {path} (the header is line 1) holds 1.5, which is a number outside "
                            "the years 1678..2261 (the dates pandas holds); a time in numbers is an integer step"),
    (["20200130", "20200131", "20200201"], "column 't' at line 2 of {path} (the header is line 1) holds 20200130, which "
                                           "is a number outside the years 1678..2261 (the dates pandas holds); the numbers "
                                           "read as dates written yyyymmdd or months written yyyymm: write them as "
                                           "2020-01-31 or 2020-01; " + FORMS),
    (["201801", "201802", "201803"], "column 't' at line 2 of {path} (the header is line 1) holds 201801, which "
                                     "is a number outside the years 1678..2261 (the dates pandas holds); the numbers "
                                     "read as dates written yyyymmdd or months written yyyymm: write them as "
                                     "2020-01-31 or 2020-01; " + FORMS),
    (["2020-01-01", "", "2020-01-03"], "column 't' has a missing timestamp at line 3 of {path} (the header is line 1)"),
    # integer steps with a typo were read as dates, and the first step was blamed; inf failed in pandas' cast
    (["1", "2", "x", "4"], "column 't' at line 4 of {path} (the header is line 1) holds 'x', " + NOT_A_NUMBER),
    (["1", "2", "inf", "4"], "column 't' at line 4 of {path} (the header is line 1) holds inf, " + NOT_A_NUMBER),
    # decimal years with one date as text: the date parser read "2000.25" as 2000-01-01, silently
    ([f"{year}.25" for year in range(2000, 2011)] + ["2011-04-01"],
     "column 't' at line 13 of {path} (the header is line 1) holds '2011-04-01', " + NOT_A_NUMBER),
    (["2021-03-28 00:00:00 GMT+1", "2021-03-28 01:00:00 GMT+1"],
     "column 't' at line 2 of {path} (the header is line 1) holds '2021-03-28 00:00:00 GMT+1', which writes its offset "
     "after GMT or UTC, where it reads with the sign reversed (POSIX: GMT+1 is an hour behind UTC): write the offset "
     "alone, as +01:00 for an hour ahead of UTC; " + FORMS),
    (["2021-03-28 00:00:00+01:00", "2021-03-28 01:00:00", "2021-03-28 03:00:00+02:00"],
     "column 't' at line 3 of {path} (the header is line 1) holds '2021-03-28 01:00:00', which has no UTC offset "
     "where other times of the column have one ('2021-03-28 00:00:00+01:00'): give every time its offset, or none; "
     + FORMS),
])
def test_an_unreadable_time_column_names_its_line_and_the_forms_accepted(tmp_path, time_cells, message):
    path = write_csv(tmp_path, "t,y\n" + "".join(f"{cell},{k}\n" for k, cell in enumerate(time_cells)))
    with pytest.raises(ValueError, match=re.escape(message.format(path=path))):
        read_series(path, "t", ["y"])


@pytest.mark.parametrize("cell, expected, shown", [
    ("inf", "finite numbers", "inf"), ("-inf", "finite numbers", "-inf"), ("twelve", "numbers", "'twelve'"),
    ("1,5", "numbers", "'1,5'"),
])
def test_inf_and_text_in_a_number_column_are_refused_at_their_line(tmp_path, cell, expected, shown):
    # A blank line is skipped but counted: the bad cell is on line 5 of the file.
    path = write_csv(tmp_path, f't,y,x\n2020-01-01,1,0\n\n2020-01-02,2,0\n2020-01-03,3,"{cell}"\n2020-01-04,4,0\n')
    with pytest.raises(ValueError, match=re.escape(
            f"column 'x' must hold {expected} (or empty cells for missing values); line 5 of {path} "
            f"(the header is line 1) holds {shown}")):
        read_series(path, "t", ["y"], ["x"])


def test_a_number_too_large_to_score_is_refused_at_its_line(tmp_path):
    """1e308 is finite, but its scores overflowed: sMAPE inf, MASE 0, and a forecast of ±1e306
    chosen by that MASE."""
    path = write_csv(tmp_path, "t,y\n2020-01-01,1\n2020-01-02,1e308\n2020-01-03,3\n2020-01-04,4\n")
    with pytest.raises(ValueError, match="^" + re.escape(
            f"column 'y' must hold numbers within ±1e+150, where the squares and sums that scale and score a series "
            f"stay finite; line 3 of {path} (the header is line 1) holds 1e+308: rescale the column") + "$"):
        read_series(path, "t", ["y"])
    assert read_series(pd.DataFrame({"t": [1, 2, 3], "y": [1.0, -1e150, 3.0]}), "t", ["y"]).targets[1, 0] == -1e150


def test_numbers_split_by_a_decimal_comma_under_a_headers_empty_field_are_refused(tmp_path):
    """Excel's trailing comma in the header gave the second half of each "364,5" a column of
    its own: the target read 364, silently. pandas' own index column (the first, unnamed) is
    read as before."""
    split = tmp_path / "split.csv"
    split.write_text("date,co2,\n1996-04-06,364,5\n1996-04-13,364,7\n1996-04-20,365,1\n")
    with pytest.raises(ValueError, match=re.escape(
            f"{split}: field 3 of its header 'date,co2,' is empty, yet its rows hold values there (5 on line 2): a "
            "number written with a decimal comma or a thousands separator splits in two there; lstmkit reads "
            "comma-separated values with '.' as the decimal point and no thousands separators: save the table so, "
            "or name the column")):
        read_series(split, "date", ["co2"])
    indexed = tmp_path / "indexed.csv"
    pd.DataFrame({"date": pd.date_range("1996-04-06", periods=3, freq="W-SAT"), "co2": [364.5, 364.7, 365.1]}).to_csv(
        indexed)
    assert read_series(indexed, "date", ["co2"]).targets[:, 0].tolist() == [364.5, 364.7, 365.1]
    nested = tmp_path / "nested.csv"  # pandas' index of two levels, unnamed: ",,date,co2"
    pd.concat({"a": pd.read_csv(indexed, index_col=0)}).to_csv(nested)
    assert read_series(nested, "date", ["co2"]).targets[:, 0].tolist() == [364.5, 364.7, 365.1]
    trailing = tmp_path / "trailing.csv"  # a trailing comma with nothing under it
    trailing.write_text("date,co2,\n1996-04-06,364.5,\n1996-04-13,364.7,\n1996-04-20,365.1,\n")
    assert read_series(trailing, "date", ["co2"]).targets[:, 0].tolist() == [364.5, 364.7, 365.1]


def test_a_hand_written_csv_with_spaces_after_its_commas_names_its_columns_as_meant(tmp_path):
    """`date, y` named its second column ' y', which neither --target y nor --target ' y' (stripped) could select."""
    path = write_csv(tmp_path, "date, y\n2020-01-01, 1.5\n2020-01-02, 2.5\n2020-01-03, 3.5\n")
    frame = read_series(path, "date", ["y"])
    assert [stamp.date().isoformat() for stamp in frame.time] == ["2020-01-01", "2020-01-02", "2020-01-03"]
    assert frame.targets[:, 0].tolist() == [1.5, 2.5, 3.5] and frame.target_names == ("y",)
    comma = write_csv(tmp_path, 'date,"sales, EUR"\n2020-01-01,1\n')
    with pytest.raises(ValueError, match=re.escape(
            "column 'sales' is not in the data; its columns are 'date', 'sales, EUR'; a name that holds a comma is "
            "not one the command line can give, where commas separate names: rename the column")):
        read_series(comma, "date", ["sales"])


def test_a_forecaster_saved_with_epoch_windows_without_id_by_an_older_version_loads(tmp_path):
    """Versions before the option was refused without id saved it, where it did nothing."""
    steps = np.arange(1, 61)
    table = pd.DataFrame({"t": steps, "y": 10 + np.sin(2 * np.pi * steps / 6)})
    forecaster = Forecaster("t", "y", horizon=3, lookback=12, **QUICK).fit(table)
    config_file = forecaster.save(tmp_path / "model") / "config.json"
    saved = json.loads(config_file.read_text())
    saved["forecaster"]["epoch_windows"] = 100
    config_file.write_text(json.dumps(saved))
    pd.testing.assert_frame_equal(Forecaster.load(tmp_path / "model").predict(table), forecaster.predict(table))


def test_inf_in_a_dataframe_is_refused_at_its_position():
    table = pd.DataFrame({"t": ["2020-01-01", "2020-01-02", "2020-01-03"], "y": [1.0, np.inf, 3.0]})
    with pytest.raises(ValueError, match=re.escape("column 'y' must hold finite numbers (or empty cells for missing "
                                                   "values); row 1 (0-based position in the DataFrame) holds inf")):
        read_series(table, "t", ["y"])


def test_an_empty_target_column_is_refused():
    table = pd.DataFrame({"t": ["2020-01-01", "2020-01-02", "2020-01-03"], "y": [None, None, None]})
    with pytest.raises(ValueError, match=re.escape("the target column(s) y have no values")):
        read_series(table, "t", ["y"])


def daily(values) -> pd.DataFrame:
    return pd.DataFrame({"day": pd.date_range("2024-01-01", periods=len(values), freq="D").strftime("%Y-%m-%d"),
                         "y": values})


@pytest.mark.parametrize("early_stopping, needed", [(False, 9), (True, 12)])
def test_too_few_rows_for_lookback_and_horizon_are_refused_with_the_column(early_stopping, needed):
    forecaster = Forecaster("day", "y", horizon=3, lookback=6, early_stopping=early_stopping, **QUICK)
    with pytest.raises(ValueError, match=re.escape(
            f"the series y has 8 rows (2024-01-01 .. 2024-01-08); fitting with lookback 6 and horizon 3 needs at "
            f"least {needed} (lookback + horizon = 9 for one window, and windows kept for early stopping): give more "
            "rows, or a shorter lookback or horizon")):
        forecaster.fit(daily(np.arange(8.0)))
    forecaster.fit(daily(np.arange(float(needed))))  # exactly enough


CONSTANT_WARNING = "target column(s) y hold one value in all {} rows fitted on: forecast as that value"


@pytest.mark.parametrize("value", [5.0, 0.1, 371.3, 0.0])
def test_a_constant_series_forecasts_the_constant(value):
    table = daily(np.full(40, value))
    with pytest.warns(UserWarning, match=re.escape(CONSTANT_WARNING.format(40))):
        forecaster = Forecaster("day", "y", horizon=3, lookback=6, **QUICK).fit(table)
    assert forecaster.layout.target_scaler.std.tolist() == [0.0]
    prediction = forecaster.predict(table)
    for column in ("y", "y_lower_90", "y_upper_90"):
        assert prediction[column].tolist() == [value] * 3


def test_a_constant_series_backtests_against_every_baseline():
    """Today ARIMA's KPSS test fails with 'cannot convert float NaN to integer' and MASE divides by 0."""
    with pytest.warns(UserWarning, match=re.escape(CONSTANT_WARNING.format(34))):
        result = Forecaster("day", "y", horizon=3, lookback=6, **QUICK).backtest(daily(np.full(40, 2.5)), holdout=6)
    assert result.scores.index.tolist() == ["model", *BASELINES, "combination", "chosen"]
    assert (result.scores.to_numpy() == 0).all()
    assert result.forecasts["model"].tolist() == [2.5] * 6 and result.coverage == 1.0
    for name in BASELINES:
        assert baseline_forecast(name, np.full(30, 2.5), 4, 7).tolist() == [2.5] * 4


def test_the_best_baseline_is_the_one_exact_at_the_end_of_the_history():
    weekly_pattern = np.tile([3.0, -1.0, 4.0, 1.0, 5.0, 9.0, 2.0], 6)
    assert best_baseline(weekly_pattern, 3, 7) == "seasonal_naive"
    assert best_baseline(2.0 + 0.5 * np.arange(40), 3, 7) == "drift"
    assert best_baseline(np.arange(5.0), 3, 7) == "naive"  # too short to try any origin


def weekly_pattern_table(rows: int = 70) -> pd.DataFrame:
    return daily(np.tile([3.0, -1.0, 4.0, 1.0, 5.0, 9.0, 2.0], rows // 7 + 1)[:rows])


FALLBACK_WARNING = ("the model's forecast of 'y' is not finite (NaN or inf) from 1 of {} origin(s); the seasonal_naive "
                    "baseline's forecast stands in for it, with no prediction interval (its bounds equal the forecast)")


def test_a_forecast_that_is_not_finite_is_replaced_by_the_best_baseline_in_predict(tmp_path, capsys):
    """Data far outside the fitted scale (1e40 overflows float32) made the network's forecast NaN;
    `forecast predict` then said it forecast by the model."""
    forecaster = Forecaster("day", "y", horizon=3, lookback=7, **QUICK).fit(weekly_pattern_table())
    assert forecaster.layout.fallback == ("seasonal_naive",)
    table = weekly_pattern_table()
    table.loc[69, "y"] = 1e40
    with pytest.warns(UserWarning, match=re.escape(FALLBACK_WARNING.format(1))):
        prediction = forecaster.predict(table)
    expected = baseline_forecast("seasonal_naive", table["y"].to_numpy(), 3, 7).tolist()
    assert prediction["y"].tolist() == expected == [3.0, -1.0, 4.0]
    assert prediction["y_lower_90"].tolist() == prediction["y_upper_90"].tolist() == expected
    assert prediction.attrs["fallbacks"] == [{"target": "y", "baseline": "seasonal_naive"}]
    forecaster.layout = dataclasses.replace(forecaster.layout, chosen=("model",))
    forecaster.save(tmp_path / "model")
    table.to_csv(tmp_path / "far.csv", index=False)
    main(["forecast", "predict", str(tmp_path / "model"), str(tmp_path / "far.csv"),
          "--out", str(tmp_path / "next.csv")])
    out, err = capsys.readouterr()
    assert FALLBACK_WARNING.format(1) in err and out == (
        f"wrote 3 forecast rows to {tmp_path / 'next.csv'}; forecasts y by model (the seasonal_naive baseline standing "
        "in for the network's forecast, which was not finite): what fit chose on its validation windows (results.json: "
        "predict_uses)\n")
    forecaster.config = dataclasses.replace(forecaster.config, baselines="none")  # the network always forecasts
    forecaster.save(tmp_path / "alone")
    main(["forecast", "predict", str(tmp_path / "alone"), str(tmp_path / "far.csv")])
    assert capsys.readouterr().err.endswith(
        "forecasts by the network: it was fitted with --baselines none; y (the seasonal_naive baseline standing in "
        "for the network's forecast, which was not finite)\n")


def test_a_forecast_that_is_not_finite_is_replaced_by_the_best_baseline_in_a_backtest():
    table = weekly_pattern_table()
    table.loc[66, "y"] = 1e40  # in the history of the second origin (67) only: origins 64 and 67
    with pytest.warns(UserWarning, match=re.escape(FALLBACK_WARNING.format(2))):
        result = Forecaster("day", "y", horizon=3, lookback=7, **QUICK).backtest(table, holdout=6,
                                                                                baselines=("naive",))
    assert result.fallbacks == [{"origin": "2024-03-08", "target": "y", "baseline": "seasonal_naive"}]
    assert np.isfinite(result.forecasts[["model", "chosen_lower", "chosen_upper"]].to_numpy()).all()
    assert result.forecasts["model"].tolist()[3:] == [5.0, 9.0, 2.0]  # seasonal naive: rows 60-62, a week before
    # MASE is inf: the training rows repeat exactly every 7 days, so its scale is 0.
    assert np.isfinite(result.scores.loc["model", ["MAE", "RMSE", "sMAPE"]].to_numpy()).all()
    assert backtest_report(result, read_series(table, "day", ["y"])).splitlines()[-1] == (
        "the model's forecast was not finite, and a baseline stood in for it, at: y from 2024-03-08 (seasonal_naive)")


def test_the_report_line_on_the_baselines_by_hand():
    scores = pd.DataFrame({"MASE": [0.5, 0.7, 0.4]}, index=["model", "naive", "ets"])
    assert beaten_line(scores, "MASE") == "the model is beaten on this backtest (MASE 0.500) by: ets (0.400)"
    assert beaten_line(scores.drop(index="ets"), "MASE") == "the model beats every baseline on this backtest (MASE 0.500)"
    tied = pd.DataFrame({"MASE": [0.0, 0.0]}, index=["model", "naive"])  # a constant series: every method exact
    assert beaten_line(tied, "MASE") == "the model and every baseline score alike on this backtest (MASE 0.000)"
    alone = pd.DataFrame({"MASE": [0.5, 0.5]}, index=["model", "chosen"])  # no baseline scored: --baselines none
    assert beaten_line(alone, "MASE") == "the model's MASE on this backtest is 0.500; no baseline was scored beside it"
    worse = pd.DataFrame({"MASE": [0.5, 0.6, 0.5]}, index=["model", "combination", "chosen"])  # review31
    assert beaten_line(worse, "MASE") == "the model's MASE on this backtest is 0.500; no baseline was scored beside it"
    chosen = pd.DataFrame({"MASE": [0.5, 0.4]}, index=["model", "chosen"])  # a baseline chosen beats it (review30)
    assert beaten_line(chosen, "MASE") == "the model is beaten on this backtest (MASE 0.500) by: chosen (0.400)"


def test_a_verdict_on_scores_that_are_not_finite_is_drawn_by_smape_and_nothing_is_starred_best_among_inf():
    """A target (or series) flat over its training values has a MASE scale of 0: every inexact
    method's MASE is inf, its OWA nan. The report said "score alike (MASE inf)" where the model's
    MAE was six times arima's, and "beats every baseline (OWA nan)" where ETS had the lower
    sMAPE; and it starred every inf as the best."""
    flat = pd.DataFrame({"sMAPE": [18.91, 14.72, 20.0], "MASE": [math.inf] * 3}, index=["model", "arima", "naive"])
    why = ("is not finite for every method (a series whose training values repeat each season exactly, flat or not, "
           "has a MASE scale of 0); by sMAPE, ")
    assert beaten_line(flat, "MASE") == "MASE " + why + (
        "the model is beaten on this backtest (sMAPE 18.910) by: arima (14.720)")
    unweighed = pd.DataFrame({"sMAPE": [4.0, 4.5], "MASE": [math.inf, math.inf], "OWA": [math.nan, math.nan]},
                             index=["model", "ets"])
    assert beaten_line(unweighed, "OWA") == "OWA " + why + "the model beats every baseline on this backtest (sMAPE 4.000)"
    lines = scores_table(flat, "lstm", ("sMAPE", "MASE"), "6.2f")
    assert lines[1:] == ["model (lstm)     18.91    inf ", "arima            14.72*   inf ",
                         "naive            20.00    inf "]


def test_predict_writes_csv_files_only(tmp_path):
    """A `.parquet` name once got CSV text; the refusal comes before the model is read."""
    from lstmkit.pipelines.forecast import predict_to_csv

    with pytest.raises(ValueError, match=re.escape("out forecast.parquet: expected a file ending in .csv")):
        predict_to_csv(tmp_path / "no model here", "data.csv", "forecast.parquet")


def test_predict_on_a_backtest_or_unfinished_fit_folder_says_what_saves_the_model(tmp_path):
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=re.escape(
            "is not an lstmkit checkpoint: expected config.json and model.safetensors in it")) as other_folder:
        Forecaster.load(tmp_path)
    assert str(other_folder.value).endswith("in it"), "a task's or demo's results.json is not a backtest's"
    (tmp_path / "backtest.csv").write_text("")
    with pytest.raises(FileNotFoundError, match=re.escape(
            "is not an lstmkit checkpoint: expected config.json and model.safetensors in it (it holds a backtest's "
            "results.json: `forecast backtest` saves no model, `forecast fit` does; a fit stopped before it saved "
            "model/ continues with --resume)")):
        Forecaster.load(tmp_path)
    (tmp_path / "training" / "backtest").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=re.escape(
            "(it holds training runs but no model/: a `forecast fit` that stopped continues with the same command "
            "and --resume; `forecast backtest` saves no model)")):
        Forecaster.load(tmp_path)


def test_the_report_says_plainly_which_baselines_beat_the_model_and_what_predict_uses():
    table = daily(10 + 2.0 * np.arange(60))  # a straight line: drift continues it exactly
    forecaster = Forecaster("day", "y", horizon=3, lookback=6, baselines=("naive", "drift"), **QUICK)
    with pytest.warns(RuntimeWarning, match="validation values were forecast exactly"):
        result = forecaster.backtest(table, holdout=6, baselines=("naive", "drift"))
    lines = backtest_report(result, read_series(table, "day", ["y"])).splitlines()
    mase = result.scores["MASE"]
    assert mase["drift"] == mase["chosen"] == 0 < mase["model"]  # two epochs do not learn the line
    better = ", ".join(f"{name} ({mase[name]:.3f})" for name in mase.index if mase[name] < mase["model"])
    assert "drift (0.000)" in better and "chosen (0.000)" in better
    scale = result.model.layout.interval_scale[0]
    assert scale == 1  # drift was exact on the validation windows too: not a point, the network's interval
    assert lines[-5:-2] == [
        f"the model is beaten on this backtest (MASE {mase['model']:.3f}) by: {better}",
        "predict forecasts by what the validation windows chose among the model, the baselines and their "
        "combinations (the row 'chosen'): y by drift, the lowest MASE (0.000)",
        "the 90% interval around the forecast predict uses (the network's, uncalibrated (its validation values could "
        f"not calibrate it)) holds {result.coverage:.1%} of the held-out values"]  # it said "scaled by 1 to hold" them


def test_the_report_shows_a_dataframes_midnight_timestamps_as_dates():
    assert shown_time(pd.Timestamp("1960-01-31")) == "1960-01-31"
    assert shown_time(pd.Timestamp("1960-01-31 13:00")) == "1960-01-31 13:00:00"
    assert shown_time("1959Q2") == "1959Q2" and shown_time(1989) == "1989"


@pytest.mark.parametrize("options, message", [
    (dict(horizon=-2), "horizon must be a positive integer, got -2"),
    (dict(season=0), "season must be a positive integer or None, got 0"),
    (dict(season=-1), "season must be a positive integer or None, got -1"),
    (dict(lookback=-3), "lookback must be a positive integer or None, got -3"),
    (dict(hidden_size=0), "hidden_size must be a positive integer, got 0"),
    (dict(num_layers=0), "num_layers must be a positive integer, got 0"),
    (dict(batch_size=0), "batch_size must be a positive integer, got 0"),
    (dict(dropout=1.0), "dropout is a probability in [0, 1), got 1.0"),
    (dict(dropout=-0.1), "dropout is a probability in [0, 1), got -0.1"),
    (dict(dropout=math.nan), "dropout is a probability in [0, 1), got nan"),
    (dict(cell="lsmt"), "cell must be one of rnn, lstm, gru, peephole, cifg, layernorm, nig, nfg, nog, niaf, noaf, "
                        "got 'lsmt'"),
    (dict(engine="cuda"), "engine must be one of auto, native, fused, triton, reference, got 'cuda'"),
    (dict(interval=math.nan), "interval is the coverage of the prediction interval, in (0, 1); got nan"),
    (dict(interval=0.9999999999999999), "in (0, 1); got 0.9999999999999999, which is 100% to the 15 digits of its "
                                        "columns' names"),
    (dict(validation_fraction=1.0), "validation_fraction must be in (0, 1), got 1.0"),
])
def test_forecast_options_are_refused_when_the_config_is_built(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Forecaster("day", "y", **{"horizon": 3, **options})


def test_local_hours_repeated_where_daylight_saving_ends_and_semi_monthly_dates_are_named_as_such(tmp_path):
    """Told of a long table's --id, and of a 2W-SUN grid that the first date itself falls off."""
    hours = pd.date_range("2021-10-31 00:00", periods=6, freq="h", tz="Europe/Berlin").tz_localize(None)
    path = write_csv(tmp_path, "time,y\n" + "".join(f"{stamp:%Y-%m-%d %H:%M},{k}\n" for k, stamp in enumerate(hours)))
    with pytest.raises(ValueError, match=re.escape(
            "(a long table of several series names its series column with --id, id= in Python, when it is fitted); or "
            "its times are a local clock without a UTC offset, which repeats an hour where daylight saving time ends: "
            "write each time with its offset (2021-10-31 02:00+01:00), or in UTC")):
        read_series(path, "time", ["y"])
    daily = write_csv(tmp_path, "day,y\n2023-01-05,1\n2023-01-06,2\n2023-01-06,3\n")  # the duplicate's gap is no step
    with pytest.raises(ValueError, match=r"when it is fitted\)$"):
        read_series(daily, "day", ["y"])
    days = [f"2015-{month:02d}-{day:02d}" for month in range(1, 5) for day in (1, 15)]
    path = write_csv(tmp_path, "date,y\n" + "".join(f"{day},{k}\n" for k, day in enumerate(days)))
    with pytest.raises(ValueError, match=re.escape(
            "column 'date' is not on a regular 2W-SUN grid (read from runs of three rows: pandas infers no frequency "
            "from all of them, and lstmkit reads none other): '2015-01-01'")):
        read_series(path, "date", ["y"])


def test_a_duplicate_timestamp_in_a_csv_is_refused_at_its_lines_as_written(tmp_path):
    path = write_csv(tmp_path, "day,y\n2023-01-05,1\n2023-01-06,2\n2023-01-06,3\n2023-01-07,4\n")
    with pytest.raises(ValueError, match=re.escape(
            f"column 'day' has 1 duplicate timestamp(s): the first, '2023-01-06', at lines 3 and 4 of {path} (the "
            "header is line 1); a table holds one row per time (a long table of several series names its series "
            "column with --id, id= in Python, when it is fitted)")):
        read_series(path, "day", ["y"])


def test_a_batch_that_processes_cannot_share_evenly_is_refused_by_name():
    """Under torchrun a batch of 1 left one process an empty share: a nan 'divergence' at step 0."""
    from lstmkit.pipelines.configs import ForecasterConfig
    from lstmkit.pipelines.forecast import ForecastJob
    from lstmkit.training import Processes

    config = ForecasterConfig(time="t", target="y", horizon=3, batch_size=1)
    with pytest.raises(ValueError, match=re.escape("batch_size (--batch-size, windows) is 1, which 2 processes cannot "
                                                   "share evenly: give a multiple of 2")):
        ForecastJob(None, None, list(range(10)), [], config, Processes(1, 2), torch.device("cpu"))


@pytest.mark.parametrize("arrow", ["timestamp[ns][pyarrow]", "timestamp[s][pyarrow]", "date32[pyarrow]"])
def test_pyarrow_timestamps_read_as_pandas_own(arrow):
    """pyarrow's timestamps were counted as nanosecond steps (no calendar, m = 1, the forecast's
    times epoch nanoseconds), or refused as "a number outside the years"."""
    pytest.importorskip("pyarrow")
    table = pd.DataFrame({"day": pd.date_range("2024-01-01", periods=20, freq="D"), "y": np.arange(20.0)})
    ours = read_series(table.assign(day=table["day"].astype(arrow)), "day", ["y"])
    theirs = read_series(table, "day", ["y"])
    assert (ours.time_kind, ours.frequency) == (theirs.time_kind, theirs.frequency) == ("timestamp", "D")
    assert ours.time.equals(theirs.time)
    zoned = table.assign(day=table["day"].dt.tz_localize("Europe/Paris"))
    assert read_series(zoned.assign(day=zoned["day"].astype("timestamp[us, tz=Europe/Paris][pyarrow]")), "day",
                       ["y"]).time_kind == read_series(zoned, "day", ["y"]).time_kind == "local@Europe/Paris"


def test_durations_in_the_time_column_are_refused_not_counted_in_nanoseconds():
    table = pd.DataFrame({"day": pd.to_timedelta(np.arange(20), unit="D"), "y": np.arange(20.0)})
    with pytest.raises(ValueError, match=re.escape("column 'day' holds durations (timedelta64[ns]), not times: give "
                                                   "dates, or the steps as integers (durations.dt.days, say)")):
        read_series(table, "day", ["y"])


def test_a_dataframes_columns_named_twice_or_in_levels_or_by_numbers_are_named():
    table = daily(np.arange(20.0))
    with pytest.raises(ValueError, match=re.escape("the DataFrame has two columns named 'y': give each column a name "
                                                   "of its own")):
        read_series(pd.concat([table, table[["y"]]], axis=1), "day", ["y"])
    levels = table.set_axis(pd.MultiIndex.from_tuples([("day", "a"), ("y", "b")]), axis=1)
    with pytest.raises(ValueError, match=re.escape("the DataFrame's columns have 2 levels (a MultiIndex)")):
        read_series(levels, "day", ["y"])
    with pytest.raises(ValueError, match=re.escape(
            "column '0' is not in the data; its columns are 'day', '0'; the DataFrame's column 0 is an int, not a "
            "name: name the columns with strings (frame.columns = frame.columns.astype(str))")):
        read_series(table.rename(columns={"y": 0}), "day", ["0"])
