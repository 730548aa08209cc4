"""Evaluation metrics against a brute-force reference: one plain HF forward pass per
(query, entity), explicit greedy decoding, the full V x V table for joint_mrr_approx."""
import json
import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import jepa_kit.ranking as rk
from jepa_kit.evaluate import bench_eval, compare_precisions, evaluate, evaluate_split, format_table, sample_rows
from jepa_kit.ranking import build_entity_index, resolve_precision
from jepa_kit.vocab import Vocab

VOCAB = Vocab.build(20, 20, 3)
V = len(VOCAB)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Thousands of tiny forward passes: a second thread only adds sync cost (a lot on a busy machine).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_lm(seed=0, n_layer=2, n_embd=32):
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=V, n_positions=16, n_embd=n_embd, n_layer=n_layer, n_head=2,
                     bos_token_id=None, eos_token_id=None)
    return GPT2LMHeadModel(cfg).eval()


def make_entities(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = VOCAB.first_name_ids[torch.randint(20, (3 * n,), generator=g)]
    l = VOCAB.last_name_ids[torch.randint(20, (3 * n,), generator=g)]
    return torch.unique(torch.stack([f, l], 1), dim=0)[:n]


def make_rows(heads, tails, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = len(heads)
    rel = VOCAB.forward_relation_ids[torch.randint(3, (n,), generator=g)]
    return torch.cat([heads, rel[:, None], torch.full((n, 1), VOCAB.mask_id), tails], 1)


def make_queries(entities, n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    heads = entities[torch.randint(len(entities), (n,), generator=g)]
    tails = entities[torch.randint(len(entities), (n,), generator=g)]
    return make_rows(heads, tails, seed)


# -- the reference ------------------------------------------------------------------------

def layer_log_probs(lm, seq):
    """One plain forward pass: log-probs and logits [n_layer][len][V] (Python floats) through
    each layer's logit lens."""
    out = lm(torch.tensor([seq]), output_hidden_states=True)
    n = lm.config.n_layer
    per_layer = [lm.lm_head(lm.transformer.ln_f(out.hidden_states[i][0])) for i in range(1, n)]
    logits = torch.stack(per_layer + [out.logits[0]])
    return logits.log_softmax(-1).double().tolist(), logits.tolist()


def argmax(xs):
    return max(range(len(xs)), key=lambda i: (xs[i], -i))  # first maximal index


def rank(scores, true_score):
    """1 + #strictly better + #ties / 2 over the *other* candidates (scores excludes the truth)."""
    return 1 + sum(1 for s in scores if s > true_score) + 0.5 * sum(1 for s in scores if s == true_score)


@torch.no_grad()
def brute_force(lm, rows, entities):
    """Per layer, per item: exact, rank_first, rank_last, entity_rank, nll; joint_rank (last layer)."""
    n_layer = lm.config.n_layer
    P = (rows.shape[1] - 2) // 2
    res = {k: [[] for _ in range(n_layer)] for k in ("exact", "rank_first", "rank_last", "entity_rank", "nll")}
    res["joint_rank"] = []
    ents = [tuple(e) for e in entities.tolist()]
    for row in rows.tolist():
        prompt, tail = row[:-P], tuple(row[-P:])
        i = len(prompt) - 1
        lp, logits = layer_log_probs(lm, row)  # teacher forced
        # one separate pass per entity (single-token entities are read off the teacher-forced pass)
        ent_lp = {e: layer_log_probs(lm, prompt + [e[0]])[0] for e in ents} if P == 2 else {}
        for k in range(n_layer):
            lp1 = lp[k][i]
            f_hat = argmax(logits[k][i])
            t_f = tail[0]
            res["rank_first"][k].append(rank([lp1[v] for v in range(V) if v != t_f], lp1[t_f]))
            if P == 1:
                s = lp1[t_f]
                res["exact"][k].append(float(f_hat == t_f))
                res["nll"][k].append(-s)
                res["entity_rank"][k].append(rank([lp1[e[0]] for e in ents if e != tail], s))
                continue
            t_l = tail[1]
            lp2 = lp[k][i + 1]
            s = lp1[t_f] + lp2[t_l]
            # greedy: second token given the *predicted* first, same layer's lens
            l_hat = argmax(layer_log_probs(lm, prompt + [f_hat])[1][k][i + 1])
            res["exact"][k].append(float(f_hat == t_f and l_hat == t_l))
            res["rank_last"][k].append(rank([lp2[v] for v in range(V) if v != t_l], lp2[t_l]))
            res["nll"][k].append(-s / 2)
            scores = [ent_lp[e][k][i][e[0]] + ent_lp[e][k][i + 1][e[1]] for e in ents if e != tail]
            res["entity_rank"][k].append(rank(scores, s))
            if k == n_layer - 1:
                table = [a + b for a in lp1 for b in lp2]  # all V x V pairs, the user's approximation
                res["joint_rank"].append(1 + sum(x > s for x in table) + (sum(x == s for x in table) - 1) / 2)
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in res.items()}


@torch.no_grad()
def plain_metrics(lm, rows):
    """exact_match, mrr_first, mrr_last and ntp_loss of rows with two-token entities, from plain
    Hugging Face passes over whole rows: the teacher-forced one (its loss is the NTP loss), and one
    with the greedy first token in place of t_f, for the greedy second token."""
    Lp = rows.shape[1] - 2
    labels = torch.full_like(rows, -100)
    labels[:, Lp:] = rows[:, Lp:]
    out = lm(rows, labels=labels)
    lp = out.logits.log_softmax(-1)

    def mrr(pos, target):
        true = lp[torch.arange(len(rows)), pos, target][:, None]
        ranks = 1 + (lp[:, pos] > true).sum(-1) + ((lp[:, pos] == true).sum(-1) - 1) / 2
        return float((1 / ranks.double()).mean())

    first = out.logits[:, Lp - 1].argmax(-1)
    greedy = rows.clone()
    greedy[:, Lp] = first
    last = lm(greedy).logits[:, Lp].argmax(-1)
    exact = (first == rows[:, Lp]) & (last == rows[:, Lp + 1])
    return {"exact_match": float(exact.double().mean()), "mrr_first": mrr(Lp - 1, rows[:, Lp]),
            "mrr_last": mrr(Lp, rows[:, Lp + 1]), "ntp_loss": float(out.loss)}


def assert_matches(items, ref, keys, layers):
    for key in keys:
        for k in layers:
            got, want = items[key][k], ref[key][k]
            assert torch.allclose(got, want, rtol=0, atol=1e-9 if key != "nll" else 1e-5), (key, k, got, want)


# -- tests --------------------------------------------------------------------------------

def test_matches_brute_force_with_logit_lens():
    lm = tiny_lm()
    entities = make_entities()
    rows = make_queries(entities, n=12)
    # one tail that is not an entity of the set: every entity counts as "another"
    rows[-1, -2:] = torch.tensor([VOCAB["<f_0>"], VOCAB["<l_19>"]])
    entities = entities[~((entities[:, 0] == VOCAB["<f_0>"]) & (entities[:, 1] == VOCAB["<l_19>"]))]
    res = evaluate_split(lm, rows, entities, batch_size=5, candidate_batch=7, per_item=True)
    ref = brute_force(lm, rows, entities)
    assert_matches(res["items"], ref, ("exact", "rank_first", "rank_last", "entity_rank", "nll"), layers=(0, 1))
    assert torch.allclose(res["items"]["joint_rank"], ref["joint_rank"], rtol=0, atol=1e-9)
    assert math.isclose(res["entity_mrr"], float((1 / ref["entity_rank"][-1]).mean()), rel_tol=1e-12)
    assert math.isclose(res["joint_mrr_approx"], float((1 / ref["joint_rank"]).mean()), rel_tol=1e-12)
    assert math.isclose(res["ntp_loss"], float(ref["nll"][-1].mean()), rel_tol=1e-6)
    assert res["n"] == 12
    for key, want in (("exact_match", ref["exact"][-1].mean()), ("mrr_first", (1 / ref["rank_first"][-1]).mean()),
                      ("mrr_last", (1 / ref["rank_last"][-1]).mean()), ("entity_rank_mean", ref["entity_rank"][-1].mean()),
                      ("entity_hits1", (ref["entity_rank"][-1] == 1).double().mean())):
        assert math.isclose(res[key], float(want), rel_tol=1e-12, abs_tol=1e-12), key
    assert math.isclose(res["per_layer"][0]["entity_mrr"], float((1 / ref["entity_rank"][0]).mean()), rel_tol=1e-12)


def test_per_layer_last_entry_is_the_model_output():
    lm = tiny_lm(seed=1, n_layer=3)
    entities = make_entities()
    res = evaluate_split(lm, make_queries(entities, n=8), entities)
    assert [d["layer"] for d in res["per_layer"]] == [1, 2, 3]
    last = res["per_layer"][-1]
    for key in ("exact_match", "mrr_first", "mrr_last", "entity_mrr", "ntp_loss"):
        assert last[key] == res[key], key
    # and the lens of layer 1 is a different readout, not a copy
    assert res["per_layer"][0]["mrr_first"] != res["mrr_first"]
    no_lens = evaluate_split(lm, make_queries(entities, n=8), entities, logit_lens=False)
    assert "per_layer" not in no_lens
    assert no_lens["entity_mrr"] == res["entity_mrr"] and no_lens["joint_mrr_approx"] == res["joint_mrr_approx"]


def test_pruning_keeps_ranks_exact():
    """A model trained on the queries is confident: most first names are skipped, ranks unchanged."""
    lm = tiny_lm(seed=2, n_embd=48)
    entities = make_entities()
    rows = make_queries(entities, n=12, seed=3)
    lm.train()
    opt = torch.optim.Adam(lm.parameters(), lr=1e-2)
    labels = torch.full_like(rows, -100)
    labels[:, -2:] = rows[:, -2:]
    for _ in range(60):
        opt.zero_grad()
        lm(rows[:8], labels=labels[:8]).loss.backward()  # 8 items learned, 4 not
        opt.step()
    lm.eval()
    n_first = len(torch.unique(entities[:, 0]))
    res = evaluate_split(lm, rows, entities, logit_lens=False, per_item=True)
    cands = res["items"]["candidates"]
    assert (cands[:8] < n_first - 1).all() and cands[:8].mean() < n_first / 2, cands
    ref = brute_force(lm, rows, entities)
    assert_matches(res["items"], {k: v[-1:] for k, v in ref.items() if k != "joint_rank"},
                   ("exact", "rank_first", "rank_last", "entity_rank"), layers=(0,))
    assert res["items"]["entity_rank"][0, :8].mean() < ref["entity_rank"][-1, 8:].mean()


def test_single_token_entities_match_brute_force():
    lm = tiny_lm(seed=4)
    entities = VOCAB.first_name_ids[:15, None]  # any 15 tokens serve as single-token entities
    g = torch.Generator().manual_seed(0)
    heads = entities[torch.randint(15, (10,), generator=g)]
    tails = entities[torch.randint(15, (10,), generator=g)]
    rows = make_rows(heads, tails)
    assert rows.shape == (10, 4)
    res = evaluate_split(lm, rows, entities, batch_size=4, per_item=True)
    ref = brute_force(lm, rows, entities)
    assert_matches(res["items"], ref, ("exact", "rank_first", "entity_rank", "nll"), layers=(0, 1))
    assert res["mrr_last"] is None and res["joint_mrr_approx"] is None
    assert res["per_layer"][-1]["entity_mrr"] == res["entity_mrr"]
    with pytest.raises(ValueError, match="rows must be"):
        evaluate_split(lm, make_queries(make_entities(), n=2), entities)


def perfect_lm(answer):
    """Blocks that do nothing (zeroed output projections), one-hot embeddings, no positions: the
    hidden state at a position is ln(onehot(token)). The head maps <mask> -> answer[0] and
    answer[0] -> answer[1] with margin ~65 nats: right on every item whose tail is `answer`."""
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=V, n_positions=16, n_embd=64, n_layer=2, n_head=2,
                                    tie_word_embeddings=False, bos_token_id=None, eos_token_id=None)).eval()
    with torch.no_grad():
        for block in lm.transformer.h:
            for proj in (block.attn.c_proj, block.mlp.c_proj):
                proj.weight.zero_()
                proj.bias.zero_()
        lm.transformer.wpe.weight.zero_()
        lm.transformer.wte.weight.copy_(torch.eye(64)[:V])
        unit = lm.transformer.ln_f(torch.eye(64)[:V])  # what the head sees for each input token
        head = torch.zeros(V, 64)
        head[answer[0]] = unit[VOCAB.mask_id]
        head[answer[1]] = unit[answer[0]]
        lm.lm_head.weight.copy_(head)
    return lm


def test_perfect_items_score_one_and_wrong_items_zero():
    entities = make_entities()
    answer = entities[5]
    lm = perfect_lm(answer.tolist())
    heads = entities[:6]
    right = make_rows(heads, answer.expand(6, 2))
    res = evaluate_split(lm, right, entities)
    for key in ("exact_match", "mrr_first", "mrr_last", "entity_mrr", "entity_hits1", "joint_mrr_approx"):
        assert res[key] == 1.0, key
    assert res["ntp_loss"] < 1e-6
    assert res["entity_candidates_mean"] == 0  # nothing can reach a log-prob of 0: all pruned
    wrong = make_rows(heads, entities[entities[:, 0] != answer[0]][:6])
    res = evaluate_split(lm, wrong, entities, per_item=True)
    assert res["exact_match"] == 0.0 and res["entity_hits1"] == 0.0
    ref = brute_force(lm, wrong, entities)
    assert_matches(res["items"], ref, ("exact", "entity_rank", "nll"), layers=(0, 1))  # confidently wrong: nll ~34


def test_constant_model_sits_at_chance_not_rank_one():
    """All logits 0 (zero embeddings, tied head): every score ties. Ties count half, so the rank
    is (count + 1) / 2, the expected rank of a random guess."""
    lm = tiny_lm()
    with torch.no_grad():
        lm.transformer.wte.weight.zero_()
    entities = make_entities()
    rows = make_queries(entities, n=6)
    res = evaluate_split(lm, rows, entities, per_item=True)
    items = res["items"]
    assert torch.all(items["entity_rank"] == (len(entities) + 1) / 2)
    assert torch.all(items["rank_first"] == (V + 1) / 2) and torch.all(items["rank_last"] == (V + 1) / 2)
    assert torch.all(items["joint_rank"] == (V * V + 1) / 2)
    # greedy picks the first maximal token, 0 (<f_0>), also as the second token: never a last name
    assert res["exact_match"] == 0.0


def test_evaluate_on_generated_dataset_restores_mode_and_is_json(tiny_data):
    from jepa_kit.data import load_dataset

    ds = load_dataset(tiny_data)
    torch.manual_seed(0)
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=len(ds.vocab), n_positions=16, n_embd=32, n_layer=2, n_head=2,
                                    bos_token_id=None, eos_token_id=None))
    lm.train()
    res = evaluate(lm, ds, max_items=6, batch_size=4)
    assert lm.training
    assert set(res) == {"train", "atomic", "test"}
    lm.eval()  # (dropout off) for the reference
    for name, split in res.items():
        assert split["n"] == 6 and len(split["per_layer"]) == 2
        rows = ds.valid[name].ids[sample_rows(len(ds.valid[name]), 6)]  # the rows evaluate() takes
        for key, want in plain_metrics(lm, rows).items():
            assert math.isclose(split[key], want, rel_tol=1e-5), (name, key)
    assert json.loads(json.dumps(res, allow_nan=False)) == res  # results.json holds exactly these numbers
    table = format_table(res)
    lines = table.splitlines()
    assert lines[0].split() == ["split", *("exact_match mrr_first mrr_last entity_mrr ntp_loss n".split())]
    assert [l.split()[0] for l in lines[1:]] == ["train", "atomic", "test"]
    assert lines[3].split()[-1] == "6"
    assert f"{res['test']['entity_mrr']:.4f}" in lines[3]
    # the entity set is the dataset's
    r = evaluate(lm, ds, splits=["test"], max_items=3, logit_lens=False, per_item=True)
    direct = evaluate_split(lm, ds.valid["test"].ids[sample_rows(len(ds.valid["test"]), 3)], ds.entities(),
                            logit_lens=False, per_item=True)
    assert torch.equal(r["test"]["items"]["entity_rank"], direct["items"]["entity_rank"])
    with pytest.raises(ValueError, match="unknown split"):
        evaluate(lm, ds, splits=["valid"])


def test_entity_index_groups_by_first_name():
    ents = torch.tensor([[3, 9], [1, 7], [3, 8], [1, 7], [2, 5]])
    idx = build_entity_index(ents, vocab_size=10)
    assert idx.first_ids.tolist() == [1, 2, 3]
    assert idx.offsets.tolist() == [0, 1, 2, 4]
    assert idx.last_ids.tolist() == [7, 5, 8, 9]
    assert idx.slot[3] == 2 and idx.slot[0] == -1
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        build_entity_index(torch.tensor([[1, 12]]), vocab_size=10)


def test_bench_eval_reports_speed():
    r = bench_eval(n_queries=2, preset=dict(n_layer=1, n_embd=32, n_head=2), n_first=100, device="cpu")
    assert r["n_entities"] == 1000 and r["n_first_names"] == 100
    assert r["candidates_per_query"] == 99  # a random model prunes no first name but the true one
    assert r["queries_per_s"] == 2 / r["seconds"] and r["candidate_passes_per_s"] == 99 * r["queries_per_s"]
    assert r["projected_s_9000_queries"] == 9000 / r["queries_per_s"]


def jepa_model(ds, objective="jepa", attn="sdpa", seed=0):
    from jepa_kit.model import GPT2WithJEPA, ObjectiveConfig

    torch.manual_seed(seed)
    return GPT2WithJEPA(ds.vocab, preset=dict(n_layer=2, n_embd=32, n_head=2),
                        objective=ObjectiveConfig(objective=objective), attn_implementation=attn)


def test_gpt2_with_jepa_diagnostics_and_model_consistency(tiny_data):
    from jepa_kit.data import load_dataset

    ds = load_dataset(tiny_data)
    model = jepa_model(ds)
    model.train()
    res = evaluate(model, ds, max_items=16, logit_lens=False)
    assert model.training
    j = res["jepa"]
    assert j["n"] == 16 and j["metric"] == "cosine"
    train_rows = ds.valid["train"]  # a sample of the training rows
    model.eval()
    rows = sample_rows(len(train_rows), 16)  # the rows evaluate() takes
    with torch.no_grad():
        out = model(train_rows.ids[rows], train_rows.types[rows], return_jepa_outputs=True)
        ntp = [float(model(s.ids[rows], s.types[rows])["ntp_loss"]) for s in ds.valid.values()]
    # the same numbers as the model's own objective, computed by another path
    assert math.isclose(j["jepa_distance"], float(out["jepa_loss"]), rel_tol=1e-5)
    for split, loss in zip(ds.valid, ntp):
        assert math.isclose(res[split]["ntp_loss"], loss, rel_tol=1e-5), split
    # the collapse indicators, pair by pair: cosine between different items' predictions, per-dimension target std
    pred, target = out["pred"].float(), out["target"].float()
    cos = [float(torch.cosine_similarity(pred[a], pred[b], dim=0)) for a in range(16) for b in range(16) if a != b]
    assert math.isclose(j["pred_cos_between_items"], sum(cos) / len(cos), rel_tol=1e-4)
    per_dim_std = [float(target[:, d].std()) for d in range(target.shape[1])]
    assert math.isclose(j["target_std"], sum(per_dim_std) / len(per_dim_std), rel_tol=1e-4)
    assert "jepa (cosine, n=16)" in format_table(res)
    # the eager attention path gives the same metrics
    eager = jepa_model(ds, attn="eager")
    eager.load_state_dict(model.state_dict())
    a = evaluate_split(model, ds.valid["test"].ids[:8], ds.entities(), per_item=True)["items"]
    b = evaluate_split(eager, ds.valid["test"].ids[:8], ds.entities(), per_item=True)["items"]
    for key in ("entity_rank", "rank_first", "rank_last", "joint_rank"):
        assert torch.allclose(a[key], b[key]), key


def test_no_jepa_diagnostics_without_jepa_and_reverse_aug_is_labelled(tiny_data):
    from jepa_kit.data import load_dataset

    ds = load_dataset(tiny_data)
    res = evaluate(jepa_model(ds, "ntp"), ds, splits=["test"], max_items=4, logit_lens=False)
    assert "jepa" not in res and "label" not in res
    res = evaluate(jepa_model(ds, "reverse_aug"), ds, splits=["test"], max_items=4, logit_lens=False)
    assert "trains on test facts" in res["label"] and "trains on test facts" in format_table(res)


def test_run_directory_is_loaded_with_load_run(tiny_data, tmp_path, monkeypatch):
    """Dispatch only: a real run directory needs a training run (the lead's integration test)."""
    import jepa_kit.rundir
    from jepa_kit.data import load_dataset

    ds = load_dataset(tiny_data)
    model = jepa_model(ds, "ntp")
    seen = []
    monkeypatch.setattr(jepa_kit.rundir, "load_run", lambda run_dir: seen.append(run_dir) or (model, None))
    res = evaluate(tmp_path, str(tiny_data), splits=["atomic"], max_items=3, logit_lens=False)
    assert seen == [tmp_path] and res["atomic"]["n"] == 3


def test_clear_errors_for_bad_rows():
    lm = tiny_lm()
    entities = make_entities()
    rows = make_queries(entities, n=3)
    rows[1, 2] = V + 4
    with pytest.raises(ValueError, match=f"row 1 has token id {V + 4}, outside the model's vocabulary"):
        evaluate_split(lm, rows, entities)
    with pytest.raises(ValueError, match="no rows"):
        evaluate_split(lm, rows[:0], entities)


# -- precision ----------------------------------------------------------------------------

def spread_lm(scale=8.0):
    """A random tiny model with its weight matrices scaled up: log-probs spread over several nats, so
    the bf16 pass decides some (query, first name) pairs and leaves the others, near the true
    score, to the fp32 recheck."""
    lm = tiny_lm(seed=5)
    with torch.no_grad():
        for p in lm.parameters():
            if p.dim() == 2:
                p.mul_(scale)
    return lm


EXACT_KEYS = ("exact", "rank_first", "rank_last", "entity_rank", "nll", "joint_rank", "candidates")


def test_checked_equals_fp32_and_brute_force_where_scores_spread():
    lm = spread_lm()
    entities = make_entities()
    rows = make_queries(entities, n=12, seed=1)
    kw = dict(batch_size=5, candidate_batch=7, per_item=True)
    fp32 = evaluate_split(lm, rows, entities, precision="fp32", **kw)
    checked = evaluate_split(lm, rows, entities, precision="checked", **kw)
    for key in EXACT_KEYS:
        assert torch.equal(checked["items"][key], fp32["items"][key]), key
    for key in ("exact_match", "mrr_first", "mrr_last", "entity_mrr", "entity_rank_mean", "joint_mrr_approx", "per_layer"):
        assert checked[key] == fp32[key], key
    # both paths ran: some pairs were decided by the bf16 pass, some recomputed
    assert checked["precision"] == "checked" and fp32["precision"] == "fp32"
    assert 0 < checked["entity_recheck_fraction"] < 1
    assert checked["entity_recheck_fraction"] == float(checked["items"]["rechecked"].sum() / checked["items"]["candidates"].sum())
    assert checked["entity_fast_max_abs_err"] == float(checked["items"]["fast_err"].max())
    assert 0 < checked["entity_fast_max_abs_err"] < 0.5
    assert fp32["entity_recheck_fraction"] is None and fp32["entity_fast_max_abs_err"] is None
    ref = brute_force(lm, rows, entities)
    assert_matches(checked["items"], ref, ("entity_rank",), layers=(0, 1))


def test_checked_equals_fp32_on_a_trained_model_that_prunes():
    lm = tiny_lm(seed=2, n_embd=48)
    entities = make_entities(n=200)
    rows = make_queries(entities, n=12, seed=3)
    labels = torch.full_like(rows, -100)
    labels[:, -2:] = rows[:, -2:]
    lm.train()
    opt = torch.optim.Adam(lm.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        lm(rows[:8], labels=labels[:8]).loss.backward()
        opt.step()
    lm.eval()
    kw = dict(logit_lens=False, batch_size=6, candidate_batch=5, per_item=True)
    fp32 = evaluate_split(lm, rows, entities, precision="fp32", **kw)["items"]
    checked = evaluate_split(lm, rows, entities, precision="checked", **kw)
    n_first = len(torch.unique(entities[:, 0]))
    assert (fp32["candidates"][:8] < n_first - 1).all()  # pruned
    for key in EXACT_KEYS:
        assert torch.equal(checked["items"][key], fp32[key]), key
    assert 0 < checked["entity_recheck_fraction"] < 1


def test_a_fast_error_above_the_margin_is_measured_and_warned(monkeypatch):
    exact_log_probs = rk._entity_log_probs
    def off_by(lm, kv, q, first, row, last, lens, fast, head=None):  # a bf16 pass 0.7 nats off
        return exact_log_probs(lm, kv, q, first, row, last, lens, fast, head) + 0.7 * fast

    monkeypatch.setattr(rk, "_entity_log_probs", off_by)
    entities = make_entities()
    with pytest.warns(UserWarning, match="off by up to 0.7.. nats, more than the margin of 0.5"):
        res = evaluate_split(spread_lm(), make_queries(entities, n=4, seed=1), entities, precision="checked")
    assert 0.65 < res["entity_fast_max_abs_err"] < 0.75


def test_bf16_ranks_are_close_and_the_rest_stays_fp32():
    lm = spread_lm()
    entities = make_entities()
    rows = make_queries(entities, n=12, seed=1)
    kw = dict(batch_size=5, candidate_batch=7, per_item=True)
    fp32 = evaluate_split(lm, rows, entities, precision="fp32", **kw)["items"]
    bf16 = evaluate_split(lm, rows, entities, precision="bf16", **kw)
    assert bf16["precision"] == "bf16" and bf16["entity_recheck_fraction"] is None
    for key in EXACT_KEYS:
        if key != "entity_rank":  # only the candidate passes run in bf16
            assert torch.equal(bf16["items"][key], fp32[key]), key
    diff = (bf16["items"]["entity_rank"] - fp32["entity_rank"]).abs()
    assert diff.max() <= 3 and diff.mean() < 0.5, diff  # (on this CPU a few near-ties differ by 1 or 2)


def test_recheck_everything_or_only_ties():
    lm = spread_lm()
    entities = make_entities()
    rows = make_queries(entities, n=8, seed=1)
    kw = dict(logit_lens=False, candidate_batch=16, per_item=True)
    fp32 = evaluate_split(lm, rows, entities, precision="fp32", **kw)
    everything = evaluate_split(lm, rows, entities, precision="checked", margin=1e6, **kw)
    assert everything["entity_recheck_fraction"] == 1.0
    assert torch.equal(everything["items"]["rechecked"], fp32["items"]["candidates"])
    assert torch.equal(everything["items"]["entity_rank"], fp32["items"]["entity_rank"])
    # margin 0 rechecks exact ties of the bf16 scores only: none here, so it counts like "bf16"
    ties = evaluate_split(lm, rows, entities, precision="checked", margin=0.0, **kw)
    bf16 = evaluate_split(lm, rows, entities, precision="bf16", **kw)
    assert ties["entity_recheck_fraction"] == 0.0 and ties["entity_fast_max_abs_err"] is None
    assert torch.equal(ties["items"]["entity_rank"], bf16["items"]["entity_rank"])
    # a constant model: every score ties, under bf16 too, so margin 0 rechecks every pair
    const = tiny_lm()
    with torch.no_grad():
        const.transformer.wte.weight.zero_()
    res = evaluate_split(const, rows, entities, precision="checked", margin=0.0, **kw)
    assert res["entity_recheck_fraction"] == 1.0 and res["entity_fast_max_abs_err"] == 0.0
    assert torch.all(res["items"]["entity_rank"] == (len(entities) + 1) / 2)


def test_precision_names_and_margin_are_checked(tiny_data):
    lm = tiny_lm()
    entities = make_entities()
    rows = make_queries(entities, n=2)
    assert evaluate_split(lm, rows, entities)["precision"] == "fp32"  # "auto" on the CPU
    assert resolve_precision("auto", "cuda") == "checked" and resolve_precision("bf16", "cuda") == "bf16"
    with pytest.raises(ValueError, match="precision must be one of 'auto', 'fp32', 'checked', 'bf16', got 'fp16'"):
        evaluate_split(lm, rows, entities, precision="fp16")
    with pytest.raises(ValueError, match="margin must be"):
        evaluate_split(lm, rows, entities, precision="checked", margin=-1)
    with pytest.raises(ValueError, match="precision must be one of"):
        evaluate(tiny_lm(), tiny_data, splits=["test"], max_items=2, precision="half")  # before the vocabulary check


def test_tf32_is_off_inside_and_restored_after(monkeypatch):
    cuda_matmul = torch.backends.cuda.matmul
    new_api = hasattr(cuda_matmul, "fp32_precision")
    name, allowed, exact = ("fp32_precision", "tf32", "ieee") if new_api else ("allow_tf32", True, False)
    seen = []
    prompt_pass = rk._prompt_pass
    monkeypatch.setattr(rk, "_prompt_pass", lambda *a: seen.append(getattr(cuda_matmul, name)) or prompt_pass(*a))
    old = getattr(cuda_matmul, name)
    setattr(cuda_matmul, name, allowed)
    try:
        evaluate_split(tiny_lm(), make_queries(make_entities(), n=2), make_entities(), precision="checked")
        assert seen == [exact] and getattr(cuda_matmul, name) == allowed
    finally:
        setattr(cuda_matmul, name, old)


def test_max_items_is_a_fixed_random_sample(tiny_data):
    from jepa_kit.data import load_dataset

    rows = sample_rows(200, 10, seed=0)
    assert torch.equal(rows, sample_rows(200, 10, seed=0)) and len(rows) == 10
    assert torch.equal(rows, rows.sort().values) and len(set(rows.tolist())) == 10 and rows.max() < 200
    assert not torch.equal(rows, torch.arange(10))  # not the first rows
    assert not torch.equal(rows, sample_rows(200, 10, seed=1))
    assert torch.equal(sample_rows(5, 10), torch.arange(5)) and torch.equal(sample_rows(5, None), torch.arange(5))

    ds = load_dataset(tiny_data)
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=len(ds.vocab), n_positions=16, n_embd=32, n_layer=1, n_head=2,
                                    bos_token_id=None, eos_token_id=None))
    kw = dict(splits=["test"], max_items=6, logit_lens=False, per_item=True)
    a = evaluate(lm, ds, **kw)["test"]["items"]
    b = evaluate(lm, ds, **kw)["test"]["items"]
    assert torch.equal(a["entity_rank"], b["entity_rank"])
    lm.eval()
    direct = evaluate_split(lm, ds.valid["test"].ids[sample_rows(200, 6)], ds.entities(), logit_lens=False, per_item=True)
    assert torch.equal(a["rank_first"], direct["items"]["rank_first"])
    first = evaluate_split(lm, ds.valid["test"].ids[:6], ds.entities(), logit_lens=False, per_item=True)
    assert not torch.equal(a["rank_first"], first["items"]["rank_first"])


def test_compare_precisions_reports_rank_differences():
    entities = make_entities()
    rows = make_queries(entities, n=12, seed=1)
    lm = spread_lm()
    kw = dict(batch_size=5, candidate_batch=7)
    r = compare_precisions(lm, rows, entities, precisions=("checked", "bf16"), **kw)
    assert list(r) == ["fp32", "checked", "bf16"]
    fp32, checked, bf16 = (evaluate_split(lm, rows, entities, precision=p, per_item=True, **kw) for p in r)
    for p, res in zip(r, (fp32, checked, bf16)):
        assert r[p]["seconds"] > 0 and r[p]["entity_mrr"] == res["entity_mrr"], p
        assert r[p]["entity_recheck_fraction"] == res["entity_recheck_fraction"], p
    assert r["fp32"]["items_rank_differs"] == 0 and r["checked"]["items_rank_differs"] == 0
    assert r["checked"]["mrr_abs_diff"] == 0 and 0 < r["checked"]["entity_recheck_fraction"] < 1
    diff = (bf16["items"]["entity_rank"] - fp32["items"]["entity_rank"]).abs()  # [layers, items]
    assert r["bf16"]["items_rank_differs"] == int((diff > 0).any(0).sum())
    assert r["bf16"]["max_rank_diff"] == diff.max()
    assert r["bf16"]["mrr_abs_diff"] == abs(bf16["entity_mrr"] - fp32["entity_mrr"])


def test_bench_eval_reports_precision():
    kw = dict(n_queries=2, preset=dict(n_layer=1, n_embd=32, n_head=2), n_first=50, multiplicity=4, device="cpu")
    r = bench_eval(**kw)
    assert r["precision"] == "bf16" and r["entity_recheck_fraction"] is None  # the default for the worst case
    r = bench_eval(**kw, precision="checked")
    # a random model scores every entity within the margin of the truth: every pair is recomputed
    assert r["precision"] == "checked" and r["entity_recheck_fraction"] == 1.0 and r["candidates_per_query"] == 49
    assert bench_eval(**kw, precision="fp32")["precision"] == "fp32"


@pytest.mark.parametrize("lens", [False, True])
def test_next_token_step_equals_a_plain_pass_over_prompt_and_token(lens):
    """The hand-written one-token step (cache-free attention over the prompt's keys) against the
    Hugging Face model run on the whole row [prompt, token]."""
    lm = tiny_lm(seed=3, n_layer=3)
    rows = make_queries(make_entities(), n=6, seed=2)
    prompt_len = 4
    with torch.no_grad():
        _, kv = rk._prompt_pass(lm, rows, prompt_len, lens=False)
        pick = torch.tensor([0, 2, 2, 5])  # several candidates per prompt, as in the ranking
        tokens = VOCAB.first_name_ids[torch.tensor([1, 7, 3, 0])]
        got = rk._next_token_hidden(lm, kv, pick, tokens, lens)
        full = torch.cat([rows[pick, :prompt_len], tokens[:, None]], 1)
        out = lm.transformer(full, output_hidden_states=True)
        want = [lm.transformer.ln_f(h[:, -1]) for h in out.hidden_states[1:-1]] + [out.last_hidden_state[:, -1]]
        want = torch.stack(want if lens else want[-1:])
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        # the padded LM head reads the same log-probabilities
        head = rk._padded_head(lm)
        assert head.shape[0] % 8 == 0 and torch.equal(head[: len(VOCAB)], lm.lm_head.weight)
        row, last = torch.arange(4), VOCAB.last_name_ids[:4]
        lp = rk._entity_log_probs(lm, kv, pick, tokens, row, last, lens, fast=False, head=head)
        ref = lm.lm_head(want).log_softmax(-1)[:, row, last].double()
        torch.testing.assert_close(lp, ref, atol=1e-5, rtol=0)


# -- one token per entity (the abstract setting) ------------------------------------------------

@pytest.fixture(scope="module")
def abstract_data(tmp_path_factory):
    from jepa_kit.data import load_dataset
    from jepa_kit.datagen import generate

    return load_dataset(generate("tiny_abstract", tmp_path_factory.mktemp("abstract") / "data", seed=0))


def abstract_lm(vocab_size, seed=0, n_layer=2):
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_positions=16, n_embd=32, n_layer=n_layer, n_head=2,
                                      bos_token_id=None, eos_token_id=None)).eval()


@torch.no_grad()
def brute_force_one_token(lm, rows, entities):
    """Per layer, per row [h, r, <mask>, t]: one plain pass over the whole row; the score of entity e
    is log p(e | h, r, <mask>), read at <mask> through each layer's lens, and the true tail is ranked
    among all the other entities of the set (ties half)."""
    n_layer, V_ = lm.config.n_layer, lm.config.vocab_size
    ents = entities.flatten().tolist()
    res = {k: [[] for _ in range(n_layer)] for k in ("exact", "rank_first", "entity_rank", "nll")}
    for row in rows.tolist():
        lp, logits = layer_log_probs(lm, row)
        t = row[3]
        for k in range(n_layer):
            at_mask = lp[k][2]
            res["exact"][k].append(float(argmax(logits[k][2]) == t))
            res["nll"][k].append(-at_mask[t])
            res["rank_first"][k].append(rank([at_mask[v] for v in range(V_) if v != t], at_mask[t]))
            res["entity_rank"][k].append(rank([at_mask[e] for e in ents if e != t], at_mask[t]))
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in res.items()}


def test_one_token_entity_ranks_on_generated_data_match_brute_force(abstract_data):
    ds = abstract_data
    lm = abstract_lm(len(ds.vocab))
    entities = ds.entities()
    assert entities.shape == (600, 1)
    rows = ds.valid["test"].ids[:12].clone()
    # one tail outside the entity set: then every entity counts as "another"
    outside = int(rows[-1, 3])
    entities = entities[entities[:, 0] != outside]
    res = evaluate_split(lm, rows, entities, batch_size=5, per_item=True)
    ref = brute_force_one_token(lm, rows, entities)
    assert_matches(res["items"], ref, ("exact", "rank_first", "entity_rank", "nll"), layers=(0, 1))
    assert math.isclose(res["entity_mrr"], float((1 / ref["entity_rank"][-1]).mean()), rel_tol=1e-12)
    assert math.isclose(res["per_layer"][0]["entity_mrr"], float((1 / ref["entity_rank"][0]).mean()), rel_tol=1e-12)
    assert res["mrr_last"] is None and res["joint_mrr_approx"] is None and res["entity_candidates_mean"] == 0


def test_evaluate_on_a_one_token_dataset_ranks_among_its_entities(abstract_data):
    ds = abstract_data
    lm = abstract_lm(len(ds.vocab), seed=1, n_layer=1)
    res = evaluate(lm, ds, max_items=8, logit_lens=False)
    for name in ("train", "atomic", "test"):
        rows = ds.valid[name].ids[sample_rows(len(ds.valid[name]), 8)]
        ref = brute_force_one_token(lm, rows, ds.entities())
        assert math.isclose(res[name]["entity_mrr"], float((1 / ref["entity_rank"][-1]).mean()), rel_tol=1e-12), name
        assert math.isclose(res[name]["mrr_first"], float((1 / ref["rank_first"][-1]).mean()), rel_tol=1e-12), name
        assert res[name]["mrr_last"] is None and res[name]["n"] == 8
    assert format_table(res).splitlines()[1].split()[3] == "-"  # no last token: mrr_last is a dash


def test_one_token_ties_count_half_so_a_constant_model_sits_at_chance(abstract_data):
    ds = abstract_data
    lm = abstract_lm(len(ds.vocab))
    with torch.no_grad():
        lm.transformer.wte.weight.zero_()
    res = evaluate_split(lm, ds.valid["atomic"].ids[:6], ds.entities(), per_item=True)
    assert torch.all(res["items"]["entity_rank"] == (600 + 1) / 2)
    assert torch.all(res["items"]["rank_first"] == (len(ds.vocab) + 1) / 2)
    assert res["entity_mrr"] == 2 / 601


def test_entity_index_of_single_tokens():
    a = build_entity_index(torch.tensor([[5], [3], [5], [8]]), vocab_size=10)
    b = build_entity_index(torch.tensor([5, 3, 5, 8]), vocab_size=10)  # [E] reads as [E, 1]
    for idx in (a, b):
        assert idx.patch_len == 1 and idx.n_entities == 3
        assert idx.first_ids.tolist() == [3, 5, 8] and idx.offsets.tolist() == [0, 0, 0, 0] and len(idx.last_ids) == 0
        assert idx.slot.tolist() == [-1, -1, -1, 0, -1, 1, -1, -1, 2, -1]
    lm = tiny_lm()
    with pytest.raises(ValueError, match=r"rows must be \[N, 4\] for entities of 1 token"):
        evaluate_split(lm, make_queries(make_entities(), n=2), torch.tensor([[1], [2]]))
    with pytest.raises(ValueError, match=r"entities must be \[E, 1\] or \[E, 2\]"):
        build_entity_index(torch.zeros(3, 3, dtype=torch.long), vocab_size=10)


def test_a_run_on_one_token_data_reports_the_entity_mrr_of_its_model(abstract_data, tmp_path):
    """End to end: an ntp run on tiny_abstract writes results.json whose entity MRR, on every split,
    is the brute-force one of the model it saved."""
    from jepa_kit.config import TrainConfig
    from jepa_kit.rundir import load_run
    from jepa_kit.train import train

    ds = abstract_data
    cfg = TrainConfig.from_preset("tiny", data=ds.path, out=str(tmp_path / "run"), objective="ntp", n_layer=1,
                                  n_embd=32, n_head=2, batch_size=32, lr=3e-3, steps=12, log_every=2, eval_every=0,
                                  eval_max_items=16, ckpt_every=100, progress="none")
    run = train(cfg)
    results = json.loads((run / "results.json").read_text())
    assert results["trains_on_test_facts"] is False and results["run"]["steps"] == 12
    model, _ = load_run(run)
    lm = model.gpt2.eval()
    for name in ("train", "atomic", "test"):
        split = results[name]
        ref = brute_force_one_token(lm, ds.valid[name].ids, ds.entities())  # the final evaluation takes every row
        assert split["n"] == 200 and split["mrr_last"] is None, name
        assert math.isclose(split["entity_mrr"], float((1 / ref["entity_rank"][-1]).mean()), rel_tol=1e-9), name
        assert math.isclose(split["ntp_loss"], float(ref["nll"][-1].mean()), rel_tol=1e-5), name
