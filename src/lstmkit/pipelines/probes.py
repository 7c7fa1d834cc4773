"""Look inside the cells: the gradient flowing back through time, and the gates step by step.

`lstmkit probe gradients` measures ||d loss / d h_t|| of the top layer for every step t of
test sequences, for each cell at initialisation and after training: a plain RNN's falls by
orders of magnitude going back in time, an LSTM's cell state carries it. `lstmkit probe
gates` draws a trained model's gate activations and cell state over one test sequence.
"""

from __future__ import annotations

import math
import os
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from lstmkit.caller import warn_at_caller
from lstmkit.cells import make_cell
from lstmkit.extras import extra_imports

with extra_imports("tasks", __name__):
    from lstmkit import plots
from lstmkit.files import check_own_files, claimed_folder, figure_software, write_csv, written_by_lstmkit
from lstmkit.models import SequenceModel
from lstmkit.pipelines.configs import COMPARED_CELLS
from lstmkit.pipelines.longlag import (GRADIENT_COLUMNS, GRADIENT_FILES, TaskTrainingConfig, check_cells, check_task,
                                      default_folder, holds_task_run, load_model, load_task_run, probe_sources,
                                      record_probe_sources, seed_of_test_set, seeded_model, train_cell)
from lstmkit.tasks import Batch, Task
from lstmkit.training import Processes, TrainingDiverged
from lstmkit.training.config import BUDGETS, flag_value
from lstmkit.training.isolation import isolated_from_caller

PROBE_SEQUENCES = 100
GATE_PANELS = {"forget": "forget gate", "input": "input gate", "output": "output gate",
               "reset": "reset gate", "update": "update gate"}


def gradient_profile(model: SequenceModel, task: Task, batch: Batch) -> np.ndarray:
    """Mean over the batch of ||d loss / d h_t|| for every step t that some sequence reaches
    (each sequence's own loss where the task scores one output a sequence; a task scored at
    every step, reber, takes the batch's mean over its steps, so each string weighs by its length
    over the mean's; a sequence contributes only to the steps within its length):
    padding past the longest sequence of the batch, where the tasks of varying length pad to
    T + T/10, holds no gradient to measure. The norms are taken in float64: squared in float32,
    a gradient of 1e-20 per unit would read 0 (its squares underflow, and flush to zero where
    denormals are off, as the commands set)."""
    model.eval()
    gradients = model.hidden_gradients(
        batch.inputs, lambda predictions: task.loss(predictions, batch) * batch.size, batch.lengths
    )
    norms = gradients.double().norm(dim=-1)
    mask = batch.step_mask()
    running = mask.sum(1)
    reached = int(running.nonzero().max()) + 1
    return ((norms * mask).sum(1) / running.clamp(min=1))[:reached].detach().numpy()


def probe_batch(task: Task, seed: int) -> Batch:
    """The sequences the gradient probe runs on: test sequences, from the test seed."""
    return task.sample(PROBE_SEQUENCES, torch.Generator().manual_seed(seed_of_test_set(seed)))


def gradient_profiles(task: Task, trained: dict[str, SequenceModel], seed: int) -> dict[str, dict[str, np.ndarray]]:
    """{"at initialisation": {cell: norms}, "after training": {cell: norms}}: each cell's
    starting point is rebuilt from its own config (its initialisation and forget bias among
    them) and `seed`, as training built it."""
    batch = probe_batch(task, seed)
    return {
        "at initialisation": {cell: gradient_profile(seeded_model(model.config, seed), task, batch)
                              for cell, model in trained.items()},
        "after training": {cell: gradient_profile(model, task, batch) for cell, model in trained.items()},
    }


def write_gradient_profiles(profiles: dict[str, dict[str, np.ndarray]], task: Task, out: str | Path) -> None:
    """gradient_norms.csv (moment, cell, t, norm) and gradient_norms.png."""
    out = Path(out)
    write_csv(
        out / "gradient_norms.csv",
        GRADIENT_COLUMNS,
        [[moment, cell, t, float(norm)] for moment, cells in profiles.items()
         for cell, norms in cells.items() for t, norm in enumerate(norms)],
    )
    plots.gradient_norms(profiles, task.describe(), out / "gradient_norms.png")


def check_gradient_files(out: Path, command: str) -> None:
    """Refuse, before any work, an `out` whose gradient_norms.csv or .png lstmkit did not write.
    An earlier lstmkit's figure carries matplotlib's mark, not lstmkit's: it is taken for
    lstmkit's beside lstmkit's CSV, or in a task's or the demo's folder (whose run wrote it)."""
    table, figure = (out / name for name in GRADIENT_FILES)
    earlier_figure = (figure.is_file() and (figure_software(figure) or "").startswith("Matplotlib")
                      and (written_by_lstmkit(table, GRADIENT_COLUMNS) or holds_task_run(out)))
    check_own_files(out, GRADIENT_FILES[:1] if earlier_figure else GRADIENT_FILES, command, GRADIENT_COLUMNS)


def decay_orders(norms: np.ndarray) -> float:
    """Orders of magnitude the gradient loses from the last step back to the first:
    log10(||d loss / d h_(T-1)|| / ||d loss / d h_0||); inf where none is left at the first
    step, nan where there is none at the last to measure from."""
    last, first = float(norms[-1]), float(norms[0])
    if last <= 0:
        return math.nan
    if first <= 0:
        return math.inf
    return math.log10(last / first)


def gate_panels(model: SequenceModel, task: Task, seed: int) -> tuple[dict[str, np.ndarray], int]:
    """The traced gates (and cell state) of the first test sequence, each (steps, units), and
    that sequence's length."""
    batch = probe_batch(task, seed)
    length = int(batch.lengths[0]) if batch.lengths is not None else batch.inputs.shape[0]
    trace = model.trace(batch.inputs[:length, :1])
    panels = {label: trace.gates[name][-1, :, 0].numpy() for name, label in GATE_PANELS.items() if name in trace.gates}
    if "candidate" in trace.gates:
        panels["candidate"] = trace.gates["candidate"][-1, :, 0].numpy()
    if trace.cell_states is not None:
        panels["cell state"] = trace.cell_states[-1, :, 0].numpy()
    return panels, length


def write_gate_heatmaps(model: SequenceModel, task: Task, seed: int, out: str | Path) -> None:
    """gates_<cell>.png: the heat maps of `gate_panels` (named by the cell, so that probes of
    several cells into one folder keep each figure)."""
    panels, length = gate_panels(model, task, seed)
    if not panels:
        raise ValueError(f"cell {model.config.cell!r} has no gates or cell state to draw")
    title = f"{model.config.cell} on {task.describe()}: one test sequence ({length} steps)"
    plots.gate_heatmaps(panels, title, Path(out) / f"gates_{model.config.cell}.png", gates=GATE_PANELS.values())


@isolated_from_caller
def probe_gradients(out: str | Path | None = None, source: str | Path | None = None, task: Task | None = None,
                    cells: list[str] | None = None, config: TaskTrainingConfig | None = None,
                    ) -> tuple[Task, dict[str, dict[str, np.ndarray]], Path]:
    """`lstmkit probe gradients`: the gradient profiles of the trained models of a `lstmkit
    task` run (`source`), or of `cells` (default rnn, gru, lstm) trained on `task` with
    `config`, against the same cells at initialisation; written to `out` (default
    runs/gradients-NAME-TN). Returns the task, the profiles and the folder."""
    if source is not None:
        if task is not None:
            raise ValueError(f"--from {source} probes the task its run was trained on; --task trains a new run: "
                             "give one or the other")
        refuse_training_settings(config, f"--from {source}")
        run = load_task_run(source, cells)
        task, trained, seed = run.task, run.models, run.seed  # the runs' start
    else:
        if task is None:
            raise ValueError("probe gradients needs --task NAME (to train) or --from DIR (a `lstmkit task` output)")
        config = TaskTrainingConfig() if config is None else config
        cells = cells or list(COMPARED_CELLS)
        check_cells(task, cells, config)  # before any cell trains, as `lstmkit task`
        trained, seed = None, config.seed
    out = default_folder("gradients", task) if out is None else Path(out)
    main = Processes.from_environment().main
    with claimed_folder(out if main else None):  # from its checks to its files, as a task run holds its folder
        check_gradient_files(out, "probe gradients")  # before any training
        if trained is None:
            runs = [train_cell(task, cell, config) for cell in cells]
            if all(run.model is None for run in runs):
                raise TrainingDiverged("\n".join(run.diverged for run in runs))
            for run in runs:  # as in `lstmkit task`: one of the results, not the end of the probe
                if run.model is None:
                    warn_at_caller(f"{run.diverged} {run.cell} has no trained model to probe.")
            trained = {run.cell: run.model for run in runs if run.model is not None}
        profiles = gradient_profiles(task, trained, seed)
        if main:
            write_gradient_profiles(profiles, task, out)
            note_probe_source(out, GRADIENT_FILES, source)
    return task, profiles, out


def refuse_training_settings(config: TaskTrainingConfig | None, probed: str, used: tuple[str, ...] = ()) -> None:
    """A trained model is probed as it was trained: refuse settings (other than the defaults,
    and the `used` ones) that would only shape a new run, naming them as flags."""
    if config is None:
        return
    default = TaskTrainingConfig()
    changed = [field.name for field in fields(config)
               if field.name not in (*used, *BUDGETS) and getattr(config, field.name) != getattr(default, field.name)]
    budget = next(name for name in BUDGETS if getattr(config, name) is not None)  # one is set, the default else
    if (budget, getattr(config, budget)) != config.default_budget:  # `--steps 10` alone leaves time_budget unset
        changed.append(budget)
    changed = [f"--{name.replace('_', '-')} {flag_value(getattr(config, name))}" for name in changed]
    if changed:
        raise ValueError(f"{probed} is probed as it was trained; {', '.join(changed)} would shape a new run, which "
                         "only --task trains: leave them out, or give --task")


def probe_gates(out: str | Path | None = None, checkpoint: str | Path | None = None, task: Task | None = None,
                cell: str | None = None, config: TaskTrainingConfig | None = None) -> Path:
    """`lstmkit probe gates`: the gate heat maps of a saved model (`checkpoint`), or of `cell`
    (default lstm) trained on `task` with `config`, in `out` (default runs/gates-NAME-TN);
    returns the figure's path."""
    config = TaskTrainingConfig() if config is None else config
    if checkpoint is not None:
        if task is not None:
            raise ValueError(f"{checkpoint} is probed on the task it was trained on; --task trains a new model: "
                             "give one or the other")
        if cell is not None:
            raise ValueError(f"{checkpoint} is probed with the cell it was trained with; --cell {cell} is the cell "
                             "--task trains: give one or the other")
        refuse_training_settings(config, str(checkpoint), used=("seed",))  # the seed draws the sequence drawn
        model, task = load_model(checkpoint)
        cell = model.config.cell
    else:
        if task is None:
            raise ValueError("probe gates needs a checkpoint folder (e.g. DIR/models/lstm) or --task NAME to train one")
        check_task(task)
        cell = cell or "lstm"
        if not make_cell(cell).trace_names and not make_cell(cell).has_cell_state:  # before training, not after
            raise ValueError(f"cell {cell!r} has no gates or cell state to draw")
        model = None
    out = default_folder("gates", task) if out is None else Path(out)
    main = Processes.from_environment().main
    with claimed_folder(out if main else None):
        check_own_files(out, [f"gates_{cell}.png"], "probe gates")  # before any training
        if model is None:
            model = train_cell(task, cell, config).trained_model()
        if main:  # rank 0 alone writes, under torchrun
            write_gate_heatmaps(model, task, config.seed, out)
            note_probe_source(out, (f"gates_{cell}.png",), checkpoint)
    return out / f"gates_{cell}.png"


def note_probe_source(out: Path, names: tuple[str, ...], source: str | Path | None) -> None:
    """Record in `out` that the probe files `names` are of the models in `source` (None: the
    probe trained its own), so that a task run replacing those models removes these probes
    and no others (longlag.remove_earlier_probes)."""
    recorded = None
    if source is not None:
        resolved = Path(source).resolve()
        recorded = {"path": str(resolved), "relative": os.path.relpath(resolved, out.resolve())}
    record_probe_sources(out, {**probe_sources(out), **dict.fromkeys(names, recorded)})
