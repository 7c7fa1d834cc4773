"""Measurement pieces shared by the benchmark scripts: timing, matrix-product counts and floors."""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lstmkit.engines import CPU_FUSED_MIN_STEPS, ENGINE_CHOICES, select_engine
from lstmkit.engines.fused.products import Products

def engine_names(text: str) -> list[str]:
    """argparse type: comma-separated engine names, each one lstmkit has."""
    names = text.split(",")
    unknown = [name for name in names if name not in ENGINE_CHOICES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"engines must be among {', '.join(ENGINE_CHOICES)}, got {', '.join(map(repr, unknown))}")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:  # a row of each, timed apart, or one overwriting the other
        raise argparse.ArgumentTypeError(f"each engine once: {text!r} names {', '.join(twice)} more than once")
    return names


def integer_triples(what: str = "B,H,T"):
    """argparse type: `what` triples of positive integers (B,H,T: batch, hidden size, steps),
    separated by ';'."""

    def triples(text: str) -> list[tuple[int, int, int]]:
        try:
            given = [tuple(int(part) for part in size.split(",")) for size in text.split(";")]
        except ValueError:
            given = []
        if not given or any(len(triple) != 3 or min(triple) < 1 for triple in given):
            raise argparse.ArgumentTypeError(f"expected {what} triples of positive integers separated by ';', got "
                                             f"{text!r}")
        return given

    return triples


size_triples = integer_triples()


def call_engine(layer: torch.nn.Module, steps: int) -> str:
    """The engine a call of `layer` over `steps` steps with gradients runs on (`auto`'s choice
    for rnn and gru on CPU depends on the length: `layer.engine_name` names a long call's)."""
    device = next(layer.parameters()).device
    return select_engine(layer.engine, layer.cell, device, regularisers=layer.regularisation.acting(layer.training),
                         cell_steps=layer.proj_size > 0, long_backward=steps >= CPU_FUSED_MIN_STEPS).name


def torch_device(text: str) -> torch.device:
    """argparse type: cpu, or cuda where this torch sees a GPU."""
    if text not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"expected cpu or cuda, got {text!r}")
    if text == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"cuda needs a CUDA GPU, and this torch ({torch.__version__}) sees none")
    return torch.device(text)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def forward_backward(layer: torch.nn.Module, x: torch.Tensor) -> None:
    """One training step's worth of a layer: forward, then backward of the summed output."""
    layer.zero_grad(set_to_none=True)
    x.grad = None
    output, _ = layer(x)
    output.sum().backward()


def timed(function, device: torch.device) -> float:
    """Seconds one call of `function` takes."""
    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - start


def median_time(function, device: torch.device, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        function()
    return statistics.median(timed(function, device) for _ in range(repeats))


def interleaved_medians(functions: list, device: torch.device, repeats: int, warmup: int = 1) -> list[float]:
    """The median seconds of a call of each of `functions`, timed in turn (one call of each a
    round, after `warmup` rounds), so that a change in a shared machine's load falls on all
    of them alike."""
    for _ in range(warmup):
        for function in functions:
            function()
    times = [[] for _ in functions]
    for _ in range(repeats):
        for function, seconds in zip(functions, times, strict=True):
            seconds.append(timed(function, device))
    return [statistics.median(seconds) for seconds in times]


def host_microseconds_per_op(device: torch.device, ops: int = 2000, repeats: int = 5) -> float:
    """Microseconds the host spends issuing one tiny operator on `device` (on CUDA, one kernel
    launch): what decides the speed of code that launches a kernel per step, such as cuDNN's
    RNNs at small sizes, and so the machine's part in a ratio against them."""
    x = torch.zeros(1, device=device)

    def issue() -> None:
        for _ in range(ops):
            x.add_(1)

    return median_time(issue, device, repeats) / ops * 1e6


def matrix_shapes(layer: torch.nn.Module) -> tuple[int, int, int]:
    """(gate rows G*H, input size, recurrent input size) of a layer's first weights."""
    gate_rows, input_size = layer.weight_ih_l0.shape
    return gate_rows, input_size, layer.weight_hh_l0.shape[1]


def matrix_flops(layer: torch.nn.Module, steps: int, batch: int) -> float:
    """FLOPs of the matrix products of one forward+backward: forward x W_ih^T and h W_hh^T,
    backward the same shapes twice (input and weight gradients)."""
    gate_rows, input_size, recurrent_size = matrix_shapes(layer)
    return 3 * 2 * steps * batch * gate_rows * (input_size + recurrent_size)


def gemm_floor(layer: torch.nn.Module, steps: int, batch: int, device: torch.device, repeats: int = 3) -> float:
    """Seconds the matrix products of one forward+backward take alone, as the fused engine
    issues them: the input projection of all steps, one recurrent product per step forward
    and one per step backward (packed for MKL where the engine packs them,
    `Products.repeated`), then the input and both weight gradients over all steps."""
    gate_rows, input_size, recurrent_size = matrix_shapes(layer)
    x = torch.randn(steps * batch, input_size, device=device)
    h_all = torch.randn(steps * batch, recurrent_size, device=device)
    weight_ih = torch.randn(gate_rows, input_size, device=device)
    weight_hh = torch.randn(gate_rows, recurrent_size, device=device)
    h = torch.randn(batch, recurrent_size, device=device)
    d_gates = torch.randn(batch, gate_rows, device=device)
    d_all = torch.randn(steps * batch, gate_rows, device=device)
    gates, dh = torch.empty(batch, gate_rows, device=device), torch.empty(batch, recurrent_size, device=device)
    float32 = Products(torch.float32, torch.float32)

    def products() -> None:
        x @ weight_ih.t()
        forward = float32.repeated(weight_hh.t(), batch, steps)
        for _ in range(steps):
            forward.into(gates, h)
        backward = float32.repeated(weight_hh, batch, steps)
        for _ in range(steps):
            backward.into(dh, d_gates)
        d_all @ weight_ih
        d_all.t() @ x
        d_all.t() @ h_all

    return median_time(products, device, repeats)


def sgemm_gflops(device: torch.device, size: int = 2048, repeats: int = 10) -> float:
    """The machine's measured single-precision matrix product rate."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    seconds = median_time(lambda: a @ b, device, repeats, warmup=3)
    return 2 * size**3 / seconds / 1e9
