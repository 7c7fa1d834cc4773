"""A packed BiLSTM or BiGRU (a tagger's encoder) on torch.nn and on lstmkit's `auto` (torch's
own kernels), same weights, calls interleaved: the time of lstmkit's over torch.nn's, forward
and backward, and without gradients (BENCHMARKS.md, "Packed input").

    python benchmarks/packed_input.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.nn.utils.rnn import pack_padded_sequence

import lstmkit

LAYERS = {"lstm": (torch.nn.LSTM, lstmkit.LSTM), "gru": (torch.nn.GRU, lstmkit.GRU)}


def call(layer: torch.nn.Module, x: torch.Tensor, lengths: torch.Tensor, gradients: bool) -> float:
    """Seconds of one call on `x` packed by `lengths` (unsorted, as a tagger's batch comes)."""
    started = time.perf_counter()
    with torch.set_grad_enabled(gradients):
        output, _ = layer(pack_padded_sequence(x, lengths, enforce_sorted=False))
        if gradients:
            output.data.sum().backward()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--calls", type=int, default=30, help="interleaved calls of each layer (default: 30)")
    calls = parser.parse_args().calls
    torch.manual_seed(0)
    print("cell  B  T  H  layers  gradients  torch.nn ms (median)  lstmkit ms (median)  lstmkit / torch.nn")
    for cell, (reference_type, layer_type) in LAYERS.items():
        for batch, steps, hidden in ((32, 50, 128), (64, 30, 256)):
            reference = reference_type(hidden, hidden, num_layers=2, bidirectional=True)
            layer = layer_type(hidden, hidden, num_layers=2, bidirectional=True)
            layer.load_state_dict(reference.state_dict())
            x = torch.randn(steps, batch, hidden, requires_grad=True)
            lengths = torch.randint(steps // 5, steps + 1, (batch,))
            for gradients in (True, False):
                times = {reference: [], layer: []}
                for _ in range(calls):
                    for module in times:
                        times[module].append(call(module, x, lengths, gradients))
                theirs, ours = (statistics.median(times[module][2:]) * 1e3 for module in (reference, layer))
                print(f"{cell}  {batch}  {steps}  {hidden}  2 x 2  {'yes' if gradients else 'no'}  {theirs:.1f}  "
                      f"{ours:.1f}  {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
