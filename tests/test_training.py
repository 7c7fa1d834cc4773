"""The training core: devices, precision, the schedule, progress, the loop's records, and
several processes under torchrun (gloo on CPU) against one process seeing the same batches."""

from __future__ import annotations

import io
import json
import math
import platform
import re
import warnings
import socket
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from safetensors.torch import load_file, save_file

from helpers import Killed, Quadratic, dies_at_step, straight_and_resumed
import lstmkit
from lstmkit import lm
from lstmkit.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lstmkit.pipelines.configs import ForecasterConfig, SpeechConfig, TaskTrainingConfig
from lstmkit.pipelines.lm import LMTrainingConfig
from lstmkit.training import (Precision, Processes, Trainer, TrainingConfig, TrainingDiverged, decay_progress,
                              learning_rate, loop, resolve_device)
from lstmkit.training.progress import Progress, duration, rate_text, seconds_text
from lstmkit.training.schedule import annealed_progress

SHAKESPEARE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "tinyshakespeare.txt"


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "slice.txt"
    if SHAKESPEARE.is_file():
        path.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:12_000], encoding="utf-8")
    else:
        path.write_text(("First Citizen:\nBefore we proceed any further, hear me speak.\n\n" * 240), encoding="utf-8")
    return path


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(str(torch.device("cpu", 0))) == torch.device("cpu")  # "cpu:0" was refused
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match=r"device 'cuda:1' needs CUDA, and this torch \(.*\) sees no CUDA GPU; "
                                             r"use device 'cpu' \(--device cpu\)$"):
            resolve_device("cuda:1")
    with pytest.raises(ValueError, match=re.escape("device must be auto, cpu, cuda or cuda:N, got 'gpu'")):
        TrainingConfig(device="gpu")
    with pytest.raises(ValueError, match=re.escape("precision must be one of 32, bf16, 16, got 'fp8'")):
        TrainingConfig(precision="fp8")
    assert (TrainingConfig(precision=32).precision, TrainingConfig(precision=16).precision) == ("32", "16")
    with pytest.raises(ValueError, match=re.escape("precision must be one of 32, bf16, 16, got 64")):
        TrainingConfig(precision=64)


def test_precision_autocasts_the_products_and_scales_float16_only():
    x = torch.randn(3, 4)
    with Precision("bf16", torch.device("cpu")).autocast():
        assert (x @ x.T).dtype == torch.bfloat16
    with Precision("32", torch.device("cpu")).autocast():
        assert (x @ x.T).dtype == torch.float32
    assert not Precision("bf16", torch.device("cpu")).scaler.is_enabled()
    with pytest.raises(ValueError, match=re.escape("precision 16 (float16 autocast) runs on CUDA; on cpu use bf16 or 32")):
        Precision("16", torch.device("cpu"))


@pytest.mark.parametrize("caller_autocast", [False, True], ids=["pipeline-own", "caller-on"])
def test_each_autocast_of_a_run_casts_the_weights_as_they_are_now(caller_autocast):
    """Inside an outer autocast (the pipeline's own, off, or a caller's) torch kept its bfloat16
    copies of the weights from the first step for every later one: an optimizer's update never
    reached the products."""
    torch.manual_seed(0)
    linear, x = nn.Linear(4, 4), torch.randn(2, 4)
    precision = Precision("bf16", torch.device("cpu"))
    with torch.autocast("cpu", torch.bfloat16, enabled=caller_autocast):
        with precision.autocast():
            linear(x).sum().backward()
        with torch.no_grad():
            linear.weight.add_(1.0)
        with precision.autocast():
            updated = linear(x)
    with precision.autocast():
        fresh = linear(x)
    expected = F.linear(x.bfloat16(), linear.weight.bfloat16(), linear.bias.bfloat16())
    assert torch.equal(updated, expected) and torch.equal(fresh, expected)
    @torch.compile(backend="eager")
    def broken(a):  # a graph break, then an error, inside the region: super() there failed to compile
        with precision.autocast():
            total = (a @ a.T).sum().item()
            if total > 100:
                raise ValueError("raised inside")
        return a * total

    with pytest.raises(ValueError, match="raised inside"):
        broken(torch.full((2, 2), 10.0))
    assert torch.equal(broken(torch.ones(2, 2)), torch.full((2, 2), 8.0))
    region = precision.autocast()  # one region entered twice, as a torch.autocast can be
    for _ in range(2):
        with region:
            assert torch.equal(linear(x), expected)


def test_bfloat16_on_a_cpu_without_its_kernels_warns_that_it_is_emulated(monkeypatch):
    from lstmkit.training import device

    monkeypatch.setattr(device, "ONEDNN_BFLOAT16", False)
    device.warn_emulated_bfloat16.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Precision("bf16", torch.device("cpu"))
        Precision("bf16", torch.device("cpu"))  # a forecast's refit: said once a process
    assert [str(warning.message) for warning in caught] == [
        "this CPU has no bfloat16 matrix kernels (oneDNN finds no AVX-512 BF16 or AMX), so bfloat16 products are "
        "emulated, the slower the larger they are (training a 64-unit LSTM took 4 x as long as in float32, a "
        "512-unit one 50 x); --precision 32 trains faster here"]
    monkeypatch.setattr(device, "ONEDNN_BFLOAT16", True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Precision("bf16", torch.device("cpu"))
        Precision("32", torch.device("cpu"))


def test_the_schedule_is_constant_at_a_min_lr_fraction_of_one():
    constant = TrainingConfig(steps=10, lr=0.3)
    assert [learning_rate(constant, step, decay_progress(constant, step, 10)) for step in (0, 5, 10)] == [0.3] * 3
    cosine = TrainingConfig(steps=10, lr=1.0, warmup=2, min_lr_fraction=0.0)
    assert [learning_rate(cosine, step, decay_progress(cosine, step, 10)) for step in (0, 1)] == [0.5, 1.0]
    assert learning_rate(cosine, 6, decay_progress(cosine, 6, 10)) == pytest.approx(0.5)
    assert learning_rate(cosine, 10, decay_progress(cosine, 10, 10)) == pytest.approx(0.0)


def test_a_time_budget_decays_by_its_seconds_and_both_budgets_by_the_further_spent():
    timed = TrainingConfig(time_budget=102, warmup=2, lr=1.0, min_lr_fraction=0.0)
    assert decay_progress(timed, 40, train_seconds=27, decay_from_seconds=2) == pytest.approx(0.25)
    assert decay_progress(timed, 40, train_seconds=27, decay_from_seconds=None) is None, "still warming up"
    assert learning_rate(timed, 40, decay_progress(timed, 40, train_seconds=52, decay_from_seconds=2)) \
        == pytest.approx(0.5)
    both = TrainingConfig(time_budget=102, steps=42, warmup=2)
    assert decay_progress(both, 12, 42, train_seconds=77, decay_from_seconds=2) == pytest.approx(0.75)
    assert decay_progress(both, 32, 42, train_seconds=27, decay_from_seconds=2) == pytest.approx(0.75)
    assert decay_progress(both, 50, 42, train_seconds=200, decay_from_seconds=2) == 1.0


def test_an_epochs_last_batch_too_small_to_share_joins_the_one_before():
    assert Processes().batch_sizes(33, 16) == [16, 16, 1]
    assert Processes(0, 2).batch_sizes(33, 16) == [16, 17]
    assert Processes(1, 4).batch_sizes(35, 16) == [16, 19] and Processes(1, 4).batch_sizes(36, 16) == [16, 16, 4]
    assert Processes(0, 2).batch_sizes(1, 16) == [1], "one batch has none before it (jobs refuse fewer items than processes)"


def test_budgets_default_and_combine():
    assert TrainingConfig().steps == 1000, "no budget: the config's default_budget"
    assert (TrainingConfig(time_budget=5).steps, TrainingConfig(time_budget=5).time_budget) == (None, 5)
    with pytest.raises(ValueError, match="eval_every must be an integer, got 2.5"):
        TrainingConfig(eval_every=2.5)


def test_progress_in_a_log_writes_lines_with_throughput_and_eta():
    stream = io.StringIO()
    progress = Progress("lm lstm 2x512", total=100, item="token", stream=stream, quiet_interval=0.0)
    progress.start -= 1000.0  # begun 1000 s ago: 10 steps are 0.01 steps/s, 90 are 0.09
    progress.update(10, 9700.0, loss=1.5)
    progress.update(20, 9800.0, seconds_left=125.0, loss=1.25)
    # the step limit ends the run before the time budget (the demo's 5,000 steps in 300 s once
    # showed 4m32s where 7 s were left): 10 steps at 0.09 steps/s, 1m51s
    progress.update(90, 9800.0, seconds_left=125.0, loss=1.25)
    progress.close(100, 9900.0, val_loss=1.41)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("lm lstm 2x512: step 10/100 loss 1.5 9,700 tokens/s in training, ")
    assert lines[0].endswith("ETA 2h30m")  # 90 steps at 0.01 steps/s
    # two clocks, each named: a run that evaluates often showed 69,111 tokens/s beside 5.93 steps/s of 6,400 tokens
    assert re.search(r" [0-9.]+ steps/s with evaluations, elapsed ", lines[0]), lines[0]
    assert lines[1].endswith("ETA 2m05s")
    assert lines[2].endswith("ETA 1m51s")
    assert lines[3].startswith("lm lstm 2x512: step 100/100 val_loss 1.41 9,900 tokens/s")
    assert lines[3].endswith("ETA 0s")
    assert [duration(seconds) for seconds in (42, 185, 3720)] == ["42s", "3m05s", "1h02m"]
    assert [rate_text(rate) for rate in (0.0, 0.3124, 3.46, 9.4, 9.6, 9700.4)] == ["0", "0.31", "3.5", "9.4", "10",
                                                                                  "9,700"]
    # a run's last line: a sub-second run once trained "5 steps in 0 s of training"
    assert [seconds_text(seconds) for seconds in (0.00004, 0.0344, 0.36, 1.04, 9.94, 9.96, 42.4)] == [
        "0.000", "0.034", "0.360", "1.0", "9.9", "10", "42"]


def test_progress_of_work_that_is_not_training_gives_one_rate():
    """Scoring a text or decoding has no training clock: the rate of its units by the wall clock."""
    stream = io.StringIO()
    progress = Progress("lm eval", total=40_000, unit="token", stream=stream, quiet_interval=0.0)
    progress.start -= 10.0  # begun 10 s ago: 10,000 tokens are 1,000 tokens/s, 30,000 left
    progress.update(10_000, None)
    assert re.fullmatch(r"lm eval: token 10000/40000 1,000 tokens/s, elapsed 10s ETA 30s\n", stream.getvalue()), \
        stream.getvalue()


def test_progress_writes_to_a_stream_that_only_writes():
    """A sys.stderr replaced by a tee with write and flush alone (no isatty) stopped every
    training run at its first line: AttributeError: 'Tee' object has no attribute 'isatty'."""
    class Tee:
        def __init__(self):
            self.text = io.StringIO()

        def write(self, text):
            return self.text.write(text)

        def flush(self):
            pass

    stream = Tee()
    progress = Progress("lm", total=10, stream=stream, quiet_interval=0.0)
    progress.close(10, 100.0, val_loss=1.5)
    assert stream.text.getvalue().startswith("lm: step 10/10 val_loss 1.5 100 items/s")


def test_a_run_stopped_by_ctrl_c_closes_its_bar_so_what_follows_starts_on_a_new_line(monkeypatch):
    """On a terminal, a KeyboardInterrupt left tqdm's bar open: the next output (the prompt,
    "lstmkit: interrupted") was written after the bar's text, which was drawn again later."""
    pytest.importorskip("tqdm")

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    dies_at_step(monkeypatch, 3)
    with pytest.raises(Killed):
        Trainer(TrainingConfig(steps=10, eval_every=5)).run(Quadratic([1.0], 0.0))
    bar = terminal.getvalue()
    assert "3/10" in bar and bar.endswith("\n")
    print("next", file=terminal)
    assert terminal.getvalue() == bar + "next\n"  # nothing redrawn after it


def test_progress_past_a_time_budgets_estimated_total_shows_no_total():
    stream = io.StringIO()
    progress = Progress("forecast", total=150, stream=stream, quiet_interval=0.0)
    progress.update(307, 900.0, seconds_left=2.0, loss=0.5)  # the budget's estimate of 150 steps was passed
    assert stream.getvalue().startswith("forecast: step 307 loss 0.5 900 items/s ")
    assert stream.getvalue().rstrip().endswith("ETA 2s")


def adam_weights(target: float, lr: float, steps: int) -> list[float]:
    """w after each Adam step on (w − target)² from w = 0, by its equations (Kingma & Ba 2015):
    m ← β1 m + (1 − β1) g, v ← β2 v + (1 − β2) g², w ← w − lr · m̂ / (√v̂ + ε)."""
    w, m, v, weights = 0.0, 0.0, 0.0, []
    for t in range(1, steps + 1):
        g = 2 * (w - target)
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        w -= lr * (m / (1 - 0.9 ** t)) / (math.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        weights.append(w)
    return weights


def test_the_loop_takes_adam_steps_evaluates_and_keeps_the_best():
    """w climbs towards 1 by about lr a step; the validation target 0.1 is passed after one step."""
    job = Quadratic([1.0, 1.0], validation_target=0.1)
    run = Trainer(TrainingConfig(epochs=2.0, lr=0.1, eval_every=1, clip=100.0)).run(job, keep_best=True)
    weights = adam_weights(1.0, 0.1, 4)
    assert weights[0] == pytest.approx(0.1, rel=1e-6), "Adam's first step is lr · sign(g)"
    assert job.steps_seen == [0, 1, 2, 3]
    assert [row["step"] for row in run.history] == [1, 2, 3, 4]
    assert [row["epoch"] for row in run.history] == [0.5, 1, 1.5, 2]
    assert [row["val_loss"] for row in run.history] == pytest.approx([(w - 0.1) ** 2 for w in weights], rel=1e-4)
    assert run.best["step"] == 1 and job.model.weight.item() == pytest.approx(weights[0], rel=1e-6), "the best is kept"
    assert (run.device, run.precision, run.processes) == ("cpu", "32", 1)


def test_a_resumed_run_that_keeps_the_best_keeps_one_found_before_the_interruption(tmp_path, monkeypatch):
    """The validation target 0.1 is passed after the first step: killed at step 3 and resumed to
    step 4, the run keeps the weights of step 1, as the uninterrupted run does."""
    config = TrainingConfig(steps=4, lr=0.1, eval_every=1, clip=100.0)
    whole = Quadratic([1.0, 1.0], validation_target=0.1)
    Trainer(config).run(whole, tmp_path / "whole", keep_best=True)
    dies_at_step(monkeypatch, 3)
    with pytest.raises(Killed):
        Trainer(config).run(Quadratic([1.0, 1.0], validation_target=0.1), tmp_path / "parts", keep_best=True)
    monkeypatch.undo()
    resumed = Quadratic([1.0, 1.0], validation_target=0.1)
    run = Trainer(config).run(resumed, tmp_path / "parts", resume=True, keep_best=True)
    assert run.best["step"] == 1 and [row["step"] for row in run.history] == [1, 2, 3, 4]
    assert resumed.model.weight.item() == whole.model.weight.item() == pytest.approx(adam_weights(1.0, 0.1, 4)[0],
                                                                                      rel=1e-6)


def test_a_resume_whose_epochs_would_not_line_up_is_refused(tmp_path, monkeypatch):
    """Under another number of processes an epoch can take another number of steps (its last
    batch joins the one before): the epochs of the run and of its resume would not line up."""
    Trainer(TrainingConfig(steps=2, eval_every=1)).run(Quadratic([1.0, 1.0, 1.0], 0.0), tmp_path / "run")
    monkeypatch.setattr(Quadratic, "steps_per_epoch", lambda job: 2)
    # with as many processes, the data kept changed (it told to resume with the 1 process it had)
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'run'}'s epochs took 3 steps, and its data as read "
                                                   "now make epochs of 2: the items kept of them differ from the "
                                                   "run's")):
        Trainer(TrainingConfig(steps=4, eval_every=1)).run(Quadratic([1.0, 1.0, 1.0], 0.0), tmp_path / "run",
                                                          resume=True)
    by_two = Trainer(TrainingConfig(steps=4, eval_every=1))
    by_two.processes = Processes(rank=0, world_size=2)
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'run'} was trained by 1 process, whose epochs take 3 "
                                                   "steps; 2 processes take 2, so its epochs would not line up: resume "
                                                   "it with 1 process")):
        by_two.check_epochs({"epoch_layout": {"steps_per_epoch": 3, "processes": 1}}, Quadratic([1.0, 1.0, 1.0], 0.0),
                            tmp_path / "run")

    # a finished run is only loaded (forecast fit's backtest stage, resumed with its refit by another number of
    # processes, was refused although it would train no further)
    finished = Trainer(TrainingConfig(steps=2, eval_every=1)).finished_run(Quadratic([1.0, 1.0, 1.0], 0.0),
                                                                            tmp_path / "run")
    assert finished is not None and finished.steps == 2
    (tmp_path / "run" / "results.json").unlink()  # killed before it: ended as begun, whatever the budget now
    finished = Trainer(TrainingConfig(steps=4, eval_every=1)).finished_run(Quadratic([1.0, 1.0, 1.0], 0.0),
                                                                           tmp_path / "run")
    assert finished.steps == 2 and (tmp_path / "run" / "results.json").is_file()


class Clock:
    """The loop's clock, read before and after each step: every step takes one second, or, for
    the first ones, the seconds `first_steps` lists."""

    def __init__(self, first_steps: tuple[float, ...] = ()) -> None:
        self.now, self.readings, self.first_steps = 0.0, 0, first_steps

    def perf_counter(self) -> float:
        self.readings += 1
        if self.readings % 2 == 0:  # the end of step readings / 2 - 1
            step = self.readings // 2 - 1
            self.now += self.first_steps[step] if step < len(self.first_steps) else 1.0
        return self.now


def test_a_time_budget_whose_first_steps_are_slow_decays_to_the_floor_as_it_ends(monkeypatch):
    """Six 3-second steps, then 1-second ones, in 40 s: 28 steps. The rate follows the clock,
    so it is halfway down when half the seconds after the warm-up are spent (step 11, 23 s in) and
    at the floor only at the end; a schedule of the steps the first interval's speed promised
    (13) spent the second half of the run at the floor."""
    monkeypatch.setattr(loop, "time", Clock(first_steps=(3.0,) * 6))
    settings = dict(lr=0.1, eval_every=1, warmup=2, min_lr_fraction=0.0, time_budget=40)
    run = Trainer(TrainingConfig(**settings)).run(Quadratic([1.0], 0.0))
    seconds_before = [0, 3, 6, 9, 12, 15, *range(18, 40)]
    assert [row["step"] for row in run.history] == list(range(1, 29))
    assert [row["lr"] for row in run.history] == pytest.approx([
        learning_rate(TrainingConfig(**settings), step, decay_progress(TrainingConfig(**settings), step,
                                                                       train_seconds=seconds, decay_from_seconds=6))
        for step, seconds in enumerate(seconds_before)])
    assert run.history[11]["lr"] == pytest.approx(0.05) and run.history[-1]["lr"] < 0.001


def test_a_run_resumed_with_a_longer_time_budget_stretches_its_schedule(tmp_path, monkeypatch):
    """The schedule spans the budget's seconds: resumed with 40 s where 20 s ran, steps 21-40
    take the rates of a 40 s run, not the floor of a spent one."""
    settings = dict(lr=0.1, eval_every=5, warmup=2, min_lr_fraction=0.1)
    monkeypatch.setattr(loop, "time", Clock())
    straight = Trainer(TrainingConfig(time_budget=40, **settings)).run(Quadratic([1.0], 0.0), tmp_path / "straight")
    monkeypatch.setattr(loop, "time", Clock())
    Trainer(TrainingConfig(time_budget=20, **settings)).run(Quadratic([1.0], 0.0), tmp_path / "resumed")
    resumed = Trainer(TrainingConfig(time_budget=40, **settings)).run(Quadratic([1.0], 0.0), tmp_path / "resumed",
                                                                      resume=True)
    assert [row["step"] for row in resumed.history] == [5 * k for k in range(1, 9)]
    assert [row["lr"] for row in resumed.history[4:]] == [row["lr"] for row in straight.history[4:]]
    assert [row["lr"] for row in straight.history[4:]] == pytest.approx(
        [learning_rate(TrainingConfig(**settings), step - 1, decay_progress(TrainingConfig(**settings), step - 1, 40))
         for step in (25, 30, 35, 40)])
    assert resumed.history[4]["lr"] > 0.04, "the 20 s run's schedule had reached its floor, 0.01"


def test_a_resumed_runs_throughput_is_the_whole_runs_as_its_steps_and_seconds_are(tmp_path, monkeypatch):
    """Steps 1-4 take 4 s each, steps 5-8 (resumed) 1 s each: 8 steps' items in 20 s, not the
    resumed part's 4 in 4 s (a resumed run once printed the latter beside the former)."""
    config = TrainingConfig(steps=8, lr=0.1, eval_every=4)
    monkeypatch.setattr(loop, "time", Clock((4.0, 4.0, 4.0, 4.0)))
    Trainer(TrainingConfig(steps=4, lr=0.1, eval_every=4)).run(Quadratic([1.0], 0.0), tmp_path / "run")
    monkeypatch.setattr(loop, "time", Clock())
    run = Trainer(config).run(Quadratic([1.0], 0.0), tmp_path / "run", resume=True)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert (run.steps, run.seconds) == (8, 20.0)  # one item a step
    assert run.items_per_second == results["items_per_second"] == pytest.approx(8 / 20.0)


def test_results_record_each_part_of_a_resumed_run(tmp_path):
    """A run of 4 steps resumed to 8 in bf16 recorded steps 8 and bf16 alone, as if it had
    trained so from the start: a run rebuilt from its config then differed. Each part keeps its
    budget, where it trained and the versions it ran on."""
    Trainer(TrainingConfig(steps=4, lr=0.1, eval_every=2)).run(Quadratic([1.0], 0.0), tmp_path / "run")
    Trainer(TrainingConfig(steps=8, lr=0.1, eval_every=2, precision="bf16")).run(Quadratic([1.0], 0.0),
                                                                                 tmp_path / "run", resume=True)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    first, second = results["segments"]
    assert (first["from_step"], first["steps"], first["precision"]) == (0, 4, "32")
    assert (second["from_step"], second["steps"], second["precision"]) == (4, 8, "bf16")
    assert (first["device"], first["processes"]) == ("cpu", 1)
    assert first["versions"] == {"lstmkit": lstmkit.__version__, "torch": torch.__version__,
                                 "python": platform.python_version()}
    assert results["config"]["steps"] == 8
    saved = tmp_path / "run" / "last" / "config.json"  # a run begun before lstmkit recorded its parts
    config = json.loads(saved.read_text())
    del config["progress"]["segments"]
    saved.write_text(json.dumps(config))
    Trainer(TrainingConfig(steps=10, lr=0.1, eval_every=2)).run(Quadratic([1.0], 0.0), tmp_path / "run", resume=True)
    segments = json.loads((tmp_path / "run" / "results.json").read_text())["segments"]
    assert [segments[0], segments[1]["from_step"]] == [{"from_step": 0, "recorded": False}, 8]


def test_a_run_saved_before_the_schedule_followed_the_clock_resumes_on_it(tmp_path, monkeypatch):
    """last/ of an older lstmkit held the schedule's estimated length, not the second at which the
    warm-up ended: resumed, that second is taken as the warm-up's share of the seconds so far
    (its steps took equal times), which here is exact."""
    settings = dict(lr=0.1, eval_every=5, warmup=2, min_lr_fraction=0.1)
    monkeypatch.setattr(loop, "time", Clock())
    straight = Trainer(TrainingConfig(time_budget=40, **settings)).run(Quadratic([1.0], 0.0), tmp_path / "straight")
    monkeypatch.setattr(loop, "time", Clock())
    Trainer(TrainingConfig(time_budget=20, **settings)).run(Quadratic([1.0], 0.0), tmp_path / "old")
    config_file = tmp_path / "old" / "last" / "config.json"
    saved = json.loads(config_file.read_text())
    del saved["progress"]["decay_from_seconds"]
    saved["progress"] |= {"total_steps": 20, "seconds_per_step": 1.0}
    config_file.write_text(json.dumps(saved))
    resumed = Trainer(TrainingConfig(time_budget=40, **settings)).run(Quadratic([1.0], 0.0), tmp_path / "old",
                                                                      resume=True)
    assert [row["lr"] for row in resumed.history[4:]] == [row["lr"] for row in straight.history[4:]]


def test_a_budget_that_ends_before_the_warmup_does_is_warned_of(monkeypatch):
    with pytest.warns(UserWarning, match=re.escape("the budget holds 6 steps, fewer than the 10 of warm-up: the "
                                                   "learning rate stops at 60% of its peak 0.1; give a larger budget "
                                                   "or a shorter warmup (--warmup)")):
        Trainer(TrainingConfig(steps=6, lr=0.1, warmup=10)).run(Quadratic([1.0], 0.0))
    monkeypatch.setattr(loop, "time", Clock())
    with pytest.warns(UserWarning, match=re.escape("the budget held 8 steps, fewer than the 20 of warm-up: "
                                                   "the learning rate stopped at 40% of its peak")):
        Trainer(TrainingConfig(time_budget=8, lr=0.1, warmup=20, eval_every=5)).run(Quadratic([1.0], 0.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trainer(TrainingConfig(steps=10, lr=0.1, warmup=10)).run(Quadratic([1.0], 0.0))


def test_patience_stops_after_evaluations_without_improvement():
    job = Quadratic([1.0], validation_target=-1.0)  # every step moves w away from the validation target
    run = Trainer(TrainingConfig(steps=50, lr=0.1, eval_every=1, patience=3)).run(job)
    assert run.steps == 4 and [row["step"] for row in run.history] == [1, 2, 3, 4]


def test_patience_counts_only_the_evaluations_that_scored():
    """Validation worsens at every step, scored at odd steps only: the best is step 1, and
    patience 3 runs out at the third scored evaluation after it (step 7), not at step 5, as
    when the unscored evaluations between them counted."""
    class HalfScored(Quadratic):
        def evaluate(self):
            return super().evaluate() if len(self.steps_seen) % 2 else {"val_loss": None}

    run = Trainer(TrainingConfig(steps=50, lr=0.1, eval_every=1, patience=3)).run(HalfScored([1.0], -1.0))
    assert run.steps == 7 and run.best["step"] == 1
    assert [row["val_loss"] is None for row in run.history] == [False, True] * 3 + [False]


def test_anneal_on_a_plateau_decays_the_rate_to_its_floor_over_the_patience_then_stops():
    """Validation worsens at every step: patience 3 runs out at step 4, 4/50 of the way down a
    50-step cosine. Steps 4, 5, 6 then take the rest of the way, p = 0.08 + 0.92 k / 3 for
    k = 1, 2, 3 (the last at the floor, 0.01), and the run stops at step 7."""
    config = TrainingConfig(steps=50, lr=0.1, eval_every=1, patience=3, on_plateau="anneal", min_lr_fraction=0.1)
    run = Trainer(config).run(Quadratic([1.0], validation_target=-1.0))
    assert run.steps == 7 and [row["step"] for row in run.history] == list(range(1, 8))
    expected = [learning_rate(config, step, decay_progress(config, step, 50)) for step in range(4)]
    expected += [learning_rate(config, step, 0.08 + 0.92 * k / 3) for k, step in enumerate((4, 5, 6), start=1)]
    assert [row["lr"] for row in run.history] == pytest.approx(expected)
    assert run.history[-1]["lr"] == pytest.approx(0.01)
    assert annealed_progress(0.9, 5, 4, 0.08, 3) == 0.9, "a budget further down than the anneal keeps its decay"
    assert annealed_progress(None, 4, 4, 0.0, 2) == 0.5, "a run without a budget's decay anneals from the peak"


def test_a_resume_under_another_budget_says_so(tmp_path, capsys, monkeypatch):
    """`lm train --resume` without a budget flag took the default one (10 epochs where the run
    had --time-budget 30) and trained on without a word."""
    Trainer(TrainingConfig(steps=4, eval_every=2)).run(Quadratic([1.0], 0.0), tmp_path)
    capsys.readouterr()
    Trainer(TrainingConfig(time_budget=0.5, eval_every=2)).run(Quadratic([1.0], 0.0), tmp_path, resume=True)
    assert f"resuming {tmp_path} under --time-budget 0.5 s; it last ran under --steps 4\n" in capsys.readouterr().err
    from lstmkit.training.loop import budget_of

    # as typed: a config holds a float of whole epochs or seconds ("--epochs 3.0" was said)
    assert budget_of({"epochs": 3.0, "time_budget": 60.0}) == "--epochs 3, --time-budget 60 s"
    assert budget_of({"epochs": 2.5}) == "--epochs 2.5" and budget_of({}) == "no budget"
    dies_at_step(monkeypatch, 2)
    with pytest.raises(Killed):
        Trainer(TrainingConfig(steps=4, time_budget=60, eval_every=1)).run(Quadratic([1.0], 0.0), tmp_path / "same")
    monkeypatch.undo()
    capsys.readouterr()
    Trainer(TrainingConfig(steps=4, time_budget=60.0, eval_every=1)).run(Quadratic([1.0], 0.0), tmp_path / "same",
                                                                         resume=True)
    assert "resuming" not in capsys.readouterr().err  # 60.0 seconds are 60: no other budget


def test_an_anneal_begun_in_the_warm_up_decays_from_the_rate_it_had_then_to_the_floor():
    """The warm-up went on rising to the peak, and the run stopped there saying its rate had
    annealed to its floor: patience 3 runs out at step 4 of a 10-step warm-up, at 0.05."""
    config = TrainingConfig(steps=50, lr=0.1, warmup=10, eval_every=1, patience=3, on_plateau="anneal",
                            min_lr_fraction=0.1)
    run = Trainer(config).run(Quadratic([1.0], validation_target=-1.0))
    rates = [row["lr"] for row in run.history]
    assert rates[:4] == pytest.approx([0.01, 0.02, 0.03, 0.04])  # the warm-up: step s at (s + 1) / 10
    floor, start = 0.01, 0.05
    assert rates[4:] == pytest.approx([floor + (start - floor) * 0.5 * (1 + math.cos(math.pi * k / 3))
                                       for k in (1, 2, 3)])
    assert run.steps == 7 and rates[-1] == pytest.approx(floor)
    early = TrainingConfig(steps=500, lr=0.1, warmup=100, patience=3, on_plateau="anneal", min_lr_fraction=0.1)
    assert learning_rate(early, 5, 0.5, annealing_from=3) == pytest.approx(0.004), "below the floor: held, not raised"
    decay = 0.3  # without an anneal, the expression runs begun before resume with, rounded alike
    assert learning_rate(early, 200, decay) == 0.1 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * decay)))


@pytest.mark.parametrize("edit, problem", [
    (lambda tensors: tensors.pop("rng.torch"), "no rng.torch (the random-number state)"),
    (lambda tensors: tensors.pop("optimizer.weight.exp_avg"), "the parameters hold different moments"),
    (lambda tensors: tensors.update({"optimizer.bogus.exp_avg": torch.zeros(1)}),
     "optimizer.bogus.exp_avg, of no parameter of the model"),
    (lambda tensors: tensors.update({"optimizer.weight.exp_avg": torch.zeros(2)}),
     "optimizer.weight.exp_avg has shape (2,), its parameter (1, 1)"),
    (lambda tensors: tensors.update({"optimizer.weight.exp_avg": torch.zeros(1, 1, dtype=torch.int32)}),
     "optimizer.weight.exp_avg holds torch.int32"),
])
def test_an_edited_training_state_is_named_before_the_resume(tmp_path, edit, problem):
    """Each failed inside torch after the resume began (KeyError 'exp_avg', a size mismatch),
    or, without its random-number state, resumed not bit for bit without a word."""
    class TwoParameters(Quadratic):  # a second parameter, so that one's moments can differ from the other's
        def __init__(self):
            super().__init__([1.0], 0.0)
            self.model.bias = torch.nn.Parameter(torch.zeros(1))

        def train_loss(self, model, step):
            loss, items = super().train_loss(model, step)
            return loss + (model.bias[0] - 1) ** 2, items

    Trainer(TrainingConfig(steps=2, eval_every=1)).run(TwoParameters(), tmp_path)
    path = tmp_path / "last" / "training.safetensors"
    tensors = load_file(path)
    assert "optimizer.bias.exp_avg" in tensors
    edit(tensors)
    save_file(tensors, path)  # without lstmkit's checksum, as an edit leaves it
    with pytest.raises(CheckpointError, match=re.escape(f"{path} does not fit the run: {problem}")):
        Trainer(TrainingConfig(steps=4, eval_every=1)).run(TwoParameters(), tmp_path, resume=True)


def test_an_annealing_run_resumed_from_its_checkpoint_anneals_as_it_would_have(tmp_path, monkeypatch):
    """Killed at step 6, mid-anneal: resumed, the anneal continues from step 4 (saved in last/),
    not from a plateau found again later."""
    config = TrainingConfig(steps=50, lr=0.1, eval_every=1, patience=3, on_plateau="anneal", min_lr_fraction=0.1)
    straight = Trainer(config).run(Quadratic([1.0], validation_target=-1.0), tmp_path / "straight")
    dies_at_step(monkeypatch, 6)
    with pytest.raises(Killed):
        Trainer(config).run(Quadratic([1.0], validation_target=-1.0), tmp_path / "resumed")
    monkeypatch.undo()
    assert json.loads((tmp_path / "resumed" / "last" / "config.json").read_text())["progress"]["annealing_from"] == 4
    resumed = Trainer(config).run(Quadratic([1.0], validation_target=-1.0), tmp_path / "resumed", resume=True)
    def trained(run):
        return [(row["step"], row["lr"], row["train_loss"], row["val_loss"]) for row in run.history]

    assert trained(resumed) == trained(straight) and resumed.steps == 7


def test_on_plateau_is_checked_with_what_anneal_needs():
    with pytest.raises(ValueError, match=re.escape("on_plateau (--on-plateau) must be one of stop, anneal, got "
                                                   "'decay'")):
        TrainingConfig(patience=3, on_plateau="decay")
    needs = "it needs a patience (--patience) and a min_lr_fraction (--min-lr-fraction) below 1, got "
    with pytest.raises(ValueError, match=re.escape(needs + "patience=None, min_lr_fraction=0.1")):
        TrainingConfig(on_plateau="anneal", min_lr_fraction=0.1)
    with pytest.raises(ValueError, match=re.escape(needs + "patience=3, min_lr_fraction=1.0")):
        TrainingConfig(on_plateau="anneal", patience=3)


def test_bf16_training_on_cpu_records_where_it_ran(text_file, tmp_path):
    config = LMTrainingConfig(steps=30, num_layers=1, hidden_size=32, seq_len=20, batch_size=8, eval_every=15,
                              warmup=5, precision="bf16")
    run = lm.train(text_file, tmp_path / "run", config)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert (results["device"], results["precision"], results["processes"]) == ("cpu", "bf16", 1)
    assert results["config"]["precision"] == "bf16" and results["best_val_loss"] == run.best_val_loss
    assert run.history[-1]["val_loss"] < run.history[0]["val_loss"] < math.log(70)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_float16_training_saves_the_gradient_scale_and_resumes_it(text_file, tmp_path, monkeypatch):
    config = LMTrainingConfig(steps=20, num_layers=1, hidden_size=16, seq_len=10, batch_size=4, eval_every=10,
                              warmup=2, precision="16", dropout=0.0, device="cuda")
    straight, resumed = straight_and_resumed(
        monkeypatch, lambda out, resume: lm.train(text_file, out, config, resume=resume), tmp_path, 15)
    saved = json.loads((tmp_path / "straight" / "last" / "config.json").read_text())["progress"]["scaler"]
    assert saved["scale"] > 0 and set(saved) >= {"scale", "_growth_tracker"}
    assert [row["val_loss"] for row in resumed.history] == [row["val_loss"] for row in straight.history]


def test_checkpoint_tensors_load_on_the_device_asked_for(tmp_path):
    """Checkpoints hold no device: safetensors of CPU copies, mapped where they are loaded."""
    weights = {"w": torch.arange(6.0).view(2, 3), "b": torch.ones(2, dtype=torch.bfloat16)}
    save_checkpoint(tmp_path / "model", {"kind": "test"}, weights)
    _, on_meta = load_checkpoint(tmp_path / "model", "meta")
    assert {name: (t.device.type, t.shape, t.dtype) for name, t in on_meta.items()} == {
        name: ("meta", t.shape, t.dtype) for name, t in weights.items()}
    _, on_cpu = load_checkpoint(tmp_path / "model")
    assert all(torch.equal(on_cpu[name], weights[name]) for name in weights)


def test_a_run_recorded_on_cuda_loads_samples_evaluates_and_resumes_on_the_cpu(text_file, tmp_path):
    """A GPU run's folder differs from a CPU run's only in what its JSON says: rewritten to
    name cuda:0, it loads, samples, scores and resumes on a CPU-only machine."""
    config = LMTrainingConfig(steps=20, num_layers=1, hidden_size=16, seq_len=10, batch_size=4, eval_every=10,
                              warmup=2, dropout=0.0)
    lm.train(text_file, tmp_path / "run", config)
    cpu_sample = lm.load(tmp_path / "run").sample("First", length=40, seed=0)
    for checkpoint in ("best", "last"):
        path = tmp_path / "run" / checkpoint / "config.json"
        saved = json.loads(path.read_text())
        saved["training"]["device"] = "cuda:0"
        path.write_text(json.dumps(saved))
    model = lm.load(tmp_path / "run", device="cpu")
    assert next(model.model.parameters()).device.type == "cpu"
    assert model.sample("First", length=40, seed=0) == cpu_sample
    resumed = lm.train(text_file, tmp_path / "run", LMTrainingConfig(**{**vars(config), "steps": 30}), resume=True)
    assert resumed.steps == 30 and resumed.device == "cpu"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cpu_run_samples_the_same_on_cuda(text_file, tmp_path):
    config = LMTrainingConfig(steps=20, num_layers=1, hidden_size=16, seq_len=10, batch_size=4, eval_every=10)
    lm.train(text_file, tmp_path / "run", config)
    on_cpu = lm.load(tmp_path / "run").sample("First", length=30, top_k=1)
    assert lm.load(tmp_path / "run", device="cuda").sample("First", length=30, top_k=1) == on_cpu


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun(processes: int, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node N -m lstmkit ...` on this machine alone (gloo, 127.0.0.1);
    with `check`, asserting that it succeeds."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--nnodes", "1",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "lstmkit", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert not check or result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.parametrize("arguments, message", [
    (["--dropout", "1.5"], "lstmkit: error: dropout (--dropout) must be in [0, 1), got 1.5"),
    (["--frobnicate"], "lstmkit lm train: error: unrecognized arguments: --frobnicate"),
])
def test_under_torchrun_a_bad_option_is_said_once(text_file, tmp_path, arguments, message):
    """Every process meets it; the others exited first and torchrun stopped rank 0 before it
    said why (2 runs in 5): only torchrun's "lstmkit FAILED", no reason anywhere."""
    result = torchrun(2, *ddp_flags(text_file, tmp_path / "run"), *arguments, check=False)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if re.match(r"lstmkit( \w+)*: ", line)]
    assert lines == [message], result.stderr[-3000:]


DIFFERING = """
import os, sys
from lstmkit.cli import main
sys.exit(main(sys.argv[1:] + ["--steps", "20" if os.environ["RANK"] == "0" else "30"]))
"""


def test_under_torchrun_processes_given_different_settings_are_refused(text_file, tmp_path):
    """A command line that differed between the processes ran: different learning rates were
    averaged silently, and different step budgets waited for each other without end."""
    script = tmp_path / "differing.py"
    script.write_text(DIFFERING)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(script),
               *ddp_flags(text_file, tmp_path / "run")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if re.match(r"lstmkit( \w+)*: ", line)]
    assert lines == ["lstmkit: error: the 2 processes of this run were given different settings: training.steps: 20 "
                     "in process 0, 30 in process 1; start every process with the same command"], result.stderr[-3000:]
    assert not (tmp_path / "run" / "last").exists()


LEAVING = """
import os, sys, torch
from lstmkit.training.distributed import Processes, leave
processes = Processes.from_environment()
processes.start(torch.device("cpu"))
model = processes.wrap(torch.nn.Linear(3, 1), torch.device("cpu"))
model(torch.ones(2, 3)).sum().backward()
gradient = model.module.weight.grad.tolist()
del model
processes.wait_for_all()
leave()
threads = [open(f"/proc/self/task/{task}/comm").read().strip() for task in os.listdir("/proc/self/task")]
sys.stdout.write(f"{processes.rank} {gradient} {[name for name in threads if 'gloo' in name]}\\n")
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the threads from /proc (Linux)")
def test_leaving_the_process_group_ends_its_threads_before_the_interpreter_exits(tmp_path):
    """DistributedDataParallel imports torch._dynamo; imported after the group was made, it kept
    the group alive past destroy_process_group, and gloo's threads then met the interpreter's exit,
    which now and then aborted a finished run ("terminate called without an active exception")."""
    script = tmp_path / "leave.py"
    script.write_text(LEAVING)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(script)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(result.stdout.splitlines()) == ["0 [[2.0, 2.0, 2.0]] []", "1 [[2.0, 2.0, 2.0]] []"]


DDP_SETTINGS = dict(num_layers=1, hidden_size=32, seq_len=20, batch_size=8, eval_every=10, warmup=5, dropout=0.0,
                    steps=40)


def ddp_flags(text: Path, out: Path) -> list[str]:
    flags = ["lm", "train", str(text), "--out", str(out), "--device", "cpu"]
    for name, value in DDP_SETTINGS.items():
        flags += ["--" + name.replace("_", "-"), str(value)]
    return flags


def test_two_processes_train_as_one_process_on_the_same_global_batch(text_file, tmp_path, monkeypatch):
    """DDP over gloo, each process on 4 of the 8 streams, against one process on all 8; then a
    run stopped at step 20 in one process, resumed by two."""
    single = lm.train(text_file, tmp_path / "single", LMTrainingConfig(**DDP_SETTINGS))
    torchrun(2, *ddp_flags(text_file, tmp_path / "two"))
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    rows = [line.split(",") for line in (tmp_path / "two" / "metrics.csv").read_text().splitlines()]
    columns = rows[0]
    history = [dict(zip(columns, row, strict=True)) for row in rows[1:]]
    assert two["processes"] == 2 and two["steps"] == 40
    assert [int(row["step"]) for row in history] == [row["step"] for row in single.history]
    for ours, theirs in zip(history, single.history, strict=True):
        assert float(ours["train_loss"]) == pytest.approx(theirs["train_loss"], rel=1e-5)
        assert float(ours["val_loss"]) == pytest.approx(theirs["val_loss"], rel=1e-5)
        assert int(ours["tokens"]) == theirs["tokens"], "the tokens of both shares are counted"
    ours, theirs = load_file(tmp_path / "two" / "last" / "model.safetensors"), load_file(
        tmp_path / "single" / "last" / "model.safetensors")
    for name in theirs:
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-4, atol=1e-5)

    dies_at_step(monkeypatch, 25)
    with pytest.raises(Killed):
        lm.train(text_file, tmp_path / "resumed", LMTrainingConfig(**DDP_SETTINGS))
    monkeypatch.undo()
    torchrun(2, *ddp_flags(text_file, tmp_path / "resumed"), "--resume")
    resumed = json.loads((tmp_path / "resumed" / "results.json").read_text())
    assert resumed["processes"] == 2 and resumed["steps"] == 40
    assert [(part["from_step"], part["processes"]) for part in resumed["segments"]] == [(0, 1), (20, 2)]
    assert resumed["best_val_loss"] == pytest.approx(single.best_val_loss, rel=1e-5)


def test_two_processes_train_an_adaptive_softmax_as_one_process(tmp_path):
    """Each process's targets fall in their own clusters, so a step leaves a cluster's weights
    without a gradient in one process and not in the other: DDP looks for the unused ones
    (on 60,000 characters of Shakespeare at word level the run hung in its reductions). The
    same losses as one process on the whole batch."""
    text_file = tmp_path / "text.txt"
    text = SHAKESPEARE.read_text(encoding="utf-8")[:60_000] if SHAKESPEARE.is_file() else "to be or not " * 4000
    text_file.write_text(text, encoding="utf-8")
    settings = {**DDP_SETTINGS, "steps": 30, "batch_size": 4, "seq_len": 10}
    flags = ["--steps", "30", "--batch-size", "4", "--seq-len", "10", "--level", "word",
             "--adaptive-softmax-cutoffs", "50,500"]
    single = lm.train(text_file, tmp_path / "single",
                      LMTrainingConfig(**settings, level="word", adaptive_softmax_cutoffs=(50, 500)))
    torchrun(2, *ddp_flags(text_file, tmp_path / "two"), *flags)
    rows = [line.split(",") for line in (tmp_path / "two" / "metrics.csv").read_text().splitlines()]
    history = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert len(history) == len(single.history) == 3
    for ours, theirs in zip(history, single.history, strict=True):  # float32 rounding, grown by Adam (~1e-5)
        assert float(ours["train_loss"]) == pytest.approx(theirs["train_loss"], rel=1e-4)
        assert float(ours["val_loss"]) == pytest.approx(theirs["val_loss"], rel=1e-4)


def test_a_run_of_an_older_lstmkit_loads_but_does_not_resume(text_file, tmp_path):
    """Runs written before the training core named their settings hidden, layers, batch and
    kept another progress record: their models load; --resume says why it cannot continue."""
    config = LMTrainingConfig(steps=10, num_layers=1, hidden_size=16, seq_len=10, batch_size=4, eval_every=10)
    lm.train(text_file, tmp_path / "run", config)
    sample = lm.load(tmp_path / "run").sample("First", length=20, seed=0)
    for checkpoint in ("best", "last"):
        path = tmp_path / "run" / checkpoint / "config.json"
        saved = json.loads(path.read_text())
        saved["training"] = {{"hidden_size": "hidden", "num_layers": "layers", "batch_size": "batch"}.get(name, name): value
                             for name, value in saved["training"].items()}
        saved["progress"] = {"step": 10, "epoch": 0, "window": 10, "tokens": 400, "best_val_loss": 3.0}
        path.write_text(json.dumps(saved))
    assert lm.load(tmp_path / "run").sample("First", length=20, seed=0) == sample
    with pytest.raises(ValueError, match="was written by an older lstmkit: its models load .* but its training "
                                         "cannot be resumed; start a new run"):
        lm.train(text_file, tmp_path / "run", config, resume=True)


@pytest.mark.parametrize("call, message", [
    (lambda text, out: lm.train(text, out, None), "config must be a lstmkit.lm.TrainingConfig, got NoneType"),
    (lambda text, out: lm.train(text, out, TrainingConfig(steps=2)),
     "config must be a lstmkit.lm.TrainingConfig, got TrainingConfig"),
    (lambda text, out: Trainer({"steps": 2}), "config must be a lstmkit.training.TrainingConfig (or a pipeline's "
                                              "config), got dict"),
    (lambda text, out: Trainer(TrainingConfig(steps=2)).run(torch.nn.Linear(1, 1)),
     "job must be a lstmkit.training.Job (its model, batches and evaluation), got Linear"),
    # a job written for the method's earlier name: it trained to its budget, its goal ignored
    (lambda text, out: Trainer(TrainingConfig(steps=2)).run(type("Solved", (Quadratic,), {
        "finished": lambda self, scores: True})([1.0], 1.0)),
     'Solved.finished(scores) is no longer called: the training core asks goal_reached(scores), which returns why '
     'training stops there (words that follow "its last evaluation") or None; rename it and return a reason'),
    # renamed but still a bool: False read as a reason, and the run stopped at its first evaluation
    (lambda text, out: Trainer(TrainingConfig(steps=2, eval_every=1)).run(type("Solved", (Quadratic,), {
        "goal_reached": lambda self, scores: False})([1.0], 1.0)),
     "Solved.goal_reached(scores) must return why training stops there (a str) or None, got False"),
    # a job that breaks its contract: errors from deep inside the loop, once
    (lambda text, out: Trainer(TrainingConfig(steps=2)).run(type("Bare", (Quadratic,), {
        "train_loss": lambda self, model, step: (model.weight[0, 0] - 1.0) ** 2})([1.0], 1.0)),
     "Bare.train_loss(model, step) must return (loss, items): the loss, a tensor of one value, averaged over that "
     "many items (> 0; DDP weighs each process's share by it); got Tensor"),
    (lambda text, out: Trainer(TrainingConfig(steps=2)).run(type("NoItems", (Quadratic,), {
        "train_loss": lambda self, model, step: ((model.weight[0, 0] - 1.0) ** 2, 0)})([1.0], 1.0)),
     "NoItems.train_loss(model, step) must return (loss, items): the loss, a tensor of one value, averaged over that "
     "many items (> 0; DDP weighs each process's share by it); got (Tensor, int) with 0 items"),
    (lambda text, out: Trainer(TrainingConfig(steps=2)).run(type("Scalar", (Quadratic,), {
        "evaluate": lambda self: 0.5})([1.0], 1.0)),
     "Scalar.evaluate() must return a dict of metric names to numbers (e.g. {'val_loss': 1.23}); got float"),
    (lambda text, out: Trainer(TrainingConfig(steps=2)).run(type("Listed", (Quadratic,), {
        "evaluate": lambda self: {"val_loss": [0.5]}})([1.0], 1.0)),
     "Listed.evaluate() must return a dict of metric names to numbers (e.g. {'val_loss': 1.23}); got val_loss: list"),
    (lambda text, out: Trainer(TrainingConfig(steps=2)).run(type("Modelless", (Quadratic,), {
        "__init__": lambda self: setattr(self, "model", None)})()),
     "Modelless.model must be a torch.nn.Module (the model to train), got NoneType"),
    # a loss autograd cannot differentiate: "element 0 of tensors does not require grad", from inside torch
    (lambda text, out: Trainer(TrainingConfig(steps=2)).run(type("Detached", (Quadratic,), {
        "train_loss": lambda self, model, step: (((model.weight[0, 0] - 1.0) ** 2).detach(), 1)})([1.0], 1.0)),
     "Detached.train_loss(model, step) must return a loss computed from the model's parameters, to differentiate; "
     "got a torch.float32 tensor that needs no gradient (made under torch.no_grad(), detached, or built from "
     "numbers?)"),
    (lambda text, out: Trainer(TrainingConfig(steps=2)).run(type("Counted", (Quadratic,), {
        "train_loss": lambda self, model, step: (torch.tensor(3), 64)})([1.0], 1.0)),
     "Counted.train_loss(model, step) must return a loss computed from the model's parameters, to differentiate; "
     "got a torch.int64 tensor of integers (made under torch.no_grad(), detached, or built from numbers?)"),
])
def test_a_config_or_job_of_another_type_is_named(text_file, tmp_path, call, message):
    """Each was an AttributeError from wherever the object was first read."""
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        call(text_file, tmp_path / "run")


@pytest.mark.parametrize("job, message", [
    # a misspelt selection metric: every evaluation ignored, no best/, patience never spent, without a word
    (type("Misspelt", (Quadratic,), {"evaluate": lambda self: {"val_los": 0.5}})([1.0], 1.0),
     "Misspelt.evaluate() returned no 'val_loss', the job's selection_metric (by which best/ is kept and patience "
     "counts); it returned 'val_los': return 'val_loss' (None at an evaluation without one), or set selection_metric"),
    # ZeroDivisionError: integer division or modulo by zero, in the loop
    (type("NoEpoch", (Quadratic,), {"steps_per_epoch": lambda self: 0})([1.0], 1.0),
     "NoEpoch.steps_per_epoch() must return a positive int (the steps of one pass over the training data) or None "
     "(data without an end), got 0"),
    # torch's "optimizer got an empty parameter list"
    (type("Frozen", (Quadratic,), {})([1.0], 1.0), "Frozen.model has no parameters that need gradients: nothing to "
                                                  "train"),
])
def test_a_job_whose_values_break_the_loop_is_refused_by_name(tmp_path, job, message):
    if type(job).__name__ == "Frozen":
        job.model.requires_grad_(False)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Trainer(TrainingConfig(epochs=2, eval_every=1, patience=2)).run(job, tmp_path / "run")


def test_an_epoch_counted_in_a_numpy_integer_is_taken(tmp_path):
    """np.int64 steps per epoch failed at the first checkpoint: "Object of type int64 is not JSON serializable"."""
    job = type("NumpyEpoch", (Quadratic,), {"steps_per_epoch": lambda self: np.int64(2)})([1.0, 2.0], 1.0)
    run = Trainer(TrainingConfig(epochs=2, eval_every=1)).run(job, tmp_path / "run")
    assert run.steps == 4 and [row["epoch"] for row in run.history] == [0.5, 1, 1.5, 2]
    assert not any(isinstance(row["epoch"], np.generic) for row in run.history)
    assert json.loads((tmp_path / "run" / "results.json").read_text())["steps"] == 4


def test_scores_given_as_numpy_arrays_of_one_value_are_taken():
    """`tensor.numpy()` gives a 0-d array, which was refused as "val_loss: ndarray"."""
    job = type("ArrayScores", (Quadratic,), {"evaluate": lambda self: {
        "val_loss": np.array((self.model.weight[0, 0].item() - 1.0) ** 2), "val_other": np.array([0.25])}})([1.0], 1.0)
    run = Trainer(TrainingConfig(steps=2, eval_every=1, lr=0.1)).run(job)
    assert [type(row["val_loss"]) for row in run.history] == [float, float]
    assert run.history[-1]["val_loss"] == (job.model.weight.item() - 1.0) ** 2
    assert [row["val_other"] for row in run.history] == [0.25, 0.25]


def test_the_trainer_refuses_an_engine_the_device_lacks_before_announcing_the_run(text_file, tmp_path, capsys,
                                                                                  monkeypatch):
    """From Python, too: the layer's own check came only at the first forward pass, without a fix."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # Triton then runs on CUDA tensors alone
    config = LMTrainingConfig(steps=1, engine="triton", hidden_size=8, num_layers=1, device="cpu")
    with pytest.raises(ValueError, match="^engine 'triton' cannot run cell 'lstm' on cpu: .*; use engine 'auto' or "
                                         r"'fused' \(--engine auto or fused\)$"):
        lm.train(text_file, tmp_path / "run", config)
    assert capsys.readouterr().err == "" and not (tmp_path / "run").exists()


@pytest.mark.parametrize("config, settings, message", [
    (TrainingConfig, {"lr": "0.01"}, "lr must be a number, got '0.01' (str)"),
    (TrainingConfig, {"steps": "5"}, "steps must be an integer or None, got '5' (str)"),
    (TrainingConfig, {"clip": [1.0]}, "clip must be a number, got [1.0] (list)"),
    (LMTrainingConfig, {"time_budget": "60"}, "time_budget must be a number or None, got '60' (str)"),
    # A switch given as a string would read as true, "no" included.
    (LMTrainingConfig, {"variable_length": "yes"}, "variable_length must be True or False, got 'yes' (str)"),
    (LMTrainingConfig, {"tie_weights": "yes"}, "tie_weights must be True, False or None, got 'yes' (str)"),
    (ForecasterConfig, {"time": "t", "target": "y", "horizon": 3, "calendar": "no"},
     "calendar must be True or False, got 'no' (str)"),
    (SpeechConfig, {"stop_when_perfect": "no"}, "stop_when_perfect must be True or False, got 'no' (str)"),
    (TaskTrainingConfig, {"stop_when_solved": 1}, "stop_when_solved must be True or False, got 1 (int)"),
    # A bool is a number to Python: weight_decay=True and min_lr_fraction=True trained as 1.0 (steps=True was
    # refused too, as "must be positive, got True").
    (TrainingConfig, {"weight_decay": True}, "weight_decay must be a number, got True (bool)"),
    (TrainingConfig, {"min_lr_fraction": True}, "min_lr_fraction must be a number, got True (bool)"),
    (TrainingConfig, {"steps": True}, "steps must be an integer or None, got True (bool)"),
    (TrainingConfig, {"epochs": True}, "epochs must be a number or None, got True (bool)"),
    (TrainingConfig, {"lr": np.True_}, "lr must be a number, got True (bool)"),
    (LMTrainingConfig, {"seq_len": True}, "seq_len must be an integer or None, got True (bool)"),
    (SpeechConfig, {"time_masks": True}, "time_masks must be an integer, got True (bool)"),
])
def test_a_setting_that_is_not_a_number_or_a_switch_is_named_before_its_range_is_checked(config, settings, message):
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        config(**settings)


def test_numpy_numbers_in_a_config_are_settled_into_python_ones():
    """np.int64 steps was refused as "must be an integer"; np.float32 lr or zoneout failed when
    the config was written as JSON; np.int64 extra seasons were refused as not periods."""
    config = LMTrainingConfig(steps=np.int64(5), lr=np.float32(0.5), variable_length=np.bool_(False), seed=np.uint8(3),
                              zoneout=np.float32(0.25))
    settled = (config.steps, config.lr, config.variable_length, config.seed, config.zoneout)
    assert settled == (5, 0.5, False, 3, 0.25) and [type(value) for value in settled] == [int, float, bool, int, float]
    assert json.loads(json.dumps(asdict(config)))["lr"] == 0.5
    seasons = ForecasterConfig(time="t", target="y", horizon=np.int64(3), extra_seasons=(np.int64(7),)).extra_seasons
    assert seasons == (7,) and type(seasons[0]) is int
    # a float32 is the number it shows: the interval's columns were y_lower_80.0000011920929
    forecaster = ForecasterConfig(time="t", target="y", horizon=3, interval=np.float32(0.8), dropout=np.float16(0.1))
    assert (forecaster.interval, forecaster.dropout) == (0.8, 0.1)


@pytest.mark.parametrize("settings, message", [
    ({"hidden_size": 16.0}, "hidden_size must be a positive integer, got 16.0"),
    ({"batch_size": 2.0}, "batch_size must be a positive integer, got 2.0"),
    ({"embedding_size": 0, "tie_weights": False}, "embedding_size must be a positive integer, got 0"),
    ({"validation_fraction": 1.5}, "validation_fraction must be in (0, 1), got 1.5"),
    ({"validation_fraction": math.nan}, "validation_fraction must be in (0, 1), got nan"),
])
def test_the_language_model_s_sizes_and_fractions_are_checked_when_built(settings, message):
    """16.0 reached torch (or a slice) and failed there, naming no setting; a fraction out of
    range was refused only once training read the text."""
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        LMTrainingConfig(**settings)


def test_a_time_budget_spent_before_the_first_evaluation_still_decays_the_rate(tmp_path, monkeypatch):
    """20 one-second steps in a 20 s budget, evaluated only at the end: the schedule follows the
    clock, so the run ends at the floor."""
    monkeypatch.setattr(loop, "time", Clock())
    settings = dict(lr=0.1, eval_every=1000, warmup=2, min_lr_fraction=0.1, time_budget=20)
    run = Trainer(TrainingConfig(**settings)).run(Quadratic([1.0], 0.0))
    assert [row["step"] for row in run.history] == [20]
    assert run.history[-1]["lr"] == pytest.approx(
        learning_rate(TrainingConfig(**settings), 19, decay_progress(TrainingConfig(**settings), 19, 20)))
    assert run.history[-1]["lr"] < 0.011


def test_a_configs_settings_are_settled_into_their_forms():
    """init="orthogonal" was read letter by letter at training time; a list left the frozen
    config unhashable; extra_seasons=168 raised "'int' object is not iterable"."""
    config = LMTrainingConfig(init="orthogonal", adaptive_softmax_cutoffs=[20, 40], zoneout=[0.1, 0.2])
    assert (config.init, config.adaptive_softmax_cutoffs, config.zoneout) == (("orthogonal",), (20, 40), (0.1, 0.2))
    assert config.regularisers(35)["init"] == ["orthogonal"] and hash(config) == hash(LMTrainingConfig(
        init=("orthogonal",), adaptive_softmax_cutoffs=(20, 40), zoneout=(0.1, 0.2)))
    assert TaskTrainingConfig(init="chrono").init == ("chrono",)
    assert ForecasterConfig(time="t", target="y", horizon=4, season=24, extra_seasons=168).extra_seasons == (168,)
    with pytest.raises(ValueError, match=re.escape("init must be None, 'chrono' or 'orthogonal', or a sequence of "
                                                   "them, got 'orth'")):
        SpeechConfig(init="orth")


def test_scores_given_as_tensors_or_numpy_numbers_are_written_as_numbers(tmp_path):
    """A 0-dim tensor in evaluate()'s dict failed at "Object of type Tensor is not JSON
    serializable" with an out folder, and stayed a tensor in the history without."""
    job = type("TensorScores", (Quadratic,), {"evaluate": lambda self: {
        "val_loss": (self.model.weight[0, 0] - 1.0) ** 2, "val_other": np.float32(0.25)}})([1.0, 1.0], 1.0)
    run = Trainer(TrainingConfig(steps=2, eval_every=1, lr=0.1)).run(job, tmp_path / "run")
    assert all(type(row["val_loss"]) is float and type(row["val_other"]) is float for row in run.history)
    assert json.loads((tmp_path / "run" / "results.json").read_text())["best_val_loss"] == run.best["val_loss"]


def test_a_stray_file_in_a_runs_checkpoint_is_refused_before_training_not_after(tmp_path):
    """A .DS_Store in best/ stopped a resumed run at its first better evaluation, after the
    training since the last checkpoint, and before last/ was written."""
    Trainer(TrainingConfig(steps=2, eval_every=1)).run(Quadratic([1.0], 0.0), tmp_path / "run")
    (tmp_path / "run" / "best" / ".DS_Store").write_text("")
    job = Quadratic([1.0], 0.0)
    with pytest.raises(FileExistsError, match=re.escape(
            f"{tmp_path / 'run' / 'best'} holds files that are not a checkpoint's (.DS_Store), which writing a "
            "checkpoint there would delete: move them out, or choose another folder")):
        Trainer(TrainingConfig(steps=6, eval_every=1)).run(job, tmp_path / "run", resume=True)
    assert job.steps_seen == []


def test_a_jobs_counts_and_scores_of_any_number_type_are_taken(tmp_path):
    """(loss, np.int64(3)) and [loss, 3] trained before the contract was checked; np.float64
    scores stayed NumPy numbers; a None selection metric failed at a comparison."""
    class Loose(Quadratic):
        def train_loss(self, model, step):
            self.steps_seen.append(step)
            return [(model.weight[0, 0] - 1.0) ** 2, np.int64(3)]

        def evaluate(self):  # the first evaluation lacks the metric that selects
            return {"val_loss": None if len(self.steps_seen) == 1 else np.float64(0.5)}

    job = Loose([1.0], 1.0)
    run = Trainer(TrainingConfig(steps=2, eval_every=1, lr=0.1, patience=1)).run(job)
    assert [row["val_loss"] for row in run.history] == [None, 0.5] and type(run.history[1]["val_loss"]) is float
    assert run.best["step"] == 2


def test_a_run_diverging_after_unscored_evaluations_says_so(tmp_path):
    """A None selection metric in the rows made the divergence message fail: "must be real number, not NoneType"."""
    class Unscored(Quadratic):
        def train_loss(self, model, step):
            loss, items = super().train_loss(model, step)
            return (loss * math.nan if step >= 2 else loss), items

        def evaluate(self):
            return {"val_loss": None}

    with pytest.raises(TrainingDiverged, match=re.escape(
            f"training diverged at step 2: the training loss became nan (the last finite training loss: 4 at step "
            f"1). Kept: {tmp_path / 'run' / 'last'} (step 2)")):
        Trainer(TrainingConfig(steps=5, eval_every=1, lr=1e-12)).run(Unscored([2.0], 1.0), tmp_path / "run")


def test_a_rate_whose_update_leaves_float32_is_said_to_diverge(tmp_path):
    """Adam's first step at lr 1e38 is lr / 0.1, past float32: torch's "value cannot be converted
    to type float without overflow" came as a bare traceback."""
    with pytest.raises(TrainingDiverged, match=re.escape(
            "quadratic: training diverged at step 0: the optimizer's update overflowed (value cannot be converted to "
            "type float without overflow) (the last finite training loss: 1 at step 0). Nothing had been saved in "
            f"{tmp_path / 'run'} yet (its first evaluation comes at step 1). Lower the learning rate (--lr, now "
            "1e+38): the optimizer scales its step by it, past the float range.")):
        Trainer(TrainingConfig(steps=5, eval_every=1, lr=1e38)).run(Quadratic([1.0], 1.0), tmp_path / "run")


def test_a_job_evaluated_each_epoch_that_diverges_first_names_the_epoch_s_step(tmp_path):
    """A forecast job (7 steps an epoch) was told its first evaluation came at step 100 (eval_every)."""
    class EachEpoch(Quadratic):
        evaluate_every_epoch = True

    with pytest.raises(TrainingDiverged, match=re.escape(
            f"Nothing had been saved in {tmp_path / 'run'} yet (its first evaluation comes at step 3).")):
        Trainer(TrainingConfig(steps=5, eval_every=100, lr=1e38)).run(EachEpoch([1.0, 2.0, 3.0], 1.0),
                                                                       tmp_path / "run")
