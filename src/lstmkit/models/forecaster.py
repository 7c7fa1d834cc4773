"""A recurrent encoder over the lookback window and a direct multi-horizon Gaussian head."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstmkit.nn import Recurrent

MIN_SCALE = 1e-3  # floor of the predicted standard deviation (in scaled units)


@dataclass(frozen=True)
class ForecastNetworkConfig:
    """Everything needed to rebuild a ForecastNetwork (saved as JSON with its checkpoint).

    targets: series forecast jointly; past_features: columns of each history step (targets,
    observed-past covariates, known-future features); future_features: known-future columns
    of each horizon step (calendar features and known-future covariates).
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

    def __post_init__(self) -> None:
        for name in ("targets", "past_features", "horizon", "hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if isinstance(self.dropout, bool) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class ForecastNetwork(nn.Module):
    """Forecasts every horizon step at once, as a Gaussian per step and target.

    The history's targets are taken relative to their last value (the level), so the encoder
    sees shapes rather than levels and the head forecasts changes from the level:

        level  = y_{o-1}
        h      = encoder([y_{o-L..o-1} - level, covariates, known])[last step]
        z      = head([h, known_{o..o+H-1}])
        mean   = level + z_mean,   scale = softplus(z_scale) + MIN_SCALE
    """

    def __init__(self, config: ForecastNetworkConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Recurrent(
            config.cell, config.past_features, config.hidden_size, config.num_layers, batch_first=True,
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
        relative = torch.cat([history[..., :targets] - level, history[..., targets:]], dim=-1)
        output, _ = self.encoder(relative)
        z = self.head(torch.cat([output[:, -1], future.flatten(1)], dim=1))
        z = z.view(-1, self.config.horizon, targets, 2)
        return level + z[..., 0], F.softplus(z[..., 1]) + MIN_SCALE


def gaussian_loss(mean: Tensor, scale: Tensor, target: Tensor) -> Tensor:
    """Mean negative log-likelihood of `target` under N(mean, scale²), constant dropped."""
    return (torch.log(scale) + 0.5 * ((target - mean) / scale) ** 2).mean()
