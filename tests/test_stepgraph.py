"""runtime.GraphedStep's plumbing on a CPU, with a stand-in for the CUDA graph: warm-up steps, one
capture, replays that overwrite the captured outputs with the new inputs' results, one shape only.
(A CUDA capture records kernels without running them; the stand-in records the call the same way.
Whether a captured training step trains as the plain one is checked on a GPU:
benchmarks/gpu_probe.py --only stepgraph.)"""
import contextlib

import pytest
import torch

from jepa_kit.runtime import GraphedStep


def test_graphed_step_warms_up_captures_once_and_replays_into_the_same_outputs():
    calls = []
    state = {"capturing": False}

    def fn(x, y):
        calls.append("captured" if state["capturing"] else "ran")
        return (x * 2 + y, x.sum())

    class Graph:  # replay = run the captured function on the captured inputs, into the captured outputs
        def replay(self):
            for out, new in zip(step.outputs, step.fn(*step.inputs)):
                out.copy_(new)

    @contextlib.contextmanager
    def capture(graph):
        state["capturing"] = True
        yield
        state["capturing"] = False

    step = GraphedStep(fn, warmup=2, graph_factory=Graph, capture=capture)
    x, y = torch.arange(4.0), torch.ones(4)
    a, s = step(x, y)
    assert calls == ["ran", "ran", "captured", "ran"]  # warm-up, capture, the first replay
    assert torch.equal(a, x * 2 + 1) and float(s) == 6.0
    x1 = x + 1
    a2, s2 = step(x1, y)
    assert a2 is a and s2 is s and torch.equal(a, x1 * 2 + 1) and float(s) == 10.0
    assert calls[4:] == ["ran"] and step.inputs[0] is not x1 and torch.equal(step.inputs[0], x1)  # copied in
    with pytest.raises(ValueError, match=r"captured with \(4,\)"):
        step(torch.zeros(5), torch.zeros(5))
    with pytest.raises(ValueError, match="torch.float32"):
        step(torch.zeros(4, dtype=torch.float64), y)
