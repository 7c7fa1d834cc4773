"""The plain LSTM on padded input (lengths=) with gradients, on CPU: torch's kernel, which takes
it packed (engine="native"), against the fused engine, the same layer and weights: the
measurement behind `auto`'s AUTO_NATIVE_UNPADDED (BENCHMARKS.md). torch's backward of packed
input grows with the square of the steps; the fused engine's with the steps.

    python benchmarks/padded_lstm.py                             # the table in BENCHMARKS.md
    python benchmarks/padded_lstm.py --sizes "32,256,1;3,128,2" --steps 100,400 --repeats 3
"""

from __future__ import annotations

import argparse
import platform

import torch
from common import integer_triples, interleaved_medians

import lstmkit
from lstmkit.cli.arguments import positive_int, positive_ints

ENGINES = ("native", "fused")


def seconds(batch: int, hidden: int, layers: int, steps: int, repeats: int) -> list[float]:
    """Median seconds of a forward and backward over `steps` steps on each of ENGINES, the same
    weights, the calls interleaved, the sequences' lengths spread over the last fifth of them."""
    torch.manual_seed(0)
    x = torch.randn(steps, batch, hidden, requires_grad=True)
    lengths = [steps - (steps // 25) * (k % 5) for k in range(batch)]
    layers_by_engine = [lstmkit.LSTM(hidden, hidden, num_layers=layers, bidirectional=layers > 1, engine=engine)
                        for engine in ENGINES]
    for layer in layers_by_engine[1:]:
        layer.load_state_dict(layers_by_engine[0].state_dict())

    def step(layer: lstmkit.LSTM):
        def run():
            layer.zero_grad(set_to_none=True)
            layer(x, lengths=lengths)[0].sum().backward()
        return run

    return interleaved_medians([step(layer) for layer in layers_by_engine], torch.device("cpu"), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--sizes", type=integer_triples("B,H,L"), default=[(32, 256, 1), (3, 128, 2), (8, 64, 1)],
                        help="batch, hidden size and layers (bidirectional from 2), triples separated by ';'")
    parser.add_argument("--steps", type=positive_ints, default=(32, 64, 100, 200, 400))
    parser.add_argument("--repeats", type=positive_int, default=3)
    arguments = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} "
          "thread(s); milliseconds of forward + backward, native (packed) / fused")
    print("| B | H | layers | T | native | fused | native / fused |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for batch, hidden, layers in arguments.sizes:
        for steps in arguments.steps:
            native, fused = seconds(batch, hidden, layers, steps, arguments.repeats)
            print(f"| {batch} | {hidden} | {layers} | {steps} | {native * 1e3:,.0f} | {fused * 1e3:,.0f} | "
                  f"{native / fused:.2f} |", flush=True)


if __name__ == "__main__":
    main()
