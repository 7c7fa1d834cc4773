"""Where the fused engine's time goes: matrix products, point-wise kernels, Python overhead.

    python benchmarks/profile_fused.py [--cells lstm,layernorm] [--batch 32] [--hidden 256]

All three parts are wall-clock measurements (operator profilers inflate short kernels too much
to be trusted here):
  total     one forward+backward of the layer (T steps, float32), median of --repeats;
  GEMM      the same matrix products timed alone, as the engine issues them (common.gemm_floor);
  overhead  the same cell at B = 1, H = 8, where every kernel is nearly free: Python, dispatch
            and per-step bookkeeping, which do not depend on the size;
  pointwise what is left: the point-wise kernels and the memory traffic they cause;
  faults    minor page faults of one run and the system time they cost: buffers above glibc's
            mmap threshold come fresh from the kernel, zero-filled, on every call.
"""

from __future__ import annotations

import argparse
import resource

import torch
from common import forward_backward, gemm_floor, median_time

import lstmkit
from lstmkit.cli.arguments import cell_list, positive_int


def layer_time(cell: str, steps: int, batch: int, hidden: int, repeats: int) -> tuple[float, torch.nn.Module]:
    layer = lstmkit.Recurrent(cell, hidden, hidden, engine="fused")
    x = torch.randn(steps, batch, hidden, requires_grad=True)
    return median_time(lambda: forward_backward(layer, x), x.device, repeats, warmup=2), layer


def page_faults(layer: torch.nn.Module, steps: int, batch: int, hidden: int) -> tuple[int, float]:
    """(minor page faults, system seconds) of one forward+backward after a warm-up run."""
    x = torch.randn(steps, batch, hidden, requires_grad=True)
    forward_backward(layer, x)
    before = resource.getrusage(resource.RUSAGE_SELF)
    forward_backward(layer, x)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return after.ru_minflt - before.ru_minflt, after.ru_stime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=cell_list, default="rnn,gru,lstm,peephole,cifg,layernorm")
    parser.add_argument("--batch", type=positive_int, default=32)
    parser.add_argument("--hidden", type=positive_int, default=256)
    parser.add_argument("--steps", type=positive_int, default=100)
    parser.add_argument("--repeats", type=positive_int, default=7)
    arguments = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device("cpu")
    print(f"fused engine, B={arguments.batch} H=I={arguments.hidden} T={arguments.steps}, float32, "
          f"{torch.get_num_threads()} threads; ms per forward+backward\n")
    print("| cell | total | GEMM | point-wise | overhead | GEMM share | page faults | system ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for cell in arguments.cells:
        total, layer = layer_time(cell, arguments.steps, arguments.batch, arguments.hidden, arguments.repeats)
        products = gemm_floor(layer, arguments.steps, arguments.batch, device)
        overhead, _ = layer_time(cell, arguments.steps, 1, 8, arguments.repeats)
        pointwise = total - products - overhead
        faults, system = page_faults(layer, arguments.steps, arguments.batch, arguments.hidden)
        print(f"| {cell} | {total * 1e3:.1f} | {products * 1e3:.1f} | {pointwise * 1e3:.1f} | "
              f"{overhead * 1e3:.1f} | {products / total:.0%} | {faults:,} | {system * 1e3:.0f} |", flush=True)
        if pointwise < 0:  # the three parts are timed apart: other work on the machine moved one of them
            print(f"\n{cell}: the parts sum to more than the total (point-wise < 0): the machine was busy while "
                  "they were timed; run again when it is idle", flush=True)


if __name__ == "__main__":
    main()
