"""What a pipeline hands the training core: its data, its model and its metric."""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from lstmkit.caller import warn_at_caller
from lstmkit.checkpoint import load_weights, model_tensors


class Job(ABC):
    """One model to train. The core owns the loop (device, precision, processes, optimizer,
    schedule, clipping, budget, evaluations, checkpoints, progress); a job says what a step's
    loss is, how the model scores, and what a checkpoint holds besides the weights.

    Attributes a job sets: `model` (built on the CPU after `torch.manual_seed(config.seed)`:
    the trainer seeds nothing of the job's own, only, under torchrun, each process's dropout
    stream), `label` (shown
    by the progress report), `item` (what throughput counts: "token", "sequence", ...; the
    metrics' count column is its plural), `selection_metric` (the evaluation value whose
    lowest marks the best model; None when there is none), `higher_is_better` (its highest
    marks it instead: a BLEU score) and `finite_metric` (another evaluation value whose leaving
    the floats means the run diverged).
    """

    model: nn.Module
    label: str = "training"
    item: str = "item"
    selection_metric: str | None = "val_loss"
    higher_is_better: bool = False
    # An evaluation value that, no longer finite, means the run diverged, where it is not the
    # selection metric (which always is): a task's test loss, which selects nothing.
    finite_metric: str | None = None
    evaluate_at_start: bool = False  # also score the model before its first step
    evaluate_every_epoch: bool = False  # score at the end of each epoch rather than every eval_every steps

    def steps_per_epoch(self) -> int | None:
        """Steps in one pass over the training data (None: the data has no end)."""
        return None

    @abstractmethod
    def train_loss(self, model: nn.Module, step: int) -> tuple[Tensor, int]:
        """The mean loss over this process's share of the batch of `step` (counted from 0),
        computed with `model` (the job's model, wrapped for several processes), and the
        number of items in that share."""

    def learning_rate_scale(self, step: int) -> float:
        """What the schedule's rate is multiplied by at `step` (1: the schedule's own)."""
        return 1.0

    @abstractmethod
    def evaluate(self) -> dict[str, float]:
        """Scores of `self.model` (in eval mode, without gradients), by name."""

    # What lets a run stopped by `goal_reached` go on when resumed (None: nothing does).
    goal_remedy: str | None = None

    def goal_reached(self, scores: dict[str, float]) -> str | None:
        """Why training stops after an evaluation with these scores, before its budget (a solved
        task), in words that follow "its last evaluation" (naming the command-line option that
        asks for it, where one does); None where it goes on."""
        return None

    def state_tensors(self) -> dict[str, Tensor]:
        """Everything the next batches depend on besides the step (a carried hidden state),
        for --resume. Every process calls it; the tensors are the whole run's."""
        return {}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Restore what `state_tensors` saved."""

    def model_tensors(self) -> dict[str, Tensor]:
        """The weights a checkpoint stores (a tied weight once: checkpoint.model_tensors)."""
        return model_tensors(self.model)

    def load_model_tensors(self, tensors: dict[str, Tensor]) -> None:
        load_weights(self.model, tensors, "the run's last checkpoint")

    def checkpoint_config(self) -> dict:
        """The JSON of a checkpoint, besides the run's progress: its kind, the model's config."""
        return {}

    def checkpoint_files(self) -> dict[str, str]:
        """Text files saved with each checkpoint (name -> content): a vocabulary."""
        return {}

    def data_fingerprint(self) -> dict[str, dict]:
        """What the model trains on, by name: {"bytes", "sha256"} of each text or table
        (files.fingerprint), saved with the run so that --resume refuses other data."""
        return {}

    def check_resumable(self, saved: dict, directory: Path) -> None:
        """Refuse to resume from the checkpoint `directory` (its config: `saved`) when another
        model or other data wrote it."""


def epoch_steps(job: Job) -> int | None:
    """`job.steps_per_epoch()`, refused by name where it is not None or a positive int (0
    failed at a division deep in the loop)."""
    steps = job.steps_per_epoch()
    if steps is None or (isinstance(steps, numbers.Integral) and not isinstance(steps, bool) and steps > 0):
        return None if steps is None else int(steps)  # a numpy integer failed at the checkpoint's JSON
    raise ValueError(f"{type(job).__name__}.steps_per_epoch() must return a positive int (the steps of one pass over "
                     f"the training data) or None (data without an end), got {steps!r}")


def warn_if_one_batch_holds_all(batch_size: int, items: int, what: str) -> None:
    """Warn where `batch_size` is more than the `items` training `what` there are: every step
    then takes all of them, a smaller batch than asked, and an epoch is one step."""
    if batch_size > items:
        warn_at_caller(f"batch_size {batch_size} is more than the {items:,} training {what}: every step takes all "
                       f"{items:,}, one step an epoch (--batch-size)")


def plain_number(value: object) -> int | float | None:
    """`value` as a Python int or float where it is a number (a NumPy number, a tensor or a
    NumPy array of one value, such as `tensor.numpy()` gives); None where it is not one (a bool
    counts as none)."""
    if isinstance(value, Tensor) and value.numel() == 1 and value.dtype != torch.bool:
        value = value.item()
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype != np.bool_:
        value = value.item()
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return None
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def checked_loss(job: Job, result: object) -> tuple[Tensor, int | float]:
    """What `job.train_loss` returned, refused by name where it is not (loss, items): a bare
    loss failed at "iteration over a 0-d tensor", a count of 0 at a division deep in the loop."""
    sequence = isinstance(result, tuple | list)
    items = plain_number(result[1]) if sequence and len(result) == 2 else None
    if items is not None and isinstance(result[0], Tensor) and result[0].numel() == 1 and items > 0:
        loss = result[0]
        if not loss.is_floating_point() or (torch.is_grad_enabled() and not loss.requires_grad):
            raise TypeError(f"{type(job).__name__}.train_loss(model, step) must return a loss computed from the "
                            f"model's parameters, to differentiate; got a {loss.dtype} tensor "
                            f"{'that needs no gradient' if loss.is_floating_point() else 'of integers'} (made "
                            "under torch.no_grad(), detached, or built from numbers?)")
        return loss, items
    got = f"({', '.join(type(part).__name__ for part in result)})" if sequence else type(result).__name__
    if items is not None:
        got += f" with {items!r} items"
    raise TypeError(f"{type(job).__name__}.train_loss(model, step) must return (loss, items): the loss, a tensor of "
                    f"one value, averaged over that many items (> 0; DDP weighs each process's share by it); got {got}")


def checked_scores(job: Job, scores: object) -> dict[str, int | float | None]:
    """What `job.evaluate` returned, its numbers as Python ints and floats (a tensor or NumPy
    number made one, for metrics.csv and results.json; None, a metric this evaluation has not,
    kept; {}, a job with nothing to score on), refused by name where it is not a dict of
    numbers, or scores others but not the selection metric (a misspelt one left every run
    without best/ or early stopping, without a word)."""
    if not isinstance(scores, dict):
        bad = type(scores).__name__
    else:
        values = {name: plain_number(value) for name, value in scores.items()}
        bad = ", ".join(f"{name}: {type(scores[name]).__name__}" for name, value in values.items()
                        if value is None and scores[name] is not None)
        metric = job.selection_metric
        if not bad and values and metric is not None and metric not in values:  # {}: nothing to score on
            raise ValueError(f"{type(job).__name__}.evaluate() returned no {metric!r}, the job's selection_metric (by "
                             f"which best/ is kept and patience counts); it returned {', '.join(map(repr, values))}: "
                             f"return {metric!r} (None at an evaluation without one), or set selection_metric")
        if not bad:
            return values
    raise TypeError(f"{type(job).__name__}.evaluate() must return a dict of metric names to numbers (e.g. "
                    f"{{'val_loss': 1.23}}); got {bad}")
