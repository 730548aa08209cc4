"""Second GPU probe: (1) does ntp training turn NaN after an evaluation, and why; (2) the fixed-shape
eager step without host syncs; (3) where the bf16 evaluation spends its time."""
import json
import sys
import time
import warnings

import torch

from jepa_kit.bench import _Runner, paper_vocab, random_batch
from jepa_kit.data import load_dataset
from jepa_kit.evaluate import evaluate
from jepa_kit.ranking import full_fp32
from jepa_kit.model import GPT2WithJEPA, ObjectiveConfig
from jepa_kit.train import train_step, weight_decay_groups

data, out = sys.argv[1], sys.argv[2]
dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
cuda = dev.type == "cuda"
preset = "paper" if cuda else "tiny"
res = {}
ds = load_dataset(data)
ids_all, types_all = ds.train.ids.to(dev), ds.train.types.to(dev)
B = 1024 if cuda else 64
N1, N2 = (700, 60) if cuda else (30, 5)


def trainer(objective, compile_):
    torch.manual_seed(0)
    m = GPT2WithJEPA(ds.vocab, preset=preset, objective=ObjectiveConfig(objective=objective, mode="static")).to(dev).train()
    opt = torch.optim.AdamW(weight_decay_groups(m, 0.01), lr=1e-3, fused=True)
    sc = torch.amp.GradScaler(dev.type, enabled=False)
    fwd = torch.compile(m) if compile_ else m
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

# (2) the eager fixed-shape step, host syncs and speed
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

# (3) profile of the bf16 entity ranking on a random model
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
json.dump(res, open(out, "w"), indent=1, default=str)
