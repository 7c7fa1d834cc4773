"""The fused loop with and without the recurrent weight packed for MKL, interleaved.

    python benchmarks/packing.py                                 # the table in BENCHMARKS.md
    python benchmarks/packing.py --cells lstm --steps 4,10,32,50,100 --batch 32 --hidden 512

On CPU in float32 the fused engine packs W_hh once per loop for MKL's packed sgemm
(`lstmkit.engines.fused.products`, from `PACKED_MIN_STEPS` steps on). For each cell, size and
T, this times one forward + backward of a fused layer with packing on and off, alternately
(--repeats rounds of --calls calls each), and prints the medians and their ratio: above 1,
packing is faster.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics

import torch
from common import forward_backward, timed

import lstmkit
from lstmkit.cli.arguments import cell_list, positive_int, positive_ints
from lstmkit.engines.fused import products


def compare(cell: str, batch: int, hidden: int, steps: int, repeats: int, calls: int) -> tuple[float, float]:
    """Median milliseconds per forward + backward, packed and unpacked (packing forced on for
    every T, to show where it pays)."""
    device = torch.device("cpu")
    layer = lstmkit.Recurrent(cell, hidden, hidden, engine="fused")
    x = torch.randn(steps, batch, hidden, requires_grad=True)
    times: dict[bool, list[float]] = {True: [], False: []}
    minimum = products.PACKED_MIN_STEPS
    try:
        products.PACKED_MIN_STEPS = 1
        for packing in (True, False, True, False):  # warm-up
            products.MKL_PACKING = packing
            forward_backward(layer, x)
        for _, packing in itertools.product(range(repeats), (True, False)):
            products.MKL_PACKING = packing
            times[packing].append(timed(lambda: [forward_backward(layer, x) for _ in range(calls)], device) / calls)
    finally:
        products.PACKED_MIN_STEPS, products.MKL_PACKING = minimum, True
    return statistics.median(times[True]) * 1e3, statistics.median(times[False]) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=cell_list, default="lstm,peephole,layernorm")
    parser.add_argument("--batch", type=positive_ints, default="32,64")
    parser.add_argument("--hidden", type=positive_ints, default="256,512")
    parser.add_argument("--steps", type=positive_ints, default="100")
    parser.add_argument("--repeats", type=positive_int, default=6)
    parser.add_argument("--calls", type=positive_int, default=3)
    args = parser.parse_args()
    if not products.MKL_PACKING:
        raise SystemExit("this torch has no MKL packed sgemm (torch.ops.mkl._mkl_linear): nothing to compare")
    print(f"lstmkit {lstmkit.__version__}, torch {torch.__version__}, {platform.machine()}, "
          f"{torch.get_num_threads()} threads; float32, input = hidden, forward + backward")
    print()
    print("| cell | B | H | T | packed ms | unpacked ms | packed speed-up |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    sizes = itertools.product(args.cells, args.batch, args.hidden, args.steps)
    for cell, batch, hidden, steps in sizes:
        packed, unpacked = compare(cell, batch, hidden, steps, args.repeats, args.calls)
        print(f"| {cell} | {batch} | {hidden} | {steps} | {packed:.1f} | {unpacked:.1f} | {unpacked / packed:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
