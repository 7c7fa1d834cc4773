"""Peak memory of one call without gradients, per cell and engine, against torch.nn.LSTM: the
growth of the process's peak RSS over one call on a long sequence, each case in a fresh
process, after a warm-up call (imports and one-time costs not counted). README, "Engines".

    python benchmarks/inference_memory.py [--steps 1000 --batch 16 --hidden 256]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys

import torch

import lstmkit

CASES = {
    "torch.nn.LSTM": lambda size: torch.nn.LSTM(size, size),
    "lstm native": lambda size: lstmkit.LSTM(size, size, engine="native"),
    "lstm fused": lambda size: lstmkit.LSTM(size, size, engine="fused"),
    "lstm reference": lambda size: lstmkit.LSTM(size, size, engine="reference"),
    "peephole fused": lambda size: lstmkit.PeepholeLSTM(size, size, engine="fused"),
    "peephole reference": lambda size: lstmkit.PeepholeLSTM(size, size, engine="reference"),
    "layernorm fused": lambda size: lstmkit.LayerNormLSTM(size, size, engine="fused"),
    "layernorm reference": lambda size: lstmkit.LayerNormLSTM(size, size, engine="reference"),
}


def peak_megabytes() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def one_case(name: str, steps: int, batch: int, hidden: int, gradients: bool) -> float:
    """The peak RSS growth of one call of case `name`, in MB (run in a process of its own)."""
    layer = CASES[name](hidden)
    with torch.no_grad():
        layer(torch.randn(2, 1, hidden))
    layer(torch.randn(2, 1, hidden))[0].sum().backward()
    x = torch.randn(steps, batch, hidden)
    before = peak_megabytes()
    with torch.set_grad_enabled(gradients):
        layer(x)
    return peak_megabytes() - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--gradients", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    sizes = ["--steps", str(arguments.steps), "--batch", str(arguments.batch), "--hidden", str(arguments.hidden)]
    if arguments.case:
        print(one_case(arguments.case, arguments.steps, arguments.batch, arguments.hidden, arguments.gradients))
        return
    print(f"T {arguments.steps}, B {arguments.batch}, input = hidden = {arguments.hidden}, float32: peak RSS growth "
          "of one call, MB")
    print("| layer | without gradients | with gradients |\n| --- | ---: | ---: |")
    for name in CASES:
        row = []
        for gradients in (False, True):
            command = [sys.executable, __file__, *sizes, "--case", name] + (["--gradients"] if gradients else [])
            row.append(float(subprocess.run(command, check=True, capture_output=True, text=True).stdout))
        print(f"| {name} | {row[0]:.1f} | {row[1]:.1f} |")


if __name__ == "__main__":
    main()
