"""Train cells on a long-time-lag task and compare them: `lstmkit task`.

Every cell sees the same training batches (one generator, one seed), starts from the same
seed, and is trained with the same optimiser settings (Adam, gradient clipping by global
norm); LSTM-family cells start with forget-gate bias 1. A cell stops when it solves the task
or its budget (steps or seconds) runs out. The test set has its own seed.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from lstmkit.extras import extra_imports

with extra_imports("tasks", __name__):
    from lstmkit import plots
from lstmkit.cells import make_cell
from lstmkit.checkpoint import load_checkpoint, save_checkpoint
from lstmkit.files import write_csv, write_json
from lstmkit.models import SequenceModel, SequenceModelConfig
from lstmkit.progress import Progress
from lstmkit.tasks import Batch, Task, make_task

TEST_SEED_OFFSET = 10_000  # the test set's seed is the training seed plus this


@dataclass(frozen=True)
class TrainingOptions:
    """How every cell is trained. Defaults follow the long-lag literature (batch 50, Adam 1e-3,
    clip 1)."""

    hidden_size: int = 128
    steps: int | None = None
    time_budget: float | None = 600.0
    batch_size: int = 50
    learning_rate: float = 1e-3
    clip: float = 1.0
    seed: int = 0
    eval_every: int = 100
    test_size: int = 1000
    stop_when_solved: bool = True

    def __post_init__(self) -> None:
        if self.steps is None and self.time_budget is None:
            raise ValueError("training needs a budget: steps or time_budget (seconds), got neither")
        for name in ("hidden_size", "batch_size", "eval_every", "test_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.time_budget is not None and self.time_budget <= 0:
            raise ValueError(f"time_budget must be positive, got {self.time_budget}")
        if self.learning_rate <= 0 or self.clip <= 0:
            raise ValueError(f"learning_rate and clip must be positive, got {self.learning_rate} and {self.clip}")


@dataclass
class CellRun:
    """One cell trained on a task."""

    cell: str
    parameters: int
    test_loss: float
    test_score: float | None
    solved: bool
    steps_to_solve: int | None
    steps: int
    seconds: float
    curve: list[dict] = field(default_factory=list)
    model: SequenceModel | None = None


def build_model(task: Task, cell: str, hidden_size: int, seed: int) -> SequenceModel:
    """The model for `cell` on `task`, initialised from `seed` (the same seed gives the same
    weights, so a probe can rebuild a run's starting point)."""
    torch.manual_seed(seed)
    forget_bias = 1.0 if make_cell(cell).forget_bias_block is not None else None
    config = SequenceModelConfig(cell, task.input_size, hidden_size, task.output_size, task.readout,
                                 forget_bias=forget_bias)
    return SequenceModel(config)


def evaluate(model: SequenceModel, task: Task, batch: Batch) -> tuple[float, float | None]:
    """(loss, score) of `model` on `batch`, in eval mode without gradients."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        predictions = model(batch.inputs, batch.lengths)
        loss = task.loss(predictions, batch).item()
        score = task.score(predictions, batch) if task.score_name else None
    model.train(was_training)
    return loss, score


def train_cell(task: Task, cell: str, options: TrainingOptions, test: Batch | None = None) -> CellRun:
    """Train one cell on `task` until it is solved or the budget runs out."""
    model = build_model(task, cell, options.hidden_size, options.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=options.learning_rate)
    generator = torch.Generator().manual_seed(options.seed)
    test = task.test_set(options.test_size, options.seed + TEST_SEED_OFFSET) if test is None else test
    progress = Progress(f"{task.describe()} {cell}", options.steps)
    start, step, solved_at = time.perf_counter(), 0, None
    curve = []

    def record() -> bool:
        nonlocal solved_at
        loss, score = evaluate(model, task, test)
        curve.append({"step": step, "seconds": time.perf_counter() - start, "test_loss": loss, "test_score": score})
        if solved_at is None and task.solved(loss, score):
            solved_at = step
        return solved_at is not None

    solved = record()
    while not (solved and options.stop_when_solved):
        if options.steps is not None and step >= options.steps:
            break
        if options.time_budget is not None and time.perf_counter() - start >= options.time_budget:
            break
        batch = task.sample(options.batch_size, generator)
        loss = task.loss(model(batch.inputs, batch.lengths), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), options.clip)
        optimizer.step()
        step += 1
        progress.update(step, loss=loss.item())
        if step % options.eval_every == 0:
            solved = record()
    if curve[-1]["step"] != step:
        record()
    final = curve[-1]
    progress.close(step, test_loss=final["test_loss"])
    return CellRun(
        cell=cell,
        parameters=sum(parameter.numel() for parameter in model.parameters()),
        test_loss=final["test_loss"],
        test_score=final["test_score"],
        solved=solved_at is not None,
        steps_to_solve=solved_at,
        steps=step,
        seconds=time.perf_counter() - start,
        curve=curve,
        model=model,
    )


def run_task(task: Task, cells: list[str], options: TrainingOptions, out: str | Path) -> list[CellRun]:
    """Train every cell, then write results.json, curves.csv, learning_curves.png and each
    trained model (models/CELL) to `out`; returns the runs."""
    out = Path(out)
    test = task.test_set(options.test_size, options.seed + TEST_SEED_OFFSET)
    runs = []
    for cell in cells:
        run = train_cell(task, cell, options, test)
        save_model(run.model, task, out / "models" / cell)
        runs.append(run)
    write_results(task, runs, options, out)
    return runs


def write_results(task: Task, runs: list[CellRun], options: TrainingOptions, out: Path) -> None:
    write_json(out / "results.json", {
        "task": task.name,
        "T": getattr(task, "T", None),
        "metric": task.loss_name,
        "baseline": task.baseline(),
        "score": task.score_name,
        "solved_when": task.solved_when,
        "options": asdict(options),
        "cells": {
            run.cell: {
                "test": run.test_loss,
                "score": run.test_score,
                "solved": run.solved,
                "steps_to_solve": run.steps_to_solve,
                "steps": run.steps,
                "seconds": round(run.seconds, 1),
                "params": run.parameters,
            }
            for run in runs
        },
    })
    write_csv(
        out / "curves.csv",
        ["cell", "step", "seconds", "test_loss", "test_score"],
        [[run.cell, point["step"], round(point["seconds"], 2), point["test_loss"], point["test_score"]]
         for run in runs for point in run.curve],
    )
    plots.learning_curves(
        {run.cell: [(point["step"], point["test_loss"]) for point in run.curve] for run in runs},
        task.baseline(), task.title(), f"test {task.loss_name}",
        out / "learning_curves.png",
    )


def results_table(task: Task, runs: list[CellRun]) -> str:
    """The comparison as a fixed-width table."""
    score = task.score_name
    header = ["cell", "params", f"test {task.loss_name}"] + ([f"test {score}"] if score else [])
    header += ["baseline", "solved", "steps to solve", "steps", "seconds"]
    rows = [header]
    for run in runs:
        row = [run.cell, f"{run.parameters:,}", f"{run.test_loss:.4f}"]
        row += [f"{run.test_score:.3f}"] if score else []
        row += [f"{task.baseline():.4f}", "yes" if run.solved else "no",
                "-" if run.steps_to_solve is None else f"{run.steps_to_solve:,}", f"{run.steps:,}", f"{run.seconds:.0f}"]
        rows.append(row)
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)


def save_model(model: SequenceModel, task: Task, directory: Path) -> Path:
    config = {"kind": "sequence_model", "model": model.config.to_dict(),
              "task": {"name": task.name, "T": getattr(task, "T", None)}}
    return save_checkpoint(directory, config, model.state_dict())


def load_model(directory: str | Path) -> tuple[SequenceModel, Task]:
    """A model saved by `lstmkit task` (DIR/models/CELL), and the task it was trained on."""
    config, tensors = load_checkpoint(directory)
    if config.get("kind") != "sequence_model":
        raise ValueError(f"{directory} holds a {config.get('kind')!r} checkpoint, not a model saved by `lstmkit task`")
    model = SequenceModel(SequenceModelConfig(**config["model"]))
    model.load_state_dict(tensors)
    return model, make_task(config["task"]["name"], config["task"]["T"])
