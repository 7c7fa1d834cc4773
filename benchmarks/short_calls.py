"""rnn and gru on short calls and without gradients: the fused engine's time over oneDNN's
(engine="native"), the same layer and weights, medians of calls interleaved (BENCHMARKS.md, the
rule behind `auto`'s CPU_FUSED_MIN_STEPS).

    python benchmarks/short_calls.py
"""

from __future__ import annotations

import argparse

import torch
from common import interleaved_medians

import lstmkit


def call(layer: torch.nn.Module, x: torch.Tensor, gradients: bool):
    """One call (forward, and backward with `gradients`), to be timed."""
    def run():
        if gradients:
            layer(x)[0].sum().backward()
        else:
            with torch.no_grad():
                layer(x)
    return run


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
                    fused_seconds, native_seconds = interleaved_medians(
                        [call(fused, x, gradients), call(native, x, gradients)], torch.device("cpu"), calls, warmup=2)
                    ratios.append(fused_seconds / native_seconds)
                print(f"{cell} {batch} {hidden} {steps} {ratios[0]:.2f} {ratios[1]:.2f}", flush=True)


if __name__ == "__main__":
    main()
