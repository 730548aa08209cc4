"""Why did a `--preset gpu` ntp run turn NaN right after its first evaluation at step 1,000 (issue 12)?

What one H100 showed (torch 2.11; README "Performance" and "Known problem"):

* 2026-11-27, earlier: the run turned NaN at step 1,001 in a fresh process; after that, every later
  run in the same process turned NaN at its first step; evaluations at steps 6 and 12 of a fresh
  model did not do it.
* 2026-11-27, this script (the settings of the time: Inductor's defaults): ``repro`` and
  ``math_sdpa`` NaN at step 1,001; ``control``, ``resume``, ``eager``, ``packed``, ``no_caching``
  and ``aligned_mask`` finite; ``poison`` NaN at step 1. ``poison_steps``: every uncompiled
  setting finite, the compiled step NaN. ``compile_bisect``: Inductor's defaults NaN,
  comprehensive_padding off NaN, shape_padding off NaN at the second step, aot_eager and
  allow_buffer_reuse off finite. So the compiled step read memory it never wrote; the evaluation
  only left NaN-making bytes in the allocator's cache. The kit then compiled with buffer reuse off.
* 2026-11-27, third device session (buffer reuse off): the ``gpu_check.sh`` ntp run NaN at step 1,001
  again; ``poison_steps``: the kit's compiled step NaN; ``compile_bisect`` twice, in two processes:
  allow_buffer_reuse off NaN both times, Inductor's defaults NaN, aot_eager finite,
  **inplace_buffers off finite both times**, comprehensive_padding off NaN once and finite once,
  shape_padding off NaN. The kit now compiles with in-place buffers off
  (``jepa_kit.runtime.INDUCTOR_OPTIONS``); a run with it has not been checked past step 1,001 yet,
  and ``compile_repeat`` (the kit's compiled step on poisoned memory, three tries) sizes how often
  a setting that passed once passes again.

This runs each variant in its own fresh process (a NaN cannot leak from one variant into the next),
through the trainer itself (`--preset gpu`, ntp, seed 0: the failing run's settings), and prints
one line per variant: the first non-finite step, or "finite".

    python benchmarks/nan_after_eval.py DATA_DIR [--variants repro,control,...] [--at 1000] [--tail 20]

Variants (``VARIANTS``): ``repro`` (evaluation at step AT, as gpu_check.sh), ``buffer_reuse``
(``repro`` compiled with Inductor's defaults: the step before the fix), ``control`` (the same run
without the evaluation), ``resume`` (``repro``'s step-AT checkpoint resumed in a fresh process, no
evaluation), ``eval100`` (the evaluation on 100 items per split instead of 200), ``empty_cache``
(``repro`` with the CUDA caching allocator emptied after the evaluation), ``no_caching``
(``repro`` with ``PYTORCH_NO_CUDA_MEMORY_CACHING=1``), ``poison`` (no evaluation: the allocator's
cached memory is filled with 0xFF bytes before training, so a step that reads memory it never wrote
turns NaN), ``eager`` (``repro`` without torch.compile), ``packed`` (``repro`` in the packed layout,
uncompiled), ``math_sdpa`` (only PyTorch's reference attention kernel), ``aligned_mask`` (every
attention mask given a 16-byte-aligned row stride), ``early`` (a fresh model evaluated at steps 6
and 12), ``poison_steps`` (no run: two steps of a fresh model in each of several settings, eager
and compiled, each SDPA backend, bf16 and fp32, static and packed, each on poisoned memory),
``compile_bisect`` (no run: the compiled step on poisoned memory under several Inductor settings,
``COMPILE_BISECT``), ``compile_repeat`` (no run: the kit's compiled step on poisoned memory,
three tries in one process), ``mask_tensor`` (``repro`` with the ntp rows' causal mask handed to SDPA
as a tensor, as every run before is_causal did), ``diverge`` (a run made to go NaN by its learning
rate: tests this script).

The kit's ntp step has called SDPA with is_causal and no mask tensor since the twelfth session
(2026-11-27, no device; ``GPT2WithJEPA.causal_sdpa``): ``repro`` and the kit's compiled step check
that; every other step check hands SDPA the mask tensor, as all the checks above did, unless its
setting says otherwise.

A variant that goes NaN then runs the same step checks (without poison) in its own, now broken,
process, and prints the process-wide settings (``global_flags``) that differ between its start,
the evaluation and the NaN. Without CUDA it runs the tiny model with AT = 6 (a check that the script
works; the Inductor settings of ``compile_bisect`` are left out there: minutes of CPU compile).
"""
import argparse
import contextlib
import functools
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the kit from this checkout, installed or not

# name: options of one()
VARIANTS = {
    "repro": dict(),
    "control": dict(eval_at=False),
    "resume": dict(eval_at=False, resume="repro"),
    "eval100": dict(eval_items=100),
    "empty_cache": dict(empty_cache=True),
    "no_caching": dict(env={"PYTORCH_NO_CUDA_MEMORY_CACHING": "1"}),
    "poison": dict(eval_at=False, poison=True),
    "eager": dict(compile=False),
    "packed": dict(compile=False, mode="packed"),
    "math_sdpa": dict(sdpa="math"),
    "aligned_mask": dict(aligned_mask=True, mask_tensor=True),
    "early": dict(early=True),
    "nocudnn": dict(cudnn=False),
    "poison_steps": dict(steps_only=True, poison=True),
    "compile_bisect": dict(steps_only=True, poison=True, compile_bisect=True),
    "compile_repeat": dict(steps_only=True, poison=True, compile_repeat=3),
    "buffer_reuse": dict(buffer_reuse=True),  # repro compiled with Inductor's defaults: the step before any fix
    "mask_tensor": dict(mask_tensor=True),  # repro with the causal mask as a tensor, as before is_causal
    "diverge": dict(lr=1e4),  # a run made to go NaN: tests the NaN path of this script
}


def poison_allocator(device) -> None:
    """Fill the caching allocator's memory with 0xFF bytes (NaN in every float dtype, -1 in every
    integer one): blocks of many sizes, allocated, filled, freed. On CUDA the freed blocks stay
    cached and are handed to the next allocations; a step that reads memory it never wrote then
    turns NaN (or, reading an index, fails a device-side assert: also an answer)."""
    import torch
    top = 31 if torch.device(device).type == "cuda" else 25  # up to 1 GiB blocks on a GPU, 16 MiB on a CPU
    keep = [torch.full((2 ** k,), 255, dtype=torch.uint8, device=device) for k in range(10, top) for _ in range(2)]
    del keep


def global_flags() -> dict:
    """The process-wide settings a step depends on (matmul precision, SDPA backends, autocast, grad
    and inference mode...), as strings: compared at the start, after the evaluation and after a NaN."""
    import torch
    b = torch.backends
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    probes = {
        "cuda.matmul.fp32_precision": lambda: b.cuda.matmul.fp32_precision,
        "cuda.matmul.allow_tf32": lambda: b.cuda.matmul.allow_tf32,
        "cuda.matmul.bf16_reduced_reduction": lambda: b.cuda.matmul.allow_bf16_reduced_precision_reduction,
        "cudnn.enabled": lambda: b.cudnn.enabled, "cudnn.benchmark": lambda: b.cudnn.benchmark,
        "cudnn.allow_tf32": lambda: b.cudnn.allow_tf32,
        "sdp.flash": b.cuda.flash_sdp_enabled, "sdp.mem_efficient": b.cuda.mem_efficient_sdp_enabled,
        "sdp.math": b.cuda.math_sdp_enabled, "sdp.cudnn": b.cuda.cudnn_sdp_enabled,
        "float32_matmul_precision": torch.get_float32_matmul_precision,
        "grad_enabled": torch.is_grad_enabled, "inference_mode": torch.is_inference_mode_enabled,
        "autocast": lambda: torch.is_autocast_enabled(dev), "autocast_dtype": lambda: torch.get_autocast_dtype(dev),
        "autocast_cache": torch.is_autocast_cache_enabled, "deterministic": torch.are_deterministic_algorithms_enabled,
        "default_dtype": torch.get_default_dtype, "anomaly": torch.is_anomaly_enabled,
    }
    out = {}
    for name, get in probes.items():
        try:
            out[name] = str(get())
        except Exception as e:  # torch >= 2.9 may refuse to read an old-style flag after the new API set it
            out[name] = f"unreadable ({type(e).__name__})"
    return out


# compiled-step settings for variant compile_bisect: name, torch.compile backend, Inductor options.
# On 2026-11-27 (H100, torch 2.11, poisoned memory; three processes over two sessions) Inductor's
# defaults went NaN 3 of 3, shape_padding off 3 of 3, comprehensive_padding off 2 of 3,
# allow_buffer_reuse off 2 of 3 (finite in the first); aot_eager and inplace_buffers off stayed
# finite in every try (3 of 3 and 2 of 2).
COMPILE_BISECT = [
    ("inductor, allow_buffer_reuse off (the kit's setting until 2026-11-27)", "inductor", {"allow_buffer_reuse": False}),
    ("inductor defaults (buffer reuse on)", "inductor", {}),
    ("aot_eager (no inductor code)", "aot_eager", None),
    ("inductor, inplace_buffers off (the kit's setting)", "inductor", {"inplace_buffers": False}),
    ("inductor, comprehensive_padding off", "inductor", {"comprehensive_padding": False}),
    ("inductor, shape_padding off", "inductor", {"shape_padding": False}),
    # Two questions the third session's results raise (not yet run on a GPU). Every NaN so far came
    # from ntp steps (rows of 5 tokens), none from jepa ones (13), and only ntp's step graph disagreed
    # with its plain step; the one run with masks zero-padded to 16-byte rows (aligned_mask) stayed
    # finite. Is it the masks' padding (Inductor pads unaligned rows for the attention kernels, with
    # bytes nobody writes)? Is the jepa step clean?
    ("inductor defaults, attention masks zero-padded to 16-byte rows", "inductor", {}, {"aligned_masks": True}),
    ("inductor defaults, the jepa objective (rows of 13 tokens)", "inductor", {}, {"objective": "jepa"}),
    # Every setting above hands the ntp rows' causal mask to SDPA as a tensor, as the failing runs did.
    # Since the twelfth session (2026-11-27, no device) the kit's ntp step calls SDPA with is_causal and
    # no mask tensor (GPT2WithJEPA.causal_sdpa; on an H100 the flash kernel, not cuDNN's masked one):
    # does that alone stay finite under Inductor's defaults?
    ("inductor defaults, is_causal without a mask tensor", "inductor", {}, {"causal_sdpa": True}),
]


def step_checks(data: str, device: str, poison: bool, compile_bisect: bool = False,
                compile_repeat: int = 0) -> list[dict]:
    """Two training steps of a fresh model in each of several settings (the ntp objective unless a
    setting says otherwise, batch 1,024, the failing run's fixed-shape rows; the paper model on CUDA,
    the tiny one elsewhere), each on allocator memory filled with 0xFF bytes first when ``poison``: which setting reads memory
    it never wrote (or, run in a process where training already went NaN, which one the process
    state breaks)? Per setting: the two losses, whether every gradient and weight stayed finite, the
    first parameter with a non-finite gradient, or why the setting could not run."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from jepa_kit.config import TrainConfig
    from jepa_kit.data import load_dataset
    from jepa_kit.objectives import get_objective
    from jepa_kit.runtime import compile_step
    from jepa_kit.train import train_step, training_rows, weight_decay_groups

    cuda = torch.device(device).type == "cuda"
    ds = load_dataset(data)
    B = 1024 if cuda else 64

    @functools.cache
    def setup(objective):  # the preset's config and the first two batches of the objective's rows
        cfg = TrainConfig.from_preset("gpu" if cuda else "tiny", data=data, out="unused", objective=objective)
        ids, types = training_rows(ds, objective)
        return cfg, [(ids[i * B:(i + 1) * B].to(device), types[i * B:(i + 1) * B].to(device)) for i in range(2)]
    bf16 = torch.bfloat16
    settings = [  # name, autocast dtype, forward mode, SDPA backend (None: the dispatcher's choice), compile
        ("eager bf16 static", bf16, "static", None, None),
        ("eager fp32 static", None, "static", None, None),
        ("eager bf16 packed", bf16, "packed", None, None),
        ("eager bf16 static math", bf16, "static", SDPBackend.MATH, None),
        ("eager bf16 static mem_efficient", bf16, "static", SDPBackend.EFFICIENT_ATTENTION, None),
        ("eager bf16 static cudnn", bf16, "static", SDPBackend.CUDNN_ATTENTION, None),
        ("eager bf16 static flash", bf16, "static", SDPBackend.FLASH_ATTENTION, None),
    ]
    if cuda:  # compiling on a CPU takes minutes
        settings += [("compiled bf16 static (the kit's step)", bf16, "static", None, "kit"),
                     ("compiled bf16 static, inductor defaults", bf16, "static", None, ("inductor", {}))]
    if compile_bisect:  # the compiled step only, under each backend and inductor setting
        # CPU: Inductor compiles for minutes there; the settings with extras run under aot_eager instead
        backends = COMPILE_BISECT if cuda else [(n.replace("inductor defaults", "aot_eager"), "aot_eager", None, *x)
                                                if x else (n, b, p)
                                                for n, b, p, *x in COMPILE_BISECT if b != "inductor" or x]
        settings = [(f"compiled bf16 static, {n}", bf16, "static", None, (b, p), *x) for n, b, p, *x in backends]
    if compile_repeat:  # the kit's compiled step, again and again: is a pass a pass?
        settings = ([(f"compiled bf16 static (the kit's step), try {i + 1}", bf16, "static", None, "kit")
                     for i in range(compile_repeat)] if cuda else settings[:1])  # CPU: the script's plumbing
    from jepa_kit.model import GPT2WithJEPA
    attend = GPT2WithJEPA._attend
    results = []
    for name, dtype, mode, backend, compiled, *extra in settings:
        extra = extra[0] if extra else {}
        r = {"setting": name}
        try:
            objective = extra.get("objective", "ntp")
            cfg, batches = setup(objective)
            if extra.get("aligned_masks"):
                align_attention_masks()  # undone after this setting
            torch.manual_seed(0)
            model = get_objective(objective).build_model(ds.vocab, cfg).to(device).train()
            # the mask tensor, as in every check before is_causal (comparable), but the kit's step as it is
            model.causal_sdpa = extra.get("causal_sdpa", compiled == "kit")
            opt = torch.optim.AdamW(weight_decay_groups(model, cfg.weight_decay), lr=cfg.lr, fused=cuda)
            scaler = torch.amp.GradScaler(torch.device(device).type, enabled=False)
            fwd = model
            if compiled:
                torch._dynamo.reset()
                fwd = (compile_step(model) if compiled == "kit" else
                       torch.compile(model, backend=compiled[0], options=compiled[1]))
            losses, bad_grad = [], None

            def find_bad_grad(_opt, *_):
                nonlocal bad_grad
                for pname, prm in model.named_parameters():
                    if bad_grad is None and prm.grad is not None and not bool(torch.isfinite(prm.grad).all()):
                        bad_grad = pname
            hook = opt.register_step_pre_hook(find_bad_grad)
            with contextlib.ExitStack() as stack:
                if backend is not None:
                    stack.enter_context(sdpa_kernel(backend))
                for b_ids, b_types in batches:
                    if poison:
                        poison_allocator(device)
                    (loss, *_), _norm = train_step(
                        lambda i, t, generator=None: fwd(i, t, generator=generator, mode=mode), model, opt, scaler,
                        b_ids, b_types, autocast_dtype=dtype, grad_clip=cfg.grad_clip)
                    losses.append(round(float(loss.detach()), 4))
            hook.remove()
            r.update(losses=losses, first_nonfinite_grad=bad_grad,
                     weights_finite=all(bool(torch.isfinite(prm).all()) for prm in model.parameters()))
            r["finite"] = all(math.isfinite(x) for x in losses) and bad_grad is None and r["weights_finite"]
        except Exception as e:  # a backend that refuses these shapes or this mask: note it, go on
            r["error"] = f"{type(e).__name__}: {e}"[:200]
        finally:
            GPT2WithJEPA._attend = attend
        results.append(r)
        print(f"  [{name}] " + (r.get("error") or f"losses {r['losses']}, {'finite' if r['finite'] else 'NON-FINITE'}"),
              file=sys.stderr, flush=True)  # as it goes: a call stopped at its time limit still shows these
        del r
        if cuda:
            torch.cuda.synchronize()
    return results


def align_attention_masks() -> None:
    """Give every additive attention mask a row stride that is a multiple of 8 elements (16 bytes in
    bf16), as fused attention kernels want: the fixed-shape rows are 5 (ntp) or 13 (jepa) tokens wide,
    so the masks' rows start at unaligned addresses. A kernel that assumed alignment and read past a
    row would read memory the step never wrote (this variant's question)."""
    import torch
    import torch.nn.functional as F

    from jepa_kit.model import GPT2WithJEPA
    attend = GPT2WithJEPA._attend

    def aligned(self, attn, q, k, v, mask):
        w = mask.shape[-1] if torch.is_tensor(mask) else 0  # causal blocks: no mask tensor to align
        if w % 8:
            mask = F.pad(mask, (0, -w % 8))[..., :w]  # same values, row stride rounded up to 8
        return attend(self, attn, q, k, v, mask)
    GPT2WithJEPA._attend = aligned


def one(data: str, name: str, at: int, tail: int, work: Path, resume_from: str | None = None) -> dict:
    import torch
    from gpu_probe import run_until  # this folder is on sys.path: the script runs from it

    from jepa_kit.config import TrainConfig

    v = {"compile": True, "cudnn": True, "eval_at": True, "eval_items": 200, **VARIANTS[name]}
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    if cuda and not v["cudnn"]:
        torch.backends.cuda.enable_cudnn_sdp(False)
    if cuda and v.get("sdpa") == "math":  # the reference kernel only: no flash, memory-efficient or cuDNN attention
        for off in (torch.backends.cuda.enable_flash_sdp, torch.backends.cuda.enable_mem_efficient_sdp,
                    torch.backends.cuda.enable_cudnn_sdp):
            off(False)
    if v.get("aligned_mask"):
        align_attention_masks()
    if v.get("mask_tensor"):
        from jepa_kit.model import GPT2WithJEPA
        GPT2WithJEPA.causal_sdpa = False
    if v.get("buffer_reuse"):
        import jepa_kit.runtime
        jepa_kit.runtime.INDUCTOR_OPTIONS = {}  # torch's defaults
    stop_at = 14 if v.get("early") else at + tail
    flags = {"start": global_flags()}
    if v.get("steps_only"):  # no training run: the step checks on poisoned memory, in a fresh process
        return {"variant": name, "steps_only": True, "mode": "static", "compile": "both", "attention": "each backend",
                "evals_at": [], "nan_at_step": None, "wall_s": 0.0, "losses": [], "graphs_at_rows": [],
                "step_checks": step_checks(data, device, poison=True, compile_bisect=bool(v.get("compile_bisect")),
                                           compile_repeat=v.get("compile_repeat", 0))}

    def after_eval():
        flags.setdefault("after_eval", global_flags())
        if v.get("empty_cache") and cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()

    out = work / name
    if v.get("resume"):
        src = Path(resume_from) if resume_from else work / v["resume"]
        ck = src / "checkpoints" / f"step_{at:08d}"
        if not ck.is_dir():
            return {"variant": name, "error": f"{src} has no step-{at} checkpoint: run {v['resume']} first"}
        import shutil
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(src, out, ignore=lambda d, names: [n for n in names if n in ("results.json", "best.json")
                                                          or (n.startswith("step_") and n > ck.name)])
    eval_every = 6 if v.get("early") else (at if v["eval_at"] else 0)
    cfg = TrainConfig.from_preset("gpu" if cuda else "tiny", data=data, out=str(out), objective="ntp", steps=100 * at,
                                  compile=v["compile"], log_every=min(10, at), eval_every=eval_every,
                                  eval_max_items=v["eval_items"], eval_budget=None, ckpt_every=at, progress="none",
                                  device=device, mode=v.get("mode", "static"), **({"lr": v["lr"]} if "lr" in v else {}))
    if v.get("poison"):
        poison_allocator(device)
    attention = "math only" if v.get("sdpa") == "math" else "no cuDNN" if not v["cudnn"] else "default"
    attention += ", aligned masks" if v.get("aligned_mask") else ""
    attention += ", Inductor's defaults" if v.get("buffer_reuse") else ""
    attention += ", mask tensor" if v.get("mask_tensor") else ""
    res = {"variant": name, **{k: v[k] for k in ("compile", "cudnn", "eval_at", "eval_items")}, "mode": cfg.mode,
           "attention": attention,
           "env": v.get("env")}
    got = run_until(cfg, stop_at, after_eval)
    rows, graphs = got["rows"], got["graphs"]
    res["nan_at_step"], res["wall_s"] = got["nan_at_step"], round(got["wall_s"], 1)
    res["evals_at"] = [r["step"] for r in rows if r["kind"] == "eval"]
    res["losses"] = [[r["step"], round(r["loss"], 4)] for r in rows if r["kind"] == "train"][-3:]
    res["graphs_at_rows"] = graphs[:1] + graphs[-3:]
    if got["nan_at_step"]:  # the process that went NaN: what its state breaks, step by step
        flags["after_nan"] = global_flags()
        res["step_checks"] = step_checks(data, device, poison=False)
    res["flags_changed"] = {k: [f.get(k) for f in flags.values()] for k in flags["start"]
                            if len({f.get(k) for f in flags.values()}) > 1}
    res["flags_when"] = list(flags)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--variants", default="poison_steps,repro,poison,buffer_reuse,compile_bisect,control,resume,eager")
    ap.add_argument("--at", type=int, default=None, help="the evaluation step (default 1000 on CUDA, 6 on CPU)")
    ap.add_argument("--tail", type=int, default=20, help="steps run after it")
    ap.add_argument("--work", default=None, help="run directories (default: a temporary folder)")
    ap.add_argument("--json", default=None, help="write the results here too")
    ap.add_argument("--resume-from", default=None,
                    help="the run that variant resume continues (default: WORK/repro); its step-AT checkpoint is used")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="nan_after_eval_"))
    if a.one:
        import torch
        at = a.at or (1000 if torch.cuda.is_available() else 6)
        print("RESULT " + json.dumps(one(a.data, a.one, at, a.tail, work, a.resume_from)), flush=True)
        return
    results = []
    for name in a.variants.split(","):
        if name not in VARIANTS:
            sys.exit(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
        cmd = [sys.executable, __file__, a.data, "--one", name, "--tail", str(a.tail), "--work", str(work)]
        if a.at:
            cmd += ["--at", str(a.at)]
        if a.resume_from:
            cmd += ["--resume-from", a.resume_from]
        env = {**os.environ, "JEPA_KIT_PROGRESS": "none", **VARIANTS[name].get("env", {})}
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = next((l for l in p.stdout.splitlines() if l.startswith("RESULT ")), None)
        r = json.loads(line[7:]) if line else {"variant": name, "error": (p.stderr or p.stdout)[-600:]}
        results.append(r)
        if "error" in r:
            print(f"{name:<12} error: {r['error']}", flush=True)
        elif r.get("steps_only"):
            print(f"{name:<12} two steps of a fresh model per setting, on poisoned memory:", flush=True)
        else:
            print(f"{name:<12} {r['mode']:<6} compile {r['compile']!s:<5} attention {r['attention']}; evals at {r['evals_at']}: "
                  + (f"NaN at step {r['nan_at_step']}" if r["nan_at_step"] else "finite")
                  + f"  ({r['wall_s']} s; last logged losses {r['losses']}; graphs compiled at rows {r['graphs_at_rows']})",
                  flush=True)
        for c in r.get("step_checks", []):
            print(f"    step check {c['setting']:<34} " + (f"error: {c['error']}" if "error" in c else
                  f"losses {c['losses']}, " + ("finite" if c["finite"] else
                  f"NON-FINITE (first bad gradient {c['first_nonfinite_grad']}, weights finite {c['weights_finite']})")),
                  flush=True)
        if r.get("flags_changed"):
            print(f"    global settings that changed ({', '.join(r['flags_when'])}): {r['flags_changed']}", flush=True)
        if a.json:  # after every variant: a call stopped at its time limit keeps what finished
            Path(a.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
