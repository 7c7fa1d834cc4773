"""The copy (memory) task of Arjovsky et al. (2016)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lstmkit.tasks.base import Batch, Task, check_length, one_hot

BLANK, DELIMITER, SYMBOLS, RECALLED = 0, 9, 8, 10


@dataclass(frozen=True)
class CopyTask(Task):
    """Copy task as in Arjovsky et al. (2016): remember 10 symbols across T blank steps.

    The input is 10 symbols drawn from an alphabet of 8 (1..8), T - 1 blanks (0), a delimiter
    (9) and 10 more blanks: T + 20 steps, one-hot. The target is blank for the first T + 10
    steps and then the 10 symbols in order. Outputting blank with certainty and then a uniform
    guess over the 8 symbols gives cross-entropy 10 log 8 / (T + 20) per step.
    """

    T: int = 100
    name = "copy"
    summary = "copy task (Arjovsky et al. 2016): reproduce 10 symbols after T − 1 blanks and a delimiter"
    input_size = 10
    output_size = 9
    readout = "every"
    loss_name = "cross-entropy"
    score_name = "accuracy"
    solved_when = "at least 99% of the recalled test symbols correct"

    def __post_init__(self) -> None:
        check_length(self, 1)

    def draw(self, batch_size: int, generator: torch.Generator) -> Batch:
        symbols = torch.randint(1, SYMBOLS + 1, (RECALLED, batch_size), generator=generator)
        blanks = torch.full((self.T - 1, batch_size), BLANK)
        delimiter = torch.full((1, batch_size), DELIMITER)
        tail = torch.full((RECALLED, batch_size), BLANK)
        inputs = torch.cat([symbols, blanks, delimiter, tail])
        targets = torch.cat([torch.full((self.T + RECALLED, batch_size), BLANK), symbols])
        return Batch(one_hot(inputs, self.input_size), targets)

    def loss(self, predictions: Tensor, batch: Batch) -> Tensor:
        self.check_predictions(predictions, batch)
        return F.cross_entropy(predictions.flatten(0, 1), batch.targets.flatten())

    def score(self, predictions: Tensor, batch: Batch) -> float:
        self.check_predictions(predictions, batch)
        recalled = predictions[-RECALLED:].argmax(-1)
        return (recalled == batch.targets[-RECALLED:]).float().mean().item()

    def baseline(self) -> float:
        return RECALLED * math.log(SYMBOLS) / (self.T + 2 * RECALLED)

    def solved(self, loss: float, score: float) -> bool:
        return score >= 0.99
