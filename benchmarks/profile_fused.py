"""Where the fused engine's time goes: matrix products, point-wise kernels, Python overhead.

    python benchmarks/profile_fused.py [--cells lstm,layernorm] [--batch 32] [--hidden 256]

For each cell, one forward+backward (T = 100, float32) is timed by wall clock without the
profiler (median of --repeats), then once under torch.profiler, whose per-operator self times
are split into matrix products (mm, addmm) and every other kernel; what the wall clock has on
top of the kernels is Python and dispatch overhead. The profiler's own cost inflates the kernel
times a little, so the overhead column is a lower bound.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

import lstmkit

MATRIX_PRODUCTS = {"aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::matmul"}


def forward_backward(layer: torch.nn.Module, x: torch.Tensor) -> None:
    output, _ = layer(x)
    output.sum().backward()


def wall_time(layer: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    forward_backward(layer, x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward_backward(layer, x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def kernel_times(layer: torch.nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """Seconds of (matrix products, other kernels) of one forward+backward, by operator self time."""
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        forward_backward(layer, x)
    matrix = other = 0.0
    for event in profiler.key_averages():
        if not event.key.startswith("aten::"):
            continue
        seconds = event.self_cpu_time_total / 1e6
        if event.key in MATRIX_PRODUCTS:
            matrix += seconds
        elif event.key not in {"aten::empty", "aten::as_strided", "aten::view", "aten::slice", "aten::select"}:
            other += seconds
    return matrix, other


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="rnn,gru,lstm,peephole,cifg,layernorm")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(arguments.steps, arguments.batch, arguments.hidden, requires_grad=True)
    print(f"fused engine, B={arguments.batch} H=I={arguments.hidden} T={arguments.steps}, float32, "
          f"{torch.get_num_threads()} threads; milliseconds per forward+backward")
    print(f"{'cell':<10} {'wall':>8} {'GEMM':>8} {'pointwise':>10} {'overhead':>9}  GEMM share")
    for cell in arguments.cells.split(","):
        layer = lstmkit.Recurrent(cell, arguments.hidden, arguments.hidden, engine="fused")
        wall = wall_time(layer, x, arguments.repeats)
        matrix, other = kernel_times(layer, x)
        overhead = max(wall - matrix - other, 0.0)
        print(f"{cell:<10} {wall * 1e3:8.1f} {matrix * 1e3:8.1f} {other * 1e3:10.1f} {overhead * 1e3:9.1f}  "
              f"{matrix / wall:6.0%}")


if __name__ == "__main__":
    main()
