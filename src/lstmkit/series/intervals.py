"""Prediction intervals calibrated on validation windows (split conformal prediction).

The network's interval around its forecast μ is [μ − w⁻, μ + w⁺], quantiles of the
distribution it predicts. Fitted by likelihood on a few hundred windows, that distribution can
be too narrow or too wide. `predict` moves the interval onto the forecast it uses (the centre
c: the network's, a baseline's or a combination), so the widths are calibrated around c. On
the validation windows, each actual value y asks the interval to be stretched by

    r = (y − c) / w⁺   where y ≥ c,        r = (c − y) / w⁻   where y < c,

and the factor is the ⌈(n + 1) · coverage⌉-th smallest of the n ratios. The calibrated interval

    [c − factor · w⁻,  c + factor · w⁺]

holds at least `coverage` of new values when they behave like the validation ones (Vovk et
al. 2005; Angelopoulos & Bates 2023, "Conformal prediction: a gentle introduction"). Where
there are too few values for that rank (n < coverage / (1 − coverage): 10 values, one
horizon-1 value from each of 10 windows, at 95 %), the largest ratio is taken, which holds only
about n / (n + 1) of new values, with a warning saying so. Values
where the network gave no interval (w = 0, where a baseline stood in for it) are left out.

A factor of 0, where at least `coverage` of the validation values were met exactly (within a
billionth of the validation values' range, or float64 rounding of the value; an
intermittent series whose validation windows hold only zeros, forecast as zeros), would make
the interval a point that the next non-zero value falls outside of: the network's own interval
is kept instead (factor 1), with a warning.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction

import numpy as np

from lstmkit.caller import warn_at_caller


def centred_on(centre: np.ndarray, model: np.ndarray, lower: np.ndarray, upper: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """The network's interval [lower, upper] around its forecast `model` moved to centre on
    `centre`, by the widths below and above it: shifting each bound by centre − model cancelled
    a huge network forecast's digits, and gave [0, 0] around a baseline's 2.9."""
    return centre - (model - lower), centre + (upper - model)


def saved_interval_scales(value, targets: int) -> tuple[float, ...]:
    """The interval factors a checkpoint holds for `targets` targets: one finite number of at
    least 0 each; anything else, an edited file, is refused by name, as a negative factor would
    swap the bounds and NaN make every interval a point. A 0, which an earlier lstmkit saved before
    it kept the network's own interval there (see above), is read as that 1, with a warning."""
    scales = value if isinstance(value, list) else [value]
    if len(scales) != targets or not all(isinstance(scale, numbers.Real) and not isinstance(scale, bool)
                                         and math.isfinite(scale) and scale >= 0 for scale in scales):
        raise ValueError(f"its interval_scale must be {targets} finite number(s) of at least 0, one per target; "
                         f"got {value!r}")
    if 0 in scales:
        warn_at_caller("the forecaster was saved with an interval factor of 0, which shrank its interval to a point "
                       "where the validation values were forecast exactly; the network's own interval is given "
                       "there instead, uncalibrated, as a fit does now", RuntimeWarning)
    return tuple(float(scale) if scale > 0 else 1.0 for scale in scales)


def interval_scale(actual: np.ndarray, centre: np.ndarray, below: np.ndarray, above: np.ndarray,
                   coverage: float) -> float:
    """The factor that makes [centre − factor · below, centre + factor · above] hold `coverage`
    of the `actual` values (arrays of one shape); 1 where no value has an interval, or where the
    factor would be 0 (see the module docstring)."""
    actual, centre, below, above = (np.asarray(values, dtype=np.float64).ravel()
                                    for values in (actual, centre, below, above))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(actual >= centre, (actual - centre) / above, (centre - actual) / below)
    finite = actual[np.isfinite(actual)]
    spread = float(np.ptp(finite)) if len(finite) else 0.0
    ratios[np.abs(actual - centre) <= 1e-9 * spread + 1e-12 * np.abs(actual)] = 0  # met but for rounding: exactly
    ratios = np.sort(ratios[np.isfinite(ratios) & (below > 0) & (above > 0)])
    if not len(ratios):
        return 1.0
    count = len(ratios)
    # in the decimal the coverage was written in: 100 × 0.55 is 55.000000000000007 in floating point
    exact = Fraction(repr(float(coverage)))
    rank = math.ceil((count + 1) * exact)
    if rank > count:
        needed = math.ceil(exact / (1 - exact))  # the fewest values n with ⌈(n + 1) · coverage⌉ ≤ n
        warn_at_caller(f"the {percent(coverage)}% interval is calibrated on {count} validation "
                       f"value{'s' if count != 1 else ''}, too few for that coverage (it needs {needed}): it is "
                       f"stretched to hold all of them, which holds about {count / (count + 1):.0%} of new values; "
                       "give a lower interval (--interval)", RuntimeWarning)
        rank = count
    if ratios[rank - 1] == 0:
        warn_at_caller(f"{np.mean(ratios == 0):.0%} of the validation values were forecast exactly, so calibrating "
                       f"the interval on them would shrink it to a point; the network's own {percent(coverage)}% "
                       "interval is kept, uncalibrated", RuntimeWarning)
        return 1.0
    return float(ratios[rank - 1])


def percent(coverage: float) -> str:
    """An interval's coverage in percent, as labels and column names give it: 90 for 0.9, 99.5
    for 0.995, 99.99999 for 0.9999999 (to 15 digits, which drops only the binary residue of
    100 × 0.57; a coverage that would be written 100 is refused by the config)."""
    return f"{100 * coverage:.15g}"
