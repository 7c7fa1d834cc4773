"""CUDA graphs for the fused ops: a layer's whole time loop, forward or backward, replayed as one
captured graph, so that the per-step launches cost no Python and no launch latency.

`fused_layer` and `fused_layer_backward` are pure functions of their arguments. A call on CUDA
tensors whose key (every tensor's shape, strides, dtype and device, every other argument, the
matmul precision settings) was seen before is captured once: the arguments are copied into
static inputs, the op runs once on a side stream (cuBLAS and Triton set themselves up), then
once under capture. From then on a call copies its arguments into the static inputs, replays
the graph and returns copies of the static outputs, which the next replay overwrites. The
first call of a key runs eagerly: shapes that never repeat (packed batches of varying lengths)
pay no capture. Calls from several threads at once take turns through a key's graph, from
copying in to copying out, on the GPU too (a call's stream waits for the last call's copies
out, whatever stream that ran on): its static inputs and outputs are one set (a model shared
by a server's threads got another call's output). One capture runs at a time in the process,
as CUDA allows: calls meanwhile run eagerly. Calls with batch sizes (packed or `lengths=` input
that is not full) always run eagerly; so do calls made while the caller captures a graph of its own.

A captured key holds its static inputs and outputs and the graph's memory pool for the life of
the process: measured, about 2.6 times the activations a layer saves for backward. The first
`limit` keys are kept, later ones run eagerly: evicting would recapture, at a capture's cost,
on every call of a loop over more keys than the limit. `LSTMKIT_CUDA_GRAPHS=N` in the environment sets the limit (default 16:
a model's layers and directions, each forward and backward); 0 turns capturing off.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import torch
from torch.utils import _pytree as pytree

from lstmkit.caller import warn_at_caller

DEFAULT_LIMIT = 16  # graphs kept: a 4-layer bidirectional stack's forward and backward, or more layers of one shape


def limit_from_environment() -> int:
    """LSTMKIT_CUDA_GRAPHS as the number of graphs to keep, checked."""
    value = os.environ.get("LSTMKIT_CUDA_GRAPHS", str(DEFAULT_LIMIT))
    if not value.isdigit():
        raise ValueError(f"LSTMKIT_CUDA_GRAPHS must be a whole number of graphs to keep (0 turns capturing off), "
                         f"got {value!r}")
    return int(value)


class CapturedCall:
    """One key's graph: static inputs copied in, one replay, static outputs copied out."""

    def __init__(self, function: Callable, leaves: list, spec: pytree.TreeSpec, device: torch.device) -> None:
        self.device = device
        self.turn = threading.Lock()  # one call at a time through the static inputs and outputs
        self.inputs = [leaf.clone() if isinstance(leaf, torch.Tensor) else leaf for leaf in leaves]
        arguments = pytree.tree_unflatten(self.inputs, spec)
        with torch.cuda.device(device):
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                function(*arguments)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, stream=stream, capture_error_mode="thread_local"):
                outputs = function(*arguments)
            self.copied_out = torch.cuda.Event()  # recorded after each call's copies out
        self.outputs, self.output_spec = pytree.tree_flatten(outputs)

    def __call__(self, leaves: list):
        with self.turn, torch.cuda.device(self.device):
            stream = torch.cuda.current_stream()
            stream.wait_event(self.copied_out)
            for static, given in zip(self.inputs, leaves, strict=True):
                if isinstance(static, torch.Tensor):
                    static.copy_(given)
            self.graph.replay()
            copies = [leaf.clone() if isinstance(leaf, torch.Tensor) else leaf for leaf in self.outputs]
            self.copied_out.record(stream)
        return pytree.tree_unflatten(copies, self.output_spec)


class GraphCache:
    """Which keys replay a graph: a key's first call runs eagerly, its second captures (while
    fewer than `limit` are held), every later one replays; a key whose capture failed runs
    eagerly from then on."""

    SEEN_LIMIT = 4096  # keys remembered for a second sighting: varying shapes must not grow memory without end

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: set[tuple] = set()
        self.failed: set[tuple] = set()
        self.captured: dict[tuple, object] = {}
        self.capturing = False  # whether a thread captures a key now: one at a time in the process
        self.books = threading.Lock()  # the above, kept by threads at once; not held while capturing

    def get(self, key: tuple, capture: Callable[[], object]):
        """The key's captured call, captured now if due; None where the call runs eagerly."""
        with self.books:
            if key in self.captured:
                return self.captured[key]
            if key not in self.seen:
                if len(self.seen) >= self.SEEN_LIMIT:
                    self.seen.clear()
                self.seen.add(key)
                return None
            # one capture at a time in the process, as CUDA allows: another key's call meanwhile runs eagerly
            if key in self.failed or self.capturing or len(self.captured) >= self.limit:
                return None
            self.capturing = True
        try:
            captured = capture()
        except RuntimeError as error:
            with self.books:
                self.failed.add(key)
            warn_at_caller(f"lstmkit could not capture this layer in a CUDA graph and runs it step by step, "
                           f"which is slower ({error}); LSTMKIT_CUDA_GRAPHS=0 turns capturing off")
            return None
        else:
            with self.books:
                self.captured[key] = captured
            return captured
        finally:
            with self.books:
                self.capturing = False


CACHE = GraphCache(limit_from_environment())


def call_key(function: Callable, leaves: list) -> tuple:
    described = [
        (tuple(leaf.shape), leaf.stride(), leaf.dtype, leaf.device) if isinstance(leaf, torch.Tensor) else repr(leaf)
        for leaf in leaves
    ]
    return (function.__qualname__, torch.get_float32_matmul_precision(),
            torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction,
            torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction, *described)


def run_captured(function: Callable, arguments: tuple, x: torch.Tensor, batch_sizes: torch.Tensor | None):
    """`function(*arguments)` (whose tensors are on `x`'s device), replayed from its key's graph
    where `CACHE` has one or captures one now; otherwise run eagerly."""
    if not (CACHE.limit and x.is_cuda and batch_sizes is None) or torch.cuda.is_current_stream_capturing():
        return function(*arguments)
    leaves, spec = pytree.tree_flatten(arguments)
    captured = CACHE.get(call_key(function, leaves), lambda: CapturedCall(function, leaves, spec, x.device))
    return function(*arguments) if captured is None else captured(leaves)
