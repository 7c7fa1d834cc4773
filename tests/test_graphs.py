"""The bookkeeping of the fused ops' CUDA graphs (`lstmkit.engines.fused.graphs`), which needs
no GPU: when a key runs eagerly, captures or replays, the limit, a failed capture, the setting.
The graphs themselves are proved equal to the reference engine in tests/test_cuda.py."""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch.utils import _pytree as pytree

import lstmkit
from lstmkit.engines.fused import graphs


class Captures:
    """A stand-in for CapturedCall's construction: counts calls, returns a numbered token."""

    def __init__(self, error: Exception | None = None) -> None:
        self.count, self.error = 0, error

    def __call__(self) -> str:
        self.count += 1
        if self.error is not None:
            raise self.error
        return f"graph {self.count}"


def test_a_key_runs_eagerly_first_captures_second_and_replays_after():
    cache, capture = graphs.GraphCache(limit=4), Captures()
    assert [cache.get(("a",), capture) for _ in range(4)] == [None, "graph 1", "graph 1", "graph 1"]
    assert capture.count == 1


def test_keys_past_the_limit_run_eagerly_instead_of_evicting():
    """Evicting would recapture on every call of a loop over more keys than the limit."""
    cache, capture = graphs.GraphCache(limit=1), Captures()
    for _ in range(3):
        cache.get(("a",), capture), cache.get(("b",), capture)
    assert cache.get(("a",), capture) == "graph 1" and cache.get(("b",), capture) is None
    assert capture.count == 1


def test_a_failed_capture_warns_once_and_runs_eagerly_from_then_on():
    cache = graphs.GraphCache(limit=4)
    capture = Captures(RuntimeError("operation not permitted when stream is capturing"))
    cache.get(("a",), capture)
    with pytest.warns(UserWarning, match=r"lstmkit could not capture this layer in a CUDA graph and runs it step by "
                                         r"step, which is slower \(operation not permitted when stream is capturing\); "
                                         r"LSTMKIT_CUDA_GRAPHS=0 turns capturing off"):
        assert cache.get(("a",), capture) is None
    assert cache.get(("a",), capture) is None and capture.count == 1


@pytest.mark.parametrize("value, limit", [(None, 16), ("0", 0), ("40", 40)])
def test_the_environment_sets_the_limit(monkeypatch, value, limit):
    if value is None:
        monkeypatch.delenv("LSTMKIT_CUDA_GRAPHS", raising=False)
    else:
        monkeypatch.setenv("LSTMKIT_CUDA_GRAPHS", value)
    assert graphs.limit_from_environment() == limit


def test_a_setting_that_is_not_a_count_is_refused(monkeypatch):
    monkeypatch.setenv("LSTMKIT_CUDA_GRAPHS", "yes")
    with pytest.raises(ValueError, match=r"LSTMKIT_CUDA_GRAPHS must be a whole number of graphs to keep \(0 turns "
                                         r"capturing off\), got 'yes'"):
        graphs.limit_from_environment()


def test_cpu_calls_run_eagerly_and_record_no_key(monkeypatch):
    monkeypatch.setattr(graphs, "CACHE", graphs.GraphCache(graphs.DEFAULT_LIMIT))
    layer = lstmkit.PeepholeLSTM(3, 4, engine="fused")
    x = torch.randn(5, 2, 3, requires_grad=True)
    first = layer(x)[0]
    first.sum().backward()
    assert torch.equal(layer(x)[0], first)
    assert graphs.CACHE.seen == set() and graphs.CACHE.captured == {}


class DoublingGraph:
    """A stand-in for a captured graph: its replay writes twice the static input into the static
    output, slowly enough for another thread to come between the copy in and the replay."""

    def __init__(self, call: graphs.CapturedCall) -> None:
        self.call = call

    def replay(self) -> None:
        time.sleep(0.0005)
        self.call.outputs[0].copy_(self.call.inputs[0] * 2)


class Ordering:
    """A stand-in for the caller's stream and the call's event: counts the waits and records."""

    def __init__(self) -> None:
        self.waits, self.records = 0, 0

    def wait_event(self, event: Ordering) -> None:
        self.waits += 1

    def record(self, stream: Ordering) -> None:
        self.records += 1


def test_threads_at_once_take_turns_through_a_captured_graph_each_getting_its_own_output(monkeypatch):
    """The static inputs and outputs are one set per key: eight threads serving one model got
    another call's output in 13 of 64 replays."""
    call = graphs.CapturedCall.__new__(graphs.CapturedCall)
    call.device, call.turn = torch.device("cpu"), threading.Lock()
    call.inputs, call.outputs = [torch.zeros(3)], [torch.zeros(3)]
    call.output_spec = pytree.tree_flatten([torch.zeros(3)])[1]
    call.graph = DoublingGraph(call)
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    stream = Ordering()
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: stream)
    call.copied_out = stream
    given = [torch.full((3,), float(number)) for number in range(64)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda leaf: call([leaf])[0], given))
    assert all(torch.equal(result, leaf * 2) for result, leaf in zip(results, given))
    assert stream.waits == stream.records == 64  # each call's stream waits for the last call's copies out


def test_threads_at_once_capture_a_key_once_the_others_running_eagerly_meanwhile():
    """A capture (its warm-up run, any Triton compile) holds no lock: another key's replay, or
    the same key's call, does not wait for it."""
    cache, capture = graphs.GraphCache(limit=4), Captures()
    cache.get(("a",), capture), cache.get(("b",), capture), cache.get(("b",), capture)
    capturing, captured = threading.Event(), threading.Event()

    def slow():
        capturing.set()
        captured.wait()
        return capture()

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(cache.get, ("a",), slow)
        capturing.wait()
        assert cache.get(("a",), capture) is None and cache.get(("b",), capture) == "graph 1"
        captured.set()
        assert running.result() == "graph 2"
    assert cache.get(("a",), capture) == "graph 2" and capture.count == 2 and not cache.capturing


def test_a_capture_interrupted_is_tried_again_at_the_next_call():
    cache = graphs.GraphCache(limit=4)
    cache.get(("a",), Captures())
    with pytest.raises(KeyboardInterrupt):
        cache.get(("a",), Captures(KeyboardInterrupt()))
    assert cache.get(("a",), Captures()) == "graph 1"
