"""torch.compile gives the eager numbers, through several optimizer steps.

The fused, Triton and native engines run eagerly inside a compiled model (a graph break, as
torch.compile treats torch.nn's RNNs): the compiler never traces into the buffers their
kernels write in place. The reference engine is ordinary autograd and compiles through.
Each case trains an eager and a compiled copy of the same layer with SGD for a few steps on
the same batch and compares outputs and weights at every step.
"""

from __future__ import annotations

import pytest
import torch

import lstmkit
from helpers import relative_error

STEPS = 3
CASES = [
    pytest.param("lstm", "auto", {}, id="lstm-auto(native)"),
    pytest.param("lstm", "fused", {"num_layers": 2, "bidirectional": True}, id="lstm-fused-L2-bi"),
    pytest.param("lstm", "fused", {"proj_size": 4}, id="lstm-fused-proj"),
    pytest.param("lstm", "fused", {"forget_gate": False}, id="lstm-ablation-fused"),
    pytest.param("gru", "auto", {"bidirectional": True}, id="gru-auto(fused)-bi"),
    pytest.param("rnn", "native", {"nonlinearity": "relu"}, id="rnn-native"),
    pytest.param("peephole", "fused", {}, id="peephole-fused"),
    pytest.param("cifg", "reference", {}, id="cifg-reference"),
    pytest.param("layernorm", "fused", {"num_layers": 2}, id="layernorm-fused-L2"),
    pytest.param("layernorm", "triton", {}, id="layernorm-triton"),
]


def train_together(cell, engine, options, backend):
    torch.manual_seed(0)
    eager = lstmkit.Recurrent(cell, 6, 8, engine=engine, **options)
    twin = lstmkit.Recurrent(cell, 6, 8, engine=engine, **options)
    twin.load_state_dict(eager.state_dict())
    compiled = torch.compile(twin, backend=backend)
    optimizers = [torch.optim.SGD(model.parameters(), lr=0.5) for model in (eager, twin)]
    x = torch.randn(5, 3, 6)
    for _ in range(STEPS):
        outputs = []
        for model, optimizer in zip((eager, compiled), optimizers, strict=True):
            optimizer.zero_grad()
            output = model(x, lengths=[5, 2, 4])[0]
            output.pow(2).sum().backward()
            optimizer.step()
            outputs.append(output.detach())
        assert relative_error(outputs[1], outputs[0]) < 1e-5
        for (name, ours), theirs in zip(twin.named_parameters(), eager.parameters(), strict=True):
            assert relative_error(ours, theirs) < 1e-5, name


@pytest.mark.parametrize("cell, engine, options", CASES)
def test_compiled_training_equals_eager_with_aot_eager(cell, engine, options):
    train_together(cell, engine, options, "aot_eager")


@pytest.mark.parametrize("cell, engine, options", [CASES[0], CASES[1], CASES[7]])
def test_compiled_training_equals_eager_with_inductor(cell, engine, options):
    train_together(cell, engine, options, "inductor")
