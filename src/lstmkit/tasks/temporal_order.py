"""The temporal order problem of Hochreiter & Schmidhuber (1997), experiment 6a."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lstmkit.tasks.base import Batch, Task, check_length, one_hot

START, TRIGGER, FIRST_DISTRACTOR, X, Y = 0, 1, 2, 6, 7  # symbols E, B, a..d, X, Y
SYMBOLS = 8


@dataclass(frozen=True)
class TemporalOrderTask(Task):
    """Temporal order as in Hochreiter & Schmidhuber (1997), experiment 6a, scaled by T.

    A sequence of length T to T + T/10 starts with E, ends with the trigger B and is made of
    distractors a, b, c, d, except at two steps t1 in [T/10, T/5] and t2 in [T/2, T/2 + T/10],
    which hold X or Y. The class, read at the trigger, is the order of the two: XX, XY, YX,
    YY (Q, R, S, U in the paper). T = 100 is the paper's setting. Without the input the best
    guess is uniform: cross-entropy log 4, accuracy 1/4.
    """

    T: int = 100
    name = "temporal_order"
    summary = "temporal order (Hochreiter & Schmidhuber 1997, exp. 6a): classify the order of X and Y"
    input_size = SYMBOLS
    output_size = 4
    readout = "last"
    loss_name = "cross-entropy"
    score_name = "accuracy"
    solved_when = "at least 99% of test sequences classified correctly"

    def __post_init__(self) -> None:
        check_length(self, 10)

    def draw(self, batch_size: int, generator: torch.Generator) -> Batch:
        longest = self.T + self.T // 10
        lengths = torch.randint(self.T, longest + 1, (batch_size,), generator=generator)
        symbols = torch.randint(FIRST_DISTRACTOR, X, (longest, batch_size), generator=generator)
        first = torch.randint(self.T // 10, self.T // 5 + 1, (batch_size,), generator=generator)
        second = torch.randint(self.T // 2, self.T // 2 + self.T // 10 + 1, (batch_size,), generator=generator)
        first_is_y = torch.randint(0, 2, (batch_size,), generator=generator)
        second_is_y = torch.randint(0, 2, (batch_size,), generator=generator)
        columns = torch.arange(batch_size)
        symbols[0] = START
        symbols[first, columns] = X + first_is_y
        symbols[second, columns] = X + second_is_y
        symbols[lengths - 1, columns] = TRIGGER
        valid = torch.arange(longest).unsqueeze(1) < lengths
        inputs = one_hot(symbols, SYMBOLS) * valid.unsqueeze(-1)
        return Batch(inputs, 2 * first_is_y + second_is_y, lengths)

    def loss(self, predictions: Tensor, batch: Batch) -> Tensor:
        self.check_predictions(predictions, batch)
        return F.cross_entropy(predictions, batch.targets)

    def score(self, predictions: Tensor, batch: Batch) -> float:
        self.check_predictions(predictions, batch)
        return (predictions.argmax(-1) == batch.targets).float().mean().item()

    def baseline(self) -> float:
        return math.log(4)

    def solved(self, loss: float, score: float) -> bool:
        return score >= 0.99
