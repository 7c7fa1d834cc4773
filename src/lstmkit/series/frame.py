"""Reading a table of time series: checked, on a regular time grid, gaps filled.

    CSV or DataFrame -> time column parsed (dates, or integer years) -> sorted, duplicates
    refused -> frequency inferred, missing rows inserted -> targets and covariates numeric ->
    gaps filled by linear interpolation, with a warning that says how many

Rows after the last target value hold known-future covariates (a planned promotion, a
holiday) for the steps to forecast; without such columns they are ignored, with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

TIME_KINDS = ("datetime", "year")


class MissingValuesWarning(UserWarning):
    """Missing values were filled by interpolation."""


@dataclass(frozen=True)
class SeriesFrame:
    """Targets and covariates on a regular time grid.

    time: the timestamps of the observed rows, `frequency` apart. time_kind: "year" when the
    time column held integer years (written back as integers), else "datetime".
    targets: (rows, targets) float64; covariates: (rows, covariates) float64, observed-past;
    future_covariates: (rows + ahead, future covariates) float64, known-future, which may run
    `ahead` rows past the last observed row.
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

    def __len__(self) -> int:
        return len(self.time)

    @property
    def ahead(self) -> int:
        """Rows of known-future covariates after the last observed row."""
        return len(self.future_covariates) - len(self.time) if self.future_names else 0

    def head(self, rows: int) -> SeriesFrame:
        """The first `rows` rows (the training part of a backtest); the known-future
        covariates go on for as long as the whole table has them."""
        return SeriesFrame(self.time[:rows], self.time_kind, self.frequency, self.targets[:rows],
                           self.covariates[:rows], self.future_covariates, self.target_names, self.covariate_names,
                           self.future_names)

    def time_values(self, times: pd.DatetimeIndex) -> list:
        """Timestamps as the user wrote them: integer years, or ISO dates (with the time of day
        when there is one)."""
        if self.time_kind == "year":
            return [int(stamp.year) for stamp in times]
        with_clock = any(stamp != stamp.normalize() for stamp in times)
        return [stamp.isoformat() if with_clock else stamp.date().isoformat() for stamp in times]


def read_series(source: str | Path | pd.DataFrame, time: str, targets: Sequence[str],
                covariates: Sequence[str] = (), future_covariates: Sequence[str] = ()) -> SeriesFrame:
    """Read and check `source` (a CSV path or a DataFrame); see the module docstring.
    `covariates` are observed-past columns, `future_covariates` known-future ones."""
    table = read_table(source)
    targets, covariates, known = list(targets), list(covariates), list(future_covariates)
    if not targets:
        raise ValueError("give at least one target column")
    columns = [time, *targets, *covariates, *known]
    for name in columns:
        if name not in table.columns:
            raise ValueError(f"column {name!r} is not in the data; its columns are {', '.join(map(str, table.columns))}")
    overlap = sorted({name for name in columns if columns.count(name) > 1})
    if overlap:
        raise ValueError("a column can be the time, a target, an observed-past or a known-future covariate, "
                         f"not two of them: {', '.join(overlap)}")
    stamps, time_kind = parse_time(table[time], time)
    values = table[targets + covariates + known].set_axis(stamps)
    order = np.argsort(stamps.values, kind="stable")
    values = values.iloc[order]
    duplicated = values.index[values.index.duplicated()]
    if len(duplicated):
        shown = ", ".join(str(stamp) for stamp in duplicated[:5].unique())
        raise ValueError(f"column {time!r} has {len(duplicated)} duplicate timestamp(s), e.g. {shown}")
    frequency = infer_frequency(values.index, time)
    grid = pd.date_range(values.index[0], values.index[-1], freq=frequency)
    if not values.index.isin(grid).all():
        stray = values.index[~values.index.isin(grid)][0]
        raise ValueError(f"column {time!r} is not on a regular {frequency} grid: {stray} falls between its steps")
    values = values.reindex(grid)
    numeric = {name: numeric_column(values[name], name, time) for name in targets + covariates + known}
    observed = observed_rows(values[targets], known)
    filled = {name: fill_gaps(column if name in known else column.iloc[:observed], name)
              for name, column in numeric.items()}
    return SeriesFrame(
        grid[:observed], time_kind, frequency, stack(filled, targets, observed), stack(filled, covariates, observed),
        stack(filled, known, len(grid) if known else observed), tuple(targets), tuple(covariates), tuple(known),
    )


def observed_rows(targets: pd.DataFrame, known: list[str]) -> int:
    """The rows up to the last one with a target value; warns about later rows that serve
    no known-future covariate."""
    has_value = targets.notna().any(axis=1).to_numpy()
    if not has_value.any():
        raise ValueError(f"the target column(s) {', '.join(targets.columns)} have no values")
    observed = int(np.flatnonzero(has_value)[-1]) + 1
    if observed < len(targets) and not known:
        warnings.warn(f"{len(targets) - observed} row(s) after the last target value are ignored "
                      "(such rows serve known-future covariates only)", MissingValuesWarning, stacklevel=3)
    return observed


def stack(columns: dict[str, np.ndarray], names: list[str], rows: int) -> np.ndarray:
    return np.stack([columns[name] for name in names], axis=1) if names else np.zeros((rows, 0))


def read_table(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        return source.reset_index(drop=True)
    if not isinstance(source, (str, Path)):
        raise TypeError(f"expected a CSV path or a pandas DataFrame, got {type(source).__name__}")
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a readable CSV file: {error}") from None


def parse_time(column: pd.Series, name: str) -> tuple[pd.DatetimeIndex, str]:
    """Dates and times, or integer years (a column of whole numbers from 1 to 9999)."""
    if column.isna().any():
        row = int(np.flatnonzero(column.isna().to_numpy())[0])
        raise ValueError(f"column {name!r} has a missing timestamp in row {row + 1}")
    if pd.api.types.is_integer_dtype(column) or (
        pd.api.types.is_float_dtype(column) and (column == column.round()).all()
    ):
        years = column.astype(np.int64)
        if years.between(1, 9999).all():
            return pd.DatetimeIndex(pd.to_datetime(years.astype(str).str.zfill(4), format="%Y")), "year"
        raise ValueError(f"column {name!r} holds numbers that are not years (1..9999), e.g. {years.iloc[0]}")
    stamps = pd.to_datetime(column, errors="coerce", format="mixed")
    if stamps.isna().any():
        row = int(np.flatnonzero(stamps.isna().to_numpy())[0])
        raise ValueError(f"column {name!r} has a timestamp that cannot be parsed in row {row + 1}: {column.iloc[row]!r}")
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert(None)
    return pd.DatetimeIndex(stamps), "datetime"


def infer_frequency(index: pd.DatetimeIndex, name: str) -> str:
    """The frequency of the timestamps: pandas' inference on all of them, or, where rows are
    missing, the most common one among runs of three consecutive timestamps."""
    if len(index) < 3:
        raise ValueError(f"column {name!r} has {len(index)} timestamp(s); at least 3 are needed to infer a frequency")
    frequency = pandas_frequency(index)
    if frequency is not None:
        return frequency
    candidates = [pandas_frequency(index[start:start + 3]) for start in range(0, len(index) - 2)]
    candidates = [candidate for candidate in candidates if candidate is not None]
    if not candidates:
        steps = pd.Series(index[1:] - index[:-1]).value_counts().index[:3]
        raise ValueError(f"cannot infer a regular frequency from column {name!r}: the steps between timestamps "
                         f"vary ({', '.join(str(step) for step in steps)}, ...)")
    return pd.Series(candidates).value_counts().index[0]


def pandas_frequency(index: pd.DatetimeIndex) -> str | None:
    """pd.infer_freq as a frequency string (pandas 3 may return an offset object)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning))  # the return type is changing
        frequency = pd.infer_freq(index)
    return frequency if frequency is None or isinstance(frequency, str) else frequency.freqstr


def numeric_column(column: pd.Series, name: str, time: str) -> pd.Series:
    numbers = pd.to_numeric(column, errors="coerce")
    bad = numbers.isna() & column.notna()
    if bad.any():
        stamp = column.index[bad.to_numpy()][0]
        raise ValueError(f"column {name!r} must be numeric; at {time} {stamp} it holds {column[bad].iloc[0]!r}")
    return numbers.astype(np.float64)


def fill_gaps(column: pd.Series, name: str) -> np.ndarray:
    """Linear interpolation inside the series, the nearest value at its ends; warns with the count."""
    missing = int(column.isna().sum())
    if missing == len(column):
        raise ValueError(f"column {name!r} has no values")
    if missing:
        warnings.warn(f"column {name!r}: {missing} missing value(s) filled by linear interpolation",
                      MissingValuesWarning, stacklevel=4)
    return column.interpolate(method="linear", limit_direction="both").to_numpy()
