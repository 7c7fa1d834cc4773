"""The scripts in examples/ run as their docstrings say, and print what they promise."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *arguments: str) -> str:
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *arguments], capture_output=True, text=True,
                            check=True, timeout=600)
    return result.stdout


def test_quickstart_matches_torch_nn_and_steps_as_forward():
    printed = run_example("quickstart.py")
    difference = float(re.search(r"lstmkit\.LSTM vs torch\.nn\.LSTM: .* max \|difference\| = (\S+)", printed)[1])
    assert difference < 1e-5  # float32 rounding
    stepped = float(re.search(r"step\(\) x 50 vs forward\(\): max \|difference\| = (\S+)", printed)[1])
    assert stepped < 1e-6  # 0 where torch's one-step and whole-sequence kernels sum alike; 7.5e-08 on an AMD EPYC
    assert "sequence 7 has 1 valid step: output at step 1 is zero: True" in printed
    cells = re.findall(r"^(\S+)\s+([\d,]+)\s+\(50, 8, 64\)", printed, flags=re.MULTILINE)
    assert [cell for cell, _ in cells] == ["rnn", "gru", "lstm", "peephole", "cifg", "layernorm",
                                           "lstm(forget_gate=False)"]
    assert dict(cells)["lstm"] == "25,088"  # 4 · 64 · (32 + 64) + 2 · 4 · 64, as torch.nn.LSTM's


def test_stepping_by_hand_trains_both_cells():
    printed = run_example("stepping_by_hand.py")
    losses = re.findall(r"^(\w+)\(.*\): training MSE (\S+), 59-step roll-out MSE (\S+)$", printed, flags=re.MULTILINE)
    assert [cell for cell, _, _ in losses] == ["LSTMCell", "PeepholeLSTMCell"]
    assert all(float(training) < 0.05 for _, training, _ in losses)


@pytest.mark.slow
def test_time_sequence_prediction_gives_torch_nn_s_losses():
    """pytorch/examples' two-LSTMCell model in float64, lstmkit's cells swapped in (issue 18)."""
    losses = [run_example("time_sequence_prediction.py", "--steps", "1", "--length", "60", "--cell", cell)
              .splitlines()[0] for cell in ("torch", "lstmkit")]
    assert losses[0] == losses[1] and losses[0].startswith("step 0: loss ")
