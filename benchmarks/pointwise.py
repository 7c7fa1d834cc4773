"""Would a compiled point-wise pass speed up the fused engine's step on this CPU?

    python benchmarks/pointwise.py [--cells lstm,peephole,layernorm] [--sizes 1x8,32x256,64x512]

Times one forward point-wise step of a cell's fused kernel (`FusedKernel.forward`, the work
between two recurrent products) in the engine's own buffers (views of (T, B, G*H) gates), two
ways, interleaved, median µs per step over 100 steps:
  eager     the kernel as the engine runs it: one ATen call per line;
  compiled  the same function under torch.compile (Inductor writes one C++ loop nest over
            the step, vectorised, compiled at first call), called once per step as the
            engine would, guards and all.
At 1 x 8 both are per-call cost alone; at the larger sizes the difference is what fusing the
lines into one pass would save.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from lstmkit.cells import LayerWeights, make_cell
from lstmkit.cli.arguments import cell_list, positive_int
from lstmkit.engines.fused.kernel import FusedStep
from lstmkit.engines.fused.layer import KERNELS

STEPS = 100


def kernel_steps(cell_name: str, batch: int, hidden: int) -> tuple[object, list[FusedStep], LayerWeights]:
    """The cell's kernel, the 100 steps' views of freshly filled engine buffers, and weights."""
    cell = make_cell(cell_name)
    kernel = KERNELS[cell.name](cell)  # an ablation (nfg) runs the kernel of its family (lstm)
    gates = torch.randn(STEPS, batch, cell.num_gates * hidden)
    recs = [None] * STEPS if kernel.recurrence == "gates" else torch.randn_like(gates).unbind(0)
    hs, cs = torch.randn(STEPS + 1, batch, hidden), torch.randn(STEPS + 1, batch, hidden)
    tape = {name: torch.empty(STEPS, batch, size) for name, size in kernel.tape(hidden).items()}
    blocks = kernel.cut_blocks(gates)  # the named gate blocks, as the engine cuts them
    steps = [FusedStep(gates[t], recs[t], hs[t], cs[t], hs[t + 1], cs[t + 1], {k: v[t] for k, v in tape.items()},
                       hs[t + 1], blocks={name: block[t] for name, block in blocks.items()}) for t in range(STEPS)]
    extra = {parameter.name: torch.randn(hidden if parameter.size == "hidden" else cell.num_gates * hidden)
             for parameter in cell.extra_parameters}
    bias_hh = torch.randn(cell.num_gates * hidden)
    weights = LayerWeights(torch.empty(0), torch.empty(0), None, bias_hh, None, extra)
    return kernel, steps, weights


def sizes(text: str) -> list[tuple[int, int]]:
    """argparse type: B x H pairs of positive integers, comma-separated (1x8,32x256)."""
    try:
        pairs = [tuple(positive_int(part) for part in size.split("x")) for size in text.split(",")]
    except argparse.ArgumentTypeError:
        pairs = []
    if not pairs or any(len(pair) != 2 for pair in pairs):
        raise argparse.ArgumentTypeError(f"expected B x H pairs of positive integers, e.g. 1x8,32x256, got {text!r}")
    return pairs


def per_step_us(forward, steps: list[FusedStep], weights: LayerWeights) -> float:
    start = time.perf_counter()
    for step in steps:
        forward(step, weights)
    return (time.perf_counter() - start) / len(steps) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=cell_list, default="lstm,peephole,layernorm")
    parser.add_argument("--sizes", type=sizes, default="1x8,32x256,64x512", help="B x H pairs, comma-separated")
    parser.add_argument("--repeats", type=positive_int, default=9)
    arguments = parser.parse_args()
    torch.manual_seed(0)
    warnings.filterwarnings("ignore", "Dynamo detected a call to a `functools")  # the kernels' caches: pure, safe
    torch.set_flush_denormal(True)  # repeated steps over the same buffers must not drift into denormals
    print(f"forward point-wise step of the fused kernel, float32, {torch.get_num_threads()} threads; "
          f"µs per step, median of {arguments.repeats}\n")
    print("| cell | B | H | eager | compiled | compiled / eager |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for cell_name in arguments.cells:
        for batch, hidden in arguments.sizes:
            kernel, steps, weights = kernel_steps(cell_name, batch, hidden)
            compiled = torch.compile(kernel.forward, fullgraph=True, dynamic=False)
            times = {"eager": [], "compiled": []}
            for forward in (kernel.forward, compiled):  # warm-up, and the compilation
                per_step_us(forward, steps, weights)
            for _ in range(arguments.repeats):
                times["eager"].append(per_step_us(kernel.forward, steps, weights))
                times["compiled"].append(per_step_us(compiled, steps, weights))
            eager, fused = (sorted(values)[len(values) // 2] for values in times.values())
            print(f"| {cell_name} | {batch} | {hidden} | {eager:.1f} | {fused:.1f} | {fused / eager:.2f} |")


if __name__ == "__main__":
    main()
