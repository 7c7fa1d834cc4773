"""The adding problem, in its modern and in its original (1997) definition."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lstmkit.tasks.base import Batch, Task, check_length


@dataclass(frozen=True)
class AddingTask(Task):
    """Adding problem as in Le et al. (2015) and Arjovsky et al. (2016).

    Each step has two channels: a value drawn from U[0, 1] and a marker, 1 at exactly one step
    of the first half and one step of the second half, 0 elsewhere. The target, read at the
    last step, is the sum of the two marked values. Predicting the mean (1) without looking
    at the input gives MSE = Var(X1 + X2) = 2/12 = 0.167.
    """

    T: int = 200
    name = "adding"
    summary = "adding problem (Le et al. 2015; Arjovsky et al. 2016): sum the two marked values"
    input_size = 2
    output_size = 1
    readout = "last"
    loss_name = "mse"
    score_name = None
    solved_when = "test MSE < 0.01"

    def __post_init__(self) -> None:
        check_length(self, 2)

    def draw(self, batch_size: int, generator: torch.Generator) -> Batch:
        values = torch.rand(self.T, batch_size, generator=generator, dtype=torch.float32)
        half = self.T // 2
        first = torch.randint(0, half, (batch_size,), generator=generator)
        second = torch.randint(half, self.T, (batch_size,), generator=generator)
        columns = torch.arange(batch_size)
        markers = torch.zeros(self.T, batch_size, dtype=torch.float32)
        markers[first, columns] = 1.0
        markers[second, columns] = 1.0
        targets = values[first, columns] + values[second, columns]
        return Batch(torch.stack([values, markers], -1), targets.unsqueeze(-1))

    def loss(self, predictions: Tensor, batch: Batch) -> Tensor:
        self.check_predictions(predictions, batch)
        return F.mse_loss(predictions, batch.targets)

    def score(self, predictions: Tensor, batch: Batch) -> float:
        self.check_predictions(predictions, batch)
        return self.loss(predictions, batch).item()

    def baseline(self) -> float:
        return 2 / 12

    def solved(self, loss: float, score: float) -> bool:
        return loss < 0.01


@dataclass(frozen=True)
class Adding1997Task(Task):
    """Adding problem as Hochreiter & Schmidhuber (1997) defined it (experiment 4).

    Sequences have random lengths from T to T + T/10 (padded; `Batch.lengths` says how long).
    Each step holds a value from U[-1, 1] and a marker in {-1, 0, 1}: one of the first ten
    steps is marked 1 (its value is X1), then one of the other steps among the first T/2
    (X2); the first and the last step are marked -1 unless marked 1; a marked first step has
    its value set to 0. The target, read at each sequence's last step, is 0.5 + (X1 + X2)/4,
    and a sequence is processed correctly when the absolute error is below 0.04.
    """

    T: int = 100
    name = "adding1997"
    summary = "adding problem of Hochreiter & Schmidhuber (1997), experiment 4: target 0.5 + (X1 + X2)/4"
    input_size = 2
    output_size = 1
    readout = "last"
    loss_name = "mse"
    score_name = "accuracy"
    solved_when = "at least 99% of test sequences within 0.04 of the target"
    tolerance = 0.04

    def __post_init__(self) -> None:
        check_length(self, 20)

    def draw(self, batch_size: int, generator: torch.Generator) -> Batch:
        longest = self.T + self.T // 10
        lengths = torch.randint(self.T, longest + 1, (batch_size,), generator=generator)
        values = torch.rand(longest, batch_size, generator=generator, dtype=torch.float32) * 2 - 1
        first = torch.randint(0, 10, (batch_size,), generator=generator)
        drawn = torch.randint(0, self.T // 2 - 1, (batch_size,), generator=generator)
        second = drawn + (drawn >= first).long()  # uniform over the first T/2 steps but `first`
        columns = torch.arange(batch_size)
        markers = torch.zeros(longest, batch_size, dtype=torch.float32)
        markers[0] = -1.0
        markers[lengths - 1, columns] = -1.0
        markers[first, columns] = 1.0
        markers[second, columns] = 1.0
        values[0] = torch.where(markers[0] == 1.0, 0.0, values[0])
        valid = torch.arange(longest).unsqueeze(1) < lengths
        inputs = torch.stack([values, markers], -1) * valid.unsqueeze(-1)
        targets = 0.5 + (values[first, columns] + values[second, columns]) / 4
        return Batch(inputs, targets.unsqueeze(-1), lengths)

    def loss(self, predictions: Tensor, batch: Batch) -> Tensor:
        self.check_predictions(predictions, batch)
        return F.mse_loss(predictions, batch.targets)

    def score(self, predictions: Tensor, batch: Batch) -> float:
        self.check_predictions(predictions, batch)
        return ((predictions - batch.targets).abs() < self.tolerance).float().mean().item()

    def baseline(self) -> float:
        """Var(target) = (Var X1 + Var X2) / 16, a marked value being 0 when it is the first step."""
        first_at_start = 1 / 10
        second_at_start = (1 - first_at_start) / (self.T // 2 - 1)
        return ((1 - first_at_start) / 3 + (1 - second_at_start) / 3) / 16

    def solved(self, loss: float, score: float) -> bool:
        return score >= 0.99
