"""Host time of the pieces of one cell-module step on a GPU, against torch.nn.LSTMCell.

    python benchmarks/step_parts.py                     # B 64, H 512, LSTM and peephole
    python benchmarks/step_parts.py --batch 16 --hidden 256 --calls 3000

A cell module is called from the user's own loop, where nothing is captured in a CUDA graph,
so at small sizes a step costs what the host spends launching it. Each line is the best of
three rounds of `--calls` back-to-back calls, timed with `time.perf_counter` on the host (no
profiler, which would inflate the Python parts), in microseconds per call: the whole step
of `torch.nn.LSTMCell` and of a cell module on the Triton engine, the step's
`autograd.Function` alone, each operation the Function launches, and the Triton kernel
through Triton's own launch, as before lstmkit launched its compiled kernels directly.
"""

from __future__ import annotations

import argparse
import time

import torch

import lstmkit
from lstmkit.cli.arguments import positive_int
from lstmkit.engines.fused import FusedStep
from lstmkit.engines.fused.layer import flatten
from lstmkit.engines.fused.products import Products
from lstmkit.engines.fused.step import FusedCellStep, kernel_for
from lstmkit.engines.precision import Precision


def microseconds(function, calls: int) -> float:
    """Host µs per call of `function`: the best of three rounds of `calls` calls, after a warm-up."""
    for _ in range(50):
        function()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(calls):
            function()
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
        torch.cuda.synchronize()
    return best


def timed_through_triton(function, calls: int) -> float:
    """`microseconds` with every Triton launch going through Triton's own launch, as before
    `lstmkit.engines.triton.launch.launch` called the compiled kernels directly."""
    from lstmkit.engines.triton import launch

    direct = launch.DIRECT_LAUNCHES
    launch.DIRECT_LAUNCHES = False
    try:
        return microseconds(function, calls)
    finally:
        launch.DIRECT_LAUNCHES = direct


def parts(module: torch.nn.Module, baseline: torch.nn.LSTMCell, batch: int, calls: int) -> list[tuple[str, float]]:
    """(piece, µs) for one step of `module` on the Triton engine, float32."""
    from lstmkit.engines.triton.kernels import TRITON_KERNELS

    hidden, device = module.hidden_size, torch.device("cuda")
    x, h, c = (torch.randn(batch, hidden, device=device) for _ in range(3))
    weights = module.weights()
    kernel = kernel_for(module.cell, TRITON_KERNELS)
    parameters = flatten(module.cell, weights)
    precision = Precision(torch.float32, torch.float32, torch.float32, torch.float32)
    products = Products(torch.float32, torch.float32)

    def both_ways(cell) -> None:
        h_new, c_new = cell(x, (h, c))
        (h_new.sum() + c_new.sum()).backward()

    rows = [
        ("torch.nn.LSTMCell, forward and backward", microseconds(lambda: both_ways(baseline), calls)),
        (f"{type(module).__name__}, forward and backward", microseconds(lambda: both_ways(module), calls)),
    ]
    with torch.no_grad():
        input_weights = weights._replace(bias_hh=None)  # b_hh comes with the recurrent product
        gates, _ = kernel.project_input(x, input_weights, products)
        product = torch.empty_like(gates)
        outputs = [torch.empty_like(h) for _ in range(2)]
        step = FusedStep(
            gates, None, h, c, outputs[0], outputs[1], {}, outputs[0], product, outputs[0],
            blocks={},
        )
        rows += [
            ("torch.nn.LSTMCell, forward", microseconds(lambda: baseline(x, (h, c)), calls)),
            (f"{type(module).__name__}, forward", microseconds(lambda: module(x, (h, c)), calls)),
            ("its autograd.Function, forward", microseconds(
                lambda: FusedCellStep.apply(kernel, precision, False, x, h, c, *parameters), calls)),
            ("in it: the input projection, with b_ih", microseconds(
                lambda: kernel.project_input(x, input_weights, products), calls)),
            ("in it: the recurrent product, with b_hh", microseconds(
                lambda: products.into(product, h, weights.weight_hh.t(), weights.bias_hh), calls)),
            ("in it: the Triton kernel", microseconds(lambda: kernel.forward(step, weights), calls)),
            ("the same kernel through Triton's own launch", timed_through_triton(
                lambda: kernel.forward(step, weights), calls)),
            ("one torch.mm", microseconds(lambda: torch.mm(h, weights.weight_hh.t()), calls)),
            ("one torch.empty_like", microseconds(lambda: torch.empty_like(h), calls)),
        ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=positive_int, default=64)
    parser.add_argument("--hidden", type=positive_int, default=512, help="hidden size, also the input size")
    parser.add_argument("--calls", type=positive_int, default=1000, help="calls per timed round")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU, and torch sees none here (torch.cuda.is_available() is False)")
    device = torch.device("cuda")
    baseline = torch.nn.LSTMCell(args.hidden, args.hidden, device=device)
    print(f"lstmkit {lstmkit.__version__}, torch {torch.__version__}, {torch.cuda.get_device_name()}; "
          f"B {args.batch}, H = I {args.hidden}, float32; host µs per call, best of 3 rounds of {args.calls}")
    for module_type in (lstmkit.LSTMCell, lstmkit.PeepholeLSTMCell):
        module = module_type(args.hidden, args.hidden, engine="triton", device=device)
        print("\n| piece of one step | µs |\n| --- | ---: |")
        for name, value in parts(module, baseline, args.batch, args.calls):
            print(f"| {name} | {value:.1f} |")


if __name__ == "__main__":
    main()
