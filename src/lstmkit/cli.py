"""The `lstmkit` command: argument parsing only; the work lives in the library."""

from __future__ import annotations

import argparse
import sys

from lstmkit.cells import CELLS
from lstmkit.nn.docs import step_equations
from lstmkit.nn.recurrent import Recurrent


def cells_command(arguments: argparse.Namespace) -> None:
    """Print every cell: gates, state, parameter count at the given sizes, and its equations."""
    print(f"{'cell':<10} {'G':>2}  {'blocks':<8} {'state':<6} {'parameters':>10}   (input {arguments.input_size}, hidden {arguments.hidden_size})")
    for name, cell_type in CELLS.items():
        cell = cell_type()
        layer = Recurrent(name, arguments.input_size, arguments.hidden_size)
        count = sum(parameter.numel() for parameter in layer.parameters())
        state = "(h, c)" if cell.has_cell_state else "h"
        print(f"{name:<10} {cell.num_gates:>2}  {','.join(cell.weight_blocks):<8} {state:<6} {count:>10,}")
    if arguments.equations:
        for name, cell_type in CELLS.items():
            print(f"\n{name}:\n  " + step_equations(cell_type()).replace("\n", "\n  "))


def positive_int(text: str) -> int:
    """argparse type: an integer greater than zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lstmkit", description="The LSTM family for PyTorch.")
    commands = parser.add_subparsers(dest="command", required=True)
    cells = commands.add_parser("cells", help="list the cells, their gates, sizes and equations")
    cells.add_argument("--input-size", type=positive_int, default=128, help="input features (default 128)")
    cells.add_argument("--hidden-size", type=positive_int, default=128, help="hidden features (default 128)")
    cells.add_argument("--equations", action="store_true", help="also print each cell's equations")
    cells.set_defaults(run=cells_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        arguments.run(arguments)
    except (ValueError, TypeError) as error:  # lstmkit's checks name what was expected and received
        parser.exit(2, f"lstmkit: error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
