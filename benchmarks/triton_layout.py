"""How the Triton kernels are laid out on a GPU: each layout against the others, per cell and size.

    python benchmarks/triton_layout.py                 # the sizes of gpu.py, float32 and bf16 autocast
    python benchmarks/triton_layout.py --sizes 16,768,1024 --cells lstm --precisions float32

A layout sets the constants of `lstmkit.engines.triton.launch` that `split_rows` and
`whole_rows` read: how many programs a step's grid should have at least (a row's columns are
split until it does), and how many columns each warp takes. Every layout of a row runs the
Triton engine's layer (forward + backward, input = hidden, CUDA graphs captured in warm-up as
in use), each with its own graph cache, timed interleaved by CUDA events; the table gives
medians in ms and each layout's speed relative to the first ("before": one program per row and
block of up to 1024 columns, four warps). The kernels are compiled first in one process per
size, in parallel, so the timing pass only loads them.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import statistics
from pathlib import Path

import torch
from common import forward_backward, size_triples
from gpu import SIZES, event_time

import lstmkit
from lstmkit.cli.arguments import cell_list, positive_int
from lstmkit.engines.fused import graphs
from lstmkit.engines.triton import launch

LAYOUTS = {
    "before": dict(MIN_PROGRAMS=0, COLUMNS_PER_WARP=128, WHOLE_ROW_COLUMNS_PER_WARP=128, MIN_WARPS=4,
                   MIN_WHOLE_ROW_WARPS=4, MAX_WARPS=4),
    "256 programs": dict(MIN_PROGRAMS=256, COLUMNS_PER_WARP=128, WHOLE_ROW_COLUMNS_PER_WARP=128, MIN_WARPS=1,
                         MIN_WHOLE_ROW_WARPS=1, MAX_WARPS=8),
    "256 programs, 32 columns a warp": dict(MIN_PROGRAMS=256, COLUMNS_PER_WARP=32, WHOLE_ROW_COLUMNS_PER_WARP=64,
                                            MIN_WARPS=1, MIN_WHOLE_ROW_WARPS=1, MAX_WARPS=16),
    "1024 programs": dict(MIN_PROGRAMS=1024, COLUMNS_PER_WARP=64, WHOLE_ROW_COLUMNS_PER_WARP=256, MIN_WARPS=2,
                          MIN_WHOLE_ROW_WARPS=2, MAX_WARPS=8),
    "64-column blocks": dict(MIN_PROGRAMS=2**31, COLUMNS_PER_WARP=64, WHOLE_ROW_COLUMNS_PER_WARP=32, MIN_WARPS=1,
                             MIN_WHOLE_ROW_WARPS=1, MAX_WARPS=32),
}
PRECISIONS = {"float32": contextlib.nullcontext, "bf16 autocast": lambda: torch.autocast("cuda", torch.bfloat16)}


def use_layout(name: str) -> None:
    for constant, value in LAYOUTS[name].items():
        setattr(launch, constant, value)
    launch.split_rows.cache_clear()
    launch.whole_rows.cache_clear()


def measure(size: tuple[int, int, int], cells: list[str], precisions: list[str], repeats: int,
            warmup: int) -> list[str]:
    """The table rows of one size (B, H, T); with repeats = 0, only compile and capture."""
    batch, hidden, steps = size
    torch.manual_seed(0)
    x = torch.randn(steps, batch, hidden, device="cuda", requires_grad=True)
    rows = []
    for cell in cells:
        layer = lstmkit.Recurrent(cell, hidden, hidden, engine="triton", device="cuda")
        for precision_name in precisions:
            precision = PRECISIONS[precision_name]
            caches = {name: graphs.GraphCache(limit=4) for name in LAYOUTS}

            def run(name: str) -> None:
                use_layout(name)
                graphs.CACHE = caches[name]
                with precision():
                    forward_backward(layer, x)

            for name in LAYOUTS:
                for _ in range(warmup):
                    run(name)
            times = {name: [] for name in LAYOUTS}
            for _ in range(repeats):
                for name in LAYOUTS:
                    times[name].append(event_time(lambda name=name: run(name)))
            if repeats:
                medians = [statistics.median(times[name]) for name in LAYOUTS]
                cells_text = " | ".join(f"{ms:.2f} ({medians[0] / ms:.2f})" for ms in medians)
                rows.append(f"| {precision_name} | {batch} | {hidden} | {steps} | {cell} | {cells_text} |")
    return rows


def precision_names(text: str) -> list[str]:
    """argparse type: comma-separated names among PRECISIONS."""
    names = text.split(",")
    if not set(names) <= set(PRECISIONS):
        raise argparse.ArgumentTypeError(f"precisions must be among {', '.join(PRECISIONS)}, got {text!r}")
    return names


def compile_size(arguments: tuple) -> None:
    size, cells, precisions = arguments
    measure(size, cells, precisions, repeats=0, warmup=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=cell_list, default="lstm,peephole,gru,layernorm")
    parser.add_argument("--sizes", type=size_triples, default=SIZES, help="B,H,T triples separated by ';'")
    parser.add_argument("--precisions", type=precision_names, default=",".join(PRECISIONS))
    parser.add_argument("--repeats", type=positive_int, default=7)
    parser.add_argument("--warmup", type=positive_int, default=3)
    parser.add_argument("--out", default="triton_layout.md", help="where the table is written too")
    arguments = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU, and torch sees none here (torch.cuda.is_available() is False)")
    cells, sizes, precisions = arguments.cells, arguments.sizes, arguments.precisions
    with multiprocessing.get_context("spawn").Pool(len(sizes)) as pool:
        pool.map(compile_size, [(size, cells, precisions) for size in sizes])
    lines = [
        f"lstmkit {lstmkit.__version__}, torch {torch.__version__}, {torch.cuda.get_device_name()}; "
        "ms per forward + backward (speed relative to the first layout)",
        "",
        "| precision | B | H | T | cell | " + " | ".join(LAYOUTS) + " |",
        "| --- | ---: | ---: | ---: | --- |" + " ---: |" * len(LAYOUTS),
    ]
    print("\n".join(lines), flush=True)
    for size in sizes:
        for row in measure(size, cells, precisions, arguments.repeats, arguments.warmup):
            lines.append(row)
            print(row, flush=True)
    Path(arguments.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
