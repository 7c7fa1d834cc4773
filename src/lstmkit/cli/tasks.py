"""`lstmkit cells`, `task`, `probe` and `demo`: the cells and the long-time-lag experiments."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lstmkit.cells import CELLS
from lstmkit.cli.arguments import cell_list, positive_float, positive_int
from lstmkit.nn.docs import step_equations
from lstmkit.nn.recurrent import Recurrent
from lstmkit.tasks import TASKS, make_task


def cells_command(arguments: argparse.Namespace) -> None:
    """Print every cell: gates, state, parameter count at the given sizes, and its equations."""
    print(f"{'cell':<10} {'G':>2}  {'blocks':<8} {'state':<6} {'parameters':>10}   "
          f"(input {arguments.input_size}, hidden {arguments.hidden_size})")
    for name, cell_type in CELLS.items():
        cell = cell_type()
        layer = Recurrent(name, arguments.input_size, arguments.hidden_size)
        count = sum(parameter.numel() for parameter in layer.parameters())
        state = "(h, c)" if cell.has_cell_state else "h"
        print(f"{name:<10} {cell.num_gates:>2}  {','.join(cell.weight_blocks):<8} {state:<6} {count:>10,}")
    if arguments.equations:
        for name, cell_type in CELLS.items():
            print(f"\n{name}:\n  " + step_equations(cell_type()).replace("\n", "\n  "))


def training_options(arguments: argparse.Namespace):
    from lstmkit.pipelines.longlag import TrainingOptions

    budget = arguments.time_budget if arguments.steps is None else None
    return TrainingOptions(
        hidden_size=arguments.hidden, steps=arguments.steps, time_budget=budget, batch_size=arguments.batch,
        learning_rate=arguments.lr, clip=arguments.clip, seed=arguments.seed, eval_every=arguments.eval_every,
        test_size=arguments.test_size,
    )


def default_out(prefix: str, task_name: str, steps: int | None) -> Path:
    return Path("runs") / (f"{prefix}-{task_name}" + (f"-T{steps}" if steps is not None else ""))


def task_command(arguments: argparse.Namespace) -> None:
    from lstmkit.pipelines.longlag import results_table, run_task

    task = make_task(arguments.name, arguments.T)
    out = arguments.out or default_out("task", task.name, getattr(task, "T", None))
    print(f"{task.summary}\n{task.describe()}: solved when {task.solved_when}; "
          f"baseline {task.loss_name} {task.baseline():.4f}", flush=True)
    runs = run_task(task, arguments.cells, training_options(arguments), out)
    print(results_table(task, runs))
    print(f"\nwrote {out}/results.json, curves.csv, learning_curves.png and models/")


def probe_gradients_command(arguments: argparse.Namespace) -> None:
    from lstmkit.pipelines.longlag import load_model, train_cell
    from lstmkit.pipelines.probes import decay_orders, gradient_profiles, write_gradient_profiles

    seed = arguments.seed
    if arguments.source is not None:
        source = Path(arguments.source)
        models_dir = source / "models"
        if not models_dir.is_dir():
            raise FileNotFoundError(f"{source} is not a `lstmkit task` output folder: it has no models/ folder")
        cells = arguments.cells or sorted(path.name for path in models_dir.iterdir() if path.is_dir())
        loaded = {cell: load_model(models_dir / cell) for cell in cells}
        task = next(iter(loaded.values()))[1]
        trained = {cell: model for cell, (model, _) in loaded.items()}
        hidden_size = next(iter(trained.values())).config.hidden_size
        seed = json.loads((source / "results.json").read_text())["options"]["seed"]  # the runs' starting point
    else:
        if arguments.task is None:
            raise ValueError("probe gradients needs --task NAME (to train) or --from DIR (a `lstmkit task` output)")
        task = make_task(arguments.task, arguments.T)
        options = training_options(arguments)
        trained = {cell: train_cell(task, cell, options).model for cell in arguments.cells or ["rnn", "gru", "lstm"]}
        hidden_size = options.hidden_size
    out = arguments.out or default_out("gradients", task.name, getattr(task, "T", None))
    profiles = gradient_profiles(task, trained, hidden_size, seed)
    write_gradient_profiles(profiles, task, out)
    for moment, cells in profiles.items():
        falls = ", ".join(f"{cell} {decay_orders(norms):+.1f}" for cell, norms in cells.items())
        print(f"{moment}: orders of magnitude lost from t={len(next(iter(cells.values()))) - 1} back to t=0: {falls}")
    print(f"wrote {out}/gradient_norms.csv and gradient_norms.png")


def probe_gates_command(arguments: argparse.Namespace) -> None:
    from lstmkit.pipelines.longlag import load_model, train_cell
    from lstmkit.pipelines.probes import write_gate_heatmaps

    if arguments.checkpoint is not None:
        model, task = load_model(arguments.checkpoint)
    else:
        if arguments.task is None:
            raise ValueError("probe gates needs a checkpoint folder (e.g. DIR/models/lstm) or --task NAME to train one")
        task = make_task(arguments.task, arguments.T)
        model = train_cell(task, arguments.cell, training_options(arguments)).model
    out = arguments.out or default_out("gates", task.name, getattr(task, "T", None))
    path = write_gate_heatmaps(model, task, arguments.seed, out)
    print(f"wrote {path}")


def demo_command(arguments: argparse.Namespace) -> None:
    from lstmkit.pipelines.demo import run_demo

    out = Path(arguments.out)
    print(f"lstmkit demo: rnn, gru and lstm on the adding problem, T={arguments.T}, "
          f"up to {arguments.time_budget:g} s each; figures go to {out}/", flush=True)
    for line in run_demo(out, arguments.T, arguments.time_budget, arguments.seed):
        print(line)
    print(f"\nfigures: {out}/learning_curves.png, {out}/gradient_norms.png")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hidden", type=positive_int, default=128, help="hidden units (default 128)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=positive_int, help="training steps per cell")
    budget.add_argument("--time-budget", type=positive_float, default=600.0,
                        help="seconds of training per cell (default 600; a cell stops early once solved)")
    parser.add_argument("--batch", type=positive_int, default=50, help="sequences per step (default 50)")
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate (default 1e-3)")
    parser.add_argument("--clip", type=positive_float, default=1.0, help="gradient-norm clip (default 1.0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the weights (default 0)")
    parser.add_argument("--eval-every", type=positive_int, default=100, help="steps between test evaluations")
    parser.add_argument("--test-size", type=positive_int, default=1000, help="test sequences (default 1000)")


def add_task_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--task", required=required, choices=list(TASKS), help="the task")
    parser.add_argument("--T", type=positive_int, help="sequence length / time lag (the task's default if omitted)")


def add_task_commands(commands) -> None:
    cells = commands.add_parser("cells", help="list the cells, their gates, sizes and equations")
    cells.add_argument("--input-size", type=positive_int, default=128, help="input features (default 128)")
    cells.add_argument("--hidden-size", type=positive_int, default=128, help="hidden features (default 128)")
    cells.add_argument("--equations", action="store_true", help="also print each cell's equations")
    cells.set_defaults(run=cells_command)

    task = commands.add_parser("task", help="train cells on a long-time-lag task and compare them")
    task.add_argument("name", choices=list(TASKS), help="the task")
    task.add_argument("--T", type=positive_int, help="sequence length / time lag (the task's default if omitted)")
    task.add_argument("--cells", type=cell_list, default=["rnn", "gru", "lstm"], help="comma-separated (default rnn,gru,lstm)")
    task.add_argument("--out", help="output folder (default runs/task-NAME-TN)")
    add_training_arguments(task)
    task.set_defaults(run=task_command, extra="tasks")

    probe = commands.add_parser("probe", help="look inside trained cells")
    probe.set_defaults(extra="tasks")
    probes = probe.add_subparsers(dest="probe", required=True)
    gradients = probes.add_parser("gradients", help="||d loss / d h_t|| through time, at initialisation and trained")
    add_task_arguments(gradients, required=False)
    gradients.add_argument("--cells", type=cell_list, help="comma-separated (default: rnn,gru,lstm, or all in --from)")
    gradients.add_argument("--from", dest="source", help="a `lstmkit task` output folder whose trained models to probe")
    gradients.add_argument("--out", help="output folder (default runs/gradients-NAME-TN)")
    add_training_arguments(gradients)
    gradients.set_defaults(run=probe_gradients_command)

    gates = probes.add_parser("gates", help="heat maps of gates and cell state over one test sequence")
    gates.add_argument("checkpoint", nargs="?", help="a trained model folder, e.g. runs/task-adding-T200/models/lstm")
    add_task_arguments(gates, required=False)
    gates.add_argument("--cell", choices=list(CELLS), default="lstm", help="cell to train with --task (default lstm)")
    gates.add_argument("--out", help="output folder (default runs/gates-NAME-TN)")
    add_training_arguments(gates)
    gates.set_defaults(run=probe_gates_command)

    demo = commands.add_parser("demo", help="rnn vs gru vs lstm on the adding problem, in a few minutes")
    demo.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    demo.add_argument("--T", type=positive_int, default=100, help="sequence length (default 100)")
    demo.add_argument("--time-budget", type=positive_float, default=90.0, help="seconds per cell (default 90)")
    demo.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    demo.set_defaults(run=demo_command, extra="tasks")
