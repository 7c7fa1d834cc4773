"""Mixed precision: torch.autocast and half parameters, in every engine and cell.

The contract (lstmkit.engines.precision): products in the autocast (or parameter) dtype, the
state and point-wise arithmetic in float32, outputs in the dtype torch.nn returns. Each engine
is checked against the float32 reference engine, against the reference engine run in the same
precision, and for the dtypes torch.nn's layers give under the same autocast.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import lstmkit
from lstmkit.engines.native import lacks_half_lstm
from helpers import ALL_CELL_PARAMS, TORCH_LAYERS, relative_error, torch_twin

ENGINES = ["fused", "reference"]
LENGTHS = [7, 5, 2]
# bfloat16 keeps 8 bits of mantissa: 0.4 % per rounding, compounded over steps and layers.
# LayerNorm divides by the spread of the rounded projections, which doubles the error.
BFLOAT16_TOLERANCE = {"layernorm": 0.1}


def twins(cell, options, engine, dtype=torch.float32, **layer_options):
    """A float32 reference layer and a layer of `engine` in `dtype` with the same weights."""
    torch.manual_seed(0)
    reference = lstmkit.Recurrent(cell, 8, 16, engine="reference", **options, **layer_options)
    layer = lstmkit.Recurrent(cell, 8, 16, engine=engine, **options, **layer_options).to(dtype)
    layer.load_state_dict(reference.state_dict())
    return reference, layer


def first_state(state):
    return state[0] if isinstance(state, tuple) else state


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("cell, options", ALL_CELL_PARAMS)
def test_cpu_autocast_bfloat16_matches_float32_within_bfloat16_rounding(cell, options, engine):
    reference, layer = twins(cell, options, engine, num_layers=2, bidirectional=True)
    x = torch.randn(7, 3, 8)
    expected, _ = reference(x, lengths=LENGTHS)
    with torch.autocast("cpu", torch.bfloat16):
        output, state = layer(x, lengths=LENGTHS)
    # as torch.nn under CPU autocast, which runs the GRU, and the LSTM with lengths (packed), as cell steps
    expected_dtype = torch.float32 if cell in ("gru", "lstm") else torch.bfloat16
    assert output.dtype == first_state(state).dtype == expected_dtype
    assert relative_error(output.float(), expected) < BFLOAT16_TOLERANCE.get(cell, 0.05)
    (output.float() * torch.randn_like(expected)).sum().backward()
    for name, parameter in layer.named_parameters():
        assert parameter.grad.dtype == torch.float32, name
        assert torch.isfinite(parameter.grad).all(), name


@pytest.mark.parametrize("cell, options", ALL_CELL_PARAMS)
def test_fused_under_autocast_equals_the_reference_in_the_same_precision(cell, options):
    """Same products in bfloat16, same float32 point-wise math: the engines agree far more
    closely than either agrees with float32."""
    _, fused = twins(cell, options, "fused")
    _, reference = twins(cell, options, "reference")
    x = torch.randn(7, 3, 8)
    with torch.autocast("cpu", torch.bfloat16):
        ours, theirs = fused(x)[0], reference(x)[0]
    ours.float().sum().backward()
    theirs.float().sum().backward()
    assert relative_error(ours.float(), theirs.float()) < 2e-2
    for (name, mine), other in zip(fused.named_parameters(), reference.parameters(), strict=True):
        assert relative_error(mine.grad, other.grad) < BFLOAT16_TOLERANCE.get(cell, 0.05), name


@pytest.mark.parametrize("lengths, enforce_sorted", [(None, None), ([5, 4, 2], True), ([4, 5, 2], False)],
                         ids=["padded", "packed-sorted", "packed-unsorted"])
@pytest.mark.parametrize("input_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("engine", ["auto", *ENGINES])
@pytest.mark.parametrize("cell", ["lstm", "rnn", "gru"])
def test_autocast_output_dtypes_are_torch_nn_s(cell, engine, lengths, enforce_sorted, input_dtype):
    """Under CPU autocast torch.nn.LSTM returns bfloat16 for a padded tensor, and for packed
    input (and torch.nn.GRU always) the autocast dtype promoted with the initial state's,
    whose zeros come in the input's dtype: float32 for float32 input, bfloat16 for bfloat16
    input (a Linear's output under autocast). lstmkit returns what torch.nn returns on the
    native (auto), fused and reference engines (the Triton engine takes its precision from the
    same rule)."""
    layer = lstmkit.Recurrent(cell, 8, 16, engine=engine)
    twin = torch_twin(layer)
    x = torch.randn(5, 3, 8, dtype=input_dtype)
    packed = lengths is not None
    if packed:
        x = pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
    with torch.autocast("cpu", torch.bfloat16):
        if cell == "lstm" and lacks_half_lstm():  # torch.nn.LSTM's kernel fails here: no answer to match
            if engine == "native":
                with pytest.raises(ValueError, match="engine='native' cannot run this call: torch's CPU LSTM kernel "
                                                     r"\(oneDNN\) fails under bfloat16 autocast on this CPU"):
                    layer(x)
                return
            output = layer(x)[0]
            assert (output.data if packed else output).dtype == (input_dtype if packed else torch.bfloat16)
            return
        ours, theirs = layer(x), twin(x)
    ours_output, theirs_output = (ours[0].data, theirs[0].data) if packed else (ours[0], theirs[0])
    assert ours_output.dtype == theirs_output.dtype
    assert first_state(ours[1]).dtype == first_state(theirs[1]).dtype
    assert relative_error(ours_output.float(), theirs_output.float()) < 2e-2


@pytest.mark.parametrize("input_dtype, autocasting", [(torch.bfloat16, torch.float16), (torch.float16, torch.bfloat16)],
                         ids=["bfloat16-under-float16", "float16-under-bfloat16"])
@pytest.mark.parametrize("engine", ["auto", "native", *ENGINES])
@pytest.mark.parametrize("cell", ["lstm", "rnn", "gru"])
def test_packed_half_input_under_the_other_half_autocast_gives_torch_nn_s_output(cell, engine, input_dtype,
                                                                                 autocasting):
    """Packed bfloat16 data under float16 autocast: torch.nn runs it; the native engine, which
    packs the padded data again, failed in torch's packing ("Unexpected floating ScalarType in
    at::autocast::prioritize"), and with it auto for lstm, gru and rnn."""
    torch.manual_seed(0)
    layer = lstmkit.Recurrent(cell, 3, 5, engine=engine)
    twin = torch_twin(layer)
    x = pack_padded_sequence(torch.randn(4, 2, 3, dtype=input_dtype), [4, 3])
    with torch.autocast("cpu", autocasting):
        ours, theirs = layer(x), twin(x)
    assert ours[0].data.dtype == theirs[0].data.dtype
    assert relative_error(ours[0].data.float(), theirs[0].data.float()) < 2e-2


@pytest.mark.parametrize("grad", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("state_dtype", [None, torch.float32], ids=["no-state", "float32-state"])
@pytest.mark.parametrize("input_dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("autocast_dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("engine", ["auto", "fused", "reference", "native"])
def test_lstm_output_dtypes_under_cpu_autocast_are_torch_nn_s_for_every_input_dtype(
        engine, autocast_dtype, input_dtype, state_dtype, grad):
    """torch's CPU LSTM runs input that oneDNN's LSTM does not take (float16 with gradients) as its
    cell steps, whose outputs promote the autocast dtype with the state's: float16 input with a
    float32 state gave float32 from torch.nn and float16 from lstmkit, and engine='native' refused
    a call torch.nn runs. Where torch.nn fails, `native` says why and the other engines return the
    autocast dtype."""
    layer = lstmkit.LSTM(8, 16, engine=engine)
    twin = torch_twin(layer)
    x = torch.randn(5, 3, 8, dtype=input_dtype)
    hx = None if state_dtype is None else (torch.randn(1, 3, 16, dtype=state_dtype),) * 2
    with torch.autocast("cpu", autocast_dtype), torch.set_grad_enabled(grad):
        try:
            theirs = twin(x, hx)
        except RuntimeError as failed:
            assert "could not create a primitive descriptor" in str(failed)
            theirs = None
        if theirs is None and engine == "native":
            with pytest.raises(ValueError, match=r"torch's CPU LSTM kernel \(oneDNN\) fails under"):
                layer(x, hx)
            return
        ours = layer(x, hx)
    if theirs is None:
        assert {ours[0].dtype, ours[1][0].dtype, ours[1][1].dtype} == {autocast_dtype}
        return
    assert [ours[0].dtype, *(part.dtype for part in ours[1])] == [theirs[0].dtype, *(part.dtype for part in theirs[1])]
    assert relative_error(ours[0].float(), theirs[0].float()) < 2e-2


@pytest.mark.parametrize("autocast_dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("engine", ["auto", "native"])
def test_a_float64_lstm_under_cpu_autocast_runs_as_torch_nn_s(engine, autocast_dtype):
    """torch runs float64 input as its cell steps, never through oneDNN, and autocast leaves
    float64 alone: a float64 LSTM was refused by `native` (and moved off it by `auto`) as if
    oneDNN's LSTM would fail."""
    layer = lstmkit.LSTM(8, 16, engine=engine, dtype=torch.float64)
    twin = torch_twin(layer)
    x = torch.randn(5, 3, 8, dtype=torch.float64)
    with torch.autocast("cpu", autocast_dtype):
        ours, theirs = layer(x), twin(x)
    assert [ours[0].dtype, *(part.dtype for part in ours[1])] == [torch.float64] * 3
    assert torch.equal(ours[0], theirs[0]) and all(map(torch.equal, ours[1], theirs[1]))


@pytest.mark.parametrize("autocast_dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("engine", ["auto", "fused", "reference", "native"])
def test_an_lstm_on_a_batch_of_0_under_cpu_autocast_returns_torch_nn_s_dtypes(engine, autocast_dtype):
    """oneDNN takes no empty input, so torch runs a batch of 0 as its cell steps, which return
    float32: lstmkit returned the autocast dtype, and `native` refused under float16."""
    layer = lstmkit.LSTM(3, 4, engine=engine)
    twin = torch_twin(layer)
    x = torch.randn(5, 0, 3)
    with torch.autocast("cpu", autocast_dtype):
        ours, theirs = layer(x), twin(x)
    assert [ours[0].dtype, *(part.dtype for part in ours[1])] == [theirs[0].dtype, *(part.dtype for part in theirs[1])]
    assert ours[0].shape == theirs[0].shape == (5, 0, 4)


@pytest.mark.parametrize("autocast_dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("engine", ["auto", "fused", "reference"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_float64_input_under_cpu_autocast_runs_as_float32_input(cell, engine, autocast_dtype):
    """Under autocast a layer takes input of any floating-point dtype: float64 input crashed inside
    torch on the native engine, `auto`'s choice for these cells (`mat1 and mat2 must have the same
    dtype, but got Double and BFloat16`), and the GRU returned float64 on the others. It runs as
    the float32 input of its values, and its gradient comes back in float64."""
    layer = lstmkit.Recurrent(cell, 8, 16, engine=engine)
    x = torch.randn(5, 3, 8)
    wide = x.double().requires_grad_()
    with torch.autocast("cpu", autocast_dtype):
        expected, ours = layer(x), layer(wide)
    assert ours[0].dtype == expected[0].dtype and torch.equal(ours[0], expected[0])
    ours[0].float().sum().backward()
    assert wide.grad.dtype == torch.float64 and bool(wide.grad.abs().sum() > 0)


@pytest.mark.parametrize("lengths", [None, [5, 3, 2]], ids=["padded", "lengths"])
@pytest.mark.parametrize("engine", ["auto", "native", "fused", "reference"])
@pytest.mark.parametrize("layer_type, options", [(lstmkit.LSTM, {}), (lstmkit.LSTM, {"proj_size": 3}),
                                                 (lstmkit.GRU, {}), (lstmkit.RNN, {})],
                         ids=["lstm", "proj", "gru", "rnn"])
def test_float64_parameters_under_cpu_autocast_run_input_and_state_of_any_dtype_in_float64(layer_type, options, engine,
                                                                                           lengths):
    """float64 parameters run everything in float64 under autocast (`engines.precision`): float32
    input or state crashed on the native engine, and on `auto` where it chose native (a GRU at
    5 steps, not at 100): `mat1 and mat2 must have the same dtype, but got BFloat16 and Double`.
    It runs as the float64 input of its values, and its gradient comes back in float32."""
    torch.manual_seed(0)
    layer = layer_type(8, 16, num_layers=2, engine=engine, dtype=torch.float64, **options)
    x = torch.randn(5, 3, 8, requires_grad=True)
    h0 = torch.randn(2, 3, options.get("proj_size", 16))
    hx = (h0, torch.randn(2, 3, 16)) if layer_type is lstmkit.LSTM else h0
    wide = (h0.double(), hx[1].double()) if isinstance(hx, tuple) else h0.double()
    exact = layer(x.double(), wide, lengths=lengths)
    with torch.autocast("cpu", torch.bfloat16):
        ours = layer(x, hx, lengths=lengths)
    exact, ours = ([exact[0], *(exact[1] if isinstance(exact[1], tuple) else [exact[1]])] for exact in (exact, ours))
    assert all(actual.dtype == torch.float64 and torch.equal(actual, expected)
               for actual, expected in zip(ours, exact, strict=True))
    ours[0].sum().backward()
    assert x.grad.dtype == torch.float32 and bool(x.grad.abs().sum() > 0)


def test_float64_input_to_a_float32_lstm_under_cpu_float16_autocast_runs_where_onednn_would_fail():
    """float64 input is cast to what the layer runs in: oneDNN's LSTM, which fails under float16
    autocast in training on this CPU, is not chosen for it (auto crashed inside torch: `mat1 and
    mat2 must have the same dtype, but got Double and Half`)."""
    layer = lstmkit.LSTM(8, 16)
    x = torch.randn(5, 3, 8, dtype=torch.float64)
    with torch.autocast("cpu", torch.float16):
        if lacks_half_lstm() is None:
            pytest.skip("oneDNN's float16 LSTM trains on this CPU")
        output, (h_n, c_n) = layer(x)
    assert (output.dtype, h_n.dtype, c_n.dtype) == (torch.float16,) * 3


@pytest.mark.parametrize("lengths", [None, [5, 4, 2]], ids=["padded", "packed"])
@pytest.mark.parametrize("autocasting, input_dtype", [(torch.bfloat16, torch.float32), (torch.bfloat16, torch.bfloat16),
                                                      (torch.float16, torch.float32), (torch.float16, torch.float16)])
@pytest.mark.parametrize("engine", ["auto", "native", *ENGINES])
def test_a_projected_lstm_under_cpu_autocast_gives_torch_nn_s_dtypes(engine, autocasting, input_dtype, lengths):
    """torch's CPU LSTM with a projection runs as cell steps (oneDNN has none): c promotes the
    autocast dtype with c0's, and h comes out of W_hr's product in the autocast dtype, packed
    or not. The engines gave c_n in the autocast dtype (padded) or everything in float32
    (packed), and native refused float16 autocast for oneDNN's sake."""
    torch.manual_seed(0)
    layer = lstmkit.LSTM(8, 16, num_layers=2, proj_size=4, engine=engine)
    twin = torch_twin(layer)
    x = torch.randn(5, 3, 8, dtype=input_dtype)
    if lengths is not None:
        x = pack_padded_sequence(x, lengths)
    with torch.autocast("cpu", autocasting):
        (output, (h_n, c_n)), (expected, (expected_h, expected_c)) = layer(x), twin(x)
    if lengths is not None:
        output, expected = output.data, expected.data
    assert (output.dtype, h_n.dtype, c_n.dtype) == (expected.dtype, expected_h.dtype, expected_c.dtype)
    assert (expected.dtype, expected_c.dtype) == (autocasting, torch.promote_types(autocasting, input_dtype))
    assert relative_error(c_n.float(), expected_c.float()) < 2e-2  # torch's gates in the autocast dtype, ours in float32
    assert relative_error(output.float(), expected.float()) < 4e-2


@pytest.mark.parametrize("input_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("cell", ["lstm", "rnn", "gru"])
def test_lengths_give_the_output_dtype_of_packed_input_on_every_engine(cell, input_dtype):
    """lengths= runs as torch runs a PackedSequence (torch's kernels take it packed), so under
    CPU autocast every engine, and return_gates=True (which leaves torch's kernels), returns
    the dtype torch.nn returns for the packed input."""
    x = torch.randn(5, 3, 8, dtype=input_dtype)
    layers = [lstmkit.Recurrent(cell, 8, 16, engine=engine) for engine in ("auto", *ENGINES)]
    with torch.autocast("cpu", torch.bfloat16):
        expected = torch_twin(layers[0])(pack_padded_sequence(x, [5, 3, 2]))[0].data.dtype
        dtypes = {layer(x, lengths=[5, 3, 2])[0].dtype for layer in layers}
        dtypes.add(layers[0](x, lengths=[5, 3, 2], return_gates=True)[0].dtype)
    assert dtypes == {expected}


@pytest.mark.parametrize("engine", ["auto", "native", *ENGINES])
@pytest.mark.parametrize("autocasting", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("parameters", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("cell", ["lstm", "rnn", "gru"])
def test_half_parameters_under_cpu_autocast_give_torch_nn_s_dtypes(cell, packed, parameters, autocasting, engine):
    """torch.autocast casts half-precision parameters of either kind as it casts float32 ones,
    so torch.nn's layers return under autocast what they return with float32 parameters
    (float32 from the GRU and from packed input, else the autocast dtype), and so does every
    engine, with each gradient in its parameter's dtype. Where torch.nn's LSTM fails (oneDNN
    has no such LSTM here) there is nothing to match."""
    torch.manual_seed(0)
    layer = lstmkit.Recurrent(cell, 8, 16, engine=engine, bidirectional=True).to(parameters)
    twin = torch_twin(layer)
    x = torch.randn(5, 3, 8)
    if packed:
        x = pack_padded_sequence(x, [5, 4, 2])
    with torch.autocast("cpu", autocasting):
        try:
            theirs = twin(x)
        except RuntimeError as error:
            assert cell == "lstm" and not packed and "could not create a primitive descriptor" in str(error)
            return
        ours = layer(x)
    ours_output, theirs_output = (ours[0].data, theirs[0].data) if packed else (ours[0], theirs[0])
    assert ours_output.dtype == theirs_output.dtype
    assert first_state(ours[1]).dtype == first_state(theirs[1]).dtype
    assert relative_error(ours_output.float(), theirs_output.float()) < 3e-2
    ours_output.float().sum().backward()
    assert all(parameter.grad.dtype == parameters for parameter in layer.parameters())


@pytest.mark.parametrize("cell", ["lstm", "rnn", "gru"])
def test_float16_cpu_autocast_gives_torch_nn_s_numbers_or_runs_the_lstm_that_torch_nn_cannot(cell):
    """Where torch.nn.LSTM fails under float16 autocast (a CPU without AVX-512 FP16, or one where
    oneDNN has no float16 LSTM primitive), auto runs the fused engine, whose numbers are the
    reference engine's under the same autocast."""
    layer = lstmkit.Recurrent(cell, 8, 16)
    x = torch.randn(5, 3, 8)
    with torch.autocast("cpu", torch.float16):
        if cell == "lstm" and lacks_half_lstm():
            assert lacks_half_lstm() in (
                "which lacks AVX-512 FP16", "where oneDNN reports float16 support but has no such LSTM primitive "
                "for training"
            )
            with pytest.raises(ValueError, match="engine='native' cannot run this call: torch's CPU LSTM kernel "
                                                 r"\(oneDNN\) fails under float16 autocast on this CPU, "
                                                 + re.escape(lacks_half_lstm())):
                lstmkit.Recurrent(cell, 8, 16, engine="native")(x)
            reference = lstmkit.Recurrent(cell, 8, 16, engine="reference")
            reference.load_state_dict(layer.state_dict())
            ours, theirs = layer(x), reference(x)
        else:
            ours, theirs = layer(x), torch_twin(layer)(x)
    assert ours[0].dtype == theirs[0].dtype
    assert relative_error(ours[0].float(), theirs[0].float()) < 2e-2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_auto_under_cpu_autocast_trains_after_a_call_without_gradients(dtype):
    """Whether oneDNN's LSTM runs in a dtype is asked per grad mode: its inference primitive
    may run where its training one fails (float16 on an Intel Xeon with AVX-512 FP16), so a
    validation pass first must not make auto pick oneDNN for the training pass after it."""
    from lstmkit.engines.native import onednn_runs_lstm

    onednn_runs_lstm.cache_clear()
    layer = lstmkit.LSTM(8, 16)
    reference = lstmkit.LSTM(8, 16, engine="reference")
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(5, 3, 8)
    with torch.autocast("cpu", dtype):
        with torch.no_grad():
            layer(x)
        ours, theirs = layer(x)[0], reference(x)[0]
    ours.float().sum().backward()
    assert relative_error(ours.float(), theirs.float()) < 2e-2
    assert all(parameter.grad is not None for parameter in layer.parameters())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_whether_onednn_runs_an_lstm_is_asked_in_float32_whatever_the_callers_default_dtype(dtype):
    """Autocast does not cast float64: under a float64 default the one-off check always said
    oneDNN runs, and auto then picked it for every later float32 layer under autocast."""
    from lstmkit.engines.native import onednn_runs_lstm

    answers = []
    for default in (torch.float32, torch.float64):
        onednn_runs_lstm.cache_clear()
        previous = torch.get_default_dtype()
        torch.set_default_dtype(default)
        try:
            answers.append(onednn_runs_lstm(dtype, True))
        finally:
            torch.set_default_dtype(previous)
    onednn_runs_lstm.cache_clear()
    zeros = torch.zeros(1, 1, 1)
    with torch.autocast("cpu", dtype):
        try:
            torch._VF.lstm(zeros, (zeros, zeros), [torch.zeros(4, 1)] * 2, False, 1, 0.0, False, False, False)
            runs = True
        except RuntimeError:
            runs = False
    assert answers == [runs, runs]


def test_native_runs_a_packed_lstm_under_float16_cpu_autocast_as_torch_nn_does():
    """torch runs packed input as its cell steps, not as oneDNN's LSTM, so it runs under float16
    autocast on every CPU: the native engine does too, and gives its numbers."""
    layer = lstmkit.LSTM(8, 16, engine="native")
    x = pack_padded_sequence(torch.randn(5, 3, 8), [5, 4, 2])
    with torch.autocast("cpu", torch.float16):
        ours, theirs = layer(x)[0].data, torch_twin(layer)(x)[0].data
    assert ours.dtype == theirs.dtype == torch.float32
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("cell, options", ALL_CELL_PARAMS)
def test_half_parameters_run_every_cell_with_float32_state(cell, options, dtype, engine):
    reference, layer = twins(cell, options, engine, dtype)
    x = torch.randn(6, 2, 8)
    output, state = layer(x.to(dtype), lengths=[6, 3])
    assert output.dtype == first_state(state).dtype == dtype
    expected = reference(x, lengths=[6, 3])[0]
    assert relative_error(output.float(), expected) < BFLOAT16_TOLERANCE.get(cell, 0.05)
    output.float().sum().backward()
    assert all(parameter.grad.dtype == dtype for parameter in layer.parameters())


@pytest.mark.parametrize("engine", ["auto", *ENGINES])
@pytest.mark.parametrize("parameters, autocasting", [
    (torch.float16, torch.bfloat16), (torch.bfloat16, torch.float16), (torch.bfloat16, torch.bfloat16),
], ids=["float16-under-bfloat16", "bfloat16-under-float16", "bfloat16-under-bfloat16"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "peephole"])
def test_half_parameters_under_cpu_autocast_take_any_float_input(cell, parameters, autocasting, engine):
    """Half-precision parameters under CPU autocast of either half dtype, fed float32 input (or
    input in the parameters' dtype), bidirectional: they run, as torch.nn's do (it skips its
    dtype check under autocast), and agree with the float32 layer to half-precision rounding."""
    if cell == "lstm" and engine in ("auto", "native") and lacks_half_lstm():
        pytest.skip("torch's CPU LSTM kernel fails under half autocast on this CPU")
    reference, layer = twins(cell, {}, engine, parameters, bidirectional=True)
    x = torch.randn(6, 2, 8)
    expected = reference(x)[0]
    with torch.autocast("cpu", autocasting):
        for given in (x, x.to(parameters)):
            output = layer(given)[0]
            assert relative_error(output.float(), expected) < 0.05


def test_autocast_accepts_input_in_the_autocast_dtype_as_torch_nn_does():
    layer = lstmkit.PeepholeLSTM(8, 16)
    x = torch.randn(5, 3, 8)
    with torch.autocast("cpu", torch.bfloat16):
        assert torch.equal(layer(x.bfloat16())[0], layer(x.bfloat16().float())[0])
    with pytest.raises(ValueError, match=r"input dtype must match the layer's parameters \(torch.float32\), "
                                        r"got torch.bfloat16"):
        layer(x.bfloat16())


def test_float64_ignores_autocast_as_torch_nn_does():
    layer = lstmkit.LayerNormLSTM(8, 16, dtype=torch.float64)
    x = torch.randn(5, 3, 8, dtype=torch.float64)
    with torch.autocast("cpu", torch.bfloat16):
        inside = layer(x)[0]
    assert inside.dtype == torch.float64
    assert torch.equal(inside, layer(x)[0])


assert set(TORCH_LAYERS) == {"lstm", "gru", "rnn"}


@pytest.mark.parametrize("lengths", [[6, 6, 6], [4, 4, 4], [6]], ids=["full", "shorter", "one"])
@pytest.mark.parametrize("packed", [False, True], ids=["lengths", "packed"])
def test_lengths_all_equal_run_as_torch_runs_them_under_cpu_bfloat16_autocast(lengths, packed):
    """torch 2.13's CPU LSTM hands packed input whose sequences are all one length (a single
    sentence's) to oneDNN, not to its cell steps (2.11 does not): on a CPU without AVX-512
    BF16 it fails there, and so did `auto` (a bare oneDNN error translating one sentence).
    Every engine returns what torch.nn returns, with the reference engine's numbers, and
    where torch.nn fails, auto runs it and native says why it cannot."""
    from lstmkit.engines.precision import onednn_takes_even_packed

    torch.manual_seed(0)
    layer = lstmkit.LSTM(8, 16, bidirectional=True)
    layers = [layer, *(lstmkit.LSTM(8, 16, bidirectional=True, engine=engine) for engine in ENGINES)]
    for other in layers[1:]:
        other.load_state_dict(layer.state_dict())
    x = torch.randn(6, len(lengths), 8)
    given = (lambda model: model(pack_padded_sequence(x, lengths))[0].data) if packed else (
        lambda model: model(x, lengths=lengths)[0])
    with torch.autocast("cpu", torch.bfloat16):
        outputs = [given(model) for model in layers]
        expected = outputs[1 + ENGINES.index("reference")]
        try:
            theirs = torch_twin(layer)(pack_padded_sequence(x, lengths))[0].data.dtype
        except RuntimeError as error:
            assert onednn_takes_even_packed() and lacks_half_lstm()
            assert "could not create a primitive descriptor" in str(error)
            with pytest.raises(ValueError, match=re.escape("engine='native' cannot run this call: torch's CPU LSTM "
                                                           "kernel (oneDNN) fails under bfloat16 autocast")):
                lstmkit.LSTM(8, 16, engine="native")(x, lengths=lengths)
            theirs = torch.bfloat16  # what torch.nn returns where oneDNN runs it
    assert {output.dtype for output in outputs} == {theirs}
    assert theirs == (torch.bfloat16 if onednn_takes_even_packed() else torch.float32)
    for output in outputs:
        assert relative_error(output.float(), expected.float()) < 0.05


def test_where_torch_runs_equal_lengths_as_cell_steps_every_engine_returns_float32(monkeypatch):
    """torch 2.11 runs packed input of equal lengths as its cell steps (float32 under CPU
    autocast); the engines follow what the torch they run on does, asked once."""
    from lstmkit.engines import precision

    monkeypatch.setattr(precision, "onednn_runs_even_packed_lstm", lambda: False)
    x = torch.randn(6, 2, 8)
    with torch.autocast("cpu", torch.bfloat16):
        assert precision.lstm_cell_steps(torch.tensor([6, 6]), False, x)
        dtypes = {lstmkit.LSTM(8, 16, engine=engine)(x, lengths=[6, 6])[0].dtype for engine in ENGINES}
    assert dtypes == {torch.float32}


def test_the_even_packed_probe_ignores_the_callers_default_dtype():
    """Built in the caller's float64 default, the probe answered False, cached for the whole
    process: bfloat16 autocast with equal lengths failed in oneDNN again."""
    from lstmkit.engines.precision import onednn_runs_even_packed_lstm

    onednn_runs_even_packed_lstm.cache_clear()
    expected = onednn_runs_even_packed_lstm()
    onednn_runs_even_packed_lstm.cache_clear()
    torch.set_default_dtype(torch.float64)
    try:
        assert onednn_runs_even_packed_lstm() == expected
        onednn_runs_even_packed_lstm.cache_clear()
        with torch.device("meta"):
            assert onednn_runs_even_packed_lstm() == expected
    finally:
        torch.set_default_dtype(torch.float32)
        onednn_runs_even_packed_lstm.cache_clear()  # a wrong answer is not left for the tests after


@pytest.mark.parametrize("cell", ["lstm", "peephole", "layernorm", "nog"])
@pytest.mark.parametrize("engine", ["auto", "fused", "reference"])
def test_step_under_autocast_carries_the_cell_state_in_float32(cell, engine):
    """i = f = 1 and g = 0.001 at every step, from c = 0: c_1000 = 1. Rounded to bfloat16
    between steps, as forward's c_n is, it stalls at 0.5 (0.5 + 0.001 rounds to 0.5). (The
    reference engine adds the bias in its bfloat16 product, as autocast's F.linear does: g =
    tanh(bfloat16(atanh(0.001))), and c_1000 = 0.9995.)"""
    layer = lstmkit.Recurrent(cell, 2, 3, engine=engine).eval()
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.zero_()
        bias = dict(zip(layer.cell.weight_blocks, layer.bias_ih_l0.split(3)))  # the gates' rows, in order
        bias["i"].fill_(30.0)
        bias["f"].fill_(30.0)
        bias["g"].fill_(torch.atanh(torch.tensor(0.001)).item())
    state = None
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        for _ in range(1000):
            _, state = layer.step(torch.zeros(1, 2), state)
        _, (_, c_n) = layer(torch.zeros(1, 1, 2), state)
    assert state[1].dtype == torch.float32 and c_n.dtype == torch.bfloat16  # forward's c_n: torch.nn.LSTM's
    assert torch.allclose(state[1], torch.ones(1, 1, 3), atol=1e-3)
