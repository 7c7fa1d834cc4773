"""`lstmkit demo`: why gates matter, in a few minutes on a laptop.

The adding problem at T = 100: a plain RNN cannot carry the first marked value across the
lag, LSTM and GRU can. The demo trains the three cells on the same batches, prints the
comparison, draws the learning curves and the gradient norms through time, and states what
the numbers show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lstmkit.extras import extra_imports

with extra_imports("tasks", __name__):
    from lstmkit.pipelines.longlag import CellRun, TaskInterrupted, results_table, run_task
    from lstmkit.pipelines.probes import (GRADIENT_FILES, check_gradient_files, decay_orders, gradient_profiles,
                                          write_gradient_profiles)
from lstmkit.files import claimed_folder
from lstmkit.pipelines.configs import COMPARED_CELLS, DemoConfig
from lstmkit.tasks import AddingTask, Task
from lstmkit.training import Processes
from lstmkit.training.isolation import isolated_from_caller


@dataclass
class DemoRun:
    """What the demo did: each cell's run, the lines it prints (table, conclusion) and the
    figures it wrote (no gradient figure where every cell diverged)."""

    runs: list[CellRun]
    lines: list[str]
    figures: list[Path]


@isolated_from_caller
def run_demo(out: str | Path, config: DemoConfig = DemoConfig()) -> DemoRun:
    """Train, probe, write the figures to `out`."""
    out = Path(out)
    task = AddingTask(config.T)
    main = Processes.from_environment().main
    with claimed_folder(out if main else None):  # from its checks to its last figure (run_task holds it too)
        check_gradient_files(out, "the demo")  # run_task checks its own files
        runs: list[CellRun] = []
        try:
            runs = run_task(task, list(COMPARED_CELLS), config.training(), out)
            trained = {run.cell: run.model for run in runs if run.model is not None}  # not those that diverged
            profiles = gradient_profiles(task, trained, config.seed) if trained else {}
        except KeyboardInterrupt as interrupt:  # in training, or in the probe after it: the cells' table is shown
            if main:
                remove_gradient_files(out)
            raise interrupt if isinstance(interrupt, TaskInterrupted) else TaskInterrupted(runs) from None
        if main and profiles:  # rank 0 alone writes, under torchrun
            write_gradient_profiles(profiles, task, out)
        elif main:
            remove_gradient_files(out)
    figures = [out / "learning_curves.png"] + ([out / "gradient_norms.png"] if profiles else [])
    lines = conclusion(task, runs, profiles.get("after training", {}), config)
    return DemoRun(runs, [results_table(task, runs), "", *lines], figures)


def remove_gradient_files(out: Path) -> None:
    """Remove an earlier run's gradient profiles (lstmkit's: `check_gradient_files` saw to it),
    which would read as those of a run that drew none."""
    for name in GRADIENT_FILES:
        (out / name).unlink(missing_ok=True)


# A gradient that loses fewer orders of magnitude than this over the sequence still carries the
# first steps' error back: a path the demo can call open.
OPEN_ORDERS = 3.0


def conclusion(task: Task, runs: list[CellRun], trained_profiles: dict[str, np.ndarray],
               config: DemoConfig = DemoConfig()) -> list[str]:
    """Two sentences drawn from the numbers: who solved the task (and which cells the time cap
    stopped short of `config.steps`), and how far the trained cells' gradients reach back in
    time."""
    finished = [run for run in runs if run.diverged_at is None]
    solved = [run for run in finished if run.solved]
    unsolved = [run for run in finished if not run.solved]
    loss = f"test {task.loss_name}"

    def loss_after(run: CellRun) -> str:
        return f"{run.test_loss:.4f} after {run.steps:,} steps"

    if solved and unsolved:
        learning = (f"{names(solved)} solved {task.describe()} ({', '.join(loss_after(run) for run in solved)}); "
                    f"{names(unsolved)} did not ({loss} {', '.join(loss_after(run) for run in unsolved)}, "
                    f"where ignoring the input scores {task.baseline():.4f}).")
    elif solved and len(solved) < len(runs):  # the others diverged
        learning = f"{names(solved)} solved {task.describe()} ({', '.join(loss_after(run) for run in solved)})."
    elif solved:
        learning = f"Every cell solved {task.describe()} ({', '.join(f'{run.cell} {loss_after(run)}' for run in solved)})."
    elif unsolved:
        best = min(unsolved, key=lambda run: run.test_loss)
        learning = (f"No cell solved {task.describe()} within its budget: the best, {best.cell}, reached {loss} "
                    f"{best.test_loss:.4f}, where ignoring the input scores {task.baseline():.4f}.")
    else:
        learning = ""
    capped = [run for run in unsolved if run.steps < config.steps]
    if capped:  # a slower machine than the race was set for: the cells did not run the same race
        needed = max(run.seconds / max(run.steps, 1) for run in capped) * config.steps
        stopped = join([f"{run.cell} at step {run.steps:,}" for run in capped])
        default_race = replace(config, seed=DemoConfig.seed) == DemoConfig()  # the user's race: no machine's fault
        slower = "this machine is slower than the race was set for; " if default_race else ""
        learning += (f" The cap of {config.time_budget:g} s a cell stopped {stopped}, short of its {config.steps:,} "
                     f"steps: {slower}--time-budget {math.ceil(needed * 1.2 / 100) * 100} gives each cell time for "
                     "all of them.")
    diverged = [run for run in runs if run.diverged_at is not None]
    if diverged:
        where = join([f"{run.cell} diverged at step {run.diverged_at:,}" for run in diverged])
        learning = " ".join(filter(None, [learning, f"{where}: no trained model to probe."]))
    if not trained_profiles:
        return [learning]
    orders = {cell: decay_orders(norms) for cell, norms in trained_profiles.items()}
    steps = len(next(iter(trained_profiles.values())))
    changes = []
    for index, (cell, value) in enumerate(orders.items()):
        subject = f"of the trained {cell}" if index == 0 else f"the {cell}'s"
        changes.append(f"{subject} {change(value)}")
    gradients = f"Going back through the {steps} steps, ||d loss / d h_t|| {join(changes)}"
    gated = [cell for cell in orders if cell != "rnn"]
    solved_cells = {run.cell for run in solved}
    if "rnn" in orders and gated and all(orders["rnn"] > orders[cell] + 1 for cell in gated):
        # open where training opened it: at a short lag an untrained LSTM's loses fewer than OPEN_ORDERS
        if all(orders[cell] < OPEN_ORDERS and cell in solved_cells for cell in gated):
            gradients += "; the gates keep a path open that the plain RNN's recurrence closes."
        else:
            gradients += "; it falls less through the gates than through the plain RNN's recurrence."
    else:
        gradients += "."
    return [learning, gradients]


def names(runs: list[CellRun]) -> str:
    return join([run.cell for run in runs])


def join(items: list[str]) -> str:
    """a, b and c."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def change(orders: float) -> str:
    """How a gradient changes going back in time, given the orders of magnitude it loses."""
    if orders == float("inf"):
        return "vanishes (to 0 in float32)"
    if orders < 0:
        return f"grows by 10^{-orders:.1f}"
    return f"falls by 10^{orders:.1f}"
