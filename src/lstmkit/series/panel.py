"""Reading a long table of many series: one row per series and time, as statsforecast's
`unique_id, ds, y` (the names are the caller's).

    CSV or DataFrame -> id, time and target columns -> no missing id, no id-time pair twice ->
    each series sorted and put on its own regular grid (series may start and end anywhere:
    ragged; from its first value to its last, rows without one before or after ignored, with a
    warning; most of its grid must hold times) -> gaps filled by linear interpolation, with a
    warning that counts them

The time column holds integer steps (1, 2, 3 ...: written back as integers, one step apart;
integer years read this way too, as the same numbers) or any form `read_series` reads
(dates, ISO periods, decimal years), on one frequency shared by every series. Messages name a
row as `read_series` does: a CSV line (the header is line 1) or a DataFrame position.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from lstmkit.caller import warn_at_caller
from lstmkit.series.frame import (STEP, MissingValuesWarning, as_pandas_times, check_coverage, check_has_rows,
                                  check_named_once, csv_source, csv_text, infer_frequency, known_before, missing_column,
                                  numeric_column, parse_time, plain, read_table, row_name, steps_left_empty,
                                  table_source, time_numbers, two_rows_named, written_times)


@dataclass(frozen=True)
class Panel:
    """Series of one target, each on a regular grid of `frequency` from its own start.

    ids: the series' ids, in the order of their first row; values: one 1-D float64 array per
    series, in time order; starts: each series' first time (an int for integer steps, else a
    pd.Timestamp); time_kind: "step" or how `read_series` wrote the times (TIME_KINDS);
    filled: one bool array per series, where a value was missing and interpolated (which a
    backtest does not score).
    """

    id_name: str
    time_name: str
    target_name: str
    ids: tuple
    values: tuple[np.ndarray, ...]
    starts: tuple
    time_kind: str
    frequency: str
    filled: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def head(self, drop: int) -> Panel:
        """Each series without its last `drop` values (a backtest's training part), its gaps as
        known before them (`history`); a series of `drop` values or fewer keeps its first one."""
        kept = [max(1, len(series) - drop) for series in self.values]
        return replace(self, values=tuple(self.history(index, rows) for index, rows in enumerate(kept)),
                       filled=tuple(filled[:rows] for filled, rows in zip(self.filled, kept)))

    def history(self, index: int, end: int) -> np.ndarray:
        """The first `end` values of series `index` as a forecast from position `end` may see
        them: a gap up to `end` holds the value before it, not one interpolated towards a later
        value (`known_before`)."""
        return known_before(self.values[index], self.filled[index], end)

    def times(self, index: int, first: int, count: int) -> list:
        """The times of positions first .. first + count - 1 of series `index`, as written."""
        start = self.starts[index]
        if self.time_kind == STEP:
            return [start + position for position in range(first, first + count)]
        grid = pd.date_range(start, periods=first + count, freq=self.frequency)[first:]
        return written_times(grid, self.time_kind)


def read_panel(source: str | Path | pd.DataFrame, id: str, time: str, target: str,
               frequency: str | None = None, fitted_kind: str | None = None) -> Panel:
    """Read and check the long table `source`; see the module docstring. `frequency`: the grid
    the series are on (a fitted forecaster's, at predict); None: inferred (`shared_frequency`).
    `fitted_kind`: the time kind a forecaster was fitted on, whose day and month order reads
    dates that read either way (`parse_time`)."""
    source = table_source(source)
    table = read_table(source)
    columns = [id, time, target]
    for name in columns:
        if name not in table.columns:
            raise missing_column(name, source, table.columns)
    check_named_once(table, columns, source)
    if len(set(columns)) < 3:
        raise ValueError(f"the id, time and target columns must be three columns, got {id!r}, {time!r}, {target!r}")
    path = None if isinstance(source, pd.DataFrame) else Path(source)
    check_has_rows(table)
    if path is not None:  # ids as written: pandas reads 007 as the number 7 (another series's id), NA as missing
        raw = pd.read_csv(**csv_source(path, csv_text(path)), usecols=[id], dtype=str, keep_default_na=False,
                          skip_blank_lines=False, skipinitialspace=True)[id]
        table[id] = raw.set_axis(raw.index + 2).reindex(table.index).replace("", np.nan)
    if table[id].isna().any():
        label = table.index[table[id].isna().to_numpy()][0]
        raise ValueError(f"column {id!r} has a missing series id at {row_name(label, path)}")
    stamps, time_kind = read_times(table[time], time, path, fitted_kind)
    values = numeric_column(table[target], target, path, target=True)
    keys = pd.DataFrame({"id": table[id].to_numpy(), "time": np.asarray(stamps)}, index=table.index)
    check_ids_read_apart(keys["id"], id)
    repeated = keys.duplicated(keep=False)
    if repeated.any():
        first_key = keys[repeated].iloc[0]
        labels = keys.index[repeated & (keys["id"] == first_key["id"]) & (keys["time"] == first_key["time"])]
        raise ValueError(f"series {plain(first_key['id'])!r} has time {plain(table[time][labels[0]])!r} twice, at "
                         f"{two_rows_named(labels[0], labels[1], path)}; a long table holds one row per id and time")
    if time_kind == STEP:
        frequency = STEP
    elif frequency is None:
        frequency = shared_frequency(keys, time)
    ids, series, starts, gaps, missing, outside = [], [], [], [], 0, 0
    for series_id, rows in keys.groupby("id", sort=False):
        order = np.argsort(rows["time"].to_numpy(), kind="stable")
        times, observed = rows["time"].to_numpy()[order], values[rows.index].to_numpy()[order]
        labels = rows.index.to_numpy()[order]
        known = np.flatnonzero(~np.isnan(observed))
        if not len(known):
            raise ValueError(f"series {plain(series_id)!r} has no {target} values (its {len(rows)} row(s) hold none): "
                             f"there is nothing to fit or forecast it from; drop its rows from the table")
        # A series runs from its first value to its last: nothing is invented at its ends.
        outside += len(times) - (known[-1] + 1 - known[0])
        kept = slice(known[0], known[-1] + 1)
        times, observed, labels = times[kept], observed[kept], labels[kept]
        grid = on_grid(times, frequency)
        # steps are on theirs; a sorted grid's search, not np.isin's sort of a grid of millions
        off_grid = (np.zeros(len(times), bool) if frequency == STEP
                    else grid[np.minimum(grid.searchsorted(times), len(grid) - 1)] != times)
        if off_grid.any():
            label = labels[off_grid][0]
            raise ValueError(f"series {plain(series_id)!r} is not on the {frequency} grid of column {time!r}: "
                             f"{plain(table[time][label])!r}, at {row_name(label, path)}, falls between its steps")
        check_coverage(len(times), grid, frequency, f"series {plain(series_id)!r}")
        check_coverage(int((~np.isnan(observed)).sum()), grid, frequency, f"series {plain(series_id)!r}", "values")
        filled = pd.Series(np.nan, index=grid)
        filled[times] = observed
        missing += int(filled.isna().sum())
        gaps.append(filled.isna().to_numpy())
        ids.append(plain(series_id))
        series.append(filled.interpolate(method="linear", limit_direction="both").to_numpy())
        starts.append(int(times[0]) if time_kind == STEP else pd.Timestamp(times[0]))
    if missing:
        warn_at_caller(f"column {target!r}: {missing} missing value(s) filled by linear interpolation within their "
                       "series", MissingValuesWarning)
    if outside:
        warn_at_caller(f"column {target!r}: {outside} row(s) before a series' first value or after its last are "
                       "ignored", MissingValuesWarning)
    return Panel(id, time, target, tuple(ids), tuple(series), tuple(starts), time_kind, frequency, tuple(gaps))


def check_ids_read_apart(ids: pd.Series, name: str) -> None:
    """Refuse two ids of a DataFrame's column that are written alike (the number 7 and the
    string "7"): they are two series here, but one in every file and table written from them."""
    written: dict[str, object] = {}
    for value in pd.unique(ids):
        text = str(plain(value))
        if text in written:
            raise ValueError(f"column {name!r} holds the ids {plain(written[text])!r} and {plain(value)!r}, two series "
                             "written alike (a number and a string?); give every id as one type")
        written[text] = value


def read_times(column: pd.Series, name: str, path: Path | None,
               fitted_kind: str | None = None) -> tuple[np.ndarray, str]:
    """Integer steps as int64, or what `parse_time` reads (a DataFrame's timestamps too, and
    dates in the order of `fitted_kind`), as datetime64."""
    column = as_pandas_times(column, name)
    if not pd.api.types.is_datetime64_any_dtype(column):
        numbers = time_numbers(column)
        whole = numbers == np.floor(numbers)
        if column.notna().all() and numbers.notna().all() and whole.all():
            return numbers.to_numpy(np.int64), STEP
        if numbers.notna().all() and whole.mean() > 0.5:  # steps with a stray fraction (decimal years are mostly fractions)
            label = column.index[~whole.to_numpy()][0]
            raise ValueError(f"column {name!r} holds integer steps (1, 2, 3 ...), but {row_name(label, path)} holds "
                             f"{plain(column[label])!r}, which is not an integer step")
    stamps, kind = parse_time(column, name, path, None if fitted_kind == STEP else fitted_kind)
    return stamps.to_numpy(), kind


def shared_frequency(keys: pd.DataFrame, name: str) -> str:
    """The frequency of the series' times (`keys`: id, time): of those the series' own times
    give (each of 3 rows or more, the longest first), the one whose grid fits the most series
    (a series off it, or more than half empty on it, is refused), then with the fewest empty
    steps; among equals the longest series'. The longest series' alone made a daily table with
    one weekday-only series business days, refusing the others' weekends; the fewest empty
    steps alone made a daily table with one hourly series hourly (its grid holds every row),
    refusing every daily series, where the hourly one is the odd one out."""
    series = sorted((np.sort(times.to_numpy()) for _, times in keys.groupby("id", sort=False)["time"]),
                    key=len, reverse=True)
    candidates = []
    for times in series:
        with contextlib.suppress(ValueError):  # too few rows, or steps that vary: it proposes none
            candidate = infer_frequency(pd.DatetimeIndex(times), name)
            if candidate not in candidates:
                candidates.append(candidate)
    if not candidates:  # none proposes one: the longest series' own refusal says why
        return infer_frequency(pd.DatetimeIndex(series[0]), name)
    empty = {candidate: [steps_left_empty(pd.DatetimeIndex(times), candidate) for times in series]
             for candidate in candidates}
    return min(candidates, key=lambda candidate: (
        sum(steps > len(times) for steps, times in zip(empty[candidate], series)), sum(empty[candidate])))


def on_grid(times: np.ndarray, frequency: str) -> pd.Index:
    """The regular grid from the series' first time to its last (of steps: a range, not made
    until used, so that Unix milliseconds read as steps are refused before 10⁹ of them are)."""
    if frequency == STEP:
        return pd.RangeIndex(int(times[0]), int(times[-1]) + 1)
    return pd.date_range(times[0], times[-1], freq=frequency)
