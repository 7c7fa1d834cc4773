"""What a long-time-lag task is: a seeded generator, a loss, a baseline and a "solved" criterion."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from lstmkit.received import received


@dataclass(frozen=True)
class Batch:
    """Sequences of a task, time-major.

    inputs: (T, B, input_size), zero past each sequence's length.
    targets: what the model must output: (B, ...) for a read-out at the last step,
        (T, B, ...) for a read-out at every step.
    lengths: (B,) valid steps per sequence, or None when all have T.
    """

    inputs: Tensor
    targets: Tensor
    lengths: Tensor | None = None

    @property
    def size(self) -> int:
        return self.inputs.shape[1]

    def step_mask(self) -> Tensor:
        """(T, B) bool, True at the valid steps; on the batch's device (a CPU mask cannot meet
        lengths on a GPU)."""
        steps = self.inputs.shape[0]
        if self.lengths is None:
            return torch.ones(steps, self.size, dtype=torch.bool, device=self.inputs.device)
        return torch.arange(steps, device=self.lengths.device).unsqueeze(1) < self.lengths.unsqueeze(0)


def check_count(value: int, name: str) -> None:
    """Refuse a number of sequences that is no positive integer, by `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class Task:
    """A long-time-lag task. Subclasses are frozen dataclasses whose fields are its parameters.

    Class attributes:
        name: the registry name (`lstmkit task NAME`).
        summary: one line: what the task is and where it comes from.
        input_size, output_size: features in and out of the model.
        readout: "last" (one output per sequence, at its last step) or "every" (one per step).
        loss_name: what `loss` computes, e.g. "mse".
        score_name: the task's own measure of success, e.g. "accuracy" (None: the loss itself).
        solved_when: the criterion of `solved`, in words.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    input_size: ClassVar[int]
    output_size: ClassVar[int]
    readout: ClassVar[str]
    loss_name: ClassVar[str]
    score_name: ClassVar[str | None]
    solved_when: ClassVar[str]

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """`batch_size` fresh sequences (`draw`); the same generator state gives the same
        sequences."""
        check_count(batch_size, "batch_size")
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return self.draw(int(batch_size), generator)

    def draw(self, batch_size: int, generator: torch.Generator) -> Batch:
        """`batch_size` (at least 1) fresh sequences from `generator`."""
        raise NotImplementedError

    def loss(self, predictions: Tensor, batch: Batch) -> Tensor:
        """The training loss, a differentiable mean over the batch."""
        raise NotImplementedError

    def score(self, predictions: Tensor, batch: Batch) -> float:
        """The task's measure of success (`score_name`) on a batch."""
        raise NotImplementedError

    def baseline(self) -> float:
        """The loss of the best predictor that ignores the input."""
        raise NotImplementedError

    def solved(self, loss: float, score: float) -> bool:
        """Whether a test loss and score meet `solved_when`."""
        raise NotImplementedError

    def test_set(self, size: int, seed: int) -> Batch:
        """A fixed test set, drawn from its own seed (never the training seed)."""
        check_count(size, "the test set's size")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= 2**64 - 1:
            raise ValueError(f"seed must be an integer in [0, 2**64 - 1], got {received(seed)}")
        return self.sample(size, torch.Generator().manual_seed(int(seed)))

    def check_predictions(self, predictions: Tensor, batch: Batch) -> None:
        """Refuse predictions not shaped as the batch's targets are (and, for targets that are
        classes, with the classes' scores last): `loss` and `score` broadcast (B,) against
        (B, 1) into (B, B), and scored perfect predictions 0.11."""
        expected = tuple(batch.targets.shape) + (() if batch.targets.is_floating_point() else (self.output_size,))
        if not isinstance(predictions, Tensor) or tuple(predictions.shape) != expected:
            given = f"shape {tuple(predictions.shape)}" if isinstance(predictions, Tensor) else received(predictions)
            per = "one per sequence, at its last step" if self.readout == "last" else "one per step, time first"
            raise ValueError(f"{self.describe()} takes predictions of shape {expected} ({per}), got {given}")

    def describe(self) -> str:
        """Name and length, e.g. "adding T=200" (the name alone for a task without T)."""
        steps = getattr(self, "T", None)
        return self.name if steps is None else f"{self.name} T={steps}"

    def title(self) -> str:
        """The task's long name and parameters, for figure titles."""
        parameters = self.describe().removeprefix(self.name).strip()
        return self.summary.split(":")[0] + (f", {parameters}" if parameters else "")


def one_hot(indices: Tensor, classes: int) -> Tensor:
    """Float one-hot vectors of `indices` (any shape) in a new last dimension."""
    return torch.nn.functional.one_hot(indices, classes).float()


def check_length(task: Task, minimum: int) -> None:
    """A task's T: an int of at least `minimum`, kept as a Python int (a NumPy integer given,
    which results.json could not hold)."""
    steps = task.T
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise TypeError(f"task {task.name!r}: T must be an int, got {received(steps)}")
    if steps < minimum:
        raise ValueError(f"task {task.name!r}: T must be at least {minimum}, got {steps}")
    object.__setattr__(task, "T", int(steps))  # the tasks are frozen dataclasses
