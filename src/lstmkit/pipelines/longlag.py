"""Train cells on a long-time-lag task and compare them: `lstmkit task`.

Every cell sees the same training batches (one generator, one seed), starts from the same
seed, and is trained in the training core with the same settings (Adam, gradient clipping by
global norm); LSTM-family cells start with forget-gate bias 1. A cell stops when it solves the
task or its budget (steps or seconds) runs out. The test set has its own seed.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from lstmkit.extras import extra_imports

with extra_imports("tasks", __name__):
    from lstmkit import plots
from lstmkit.caller import warn_at_caller
from lstmkit.cells import CELL_NAMES, make_cell
from lstmkit.checkpoint import (CONFIG_FILE, WEIGHTS_FILE, CheckpointError, CheckpointKind, check_replaceable,
                                checkpoint_folder, held_kind, load_model_checkpoint, save_checkpoint)
from lstmkit.files import (
    check_nothing_overwritten, check_output_folder, claimed_folder, remove_tree, write_csv, write_json,
    written_by_lstmkit,
)
from lstmkit.models import SequenceModel, SequenceModelConfig
from lstmkit.models.modes import evaluating
from lstmkit.nn.regularisers import init_names
from lstmkit.pipelines.configs import TaskTrainingConfig
from lstmkit.tasks import TASKS, Batch, Task, make_task
from lstmkit.training.config import offset_seed
from lstmkit.training.progress import seconds_text
from lstmkit.training import Job, Processes, Trainer, TrainingDiverged
from lstmkit.training.isolation import isolated_from_caller

TEST_SEED_OFFSET = 10_000  # the test set's seed is the training seed plus this (`seed_of_test_set`)
# What `probe gradients` and the demo write in a folder: the gradient profiles of the models there.
GRADIENT_FILES = ("gradient_norms.csv", "gradient_norms.png")
GRADIENT_COLUMNS = ("moment", "cell", "t", "norm")
# Beside a probe's files: which models each is of, so that a task run replacing its models
# removes the probes of those alone (remove_earlier_probes).
PROBE_SOURCES = ".lstmkit-probes.json"

__all__ = ["CellRun", "TaskRunModels", "TaskTrainingConfig", "build_model", "default_folder", "evaluate",
           "load_model", "load_task_run", "results_table", "run_task", "train_cell"]


@dataclass
class CellRun:
    """One cell trained on a task. `solved`: whether an evaluation solved it, the first at step
    `steps_to_solve`; `test_loss` and `test_score` are the last evaluation's, which, where the
    run went on after it solved (stop_when_solved=False), may no longer meet the criterion."""

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
    runtime: dict = field(default_factory=dict)
    diverged_at: int | None = None
    """The step at which its loss stopped being finite, if it did (its `test_loss` is then NaN
    and it has no `model`); `diverged` says where and what was tried."""
    diverged: str = ""

    def trained_model(self) -> SequenceModel:
        """The trained model, or, for a run that diverged, TrainingDiverged with its message."""
        if self.model is None:
            raise TrainingDiverged(self.diverged)
        return self.model


def build_model(task: Task, cell: str, hidden_size: int, seed: int, regularisers: dict | None = None
                ) -> SequenceModel:
    """The model for `cell` on `task`, initialised from `seed` (the same seed gives the same
    weights, so a probe can rebuild a run's starting point); a forget gate's bias starts at 1
    unless chrono initialisation sets it. `regularisers`: keywords of lstmkit.Recurrent."""
    regularisers = regularisers or {}
    chrono = "chrono" in regularisers.get("init", ())
    forget_bias = 1.0 if make_cell(cell).forget_bias_block is not None and not chrono else None
    config = SequenceModelConfig(cell, task.input_size, hidden_size, task.output_size, task.readout,
                                 forget_bias=forget_bias, regularisers=regularisers)
    return seeded_model(config, seed)


def seeded_model(config: SequenceModelConfig, seed: int) -> SequenceModel:
    """The model of `config` with the weights `seed` draws: a run's starting point, which a
    probe rebuilds from a trained model's config."""
    torch.manual_seed(seed)
    return SequenceModel(config)


def evaluate(model: SequenceModel, task: Task, batch: Batch) -> tuple[float, float | None]:
    """(loss, score) of `model` on `batch`, in eval mode without gradients."""
    device = next(model.parameters()).device
    batch = Batch(batch.inputs.to(device), batch.targets.to(device),
                  None if batch.lengths is None else batch.lengths.to(device))
    with torch.no_grad(), evaluating(model):
        predictions = model(batch.inputs, batch.lengths).float()
        loss = task.loss(predictions, batch).item()
        score = task.score(predictions, batch) if task.score_name else None
    return loss, score


class TaskJob(Job):
    """Fresh sequences every step from one seeded generator; several processes each draw the
    same global batch and train on their share of its sequences."""

    item = "sequence"
    selection_metric = None
    finite_metric = "test_loss"  # an overflowing test loss (inf) is a diverged cell too
    evaluate_at_start = True

    def __init__(self, task: Task, cell: str, config: TaskTrainingConfig, test: Batch, processes: Processes,
                 device: torch.device) -> None:
        processes.check_divides(config.batch_size, "batch_size (--batch-size)")
        self.task, self.config, self.test, self.processes, self.device = task, config, test, processes, device
        length = sequence_length(task)
        self.model = build_model(task, cell, config.hidden_size, config.seed, config.regularisers(length))
        self.generator = torch.Generator().manual_seed(config.seed)
        self.label = f"{task.describe()} {cell}"

    def train_loss(self, model, step: int) -> tuple[Tensor, int]:
        whole = self.task.sample(self.config.batch_size, self.generator)
        batch = self.share(whole)
        loss = self.task.loss(model(batch.inputs, batch.lengths).float(), batch)
        if batch.lengths is not None and self.task.readout == "every":  # a mean over valid steps, which the
            # trainer weighs by sequences: reweighted (a loss read at each sequence's end is a mean over sequences)
            loss = loss * (int(batch.lengths.sum()) / int(whole.lengths.sum())) * (whole.size / batch.size)
        return loss, batch.size

    def share(self, batch: Batch) -> Batch:
        """This process's sequences of `batch`, on the device."""
        target_dim = 0 if self.task.readout == "last" else 1
        shard = self.processes.shard
        return Batch(shard(batch.inputs, 1).to(self.device), shard(batch.targets, target_dim).to(self.device),
                     None if batch.lengths is None else shard(batch.lengths).to(self.device))

    def evaluate(self) -> dict[str, float]:
        loss, score = evaluate(self.model, self.task, self.test)
        return {"test_loss": loss, "test_score": score}

    def goal_reached(self, scores: dict[str, float]) -> str | None:
        if self.config.stop_when_solved and self.task.solved(scores["test_loss"], scores["test_score"]):
            return f"solved the task ({self.task.solved_when})"
        return None

    def state_tensors(self) -> dict[str, Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        self.generator.set_state(tensors["generator"])


def seed_of_test_set(seed: int) -> int:
    """The seed of a task's test sequences: the training seed plus TEST_SEED_OFFSET, wrapped into
    torch's seeds, [0, 2**64)."""
    return offset_seed(seed, TEST_SEED_OFFSET)


@isolated_from_caller
def train_cell(task: Task, cell: str, config: TaskTrainingConfig, test: Batch | None = None,
               trainer: Trainer | None = None) -> CellRun:
    """Train one cell on `task` until it is solved or the budget runs out. A run whose loss
    stops being finite is returned too, as diverged (`CellRun.diverged_at`), without a model:
    in a comparison, a cell that diverges is one of the results."""
    check_task(task)
    trainer = Trainer(config) if trainer is None else trainer
    test = task.test_set(config.test_size, seed_of_test_set(config.seed)) if test is None else test
    job = TaskJob(task, cell, config, test, trainer.processes, trainer.device)
    parameters = sum(parameter.numel() for parameter in job.model.parameters())
    try:
        run = trainer.run(job)
        history, steps, seconds, model, diverged = run.history, run.steps, run.seconds, job.model.cpu(), None
    except TrainingDiverged as error:
        history, steps, seconds, model, diverged = error.history, error.step, error.seconds, None, error
    curve = task_curve(history)
    final = curve[-1] if diverged is None else {"test_loss": math.nan, "test_score": None}  # its model is lost
    solved_at = solved_step(task, curve)
    return CellRun(
        cell=cell,
        parameters=parameters,
        test_loss=final["test_loss"],
        test_score=final["test_score"],
        solved=solved_at is not None,
        steps_to_solve=solved_at,
        steps=steps,
        seconds=seconds,
        curve=curve,
        model=model,
        runtime=trainer.runtime(),
        diverged_at=None if diverged is None else diverged.step,
        diverged="" if diverged is None else str(diverged),
    )


def task_curve(history: list[dict]) -> list[dict]:
    """A task run's learning curve: the step, seconds and test scores of each evaluation."""
    return [{"step": row["step"], "seconds": row["seconds"], "test_loss": row["test_loss"],
             "test_score": row["test_score"]} for row in history]


def solved_step(task: Task, curve: list[dict]) -> int | None:
    """The step of the first evaluation of `curve` that solved `task`, if any."""
    return next((point["step"] for point in curve if task.solved(point["test_loss"], point["test_score"])), None)


def default_folder(prefix: str, task: Task) -> Path:
    """runs/PREFIX-NAME-TN, where a command's results go unless told otherwise."""
    steps = getattr(task, "T", None)
    return Path("runs") / (f"{prefix}-{task.name}" + (f"-T{steps}" if steps is not None else ""))


class TaskInterrupted(KeyboardInterrupt):
    """Ctrl-C during `run_task`, with the runs of the cells that finished before it (`runs`)."""

    def __init__(self, runs: list[CellRun]) -> None:
        super().__init__(f"interrupted after {len(runs)} finished cell{'s' * (len(runs) != 1)}")
        self.runs = runs


def check_task_folder(out: Path, cells: list[str]) -> None:
    """Refuse, before any training, a folder whose files a run of `cells` would overwrite: an
    earlier run's are replaced; anyone else's are kept (a folder in models/ save_model would
    refuse after a cell's training included)."""
    check_output_folder(out, option="")  # a checkpoint, or a folder in one: the CLI checked --out as it parsed it
    if not holds_task_run(out):
        check_nothing_overwritten(out, ("results.json", "curves.csv", "learning_curves.png", "models"),
                                  "no run of lstmkit task or demo (its results.json, if any, is not one's)")
    for cell in cells:
        check_replaceable(out / "models" / cell, {CONFIG_FILE, WEIGHTS_FILE}, SEQUENCE_MODEL.name)


@isolated_from_caller
def run_task(task: Task, cells: list[str], config: TaskTrainingConfig, out: str | Path | None = None) -> list[CellRun]:
    """Train every cell, writing as each finishes results.json, curves.csv and
    learning_curves.png of the cells finished so far, and its trained model (models/CELL), to
    `out` (default runs/task-NAME-TN; rank 0 alone, under torchrun): a run interrupted in one
    cell keeps those before it, and raises TaskInterrupted with their runs. Returns the runs."""
    check_cells(task, cells, config)
    out = default_folder("task", task) if out is None else Path(out)
    check_task_folder(out, cells)
    trainer = Trainer(config)
    test = task.test_set(config.test_size, seed_of_test_set(config.seed))
    runs: list[CellRun] = []
    recorded = 0  # the runs whose files are written
    with claimed_folder(out if trainer.processes.main else None):  # as a training run holds its own (files.py)
        replaced = set(task_results(out)["cells"]) if holds_task_run(out) else set()  # an earlier run's cells
        try:
            for cell in cells:
                runs.append(train_cell(task, cell, config, test, trainer))
                if runs[-1].diverged_at is not None:
                    trainer.announce(f"{runs[-1].diverged}\n{cell} is reported as diverged, without a model"
                                     + ("; the other cells train on" if cell != cells[-1] else ""))
                if trainer.processes.main:
                    record_runs(task, runs, config, out, replaced)
                recorded = len(runs)
        except KeyboardInterrupt:  # in a cell's training, or between two: the finished cells' files are whole
            if trainer.processes.main and recorded < len(runs):
                record_runs(task, runs, config, out, replaced)
            raise TaskInterrupted(runs) from None
    return runs


def record_runs(task: Task, runs: list[CellRun], config: TaskTrainingConfig, out: Path,
                replaced: set[str] = frozenset()) -> None:
    """Write the files of `runs` so far: the last one's model, results.json, curves.csv and the
    figure. Where this run replaces an earlier one in `out` (of the cells `replaced`), that
    run's models of cells these did not keep go, and so do lstmkit's probes of its models,
    which would read as probes of these; other models in models/ (a user's, lstmkit's or not)
    stay."""
    if replaced and len(runs) == 1:
        remove_earlier_probes(out)
    if runs[-1].model is not None:
        save_model(runs[-1].model, task, out / "models" / runs[-1].cell)
    kept = {run.cell for run in runs if run.model is not None}
    for earlier in existing_entries(out / "models"):
        if earlier.name in replaced - kept and held_kind(earlier) == SEQUENCE_MODEL.name:  # that run's, not the user's
            remove_tree(earlier)
    write_results(task, runs, config, out)


def remove_earlier_probes(out: Path) -> None:
    """Remove the probes lstmkit wrote of the models an earlier run left in `out`: those in
    `out` itself (the demo's gradient profiles, `probe … --out RUN`), and those in its folders
    one level down (`probe gradients --from RUN --out RUN/probe`, as the README does) but the
    ones their PROBE_SOURCES record says are of other models (trained by `--task`, or another
    run's); a user's files of those names stay. A folder this removal empties goes too. A
    folder that holds a task run of its own (whose probes are of its models), or is a link, is
    left alone."""
    inner = [entry for entry in existing_entries(out)
             if entry.is_dir() and not entry.is_symlink() and entry.name != "models" and not holds_task_run(entry)]
    for folder in [out, *inner]:
        with contextlib.suppress(OSError):  # a folder this process may not read or write in: the run's files first
            sources = probe_sources(folder)
            named = [*(folder / name for name in GRADIENT_FILES), *sorted(folder.glob("gates_*.png"))]
            probes = [path for path in named if written_by_lstmkit(path, GRADIENT_COLUMNS)
                      and (folder == out or probed_in(folder, sources, path.name, out))]
            for path in probes:
                path.unlink()
                sources.pop(path.name, None)
            if probes:
                record_probe_sources(folder, sources)
            if probes and folder != out and not any(folder.iterdir()):
                folder.rmdir()


def probed_in(folder: Path, sources: dict, name: str, out: Path) -> bool:
    """Whether the probe `name` in `folder` is of the task run in `out` or one of its models, by
    `folder`'s record: the models' folder where it still exists, else the one at the recorded
    place relative to the probe (the run and its probes moved together). A probe the record
    does not name (an earlier lstmkit wrote none) is taken to be; one it names oddly is not."""
    if name not in sources:
        return True
    recorded = sources[name]
    if not (isinstance(recorded, dict) and isinstance(recorded.get("path"), str)
            and isinstance(recorded.get("relative"), str)):  # None: models the probe trained itself
        return False
    source = Path(recorded["path"]) if Path(recorded["path"]).exists() else (folder / recorded["relative"]).resolve()
    return source == out.resolve() or source.is_relative_to((out / "models").resolve())


def probe_sources(folder: Path) -> dict:
    """The PROBE_SOURCES record of `folder`: probe file name -> {"path": the folder of the
    models it is of, "relative": that folder relative to `folder`}, or None for models the probe
    trained itself ({} where there is none)."""
    try:
        sources = json.loads((folder / PROBE_SOURCES).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return sources if isinstance(sources, dict) else {}


def record_probe_sources(folder: Path, sources: dict) -> None:
    """Write `folder`'s PROBE_SOURCES record, or remove it where it records nothing."""
    if sources:
        write_json(folder / PROBE_SOURCES, sources)
    else:
        (folder / PROBE_SOURCES).unlink(missing_ok=True)


def existing_entries(folder: Path) -> list[Path]:
    """The entries of `folder`, none where it does not exist (every cell so far diverged)."""
    return list(folder.iterdir()) if folder.is_dir() else []


# Sequences drawn to find how long a task's are: Reber strings run from 9 steps to over 30, and
# one string (10 steps at seed 0) set chrono's longest dependency for them all.
LENGTH_SAMPLE = 100


def sequence_length(task: Task) -> int:
    """The length of the task's sequences (that chrono initialisation prepares for by default):
    the longest of LENGTH_SAMPLE drawn, where they differ."""
    return task.sample(LENGTH_SAMPLE, torch.Generator().manual_seed(0)).inputs.shape[0]


def check_task(task: Task) -> None:
    """Refuse a `task` that is no Task (its name, as the CLI takes it), naming how to make one."""
    if not isinstance(task, Task):
        raise TypeError(f"task must be a Task, such as make_task('adding', T=100) (lstmkit.tasks), got "
                        f"{type(task).__name__} {task!r:.60}")


def check_cells(task: Task, cells: list[str], config: TaskTrainingConfig) -> None:
    """Refuse, before any cell trains, a setting one of `cells` cannot take (init chrono on a
    cell without a forget gate, zoneout of c on one without a cell state, a hidden size of 1 on
    layernorm), naming the cell to
    leave out; `cells` itself must be a list of distinct cell names, and `task` a Task."""
    check_task(task)
    if not isinstance(cells, (list, tuple)) or not all(isinstance(cell, str) for cell in cells):
        raise TypeError(f"cells must be a list of cell names (e.g. ['rnn', 'lstm']), got {type(cells).__name__} "
                        f"{cells!r}")
    unknown = [cell for cell in cells if cell not in CELL_NAMES]
    if not cells or unknown:
        raise ValueError(f"cells must name cells from {', '.join(CELL_NAMES)}, got {list(cells)!r}")
    twice = sorted({cell for cell in cells if cells.count(cell) > 1})
    if twice:
        raise ValueError(f"cells must name each cell once, got {list(cells)!r} ({', '.join(twice)} more than once)")
    length = sequence_length(task)
    init_names(config.init)  # whatever the cell
    config.check_chrono_max(length)
    for cell in cells:
        try:
            config.check_regularisers(cell, length)
            make_cell(cell).check_hidden_size(config.hidden_size)
        except ValueError as error:
            if len(cells) == 1:
                raise ValueError(f"{error}: leave that setting out, or choose a cell that takes it (--cells)") from None
            raise ValueError(f"{error}: leave {cell} out of the cells ({', '.join(cells)}; --cells)") from None


def holds_task_run(out: Path) -> bool:
    """Whether `out` holds the results.json of a `lstmkit task` run (`task_results`)."""
    try:
        task_results(out)
    except (OSError, ValueError):
        return False
    return True


def write_results(task: Task, runs: list[CellRun], config: TaskTrainingConfig, out: Path) -> None:
    write_json(out / "results.json", {
        "task": task.name,
        "T": getattr(task, "T", None),
        "metric": task.loss_name,
        "baseline": task.baseline(),
        "score": task.score_name,
        "solved_when": task.solved_when,
        **runs[0].runtime,
        "config": asdict(config),
        "cells": {
            run.cell: {
                "test": run.test_loss,
                "score": run.test_score,
                "solved": run.solved,
                "diverged_at": run.diverged_at,
                "steps_to_solve": run.steps_to_solve,
                "steps": run.steps,
                "seconds": round(run.seconds, 3),
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
        loss = f"{run.test_loss:.4f}" if abs(run.test_loss) < 1e6 else f"{run.test_loss:.4g}"  # not 22 digits
        row = [run.cell, f"{run.parameters:,}", loss]
        row += [f"{run.test_score:.3f}" if run.test_score is not None else "-"] if score else []
        solved = "yes" if run.solved else "no"
        row += [f"{task.baseline():.4f}", solved if run.diverged_at is None else f"{solved}, diverged",
                "-" if run.steps_to_solve is None else f"{run.steps_to_solve:,}", f"{run.steps:,}",
                seconds_text(run.seconds)]
        rows.append(row)
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)


def save_model(model: SequenceModel, task: Task, directory: Path) -> Path:
    config = {"kind": "sequence_model", "model": model.config.to_dict(),
              "task": {"name": task.name, "T": getattr(task, "T", None)}}
    return save_checkpoint(directory, config, model.state_dict())


SEQUENCE_MODEL = CheckpointKind(
    "sequence_model", "a model saved by `lstmkit task`", "model", ("input_size", "hidden_size", "output_size"),
    lambda section: SequenceModel(SequenceModelConfig(**section)),
)


@isolated_from_caller  # a load builds the model, drawing initial weights it replaces
def load_model(directory: str | Path) -> tuple[SequenceModel, Task]:
    """A model saved by `lstmkit task` (DIR/models/CELL), and the task it was trained on (a
    run folder of another command is read as the checkpoint it holds, whose kind is refused)."""
    directory = checkpoint_folder(directory)
    config, model = load_model_checkpoint(directory, SEQUENCE_MODEL)
    return model, saved_task(directory, config, model.config)


def saved_task(directory: Path, config: dict, model: SequenceModelConfig) -> Task:
    """The task a checkpoint's config names, refused by name where it names none this lstmkit
    knows, or one whose inputs, outputs or readout are not its model's (an edited file)."""
    try:
        task = make_task(config["task"]["name"], config["task"]["T"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{directory / CONFIG_FILE} names no task this lstmkit can build: {error!r}") from None
    if (task.input_size, task.output_size, task.readout) != (model.input_size, model.output_size, model.readout):
        raise CheckpointError(
            f"{directory / CONFIG_FILE} names the task {task.describe()}, of {task.input_size} inputs, "
            f"{task.output_size} outputs and readout {task.readout!r}, but its model has {model.input_size}, "
            f"{model.output_size} and {model.readout!r}")
    return task


@dataclass
class TaskRunModels:
    """The trained models of a `lstmkit task` run folder, with the task and the settings they
    were trained with."""

    task: Task
    models: dict[str, SequenceModel]
    seed: int


@isolated_from_caller
def load_task_run(directory: str | Path, cells: list[str] | None = None) -> TaskRunModels:
    """The models of a `lstmkit task` output folder (DIR/models/CELL; `cells`, or all of them)
    and the seed the run started from (from its results.json)."""
    directory = Path(directory)
    models_dir = directory / "models"
    if not directory.exists():
        raise FileNotFoundError(f"{directory} does not exist (expected a `lstmkit task` output folder)")
    results = task_results(directory)
    diverged = {cell: row.get("diverged_at") for cell, row in results["cells"].items()
                if isinstance(row, dict) and row.get("diverged_at") is not None}
    trained = [cell for cell in results["cells"] if cell not in diverged]
    missing = [cell for cell in cells or () if cell not in trained]
    lost = "; ".join(f"{cell} diverged at step {step}" for cell, step in diverged.items())
    if missing or not trained:
        kept = f"its run trained {', '.join(trained)}" if trained else "its run kept no model"
        raise ValueError(f"{directory} holds no {', '.join(missing or diverged)} model: {kept}"
                         + (f" ({lost})" if lost else ""))
    if not models_dir.is_dir():
        raise FileNotFoundError(f"{directory} is not a `lstmkit task` output folder: it has no models/ folder")
    if cells is None and diverged:
        warn_at_caller(f"{lost} in the run of {directory}: no model of {'it' if len(diverged) == 1 else 'them'} "
                       "to load")
    cells = cells or trained  # the run's own, whatever else the folder holds
    task = make_task(results["task"], results.get("T"))
    models = {}
    for cell in cells:
        model, trained_on = load_model(models_dir / cell)
        if model.config.cell != cell or trained_on != task:
            raise ValueError(f"{models_dir / cell} holds a {model.config.cell} model of {trained_on.describe()}, not "
                             f"the {cell} model of {task.describe()} that the run of {directory} trained (its "
                             "results.json): a model copied in from another run? `probe gates` takes a model's own "
                             "folder, --task trains afresh")
        models[cell] = model
    return TaskRunModels(task, models, run_settings(results)["seed"])


def run_settings(results: object) -> object:
    """The settings a task run's results hold ("options": before lstmkit's training core)."""
    return results.get("config", results.get("options")) if isinstance(results, dict) else None


def task_results(directory: Path) -> dict:
    """The results.json of the `lstmkit task` run in `directory`, refused by name where it is
    not one: its trained cells (a non-empty object) and its settings (with the seed)."""
    path = directory / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a `lstmkit task` output folder: it has no results.json")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"{path} is not the results of a `lstmkit task` run: it is not JSON ({error})") from None
    settings = run_settings(results)
    if not (isinstance(results, dict) and results.get("task") in TASKS
            and (results.get("T") is None or isinstance(results["T"], int))
            and isinstance(results.get("cells"), dict) and results["cells"]
            and isinstance(settings, dict) and isinstance(settings.get("seed"), int)):
        shown = json.dumps(results)
        raise ValueError(f"{path} is not the results of a `lstmkit task` run: expected an object with its \"task\" "
                         f"and \"T\", its trained \"cells\" and its \"config\" (with the seed), got "
                         f"{shown[:80]}{'...' * (len(shown) > 80)}")
    return results
