"""The caller's random numbers, kept: a pipeline seeds torch's global generator with its own
seed (the weights, the dropout masks, the data order), and gives it back as it found it."""

from __future__ import annotations

import functools

import torch


def keeps_random_state(function):
    """`function`, run on torch's global random-number generators and restored after it, as
    `torch.random.fork_rng` does: a training call seeds them with its config's seed, so the
    caller's stream would otherwise go on from that seed (an unseeded draw after two runs begun
    under two different `torch.manual_seed`s gave the same numbers). The CPU generator always;
    every CUDA device's where CUDA is initialised when the call begins (a run on cuda:1 seeds
    them all, whichever device is current)."""

    @functools.wraps(function)
    def with_random_state_kept(*arguments, **options):
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        with torch.random.fork_rng(devices=devices):
            return function(*arguments, **options)

    return with_random_state_kept
