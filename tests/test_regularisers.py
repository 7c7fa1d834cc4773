"""The regularisers and initialisations (recurrent and input dropout, zoneout, weight dropout,
chrono and orthogonal init): every engine that runs them equals a hand-written loop with the
same masks in float64; the masks have the right statistics; evaluation is deterministic; the
engines are chosen and refused as they should be; bad options are named."""

from __future__ import annotations

import math
import re

import pytest
import torch

import lstmkit
from helpers import ALL_CELLS, assert_close, assert_same_run, cell_id, random_state, state_leaves
from lstmkit.engines import ENGINES, base
from lstmkit.engines.base import LayerNoise

T, B, INPUT, HIDDEN = 6, 3, 4, 5
F64 = torch.float64


def engines_running(cell: lstmkit.Recurrent, options: frozenset[str]) -> list[str]:
    """The engines that run `options` for `cell` on the CPU."""
    return [name for name, engine in ENGINES.items()
            if options <= engine.regularisers and not engine.unavailable() and not engine.unsupported(cell, None)]


def by_hand(cell: str, layer: lstmkit.Recurrent, x, h, c, input_mask, noise: LayerNoise):
    """One layer of the torch.nn equations, written out, with the masks applied."""
    w_ih, w_hh, b_ih, b_hh = layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0
    outputs = []
    for t in range(x.shape[0]):
        x_t = x[t] * input_mask
        h_seen = h if noise.recurrent_mask is None else h * noise.recurrent_mask
        from_input, from_hidden = x_t @ w_ih.T + b_ih, h_seen @ w_hh.T + b_hh
        if cell == "lstm":
            i, f, g, o = (from_input + from_hidden).chunk(4, -1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
            if noise.keep_cell is not None:
                c_new = c_new + noise.keep_cell[t] * (c - c_new)
            c = c_new
        else:
            (x_r, x_z, x_n), (h_r, h_z, h_n) = from_input.chunk(3, -1), from_hidden.chunk(3, -1)
            r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
            h_new = (1 - z) * torch.tanh(x_n + r * h_n) + z * h
        if noise.keep_hidden is not None:
            h_new = h_new + noise.keep_hidden[t] * (h - h_new)
        h = h_new
        outputs.append(h)
    return torch.stack(outputs), h, c


@pytest.fixture
def fixed_masks(monkeypatch):
    """Masks drawn here, once, and handed to every engine: input dropout's (B, I) and the
    recurrent ones (LayerNoise)."""
    generator = torch.Generator().manual_seed(7)
    masks = {
        "input": (torch.rand(B, INPUT, generator=generator, dtype=F64) > 0.3) / 0.7,
        "recurrent": (torch.rand(B, HIDDEN, generator=generator, dtype=F64) > 0.4) / 0.6,
        "keep_hidden": (torch.rand(T, B, HIDDEN, generator=generator, dtype=F64) < 0.2).to(F64),
        "keep_cell": (torch.rand(T, B, HIDDEN, generator=generator, dtype=F64) < 0.1).to(F64),
    }
    monkeypatch.setattr(base, "dropout_mask", lambda shape, p, like: masks["input"])

    def noise(stack, inputs, hidden_size, output_size):
        acting = stack.regularisation.acting(stack.training)
        return LayerNoise(masks["recurrent"] if "recurrent_dropout" in acting else None,
                          masks["keep_hidden"] if stack.regularisation.zoneout_hidden else None,
                          masks["keep_cell"] if stack.regularisation.zoneout_cell else None)

    monkeypatch.setattr(base.Stack, "noise", noise)
    return masks


OPTION_SETS = [
    ("lstm", dict(recurrent_dropout=0.4)),
    ("lstm", dict(zoneout=(0.1, 0.2))),
    ("lstm", dict(input_dropout=0.3)),
    ("lstm", dict(recurrent_dropout=0.4, input_dropout=0.3, zoneout=(0.1, 0.2))),
    ("gru", dict(recurrent_dropout=0.4, zoneout=0.2)),
    ("gru", dict(input_dropout=0.3)),
]


@pytest.mark.parametrize("cell, options", OPTION_SETS, ids=lambda value: str(value))
def test_with_fixed_masks_every_engine_equals_the_equations_by_hand(cell, options, fixed_masks):
    layer = lstmkit.Recurrent(cell, INPUT, HIDDEN, dtype=F64, **options)
    acting = layer.regularisation.acting(training=True)
    names = engines_running(layer.cell, acting)
    assert "reference" in names
    x = torch.randn(T, B, INPUT, dtype=F64, requires_grad=True)
    h0 = torch.randn(1, B, HIDDEN, dtype=F64, requires_grad=True)
    c0 = torch.randn(1, B, HIDDEN, dtype=F64, requires_grad=True)
    noise = base.Stack.noise(layer._stack(), x, HIDDEN, HIDDEN)
    input_mask = fixed_masks["input"] if "input_dropout" in acting else 1.0
    expected, h_n, _ = by_hand(cell, layer, x, h0[0], c0[0], input_mask, noise)
    expected_grads = torch.autograd.grad((expected.sum() + h_n.pow(2).sum()), [x, h0, *layer.parameters()])
    for name in names:
        layer.engine = name
        output, state = layer(x, (h0, c0) if cell == "lstm" else h0)
        h_last = state[0] if cell == "lstm" else state
        assert_close(output, expected, f"{name}: output")
        grads = torch.autograd.grad(output.sum() + h_last.pow(2).sum(), [x, h0, *layer.parameters()])
        for index, (ours, theirs) in enumerate(zip(grads, expected_grads, strict=True)):
            assert_close(ours, theirs, f"{name}: gradient {index}")


def recurrent_regularisers(cell: str) -> list[dict]:
    """Recurrent dropout with zoneout, and zoneout alone, for `cell` (z_c too when it has c)."""
    zoneout = 0.25 if cell in ("rnn", "gru") else (0.15, 0.25)
    return [dict(recurrent_dropout=0.3, zoneout=zoneout), dict(zoneout=zoneout)]


def kernel_engine_grid():
    """Every cell with fused kernels, through the paths of the loop (two bidirectional layers
    on a padded batch with a given state; a projection), in training and in evaluation."""
    for cell, options in ALL_CELLS:
        for regularisers, training in ((regularisers, True) for regularisers in recurrent_regularisers(cell)):
            label = f"{cell_id(cell, options)}-{'+'.join(regularisers)}"
            yield pytest.param(cell, options, regularisers, training, 0, id=f"{label}-L2-bi-lengths-hx")
            if lstmkit.cells.make_cell(cell, **options).supports_projection:
                yield pytest.param(cell, options, regularisers, training, 2, id=f"{label}-proj2")
        yield pytest.param(cell, options, recurrent_regularisers(cell)[1], False, 0, id=f"{cell_id(cell, options)}-eval")


@pytest.mark.parametrize("engine", ["fused", "triton"])
@pytest.mark.parametrize("cell, options, regularisers, training, proj", list(kernel_engine_grid()))
def test_the_kernel_engines_apply_the_masks_as_the_reference_engine(engine, cell, options, regularisers, training,
                                                                    proj):
    """The same masks (the same seed: every engine draws them in `LayerEngine.run`, in one
    order) give the same outputs and gradients in float64."""
    if ENGINES[engine].unavailable():
        pytest.skip(ENGINES[engine].unavailable())
    layer_options = dict(input_size=4, hidden_size=5, dtype=F64, **options, **regularisers)
    if proj:
        layer_options.update(proj_size=proj)
    else:
        layer_options.update(num_layers=2, bidirectional=True)
    torch.manual_seed(0)
    reference = lstmkit.Recurrent(cell, engine="reference", **layer_options).train(training)
    kernels = lstmkit.Recurrent(cell, engine=engine, **layer_options).train(training)
    kernels.load_state_dict(reference.state_dict())
    x = torch.randn(5, 3, 4, dtype=F64, requires_grad=True)
    hx, lengths = (None, None) if proj else (random_state(reference, 3), torch.tensor([5, 2, 4]))
    runs = []
    for layer in (kernels, reference):
        torch.manual_seed(1)
        runs.append(layer(x, hx, lengths=lengths))
    assert_same_run(*runs, {"input": x, **state_leaves(hx), **dict(kernels.named_parameters())},
                    {"input": x, **state_leaves(hx), **dict(reference.named_parameters())})


def test_the_recurrent_mask_is_drawn_once_and_shared_by_every_step(monkeypatch):
    """h_{t-1} reaches the recurrent product as h ⊙ m with one m for the whole sequence; the
    dropped fraction is p and the kept values are scaled by 1/(1-p)."""
    seen = []
    layer = lstmkit.LSTM(INPUT, 64, recurrent_dropout=0.25, engine="reference")
    original = layer.cell.project_hidden
    monkeypatch.setattr(type(layer.cell), "project_hidden",
                        lambda cell, h, weights: seen.append(h.detach().clone()) or original(h, weights))
    captured = {}
    real_noise = base.Stack.noise
    monkeypatch.setattr(base.Stack, "noise", lambda *a: captured.setdefault("noise", real_noise(*a)))
    torch.manual_seed(0)
    layer(torch.randn(T, 400, INPUT))
    mask = captured["noise"].recurrent_mask
    assert mask.unique().tolist() == pytest.approx([0.0, 1 / 0.75])
    assert (mask == 0).float().mean().item() == pytest.approx(0.25, abs=0.01)
    dropped = mask == 0
    for h_seen in seen[1:]:
        assert (h_seen[dropped] == 0).all() and (h_seen[~dropped] != 0).all()


def test_zoneout_masks_change_every_step_with_rate_z(monkeypatch):
    captured = {}
    real_noise = base.Stack.noise
    monkeypatch.setattr(base.Stack, "noise", lambda *a: captured.setdefault("noise", real_noise(*a)))
    torch.manual_seed(0)
    lstmkit.LSTM(INPUT, 64, zoneout=(0.1, 0.3))(torch.randn(50, 200, INPUT))
    noise = captured["noise"]
    assert noise.keep_cell.mean().item() == pytest.approx(0.1, abs=0.005)
    assert noise.keep_hidden.mean().item() == pytest.approx(0.3, abs=0.005)
    assert not torch.equal(noise.keep_hidden[0], noise.keep_hidden[1])


def test_evaluation_is_deterministic_and_zoneout_takes_its_expectation():
    torch.manual_seed(0)
    layer = lstmkit.LSTM(INPUT, HIDDEN, recurrent_dropout=0.5, input_dropout=0.5, weight_dropout=0.5,
                         zoneout=(0.2, 0.3), dtype=F64).eval()
    x = torch.randn(T, B, INPUT, dtype=F64)
    first, second = layer(x), layer(x)
    assert torch.equal(first[0], second[0])
    plain = lstmkit.LSTM(INPUT, HIDDEN, dtype=F64)
    plain.load_state_dict(layer.state_dict())
    step, (h1, c1) = plain(x[:1])
    assert_close(layer(x[:1])[1][1], 0.7 * 0 + 0.8 * c1 + 0.2 * 0, "c after one step: 0.2 · c0 + 0.8 · c̃")
    assert_close(layer(x[:1])[0], 0.7 * step, "h after one step: 0.3 · h0 + 0.7 · h̃ (h0 = 0)")


def test_weight_dropout_drops_weight_hh_once_per_call(monkeypatch):
    layer = lstmkit.LSTM(INPUT, 64, weight_dropout=0.5, engine="reference")
    used = []
    real_run = ENGINES["reference"].run
    monkeypatch.setattr(ENGINES["reference"], "run", lambda stack, *rest: used.append(stack.weights[0].weight_hh)
                        or real_run(stack, *rest))
    layer(torch.randn(T, B, INPUT))
    layer(torch.randn(T, B, INPUT))
    weight = layer.weight_hh_l0.detach()
    for dropped in used:
        kept = dropped != 0
        assert torch.allclose(dropped[kept], 2 * weight[kept])
        assert (~kept).float().mean().item() == pytest.approx(0.5, abs=0.03)
    assert not torch.equal(used[0] != 0, used[1] != 0), "a fresh mask each call"
    layer.eval()
    layer(torch.randn(T, B, INPUT))
    assert used[2] is layer.weight_hh_l0


def test_options_off_leave_the_layer_equal_to_torch_nn():
    torch.manual_seed(0)
    ours = lstmkit.LSTM(INPUT, HIDDEN, num_layers=2, dtype=F64)
    theirs = torch.nn.LSTM(INPUT, HIDDEN, num_layers=2, dtype=F64)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(T, B, INPUT, dtype=F64)
    assert ours.engine_name == "native"
    assert_close(ours(x)[0], theirs(x)[0], "output")


@pytest.mark.parametrize("options, training, engine", [
    (dict(recurrent_dropout=0.2), True, "fused"),
    (dict(recurrent_dropout=0.2), False, "native"),
    (dict(weight_dropout=0.2), True, "native"),
    (dict(input_dropout=0.2), True, "fused"),
    (dict(zoneout=0.1), False, "fused"),
])
def test_auto_picks_an_engine_that_runs_what_acts(options, training, engine):
    layer = lstmkit.LSTM(INPUT, HIDDEN, **options).train(training)
    assert layer.engine_name == engine


@pytest.mark.parametrize("cell, options, message", [
    ("lstm", dict(recurrent_dropout=1.0), "recurrent_dropout must be a probability in [0, 1), got 1.0"),
    ("lstm", dict(input_dropout=-0.1), "input_dropout must be a probability in [0, 1), got -0.1"),
    ("lstm", dict(weight_dropout=math.nan), "weight_dropout must be a probability in [0, 1), got nan"),
    ("lstm", dict(zoneout=(0.1, 0.2, 0.3)), "zoneout must be a probability z or a pair (z_c, z_h), got (0.1, 0.2, 0.3)"),
    ("gru", dict(zoneout=(0.1, 0.2)), "zoneout of the cell state needs a cell with one; cell gru has only h "
                                      "(got zoneout=(0.1, 0.2); give z alone, or (0, z_h))"),
    ("lstm", dict(init="xavier"), "init must be None, 'chrono' or 'orthogonal', or a sequence of them, got 'xavier'"),
    ("lstm", dict(init=1), "init must be None, 'chrono' or 'orthogonal', or a sequence of them, got 1"),  # not iterable
    ("lstm", dict(init="chrono"), "init='chrono' needs chrono_max, the longest dependency expected in steps, a "
                                  "finite number above 2; got chrono_max=None"),
    ("lstm", dict(init="chrono", chrono_max=math.inf), "a finite number above 2; got chrono_max=inf"),
    ("lstm", dict(chrono_max=100), "chrono_max goes with init='chrono', got chrono_max=100 with init=None"),
    ("gru", dict(init="chrono", chrono_max=100), "init='chrono' sets the forget gate's bias; cell gru has no forget gate"),
    ("lstm", dict(init="chrono", chrono_max=100, forget_bias=1.0),
     "init='chrono' and forget_bias=1.0 both set the forget gate's bias; give one of them"),
    ("lstm", dict(recurrent_dropout=0.1, engine="native"),
     "engine='native' cannot run recurrent_dropout; use engine='auto' (engines that run it: fused, triton, "
     "reference)"),
])
def test_bad_options_are_named(cell, options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        lstmkit.Recurrent(cell, INPUT, HIDDEN, **options)


def test_a_misspelt_option_of_a_named_layer_is_refused():
    with pytest.raises(TypeError, match=re.escape("unexpected keyword argument(s) 'recurent_dropout' (did you mean "
                                                  "'recurrent_dropout'?); lstmkit.GRU's options beyond torch.nn's are "
                                                  "engine, and the regulariser options recurrent_dropout,")):
        lstmkit.GRU(INPUT, HIDDEN, recurent_dropout=0.1)


@pytest.mark.parametrize("cell", ["lstm", "peephole", "layernorm", "cifg"])
def test_chrono_biases_span_the_time_scales_up_to_chrono_max(cell):
    torch.manual_seed(0)
    layer = lstmkit.Recurrent(cell, INPUT, 200, num_layers=2, bidirectional=True, init="chrono", chrono_max=1000)
    blocks = layer.cell.weight_blocks
    for suffix in ("_l0", "_l1_reverse"):
        bias_ih, bias_hh = (getattr(layer, name + suffix).detach().split(200) for name in ("bias_ih", "bias_hh"))
        if cell == "cifg":  # f = 1 − i: the input gate carries −b_f
            forget = -bias_ih[blocks.index("i")]
        else:
            forget = bias_ih[blocks.index("f")]
            assert torch.equal(bias_ih[blocks.index("i")], -forget)
        assert forget.min().item() >= 0 and forget.max().item() <= math.log(999)
        assert forget.max().item() > math.log(500), "the range up to log(chrono_max - 1) is used"
        for block in ("i", "f"):
            if block in blocks:
                assert torch.equal(bias_hh[blocks.index(block)], torch.zeros(200))


@pytest.mark.parametrize("dtype, chrono_max", [(torch.float16, 70000), (torch.bfloat16, 1e300), (torch.float32, 1e300)])
def test_chrono_biases_are_drawn_where_chrono_max_fits_and_cast_to_the_layer(dtype, chrono_max):
    """U[1, chrono_max − 1] was drawn in the layer's dtype: float16 failed past 65504 (torch's
    'to is out of bounds'), whose biases, log U ≤ log(chrono_max), it holds."""
    torch.manual_seed(0)
    forget = lstmkit.LSTM(INPUT, 200, init="chrono", chrono_max=chrono_max, dtype=dtype).bias_ih_l0[200:400].detach()
    assert forget.dtype == dtype and forget.min().item() >= 0
    assert math.log(chrono_max) - 1 < forget.float().max().item() <= math.log(chrono_max) * 1.01  # bf16's rounding


@pytest.mark.parametrize("dtype, value", [(torch.float16, 1e5), (torch.float32, -1e39)])
def test_a_forget_bias_the_biases_cannot_hold_is_refused(dtype, value):
    """float16 made it inf in silence; float32 failed inside torch."""
    largest = torch.finfo(dtype).max
    for module in (lstmkit.LSTM, lstmkit.LSTMCell):
        with pytest.raises(ValueError, match="^" + re.escape(
                f"forget_bias={value:g} does not fit the layer's {dtype} biases (at most {largest:g} in magnitude)")):
            module(INPUT, HIDDEN, forget_bias=value, dtype=dtype)


def test_orthogonal_init_makes_each_gate_block_of_weight_hh_orthogonal():
    layer = lstmkit.LSTM(INPUT, HIDDEN, num_layers=2, init="orthogonal", dtype=F64)
    for block in layer.weight_hh_l1.detach().split(HIDDEN):
        assert_close(block @ block.T, torch.eye(HIDDEN, dtype=F64), "W Wᵀ = I", tolerance=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_orthogonal_init_in_half_precision_is_float32_s_rounded(dtype):
    """torch's QR takes no half precision: the layer's constructor failed inside torch."""
    torch.manual_seed(0)
    half = lstmkit.LSTM(INPUT, HIDDEN, init="orthogonal", dtype=dtype)
    torch.manual_seed(0)
    full = lstmkit.LSTM(INPUT, HIDDEN, init="orthogonal")
    assert torch.equal(half.weight_hh_l0, full.weight_hh_l0.to(dtype))


@pytest.mark.parametrize("option", ["recurrent_dropout", "input_dropout", "weight_dropout"])
def test_step_refuses_a_mask_per_sequence_in_training_and_streams_in_evaluation(option):
    torch.manual_seed(0)
    layer = lstmkit.LSTM(INPUT, HIDDEN, dtype=F64, **{option: 0.3})
    x = torch.randn(T, B, INPUT, dtype=F64)
    with pytest.raises(ValueError, match=re.escape(f"step() in training cannot run {option}: each draws one mask")):
        layer.step(x[0])
    layer.eval()
    state, outputs = None, []
    for x_t in x:
        output, state = layer.step(x_t, state)
        outputs.append(output)
    assert_close(torch.stack(outputs), layer(x)[0], "streamed in evaluation = the whole sequence")


def test_step_in_training_with_zoneout_draws_a_mask_per_step_as_forward_does():
    """Zoneout's masks are per step anyway: step() in training applies them."""
    torch.manual_seed(0)
    layer = lstmkit.LSTM(INPUT, HIDDEN, dtype=F64, zoneout=(0.5, 0.5))
    x_t = torch.randn(B, INPUT, dtype=F64)
    h0, c0 = torch.randn(1, B, HIDDEN, dtype=F64), torch.randn(1, B, HIDDEN, dtype=F64)
    torch.manual_seed(1)
    _, (h1, c1) = layer.step(x_t, (h0, c0))
    torch.manual_seed(1)
    _, (h_full, c_full) = layer(x_t.unsqueeze(0), (h0, c0))
    assert_close(h1, h_full, "h")
    assert_close(c1, c_full, "c")
    assert ((h1 == h0) | (c1 == c0)).any(), "some units kept their previous value"
