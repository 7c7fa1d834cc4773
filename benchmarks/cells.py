"""Speed of the cell modules in a decoder-like loop against torch.nn's cells, forward + backward.

    python benchmarks/cells.py                      # B 64, H 512, 100 steps, 15 rounds
    python benchmarks/cells.py --batch 32 --hidden 256 --repeats 7
    python benchmarks/cells.py --device cuda --engines fused,triton   # on a GPU
    python benchmarks/cells.py --batch 1 --hidden 32 --no-grad   # an agent acting, a greedy decoder

Each row runs the loop a decoder runs: per step one call of the cell on that step's input and
the state it returned, the h of every step summed into the loss, then one backward (input =
hidden, float32); with --no-grad, the forward alone under torch.no_grad(). The configurations
are warmed up, then timed interleaved (one run of each in turn, --repeats rounds), and the
table reports medians: milliseconds per loop, steps per second, and the ratio to the torch.nn
cell of the same family in the same rounds (torch.nn.LSTMCell for the LSTM variants, GRUCell
and RNNCell for theirs). Interleaving and medians keep the comparison fair on a machine shared
with other work.
"""

from __future__ import annotations

import argparse
import platform
import statistics
from dataclasses import dataclass, field

import torch
from common import engine_names, host_microseconds_per_op, timed, torch_device

import lstmkit
from lstmkit.cells import make_cell
from lstmkit.cli.arguments import positive_int
from lstmkit.engines import ENGINES


@dataclass
class Config:
    """One row: a cell module, its name, and the row it is compared with."""

    name: str
    cell: torch.nn.Module
    baseline: str
    times: list[float] = field(default_factory=list)


def configs(hidden: int, engines: list[str], device: torch.device) -> list[Config]:
    """torch.nn's three cells, their drop-ins on the auto engine and on each of `engines`, and
    every LSTM variant on each of `engines`, input = hidden."""
    variants = [("PeepholeLSTMCell", lstmkit.PeepholeLSTMCell, {}), ("CIFGLSTMCell", lstmkit.CIFGLSTMCell, {}),
                ("LayerNormLSTMCell", lstmkit.LayerNormLSTMCell, {})]
    for option in ("input_gate", "forget_gate", "output_gate", "input_activation", "output_activation"):
        variants.append((f"LSTMCell({option}=False)", lstmkit.LSTMCell, {option: False}))
    lstm_rows = [
        ("torch.nn.LSTMCell", torch.nn.LSTMCell(hidden, hidden)),
        ("lstmkit.LSTMCell (auto: native)", lstmkit.LSTMCell(hidden, hidden)),
        *((f"lstmkit.LSTMCell, engine={engine}", lstmkit.LSTMCell(hidden, hidden, engine=engine))
          for engine in engines),
        *((f"{name} ({engine})", module_type(hidden, hidden, engine=engine, **options))
          for engine in engines for name, module_type, options in variants),
    ]
    rows = [Config(name, cell, "torch.nn.LSTMCell") for name, cell in lstm_rows]
    for torch_type, lstmkit_type in ((torch.nn.GRUCell, lstmkit.GRUCell), (torch.nn.RNNCell, lstmkit.RNNCell)):
        baseline = f"torch.nn.{torch_type.__name__}"
        rows += [
            Config(baseline, torch_type(hidden, hidden), baseline),
            Config(f"lstmkit.{lstmkit_type.__name__} (auto: native)", lstmkit_type(hidden, hidden), baseline),
            *(Config(f"lstmkit.{lstmkit_type.__name__}, engine={engine}", lstmkit_type(hidden, hidden, engine=engine),
                     baseline) for engine in engines),
        ]
    for row in rows:
        row.cell.to(device)
    return rows


def decoder_loop(cell: torch.nn.Module, inputs: torch.Tensor, backward: bool = True) -> None:
    """Forward over every step from a zero state, then (with `backward`) backward of the
    summed outputs."""
    cell.zero_grad(set_to_none=True)
    state, outputs = None, []
    for x_t in inputs:
        state = cell(x_t, state)
        outputs.append(state[0] if isinstance(state, tuple) else state)
    if backward:
        torch.stack(outputs).sum().backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=positive_int, default=64)
    parser.add_argument("--hidden", type=positive_int, default=512)
    parser.add_argument("--steps", type=positive_int, default=100)
    parser.add_argument("--repeats", type=positive_int, default=15)
    parser.add_argument("--warmup", type=positive_int, default=2)
    parser.add_argument("--device", type=torch_device, default="cpu", help="cpu or cuda")
    parser.add_argument("--engines", type=engine_names, default="fused",
                        help="the engines of the lstmkit rows besides auto, comma-separated (fused, triton, reference)")
    parser.add_argument("--no-grad", action="store_true", help="time the forward alone, under torch.no_grad()")
    args = parser.parse_args()
    device = args.device
    for engine in args.engines:
        reason = None if engine == "auto" else ENGINES[engine].unsupported(make_cell("lstm"), device)
        if engine == "native":
            reason = "the variants have no native kernel, and the auto rows run the plain cells on it already"
        if reason is not None:
            parser.error(f"argument --engines: {engine} cannot run here: {reason}")
    torch.manual_seed(0)
    inputs = torch.randn(args.steps, args.batch, args.hidden, device=device)
    rows = configs(args.hidden, args.engines, device)
    with torch.set_grad_enabled(not args.no_grad):
        for config in rows:
            for _ in range(args.warmup):
                decoder_loop(config.cell, inputs, backward=not args.no_grad)
        for _ in range(args.repeats):
            for config in rows:
                config.times.append(timed(lambda: decoder_loop(config.cell, inputs, backward=not args.no_grad), device))

    medians = {config.name: statistics.median(config.times) for config in rows}
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(
        f"lstmkit {lstmkit.__version__}, torch {torch.__version__}, {platform.machine()}, "
        f"{where}, host {host_microseconds_per_op(device):.1f} µs per operator; B {args.batch}, "
        f"H = I {args.hidden}, {args.steps} steps, {'forward under no_grad' if args.no_grad else 'forward + backward'}"
        ", "
        f"median of {args.repeats} interleaved rounds"
    )
    print()
    print("| cell | ms | steps/s | × torch.nn | compared with |")
    print("| --- | ---: | ---: | ---: | --- |")
    for config in rows:
        seconds = medians[config.name]
        print(
            f"| {config.name} | {seconds * 1e3:.1f} | {args.steps / seconds:,.0f} | "
            f"{medians[config.baseline] / seconds:.2f} | {config.baseline} |"
        )


if __name__ == "__main__":
    main()
