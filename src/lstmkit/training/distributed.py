"""Several processes under torchrun: torch's own DistributedDataParallel, nothing home-made.

`torchrun --nproc_per_node N -m lstmkit ...` starts N processes and gives each the variables
RANK, LOCAL_RANK and WORLD_SIZE (and the rendezvous address). Each process joins one process
group (gloo on CPU, NCCL on CUDA), draws the same global batch and trains on its shard of it;
DistributedDataParallel averages the gradients during backward, so every process takes the
same optimizer step. Without those variables there is one process and no group.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Processes:
    """This process's place among the processes training one model."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> Processes:
        """The torchrun variables, or one process when they are absent."""
        if "WORLD_SIZE" not in os.environ:
            return cls()
        try:
            processes = cls(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                            int(os.environ.get("LOCAL_RANK", 0)))
        except (KeyError, ValueError) as error:
            raise ValueError(f"WORLD_SIZE is set but RANK/LOCAL_RANK are missing or not integers ({error}); "
                             "start several processes with torchrun") from None
        if not (0 <= processes.rank < processes.world_size and processes.local_rank >= 0):
            raise ValueError(f"RANK must be in 0..WORLD_SIZE-1 and LOCAL_RANK at least 0, got RANK={processes.rank}, "
                             f"WORLD_SIZE={processes.world_size}, LOCAL_RANK={processes.local_rank} (a process of "
                             "that rank would wait for its peers without end); start several processes with torchrun")
        return processes

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Rank 0 alone writes checkpoints, metrics, results and plots, and reports progress."""
        return self.rank == 0

    def start(self, device: torch.device) -> None:
        """Join the process group (once per process): NCCL between GPUs, gloo on CPU.

        torch._dynamo (which DistributedDataParallel imports) is imported first: imported
        after the group exists, it keeps a reference to it that `destroy_process_group` cannot
        drop, so gloo's threads outlive `leave` and meet the interpreter's exit, where they
        now and then abort the process after a finished run."""
        if self.distributed and not dist.is_initialized():
            import torch._dynamo  # noqa: F401 (before the group: see above)

            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            atexit.register(leave)

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The model DistributedDataParallel averages the gradients of (the model itself alone).
        An adaptive softmax computes only the clusters its shard's targets fall in, so a step
        may leave a parameter without a gradient in one process and not in another; DDP then
        looks for the unused ones at every step (without, the processes' reductions stop
        matching and the run hangs)."""
        if not self.distributed:
            return model
        partial = any(isinstance(module, nn.AdaptiveLogSoftmaxWithLoss) for module in model.modules())
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                       find_unused_parameters=partial)

    def check_same(self, settings: dict, device: torch.device) -> None:
        """Refuse, in every process alike, a run whose processes were given different `settings`
        (nested names to values: a command line that differs between them). Each would train its
        own way: DistributedDataParallel averaged the gradients of two learning rates silently,
        and processes of different step budgets waited for each other without end."""
        if not self.distributed:
            return
        ours = {name: repr(value) for name, value in flattened(settings).items()}
        everyone: list[dict[str, str]] = [{} for _ in range(self.world_size)]
        with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():  # NCCL's own GPU
            dist.all_gather_object(everyone, ours)
        differing = sorted({name for theirs in everyone for name in ours.keys() | theirs.keys()
                            if theirs.get(name) != everyone[0].get(name)})
        if differing:
            shown = "; ".join(f"{name}: " + ", ".join(f"{theirs.get(name, 'not set')} in process {rank}"
                                                      for rank, theirs in enumerate(everyone))
                              for name in differing[:3])
            more = f" (and {len(differing) - 3} more)" if len(differing) > 3 else ""
            raise ValueError(f"the {self.world_size} processes of this run were given different settings: {shown}"
                             f"{more}; start every process with the same command")

    def check_divides(self, size: int, what: str) -> None:
        """Refuse a `size` (a batch) that this number of processes cannot share evenly, saying
        both remedies: a run resumed keeps its size, so there only the second works."""
        if size % self.world_size:
            raise ValueError(f"{what} is {size}, which {self.world_size} processes cannot share evenly: "
                             f"give a multiple of {self.world_size} (a new run), or run a number of processes that "
                             f"divides {size}")

    def check_shares(self, count: int, what: str) -> None:
        """Refuse fewer `what` (a job's training items) than processes: one process would be
        handed an empty share, and fail where it first reads one."""
        if count < self.world_size:
            raise ValueError(f"{what}: {count}, fewer than the {self.world_size} processes that share them (each "
                             "needs one)")

    def batch_sizes(self, items: int, batch_size: int) -> list[int]:
        """An epoch of `items` cut into batches of `batch_size`, the rest last, and joined to
        the batch before where it is too small for every process to have a share of it (one
        process: never), so that no process is handed an empty one (jobs refuse fewer items
        than processes)."""
        full, rest = divmod(items, batch_size)
        sizes = [batch_size] * full + ([rest] if rest else [])
        if len(sizes) > 1 and sizes[-1] < self.world_size:
            sizes[-2:] = [sizes[-2] + sizes[-1]]
        return sizes

    def shard(self, tensor: Tensor, dim: int = 0) -> Tensor:
        """This process's contiguous share of `tensor` along `dim` (the whole of it alone)."""
        if not self.distributed:
            return tensor
        return tensor.tensor_split(self.world_size, dim)[self.rank]

    def gather(self, tensor: Tensor, dim: int = 0) -> Tensor:
        """Every process's `tensor`, concatenated along `dim` in rank order (the inverse of
        `shard` for equal shares); every process must call it."""
        if not self.distributed:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim)

    def total(self, values: list[float], device: torch.device) -> list[float]:
        """The sum of `values` over the processes."""
        if not self.distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def wait_for_all(self) -> None:
        """Return when every process has come here: the processes end a run together, so that
        none leaves the group while another still talks in it (gloo then aborts the process,
        "terminate called without an active exception")."""
        if self.distributed:
            dist.barrier()

    def from_main(self, value: float, device: torch.device) -> float:
        """Rank 0's `value`, so that every process takes the same decision (a time budget)."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.broadcast(tensor, 0)
        return tensor.item()


def flattened(settings: dict, prefix: str = "") -> dict[str, object]:
    """`settings` with nested dicts' names joined by dots: {"model": {"hidden_size": 8}} gives
    {"model.hidden_size": 8}."""
    flat: dict[str, object] = {}
    for name, value in settings.items():
        if isinstance(value, dict):
            flat.update(flattened(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def leave() -> None:
    """Leave the process group before the interpreter exits: a gloo group still alive at exit
    aborts the process ("terminate called without an active exception")."""
    if dist.is_initialized():
        dist.destroy_process_group()


def announce(line: str) -> None:
    """Say what a training command is about to do, on stderr with its progress (stdout holds
    its results alone), from rank 0 alone under torchrun (the others' stderr stays open for
    their errors)."""
    if Processes.from_environment().main:
        print(line, file=sys.stderr, flush=True)
