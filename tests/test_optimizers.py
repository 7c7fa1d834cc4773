"""The training core's optimizers: SGD steps and NT-ASGD (its trigger, the averaged weights
that evaluations, best/ and the final model use, and a bit-exact resume after the switch),
worked by hand on one weight."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file

from helpers import Killed, Quadratic, dies_at_step
from lstmkit.training import Trainer, TrainingConfig
from lstmkit.training.optimizers import should_average

LR = 0.1  # on (w − 1)² from w = 0, SGD's w_k = 1 − 0.8^k


def sgd_weight(step: int) -> float:
    return 1 - 0.8 ** step


@pytest.mark.parametrize("losses, patience, expected", [
    ([3.0, 2.0, 1.0, 1.5], 2, False),        # 1.5 is worse than the latest two, not than 3.0
    ([3.0, 2.0, 1.0, 2.5, 3.5], 2, True),    # 3.5 > min(3.0, 2.0)
    ([3.0, 2.0, 1.0, 2.5, 2.0], 2, False),   # 2.0 is not worse than 2.0
    ([1.0, 2.0], 1, False),                  # one earlier evaluation: none before the patience window
    ([1.0, 2.0, 3.0], 1, True),
])
def test_nt_asgd_averages_once_the_loss_is_worse_than_the_best_before_the_patience_window(
        losses, patience, expected):
    assert should_average(losses, patience) is expected


def test_sgd_takes_plain_gradient_steps():
    job = Quadratic([1.0], validation_target=0.0)
    run = Trainer(TrainingConfig(steps=3, lr=LR, eval_every=1, clip=100.0, optimizer="sgd")).run(job)
    assert [row["val_loss"] for row in run.history] == pytest.approx([sgd_weight(k) ** 2 for k in (1, 2, 3)])


def nt_asgd_config(steps: int) -> TrainingConfig:
    return TrainingConfig(steps=steps, lr=LR, eval_every=1, clip=100.0, optimizer="nt-asgd", asgd_patience=1)


def test_nt_asgd_switches_when_validation_stalls_and_then_evaluates_the_average(tmp_path):
    """Every step moves w away from the validation target −1, so the loss rises from the first
    evaluation on: with patience 1 the third evaluation (step 3) switches. The steps go on as
    SGD's; the optimizer averages the iterates from its second step on (torch.optim.ASGD with
    t0 = 0), and evaluations, best/ and the final model see that average."""
    job = Quadratic([1.0], validation_target=-1.0)
    run = Trainer(nt_asgd_config(7)).run(job, tmp_path / "run")
    losses = [row["val_loss"] for row in run.history]
    assert losses[:3] == pytest.approx([(sgd_weight(k) + 1) ** 2 for k in (1, 2, 3)])
    for step in (6, 7):
        average = sum(sgd_weight(k) for k in range(5, step + 1)) / (step - 4)
        assert losses[step - 1] == pytest.approx((average + 1) ** 2), f"step {step}"
    assert losses[3] == pytest.approx((sgd_weight(4) + 1) ** 2), "after its first step the average is that step"
    assert job.model.weight.item() == pytest.approx(sum(sgd_weight(k) for k in range(5, 8)) / 3)
    progress = json.loads((tmp_path / "run" / "last" / "config.json").read_text())["progress"]
    assert progress["averaging_from"] == 3
    saved = load_file(tmp_path / "run" / "last" / "model.safetensors")
    assert saved["weight"].item() == pytest.approx(sgd_weight(7)), "last/ keeps the iterate, to resume from"


def test_nt_asgd_resumed_after_the_switch_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    straight_job = Quadratic([1.0], validation_target=-1.0)
    straight = Trainer(nt_asgd_config(8)).run(straight_job, tmp_path / "straight")
    dies_at_step(monkeypatch, 6)
    with pytest.raises(Killed):
        Trainer(nt_asgd_config(8)).run(Quadratic([1.0], validation_target=-1.0), tmp_path / "resumed")
    monkeypatch.undo()
    resumed_job = Quadratic([1.0], validation_target=-1.0)
    resumed = Trainer(nt_asgd_config(8)).run(resumed_job, tmp_path / "resumed", resume=True)
    assert [row["val_loss"] for row in resumed.history] == [row["val_loss"] for row in straight.history]
    assert torch.equal(resumed_job.model.weight, straight_job.model.weight)


@pytest.mark.parametrize("settings, message", [
    (dict(optimizer="adam"), "optimizer must be one of adamw, sgd, nt-asgd, got 'adam'"),
    (dict(asgd_patience=0), "asgd_patience must be at least 1, got 0"),
    (dict(asgd_patience=2.5), "asgd_patience must be an integer, got 2.5"),
    (dict(asgd_patience=3), "asgd_patience (--asgd-patience) acts with optimizer='nt-asgd' (--optimizer nt-asgd) only; "
                            "got 3 with optimizer='adamw'"),
])
def test_bad_optimizer_settings_are_named(settings, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainingConfig(**settings)
