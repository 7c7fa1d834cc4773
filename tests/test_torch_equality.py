"""lstmkit.LSTM/GRU/RNN equal torch.nn.LSTM/GRU/RNN in float64 over the option grid.

Outputs, final states and the gradients of the input, the initial state and every parameter
agree to a relative error below 1e-10, on every engine.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lstmkit
from helpers import assert_same_run, random_state, state_leaves, torch_twin

T, B, INPUT, HIDDEN, PROJ = 5, 3, 4, 6, 3
LENGTHS = [5, 2, 4]  # unsorted, so packing exercises sorted_indices

CELLS = [("lstm", {}), ("gru", {}), ("rnn", {"nonlinearity": "tanh"}), ("rnn", {"nonlinearity": "relu"})]
ENGINES = ["reference", "fused", "native"]
MODES = ["batched", "unbatched", "packed", "lengths"]


def grid():
    for engine, (cell, options), layers, bidirectional, batch_first, bias, proj, given_state, mode in itertools.product(
        ENGINES, CELLS, [1, 2, 3], [False, True], [False, True], [True, False], [0, PROJ], [False, True], MODES
    ):
        if proj and cell != "lstm":
            continue
        label = "-".join(
            [engine, cell, *map(str, options.values()), f"L{layers}", "bi" if bidirectional else "uni",
             "bf" if batch_first else "tf", "bias" if bias else "nobias", f"proj{proj}",
             "hx" if given_state else "zeros", mode]
        )
        yield pytest.param(
            engine, cell, options, layers, bidirectional, batch_first, bias, proj, given_state, mode, id=label
        )


@pytest.mark.parametrize(
    "engine, cell, options, layers, bidirectional, batch_first, bias, proj, given_state, mode", list(grid())
)
def test_equals_torch_nn(engine, cell, options, layers, bidirectional, batch_first, bias, proj, given_state, mode):
    torch.manual_seed(0)
    layer = lstmkit.Recurrent(
        cell, INPUT, HIDDEN, layers, bias, batch_first, 0.0, bidirectional, proj,
        dtype=torch.float64, engine=engine, **options,
    )
    twin = torch_twin(layer)
    shape = (T, INPUT) if mode == "unbatched" else ((B, T, INPUT) if batch_first else (T, B, INPUT))
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    hx = random_state(layer, None if mode == "unbatched" else B) if given_state else None

    if mode in ("batched", "unbatched"):
        ours, theirs = layer(x, hx), twin(x, hx)
    elif mode == "packed":
        packed = pack_padded_sequence(x, LENGTHS, batch_first=batch_first, enforce_sorted=False)
        ours, theirs = layer(packed, hx), twin(packed, hx)
        assert torch.equal(ours[0].batch_sizes, theirs[0].batch_sizes)
        assert torch.equal(ours[0].sorted_indices, theirs[0].sorted_indices)
    else:
        ours = layer(x, hx, lengths=LENGTHS)
        packed = pack_padded_sequence(x, LENGTHS, batch_first=batch_first, enforce_sorted=False)
        packed_output, state = twin(packed, hx)
        padded, _ = pad_packed_sequence(packed_output, batch_first=batch_first, total_length=T)
        theirs = (padded, state)

    our_leaves = {"input": x, **state_leaves(hx), **dict(layer.named_parameters())}
    their_leaves = {"input": x, **state_leaves(hx), **dict(twin.named_parameters())}
    assert_same_run(ours, theirs, our_leaves, their_leaves)


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_seeded_construction_gives_torch_weights(name):
    options = dict(num_layers=2, bidirectional=True)
    torch.manual_seed(7)
    theirs = getattr(torch.nn, name)(5, 4, **options)
    torch.manual_seed(7)
    ours = getattr(lstmkit, name)(5, 4, **options)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key


def test_lstm_with_projection_has_torch_parameter_names_and_shapes():
    theirs = torch.nn.LSTM(5, 4, num_layers=2, bidirectional=True, proj_size=2)
    ours = lstmkit.LSTM(5, 4, num_layers=2, bidirectional=True, proj_size=2)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }
    assert [[p.shape for p in group] for group in ours.all_weights] == [
        [p.shape for p in group] for group in theirs.all_weights
    ]


def test_rnn_takes_nonlinearity_as_fourth_positional_argument_like_torch():
    assert lstmkit.RNN(3, 4, 2, "relu").nonlinearity == torch.nn.RNN(3, 4, 2, "relu").nonlinearity == "relu"


@pytest.mark.parametrize("layer, options", [("LSTM", {}), ("GRU", {}), ("RNN", {}), ("RNN", {"nonlinearity": "relu"})])
def test_the_mode_torch_nn_exposes(layer, options):
    assert getattr(lstmkit, layer)(3, 4, **options).mode == getattr(torch.nn, layer)(3, 4, **options).mode


@pytest.mark.parametrize("layer, options", [("LSTM", {"proj_size": 2}), ("GRU", {}), ("RNN", {"bias": False})])
def test_flat_weights_as_torch_nn_lists_them(layer, options):
    options = dict(num_layers=2, bidirectional=True, **options)
    ours, theirs = getattr(lstmkit, layer)(5, 4, **options), getattr(torch.nn, layer)(5, 4, **options)
    assert ours._flat_weights_names == theirs._flat_weights_names
    assert all(ours_weight is getattr(ours, name)
               for ours_weight, name in zip(ours._flat_weights, ours._flat_weights_names, strict=True))


@pytest.mark.parametrize("enforce_sorted", [True, False], ids=["sorted", "unsorted"])
@pytest.mark.parametrize("engine", ["auto", "native", "fused", "reference"])
@pytest.mark.parametrize("layer", ["LSTM", "GRU", "RNN"])
def test_packed_input_and_lengths_run_on_the_meta_device(layer, engine, enforce_sorted):
    """A PackedSequence of meta data (its batch sizes on the CPU; sorted or not, its sorting
    indices on the meta device, without values) gives torch.nn's packed shapes, and lengths=
    its padded ones: every engine leaves such a call to the reference engine, which needs no
    lengths' values."""
    options = dict(num_layers=2, bidirectional=True, device="meta")
    x = torch.empty(5, 3, 4, device="meta")
    lengths = [5, 4, 2] if enforce_sorted else [4, 5, 2]
    packed = pack_padded_sequence(torch.zeros(5, 3, 4), torch.tensor(lengths), enforce_sorted=enforce_sorted).to("meta")
    ours, theirs = getattr(lstmkit, layer)(4, 6, engine=engine, **options), getattr(torch.nn, layer)(4, 6, **options)
    output, their_output = ours(packed)[0], theirs(packed)[0]
    assert (output.data.device.type, output.data.shape) == ("meta", their_output.data.shape)
    assert torch.equal(output.batch_sizes, their_output.batch_sizes)
    assert ours(x, lengths=[5, 2, 4])[0].shape == theirs(x)[0].shape


@pytest.mark.parametrize("engine", ["auto", "native", "fused", "reference"])
@pytest.mark.parametrize("layer", ["LSTM", "GRU", "RNN"])
def test_runs_on_the_meta_device_like_torch_nn(layer, engine):
    """Shape inference and deferred initialisation build and run a model on the meta device."""
    options = dict(num_layers=2, bidirectional=True, batch_first=True, device="meta")
    x = torch.empty(3, 7, 5, device="meta")
    (output, state), (their_output, their_state) = (
        getattr(lstmkit, layer)(5, 4, engine=engine, **options)(x), getattr(torch.nn, layer)(5, 4, **options)(x))
    assert (output.device.type, output.shape, output.dtype) == ("meta", their_output.shape, their_output.dtype)
    states, their_states = (state if isinstance(state, tuple) else (state,)), (
        their_state if isinstance(their_state, tuple) else (their_state,))
    assert [s.shape for s in states] == [s.shape for s in their_states]
