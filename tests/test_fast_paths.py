"""The GPU fast paths, checked on the CPU: the fixed-shape (static) pass against the packed one and
plain Hugging Face passes, its leakage guard, bf16 autocast training, the fp16 grad-scaler logic of
the training step, a compiled training run, and the evaluation time budget."""
import json

import pytest
import torch

from jepa_kit.config import COMPILE_MODES, TrainConfig
from jepa_kit.losses import jepa_distance, loss_dropout_keep_static
from jepa_kit.reversal import reverse_view
from jepa_kit.runtime import EvalClock
from jepa_kit.train import train, train_step
from jepa_kit.vocab import Vocab

from test_model import TINY, TOL, Spy, alone, assert_same_step, losses_and_grads, make, random_batch


@pytest.fixture(scope="module")
def vocab(osu_dir):
    return Vocab.load(osu_dir)


@pytest.mark.parametrize("impl,k,metric,objective", [
    ("sdpa", 0, "cosine", "jepa"), ("sdpa", 1, "cosine", "jepa"), ("sdpa", 4, "l2", "jepa"),
    ("sdpa", 1, "infonce", "jepa"), ("eager", 2, "mse", "jepa"), ("sdpa", 1, "cosine", "ntp"),
    ("eager", 1, "cosine", "reverse_aug"),
])
def test_static_equals_packed_and_two_pass_losses_and_gradients(vocab, impl, k, metric, objective):
    model = make(vocab, impl, k_pred=k, jepa_metric=metric, objective=objective, gamma_ntp=0.7, lambda_jepa=1.3).train()
    ids, types = random_batch(vocab, 15, seed=20 + k)
    types[:2] = torch.tensor([0, 1])
    static, g_static = losses_and_grads(model, ids, types, "static")
    for other in ("packed", "two_pass"):
        ref, g_ref = losses_and_grads(model, ids, types, other)
        assert int(static["n_jepa"]) == ref["n_jepa"]
        assert_same_step(static, g_static, ref, g_ref, f"static vs {other}")


def test_static_pred_and_target_are_the_separate_passes(vocab):
    """The padded rows are attention-safe: a JEPA row's F and R read exactly what plain passes give."""
    k = 2
    model = make(vocab, k_pred=k).eval()
    ids, types = random_batch(vocab, 9, seed=4)
    types[:3] = torch.tensor([0, 1, 2])
    with torch.no_grad():
        out = model(ids, types, mode="static", return_jepa_outputs=True)
        j = types == 0
        f_rows = torch.cat([ids[j], torch.full((int(j.sum()), k), vocab.pred_id)], dim=1)
        torch.testing.assert_close(out["pred"], alone(model, f_rows)[:, -1], **TOL)
        torch.testing.assert_close(out["target"], alone(model, reverse_view(ids[j], vocab))[:, -1], **TOL)
        assert not any(torch.isnan(p).any() for p in (out["loss"], out["pred"], out["target"]))


def test_static_rows_never_carry_a_reverse_view_of_atomic_or_test_items(vocab, monkeypatch):
    model = make(vocab, mode="static").train()
    spy = Spy(monkeypatch, model)
    ids, types = random_batch(vocab, 12, seed=7)
    types[:3] = torch.tensor([0, 1, 2])
    model(ids, types)
    (fed,) = spy.fed  # one pass: rows [F | R] of width 2L + k
    L, k = ids.shape[1], 1
    assert fed.shape == (12, 2 * L + k)
    train = types == 0
    assert torch.equal(fed[:, :L], ids)
    assert torch.equal(fed[train, L + k:], reverse_view(ids[train], vocab))
    assert (fed[~train, L + k:] == vocab.pad_id).all()  # nothing but padding where no view is allowed
    # reverse_view itself only ever sees train rows; the others are blanked to <pad> before it
    (seen,) = spy.reversed
    assert torch.equal(seen[train], ids[train]) and (seen[~train] == vocab.pad_id).all()


def test_static_without_jepa_feeds_plain_causal_rows(vocab, monkeypatch):
    model = make(vocab, objective="ntp", mode="static")
    spy = Spy(monkeypatch, model)
    ids, types = random_batch(vocab, 6, seed=1, types=(0, 1))
    out = model(ids, types, return_jepa_outputs=True)
    assert spy.reversed == [] and torch.equal(spy.fed[0], ids[:, :-1])
    assert out["pred"].shape == (0, TINY["n_embd"]) and out["n_jepa"] == 0


@pytest.mark.parametrize("objective,blocks", [("ntp", False), ("reverse_aug", False), ("jepa", False), ("jepa", True)])
def test_static_causal_rows_go_to_sdpa_as_is_causal_without_a_mask(vocab, monkeypatch, objective, blocks):
    """Rows of one causal block (no JEPA term) reach SDPA as is_causal with no mask tensor, and give
    the losses and gradients of the masked call (``causal_sdpa = False``). JEPA rows keep the mask
    unless ``causal_sdpa_blocks``: then F and R go to SDPA one is_causal call each, with the same
    losses and gradients."""
    import torch.nn.functional as F

    from jepa_kit import attention

    seen, real = [], F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, is_causal=False, **kw):
        seen.append((attn_mask is None, is_causal, q.shape[2], k.shape[2]))
        return real(q, k, v, attn_mask=attn_mask, is_causal=is_causal, **kw)
    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", spy)
    model = make(vocab, objective=objective, k_pred=2).train()
    model.causal_sdpa_blocks = blocks
    ids, types = random_batch(vocab, 9, seed=4, types=(0, 1, 2))
    out, grads = losses_and_grads(model, ids, types, "static", return_jepa_outputs=True)
    L, k = ids.shape[1], 2
    calls = {"ntp": [L - 1], "reverse_aug": [L - 1], "jepa": [L + k, L] if blocks else []}[objective]
    if calls:  # every layer, the last one included, attends all queries of each block causally
        assert seen == [(True, True, n, n) for n in calls] * TINY["n_layer"], seen
    else:
        assert not any(no_mask or causal for no_mask, causal, _, _ in seen) and seen
    model.causal_sdpa = model.causal_sdpa_blocks = False
    seen.clear()
    ref, ref_grads = losses_and_grads(model, ids, types, "static", return_jepa_outputs=True)
    assert not any(no_mask or causal for no_mask, causal, _, _ in seen)
    for key in ("loss", "ntp_loss") + (("pred", "target") if objective == "jepa" else ()):
        torch.testing.assert_close(out[key], ref[key], **TOL, msg=key)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_causal_blocks_without_a_mask_need_sdpa_and_must_fill_the_row(vocab):
    model = make(vocab, "eager", objective="ntp")
    q, attn = torch.zeros(1, 1, 3, 8), model.gpt2.transformer.h[0].attn
    with pytest.raises(ValueError, match="need attention implementation 'sdpa'"):
        model._attend(attn, q, q, q, (3,))
    ids, types = random_batch(vocab, 3, seed=1)
    model(ids, types, mode="static")  # eager takes the mask tensor: no causal shortcut is tried
    model = make(vocab, objective="ntp")
    with pytest.raises(ValueError, match="must fill rows of 3 queries"):
        model._attend(attn, q, q, q, (2,))


def test_static_loss_dropout_skips_exactly_round_dropout_n_and_is_seeded(vocab):
    is_jepa = torch.tensor([True, False, True, True, True, False, True, True, True, True, True, False])
    n = int(is_jepa.sum())
    for dropout in (0.25, 0.5, 0.9):
        keep = loss_dropout_keep_static(is_jepa, dropout, torch.Generator().manual_seed(3))
        assert int((is_jepa & ~keep).sum()) == round(dropout * n)
        assert keep[~is_jepa].all()
        again = loss_dropout_keep_static(is_jepa, dropout, torch.Generator().manual_seed(3))
        assert torch.equal(keep, again)
    model = make(vocab, loss_dropout=0.5, mode="static").train()
    ids, types = random_batch(vocab, 40, seed=3, types=(0,))
    out = model(ids, types, generator=torch.Generator().manual_seed(5))
    assert int(out["n_jepa"]) == 20
    assert int(model.eval()(ids, types)["n_jepa"]) == 40  # no dropout at evaluation


def test_masked_jepa_distance_equals_the_selected_rows():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(10, 8, generator=g), torch.randn(10, 8, generator=g)
    valid = torch.tensor([1, 0, 1, 1, 0, 0, 1, 1, 0, 1], dtype=torch.bool)
    for metric in ("cosine", "l2", "mse", "infonce"):
        torch.testing.assert_close(jepa_distance(pred, target, metric, valid=valid),
                                   jepa_distance(pred[valid], target[valid], metric))
    assert jepa_distance(pred, target, "infonce", valid=torch.zeros(10, dtype=torch.bool)) == 0


def _step_setup(vocab, scaler):
    model = make(vocab, mode="static").train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    ids, types = random_batch(vocab, 8, seed=0)
    return model, opt, ids, types


def test_train_step_fp16_scaler_skips_non_finite_steps_and_shrinks_the_scale(vocab):
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1)
    model, opt, ids, types = _step_setup(vocab, scaler)
    before = [p.detach().clone() for p in model.parameters()]
    train_step(model, model, opt, scaler, ids, types, grad_clip=1.0,
               global_loss=lambda out: (out["loss"] * float("inf"),))
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))  # the update was skipped
    assert scaler.get_scale() == 2.0**9
    train_step(model, model, opt, scaler, ids, types, grad_clip=1.0)
    assert not all(torch.equal(a, p) for a, p in zip(before, model.parameters()))  # a finite step updates
    assert scaler.get_scale() == 2.0**10  # and grows back (growth_interval 1)


def test_train_step_under_bf16_autocast_matches_fp32_closely(vocab):
    disabled = torch.amp.GradScaler("cpu", enabled=False)
    losses = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        model, opt, ids, types = _step_setup(vocab, disabled)
        (loss,), norm = train_step(model, model, opt, disabled, ids, types, autocast_dtype=dtype, grad_clip=1.0)
        assert torch.isfinite(loss) and torch.isfinite(norm)
        losses[name] = float(loss.detach())
    assert abs(losses["fp32"] - losses["bf16"]) < 0.05 * losses["fp32"]


def read_rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def tiny_cfg(tiny_data, out, **kw):
    base = dict(data=str(tiny_data), out=str(out), preset="tiny", steps=6, log_every=2, eval_every=0,
                eval_max_items=8, ckpt_every=100, progress="none")
    return TrainConfig.from_dict({**base, **kw})


def test_static_and_packed_training_runs_agree(tiny_data, tmp_path):
    runs = {mode: train(tiny_cfg(tiny_data, tmp_path / mode, mode=mode)) for mode in ("packed", "static")}
    a, b = (read_rows(runs[m]) for m in ("packed", "static"))
    for ra, rb in zip(a, b):
        if ra["kind"] == "train":
            assert ra["step"] == rb["step"] and ra["n_jepa"] == rb["n_jepa"]
            assert ra["loss"] == pytest.approx(rb["loss"], abs=1e-4)


def test_bf16_autocast_training_run(tiny_data, tmp_path):
    run = train(tiny_cfg(tiny_data, tmp_path / "bf16", precision="bf16", mode="static"))
    rows = [r for r in read_rows(run) if r["kind"] == "train"]
    assert len(rows) == 3 and all(r["loss"] > 0 for r in rows)
    res = json.loads((run / "results.json").read_text())
    assert res["atomic"]["n"] > 0 and 0 <= res["atomic"]["entity_mrr"] <= 1


@pytest.mark.parametrize("objective", ["jepa", "ntp"])
def test_compiled_training_run_matches_eager(tiny_data, tmp_path, objective):
    """A compile smoke test on the tiny model: about 30 s (jepa) and 15 s (ntp: is_causal attention,
    no mask tensor) of CPU compile time."""
    eager = train(tiny_cfg(tiny_data, tmp_path / "eager", mode="static", steps=4, objective=objective))
    compiled = train(tiny_cfg(tiny_data, tmp_path / "compiled", mode="static", steps=4, compile=True,
                              objective=objective))
    a = [r for r in read_rows(eager) if r["kind"] == "train"]
    b = [r for r in read_rows(compiled) if r["kind"] == "train"]
    assert [r["step"] for r in a] == [r["step"] for r in b] == [2, 4]
    for ra, rb in zip(a, b):
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-3)


def test_compiled_causal_blocks_give_the_masked_eager_losses_and_gradients(vocab):
    """The jepa step with F and R as two is_causal SDPA calls (``causal_sdpa_blocks``, the bench's
    ``_blockattn``), compiled by Inductor as the trainer compiles (about 20 s of CPU compile), gives
    the uncompiled masked step's losses and gradients."""
    from jepa_kit.runtime import compile_step

    model = make(vocab, k_pred=1).train()
    ids, types = random_batch(vocab, 12, seed=5, types=(0, 1))
    model.causal_sdpa_blocks = False
    ref, ref_grads = losses_and_grads(model, ids, types, "static")
    model.causal_sdpa_blocks = True
    compiled = compile_step(model)
    model.zero_grad(set_to_none=True)
    out = compiled(ids, types, mode="static")
    out["loss"].backward()
    torch.testing.assert_close(out["loss"], ref["loss"], **TOL)
    for name, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(p.grad, ref_grads[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("mode", COMPILE_MODES)
def test_training_compiles_with_inductor_inplace_buffers_off(tiny_data, tmp_path, monkeypatch, mode):
    """Every compiled training step (the trainer's, the bench's) goes through ``compile_step``: the
    mode's own Inductor settings plus in-place buffers off, the one setting under which the compiled
    step stopped reading memory it never wrote in every poisoned check on an H100 (issue 12). Here
    torch.compile is only recorded (the compiled run itself is the test above)."""
    from torch._inductor import list_mode_options

    from jepa_kit import bench

    calls = []

    def recorded(module, **kw):
        calls.append(kw)
        return module
    monkeypatch.setattr(torch, "compile", recorded)
    train(tiny_cfg(tiny_data, tmp_path / "run", mode="static", steps=2, compile=True, compile_mode=mode))
    bench_mode = "reduce-overhead" if mode == "reduce-overhead" else "default"  # the bench's two compile modes
    bench._Runner("static_fp32_cudagraphs" if bench_mode == "reduce-overhead" else "static_fp32_compile",
                  torch.device("cpu"), Vocab.load(tiny_data), "tiny", 1, 1.0, 0)
    assert calls == [{"options": {**list_mode_options(mode), "inplace_buffers": False}},
                     {"options": {**list_mode_options(bench_mode), "inplace_buffers": False}}], calls
    assert mode != "reduce-overhead" or calls[0]["options"]["triton.cudagraphs"]


def test_eval_budget_skips_periodic_evaluations(tiny_data, tmp_path):
    def evals(run):
        return [r["step"] for r in read_rows(run) if r["kind"] == "eval"]

    every = train(tiny_cfg(tiny_data, tmp_path / "all", eval_every=2, eval_budget=0))
    assert evals(every) == [2, 4, 6]  # off: every scheduled one, then the final one
    starved = train(tiny_cfg(tiny_data, tmp_path / "few", eval_every=2, eval_budget=1e-9))
    assert evals(starved) == [2, 6]  # the first runs; then no training time pays for another


def test_eval_clock():
    clock = EvalClock(0.5, torch.device("cpu"))
    assert clock.due()
    with clock:
        pass
    clock.last_s, clock.since = 10.0, clock.since - 15.0  # 10 s evaluating after 15 s of training
    assert not clock.due()
    clock.since -= 6.0  # 21 s of training: 10 <= 0.5 * 21
    assert clock.due()
    assert EvalClock(0.0, torch.device("cpu")).due()



def test_infonce_leaves_a_facts_reverse_partner_out_of_its_negatives(vocab):
    """Both directions of a set-A fact are `train` items; in one batch, with k = 0, one's target is
    exactly the other's prediction state. Every mode masks that pair, and only that pair."""
    model = make(vocab, k_pred=0, jepa_metric="infonce").eval()
    ids, _ = random_batch(vocab, 6, seed=11, types=(0,))
    ids = torch.cat([ids, reverse_view(ids[:2], vocab)])  # items 6, 7 are the reverses of items 0, 1
    types = torch.zeros(len(ids), dtype=torch.long)
    outs = {mode: model(ids, types, mode=mode, return_jepa_outputs=True) for mode in ("packed", "static", "two_pass")}
    pred, target = outs["packed"]["pred"], outs["packed"]["target"]
    torch.testing.assert_close(pred[0], target[6], **TOL)  # the trap: identical to item 0's own positive
    exclude = torch.zeros(8, 8, dtype=torch.bool)
    exclude[[0, 6, 1, 7], [6, 0, 7, 1]] = True
    want = jepa_distance(pred, target, "infonce", temperature=0.1, exclude=exclude)
    # brute force: item i's cross-entropy over its own target and every non-partner target
    cos = torch.nn.functional.normalize(pred, dim=-1) @ torch.nn.functional.normalize(target, dim=-1).T / 0.1
    brute = torch.stack([torch.logsumexp(cos[i][~exclude[i]], 0) - cos[i, i] for i in range(8)]).mean()
    torch.testing.assert_close(want, brute, **TOL)
    for mode, out in outs.items():
        torch.testing.assert_close(out["jepa_loss"], want, **TOL, msg=mode)
    assert jepa_distance(pred, target, "infonce", temperature=0.1) > want  # unmasked, the partner costs a lot


def test_eval_jepa_distance_is_the_training_value(vocab):
    from jepa_kit.evaluate import jepa_eval_diagnostics

    model = make(vocab, k_pred=1, jepa_metric="infonce").eval()
    ids, types = random_batch(vocab, 24, seed=12, types=(0,))
    with torch.no_grad():
        batches = [model(ids[i:i + 8], types[i:i + 8])["jepa_loss"] for i in (0, 8, 16)]
        diag = jepa_eval_diagnostics(model, ids, types, batch_size=8)
    assert diag["jepa_distance"] == pytest.approx(float(torch.stack(batches).mean()), rel=1e-6)
    assert diag["n"] == 24
