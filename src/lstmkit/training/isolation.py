"""A pipeline's call, apart from its caller's torch settings: it seeds torch's global generator
with its own seed (the weights, the dropout masks, the data order) and gives it back as it
found it, and it builds and trains its models in float32 with autograd on and autocast off
(but for its own `--precision`), whatever torch's default dtype, grad mode and autocast were
(restored after it)."""

from __future__ import annotations

import contextlib
import functools

import torch


def isolated_from_caller(function):
    """`function` run apart from four settings of the caller's, each given back after it:
    - torch's global random-number generators, as `torch.random.fork_rng` keeps them: a
      training call seeds them with its config's seed, so the caller's stream would otherwise
      go on from that seed (an unseeded draw after two runs begun under two different
      `torch.manual_seed`s gave the same numbers), and a load initialised the weights it then
      replaced. The CPU generator always; every CUDA device's where CUDA is initialised when
      the call begins (a run on cuda:1 seeds them all, whichever device is current);
    - torch's default dtype, float32 inside: a float64 default left by float64 checks built
      float64 models that trained, and were saved, as float64 while the run said float32, or
      failed on the pipeline's float32 data;
    - autograd, on inside: under a caller's `torch.no_grad()` the first step stopped at
      torch's "element 0 of tensors does not require grad" (under `torch.inference_mode()`, at
      a message blaming the job's loss);
    - autocast, off inside (the run's own `precision` turns it on for its forward passes): a
      `torch.autocast` left on by an evaluation before trained and scored a run of precision
      "32" in bfloat16, and its results said float32.
    torch's default dtype is the process's, not a thread's: pipelines called from threads at
    once share it, as they share the generators."""

    @functools.wraps(function)
    def isolated(*arguments, **options):
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        default_dtype = torch.get_default_dtype()
        torch.set_default_dtype(torch.float32)
        try:
            with (torch.random.fork_rng(devices=devices), torch.inference_mode(False), torch.enable_grad(),
                  contextlib.ExitStack() as autocast_off):
                for device_type in ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",):
                    autocast_off.enter_context(torch.autocast(device_type, enabled=False))
                return function(*arguments, **options)
        finally:
            torch.set_default_dtype(default_dtype)

    return isolated
