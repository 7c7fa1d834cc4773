"""A recurrent encoder over the lookback window and a direct multi-horizon head: a location and
a scale per step, trained by the likelihood of a normal or a Laplace distribution."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from statistics import NormalDist

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstmkit.cells import saved_cell_name
from lstmkit.nn import Recurrent

MIN_SCALE = 1e-3  # floor of the predicted scale (in scaled units)
# The distributions a forecaster's head can be trained as (negative_log_likelihood).
DISTRIBUTIONS = ("normal", "laplace")


@dataclass(frozen=True)
class ForecastNetworkConfig:
    """Everything needed to rebuild a ForecastNetwork (saved as JSON with its checkpoint).

    targets: series forecast jointly; past_features: columns of each history step (targets,
    observed-past covariates, known-future features); future_features: known-future columns
    of each horizon step (calendar features and known-future covariates); ensemble: networks
    trained side by side (a ForecastEnsemble; 1: one ForecastNetwork); season: the m of the
    seasonal-naive forecast the head corrects (ForecastNetwork; 1: the last value, as
    checkpoints from before the setting were trained); extra_seasons: more periods that base
    may take, per window (ForecastNetwork.base); encoder_steps: the latest steps of the history
    the encoder reads (None: all of it; the base may need a longer history than the encoder);
    scalings: networks of this config each trained on the series under another normalisation
    (a ScalingEnsemble; 1: no such ensemble); base_cycles: the base of the longest period is the
    median of its last base_cycles cycles (1: its last cycle, seasonal naive; the last value when
    the longest period is 1; ForecastNetwork.base).
    """

    cell: str
    targets: int
    past_features: int
    future_features: int
    horizon: int
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.1
    engine: str = "auto"
    cell_options: dict = field(default_factory=dict)
    ensemble: int = 1
    season: int = 1
    extra_seasons: tuple[int, ...] = ()
    encoder_steps: int | None = None
    scalings: int = 1
    base_cycles: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra_seasons", tuple(self.extra_seasons))  # a list, read back from JSON
        for name in ("targets", "past_features", "horizon", "hidden_size", "num_layers", "ensemble", "season",
                     "scalings", "base_cycles"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.encoder_steps is not None and self.encoder_steps < 1:
            raise ValueError(f"encoder_steps must be at least 1 or None, got {self.encoder_steps}")
        if any(period < 2 for period in self.extra_seasons):
            raise ValueError(f"extra_seasons must be periods of at least 2 steps, got {self.extra_seasons}")
        if isinstance(self.dropout, bool) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def describe_base(self) -> str:
        """What the head corrects, in words: "the seasonal-naive forecast (m=24)"."""
        periods = list(dict.fromkeys((self.season, *self.extra_seasons)))
        if self.base_cycles > 1 and max(periods) > 1:
            median = f"the median of the last {self.base_cycles} cycles of m={max(periods)}"
            if len(periods) == 1:
                return median
            return (f"the closest seasonal-naive forecast of m={', '.join(map(str, periods))}, per window "
                    f"({median} where m={max(periods)} is chosen)")
        if len(periods) > 1:
            return f"the closest seasonal-naive forecast of m={', '.join(map(str, periods))}, per window"
        return f"the seasonal-naive forecast (m={self.season})" if self.season > 1 else "the last value"


class ForecastNetwork(nn.Module):
    """Forecasts every horizon step at once, as a location and a scale per step and target.

    The history's targets are taken relative to their last value (the level), so the encoder
    sees shapes rather than levels, and the head forecasts corrections to the seasonal-naive
    forecast of the window (the last value when season m = 1; `base`), so an untrained head
    already forecasts what seasonal naive does and training only has to improve on it:

        level  = y_{o-1}
        base_h = y_{o-m+(h mod m)}                 h = 0 .. H-1  (m <= L)
        h      = encoder([y_{o-E..o-1} - level, covariates, known])[last step]   (E = encoder_steps or L)
        z      = head([h, known_{o..o+H-1}])
        mean   = base + z_mean,   scale = softplus(z_scale) + MIN_SCALE

    mean is the distribution's centre (the mean of a normal, the median of a Laplace), scale
    its standard deviation or its b (negative_log_likelihood).
    """

    def __init__(self, config: ForecastNetworkConfig) -> None:
        super().__init__()
        cell = saved_cell_name(config.cell, type(config).__name__)
        self.config = config
        self.encoder = Recurrent(
            cell, config.past_features, config.hidden_size, config.num_layers, batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0, engine=config.engine, **config.cell_options,
        )
        head_inputs = config.hidden_size + config.horizon * config.future_features
        self.head = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(head_inputs, config.hidden_size), nn.ReLU(),
            nn.Linear(config.hidden_size, config.horizon * config.targets * 2),
        )

    def forward(self, history: Tensor, future: Tensor) -> tuple[Tensor, Tensor]:
        """history (B, L, past_features), future (B, H, future_features) -> mean and scale,
        each (B, H, targets)."""
        targets = self.config.targets
        level = history[:, -1:, :targets]
        base = self.base(history[..., :targets])
        relative = torch.cat([history[..., :targets] - level, history[..., targets:]], dim=-1)
        output, _ = self.encoder(relative[:, -(self.config.encoder_steps or relative.shape[1]):])
        z = self.head(torch.cat([output[:, -1], future.flatten(1)], dim=1))
        z = z.view(-1, self.config.horizon, targets, 2)
        return base + z[..., 0], F.softplus(z[..., 1]) + MIN_SCALE

    def base(self, targets: Tensor) -> Tensor:
        """The seasonal-naive forecast the head corrects, (B, H, targets) from the history's
        targets (B, L, targets). With extra seasons, each window and target takes the period
        P ∈ {m, extra_seasons} whose seasonal-naive forecast of the window's own last
        W = max P steps, made from the steps before them, was closest (the first on a tie):

            error_P = Σ_{j<W} |y_{o-W+j} − y_{o-W-P+(j mod P)}|,   base_h = y_{o-P*+(h mod P*)},  P* = argmin error_P

        (on M4 hourly, a day against a week of hours: the held-out OWA of seasonal naive went
        from 0.629 to 0.526 by this choice alone; README, "Many series"). With base_cycles
        K > 1, the forecast of the longest period W is the median of its last K cycles, so one
        unusual cycle (a holiday in last week's hours) is not copied:

            base_h = median_{k=1..K} y_{o-kW+(h mod W)}

        (the mean of the middle two for an even K; the choice of P* still compares one cycle).
        """
        lookback, horizon = targets.shape[1], self.config.horizon
        periods = list(dict.fromkeys((self.config.season, *self.config.extra_seasons)))
        span = max(periods)
        cycles = self.config.base_cycles if span > 1 else 1  # the last value stays the last value
        if len(periods) > 1 and 2 * span > lookback:
            raise ValueError(f"choosing the base among the periods {', '.join(map(str, periods))} needs a history of "
                             f"at least 2 x {span} = {2 * span} steps, got {lookback}")
        if cycles * span > lookback:
            needs = f"{cycles} x {span} = {cycles * span} (the median of {cycles} cycles of m = {span})" \
                if cycles > 1 else f"season = {span}"
            raise ValueError(f"the seasonal-naive base needs a lookback of at least {needs} steps, "
                             f"got a history of {lookback}")

        def seasonal_naive(end: int, period: int, steps: int) -> Tensor:
            """Period `period`'s seasonal-naive forecast of the `steps` steps from `end` on."""
            return targets[:, end - period + torch.arange(steps, device=targets.device) % period]

        def forecast(period: int) -> Tensor:
            """Period `period`'s forecast of the horizon: its seasonal naive, or, for the longest,
            the median of the seasonal naives of its last `cycles` cycles."""
            count = cycles if period == span else 1
            naives = torch.stack([seasonal_naive(lookback - cycle * period, period, horizon) for cycle in range(count)])
            return naives[0] if count == 1 else naives.quantile(0.5, dim=0)

        forecasts = torch.stack([forecast(period) for period in periods])
        if len(periods) == 1:
            return forecasts[0]
        recent = targets[:, lookback - span:]
        errors = torch.stack([(seasonal_naive(lookback - span, period, span) - recent).abs().sum(dim=1)
                              for period in periods])  # (periods, B, targets)
        chosen = errors.argmin(dim=0)
        return forecasts.gather(0, chosen[None, :, None, :].expand(1, -1, horizon, -1))[0]

    def forecast(self, history: Tensor, future: Tensor) -> tuple[Tensor, Tensor]:
        """The forecast's centre and scale: forward's (as ForecastEnsemble.forecast gives an ensemble's)."""
        return self(history, future)


class ForecastEnsemble(nn.Module):
    """`config.ensemble` networks of one config from different initial weights, trained side by
    side on the same windows, each by its own likelihood (the mean over the members' losses is
    the ensemble's): a deep ensemble (Lakshminarayanan et al. 2017). forward gives every
    member's centre and scale, (members, B, H, targets) each, for training; `forecast` gives
    the ensemble's."""

    def __init__(self, config: ForecastNetworkConfig) -> None:
        super().__init__()
        self.config = config
        self.members = nn.ModuleList(ForecastNetwork(config) for _ in range(config.ensemble))

    def forward(self, history: Tensor, future: Tensor) -> tuple[Tensor, Tensor]:
        means, scales = zip(*(member(history, future) for member in self.members))
        return torch.stack(means), torch.stack(scales)

    def forecast(self, history: Tensor, future: Tensor) -> tuple[Tensor, Tensor]:
        """The ensemble's centre and scale, (B, H, targets) each: the median of the members'
        centres (one member's miss does not move it; the mean of the middle two for an even
        count) and the mean of their scales."""
        mean, scale = self(history, future)
        return mean.quantile(0.5, dim=0), scale.mean(dim=0)


class ScalingEnsemble(nn.Module):
    """`config.scalings` networks (each a ForecastNetwork or a ForecastEnsemble), each trained
    on its own view of the same series: the series under another normalisation. Their inputs
    differ, so the pipeline runs each on its view and averages their forecasts in the data's
    units (lstmkit.pipelines.forecast_global); each member's config is `config` with scalings 1."""

    def __init__(self, config: ForecastNetworkConfig, members: list[nn.Module] | None = None) -> None:
        super().__init__()
        self.config = config
        if members is not None and len(members) != config.scalings:
            raise ValueError(f"a ScalingEnsemble of {config.scalings} scalings takes {config.scalings} members, "
                             f"got {len(members)}")
        self.members = nn.ModuleList(members if members is not None else
                                     (build_forecast_network(replace(config, scalings=1))
                                      for _ in range(config.scalings)))

    def forward(self, history: Tensor, future: Tensor) -> tuple[Tensor, Tensor]:
        raise TypeError("a ScalingEnsemble's members read differently scaled inputs: run each member on its own "
                        "(lstmkit.pipelines.forecast_global.forecast)")


def build_forecast_network(config: ForecastNetworkConfig) -> ForecastNetwork | ForecastEnsemble | ScalingEnsemble:
    if config.scalings > 1:
        return ScalingEnsemble(config)
    return ForecastNetwork(config) if config.ensemble == 1 else ForecastEnsemble(config)


def negative_log_likelihood(distribution: str, mean: Tensor, scale: Tensor, target: Tensor) -> Tensor:
    """Mean negative log-likelihood of `target` under the distribution centred on `mean`,
    constants dropped:

        normal   log σ + ½ ((y − μ) / σ)²      (μ the mean: squared errors)
        laplace  log b + |y − μ| / b           (μ the median: absolute errors, as sMAPE and MASE)
    """
    if distribution == "normal":
        return (torch.log(scale) + 0.5 * ((target - mean) / scale) ** 2).mean()
    if distribution == "laplace":
        return (torch.log(scale) + (target - mean).abs() / scale).mean()
    raise ValueError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}")


def interval_half_width(distribution: str, scale, coverage: float):
    """w such that [μ − w, μ + w] holds `coverage` of the distribution:

        normal   w = Φ⁻¹(½ + coverage / 2) · σ
        laplace  w = −log(1 − coverage) · b       (P(|Y − μ| ≤ w) = 1 − exp(−w / b))
    """
    if distribution == "normal":
        return NormalDist().inv_cdf(0.5 + coverage / 2) * scale
    if distribution == "laplace":
        return -math.log(1 - coverage) * scale
    raise ValueError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}")
