"""Threads at once: a server's pool sharing one model, a training thread beside an evaluating
one. What lstmkit keeps process-wide (the models' modes while evaluating, torch's default dtype
and generators around a pipeline's call, the warning filters, the speech frames) comes back as
it was, and each call's numbers are those of the same call made alone."""

from __future__ import annotations

import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch import nn

from lstmkit.models.modes import evaluating
from lstmkit.pipelines import speech as speech_pipeline
from lstmkit.training.isolation import isolated_from_caller
from lstmkit.warning_filters import warnings_filtered, warnings_recorded

THREADS = 4


def at_once(function, count: int = THREADS) -> list:
    """`function(index)` from `count` threads that wait for each other at the start."""
    start = threading.Barrier(count)

    def run(index):
        start.wait()
        return function(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def test_evaluating_from_threads_at_once_gives_every_submodule_its_mode_back():
    """Each block restoring the modes it found left a model in training mode in evaluation mode
    (the others found it there), and switched dropout back on under a call still running."""
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.BatchNorm1d(2))
    model[2].eval()  # frozen: stays in evaluation mode
    inside = threading.Barrier(THREADS)

    def evaluate(_):
        with evaluating(model):
            inside.wait()
            seen = [module.training for module in model.modules()]
            inside.wait()
            time.sleep(0.001 * _)
        return seen

    for _ in range(5):
        assert at_once(evaluate) == [[False] * 4] * THREADS
        assert [module.training for module in model.modules()] == [True, True, True, False]


def test_evaluating_a_model_and_a_part_of_it_from_threads_at_once_keeps_each_part_evaluating_to_the_end():
    """Held by the whole model's id, the model's block ending first switched the part back to
    training under the part's block, whose end then left it in evaluation mode."""
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    part_in, whole_done = threading.Event(), threading.Event()

    def part():
        with evaluating(model[1]):
            part_in.set()
            whole_done.wait()
            return model[1].training

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(part)
        part_in.wait()
        with evaluating(model):
            pass
        whole_done.set()
        assert running.result() is False
    assert [module.training for module in model.modules()] == [True, True, True]


def test_evaluating_within_evaluating_keeps_evaluation_mode_to_the_outer_end():
    model = nn.Sequential(nn.Dropout(0.5))
    with evaluating(model):
        with evaluating(model):
            pass
        assert not model.training and not model[0].training
    assert model.training and model[0].training


def test_pipeline_calls_from_threads_at_once_give_the_callers_dtype_and_generator_back():
    """Each call saved and restored the process's settings: from threads at once, the last to
    end put back what another call had set (float32, a pipeline's seeded generator)."""

    @isolated_from_caller
    def call(seed):
        assert torch.get_default_dtype() == torch.float32
        torch.manual_seed(seed)
        time.sleep(0.001 * seed)
        return torch.randn(2)

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(123)
        expected = torch.randn(3)
        for _ in range(5):
            torch.manual_seed(123)
            at_once(call)
            assert torch.get_default_dtype() == torch.float64
            assert torch.equal(torch.randn(3), expected)
    finally:
        torch.set_default_dtype(previous)


def test_a_call_begun_during_another_threads_builds_in_float32_and_gives_back_the_dtype_set_meanwhile():
    """Only the process's first call set float32: a call begun, after the caller set float64,
    while another thread's call ran, built its model in float64."""
    started, release = threading.Event(), threading.Event()

    @isolated_from_caller
    def long_call():
        started.set()
        release.wait()

    @isolated_from_caller
    def call():
        return torch.get_default_dtype()

    previous = torch.get_default_dtype()
    try:
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(long_call)
            started.wait()
            torch.set_default_dtype(torch.float64)
            assert call() == torch.float32
            release.set()
            running.result()
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(previous)


def test_a_pipeline_call_within_one_gives_the_generator_back_at_its_end_as_fork_rng_does():
    @isolated_from_caller
    def inner():
        torch.manual_seed(7)
        return torch.rand(1)

    @isolated_from_caller
    def outer():
        torch.manual_seed(1)
        first = torch.rand(1)
        inner()
        return first, torch.rand(1)

    torch.manual_seed(1)
    expected = torch.rand(2)
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    first, second = outer()
    assert torch.equal(torch.cat([first, second]), expected)
    assert torch.equal(torch.rand(1), before)


def test_blocks_that_change_the_warning_filters_from_threads_at_once_leave_them_as_they_were():
    """Python's catch_warnings puts back the filters it found at its start: two blocks at once
    left one's "error" filter in place for good. Each block's filter acts throughout it."""
    filters = list(warnings.filters)

    def block(index):
        action = "error" if index % 2 else "ignore"
        with warnings_filtered(action, UserWarning, f"block {index}"):
            time.sleep(0.002 * index)
            with warnings_recorded() as said:  # the other blocks' filters meanwhile left as they are
                warnings.warn("recorded", UserWarning)
            time.sleep(0.002)
            try:
                warnings.warn(f"block {index}", UserWarning)
                return "ignored", len(said)
            except UserWarning:
                return "raised", len(said)

    for _ in range(3):
        assert at_once(block) == [("ignored", 1), ("raised", 1)] * (THREADS // 2)
        assert warnings.filters == filters


def test_a_block_moves_none_of_the_callers_filters():
    """warnings.filterwarnings moved an equal filter of the caller's to the front, for good: an
    "ignore" filter then beat the caller's later "error" for RuntimeWarning."""
    filters = list(warnings.filters)
    warnings.simplefilter("ignore")
    warnings.simplefilter("error", RuntimeWarning)
    try:
        with warnings_filtered("ignore"):
            warnings.warn("ignored", RuntimeWarning)
        with pytest.raises(RuntimeWarning):
            warnings.warn("raised", RuntimeWarning)
    finally:
        warnings.filters[:] = filters


def test_a_filter_the_caller_set_stays_and_one_held_by_two_blocks_stays_until_both_end():
    filters = list(warnings.filters)
    warnings.filterwarnings("ignore", "the caller's", UserWarning)
    try:
        with warnings_filtered("ignore", UserWarning, "the caller's"):
            pass
        assert warnings.filters[0][1].pattern == "the caller's"
    finally:
        warnings.filters.remove(warnings.filters[0])
    inner_done = threading.Event()

    def outer():
        with warnings_filtered("error", UserWarning, "shared"):
            inner_done.wait()
            with pytest.raises(UserWarning):
                warnings.warn("shared", UserWarning)

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(outer)
        with warnings_filtered("error", UserWarning, "shared"):
            pass
        inner_done.set()
        running.result()
    assert warnings.filters == filters


def test_a_file_computed_by_threads_at_once_is_counted_once_in_the_frame_cache():
    cache = speech_pipeline.FrameCache(limit=10**6)

    def compute():
        time.sleep(0.01)
        return torch.zeros(100), None

    frames = at_once(lambda _: cache.get(("file",), compute))
    assert cache.bytes == 400 and list(cache.entries) == [("file",)]
    assert all(entry is frames[0] or torch.equal(entry[0], frames[0][0]) for entry in frames)

