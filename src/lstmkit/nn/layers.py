"""The named layers: drop-ins for torch.nn.LSTM, GRU and RNN, and the LSTM variants torch lacks."""

from __future__ import annotations

import torch

from lstmkit.cells import CIFGLSTMStep, GRUStep, LayerNormLSTMStep, LSTMStep, PeepholeLSTMStep, RNNStep
from lstmkit.keywords import constructor_keywords, lstmkit_class, unknown_names
from lstmkit.nn.docs import LSTM_OPTIONS_ARGS, layer_docstring, step_equations
from lstmkit.nn.recurrent import Recurrent
from lstmkit.nn.regularisers import NO_CELL_MODULE_REGULARISERS, REGULARISER_OPTIONS


# lstmkit.LSTM's switches for the ablations of Greff et al. (2017).
LSTM_GATE_SWITCHES = ("input_gate", "forget_gate", "output_gate", "input_activation", "output_activation")


def checked_regularisers(module: type, options: dict[str, object]) -> dict[str, object]:
    """The regulariser and initialisation keywords a named layer `module` passes on to
    Recurrent (documented there); any other keyword is refused by name."""
    return checked_options(module, options, REGULARISER_OPTIONS, "lstmkit.LSTM")


def checked_options(
    module: type, options: dict[str, object], accepted: tuple[str, ...], lstm_module: str
) -> dict[str, object]:
    """`options`, given to the named module `module` (of the cell `module.cell_name`) whose
    keywords beyond its signature are `accepted`; any other is refused by name, with the one
    likely meant, the LSTM's own ones (that `lstm_module` takes) with what they are for."""
    cell_name = module.cell_name
    unknown = sorted(set(options) - set(accepted))
    if "forget_bias" in unknown:  # a named module without it has no forget gate
        raise TypeError(f"forget_bias sets the forget gate's bias in the LSTM family; cell {cell_name!r} has no "
                        f"forget gate (got forget_bias={options['forget_bias']!r})")
    switches = [name for name in unknown if name in LSTM_GATE_SWITCHES]
    if switches:
        raise TypeError(f"{', '.join(switches)}: {lstm_module}'s switches for Greff et al.'s ablations; cell "
                        f"{cell_name!r} has none (got {', '.join(f'{name}={options[name]!r}' for name in switches)})")
    if unknown:
        if not accepted and set(unknown) & set(REGULARISER_OPTIONS):
            takes = NO_CELL_MODULE_REGULARISERS
        else:
            own = ", ".join(constructor_keywords(module, keyword_only=True))
            takes = f"lstmkit.{lstmkit_class(module).__name__}'s options beyond torch.nn's are {own}"
            takes += f", and the regulariser options {', '.join(accepted)}" if accepted else ""
        known = constructor_keywords(module) + list(accepted)
        switches = {name: f"one of {lstm_module}'s switches for the ablations" for name in LSTM_GATE_SWITCHES
                    if name not in known}  # a near miss of one, given to another cell's module
        raise TypeError(f"unexpected keyword argument(s) {unknown_names(unknown, known, switches)}; {takes}")
    return options


class LSTM(Recurrent):
    __doc__ = layer_docstring(
        summary="Multi-layer LSTM, a drop-in for torch.nn.LSTM, with the ablations of Greff et al.",
        equations=step_equations(LSTMStep()),
        cell=LSTMStep(),
        trailing_args=LSTM_OPTIONS_ARGS,
        example=(
            ">>> lstm = lstmkit.LSTM(10, 20, num_layers=2)\n"
            ">>> lstm.load_state_dict(torch.nn.LSTM(10, 20, num_layers=2).state_dict())\n"
            "<All keys matched successfully>\n"
            ">>> output, (h_n, c_n) = lstm(torch.randn(5, 3, 10))"
        ),
    )

    cell_name = "lstm"
    mode = "LSTM"  # torch.nn's RNNBase.mode, which code written for torch.nn may read

    def __init__(
        self,
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
        engine: str = "auto",
        input_gate: bool = True,
        forget_gate: bool = True,
        output_gate: bool = True,
        input_activation: bool = True,
        output_activation: bool = True,
        **regularisers: object,
    ) -> None:
        super().__init__(
            self.cell_name, input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, proj_size, device, dtype, forget_bias=forget_bias, engine=engine,
            input_gate=input_gate, forget_gate=forget_gate, output_gate=output_gate,
            input_activation=input_activation, output_activation=output_activation,
            **checked_regularisers(type(self), regularisers),
        )


class LSTMVariant(Recurrent):
    """The constructor shared by the LSTM variants that have no cell options."""

    def __init__(
        self,
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
        engine: str = "auto",
        **regularisers: object,
    ) -> None:
        super().__init__(
            self.cell_name, input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, proj_size, device, dtype, forget_bias=forget_bias, engine=engine,
            **checked_regularisers(type(self), regularisers),
        )


class PeepholeLSTM(LSTMVariant):
    __doc__ = layer_docstring(
        summary="Multi-layer LSTM with peephole connections (Gers & Schmidhuber 2000).",
        equations=step_equations(PeepholeLSTMStep()),
        cell=PeepholeLSTMStep(),
        example=">>> output, (h_n, c_n) = lstmkit.PeepholeLSTM(10, 20)(torch.randn(5, 3, 10))",
    )
    cell_name = "peephole"


class CIFGLSTM(LSTMVariant):
    __doc__ = layer_docstring(
        summary="Multi-layer coupled input-forget gate LSTM (Greff et al. 2017): f = 1 - i.",
        equations=step_equations(CIFGLSTMStep()),
        cell=CIFGLSTMStep(),
        example=">>> output, (h_n, c_n) = lstmkit.CIFGLSTM(10, 20)(torch.randn(5, 3, 10))",
    )
    cell_name = "cifg"


class LayerNormLSTM(LSTMVariant):
    __doc__ = layer_docstring(
        summary="Multi-layer LayerNorm LSTM (Ba et al. 2016); the cell state is carried un-normalised.",
        equations=step_equations(LayerNormLSTMStep()),
        cell=LayerNormLSTMStep(),
        example=">>> output, (h_n, c_n) = lstmkit.LayerNormLSTM(10, 20)(torch.randn(5, 3, 10))",
    )
    cell_name = "layernorm"


class GRU(Recurrent):
    __doc__ = layer_docstring(
        summary="Multi-layer GRU, a drop-in for torch.nn.GRU.",
        equations=step_equations(GRUStep()),
        cell=GRUStep(),
        example=">>> output, h_n = lstmkit.GRU(10, 20, num_layers=2)(torch.randn(5, 3, 10))",
    )
    cell_name = "gru"
    mode = "GRU"

    def __init__(
        self,
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
        engine: str = "auto",
        **regularisers: object,
    ) -> None:
        super().__init__(
            self.cell_name, input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, proj_size, device, dtype, engine=engine,
            **checked_regularisers(type(self), regularisers),
        )


class RNN(Recurrent):
    __doc__ = layer_docstring(
        summary="Multi-layer Elman RNN with tanh or ReLU, a drop-in for torch.nn.RNN.",
        equations=step_equations(RNNStep()),
        cell=RNNStep(),
        leading_args=(
            "nonlinearity: 'tanh' or 'relu' (the 4th positional argument, as in torch.nn.RNN).\n"
            "    Default: 'tanh'"
        ),
        example=">>> output, h_n = lstmkit.RNN(10, 20, nonlinearity='relu')(torch.randn(5, 3, 10))",
    )
    cell_name = "rnn"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        engine: str = "auto",
        **regularisers: object,
    ) -> None:
        super().__init__(
            self.cell_name, input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, proj_size, device, dtype, engine=engine, nonlinearity=nonlinearity,
            **checked_regularisers(type(self), regularisers),
        )

    @property
    def nonlinearity(self) -> str:
        """'tanh' or 'relu', as torch.nn.RNN exposes it."""
        return self.cell.nonlinearity

    @property
    def mode(self) -> str:
        """'RNN_TANH' or 'RNN_RELU', as torch.nn.RNN's."""
        return f"RNN_{self.nonlinearity.upper()}"
