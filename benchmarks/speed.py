"""Speed of every cell and engine against torch.nn.LSTM, forward + backward.

    python benchmarks/speed.py                                   # the full table (~15 min on 2 cores)
    python benchmarks/speed.py --cells lstm,layernorm --batch 32 --hidden 256 --engines fused

For each size (batch B, hidden H = input I, T steps, float32) the script builds torch.nn.LSTM
and every requested cell x engine, warms each up, then times them interleaved (one run of each
in turn, --repeats rounds) and reports medians: milliseconds per forward+backward, tokens/s
(T*B per second), the ratio to torch.nn.LSTM's tokens/s measured in the same rounds, the
rate of the run's matrix products (their FLOPs over the whole time) next to the machine's
sgemm rate, and the peak memory of one run (resident set on CPU, allocator peak on GPU).
"""

from __future__ import annotations

import argparse
import ctypes
import platform
import statistics
import time
from dataclasses import dataclass

import torch

import lstmkit
from lstmkit.engines import native_support_reason


@dataclass
class Config:
    """One row of the table: a layer and how to name it."""

    cell: str
    engine: str
    layer: torch.nn.Module
    gemm_flops: float
    times: list[float]


def matrix_flops(layer: lstmkit.Recurrent | torch.nn.LSTM, steps: int, batch: int) -> float:
    """FLOPs of the matrix products of one forward+backward: forward x W_ih^T and h W_hh^T,
    backward the same shapes twice (input and weight gradients)."""
    gate_rows, input_size = layer.weight_ih_l0.shape
    output_size = layer.weight_hh_l0.shape[1]
    forward = 2 * steps * batch * gate_rows * (input_size + output_size)
    return 3 * forward


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def forward_backward(layer: torch.nn.Module, x: torch.Tensor) -> None:
    layer.zero_grad(set_to_none=True)
    x.grad = None
    output, _ = layer(x)
    output.sum().backward()


def timed(layer: torch.nn.Module, x: torch.Tensor) -> float:
    synchronize(x.device)
    start = time.perf_counter()
    forward_backward(layer, x)
    synchronize(x.device)
    return time.perf_counter() - start


def peak_memory_mb(layer: torch.nn.Module, x: torch.Tensor) -> float:
    """Peak memory of one forward+backward above what was in use before it."""
    if x.device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        forward_backward(layer, x)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    forward_backward(layer, x)  # once, so lazily created buffers exist before the baseline
    layer.zero_grad(set_to_none=True)
    x.grad = None
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as reset:
        reset.write("5")  # resets the peak resident set size (VmHWM) to the current one
    before = resident_kb("VmRSS")
    forward_backward(layer, x)
    return (resident_kb("VmHWM") - before) / 1024


def resident_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def sgemm_gflops(device: torch.device, size: int = 2048, repeats: int = 10) -> float:
    """The machine's measured single-precision matrix product rate."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    for _ in range(3):
        a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def build_configs(cells: list[str], engines: list[str], hidden: int, steps: int, batch: int, device: torch.device) -> list[Config]:
    configs = []
    for cell in cells:
        for engine in engines:
            probe = lstmkit.Recurrent(cell, 1, 1, engine="reference")
            if engine == "native" and native_support_reason(probe) is not None:
                continue
            layer = lstmkit.Recurrent(cell, hidden, hidden, engine=engine, device=device)
            label = f"{engine}->{layer.engine_name}" if engine == "auto" else engine
            configs.append(Config(cell, label, layer, matrix_flops(layer, steps, batch), []))
    return configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="rnn,gru,lstm,peephole,cifg,layernorm")
    parser.add_argument("--engines", default="auto,fused", help="comma-separated: auto, native, fused, reference")
    parser.add_argument("--batch", default="32,128")
    parser.add_argument("--hidden", default="128,256,512,1024")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    arguments = parser.parse_args()
    device = torch.device(arguments.device)
    torch.manual_seed(0)

    gflops = sgemm_gflops(device)
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"# lstmkit {lstmkit.__version__}, torch {torch.__version__}, {machine}, "
          f"{torch.get_num_threads()} threads; sgemm 2048^3: {gflops:.0f} GFLOP/s")
    print(f"# T={arguments.steps}, input = hidden, float32, forward+backward, median of {arguments.repeats} "
          f"interleaved runs after {arguments.warmup} warm-up")
    print("| cell | engine | B | H | ms | tokens/s | × nn.LSTM | GEMM GFLOP/s | % of sgemm | peak MB |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for batch in map(int, arguments.batch.split(",")):
        for hidden in map(int, arguments.hidden.split(",")):
            x = torch.randn(arguments.steps, batch, hidden, device=device, requires_grad=True)
            baseline_layer = torch.nn.LSTM(hidden, hidden, device=device)
            baseline = Config("torch.nn.LSTM", "cuDNN" if device.type == "cuda" else "oneDNN", baseline_layer,
                              matrix_flops(baseline_layer, arguments.steps, batch), [])
            configs = [baseline, *build_configs(arguments.cells.split(","), arguments.engines.split(","),
                                                hidden, arguments.steps, batch, device)]
            for config in configs:
                for _ in range(arguments.warmup):
                    forward_backward(config.layer, x)
            for _ in range(arguments.repeats):
                for config in configs:
                    config.times.append(timed(config.layer, x))
            baseline_time = statistics.median(baseline.times)
            tokens = arguments.steps * batch
            for config in configs:
                seconds = statistics.median(config.times)
                rate = config.gemm_flops / seconds / 1e9
                memory = "" if arguments.no_memory else f"{peak_memory_mb(config.layer, x):.0f}"
                print(f"| {config.cell} | {config.engine} | {batch} | {hidden} | {seconds * 1e3:.1f} | "
                      f"{tokens / seconds:,.0f} | {baseline_time / seconds:.2f} | {rate:.0f} | "
                      f"{rate / gflops:.0%} | {memory} |", flush=True)


if __name__ == "__main__":
    main()
