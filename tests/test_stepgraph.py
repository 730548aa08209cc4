"""runtime.GraphedStep's plumbing on a CPU, with a stand-in for the CUDA graph: warm-up calls that
run the step, one capture, replays that overwrite the captured outputs with the new inputs'
results, one shape only; and the trainer's ``step_graph`` with a stand-in that runs a real step.
(A CUDA capture records kernels without running them; the stand-in records the call the same way.
Whether a captured training step trains as the plain one is checked on a GPU:
benchmarks/gpu_probe.py --only stepgraph.)"""
import contextlib
import json

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
    warm = [step(x + i, y) for i in range(2)]  # every call is one step on its own inputs
    assert calls == ["ran", "ran"] and step.graph is None and torch.equal(warm[1][0], (x + 1) * 2 + 1)
    a, s = step(x, y)
    assert calls == ["ran", "ran", "captured", "ran"]  # the capture runs nothing; the first replay does
    assert torch.equal(a, x * 2 + 1) and float(s) == 6.0
    x1 = x + 1
    a2, s2 = step(x1, y)
    assert a2 is a and s2 is s and torch.equal(a, x1 * 2 + 1) and float(s) == 10.0
    assert calls[4:] == ["ran"] and step.inputs[0] is not x1 and torch.equal(step.inputs[0], x1)  # copied in
    with pytest.raises(ValueError, match=r"captured with \(4,\)"):
        step(torch.zeros(5), torch.zeros(5))
    with pytest.raises(ValueError, match="torch.float32"):
        step(torch.zeros(4, dtype=torch.float64), y)


# -- the trainer's step_graph -------------------------------------------------------------------

SMALL = dict(n_layer=1, n_embd=32, n_head=2, batch_size=32, lr=3e-3, warmup_steps=6, steps=14, log_every=1,
             eval_every=7, eval_max_items=16, ckpt_every=7, progress="none", mode="static")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from jepa_kit.datagen import generate

    return generate("tiny", tmp_path_factory.mktemp("sg_data") / "data", seed=0, valid_per_split=24)


def _copy_into(old, new):
    if isinstance(old, torch.Tensor):
        old.copy_(new)
    elif isinstance(old, (tuple, list)):
        for o, n in zip(old, new):
            _copy_into(o, n)


class CpuGraph:
    """Stands in for a CUDA graph around a real training step: the capture runs the step and then puts
    back the weights and optimizer state it changed, in place (a CUDA capture records without
    running); a replay runs the step on the captured inputs and writes into the captured outputs."""

    step = None  # the GraphedStep, set by the factory below

    def replay(self):
        _copy_into(self.step.outputs, self.step.fn(*self.step.inputs))


def cpu_graph_patch(monkeypatch, holder):
    import jepa_kit.step as S

    @contextlib.contextmanager
    def capture(graph):
        trainer_step = holder["trainer_step"]
        params = list(trainer_step.model.parameters())
        saved = [p.detach().clone() for p in params]
        state = {i: {k: v.clone() for k, v in trainer_step.opt.state[p].items()} for i, p in enumerate(params)}
        yield
        with torch.no_grad():
            for i, p in enumerate(params):
                p.copy_(saved[i])
                for k, v in state[i].items():
                    trainer_step.opt.state[p][k].copy_(v)
        holder["captured"] += 1

    class Step(S.GraphedStep):
        def __init__(self, fn, **kw):
            def factory():
                g = CpuGraph()
                g.step = self
                return g

            super().__init__(fn, graph_factory=factory, capture=capture)

    original = S.TrainerStep.__init__

    def init(self, *a, **kw):
        holder["trainer_step"] = self
        original(self, *a, **kw)

    monkeypatch.setattr(S, "GraphedStep", Step)
    monkeypatch.setattr(S.TrainerStep, "__init__", init)
    monkeypatch.setattr("jepa_kit.train.check_step_graph", lambda *a, **kw: None)  # the CPU is refused otherwise


@pytest.mark.parametrize("objective", ["ntp", "jepa"])
def test_a_graphed_run_trains_as_the_plain_one(tmp_path, data, monkeypatch, objective):
    """The trainer's step_graph plumbing (lr tensor updated in place every warm-up step, warm-up calls,
    the capture, replays, the stop flag read by the loop, checkpoints with a tensor lr, evaluations
    between replays), with the stand-in graph: the same metrics as the plain run."""
    from jepa_kit.config import TrainConfig
    from jepa_kit.train import train

    def run(name, **kw):
        cfg = TrainConfig.from_preset("tiny", data=str(data), out=str(tmp_path / name), objective=objective,
                                      **{**SMALL, **kw})
        train(cfg)
        return [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]

    plain = run("plain")
    holder = {"captured": 0}
    cpu_graph_patch(monkeypatch, holder)
    graphed = run("graphed", step_graph=True)
    assert holder["captured"] == 1 and holder["trainer_step"].lr is not None
    train_p, train_g = ([r for r in rows if r["kind"] == "train"] for rows in (plain, graphed))
    assert [r["step"] for r in train_g] == list(range(1, 15)) == [r["step"] for r in train_p]
    assert len({r["lr"] for r in train_g}) > 5  # the warm-up changes the lr at every step, replays included
    for p, g in zip(train_p, train_g):
        assert g["loss"] == pytest.approx(p["loss"], rel=1e-5) and g["lr"] == p["lr"], (p, g)
        assert g["grad_norm"] == pytest.approx(p["grad_norm"], rel=1e-4)
    evals = [[r for r in rows if r["kind"] == "eval"] for rows in (plain, graphed)]
    assert len(evals[1]) == len(evals[0]) >= 2
    for p, g in zip(*evals):
        assert g["splits"]["atomic"]["ntp_loss"] == pytest.approx(p["splits"]["atomic"]["ntp_loss"], rel=1e-5)
    # a graphed run's checkpoint (lr a tensor, the optimizer capturable) resumes as a plain run
    plain, graphed = run("plain", steps=16), run("graphed", step_graph=False, steps=16)
    new_p, new_g = ([r for r in rows if r["kind"] == "train" and r["step"] > 14] for rows in (plain, graphed))
    assert [r["step"] for r in new_g] == [15, 16] == [r["step"] for r in new_p]
    assert all(g["loss"] == pytest.approx(p["loss"], rel=1e-5) for p, g in zip(new_p, new_g))
    assert holder["trainer_step"].lr is None and not any(g["capturable"] for g in holder["trainer_step"].opt.param_groups)


def test_step_graph_is_refused_where_a_captured_step_would_differ(tmp_path, data):
    from jepa_kit.concept import ConceptJEPA
    from jepa_kit.config import ConfigError, TrainConfig
    from jepa_kit.model import GPT2WithJEPA, ObjectiveConfig
    from jepa_kit.step import check_step_graph
    from jepa_kit.train import train
    from jepa_kit.vocab import Vocab

    cfg = TrainConfig.from_preset("tiny", data=str(data), out=str(tmp_path / "r"), step_graph=True, **SMALL)
    with pytest.raises(ConfigError, match="step_graph needs a CUDA device"):
        train(cfg)
    assert not (tmp_path / "r").exists()  # refused before anything was written
    vocab = Vocab.build(20, 20, 2)
    static = GPT2WithJEPA(vocab, "tiny", ObjectiveConfig(mode="static"))
    cuda = torch.device("cuda")  # a device name only: nothing runs
    check_step_graph(static, cuda, 1, "bf16", 0.0)
    check_step_graph(GPT2WithJEPA(vocab, "tiny", ObjectiveConfig(mode="auto")), cuda, 1, "fp32", 0.0)
    for args, why in (((static, cuda, 2, "bf16", 0.0), "single process"), ((static, cuda, 1, "fp16", 0.0), "fp16"),
                      ((static, cuda, 1, "bf16", 0.1), "loss_dropout"),
                      ((GPT2WithJEPA(vocab, "tiny", ObjectiveConfig(mode="packed")), cuda, 1, "bf16", 0.0), "mode packed"),
                      ((ConceptJEPA(vocab, "tiny", ObjectiveConfig(objective="concept")), cuda, 1, "bf16", 0.0),
                       "ConceptJEPA")):
        with pytest.raises(ConfigError, match=why):
            check_step_graph(*args)
