"""A whole layer saves with `torch.save` and loads with `torch.load`'s default weights_only=True:
every layer class and cell option, in this process and in a fresh one, and inside a user's own
module whose allow-list names torch.nn's classes only. Importing lstmkit allows its layer and
cell classes, no more.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import lstmkit
from helpers import ALL_CELLS, cell_id, flatten_outputs, random_state
from lstmkit.cells import CELLS

# Every layer class, every cell and option through Recurrent, and the layer options that change
# what a layer holds (projection, forget bias, no bias, a named engine).
LAYERS = {
    **{f"Recurrent-{cell_id(cell, options)}": (lambda cell=cell, options=options: lstmkit.Recurrent(
        cell, 3, 4, num_layers=2, bidirectional=True, **options)) for cell, options in ALL_CELLS},
    "LSTM": lambda: lstmkit.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, forget_bias=1.0),
    "LSTM-forget_gate=False-bias=False": lambda: lstmkit.LSTM(3, 4, bias=False, forget_gate=False),
    "GRU": lambda: lstmkit.GRU(3, 4, num_layers=2, batch_first=True),
    "RNN-relu": lambda: lstmkit.RNN(3, 4, 2, "relu", bidirectional=True),
    "PeepholeLSTM": lambda: lstmkit.PeepholeLSTM(3, 4, num_layers=2, forget_bias=1.0),
    "CIFGLSTM": lambda: lstmkit.CIFGLSTM(3, 4, proj_size=3, engine="reference"),
    "LayerNormLSTM": lambda: lstmkit.LayerNormLSTM(3, 4, bidirectional=True),
}


def build(name: str) -> lstmkit.Recurrent:
    torch.manual_seed(0)
    return LAYERS[name]()


def example(layer: lstmkit.Recurrent) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor]]:
    """A fixed batch of 2 sequences of 5 steps in the layer's layout, and a random initial state."""
    inputs = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(1))
    state = random_state(layer, 2)
    state = state.detach() if isinstance(state, Tensor) else tuple(part.detach() for part in state)
    return (inputs.transpose(0, 1) if layer.batch_first else inputs), state


def run(layer: lstmkit.Recurrent, inputs: Tensor, state: Tensor | tuple[Tensor, Tensor]) -> list[Tensor]:
    """Outputs and final states from zeros and from `state`."""
    with torch.no_grad():
        return flatten_outputs((layer(inputs), layer(inputs, state)))


@pytest.mark.parametrize("name", LAYERS)
def test_a_saved_layer_loads_with_the_default_weights_only(name, tmp_path):
    """torch.load(path) with torch's default (weights_only=True) gives back the same layer:
    class, cell, options, parameters, and outputs equal to the last bit. The layer has run
    before it is saved, as a trained one has."""
    layer = build(name)
    inputs, state = example(layer)
    expected = run(layer, inputs, state)
    torch.save(layer, tmp_path / "layer.pt")
    loaded = torch.load(tmp_path / "layer.pt")
    assert type(loaded) is type(layer)
    assert loaded.cell == layer.cell
    assert repr(loaded) == repr(layer)
    assert loaded.state_dict().keys() == layer.state_dict().keys()
    for key, value in layer.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    for index, (a, e) in enumerate(zip(run(loaded, inputs, state), expected, strict=True)):
        assert torch.equal(a, e), f"output tensor {index}"


@pytest.mark.parametrize("make", [
    lambda: lstmkit.LSTM(8, 16, forget_bias=np.float64(1.5)),   # from np.linspace: it once saved, then failed to load
    lambda: lstmkit.LSTM(8, 16, forget_bias=np.float32(1.5)),   # once "can't assign a numpy.float32 to a torch.FloatTensor"
    lambda: lstmkit.LSTMCell(8, 16, forget_bias=np.float32(1.5)),
    lambda: lstmkit.LSTM(8, 16, init="chrono", chrono_max=np.int64(20)),
], ids=["float64 forget_bias", "float32 forget_bias", "cell module", "int64 chrono_max"])
def test_numpy_numbers_as_options_are_held_as_python_numbers_and_load(make, tmp_path):
    torch.manual_seed(0)
    layer = make()
    torch.save(layer, tmp_path / "layer.pt")
    loaded = torch.load(tmp_path / "layer.pt")
    assert repr(loaded) == repr(layer)
    assert type(layer.forget_bias) in (float, type(None)) and type(getattr(layer, "chrono_max", None)) in (int, type(None))
    if layer.forget_bias is not None:
        forget = layer.bias_ih_l0 if hasattr(layer, "bias_ih_l0") else layer.bias_ih
        assert forget[16:32].tolist() == [1.5] * 16  # the gate's block of bias_ih, as a Python 1.5 sets it


FRESH_PROCESS = """
import sys
import torch
before = {f"{cls.__module__}.{cls.__qualname__}" for cls in torch.serialization.get_safe_globals()}
import lstmkit
after = {f"{cls.__module__}.{cls.__qualname__}" for cls in torch.serialization.get_safe_globals()}
folder = sys.argv[1]
outputs = {}
for name in torch.load(f"{folder}/names.pt"):
    layer = torch.load(f"{folder}/{name}.pt")
    inputs, state = torch.load(f"{folder}/{name}-example.pt")
    with torch.no_grad():
        outputs[name] = (layer(inputs), layer(inputs, state))
torch.save({"allowed": sorted(after - before), "outputs": outputs}, f"{folder}/loaded.pt")
"""


def test_a_fresh_process_loads_every_layer_after_importing_lstmkit_alone(tmp_path):
    """A process that imports only torch and lstmkit loads every saved layer, and its outputs
    equal the saving process's; importing lstmkit allowed exactly the layer and cell classes."""
    torch.save(list(LAYERS), tmp_path / "names.pt")
    expected = {}
    for name in LAYERS:
        layer = build(name)
        torch.save(layer, tmp_path / f"{name}.pt")
        torch.save(example(layer), tmp_path / f"{name}-example.pt")
        expected[name] = run(layer, *example(layer))
    process = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(tmp_path)], capture_output=True, text=True)
    assert process.returncode == 0, process.stderr
    loaded = torch.load(tmp_path / "loaded.pt")

    layer_classes = ["CIFGLSTM", "GRU", "LSTM", "LayerNormLSTM", "PeepholeLSTM", "RNN"]
    cell_module_classes = [
        "CIFGLSTMCell", "GRUCell", "LSTMCell", "LayerNormLSTMCell", "PeepholeLSTMCell", "RNNCell", "RecurrentCell",
    ]
    assert loaded["allowed"] == sorted(
        [f"lstmkit.nn.layers.{name}" for name in layer_classes]
        + ["lstmkit.nn.recurrent.Recurrent"]
        + [f"lstmkit.nn.cell_modules.{name}" for name in cell_module_classes]
        + [f"{cell.__module__}.{cell.__qualname__}" for cell in CELLS.values()]
    )
    for name in LAYERS:
        actual = flatten_outputs(loaded["outputs"][name])
        assert len(actual) == len(expected[name])
        for index, (a, e) in enumerate(zip(actual, expected[name], strict=True)):
            assert torch.equal(a, e), f"{name}: output tensor {index}"


class WordModel(nn.Module):
    """A user's language model, as in pytorch/examples word_language_model: embedding,
    recurrent stack, decoder."""

    def __init__(self, recurrent: nn.Module) -> None:
        super().__init__()
        self.encoder = nn.Embedding(10, 3)
        self.drop = nn.Dropout(0.2)
        self.rnn = recurrent
        self.decoder = nn.Linear(4, 10)

    def forward(self, tokens: Tensor) -> Tensor:
        output, _ = self.rnn(self.drop(self.encoder(tokens)))
        return self.decoder(self.drop(output))


# What pytorch/examples word_language_model allows before its final torch.load: its own model
# and the torch.nn classes inside it. Swapping in lstmkit.LSTM needs nothing added.
WORD_MODEL_GLOBALS = [WordModel, nn.Dropout, nn.Linear, nn.GRU, nn.LSTM, nn.RNN, nn.Embedding]


@pytest.mark.parametrize("recurrent", [nn.LSTM, lstmkit.LSTM], ids=["torch.nn.LSTM", "lstmkit.LSTM"])
def test_a_user_model_around_a_layer_loads_as_it_does_around_torch_nn_lstm(recurrent, tmp_path):
    """The user's allow-list, which names torch.nn.LSTM and not lstmkit, loads either model;
    the loaded model predicts the same."""
    torch.manual_seed(0)
    model = WordModel(recurrent(3, 4, num_layers=2, dropout=0.2)).eval()
    torch.save(model, tmp_path / "model.pt")
    with torch.serialization.safe_globals(WORD_MODEL_GLOBALS):
        loaded = torch.load(tmp_path / "model.pt")
    tokens = torch.randint(0, 10, (6, 2), generator=torch.Generator().manual_seed(1))
    assert type(loaded.rnn) is recurrent
    assert torch.equal(loaded(tokens), model(tokens))


def test_an_unknown_class_is_still_refused(tmp_path):
    """lstmkit widens nothing: a module holding a class torch was not told about still fails."""
    torch.save(WordModel(lstmkit.GRU(3, 4)), tmp_path / "model.pt")
    with pytest.raises(pickle.UnpicklingError, match=r"Unsupported global: GLOBAL test_save_load\.WordModel"):
        torch.load(tmp_path / "model.pt")



def test_an_lstm_cell_pickled_without_its_blocks_read_keeps_its_gates(tmp_path):
    """A model saved before the LSTM's blocks were plain properties held them in its cell's
    __dict__ only once read (cached_property): loaded where they came from __post_init__, such
    a pickle had no gates ({} for return_gates=True)."""
    torch.manual_seed(0)
    layer = lstmkit.LSTM(3, 4, forget_gate=False)
    for name in ("weight_blocks", "trace_names", "num_gates"):  # as pickled before anything read them
        layer.cell.__dict__.pop(name, None)
    torch.save(layer, tmp_path / "layer.pt")
    loaded = torch.load(tmp_path / "layer.pt")
    assert loaded.cell.weight_blocks == ("i", "g", "o")
    x = torch.randn(2, 1, 3)
    assert list(loaded(x, return_gates=True)[-1].gates) == ["input", "candidate", "output"]
    torch.testing.assert_close(loaded(x)[0], layer(x)[0], rtol=0, atol=0)


@pytest.mark.parametrize("module", [lstmkit.LSTM(3, 4), lstmkit.PeepholeLSTMCell(3, 4)], ids=["layer", "cell module"])
def test_a_pickled_module_with_an_engine_that_does_not_exist_is_refused_at_load(module):
    """A pickle's attributes are set without __setattr__'s check: an edited engine name loaded,
    then failed at the first call with a bare KeyError of that name."""
    module.__dict__["engine"] = "__import__('os')"
    with pytest.raises(ValueError, match=r"engine must be one of auto, native, fused, triton, reference, got "
                                         r"\"__import__\('os'\)\""):
        pickle.loads(pickle.dumps(module))
