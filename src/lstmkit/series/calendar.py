"""What the time column alone tells: the seasonal period, calendar features, future timestamps."""

from __future__ import annotations

import numpy as np
import pandas as pd

# Steps per season of each base frequency: a year of weeks, months or quarters; a week of days;
# a day of hours or minutes (48 for half-hourly data, 96 for 15-minute data: the daily cycle of
# load, traffic and sensors, as GluonTS's get_seasonality gives it); an hour of seconds (as
# GluonTS's too). Yearly data has no calendar season (m = 1).
SEASONS = {"W": 52, "D": 7, "B": 5, "h": 24, "H": 24, "min": 1440, "T": 1440, "s": 3600, "S": 3600,
           "M": 12, "MS": 12, "ME": 12, "BM": 12, "BMS": 12, "BME": 12, "Q": 4, "QS": 4, "QE": 4,
           "BQ": 4, "BQS": 4, "BQE": 4, "Y": 1, "YS": 1, "YE": 1, "A": 1, "AS": 1, "BY": 1, "BYS": 1, "BYE": 1}


def base_frequency(frequency: str) -> tuple[str, int]:
    """("W", 1) for "W-SAT", ("h", 6) for "6h"."""
    offset = pd.tseries.frequencies.to_offset(frequency)
    return offset.rule_code.split("-")[0], offset.n


def season_length(frequency: str) -> int:
    """The seasonal period m of a frequency (52 for weekly, 12 for monthly, 1 for yearly); a
    multiple of a base frequency divides it when it can (12 for "2h"), else 1."""
    base, multiple = base_frequency(frequency)
    steps = SEASONS.get(base, 1)
    return steps // multiple if steps % multiple == 0 else 1


def calendar_features(times: pd.DatetimeIndex, frequency: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Known-future covariates from the timestamps: the sine and cosine of the position in the
    year (for sub-yearly data), in the week (daily and finer) and in the day (hourly and finer).
    Returns ((rows, features) float64, names)."""
    base, _ = base_frequency(frequency)
    columns: dict[str, np.ndarray] = {}
    if SEASONS.get(base, 1) > 1:
        year = (times.day_of_year.to_numpy() - 1 + times.hour.to_numpy() / 24) / 365.25
        columns |= cyclic("year", year)
    if base in ("D", "B", "h", "H", "min", "T", "s", "S"):
        columns |= cyclic("week", (times.day_of_week.to_numpy() + times.hour.to_numpy() / 24) / 7)
    if base in ("h", "H", "min", "T", "s", "S"):
        columns |= cyclic("day", (times.hour.to_numpy() + times.minute.to_numpy() / 60) / 24)
    if not columns:
        return np.zeros((len(times), 0)), ()
    return np.stack(list(columns.values()), axis=1), tuple(columns)


def cyclic(name: str, fraction: np.ndarray) -> dict[str, np.ndarray]:
    angle = 2 * np.pi * fraction
    return {f"{name}_sin": np.sin(angle), f"{name}_cos": np.cos(angle)}


def future_times(last: pd.Timestamp, frequency: str, steps: int) -> pd.DatetimeIndex:
    """The `steps` timestamps after `last`."""
    return pd.date_range(last, periods=steps + 1, freq=frequency)[1:]
