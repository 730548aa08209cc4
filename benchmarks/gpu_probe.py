"""GPU probes for issue 12. Sections (``--only`` picks some; default: all):

* ``eval_nan``: the targeted check of the ntp divergence at step 1,001 (see ``eval_nan_check``): the
  trainer's own run (``--preset gpu``, ntp) to its first evaluation and 50 steps past it, the same
  run without evaluations, the same with the old evaluation's bf16 attention calls after it, a
  resume from the post-evaluation checkpoint, and the step after the evaluation recomputed outside
  the trainer. Not timed on a GPU yet: by the measured speeds (ntp ~120,000 items/s, so ~9 s per
  1,050 steps) about 2 min on an H100, most of it the first compile; a NaN adds a rerun with cuDNN
  attention off (a second compile). Its own JSON goes to ``OUT.eval_nan.json`` too.
* ``nan_probe``: the earlier stand-alone loop (700 compiled ntp steps, an evaluation, 60 more);
* ``eager_syncs``: the fixed-shape eager step without host syncs, and its speed;
* ``eval_profile``: where the bf16 evaluation spends its time;
* ``step_profile``: where the compiled fixed-shape training steps (jepa and ntp, batch 1,024) spend
  their time: the GPU's busy time against the wall time of 10 steps (a step far from the FLOP
  bound is either waiting on the host or running many small kernels) and the top kernels;
* ``stepgraph``: the whole compiled step captured as one CUDA graph (the bench's ``_stepgraph``
  modes, ``runtime.GraphedStep``) must train as the step it captures: the losses of 12 steps (3
  warm-up steps, the capture, 8 replays) on the same batches from the same weights, and the
  weights after them, graphed against plain.

    python benchmarks/gpu_probe.py DATA_DIR OUT.json [--only eval_nan] [--eval-step 1000] [--work DIR]

Without CUDA every section runs CPU-sized (tiny model, a few steps), so it is known to work first.
"""
import argparse
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import torch

from jepa_kit.bench import _Runner, paper_vocab, random_batch
from jepa_kit.data import load_dataset
from jepa_kit.evaluate import evaluate
from jepa_kit.ranking import full_fp32
from jepa_kit.model import MODEL_PRESETS, GPT2WithJEPA, ObjectiveConfig
from jepa_kit.runtime import compile_step
from jepa_kit.step import train_step, weight_decay_groups

SECTIONS = ("eval_nan", "nan_probe", "eager_syncs", "eval_profile", "step_profile", "stepgraph")


class _StopProbe(Exception):
    """Raised from the metrics callback to end a run before its (long, exact) final evaluation."""


def run_until(cfg, stop_at: int, after_eval=None) -> dict:
    """Train ``cfg`` until its first logged row at or past step ``stop_at`` (so before the long,
    exact final evaluation) or a NaN. ``after_eval()`` runs after each evaluation row. Returns
    nan_at_step (None when finite), wall_s, every metrics row, and [step, graphs compiled so far] at
    each training row (a jump after an evaluation: it made the training step recompile). Shared by
    this probe and benchmarks/nan_after_eval.py."""
    from torch._dynamo.utils import counters

    from jepa_kit.runtime import TrainingDiverged
    from jepa_kit.train import train

    rows, graphs = [], []

    def callback(row):
        rows.append(row)
        if row["kind"] == "eval" and after_eval is not None:
            after_eval()
        if row["kind"] == "train":
            graphs.append([row["step"], counters["stats"]["unique_graphs"]])
            if row["step"] >= stop_at:
                raise _StopProbe
    t = time.time()
    nan_at = None
    try:
        train(cfg, callback=callback)
    except _StopProbe:
        pass
    except TrainingDiverged as e:
        nan_at = e.step
    return {"nan_at_step": nan_at, "wall_s": time.time() - t, "rows": rows, "graphs": graphs}


def eval_nan_check(data: str, work: Path, cuda: bool, eval_step: int | None = None, tail: int | None = None) -> dict:
    """Is the ntp divergence right after the first evaluation caused by the evaluation?

    On CPU, tests/test_eval_isolation.py proves a run with periodic evaluations bit-identical to one
    without (weights, optimizer, RNG, every step's loss; compiled and bf16 included). What it cannot
    see is CUDA-only. The runs all go through ``jepa_kit.train.train`` with the failing run's settings
    (``--preset gpu --objective ntp --eval_max_items 200 --eval_budget 0``, seed 0, so the same
    initialisation and data order; the constant schedule makes a shorter run the same run):

    * A: evaluation at step S (default 1,000, where the H100 run diverged), then T = 50 more steps
      (log rows every T steps; a NaN shows as TrainingDiverged with its first bad step);
    * B: the same, no evaluation (the control; on a GPU the runs also differ by kernel
      nondeterminism: compare the rows before S, which no evaluation separates, with those after);
    * R: A resumed from its step-S checkpoint (written after the evaluation) without evaluations:
      the same weights, optimizer state and batch in a process state the evaluation never touched;
    * A2: A with, right after its evaluation, the attention calls the evaluation made before its
      candidate step was written out (the code that ran when the H100 run diverged: bf16 SDPA for one
      query over 5 keys, which the H100 profile showed running in cuDNN attention);
    * C: the loss of batch S + 1 from that checkpoint, recomputed outside the trainer: eager bf16,
      eager fp32 (compiled bf16 too when A went NaN); and whether every weight of the checkpoint is
      finite.
    * If A or A2 went NaN: the same run again with cuDNN attention off (SDPA then picks another kernel).

    Reading: A NaN, B and R finite -> the in-process state after the evaluation (not the weights);
    A and R NaN, B finite -> what the evaluation left in the weights/optimizer state (C says whether
    the weights alone give NaN on that batch); A and B NaN -> training itself diverges there, not the
    evaluation; none NaN -> not reproduced (the rows give the loss around S)."""
    from jepa_kit.config import TrainConfig
    from jepa_kit.data import load_dataset
    from jepa_kit.rundir import load_run
    from jepa_kit.train import epoch_permutation, training_rows

    S = eval_step or (1000 if cuda else 20)
    T = tail or (50 if cuda else 5)
    base = dict(data=str(data), objective="ntp", steps=S + T, log_every=T, eval_max_items=200 if cuda else 20,
                eval_budget=0, progress="log", seed=0)
    preset = "gpu" if cuda else "tiny"
    if not cuda:  # the gpu preset's layout on a CPU, without the compile (minutes there)
        base.update(mode="static", batch_size=64)

    dev = torch.device("cuda" if cuda else "cpu")
    arch = MODEL_PRESETS["paper" if cuda else "tiny"]
    H, hd = arch["n_head"], arch["n_embd"] // arch["n_head"]
    B = 1024 if cuda else 64

    old_eval_calls = {}  # what each of the old evaluation's attention calls gave

    def old_eval_attention():
        """The attention call the evaluation made before its candidate step was written out (the
        version that ran when the H100 run diverged; its profile showed cuDNN attention over 5 keys):
        one bf16 query token over 4 cached keys and its own, M pairs at once, in inference mode,
        without a mask and with additive fp32 and bf16 masks (which one Hugging Face passed is not
        known). Run between step S and S + 1 in variant A2."""
        g = torch.Generator(device=dev).manual_seed(0)
        M = 16384 if cuda else 256
        with torch.inference_mode():
            q = torch.randn(M, H, 1, hd, device=dev, dtype=torch.bfloat16, generator=g)
            k, v = (torch.randn(M, H, 5, hd, device=dev, dtype=torch.bfloat16, generator=g) for _ in range(2))
            for name, mask in (("no_mask", None), ("fp32_mask", torch.zeros(M, 1, 1, 5, device=dev)),
                               ("bf16_mask", torch.zeros(M, 1, 1, 5, device=dev, dtype=torch.bfloat16))):
                try:  # a kernel may refuse a mask dtype other than the query's: note it, go on
                    o = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
                    old_eval_calls[name] = "finite" if bool(torch.isfinite(o).all()) else "NON-FINITE output"
                except RuntimeError as e:
                    old_eval_calls[name] = f"refused: {e}"[:160]
        if cuda:
            torch.cuda.synchronize()

    def sdpa_choices():
        """The SDPA backend the dispatcher picks for the training step's attention (static ntp rows
        of 5 tokens, additive bf16 mask, gradients) and for the old evaluation's calls."""
        from torch.nn.attention import SDPBackend

        def choice(q, k, mask):
            try:
                return SDPBackend(torch._fused_sdp_choice(q, k, k, mask, 0.0, False, scale=hd ** -0.5)).name
            except Exception as e:
                return f"{type(e).__name__}: {e}"[:120]
        q = torch.zeros(B, H, 5, hd, device=dev, dtype=torch.bfloat16, requires_grad=True)
        mask = torch.zeros(5, 5, device=dev, dtype=torch.bfloat16)[None, None]
        q1, k5 = torch.zeros(64, H, 1, hd, device=dev, dtype=torch.bfloat16), torch.zeros(64, H, 5, hd, device=dev, dtype=torch.bfloat16)
        return {"train_bf16_mask": choice(q, q, mask), "old_eval_no_mask": choice(q1, k5, None),
                "old_eval_fp32_mask": choice(q1, k5, torch.zeros(64, 1, 1, 5, device=dev)),
                "cudnn_sdp_enabled": torch.backends.cuda.cudnn_sdp_enabled(),
                "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                "torch": torch.__version__}

    def run(name, eval_every, resume_from=None, after_eval=None):
        out = work / name
        shutil.rmtree(out, ignore_errors=True)
        if resume_from is not None:
            shutil.copytree(resume_from, out)
        cfg = TrainConfig.from_preset(preset, out=str(out), eval_every=eval_every, **base)
        got = run_until(cfg, S + T, after_eval)
        rows, graphs = got["rows"], got["graphs"]
        res = {"nan_at_step": got["nan_at_step"], "wall_s": got["wall_s"]}
        res["train_rows"] = [[r["step"], r["loss"], r["grad_norm"]] for r in rows if r["kind"] == "train"]
        res["evals"] = [{"step": r["step"], "precision": r["precision"],
                         **{sp: {k: m.get(k) for k in ("exact_match", "ntp_loss", "entity_mrr")}
                            for sp, m in r["splits"].items()}} for r in rows if r["kind"] == "eval"]
        res["graphs_compiled_at_rows"] = graphs  # a jump after step S: the evaluation forced a recompile
        print(f"  {name}: NaN at step {res['nan_at_step']}, {res['wall_s']:.0f} s, rows (step, loss, grad norm) "
              + " ".join(f"{s}:{l:.4f}/{g:.3g}" for s, l, g in res["train_rows"][-4:]), flush=True)
        return res

    res = {"eval_step": S, "tail": T, "preset": preset, "sdpa": sdpa_choices()}
    print(f"  SDPA backends: {res['sdpa']}", flush=True)
    res["A_eval"] = run("A_eval", S)
    res["B_no_eval"] = run("B_no_eval", 0)
    res["A2_eval_then_old_bf16_attention"] = run("A2_eval_then_old_bf16_attention", S, after_eval=old_eval_attention)
    res["A2_eval_then_old_bf16_attention"]["attention_calls"] = dict(old_eval_calls)
    bad = [k for k in ("A_eval", "A2_eval_then_old_bf16_attention") if res[k]["nan_at_step"]]
    if bad and torch.backends.cuda.cudnn_sdp_enabled():  # the same run with cuDNN attention off (a no-op on CPU)
        torch.backends.cuda.enable_cudnn_sdp(False)
        torch._dynamo.reset()  # the backend is chosen when the step is traced
        try:
            res["sdpa_without_cudnn"] = sdpa_choices()
            res[bad[0] + "_no_cudnn_sdp"] = run(bad[0] + "_no_cudnn_sdp", S,
                                                after_eval=old_eval_attention if bad[0].startswith("A2") else None)
        finally:
            torch.backends.cuda.enable_cudnn_sdp(True)
            torch._dynamo.reset()
    ck = work / "A_eval" / "checkpoints" / f"step_{S:08d}"
    if ck.is_dir():
        res["R_resume_no_eval"] = run("R_resume_no_eval", 0, resume_from=work / "A_eval")

        # C: batch S + 1 (0-based update S) from the step-S weights, outside the trainer
        model, cfg = load_run(work / "A_eval", checkpoint=S, device=dev)
        model.train()
        res["C_weights_finite"] = all(bool(torch.isfinite(p).all()) for p in model.parameters())
        res["C_max_abs_weight"] = max(float(p.detach().abs().max()) for p in model.parameters())
        ds = load_dataset(data)
        ids, types = training_rows(ds, "ntp")
        spe = len(ids) // cfg.batch_size
        idx = epoch_permutation(len(ids), cfg.seed, S // spe)[(S % spe) * cfg.batch_size:][:cfg.batch_size]
        b_ids, b_types = ids[idx].to(dev), types[idx].to(dev)
        losses = {}
        with torch.no_grad():
            for name, fwd, dtype in (("eager_bf16", model, torch.bfloat16), ("eager_fp32", model, None),
                                     ("compiled_bf16", compile_step(model) if cuda and res["A_eval"]["nan_at_step"] else None, torch.bfloat16)):
                if fwd is None:
                    continue
                with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
                    losses[name] = float(fwd(b_ids, b_types)["loss"])
        res["C_batch_after_eval_loss"] = losses
        print(f"  C: step-{S} weights finite {res['C_weights_finite']} (max |w| {res['C_max_abs_weight']:.3g}); "
              f"loss of batch {S + 1}: {losses}", flush=True)
    a, b = res["A_eval"]["nan_at_step"], res["B_no_eval"]["nan_at_step"]
    r = res.get("R_resume_no_eval", {}).get("nan_at_step")

    def diff(x, y, after):  # largest |loss difference| of two runs' rows before (or after) step S
        rows = {s: l for s, l, _ in res.get(y, {}).get("train_rows", [])}
        d = [abs(l - rows[s]) for s, l, _ in res[x]["train_rows"] if s in rows and (s > S) == after]
        return max(d, default=None)
    res["max_loss_diff_A_B_before_eval"] = diff("A_eval", "B_no_eval", False)  # GPU nondeterminism alone
    res["max_loss_diff_A_B_after_eval"] = diff("A_eval", "B_no_eval", True)
    res["max_loss_diff_A_R_after_eval"] = diff("A_eval", "R_resume_no_eval", True)
    if a and a <= S:
        verdict = f"run A turned NaN at step {a}, before its evaluation at step {S}: training diverges, not the evaluation"
    elif a and b and b <= S:
        # what the H100 showed on 2026-11-27: B, a fresh model, NaN at its step 1, in the process A left
        verdict = (f"run A turned NaN at step {a}; the runs after it in this process turn NaN at once (B at step {b}): "
                   "A left the process contaminated, so B, A2 and R here are no controls; run "
                   "benchmarks/nan_after_eval.py (one fresh process per variant)")
    elif a and b:
        verdict = "both runs turn NaN: training itself diverges there, not because of the evaluation"
    elif a and "R_resume_no_eval" not in res:
        verdict = "the NaN follows the evaluation (the run without it stays finite); no step-S checkpoint, so no resume test"
    elif a and r:
        verdict = "the NaN follows the evaluation and survives a resume: the weights/optimizer state after it"
    elif a:
        verdict = "the NaN follows the evaluation, and not in a resumed process: in-process state left by the evaluation"
    elif b:
        verdict = "only the run without evaluation turns NaN: training instability, not the evaluation"
    else:
        verdict = "the current evaluation: not reproduced, no NaN with it or without it"
    a2 = res["A2_eval_then_old_bf16_attention"]["nan_at_step"]
    if a2 and not a:
        verdict += ("; with the old evaluation's bf16 attention calls after it (A2) the run turns NaN at step "
                    f"{a2}: the pre-rewrite evaluation's attention kernel left state the next step read")
    elif not a2:
        verdict += "; the old evaluation's bf16 attention calls after it (A2): no NaN either"
    for k, v in res.items():
        if k.endswith("_no_cudnn_sdp"):
            verdict += (f"; rerun with cuDNN attention off ({k}): "
                        + (f"NaN at step {v['nan_at_step']}" if v["nan_at_step"] else "no NaN: cuDNN attention is implicated"))
    res["verdict"] = verdict
    print(f"eval_nan: {verdict}; max |loss A - B| before step {S} (nondeterminism alone) "
          f"{res['max_loss_diff_A_B_before_eval']}, after {res['max_loss_diff_A_B_after_eval']}; "
          f"|A - R| after {res['max_loss_diff_A_R_after_eval']}", flush=True)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    ap.add_argument("--eval-step", type=int, default=None, help="eval_nan: the evaluated step S (1000 on CUDA)")
    ap.add_argument("--work", default=None, help="eval_nan: where its run directories go (default: a temp dir)")
    args = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    res = {}
    if "eval_nan" in args.only:
        work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="eval_nan_"))
        t = time.time()
        try:
            res["eval_nan"] = eval_nan_check(args.data, work, dev.type == "cuda", args.eval_step)
        except Exception as e:  # the other sections still run
            res["eval_nan"] = {"error": f"{type(e).__name__}: {e}"[:600]}
            print("eval_nan failed:", res["eval_nan"]["error"], flush=True)
        res["eval_nan_wall_s"] = time.time() - t
        Path(args.out + ".eval_nan.json").write_text(json.dumps(res["eval_nan"], indent=1, default=str))
    others = [s for s in args.only if s != "eval_nan"]
    if others:
        older_probes(args.data, dev, others, res)
    Path(args.out).write_text(json.dumps(res, indent=1, default=str))


def older_probes(data, dev, sections, res):
    cuda = dev.type == "cuda"
    preset = "paper" if cuda else "tiny"
    B = 1024 if cuda else 64
    if "nan_probe" in sections:
        _nan_probe(data, dev, cuda, preset, B, res)
    if "eager_syncs" in sections:
        _eager_syncs(dev, cuda, preset, B, res)
    if "eval_profile" in sections:
        _eval_profile(dev, cuda, preset, res)
    if "step_profile" in sections:
        _step_profile(dev, cuda, preset, B, res)
    if "stepgraph" in sections:
        _stepgraph_check(dev, cuda, preset, B, res)


def _nan_probe(data, dev, cuda, preset, B, res):
    """(1) does ntp training turn NaN after an evaluation (a stand-alone loop, not the trainer's)."""
    ds = load_dataset(data)
    ids_all, types_all = ds.train.ids.to(dev), ds.train.types.to(dev)
    N1, N2 = (700, 60) if cuda else (30, 5)

    def trainer(objective, compile_):
        torch.manual_seed(0)
        m = GPT2WithJEPA(ds.vocab, preset=preset, objective=ObjectiveConfig(objective=objective, mode="static")).to(dev).train()
        opt = torch.optim.AdamW(weight_decay_groups(m, 0.01), lr=1e-3, fused=True)
        sc = torch.amp.GradScaler(dev.type, enabled=False)
        fwd = compile_step(m) if compile_ else m
        g = torch.Generator().manual_seed(0)
        perm = torch.randperm(len(ids_all), generator=g).to(dev)
        state = {"i": 0}

        def steps(n):
            bad = torch.zeros((), dtype=torch.bool, device=dev)
            last = None
            for _ in range(n):
                i = state["i"]
                for group in opt.param_groups:
                    group["lr"] = 1e-3 * min(1.0, (i + 1) / 200)
                idx = perm[(i * B) % (len(perm) - B):][:B]
                (loss,), _ = train_step(fwd, m, opt, sc, ids_all[idx], types_all[idx], autocast_dtype=torch.bfloat16 if cuda else None,
                                        grad_clip=1.0)
                bad |= ~torch.isfinite(loss)
                last = loss.detach()
                state["i"] += 1
            return bool(bad), float(last)

        return m, steps

    t0 = time.time()
    for name, objective, compile_, between in [
        ("ntp_compile_eval", "ntp", True, "eval"),
        ("ntp_compile_fp32ctx", "ntp", True, "fp32ctx"),
        ("ntp_compile_none", "ntp", True, "none"),
        ("ntp_eager_eval", "ntp", False, "eval"),
    ]:
        try:
            m, steps = trainer(objective, compile_)
            bad1, l1 = steps(N1)
            if between == "eval":
                evaluate(m, ds, max_items=30, logit_lens=False, precision="bf16")
                m.train()
            elif between == "fp32ctx":
                with full_fp32():
                    pass
            bad2, l2 = steps(N2)
            params_finite = all(bool(torch.isfinite(p).all()) for p in m.parameters())
            res[name] = {"nan_before": bad1, "loss_before": l1, "nan_after": bad2, "loss_after": l2, "params_finite": params_finite}
        except Exception as e:
            res[name] = {"error": f"{type(e).__name__}: {e}"[:400]}
        print(name, res[name], f"t={time.time() - t0:.0f}s", flush=True)


def _eager_syncs(dev, cuda, preset, B, res):
    """(2) the fixed-shape eager step: host syncs and speed."""
    vocab = paper_vocab()
    r = _Runner("static_bf16" if cuda else "static_fp32", dev, vocab, preset, 1, 1.0, 0)
    g = torch.Generator().manual_seed(1)
    batches = [tuple(t.to(dev) for t in random_batch(vocab, B, g)) for _ in range(4)]
    for b in batches:
        r.step(*b)
    r.sync()
    if cuda:
        torch.cuda.set_sync_debug_mode("warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for b in batches:
            r.step(*b)
    if cuda:
        torch.cuda.set_sync_debug_mode("default")
    res["static_eager_syncs_per_4_steps"] = sum("synchroniz" in str(w.message) for w in caught)
    r.sync()
    t = time.perf_counter()
    for i in range(40):
        r.step(*batches[i % 4])
    r.sync()
    res["static_bf16_eager_items_per_s"] = 40 * B / (time.perf_counter() - t)
    print("static eager:", res["static_eager_syncs_per_4_steps"], "syncs,", f"{res['static_bf16_eager_items_per_s']:,.0f} items/s", flush=True)


def _eval_profile(dev, cuda, preset, res):
    """(3) where the bf16 entity ranking spends its time, random model."""
    from jepa_kit.evaluate import bench_eval
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        r2 = bench_eval(n_queries=20 if cuda else 1, device=dev.type, preset=preset, precision="bf16", batch_size=20 if cuda else 1)
    res["eval_bf16_qps_20"] = r2["queries_per_s"]
    key = "cuda_time_total" if cuda else "cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=18, max_name_column_width=60)
    print(table[-4000:])
    res["profile"] = table


def _step_profile(dev, cuda, preset, B, res, steps: int = 10):
    """(4) the compiled fixed-shape training steps under the profiler: GPU busy time against wall."""
    from torch.profiler import ProfilerActivity, profile

    vocab = paper_vocab()
    g = torch.Generator().manual_seed(0)
    batches = [tuple(t.to(dev) for t in random_batch(vocab, B, g)) for _ in range(4)]
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    for mode in (("static_bf16_compile", "ntp_bf16_compile") if cuda else ("static_fp32",)):
        r = _Runner(mode, dev, vocab, preset, 1, 1.0, 0)
        for i in range(5):  # compile and warm up
            r.step(*batches[i % 4])
        r.sync()
        t = time.perf_counter()
        with profile(activities=acts) as prof:
            for i in range(steps):
                r.step(*batches[i % 4])
            r.sync()
        wall = time.perf_counter() - t
        ev = prof.key_averages()
        attr = "device_time_total" if hasattr(ev[0], "device_time_total") else "cuda_time_total"
        # kernels only (the rows the GPU ran): their self time, summed
        gpu_us = sum(getattr(e, "self_device_time_total", 0) or 0 for e in ev) if cuda else 0.0
        out = {"steps": steps, "wall_ms_per_step": 1e3 * wall / steps, "gpu_busy_ms_per_step": gpu_us / 1e3 / steps,
               "items_per_s_profiled": B * steps / wall}
        table = ev.table(sort_by=attr if cuda else "cpu_time_total", row_limit=15, max_name_column_width=70)
        out["top"] = table
        res.setdefault("step_profile", {})[mode] = out
        print(f"{mode}: {out['wall_ms_per_step']:.1f} ms per step wall (under the profiler), GPU busy "
              f"{out['gpu_busy_ms_per_step']:.1f} ms per step", flush=True)
        print(table[-3500:], flush=True)
        del r


def _stepgraph_check(dev, cuda, preset, B, res, steps: int = 12):
    """(5) a captured whole step trains as the plain one: same weights, same batches, losses and weights compared."""
    if not cuda:
        res["stepgraph"] = {"skipped": "needs CUDA (a CUDA graph)"}
        print("stepgraph: skipped, needs CUDA", flush=True)
        return
    vocab = paper_vocab()
    g = torch.Generator().manual_seed(0)
    batches = [tuple(t.to(dev) for t in random_batch(vocab, B, g)) for _ in range(steps)]
    for mode in ("ntp_bf16_compile", "static_bf16_compile"):
        plain, graphed = _Runner(mode, dev, vocab, preset, 1, 1.0, 0), _Runner(mode + "_stepgraph", dev, vocab, preset, 1, 1.0, 0)
        init = [p.detach().float().clone() for p in plain.model.parameters()]
        losses = {"plain": [], "graphed": []}
        for ids, types in batches:  # the graphed runner warms up on the first 3, captures at the 4th
            losses["plain"].append(float(plain.step(ids, types)))
            losses["graphed"].append(float(graphed.step(ids, types)))
        diff = max(abs(a - b) for a, b in zip(losses["plain"], losses["graphed"]))
        # the weights' difference relative to how far training moved them (1.0: one of them did not train)
        pairs = list(zip(plain.model.parameters(), graphed.model.parameters(), init))
        moved = sum(float((a.float() - w0).pow(2).sum()) for a, _, w0 in pairs) ** 0.5
        wdiff = sum(float((a.float() - b.float()).pow(2).sum()) for a, b, _ in pairs) ** 0.5 / max(moved, 1e-30)
        out = {**losses, "max_loss_diff": diff, "weight_diff_over_movement": wdiff,
               "same": diff <= 1e-3 * max(1.0, abs(losses["plain"][-1])) and wdiff <= 0.05}
        res.setdefault("stepgraph", {})[mode] = out
        print(f"stepgraph {mode}: losses plain {losses['plain'][-1]:.4f} graphed {losses['graphed'][-1]:.4f} after "
              f"{steps} steps; max loss diff {diff:.2e}, weight difference / movement {wdiff:.2e}: "
              + ("the same" if out["same"] else "DIFFERENT"), flush=True)
        del plain, graphed


if __name__ == "__main__":
    main()
