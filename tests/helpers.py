"""Shared by the tests: float64 comparisons, torch.nn twins, gradients of everything."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

import lstmkit
from lstmkit.cli import main
from lstmkit.training import Job

TOLERANCE = 1e-10  # relative error allowed between float64 computations of the same math
SCALE_FLOOR = 1e-6  # below this, a tensor is compared absolutely (to 1e-16): it is rounding noise

TORCH_LAYERS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def relative_error(actual: Tensor, expected: Tensor) -> float:
    """max |actual - expected| / max(max |expected|, SCALE_FLOOR).

    The floor keeps a mathematically zero result (e.g. the LayerNorm gain gradient of a single
    feature) from turning two engines' rounding noise, ~1e-17 each, into a large ratio.
    """
    assert actual.shape == expected.shape, f"shapes differ: {actual.shape} vs {expected.shape}"
    if not expected.numel():
        return 0.0
    scale = max(expected.abs().max().item(), SCALE_FLOOR)
    return (actual - expected).abs().max().item() / scale


def assert_close(actual: Tensor, expected: Tensor, what: str = "", tolerance: float = TOLERANCE) -> None:
    error = relative_error(actual, expected)
    assert error < tolerance, f"{what}: relative error {error:.3e} >= {tolerance:.0e}"


def flatten_outputs(result: object) -> list[Tensor]:
    """Every tensor in a layer's (output, state) result, in order; packed output as its data."""
    if isinstance(result, PackedSequence):
        return [result.data]
    if isinstance(result, Tensor):
        return [result]
    return [tensor for item in result for tensor in flatten_outputs(item)]


def weighted_sum(tensors: list[Tensor], seed: int = 1) -> Tensor:
    """A scalar that depends on every element of every tensor with distinct weights, so that
    its gradient checks every output (sum() alone would hide sign and permutation errors)."""
    generator = torch.Generator().manual_seed(seed)
    total = 0
    for tensor in tensors:
        weights = torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype)
        total = total + (tensor * weights).sum()
    return total


def gradients(result: object, leaves: dict[str, Tensor]) -> dict[str, Tensor]:
    """d weighted_sum(result) / d leaf for every leaf (zeros where it does not depend)."""
    loss = weighted_sum(flatten_outputs(result))
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True, retain_graph=True)
    return {
        name: torch.zeros_like(leaf) if grad is None else grad
        for (name, leaf), grad in zip(leaves.items(), grads, strict=True)
    }


def assert_same_run(actual: object, expected: object, actual_leaves: dict, expected_leaves: dict) -> None:
    """Outputs, states and the gradient of every leaf agree to TOLERANCE."""
    actual_tensors, expected_tensors = flatten_outputs(actual), flatten_outputs(expected)
    assert len(actual_tensors) == len(expected_tensors)
    for index, (a, e) in enumerate(zip(actual_tensors, expected_tensors, strict=True)):
        assert_close(a, e, f"output tensor {index}")
    actual_grads = gradients(actual, actual_leaves)
    expected_grads = gradients(expected, expected_leaves)
    assert actual_grads.keys() == expected_grads.keys()
    for name in expected_grads:
        assert_close(actual_grads[name], expected_grads[name], f"gradient of {name}")


def torch_twin(layer: lstmkit.Recurrent) -> nn.Module:
    """The torch.nn layer with the same configuration and weights as `layer`."""
    options = dict(
        num_layers=layer.num_layers,
        bias=layer.bias,
        batch_first=layer.batch_first,
        dropout=layer.dropout,
        bidirectional=layer.bidirectional,
        dtype=layer.weight_ih_l0.dtype,
    )
    if layer.cell.name == "lstm":
        options["proj_size"] = layer.proj_size
    if layer.cell.name == "rnn":
        options["nonlinearity"] = layer.cell.nonlinearity
    twin = TORCH_LAYERS[layer.cell.name](layer.input_size, layer.hidden_size, **options)
    twin.load_state_dict(layer.state_dict())
    return twin


def state_leaves(hx: object) -> dict[str, Tensor]:
    """The initial-state tensors as named leaves."""
    if hx is None:
        return {}
    if isinstance(hx, Tensor):
        return {"h0": hx}
    return {"h0": hx[0], "c0": hx[1]}


def random_state(layer: lstmkit.Recurrent, batch_size: int | None, seed: int = 2):
    """A random initial state for `layer` (unbatched when batch_size is None), requiring grad."""
    generator = torch.Generator().manual_seed(seed)
    layers_directions = layer.num_layers * layer.num_directions
    batch = () if batch_size is None else (batch_size,)
    dtype = layer.weight_ih_l0.dtype
    h0 = torch.randn(layers_directions, *batch, layer.output_size, generator=generator, dtype=dtype)
    h0.requires_grad_()
    if not layer.cell.has_cell_state:
        return h0
    c0 = torch.randn(layers_directions, *batch, layer.hidden_size, generator=generator, dtype=dtype)
    return h0, c0.requires_grad_()


# Every cell and option the library has: (name, options), with a readable id.
ALL_CELLS = [
    ("rnn", {"nonlinearity": "tanh"}),
    ("rnn", {"nonlinearity": "relu"}),
    ("lstm", {}),
    ("lstm", {"input_gate": False}),
    ("lstm", {"forget_gate": False}),
    ("lstm", {"output_gate": False}),
    ("lstm", {"input_activation": False}),
    ("lstm", {"output_activation": False}),
    ("gru", {}),
    ("peephole", {}),
    ("cifg", {}),
    ("layernorm", {}),
]


def cell_id(cell: str, options: dict) -> str:
    return "-".join([cell, *(f"{key}={value}" for key, value in options.items())])


ALL_CELL_PARAMS = [pytest.param(cell, options, id=cell_id(cell, options)) for cell, options in ALL_CELLS]

# The Triton engine's tests run where triton is installed (the dev extra brings it): on CPU
# tensors in Triton's interpreter (conftest.py sets TRITON_INTERPRET=1).
triton_installed = pytest.mark.skipif(
    lstmkit.engines.ENGINES["triton"].unavailable() is not None, reason="triton is not installed"
)


class Killed(Exception):
    """Stands for a training process dying: nothing after it runs, nothing is saved."""


def dies_at_step(monkeypatch, step: int) -> None:
    """Make the training core die (raise Killed) when it checks its budget at `step`; the run's
    last checkpoint is then the one of the evaluation before it. monkeypatch.undo() revives it."""
    from lstmkit.training import loop

    real = loop.budget_spent

    def dies(config, progress, step_limit):
        if progress.step == step:
            raise Killed
        return real(config, progress, step_limit)

    monkeypatch.setattr(loop, "budget_spent", dies)


def straight_and_resumed(monkeypatch, train, tmp_path: Path, step: int) -> tuple:
    """The runs of `train(out, resume)`: one uninterrupted in tmp_path/straight, and one killed
    when it checks its budget at `step` (`dies_at_step`), then resumed, in tmp_path/resumed."""
    straight = train(tmp_path / "straight", False)
    dies_at_step(monkeypatch, step)
    with pytest.raises(Killed):
        train(tmp_path / "resumed", False)
    monkeypatch.undo()
    return straight, train(tmp_path / "resumed", True)


class Quadratic(Job):
    """One weight w, loss (w − target_s)² with the target of step s: hand-checkable Adam steps."""

    def __init__(self, targets: list[float], validation_target: float) -> None:
        self.model = nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            self.model.weight.fill_(0.0)
        self.targets, self.validation_target, self.label = targets, validation_target, "quadratic"
        self.steps_seen: list[int] = []

    def steps_per_epoch(self) -> int:
        return len(self.targets)

    def train_loss(self, model, step):
        self.steps_seen.append(step)
        return (model.weight[0, 0] - self.targets[step % len(self.targets)]) ** 2, 1

    def evaluate(self):
        return {"val_loss": (self.model.weight[0, 0].item() - self.validation_target) ** 2}


def run_cli(arguments: list[str], capsys) -> tuple[int, str, str]:
    """The `lstmkit` command run in this process: its exit code, stdout and stderr."""
    try:
        code = main(arguments)
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def record_forecast_budgets(monkeypatch) -> tuple[list, list]:
    """The time budget of every Trainer the forecasting pipeline builds, and the seconds each
    one's run trained, in order."""
    from lstmkit.pipelines import forecast

    budgets, seconds = [], []

    class RecordingTrainer(forecast.Trainer):
        def __init__(self, config):
            budgets.append(config.time_budget)
            super().__init__(config)

        def run(self, *arguments, **options):
            run = super().run(*arguments, **options)
            seconds.append(run.seconds)
            return run

    monkeypatch.setattr(forecast, "Trainer", RecordingTrainer)
    return budgets, seconds


def interrupt_task_in(monkeypatch, stopped: str) -> None:
    """Make `lstmkit task` meet Ctrl-C (KeyboardInterrupt) as it starts training cell `stopped`."""
    from lstmkit.pipelines import longlag

    trained = longlag.train_cell

    def interrupted(task, cell, *arguments):
        if cell == stopped:
            raise KeyboardInterrupt
        return trained(task, cell, *arguments)

    monkeypatch.setattr(longlag, "train_cell", interrupted)


def record_engines(monkeypatch) -> list[str]:
    """The names of the engines the layers' calls run on, in order, from now on."""
    from lstmkit.engines import select_engine
    from lstmkit.nn import recurrent

    chosen: list[str] = []

    def recording(*arguments, **options):
        engine = select_engine(*arguments, **options)
        chosen.append(engine.name)
        return engine

    monkeypatch.setattr(recurrent, "select_engine", recording)
    return chosen


@contextlib.contextmanager
def held_by_another_run(folder: Path) -> Iterator[None]:
    """`folder` held as another lstmkit run holds its --out (`claimed_folder`), in a process of
    its own: in this process, a folder it holds already is taken as held."""
    code = ("import sys; from pathlib import Path; from lstmkit.files import claimed_folder\n"
            "with claimed_folder(Path(sys.argv[1])):\n    print('held', flush=True)\n    sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        yield
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=120) == 0


def another_run_could_claim(folder: Path) -> bool:
    """Whether another process's `claimed_folder` would take `folder` now."""
    code = ("import sys; from pathlib import Path; from lstmkit.files import claimed_folder\n"
            "try:\n    with claimed_folder(Path(sys.argv[1])): pass\nexcept ValueError: sys.exit(3)")
    status = subprocess.run([sys.executable, "-c", code, str(folder)]).returncode
    assert status in (0, 3)
    return status == 0


def assert_keeps_random_state(call) -> None:
    """`call()` (a pipeline's training) leaves torch's global generator as it found it: the
    caller's next draw is the one it would have been without the call (a run's own seeding
    used to replace it, so that every later unseeded draw followed the run's seed)."""
    torch.manual_seed(1234)
    expected = torch.randn(4)
    torch.manual_seed(1234)
    call()
    assert torch.equal(torch.randn(4), expected)
