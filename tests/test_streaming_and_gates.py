"""step() streams the same numbers as forward(); return_gates traces what forward computed."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import lstmkit
from helpers import ALL_CELL_PARAMS, assert_close, random_state

T, B, INPUT, HIDDEN = 6, 3, 4, 5


PER_LAYER_ENGINES = ["reference", "fused"]


def make_layer(cell, options, engine="fused", **layer_options):
    torch.manual_seed(0)
    return lstmkit.Recurrent(cell, INPUT, HIDDEN, dtype=torch.float64, engine=engine, **layer_options, **options)


def as_list(state):
    return list(state) if isinstance(state, tuple) else [state]


@pytest.mark.parametrize("engine", ["reference", "fused", "auto"])
@pytest.mark.parametrize("cell, options", ALL_CELL_PARAMS)
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
def test_step_by_step_equals_forward(cell, options, batched, engine):
    layer = make_layer(cell, options, engine, num_layers=2, batch_first=True)
    x = torch.randn(B, T, INPUT, dtype=torch.float64)
    hx = random_state(layer, B)
    if not batched:
        x = x[0]  # (T, I): batch_first does not apply to unbatched input
        hx = tuple(s[:, 0] for s in hx) if isinstance(hx, tuple) else hx[:, 0]
    output, final = layer(x, hx)
    state = hx
    for t in range(T):
        step_output, state = layer.step(x[:, t] if batched else x[t], state)
        assert_close(step_output, output[:, t] if batched else output[t], f"output at step {t}")
    for streamed, whole in zip(as_list(state), as_list(final), strict=True):
        assert_close(streamed, whole, "final state")


def test_step_starts_from_zeros_without_state():
    layer = make_layer("lstm", {})
    x = torch.randn(B, INPUT, dtype=torch.float64)
    output, (h, c) = layer.step(x)
    zeros = torch.zeros(1, B, HIDDEN, dtype=torch.float64)
    assert torch.equal(output, layer.step(x, (zeros, zeros))[0])
    assert h.shape == (1, B, HIDDEN) and c.shape == (1, B, HIDDEN)


def test_step_refuses_bidirectional_layers():
    layer = make_layer("gru", {}, bidirectional=True)
    with pytest.raises(ValueError, match="step\\(\\) streams forward in time; a bidirectional layer"):
        layer.step(torch.randn(B, INPUT, dtype=torch.float64))


def test_step_refuses_a_sequence():
    layer = make_layer("lstm", {})
    with pytest.raises(ValueError, match=r"input of shape \(B, input_size\) or \(input_size,\), got \(6, 3, 4\)"):
        layer.step(torch.randn(T, B, INPUT, dtype=torch.float64))


@pytest.mark.parametrize("engine", PER_LAYER_ENGINES)
@pytest.mark.parametrize("cell, options", ALL_CELL_PARAMS)
def test_return_gates_changes_nothing_and_names_the_cells_gates(cell, options, engine):
    layer = make_layer(cell, options, engine, num_layers=2, bidirectional=True)
    x = torch.randn(T, B, INPUT, dtype=torch.float64)
    plain = layer(x)
    output, state, trace = layer(x, return_gates=True)
    assert torch.equal(output, plain[0])
    for a, b in zip(as_list(state), as_list(plain[1]), strict=True):
        assert torch.equal(a, b)
    expected_names = {
        "rnn": set(),
        "gru": {"reset", "update", "candidate"},
        "cifg": {"input", "forget", "candidate", "output"},
    }.get(cell, {"input", "forget", "candidate", "output"} - {
        name.removesuffix("_gate") for name, value in options.items() if value is False
    })
    assert set(trace.gates) == expected_names
    for name, activation in trace.gates.items():
        assert activation.shape == (4, T, B, HIDDEN), name
    if layer.cell.has_cell_state:
        assert trace.cell_states.shape == (4, T, B, HIDDEN)
        # the final cell state of each direction is the traced one at its last step
        c_n = state[1]
        assert torch.equal(trace.cell_states[[0, 2], -1], c_n[[0, 2]])
        assert torch.equal(trace.cell_states[[1, 3], 0], c_n[[1, 3]])
    else:
        assert trace.cell_states is None


@pytest.mark.parametrize("engine", PER_LAYER_ENGINES)
def test_lstm_trace_reproduces_the_recurrence(engine):
    layer = make_layer("lstm", {}, engine, num_layers=2)
    x = torch.randn(T, B, INPUT, dtype=torch.float64)
    hx = random_state(layer, B)
    output, (h_n, c_n), trace = layer(x, hx, return_gates=True)
    i, f, g, o = (trace.gates[name] for name in ("input", "forget", "candidate", "output"))
    previous = torch.cat([hx[1].unsqueeze(1), trace.cell_states[:, :-1]], dim=1)
    assert_close(trace.cell_states, f * previous + i * g, "c' = f c + i g")
    assert_close(output, o[-1] * torch.tanh(trace.cell_states[-1]), "h' = o tanh(c') of the last layer")
    assert torch.all((0 < i) & (i < 1)) and torch.all((-1 < g) & (g < 1))


@pytest.mark.parametrize("engine", PER_LAYER_ENGINES)
def test_cifg_trace_forget_is_one_minus_input(engine):
    layer = make_layer("cifg", {}, engine)
    _, _, trace = layer(torch.randn(T, B, INPUT, dtype=torch.float64), return_gates=True)
    assert torch.equal(trace.gates["forget"], 1 - trace.gates["input"])


@pytest.mark.parametrize("engine", PER_LAYER_ENGINES)
def test_gru_trace_reproduces_the_recurrence(engine):
    layer = make_layer("gru", {}, engine)
    x = torch.randn(T, B, INPUT, dtype=torch.float64)
    output, _, trace = layer(x, return_gates=True)
    z, n = trace.gates["update"][0], trace.gates["candidate"][0]
    previous = torch.cat([torch.zeros(1, B, HIDDEN, dtype=torch.float64), output[:-1]])
    assert_close(output, (1 - z) * n + z * previous, "h' = (1 - z) n + z h")


@pytest.mark.parametrize("engine", PER_LAYER_ENGINES)
def test_the_trace_is_detached_on_every_engine_and_leaves_the_gradients_alone(engine):
    """A record of the activations, not a part of the graph: the fused kernels' backward does
    not differentiate through it, so no engine does."""
    layer = make_layer("lstm", {}, engine)
    x = torch.randn(T, B, INPUT, dtype=torch.float64, requires_grad=True)
    output, _, trace = layer(x, return_gates=True)
    assert not any(gate.requires_grad for gate in trace.gates.values()) and not trace.cell_states.requires_grad
    (traced,) = torch.autograd.grad(output.pow(2).sum(), x)
    (plain,) = torch.autograd.grad(layer(x)[0].pow(2).sum(), x)
    assert torch.equal(traced, plain)


@pytest.mark.parametrize("engine", PER_LAYER_ENGINES)
def test_gates_under_no_grad_in_eval_mode_with_lengths_and_batch_first(engine):
    layer = make_layer("peephole", {}, engine, batch_first=True).eval()
    x = torch.randn(B, T, INPUT, dtype=torch.float64)
    lengths = [6, 2, 4]
    with torch.no_grad():
        output, (h_n, c_n), trace = layer(x, lengths=lengths, return_gates=True)
    assert trace.gates["forget"].shape == (1, B, T, HIDDEN)
    assert not trace.gates["forget"].requires_grad
    for b, length in enumerate(lengths):
        assert torch.equal(trace.cell_states[0, b, length - 1], c_n[0, b])
        assert torch.all(trace.cell_states[0, b, length:] == 0)
        assert torch.all(trace.gates["input"][0, b, length:] == 0)
        assert torch.all(trace.gates["input"][0, b, :length] > 0)


@pytest.mark.parametrize("packed", [False, True], ids=["lengths", "packed"])
@pytest.mark.parametrize("cell, options", ALL_CELL_PARAMS)
def test_every_gate_of_every_cell_is_zero_past_each_sequence_s_length(cell, options, packed):
    """Every named gate, those a cell names from another too (CIFG's forget = 1 − input), and the
    cell states: zero past each sequence's length, in both directions."""
    layer = make_layer(cell, options, "fused", bidirectional=True)
    x = torch.randn(T, B, INPUT, dtype=torch.float64)
    lengths = [6, 2, 4]
    if packed:
        trace = layer(pack_padded_sequence(x, lengths, enforce_sorted=False), return_gates=True)[2]
    else:
        trace = layer(x, lengths=lengths, return_gates=True)[2]
    for name, gate in {**trace.gates, **({} if trace.cell_states is None else {"c": trace.cell_states})}.items():
        for b, length in enumerate(lengths):
            assert torch.all(gate[:, length:, b] == 0), f"{name} of sequence {b} past its length {length}"
            assert torch.any(gate[:, :length, b] != 0), f"{name} of sequence {b} within its length {length}"


@pytest.mark.parametrize("engine", PER_LAYER_ENGINES)
def test_gates_for_unbatched_input(engine):
    layer = make_layer("lstm", {}, engine)
    _, _, trace = layer(torch.randn(T, INPUT, dtype=torch.float64), return_gates=True)
    assert trace.gates["output"].shape == (1, T, HIDDEN)
    assert trace.cell_states.shape == (1, T, HIDDEN)


def test_gates_of_a_native_layer_come_from_the_fused_engine():
    layer = make_layer("lstm", {}, "auto")
    assert layer.engine_name == "native"
    x = torch.randn(T, B, INPUT, dtype=torch.float64)
    output, (h_n, c_n), trace = layer(x, return_gates=True)
    assert_close(output, layer(x)[0], "output")
    assert_close(trace.cell_states[0, -1], c_n[0], "c_n")


def test_gates_need_a_per_layer_engine_when_native_is_forced():
    layer = make_layer("gru", {}, "native")
    with pytest.raises(ValueError, match="the native kernels do not expose gate activations; build the layer with "
                                         "engine='auto' or 'fused' to use return_gates=True"):
        layer(torch.randn(T, B, INPUT, dtype=torch.float64), return_gates=True)
