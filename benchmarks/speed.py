"""Speed of every cell and engine against torch.nn.LSTM, forward + backward.

    python benchmarks/speed.py                                   # the full table (~25 min on 2 cores)
    python benchmarks/speed.py --cells lstm,layernorm --batch 32 --hidden 256 --engines fused
    python benchmarks/speed.py --cells lstm,gru --engines fused --regularisers off,recurrent_dropout,zoneout,all

For each size (batch B, hidden H = input I, T steps, float32) the script builds torch.nn.LSTM
and every requested cell x engine, warms each up, then times them interleaved (one run of each
in turn, --repeats rounds) and reports medians: milliseconds per forward+backward, tokens/s
(T*B per second), the ratio to torch.nn.LSTM's tokens/s measured in the same rounds, the
rate of the run's matrix products (their FLOPs over the whole time) next to the machine's
sgemm rate, the GEMM floor (those products timed alone, as the fused engine issues them), and
the peak memory of one run (resident set on CPU, allocator peak on GPU). With --regularisers,
each layer also runs (in training) with recurrent dropout, zoneout or all of them on
(`REGULARISERS`), and "× off" is its speed relative to the same layer on the same engine with them off.
"""

from __future__ import annotations

import argparse
import ctypes
import platform
import statistics
from dataclasses import dataclass, field

import torch
from common import (
    call_engine, engine_names, forward_backward, gemm_floor, matrix_flops, sgemm_gflops, timed, torch_device,
)

import lstmkit
from lstmkit.cells import make_cell
from lstmkit.cli.arguments import cell_list, positive_int, positive_ints
from lstmkit.engines import ENGINES


REGULARISERS = {
    "off": {},
    "recurrent_dropout": {"recurrent_dropout": 0.25},
    "zoneout": {"zoneout": 0.1},
    "all": {"recurrent_dropout": 0.25, "input_dropout": 0.25, "zoneout": 0.1},
}  # zoneout z acts on h, and on c too for the cells that have one


@dataclass
class Config:
    """One row of the table: a layer and how to name it."""

    cell: str
    engine: str
    layer: torch.nn.Module
    regularisers: str = "off"
    times: list[float] = field(default_factory=list)


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


def resident_kb(field_name: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name):
                return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def build_configs(
    cells: list[str], engines: list[str], regularisers: list[str], hidden: int, device: torch.device, steps: int
) -> tuple[list[Config], dict[str, str]]:
    """The layers to time, and for each cell x engine (x regulariser) that cannot run here, why
    (by "cell on engine"); an `auto` row is labelled with the engine a call of `steps` steps
    with gradients runs on."""
    configs, skipped = [], {}
    for cell in cells:
        for engine in engines:
            reason = None if engine == "auto" else ENGINES[engine].unsupported(make_cell(cell), device)
            if reason is not None:
                skipped[f"{cell} on {engine}"] = reason
                continue
            for name in regularisers:
                options = dict(REGULARISERS[name])
                if "zoneout" in options and make_cell(cell).has_cell_state:
                    options["zoneout"] = (options["zoneout"], options["zoneout"])
                try:
                    layer = lstmkit.Recurrent(cell, hidden, hidden, engine=engine, device=device, **options)
                except ValueError as refusal:  # an engine that cannot run the regulariser
                    skipped[f"{cell} on {engine} with {name}"] = str(refusal)
                    continue
                label = f"auto ({call_engine(layer, steps)})" if engine == "auto" else engine
                configs.append(Config(cell, label, layer, name))
    return configs, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=cell_list, default="rnn,gru,lstm,peephole,cifg,layernorm")
    parser.add_argument("--engines", type=engine_names, default="auto,fused",
                        help="comma-separated: auto, native, fused, triton, reference")
    parser.add_argument("--batch", type=positive_ints, default="32,128")
    parser.add_argument("--hidden", type=positive_ints, default="128,256,512,1024")
    parser.add_argument("--steps", type=positive_int, default=100)
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--warmup", type=positive_int, default=2)
    parser.add_argument("--device", type=torch_device, default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--regularisers", default="off", help=f"comma-separated: {', '.join(REGULARISERS)}")
    arguments = parser.parse_args()
    regularisers = arguments.regularisers.split(",")
    unknown = sorted(set(regularisers) - set(REGULARISERS))
    if unknown:
        parser.error(f"--regularisers takes {', '.join(REGULARISERS)}; got {', '.join(unknown)}")
    device = arguments.device
    torch.manual_seed(0)

    gflops = sgemm_gflops(device)
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"lstmkit {lstmkit.__version__}, torch {torch.__version__}, {machine}, "
          f"{torch.get_num_threads()} threads; sgemm 2048^3: {gflops:.0f} GFLOP/s")
    print(f"T={arguments.steps}, input = hidden, float32, forward+backward, median of {arguments.repeats} "
          f"interleaved runs after {arguments.warmup} warm-up\n")
    compared = regularisers != ["off"]  # the regularisers' columns, only where they are compared
    print("| cell | engine | " + ("regularisers | " if compared else "") + "B | H | ms | tokens/s | × nn.LSTM | "
          + ("× off | " if compared else "") + "GEMM GFLOP/s | % of sgemm | GEMM floor ms | peak MB |")
    print("| " + " | ".join(["---"] * (2 + compared) + ["---:"] * (9 + compared)) + " |")
    not_run: dict[str, str] = {}
    for batch in arguments.batch:
        for hidden in arguments.hidden:
            x = torch.randn(arguments.steps, batch, hidden, device=device, requires_grad=True)
            baseline = Config("torch.nn.LSTM", "cuDNN" if device.type == "cuda" else "oneDNN",
                              torch.nn.LSTM(hidden, hidden, device=device))
            layers, skipped = build_configs(arguments.cells, arguments.engines, regularisers, hidden, device,
                                            arguments.steps)
            configs, not_run = [baseline, *layers], {**not_run, **skipped}
            for config in configs:
                for _ in range(arguments.warmup):
                    forward_backward(config.layer, x)
            for _ in range(arguments.repeats):
                for config in configs:
                    config.times.append(timed(lambda: forward_backward(config.layer, x), device))
            floors: dict[int, float] = {}
            baseline_time = statistics.median(baseline.times)
            tokens = arguments.steps * batch
            # The same cell on the same engine with none: `auto` may run a regularised layer on
            # another engine than a plain one, and that row then has nothing to compare with.
            unregularised = {(config.cell, config.engine): statistics.median(config.times)
                             for config in configs if config.regularisers == "off"}
            for config in configs:
                seconds = statistics.median(config.times)
                off = unregularised.get((config.cell, config.engine))
                relative = "" if off is None else f"{off / seconds:.2f}"
                flops = matrix_flops(config.layer, arguments.steps, batch)
                rate = flops / seconds / 1e9
                gate_rows = config.layer.weight_ih_l0.shape[0]
                if gate_rows not in floors:
                    floors[gate_rows] = gemm_floor(config.layer, arguments.steps, batch, device)
                memory = "" if arguments.no_memory else f"{peak_memory_mb(config.layer, x):.0f}"
                print(f"| {config.cell} | {config.engine} | " + (f"{config.regularisers} | " if compared else "")
                      + f"{batch} | {hidden} | {seconds * 1e3:.1f} | {tokens / seconds:,.0f} | "
                      f"{baseline_time / seconds:.2f} | " + (f"{relative} | " if compared else "")
                      + f"{rate:.0f} | {rate / gflops:.0%} | {floors[gate_rows] * 1e3:.1f} | {memory} |", flush=True)
    if compared:
        print("\n× off: against the same cell on the same engine without regularisers (blank where none ran: "
              "give off among --regularisers)")
    for pair, reason in not_run.items():
        print(f"\nnot run: {pair}: {reason}")


if __name__ == "__main__":
    main()
