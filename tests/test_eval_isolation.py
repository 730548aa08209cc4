"""Periodic evaluations leave training untouched (issue 12).

An H100 ntp run (``--preset gpu``) turned NaN at step 1,001, the step right after its first
periodic evaluation. Whatever the cause, the first suspect is the evaluation itself: it runs the
model in eval mode, under ``inference_mode``, with bf16 autocast for the fast ranking passes, a
padded copy of the LM head and changed matmul-precision flags, and the trainer checkpoints right
after it. None of that may reach the next training step.

The proof here is end to end, with the kit's own ``train``: a run that evaluates every few steps
ends with the same weights, optimizer state, RNG state and training losses as the same run that
never evaluates, for ntp and jepa, packed and fixed-shape (static) layouts, fp32 and bf16-autocast
training, dropout > 0 (and JEPA loss dropout), every ranking precision a periodic evaluation can
use on a CPU (fp32 = auto there, bf16, checked), and a torch.compile'd static step. On one thread
(conftest.py sets it) the two runs are bit-identical, so the comparison is exact: an evaluation
that changed a weight by one ulp, flipped a ``requires_grad``, drew a random number the trainer
does not restore, or left a mode or flag behind would show. (On two threads, two compiled runs
without any evaluation already differed by up to 3e-5 here: the compiled CPU kernels' reduction
order is not fixed there. One thread fixes it.)

The first test checks the same on ``evaluate`` alone, state by state, so that a failure names what
was touched. One thing an evaluation did leave behind, found here: the per-process cache of masks
and position ids, filled under ``inference_mode`` when the evaluation was the first to need a table
(see ``test_tables_first_built_by_an_evaluation_can_be_trained_with``). The last test runs the GPU
probe that checks the rest on the next H100 session (benchmarks/gpu_probe.py, section eval_nan) in its
CPU-sized form.
"""
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from jepa_kit import checkpoint as ckpt
from jepa_kit.config import TrainConfig
from jepa_kit.data import load_dataset
from jepa_kit.evaluate import evaluate
from jepa_kit.model import GPT2WithJEPA, ObjectiveConfig
from jepa_kit.train import train

STEPS, EVAL_EVERY = 12, 4  # evaluations after steps 4 and 8, each followed by training steps


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # bit-identical runs need a fixed reduction order
    yield
    torch.set_num_threads(n)


def _backend_flags() -> dict:
    b = torch.backends
    objs = {"cuda.matmul": b.cuda.matmul, "cudnn": b.cudnn, "cudnn.conv": getattr(b.cudnn, "conv", None),
            "mkldnn": b.mkldnn, "mkldnn.matmul": getattr(b.mkldnn, "matmul", None)}
    flags = {name: obj.fp32_precision for name, obj in objs.items() if hasattr(obj, "fp32_precision")}
    flags["float32_matmul_precision"] = torch.get_float32_matmul_precision()
    return flags


def _global_state() -> dict:
    return {"grad": torch.is_grad_enabled(), "inference": torch.is_inference_mode_enabled(),
            "autocast_cpu": torch.is_autocast_enabled("cpu"), "autocast_cpu_dtype": torch.get_autocast_dtype("cpu"),
            "flags": _backend_flags(), "default_dtype": torch.get_default_dtype()}


@pytest.mark.parametrize("objective", ["ntp", "jepa"])
def test_evaluate_touches_nothing_training_reads(tiny_data, objective):
    ds = load_dataset(tiny_data)
    torch.manual_seed(0)
    model = GPT2WithJEPA(ds.vocab, preset={"n_layer": 2, "n_embd": 32, "n_head": 2, "dropout": 0.1},
                         objective=ObjectiveConfig(objective=objective, mode="static")).train()
    model.gpt2.transformer.h[0].ln_1.bias.requires_grad_(False)  # a frozen parameter must stay frozen
    before = {n: (p.detach().clone(), p._version, p.requires_grad, p.dtype, p.device, p.grad)
              for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    modes = {n: m.training for n, m in model.named_modules()}
    state, rng = _global_state(), torch.get_rng_state()
    for precision in ("fp32", "bf16", "checked"):
        res = evaluate(model, ds, max_items=8, precision=precision, logit_lens=precision == "fp32")
        assert res["atomic"]["precision"] == precision
        for n, p in model.named_parameters():
            value, version, grad_flag, dtype, device, grad = before[n]
            assert p._version == version, f"{precision}: {n} was written in place"
            assert torch.equal(p.detach(), value), f"{precision}: {n} changed"
            assert (p.requires_grad, p.dtype, p.device, p.grad) == (grad_flag, dtype, device, grad), f"{precision}: {n}"
        for n, b in model.named_buffers():
            assert torch.equal(b, buffers[n]), f"{precision}: buffer {n} changed"
        assert {n: m.training for n, m in model.named_modules()} == modes, f"{precision}: a module's mode changed"
        assert _global_state() == state, f"{precision}: grad/autocast/backend state left changed"
        # evaluate draws nothing from the global generator: the trainer restores only the CPU one,
        # so on CUDA (whose generator drives dropout there) this is what keeps training's draws intact
        assert torch.equal(torch.get_rng_state(), rng), f"{precision}: evaluate drew from the global RNG"


@pytest.mark.parametrize("mode", ["static", "packed", "two_pass"])
def test_tables_first_built_by_an_evaluation_can_be_trained_with(tiny_data, tmp_path, mode):
    """The masks and position ids are cached per process. An evaluation runs the model's own pass
    (the JEPA diagnostics) under ``torch.inference_mode``; when it is the first to need a table, that
    table must still be usable by training afterwards (a notebook that evaluates one run and then
    trains another). It used to be cached as an inference tensor, and the next fixed-shape or
    two-pass training step failed with "Inference tensors cannot be saved for backward"."""
    from jepa_kit import masks

    for cached in (masks._allowed, masks._additive, masks._positions, masks.layout_tables,
                   masks._cached_static_tables):
        cached.cache_clear()  # other tests may have built these tables already, outside inference mode
    ds = load_dataset(tiny_data)
    torch.manual_seed(0)
    model = GPT2WithJEPA(ds.vocab, preset={"n_layer": 1, "n_embd": 32, "n_head": 2},
                         objective=ObjectiveConfig(objective="jepa", mode=mode))
    assert evaluate(model, ds, splits=("train",), max_items=8)["jepa"]["n"] == 8  # builds the tables
    cfg = _config(tiny_data, tmp_path / "run", "jepa", 0, n_layer=1, n_embd=32, n_head=2, mode=mode, dropout=0.0)
    rows = _final_state(train(cfg))[1]  # fp32 steps: the same tables the evaluation built
    assert len(rows) == STEPS and all(math.isfinite(r["loss"]) for r in rows)


def _config(data, out, objective, eval_every, eval_precision="fp32", **kw):
    base = dict(data=str(data), out=str(out), objective=objective, steps=STEPS, log_every=1, eval_every=eval_every,
                eval_max_items=12, eval_precision=eval_precision, eval_budget=0, ckpt_every=1000, keep_last=10,
                progress="none", dropout=0.1, seed=3)
    return TrainConfig.from_preset("tiny", **{**base, **kw})


def _final_state(run):
    """Weights, optimizer tensors and RNG state of the last checkpoint (written before the final
    evaluation), and the training rows."""
    d = ckpt.step_dir(run, STEPS)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return ({f: load_file(str(d / f)) for f in ("model.safetensors", "optimizer.safetensors", "rng.safetensors")},
            [r for r in rows if r["kind"] == "train"], [r for r in rows if r["kind"] == "eval" and not r["final"]])


def _assert_same_training(ref, got, what):
    (files_a, rows_a, _), (files_b, rows_b, evals_b) = ref, got
    assert [e["step"] for e in evals_b] == list(range(EVAL_EVERY, STEPS, EVAL_EVERY)), f"{what}: evaluations missing"
    assert len(rows_a) == len(rows_b) == STEPS
    for ra, rb in zip(rows_a, rows_b):  # every step's loss, the steps right after an evaluation included
        for key in ("loss", "ntp_loss", "jepa_loss", "n_jepa", "lr", "grad_norm"):
            assert ra[key] == rb[key], f"{what}: {key} at step {ra['step']}: {ra[key]!r} without evaluations, {rb[key]!r} with"
    for f, tensors in files_a.items():
        assert tensors.keys() == files_b[f].keys(), f"{what}: {f}"
        for name, t in tensors.items():
            other = files_b[f][name]
            assert torch.equal(t, other), (f"{what}: {f} {name} differs after {STEPS} steps, max |diff| "
                                           f"{(t.double() - other.double()).abs().max().item():.3g}")


# (objective, training settings): the CPU default layout, and the GPU preset's (static, bf16 autocast)
CASES = {
    "ntp-packed-fp32": ("ntp", dict(mode="packed")),
    "jepa-packed-fp32": ("jepa", dict(mode="packed", loss_dropout=0.3)),
    "ntp-static-bf16": ("ntp", dict(mode="static", precision="bf16")),
    "jepa-static-bf16": ("jepa", dict(mode="static", precision="bf16", loss_dropout=0.3, jepa_metric="infonce")),
}


@pytest.fixture(scope="module")
def reference_runs():
    return {}  # case -> final state of the run without periodic evaluations, shared by the precisions


@pytest.mark.parametrize("eval_precision", ["fp32", "bf16", "checked"])
@pytest.mark.parametrize("case", list(CASES))
def test_periodic_evaluations_do_not_change_training(tiny_data, tmp_path_factory, reference_runs, case, eval_precision):
    objective, kw = CASES[case]
    if case not in reference_runs:
        out = tmp_path_factory.mktemp(f"ref-{case}") / "run"
        reference_runs[case] = _final_state(train(_config(tiny_data, out, objective, 0, **kw)))
    out = tmp_path_factory.mktemp(f"{case}-{eval_precision}") / "run"
    got = _final_state(train(_config(tiny_data, out, objective, EVAL_EVERY, eval_precision, **kw)))
    assert {e["precision"] for e in got[2]} == {eval_precision}
    _assert_same_training(reference_runs[case], got, f"{case}, evaluations in {eval_precision}")


def test_periodic_evaluations_do_not_change_a_compiled_run(tiny_data, tmp_path):
    """The GPU preset's step on a CPU: static layout, bf16 autocast, torch.compile (default mode),
    bf16 ranking in the evaluations. The evaluation runs the uncompiled model; it must neither change
    what the compiled step computes nor make it recompile (a recompile after an evaluation would be
    a new graph for the step that follows it)."""
    from torch._dynamo.utils import counters

    kw = dict(mode="static", precision="bf16", compile=True)
    torch._dynamo.reset()
    ref = _final_state(train(_config(tiny_data, tmp_path / "none", "ntp", 0, "bf16", **kw)))
    graphs = []  # graphs compiled so far, at every training step of the run with evaluations

    def count(row):
        if row["kind"] == "train":
            graphs.append(counters["stats"]["unique_graphs"])

    got = _final_state(train(_config(tiny_data, tmp_path / "eval", "ntp", EVAL_EVERY, "bf16", **kw), callback=count))
    assert len(graphs) == STEPS and len(set(graphs)) == 1, f"graphs compiled by step 1..{STEPS}: {graphs}"
    _assert_same_training(ref, got, "compiled ntp, evaluations in bf16")


def test_gpu_probe_eval_nan_check_runs_cpu_sized(tiny_data, tmp_path):
    """benchmarks/gpu_probe.py's check for the next GPU session, in its CPU-sized form: it must run,
    and on a CPU find what the tests above prove (no NaN, the runs with and without the evaluation
    and the resumed one agree row by row)."""
    from conftest import load_benchmark

    probe = load_benchmark("gpu_probe")
    res = probe.eval_nan_check(str(tiny_data), tmp_path, cuda=False)
    runs = ("A_eval", "B_no_eval", "A2_eval_then_old_bf16_attention", "R_resume_no_eval")
    assert all(res[r]["nan_at_step"] is None for r in runs), {r: res[r]["nan_at_step"] for r in runs}
    assert [e["step"] for e in res["A_eval"]["evals"]] == [res["eval_step"]]
    assert res["max_loss_diff_A_B_before_eval"] == res["max_loss_diff_A_B_after_eval"] == 0.0
    assert res["max_loss_diff_A_R_after_eval"] == 0.0 and res["C_weights_finite"]
    assert res["verdict"].startswith("the current evaluation: not reproduced")


def test_nan_after_eval_variants_run_cpu_sized(tiny_data, tmp_path):
    """benchmarks/nan_after_eval.py, the fresh-process check for the next GPU session, in its
    CPU-sized form (evaluation at step 6): every variant asked for runs in its own process and says
    finite; the resumed variant continues the evaluated run from its step-6 checkpoint: its first
    logged row is step 12 (a fresh start would log step 6 too), with the loss of the run it came from.
    Its NaN path runs too: the run made to diverge reports its first NaN step, then its step checks
    (fresh models in the process that went NaN: finite on a CPU); poison_steps and compile_repeat run
    them without a run."""
    import subprocess
    import sys

    from conftest import ROOT

    out = tmp_path / "nan.json"
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "nan_after_eval.py"), str(tiny_data),
                        "--variants", "repro,resume,poison,poison_steps,compile_repeat,diverge,buffer_reuse,mask_tensor", "--tail", "4", "--work", str(tmp_path / "w"),
                        "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    res = {r["variant"]: r for r in json.loads(out.read_text())}
    assert set(res) == {"repro", "resume", "poison", "poison_steps", "compile_repeat", "diverge", "buffer_reuse",
                        "mask_tensor"}
    assert res["mask_tensor"]["attention"] == "default, mask tensor" and res["repro"]["attention"] == "default"
    # compile_repeat repeats the kit's compiled step on a GPU; on a CPU one eager check runs its plumbing
    assert [c["setting"] for c in res["compile_repeat"]["step_checks"]] == ["eager bf16 static"], res["compile_repeat"]
    assert all("error" not in r for r in res.values()), res
    assert [n for n, r in res.items() if r["nan_at_step"] is not None] == ["diverge"], res
    for name in ("poison_steps", "diverge"):
        checks = {c["setting"]: c for c in res[name]["step_checks"]}
        assert checks["eager bf16 static"]["finite"] and checks["eager fp32 static"]["finite"], checks
        assert checks["eager bf16 packed"]["finite"] and checks["eager bf16 static math"]["finite"], checks
    assert "step check eager bf16 static" in p.stdout
    assert res["repro"]["evals_at"] == [6] and res["resume"]["evals_at"] == []
    assert [s for s, _ in res["resume"]["losses"]] == [12]
    assert dict(map(tuple, res["resume"]["losses"]))[12] == dict(map(tuple, res["repro"]["losses"]))[12]
    assert "finite" in p.stdout and "resume" in p.stdout


def test_cpu_poison_check_finds_no_unwritten_reads_in_the_compiled_cpu_step():
    """benchmarks/cpu_poison_check.py: the compiled tiny step with glibc's allocations filled with
    different bytes gives the same losses (issue 12's unwritten-memory read is a GPU finding; the
    README says no CPU test can catch it, and this is the measurement behind that sentence)."""
    import re
    import subprocess
    import sys

    from conftest import ROOT

    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cpu_poison_check.py"), "--perturb", "0,85",
                        "--compile-only"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = re.findall(r"^(compiled \w+)\s+perturb\s+(\d+): loss ([\d.]+) grad sum (\S+)\s+loss ([\d.]+) grad sum (\S+)$",
                      p.stdout, re.M)
    assert len(rows) == 4 and "NON-FINITE" not in p.stdout, p.stdout
    for name in ("compiled fp32", "compiled bf16"):
        a, b = [r[2:] for r in rows if r[0] == name]
        assert all(abs(float(x) - float(y)) < 1e-5 for x, y in zip(a, b)), (name, a, b)


def test_nan_after_eval_compile_bisect_runs_its_cpu_settings(tiny_data, tmp_path):
    """compile_bisect on a CPU: the Inductor settings are left out (minutes of compile), the ones with
    extras (masks zero-padded to 16-byte rows, the jepa objective) run under aot_eager, so their
    plumbing is known to work before a GPU runs them under Inductor. Each is finite here."""
    import subprocess
    import sys

    from conftest import ROOT

    out = tmp_path / "bisect.json"
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "nan_after_eval.py"), str(tiny_data),
                        "--variants", "compile_bisect", "--work", str(tmp_path / "w"), "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    checks = json.loads(out.read_text())[0]["step_checks"]
    assert [c["setting"] for c in checks] == [
        "compiled bf16 static, aot_eager (no inductor code)",
        "compiled bf16 static, aot_eager, attention masks zero-padded to 16-byte rows",
        "compiled bf16 static, aot_eager, the jepa objective (rows of 13 tokens)",
        "compiled bf16 static, aot_eager, is_causal without a mask tensor"], checks
    assert all(c.get("finite") for c in checks), checks
    assert checks[2]["losses"] != checks[0]["losses"], "the jepa setting trained the jepa objective"
    # the same attention with and without the mask tensor: the same losses (to bf16 rounding)
    assert checks[3]["losses"] == pytest.approx(checks[0]["losses"], abs=0.02), checks
