"""`Recurrent`: a stack of recurrent layers of any cell, with torch.nn.LSTM's API."""

from __future__ import annotations

import math
import numbers
import dataclasses
import itertools
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.rnn import PackedSequence

from lstmkit.cells import CELLS, Cell, LayerWeights, check_cell_options, is_builtin, make_cell
from lstmkit.cells.base import check_own_cell
from lstmkit.engines import (CPU_FUSED_MIN_STEPS, Regularisation, Stack, StackRun, check_engine, check_engine_name,
                             flatten_weights, select_engine)
from lstmkit.engines.precision import even_packed_on_onednn, lstm_cell_steps
from lstmkit.engines.reference import warn_unrolled
from lstmkit.nn.docs import ANY_CELL_ARG, ANY_CELL_EQUATIONS, CELL_OPTIONS_ARG, layer_docstring
from lstmkit.nn.inputs import (SequenceBatch, as_run_under_autocast, check_input_size,
                               checked_return_gates, prepare_input, prepare_state)
from lstmkit.caller import warn_at_caller
from lstmkit.keywords import constructor_keywords, lstmkit_class, unknown_names
from lstmkit.nn import regularisers
from lstmkit.nn.parameters import (RESET, bias_option, check_gate_biases_held, check_weight_shapes,
                                   check_weights_together, initialise, kept_shapes, parameter_shapes, register,
                                   set_forget_bias, weights_by_name)
from lstmkit.nn.reparametrised import read_parameter, unchanged_if_refused, weights_device, writable
from lstmkit.nn.rnn_base import RNNBaseHelpers
from lstmkit.nn.scripting import NotScriptable
from lstmkit.nn.tracing import fx_leaf_call
from lstmkit.received import received


@dataclass(frozen=True)
class GateTrace:
    """Per-step activations of every layer and direction, from `forward(..., return_gates=True)`.

    gates: activation name (see the cell's `trace_names`, e.g. "input", "forget", "candidate",
        "output") -> tensor of shape (num_layers * num_directions, T, B, H), or (…, B, T, H) with
        batch_first, or (…, T, H) for unbatched input; packed input gives the padded
        time-major layout. Zero at steps past a sequence's length. Index l * D + d as in h_n.
    cell_states: c' per step in the same layout, or None for cells without a cell state.

    Both are detached, on every engine: a record of the activations, not a part of the graph
    (the fused kernels' backward does not differentiate through them).
    """

    gates: dict[str, Tensor]
    cell_states: Tensor | None


# What a layer holds under names torch.nn.LSTM does not use: lstmkit's own options.
LAYER_OPTIONS = ("cell", "forget_bias", "recurrent_dropout", "input_dropout", "zoneout", "weight_dropout", "init",
                 "chrono_max", "engine")
# What torch.nn's refresh of `_flat_weights` drops: a list assigned, and the mark of a weight set
# by name since the last call (`Recurrent._flat_weights`).
REFRESHED_STATE = ("_assigned_weights", "_weights_set")


class FlatWeights(list):
    """`Recurrent._flat_weights` as read: a list whose element writes reach the layer
    (`self._flat_weights[i] = w`, as a DropConnect may write into torch.nn's stored list), into
    the weights the layer holds then (torch.nn's list follows a weight set by name). Copied or
    pickled, a plain list: the layer does not go with it."""

    def __init__(self, layer: Recurrent, weights: Sequence[Tensor | None]) -> None:
        super().__init__(weights)
        self.layer = weakref.ref(layer)

    def __setitem__(self, index, value) -> None:
        super().__setitem__(index, value)
        layer = self.layer()
        if layer is not None:
            weights = list(layer._flat_weights)
            weights[index] = value
            layer._flat_weights = weights

    def __reduce_ex__(self, protocol: int) -> tuple:
        return list, (list(self),)


class Recurrent(NotScriptable, RNNBaseHelpers, nn.Module):
    cell_name: str | None = None  # set by the named layers (LSTM, GRU, ...), which fix the cell
    __doc__ = layer_docstring(
        summary="A stack of recurrent layers of any cell, with the API of torch.nn.LSTM.",
        equations=ANY_CELL_EQUATIONS,
        leading_args=ANY_CELL_ARG,
        trailing_args=CELL_OPTIONS_ARG,
        example=(
            ">>> layer = lstmkit.Recurrent('peephole', 10, 20, num_layers=2)\n"
            ">>> output, (h_n, c_n) = layer(torch.randn(5, 3, 10))"
        ),
    )

    def __init__(
        self,
        cell: str | Cell,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        forget_bias: float | None = None,
        recurrent_dropout: float = 0.0,
        input_dropout: float = 0.0,
        zoneout: float | tuple[float, float] = 0.0,
        weight_dropout: float = 0.0,
        init: str | Sequence[str] | None = None,
        chrono_max: float | None = None,
        engine: str = "auto",
        **cell_options: object,
    ) -> None:
        check_options_not_set_before(self, LAYER_OPTIONS)
        super().__init__()
        self.cell = resolve_cell(cell, cell_options, type(self))
        input_size = positive_int("input_size", input_size)
        hidden_size = positive_int("hidden_size", hidden_size)
        num_layers = positive_int("num_layers", num_layers)
        self.cell.check_hidden_size(hidden_size)
        for name, value in (("bias", bias), ("batch_first", batch_first)):  # bools only, as torch.nn's
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, got {received(value)}")
        bidirectional = checked_flag("bidirectional", bidirectional)
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout <= 1:
            raise ValueError(
                "dropout must be a number in [0, 1], the probability of zeroing an element, "
                f"got {dropout!r}"
            )
        proj_size = check_projection(self.cell, proj_size, hidden_size)
        forget_bias = check_forget_bias(self.cell, forget_bias, bias)
        regularisation = regularisers.regularisation(
            self.cell, recurrent_dropout, input_dropout, zoneout, weight_dropout)
        self.init = regularisers.check_init(self.cell, init, chrono_max, bias, forget_bias)
        check_engine(engine, self.cell, regularisation.acting(training=True))
        if dropout > 0 and num_layers == 1:
            warn_at_caller(
                "dropout adds dropout after all but the last recurrent layer, so non-zero "
                f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                f"num_layers={num_layers}"
            )

        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        self.forget_bias = forget_bias
        self.recurrent_dropout = regularisation.recurrent_dropout
        self.input_dropout = regularisation.input_dropout
        self.zoneout = (regularisation.zoneout_cell, regularisation.zoneout_hidden)
        self.weight_dropout = regularisation.weight_dropout
        self.chrono_max = None if chrono_max is None else regularisers.plain_number(chrono_max)
        self.engine = engine
        self._register_weights(device, dtype)
        self.reset_parameters()
        self.flatten_parameters()

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """Features of h per direction: proj_size if set, else hidden_size."""
        return self.proj_size or self.hidden_size

    def _register_weights(self, device: torch.device | str | None, dtype: torch.dtype | None) -> None:
        """Create the parameters under torch.nn's names, in torch.nn's order, then the cell's."""
        self._all_weights: list[list[str]] = []
        self._initialisers: dict[str, str] = {}
        for layer, shapes in enumerate(self._expected_shapes()):
            for direction in range(self.num_directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                self._all_weights.append(register(self, shapes, suffix, device, dtype, self._initialisers))

    def _expected_shapes(self) -> list[dict[str, tuple[tuple[int, ...], str]]]:
        """Each layer's parameter shapes (`parameter_shapes`) at the layer's sizes (`kept_shapes`)."""
        sizes = (self.input_size, self.hidden_size, self.num_layers, self.proj_size, self.bidirectional, self.bias)
        return kept_shapes(self, sizes, lambda: [
            parameter_shapes(self.cell, self.input_size if layer == 0 else self.output_size * self.num_directions,
                             self.hidden_size, self.output_size, self.bias, self.proj_size)
            for layer in range(self.num_layers)])

    def _sizes(self) -> str:
        """The layer's sizes, as its arguments name them."""
        given = {"num_layers": self.num_layers > 1, "proj_size": self.proj_size, "bidirectional": self.bidirectional,
                 "bias": not self.bias}  # those left at their defaults are not named
        return ", ".join(f"{name}={getattr(self, name)}" for name in ("input_size", "hidden_size", *given)
                         if given.get(name, True))

    def reset_parameters(self) -> None:
        """torch.nn's initialisation, U(-1/sqrt(H), 1/sqrt(H)), in its order (so a seed gives
        torch.nn's weights, LayerNorm's shifts among them: they are the biases); the LayerNorm
        gains 1 and the cell state's shift 0; then `forget_bias` if set, and
        the `init` asked for (orthogonal weight_hh blocks, then chrono biases); those three
        checked together here, where they act, as set after building too."""
        init = regularisers.check_init(self.cell, self.init or None, self.chrono_max, self.bias, self.forget_bias)
        suffixes = [names[0].removeprefix("weight_ih") for names in self._all_weights]
        check_gate_biases_held(self, [("bias_ih" + suffix, "bias_hh" + suffix) for suffix in suffixes],
                               bias_option(self.forget_bias, init))
        with unchanged_if_refused(self, list(self._initialisers)):
            initialise(self, self._initialisers, self.hidden_size)
            for suffix in suffixes:
                biases = ("bias_ih" + suffix, "bias_hh" + suffix)
                if self.forget_bias is not None:
                    with writable(self, biases[0], RESET) as bias_ih, writable(self, biases[1], RESET) as bias_hh:
                        set_forget_bias(self.cell, self.hidden_size, self.forget_bias, bias_ih, bias_hh)
                if "orthogonal" in init:
                    with writable(self, "weight_hh" + suffix, RESET) as weight_hh:
                        regularisers.orthogonal_blocks(self.hidden_size, weight_hh)
                if "chrono" in init:
                    with writable(self, biases[0], RESET) as bias_ih, writable(self, biases[1], RESET) as bias_hh:
                        regularisers.chrono_biases(self.cell, self.hidden_size, self.chrono_max, bias_ih, bias_hh)

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """The parameters of each layer and direction, in torch.nn's order (cell extras last)."""
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    @property
    def _flat_weights_names(self) -> list[str]:
        """Every parameter's name, layer after layer, as torch.nn's RNNs list them (code written
        for torch.nn reads this and `_flat_weights`)."""
        return [name for names in self._all_weights for name in names]

    @property
    def _flat_weights(self) -> list[Tensor | None]:
        """The weights named by `_flat_weights_names`, in that order, as a call reads them (None
        for one deleted, as torch.nn lists it). Code written for torch.nn assigns this list to
        run calls on other weights (DropConnect subclasses of nn.LSTM); they are read so, as
        torch.nn's forward reads them, until torch.nn would refresh the list: a weight set by
        name or swapped in (`torch.func.functional_call`), `.to()`/`.cuda()`/`.half()`, or
        `_init_flat_weights()`. A parametrised weight refreshes it at every call, there too, and
        so does a weight set by name since the last call (a pruning hook's), which drops a list
        assigned after it as well."""
        assigned = self._assigned_flat_weights()
        if assigned is not None:
            return FlatWeights(self, assigned.values())
        return FlatWeights(self, [getattr(self, name, None) for name in self._flat_weights_names])

    @_flat_weights.setter
    def _flat_weights(self, weights: Sequence[Tensor | None]) -> None:
        names = self._flat_weights_names
        if len(weights) != len(names):
            raise ValueError(f"_flat_weights takes one tensor per name of _flat_weights_names ({len(names)}), "
                             f"got {len(weights)}")
        current = {name: self._held_weight(name) for name in names}
        restored = all(weight is current[name] for name, weight in zip(names, weights, strict=True))
        if restored or parametrize.is_parametrized(self):  # nothing to read otherwise; or refreshed at each call
            self.__dict__.pop("_assigned_weights", None)
            return
        self.__dict__["_assigned_weights"] = (dict(zip(names, weights, strict=True)), current)

    def _assigned_flat_weights(self) -> dict[str, Tensor | None] | None:
        """The `_flat_weights` assigned, by name, while the weights they were assigned over are
        still the layer's (torch.nn's `_weights_have_changed`); None otherwise."""
        assigned = self.__dict__.get("_assigned_weights")
        if assigned is None:
            return None
        weights, over = assigned
        if any(self._held_weight(name) is not weight for name, weight in over.items() if weight is not None):
            self._init_flat_weights()
            return None
        return weights

    def _held_weight(self, name: str) -> Tensor | None:
        """Weight `name` as the layer holds it, not computed: a parameter, or a tensor set in its
        place (AWD-LSTM's WeightDrop, a DataParallel replica); None for a parametrised one."""
        return self._parameters.get(name, self.__dict__.get(name))

    def __getstate__(self) -> dict:
        """A copy or a pickle runs on its own weights, as torch.nn's (its __setstate__ refreshes
        the list): an assigned `_flat_weights` is left behind; and the layer's own list is
        refreshed where a weight was set since its last call, as torch.nn's __getstate__ does."""
        if self.__dict__.get("_weights_set"):
            self._init_flat_weights()
        return {name: value for name, value in self.__dict__.items() if name not in REFRESHED_STATE}

    def __setstate__(self, state: dict) -> None:
        """An unpickled layer (a whole model's torch.load) with its engine's name checked, as
        setting it is: a pickle's attributes are set without __setattr__ (an edited one failed
        at the first call, with a bare KeyError)."""
        if "engine" in state:
            check_engine_name(state["engine"])
        super().__setstate__(state)

    def _init_flat_weights(self) -> None:
        """torch.nn's refresh of `_flat_weights` from the weights: a list assigned is dropped."""
        for name in REFRESHED_STATE:
            self.__dict__.pop(name, None)

    def __setattr__(self, name: str, value: object) -> None:
        if name in CHECKED_AGAIN and name in self.__dict__:  # set again after the layer was built: checked as then
            try:
                value = self._checked_again(name, value)
            except (TypeError, ValueError) as error:
                if lstmkit_class(type(self)) is type(self):
                    raise
                raise type(error)(f"{error} ({name} is lstmkit's option of the layer: if {type(self).__name__} means "
                                  "an attribute of its own, give it another name)") from None
        weight = "_l" in name and "_all_weights" in self.__dict__ and name in self._flat_weights_names
        replaced = weight and value is not self._held_weight(name)
        super().__setattr__(name, value)
        if replaced:
            # torch.nn's next call finds the weights changed and refreshes its list: one assigned
            # before, or after and until then (a pruning hook sets the weight before a DropConnect
            # subclass's forward assigns it), is dropped
            self._init_flat_weights()
            self.__dict__["_weights_set"] = True
        elif weight and "_assigned_weights" in self.__dict__:  # the same weight again: torch.nn's list takes it in
            self.__dict__["_assigned_weights"][0][name] = value

    def _checked_again(self, name: str, value: object) -> object:
        """An option of CHECKED_AGAIN set after building, checked as the constructor checks it
        (set unchecked, a float zoneout broke every call and a 1-tuple shifted weight_dropout
        into it; a dropout of 1 gave NaN), in the form the layer keeps it. The initialisations are
        checked each alone here, and together at `reset_parameters()`, where they act, whatever
        order they were set in (init='chrono' needs chrono_max, which needs init='chrono')."""
        if name == "forget_bias":
            return check_forget_bias(self.cell, value, self.bias)
        if name == "init":
            return regularisers.init_names(value)
        if name == "chrono_max":
            if value is None:
                return None
            try:
                regularisers.check_chrono_max_value(value)
            except ValueError:  # said as if chrono were asked for, which it may not be yet
                raise ValueError("chrono_max must be None or a finite number above 2, the longest dependency "
                                 f"init='chrono' expects in steps; got {value!r}") from None
            return regularisers.plain_number(value)
        options = {option: value if option == name else getattr(self, option)
                   for option in ("recurrent_dropout", "input_dropout", "zoneout", "weight_dropout")}
        regularisation = regularisers.regularisation(self.cell, **options)
        engine = value if name == "engine" else self.engine
        check_engine(engine, self.cell, regularisation.acting(training=True))
        if name == "zoneout":
            return (regularisation.zoneout_cell, regularisation.zoneout_hidden)
        return value if name == "engine" else getattr(regularisation, name)

    def flatten_parameters(self) -> None:
        """On CUDA, put the parameters of a layer cuDNN runs into one flat buffer, as
        torch.nn.LSTM does, so that no call has to compact them; elsewhere a no-op that reads
        no weight, as torch.nn's (a spectral_norm's power iteration runs at each read; a weight
        deleted, as AWD-LSTM's WeightDrop does, is set again before the next call)."""
        plain = [self._parameters.get(name) for name in self._flat_weights_names]
        if self._assigned_flat_weights() is not None or any(weight is None or not weight.is_cuda for weight in plain):
            return  # reparametrised (computed at each read), deleted, assigned or not on CUDA: nothing to flatten
        flatten_weights(self._stack(), self.input_size, self.hidden_size, self.proj_size, self.batch_first)

    def _apply(self, fn, recurse: bool = True):
        """After .to()/.cuda()/.half(), keep the weights in one buffer where cuDNN runs them."""
        result = super()._apply(fn, recurse)
        self._init_flat_weights()
        self.flatten_parameters()
        return result

    @property
    def engine_name(self) -> str:
        """The engine a call runs on, for unpadded input on the parameters' device (in this
        mode), when it needs gradients over a long sequence (auto's choice for rnn and gru on
        CPU differs on shorter calls and calls without gradients, and the LSTM's on padded input
        with gradients over a long sequence: `select_engine`)."""
        device = weights_device(self, "weight_ih_l0")
        regularisers = self.regularisation.acting(self.training)
        return select_engine(self.engine, self.cell, device, regularisers=regularisers).name

    @property
    def regularisation(self) -> Regularisation:
        return Regularisation(self.recurrent_dropout, self.input_dropout, *self.zoneout, self.weight_dropout)

    def _stack(self) -> Stack:
        """The stack as the engines take it."""
        return Stack(
            self.cell, [self.layer_weights(index) for index in range(len(self._all_weights))], self.num_layers,
            self.bidirectional, self.dropout, self.training, self.bias, self.regularisation,
        )

    def layer_weights(self, index: int) -> LayerWeights:
        """The weights of layer-direction `index` (= layer * num_directions + direction)."""
        names = self._all_weights[index]
        suffix = names[0].removeprefix("weight_ih")
        assigned = self._assigned_flat_weights()  # `_flat_weights` assigned, as torch.nn's forward reads it
        named = {name.removesuffix(suffix): read_parameter(self, name) if assigned is None else assigned[name]
                 for name in names}
        check_weight_shapes(named, self._expected_shapes()[index // self.num_directions], suffix, self._sizes,
                            self.cell)
        return LayerWeights(
            weight_ih=named.pop("weight_ih"),
            weight_hh=named.pop("weight_hh"),
            bias_ih=named.pop("bias_ih", None),
            bias_hh=named.pop("bias_hh", None),
            weight_hr=named.pop("weight_hr", None),
            extra=named,
        )

    def forward(
        self,
        input: Tensor | PackedSequence,
        hx: Tensor | tuple[Tensor, Tensor] | None = None,
        lengths: Tensor | Sequence[int] | None = None,
        return_gates: bool = False,
    ):
        """Run the stack over a sequence; see the class docstring for shapes."""
        traced = fx_leaf_call(self, (input, hx), {"lengths": lengths, "return_gates": return_gates})
        if traced is not None:
            return traced
        return self._over_sequence(input, hx, lengths, checked_return_gates(return_gates), self.batch_first,
                                   streaming=False)

    def _over_sequence(
        self, input: Tensor | PackedSequence, hx: Tensor | tuple[Tensor, Tensor] | None,
        lengths: Tensor | Sequence[int] | None, return_gates: bool, batch_first: bool, streaming: bool,
    ):
        """`forward`'s work, for `forward` and `step` (which a subclass's `forward` may not
        take the arguments of, and which is `streaming`): `input` in the layout `batch_first` says."""
        if self.__dict__.pop("_weights_set", False):  # see `_flat_weights`
            self._init_flat_weights()
        stack = self._stack()._replace(streaming=streaming)  # each weight read once: a parametrised one is computed
        first = stack.weights[0].weight_ih
        self._check_weights_together(stack)
        batch = prepare_input(input, lengths, self.input_size, batch_first, first.dtype, first.device)
        batch = dataclasses.replace(batch, source=as_run_under_autocast(batch.source, first.dtype))
        h0, c0 = (as_run_under_autocast(part, first.dtype) for part in self._initial_state(hx, batch, first.dtype))
        (output, h_n, c_n, trace), packed_rows = self._run(stack, batch, h0, c0, return_gates)
        state = batch.restore_state(h_n)
        if c_n is not None:
            state = (state, batch.restore_state(c_n))
        result = (batch.restore_output(output, packed_rows), state)
        if return_gates:
            result += (self._restore_trace(trace, batch),)
        return result

    def _check_weights_together(self, stack: Stack) -> None:
        """Every layer's weights in one dtype and on meta or none (`check_weights_together`),
        held to weight_ih_l0."""
        for names, layer in zip(self._all_weights, stack.weights):
            check_weights_together(weights_by_name(layer),
                                   names[0].removeprefix("weight_ih"), "weight_ih_l0", "layer",
                                   stack.weights[0].weight_ih)

    def step(
        self, input: Tensor, hx: Tensor | tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor]]:
        """Advance one time step, for streaming: the numbers of `forward` over the sequence, to float
        rounding (one step's products have other shapes, which the BLAS may round differently).

        Args:
            input: x_t, (B, input_size), or (input_size,) unbatched.
            hx: the state returned by the previous call (or by `forward`), None for zeros.

        Returns:
            output: h_t of the last layer, (B, output_size) or (output_size,).
            state: h_t (and c_t) of every layer, shaped as `forward` returns them.
        """
        if self.bidirectional:
            raise ValueError(
                "step() streams forward in time; a bidirectional layer needs the whole "
                "sequence, so call forward() instead"
            )
        traced = fx_leaf_call(self, (input, hx), {}, method="step")  # the mode checked where the graph runs
        if traced is not None:
            return traced
        per_sequence = sorted(self.regularisation.acting(self.training) - {"zoneout"})
        if per_sequence:
            raise ValueError(
                f"step() in training cannot run {' and '.join(per_sequence)}: each draws one mask per sequence "
                "(per forward call), and step() sees one step at a time; call forward() on the whole sequence, "
                "or eval() to stream"
            )
        if not isinstance(input, Tensor) or input.dim() not in (1, 2):
            shape = tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__
            raise ValueError(
                "step() takes one time step: input of shape (B, input_size) or (input_size,), "
                f"got {shape}"
            )
        check_input_size(input, self.input_size)  # names the step's shape, not the sequence's
        output, state = self._over_sequence(input.unsqueeze(0), hx, None, False, batch_first=False, streaming=True)
        return output.squeeze(0), state

    def _initial_state(self, hx: object, batch: SequenceBatch, dtype: torch.dtype) -> tuple[Tensor, Tensor | None]:
        """(h0, c0) as (L*D, B, ·): the checked `hx` (in the parameters' `dtype`), or the cell's
        initial state."""
        layers_directions = self.num_layers * self.num_directions
        h0, c0 = prepare_state(
            hx,
            batch,
            self.cell.has_cell_state,
            (layers_directions, self.output_size),
            (layers_directions, self.hidden_size),
            dtype,
        )
        if h0 is None:
            h_init, c_init = self.cell.initial_state(
                batch.batch_size, self.hidden_size, self.output_size, batch.source
            )
            h0 = h_init.expand(layers_directions, -1, -1)
            c0 = None if c_init is None else c_init.expand(layers_directions, -1, -1)
        return h0, c0

    def _run(
        self, stack: Stack, batch: SequenceBatch, h0: Tensor, c0: Tensor | None, return_gates: bool
    ) -> tuple[StackRun, bool]:
        """The stack on its engine: its run (time-major output, h_n, c_n, and the per-layer-
        direction (gates, cell_states) when asked), and whether its output is the rows of a
        packed input's output (the native engine runs a PackedSequence as it is, as torch.nn)."""
        source = batch.source
        packed = batch.lengths is not None and batch.batch_size > 0
        long_backward = (batch.steps >= CPU_FUSED_MIN_STEPS and torch.is_grad_enabled()  # short: no more asked
                         and any(tensor is not None and tensor.requires_grad  # any: each gradient runs through
                                 for tensor in (source, h0, c0, *itertools.chain.from_iterable(  # all the steps
                                     weights.tensors() for weights in stack.weights))))
        engine = select_engine(self.engine, self.cell, source.device, return_gates,
                               stack.regularisation.acting(self.training), streaming=stack.streaming and c0 is not None,
                               cell_steps=lstm_cell_steps(batch.lengths, self.proj_size > 0, source),
                               long_backward=long_backward,
                               packed=packed and long_backward
                               and not even_packed_on_onednn(batch.lengths, source, self.proj_size > 0),
                               lengths_given=packed)
        if torch.jit.is_tracing() and engine.name == "reference":
            warn_unrolled(self.cell, batch.steps)
        if self.training and self.weight_dropout:  # DropConnect: one mask of weight_hh per call
            stack = stack._replace(weights=[
                weights._replace(weight_hh=F.dropout(weights.weight_hh, self.weight_dropout, training=True))
                for weights in stack.weights])
        if batch.packed is not None and engine.runs_packed_rows:
            return engine.run_packed(stack, batch.source, batch.packed.batch_sizes, batch.packed.sorted_indices,
                                     batch.packed.unsorted_indices, h0, c0), True
        return engine.run(stack, batch.data, batch.packing, h0, c0, return_gates), False

    def _restore_trace(self, trace: list, batch: SequenceBatch) -> GateTrace:
        """Stack the per-layer-direction activations and put them in the user's layout, zero
        past each sequence's length (the engines' are; a gate named from another, CIFG's
        forget = 1 − input, is zeroed here)."""
        per_name = [self.cell.named_gates(gates) for gates, _ in trace]
        running = None
        if batch.lengths is not None:  # (T, B, 1): whether sequence b runs at step t
            steps = torch.arange(batch.steps, device=batch.lengths.device)
            running = (steps.unsqueeze(1) < batch.lengths.unsqueeze(0)).unsqueeze(-1)
        gates = {}
        for name in per_name[0]:
            stacked = torch.stack([named[name] for named in per_name])
            if running is not None:
                stacked = stacked * running
            gates[name] = batch.restore_per_step(stacked, time_dim=1).detach()
        cell_states = None
        if trace[0][1] is not None:
            cell_states = batch.restore_per_step(torch.stack([cells for _, cells in trace]), time_dim=1).detach()
        return GateTrace(gates, cell_states)

    def extra_repr(self) -> str:
        parts = leading_repr(self.cell_name, self.cell, self.input_size, self.hidden_size)
        defaults = {"proj_size": 0, "num_layers": 1, "bias": True, "batch_first": False,
                    "dropout": 0.0, "bidirectional": False, "forget_bias": None, "recurrent_dropout": 0.0,
                    "input_dropout": 0.0, "zoneout": (0.0, 0.0), "weight_dropout": 0.0, "init": (),
                    "chrono_max": None}
        parts += [
            f"{name}={getattr(self, name)}"
            for name, default in defaults.items()
            if getattr(self, name) != default
        ]
        # the engine asked for, or what auto picks: an explicit engine may run only on another device
        parts.append(f"engine={self.engine if self.engine != 'auto' else self.engine_name}")
        return ", ".join(parts)


# The options a layer checks again when they are set after building: the engine, the
# regularisers, and the initialisations, which act at reset_parameters().
CHECKED_AGAIN = ("engine", "forget_bias", "recurrent_dropout", "input_dropout", "zoneout", "weight_dropout", "init",
                 "chrono_max")


def leading_repr(cell_name: str | None, cell: Cell, input_size: int, hidden_size: int) -> list[str]:
    """The start of a module's repr, as its constructor takes the arguments: the cell's name
    (where the class does not fix it), the sizes, the cell's non-default options."""
    parts = [str(input_size), str(hidden_size)]
    if not is_builtin(cell):  # a cell of one's own, as it was given: its repr holds its options
        return [repr(cell), *parts]
    if cell_name is None:
        parts.insert(0, repr(cell.name))
    return parts + [f"{name}={value!r}" for name, value in cell.options().items()]


def check_options_not_set_before(module: nn.Module, options: tuple[str, ...]) -> None:
    """Refuse a subclass that set an attribute named as one of lstmkit's `options` (those
    torch.nn's module lacks) before calling lstmkit's __init__, which would replace it without
    a word: a DropConnect subclass of nn.LSTM that keeps its rate as `self.recurrent_dropout`
    trained with it switched off."""
    if "_parameters" in vars(module):  # __init__ again, on a built module (torch.nn's allow it)
        return
    set_before = [name for name in options if name in vars(module)]
    if set_before:
        raise TypeError(f"{type(module).__name__} sets {', '.join(f'self.{name}' for name in set_before)} before "
                        f"calling lstmkit's __init__, which sets its own option of that name (one torch.nn's module "
                        "lacks) and would replace the value: give the subclass's attribute another name")


def resolve_cell(cell: str | Cell, cell_options: dict[str, object], module: type) -> Cell:
    """The cell the module `module` runs: built from a name and its options, or a Cell given as
    is. An option neither the cell nor the module takes is named with the one likely meant."""
    if isinstance(cell, Cell):
        if not is_builtin(cell):
            check_own_cell(cell)
        known_options = {field.name for cell_type in (*CELLS.values(), type(cell)) for field in fields(cell_type)}
        unknown = sorted(set(cell_options) - known_options)
        if unknown:  # not a cell's option, but a misspelt keyword of the module's
            raise TypeError(f"unexpected keyword argument(s) {unknown_names(unknown, constructor_keywords(module))} "
                            f"for {module.__name__}")
        if cell_options:
            raise TypeError(
                f"cell options {sorted(cell_options)} go with a cell name; "
                f"got a Cell instance ({cell.describe()}) as well"
            )
        return cell
    if isinstance(cell, str):
        given = sorted(set(cell_options) & set(regularisers.REGULARISER_OPTIONS))  # Recurrent takes its own
        if given:
            raise TypeError(f"unexpected keyword argument(s) {', '.join(map(repr, given))}; "
                            f"{regularisers.NO_CELL_MODULE_REGULARISERS}")
        check_cell_options(cell, cell_options, constructor_keywords(module))  # naming the module's keywords too
        return make_cell(cell, **cell_options)
    raise TypeError(f"cell must be a cell name or a Cell, got {type(cell).__name__}")


def checked_flag(name: str, value: object) -> bool:
    """A switch torch.nn takes as it comes (`bidirectional`, a cell's `bias`): a bool, a numpy
    bool, or the integer 0 or 1 (from a config file or the command line), as a bool; refused
    otherwise, where torch.nn would read any value as true or false."""
    if isinstance(value, bool | np.bool_) or (isinstance(value, numbers.Integral) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{name} must be a bool (or 0 or 1), got {received(value)}")


def positive_int(name: str, value: object) -> int:
    """A size or count: a positive integer, as an int (a numpy integer, such as
    `np.prod(observation_shape)`, included, as torch.nn's cells take it; bools and floats not)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {received(value)}")
    if value <= 0:
        raise ValueError(f"{name} must be greater than zero, got {value}")
    return int(value)


def check_projection(cell: Cell, proj_size: object, hidden_size: int) -> int:
    """proj_size: 0, or in [1, hidden_size) for a cell of the LSTM family; as an int (a numpy
    integer included, as torch.nn.LSTM takes it)."""
    if isinstance(proj_size, bool | np.bool_) or not isinstance(proj_size, numbers.Integral):
        raise TypeError(f"proj_size must be an int, got {received(proj_size)}")
    proj_size = int(proj_size)
    if proj_size < 0:
        raise ValueError(f"proj_size must be zero (no projection) or positive, got {proj_size}")
    if proj_size and not cell.supports_projection:
        raise ValueError(
            f"proj_size applies to the LSTM family only, not to cell {cell.name!r}; got proj_size={proj_size}"
        )
    if proj_size >= hidden_size:
        raise ValueError(
            f"proj_size must be smaller than hidden_size={hidden_size}, got proj_size={proj_size}"
        )
    return proj_size


def check_forget_bias(cell: Cell, forget_bias: object, bias: bool) -> float | None:
    """forget_bias: None, or a number for a cell with a forget gate and a layer with biases;
    returned as a Python float (a numpy scalar kept as given would not load under
    torch.load's weights_only=True)."""
    if forget_bias is None:
        return None
    if isinstance(forget_bias, bool) or not isinstance(forget_bias, numbers.Real):
        raise TypeError(
            f"forget_bias must be a number or None, got {received(forget_bias)}"
        )
    if not math.isfinite(forget_bias):
        raise ValueError(f"forget_bias must be a finite number, got {forget_bias}")
    if cell.forget_bias_block is None:
        raise ValueError(
            f"forget_bias needs a cell with a forget gate; cell {cell.describe()} has none "
            f"(got forget_bias={forget_bias})"
        )
    if not bias:
        raise ValueError("forget_bias sets the gate's bias, so it needs bias=True; got bias=False")
    return float(forget_bias)
