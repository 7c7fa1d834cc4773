"""500 random configurations against torch.nn, on every engine (slow: `pytest -m slow`).

Each example draws a plain cell (lstm, gru, rnn tanh/relu), an engine (native, fused,
triton when installed, reference), sizes, layers, directions, bias, batch_first, proj_size,
a dtype (float64, or float32 with a looser tolerance), an input form (batched, unbatched,
padded with lengths, packed sorted with enforce_sorted=True, packed unsorted) and a given or
zero initial state, then compares outputs, final states and the gradients of the input, the
state and every parameter with torch.nn's.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_padded_sequence

import lstmkit
from helpers import flatten_outputs, gradients, random_state, relative_error, state_leaves, torch_twin

ENGINES = [name for name, engine in lstmkit.engines.ENGINES.items() if engine.unavailable() is None]
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4}


@st.composite
def configurations(draw):
    cell, nonlinearity = draw(st.sampled_from([("lstm", None), ("gru", None), ("rnn", "tanh"), ("rnn", "relu")]))
    hidden = draw(st.integers(2, 7))
    batch, steps = draw(st.integers(1, 4)), draw(st.integers(1, 6))
    form = draw(st.sampled_from(["batched", "unbatched", "lengths", "packed-sorted", "packed-unsorted"]))
    lengths = draw(st.lists(st.integers(1, steps), min_size=batch, max_size=batch))
    if form == "packed-sorted":
        lengths = sorted(lengths, reverse=True)
    return dict(
        cell=cell, options={} if nonlinearity is None else {"nonlinearity": nonlinearity},
        engine=draw(st.sampled_from(ENGINES)), input_size=draw(st.integers(1, 5)), hidden_size=hidden,
        num_layers=draw(st.integers(1, 3)), bidirectional=draw(st.booleans()), bias=draw(st.booleans()),
        batch_first=draw(st.booleans()), proj_size=draw(st.integers(0, hidden - 1)) if cell == "lstm" else 0,
        dtype=draw(st.sampled_from([torch.float64, torch.float32])), form=form, batch=batch, steps=steps,
        lengths=lengths, given_state=draw(st.booleans()),
    )


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(configurations())
def test_random_configurations_equal_torch_nn(configuration):
    c = configuration
    torch.manual_seed(0)
    layer = lstmkit.Recurrent(
        c["cell"], c["input_size"], c["hidden_size"], c["num_layers"], c["bias"], c["batch_first"], 0.0,
        c["bidirectional"], c["proj_size"], dtype=c["dtype"], engine=c["engine"], **c["options"],
    )
    twin = torch_twin(layer)
    batched = c["form"] != "unbatched"
    shape = (c["batch"], c["steps"]) if c["batch_first"] else (c["steps"], c["batch"])
    x = torch.randn(*(shape if batched else (c["steps"],)), c["input_size"], dtype=c["dtype"], requires_grad=True)
    hx = random_state(layer, c["batch"] if batched else None) if c["given_state"] else None
    if c["form"].startswith("packed"):
        packed = pack_padded_sequence(x, c["lengths"], c["batch_first"], enforce_sorted=c["form"] == "packed-sorted")
        ours, theirs = layer(packed, hx), twin(packed, hx)
    elif c["form"] == "lengths":
        ours = layer(x, hx, lengths=c["lengths"])
        theirs = twin(pack_padded_sequence(x, c["lengths"], c["batch_first"], enforce_sorted=False), hx)
        ours = (pack_padded_sequence(ours[0], c["lengths"], c["batch_first"], enforce_sorted=False), ours[1])
    else:
        ours, theirs = layer(x, hx), twin(x, hx)
    tolerance = TOLERANCE[c["dtype"]]
    for index, (a, e) in enumerate(zip(flatten_outputs(ours), flatten_outputs(theirs), strict=True)):
        assert relative_error(a, e) < tolerance, f"output tensor {index}"
    leaves = {"input": x, **state_leaves(hx)}
    ours_grads = gradients(ours, {**leaves, **dict(layer.named_parameters())})
    theirs_grads = gradients(theirs, {**leaves, **dict(twin.named_parameters())})
    for name, expected in theirs_grads.items():
        assert relative_error(ours_grads[name], expected) < tolerance, f"gradient of {name}"
