"""A pipeline's call, apart from its caller's torch settings: it seeds torch's global generator
with its own seed (the weights, the dropout masks, the data order) and gives it back as it
found it, and it builds and trains its models in float32 with autograd on and autocast off
(but for its own `--precision`), whatever torch's default dtype, grad mode and autocast were
(restored after it)."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator

import torch
from torch import Tensor


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
    torch's default dtype and generators are the process's, not a thread's: pipelines called
    from threads at once share them while they run (`process_settings_kept`)."""

    @functools.wraps(function)
    def isolated(*arguments, **options):
        with (process_settings_kept(), torch.inference_mode(False), torch.enable_grad(),
              contextlib.ExitStack() as autocast_off):
            for device_type in ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",):
                autocast_off.enter_context(torch.autocast(device_type, enabled=False))
            return function(*arguments, **options)

    return isolated


class Callers:
    """The isolated calls running now, process-wide: how deep in each thread, and the settings
    the first of them found."""

    lock = threading.Lock()
    depths: dict[int, int] = {}
    found: tuple[torch.dtype, list[int], tuple[Tensor, list[Tensor]]] | None = None


@contextlib.contextmanager
def process_settings_kept() -> Iterator[None]:
    """Torch's default dtype float32 and its generators given back inside: the first call of
    the process to begin (in any thread) saves them, the last to end gives them back. Each
    call's own save and restore, from threads at once, left the process in another call's
    settings after all had returned (a float64 default turned float32, the generator in a
    pipeline's seeded stream). A call within a call in one thread gives the generators back at
    its end, as `torch.random.fork_rng` does. Every call sets float32 as it begins: a default
    the caller set to float64 while another thread's call ran is the one given back at the end.
    (A call begun while another thread's runs gives back no generator of its own: they share it.)"""
    thread = threading.get_ident()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    entered, within = False, None
    try:
        with Callers.lock:
            depth = Callers.depths.get(thread, 0)
            if not Callers.depths:
                Callers.found = torch.get_default_dtype(), devices, generator_states(devices)
            elif not depth and torch.get_default_dtype() != torch.float32:  # set by a caller meanwhile
                Callers.found = (torch.get_default_dtype(), *Callers.found[1:])
            Callers.depths[thread], entered = depth + 1, True
            torch.set_default_dtype(torch.float32)
        within = generator_states(devices) if depth else None
        yield
    finally:
        if within is not None:
            set_generator_states(devices, within)
        if entered:
            with Callers.lock:
                if depth:
                    Callers.depths[thread] = depth
                else:
                    del Callers.depths[thread]
                if not Callers.depths:
                    default_dtype, first_devices, states = Callers.found
                    torch.set_default_dtype(default_dtype)
                    set_generator_states(first_devices, states)
                    Callers.found = None


def generator_states(devices: list[int]) -> tuple[Tensor, list[Tensor]]:
    """The CPU generator's state and those of the CUDA `devices`."""
    return torch.get_rng_state(), [torch.cuda.get_rng_state(device) for device in devices]


def set_generator_states(devices: list[int], states: tuple[Tensor, list[Tensor]]) -> None:
    cpu, cuda = states
    torch.set_rng_state(cpu)
    for device, state in zip(devices, cuda, strict=True):
        torch.cuda.set_rng_state(state, device)


def forked() -> None:
    """A child forked while another thread held the lock would wait for it for ever; the calls
    of other threads, which the child does not run, hold nothing there."""
    Callers.lock = threading.Lock()
    Callers.depths = {thread: depth for thread, depth in Callers.depths.items() if thread == threading.get_ident()}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=forked)
