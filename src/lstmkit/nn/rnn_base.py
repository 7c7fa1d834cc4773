"""torch.nn.RNNBase's public helpers (`check_forward_args`, `permute_hidden`, ...), for code
written against torch.nn's RNNs that calls them; the layers' own checks say the same in
lstmkit's words (`lstmkit.ShapeError`, a RuntimeError as torch.nn's)."""

from __future__ import annotations

import torch
from torch import Tensor

from lstmkit.nn.inputs import ShapeError, check_features
from lstmkit.nn.reparametrised import read_parameter


class RNNBaseHelpers:
    """The helpers of torch.nn.RNNBase, LSTM and GRU, with their arguments and results."""

    def check_input(self, input: Tensor, batch_sizes: Tensor | None) -> None:
        """`input` (3-D, or the 2-D data of a packed batch when `batch_sizes` is given) of the
        layer's input size, dtype and device."""
        expected_dim = 2 if batch_sizes is not None else 3
        if input.dim() != expected_dim:
            raise ShapeError(
                f"input must have {expected_dim} dimensions, got {input.dim()} (shape {tuple(input.shape)})"
            )
        first = read_parameter(self, "weight_ih_l0")
        check_features(input, self.input_size, first.dtype, first.device)

    def get_expected_hidden_size(self, input: Tensor, batch_sizes: Tensor | None) -> tuple[int, int, int]:
        """(num_layers * num_directions, batch, output size): h_0's shape for batched `input`."""
        return (self.num_layers * self.num_directions, self.expected_batch(input, batch_sizes), self.output_size)

    def get_expected_cell_size(self, input: Tensor, batch_sizes: Tensor | None) -> tuple[int, int, int]:
        """(num_layers * num_directions, batch, hidden_size): c_0's shape for batched `input`."""
        return (self.num_layers * self.num_directions, self.expected_batch(input, batch_sizes), self.hidden_size)

    def expected_batch(self, input: Tensor, batch_sizes: Tensor | None) -> int:
        """The batch size of batched `input`, or of the packed batch of `batch_sizes`."""
        if batch_sizes is not None:
            return int(batch_sizes[0])
        return input.size(0) if self.batch_first else input.size(1)

    def check_hidden_size(
        self, hx: Tensor, expected_hidden_size: tuple[int, ...], msg: str = "Expected hidden size {}, got {}"
    ) -> None:
        if hx.size() != expected_hidden_size:
            raise ShapeError(msg.format(tuple(expected_hidden_size), list(hx.size())))

    def check_forward_args(self, input: Tensor, hidden: Tensor | tuple[Tensor, Tensor], batch_sizes: Tensor | None):
        """`input` as `check_input`, and the state `hidden` (h, or (h, c) for a cell with a cell
        state) of the shapes it needs."""
        self.check_input(input, batch_sizes)
        if not self.cell.has_cell_state:
            self.check_hidden_size(hidden, self.get_expected_hidden_size(input, batch_sizes))
            return
        self.check_hidden_size(hidden[0], self.get_expected_hidden_size(input, batch_sizes),
                               "Expected hidden[0] size {}, got {}")
        self.check_hidden_size(hidden[1], self.get_expected_cell_size(input, batch_sizes),
                               "Expected hidden[1] size {}, got {}")

    def permute_hidden(self, hx: Tensor | tuple[Tensor, Tensor], permutation: Tensor | None):
        """The state's batch (dimension 1) reordered by `permutation` (a packed batch's
        `unsorted_indices`, say); as given when `permutation` is None."""
        if permutation is None:
            return hx
        if isinstance(hx, tuple):
            return tuple(torch.index_select(part, 1, permutation) for part in hx)
        return torch.index_select(hx, 1, permutation)
