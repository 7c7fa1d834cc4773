"""The fused and Triton engines equal the reference engine in float64, for every cell and option.

Outputs, final states and the gradients of the input, the initial state and every parameter
agree to a relative error below 1e-10. A hypothesis test draws cells, options and shapes. On
a machine without a GPU the Triton kernels run on CPU tensors in Triton's interpreter
(conftest.py sets TRITON_INTERPRET=1), so the full grid runs for fused and a smaller one,
covering every cell and option at least once, for Triton.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import lstmkit
from lstmkit.cells import Cell, ExtraParameter, LSTMStep
from helpers import (
    ALL_CELL_PARAMS, ALL_CELLS, assert_close, assert_same_run, cell_id, random_state, state_leaves, triton_installed,
)


def fused_and_reference(cell, options, engine="fused", **layer_options):
    """Two layers with the same weights, one on `engine`, one on the reference engine."""
    torch.manual_seed(0)
    reference = lstmkit.Recurrent(cell, dtype=torch.float64, engine="reference", **layer_options, **options)
    fused = lstmkit.Recurrent(cell, dtype=torch.float64, engine=engine, **layer_options, **options)
    fused.load_state_dict(reference.state_dict())
    return fused, reference


def assert_engines_agree(cell, options, steps, batch, lengths, given_state, engine="fused", **layer_options):
    fused, reference = fused_and_reference(cell, options, engine, **layer_options)
    x = torch.randn(steps, batch, layer_options["input_size"], dtype=torch.float64, requires_grad=True)
    hx = random_state(reference, batch) if given_state else None
    ours, theirs = fused(x, hx, lengths=lengths), reference(x, hx, lengths=lengths)
    assert_same_run(
        ours, theirs,
        {"input": x, **state_leaves(hx), **dict(fused.named_parameters())},
        {"input": x, **state_leaves(hx), **dict(reference.named_parameters())},
    )


def grid():
    for (cell, options), layers, bidirectional, bias, proj, given_state, lengths in itertools.product(
        ALL_CELLS, [1, 2], [False, True], [True, False], [0, 2], [False, True], [None, [5, 2, 4]]
    ):
        if proj and not lstmkit.cells.make_cell(cell, **options).supports_projection:
            continue
        label = "-".join([
            cell_id(cell, options), f"L{layers}", "bi" if bidirectional else "uni", "bias" if bias else "nobias",
            f"proj{proj}", "hx" if given_state else "zeros", "lengths" if lengths else "full",
        ])
        yield pytest.param(cell, options, layers, bidirectional, bias, proj, given_state, lengths, id=label)


@pytest.mark.parametrize("cell, options, layers, bidirectional, bias, proj, given_state, lengths", list(grid()))
def test_fused_equals_reference(cell, options, layers, bidirectional, bias, proj, given_state, lengths):
    assert_engines_agree(
        cell, options, 5, 3, lengths, given_state, input_size=4, hidden_size=5, num_layers=layers,
        bidirectional=bidirectional, bias=bias, proj_size=proj,
    )


@pytest.mark.parametrize("cell, options", [("lstm", {}), ("gru", {}), ("layernorm", {}), ("peephole", {})],
                         ids=["lstm", "gru", "layernorm", "peephole"])
def test_fused_cuts_its_step_views_a_span_at_a_time_as_in_one(cell, options, monkeypatch):
    """The fused engine cuts the views of its buffers VIEW_SPAN steps at a time (cut for every
    step at once, they grew a long call's memory by 13-16 KB a step): spans of 2 steps, odd
    lengths, padded rows and projection give the reference engine's numbers."""
    monkeypatch.setattr(lstmkit.engines.fused.layer, "VIEW_SPAN", 2)
    proj = 2 if lstmkit.cells.make_cell(cell, **options).supports_projection else 0
    assert_engines_agree(cell, options, 7, 3, [7, 2, 5], True, input_size=4, hidden_size=5, num_layers=2,
                         bidirectional=True, proj_size=proj)


@pytest.mark.parametrize("zoneout", [0.3, (0.2, 0.4)], ids=["both", "cell-and-hidden"])
def test_fused_zoneout_masks_follow_their_steps_across_spans(zoneout, monkeypatch):
    """Zoneout's per-step masks are cut with the spans of the step views: in training, a span
    of 2 steps gives the numbers of one span over the whole call, masks drawn alike."""
    layers = {}
    for span in (2, 256):
        monkeypatch.setattr(lstmkit.engines.fused.layer, "VIEW_SPAN", span)
        torch.manual_seed(0)
        layer = lstmkit.LSTM(4, 5, engine="fused", zoneout=zoneout, recurrent_dropout=0.2, dtype=torch.float64)
        x = torch.randn(7, 3, 4, dtype=torch.float64, requires_grad=True)
        output, (h_n, c_n) = layer(x, lengths=[7, 2, 5])
        (output.sum() + h_n.square().sum() + c_n.sum()).backward()
        layers[span] = [output, h_n, c_n, x.grad, *(parameter.grad for parameter in layer.parameters())]
    assert all(torch.equal(short, whole) for short, whole in zip(layers[2], layers[256], strict=True))


def triton_grid():
    """Every cell and option, each with and without biases, through the paths of the loop:
    two bidirectional layers with a padded batch and a given state, and a projection."""
    for (cell, options), bias in itertools.product(ALL_CELLS, [True, False]):
        label = f"{cell_id(cell, options)}-{'bias' if bias else 'nobias'}"
        yield pytest.param(cell, options, bias, 0, id=f"{label}-L2-bi-lengths-hx")
        if lstmkit.cells.make_cell(cell, **options).supports_projection:
            yield pytest.param(cell, options, bias, 2, id=f"{label}-proj2")


@triton_installed
@pytest.mark.parametrize("cell, options, bias, proj", list(triton_grid()))
def test_triton_equals_reference(cell, options, bias, proj):
    layers, lengths = (1, None) if proj else (2, [5, 2, 4])
    assert_engines_agree(
        cell, options, 5, 3, lengths, given_state=not proj, engine="triton", input_size=4, hidden_size=5,
        num_layers=layers, bidirectional=not proj, bias=bias, proj_size=proj,
    )


@triton_installed
@pytest.mark.parametrize("cell, options", [param for param in ALL_CELL_PARAMS if param.values[0] != "layernorm"])
def test_triton_equals_reference_with_rows_split_across_programs(cell, options, small_column_blocks):
    """H = 13 in blocks of 4 columns: four programs per row, the last with one live column."""
    assert_engines_agree(cell, options, 4, 3, [4, 2, 3], True, engine="triton", input_size=3, hidden_size=13)


@triton_installed
def test_triton_launch_keys_tensors_by_dtype_and_alignment():
    """What `launch` keys a compiled kernel by, beyond Triton's own specialisation: a tensor's
    dtype and whether its data sits on a 16-byte boundary, any other argument's type and value."""
    from lstmkit.engines.triton.launch import specialisation

    storage = torch.zeros(9, dtype=torch.float64)
    assert specialisation(storage[:8]) == (torch.float64, True)
    assert specialisation(storage[1:]) == (torch.float64, False)  # 8 bytes off
    assert specialisation(storage[2:]) == (torch.float64, True)
    assert [specialisation(value) for value in (16, 1, True, 1.0, None)] == [
        (int, 16), (int, 1), (bool, True), (float, 1.0), (type(None), None),
    ]
    assert len({specialisation(value) for value in (1, True, 1.0)}) == 3  # equal, but not one argument to Triton


@triton_installed
def test_triton_launch_goes_through_triton_once_per_specialisation(monkeypatch):
    """On a GPU `launch` hands the first launch of each specialisation to Triton and calls the
    compiled kernel it returned for the later ones, with every argument in the kernel's order,
    constexprs and BLOCK included, as Triton's own launch does, on the GPU of the tensors
    whichever is current. Proven here with stand-ins for the kernel, the driver and
    torch.cuda.device (on CPU, Triton's interpreter runs every launch itself)."""
    import triton
    from lstmkit.engines.triton import launch

    class Compiled:
        function, packed_metadata = "function", "metadata"

        def __init__(self):
            self.runs = []

        def launch_metadata(self, grid, stream, *arguments):
            return grid, stream

        def run(self, *arguments):
            self.runs.append(arguments)

    class Kernel(triton.JITFunction):
        def __init__(self):
            self.arg_names, self.compiled, self.through_triton = ["x", "n", "FLAG", "BLOCK"], Compiled(), []

        def __getitem__(self, grid):
            return lambda *args, **options: self.through_triton.append((grid, args, options)) or self.compiled

    class Driver:
        class active:
            current = 0  # another GPU than the tensors' (CPU tensors here: device index None)
            get_current_device = staticmethod(lambda: Driver.active.current)
            get_current_stream = staticmethod(lambda device: 7)

    @contextlib.contextmanager
    def on_device(index):
        """torch.cuda.device: the tensors' GPU is the current one inside."""
        switches.append(index)
        Driver.active.current, before = index, Driver.active.current
        yield
        Driver.active.current = before

    switches = []
    monkeypatch.setattr(launch, "driver", Driver)
    monkeypatch.setattr(launch.torch.cuda, "device", on_device)
    monkeypatch.setattr(launch, "COMPILED", {})
    kernel, layout = Kernel(), launch.Layout((4, 2), 8, 1)
    storage = torch.zeros(9, dtype=torch.float64)
    for x, flag in [(storage[:8], True), (storage[:8], True), (storage[1:], True), (storage[:8], False)]:
        launch.launch(kernel, layout, x, 16, FLAG=flag)
    assert [(args[0].data_ptr() - storage.data_ptr(), options) for _, args, options in kernel.through_triton] == [
        (0, {"FLAG": True, "BLOCK": 8, "num_warps": 1}), (8, {"FLAG": True, "BLOCK": 8, "num_warps": 1}),
        (0, {"FLAG": False, "BLOCK": 8, "num_warps": 1}),
    ]
    launch.launch(kernel, launch.Layout((2, 4), 8, 1), storage[:8], 16, FLAG=True)  # another grid, same kernel
    assert len(kernel.through_triton) == 3
    monkeypatch.setattr(launch, "triton_settings", lambda: ("debug on",))  # Triton compiles anew for it
    launch.launch(kernel, layout, storage[:8], 16, FLAG=True)
    assert len(kernel.through_triton) == 4
    assert switches == [None] * 6  # each launch on the tensors' device
    run, other_grid = kernel.compiled.runs
    assert run[:7] == (4, 2, 1, 7, "function", "metadata", ((4, 2), 7))
    assert other_grid[:3] == (2, 4, 1)
    x, *rest = run[9:]
    assert x.data_ptr() == storage.data_ptr() and rest == [16, True, 8]


def with_strided_vectors(module: torch.nn.Module, names: list[str]) -> torch.nn.Module:
    """`module` with each parameter of `names` replaced by a view of every other value of a
    longer tensor, with the same values."""
    for name in names:
        parameter = getattr(module, name)
        longer = torch.zeros(2 * parameter.numel(), dtype=parameter.dtype)
        longer[::2] = parameter.detach()
        del module._parameters[name]
        setattr(module, name, torch.nn.Parameter(longer[::2]))
    return module


@triton_installed
@pytest.mark.parametrize("module_type", ["layer", "cell module"])
@pytest.mark.parametrize("cell, names", [
    ("peephole", ["peephole_i", "peephole_f", "peephole_o"]),
    ("layernorm", ["layernorm_hh_weight", "bias_hh", "layernorm_cell_weight", "layernorm_cell_bias"]),
    ("gru", ["bias_hh"]),
])
def test_triton_reads_strided_parameters_as_they_are(cell, names, module_type):
    """Vectors the Triton kernels read by index (peepholes, LayerNorm gains and shifts, the
    GRU's b_hh), each a strided view: the reference engine's outputs and gradients in float64,
    and its outputs under CPU bfloat16 autocast (where the GRU kernel reads b_hh itself)."""
    suffix = "_l0" if module_type == "layer" else ""
    build = lstmkit.Recurrent if module_type == "layer" else lstmkit.RecurrentCell
    batch = (5, 2) if module_type == "layer" else (2,)
    for dtype in (torch.float64, torch.float32):
        torch.manual_seed(0)
        modules = {engine: build(cell, 3, 4, dtype=dtype, engine=engine) for engine in ("reference", "triton")}
        modules["triton"].load_state_dict(modules["reference"].state_dict())
        modules = {engine: with_strided_vectors(module, [name + suffix for name in names])
                   for engine, module in modules.items()}
        x = torch.randn(*batch, 3, dtype=dtype, requires_grad=True)
        if dtype == torch.float64:
            assert_same_run(modules["triton"](x), modules["reference"](x),
                            {"x": x, **dict(modules["triton"].named_parameters())},
                            {"x": x, **dict(modules["reference"].named_parameters())})
            continue
        with torch.autocast("cpu", torch.bfloat16):
            ours, theirs = (modules[engine](x) for engine in ("triton", "reference"))
        ours, theirs = (output[0] if isinstance(output, tuple) else output for output in (ours, theirs))
        assert (ours.float() - theirs.float()).abs().max() < 2e-2


def saved_bytes(layer: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd keeps for the backward of `layer(x)`."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        layer(x)
    return sum(storages.values())


@triton_installed
@pytest.mark.parametrize("cell, options", [
    ("lstm", {}), ("peephole", {}), ("cifg", {}), ("layernorm", {}), ("lstm", {"output_activation": False}),
], ids=["lstm", "peephole", "cifg", "layernorm", "lstm-no-output-activation"])
def test_triton_kernels_keep_no_tanh_of_the_cell_state(cell, options):
    """The Triton kernels compute tanh(c') (tanh(LN(c')) for the LayerNorm LSTM) again in
    backward: a layer keeps T × B × H values fewer than the fused engine, which reads it back
    (none fewer without the output activation, where neither keeps it)."""
    steps, batch, hidden = 6, 3, 5
    x = torch.randn(steps, batch, 4, dtype=torch.float64, requires_grad=True)
    layers = {
        engine: lstmkit.Recurrent(cell, 4, hidden, dtype=torch.float64, engine=engine, **options)
        for engine in ("fused", "triton")
    }
    kept = steps * batch * hidden * 8 if options.get("output_activation", True) else 0
    assert saved_bytes(layers["fused"], x) - saved_bytes(layers["triton"], x) == kept


@triton_installed
@pytest.mark.parametrize("lengths", [None, [6, 4, 1]], ids=["full", "lengths"])
def test_triton_gru_under_autocast_keeps_only_the_n_block_of_its_recurrent_projection(lengths):
    """Under mixed precision the Triton GRU kernel forms W_hh h + b_hh from the product itself
    and keeps its n block alone (backward reads no other): T × B × 2H float32 values fewer than
    the fused engine, which keeps all three blocks, with the same numbers."""
    steps, batch, hidden = 6, 3, 5
    x = torch.randn(steps, batch, 4, requires_grad=True)
    torch.manual_seed(0)
    fused = lstmkit.GRU(4, hidden, engine="fused")
    triton = lstmkit.GRU(4, hidden, engine="triton")
    triton.load_state_dict(fused.state_dict())
    options = {} if lengths is None else {"lengths": lengths}
    with torch.autocast("cpu", torch.float16):
        assert saved_bytes(fused, x) - saved_bytes(triton, x) == steps * batch * 2 * hidden * 4
        runs = [layer(x, **options) for layer in (fused, triton)]
    grads = [torch.autograd.grad(output.float().square().sum(), [x, *layer.parameters()])
             for (output, _), layer in zip(runs, (fused, triton), strict=True)]
    assert_close(runs[1][0].float(), runs[0][0].float(), "output", tolerance=1e-3)
    for name, ours, theirs in zip(["x", *dict(fused.named_parameters())], grads[1], grads[0], strict=True):
        assert_close(ours, theirs, name, tolerance=1e-2)


@triton_installed
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "layernorm"])
def test_triton_equals_reference_batch_first(cell):
    """batch_first: the output's gradient arrives transposed, which the kernels that refill dh
    read row by row."""
    assert_engines_agree(cell, {}, 3, 4, None, False, engine="triton", input_size=3, hidden_size=5,
                         batch_first=True)  # x (3, 4, 3): 3 sequences of 4 steps


@triton_installed
@pytest.mark.parametrize("cell, hidden", [("lstm", 1100), ("layernorm", 40), ("gru", 33)])
def test_triton_equals_reference_past_one_block_of_columns(cell, hidden):
    """H above the kernels' block (1024 columns) and H not a power of two: masked lanes."""
    assert_engines_agree(cell, {}, 2, 2, [2, 1], True, engine="triton", input_size=3, hidden_size=hidden)


@triton_installed
@pytest.mark.parametrize("cell, options", [
    *(pytest.param(cell, options, id=cell_id(cell, options)) for cell, options in ALL_CELLS),
    pytest.param("gru", {"bias": False}, id="gru-nobias"),  # the GRU kernel adds b_hh to the product
    pytest.param("layernorm", {"bias": False}, id="layernorm-nobias"),
])
def test_triton_under_autocast_agrees_with_fused(cell, options):
    """Under autocast the Triton kernels add the recurrent product themselves and write h_t and
    the gate gradients in the autocast dtype too (the fused engine casts and adds with torch):
    the same float32 sums, rounded the same way. In float16, which Triton's interpreter rounds
    to nearest as torch does; it truncates to bfloat16, an error that the LayerNorm LSTM's
    normalisation of W_hh h amplifies to 17 % at these sizes (tests/test_cuda.py checks
    bfloat16 on the GPU)."""
    torch.manual_seed(0)
    fused = lstmkit.Recurrent(cell, 4, 6, num_layers=2, engine="fused", **options)
    triton = lstmkit.Recurrent(cell, 4, 6, num_layers=2, engine="triton", **options)
    triton.load_state_dict(fused.state_dict())
    x = torch.randn(7, 3, 4, requires_grad=True)
    runs = []
    for layer in (fused, triton):
        with torch.autocast("cpu", torch.float16):
            output = layer(x, lengths=[7, 4, 7])[0]
        runs.append([output, *torch.autograd.grad(output.float().sum(), [x, *layer.parameters()])])
    for ours, theirs in zip(runs[1], runs[0], strict=True):
        assert ((ours.float() - theirs.float()).norm() / theirs.float().norm()) < 1e-3


@triton_installed
@pytest.mark.parametrize("cell, options, forward_dtype", [
    *((cell, {}, torch.bfloat16) for cell in ("lstm", "peephole", "cifg", "rnn", "gru", "layernorm")),
    ("lstm", {"proj_size": 2}, None),  # h_t = W_hr m_t after the kernel: the loop casts and adds
])
def test_triton_kernels_are_handed_the_product_under_autocast(cell, options, forward_dtype, monkeypatch):
    """Under bfloat16 autocast every step of a Triton kernel gets W_hh h in bfloat16
    (`FusedStep.product`) to add itself, unless something changes h_t after the kernel, and
    always a bfloat16 buffer for its gate gradients (`FusedGrads.d_low`)."""
    from lstmkit.engines.triton.kernels import TRITON_KERNELS

    kernel = TRITON_KERNELS[cell]
    handed = []
    forward, backward = kernel.forward, kernel.backward

    def spy_forward(self, step, weights):
        handed.append(("forward", None if step.product is None else step.product.dtype))
        return forward(self, step, weights)

    def spy_backward(self, dh, dc, step, grads, weights):
        handed.append(("backward", None if grads.d_low is None else grads.d_low.dtype))
        return backward(self, dh, dc, step, grads, weights)

    monkeypatch.setattr(kernel, "forward", spy_forward)
    monkeypatch.setattr(kernel, "backward", spy_backward)
    layer = lstmkit.Recurrent(cell, 4, 6, engine="triton", **options)
    with torch.autocast("cpu", torch.bfloat16):
        output = layer(torch.randn(3, 2, 4), lengths=[3, 2])[0]
    output.float().sum().backward()
    assert handed == [("forward", forward_dtype)] * 3 + [("backward", torch.bfloat16)] * 3


@pytest.mark.parametrize("engine, options, refilled", [
    *(("triton", {"cell": cell}, True) for cell in ("lstm", "peephole", "cifg", "rnn", "gru", "layernorm")),
    ("triton", {"cell": "lstm", "zoneout": 0.5}, False),  # zoneout changes dh between kernel and product
    ("triton", {"cell": "lstm", "proj_size": 2}, False),
    ("fused", {"cell": "lstm"}, False),
])
def test_the_product_for_dh_adds_in_place_where_the_kernel_refills_dh(engine, options, refilled, monkeypatch):
    """A Triton kernel writes d_output[t - 1] into dh once it has read it
    (`FusedKernel.refills_dh`), and the product for d h_{t-1} then adds into dh in place: no
    separate addend, which a CUDA product would first copy into its output."""
    if engine == "triton" and lstmkit.engines.ENGINES["triton"].unavailable():
        pytest.skip("triton is not installed")
    from lstmkit.engines.fused.products import RepeatedProduct

    calls = []
    into, accumulate = RepeatedProduct.into, RepeatedProduct.accumulate
    monkeypatch.setattr(RepeatedProduct, "into", lambda self, out, a, bias=None: (
        calls.append("into" if bias is None else "into with an addend"), into(self, out, a, bias)))
    monkeypatch.setattr(RepeatedProduct, "accumulate", lambda self, out, a: (
        calls.append("accumulate"), accumulate(self, out, a)))
    cell = options.pop("cell")
    layer = lstmkit.Recurrent(cell, 4, 6, engine=engine, dtype=torch.float64, **options)
    output = layer(torch.randn(3, 2, 4, dtype=torch.float64))[0]
    calls.clear()  # the forward's products
    output.sum().backward()
    assert calls == (["accumulate"] * 3 if refilled else ["into with an addend"] * 2 + ["into"])


@pytest.mark.parametrize("cell", ["lstm", "peephole", "gru"])
def test_the_two_bias_gradients_are_tensors_of_their_own(cell):
    """Where both biases add into the same pre-activations their gradients are one sum, handed
    out as two tensors: an optimizer changing one .grad in place leaves the other alone."""
    layer = lstmkit.Recurrent(cell, 3, 4, engine="fused", dtype=torch.float64)
    layer(torch.randn(5, 2, 3, dtype=torch.float64))[0].sum().backward()
    d_ih, d_hh = layer.bias_ih_l0.grad, layer.bias_hh_l0.grad
    if cell != "gru":  # the GRU's b_hh sits inside r ⊙ (W_hh h + b_hh): another gradient
        assert torch.equal(d_ih, d_hh)
    before = d_hh.clone()
    d_ih.add_(1.0)
    assert torch.equal(d_hh, before)


def kernel_engines_and_biases():
    """Every cell with each kernel engine that runs it (Triton marked to need its package) and
    each of its biases, the LayerNorm LSTM's cell-norm shift too."""
    for cell, options in ALL_CELLS:
        native = not lstmkit.engines.ENGINES["native"].unsupported(lstmkit.cells.make_cell(cell, **options), None)
        biases = ["bias_ih", "bias_hh"] + (["layernorm_cell_bias"] if cell == "layernorm" else [])
        for engine, missing in itertools.product(["fused", "triton"] + (["native"] if native else []), biases):
            marks = triton_installed if engine == "triton" else ()
            yield pytest.param(cell, options, engine, missing, marks=marks,
                               id=f"{cell_id(cell, options)}-{engine}-{missing}")


@pytest.mark.parametrize("cell, options, engine, missing", list(kernel_engines_and_biases()))
def test_a_bias_set_to_none_counts_as_zero_on_every_engine(cell, options, engine, missing):
    """A layer built with biases whose bias of one kind is set to None (folded into the other
    for deployment, say) computes as with that bias at zero on every engine, forward and
    backward: the fused kernels once took a missing b_ih for no biases at all and left b_hh
    out too (and failed in backward); torch's kernels take both biases or neither."""
    layer_options = dict(input_size=4, hidden_size=5, num_layers=2, bidirectional=True)
    torch.manual_seed(0)
    reference = lstmkit.Recurrent(cell, dtype=torch.float64, engine="reference", **layer_options, **options)
    tested = lstmkit.Recurrent(cell, dtype=torch.float64, engine=engine, **layer_options, **options)
    with torch.no_grad():  # shifts that start at zero would hide one left out
        for parameter in reference.parameters():
            parameter.normal_()
    tested.load_state_dict(reference.state_dict())
    names = [name for name in reference._flat_weights_names if name.startswith(missing)]
    with torch.no_grad():
        for name in names:
            getattr(reference, name).zero_()
            setattr(tested, name, None)
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    hx = random_state(reference, 3)
    kept = {name: parameter for name, parameter in reference.named_parameters() if name not in names}
    assert_same_run(
        tested(x, hx, lengths=[5, 2, 4]), reference(x, hx, lengths=[5, 2, 4]),
        {"input": x, **state_leaves(hx), **dict(tested.named_parameters())},
        {"input": x, **state_leaves(hx), **kept},
    )


@st.composite
def configurations(draw):
    cell, options = draw(st.sampled_from(ALL_CELLS))
    supports_projection = lstmkit.cells.make_cell(cell, **options).supports_projection
    hidden = draw(st.integers(2 if cell == "layernorm" else 1, 6))
    steps, batch = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    lengths = draw(st.none() | st.lists(st.integers(1, steps), min_size=batch, max_size=batch))
    return dict(
        cell=cell,
        options=options,
        steps=steps,
        batch=batch,
        lengths=lengths,
        given_state=draw(st.booleans()),
        input_size=draw(st.integers(1, 5)),
        hidden_size=hidden,
        num_layers=draw(st.integers(1, 3)),
        bidirectional=draw(st.booleans()),
        bias=draw(st.booleans()),
        proj_size=draw(st.integers(0, hidden - 1)) if supports_projection and hidden > 1 else 0,
    )


@given(configurations())
def test_fused_equals_reference_on_drawn_configurations(configuration):
    assert_engines_agree(**configuration)


def test_fused_runs_without_input_gradient():
    """The first layer's input usually needs no gradient; fused then skips that product."""
    fused, reference = fused_and_reference("peephole", {}, input_size=3, hidden_size=4, num_layers=2)
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    fused(x)[0].sum().backward()
    reference(x)[0].sum().backward()
    for (name, ours), theirs in zip(fused.named_parameters(), reference.parameters(), strict=True):
        assert torch.allclose(ours.grad, theirs.grad, rtol=1e-10, atol=0), name


def test_fused_backward_twice_with_retained_graph():
    """Backward must not write into what forward saved: a second backward gives the same."""
    fused, _ = fused_and_reference("layernorm", {}, input_size=3, hidden_size=4)
    x = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)
    output, _ = fused(x)
    first = torch.autograd.grad(output.sum(), x, retain_graph=True)[0]
    second = torch.autograd.grad(output.sum(), x)[0]
    assert torch.equal(first, second)


@dataclasses.dataclass(frozen=True)
class HardSigmoidLSTMStep(LSTMStep):
    """A user's LSTM variant: lstmkit's LSTM with hard-sigmoid gates, a `step` of its own."""

    def step(self, x_proj, h_proj, h, c, weights):
        input_gate, forget_gate, candidate, output_gate = (x_proj + h_proj).chunk(4, -1)
        input_gate, forget_gate, output_gate = map(torch.nn.functional.hardsigmoid,
                                                   (input_gate, forget_gate, output_gate))
        c_new = forget_gate * c + input_gate * torch.tanh(candidate)
        h_new = output_gate * torch.tanh(c_new)
        return h_new, c_new, (input_gate, forget_gate, torch.tanh(candidate), output_gate)


@dataclasses.dataclass(frozen=True)
class ForgetOnlyStep(Cell):
    """A cell of a new name (JANET's forget gate alone): c' = f ⊙ c + (1 − f) ⊙ tanh(·), h' = c'."""

    name = "forget-only"
    weight_blocks = ("f", "g")
    trace_names = ("forget", "candidate")

    def step(self, x_proj, h_proj, h, c, weights):
        forget_gate, candidate = (x_proj + h_proj).chunk(2, -1)
        forget_gate, candidate = torch.sigmoid(forget_gate), torch.tanh(candidate)
        c_new = forget_gate * c + (1 - forget_gate) * candidate
        return c_new, c_new, (forget_gate, candidate)


@pytest.mark.parametrize("cell", [HardSigmoidLSTMStep(), ForgetOnlyStep()], ids=["subclass", "new-name"])
def test_a_cell_of_ones_own_runs_its_own_step_on_auto_and_the_kernel_engines_refuse_it(cell):
    """The engines choose kernels by name: a subclass of LSTMStep with a `step` of its own ran as
    lstmkit's LSTM on auto, fused, Triton and native (0.1 off its own numbers, without a word),
    and a cell of a new name failed on auto with `KeyError: 'forget-only'`."""
    x = torch.randn(70, 2, 4, dtype=torch.float64)
    reference = lstmkit.Recurrent(cell, 4, 5, engine="reference", dtype=torch.float64)
    layer = lstmkit.Recurrent(cell, 4, 5, dtype=torch.float64)
    layer.load_state_dict(reference.state_dict())
    assert torch.equal(layer(x)[0], reference(x)[0])
    ours = layer(x, lengths=[70, 40], return_gates=True)[2]
    theirs = reference(x, lengths=[70, 40], return_gates=True)[2]
    assert list(ours.gates) == list(cell.trace_names)
    assert all(torch.equal(ours.gates[name], theirs.gates[name]) for name in cell.trace_names)
    torch._dynamo.reset()
    assert torch.equal(torch.compile(layer, fullgraph=True, backend="eager")(x)[0], reference(x)[0])
    assert repr(layer).startswith(f"Recurrent({cell!r}, 4, 5")
    step = lstmkit.RecurrentCell(cell, 4, 5, dtype=torch.float64)
    stepped = lstmkit.RecurrentCell(cell, 4, 5, engine="reference", dtype=torch.float64)
    stepped.load_state_dict(step.state_dict())
    assert torch.equal(step(x[0])[0], stepped(x[0])[0])
    for engine in ("native", "fused", "triton"):
        with pytest.raises(ValueError, match=r"; use engine='auto' or 'reference'$"):
            lstmkit.Recurrent(cell, 4, 5, engine=engine)
        with pytest.raises(ValueError, match=r"; use engine='auto' or 'reference'$"):
            lstmkit.RecurrentCell(cell, 4, 5, engine=engine)
    if isinstance(cell, LSTMStep):
        with pytest.raises(ValueError, match=re.escape("engine='fused' cannot run this layer: cell HardSigmoidLSTMStep "
                                                       "is one of your own, under the name 'lstm' of lstmkit's; the "
                                                       "fused kernels run lstmkit's cells alone")):
            lstmkit.Recurrent(cell, 4, 5, engine="fused")
        with pytest.raises(TypeError, match=re.escape("LSTMCell.from_layer takes a layer of cell lstm, got one of cell "
                                                      "HardSigmoidLSTMStep, one of your own; "
                                                      "lstmkit.RecurrentCell.from_layer takes any cell")):
            lstmkit.LSTMCell.from_layer(layer)  # it made lstmkit's LSTMCell of it, the cell's own step dropped


@dataclasses.dataclass(frozen=True)
class ForgetOnlyInLists(ForgetOnlyStep):
    """The same cell, its blocks and names in lists (the layers take any sequence)."""

    weight_blocks = ["f", "g"]
    trace_names = ["forget", "candidate"]

    @property
    def forget_bias_block(self):
        return ["f", 1.0]


def test_a_cell_of_ones_own_may_name_its_blocks_in_lists():
    x = torch.randn(6, 2, 4, dtype=torch.float64)
    listed = lstmkit.Recurrent(ForgetOnlyInLists(), 4, 5, forget_bias=1.0, dtype=torch.float64)
    tupled = lstmkit.Recurrent(ForgetOnlyStep(), 4, 5, dtype=torch.float64)
    tupled.load_state_dict(listed.state_dict())
    assert torch.equal(listed.bias_ih_l0[:5], torch.ones(5, dtype=torch.float64))
    assert torch.equal(listed(x)[0], tupled(x)[0])


@dataclasses.dataclass(frozen=True)
class Unnamed(Cell):
    weight_blocks = ("f",)


@dataclasses.dataclass(frozen=True)
class BadForgetBlock(ForgetOnlyStep):
    @property
    def forget_bias_block(self):
        return ("i", 1.0)


@dataclasses.dataclass(frozen=True)
class MisspeltExtra(ForgetOnlyStep):
    extra_parameters = (ExtraParameter("gain", "hiden", "ones"),)


class NotADataclass(ForgetOnlyStep.__mro__[1]):  # Cell, without @dataclass
    name, weight_blocks = "plain", ("f",)


@dataclasses.dataclass(frozen=True)
class ExtraNamedAsABias(ForgetOnlyStep):
    extra_parameters = (ExtraParameter("bias_ih", "hidden", "ones"),)


@dataclasses.dataclass(frozen=True)
class ExtrasOfOneName(ForgetOnlyStep):
    extra_parameters = (ExtraParameter("gain", "hidden", "ones"), ExtraParameter("gain", "gates", "zeros"))


@dataclasses.dataclass(frozen=True)
class RepeatedTrace(ForgetOnlyStep):  # the first activation was lost from the gates traced
    trace_names = ("forget", "forget")


@dataclasses.dataclass(frozen=True)
class SignNotANumber(ForgetOnlyStep):  # forget_bias failed at "can't multiply sequence by non-int"
    @property
    def forget_bias_block(self):
        return ("f", "one")


@dataclasses.dataclass(frozen=True)
class ExtrasNotATuple(ForgetOnlyStep):
    extra_parameters = ExtraParameter("gain", "hidden", "ones")


@dataclasses.dataclass(frozen=True)
class ExtraNamedLikeAnAttribute(ForgetOnlyStep):
    extra_parameters = (ExtraParameter("bias", "hidden", "ones"),)


@dataclasses.dataclass(frozen=True)
class ListReturned(ForgetOnlyStep):
    def step(self, x_proj, h_proj, h, c, weights):
        return list(super().step(x_proj, h_proj, h, c, weights))


def test_a_cell_of_ones_own_may_return_its_step_as_a_list():
    """A list unpacks as a tuple does: the check of the step's result took it for neither."""
    torch.manual_seed(0)
    listed = lstmkit.Recurrent(ListReturned(), 4, 5)
    tupled = lstmkit.Recurrent(ForgetOnlyStep(), 4, 5)
    tupled.load_state_dict(listed.state_dict())
    x = torch.randn(3, 2, 4)
    assert torch.equal(listed(x, return_gates=True)[0], tupled(x)[0])


def test_an_extra_parameter_named_like_a_cell_modules_attribute_is_refused():
    """A layer names it bias_l0; a cell module failed in torch (`Boolean value of Tensor ... is
    ambiguous`), or, named engine, printed uninitialised memory as an engine's name."""
    assert [name for name, _ in lstmkit.Recurrent(ExtraNamedLikeAnAttribute(), 4, 5).named_parameters()][-1] == \
        "bias_l0"
    with pytest.raises(ValueError, match=re.escape(
            "cell ExtraNamedLikeAnAttribute's extra parameter 'bias' is named like an attribute of the cell module "
            "(RecurrentCell.bias): give it another name")):
        lstmkit.RecurrentCell(ExtraNamedLikeAnAttribute(), 4, 5)


@dataclasses.dataclass(frozen=True)
class WithoutStep(Cell):
    name, weight_blocks = "stepless", ("g",)


@pytest.mark.parametrize("cell, error, message", [
    (Unnamed(), TypeError, "cell Unnamed must set name (see lstmkit.cells.Cell)"),
    (BadForgetBlock(), ValueError, "cell BadForgetBlock: forget_bias_block must be None or (block, sign) with a block "
                                   "of its weight_blocks ('f', 'g') and a number, got ('i', 1.0)"),
    (MisspeltExtra(), ValueError, "cell MisspeltExtra: each of extra_parameters must be an ExtraParameter named by an "
                                  "identifier, whose size is one of hidden, gates and init one of uniform, ones, "
                                  "zeros, got ExtraParameter(name='gain', size='hiden', init='ones', is_bias=False)"),
    (RepeatedTrace(), TypeError, "cell RepeatedTrace: trace_names must be the distinct names of the activations its "
                                 "step returns, got ('forget', 'forget')"),
    (SignNotANumber(), ValueError, "cell SignNotANumber: forget_bias_block must be None or (block, sign) with a block "
                                   "of its weight_blocks ('f', 'g') and a number, got ('f', 'one')"),
    (ExtrasNotATuple(), TypeError, "cell ExtrasNotATuple: extra_parameters must be a tuple of ExtraParameter, got "
                                   "ExtraParameter(name='gain', size='hidden', init='ones', is_bias=False)"),
    (NotADataclass(), TypeError, "cell NotADataclass must be a dataclass (@dataclass(frozen=True)), as lstmkit's cells "
                                 "are: its fields are its options"),
    (ExtraNamedAsABias(), ValueError, "cell ExtraNamedAsABias: each of extra_parameters needs a name of its own, given "
                                      "once and not one of the layer's weights (weight_ih, weight_hh, bias_ih, "
                                      "bias_hh, weight_hr), got 'bias_ih'"),
    (ExtrasOfOneName(), ValueError, "cell ExtrasOfOneName: each of extra_parameters needs a name of its own, given "
                                    "once and not one of the layer's weights (weight_ih, weight_hh, bias_ih, bias_hh, "
                                    "weight_hr), got 'gain'"),
    (WithoutStep(), TypeError, "cell WithoutStep must define step(x_proj, h_proj, h, c, weights), its math (see "
                               "lstmkit.cells.Cell.step)"),
])
def test_a_cell_of_ones_own_missing_what_layers_read_is_named_when_built(cell, error, message):
    """They failed deep inside: `'Unnamed' object has no attribute 'name'`, `tuple.index(x): x not
    in tuple`, `KeyError: 'hiden'`, a repr that raised; an extra named bias_ih replaced the
    layer's bias with its ones, silently, and the call failed with `KeyError: 'bias_ih'`; a cell
    without a step failed at its call with an empty NotImplementedError."""
    for module in (lstmkit.Recurrent, lstmkit.RecurrentCell):
        with pytest.raises(error, match=f"^{re.escape(message)}$"):
            module(cell, 4, 5)


@pytest.mark.parametrize("engine", ["reference", "fused", "native",
                                    pytest.param("triton", marks=triton_installed)])
@pytest.mark.parametrize("cell_module", [False, True], ids=["layer", "cell module"])
def test_a_relu_rnn_carries_nan_and_inf_as_torch_nn_does(engine, cell_module):
    """Triton's relu was tl.maximum(·, 0), which gives 0 for NaN: a diverged run's NaN became
    dead units, silently, and its gradients differed from torch.nn's by up to 12.6."""
    torch.manual_seed(0)
    theirs = (torch.nn.RNNCell if cell_module else torch.nn.RNN)(3, 4, nonlinearity="relu").double()
    ours = (lstmkit.RNNCell if cell_module else lstmkit.RNN)(3, 4, nonlinearity="relu", engine=engine).double()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    x[1, 0, 0], x[2, 1, 1], x[3, 1, 2] = float("nan"), float("inf"), -float("inf")
    given = x[1] if cell_module else x
    outputs = [model(given.clone().requires_grad_()) for model in (ours, theirs)]
    outputs = [output if cell_module else output[0] for output in outputs]
    assert torch.equal(outputs[0].isnan(), outputs[1].isnan())
    torch.testing.assert_close(outputs[0], outputs[1], equal_nan=True)
    grads = [torch.autograd.grad(output.nan_to_num().sum(), list(model.parameters()))
             for output, model in zip(outputs, (ours, theirs))]
    for mine, expected in zip(*grads, strict=True):
        torch.testing.assert_close(mine, expected, equal_nan=True)


@pytest.mark.parametrize("engine", ["fused", pytest.param("triton", marks=triton_installed)])
def test_a_cifg_cell_state_at_infinity_gives_the_cells_own_numbers(engine):
    """The fused CIFG step computed c' = c + i ⊙ (g − c), NaN at c = ±inf where the cell's
    (1 − i) ⊙ c + i ⊙ g is ±inf and h = o ⊙ tanh(c') = ±o; the NaN then reached every unit."""
    torch.manual_seed(0)
    ours = lstmkit.CIFGLSTM(2, 2, engine=engine).double()
    reference = lstmkit.CIFGLSTM(2, 2, engine="reference").double()
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(3, 1, 2, dtype=torch.float64)
    state = (torch.zeros(1, 1, 2, dtype=torch.float64), torch.tensor([[[float("inf"), 0.5]]], dtype=torch.float64))
    (output, (h_n, c_n)), (expected, (h_expected, c_expected)) = ours(x, state), reference(x, state)
    assert torch.isfinite(output).all()
    for mine, theirs in ((output, expected), (h_n, h_expected), (c_n, c_expected)):
        torch.testing.assert_close(mine, theirs)


@dataclasses.dataclass(frozen=True)
class NarrowH(ForgetOnlyStep):
    def step(self, x_proj, h_proj, h, c, weights):
        h_new, c_new, gates = super().step(x_proj, h_proj, h, c, weights)
        return h_new[..., :3], c_new, gates


@dataclasses.dataclass(frozen=True)
class WideC(ForgetOnlyStep):
    def step(self, x_proj, h_proj, h, c, weights):
        h_new, c_new, gates = super().step(x_proj, h_proj, h, c, weights)
        return h_new, torch.cat([c_new, c_new], -1), gates


@dataclasses.dataclass(frozen=True)
class NoCellStateReturned(ForgetOnlyStep):
    def step(self, x_proj, h_proj, h, c, weights):
        return super().step(x_proj, h_proj, h, c, weights)[0], None, ()


@dataclasses.dataclass(frozen=True)
class OneTraceMissing(ForgetOnlyStep):
    trace_names = ("forget", "candidate", "extra")


@dataclasses.dataclass(frozen=True)
class TwoReturned(ForgetOnlyStep):
    def step(self, x_proj, h_proj, h, c, weights):
        return super().step(x_proj, h_proj, h, c, weights)[:2]


@pytest.mark.parametrize("cell, message", [
    (TwoReturned(), "cell TwoReturned's step must return (h', c', activations) (c' None without a cell state), got "
                    "a tuple of 2"),
    (NarrowH(), "cell NarrowH's step returned h' of shape (2, 3); expected (2, 5) (batch, hidden_size)"),
    (WideC(), "cell WideC's step returned c' of shape (2, 10); expected (2, 5) (batch, hidden_size)"),
    (NoCellStateReturned(), "cell NoCellStateReturned declares a cell state (has_cell_state = True, Cell's default), "
                            "but its step returned c' = None"),
    (OneTraceMissing(), "cell OneTraceMissing's step returned 2 activation(s); its trace_names name 3: forget, "
                        "candidate, extra"),
])
@pytest.mark.parametrize("steps", [1, 6])
def test_a_cell_of_ones_own_whose_step_returns_what_layers_misread_is_named_at_its_first_step(cell, message, steps):
    """A one-step call returned an output of another width without a word, a longer one failed
    in a product (`mat1 and mat2 shapes cannot be multiplied`), a c' of None at `'NoneType'
    object has no attribute 'device'`, a trace of other names at zip()."""
    for module in (lstmkit.Recurrent(cell, 4, 5), lstmkit.RecurrentCell(cell, 4, 5)):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            module(torch.randn(steps, 2, 4) if isinstance(module, lstmkit.Recurrent) else torch.randn(2, 4),
                   return_gates=True)


@dataclasses.dataclass(frozen=True)
class WideActivation(ForgetOnlyStep):
    """A trace of another width (the pre-activations of both blocks): the layers take it as is."""

    trace_names = ("preactivation",)

    def step(self, x_proj, h_proj, h, c, weights):
        h_new, c_new, _ = super().step(x_proj, h_proj, h, c, weights)
        return h_new, c_new, (x_proj + h_proj,)


def test_a_cell_of_ones_own_may_trace_activations_of_any_width_or_none_when_they_are_not_asked_for():
    """Its activations are read only with return_gates=True: a cell that returns none to save
    work, or traces a (B, 2H) pre-activation, ran before the first-step checks, and runs."""
    x = torch.randn(3, 2, 4)
    wide = lstmkit.Recurrent(WideActivation(), 4, 5)
    assert wide(x, return_gates=True)[2].gates["preactivation"].shape == (1, 3, 2, 10)
    assert lstmkit.Recurrent(OneTraceMissing(), 4, 5)(x)[0].shape == (3, 2, 5)


def test_a_misspelt_keyword_beside_a_cell_of_ones_own_is_named_with_the_one_meant():
    """It was called a cell option that goes with a cell name."""
    with pytest.raises(TypeError, match=re.escape("unexpected keyword argument(s) 'num_layer' (did you mean "
                                                  "'num_layers'?) for Recurrent")):
        lstmkit.Recurrent(ForgetOnlyStep(), 3, 4, num_layer=2)
