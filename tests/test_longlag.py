"""The long-time-lag pipeline: the model, training, results files, probes and the demo's words."""

from __future__ import annotations

import collections
import json
import math
import os
import dataclasses
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from helpers import another_run_could_claim, assert_keeps_random_state, held_by_another_run, interrupt_task_in
from lstmkit import plots
from lstmkit.files import written_by_lstmkit
from lstmkit.cells import LSTMStep, PeepholeLSTMStep, make_cell
from lstmkit.checkpoint import load_checkpoint, previous_path, save_checkpoint
from lstmkit.training.config import offset_seed
from lstmkit.training.progress import seconds_text
from lstmkit.models import SequenceModel, SequenceModelConfig
from lstmkit.pipelines import longlag
from lstmkit.pipelines.configs import COMPARED_CELLS, DemoConfig
from lstmkit.pipelines.demo import conclusion
from lstmkit.pipelines.longlag import (TEST_SEED_OFFSET, CellRun, TaskTrainingConfig, build_model, load_model,
                                      load_task_run, run_task, seed_of_test_set, seeded_model, train_cell)
from lstmkit.pipelines.probes import GRADIENT_COLUMNS, decay_orders, gate_panels, gradient_profile
from lstmkit.tasks import Adding1997Task, AddingTask, CopyTask, TemporalOrderTask

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def model(cell: str, readout: str = "last", hidden: int = 6, input_size: int = 2, output: int = 1, **options):
    torch.manual_seed(0)
    return SequenceModel(SequenceModelConfig(cell, input_size, hidden, output, readout, **options))


def test_last_readout_reads_each_sequence_at_its_own_end():
    net = model("lstm")
    inputs, lengths = torch.randn(7, 3, 2), torch.tensor([7, 3, 5])
    predictions = net(inputs, lengths)
    for column, length in enumerate(lengths.tolist()):
        alone = net(inputs[:length, column : column + 1])
        assert torch.allclose(predictions[column], alone[0], atol=1e-6)


def test_hidden_gradient_at_the_last_step_is_the_heads_gradient():
    """For L = Σ (w·h_(T-1) + b − y)², d L / d h_(T-1) = 2 (prediction − y) w, exactly."""
    net = model("gru", engine="reference").double()
    task = AddingTask(T=5)
    batch = task.sample(3, torch.Generator().manual_seed(0))
    inputs, targets = batch.inputs.double(), batch.targets.double()
    gradients = net.hidden_gradients(inputs, lambda predictions: ((predictions - targets) ** 2).sum())
    with torch.no_grad():
        predictions = net(inputs)
    expected = 2 * (predictions - targets) * net.head.weight
    assert torch.allclose(gradients[-1], expected, rtol=1e-12, atol=0)


def test_hidden_gradients_vanish_before_the_last_step_without_recurrence():
    """An RNN with W_hh = 0: h_t does not reach later steps, so d L / d h_t = 0 for t < T − 1."""
    net = model("rnn")
    with torch.no_grad():
        net.recurrent.weight_hh_l0.zero_()
    gradients = net.hidden_gradients(torch.randn(6, 4, 2), lambda predictions: predictions.sum())
    assert torch.all(gradients[:-1] == 0) and torch.all(gradients[-1].abs().sum(-1) > 0)


@pytest.mark.parametrize("cell", ["lstm", "gru", "peephole"])
def test_hidden_gradients_agree_across_engines(cell):
    nets = [model(cell, engine=engine).double() for engine in ("reference", "fused")]
    nets[1].load_state_dict(nets[0].state_dict())
    inputs = torch.randn(8, 3, 2, dtype=torch.float64)
    reference, fused = (net.hidden_gradients(inputs, lambda p: (p ** 2).sum()) for net in nets)
    assert torch.allclose(fused, reference, rtol=1e-10, atol=1e-14)


def test_training_learns_and_is_reproducible():
    task = AddingTask(T=10)
    options = TaskTrainingConfig(hidden_size=16, steps=300, time_budget=None, batch_size=32, lr=1e-2,
                                 test_size=200, eval_every=100, stop_when_solved=False)
    first, second = train_cell(task, "lstm", options), train_cell(task, "lstm", options)
    assert first.test_loss < 0.05 < task.baseline()
    assert first.test_loss == second.test_loss
    assert [point["step"] for point in first.curve] == [0, 100, 200, 300]
    assert first.steps == 300 and first.curve[0]["test_loss"] > first.test_loss


def test_training_stops_at_the_first_evaluation_that_solves_and_says_so(capsys):
    task = TemporalOrderTask(T=10)
    options = TaskTrainingConfig(hidden_size=16, steps=2000, time_budget=None, lr=1e-2, test_size=200,
                                 eval_every=50)
    run = train_cell(task, "lstm", options)
    assert run.solved and run.steps_to_solve == run.steps == run.curve[-1]["step"]
    assert (f"step {run.steps}: stopping before the budget is spent: its last evaluation solved the task "
            f"({task.solved_when})\n") in capsys.readouterr().err
    assert task.solved(run.test_loss, run.test_score)
    assert not any(task.solved(point["test_loss"], point["test_score"]) for point in run.curve[:-1])


def test_run_task_writes_results_curves_figure_and_models(tmp_path):
    task = AddingTask(T=8)
    options = TaskTrainingConfig(hidden_size=8, steps=40, time_budget=None, test_size=64, eval_every=20)
    runs = run_task(task, ["rnn", "cifg"], options, tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert (results["task"], results["T"], results["metric"], results["baseline"]) == ("adding", 8, "mse", 1 / 6)
    for run in runs:
        entry = results["cells"][run.cell]
        assert entry["params"] == sum(p.numel() for p in run.model.parameters())
        assert entry["test"] == run.curve[-1]["test_loss"] and entry["steps"] == 40
        assert entry["solved"] == task.solved(entry["test"], entry["score"])
    rows = (tmp_path / "curves.csv").read_text().splitlines()
    assert rows[0] == "cell,step,seconds,test_loss,test_score"
    assert len(rows) == 1 + sum(len(run.curve) for run in runs)
    assert (tmp_path / "learning_curves.png").read_bytes()[:8] == PNG_SIGNATURE
    restored, restored_task = load_model(tmp_path / "models" / "cifg")
    batch = task.sample(4, torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(restored(batch.inputs), runs[1].model(batch.inputs))
    assert restored_task == task
    assert restored.recurrent.forget_bias == 1.0, "LSTM-family cells start with forget-gate bias 1"
    rerun = TaskTrainingConfig(hidden_size=8, steps=2, time_budget=None, test_size=64, eval_every=2)
    (tmp_path / "models" / "analysis").mkdir()  # the user's own, which a rerun deleted with the earlier cells
    (tmp_path / "models" / "analysis" / "notes.md").write_text("mine")
    run_task(AddingTask(T=5), ["rnn"], rerun, tmp_path)  # the same folder again, one cell on another T
    assert sorted(path.name for path in (tmp_path / "models").iterdir()) == ["analysis", "rnn"], \
        "no earlier run's cifg; the user's folder kept"
    loaded = load_task_run(tmp_path)
    assert (loaded.task, list(loaded.models)) == (AddingTask(T=5), ["rnn"])
    (tmp_path / "models" / "rnn" / ".DS_Store").write_text("")  # refused before training, not after the cell
    with pytest.raises(FileExistsError, match=re.escape(f"{tmp_path / 'models' / 'rnn'} holds files that are not a "
                                                        "checkpoint's (.DS_Store)")):
        run_task(AddingTask(T=5), ["rnn"], dataclasses.replace(rerun, steps=10**9), tmp_path)


def test_a_task_interrupted_in_one_cell_keeps_the_cells_before_it(tmp_path, monkeypatch):
    """Each cell's results and model are written as it finishes: Ctrl-C in the third cell
    leaves the first two, as a finished run of those two would (an earlier run's cells gone)."""
    task = AddingTask(T=5)
    options = TaskTrainingConfig(hidden_size=8, steps=4, time_budget=None, test_size=16, eval_every=2)
    run_task(task, ["gru"], options, tmp_path)  # an earlier run in the same folder
    interrupt_task_in(monkeypatch, "lstm")
    with pytest.raises(KeyboardInterrupt):
        run_task(task, ["rnn", "cifg", "lstm"], options, tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["cells"]) == ["rnn", "cifg"]
    assert sorted(path.name for path in (tmp_path / "models").iterdir()) == ["cifg", "rnn"]
    assert {row.split(",")[0] for row in (tmp_path / "curves.csv").read_text().splitlines()[1:]} == {"rnn", "cifg"}
    assert list(load_task_run(tmp_path).models) == ["rnn", "cifg"]
    with pytest.raises(ValueError, match=f"{re.escape(str(tmp_path))} holds no lstm, gru model: its run trained "
                                         "rnn, cifg"):
        load_task_run(tmp_path, ["rnn", "lstm", "gru"])


def diverge_in(monkeypatch, cell: str, step: int) -> None:
    """Make the training loss of `cell` NaN at `step` of a task run."""
    loss_of = longlag.TaskJob.train_loss

    def train_loss(job, model, at):
        loss, items = loss_of(job, model, at)
        return (loss * math.nan if job.label.endswith(f" {cell}") and at == step else loss), items

    monkeypatch.setattr(longlag.TaskJob, "train_loss", train_loss)


def test_a_cell_that_diverges_is_reported_and_the_comparison_goes_on(tmp_path, monkeypatch, capsys):
    """One diverging cell once stopped `lstmkit task` with an error, the other cells untrained."""
    task = AddingTask(T=5)
    options = TaskTrainingConfig(hidden_size=8, steps=6, time_budget=None, test_size=16, eval_every=2)
    run_task(task, ["rnn"], options, tmp_path)  # an earlier run's rnn model, which this run's cannot replace
    diverge_in(monkeypatch, "rnn", 3)
    runs = run_task(task, ["rnn", "lstm"], options, tmp_path)
    diverged, trained = runs
    assert (diverged.diverged_at, diverged.steps, diverged.model, diverged.solved) == (3, 3, None, False)
    assert math.isnan(diverged.test_loss) and [point["step"] for point in diverged.curve] == [0, 2]
    assert diverged.diverged.startswith("adding T=5 rnn: training diverged at step 3: the training loss became nan")
    assert (trained.diverged_at, trained.steps) == (None, 6) and trained.model is not None
    err = capsys.readouterr().err
    assert f"{diverged.diverged}\nrnn is reported as diverged, without a model; the other cells train on\n" in err
    results = json.loads((tmp_path / "results.json").read_text())
    assert {cell: (row["test"], row["diverged_at"], row["steps"]) for cell, row in results["cells"].items()} == {
        "rnn": (None, 3, 3), "lstm": (trained.test_loss, None, 6)}
    assert [row.split(",")[:2] for row in (tmp_path / "curves.csv").read_text().splitlines()[1:]] == [
        ["rnn", "0"], ["rnn", "2"], ["lstm", "0"], ["lstm", "2"], ["lstm", "4"], ["lstm", "6"]]
    assert [path.name for path in (tmp_path / "models").iterdir()] == ["lstm"], "the earlier run's rnn is not this's"
    with pytest.warns(UserWarning, match="rnn diverged at step 3 in the run of"):
        assert list(load_task_run(tmp_path).models) == ["lstm"]
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path} holds no rnn model: its run trained lstm (rnn "
                                                   "diverged at step 3)")):
        load_task_run(tmp_path, ["rnn"])
    table = longlag.results_table(task, runs).splitlines()
    assert table[1].split() == ["rnn", "105", "nan", "0.1667", "no,", "diverged", "-", "3",
                                seconds_text(diverged.seconds)]
    with pytest.raises(longlag.TrainingDiverged, match="^adding T=5 rnn: training diverged at step 3"):
        train_cell(task, "rnn", options).trained_model()  # the probes' training: no model, the reason


def test_a_task_whose_every_cell_diverges_exits_non_zero_with_its_results(tmp_path, capsys):
    from lstmkit.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["task", "adding", "--T", "5", "--cells", "rnn,gru", "--hidden-size", "4", "--steps", "4", "--lr",
              "1e38", "--clip", "1e30", "--test-size", "8", "--out", str(tmp_path)])
    assert exited.value.code == 1
    out, err = capsys.readouterr()
    assert out.endswith(f"wrote {tmp_path}/results.json, curves.csv, learning_curves.png\n"), "and no models/"
    assert err.endswith(f"lstmkit: error: every cell diverged (above); {tmp_path} holds their results, without "
                        "models\n")
    results = json.loads((tmp_path / "results.json").read_text())
    assert [row["diverged_at"] for row in results["cells"].values()] == [0, 0]
    assert not (tmp_path / "models").exists()
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path} holds no rnn, gru model: its run kept no model (rnn "
                                                   "diverged at step 0; gru diverged at step 0)")):
        load_task_run(tmp_path)


def test_a_task_compares_the_lstms_gate_ablations_by_name(tmp_path):
    """`--cells lstm,nfg,noaf`: each saved under its name, and loaded as the LSTM with that switch off."""
    task = AddingTask(T=5)
    options = TaskTrainingConfig(hidden_size=4, steps=2, time_budget=None, test_size=8, eval_every=2)
    runs = run_task(task, ["lstm", "nfg", "noaf"], options, tmp_path)
    assert [run.parameters for run in runs] == [4 * 4 * (2 + 4) + 2 * 4 * 4 + 5, 3 * 4 * (2 + 4) + 2 * 3 * 4 + 5,
                                                4 * 4 * (2 + 4) + 2 * 4 * 4 + 5]
    for run in runs[1:]:
        restored, _ = load_model(tmp_path / "models" / run.cell)
        assert restored.config.cell == run.cell
        assert restored.recurrent.cell == make_cell(run.cell)
        batch = task.sample(3, torch.Generator().manual_seed(1))
        with torch.no_grad():
            assert torch.equal(restored(batch.inputs), run.model(batch.inputs))
    assert load_model(tmp_path / "models" / "nfg")[0].recurrent.forget_bias is None, "no forget gate to bias"
    assert load_model(tmp_path / "models" / "noaf")[0].recurrent.forget_bias == 1.0
    with pytest.raises(ValueError, match=re.escape("cell lstm(forget_gate=False) has no forget gate: leave nfg out "
                                                   "of the cells (lstm, nfg; --cells)")):
        run_task(task, ["lstm", "nfg"], dataclasses.replace(options, init=("chrono",)), tmp_path)


def test_a_diverged_cell_of_a_scored_task_has_no_score_in_the_table():
    """The table formatted a diverged run's score, None, as a number: the comparison crashed."""
    task = CopyTask(T=5)
    runs = [CellRun("rnn", 10, math.nan, None, False, None, 0, 0.0, diverged_at=0),
            CellRun("lstm", 20, 0.5, 0.25, True, 8, 8, 1.5)]
    table = longlag.results_table(task, runs).splitlines()
    assert table[0].split()[:6] == ["cell", "params", "test", "cross-entropy", "test", "accuracy"]
    assert table[1].split() == ["rnn", "10", "nan", "-", f"{task.baseline():.4f}", "no,", "diverged", "-", "0", "0.000"]
    assert table[2].split() == ["lstm", "20", "0.5000", "0.250", f"{task.baseline():.4f}", "yes", "8", "8", "1.5"]


def test_sigterm_in_a_task_is_said_as_sigterm(tmp_path, monkeypatch, capsys):
    """A task turned SIGTERM into its own interrupt, which the command said as Ctrl-C's (130)."""
    from lstmkit.cli import Terminated, main

    def terminated(task, cell, *arguments):
        raise Terminated

    monkeypatch.setattr(longlag, "train_cell", terminated)
    with pytest.raises(SystemExit) as stopped:
        main(["task", "adding", "--T", "5", "--steps", "2", "--out", str(tmp_path)])
    assert stopped.value.code == 143
    assert capsys.readouterr().err == "lstmkit: interrupted (SIGTERM)\n"


def test_a_demo_whose_every_cell_diverges_draws_no_gradients_and_exits_non_zero(tmp_path, monkeypatch, capsys):
    """It said it had drawn gradient_norms.png, kept an earlier run's profiles beside its results, and exited 0."""
    from lstmkit.cli import main
    from lstmkit.pipelines import demo

    config = demo.DemoConfig(T=5, steps=2, hidden_size=6)
    assert [path.name for path in demo.run_demo(tmp_path, config).figures] == ["learning_curves.png",
                                                                               "gradient_norms.png"]
    for cell in COMPARED_CELLS:
        diverge_in(monkeypatch, cell, 0)
    run = demo.run_demo(tmp_path, config)
    assert [path.name for path in run.figures] == ["learning_curves.png"] and run.lines[-1].endswith("to probe.")
    assert not (tmp_path / "gradient_norms.csv").exists() and not (tmp_path / "gradient_norms.png").exists()
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        main(["demo", "--T", "5", "--steps", "2", "--out", str(tmp_path)])
    assert stopped.value.code == 1
    out, err = capsys.readouterr()
    assert out.endswith(f"figures: {tmp_path / 'learning_curves.png'}\n")
    assert err.endswith("lstmkit: error: every cell diverged (above); " + str(tmp_path) + " holds their results, "
                        "without models\n")


def test_a_test_loss_that_overflows_is_a_diverged_cell(tmp_path, monkeypatch):
    """A test loss of inf (predictions past float32's square root), the training loss finite,
    was reported as a cell that trained: its model kept, and probed."""
    evaluate, evaluations = longlag.TaskJob.evaluate, collections.Counter()

    def overflowing(job):  # gru's evaluations after the one at step 0
        evaluations[job.label] += 1
        scores = evaluate(job)
        overflowed = job.label.endswith(" gru") and evaluations[job.label] > 1
        return {**scores, "test_loss": math.inf} if overflowed else scores

    monkeypatch.setattr(longlag.TaskJob, "evaluate", overflowing)
    options = TaskTrainingConfig(hidden_size=4, steps=4, time_budget=None, test_size=8, eval_every=2)
    gru, lstm = run_task(AddingTask(T=5), ["gru", "lstm"], options, tmp_path)
    assert (gru.diverged_at, gru.model, lstm.diverged_at) == (2, None, None)
    assert "adding T=5 gru: training diverged at step 2: the test_loss became inf" in gru.diverged
    with pytest.warns(UserWarning, match=re.escape(f"gru diverged at step 2 in the run of {tmp_path}: no model of it "
                                                   "to load")):
        assert list(load_task_run(tmp_path).models) == ["lstm"]


def test_an_interrupt_between_two_cells_keeps_the_finished_cells_files_whole(tmp_path, monkeypatch):
    """Ctrl-C while a finished cell's files were written escaped as a bare interrupt: no table,
    and no figure of it."""
    drawn = plots.learning_curves
    calls: list[int] = []

    def interrupted_once(*arguments):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return drawn(*arguments)

    monkeypatch.setattr(plots, "learning_curves", interrupted_once)
    options = TaskTrainingConfig(hidden_size=4, steps=2, time_budget=None, test_size=8, eval_every=2)
    with pytest.raises(longlag.TaskInterrupted) as stopped:
        run_task(AddingTask(T=5), ["rnn", "lstm"], options, tmp_path)
    assert [run.cell for run in stopped.value.runs] == ["rnn"]
    assert list(json.loads((tmp_path / "results.json").read_text())["cells"]) == ["rnn"]
    assert (tmp_path / "learning_curves.png").read_bytes()[:8] == PNG_SIGNATURE
    assert [path.name for path in (tmp_path / "models").iterdir()] == ["rnn"]


def test_a_gradient_probe_that_trains_probes_the_cells_that_did_not_diverge(tmp_path, monkeypatch):
    from lstmkit.pipelines import probes

    diverge_in(monkeypatch, "rnn", 1)
    with pytest.warns(UserWarning, match=r"adding T=5 rnn: training diverged at step 1: .*\)\. rnn has no trained "
                                         r"model to probe\.$"):
        _, profiles, _ = probes.probe_gradients(tmp_path, task=AddingTask(T=5), cells=["rnn", "lstm"],
                                                config=QUICK_PROBE)
    assert {moment: list(cells) for moment, cells in profiles.items()} == {
        "at initialisation": ["lstm"], "after training": ["lstm"]}
    diverge_in(monkeypatch, "lstm", 0)
    with pytest.raises(longlag.TrainingDiverged, match="(?s)^adding T=5 rnn: training diverged at step 1.*\nadding "
                                                       "T=5 lstm: training diverged at step 0"):  # each cell's reason
        probes.probe_gradients(tmp_path, task=AddingTask(T=5), cells=["rnn", "lstm"], config=QUICK_PROBE)


def test_an_interrupted_demo_leaves_no_earlier_runs_gradient_profiles(tmp_path, monkeypatch):
    """Interrupted in a cell or in the probe after training, the demo kept an earlier run's
    gradient_norms beside this run's results, and the probe's interrupt showed no table."""
    from lstmkit.pipelines import demo

    config = demo.DemoConfig(T=5, steps=2, hidden_size=6)
    demo.run_demo(tmp_path, config)

    def interrupted(*arguments):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "gradient_profiles", interrupted)
    with pytest.raises(longlag.TaskInterrupted) as stopped:
        demo.run_demo(tmp_path, config)
    assert [run.cell for run in stopped.value.runs] == list(COMPARED_CELLS)
    assert not (tmp_path / "gradient_norms.csv").exists() and not (tmp_path / "gradient_norms.png").exists()


def test_without_a_budget_a_cell_trains_ten_minutes():
    assert TaskTrainingConfig().time_budget == 600.0 and TaskTrainingConfig().steps is None
    assert TaskTrainingConfig(steps=5).time_budget is None, "the default applies only when no budget is given"
    with pytest.raises(ValueError, match="steps must be positive, got 0"):
        TaskTrainingConfig(steps=0)


def test_settings_that_act_on_a_validation_loss_are_refused_for_a_task():
    """A task has no validation loss: NT-ASGD, which starts averaging when it stops improving,
    would be plain SGD, and patience would never act; both are refused, not ignored."""
    with pytest.raises(ValueError, match=re.escape("optimizer='nt-asgd' (--optimizer nt-asgd) starts averaging once "
                                                   "the validation loss stops improving, and a task has no")):
        TaskTrainingConfig(optimizer="nt-asgd")
    with pytest.raises(ValueError, match=re.escape("patience acts once the validation loss stops improving, and a "
                                                   "task has none (it stops when solved, or at its budget); got "
                                                   "patience=3")):
        TaskTrainingConfig(patience=3)


def test_the_largest_seed_draws_its_test_set_from_a_seed_in_range():
    """The test set's seed is the training seed plus an offset, wrapped into [0, 2**64), as are
    the speech and translation pipelines' epoch seeds (seed + epoch)."""
    assert offset_seed(2**64 - 1, 1) == 0 and offset_seed(5, 2) == 7
    assert seed_of_test_set(0) == TEST_SEED_OFFSET
    assert seed_of_test_set(2**64 - 1) == TEST_SEED_OFFSET - 1
    torch.Generator().manual_seed(seed_of_test_set(2**64 - 1))


def test_chrono_max_without_chrono_initialisation_is_refused():
    with pytest.raises(ValueError, match=re.escape("chrono_max (--chrono-max) goes with init 'chrono' (--init "
                                                   "chrono); got chrono_max=10 with init orthogonal")):
        TaskTrainingConfig(init=("orthogonal",), chrono_max=10)


@pytest.mark.parametrize("settings, got", [
    ({}, "got chrono_max=2 (--chrono-max), the training sequences' length, as --chrono-max is not given"),
    ({"chrono_max": 1.5}, "got chrono_max=1.5 (--chrono-max)"),
])
def test_a_chrono_max_no_cell_takes_is_not_blamed_on_a_cell(settings, got):
    """It told the user to leave the first cell out, which every other cell would have refused
    too; it now says what to change."""
    config = TaskTrainingConfig(init=("chrono",), **settings)
    message = ("init='chrono' needs chrono_max, the longest dependency expected in steps, a finite number above 2; "
               + got)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        longlag.check_cells(AddingTask(T=2 if not settings else 10), ["lstm", "cifg"], config)


def test_a_hidden_size_a_cell_cannot_take_is_refused_before_the_run_is_announced(capsys):
    from lstmkit.cli import main

    with pytest.raises(SystemExit):
        main(["task", "adding", "--T", "5", "--cells", "lstm,layernorm", "--hidden-size", "1", "--steps", "1"])
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == (
        "lstmkit: error: cell 'layernorm' needs hidden_size >= 2: LN(c') over a single feature always equals its "
        "shift, so the cell state would never reach h; got hidden_size=1: leave layernorm out of the cells (lstm, "
        "layernorm; --cells)\n")


def test_checkpoint_replaces_atomically_and_survives_an_interrupted_swap(tmp_path):
    target = tmp_path / "checkpoint"
    save_checkpoint(target, {"version": 1}, {"w": torch.zeros(2)})
    save_checkpoint(target, {"version": 2}, {"w": torch.ones(2)})
    config, tensors = load_checkpoint(target)
    assert config == {"version": 2} and torch.equal(tensors["w"], torch.ones(2))
    assert sorted(os.listdir(tmp_path)) == ["checkpoint"], "no temporary or previous folders left"
    with pytest.raises(TypeError, match="checkpoint tensors must be torch.Tensor, got str for 'w' in model.safetensors"):
        save_checkpoint(target, {"version": 3}, {"w": "not a tensor"})
    assert load_checkpoint(target)[0] == {"version": 2}, "a failed save leaves the old checkpoint"
    assert sorted(os.listdir(tmp_path)) == ["checkpoint"]
    os.replace(target, previous_path(target))  # as if killed between the two renames
    assert load_checkpoint(target)[0] == {"version": 2}


def test_loading_something_that_is_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not an lstmkit checkpoint: expected config.json and model.safetensors"):
        load_model(tmp_path)
    save_checkpoint(tmp_path / "other", {"kind": "char_lm"}, {"w": torch.zeros(1)})
    with pytest.raises(ValueError, match="holds a 'char_lm' checkpoint, not a model saved by `lstmkit task`"):
        load_model(tmp_path / "other")
    # A run folder of `lm train` (best/ and last/): read as its best/, whose kind is named.
    for name in ("best", "last"):
        save_checkpoint(tmp_path / "lm" / name, {"kind": "language_model"}, {"w": torch.zeros(1)})
    with pytest.raises(ValueError, match=re.escape(
            f"{tmp_path / 'lm' / 'best'} holds a 'language_model' checkpoint, not a model saved by `lstmkit task`")):
        load_model(tmp_path / "lm")


def test_a_checkpoint_naming_another_task_than_its_model_is_refused_by_name(tmp_path):
    longlag.save_model(build_model(AddingTask(T=8), "lstm", 4, 0), AddingTask(T=8), tmp_path / "model")
    config_file = tmp_path / "model" / "config.json"
    saved = json.loads(config_file.read_text())
    for edited, message in [
            ({"name": "copy", "T": 8}, "names the task copy T=8, of 10 inputs, 9 outputs and readout 'every', but its "
                                       "model has 2, 1 and 'last'"),
            ({"name": "sorting", "T": 8}, "names no task this lstmkit can build: ValueError(\"unknown task 'sorting'"),
            (None, "names no task this lstmkit can build: TypeError")]:
        config_file.write_text(json.dumps({**saved, "task": edited}))
        with pytest.raises(ValueError, match=re.escape(f"{config_file} {message}")):
            load_model(tmp_path / "model")


def test_gradient_profile_averages_each_sequences_own_gradient():
    net = model("lstm")
    task = AddingTask(T=6)
    batch = task.sample(4, torch.Generator().manual_seed(0))
    profile = gradient_profile(net, task, batch)
    gradients = net.hidden_gradients(batch.inputs, lambda predictions: task.loss(predictions, batch) * 4)
    assert profile.shape == (6,)
    assert np.allclose(profile, gradients.norm(dim=-1).mean(1).detach().numpy())


def test_a_gradient_too_small_to_square_in_float32_is_measured_not_zero(monkeypatch):
    """1e-20 per unit: its squares underflow float32 (and flush to zero as the commands set
    it), its norm does not."""
    net = model("lstm")
    task = AddingTask(T=6)
    batch = task.sample(4, torch.Generator().manual_seed(0))
    tiny = torch.full((6, 4, 16), 1e-20)  # (T, B, H)
    monkeypatch.setattr(net, "hidden_gradients", lambda *arguments: tiny)
    flushing = torch.set_flush_denormal(True)
    try:
        assert tiny.norm(dim=-1).max().item() == 0 or not flushing  # what a float32 norm gave
        assert gradient_profile(net, task, batch) == pytest.approx(np.full(6, 4e-20), rel=1e-6)
    finally:
        torch.set_flush_denormal(False)


def test_decay_orders():
    assert decay_orders(np.array([1e-3, 1e-2, 1.0])) == pytest.approx(3.0)
    assert decay_orders(np.array([2.0, 1.0])) == pytest.approx(math.log10(0.5))
    assert decay_orders(np.array([0.0, 1.0])) == math.inf
    assert math.isnan(decay_orders(np.array([1.0, 0.0])))


@pytest.mark.parametrize("task_type", [Adding1997Task, TemporalOrderTask])
def test_gradient_profile_ends_at_the_longest_sequence_of_the_batch(task_type):
    """These tasks pad to T + T/10 steps; a probe batch whose longest sequence stops short of
    that used to end its profile with zeros, and decay_orders failed on log10(0) ("math domain
    error") or measured from a step no sequence reaches."""
    task = task_type(T=20)
    net = build_model(task, "lstm", 4, seed=0)
    generator = torch.Generator().manual_seed(0)
    batch = next(batch for batch in (task.sample(2, generator) for _ in range(100))
                 if int(batch.lengths.max()) < batch.inputs.shape[0])
    profile = gradient_profile(net, task, batch)
    assert profile.shape == (int(batch.lengths.max()),)
    assert bool((profile > 0).all())
    assert math.isfinite(decay_orders(profile))


@pytest.mark.parametrize("cell, panels", [
    ("lstm", ["forget gate", "input gate", "output gate", "candidate", "cell state"]),
    ("gru", ["reset gate", "update gate", "candidate"]),
    ("cifg", ["forget gate", "input gate", "output gate", "candidate", "cell state"]),
])
def test_gate_panels(cell, panels):
    task = TemporalOrderTask(T=20)
    net = model(cell, input_size=task.input_size, output=task.output_size)
    drawn, length = gate_panels(net, task, seed=0)
    assert list(drawn) == panels
    assert 20 <= length <= 22
    for name, values in drawn.items():
        assert values.shape == (length, 6)
        if name.endswith("gate"):
            assert values.min() > 0 and values.max() < 1


def run(cell: str, solved: bool, loss: float, steps: int) -> CellRun:
    return CellRun(cell, 100, loss, None, solved, steps if solved else None, steps, 10.0)


def test_conclusion_when_the_gated_cells_solve_and_the_rnn_does_not():
    task = AddingTask(T=100)
    runs = [run("rnn", False, 0.165, 6000), run("gru", True, 0.0055, 1200), run("lstm", True, 0.0073, 3100)]
    profiles = {"rnn": np.array([0.0, 1e-9, 1.0]), "gru": np.array([0.6, 0.7, 1.0]), "lstm": np.array([0.2, 0.5, 1.0])}
    learning, gradients = conclusion(task, runs, profiles)
    assert learning == ("gru and lstm solved adding T=100 (0.0055 after 1,200 steps, 0.0073 after 3,100 steps); "
                        "rnn did not (test mse 0.1650 after 6,000 steps, where ignoring the input scores 0.1667).")
    assert gradients == ("Going back through the 3 steps, ||d loss / d h_t|| of the trained rnn vanishes (to 0 in "
                         "float32), the gru's falls by 10^0.2 and the lstm's falls by 10^0.7; the gates keep a path "
                         "open that the plain RNN's recurrence closes.")


def test_conclusion_claims_no_open_path_where_the_gated_gradients_also_vanish():
    task = AddingTask(T=100)
    runs = [run("rnn", False, 0.166, 300), run("gru", False, 0.160, 300), run("lstm", False, 0.150, 300)]
    profiles = {"rnn": np.array([1e-30, 1.0]), "gru": np.array([10 ** -15.9, 1.0]), "lstm": np.array([10 ** -8.3, 1.0])}
    _, gradients = conclusion(task, runs, profiles)
    assert gradients == ("Going back through the 2 steps, ||d loss / d h_t|| of the trained rnn falls by 10^30.0, the "
                         "gru's falls by 10^15.9 and the lstm's falls by 10^8.3; it falls less through the gates than "
                         "through the plain RNN's recurrence.")


def test_conclusion_when_nothing_solves_makes_no_claim_about_gates():
    task = AddingTask(T=100)
    runs = [run("rnn", False, 0.166, 5000), run("lstm", False, 0.120, 5000)]
    profiles = {"rnn": np.array([1e-3, 1.0]), "lstm": np.array([1e-3, 1.0])}
    learning, gradients = conclusion(task, runs, profiles)
    assert learning == ("No cell solved adding T=100 within its budget: the best, lstm, reached test mse 0.1200, "
                        "where ignoring the input scores 0.1667.")
    assert gradients.endswith("of the trained rnn falls by 10^3.0 and the lstm's falls by 10^3.0.")


def test_conclusion_says_where_the_time_cap_stopped_a_cell_short_of_its_steps():
    """On a shared machine at a quarter of a core the demo's 300 s cap stopped every cell (rnn
    at 3,178 steps, gru at 850): the table read as a race the gated cells lost, and nothing said
    why. 850 steps in 300 s: 5,000 take 1,765 s, and 1.2 times that, rounded up, is 2,200."""
    task = AddingTask(T=100)
    runs = [dataclasses.replace(run("rnn", False, 0.170, 3178), seconds=300.0),
            dataclasses.replace(run("gru", False, 0.1625, 850), seconds=300.0), run("lstm", True, 0.0075, 2900)]
    learning, = conclusion(task, runs, {})
    assert learning.endswith("The cap of 300 s a cell stopped rnn at step 3,178 and gru at step 850, short of its "
                             "5,000 steps: this machine is slower than the race was set for; --time-budget 2200 gives "
                             "each cell time for all of them.")
    assert "cap" not in conclusion(task, [run("rnn", False, 0.170, 5000)], {})[0]
    own_cap, = conclusion(task, runs, {}, DemoConfig(time_budget=200.0))  # the user's cap: no machine's fault
    assert own_cap.endswith("The cap of 200 s a cell stopped rnn at step 3,178 and gru at step 850, short of its 5,000 "
                            "steps: --time-budget 2200 gives each cell time for all of them.")
    longer, = conclusion(task, runs, {}, DemoConfig(steps=50_000))  # so is a longer race than the demo's
    assert "slower" not in longer and "short of its 50,000 steps" in longer


def test_conclusion_claims_no_open_path_for_gated_cells_that_did_not_solve():
    """At T 30 an untrained LSTM's gradient loses fewer than OPEN_ORDERS orders: 20 steps of
    training, nothing learned, read as "the gates keep a path open"."""
    task = AddingTask(T=30)
    runs = [run("rnn", False, 0.166, 20), run("gru", False, 0.1619, 20), run("lstm", False, 0.1644, 20)]
    profiles = {"rnn": np.array([1e-9, 1.0]), "gru": np.array([10 ** -2.9, 1.0]), "lstm": np.array([10 ** -2.3, 1.0])}
    _, gradients = conclusion(task, runs, profiles)
    assert gradients.endswith("; it falls less through the gates than through the plain RNN's recurrence.")


def test_conclusion_names_a_cell_that_diverged_and_probes_the_others():
    task = AddingTask(T=100)
    lost = dataclasses.replace(run("rnn", False, math.nan, 40), diverged_at=40)
    runs = [lost, run("gru", True, 0.0055, 1200), run("lstm", True, 0.0073, 3100)]
    profiles = {"gru": np.array([0.6, 0.7, 1.0]), "lstm": np.array([0.2, 0.5, 1.0])}
    learning, gradients = conclusion(task, runs, profiles)
    assert learning == ("gru and lstm solved adding T=100 (0.0055 after 1,200 steps, 0.0073 after 3,100 steps). "
                        "rnn diverged at step 40: no trained model to probe.")
    assert gradients.startswith("Going back through the 3 steps, ||d loss / d h_t|| of the trained gru falls by 10^0.2")
    both = [lost, dataclasses.replace(lost, cell="gru", diverged_at=7)]
    assert conclusion(task, both, {}) == ["rnn diverged at step 40 and gru diverged at step 7: no trained model to "
                                          "probe."]


@pytest.mark.parametrize("cell, init", [("lstm", ("chrono",)), ("rnn", ("orthogonal",))])
def test_the_gradient_probe_rebuilds_a_runs_own_starting_point(cell, init):
    """Chrono or orthogonal initialisation included: the 'at initialisation' curve is the run's."""
    task, config = AddingTask(T=20), TaskTrainingConfig(hidden_size=8, init=init, seed=3)
    start = build_model(task, cell, 8, 3, config.regularisers(task.T))
    trained = build_model(task, cell, 8, 3, config.regularisers(task.T))
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.add_(1.0)
    rebuilt = seeded_model(trained.config, 3)
    assert all(torch.equal(rebuilt.state_dict()[name], value) for name, value in start.state_dict().items())
    plain = build_model(task, cell, 8, 3)
    assert not all(torch.equal(plain.state_dict()[name], value) for name, value in start.state_dict().items())


def test_gates_of_a_cell_without_any_are_refused_before_training(monkeypatch, tmp_path):
    from lstmkit.pipelines import probes

    monkeypatch.setattr(probes, "train_cell", lambda *arguments: pytest.fail("trained before refusing"))
    with pytest.raises(ValueError, match="^cell 'rnn' has no gates or cell state to draw$"):
        probes.probe_gates(tmp_path, task=AddingTask(T=5), cell="rnn")


def test_a_trained_run_and_a_task_to_train_are_not_both_taken(tmp_path):
    from lstmkit.pipelines import probes

    with pytest.raises(ValueError, match=re.escape(f"--from {tmp_path} probes the task its run was trained on; --task "
                                                   "trains a new run: give one or the other")):
        probes.probe_gradients(source=tmp_path, task=AddingTask(T=5))
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path} is probed on the task it was trained on; --task trains "
                                                   "a new model: give one or the other")):
        probes.probe_gates(checkpoint=tmp_path, task=AddingTask(T=5))


@pytest.mark.parametrize("name, T", [("reber", None), ("adding1997", 40), ("temporal_order", 50), ("adding", 20)])
def test_shares_of_a_batch_weigh_as_the_whole_batch_does(name, T):
    """Reber's loss is a mean over the valid steps, and strings differ in length: weighed by
    its sequences (as the trainer weighs a share), two processes' gradient was not the whole
    batch's (1 % off). adding1997's and temporal_order's, read at each sequence's end, are means
    over sequences of several lengths, which that reweighing put off (by 3e-3 in the first SGD
    update). Each share's loss, weighed as the trainer weighs it, sums to the loss of one
    process on the whole batch, and so do the gradients (DDP averages them)."""
    from lstmkit.tasks import make_task
    from lstmkit.training import Processes

    task, config = make_task(name, T), TaskTrainingConfig(hidden_size=4, batch_size=8, seed=3)
    test = task.sample(2, torch.Generator().manual_seed(0))
    jobs = [longlag.TaskJob(task, "lstm", config, test, processes, torch.device("cpu"))
            for processes in (Processes(), Processes(0, 2), Processes(1, 2))]
    whole, _ = jobs[0].train_loss(jobs[0].model, 0)  # float32: the two sides differed by 1 %
    shares = [job.train_loss(job.model, 0) for job in jobs[1:]]
    assert {share for _, share in shares} == {4}
    weighed = sum(loss * share / 8 for loss, share in shares)
    assert weighed.item() == pytest.approx(whole.item(), rel=1e-6)
    expected = torch.autograd.grad(whole, list(jobs[0].model.parameters()))
    parts = [torch.autograd.grad(loss * share / 8, list(job.model.parameters()))
             for (loss, share), job in zip(shares, jobs[1:], strict=True)]
    for index, gradient in enumerate(expected):
        torch.testing.assert_close(parts[0][index] + parts[1][index], gradient, rtol=1e-5, atol=1e-7)


def test_chrono_prepares_for_the_longest_of_a_tasks_sequences_where_their_lengths_differ(tmp_path):
    """Reber strings run from 9 steps to over 30; chrono_max defaulted to the length of one
    string drawn, 10."""
    from lstmkit.tasks import EmbeddedReberTask

    drawn = EmbeddedReberTask().sample(longlag.LENGTH_SAMPLE, torch.Generator().manual_seed(0)).lengths
    assert longlag.sequence_length(EmbeddedReberTask()) == int(drawn.max()) > 2 * int(drawn.min())
    assert longlag.sequence_length(AddingTask(T=7)) == 7
    run_task(EmbeddedReberTask(), ["lstm"], dataclasses.replace(QUICK_PROBE, init=("chrono",)), tmp_path)
    saved = json.loads((tmp_path / "models" / "lstm" / "config.json").read_text())
    assert saved["model"]["regularisers"]["chrono_max"] == int(drawn.max())


def test_an_initialisation_named_twice_is_refused_for_every_cell_alike():
    """Not as a setting one cell cannot take ("leave lstm out of the cells")."""
    with pytest.raises(ValueError, match=re.escape("init names each initialisation once, got ('chrono', 'chrono')")
                       + "$"):
        longlag.check_cells(AddingTask(T=10), ["lstm"], TaskTrainingConfig(init=("chrono", "chrono")))


QUICK_PROBE = TaskTrainingConfig(hidden_size=6, steps=2, test_size=8, eval_every=2)


@pytest.mark.parametrize("probe, written", [
    ("gradients", "gradient_norms.csv"), ("gradients", "gradient_norms.png"), ("gates", "gates_lstm.png"),
    ("demo", "gradient_norms.csv"),
])
def test_a_probe_or_the_demo_replaces_its_own_files_and_refuses_a_users(probe, written, tmp_path, monkeypatch):
    """They overwrote a user's gradient_norms.csv or gates_lstm.png without a word."""
    from lstmkit.pipelines import demo, probes

    def run() -> None:
        if probe == "gradients":
            probes.probe_gradients(tmp_path, task=AddingTask(T=5), cells=["lstm"], config=QUICK_PROBE)
        elif probe == "gates":
            probes.probe_gates(tmp_path, task=AddingTask(T=5), cell="lstm", config=QUICK_PROBE)
        else:
            demo.run_demo(tmp_path, demo.DemoConfig(T=5, steps=2, hidden_size=6))

    run()
    if written.endswith(".csv"):  # a file lstmkit wrote, of other content: the next run replaces it
        (tmp_path / written).write_text(",".join(GRADIENT_COLUMNS) + "\nearlier,run,0,1.0\n")
    else:
        figure = Figure()
        figure.subplots().plot([3, 1])
        plots.save(figure, tmp_path / written)
    earlier = (tmp_path / written).read_bytes()
    run()
    assert (tmp_path / written).read_bytes() != earlier
    (tmp_path / written).write_bytes(b"mine")
    monkeypatch.setattr(longlag, "train_cell", lambda *arguments: pytest.fail("trained before refusing"))
    monkeypatch.setattr(probes, "train_cell", lambda *arguments: pytest.fail("trained before refusing"))
    command = {"gradients": "probe gradients", "gates": "probe gates", "demo": "the demo"}[probe]
    unmarked = " (a figure an earlier lstmkit wrote carries no mark)" if written.endswith(".png") else ""
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path} holds {written}, which lstmkit cannot tell for its "
                                                   f"own{unmarked}; {command} there would overwrite it: remove it, or "
                                                   "choose another folder")):
        run()  # the demo's own folder included: its results.json does not make a CSV of the user's its own
    assert (tmp_path / written).read_bytes() == b"mine"


def test_probe_gates_of_a_task_run_folder_names_its_models(tmp_path):
    """`probe gates RUN` said only that RUN is not a checkpoint."""
    from lstmkit.pipelines import probes

    run_task(AddingTask(T=5), ["lstm", "gru"], QUICK_PROBE, tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"{tmp_path} is not an lstmkit checkpoint: expected config.json and model.safetensors in it (it holds a "
            f"task run's models/: give {tmp_path / 'models' / 'CELL'}, a cell of gru, lstm)")):
        probes.probe_gates(tmp_path / "gates", checkpoint=tmp_path)
    weights = tmp_path / "models" / "lstm" / "model.safetensors"
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"{weights} is not an lstmkit checkpoint: expected config.json and model.safetensors in it (it is a file "
            f"of one: give the folder that holds it, {weights.parent})")):
        probes.probe_gates(tmp_path / "gates", checkpoint=weights)
    with pytest.raises(FileNotFoundError, match=re.escape(  # the models/ folder itself: it said no more
            f"{tmp_path / 'models'} is not an lstmkit checkpoint: expected config.json and model.safetensors in it "
            "(it holds checkpoints in folders: give one of them, gru, lstm)")):
        probes.probe_gates(tmp_path / "gates", checkpoint=tmp_path / "models")


def test_a_folder_the_probe_removal_cannot_read_is_passed_by(tmp_path, monkeypatch):
    """A folder of the run's this process may not enter, or not write in, failed the rerun after
    its first cell trained (PermissionError), losing that cell's model."""
    from lstmkit.pipelines import probes

    run_task(AddingTask(T=5), ["lstm"], QUICK_PROBE, tmp_path)
    (tmp_path / "private").mkdir()
    probes.probe_gradients(tmp_path / "shared", source=tmp_path)  # a probe in a folder of someone else's
    written, unlink = longlag.written_by_lstmkit, Path.unlink

    def unreadable(path, header=()):
        if path.parent.name == "private":
            raise PermissionError(13, "Permission denied", str(path))
        return written(path, header)

    def unwritable(path, missing_ok=False):
        if path.parent.name == "shared":
            raise PermissionError(13, "Permission denied", str(path))
        unlink(path, missing_ok)

    monkeypatch.setattr(longlag, "written_by_lstmkit", unreadable)
    monkeypatch.setattr(Path, "unlink", unwritable)
    run_task(AddingTask(T=5), ["gru"], QUICK_PROBE, tmp_path)
    assert os.listdir(tmp_path / "models") == ["gru"] and (tmp_path / "private").is_dir()
    assert "gradient_norms.csv" in os.listdir(tmp_path / "shared")


def test_a_rerun_removes_the_earlier_runs_models_alone(tmp_path):
    """A model copied into models/ under a name of one's own (an lstmkit model the earlier run
    did not train) was removed by the rerun as if it had."""
    run_task(AddingTask(T=5), ["rnn", "lstm"], QUICK_PROBE, tmp_path)
    shutil.copytree(tmp_path / "models" / "rnn", tmp_path / "models" / "rnn_keep")
    run_task(AddingTask(T=5), ["lstm"], QUICK_PROBE, tmp_path)
    assert sorted(os.listdir(tmp_path / "models")) == ["lstm", "rnn_keep"]


def test_a_probe_of_a_run_moved_elsewhere_or_unrecorded_goes_with_its_models(tmp_path):
    """Its record names the run, and where it is relative to the probe, so it holds when the run
    is moved with its probes, and a copy of the probe beside another run is no probe of that one;
    a probe an earlier lstmkit wrote without a record is taken to be the run's, as it was then."""
    from lstmkit.pipelines import probes

    run_task(AddingTask(T=5), ["lstm"], QUICK_PROBE, tmp_path / "a")
    probes.probe_gradients(tmp_path / "a" / "probe", source=tmp_path / "a")
    probes.probe_gates(tmp_path / "a" / "gates", tmp_path / "a" / "models" / "lstm")
    (tmp_path / "a" / "gates" / ".lstmkit-probes.json").unlink()
    shutil.copytree(tmp_path / "a" / "probe", tmp_path / "c" / "probe_of_a")  # a copy beside another run
    run_task(AddingTask(T=5), ["gru"], QUICK_PROBE, tmp_path / "c")
    run_task(AddingTask(T=5), ["rnn"], QUICK_PROBE, tmp_path / "c")  # replaces c's run: a's probe is no probe of it
    assert "gradient_norms.csv" in os.listdir(tmp_path / "c" / "probe_of_a")
    (tmp_path / "a").rename(tmp_path / "b")
    run_task(AddingTask(T=5), ["gru"], QUICK_PROBE, tmp_path / "b")
    assert sorted(os.listdir(tmp_path / "b")) == ["curves.csv", "learning_curves.png", "models", "results.json"]


def test_a_task_run_replacing_an_earlier_one_removes_lstmkits_probes_of_its_models(tmp_path):
    """A task rerun into the demo's folder left the demo's gradient profiles (of T 5 rnn, gru and
    lstm models, deleted) beside its own nfg run, and a probe's gate heat maps likewise; a
    user's figure stays."""
    from lstmkit.pipelines import demo, probes

    demo.run_demo(tmp_path, demo.DemoConfig(T=5, steps=2, hidden_size=6))
    probes.probe_gates(tmp_path, task=AddingTask(T=5), cell="lstm", config=QUICK_PROBE)
    figure = Figure()
    figure.subplots().plot([3, 1])
    figure.savefig(tmp_path / "gates_mine.png")
    # the README's probe of a run, in a folder of its own inside the run's (left behind before)
    probes.probe_gradients(tmp_path / "probe", source=tmp_path)
    (tmp_path / "notes").mkdir()
    figure.savefig(tmp_path / "notes" / "gates_mine.png")
    (tmp_path / "empty").mkdir()  # a user's empty folder: not one the removal empties
    run_task(AddingTask(T=5), ["gru"], QUICK_PROBE, tmp_path / "nested")  # a run of its own, and its probe
    probes.probe_gates(tmp_path / "nested", task=AddingTask(T=5), cell="lstm", config=QUICK_PROBE)
    # probes of other models kept in the run's folder: trained by the probe, and of another run's model
    probes.probe_gradients(tmp_path / "trained", task=AddingTask(T=5), cells=["gru"], config=QUICK_PROBE)
    probes.probe_gates(tmp_path / "other", tmp_path / "nested" / "models" / "gru")
    probes.probe_gates(tmp_path / "other", tmp_path / "models" / "lstm")  # beside it, one of this run's
    assert {"gradient_norms.csv", "gradient_norms.png", "gates_lstm.png"} <= set(os.listdir(tmp_path))
    assert {"gradient_norms.csv", "gradient_norms.png"} <= set(os.listdir(tmp_path / "probe"))
    run_task(AddingTask(T=5), ["nfg"], QUICK_PROBE, tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["curves.csv", "empty", "gates_mine.png", "learning_curves.png", "models",
                                            "nested", "notes", "other", "results.json", "trained"]
    assert os.listdir(tmp_path / "notes") == ["gates_mine.png"]
    assert "gates_lstm.png" in os.listdir(tmp_path / "nested")
    assert {"gradient_norms.csv", "gradient_norms.png"} <= set(os.listdir(tmp_path / "trained"))
    assert sorted(os.listdir(tmp_path / "other")) == [".lstmkit-probes.json", "gates_gru.png"]
    fresh = tmp_path / "probed"  # no earlier run there: the probes' figures, of models trained in memory, stay
    probes.probe_gates(fresh, task=AddingTask(T=5), cell="gru", config=QUICK_PROBE)
    run_task(AddingTask(T=5), ["lstm"], QUICK_PROBE, fresh)
    assert "gates_gru.png" in os.listdir(fresh)


@pytest.mark.skipif(os.name == "nt", reason="folders are locked where the system has flock")
@pytest.mark.parametrize("probe", ["gradients", "gates", "demo"])
def test_a_probe_or_the_demo_holds_its_folder_from_its_checks_to_its_last_figure(probe, tmp_path, monkeypatch):
    """Two probes into one folder wrote their profiles and figures over each other's, and the demo
    let its folder go between its cells' training and its gradient figure."""
    from lstmkit.pipelines import demo, probes

    def run() -> None:
        if probe == "gradients":
            probes.probe_gradients(tmp_path / "run", task=AddingTask(T=5), cells=["lstm"], config=QUICK_PROBE)
        elif probe == "gates":
            probes.probe_gates(tmp_path / "run", task=AddingTask(T=5), cell="lstm", config=QUICK_PROBE)
        else:
            demo.run_demo(tmp_path / "run", demo.DemoConfig(T=5, steps=2, hidden_size=6))

    monkeypatch.setattr(longlag, "train_cell", lambda *arguments: pytest.fail("trained before refusing"))
    monkeypatch.setattr(probes, "train_cell", lambda *arguments: pytest.fail("trained before refusing"))
    with held_by_another_run(tmp_path / "run"):
        with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'run'} is in use: another run is writing")):
            run()
    monkeypatch.undo()
    claimable = []
    module, writer = (probes, "write_gate_heatmaps") if probe == "gates" else (
        (probes, "write_gradient_profiles") if probe == "gradients" else (demo, "write_gradient_profiles"))
    write = getattr(module, writer)

    def checked_write(*arguments) -> None:
        claimable.append(another_run_could_claim(tmp_path / "run"))
        write(*arguments)

    monkeypatch.setattr(module, writer, checked_write)
    run()
    assert claimable == [False], "held while it writes its figure"
    assert another_run_could_claim(tmp_path / "run"), "and let go once it has"


@pytest.mark.parametrize("folder", ["probe", "demo"])
def test_an_earlier_lstmkits_unmarked_gradient_figure_in_its_own_folder_is_replaced(folder, tmp_path):
    """Figures of an lstmkit before the mark carry matplotlib's own: beside lstmkit's CSV, or in
    the demo's folder, the figure is taken for lstmkit's, so a rerun there is not refused."""
    from lstmkit.pipelines import demo, probes

    def run() -> None:
        if folder == "probe":
            probes.probe_gradients(tmp_path, task=AddingTask(T=5), cells=["lstm"], config=QUICK_PROBE)
        else:
            demo.run_demo(tmp_path, demo.DemoConfig(T=5, steps=2, hidden_size=6))

    run()
    if folder == "demo":
        (tmp_path / "gradient_norms.csv").unlink()  # the run's results.json alone vouches for the figure
    figure = Figure()
    figure.subplots().plot([3, 1])
    figure.savefig(tmp_path / "gradient_norms.png")  # unmarked, as an earlier lstmkit saved it
    run()
    assert written_by_lstmkit(tmp_path / "gradient_norms.png")


def test_a_dollar_in_a_users_text_is_drawn_as_written_not_as_tex(tmp_path):
    """A target named spots_$n_$ failed as TeX after the whole run; 'cost in $US and $EUR' lost
    its dollars and spaces (figures)."""
    figure = Figure()
    axes = figure.subplots()
    axes.set_title("spots_$n_$")
    axes.set_ylabel("cost in $US and $EUR")
    axes.set_yscale("log")
    axes.plot([1e-4, 10.0])
    plots.save(figure, tmp_path / "dollars.png")
    assert [text.get_parse_math() for text in (axes.title, axes.yaxis.label)] == [False, False]
    ticks = axes.get_yticklabels()  # a log axis's 10^-4 is matplotlib's TeX: shown raw once parsing was off (review31)
    assert any("mathdefault" in tick.get_text() for tick in ticks) and all(tick.get_parse_math() for tick in ticks)
    assert written_by_lstmkit(tmp_path / "dollars.png")


def test_a_matplotlib_figure_of_the_users_own_is_not_taken_for_lstmkits(tmp_path):
    for name, save in (("ours.png", plots.save), ("theirs.png", lambda figure, path: figure.savefig(path))):
        figure = Figure()
        figure.subplots().plot([1, 2])
        save(figure, tmp_path / name)
    assert written_by_lstmkit(tmp_path / "ours.png") and not written_by_lstmkit(tmp_path / "theirs.png")
    (tmp_path / "data.csv").write_text("moment,cell,t,norm\nat initialisation,lstm,0,1.0\n")
    assert written_by_lstmkit(tmp_path / "data.csv", ("moment", "cell", "t", "norm"))
    assert not written_by_lstmkit(tmp_path / "data.csv", ("cell", "t"))
    assert not written_by_lstmkit(tmp_path / "data.csv"), "a CSV is lstmkit's only by a header it writes"
    (tmp_path / "folder.png").mkdir()
    assert not written_by_lstmkit(tmp_path / "folder.png")


def test_the_gradient_probe_checks_its_cells_before_any_trains(tmp_path, monkeypatch):
    """lstm trained (up to 10 minutes), then chrono on rnn was refused."""
    from lstmkit.pipelines import probes

    monkeypatch.setattr(probes, "train_cell", lambda *arguments: pytest.fail("trained before refusing"))
    with pytest.raises(ValueError, match=re.escape("init='chrono' sets the forget gate's bias; cell rnn has no forget "
                                                   "gate: leave rnn out of the cells (lstm, rnn; --cells)")):
        probes.probe_gradients(tmp_path, task=AddingTask(T=10), cells=["lstm", "rnn"],
                               config=TaskTrainingConfig(init="chrono", chrono_max=10))
    with pytest.raises(ValueError, match=re.escape("init='chrono' sets the forget gate's bias; cell gru has no forget "
                                                   "gate: leave that setting out, or choose a cell that takes it "
                                                   "(--cells)")):  # not "leave gru out", which leaves no cell
        run_task(AddingTask(T=10), ["gru"], TaskTrainingConfig(init="chrono", chrono_max=10), tmp_path)


EXPECTED_RESULTS = 'expected an object with its "task" and "T", its trained "cells" and its "config" (with the seed)'


@pytest.mark.parametrize("content, message", [
    ('{"mine": 1}', f'{EXPECTED_RESULTS}, got {{"mine": 1}}'),
    ("[1, 2]", f"{EXPECTED_RESULTS}, got [1, 2]"),
    ('{"task": "adding", "cells": {}, "config": {"seed": 0}}',
     f'{EXPECTED_RESULTS}, got {{"task": "adding", "cells": {{}}, "config": {{"seed": 0}}}}'),
    ('{"task": "adding", "cells": {"lstm": {}}}', f'{EXPECTED_RESULTS}, got {{"task": "adding", "cells": {{"lstm": {{}}}}}}'),
    ('{"task": "sorting", "cells": {"lstm": {}}, "config": {"seed": 0}}',
     f'{EXPECTED_RESULTS}, got {{"task": "sorting", "cells": {{"lstm": {{}}}}, "config": {{"seed": 0}}}}'),
    ('{"task": "adding", "T": "5", "cells": {"lstm": {}}, "config": {"seed": 0}}',
     f'{EXPECTED_RESULTS}, got {{"task": "adding", "T": "5", "cells": {{"lstm": {{}}}}, "config": {{"seed": 0}}}}'),
    ("y", "it is not JSON (Expecting value: line 1 column 1 (char 0))"),
])
def test_a_task_run_whose_results_are_not_a_runs_is_named(content, message, tmp_path):
    """KeyError 'cells', StopIteration, "'NoneType' object is not subscriptable" came from deep inside."""
    (tmp_path / "models").mkdir()
    (tmp_path / "results.json").write_text(content)
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'results.json'} is not the results of a `lstmkit "
                                                   f"task` run: {message}")):
        load_task_run(tmp_path)


def test_a_model_copied_into_a_task_run_from_another_is_refused_by_name(tmp_path):
    """`probe --from` read the task from the first model alone: another run's lstm put in a run's
    models/ was probed as the run's, silently, and a model of another task first made the probe
    fail on the others (`input.size(-1) must equal input_size=2, got 10`)."""
    run_task(AddingTask(T=5), ["gru", "lstm"], QUICK_PROBE, tmp_path / "run")
    run_task(AddingTask(T=6), ["lstm"], QUICK_PROBE, tmp_path / "other")
    models = tmp_path / "run" / "models"
    assert set(load_task_run(tmp_path / "run").models) == {"gru", "lstm"}
    shutil.rmtree(models / "lstm")
    shutil.copytree(tmp_path / "other" / "models" / "lstm", models / "lstm")
    with pytest.raises(ValueError, match=f"^{re.escape(str(models / 'lstm'))} holds a lstm model of adding T=6, not "
                                         f"the lstm model of adding T=5 that the run of {re.escape(str(tmp_path))}"):
        load_task_run(tmp_path / "run")
    shutil.rmtree(models / "gru")
    shutil.copytree(tmp_path / "other" / "models" / "lstm", models / "gru")
    with pytest.raises(ValueError, match=re.escape(f"{models / 'gru'} holds a lstm model of adding T=6, not the gru "
                                                   "model of adding T=5")):
        load_task_run(tmp_path / "run", ["gru"])


@pytest.mark.parametrize("cells, error, message", [
    ("lstm", TypeError, "cells must be a list of cell names (e.g. ['rnn', 'lstm']), got str 'lstm'"),
    ([], ValueError, "cells must name cells from rnn, lstm, gru, peephole, cifg, layernorm, nig, nfg, nog, niaf, noaf, "
                     "got []"),
    (["lstm", "lsmt"], ValueError, "cells must name cells from rnn, lstm, gru, peephole, cifg, layernorm, nig, nfg, "
                                   "nog, niaf, noaf, got ['lstm', 'lsmt']"),
    (["lstm", "rnn", "lstm"], ValueError, "cells must name each cell once, got ['lstm', 'rnn', 'lstm'] (lstm more "
                                          "than once)"),
])
def test_run_task_checks_its_list_of_cells(cells, error, message, tmp_path):
    """A string was read letter by letter ("unknown cell 'l'"); an empty list trained nothing, silently."""
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        run_task(AddingTask(T=5), cells, QUICK_PROBE, tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(os.name == "nt", reason="folders are locked where the system has flock")
def test_a_task_into_a_folder_another_task_is_writing_in_is_refused(tmp_path):
    """Two `lstmkit task` runs into one --out each wrote results.json and models/ over the other's."""
    options = TaskTrainingConfig(hidden_size=8, steps=2, time_budget=None, test_size=16, eval_every=2)
    with held_by_another_run(tmp_path / "run"):  # another task, training there now
        with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'run'} is in use: another run is writing there "
                                                       "now; wait for it to end, or choose another folder")):
            run_task(AddingTask(T=5), ["gru"], options, tmp_path / "run")
    run_task(AddingTask(T=5), ["gru"], options, tmp_path / "run")
    assert list(json.loads((tmp_path / "run" / "results.json").read_text())["cells"]) == ["gru"]


def test_a_task_run_keeps_the_callers_random_state(tmp_path):
    options = TaskTrainingConfig(hidden_size=8, steps=2, time_budget=None, test_size=8, eval_every=2)
    assert_keeps_random_state(lambda: run_task(AddingTask(T=5), ["lstm"], options, tmp_path))
    assert_keeps_random_state(lambda: load_task_run(tmp_path))  # loads drew the weights they replace
    assert_keeps_random_state(lambda: load_model(tmp_path / "models" / "lstm"))
    assert_keeps_random_state(lambda: train_cell(AddingTask(T=5), "gru", options))
    from lstmkit.pipelines import demo

    assert_keeps_random_state(lambda: demo.run_demo(tmp_path / "demo", demo.DemoConfig(T=5, steps=2, hidden_size=6)))


@pytest.mark.parametrize("options, message", [
    (dict(recurrent_dropout=2.0), "recurrent_dropout must be a probability in [0, 1), got 2.0"),  # "leave rnn out"
    (dict(zoneout="0.1"), "zoneout must be a probability in [0, 1), got '0.1'"),
    (dict(hidden_size=2.5), "hidden_size must be a positive integer, got 2.5"),  # failed in the model
    (dict(test_size=0), "test_size must be a positive integer, got 0"),
])
def test_a_task_config_refuses_what_no_cell_takes_when_built(options, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        TaskTrainingConfig(**options)
    if "hidden_size" in options:
        with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):  # the demo's before it is announced
            DemoConfig(**options)


@pytest.mark.parametrize("cell", [LSTMStep(forget_gate=False), PeepholeLSTMStep()], ids=["ablation", "peephole"])
def test_a_model_config_refuses_a_cell_object_its_checkpoint_cannot_name(cell):
    """SequenceModelConfig(cell=LSTMStep(forget_gate=False), ...) trained, then saved the cell as
    its options alone ({"forget_gate": false, ...}), which no lstmkit could load: `cell must be a
    cell name or a Cell, got dict`."""
    with pytest.raises(TypeError, match=re.escape(
            "SequenceModelConfig.cell must be the name of one of lstmkit's cells (rnn, lstm, gru, peephole, cifg, "
            f"layernorm, nig, nfg, nog, niaf, noaf), which its checkpoint saves, got {cell!r}; a cell object, of your "
            "own or lstmkit's, goes to lstmkit.Recurrent in a model of your own, saved with torch.save")):
        SequenceModel(SequenceModelConfig(cell, 2, 4, 1, "last"))
    assert SequenceModel(SequenceModelConfig("nfg", 2, 4, 1, "last")).recurrent.cell == LSTMStep(forget_gate=False)
