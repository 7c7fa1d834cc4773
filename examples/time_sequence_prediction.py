"""pytorch/examples' time_sequence_prediction, with a switch between torch.nn.LSTMCell and
lstmkit.LSTMCell: two stacked LSTM cells in float64 learn sine waves with L-BFGS, then
predict 1000 steps past the end of three held-out waves.

    python examples/time_sequence_prediction.py --cell torch
    python examples/time_sequence_prediction.py --cell lstmkit

The data, the model and the training loop are those of the original (100 sine waves of
length 1000 with random phase, seed 2; the first 3 for testing; LBFGS with lr 0.8), written
here without its plots; --steps sets how many L-BFGS steps to take (the original takes 15) and
--length the length of the waves (the original's 1000; shorter runs faster).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn, optim

import lstmkit

CELLS = {"torch": nn.LSTMCell, "lstmkit": lstmkit.LSTMCell}
HIDDEN = 51


def sine_waves(count: int = 100, length: int = 1000, period: float = 20.0) -> np.ndarray:
    """The original's generate_sine_wave.py: sin((t + shift) / period), a random shift per wave."""
    np.random.seed(2)
    steps = np.empty((count, length), "int64")
    steps[:] = np.array(range(length)) + np.random.randint(-4 * period, 4 * period, count).reshape(count, 1)
    return np.sin(steps / 1.0 / period).astype("float64")


class Sequence(nn.Module):
    """Two LSTM cells and a linear read-out, stepped over time by hand."""

    def __init__(self, cell: type[nn.Module]) -> None:
        super().__init__()
        self.lstm1 = cell(1, HIDDEN)
        self.lstm2 = cell(HIDDEN, HIDDEN)
        self.linear = nn.Linear(HIDDEN, 1)

    def forward(self, input: torch.Tensor, future: int = 0) -> torch.Tensor:
        outputs = []
        h_t = torch.zeros(input.size(0), HIDDEN, dtype=torch.double)
        c_t = torch.zeros(input.size(0), HIDDEN, dtype=torch.double)
        h_t2 = torch.zeros(input.size(0), HIDDEN, dtype=torch.double)
        c_t2 = torch.zeros(input.size(0), HIDDEN, dtype=torch.double)
        for input_t in input.split(1, dim=1):
            h_t, c_t = self.lstm1(input_t, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        for _ in range(future):  # feed the prediction back in
            h_t, c_t = self.lstm1(output, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        return torch.cat(outputs, dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--cell", choices=sorted(CELLS), default="lstmkit")
    parser.add_argument("--steps", type=int, default=3, help="L-BFGS steps (the original takes 15)")
    parser.add_argument("--length", type=int, default=1000, help="steps per wave, 2 or more (the original's 1000)")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"argument --steps: expected 1 or more, got {args.steps}")
    if args.length < 2:
        parser.error(f"argument --length: a wave needs 2 steps or more (input and target), got {args.length}")

    np.random.seed(0)
    torch.manual_seed(0)
    data = sine_waves(length=args.length)
    input = torch.from_numpy(data[3:, :-1])
    target = torch.from_numpy(data[3:, 1:])
    test_input = torch.from_numpy(data[:3, :-1])
    test_target = torch.from_numpy(data[:3, 1:])
    seq = Sequence(CELLS[args.cell])
    seq.double()
    criterion = nn.MSELoss()
    optimizer = optim.LBFGS(seq.parameters(), lr=0.8)
    start = time.perf_counter()
    for step in range(args.steps):

        def closure():
            optimizer.zero_grad()
            out = seq(input)
            loss = criterion(out, target)
            loss.backward()
            return loss

        loss = optimizer.step(closure)
        with torch.no_grad():
            future = 1000
            pred = seq(test_input, future=future)
            test_loss = criterion(pred[:, :-future], test_target)
        print(f"step {step}: loss {loss.item():.12g}, test loss {test_loss.item():.12g}")
    print(f"{args.cell}: {time.perf_counter() - start:.1f} s for {args.steps} L-BFGS steps")


if __name__ == "__main__":
    main()
