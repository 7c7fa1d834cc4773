"""What the fused engine asks of a cell's kernel: one point-wise step in place, and its backward.

The engine's loop (`layer.py`) hands the kernel, at every step, views of its buffers restricted
to the rows of the sequences still running (`FusedStep`, `FusedGrads`). The kernel computes the
cell's step in place into them, and backward line for line against the forward, as the
equations in the cell's `step` docstring say.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, NamedTuple

from torch import Tensor

from lstmkit.cells import Cell, LayerWeights
from lstmkit.engines.fused.products import Products


class FusedStep(NamedTuple):
    """One time step as the engine hands it to a kernel: views of the engine's buffers,
    restricted to the rows of the sequences still running at this step.

    gates: (b, G*H) the gate pre-activations on entry (W_ih x + b_ih + b_hh, plus W_hh h when
        the kernel's `recurrence` is "gates"); the kernel overwrites them with the activations.
    rec: (b, G*H) the recurrent projection, W_hh h + b_hh ("biased") or W_hh h ("raw");
        None for "gates"; (b, `rec_size`) where the kernel forms it from `product`.
    h, c: h_{t-1} (b, H_out) and c_{t-1} (b, H) (None without a cell state).
    h_new, c_new: where the kernel writes its output (before any projection) and c_t.
    tape: the per-step buffers the kernel asked for in `tape`, (b, n) each.
    h_projected: where the engine writes h_t = W_hr h_new with proj_size (h_new itself without).
    product, h_low: for a kernel that `adds_product`, under mixed precision: W_hh h_{t-1}
        (b, G*H) from operands in the compute dtype (`Products.product`), not yet in `gates`
        (or `rec`), which the kernel adds; and where it writes h_t in the compute dtype, for
        the next step's product. None otherwise.
    blocks: the column blocks of `gates` the kernel names in `FusedKernel.blocks`, as views.
    """

    gates: Tensor
    rec: Tensor | None
    h: Tensor
    c: Tensor | None
    h_new: Tensor
    c_new: Tensor | None
    tape: dict[str, Tensor]
    h_projected: Tensor
    product: Tensor | None = None
    h_low: Tensor | None = None
    blocks: dict[str, Tensor] | None = None


class FusedGrads(NamedTuple):
    """Where a kernel's backward writes one step's gradients (same rows as FusedStep).

    d_gates: (b, G*H) d loss / d gate pre-activations, the x side (for W_ih, b_ih and x).
    d_rec: (b, G*H) d loss / d rec, the h side (for W_hh and h); the same tensor as d_gates
        when `recurrence` is "gates".
    tape: the buffers the kernel asked for in `grad_tape`, for gradients it needs again
        after the loop.
    d_low: for a kernel that `adds_product`, under mixed precision: where it writes d_rec in
        the compute dtype too, for the product that gives d h_{t-1}. None otherwise.
    blocks: the column blocks of `d_gates` the kernel names in `FusedKernel.blocks`, as views.
    refill: for a kernel that `refills_dh`, where the loop lets it: what d h_{t-1} starts
        from at this step's rows (d loss / d h_{t-1} from the output), which the kernel writes
        into dh once it has read it. None otherwise.
    d_c: for a kernel that `writes_dc_apart`, where it writes d loss / d c, leaving dc as it
        came; None: into dc, in place.
    """

    d_gates: Tensor
    d_rec: Tensor
    tape: dict[str, Tensor]
    d_low: Tensor | None = None
    blocks: dict[str, Tensor] | None = None
    refill: Tensor | None = None
    d_c: Tensor | None = None


class FusedKernel:
    """A cell's step for the fused engine: forward in place, backward derived by hand.

    Subclasses implement `forward` and `backward` (and, for parameters beyond the torch.nn
    set, `parameter_grads`) for the cell they are built with.
    """

    recurrence: ClassVar[str] = "gates"
    """How the engine adds the recurrent projection: "gates" (added into the pre-activations,
    b_hh folded into the input projection), "biased" (handed over as W_hh h + b_hh), "raw"
    (handed over as W_hh h; the kernel applies b_hh itself)."""

    adds_product: ClassVar[bool] = False
    """Whether, under mixed precision, the kernel takes the recurrent product of operands in
    the compute dtype and adds it itself (into the pre-activations with "gates" recurrence;
    with "biased", plus b_hh into `rec`), writing h_t and d_rec in the compute dtype as well
    (`FusedStep.product`, `h_low`, `FusedGrads.d_low`): the casts and the addition are then no
    launches of their own. The same numbers: the float32 sum of the same terms."""

    refills_dh: ClassVar[bool] = False
    """Whether the kernel's backward, given `FusedGrads.refill`, writes it into dh once it has
    read dh (plus what flows to h_{t-1} directly, which it then does not return), so that the
    engine adds the product for d h_{t-1} into dh in place: on CUDA a product with a separate
    addend first copies the addend into its output, a copy per step."""

    reads_h_new: ClassVar[bool] = False
    """Whether the kernel's backward reads h' (`FusedStep.h_new`): a cell module's step keeps it
    for backward only then, so that the h' it returns may be changed in place before backward
    (`h[done] = 0` in a reinforcement-learning loop), as torch.nn.LSTMCell's may."""

    writes_dc_apart: ClassVar[bool] = False
    """Whether the kernel's backward, given `FusedGrads.d_c`, writes d loss / d c there and only
    reads dc: a cell module's step then does not first copy the d c' that autograd hands it
    (which another node may hold)."""

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        self.block_columns: dict[int, dict[str, slice]] = {}  # `blocks` by hidden size, made once

    def tape(self, hidden_size: int) -> dict[str, int]:
        """Per-step buffers the forward keeps for backward: name -> features."""
        return {}

    def rec_size(self, hidden_size: int, forms_rec: bool) -> int:
        """Features of each step's `rec` (FusedStep.rec, for "biased" and "raw" recurrence) that
        the engine keeps for backward: all G·H; where the kernel forms rec itself from the
        product (`forms_rec`: it `adds_product`, under mixed precision), it may keep fewer,
        those its backward reads."""
        return self.cell.num_gates * hidden_size

    def grad_tape(self, hidden_size: int) -> dict[str, int]:
        """Per-step buffers the backward fills for `parameter_grads`: name -> features."""
        return {}

    def blocks(self, hidden_size: int) -> dict[str, slice]:
        """The column ranges of the (·, G*H) gate buffers the kernel works on as views (its gate
        blocks, runs of adjacent blocks), by name. The engine cuts them from the buffers of all
        steps at once, before its loop (`FusedStep.blocks`, `FusedGrads.blocks`): a view made
        per step is a microsecond of Python, and a step has a dozen."""
        return {}

    def cut_blocks(self, buffer: Tensor) -> dict[str, Tensor]:
        """`blocks` of a (..., G*H) buffer, as views."""
        hidden_size = buffer.shape[-1] // self.cell.num_gates
        columns = self.block_columns.get(hidden_size)
        if columns is None:  # a cell module's step cuts blocks three times a step: the table is made once
            columns = self.block_columns[hidden_size] = self.blocks(hidden_size)
        return {name: buffer[..., span] for name, span in columns.items()}

    def project_input(self, x: Tensor, weights: LayerWeights, products: Products) -> tuple[Tensor, tuple]:
        """The gate pre-activations from the input of all steps, (N, G*H) for x (N, I), and
        what `input_backward` needs. With "gates" recurrence the bias is b_ih + b_hh, or the one
        of them a layer holds (the other set to None, folded into it, say; or b_hh taken out by a
        caller that adds it with W_hh h)."""
        bias = weights.bias_ih
        if self.recurrence == "gates" and weights.bias_hh is not None:
            bias = weights.bias_hh if bias is None else bias + weights.bias_hh
        pre = x.new_empty(x.shape[0], weights.weight_ih.shape[0], dtype=products.state)
        products.into(pre, x, weights.weight_ih.t(), bias)
        return pre, ()

    def input_backward(
        self, d_gates: Tensor, saved: tuple, weights: LayerWeights
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """d loss / d (x W_ih^T) from d loss / d pre-activations (N, G*H), and the gradients of
        any parameters of that stage."""
        return d_gates, {}

    def forward(self, step: FusedStep, weights: LayerWeights) -> None:
        """One point-wise step, in place into `step`'s buffers."""
        raise NotImplementedError

    def backward(
        self, dh: Tensor, dc: Tensor | None, step: FusedStep, grads: FusedGrads, weights: LayerWeights
    ) -> Tensor | None:
        """Backward of `forward`: from dh = d loss / d h_new and dc = d loss / d c_new (updated
        in place to d loss / d c, or written into `grads.d_c`), write `grads`; return d loss /
        d h through paths other than the recurrent projection, as a new tensor the caller may
        add into (None when there are none)."""
        raise NotImplementedError

    def parameter_grads(
        self,
        grads: FusedGrads,
        rec: Tensor | None,
        cells: Tensor | None,
        new_cells: Tensor | None,
        tape: dict[str, Tensor],
        weights: LayerWeights,
    ) -> dict[str, Tensor]:
        """Gradients of the biases and extra parameters, over all steps at once; where both
        biases add into the pre-activations alike ("gates" recurrence), one tensor is both
        biases' gradient (as torch's own LSTM cell returns it), which autograd keeps apart.

        grads: every step's (T, B, ·), or one step's (B, ·) (a cell module's); rec: the
        recurrent projections (T, B, G*H), None for "gates"; cells, new_cells: each step's c
        and c' (the step's `FusedStep.c`, `FusedStep.c_new`) as (T, B, H), None without a cell
        state; tape: (T, B, n). Each the same without T for one step.
        """
        if weights.bias_ih is None and weights.bias_hh is None:
            return {}
        d_pre = over_rows(grads.d_gates)
        bias_grads = {} if weights.bias_ih is None else {"bias_ih": d_pre}
        if weights.bias_hh is not None:  # with "gates" recurrence it adds into the pre-activations too: one tensor
            bias_grads["bias_hh"] = d_pre if self.recurrence == "gates" else over_rows(grads.d_rec)
        return bias_grads


def over_rows(tensor: Tensor) -> Tensor:
    """The sum over every dimension but the last: over the steps and the batch of (T, B, n),
    over the batch of one step's (B, n)."""
    return tensor.sum(tuple(range(tensor.dim() - 1)))


def gate_blocks(names: Sequence[str], hidden_size: int) -> dict[str, slice]:
    """The column range of each block of a gate buffer whose blocks are `names`, in order."""
    return {name: slice(index * hidden_size, (index + 1) * hidden_size) for index, name in enumerate(names)}


def four_blocks(hidden_size: int) -> dict[str, slice]:
    """The i, f, g, o blocks of a full LSTM gate buffer, and i and f together ("if", one
    sigmoid call)."""
    return {**gate_blocks("ifgo", hidden_size), "if": slice(0, 2 * hidden_size)}
