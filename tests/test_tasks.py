"""The long-time-lag task generators: structure, determinism, baselines, solved criteria."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from lstmkit.tasks import TASKS, Adding1997Task, AddingTask, CopyTask, EmbeddedReberTask, TemporalOrderTask, make_task
from lstmkit.tasks.reber import ALPHABET, embedded_reber_string


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def all_tasks():
    return [make_task(name) if name == "reber" else make_task(name, 30) for name in TASKS]


@pytest.mark.parametrize("task", all_tasks(), ids=lambda task: task.name)
def test_same_seed_same_sequences_other_seed_other_sequences(task):
    first, again, other = task.sample(8, generator(3)), task.sample(8, generator(3)), task.sample(8, generator(4))
    assert torch.equal(first.inputs, again.inputs) and torch.equal(first.targets, again.targets)
    assert not torch.equal(first.inputs, other.inputs)


@pytest.mark.parametrize("task", all_tasks(), ids=lambda task: task.name)
def test_test_set_is_drawn_from_its_own_seed(task):
    assert torch.equal(task.test_set(8, 5).inputs, task.sample(8, generator(5)).inputs)


@pytest.mark.parametrize("task", all_tasks(), ids=lambda task: task.name)
def test_inputs_are_zero_past_each_length(task):
    batch = task.sample(16, generator())
    if batch.lengths is None:
        pytest.skip("fixed-length task")
    for column, length in enumerate(batch.lengths.tolist()):
        assert torch.all(batch.inputs[length:, column] == 0)
        assert torch.all(batch.inputs[length - 1, column].abs().sum() > 0)


def test_adding_markers_and_target():
    task = AddingTask(T=40)
    batch = task.sample(64, generator())
    values, markers = batch.inputs[..., 0], batch.inputs[..., 1]
    assert batch.inputs.shape == (40, 64, 2)
    assert torch.all((values >= 0) & (values < 1))
    assert torch.all(markers[:20].sum(0) == 1) and torch.all(markers[20:].sum(0) == 1)
    assert torch.equal(batch.targets[:, 0], (values * markers).sum(0))


def test_adding_baseline_is_the_variance_of_the_sum():
    task = AddingTask(T=10)
    assert task.baseline() == 2 / 12
    targets = task.sample(200_000, generator()).targets
    assert ((targets - 1.0) ** 2).mean().item() == pytest.approx(1 / 6, abs=2e-3)  # predicting the mean, 1


def test_adding1997_structure():
    task = Adding1997Task(T=40)
    batch = task.sample(200, generator(1))
    assert batch.inputs.shape == (44, 200, 2)
    assert torch.all((batch.lengths >= 40) & (batch.lengths <= 44))
    for column, length in enumerate(batch.lengths.tolist()):
        values, markers = batch.inputs[:length, column, 0], batch.inputs[:length, column, 1]
        marked = (markers == 1).nonzero().flatten().tolist()
        assert len(marked) == 2
        assert marked[0] < 10 or marked[1] < 10, "one mark among the first ten steps"
        assert all(position < 20 for position in marked), "both marks within the first T/2 steps"
        assert markers[-1] == -1
        assert markers[0] == (1 if 0 in marked else -1)
        assert torch.all(markers[1:-1][(markers[1:-1] != 1)] == 0)
        if 0 in marked:
            assert values[0] == 0, "a marked first step has value 0"
        expected = 0.5 + values[marked].sum() / 4
        assert batch.targets[column, 0] == pytest.approx(expected.item(), abs=1e-7)


def test_adding1997_baseline_is_the_variance_of_the_target():
    task = Adding1997Task(T=40)
    targets = task.sample(200_000, generator(2)).targets
    assert targets.var(unbiased=False).item() == pytest.approx(task.baseline(), rel=2e-2)
    assert task.baseline() == pytest.approx((0.9 / 3 + (1 - 0.9 / 19) / 3) / 16)


def test_adding1997_score_counts_errors_below_0_04():
    task = Adding1997Task(T=20)
    batch = task.sample(4, generator())
    predictions = batch.targets + torch.tensor([[0.0], [0.039], [-0.041], [0.2]])
    assert task.score(predictions, batch) == 0.5
    assert task.solved(loss=0.0, score=0.99) and not task.solved(loss=0.0, score=0.98)


def test_copy_structure():
    task = CopyTask(T=12)
    batch = task.sample(5, generator())
    symbols = batch.inputs.argmax(-1)
    assert batch.inputs.shape == (32, 5, 10)
    assert torch.all((symbols[:10] >= 1) & (symbols[:10] <= 8))
    assert torch.all(symbols[10:21] == 0) and torch.all(symbols[21] == 9) and torch.all(symbols[22:] == 0)
    assert torch.all(batch.targets[:22] == 0)
    assert torch.equal(batch.targets[22:], symbols[:10])


def test_copy_baseline_is_what_blank_then_uniform_guessing_scores():
    task = CopyTask(T=12)
    batch = task.sample(5, generator())
    logits = torch.full((32, 5, 9), -1e4)
    logits[:22, :, 0] = 1e4  # blank, with certainty, until the recall
    logits[22:, :, 1:] = 0.0  # then uniform over the 8 symbols
    assert task.loss(logits, batch).item() == pytest.approx(task.baseline(), rel=1e-6)
    assert task.baseline() == pytest.approx(10 * math.log(8) / 32)


def test_copy_perfect_recall_is_solved():
    task = CopyTask(T=12)
    batch = task.sample(5, generator())
    logits = torch.nn.functional.one_hot(batch.targets, 9).float() * 100
    assert task.score(logits, batch) == 1.0
    assert task.solved(task.loss(logits, batch).item(), 1.0)


def test_temporal_order_structure_and_classes():
    task = TemporalOrderTask(T=100)
    batch = task.sample(300, generator())
    symbols = batch.inputs.argmax(-1)
    assert torch.all((batch.lengths >= 100) & (batch.lengths <= 110))
    for column, length in enumerate(batch.lengths.tolist()):
        sequence = symbols[:length, column].tolist()
        assert sequence[0] == 0 and sequence[-1] == 1, "starts with E, ends with the trigger B"
        positions = [t for t, symbol in enumerate(sequence) if symbol in (6, 7)]
        assert len(positions) == 2
        assert 10 <= positions[0] <= 20 and 50 <= positions[1] <= 60
        assert all(2 <= symbol <= 5 for t, symbol in enumerate(sequence[1:-1], 1) if t not in positions)
        order = "".join("XY"[sequence[t] - 6] for t in positions)
        assert batch.targets[column].item() == ["XX", "XY", "YX", "YY"].index(order)


def test_temporal_order_baseline_is_uniform_guessing():
    task = TemporalOrderTask(T=20)
    batch = task.sample(10, generator())
    assert task.loss(torch.zeros(10, 4), batch).item() == pytest.approx(math.log(4))
    assert task.baseline() == math.log(4)


def test_reber_string_by_hand():
    """Bits 0 1 0 0 1 1: branch T; inner P (state 3), T, T (loop), V (state 5), V (state 6), E."""
    string, follows = embedded_reber_string([0, 1, 0, 0, 1, 1])
    assert string == "BTBPTTVVETE"
    assert follows == ["TP", "B", "TP", "TV", "TV", "TV", "PV", "E", "T", "E", ""]


# The Reber automaton as published (Reber 1967; Hochreiter & Schmidhuber 1997, fig. 5):
# (state, symbol) -> next state, 0 accepting; an oracle written apart from the generator.
REBER_AUTOMATON = {(1, "T"): 2, (1, "P"): 3, (2, "S"): 2, (2, "X"): 4, (3, "T"): 3, (3, "V"): 5,
                   (4, "X"): 3, (4, "S"): 6, (5, "P"): 4, (5, "V"): 6, (6, "E"): 0}


def accepts_reber(string: str) -> bool:
    """Whether `string` (B ... E) is a Reber string."""
    state = 1
    for symbol in string[1:]:
        state = REBER_AUTOMATON.get((state, symbol))
        if state is None:
            return False
    return string[0] == "B" and state == 0


def test_the_automaton_oracle():
    assert accepts_reber("BTXSE") and accepts_reber("BPVVE") and accepts_reber("BTSSXXTVPSE")
    assert not accepts_reber("BTXE") and not accepts_reber("BPTE")


def test_reber_strings_follow_the_grammar_and_the_long_lag():
    task = EmbeddedReberTask()
    batch = task.sample(300, generator())
    for column, length in enumerate(batch.lengths.tolist()):
        string = "".join(ALPHABET[i] for i in batch.inputs[:length, column].argmax(-1).tolist())
        assert string[1] == string[-2] and string[1] in "TP", "the second symbol comes back before E"
        assert string[0] == "B" and string[2] == "B" and string[-1] == "E"
        assert accepts_reber(string[2:-2]), string
        # every next symbol actually taken is among those marked possible
        for step in range(length - 1):
            assert batch.targets[step, column, ALPHABET.index(string[step + 1])] == 1
        assert torch.all(batch.targets[length - 1, column] == 0), "nothing follows the final E"


def test_reber_perfect_predictions_are_solved_and_one_wrong_unit_is_not():
    task = EmbeddedReberTask()
    batch = task.sample(20, generator())
    logits = batch.targets * 20 - 10
    assert task.score(logits, batch) == 1.0 and task.solved(0.0, 1.0)
    logits[3, 0, 0] = -logits[3, 0, 0]
    assert task.score(logits, batch) == pytest.approx(19 / 20)
    assert not task.solved(0.0, 19 / 20)


def test_reber_baseline_is_the_best_constant_output():
    task = EmbeddedReberTask()
    batch = task.sample(5000, generator(9))
    mask = batch.step_mask()
    frequencies = batch.targets[mask].mean(0)
    constant = torch.logit(frequencies.clamp(1e-6, 1 - 1e-6)).expand_as(batch.targets)
    assert task.loss(constant, batch).item() == pytest.approx(task.baseline(), abs=5e-3)


@pytest.mark.parametrize("name, T, error, message", [
    ("addition", None, ValueError, "unknown task 'addition'; expected one of adding, adding1997, copy, temporal_order, reber"),
    ("reber", 50, ValueError, "task 'reber' has no length parameter, so T cannot be set (got T=50)"),
    ("adding", 1, ValueError, "task 'adding': T must be at least 2, got 1"),
    ("adding1997", 19, ValueError, "task 'adding1997': T must be at least 20, got 19"),
    ("temporal_order", 9, ValueError, "task 'temporal_order': T must be at least 10, got 9"),
    ("copy", 2.5, TypeError, "task 'copy': T must be an int, got 2.5 (float)"),
])
def test_bad_task_parameters(name, T, error, message):
    with pytest.raises(error, match=re.escape(message)):
        make_task(name, T)


@pytest.mark.parametrize("lengths", [None, [3, 1]], ids=["full", "lengths"])
def test_the_step_mask_is_made_on_the_batch_s_device(lengths):
    """Made on the CPU, it could not meet a batch's lengths on a GPU (task reber on CUDA); the
    meta device stands in for one here, and the mask's values are checked on the CPU."""
    from lstmkit.tasks.base import Batch

    inputs, targets = torch.zeros(3, 2, 1), torch.zeros(3, 2, 1)
    lengths = None if lengths is None else torch.tensor(lengths)
    on_meta = Batch(inputs.to("meta"), targets.to("meta"), None if lengths is None else lengths.to("meta"))
    assert on_meta.step_mask().device.type == "meta"
    expected = [[True, True]] * 3 if lengths is None else [[True, True], [True, False], [True, False]]
    assert Batch(inputs, targets, lengths).step_mask().tolist() == expected


@pytest.mark.parametrize("batch_size, generator, error, message", [
    (0, torch.Generator(), ValueError, "batch_size must be a positive integer, got 0"),
    (2.0, torch.Generator(), ValueError, "batch_size must be a positive integer, got 2.0"),
    (True, torch.Generator(), ValueError, "batch_size must be a positive integer, got True"),
    (3, 0, TypeError, "generator must be a torch.Generator, got int"),
])
def test_a_bad_sample_request_is_named(batch_size, generator, error, message):
    """Reber's sample(0) failed in torch's max(), and sample(2.0) or sample(-1) in torch's factories."""
    for task in all_tasks():
        with pytest.raises(error, match=re.escape(message)):
            task.sample(batch_size, generator)
    assert make_task("adding", 5).sample(np.int64(2), torch.Generator()).inputs.shape == (5, 2, 2)
    with pytest.raises(ValueError, match=re.escape("the test set's size must be a positive integer, got 0")):
        make_task("adding", 5).test_set(0, 1)


def test_a_task_given_by_name_to_the_python_api_is_named():
    from lstmkit.pipelines.longlag import TaskTrainingConfig, run_task, train_cell

    for call in (lambda: train_cell("adding", "lstm", TaskTrainingConfig(steps=1)),
                 lambda: run_task("adding", ["lstm"], TaskTrainingConfig(steps=1))):
        with pytest.raises(TypeError, match=re.escape("task must be a Task, such as make_task('adding', T=100) "
                                                      "(lstmkit.tasks), got str 'adding'")):
            call()


def test_a_numpy_integer_length_is_taken_as_a_python_int():
    """np.int64(30) was refused ("T must be an int"); kept as given it would not go into results.json."""
    task = make_task("adding", np.int64(30))
    assert task.T == 30 and type(task.T) is int
    assert task == make_task("adding", 30)


def test_predictions_of_another_shape_are_refused_by_loss_and_score():
    """(B,) against targets (B, 1) broadcast into (B, B): perfect predictions scored 0.11."""
    task = make_task("adding1997", 20)
    batch = task.test_set(100, 0)
    assert task.score(batch.targets, batch) == 1.0
    for method in (task.score, task.loss):
        with pytest.raises(ValueError, match=re.escape("adding1997 T=20 takes predictions of shape (100, 1) (one per "
                                                       "sequence, at its last step), got shape (100,)")):
            method(batch.targets.squeeze(-1), batch)
    copying = make_task("copy", 5)
    batch = copying.test_set(4, 0)
    with pytest.raises(ValueError, match=re.escape("copy T=5 takes predictions of shape (25, 4, 9) (one per step, "
                                                   "time first), got shape (4, 25, 9)")):
        copying.loss(torch.zeros(4, 25, 9), batch)


@pytest.mark.parametrize("name", ["adding", "adding1997", "copy", "temporal_order", "reber"])
def test_a_test_set_is_the_same_whatever_the_callers_default_dtype(name):
    """torch.rand followed the default dtype: under float64 another set, in float64."""
    task = make_task(name, 20) if name != "reber" else make_task(name)
    expected = task.test_set(50, 10000)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        again = task.test_set(50, 10000)
    finally:
        torch.set_default_dtype(previous)
    assert torch.equal(again.inputs, expected.inputs) and torch.equal(again.targets, expected.targets)
    assert again.inputs.dtype == torch.float32


@pytest.mark.parametrize("seed, shown", [(2**64, "18446744073709551616 (int)"), (1.5, "1.5 (float)"), (-1, "-1 (int)")])
def test_a_test_sets_seed_out_of_torchs_range_is_named(seed, shown):
    with pytest.raises(ValueError, match=re.escape(f"seed must be an integer in [0, 2**64 - 1], got {shown}")):
        make_task("adding", 5).test_set(3, seed)
