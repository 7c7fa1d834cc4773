"""The embedded Reber grammar of Hochreiter & Schmidhuber (1997), experiment 1."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor

from lstmkit.tasks.base import Batch, Task, one_hot

ALPHABET = "BTPSXVE"
INDEX = {symbol: position for position, symbol in enumerate(ALPHABET)}

# The Reber grammar after its leading B: state -> [(symbol, next state)], each taken with
# probability 1/2; state 6 ends the string with E.
REBER = {
    1: [("T", 2), ("P", 3)],
    2: [("S", 2), ("X", 4)],
    3: [("T", 3), ("V", 5)],
    4: [("X", 3), ("S", 6)],
    5: [("P", 4), ("V", 6)],
    6: [("E", None)],
}
CHOICE_BITS = 512  # random bits drawn per string; a string needs one per fork (~10)


def embedded_reber_string(bits: list[int]) -> tuple[str, list[str]]:
    """One embedded Reber string and, after each symbol, the set of symbols that may follow.

    B, then T or P, then a Reber string (B ... E), then the same T or P again, then E: the
    symbol before the last depends on the second, across the whole inner string.
    """
    choices = iter(bits)
    branch = "TP"[next(choices)]
    string, follows = ["B", branch, "B"], ["TP", "B", "TP"]
    state = 1
    while state is not None:
        options = REBER[state]
        symbol, state = options[next(choices)] if len(options) > 1 else options[0]
        string.append(symbol)
        follows.append("".join(option for option, _ in REBER[state]) if state is not None else branch)
    string += [branch, "E"]
    follows += ["E", ""]
    return "".join(string), follows


@dataclass(frozen=True)
class EmbeddedReberTask(Task):
    """Embedded Reber grammar as in Hochreiter & Schmidhuber (1997), experiment 1.

    Input: one embedded Reber string, one-hot over B T P S X V E. Output, at every step: one
    unit per symbol, trained with binary cross-entropy to be on for every symbol that may
    come next and off for the others. A string is processed correctly when, at every step,
    the units above 0.5 are exactly the possible next symbols. Strings have no length
    parameter; the long lag is the inner string between the two copies of T or P.
    """

    name = "reber"
    summary = "embedded Reber grammar (Hochreiter & Schmidhuber 1997, exp. 1): predict every possible next symbol"
    input_size = len(ALPHABET)
    output_size = len(ALPHABET)
    readout = "every"
    loss_name = "binary cross-entropy"
    score_name = "string accuracy"
    solved_when = "every test string processed correctly (all possible next symbols, and only those, above 0.5 at every step)"

    def draw(self, batch_size: int, generator: torch.Generator) -> Batch:
        bits = torch.randint(0, 2, (batch_size, CHOICE_BITS), generator=generator).tolist()
        strings = [embedded_reber_string(row) for row in bits]
        lengths = torch.tensor([len(string) for string, _ in strings])
        longest = int(lengths.max())
        inputs = torch.zeros(longest, batch_size, self.input_size, dtype=torch.float32)
        targets = torch.zeros(longest, batch_size, self.output_size, dtype=torch.float32)
        for column, (string, follows) in enumerate(strings):
            inputs[: len(string), column] = one_hot(torch.tensor([INDEX[s] for s in string]), self.input_size)
            for step, possible in enumerate(follows):
                targets[step, column, [INDEX[s] for s in possible]] = 1.0
        return Batch(inputs, targets, lengths)

    def loss(self, predictions: Tensor, batch: Batch) -> Tensor:
        self.check_predictions(predictions, batch)
        mask = batch.step_mask()
        return F.binary_cross_entropy_with_logits(predictions[mask], batch.targets[mask])

    def score(self, predictions: Tensor, batch: Batch) -> float:
        self.check_predictions(predictions, batch)
        wrong = ((predictions > 0) != (batch.targets > 0.5)).any(-1) & batch.step_mask()
        return (~wrong.any(0)).float().mean().item()

    def baseline(self) -> float:
        return reber_baseline()

    def solved(self, loss: float, score: float) -> bool:
        return score == 1.0


@cache
def reber_baseline(samples: int = 20000, seed: int = 0) -> float:
    """Binary cross-entropy of the best constant output: each unit at the frequency with which
    its symbol may come next, over the steps of `samples` strings (a fixed seed)."""
    batch = EmbeddedReberTask().sample(samples, torch.Generator().manual_seed(seed))
    frequencies = batch.targets[batch.step_mask()].mean(0)
    entropies = [
        0.0 if p in (0.0, 1.0) else -(p * math.log(p) + (1 - p) * math.log(1 - p))
        for p in frequencies.tolist()
    ]
    return sum(entropies) / len(entropies)
