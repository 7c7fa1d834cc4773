"""Variable lengths, packing and layouts, for every cell (the ones torch.nn lacks included)."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lstmkit
from helpers import ALL_CELL_PARAMS, assert_close, random_state

T, B, INPUT, HIDDEN = 6, 3, 4, 5
LENGTHS = [4, 6, 1]


def make_layer(cell, options, engine, **layer_options):
    torch.manual_seed(0)
    return lstmkit.Recurrent(
        cell, INPUT, HIDDEN, num_layers=2, bidirectional=True, dtype=torch.float64, engine=engine,
        **layer_options, **options,
    )


engines = pytest.mark.parametrize("engine", ["reference", "fused"])


def select(state, rows):
    """The initial/final state restricted to batch rows `rows`."""
    if isinstance(state, tuple):
        return tuple(part[:, rows] for part in state)
    return state[:, rows]


def as_list(state):
    return list(state) if isinstance(state, tuple) else [state]


@pytest.mark.parametrize("cell, options", ALL_CELL_PARAMS)
@engines
def test_lengths_equal_each_sequence_run_alone(cell, options, engine):
    layer = make_layer(cell, options, engine)
    x = torch.randn(T, B, INPUT, dtype=torch.float64)
    hx = random_state(layer, B)
    output, final = layer(x, hx, lengths=LENGTHS)
    for b, length in enumerate(LENGTHS):
        alone_output, alone_final = layer(x[:length, b : b + 1], select(hx, slice(b, b + 1)))
        assert_close(output[:length, b : b + 1], alone_output, f"output of sequence {b}")
        assert torch.all(output[length:, b] == 0), "outputs past the length are zero"
        for batched, alone in zip(as_list(select(final, slice(b, b + 1))), as_list(alone_final), strict=True):
            assert_close(batched, alone, f"final state of sequence {b}")


@pytest.mark.parametrize("cell, options", ALL_CELL_PARAMS)
@engines
def test_packed_input_equals_lengths(cell, options, engine):
    layer = make_layer(cell, options, engine, batch_first=True)
    x = torch.randn(B, T, INPUT, dtype=torch.float64)
    hx = random_state(layer, B)
    packed_output, packed_final = layer(pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False), hx)
    output, final = layer(x, hx, lengths=torch.tensor(LENGTHS))
    padded, lengths = pad_packed_sequence(packed_output, batch_first=True, total_length=T)
    assert lengths.tolist() == LENGTHS
    assert torch.equal(padded, output)
    for a, b in zip(as_list(packed_final), as_list(final), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("cell, options", ALL_CELL_PARAMS)
@engines
def test_batch_first_and_unbatched_layouts_agree(cell, options, engine):
    layer = make_layer(cell, options, engine)
    x = torch.randn(T, B, INPUT, dtype=torch.float64)
    output, final = layer(x)
    layer.batch_first = True
    first_output, first_final = layer(x.transpose(0, 1))
    assert torch.equal(first_output, output.transpose(0, 1))
    single_output, single_final = layer(x[:, 0])  # unbatched: time-major whatever batch_first
    assert_close(single_output, output[:, 0], "unbatched output")
    for a, b, c in zip(as_list(first_final), as_list(final), as_list(single_final), strict=True):
        assert torch.equal(a, b)
        assert_close(c, b[:, 0], "unbatched final state")


@engines
def test_gradient_does_not_reach_padding(engine):
    layer = make_layer("lstm", {}, engine)
    x = torch.randn(T, B, INPUT, dtype=torch.float64, requires_grad=True)
    output, (h_n, c_n) = layer(x, lengths=LENGTHS)
    (output.sum() + h_n.sum() + c_n.sum()).backward()
    for b, length in enumerate(LENGTHS):
        assert torch.all(x.grad[length:, b] == 0)
        assert torch.all(x.grad[:length, b].abs().sum(-1) > 0)


@pytest.mark.parametrize("cell, options", ALL_CELL_PARAMS)
@pytest.mark.parametrize("engine", ["reference", "fused", "triton", "native"])
def test_padding_that_is_not_finite_changes_no_output_and_no_gradient(cell, options, engine):
    """NaN or inf past a sequence's length (NaN-padded features, torch.empty) made the weights'
    gradients NaN with lengths=, though no output read it: as packing, the padding is left out."""
    if engine == "triton":
        pytest.importorskip("triton")
    try:
        layer = make_layer(cell, options, engine)
    except ValueError as refused:  # the native engine runs torch.nn's cells only
        pytest.skip(str(refused))
    finite = torch.randn(T, B, INPUT, dtype=torch.float64)
    for b, length in enumerate(LENGTHS):
        finite[length:, b] = 0
    poisoned = finite.clone()
    poisoned[LENGTHS[0]:, 0] = float("nan")
    poisoned[LENGTHS[2]:, 2] = float("inf")
    runs = []
    for x in (finite, poisoned):
        x = x.clone().requires_grad_()
        output, final = layer(x, lengths=LENGTHS)
        parameters = dict(layer.named_parameters())
        loss = output.sum() + sum(part.sum() for part in as_list(final))
        grads = torch.autograd.grad(loss, [x, *parameters.values()])
        runs.append((output, *as_list(final), *grads))
        names = ["output", *(f"final state {index}" for index in range(len(as_list(final)))), "x.grad", *parameters]
    for name, clean, padded in zip(names, *runs, strict=True):
        assert torch.equal(clean, padded), name



@pytest.mark.parametrize("layer_type, torch_type", [(lstmkit.LSTM, torch.nn.LSTM), (lstmkit.GRU, torch.nn.GRU)])
@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_a_packed_sequence_runs_on_the_native_kernels_as_torch_nn_hands_it_over(layer_type, torch_type,
                                                                              enforce_sorted, monkeypatch):
    """Unpadded: padding it and packing it again (and the output back) cost a packed BiLSTM
    tagger ~20% over torch.nn. The numbers are torch.nn's, inter-layer dropout included."""
    reference = torch_type(INPUT, 5, num_layers=2, dropout=0.5, bidirectional=True, dtype=torch.float64)
    layer = layer_type(INPUT, 5, num_layers=2, dropout=0.5, bidirectional=True, dtype=torch.float64, engine="native")
    layer.load_state_dict(reference.state_dict())
    lengths = sorted(LENGTHS, reverse=True) if enforce_sorted else LENGTHS
    x = torch.randn(T, B, INPUT, dtype=torch.float64)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
    hx = random_state(layer, B)
    torch.manual_seed(1)
    expected_output, expected_final = reference(packed, hx)
    monkeypatch.setattr("lstmkit.nn.inputs.padded_from_packed", None)  # any padding fails
    torch.manual_seed(1)
    output, final = layer(packed, hx)
    assert torch.equal(output.data, expected_output.data)
    assert output.batch_sizes is packed.batch_sizes and output.sorted_indices is packed.sorted_indices
    for ours, theirs in zip(as_list(final), as_list(expected_final), strict=True):
        assert torch.equal(ours, theirs)
