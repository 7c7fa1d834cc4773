"""`lstmkit cells`, `task`, `probe` and `demo`: the cells and the long-time-lag experiments."""

from __future__ import annotations

import argparse
import contextlib
import textwrap
from collections.abc import Iterator
from pathlib import Path

from lstmkit.cells import ABLATIONS, CELL_NAMES, CELLS, make_cell
from lstmkit.cli.arguments import (
    add_regulariser_arguments, add_setting, add_training_arguments, cell_list, config_from, output_folder,
    positive_float, positive_int,
)
from lstmkit.nn.docs import step_equations
from lstmkit.nn.recurrent import Recurrent
from lstmkit.pipelines.configs import COMPARED_CELLS, DemoConfig, TaskTrainingConfig
from lstmkit.tasks import TASKS, AddingTask, make_task
from lstmkit.training import Processes, TrainingDiverged
from lstmkit.training.device import check_runtime


TASK_DESCRIPTION = textwrap.fill(
    "Train each cell of --cells on the same batches of a long-time-lag task, each until it solves the task or its "
    "budget runs out, and compare them: a table of each cell's test loss, score and steps, against the baseline "
    "(the loss of the best prediction that ignores the input). Writes results.json, curves.csv, "
    "learning_curves.png and models/CELL to --out.", 88,
) + "\n\ntasks:\n" + "\n".join(
    f"  {name:<15}{task.summary}" for name, task in TASKS.items())
GRADIENTS_DESCRIPTION = (
    "Measure ||d loss / d h_t||, how strongly the loss reaches back to step t, for every step of test sequences, "
    "in each cell at initialisation and after training, and print how many orders of magnitude it loses from the "
    "last step back to the first (log10 of their ratio): a plain RNN loses many, a gated cell few. Writes "
    "gradient_norms.csv and gradient_norms.png to --out."
)
DEMO_DESCRIPTION = (
    "Train rnn, gru and lstm on the adding problem (sum two marked values of a long sequence), then measure how "
    "far the loss's gradient reaches back in time in each (as `lstmkit probe gradients`). Prints a table of test "
    "losses and two sentences drawn from the numbers; writes learning_curves.png, gradient_norms.png, "
    "gradient_norms.csv, results.json, curves.csv and models/ to --out."
)


def cells_command(arguments: argparse.Namespace) -> None:
    """Print every cell: gates, state, parameter count at the given sizes, and its equations."""
    print(f"{'cell':<10} {'G':>2}  {'blocks':<8} {'state':<6} {'parameters':>10}   "
          f"(input {arguments.input_size}, hidden {arguments.hidden_size})")
    for name in CELL_NAMES:
        cell = make_cell(name)
        state = "(h, c)" if cell.has_cell_state else "h"
        ablation = "   lstm, " + ", ".join(f"{option}={value}" for option, value in ABLATIONS[name].items()) \
            if name in ABLATIONS else ""
        try:
            layer = Recurrent(name, arguments.input_size, arguments.hidden_size)
            count = f"{sum(parameter.numel() for parameter in layer.parameters()):,}"
        except ValueError as refused:  # a size this cell cannot take: its row says so, and the others follow
            count, ablation = "-", f"   {refused}"
        print(f"{name:<10} {cell.num_gates:>2}  {','.join(cell.weight_blocks):<8} {state:<6} {count:>10}{ablation}")
    if arguments.equations:
        for name, cell_type in CELLS.items():  # an ablation's are the LSTM's, whose docstring names each switch
            print(f"\n{name}:\n  " + step_equations(cell_type()).replace("\n", "\n  "))


def task_of(arguments: argparse.Namespace):
    """The task named by the arguments (`name` or --task), or None (refusing --T without one)."""
    name = getattr(arguments, "name", None) or getattr(arguments, "task", None)
    if name is None and arguments.T is not None:
        raise ValueError(f"--T {arguments.T} is the sequence length of the task --task trains; a trained model is "
                         "probed on its own task: leave --T out, or give --task")
    return None if name is None else make_task(name, arguments.T)


def task_command(arguments: argparse.Namespace) -> None:
    from lstmkit.pipelines.longlag import check_cells, check_task_folder, default_folder, results_table, run_task

    task = task_of(arguments)
    out = Path(arguments.out or default_folder("task", task))
    config = config_from(arguments, TaskTrainingConfig)
    check_cells(task, arguments.cells, config)  # before the run is announced (run_task checks again, for Python callers)
    check_task_folder(out, arguments.cells)  # so is the folder
    check_runtime(config.device, config.precision)  # and the device and the precision
    Processes.from_environment().check_divides(config.batch_size, "batch_size (--batch-size)")  # and the share
    print(f"{task.summary}\n{task.describe()}: solved when {task.solved_when}; "
          f"baseline {task.loss_name} {task.baseline():.4f}", flush=True)
    with finished_cells_shown(task, out):
        runs = run_task(task, arguments.cells, config, out)
    print(results_table(task, runs))
    print(f"\nwrote {out}/results.json, curves.csv, learning_curves.png{written_models(runs)}")
    check_some_trained(runs, out)


@contextlib.contextmanager
def finished_cells_shown(task, out: Path) -> Iterator[None]:
    """On an interrupt (TaskInterrupted), the table of the cells that finished before it, as
    their run alone would show them, and what was written of them; then the interrupt goes on."""
    from lstmkit.pipelines.longlag import TaskInterrupted, results_table

    try:
        yield
    except TaskInterrupted as interrupted:
        if interrupted.runs:
            print(f"{results_table(task, interrupted.runs)}\n\nthe cells finished before the interrupt: wrote "
                  f"{out}/results.json, curves.csv, learning_curves.png{written_models(interrupted.runs)} of them")
        raise


def check_some_trained(runs, out: Path) -> None:
    """Stop with status 1 where every cell diverged: the comparison holds no trained model."""
    if all(run.diverged_at is not None for run in runs):
        raise TrainingDiverged(f"every cell diverged (above); {out} holds their results, without models")


def written_models(runs) -> str:
    """The models/ folder for the "wrote" line, where a run of `runs` kept its model (one that
    diverged keeps none)."""
    return " and models/" if any(run.model is not None for run in runs) else ""


def probe_gradients_command(arguments: argparse.Namespace) -> None:
    from lstmkit.pipelines.probes import decay_orders, probe_gradients

    task, profiles, out = probe_gradients(arguments.out, arguments.source, task_of(arguments), arguments.cells,
                                          config_from(arguments, TaskTrainingConfig))
    for moment, cells in profiles.items():
        falls = ", ".join(f"{cell} {decay_orders(norms):+.1f}" for cell, norms in cells.items())
        print(f"{moment}: orders of magnitude lost from t={len(next(iter(cells.values()))) - 1} back to t=0: {falls}")
    if task.readout == "every":
        print(f"({task.describe()} has a loss at every step, so ||d loss / d h_t|| at t=0 holds that step's own "
              "loss: the orders lost say little of how far a gradient travels; see gradient_norms.png)")
    print(f"wrote {out}/gradient_norms.csv and gradient_norms.png")


def probe_gates_command(arguments: argparse.Namespace) -> None:
    from lstmkit.pipelines.probes import probe_gates

    path = probe_gates(arguments.out, arguments.checkpoint, task_of(arguments), arguments.cell,
                       config_from(arguments, TaskTrainingConfig))
    print(f"wrote {path}")


def demo_command(arguments: argparse.Namespace) -> None:
    from lstmkit.pipelines.demo import run_demo
    from lstmkit.pipelines.longlag import check_task_folder
    from lstmkit.pipelines.probes import check_gradient_files

    out, config = Path(arguments.out), config_from(arguments, DemoConfig)  # checked before it is announced
    check_task_folder(out, list(COMPARED_CELLS))  # so is the folder
    check_gradient_files(out, "the demo")
    print(f"lstmkit demo: rnn, gru and lstm on the adding problem, T={config.T}, "
          f"up to {config.steps:,} step{'s' * (config.steps != 1)} (and {config.time_budget:g} s) each; figures go "
          f"to {out}/", flush=True)
    with finished_cells_shown(AddingTask(config.T), out):
        demo = run_demo(out, config)
    for line in demo.lines:
        print(line)
    print(f"\nfigures: {', '.join(map(str, demo.figures))}")
    check_some_trained(demo.runs, out)


def add_task_training_arguments(parser: argparse.ArgumentParser) -> None:
    add_setting(parser, TaskTrainingConfig, "hidden_size", "hidden units", type=positive_int)
    add_setting(parser, TaskTrainingConfig, "batch_size", "sequences per step", type=positive_int)
    add_setting(parser, TaskTrainingConfig, "test_size", "test sequences", type=positive_int)
    add_regulariser_arguments(parser, TaskTrainingConfig)
    add_training_arguments(parser, TaskTrainingConfig, budget_of="each cell")


def add_task_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--task", required=required, choices=list(TASKS), help="the task")
    parser.add_argument("--T", type=positive_int, help="sequence length / time lag (the task's default if omitted)")


def trains_a_task(arguments: argparse.Namespace) -> bool:
    """Whether a probe trains (with --task) or only loads what a run saved (--from)."""
    return arguments.task is not None


def add_task_commands(commands) -> None:
    cells = commands.add_parser("cells", help="list the cells, their gates, sizes and equations")
    cells.add_argument("--input-size", type=positive_int, default=128, help="input features (default 128)")
    cells.add_argument("--hidden-size", type=positive_int, default=128, help="hidden features (default 128)")
    cells.add_argument("--equations", action="store_true", help="also print each cell's equations")
    cells.set_defaults(run=cells_command)

    task = commands.add_parser("task", help="train cells on a long-time-lag task and compare them",
                               description=TASK_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    task.add_argument("name", choices=list(TASKS), help="the task")
    task.add_argument("--T", type=positive_int, help="sequence length / time lag (the task's default if omitted)")
    task.add_argument("--cells", type=cell_list, default=list(COMPARED_CELLS),
                      help=f"comma-separated, from {','.join(CELL_NAMES)} (default {','.join(COMPARED_CELLS)}; nig, "
                      "nfg, nog, niaf and noaf are the LSTM's gate ablations, `lstmkit cells`)")
    task.add_argument("--out", type=output_folder, help="output folder (default runs/task-NAME-TN)")
    add_task_training_arguments(task)
    task.set_defaults(run=task_command, extra="tasks")

    probe = commands.add_parser("probe", help="look inside trained cells")
    probe.set_defaults(extra="tasks")
    probes = probe.add_subparsers(dest="probe", required=True)
    gradients = probes.add_parser("gradients", help="||d loss / d h_t|| through time, at initialisation and trained",
                                  description=GRADIENTS_DESCRIPTION)
    add_task_arguments(gradients, required=False)
    gradients.add_argument("--cells", type=cell_list,
                           help=f"comma-separated, from {','.join(CELL_NAMES)} (default: rnn,gru,lstm, or all in "
                           "--from)")
    gradients.add_argument("--from", dest="source", help="a `lstmkit task` output folder whose trained models to probe")
    gradients.add_argument("--out", type=output_folder, help="output folder (default runs/gradients-NAME-TN)")
    add_task_training_arguments(gradients)
    gradients.set_defaults(run=probe_gradients_command, trains=trains_a_task)

    gates = probes.add_parser("gates", help="heat maps of gates and cell state over one test sequence")
    gates.add_argument("checkpoint", nargs="?", help="a trained model folder, e.g. runs/task-adding-T200/models/lstm")
    add_task_arguments(gates, required=False)
    gates.add_argument("--cell", choices=list(CELL_NAMES), help="cell to train with --task (default lstm)")
    gates.add_argument("--out", type=output_folder, help="output folder (default runs/gates-NAME-TN)")
    add_task_training_arguments(gates)
    gates.set_defaults(run=probe_gates_command, trains=trains_a_task)

    demo = commands.add_parser("demo", help="rnn vs gru vs lstm on the adding problem, in a few minutes",
                               description=DEMO_DESCRIPTION)
    demo.add_argument("--out", default="runs/demo", type=output_folder, help="output folder (default runs/demo)")
    add_setting(demo, DemoConfig, "T", "sequence length", type=positive_int)
    add_setting(demo, DemoConfig, "steps", "steps of training per cell", type=positive_int)
    add_setting(demo, DemoConfig, "time_budget", "seconds of training per cell at most", type=positive_float)
    add_setting(demo, DemoConfig, "seed", "seed", type=int)
    demo.set_defaults(run=demo_command, extra="tasks", trains=True)
