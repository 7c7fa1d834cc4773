"""The training core's optimizers: SGD steps, NT-ASGD (its trigger, the averaged weights
that evaluations, best/ and the final model use, and a bit-exact resume after the switch) and
the weights' moving average (the same uses, and resume), worked by hand on one weight."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from safetensors.torch import load_file

from helpers import Killed, Quadratic, dies_at_step
from lstmkit.training import Trainer, TrainingConfig
from lstmkit.checkpoint import load_checkpoint
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


@pytest.mark.parametrize("settings", [dict(optimizer="nt-asgd", asgd_patience=2), dict(patience=2)],
                         ids=["nt-asgd", "patience"])
def test_a_budget_that_ended_between_evaluations_moves_neither_nt_asgd_nor_patience(settings, tmp_path):
    """Evaluated every 4 steps, a run whose first budget ended at step 10 holds an evaluation
    there that a run given 40 steps at once does not: counted, it switched NT-ASGD to
    averaging at step 12, not 16 (and the final model differed), and patience refused to resume."""
    def config(steps: int) -> TrainingConfig:
        return TrainingConfig(steps=steps, lr=LR, eval_every=4, clip=100.0, warmup=0, min_lr_fraction=1.0, **settings)

    straight_job = Quadratic([1.0], validation_target=-1.0)
    straight = Trainer(config(40)).run(straight_job, tmp_path / "straight")
    Trainer(config(10)).run(Quadratic([1.0], validation_target=-1.0), tmp_path / "resumed")
    resumed_job = Quadratic([1.0], validation_target=-1.0)
    resumed = Trainer(config(40)).run(resumed_job, tmp_path / "resumed", resume=True)
    assert [row["step"] for row in resumed.history] == [4, 8, 10] + [row["step"] for row in straight.history][2:]
    assert resumed.steps == straight.steps == (40 if "optimizer" in settings else 12)
    assert torch.equal(resumed_job.model.weight, straight_job.model.weight)
    switched = [json.loads((tmp_path / run / "last" / "config.json").read_text())["progress"]["averaging_from"]
                for run in ("straight", "resumed")]
    assert switched == ([16, 16] if "optimizer" in settings else [None, None])


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
    (dict(ema_decay=1.0), "ema_decay (--ema-decay) must be in (0, 1) (0.999 averages about the last 1,000 steps), "
                          "got 1.0"),
    (dict(ema_decay=0), "ema_decay (--ema-decay) must be in (0, 1) (0.999 averages about the last 1,000 steps), got 0"),
    (dict(ema_decay=0.9, optimizer="nt-asgd"), "ema_decay (--ema-decay) averages AdamW's or SGD's weights; nt-asgd "
                                               "averages its own: give one of them, got ema_decay=0.9 with "
                                               "optimizer='nt-asgd'"),
])
def test_bad_optimizer_settings_are_named(settings, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainingConfig(**settings)


def moving_averages(ema_decay: float, steps: int) -> list[float]:
    """The moving average of SGD's w_k after each of `steps` steps, by hand: w_1 first, then
    ā ← β ā + (1 − β) w_(s+1) with β = min(ema_decay, (1 + s) / (10 + s)) after step s."""
    averages = [sgd_weight(1)]
    for step in range(1, steps):
        beta = min(ema_decay, (1 + step) / (10 + step))
        averages.append(beta * averages[-1] + (1 - beta) * sgd_weight(step + 1))
    return averages


def ema_config(steps: int) -> TrainingConfig:
    return TrainingConfig(steps=steps, lr=LR, eval_every=1, clip=100.0, optimizer="sgd", ema_decay=0.5)


def test_the_moving_average_is_what_evaluations_best_and_the_final_model_use(tmp_path):
    """Ten SGD steps from w = 0 towards 1 with ema_decay 0.5: β warms up as 2/11, 3/12, ...
    and reaches its cap 0.5 at step 8. The validation target 0.5 is nearest the average (which
    lags the iterate) at one step: best/ holds the average there, last/ the iterate."""
    job = Quadratic([1.0], validation_target=0.5)
    run = Trainer(ema_config(10)).run(job, tmp_path / "run")
    averages = moving_averages(0.5, 10)
    assert averages[:2] == pytest.approx([0.2, 2 / 11 * 0.2 + 9 / 11 * 0.36])
    assert [row["val_loss"] for row in run.history] == pytest.approx([(a - 0.5) ** 2 for a in averages], abs=1e-6)
    assert job.model.weight.item() == pytest.approx(averages[-1]), "the final model is the average"
    best = min(range(10), key=lambda k: abs(averages[k] - 0.5))
    assert run.best["step"] == best + 1 and averages[best] != pytest.approx(sgd_weight(best + 1), abs=0.01)
    assert load_checkpoint(tmp_path / "run" / "best", "cpu")[1]["weight"].item() == pytest.approx(averages[best])
    saved = load_file(tmp_path / "run" / "last" / "model.safetensors")
    assert saved["weight"].item() == pytest.approx(sgd_weight(10)), "last/ keeps the iterate, to resume from"


def test_a_run_with_a_moving_average_resumed_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    straight_job = Quadratic([1.0], validation_target=0.5)
    straight = Trainer(ema_config(10)).run(straight_job, tmp_path / "straight", keep_best=True)
    dies_at_step(monkeypatch, 6)
    with pytest.raises(Killed):
        Trainer(ema_config(10)).run(Quadratic([1.0], validation_target=0.5), tmp_path / "resumed", keep_best=True)
    monkeypatch.undo()
    resumed_job = Quadratic([1.0], validation_target=0.5)
    resumed = Trainer(ema_config(10)).run(resumed_job, tmp_path / "resumed", resume=True, keep_best=True)
    assert [row["val_loss"] for row in resumed.history] == [row["val_loss"] for row in straight.history]
    assert torch.equal(resumed_job.model.weight, straight_job.model.weight)
    assert resumed_job.model.weight.item() == pytest.approx(moving_averages(0.5, 10)[straight.best["step"] - 1])


class LateWeight(Quadratic):
    """A second weight that the loss uses from step 2 on: AdamW sets up its state then."""

    def __init__(self) -> None:
        super().__init__([1.0], validation_target=0.5)
        self.model.late = torch.nn.Parameter(torch.zeros(1))

    def train_loss(self, model, step):
        loss, items = super().train_loss(model, step)
        return (loss + (model.late[0] - 1) ** 2 if step >= 2 else loss), items


def test_a_weight_that_trains_later_joins_the_moving_average_when_it_does():
    job = LateWeight()
    config = TrainingConfig(steps=4, lr=LR, eval_every=1, clip=100.0, ema_decay=0.5)
    Trainer(config).run(job)
    # Adam's first step on it (gradient −2) moves it by lr to 0.1, its second (gradient −1.8) by
    # lr · m̂ / √v̂ with m = 0.9 · 0.1 · (−2) + 0.1 · (−1.8), v = 0.999 · 0.001 · 4 + 0.001 · 1.8²
    second = 0.1 + LR * (0.36 / (1 - 0.9 ** 2)) / math.sqrt(0.007236 / (1 - 0.999 ** 2))
    # the average starts at the first (ā = 0.1, after step 2) and takes the second with β = 4/13
    assert job.model.late.item() == pytest.approx(4 / 13 * 0.1 + 9 / 13 * second, rel=1e-5)
