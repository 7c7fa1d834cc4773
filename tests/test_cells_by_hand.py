"""Each cell's step against its equations written out by hand, in plain Python floats.

A one-layer cell with input size 1 and hidden size 2 takes one step from x = 0.5,
h = (0.1, -0.2), c = (0.3, -0.4), with every parameter set to a fixed number; the test spells
out the gates and states of DESIGN.md's table element by element and compares in float64.
"""

from __future__ import annotations

import math

import pytest
import torch

import lstmkit

X = [0.5]
H = [0.1, -0.2]
C = [0.3, -0.4]
EPS = 1e-5  # LayerNorm's epsilon


def sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def relu(value: float) -> float:
    return max(value, 0.0)


def fixed_numbers(count: int, start: float) -> list[float]:
    """count distinct fixed numbers of alternating sign, e.g. 0.3, -0.4, 0.5, ..."""
    return [round((start + 0.1 * k) * (-1) ** k, 10) for k in range(count)]


class HandCell:
    """A single-layer layer with fixed parameters, and the pieces to write its math by hand."""

    def __init__(self, cell: str, **options):
        self.layer = lstmkit.Recurrent(cell, 1, 2, dtype=torch.float64, **options)
        self.values: dict[str, list[float]] = {}
        with torch.no_grad():
            for index, (name, parameter) in enumerate(self.layer.named_parameters()):
                numbers = fixed_numbers(parameter.numel(), 0.3 + 0.05 * index)
                parameter.copy_(torch.tensor(numbers, dtype=torch.float64).view(parameter.shape))
                self.values[name.removesuffix("_l0")] = numbers

    def x_part(self, block: int) -> list[float]:
        """W_i* x + b_i* for gate block `block`, one number per hidden unit."""
        w, b = self.values["weight_ih"], self.values["bias_ih"]
        return [w[2 * block + j] * X[0] + b[2 * block + j] for j in range(2)]

    def h_part(self, block: int) -> list[float]:
        """W_h* h + b_h* for gate block `block`."""
        w, b = self.values["weight_hh"], self.values["bias_hh"]
        rows = [w[2 * (2 * block + j): 2 * (2 * block + j) + 2] for j in range(2)]
        return [rows[j][0] * H[0] + rows[j][1] * H[1] + b[2 * block + j] for j in range(2)]

    def pre(self, block: int) -> list[float]:
        """(·) = W_i* x + b_i* + W_h* h + b_h*."""
        return [a + b for a, b in zip(self.x_part(block), self.h_part(block))]

    def run(self, with_cell_state: bool = True):
        """One step of the layer: (h', c') as lists (c' None without a cell state)."""
        x = torch.tensor(X, dtype=torch.float64)
        h = torch.tensor([H], dtype=torch.float64)
        if not with_cell_state:
            output, h_new = self.layer.step(x, h)
            assert torch.equal(output, h_new[0])
            return h_new[0].tolist(), None
        output, (h_new, c_new) = self.layer.step(x, (h, torch.tensor([C], dtype=torch.float64)))
        assert torch.equal(output, h_new[0])
        return h_new[0].tolist(), c_new[0].tolist()


def assert_lists_close(actual: list[float], expected: list[float]) -> None:
    assert actual == pytest.approx(expected, rel=1e-12, abs=1e-14)


def assert_step(cell: HandCell, expected_h: list[float], expected_c: list[float] | None) -> None:
    """The layer's one step gives h' and c' as written out by hand."""
    h_new, c_new = cell.run(with_cell_state=expected_c is not None)
    assert_lists_close(h_new, expected_h)
    if expected_c is None:
        assert c_new is None
    else:
        assert_lists_close(c_new, expected_c)


def lstm_by_hand(i, f, g, o):
    """c' = f ⊙ c + i ⊙ g; h' = o ⊙ tanh(c')."""
    c_new = [f[j] * C[j] + i[j] * g[j] for j in range(2)]
    h_new = [o[j] * math.tanh(c_new[j]) for j in range(2)]
    return h_new, c_new


ONES = [1.0, 1.0]


def test_lstm():
    cell = HandCell("lstm")
    i = [sigmoid(a) for a in cell.pre(0)]
    f = [sigmoid(a) for a in cell.pre(1)]
    g = [math.tanh(a) for a in cell.pre(2)]
    o = [sigmoid(a) for a in cell.pre(3)]
    assert_step(cell, *lstm_by_hand(i, f, g, o))


def test_lstm_without_input_gate():
    cell = HandCell("lstm", input_gate=False)  # blocks f, g, o
    f = [sigmoid(a) for a in cell.pre(0)]
    g = [math.tanh(a) for a in cell.pre(1)]
    o = [sigmoid(a) for a in cell.pre(2)]
    assert_step(cell, *lstm_by_hand(ONES, f, g, o))


def test_lstm_without_forget_gate():
    cell = HandCell("lstm", forget_gate=False)  # blocks i, g, o
    i = [sigmoid(a) for a in cell.pre(0)]
    g = [math.tanh(a) for a in cell.pre(1)]
    o = [sigmoid(a) for a in cell.pre(2)]
    c_expected = [C[j] + i[j] * g[j] for j in range(2)]
    assert_step(cell, [o[j] * math.tanh(c_expected[j]) for j in range(2)], c_expected)


def test_lstm_without_output_gate():
    cell = HandCell("lstm", output_gate=False)  # blocks i, f, g
    i = [sigmoid(a) for a in cell.pre(0)]
    f = [sigmoid(a) for a in cell.pre(1)]
    g = [math.tanh(a) for a in cell.pre(2)]
    c_expected = [f[j] * C[j] + i[j] * g[j] for j in range(2)]
    assert_step(cell, [math.tanh(value) for value in c_expected], c_expected)


def test_lstm_without_input_activation():
    cell = HandCell("lstm", input_activation=False)
    i = [sigmoid(a) for a in cell.pre(0)]
    f = [sigmoid(a) for a in cell.pre(1)]
    g = cell.pre(2)  # no tanh
    o = [sigmoid(a) for a in cell.pre(3)]
    assert_step(cell, *lstm_by_hand(i, f, g, o))


def test_lstm_without_output_activation():
    cell = HandCell("lstm", output_activation=False)
    i = [sigmoid(a) for a in cell.pre(0)]
    f = [sigmoid(a) for a in cell.pre(1)]
    g = [math.tanh(a) for a in cell.pre(2)]
    o = [sigmoid(a) for a in cell.pre(3)]
    c_expected = [f[j] * C[j] + i[j] * g[j] for j in range(2)]
    assert_step(cell, [o[j] * c_expected[j] for j in range(2)], c_expected)


def test_peephole():
    cell = HandCell("peephole")
    p_i, p_f, p_o = cell.values["peephole_i"], cell.values["peephole_f"], cell.values["peephole_o"]
    i = [sigmoid(a + p_i[j] * C[j]) for j, a in enumerate(cell.pre(0))]
    f = [sigmoid(a + p_f[j] * C[j]) for j, a in enumerate(cell.pre(1))]
    g = [math.tanh(a) for a in cell.pre(2)]
    c_expected = [f[j] * C[j] + i[j] * g[j] for j in range(2)]
    o = [sigmoid(a + p_o[j] * c_expected[j]) for j, a in enumerate(cell.pre(3))]  # sees c'
    assert_step(cell, [o[j] * math.tanh(c_expected[j]) for j in range(2)], c_expected)


def test_cifg():
    cell = HandCell("cifg")  # blocks i, g, o
    i = [sigmoid(a) for a in cell.pre(0)]
    f = [1 - value for value in i]
    g = [math.tanh(a) for a in cell.pre(1)]
    o = [sigmoid(a) for a in cell.pre(2)]
    assert_step(cell, *lstm_by_hand(i, f, g, o))


def test_gru():
    cell = HandCell("gru")  # blocks r, z, n
    r = [sigmoid(a) for a in cell.pre(0)]
    z = [sigmoid(a) for a in cell.pre(1)]
    x_n, h_n = cell.x_part(2), cell.h_part(2)  # h_n includes b_hn, inside the reset term
    n = [math.tanh(x_n[j] + r[j] * h_n[j]) for j in range(2)]
    assert_step(cell, [(1 - z[j]) * n[j] + z[j] * H[j] for j in range(2)], None)


@pytest.mark.parametrize("nonlinearity, act", [("tanh", math.tanh), ("relu", relu)])
def test_rnn(nonlinearity, act):
    cell = HandCell("rnn", nonlinearity=nonlinearity)
    assert_step(cell, [act(a) for a in cell.pre(0)], None)
    assert min(cell.pre(0)) < 0 < max(cell.pre(0)), "the fixed numbers must exercise relu's cut"


def layer_norm(values: list[float], gain: list[float], shift: list[float]) -> list[float]:
    mean = sum(values) / len(values)
    variance = sum((v - mean) ** 2 for v in values) / len(values)  # biased, as LayerNorm
    return [(v - mean) / math.sqrt(variance + EPS) * g + s for v, g, s in zip(values, gain, shift)]


def test_layernorm():
    cell = HandCell("layernorm")
    v = cell.values
    w_ih, w_hh = v["weight_ih"], v["weight_hh"]
    x_projection = [w_ih[row] * X[0] for row in range(8)]
    h_projection = [w_hh[2 * row] * H[0] + w_hh[2 * row + 1] * H[1] for row in range(8)]
    pre = [
        a + b
        for a, b in zip(
            layer_norm(x_projection, v["layernorm_ih_weight"], v["bias_ih"]),
            layer_norm(h_projection, v["layernorm_hh_weight"], v["bias_hh"]),
        )
    ]
    i = [sigmoid(a) for a in pre[0:2]]
    f = [sigmoid(a) for a in pre[2:4]]
    g = [math.tanh(a) for a in pre[4:6]]
    o = [sigmoid(a) for a in pre[6:8]]
    c_expected = [f[j] * C[j] + i[j] * g[j] for j in range(2)]  # carried un-normalised
    normalised = layer_norm(c_expected, v["layernorm_cell_weight"], v["layernorm_cell_bias"])
    assert_step(cell, [o[j] * math.tanh(normalised[j]) for j in range(2)], c_expected)


def test_lstm_at_zero_weights_by_exact_numbers():
    """All weights and biases zero: every gate is σ(0) = 1/2 and g = tanh(0) = 0, so
    c' = c / 2 and h' = tanh(c / 2) / 2 exactly."""
    layer = lstmkit.LSTM(1, 2, dtype=torch.float64)
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.zero_()
    c = torch.tensor([[0.3, -0.4]], dtype=torch.float64)
    _, (h_new, c_new) = layer.step(torch.tensor([0.5], dtype=torch.float64), (torch.zeros(1, 2, dtype=torch.float64), c))
    assert c_new.tolist() == [[0.15, -0.2]]
    assert h_new.tolist() == [[math.tanh(0.15) / 2, math.tanh(-0.2) / 2]]
