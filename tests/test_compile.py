"""torch.compile gives the eager numbers, through several optimizer steps, on every engine.

The fused and Triton engines run each layer and direction as one custom op
(`lstmkit::fused_layer`, with `lstmkit::fused_layer_backward` as its autograd formula), which
the compiler sees whole and never traces into; the native engine is torch's own RNN op; the
reference engine is ordinary autograd. Each case trains an eager and a compiled copy of the same
layer with SGD for a few steps on the same batch and compares outputs, final states and
weights at every step, in float32. The fast suite runs every cell once and every engine a few
times, with aot_eager and inductor; the whole grid of cells, engines, layer options and both
backends (about 300 cases, minutes) is in the slow suite (pytest -m slow).
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence
from torch._dynamo.testing import CompileCounterWithBackend

import lstmkit
from helpers import ALL_CELLS, cell_id, flatten_outputs, relative_error

STEPS = 3
TOLERANCE = 1e-5  # float32: the compiled graph may round the ops around the layer differently
INDUCTOR_TOLERANCE = 1e-4  # inductor fuses them, and three SGD steps of lr 0.5 carry the difference
LENGTHS = [5, 2, 4]
BACKENDS = ["aot_eager", "inductor"]
LAYER_OPTIONS = {  # name: (layer options, lengths)
    "plain": ({}, None),
    "bi-lengths": ({"bidirectional": True}, LENGTHS),
    "L2": ({"num_layers": 2}, None),
    "proj-lengths": ({"proj_size": 3}, LENGTHS),
}
triton_installed = lstmkit.engines.ENGINES["triton"].unavailable() is None


@pytest.fixture(autouse=True)
def fresh_compiler():
    """Each test compiles from scratch: past torch.compile's limit of recompilations of one
    function, later calls would run eagerly without a word."""
    torch.compiler.reset()


def engines_for(cell, options):
    """The engines that run `cell`: reference and fused always, native for torch.nn's cells,
    Triton where it is installed (on CPU under TRITON_INTERPRET=1, set by conftest)."""
    native = lstmkit.engines.ENGINES["native"].unsupported(lstmkit.cells.make_cell(cell, **options), None) is None
    return ["reference", "fused"] + (["native"] if native else []) + (["triton"] if triton_installed else [])


def option_names_for(cell, options):
    supports_projection = lstmkit.cells.make_cell(cell, **options).supports_projection
    return [name for name in LAYER_OPTIONS if supports_projection or not name.startswith("proj")]


def full_grid():
    for (cell, options), backend in itertools.product(ALL_CELLS, BACKENDS):
        for engine, option_name in itertools.product(engines_for(cell, options), option_names_for(cell, options)):
            label = f"{cell_id(cell, options)}-{engine}-{option_name}-{backend}"
            yield pytest.param(cell, options, engine, option_name, backend, id=label)


def fast_grid():
    """Every cell on the fused engine with aot_eager, the layer options taken in turn; two
    cells on native and reference, one on Triton (its kernels interpreted on CPU are slow); and
    inductor on each engine but Triton, with every layer option on the fused engine."""
    cases = [
        (cell, options, "fused", option_names_for(cell, options)[index % len(option_names_for(cell, options))],
         "aot_eager")
        for index, (cell, options) in enumerate(ALL_CELLS)
    ]
    cases += [
        ("lstm", {}, "native", "L2", "aot_eager"), ("gru", {}, "native", "bi-lengths", "aot_eager"),
        ("rnn", {"nonlinearity": "relu"}, "reference", "bi-lengths", "aot_eager"),
        ("peephole", {}, "reference", "proj-lengths", "aot_eager"),
        ("lstm", {}, "fused", "bi-lengths", "inductor"), ("layernorm", {}, "fused", "L2", "inductor"),
        ("lstm", {"forget_gate": False}, "fused", "proj-lengths", "inductor"),
        ("gru", {}, "fused", "plain", "inductor"),
        ("lstm", {}, "native", "bi-lengths", "inductor"), ("cifg", {}, "reference", "plain", "inductor"),
    ]
    if triton_installed:
        cases.append(("lstm", {}, "triton", "bi-lengths", "aot_eager"))
    for cell, options, engine, option_name, backend in cases:
        yield pytest.param(
            cell, options, engine, option_name, backend, id=f"{cell_id(cell, options)}-{engine}-{option_name}-{backend}"
        )


def twin_layers(cell, options, engine, layer_options):
    """A layer and a copy with the same weights."""
    torch.manual_seed(0)
    layer = lstmkit.Recurrent(cell, 6, 8, engine=engine, **options, **layer_options)
    twin = lstmkit.Recurrent(cell, 6, 8, engine=engine, **options, **layer_options)
    twin.load_state_dict(layer.state_dict())
    return layer, twin


def assert_trains_as_eager(cell, options, engine, option_name, backend):
    """An eager and a compiled copy of one layer, trained side by side, stay equal."""
    layer_options, lengths = LAYER_OPTIONS[option_name]
    tolerance = INDUCTOR_TOLERANCE if backend == "inductor" else TOLERANCE
    eager, twin = twin_layers(cell, options, engine, layer_options)
    counter = CompileCounterWithBackend(backend)
    compiled = torch.compile(twin, backend=counter)
    optimizers = [torch.optim.SGD(model.parameters(), lr=0.5) for model in (eager, twin)]
    x = torch.randn(5, 3, 6)
    for step in range(STEPS):
        results = []
        for model, optimizer in zip((eager, compiled), optimizers, strict=True):
            optimizer.zero_grad()
            result = flatten_outputs(model(x, lengths=lengths))
            sum(tensor.pow(2).sum() for tensor in result).backward()
            optimizer.step()
            results.append([tensor.detach() for tensor in result])
        for index, (ours, theirs) in enumerate(zip(results[1], results[0], strict=True)):
            assert relative_error(ours, theirs) < tolerance, f"step {step}, output {index}"
        for (name, ours), theirs in zip(twin.named_parameters(), eager.parameters(), strict=True):
            assert relative_error(ours, theirs) < tolerance, f"step {step}, {name}"
    assert counter.frame_count > 0, "nothing was compiled"


@pytest.mark.parametrize("cell, options, engine, option_name, backend", list(fast_grid()))
def test_compiled_training_equals_eager(cell, options, engine, option_name, backend):
    assert_trains_as_eager(cell, options, engine, option_name, backend)


@pytest.mark.slow
@pytest.mark.parametrize("cell, options, engine, option_name, backend", list(full_grid()))
def test_compiled_training_equals_eager_on_every_configuration(cell, options, engine, option_name, backend):
    assert_trains_as_eager(cell, options, engine, option_name, backend)


@pytest.mark.parametrize("engine", ["fused", "reference"])
@pytest.mark.parametrize("regulariser", [{"recurrent_dropout": 0.3}, {"input_dropout": 0.3}, {"zoneout": 0.3},
                                         {"weight_dropout": 0.3}], ids=lambda options: next(iter(options)))
def test_compiled_regularisers_draw_the_eager_masks(regulariser, engine):
    """Under Inductor's fallback_random, which draws random numbers as eager does, a compiled
    layer in training draws every regulariser's masks as the eager one: the same outputs and
    gradients from the same seed (the masks are uniform draws, as torch.bernoulli is not)."""
    from torch._inductor import config as inductor

    results = []
    for compiled in (False, True):
        torch.manual_seed(0)
        layer = lstmkit.GRU(3, 4, num_layers=2, engine=engine, dtype=torch.float64, **regulariser).train()
        model = torch.compile(layer, backend="inductor") if compiled else layer
        torch.manual_seed(21)
        with inductor.patch(fallback_random=True):
            output = model(torch.randn(5, 4, 3, dtype=torch.float64))[0]
            output.pow(2).mean().backward()
        results.append([output.detach(), *(parameter.grad for parameter in layer.parameters())])
    for index, (ours, theirs) in enumerate(zip(results[1], results[0], strict=True)):
        assert relative_error(ours, theirs) < TOLERANCE, f"output {index}"


FULLGRAPH_CASES = [
    pytest.param("lstm", {}, "aot_eager", id="lstm-aot_eager"),
    pytest.param("gru", {}, "aot_eager", id="gru-aot_eager"),
    pytest.param("rnn", {"nonlinearity": "relu"}, "aot_eager", id="rnn-relu-aot_eager"),
    pytest.param("layernorm", {}, "aot_eager", id="layernorm-aot_eager"),
    pytest.param("lstm", {"output_activation": False}, "inductor", id="lstm-output_activation=False-inductor"),
]


@pytest.mark.parametrize("cell, options, backend", FULLGRAPH_CASES)
def test_a_fused_layer_compiles_to_one_graph(cell, options, backend):
    """fullgraph=True fails at any graph break: the fused layer is one op to the compiler."""
    layer, twin = twin_layers(cell, options, "fused", {"num_layers": 2, "bidirectional": True})
    compiled = torch.compile(twin, fullgraph=True, backend=backend)
    x = torch.randn(5, 3, 6, requires_grad=True)
    ours, theirs = flatten_outputs(compiled(x)), flatten_outputs(layer(x))
    for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert relative_error(a, b) < TOLERANCE, f"output {index}"
    grads = [torch.autograd.grad(sum(t.sum() for t in result), [x, *model.parameters()])
             for result, model in ((ours, twin), (theirs, layer))]
    for index, (a, b) in enumerate(zip(*grads, strict=True)):
        assert relative_error(a, b) < TOLERANCE, f"gradient {index}"


@pytest.mark.parametrize("dynamic, compiled_after", [(True, 1), (None, 2)])
def test_a_compiled_fused_layer_takes_a_new_sequence_length_without_compiling_again(dynamic, compiled_after):
    """The op's shapes kept T symbolic: as torch.nn.LSTM, a new length is no new graph (with
    dynamic=None, after automatic dynamic shapes mark it on the second). Each compiled again,
    up to torch's recompile_limit, and then ran eagerly."""
    torch._dynamo.reset()
    layer = lstmkit.PeepholeLSTM(3, 4, engine="fused", dtype=torch.float64)
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(layer, backend=counter, dynamic=dynamic, fullgraph=True)
    counts = []
    for steps in (5, 6, 9, 12):
        x = torch.randn(steps, 2, 3, dtype=torch.float64)
        assert torch.equal(compiled(x)[0], layer(x)[0])
        counts.append(counter.frame_count)
    assert counts[compiled_after - 1:] == [counts[compiled_after - 1]] * (5 - compiled_after)


@pytest.mark.parametrize("packed", [False, True], ids=["lengths", "packed"])
def test_a_compiled_fused_layer_takes_new_lengths_without_compiling_again(packed):
    """The op takes the batch sizes as a tensor: as a list of ints, each new set of lengths
    compiled the call again, and after torch's recompile_limit it ran eagerly. (Lengths given
    as a tensor: the compiler takes a list's ints as constants until they have changed.)"""
    torch._dynamo.reset()
    torch.manual_seed(0)
    layer = lstmkit.GRU(3, 4, engine="fused", dtype=torch.float64)
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(layer, backend=counter)
    counts = []
    for lengths in map(torch.tensor, ([7, 5, 2], [7, 3, 3], [6, 7, 1], [7, 6, 5], [2, 7, 4])):
        x = torch.randn(7, 3, 3, dtype=torch.float64, requires_grad=True)
        call = (lambda module: module(pack_padded_sequence(x, lengths, enforce_sorted=False))[0].data) if packed \
            else (lambda module: module(x, lengths=lengths)[0])
        ours, theirs = call(compiled), call(layer)
        assert torch.equal(ours, theirs)
        gradients = [torch.autograd.grad(out.sum(), [x, layer.weight_hh_l0], retain_graph=True)
                     for out in (ours, theirs)]
        assert all(map(torch.equal, *gradients))
        counts.append(counter.frame_count)
    # a packed batch compiles once more, on its second call (automatic dynamic shapes); lengths= never
    assert counts[packed:] == [counts[packed]] * (5 - packed)


@pytest.mark.parametrize("layer_type", [lstmkit.LSTM, lstmkit.GRU])
@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_a_compiled_native_layer_runs_a_packed_sequence_as_it_does_eagerly(layer_type, enforce_sorted):
    """The native engine takes a PackedSequence's rows as they are; a PackedSequence handed
    whole to its eager call lost its fields under torch.compile ("IndexError: tuple index out
    of range")."""
    torch.manual_seed(0)
    layer = layer_type(3, 4, num_layers=2, bidirectional=True, engine="native")
    x = torch.randn(7, 3, 3, requires_grad=True)
    lengths = [7, 5, 2] if enforce_sorted else [5, 7, 2]
    runs = [module(pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted))
            for module in (layer, torch.compile(layer, backend="aot_eager"))]
    (eager, eager_final), (compiled, compiled_final) = runs
    assert torch.equal(compiled.data, eager.data) and torch.equal(compiled.batch_sizes, eager.batch_sizes)
    assert all(map(torch.equal, flatten_outputs(compiled_final), flatten_outputs(eager_final)))
    gradients = [torch.autograd.grad(output.data.sum(), [x, layer.weight_hh_l0]) for output, _ in runs]
    assert all(map(torch.equal, *gradients))


def test_fullgraph_on_the_native_engine_says_what_to_build_instead():
    """The native engine is a graph break, as torch.nn's RNNs are: fullgraph=True fails there,
    and says so, where it blamed a `disable` the user never called."""
    compiled = torch.compile(lstmkit.LSTM(4, 5), fullgraph=True, backend="eager")
    with pytest.raises(Exception, match="(?s)lstmkit's native engine runs torch's own RNN kernels.*engine='fused'"):
        compiled(torch.randn(6, 3, 4))


@pytest.mark.parametrize("cell, options", [("lstm", {}), ("gru", {}), ("layernorm", {}), ("peephole", {})])
def test_the_fused_ops_pass_torch_library_opcheck(cell, options):
    """The ops' schemas, fake implementations and autograd registration agree with what the
    ops do (torch.library.opcheck), with lengths and a projection where the cell takes one."""
    from lstmkit.engines.fused.layer import given_parameters, kernel_key

    torch.manual_seed(0)
    layer = lstmkit.Recurrent(cell, 3, 4, proj_size=2 if cell != "gru" else 0, engine="fused", **options)
    weights = layer.layer_weights(0)
    given, parameters = given_parameters(layer.cell, weights)
    key = kernel_key(lstmkit.engines.ENGINES["fused"].kernels()[cell], layer.cell)
    x = torch.randn(4, 3, 3, requires_grad=True)
    h0 = torch.randn(3, layer.output_size, requires_grad=True)
    c0 = torch.randn(3, 4, requires_grad=True) if layer.cell.has_cell_state else None
    recurrent_mask = torch.bernoulli(torch.full((3, layer.output_size), 0.7)) / 0.7
    keep_hidden = torch.bernoulli(torch.full((4, 3, layer.output_size), 0.2))
    keep_cell = torch.bernoulli(torch.full((4, 3, 4), 0.1)) if c0 is not None else None
    masks = ((None,) * 3, (recurrent_mask, keep_hidden, keep_cell))
    for batch_sizes, noise in itertools.product((None, torch.tensor([3, 3, 2, 1])), masks):
        arguments = (key, batch_sizes, True, torch.float32, torch.float32, given, x, h0, c0, parameters, *noise)
        torch.library.opcheck(torch.ops.lstmkit.fused_layer.default, arguments)


@pytest.mark.parametrize("compile_it", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize(
    "cell, engines", [("lstm", engines_for("lstm", {})), ("layernorm", ["fused"])], ids=["lstm", "layernorm"]
)
def test_an_in_place_update_of_a_weight_changes_the_next_output_on_every_engine(cell, engines, compile_it):
    """No engine keeps a copy of the weights past an in-place update: after
    `weight_hh_l0[0].add_(1)` each gives what a new layer with the updated weights gives. (One
    row, not the whole matrix: LayerNorm takes out a shift common to all rows.)"""
    for engine in engines:
        layer, fresh = twin_layers(cell, {}, engine, {"num_layers": 2})
        run = torch.compile(layer, backend="aot_eager") if compile_it else layer
        x = torch.randn(5, 3, 6)
        before = run(x)[0]
        with torch.no_grad():
            layer.weight_hh_l0[0].add_(1)
            fresh.weight_hh_l0[0].add_(1)
        after = run(x)[0]
        assert relative_error(after, before) > 100 * TOLERANCE, engine
        assert relative_error(after, fresh(x)[0]) < TOLERANCE, engine


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_an_lstm_compiled_first_under_cpu_autocast_runs_where_eager_runs(dtype):
    """Under CPU autocast, `auto` picks the engine for a compiled LSTM as it does in eager
    mode: where oneDNN's LSTM fails in this dtype, the fused engine. Whether it fails is tried
    on real tensors (on the fake ones the compiler traces with it cannot fail), even when the
    compiled call is the first to ask; the numbers are the eager ones."""
    from lstmkit.engines.native import onednn_runs_lstm

    onednn_runs_lstm.cache_clear()
    layer = lstmkit.LSTM(8, 16)
    x = torch.randn(5, 3, 8)
    with torch.autocast("cpu", dtype):
        compiled = torch.compile(layer, backend="aot_eager")(x)[0]
        eager = layer(x)[0]
    assert compiled.dtype == eager.dtype == dtype
    assert relative_error(compiled.float(), eager.float()) < TOLERANCE
