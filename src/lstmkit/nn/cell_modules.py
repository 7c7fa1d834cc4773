"""Cell modules: one time step with parameters, drop-ins for torch.nn.LSTMCell, GRUCell and
RNNCell, and the same for every cell of the library.

A cell module is called from the user's own loop (attention decoders, autoregressive
forecasters, agents): `h, c = cell(x_t, (h, c))`. Each call is one step on a step engine
(`lstmkit.engines.step`: torch's native cell kernels for the plain cells, the fused or Triton
kernels for every cell, or the cell's step under autograd, where `auto` puts the LayerNorm
LSTM on the CPU); the math is the cell's `...Step` class in `lstmkit.cells`.
`from_layer` and `to_layer` move the weights of one layer and direction of a `Recurrent`
stack into a cell module and back, so a trained stack can be stepped by hand.
"""

from __future__ import annotations

import numbers
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from lstmkit.cells import CIFGLSTMStep, Cell, GRUStep, LayerNormLSTMStep, LayerWeights, LSTMStep
from lstmkit.cells import PeepholeLSTMStep, RNNStep, is_builtin
from lstmkit.engines import check_engine_name
from lstmkit.engines.step import check_step_engine, run_cell_step, step_engine_name
from lstmkit.nn.docs import (
    ANY_CELL_ARG, ANY_CELL_EQUATIONS, CELL_OPTIONS_ARG, LSTM_OPTIONS_ARGS, cell_docstring, step_equations,
)
from lstmkit.nn.parameters import (RESET, bias_names, bias_option, check_gate_biases_held,
                                   check_weight_shapes, check_weights_together, initialise, kept_shapes,
                                   parameter_shapes, register, set_forget_bias, weights_by_name)
from lstmkit.nn.reparametrised import read_parameter, unchanged_if_refused, weights_device, writable
from lstmkit.nn.tracing import fx_leaf_call
from lstmkit.nn.recurrent import (
    Recurrent, check_forget_bias, check_options_not_set_before, checked_flag, leading_repr, positive_int,
    resolve_cell,
)
from lstmkit.nn.inputs import checked_return_gates
from lstmkit.nn.layers import checked_options
from lstmkit.nn.step_inputs import prepare_step
from lstmkit.nn.scripting import NotScriptable

# What a cell module holds under names torch.nn.LSTMCell does not use: lstmkit's own options.
CELL_MODULE_OPTIONS = ("cell", "forget_bias", "engine")


class RecurrentCell(NotScriptable, nn.Module):
    cell_name: ClassVar[str | None] = None  # set by the named cell modules, which fix the cell
    __doc__ = cell_docstring(
        summary="One time step of any cell, with the API of torch.nn.LSTMCell.",
        equations=ANY_CELL_EQUATIONS,
        leading_args=ANY_CELL_ARG,
        trailing_args=CELL_OPTIONS_ARG,
        example=(
            ">>> cell = lstmkit.RecurrentCell('peephole', 10, 20)\n"
            ">>> h, c = cell(torch.randn(3, 10))\n"
            ">>> h, c = cell(torch.randn(3, 10), (h, c))"
        ),
    )

    def __init__(
        self,
        cell: str | Cell,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        forget_bias: float | None = None,
        engine: str = "auto",
        **cell_options: object,
    ) -> None:
        check_options_not_set_before(self, CELL_MODULE_OPTIONS)
        super().__init__()
        self.cell = resolve_cell(cell, cell_options, type(self))
        input_size = positive_int("input_size", input_size)
        hidden_size = positive_int("hidden_size", hidden_size)
        self.cell.check_hidden_size(hidden_size)
        bias = checked_flag("bias", bias)
        forget_bias = check_forget_bias(self.cell, forget_bias, bias)
        check_step_engine(engine, self.cell)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.forget_bias = forget_bias
        self.engine = engine
        self._initialisers: dict[str, str] = {}
        clashing = [extra.name for extra in self.cell.extra_parameters if hasattr(self, extra.name)]
        if clashing:  # a layer names it name_l0; here it replaced the module's own (bias, engine), or failed in torch
            raise ValueError(f"cell {type(self.cell).__name__}'s extra parameter {clashing[0]!r} is named like an "
                             f"attribute of the cell module ({type(self).__name__}.{clashing[0]}): give it another "
                             "name")
        register(self, self._expected_shapes(), "", device, dtype, self._initialisers)  # after the sizes are set
        if not bias:  # as torch.nn's cells: `cell.bias_ih is None`
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch.nn's initialisation, U(-1/sqrt(H), 1/sqrt(H)), in its order (so a seed gives
        torch.nn's weights, LayerNorm's shifts among them: they are the biases); the LayerNorm
        gains 1 and the cell state's shift 0; then `forget_bias` if set."""
        check_gate_biases_held(self, [("bias_ih", "bias_hh")], bias_option(self.forget_bias, ()))
        with unchanged_if_refused(self, list(self._initialisers)):
            initialise(self, self._initialisers, self.hidden_size)
            if self.forget_bias is not None:
                with writable(self, "bias_ih", RESET) as bias_ih, writable(self, "bias_hh", RESET) as bias_hh:
                    set_forget_bias(self.cell, self.hidden_size, self.forget_bias, bias_ih, bias_hh)

    def __setattr__(self, name: str, value: object) -> None:
        if name == "engine" and "engine" in self.__dict__:  # set again after the module was built: checked as then
            check_step_engine(value, self.cell)
        if name == "forget_bias" and "forget_bias" in self.__dict__:  # it initialises the biases, at reset_parameters()
            value = check_forget_bias(self.cell, value, self.bias)
        super().__setattr__(name, value)

    def __setstate__(self, state: dict) -> None:
        """An unpickled module with its engine's name checked, as `Recurrent.__setstate__`."""
        if "engine" in state:
            check_engine_name(state["engine"])
        super().__setstate__(state)

    def _expected_shapes(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """The parameter shapes (`parameter_shapes`) at the module's sizes (`kept_shapes`)."""
        return kept_shapes(self, (self.input_size, self.hidden_size, self.bias), lambda: parameter_shapes(
            self.cell, self.input_size, self.hidden_size, self.hidden_size, self.bias, proj_size=0))

    def weights(self) -> LayerWeights:
        """The parameters as the cell's math and the engines take them, their shapes checked."""
        weights = LayerWeights(
            weight_ih=read_parameter(self, "weight_ih"),
            weight_hh=read_parameter(self, "weight_hh"),
            bias_ih=read_parameter(self, "bias_ih") if self.bias else None,
            bias_hh=read_parameter(self, "bias_hh") if self.bias else None,
            weight_hr=None,
            extra={
                parameter.name: read_parameter(self, parameter.name)
                for parameter in self.cell.extra_parameters
                if self.bias or not parameter.is_bias
            },
        )
        check_weight_shapes(weights_by_name(weights), self._expected_shapes(), "",
                            lambda: f"input_size={self.input_size}, hidden_size={self.hidden_size}",
                            self.cell)
        check_weights_together(named_weights(weights), "", "weight_ih", "cell module", weights.weight_ih)
        return weights

    def forward(
        self, input: Tensor, hx: Tensor | tuple[Tensor, Tensor] | None = None, return_gates: bool = False
    ):
        """One step; see the class docstring for shapes."""
        traced = fx_leaf_call(self, (input, hx), {"return_gates": return_gates})
        if traced is not None:
            return traced
        return_gates = checked_return_gates(return_gates)
        weights = self.weights()
        step = prepare_step(
            type(self).__name__, input, hx, self.input_size, self.hidden_size, self.cell.has_cell_state,
            weights.weight_ih.dtype, weights.weight_ih.device,
        )
        h, c, gates = run_cell_step(self.engine, self.cell, weights, step.x, step.h, step.c, return_gates)
        if not step.batched:
            h, c = h.squeeze(0), None if c is None else c.squeeze(0)
        state = (h, c) if self.cell.has_cell_state else h
        if not return_gates:
            return state
        named = {name: gate.detach() for name, gate in self.cell.named_gates(gates).items()}  # as a layer's trace
        return state, named if step.batched else {name: gate.squeeze(0) for name, gate in named.items()}

    @classmethod
    def from_layer(
        cls, recurrent: Recurrent, layer: int = 0, direction: int = 0, *, engine: str = "auto"
    ) -> RecurrentCell:
        """A cell module holding a copy of the weights of `layer` and `direction` of a
        `Recurrent` stack (`lstmkit.LSTM`, ...): one call of it is one step of that layer in
        evaluation mode (the training-only regularisers, dropouts of the layer, are not carried;
        a layer with zoneout, which acts in evaluation too, is refused). Its `forget_bias` is
        carried, so that the module's `reset_parameters()` sets it as the layer's does."""
        index = layer_index(recurrent, layer, direction)
        weights = recurrent.layer_weights(index)
        suffix = recurrent._all_weights[index][0].removeprefix("weight_ih")
        check_weights_together(named_weights(weights), suffix, "weight_ih" + suffix, "layer", weights.weight_ih)
        if any(recurrent.zoneout):
            raise ValueError(
                f"a cell module has no zoneout; the layer has zoneout={recurrent.zoneout}, which changes its steps "
                "in evaluation too, so step it with layer.step() instead"
            )
        if cls.cell_name is not None and (recurrent.cell.name != cls.cell_name or not is_builtin(recurrent.cell)):
            raise TypeError(
                f"{cls.__name__}.from_layer takes a layer of cell {cls.cell_name}, got one of cell "
                f"{cell_named(recurrent.cell)}; "
                "lstmkit.RecurrentCell.from_layer takes any cell"
            )
        options = dict(bias=recurrent.bias, device=weights.weight_ih.device, dtype=weights.weight_ih.dtype,
                       engine=engine)
        if recurrent.forget_bias is not None:  # the GRU's and the RNN's modules take none
            options["forget_bias"] = recurrent.forget_bias
        input_size, hidden_size = weights.weight_ih.shape[1], recurrent.hidden_size
        if cls.cell_name is None:
            module = cls(recurrent.cell, input_size, hidden_size, **options)
        else:
            module = cls(input_size, hidden_size, **options, **recurrent.cell.options())
        ours = dict(module.named_parameters())  # a module just built: plain parameters
        theirs = named_weights(weights)
        # the layer's set to None: this module's None too
        for name in (set(ours) - set(theirs)) & bias_names(recurrent.cell):
            setattr(module, name, None)
            del ours[name]
        module.check_weights(weights, ours)
        with torch.no_grad():
            for name, value in theirs.items():
                if value.dtype == ours[name].dtype:
                    ours[name].copy_(value)
                else:  # an extra the layer holds in its own dtype (float32 gains of a bfloat16 layer): not rounded
                    setattr(module, name, nn.Parameter(value.detach().clone(), ours[name].requires_grad))
        return module

    def to_layer(self, recurrent: Recurrent, layer: int = 0, direction: int = 0) -> None:
        """Copy this module's weights into `layer` and `direction` of `recurrent` (of the same
        cell and sizes), the inverse of `from_layer`."""
        index = layer_index(recurrent, layer, direction)
        if type(recurrent.cell) is not type(self.cell) or recurrent.cell.options() != self.cell.options():
            raise ValueError(  # the same class and options: a cell of eq=False compares by identity
                f"to_layer needs a layer of this module's cell {cell_named(self.cell)}, got one of "
                f"cell {cell_named(recurrent.cell)}"
            )
        ours = named_weights(self.weights())  # as computed, where this module's are pruned or parametrised
        suffix = recurrent._all_weights[index][0].removeprefix("weight_ih")
        # a refused write leaves the layer as it was, reading its weights (spectral_norm iterates) included
        with torch.no_grad(), unchanged_if_refused(recurrent, [name + suffix for name in ours]):
            self.check_weights(recurrent.layer_weights(index), ours)
            for name, value in ours.items():
                with writable(recurrent, name + suffix, "to_layer sets the layer's {name}") as target:
                    target.copy_(value)

    def check_weights(self, weights: LayerWeights, ours: dict[str, Tensor]) -> None:
        """Check that a layer's `weights` have the names and shapes of this module's (`ours`)."""
        theirs = named_weights(weights)
        if set(theirs) != set(ours):
            raise ValueError(
                f"the layer's parameters ({', '.join(theirs)}) do not match this module's "
                f"({', '.join(ours)}): build both with the same bias, and set the same biases to None"
            )
        for name, parameter in ours.items():
            if parameter.shape != theirs[name].shape:
                raise ValueError(
                    f"the layer's {name} has shape {tuple(theirs[name].shape)}, this module's "
                    f"{tuple(parameter.shape)}: build both with the same input_size and hidden_size"
                )

    def extra_repr(self) -> str:
        parts = leading_repr(self.cell_name, self.cell, self.input_size, self.hidden_size)
        if not self.bias:
            parts.append("bias=False")
        if self.forget_bias is not None:
            parts.append(f"forget_bias={self.forget_bias}")
        parts.append(f"engine={self.engine_name}")
        return ", ".join(parts)

    @property
    def engine_name(self) -> str:
        """The engine a step runs on (without return_gates)."""
        return step_engine_name(self.engine, self.cell, False, weights_device(self, "weight_ih"))


def cell_named(cell: Cell) -> str:
    """A cell as messages name it: lstmkit's by name and options, one of one's own by its class."""
    return cell.describe() if is_builtin(cell) else f"{type(cell).__name__}, one of your own"


def named_weights(weights: LayerWeights) -> dict[str, Tensor]:
    """A cell's weights by parameter name (weight_ih, ..., its extras), those it has."""
    plain = zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), weights[:4], strict=True)
    return {name: value for name, value in [*plain, *weights.extra.items()] if value is not None}


def layer_index(recurrent: Recurrent, layer: int, direction: int) -> int:
    """The index of `layer` and `direction` among `recurrent`'s layer-directions, checked."""
    if not isinstance(recurrent, Recurrent):
        compiled = isinstance(getattr(recurrent, "_orig_mod", None), Recurrent)  # torch.compile's wrapper
        remedy = ("give the layer torch.compile wrapped, its _orig_mod, which holds the same weights" if compiled
                  else "a torch.nn layer's weights load into the lstmkit layer of the same arguments "
                  "(load_state_dict) first")
        raise TypeError(
            f"expected an lstmkit layer (lstmkit.LSTM, ...), got {type(recurrent).__module__}.{type(recurrent).__name__}; "
            f"{remedy}"
        )
    for name, value, count in (
        ("layer", layer, recurrent.num_layers), ("direction", direction, recurrent.num_directions),
    ):
        if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral) or not 0 <= value < count:
            raise ValueError(f"{name} must be an int in [0, {count - 1}] for this layer, got {value!r}")
    if recurrent.proj_size:
        raise ValueError(
            f"a cell module has no projection; the layer has proj_size={recurrent.proj_size}, "
            "so its steps cannot be taken by a cell module"
        )
    return int(layer) * recurrent.num_directions + int(direction)


class LSTMCell(RecurrentCell):
    __doc__ = cell_docstring(
        summary="An LSTM cell, a drop-in for torch.nn.LSTMCell, with the ablations of Greff et al.",
        equations=step_equations(LSTMStep()),
        cell=LSTMStep(),
        trailing_args=LSTM_OPTIONS_ARGS,
        example=(
            ">>> cell = lstmkit.LSTMCell(10, 20)\n"
            ">>> cell.load_state_dict(torch.nn.LSTMCell(10, 20).state_dict())\n"
            "<All keys matched successfully>\n"
            ">>> h, c = cell(torch.randn(3, 10))"
        ),
    )
    cell_name = "lstm"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        forget_bias: float | None = None,
        engine: str = "auto",
        input_gate: bool = True,
        forget_gate: bool = True,
        output_gate: bool = True,
        input_activation: bool = True,
        output_activation: bool = True,
        **options: object,
    ) -> None:
        checked_options(type(self), options, (), "lstmkit.LSTMCell")
        super().__init__(
            self.cell_name, input_size, hidden_size, bias, device, dtype, forget_bias=forget_bias, engine=engine,
            input_gate=input_gate, forget_gate=forget_gate, output_gate=output_gate,
            input_activation=input_activation, output_activation=output_activation,
        )


class LSTMVariantCell(RecurrentCell):
    """The constructor shared by the LSTM variants that have no cell options."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        forget_bias: float | None = None,
        engine: str = "auto",
        **options: object,
    ) -> None:
        checked_options(type(self), options, (), "lstmkit.LSTMCell")
        super().__init__(
            self.cell_name, input_size, hidden_size, bias, device, dtype, forget_bias=forget_bias, engine=engine
        )


class PeepholeLSTMCell(LSTMVariantCell):
    __doc__ = cell_docstring(
        summary="An LSTM cell with peephole connections (Gers & Schmidhuber 2000).",
        equations=step_equations(PeepholeLSTMStep()),
        cell=PeepholeLSTMStep(),
        example=">>> h, c = lstmkit.PeepholeLSTMCell(10, 20)(torch.randn(3, 10))",
    )
    cell_name = "peephole"


class CIFGLSTMCell(LSTMVariantCell):
    __doc__ = cell_docstring(
        summary="A coupled input-forget gate LSTM cell (Greff et al. 2017): f = 1 - i.",
        equations=step_equations(CIFGLSTMStep()),
        cell=CIFGLSTMStep(),
        example=">>> h, c = lstmkit.CIFGLSTMCell(10, 20)(torch.randn(3, 10))",
    )
    cell_name = "cifg"


class LayerNormLSTMCell(LSTMVariantCell):
    __doc__ = cell_docstring(
        summary="A LayerNorm LSTM cell (Ba et al. 2016); the cell state is carried un-normalised.",
        equations=step_equations(LayerNormLSTMStep()),
        cell=LayerNormLSTMStep(),
        example=">>> h, c = lstmkit.LayerNormLSTMCell(10, 20)(torch.randn(3, 10))",
    )
    cell_name = "layernorm"


class GRUCell(RecurrentCell):
    __doc__ = cell_docstring(
        summary="A GRU cell, a drop-in for torch.nn.GRUCell.",
        equations=step_equations(GRUStep()),
        cell=GRUStep(),
        example=">>> h = lstmkit.GRUCell(10, 20)(torch.randn(3, 10))",
    )
    cell_name = "gru"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        engine: str = "auto",
        **options: object,
    ) -> None:
        checked_options(type(self), options, (), "lstmkit.LSTMCell")
        super().__init__(self.cell_name, input_size, hidden_size, bias, device, dtype, engine=engine)


class RNNCell(RecurrentCell):
    __doc__ = cell_docstring(
        summary="An Elman RNN cell with tanh or ReLU, a drop-in for torch.nn.RNNCell.",
        equations=step_equations(RNNStep()),
        cell=RNNStep(),
        middle_args=(
            "nonlinearity: 'tanh' or 'relu' (the 4th positional argument, as in torch.nn.RNNCell).\n"
            "    Default: 'tanh'"
        ),
        example=">>> h = lstmkit.RNNCell(10, 20, nonlinearity='relu')(torch.randn(3, 10))",
    )
    cell_name = "rnn"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        engine: str = "auto",
        **options: object,
    ) -> None:
        checked_options(type(self), options, (), "lstmkit.LSTMCell")
        super().__init__(
            self.cell_name, input_size, hidden_size, bias, device, dtype, engine=engine, nonlinearity=nonlinearity
        )

    @property
    def nonlinearity(self) -> str:
        """'tanh' or 'relu', as torch.nn.RNNCell exposes it."""
        return self.cell.nonlinearity


CELL_MODULES = (RecurrentCell, LSTMCell, GRUCell, RNNCell, PeepholeLSTMCell, CIFGLSTMCell, LayerNormLSTMCell)
