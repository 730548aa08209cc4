"""The packed single pass against plain Hugging Face passes (fp32, CPU, random weights)."""
import pytest
import torch

import jepa_kit.model as model_mod
from jepa_kit.masks import PackedBatch, PackedLayout
from jepa_kit.model import GPT2WithJEPA, ObjectiveConfig
from jepa_kit.reversal import reverse_view
from jepa_kit.vocab import Vocab

TINY = dict(n_layer=2, n_embd=32, n_head=4)
TOL = dict(atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def vocab(osu_dir):
    return Vocab.load(osu_dir)


def random_batch(vocab, n, seed, types=(0, 1, 2)):
    """Valid rows [h_f, h_l, r, <mask>, t_f, t_l] and types drawn from ``types``."""
    g = torch.Generator().manual_seed(seed)

    def pick(pool):
        return pool[torch.randint(len(pool), (n,), generator=g)]

    first, last = vocab.first_name_ids, vocab.last_name_ids
    ids = torch.stack([pick(first), pick(last), pick(vocab.relation_ids), torch.full((n,), vocab.mask_id),
                       pick(first), pick(last)], dim=1)
    return ids, torch.tensor(types)[torch.randint(len(types), (n,), generator=g)]


def make(vocab, impl="sdpa", seed=0, **objective):
    torch.manual_seed(seed)
    return GPT2WithJEPA(vocab, preset=TINY, objective=ObjectiveConfig(**objective), attn_implementation=impl)


def alone(model, rows):
    """Plain Hugging Face pass over rows on their own (default causal mask, default positions)."""
    return model.gpt2.transformer(input_ids=rows).last_hidden_state


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("k", [0, 1, 2, 3, 4])
def test_packed_hidden_states_equal_separate_passes(vocab, impl, k):
    model = make(vocab, impl, k_pred=k).eval()
    ids, types = random_batch(vocab, 11, seed=k)
    types[:2] = torch.tensor([0, 1])  # both kinds present whatever the draw
    with torch.no_grad():
        hs = model.packed_hidden_states(ids, types)
        j, o = hs["jepa_index"], hs["other_index"]
        assert torch.equal(j, (types == 0).nonzero()[:, 0])
        f_rows = torch.cat([ids[j], torch.full((len(j), k), vocab.pred_id)], dim=1)
        torch.testing.assert_close(hs["jepa_f"], alone(model, f_rows), **TOL)
        torch.testing.assert_close(hs["jepa_r"], alone(model, reverse_view(ids[j], vocab)), **TOL)
        torch.testing.assert_close(hs["other_f"], alone(model, ids[o])[:, :5], **TOL)

        # the pruned training pass reads the same states
        out = model(ids, types, return_jepa_outputs=True)
        torch.testing.assert_close(out["pred"], alone(model, f_rows)[:, -1], **TOL)
        torch.testing.assert_close(out["target"], alone(model, reverse_view(ids[j], vocab))[:, -1], **TOL)
        logits = model.gpt2(input_ids=ids).logits[:, 3:5]
        ntp = torch.nn.functional.cross_entropy(logits.reshape(-1, len(vocab)), ids[:, 4:].reshape(-1))
        torch.testing.assert_close(out["ntp_loss"], ntp, **TOL)


def losses_and_grads(model, ids, types, mode, **kw):
    model.zero_grad(set_to_none=True)
    out = model(ids, types, mode=mode, **kw)
    out["loss"].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, grads


def assert_same_step(out, grads, ref, g_ref, what: str) -> None:
    """Two modes' ``losses_and_grads`` agree: the three losses (TOL) and every parameter's gradient."""
    for key in ("loss", "ntp_loss", "jepa_loss"):
        torch.testing.assert_close(out[key], ref[key], **TOL, msg=f"{key}: {what}")
    assert grads.keys() == g_ref.keys(), what
    for name in grads:
        torch.testing.assert_close(grads[name], g_ref[name], atol=1e-5, rtol=1e-4, msg=f"{name}: {what}")


@pytest.mark.parametrize("impl,k,metric", [
    ("sdpa", 0, "cosine"), ("sdpa", 1, "cosine"), ("sdpa", 4, "l2"), ("sdpa", 1, "infonce"),
    ("eager", 1, "cosine"), ("eager", 3, "mse"),
])
def test_packed_equals_two_pass_losses_and_gradients(vocab, impl, k, metric):
    model = make(vocab, impl, k_pred=k, jepa_metric=metric, gamma_ntp=0.7, lambda_jepa=1.3).train()
    ids, types = random_batch(vocab, 13, seed=10 + k)
    packed, g_packed = losses_and_grads(model, ids, types, "packed")
    two, g_two = losses_and_grads(model, ids, types, "two_pass")
    assert packed["n_jepa"] == two["n_jepa"] == int((types == 0).sum()) > 0
    assert_same_step(packed, g_packed, two, g_two, "packed vs two_pass")
    torch.testing.assert_close(packed["loss"], 0.7 * packed["ntp_loss"] + 1.3 * packed["jepa_loss"])
    assert len(g_packed) == len(list(model.parameters()))


def test_loss_dropout_is_seeded_per_item_and_train_only(vocab):
    model = make(vocab, loss_dropout=0.5).train()
    ids, types = random_batch(vocab, 40, seed=3, types=(0,))
    a, _ = losses_and_grads(model, ids, types, "packed", generator=torch.Generator().manual_seed(5))
    b, _ = losses_and_grads(model, ids, types, "two_pass", generator=torch.Generator().manual_seed(5))
    assert a["n_jepa"] == b["n_jepa"] == 20
    torch.testing.assert_close(a["jepa_loss"], b["jepa_loss"], **TOL)
    assert model.eval()(ids, types)["n_jepa"] == 40


def test_bf16_autocast_modes_agree(vocab):
    model = make(vocab, k_pred=1)
    ids, types = random_batch(vocab, 12, seed=6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        packed = model(ids, types, mode="packed")
        two = model(ids, types, mode="two_pass")
    for key in ("ntp_loss", "jepa_loss"):
        torch.testing.assert_close(packed[key], two[key], atol=2e-2, rtol=2e-2)
    assert torch.isfinite(packed["loss"])


def run_rows(model, tokens, blocks, width):
    layout = PackedLayout(width, (blocks,), ((0,),), (0,))
    packed = PackedBatch(tokens, torch.zeros(len(tokens), dtype=torch.long), layout)
    return model._packed_blocks(packed, all_positions=True)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_blocks_do_not_see_each_other(vocab, impl):
    model = make(vocab, impl).eval()
    ids, _ = random_batch(vocab, 6, seed=7)
    rows = torch.cat([ids, torch.full((6, 1), vocab.pred_id), reverse_view(ids, vocab)], dim=1)  # [F | R], 7 + 6
    other, _ = random_batch(vocab, 6, seed=8)
    with torch.no_grad():
        base = run_rows(model, rows, (7, 6), 13)
        r_changed = rows.clone()
        r_changed[:, 7:] = other
        h = run_rows(model, r_changed, (7, 6), 13)
        torch.testing.assert_close(h[:, :7], base[:, :7], atol=1e-6, rtol=0)  # every F state unchanged
        assert (h[:, 7:] - base[:, 7:]).abs().amax() > 1e-3  # R did change
        f_changed = rows.clone()
        f_changed[:, :6] = other
        h = run_rows(model, f_changed, (7, 6), 13)
        torch.testing.assert_close(h[:, 7:], base[:, 7:], atol=1e-6, rtol=0)  # every R state unchanged

        # two F-only items side by side plus padding: neither sees the other, padding is inert
        pair = torch.cat([ids[:, :5], other[:, :5], torch.full((6, 3), vocab.pad_id)], dim=1)
        base = run_rows(model, pair, (5, 5), 13)
        swapped = pair.clone()
        swapped[:, 5:10] = ids[:, :5]
        swapped[:, 10:] = vocab.mask_id
        h = run_rows(model, swapped, (5, 5), 13)
        torch.testing.assert_close(h[:, :5], base[:, :5], atol=1e-6, rtol=0)
        assert not torch.isnan(base).any() and not torch.isnan(h).any()


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_no_nan_anywhere_padding_included(vocab, impl):
    model = make(vocab, impl, k_pred=2).eval()
    ids, types = random_batch(vocab, 9, seed=4)
    types[:3] = torch.tensor([0, 1, 2])
    with torch.no_grad():
        packed, _ = model._pack(ids, (types == 0).nonzero()[:, 0], (types != 0).nonzero()[:, 0], 2)
        assert (packed.tokens == vocab.pad_id).any()  # the odd F-only row carries padding
        assert not torch.isnan(model._packed_blocks(packed, all_positions=True)).any()
    out = model.train()(ids, types)
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


class Spy:
    def __init__(self, monkeypatch, model):
        self.reversed, self.fed = [], []
        real = model_mod.reverse_view

        def spy_reverse(ids, *a, **kw):
            self.reversed.append(ids.clone())
            return real(ids, *a, **kw)

        monkeypatch.setattr(model_mod, "reverse_view", spy_reverse)
        model.gpt2.transformer.wte.register_forward_hook(lambda m, inp, out: self.fed.append(inp[0].clone()))


@pytest.mark.parametrize("mode", ["packed", "two_pass"])
def test_atomic_and_test_items_never_get_a_reverse_view(vocab, monkeypatch, mode):
    model = make(vocab, mode=mode).train()
    spy = Spy(monkeypatch, model)
    ids, types = random_batch(vocab, 12, seed=2, types=(1, 2))
    out = model(ids, types)
    assert out["n_jepa"] == 0 and out["jepa_loss"].item() == 0
    assert spy.reversed == []
    fed = torch.cat([t.reshape(-1) for t in spy.fed])
    if mode == "packed":  # F without its unread last token, two items per row, then padding
        fed = fed[fed != vocab.pad_id]
        assert torch.equal(fed, ids[:, :5].reshape(-1))
    else:
        assert torch.equal(fed, ids.reshape(-1))

    # in a mixed batch, exactly the train rows are reversed
    ids, types = random_batch(vocab, 12, seed=3)
    types[0] = 0
    model(ids, types)
    assert len(spy.reversed) == 1 and torch.equal(spy.reversed[0], ids[types == 0])


@pytest.mark.parametrize("objective", [dict(objective="ntp"), dict(objective="reverse_aug"), dict(lambda_jepa=0.0)])
def test_objectives_without_jepa_build_no_reverse_views(vocab, monkeypatch, objective):
    model = make(vocab, **objective)
    spy = Spy(monkeypatch, model)
    ids, types = random_batch(vocab, 8, seed=1, types=(0,))
    out = model(ids, types, return_jepa_outputs=True)
    assert spy.reversed == [] and out["n_jepa"] == 0
    assert out["pred"].shape == out["target"].shape == (0, TINY["n_embd"])
    torch.testing.assert_close(out["loss"], out["ntp_loss"])
    torch.testing.assert_close(out["ntp_loss"], model(ids, types, mode="two_pass")["ntp_loss"], **TOL)


def test_single_token_entities_packed_equals_two_pass():
    tokens = [f"<e_{i}>" for i in range(30)] + ["<mask>", "<r_0>", "<r_0_inv>", "<r_1>", "<r_1_inv>", "<pad>"]
    v = Vocab(tokens)
    g = torch.Generator().manual_seed(0)
    n = 9
    ent = torch.randint(30, (n, 2), generator=g)
    rel = v.relation_ids[torch.randint(4, (n,), generator=g)]
    ids = torch.stack([ent[:, 0], rel, torch.full((n,), v.mask_id), ent[:, 1]], dim=1)
    types = torch.tensor([0, 1, 0, 2, 1, 1, 0, 1, 1])
    model = make(v, k_pred=1)
    packed, g_packed = losses_and_grads(model, ids, types, "packed")
    two, g_two = losses_and_grads(model, ids, types, "two_pass")
    for key in ("ntp_loss", "jepa_loss"):
        torch.testing.assert_close(packed[key], two[key], **TOL)
    for name in g_packed:
        torch.testing.assert_close(g_packed[name], g_two[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("impl", ["flash_attention_2", "flash_attention_3", "flex_attention", "paged_attention"])
def test_refuses_attention_implementations_not_proven_right(vocab, impl):
    with pytest.raises(ValueError, match="refused"):
        GPT2WithJEPA(vocab, preset=TINY, attn_implementation=impl)


def test_refuses_an_implementation_switched_after_construction_and_boolean_masks(vocab):
    model = make(vocab)
    ids, types = random_batch(vocab, 4, seed=0)
    model.gpt2.config._attn_implementation = "flex_attention"
    with pytest.raises(ValueError, match="refused"):
        model(ids, types)
    model.gpt2.config._attn_implementation = "sdpa"
    q = torch.zeros(1, 4, 3, 8)
    with pytest.raises(TypeError, match="boolean"):
        model._attend(model.gpt2.transformer.h[0].attn, q, q, q, torch.ones(1, 1, 3, 3, dtype=torch.bool))


def test_bad_inputs_are_reported(vocab):
    model = make(vocab)
    ids, types = random_batch(vocab, 4, seed=0)
    with pytest.raises(ValueError, match="types"):
        model(ids, torch.tensor([0, 1, 3, 0]))
    with pytest.raises(ValueError, match="k_pred"):
        ObjectiveConfig(k_pred=5)
    with pytest.raises(ValueError, match="n_positions"):
        GPT2WithJEPA(vocab, preset=TINY, n_positions=6)(ids, types)
    with pytest.raises(ValueError, match="preset"):
        GPT2WithJEPA(vocab, preset="huge")


def test_config_dict_round_trip(vocab):
    model = make(vocab, k_pred=3, jepa_metric="l2", stop_grad=True)
    again = GPT2WithJEPA.from_config_dict(vocab, model.config_dict())
    assert again.config_dict() == model.config_dict()
    again.load_state_dict(model.state_dict())
    ids, types = random_batch(vocab, 6, seed=0)
    torch.testing.assert_close(again(ids, types)["loss"], model(ids, types)["loss"])
    assert "inverse" not in model.state_dict()  # derived from the vocabulary, not saved
    assert model.gpt2.lm_head.weight is model.gpt2.transformer.wte.weight


def test_paper_preset_size(vocab):
    model = GPT2WithJEPA(vocab, preset="paper")
    blocks = sum(p.numel() for p in model.gpt2.transformer.h.parameters())
    assert model.gpt2.config.n_layer == 4 and model.gpt2.config.n_head == 12
    assert 28e6 < blocks < 29e6 and model.gpt2.config.vocab_size == 16015
