"""Kernel launches per step of a cell module in the user's own loop, by kind of operation.

    python benchmarks/step_launches.py                        # CPU; Triton under the interpreter
    python benchmarks/step_launches.py --device cuda          # with torch.nn.LSTMCell beside

A cell module is called from the user's own loop, uncaptured, so on a GPU each operation it
launches costs host time at every step (10–25 µs on the hosts of BENCHMARKS.md, "Cell
modules"). The loop of `benchmarks/cells.py` (B 4, H 8 here: the counts do not depend on
the sizes), `--steps` steps and one backward; every operation torch dispatches is recorded,
and those that launch a kernel on a GPU (all but views, allocations and other metadata) are
counted, with each Triton kernel launch, per step. On CPU the Triton engine runs under
TRITON_INTERPRET=1 (set here), and torch.nn.LSTMCell is left out: on CPU it is a dozen
operations, on CUDA one fused kernel each way.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import os

import torch
from common import torch_device
from torch.utils._python_dispatch import TorchDispatchMode

import lstmkit
from lstmkit.cli.arguments import positive_int

NO_LAUNCH = {  # operations that only make or describe tensors
    "t", "detach", "empty", "empty_like", "new_empty", "new_empty_strided", "empty_strided", "unsqueeze", "squeeze",
    "expand", "view", "split", "unsafe_split", "chunk", "slice", "select", "as_strided", "alias", "_to_copy_noop",
    "unflatten", "lift_fresh", "transpose", "permute",
}


class Launches(TorchDispatchMode):
    """Counts, by name, the dispatched operations that launch a GPU kernel, and each Triton
    kernel launch as "triton" (not what Triton's interpreter runs inside it); `dispatched`
    counts every operation, those that launch nothing too (each costs host time as well)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()
        self.dispatched = 0
        self.in_triton = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not self.in_triton:
            self.dispatched += 1
            if name not in NO_LAUNCH:
                self.counts[name] += 1
        return func(*args, **(kwargs or {}))

    def count_triton_launches(self) -> None:
        """Wrap the Triton engine's `launch` where its kernels call it."""
        from lstmkit.engines.triton import launch as launching

        def counted(kernel, layout, *args, **options):
            self.counts["triton"] += 1
            self.in_triton = True
            try:
                return launching.launch(kernel, layout, *args, **options)
            finally:
                self.in_triton = False

        for module in ("lstm", "rnn", "layernorm"):
            setattr(importlib.import_module(f"lstmkit.engines.triton.{module}"), "launch", counted)


def per_step(module: torch.nn.Module, device: torch.device, steps: int) -> tuple[float, collections.Counter]:
    """Operations dispatched, and launches by operation, per step of `steps` calls of `module`
    and one backward."""
    xs = torch.randn(steps, 4, module.input_size, device=device)
    with Launches() as recorded:
        recorded.count_triton_launches()
        state, loss = None, 0
        for x in xs:
            state = module(x, state)
            h = state[0] if isinstance(state, tuple) else state
            loss = loss + h.sum()
        loss.backward()
    launches = collections.Counter({name: count / steps for name, count in recorded.counts.items()})
    return recorded.dispatched / steps, launches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", type=torch_device, default="cpu", help="cpu or cuda")
    parser.add_argument("--steps", type=positive_int, default=20)
    args = parser.parse_args()
    device = args.device
    if device.type == "cpu":  # read when the Triton kernels are first imported, below
        os.environ["TRITON_INTERPRET"] = "1"
    modules = [
        (name, module_type(8, 8, engine=engine, device=device))
        for name, module_type in (
            ("LSTMCell", lstmkit.LSTMCell), ("PeepholeLSTMCell", lstmkit.PeepholeLSTMCell),
            ("CIFGLSTMCell", lstmkit.CIFGLSTMCell), ("LayerNormLSTMCell", lstmkit.LayerNormLSTMCell),
            ("GRUCell", lstmkit.GRUCell), ("RNNCell", lstmkit.RNNCell),
        )
        for engine in ("fused", "triton")
    ]
    if device.type == "cuda":
        modules.insert(0, ("torch.nn.LSTMCell", torch.nn.LSTMCell(8, 8, device=device)))
    print(f"lstmkit {lstmkit.__version__}, torch {torch.__version__}, {args.device}; "
          f"launches per step over {args.steps} steps and one backward\n")
    print("| cell | engine | operations per step | launches per step | launches by operation |")
    print("| --- | --- | ---: | ---: | --- |")
    for name, module in modules:
        dispatched, counts = per_step(module, device, args.steps)
        engine = getattr(module, "engine", "torch")
        spelled = ", ".join(f"{op} {count:g}" for op, count in counts.most_common())
        print(f"| {name} | {engine} | {dispatched:.2f} | {sum(counts.values()):.2f} | {spelled} |")


if __name__ == "__main__":
    main()
