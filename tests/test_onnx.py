"""torch.onnx.export works for every layer and cell, and onnxruntime computes what PyTorch does.

While exporting, a layer runs on the reference engine (see `select_engine`); PyTorch's side of
each comparison is the eager layer on the engine it picks (native or fused), so every test also
checks that the two engines agree in float32. Sequence length is that of the example input (the
loop over time is unrolled); batch size is left free.
"""

from __future__ import annotations

import re
import warnings

import onnxruntime
import pytest
import torch
from torch import Tensor, nn

import lstmkit
from helpers import ALL_CELLS, assert_close, flatten_outputs, random_state, record_engines

TOLERANCE = 1e-5  # float32: two orders of summation of the same products


class Layers(nn.Module):
    """Each layer run from a given state (h, or h and c), and also from zeros if `from_zeros`."""

    def __init__(self, layers: list[lstmkit.Recurrent], from_zeros: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.from_zeros = from_zeros

    def forward(self, inputs: Tensor, *states: Tensor) -> list:
        results, remaining = [], list(states)
        for layer in self.layers:
            parts = [remaining.pop(0) for _ in range(2 if layer.cell.has_cell_state else 1)]
            hx = tuple(parts) if layer.cell.has_cell_state else parts[0]
            results += [layer(inputs), layer(inputs, hx)] if self.from_zeros else [layer(inputs, hx)]
        return results


def example(layers: list[lstmkit.Recurrent], batch_size: int, steps: int) -> tuple[Tensor, ...]:
    """Time-major inputs and a random state for each layer."""
    generator = torch.Generator().manual_seed(batch_size)
    inputs = torch.randn(steps, batch_size, 3, generator=generator)
    states = []
    for layer in layers:
        state = random_state(layer, batch_size, seed=batch_size)
        states += [part.detach() for part in (state if isinstance(state, tuple) else (state,))]
    return inputs, *states


def assert_onnxruntime_agrees(model: Layers, arguments: tuple[Tensor, ...], path) -> None:
    """onnxruntime on the saved file gives PyTorch's outputs, to TOLERANCE."""
    session = onnxruntime.InferenceSession(str(path))
    feed = {node.name: tensor.numpy() for node, tensor in zip(session.get_inputs(), arguments, strict=True)}
    actual = session.run(None, feed)
    with torch.no_grad():
        expected = flatten_outputs(model(*arguments))
    assert len(actual) == len(expected)
    for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
        assert_close(torch.from_numpy(a), e, f"output {index}", tolerance=TOLERANCE)


def test_every_cell_exports_and_onnxruntime_agrees(tmp_path):
    """Every cell and option (rnn tanh and relu, lstm and its five ablations, gru, peephole,
    cifg, layernorm), batched, from a given state; one graph holds them all, 2 steps long (the
    second step takes the first one's state)."""
    torch.manual_seed(0)
    layers = [lstmkit.Recurrent(cell, 3, 4, **options) for cell, options in ALL_CELLS]
    model = Layers(layers, from_zeros=False).eval()
    arguments = example(layers, batch_size=2, steps=2)
    torch.onnx.export(model, arguments, tmp_path / "cells.onnx", verbose=False)
    assert_onnxruntime_agrees(model, arguments, tmp_path / "cells.onnx")


def test_two_bidirectional_layers_export_for_any_batch_size(tmp_path):
    """Two bidirectional layers (an LSTM with projection, a GRU) from zeros and from a given
    state, exported with a batch of 2 and run by onnxruntime on a batch of 5."""
    torch.manual_seed(0)
    layers = [lstmkit.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2),
              lstmkit.GRU(3, 4, num_layers=2, bidirectional=True)]
    model = Layers(layers, from_zeros=True).eval()
    inputs, *states = example(layers, batch_size=2, steps=2)
    batch = torch.export.Dim("batch")
    shapes = ({1: batch}, tuple({1: batch} for _ in states))
    torch.onnx.export(model, (inputs, *states), tmp_path / "layers.onnx", dynamic_shapes=shapes, verbose=False)
    assert_onnxruntime_agrees(model, example(layers, batch_size=5, steps=2), tmp_path / "layers.onnx")


@pytest.mark.parametrize(
    ("build", "eager"),
    [(lambda: lstmkit.LSTM(3, 4), "native"), (lambda: lstmkit.PeepholeLSTM(3, 4), "fused"),
     (lambda: lstmkit.GRU(3, 4, engine="fused"), "fused")],
    ids=["auto-native", "auto-fused", "fused"],
)
def test_export_runs_the_reference_engine_and_eager_calls_do_not(build, eager, monkeypatch):
    """Under torch.export a layer runs on the reference engine, whatever it was built with;
    before and after, its eager calls run where they always did."""
    chosen = record_engines(monkeypatch)
    layer = build()
    inputs = torch.randn(3, 2, 3)
    layer(inputs)
    torch.export.export(layer, (inputs,))
    layer(inputs)
    assert chosen == [eager, "reference", eager]


class Encoder(nn.Module):
    """The usual wrapper: the layer's outputs, its final state left unused."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, inputs: Tensor) -> Tensor:
        output, _ = self.layer(inputs)
        return output


@pytest.mark.parametrize("build", [lambda: lstmkit.LSTM(3, 4), lambda: lstmkit.PeepholeLSTM(3, 4),
                                   lambda: lstmkit.GRU(3, 4)], ids=["lstm", "peephole", "gru"])
def test_an_exported_program_that_leaves_the_state_unused_saves_and_loads(build, tmp_path):
    """torch.export.save failed ("Node.meta wrap_with_autocast_1 is missing val field"): the
    state was joined in a region that turned off an autocast that was off."""
    torch.manual_seed(0)
    model, inputs = Encoder(build()).eval(), torch.randn(5, 2, 3)
    torch.export.save(torch.export.export(model, (inputs,)), tmp_path / "encoder.pt2")
    assert_close(torch.export.load(tmp_path / "encoder.pt2").module()(inputs), model(inputs), tolerance=TOLERANCE)


class UnderAutocast(nn.Module):
    """A model that runs its layer under CPU bfloat16 autocast."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, inputs: Tensor):
        with torch.autocast("cpu", torch.bfloat16):
            return self.layer(inputs)


AUTOCAST_BUILDS = {"lstm": lambda: lstmkit.LSTM(3, 4, num_layers=2), "gru": lambda: lstmkit.GRU(3, 4),
                   "peephole": lambda: lstmkit.PeepholeLSTM(3, 4),
                   "layernorm-cell": lambda: lstmkit.LayerNormLSTMCell(3, 4)}


@pytest.mark.parametrize("name", AUTOCAST_BUILDS)
def test_an_exported_program_under_autocast_returns_the_eager_dtype_and_numbers(name):
    """torch.export turns oneDNN off while it traces, which made a plain LSTM's program return
    float32 where its eager call returns bfloat16 (as torch.nn.LSTM's does on oneDNN)."""
    torch.manual_seed(0)
    model = UnderAutocast(AUTOCAST_BUILDS[name]()).eval()
    inputs = torch.randn(5, 2, 3) if name != "layernorm-cell" else torch.randn(2, 3)
    with pytest.MonkeyPatch.context() as patch:  # the eager call on the engine export runs
        patch.setattr(model.layer, "engine", "reference")
        expected = flatten_outputs(model(inputs))
    actual = flatten_outputs(torch.export.export(model, (inputs,)).module()(inputs))
    assert [tensor.dtype for tensor in actual] == [tensor.dtype for tensor in expected]
    for mine, theirs in zip(actual, expected, strict=True):
        assert_close(mine.float(), theirs.float(), tolerance=1e-6)


@pytest.mark.parametrize("name", AUTOCAST_BUILDS)
def test_a_strict_export_under_autocast_is_refused_by_name(name):
    """torch's strict export records the autocast products in float32, and its program failed
    at its first call ("Tensor dtype mismatch! Expected: Float, Got: c10::BFloat16")."""
    model = UnderAutocast(AUTOCAST_BUILDS[name]()).eval()
    inputs = torch.randn(5, 2, 3) if name != "layernorm-cell" else torch.randn(2, 3)
    with pytest.raises(Exception, match=re.escape(
            "torch.export.export(..., strict=True) under torch.autocast makes a program that fails when called (it "
            "records the autocast products in float32); export with strict=False, torch's default, or outside "
            "autocast")):
        torch.export.export(model, (inputs,), strict=True)


@pytest.mark.parametrize("build", [
    lambda: lstmkit.LSTM(3, 4, num_layers=2), lambda: lstmkit.PeepholeLSTM(3, 4), lambda: lstmkit.GRUCell(3, 4),
    lambda: lstmkit.LayerNormLSTMCell(3, 4),
], ids=["lstm", "peephole", "gru-cell", "layernorm-cell"])
def test_the_legacy_exporter_takes_a_layer_or_cell_module_itself(build, tmp_path):
    """torch.onnx.export(..., dynamo=False) traces `forward` with every argument, its defaults
    too (lengths=None, return_gates as a 0-d tensor): a layer or cell module exports as the
    model itself, as torch.nn's do, and onnxruntime gives its outputs."""
    torch.manual_seed(0)
    module = build().eval()
    inputs = torch.randn(3, 2, 3) if isinstance(module, lstmkit.Recurrent) else torch.randn(2, 3)
    with warnings.catch_warnings():  # the tracer's own, about reading return_gates as a constant
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(module, (inputs,), tmp_path / "module.onnx", dynamo=False)
    session = onnxruntime.InferenceSession(str(tmp_path / "module.onnx"))
    actual = session.run(None, {session.get_inputs()[0].name: inputs.numpy()})
    with torch.no_grad():
        expected = flatten_outputs(module(inputs))
    for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
        assert_close(torch.from_numpy(a), e, f"output {index}", tolerance=TOLERANCE)
