"""rnn and gru on short calls and without gradients: the fused engine's time over oneDNN's
(engine="native"), the same layer and weights, medians of repeated calls (BENCHMARKS.md, the
rule behind `auto`'s CPU_FUSED_MIN_STEPS).

    python benchmarks/short_calls.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import lstmkit


def median_seconds(layer: torch.nn.Module, x: torch.Tensor, gradients: bool, calls: int) -> float:
    """The median time of a call (forward, and backward with `gradients`), the first two left out."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        if gradients:
            layer(x)[0].sum().backward()
        else:
            with torch.no_grad():
                layer(x)
        times.append(time.perf_counter() - started)
    return statistics.median(times[2:])


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " ")).parse_args()  # --help; no flags
    torch.manual_seed(0)
    print("cell  B  H  T  fused/native without gradients  with gradients")
    for cell in ("gru", "rnn"):
        for batch, hidden in ((1, 64), (16, 128), (64, 256)):
            for steps in (1, 2, 4, 8, 16, 32, 64):
                ratios = []
                for gradients in (False, True):
                    x = torch.randn(steps, batch, hidden, requires_grad=gradients)
                    fused = lstmkit.Recurrent(cell, hidden, hidden, engine="fused")
                    native = lstmkit.Recurrent(cell, hidden, hidden, engine="native")
                    native.load_state_dict(fused.state_dict())
                    calls = 40 if steps * batch * hidden < 200_000 else 15
                    ratios.append(median_seconds(fused, x, gradients, calls) / median_seconds(native, x, gradients,
                                                                                              calls))
                print(f"{cell} {batch} {hidden} {steps} {ratios[0]:.2f} {ratios[1]:.2f}", flush=True)


if __name__ == "__main__":
    main()
