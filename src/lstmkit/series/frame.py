"""Reading a table of time series: checked, on a regular time grid, gaps filled.

    CSV or DataFrame -> time column parsed (see TIME_FORMS) -> targets and covariates
    numeric and finite -> sorted, duplicates refused -> frequency inferred, missing rows
    inserted -> gaps filled by linear interpolation, with a warning that says how many

Messages name a row as the user sees it: in a CSV file by its line, counting the header as
line 1 (a spreadsheet's row number too); in a DataFrame by its 0-based position (`.iloc`).

Rows after the last target value hold known-future covariates (a planned promotion, a
holiday) for the steps to forecast; without such columns they are ignored, with a warning.
"""

from __future__ import annotations

import bz2
import io
import itertools
import lzma
import os
import re
import tarfile
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from lstmkit.caller import warn_at_caller
from lstmkit.warning_filters import warnings_filtered, warnings_recorded
from lstmkit.files import (
    GZIP_MAGIC, check_input_file, check_not_other_unicode, check_not_unmarked_utf16, decoded_utf8, gunzipped, line_of,
)

# What lstmkit reads, for messages about a file written otherwise.
CSV_FORM = "comma-separated values with '.' as the decimal point"
# How the time column was written, so that forecasts are written back the same way; besides
# these, a strftime format (it holds "%") that writes every row back as it was written,
# "timestamp@<zone>" for a DataFrame's timestamps in a time zone ("timestamp": without one),
# "local@<zone>" for those all at one time of day (daily or longer steps), on a wall-clock grid,
# and "period@<frequency>" for a DataFrame's pandas Periods (held as their start times);
# "decimal_year@<places>" for decimal years written with that many decimals.
TIME_KINDS = ("datetime", "year", "decimal_year", "quarter", "dashed_quarter", "month", "utc", "timestamp", "step")
# Integer steps (1, 2, 3 ... any integers but whole years pandas holds): a one-table series holds
# them as the timestamps that many nanoseconds after 1970, a grid of one nanosecond, which no
# calendar reads; a long table (lstmkit.series.panel) as integers, STEP its frequency too.
STEP = "step"
# Formats tried for times written as text, after pandas' guesses from the first row (month
# names with a year, and months written 01-2020 or 01/2020, are beyond its guess).
TEXT_FORMS = ("%b %Y", "%B %Y", "%b-%y", "%b %y", "%m-%Y", "%m/%Y")
TIME_FORMS = ("dates and times (2020-01-31, 2020-01-31 12:00, 31/01/2020 or 01/31/2020 13:00, or what "
              "pandas.to_datetime reads; with a UTC offset or a time zone they are written back in UTC), "
              "ISO periods (1959Q2, 1959-04), integer years (1959), decimal years on month starts "
              "(1959.25 for April 1959, the second quarter; 1959.0833 for February) and integer steps "
              "(1, 2, 3 ...)")
QUARTER = r"(\d{4})-?[Qq]([1-4])"
MONTH = r"\d{4}-\d{2}"
# A date of two numbers and a year, 01/02/2010, perhaps with a time of day (01/02/2010 13:00):
# day-first or month-first, whichever order reads every row as a date and puts the rows on a
# regular grid (numeric_dates), never row by row.
NUMERIC_DATE = r"(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?"
# The same with a two-digit year (01/02/20), which pandas reads row by row, each its own way.
TWO_DIGIT_YEAR_DATE = r"\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2}(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?"
# A month named with a two-digit year (Jan-15, Jan 15: a spreadsheet's mmm-yy), which pandas reads
# as no time at all, or as the 15th of a January.
TWO_DIGIT_YEAR_MONTH = r"[A-Za-z]{3,9}[-/ ']\d{2}"
# A time with a UTC offset after its time of day (2021-03-28 03:00:00+02:00, 20210328T0300+0200; 01-2018 is
# a month) or Z; or an offset of hours alone or after a space (2021-03-28 03:00:00+02, PostgreSQL's
# timestamptz as text).
UTC_OFFSET = r".*\dZ|.*[T ]\d{2}[\d:.,]*[+-]\d{2}:?\d{2}|.*\d:\d{2}(:\d{2}([.,]\d+)?)? ?[+-]\d{2}(:?\d{2})?"
# An offset after GMT or UTC (GMT+1), which dateutil reads as POSIX does: the sign reversed.
POSIX_OFFSET = r".*(GMT|UTC)\s*[+-]0?[1-9].*"  # a zero offset reads alike either way
# What pandas says as it drops a time zone's name it does not know (CET, EDT) and reads the wall clock.
DROPPED_ZONE = re.compile(r'Parsed string "(.*)" included an un-recognized timezone "(.*)"')
# What lstmkit decompresses, known by a file's first bytes whatever its name (bzip2's: BZh, its
# block size, then the magic number of its first block, or of its end where it holds none).
COMPRESSIONS = {"gzip": re.escape(GZIP_MAGIC), "bz2": rb"BZh[1-9](?:1AY&SY|\x17rE8P\x90)",
                "xz": re.escape(b"\xfd7zXZ\x00"), "zip": rb"PK(?:\x03\x04|\x05\x06)",  # an empty zip: 5, 6
                "zstd": re.escape(b"\x28\xb5\x2f\xfd")}
# The largest magnitude a value to forecast, or a covariate, may have: the squares of values
# this size, summed over millions of rows, stay finite in float64 (10^308).
LARGEST_VALUE = 1e150
# The whole years pandas' timestamps hold (nanoseconds from 1970 fill 64 bits in 1677 and 2262).
YEARS = (pd.Timestamp.min.year + 1, pd.Timestamp.max.year - 1)
# A decimal year's fraction times 12 may be this far from a whole month: 1/12 written with
# two decimals (0.08) is 0.96 months.
MONTH_TOLERANCE = 0.05


class MissingValuesWarning(UserWarning):
    """Missing values were filled by interpolation."""


@dataclass(frozen=True)
class SeriesFrame:
    """Targets and covariates on a regular time grid.

    time: the timestamps of the observed rows, `frequency` apart. time_kind: how the time
    column was written (one of TIME_KINDS), so that `time_values` writes times back alike.
    targets: (rows, targets) float64; covariates: (rows, covariates) float64, observed-past;
    future_covariates: (rows + ahead, future covariates) float64, known-future, which may run
    `ahead` rows past the last observed row. filled: (rows, targets) bool, where a target's
    value was missing and interpolated (`fill_gaps`), which a backtest does not score;
    covariates_filled: (rows, covariates) bool, the same for the observed-past covariates.
    """

    time: pd.DatetimeIndex
    time_kind: str
    frequency: str
    targets: np.ndarray
    covariates: np.ndarray
    future_covariates: np.ndarray
    target_names: tuple[str, ...]
    covariate_names: tuple[str, ...]
    future_names: tuple[str, ...]
    filled: np.ndarray
    covariates_filled: np.ndarray

    def __len__(self) -> int:
        return len(self.time)

    @property
    def ahead(self) -> int:
        """Rows of known-future covariates after the last observed row."""
        return len(self.future_covariates) - len(self.time) if self.future_names else 0

    def head(self, rows: int) -> SeriesFrame:
        """The first `rows` rows (the training part of a backtest), as a forecast from row `rows`
        may see them (`known_before`); the known-future covariates go on for as long as the whole
        table has them."""
        return SeriesFrame(self.time[:rows], self.time_kind, self.frequency,
                           known_before(self.targets, self.filled, rows),
                           known_before(self.covariates, self.covariates_filled, rows), self.future_covariates,
                           self.target_names, self.covariate_names, self.future_names, self.filled[:rows],
                           self.covariates_filled[:rows])

    def history(self, index: int, end: int) -> np.ndarray:
        """The first `end` values of target `index` as a forecast from row `end` may see them: a
        gap up to `end` holds the value before it, not one interpolated towards a later value
        (`known_before`), as `Panel.history` gives a long table's."""
        return known_before(self.targets[:, index], self.filled[:, index], end)

    def time_values(self, times: pd.DatetimeIndex) -> list:
        """Timestamps as the user wrote them (see `written_times`)."""
        return written_times(times, self.time_kind)

    def axis_times(self, times: pd.DatetimeIndex) -> pd.DatetimeIndex | list:
        """Timestamps as a plot's axis takes them: integer steps as the integers, others as they are."""
        return self.time_values(times) if self.time_kind == STEP else times

    @property
    def shown_frequency(self) -> str:
        """The frequency as reports give it (`frequency_name`)."""
        return frequency_name(self.frequency, self.time_kind)


def frequency_name(frequency: str, time_kind: str) -> str:
    """A frequency as reports give it: pandas' alias ("W-SUN", "MS"), "step" for integer steps
    ("5 steps" for every fifth), a Period column's own frequency ("M", not its starts' "MS")."""
    if time_kind.startswith("period@"):
        return time_kind.removeprefix("period@")
    if time_kind != STEP:
        return frequency
    offset = pd.tseries.frequencies.to_offset(frequency)  # a step is a nanosecond ("3600us": 3,600,000 steps)
    if isinstance(offset, pd.offsets.Week):
        steps = offset.n * pd.Timedelta(weeks=1).value
    elif isinstance(offset, pd.offsets.Tick):
        steps = offset.nanos
    else:  # months or quarters of nanoseconds: steps that vary, named by their calendar
        return frequency
    return "step" if steps == 1 else f"{steps} steps"


def written_times(times: pd.DatetimeIndex, time_kind: str) -> list:
    """Timestamps as the user wrote them: integer years, decimal years (to the decimals given),
    ISO quarters or months, in the strftime format `time_kind` where it is one (`text_form`),
    pandas timestamps (in their time zone, for a DataFrame's), or ISO dates (with the time of
    day when there is one)."""
    if time_kind.startswith("local@"):  # a wall-clock time a change of DST skips moves on (none does at midnight)
        zone = time_kind.removeprefix("local@")
        return list(times.tz_localize(zone, ambiguous=np.ones(len(times), bool), nonexistent="shift_forward"))
    if time_kind.startswith("period@"):
        return list(times.to_period(time_kind.removeprefix("period@")))
    if time_kind.startswith("timestamp"):
        _, _, zone = time_kind.partition("@")
        return list(times.tz_localize("UTC").tz_convert(zone) if zone else times)
    if "%" in time_kind:
        return list(times.strftime(time_kind))
    if time_kind == "year":
        return [int(stamp.year) for stamp in times]
    if time_kind.startswith("decimal_year"):  # decimal_year@2: with the 2 decimals the column was written with
        _, _, places = time_kind.partition("@")
        years = [stamp.year + (stamp.month - 1) / 12 for stamp in times]
        return [round(year, int(places)) for year in years] if places else years
    if time_kind == STEP:
        return [int(stamp.value) for stamp in times]
    if time_kind in ("quarter", "dashed_quarter"):  # 1959Q1, 1959-Q1
        dash = "-" if time_kind == "dashed_quarter" else ""
        return [f"{stamp.year}{dash}Q{stamp.quarter}" for stamp in times]
    if time_kind == "month":
        return [f"{stamp.year:04d}-{stamp.month:02d}" for stamp in times]
    if time_kind == "utc":
        return [stamp.isoformat() + "+00:00" for stamp in times]
    with_clock = any(stamp != stamp.normalize() for stamp in times)
    return [stamp.isoformat() if with_clock else stamp.date().isoformat() for stamp in times]


def read_series(source: str | Path | pd.DataFrame, time: str, targets: Sequence[str],
                covariates: Sequence[str] = (), future_covariates: Sequence[str] = (),
                fitted_kind: str | None = None, fitted_frequency: str | None = None) -> SeriesFrame:
    """Read and check `source` (a CSV path or a DataFrame); see the module docstring.
    `covariates` are observed-past columns, `future_covariates` known-future ones.
    `fitted_kind`: the time kind of the data a forecaster was fitted on, which reads the time
    column as that did where it could read otherwise (`parse_time`); `fitted_frequency`, its
    grid (`frequency_of`)."""
    source = table_source(source)
    table = read_table(source)
    targets, covariates, known = list(targets), list(covariates), list(future_covariates)
    if not targets:
        raise ValueError("give at least one target column")
    columns = [time, *targets, *covariates, *known]
    for name in columns:
        if name not in table.columns:
            raise missing_column(name, source, table.columns)
    check_named_once(table, columns, source)
    check_has_rows(table)
    for role, names in (("target", targets), ("covariates", covariates), ("future_covariates", known)):
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"{role} (--{role.replace('_', '-')}) names {', '.join(twice)} twice; give each column "
                             "once")
    overlap = sorted({name for name in columns if columns.count(name) > 1})
    if overlap:
        raise ValueError("a column can be the time, a target, an observed-past or a known-future covariate, "
                         f"not two of them: {', '.join(overlap)}")
    path = None if isinstance(source, pd.DataFrame) else Path(source)
    stamps, time_kind = parse_time(table[time], time, path, fitted_kind)
    numbers = pd.DataFrame({name: numeric_column(table[name], name, path, target=name in targets)
                            for name in targets + covariates + known})
    values = numbers.set_axis(stamps)
    order = np.argsort(stamps.values, kind="stable")
    values = values.iloc[order]
    duplicated = values.index[values.index.duplicated()]
    if len(duplicated):
        labels = table.index[stamps == duplicated[0]]
        gaps = values.index[1:] - values.index[:-1]
        within_days = gaps[gaps > pd.Timedelta(0)].median() < pd.Timedelta(days=1)
        clock = ("; or its times are a local clock without a UTC offset, which repeats an hour where daylight "
                 "saving time ends: write each time with its offset (2021-10-31 02:00+01:00), or in UTC"
                 if time_kind != STEP and within_days else "")
        raise ValueError(f"column {time!r} has {len(duplicated)} duplicate timestamp(s): the first, "
                         f"{plain(table[time][labels[0]])!r}, at {two_rows_named(labels[0], labels[1], path)}; a "
                         "table holds one row per time (a long table of several series names its series column "
                         f"with --id, id= in Python, when it is fitted){clock}")
    frequency = frequency_of(values.index, time, time_kind, fitted_frequency)
    grid = pd.date_range(values.index[0], values.index[-1], freq=frequency)
    if not values.index.isin(grid).all():
        stray = values.index[~values.index.isin(grid)][0]
        label = table.index[stamps == stray][0]
        hint = off_grid_hint(values.index, time_kind)
        guessed = "" if hint or pandas_frequency(values.index) is not None else \
            " (read from runs of three rows: pandas infers no frequency from all of them, and lstmkit reads none other)"
        raise ValueError(f"column {time!r} is not on a regular {frequency} grid{guessed}: "
                         f"{plain(table[time][label])!r}, at {row_name(label, path)}, falls between its steps{hint}")
    check_coverage(len(values), grid, frequency, f"column {time!r}", time_kind=time_kind)
    numeric = values.reindex(grid)
    first, observed = observed_rows(numeric[targets], known)
    end = observed + known_rows_ahead(numeric[known].iloc[observed:]) if known else len(grid)
    numeric, grid, observed = numeric.iloc[first:end], grid[first:end], observed - first
    for name in targets:
        check_coverage(int(numeric[name].iloc[:observed].notna().sum()), grid[:observed], frequency,
                       f"column {name!r}", "values", time_kind)
    missing = numeric[targets].iloc[:observed].isna().to_numpy()
    covariates_missing = numeric[covariates].iloc[:observed].isna().to_numpy()
    filled = {name: fill_gaps(column if name in known else column.iloc[:observed], name)
              for name, column in numeric.items()}
    return SeriesFrame(
        grid[:observed], time_kind, frequency, stack(filled, targets, observed), stack(filled, covariates, observed),
        stack(filled, known, len(grid) if known else observed), tuple(targets), tuple(covariates), tuple(known),
        missing, covariates_missing,
    )


def off_grid_hint(index: pd.DatetimeIndex, time_kind: str) -> str:
    """What puts times that look regular off every grid: a zone's daylight saving time (the
    grid is in UTC), or months stamped on another day than their first or last."""
    if time_kind == "utc" or time_kind.startswith("timestamp@"):
        return ("; times with a UTC offset or a time zone are put on a grid in UTC, where a step of a day or more "
                "moves by an hour when daylight saving time starts or ends: give local times without an offset")
    days = pd.Series(index[1:] - index[:-1]).dt.days
    if len(days) and days.between(28, 31).all():
        return ("; monthly times must fall on the first day of their month (2020-01-01) or the last (2020-01-31), "
                "or be written as months (2020-01)")
    if len(days) and days.between(365, 366).all():
        return ("; yearly times must fall on the first or the last day of one month (2020-03-01, 2020-02-29), or be "
                "written as years (2020)")
    return ""


def check_coverage(count: int, grid: pd.Index, frequency: str, what: str, kind: str = "times",
                   time_kind: str | None = None) -> None:
    """Refuse `count` timestamps (or values) that leave most of their regular `grid` empty:
    filling it would invent most of the series. Missing rows and empty cells count alike;
    times of several frequencies, or misread dates, are the usual cause of the first. With the
    column's `time_kind` (a one-table series' timestamps), the grid and its ends are named as
    the column writes them; without, as they are (a long table's)."""
    if len(grid) > 2 * count:
        first, last = ((day_or_time(grid[0]), day_or_time(grid[-1])) if time_kind is None
                       else written_times(grid[[0, -1]], time_kind))
        frequency = frequency if time_kind is None else frequency_name(frequency, time_kind)
        hint = ("" if kind != "times" else "; a long table's integer steps are 1 apart: number its times 0, 1, 2, ..."
                if frequency == STEP and time_kind is None else "; give times of one frequency (dates as yyyy-mm-dd)")
        raise ValueError(f"{what} has {count} {kind} on the {len(grid)} steps of a {frequency} grid from {first} "
                         f"to {last}: filling the other {len(grid) - count} would invent most of the series{hint}")


def day_or_time(stamp: object) -> str:
    """A grid's time for a message: a timestamp's date alone at midnight (2023-01-01, not
    2023-01-01 00:00:00); a step as it is."""
    if isinstance(stamp, pd.Timestamp) and stamp == stamp.normalize():
        return stamp.strftime("%Y-%m-%d")
    return str(stamp)


def observed_rows(targets: pd.DataFrame, known: list[str]) -> tuple[int, int]:
    """(first, end): the rows from the first to the last one with a value of every target, as
    a long table's series runs (nothing is invented before its first value, and a forecast
    starts after its last); warns about the rows left out before, and after where they serve
    no known-future covariate."""
    empty = [name for name, column in targets.items() if column.isna().all()]
    if empty:
        raise ValueError(f"the target column(s) {', '.join(empty)} have no values")
    has_values = np.flatnonzero(targets.notna().all(axis=1).to_numpy())
    if not len(has_values):
        raise ValueError(f"no row has a value of every target column ({', '.join(targets.columns)})")
    first, observed = int(has_values[0]), int(has_values[-1]) + 1
    if first:
        warn_at_caller(f"{first} row(s) before the first one with every target's value are ignored",
                       MissingValuesWarning)
    if observed < len(targets) and not known:
        warn_at_caller(f"{len(targets) - observed} row(s) after the last one with every target's value are ignored "
                       "(such rows serve known-future covariates only)", MissingValuesWarning)
    partial = targets.iloc[observed:].notna()
    if known and partial.to_numpy().any():  # a value given there was dropped, and the forecast began before it
        given = [name for name in targets.columns if partial[name].any()]
        warn_at_caller(f"{int(partial.any(axis=1).sum())} row(s) after the last one with every target's value hold "
                       f"values of {', '.join(given)}: those values are dropped (such rows serve known-future "
                       "covariates only), and the forecast starts after the last row with every target's value",
                       MissingValuesWarning)
    return first, observed


def known_rows_ahead(ahead: pd.DataFrame) -> int:
    """The rows after the last target value that carry known-future covariates: up to the last
    with a value of each (gaps between such rows are interpolated); warns about those after it,
    left out, so that a forecast never reads a covariate invented past the last one given."""
    given = np.flatnonzero(ahead.notna().all(axis=1).to_numpy())
    rows = int(given[-1]) + 1 if len(given) else 0
    if rows < len(ahead):
        warn_at_caller(f"{len(ahead) - rows} row(s) after the last target value lack a value of a known-future "
                       f"covariate ({', '.join(ahead.columns)}), after the last row with all of them, and are "
                       "ignored: the forecast past them needs them given", MissingValuesWarning)
    return rows


def stack(columns: dict[str, np.ndarray], names: list[str], rows: int) -> np.ndarray:
    return np.stack([columns[name] for name in names], axis=1) if names else np.zeros((rows, 0))


def check_has_rows(table: pd.DataFrame) -> None:
    """Refuse a table of no rows (a CSV of its header alone) by name."""
    if table.empty:
        raise ValueError(f"the table has no rows, only the columns {', '.join(map(str, table.columns))}")


def table_source(source: object) -> Path | pd.DataFrame:
    """`source` as the readers name it in messages: a DataFrame, or a CSV path as a Path (given
    as a str or any os.PathLike)."""
    if isinstance(source, pd.DataFrame):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"expected a CSV path or a pandas DataFrame, got {type(source).__name__}")
    return Path(source)


def read_table(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    """The table, indexed by how `row_name` names its rows: a DataFrame's 0-based positions,
    or a CSV file's line numbers (blank lines skipped, but counted)."""
    source = table_source(source)
    if isinstance(source, pd.DataFrame):
        return source.reset_index(drop=True)
    path = check_input_file(source, "a CSV file")
    if not path.is_file():  # a pipe (<(...), /dev/stdin): what is read once is gone
        raise ValueError(f"{path} is not a regular file (a pipe or a device), which a CSV is read from more than "
                         "once: save it as a file first")
    text = csv_text(path)
    try:
        with warnings_filtered("error", pd.errors.ParserWarning):  # rows longer than the header: data lost
            # index_col=False: a row with one field more than the header (a spreadsheet's
            # trailing commas) must not turn the first column into the index; skipinitialspace:
            # a hand-written "date, y" names the column y, not " y"
            table = pd.read_csv(**csv_source(path, text), skip_blank_lines=False, index_col=False,
                                skipinitialspace=True)
    except pd.errors.ParserWarning:
        header = None if text is None else re.split(rb"\r\n?|\n", text, maxsplit=1)[0].decode("utf-8-sig", "replace")
        raise ValueError(f"{path}: {longer_rows(header)}") from None
    except UnicodeDecodeError as error:  # pandas' position may count from a chunk of the file: found again
        if text is not None:
            try:
                decoded_utf8(text, path, "a CSV file")  # Excel's "Unicode text" too
            except ValueError as named:
                raise ValueError(f"{named}; save the table as a UTF-8 CSV file") from None
        raise ValueError(f"{path} is not UTF-8 text: byte 0x{error.object[error.start]:02x} does not decode; save the "
                         "table as a UTF-8 CSV file") from None  # in an archive pandas opened
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ValueError(f"{path} is not a readable CSV file: {error}") from None
    except (tarfile.TarError, EOFError) as error:  # a tar archive's, which pandas opened
        raise ValueError(f"{path} is not a readable tar archive of one CSV file ({error})") from None
    table.index = table.index + 2  # the header is line 1
    check_named_columns(table, path)
    return table.dropna(how="all")


def csv_text(path: Path) -> bytes | None:
    """The bytes of the CSV file `path`, decompressed where its first bytes say gzip, bz2, xz or
    a zip of one file, whatever its name (plain text named .gz, .bz2, .xz or .zip failed with the
    codec's bare error; a bz2 file named .csv was refused as holding NUL bytes), and refused where
    they hold a NUL byte; None for a tar archive, known by its bytes too, which pandas opens."""
    try:
        if tarfile.is_tarfile(path):  # plain text named .tgz is read as the text it is
            return None
    except (EOFError, OSError, zlib.error):  # a truncated gzip file: gunzipped names it below
        pass
    data = path.read_bytes()
    codec = next((name for name, magic in COMPRESSIONS.items() if re.match(magic, data)), None)
    data = (gunzipped(data, path) if codec == "gzip" else unzipped(data, path) if codec == "zip" else
            decompressed(codec, data, path) if codec is not None else data)
    check_no_nul(data, path)
    return data


def decompressed(codec: str, data: bytes, path: Path) -> bytes:
    """`data`, the file `path`'s, decompressed by `codec` (bz2 or xz); zstd refused by name (its
    package is no dependency, and its one-frame reader dropped the rows of the frames after)."""
    if codec == "zstd":
        raise ValueError(f"{path} is compressed by zstd, which lstmkit does not read: decompress it (zstd -d) or "
                         "compress it with gzip, bzip2 or xz")
    try:
        return bz2.decompress(data) if codec == "bz2" else lzma.decompress(data)
    except (OSError, EOFError, ValueError, lzma.LZMAError) as error:  # bz2's truncated stream: ValueError
        raise ValueError(f"{path} is not a readable {codec} file ({error})") from None


def unzipped(data: bytes, path: Path) -> bytes:
    """The one file the zip archive `data` holds; an archive of several (a spreadsheet's
    workbook is one) refused, naming them."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [name for name in archive.namelist() if not name.endswith("/")]
            if len(names) == 1:
                return archive.read(names[0])
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError) as error:
        raise ValueError(f"{path} is not a readable zip file ({error})") from None  # encrypted, Deflate64 ...
    workbook = ("; an Excel or OpenDocument workbook is one: save its sheet as a UTF-8 CSV file"
                if {"xl/workbook.xml", "content.xml"} & set(names) else "")
    held = f"{len(names)} files ({', '.join(names[:3])}{' ...' if len(names) > 3 else ''})" if names else "no files"
    raise ValueError(f"{path} is a zip archive of {held}, where a CSV file, or a zip of one, is read{workbook}")


def csv_source(path: Path, text: bytes | None) -> dict:
    """pandas.read_csv's arguments for what it reads the CSV file `path` from, and how it
    decompresses it: its `text` (`csv_text`), or the file, by its name."""
    if text is None:  # a tar archive, compressed or not
        return {"filepath_or_buffer": path, "compression": {"method": "tar", "mode": "r:*"}}
    return {"filepath_or_buffer": io.BytesIO(text), "compression": None}


def check_named_columns(table: pd.DataFrame, path: Path) -> None:
    """Refuse values in a column whose header field is empty, after a named one (pandas writes
    its index, of one level or more, first, unnamed): a spreadsheet's trailing comma in the
    header, under numbers written with a decimal comma or a thousands separator ("364,5",
    "2,710"), split each into two columns, and the target read its integer part, silently."""
    unnamed = [str(column).startswith("Unnamed: ") for column in table.columns]
    first_named = unnamed.index(False) if False in unnamed else len(unnamed)
    for position, (column, empty) in enumerate(zip(table.columns, unnamed), start=1):
        if empty and position > first_named and table[column].notna().any():
            line = table[column].first_valid_index()
            header = ",".join("" if empty else str(name) for name, empty in zip(table.columns, unnamed))
            raise ValueError(
                f"{path}: field {position} of its header {header!r} is empty, yet its rows hold values there "
                f"({plain(table.at[line, column])!r} on line {line}): a number written with a decimal comma or a "
                f"thousands separator splits in two there; lstmkit reads {CSV_FORM} and no thousands separators: save "
                "the table so, or name the column")


def check_no_nul(data: bytes, path: Path) -> None:
    """Refuse a CSV file's text `data` with a NUL byte, where pandas ends the field: 154.4
    written 15\\x004.4 was read as 15."""
    check_not_other_unicode(data[:4], path)  # UTF-16's NUL bytes are its encoding's: named as such
    nul = data.find(b"\x00")
    if nul >= 0:
        check_not_unmarked_utf16(data, path)
        raise ValueError(f"{path} is not text: it holds a NUL byte on line {line_of(data, nul)}; expected a UTF-8 CSV "
                         "file")


def check_named_once(table: pd.DataFrame, columns: list[str], source: str | Path | pd.DataFrame) -> None:
    """Refuse a CSV file whose header names a column it reads twice: pandas renames the second
    (y.1), which a target named y then left out without a word."""
    if isinstance(source, pd.DataFrame):
        if isinstance(table.columns, pd.MultiIndex):
            raise ValueError(f"the DataFrame's columns have {table.columns.nlevels} levels (a MultiIndex); lstmkit "
                             "reads columns by one name each: flatten them "
                             "(frame.columns = ['_'.join(map(str, column)) for column in frame.columns])")
        twice = next((name for name in columns if (table.columns == name).sum() > 1), None)
        if twice is not None:
            raise ValueError(f"the DataFrame has two columns named {twice!r}: give each column a name of its own")
        return
    twice = next((name for name in columns if f"{name}.1" in table.columns), None)
    if twice is not None:
        raise ValueError(f"{source} names column {twice!r} twice in its header: give each column a name of its own")


def longer_rows(header: str | None) -> str:
    """Why rows hold more fields than the `header` (None: in a tar archive, unread), for a
    message: where the header says the file is separated by semicolons or tabs, that."""
    if header is None:
        return f"rows hold more fields than its header; lstmkit reads {CSV_FORM}, one field per column"
    fields = header.count(",") + 1
    return other_separator(header) or (f"rows hold more fields than its header {header!r} ({fields}); lstmkit reads "
                                       f"{CSV_FORM}, one field per column")


def other_separator(header: str) -> str | None:
    """Where a header is separated by semicolons or tabs (no comma), what to do, for a message."""
    for separator, name in ((";", "semicolons"), ("\t", "tabs")):
        if separator in header and "," not in header:
            return (f"its header {header!r} is separated by {name}; lstmkit reads {CSV_FORM}: save the table as "
                    "CSV with those")
    return None


def missing_column(name: str, source: str | Path | pd.DataFrame, columns) -> ValueError:
    """The error for a column `name` the table read from `source` lacks: the columns it has,
    quoted (so that a name's spaces show), and where a DataFrame holds it as its index, that;
    or where it read one column whose name holds semicolons or tabs, that."""
    names = [str(column) for column in columns]
    separated = other_separator(names[0]) if len(names) == 1 else None
    if separated:
        return ValueError(separated if isinstance(source, pd.DataFrame) else f"{source}: {separated}")
    comma = ("; a name that holds a comma is not one the command line can give, where commas separate names: "
             "rename the column" if any("," in column for column in names) else "")
    if isinstance(source, pd.DataFrame) and name in [str(level) for level in source.index.names]:
        comma += f"; {name!r} is the DataFrame's index: make it a column with frame.reset_index()"
    unnamed = next((column for column in columns if str(column) == name and not isinstance(column, str)), None)
    if unnamed is not None:
        kind = type(unnamed).__name__
        comma += (f"; the DataFrame's column {unnamed!r} is {'an' if kind[0] in 'aeiou' else 'a'} {kind}, not a name: "
                  "name the columns "
                  "with strings (frame.columns = frame.columns.astype(str))")
    return ValueError(f"column {name!r} is not in the data; its columns are {', '.join(map(repr, names))}{comma}")


def plain(value):
    """A cell's value as Python writes it (1959.1, not np.float64(1959.1))."""
    return value.item() if isinstance(value, np.generic) else value


def row_name(label: int, path: Path | None) -> str:
    """A row as the user finds it: a line of the CSV file `path`, or a DataFrame position."""
    if path is None:
        return f"row {label} (0-based position in the DataFrame)"
    return f"line {label} of {path} (the header is line 1)"


def two_rows_named(first: int, second: int, path: Path | None) -> str:
    """Two rows as `row_name` names one, the file said once."""
    if path is None:
        return f"rows {first} and {second} (0-based positions in the DataFrame)"
    return f"lines {first} and {second} of {path} (the header is line 1)"


def as_pandas_times(column: pd.Series, name: str) -> pd.Series:
    """A time column of pyarrow's timestamps or dates as pandas' own timestamps (pandas' checks
    do not see them as such, and to_numeric counted their nanoseconds as steps); durations
    refused."""
    if isinstance(column.dtype, pd.ArrowDtype) and column.dtype.kind == "M":
        zone = getattr(column.dtype.pyarrow_dtype, "tz", None)
        column = column.astype(pd.DatetimeTZDtype("ns", zone) if zone else "datetime64[ns]")
    if column.dtype.kind == "m":
        raise ValueError(f"column {name!r} holds durations ({column.dtype}), not times: give dates, or the steps as "
                         f"integers (durations.dt.days, say)")
    return column


def parse_time(column: pd.Series, name: str, path: Path | None, fitted_kind: str | None = None
               ) -> tuple[pd.DatetimeIndex, str]:
    """The timestamps of a time column written in one of the TIME_FORMS, and its TIME_KINDS kind.
    Read as data of `fitted_kind` were where it could read otherwise: integers as steps where
    those were steps (a series fitted on steps may hold rows that all look like years:
    1701..2000), dates of two numbers and a year in their day and month order (a few rows to
    predict from may read either way)."""
    steps = fitted_kind == STEP
    if column.isna().any():
        label = column.index[column.isna().to_numpy()][0]
        raise ValueError(f"column {name!r} has a missing timestamp at {row_name(label, path)}")
    column = as_pandas_times(column, name)
    if pd.api.types.is_datetime64_any_dtype(column):  # a DataFrame's timestamps (to_numeric would count nanoseconds)
        if column.dt.tz is not None:  # an instant in a zone: on a grid in UTC, written back in the zone,
            wall_clock = column.dt.tz_localize(None)  # but days, weeks ... on the wall clock, which DST leaves
            if (wall_clock - wall_clock.dt.normalize()).nunique() == 1:
                return pd.DatetimeIndex(wall_clock), f"local@{column.dt.tz}"
            return pd.DatetimeIndex(column.dt.tz_convert(None)), f"timestamp@{column.dt.tz}"
        return pd.DatetimeIndex(column), "timestamp"
    if isinstance(column.dtype, pd.PeriodDtype):  # written back as Periods of the same frequency
        return pd.DatetimeIndex(column.dt.start_time), f"period@{column.array.freqstr}"
    numbers = time_numbers(column)
    if numbers.notna().all():
        if is_step_column(numbers, steps):
            dates = None if steps else dates_in_numbers(numbers)
            if dates is not None:
                what, first, conversion = dates
                warn_at_caller(f"column {name!r} looks like {what} ({plain(column.iloc[0])!r} is {first}); it is read "
                               "as integer steps, with no calendar and m = 1 unless a season is given: convert it to "
                               f"dates ({conversion}) for those")
            return pd.DatetimeIndex(pd.to_datetime(numbers.astype(np.int64), unit="ns")), STEP
        return years_to_stamps(numbers, column, name, path)
    # Mostly numbers, with some text: a typo, or dates among numbers that read as dates too
    # (yyyymmdd, years), which the date parser below takes. Decimal years it misreads
    # ("2000.25" as 2000-01-01, silently 3 months early): with fractions, the text is named here.
    typed = numbers.isna() & column.notna()
    mostly_numbers = bool(typed.any()) and numbers.notna().mean() > 0.5
    if mostly_numbers and (numbers.dropna() % 1 != 0).any():
        not_a_number(column, typed, name, path)
    text = column.astype(str).str.strip()
    if text.str.fullmatch(QUARTER).all():
        parts = text.str.extract(QUARTER).astype(np.int64)
        dashed = text.str.contains("-").all()
        return month_starts(parts[0], 3 * parts[1] - 2), "dashed_quarter" if dashed else "quarter"
    numeric_date = text.str.fullmatch(NUMERIC_DATE).to_numpy()
    if numeric_date.all():
        parts = text.str.extract(NUMERIC_DATE).astype(float).fillna(0).astype(np.int64)
        stamps = numeric_dates(parts, column, name, path, date_order(fitted_kind))
        return stamps, text_form(text, stamps)
    if numeric_date.any():  # pandas would guess each such row's day and month order on its own
        other, numbered = column.index[~numeric_date][0], column.index[numeric_date][0]
        raise ValueError(f"column {name!r} mixes date forms: {plain(column[other])!r} at {row_name(other, path)}, "
                         f"{plain(column[numbered])!r} at {row_name(numbered, path)}; write every date in one form "
                         "(yyyy-mm-dd)")
    if text.str.fullmatch(TWO_DIGIT_YEAR_DATE).all():  # pandas would read each row on its own
        raise ValueError(f"column {name!r} holds dates with two-digit years, such as {plain(column.iloc[0])!r}, which "
                         "read as day, month or year alike; write the year in four digits (31/01/2020) or the "
                         "dates as yyyy-mm-dd")
    if text.str.fullmatch(TWO_DIGIT_YEAR_MONTH).all():
        raise ValueError(f"column {name!r} holds months with two-digit years, such as {plain(column.iloc[0])!r} (a "
                         "spreadsheet's mmm-yy); write the year in four digits (Jan 2015) or the months as yyyy-mm "
                         "(2015-01)")
    # Offsets that change (daylight saving) leave pandas no one zone: read every time as UTC.
    reversed_sign = text.str.fullmatch(POSIX_OFFSET)
    if reversed_sign.any():
        unreadable(column, reversed_sign, name, path, "writes its offset after GMT or UTC, where it reads with the "
                   "sign reversed (POSIX: GMT+1 is an hour behind UTC): write the offset alone, as +01:00 for an hour "
                   "ahead of UTC")
    with_offset = text.str.fullmatch(UTC_OFFSET)
    offsets = bool(with_offset.any())
    if offsets:  # pandas would take a time without one as UTC, whatever zone it was in
        naive = pd.Series(False, index=text.index)
        naive[~with_offset] = text[~with_offset].map(naive_time).to_numpy(bool)  # "+01", " UTC": the pattern misses
        if naive.any():
            unreadable(column, naive, name, path, f"has no UTC offset where other times of the column have one "
                       f"({plain(column[with_offset].iloc[0])!r}): give every time its offset, or none")
    with warnings_recorded() as said:
        stamps = pd.to_datetime(text, errors="coerce", format="mixed", utc=offsets)
    dropped = next((found for warning in said if (found := DROPPED_ZONE.search(str(warning.message)))), None)
    if dropped is not None:  # "could not infer format" and the like, which format="mixed" says, pass
        bad = text == dropped.group(1)
        unreadable(column, bad if bad.any() else text.str.contains(dropped.group(2), regex=False), name, path,
                   f"names a time zone, {dropped.group(2)}, that pandas drops, reading the wall clock (where "
                   "daylight saving repeats an hour and skips another): write its UTC offset instead, as +01:00")
    if stamps.isna().any():
        if mostly_numbers:  # steps or years with a typo: the first number, unread as a date, was named
            not_a_number(column, typed, name, path)
        unreadable(column, stamps.isna(), name, path, "cannot be read as a time")
    if offsets:
        return pd.DatetimeIndex(stamps.dt.tz_convert(None)), "utc"
    if text.str.fullmatch(MONTH).all():
        return pd.DatetimeIndex(stamps), "month"
    return pd.DatetimeIndex(stamps), text_form(text, pd.DatetimeIndex(stamps))


def naive_time(value: str) -> bool:
    """Whether `value` reads as a time with no zone or offset (not where it does not read as a
    time at all: the column's parse refuses it, by its line)."""
    try:
        with warnings_filtered("ignore"):  # dateutil's, for each zone name it does not know ("CET")
            stamp = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        return False
    return stamp is not pd.NaT and stamp.tzinfo is None


def unpadded_form(form: str, codes: tuple[str, ...]) -> str:
    """The strftime `form` with the fields of `codes` ("d", "m", "H") written without their
    leading zero (glibc's and macOS's "%-d")."""
    for code in codes:
        if code:
            form = form.replace(f"%{code}", f"%-{code}")
    return form


def text_form(text: pd.Series, stamps: pd.DatetimeIndex) -> str:
    """The strftime format that writes each of `stamps` back exactly as `text` holds it
    ("Dec 2001", "05.04.2021 15:00"), so that forecasts read like the data; "datetime" (ISO)
    where none does."""
    written = text.to_numpy()
    if (np.asarray(written_times(stamps, "datetime")) == written).all():
        return "datetime"
    first = text.iloc[0]
    with warnings_filtered("ignore", UserWarning):  # "Parsing dates in %Y-%m-%d format when dayfirst=True ..."
        guesses = [form for form in (guess_datetime_format(first), guess_datetime_format(first, dayfirst=True),
                                     *TEXT_FORMS) if form is not None]
    unpadded = [unpadded_form(form, codes) for form in guesses  # 5.4.2021, 5/04/2021: any of them unpadded
                for codes in itertools.product(*(("", code) for code in "dmH"))]
    for form in dict.fromkeys(guesses + unpadded):
        try:
            if (stamps.strftime(form) == written).all():
                return form
        except ValueError:  # "%-d" is glibc's and macOS's, not Windows'
            continue
    return "datetime"


def date_order(time_kind: str | None) -> str | None:
    """"day-first" or "month-first": the order of a strftime form that writes the day and the
    month as numbers (`text_form`: "%d/%m/%Y", "%-m/%-d/%Y %H:%M"), else None."""
    day, month = (re.search(f"%-?{code}", time_kind or "") for code in "dm")
    if day is None or month is None:
        return None
    return "day-first" if day.start() < month.start() else "month-first"


def numeric_dates(parts: pd.DataFrame, column: pd.Series, name: str, path: Path | None,
                  order: str | None = None) -> pd.DatetimeIndex:
    """Dates written as two numbers and a year, perhaps with a time of day (`parts`: one column
    each, then hour, minute and second, 0 where not written), read day-first or
    month-first: the order that reads every row as a date, or, where both do, `order` (that of
    the data a forecaster was fitted on) where given, else the one that leaves fewer steps of
    its regular grid empty (01/02/2010, 01/03/2010 ... are months read day-first, not the first
    days of January read month-first). A tie is refused."""
    attempts = {order: pd.to_datetime(pd.DataFrame({"year": parts[2], "month": parts[month], "day": parts[day],
                                                    "hour": parts[3], "minute": parts[4], "second": parts[5]}),
                                      errors="coerce")
                for order, (month, day) in {"month-first": (0, 1), "day-first": (1, 0)}.items()}
    readings = {order: pd.DatetimeIndex(stamps) for order, stamps in attempts.items() if stamps.notna().all()}
    if not readings:
        neither = attempts["month-first"].isna() & attempts["day-first"].isna()
        if neither.any():
            unreadable(column, neither, name, path, "is not a date read day-first or month-first")
        unreadable(column, attempts["month-first"].isna(), name, path,
                   "reads day-first only, where other rows read month-first only; write the dates as yyyy-mm-dd")
    if len(readings) == 1 or readings["month-first"].equals(readings["day-first"]):
        return next(iter(readings.values()))
    if order is not None:
        return readings[order]
    empty = {order: empty_steps(stamps) for order, stamps in readings.items()}
    if empty["month-first"] == empty["day-first"]:
        raise ValueError(f"column {name!r} holds dates such as {plain(column.iloc[0])!r} that read day-first and "
                         "month-first alike; write them as yyyy-mm-dd")
    return readings[min(empty, key=empty.get)]


def empty_steps(stamps: pd.DatetimeIndex) -> float:
    """How many steps of the regular grid the timestamps lie on hold none of them (inf: no grid)."""
    index = stamps.sort_values().unique()
    try:
        frequency = infer_frequency(index, "")
    except ValueError:
        return np.inf
    return steps_left_empty(index, frequency)


def is_step_column(numbers: pd.Series, steps: bool = False) -> bool:
    """Whether numbers are integer steps: integers, within int64's nanoseconds, and (unless
    `steps` says so) at most half of them whole years pandas holds (more are years, and the
    others mistakes, refused at their line), not all dates written yyyymmdd or months yyyymm
    (refused with a hint)."""
    whole = bool((numbers == np.floor(numbers)).all())
    if not whole or (not steps and (numbers.between(*YEARS).mean() > 0.5 or compact_dates(numbers))):
        return False
    return bool((numbers.abs() < 2 ** 62).all())


UNIX_UNITS = {"s": "seconds", "ms": "milliseconds"}


# Excel's serial dates count days from 1899-12-30: 1960-01-01 is 21916, 2099-12-31 is 73050.
EXCEL_EPOCH, EXCEL_SERIALS = pd.Timestamp("1899-12-30"), (21_916, 73_050)
# Days between a calendar's steps: a week, a month, a quarter, a year (not a day: a counter of
# steps from 30000 would read as one).
CALENDAR_GAPS = ((7, 7), (28, 31), (89, 92), (365, 366))


def dates_in_numbers(numbers: pd.Series) -> tuple[str, pd.Timestamp, str] | None:
    """What integer steps look like where they read as dates: Unix time in seconds or
    milliseconds (every one between 1980 and 2100, a whole number of minutes apart), or
    Excel's serial dates (every one between 1960 and 2100, CALENDAR_GAPS apart); as (what, the
    first as a date, the pandas call that converts them), or None."""
    for unit, per_second in (("s", 1), ("ms", 1000)):
        if (numbers.between(315_532_800 * per_second, 4_102_444_800 * per_second).all()
                and (numbers.diff().dropna() % (60 * per_second) == 0).all()):
            return (f"Unix time in {UNIX_UNITS[unit]}", pd.Timestamp(int(numbers.iloc[0]), unit=unit),
                    f"pandas.to_datetime(column, unit={unit!r})")
    gaps = numbers.diff().dropna()
    if len(gaps) and numbers.between(*EXCEL_SERIALS).all() and any(
            gaps.between(shortest, longest).all() for shortest, longest in CALENDAR_GAPS):
        return ("Excel serial dates (days since 1899-12-30)", EXCEL_EPOCH + pd.Timedelta(days=int(numbers.iloc[0])),
                "pandas.to_datetime(column, unit='D', origin='1899-12-30')")
    return None


def compact_dates(numbers: pd.Series) -> bool:
    """Whether integers all read as dates written yyyymmdd (20200131) or as months written
    yyyymm (202001)."""
    text = numbers.astype(np.int64).astype(str)
    return any(bool(text.str.len().eq(len(example)).all()
                    and pd.to_datetime(text, format=form, errors="coerce").notna().all())
               for form, example in (("%Y%m%d", "20200131"), ("%Y%m", "202001")))


def years_to_stamps(numbers: pd.Series, column: pd.Series, name: str, path: Path | None
                    ) -> tuple[pd.DatetimeIndex, str]:
    """Integer years (1959) as January 1sts; decimal years on month starts (1959.25) as the
    first day of their month."""
    outside = ~numbers.between(*YEARS)
    if outside.any():
        compact = bool((numbers == np.floor(numbers)).all()) and compact_dates(numbers)
        month_year = bool(column.astype(str).str.fullmatch(r"(0?[1-9]|1[0-2])\.\d{4}").all())
        hint = ("the numbers read as dates written yyyymmdd or months written yyyymm: write them as 2020-01-31 "
                "or 2020-01" if compact else
                "the column reads as months written mm.yyyy: write them as 2018-01" if month_year else
                "more than half of the column's numbers read as years, so all are read as years (integer steps "
                "are a column of integers at most half of which are such years)" if (numbers == np.floor(numbers)).all()
                else "a time in numbers is an integer step (1, 2, 3 ...), an integer year or a decimal year")
        unreadable(column, outside, name, path, f"is a number outside the years {YEARS[0]}..{YEARS[1]} (the dates pandas "
                   f"holds); {hint}")
    months = numbers * 12  # months since year 0
    if (numbers == np.floor(numbers)).all():
        kind = "year"
    else:
        kind = decimal_year_kind(numbers)
        between_months = (months - months.round()).abs() > MONTH_TOLERANCE
        if between_months.any():
            unreadable(column, between_months, name, path, "is a decimal year that does not fall on a month start")
    months = months.round().astype(np.int64)
    return month_starts(months // 12, months % 12 + 1), kind


def decimal_year_kind(numbers: pd.Series) -> str:
    """"decimal_year@N", N the fewest decimals (up to 6) that write every number as given
    (1959.08: 2; 1959.0833: 4), so that times are written back alike; "decimal_year" (full
    precision) for numbers no such rounding gives, as 1959 + 1/12 computed in a DataFrame."""
    for places in range(1, 7):
        if np.allclose(numbers.round(places), numbers, rtol=0, atol=1e-9):
            return f"decimal_year@{places}"
    return "decimal_year"


def month_starts(year: pd.Series, month: pd.Series) -> pd.DatetimeIndex:
    """The first day of each (year, month)."""
    return pd.DatetimeIndex(pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": 1})))


def unreadable(column: pd.Series, bad: pd.Series, name: str, path: Path | None, problem: str) -> None:
    """Raise for the first `bad` value of the time column `name`, with the forms it accepts."""
    label = column.index[bad.to_numpy()][0]
    raise ValueError(f"column {name!r} at {row_name(label, path)} holds {plain(column[label])!r}, which {problem}; "
                     f"the forms accepted are {TIME_FORMS}")


def frequency_of(index: pd.DatetimeIndex, name: str, time_kind: str, fitted: str | None) -> str:
    """The frequency of the timestamps (`infer_frequency`); given the grid a forecaster was
    fitted on, that one where it holds the rows with no more empty steps than the inferred one
    and fills at least half of it: a few rows, or rows with gaps, may read as another frequency
    or as none (Mon-Fri of business days are daily; two months tell no frequency), but data of
    another frequency (business days for a daily fit, every other day) are refused by name."""
    try:
        inferred = infer_frequency(index, name, time_kind)
    except ValueError:
        if fitted is None or not fills_most_of(index, fitted):
            raise
        return fitted
    if fitted is None or fitted == inferred or not fills_most_of(index, fitted):
        return inferred
    return fitted if steps_left_empty(index, fitted) <= steps_left_empty(index, inferred) else inferred


def fills_most_of(index: pd.DatetimeIndex, frequency: str) -> bool:
    """Whether the timestamps lie on the `frequency` grid from the first to the last, filling
    at least half of it; the grid is built only as long as that could be (a forecaster fitted on
    integer steps, nanoseconds apart, given dates would make one of petabytes)."""
    reach = pd.date_range(index[0], periods=2 * len(index), freq=frequency)
    return reach[-1] >= index[-1] and steps_left_empty(index, frequency) <= len(index)


def infer_frequency(index: pd.DatetimeIndex, name: str, time_kind: str = "") -> str:
    """The frequency of the timestamps: pandas' inference on all of them, or, where rows are
    missing, one found in runs of three consecutive timestamps: the one whose grid holds every
    timestamp with the fewest empty steps (Mon, Tue, Wed fit a daily grid too, which would
    invent every weekend of business days missing a holiday), then the most common."""
    if len(index) < 3:
        raise ValueError(f"column {name!r} has {len(index)} timestamp(s); at least 3 are needed to infer a frequency")
    frequency = pandas_frequency(index)
    if frequency is not None:
        return frequency
    candidates = [pandas_frequency(index[start:start + 3]) for start in range(0, len(index) - 2)]
    candidates = [candidate for candidate in candidates if candidate is not None]
    if "D" in candidates and (index.dayofweek < 5).all():  # no run of three crosses a weekend of a week with a
        candidates.append("B")                              # day off: business days, which a daily grid holds too
    if not candidates:
        steps = pd.Series(index[1:] - index[:-1]).value_counts().index[:3]
        shown = [step.value if time_kind == STEP else step for step in steps]  # integer steps: their differences
        raise ValueError(f"cannot infer a regular frequency from column {name!r}: the steps between timestamps "
                         f"vary ({', '.join(str(step) for step in shown)}, ...)")
    votes = pd.Series(candidates).value_counts()
    return min(votes.index, key=lambda candidate: (steps_left_empty(index, candidate), -votes[candidate]))


def steps_left_empty(index: pd.DatetimeIndex, frequency: str) -> float:
    """How many steps of the `frequency` grid from the first timestamp to the last hold none
    of them (inf where some timestamp falls off that grid)."""
    grid = pd.date_range(index[0], index[-1], freq=frequency)
    return float(len(grid) - len(index)) if index.isin(grid).all() else np.inf


def pandas_frequency(index: pd.DatetimeIndex) -> str | None:
    """pd.infer_freq as a frequency string (pandas 3 may return an offset object)."""
    with warnings_filtered("ignore", (FutureWarning, DeprecationWarning)):  # the return type is changing
        frequency = pd.infer_freq(index)
    if frequency is not None and not isinstance(frequency, str):
        frequency = frequency.freqstr
    return None if frequency is None else same_quarters(frequency)


MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def same_quarters(frequency: str) -> str:
    """Quarter starts named by the first month of their cycle ("QS-OCT" -> "QS-JAN": the same
    grid), as pandas 3 names them; pandas 2 (which statsforecast needs) names another month."""
    rule, _, month = frequency.partition("-")
    if rule.lstrip("0123456789") not in ("QS", "BQS") or month not in MONTHS:
        return frequency
    return f"{rule}-{MONTHS[MONTHS.index(month) % 3]}"


def not_a_number(column: pd.Series, bad: pd.Series, name: str, path: Path | None) -> None:
    """Raise for the first `bad` value of a time column most of whose values are numbers."""
    unreadable(column, bad, name, path, "is not a finite number, where most of the column's times are numbers "
               "(integer steps or years, decimal or not)")


def time_numbers(column: pd.Series) -> pd.Series:
    """A time column's values as numbers where they are finite ones, else NaN: inf is no time
    (read as a step, it was cast to an integer of garbage, or failed in pandas' cast)."""
    numbers = pd.to_numeric(column, errors="coerce")
    return numbers.where(~numbers.isin([np.inf, -np.inf]))


def numeric_column(column: pd.Series, name: str, path: Path | None, target: bool = False) -> pd.Series:
    """The column as float64; text and infinite values are refused at their row. Empty
    cells stay missing (filled later, with a warning). Complex numbers are refused (their
    imaginary parts were dropped with NumPy's warning only), and True/False in a `target`
    (forecast as numbers between 0 and 1 without a word; a covariate's flag is 0 or 1)."""
    if pd.api.types.is_complex_dtype(column):
        raise ValueError(f"column {name!r} must hold real numbers, got complex ones ({column.dtype})")
    if target and (pd.api.types.is_bool_dtype(column) or column.dtype == object and holds_bools(column)):
        raise ValueError(f"column {name!r} holds True/False, not numbers to forecast; to forecast it as 0 and 1, "
                         f"give it as numbers (column.astype(float))")
    numbers = pd.to_numeric(column, errors="coerce").astype(np.float64)
    for bad, expected in ((numbers.isna() & column.notna(), "numbers"), (np.isinf(numbers), "finite numbers")):
        if bad.any():
            label = column.index[bad.to_numpy()][0]
            raise ValueError(f"column {name!r} must hold {expected} (or empty cells for missing values); "
                             f"{row_name(label, path)} holds {plain(column[label])!r}")
    huge = numbers.abs() > LARGEST_VALUE
    if huge.any():  # 1e308 is finite, but its scores overflowed: sMAPE inf, MASE 0, a forecast of ±1e306 chosen
        label = column.index[huge.to_numpy()][0]
        raise ValueError(f"column {name!r} must hold numbers within ±{LARGEST_VALUE:g}, where the squares and sums "
                         f"that scale and score a series stay finite; {row_name(label, path)} holds "
                         f"{plain(column[label])!r}: rescale the column")
    return numbers


def holds_bools(column: pd.Series) -> bool:
    """Whether an object column holds True or False: with gaps (pandas' inference, fast), or
    among numbers (looked up value by value, only where the inference finds a mix)."""
    kind = pd.api.types.infer_dtype(column, skipna=True)
    return kind == "boolean" or (kind == "mixed" and column.map(lambda value: isinstance(value, bool | np.bool_)).any())


def known_before(values: np.ndarray, filled: np.ndarray, end: int) -> np.ndarray:
    """The first `end` rows of `values` (a series, or a (rows, columns) table) as filling their
    own gaps alone gives them: a gap that runs up to row `end` (interpolated, in the whole
    series, towards a value at or after `end`, which a forecast from `end` may not see) holds the
    last value before it, as `fill_gaps` fills a series' end; every other row is unchanged.
    `filled` marks the rows that were missing, as `values` is shaped."""
    known = np.array(values[:end], dtype=np.float64)
    if not known.size:
        return known
    columns, gaps = known.reshape(end, -1), np.asarray(filled[:end], bool).reshape(end, -1)  # views of 1-D too
    for column, gap in zip(columns.T, gaps.T):
        given = np.flatnonzero(~gap)
        if len(given):  # a column with no value before `end` has nothing of its own to hold
            column[given[-1] + 1:] = column[given[-1]]
    return known


def fill_gaps(column: pd.Series, name: str) -> np.ndarray:
    """Linear interpolation inside the series, the nearest value at its ends (only a covariate's
    can be empty there: the rows run from a value of every target to another); warns with the
    count."""
    missing = int(column.isna().sum())
    if missing == len(column):
        raise ValueError(f"column {name!r} has no values")
    if missing:
        warn_at_caller(f"column {name!r}: {missing} missing value(s) filled by linear interpolation",
                       MissingValuesWarning)
    return column.interpolate(method="linear", limit_direction="both").to_numpy()
