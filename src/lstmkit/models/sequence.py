"""A recurrent stack with a linear read-out: the model of the long-time-lag tasks."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from lstmkit.cells import saved_cell_name
from lstmkit.nn import GateTrace, Recurrent

READOUTS = ("last", "every")


@dataclass(frozen=True)
class SequenceModelConfig:
    """Everything needed to rebuild a SequenceModel (saved as JSON with its checkpoint)."""

    cell: str
    input_size: int
    hidden_size: int
    output_size: int
    readout: str
    num_layers: int = 1
    forget_bias: float | None = None
    engine: str = "auto"
    cell_options: dict = field(default_factory=dict)
    # Keywords of lstmkit.Recurrent: recurrent_dropout, zoneout, init, ...
    regularisers: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class SequenceModel(nn.Module):
    """Recurrent layers of any cell, then one linear layer.

    With readout "last" the linear layer reads the top layer's final hidden state (at each
    sequence's last valid step) and returns (B, output_size); with "every" it reads every
    step's output and returns (T, B, output_size).
    """

    def __init__(self, config: SequenceModelConfig) -> None:
        super().__init__()
        if config.readout not in READOUTS:
            raise ValueError(f"readout must be one of {', '.join(READOUTS)}, got {config.readout!r}")
        cell = saved_cell_name(config.cell, type(config).__name__)
        self.config = config
        self.recurrent = Recurrent(
            cell, config.input_size, config.hidden_size, config.num_layers,
            forget_bias=config.forget_bias, engine=config.engine, **config.cell_options, **config.regularisers,
        )
        self.head = nn.Linear(config.hidden_size, config.output_size)

    def forward(self, inputs: Tensor, lengths: Tensor | None = None) -> Tensor:
        output, state = self.recurrent(inputs, lengths=lengths)
        return self.read_out(output, state)

    def read_out(self, output: Tensor, state: Tensor | tuple[Tensor, Tensor]) -> Tensor:
        if self.config.readout == "every":
            return self.head(output)
        h_n = state[0] if isinstance(state, tuple) else state
        return self.head(h_n[-1])

    def trace(self, inputs: Tensor, lengths: Tensor | None = None) -> GateTrace:
        """Every step's gate activations and cell states, for inspection."""
        with torch.no_grad():
            _, _, trace = self.recurrent(inputs, lengths=lengths, return_gates=True)
        return trace

    def hidden_gradients(self, inputs: Tensor, targets_loss, lengths: Tensor | None = None) -> Tensor:
        """d loss / d h_t of the top layer for every step t, (T, B, H), where `targets_loss`
        maps the predictions to a loss summed over the batch (so each sequence's gradient is
        its own). The layers run one step at a time so that every h_t is a tensor of its own."""
        state, hidden = None, []
        for x_t in inputs:
            _, state = self.recurrent.step(x_t, state)
            h = state[0] if isinstance(state, tuple) else state
            h.retain_grad()
            hidden.append(h)
        outputs = torch.stack([h[-1] for h in hidden])
        if self.config.readout == "every":
            predictions = self.head(outputs)
        else:
            last = torch.full((inputs.shape[1],), inputs.shape[0]) if lengths is None else lengths
            predictions = self.head(outputs[last - 1, torch.arange(inputs.shape[1])])
        targets_loss(predictions).backward()
        return torch.stack([h.grad[-1] for h in hidden])
