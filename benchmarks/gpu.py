"""Every cell and engine against cuDNN's torch.nn.LSTM on a GPU, forward + backward.

    python benchmarks/gpu.py                       # the table of BENCHMARKS.md, written to gpu.md
    python benchmarks/gpu.py --sizes 64,256,100 --cells lstm,layernorm --engines triton

For each size (B, H, T; input = hidden) and precision (float32 with torch's defaults, and
bfloat16 autocast), the script builds torch.nn.LSTM and every cell x engine, warms each up,
then times them interleaved with CUDA events and reports medians: milliseconds per
forward+backward, the ratio to cuDNN in the same rounds (above 1, lstmkit is faster), the
peak memory of one run above what was allocated before it, with its ratio to cuDNN's, and the
memory a layer holds between runs (its gradients, and the static buffers of the CUDA graphs
its engine captured in warm-up). `--tf32` lets matrix products use TF32, as cuDNN's RNNs do
by default (torch.backends.cudnn.allow_tf32); torch's default for matmul is full float32.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from pathlib import Path

import torch
from common import engine_names, forward_backward, host_microseconds_per_op, size_triples

import lstmkit
from lstmkit.cells import make_cell
from lstmkit.cli.arguments import cell_list, positive_int
from lstmkit.engines import ENGINES
from lstmkit.engines.fused import graphs

SIZES = "64,256,100;64,512,100;256,1024,100;16,768,1024"


def event_time(function) -> float:
    """Milliseconds one call takes on the GPU, by CUDA events."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    function()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end)


def peak_mb(layer: torch.nn.Module, x: torch.Tensor, precision) -> float:
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    with precision():
        forward_backward(layer, x)
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def layers(cells: list[str], engines: list[str], hidden: int) -> list[tuple[str, str, torch.nn.Module]]:
    rows = [("torch.nn.LSTM", "cuDNN", torch.nn.LSTM(hidden, hidden, device="cuda"))]
    for cell in cells:
        for engine in engines:
            if engine != "auto" and ENGINES[engine].unsupported(make_cell(cell), torch.device("cuda")):
                continue
            layer = lstmkit.Recurrent(cell, hidden, hidden, engine=engine, device="cuda")
            rows.append((cell, f"auto ({layer.engine_name})" if engine == "auto" else engine, layer))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=cell_list, default="rnn,gru,lstm,peephole,cifg,layernorm")
    parser.add_argument("--engines", type=engine_names, default="auto,fused,triton")
    parser.add_argument("--sizes", type=size_triples, default=SIZES, help="B,H,T triples separated by ';'")
    parser.add_argument("--repeats", type=positive_int, default=10)
    parser.add_argument("--warmup", type=positive_int, default=3)
    parser.add_argument("--out", default="gpu.md", help="where the table is written too")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 in matrix products (matmul)")
    arguments = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU, and torch sees none here (torch.cuda.is_available() is False)")
    torch.backends.cuda.matmul.allow_tf32 = arguments.tf32
    torch.manual_seed(0)
    precisions = {
        "float32": contextlib.nullcontext,
        "bf16 autocast": lambda: torch.autocast("cuda", torch.bfloat16),
    }
    lines = [
        f"lstmkit {lstmkit.__version__}, torch {torch.__version__}, {torch.cuda.get_device_name()}, "
        f"cuDNN {torch.backends.cudnn.version()}, TF32 matmul {torch.backends.cuda.matmul.allow_tf32}, "
        f"host {host_microseconds_per_op(torch.device('cuda')):.1f} µs per kernel launch",
        "",
        "| precision | B | H | T | cell | engine | ms | × cuDNN | peak MB | memory × cuDNN | held MB |",
        "| --- | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    print("\n".join(lines), flush=True)
    for batch, hidden, steps in arguments.sizes:
        rows = layers(arguments.cells, arguments.engines, hidden)
        x = torch.randn(steps, batch, hidden, device="cuda", requires_grad=True)
        for name, precision in precisions.items():
            # Each size and precision starts with no CUDA graph and keeps every row's (the fused
            # and Triton engines capture a layer's loops in warm-up): each row runs as it would alone.
            graphs.CACHE = graphs.GraphCache(limit=4 * len(rows))
            def run(layer, precision=precision):
                with precision():
                    forward_backward(layer, x)
            held = []
            for _, _, layer in rows:
                torch.cuda.synchronize()
                before = torch.cuda.memory_allocated()
                for _ in range(arguments.warmup):
                    run(layer)
                torch.cuda.synchronize()
                held.append((torch.cuda.memory_allocated() - before) / 2**20)
            times = {index: [] for index in range(len(rows))}
            for _ in range(arguments.repeats):
                for index, (_, _, layer) in enumerate(rows):
                    times[index].append(event_time(lambda layer=layer: run(layer)))
            baseline_ms = statistics.median(times[0])
            baseline_mb = peak_mb(rows[0][2], x, precision)
            for index, (cell, engine, layer) in enumerate(rows):
                ms = statistics.median(times[index])
                memory = peak_mb(layer, x, precision)
                line = (f"| {name} | {batch} | {hidden} | {steps} | {cell} | {engine} | {ms:.2f} | "
                        f"{baseline_ms / ms:.2f} | {memory:.0f} | {memory / baseline_mb:.2f} | {held[index]:.0f} |")
                lines.append(line)
                print(line, flush=True)
    Path(arguments.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
