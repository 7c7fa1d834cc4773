"""Where and in which precision a model trains: `--device` and `--precision`."""

from __future__ import annotations

import functools
import re

import torch
from torch import nn

from lstmkit.caller import warn_at_caller
from lstmkit.cells import make_cell
from lstmkit.engines import ENGINES
from lstmkit.engines.precision import ONEDNN_BFLOAT16
from lstmkit.nn import Recurrent, RecurrentCell

DEVICE_PATTERN = re.compile(r"auto|cpu(:0)?|cuda(:\d+)?")  # cpu:0, as torch.device("cpu", 0) writes itself
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "16": torch.float16}


def check_device_name(name: str) -> None:
    """Refuse a device name that is not auto, cpu, cuda or cuda:N."""
    if not isinstance(name, str) or not DEVICE_PATTERN.fullmatch(name):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """The torch.device of `name`: auto is CUDA when this machine has it, else the CPU. Under
    torchrun a bare `cuda` (or auto) means this process's GPU, cuda:LOCAL_RANK."""
    check_device_name(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cpu"):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r} needs CUDA, and this torch ({torch.__version__}) sees no CUDA GPU; "
                         "use device 'cpu' (--device cpu)")
    index = int(name.partition(":")[2] or (local_rank or 0))
    if index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                         f"numbered from 0")
    return torch.device("cuda", index)


def runnable_engines(model: nn.Module, device: torch.device) -> None:
    """Set to "auto" the engine of each layer and cell module of `model` that cannot run on
    `device`: a model trained on a GPU with engine="triton" (auto's own choice there for most
    cells), loaded on a CPU. The engines compute the same numbers."""
    for module in recurrent_modules(model):
        if module.engine != "auto" and ENGINES[module.engine].unsupported(module.cell, device):  # triton missing too
            module.engine = "auto"


def check_precision(name: str, device: torch.device) -> None:
    """Refuse a precision that is not 32, bf16 or 16, or that `device` cannot run."""
    if name not in ("32", *AUTOCAST_DTYPES):
        raise ValueError(f"precision must be one of 32, bf16, 16, got {name!r}")
    if name == "16" and device.type != "cuda":
        raise ValueError(f"precision 16 (float16 autocast) runs on CUDA; on {device.type} use bf16 or 32")


def check_runtime(device: str, precision: str, engine: str = "auto", cell: str | None = None) -> None:
    """Refuse, before a command announces its run, a device this machine lacks, a precision
    that device cannot run, or an engine that cannot run the cell there (the trainer checks
    them again, for Python callers: `check_engines`)."""
    resolved = resolve_device(device)
    check_precision(precision, resolved)
    if cell is not None:
        check_engine_runs(engine, make_cell(cell), resolved, cell)


def check_engines(model: nn.Module, device: torch.device) -> None:
    """Refuse, before training starts, a layer or cell module of `model` whose engine cannot run
    its cell on `device`."""
    for module in recurrent_modules(model):
        check_engine_runs(module.engine, module.cell, device)


def recurrent_modules(model: nn.Module):
    """The layers and cell modules of `model`, the modules that have an engine."""
    return (module for module in model.modules() if isinstance(module, (Recurrent, RecurrentCell)))


def check_engine_runs(engine: str, cell, device: torch.device, name: str | None = None) -> None:
    """Refuse `engine` where it cannot run `cell` on `device` ("auto" always can); `name`: the
    cell's as the user gave it (an ablation's, nfg), where it is not the cell's own."""
    reason = engine != "auto" and ENGINES[engine].unsupported(cell, device)  # a missing package too (triton)
    if reason:
        raise ValueError(f"engine {engine!r} cannot run cell {name or cell.name!r} on {device.type}: {reason}; use "
                         "engine 'auto' or 'fused' (--engine auto or fused)")


@functools.cache
def warn_emulated_bfloat16() -> None:
    """Once a process: a forecast's backtest and its refit train twice. Measured on a 2-core
    AVX2 EPYC: a (64 x 512) @ (512 x 2048) product in 243 ms against 1.2 ms in float32, a 2 x 512
    character LSTM at 88 tokens/s against 4,607, a 1 x 64 one at 8,163 against 30,388."""
    warn_at_caller("this CPU has no bfloat16 matrix kernels (oneDNN finds no AVX-512 BF16 or AMX), so bfloat16 "
                   "products are emulated, the slower the larger they are (training a 64-unit LSTM took 4 x as long "
                   "as in float32, a 512-unit one 50 x); --precision 32 trains faster here", RuntimeWarning)


class StepAutocast(torch.autocast):
    """torch.autocast that empties its cache of the weights' low-precision copies where it ends:
    torch empties it only when the outermost autocast ends, and inside the pipeline's own (off,
    `isolated_from_caller`) or a caller's, every step of a bfloat16 run used the copies the
    first step made, the optimizer's updates never reaching the products they cache."""

    def __exit__(self, *exception) -> None:
        try:  # named, not super(): torch.compile cannot resolve super() here at a graph break
            torch.autocast.__exit__(self, *exception)
        finally:
            torch.clear_autocast_cache()


class Precision:
    """`--precision 32|bf16|16` on a device: the autocast context of the forward passes, and the
    gradient scaler (float16 only: its narrow exponent range underflows small gradients unless
    the loss is scaled up first)."""

    def __init__(self, name: str, device: torch.device) -> None:
        check_precision(name, device)
        if name == "bf16" and device.type == "cpu" and not ONEDNN_BFLOAT16:
            warn_emulated_bfloat16()
        self.name, self.device = name, device
        self.dtype = AUTOCAST_DTYPES.get(name)
        self.scaler = torch.amp.GradScaler(device.type, enabled=name == "16")

    def autocast(self) -> StepAutocast:
        """The forward passes' autocast: off in float32, whatever the caller had on."""
        return StepAutocast(self.device.type, self.dtype, enabled=self.dtype is not None)

    def describe(self) -> str:
        return {"32": "float32", "bf16": "bfloat16 autocast",
                "16": "float16 autocast with a gradient scaler"}[self.name]
