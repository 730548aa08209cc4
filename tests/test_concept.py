"""The concept objective (the binding paper's concept-level JEPA) against plain references."""
import json

import pytest
import torch
import torch.nn.functional as F

from jepa_kit.concept import ConceptJEPA, concept_ranks
from jepa_kit.config import TrainConfig
from jepa_kit.data import SPLITS, load_dataset
from jepa_kit.model import ObjectiveConfig
from jepa_kit.rundir import load_run
from jepa_kit.train import train
from jepa_kit.vocab import Vocab

ARCH = dict(n_layer=3, n_embd=32, n_head=4)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from jepa_kit.datagen import generate

    return generate("tiny", tmp_path_factory.mktemp("concept_data") / "data", seed=0, valid_per_split=16)


def make(vocab: Vocab, seed: int = 0, pos_emb: bool = False, **objective) -> ConceptJEPA:
    torch.manual_seed(seed)
    obj = ObjectiveConfig(objective="concept", n_recognition=objective.pop("n_recognition", 2), **objective)
    model = ConceptJEPA(vocab, preset={**ARCH, "pos_emb": pos_emb}, objective=obj)
    with torch.no_grad():  # GPT-2's init leaves embeddings small: spread them so differences show
        model.gpt2.wte.weight.normal_(0, 1)
        if pos_emb:
            model.gpt2.wpe.weight.normal_(0, 1)
    return model.eval()


def rows(data, n=12, split="train"):
    return load_dataset(data).train.ids[:n] if split == "train" else load_dataset(data).valid[split].ids[:n]


def all_concepts(model, ids):
    """[B, 4, d] concepts of the four patches of each row."""
    patches, last = model.patches(ids)
    P = patches.shape[-1]
    return model.concepts(patches.reshape(-1, P), last.repeat(len(ids))).view(len(ids), 4, -1)


def test_recognition_is_blind_across_patches(data):
    ds = load_dataset(data)
    model = make(ds.vocab, pos_emb=True)
    ids = rows(data)
    c = all_concepts(model, ids)
    P = (ids.shape[1] - 2) // 2
    other = ids.clone()
    other[:, P:] = ids.flip(0)[:, P:]  # a different relation, mask slot and tail for every head
    c2 = all_concepts(model, other)
    torch.testing.assert_close(c[:, 0], c2[:, 0])  # the head's concept is the same
    assert not torch.allclose(c[:, 3], c2[:, 3])  # the tails did change


def test_the_concept_stack_is_causal(data):
    ds = load_dataset(data)
    model = make(ds.vocab, pos_emb=True)
    c = all_concepts(model, rows(data))
    shuffled = torch.cat([c[:, :3], c[:, 3].flip(0)[:, None]], 1)
    torch.testing.assert_close(model.predict(c), model.predict(shuffled))  # the tail never reaches <mask>
    torch.testing.assert_close(model.predict(c), model.predict(c[:, :3]))
    swapped = torch.cat([c[:, :1].flip(0), c[:, 1:]], 1)
    assert not torch.allclose(model.predict(c), model.predict(swapped))  # the head does


def test_padding_inside_a_patch_changes_nothing(data):
    ds = load_dataset(data)
    model = make(ds.vocab, pos_emb=True)
    ids = rows(data)
    patches, last = model.patches(ids)
    rel = patches[:, 1]
    assert (rel[:, 1:] == ds.vocab.pad_id).all()
    junk = rel.clone()
    junk[:, 1:] = ids[:, :1]  # any token after the concept position instead of <pad>
    torch.testing.assert_close(model.concepts(rel, 0), model.concepts(junk, 0))


@pytest.mark.parametrize("negatives,scale", [("all", 1.0), ("distinct", 1.0), ("all", 3.5)])
def test_the_batched_loss_equals_a_per_item_loop(data, negatives, scale):
    ds = load_dataset(data)
    model = make(ds.vocab, concept_negatives=negatives, concept_norm="rms", concept_logit_scale=scale)
    ids = torch.cat([rows(data, 10), rows(data, 2)])  # duplicates: copies of the same tails
    out = model(ids, torch.zeros(len(ids), dtype=torch.int8))
    P = (ids.shape[1] - 2) // 2
    pad = ds.vocab.pad_id

    def concept(tokens):
        patch = list(tokens) + [pad] * (P - len(tokens))
        return model.concepts(torch.tensor([patch]), len(tokens) - 1)[0]

    def patches_of(row):
        return [row[:P].tolist(), [int(row[P])], [int(row[P + 1])], row[P + 2:].tolist()]

    cands = [(p, concept(p)) for row in ids for p in patches_of(row)]  # every patch of the batch, in order
    losses = []
    for i, row in enumerate(ids):
        h, r, m, _ = (concept(p) for p in patches_of(row))
        y = model.predict(torch.stack([h, r, m])[None])[0]
        target, tail = 4 * i + 3, row[P + 2:].tolist()  # the item's own tail patch
        logits = torch.tensor([scale * float((y @ c.float()).detach()) for _, c in cands])
        if negatives == "distinct":
            for j, (p, _) in enumerate(cands):
                if p == tail and j != target:
                    logits[j] = float("-inf")
        losses.append(F.cross_entropy(logits[None], torch.tensor([target])))
    torch.testing.assert_close(out["jepa_loss"], torch.stack(losses).mean(), rtol=1e-4, atol=1e-5)
    assert out["loss"] == out["jepa_loss"] and out["ntp_loss"] == 0 and out["n_jepa"] == len(ids)


def test_rms_norm_is_the_papers(data):
    ds = load_dataset(data)
    model = make(ds.vocab)
    c = torch.randn(3, 4, ARCH["n_embd"])
    y = model.predict(c)
    torch.testing.assert_close(y.pow(2).mean(-1), torch.ones(3), rtol=1e-4, atol=1e-4)  # no gain, no mean removed


def brute_force_ranks(model, ids, entities):
    """Every entity encoded one by one, every query scored against each, ranks counted in Python."""
    P = entities.shape[1]
    ent = [model.concepts(e[None], P - 1)[0].float() for e in entities]
    kit, paper = [], []
    for row in ids:
        patches, last = model.patches(row[None])
        c = model.concepts(patches[0, :3], last[:3])
        y = model.predict(c[None])[0]
        scores = [float(y @ e) for e in ent]
        t = [i for i, e in enumerate(entities) if e.tolist() == row[P + 2:].tolist()][0]
        higher = sum(s > scores[t] for s in scores)
        tied = sum(s == scores[t] for s in scores) - 1
        kit.append(1 + higher + tied / 2)
        paper.append(1 + higher)
    return torch.tensor(kit, dtype=torch.float64), torch.tensor(paper, dtype=torch.float64)


def test_concept_mrr_equals_a_brute_force_ranking(data):
    ds = load_dataset(data)
    model = make(ds.vocab, n_recognition=1)
    entities = ds.entities()
    for split in ("atomic", "test"):
        ids = ds.valid[split].ids[:6]
        kit, paper = concept_ranks(model, ids, entities, batch_size=4)
        bk, bp = brute_force_ranks(model, ids, entities)
        torch.testing.assert_close(kit.double(), bk)
        torch.testing.assert_close(paper.double(), bp)


def test_ties_count_half_in_the_kits_rule_and_for_the_truth_in_the_papers(data):
    ds = load_dataset(data)
    model = make(ds.vocab, n_recognition=1)
    with torch.no_grad():
        model.gpt2.wte.weight.zero_()  # every concept equal: every entity ties with the truth
    E = len(ds.entities())
    kit, paper = concept_ranks(model, ds.valid["test"].ids[:3], ds.entities())
    assert kit.tolist() == [1 + (E - 1) / 2] * 3  # the expected rank under random tie-breaking
    assert paper.tolist() == [1.0] * 3  # the paper's rule: a model that ignores its input scores 1.0


@pytest.fixture(scope="module")
def abstract_data(tmp_path_factory):
    from jepa_kit.datagen import generate

    return generate("tiny_abstract", tmp_path_factory.mktemp("concept_abstract") / "data", seed=0, valid_per_split=16)


@pytest.mark.parametrize("setting", ["surface", "abstract"])
def test_concept_runs_train_evaluate_and_reload_without_test_facts(data, abstract_data, setting, tmp_path,
                                                                    monkeypatch):
    data = abstract_data if setting == "abstract" else data
    seen = []
    real = ConceptJEPA.forward

    def spy(self, ids, *a, **k):
        if self.training:
            seen.append(ids.clone())
        return real(self, ids, *a, **k)

    monkeypatch.setattr(ConceptJEPA, "forward", spy)
    cfg = TrainConfig.from_preset("tiny", data=str(data), out=str(tmp_path / "r"), objective="concept",
                                  n_layer=2, n_embd=32, n_head=2, n_recognition=1, pos_emb=False, batch_size=32,
                                  steps=6, log_every=3, eval_every=3, eval_max_items=8, progress="none",
                                  best_metric="concept_mrr")
    run = train(cfg)
    ds = load_dataset(data)
    fed = torch.cat(seen)
    test = {tuple(r) for r in ds.valid["test"].ids.tolist()}
    assert not any(tuple(r) in test for r in fed.tolist())  # no test fact, in any batch
    results = json.loads((run / "results.json").read_text())
    for split in SPLITS:
        assert results[split]["n"] == len(ds.valid[split]) and 0 < results[split]["concept_mrr"] <= 1
        assert results[split]["concept_mrr_paper_ties"] >= results[split]["concept_mrr"]
    assert json.loads((run / "best.json").read_text())["metric"] == "concept_mrr"
    model, loaded = load_run(run)
    assert isinstance(model, ConceptJEPA) and loaded.objective == "concept"
    kit, _ = concept_ranks(model, ds.valid["test"].ids, ds.entities())
    assert float((1 / kit).mean()) == pytest.approx(results["test"]["concept_mrr"], rel=1e-6)
    assert (model.gpt2.wpe.weight == 0).all()  # pos_emb false: no position information


def test_n_recognition_must_leave_a_concept_block(data):
    ds = load_dataset(data)
    with pytest.raises(ValueError, match="n_recognition = 3 leaves no concept block"):
        ConceptJEPA(ds.vocab, preset=ARCH, objective=ObjectiveConfig(objective="concept", n_recognition=3))


def test_the_eval_table_of_a_concept_run_shows_concept_mrr():
    from jepa_kit.evaluate import format_table

    res = {s: {"concept_mrr": 0.25, "concept_mrr_paper_ties": 0.5, "concept_rank_mean": 7.0, "n": 3} for s in SPLITS}
    lines = format_table(res).splitlines()
    assert lines[0].split() == ["split", "concept_mrr", "concept_mrr_paper_ties", "concept_rank_mean", "n"]
    assert lines[1].split() == ["train", "0.2500", "0.5000", "7.0000", "3"]
    assert "ties count half" in lines[-1]


@pytest.mark.parametrize("objective", ["concept", "ntp"])
def test_embedding_dropout_follows_dropout_unless_set_and_survives_a_reload(data, tmp_path, objective):
    """``embd_dropout`` None (the default, and what a run of an older kit reads) is ``dropout``; 0.0
    is the binding paper's code (its embedding dropout is commented out) with attention and residual
    dropout left at 0.1; load_run rebuilds the model with the value it trained with."""
    from jepa_kit.model import embd_pdrop

    def drops(model):
        tr = model.gpt2 if objective == "concept" else model.gpt2.transformer
        return tr.drop.p, tr.h[0].attn.attn_dropout.p, tr.h[0].mlp.dropout.p

    kw = dict(objective=objective, n_layer=2, n_embd=32, n_head=4, batch_size=16, steps=2, eval_every=0,
              log_every=1, eval_max_items=8, progress="none", dropout=0.1)
    if objective == "concept":
        kw.update(n_recognition=1, best_metric="concept_mrr")
    for embd, want in ((None, 0.1), (0.0, 0.0), (0.3, 0.3)):
        cfg = TrainConfig.from_preset("tiny", data=str(data), out=str(tmp_path / f"{embd}"), embd_dropout=embd, **kw)
        assert embd_pdrop(cfg.model_preset()) == want
        run = train(cfg)
        model = load_run(run)[0]
        assert drops(model) == (want, 0.1, 0.1), embd
        assert json.loads((run / "config.json").read_text())["config"]["embd_dropout"] == embd
    assert embd_pdrop({"dropout": 0.1}) == 0.1  # a model config_dict written before the field existed
    with pytest.raises(Exception, match=r"embd_dropout must be in \[0, 1\) or None"):
        TrainConfig.from_preset("tiny", embd_dropout=1.0)


def test_the_logit_scale_reaches_the_loss_survives_a_reload_and_must_be_positive(data, tmp_path):
    """``concept_logit_scale`` (not in the paper: its value there is 1) multiplies the loss's logits;
    a run records it and load_run rebuilds the model with it; older runs (no such field) read 1."""
    ds = load_dataset(data)
    ids = rows(data)
    one, sharp = make(ds.vocab, n_recognition=1), make(ds.vocab, n_recognition=1, concept_logit_scale=4.0)
    assert not torch.allclose(one(ids)["loss"], sharp(ids)["loss"])
    cfg = TrainConfig.from_preset("tiny", data=str(data), out=str(tmp_path / "r"), objective="concept",
                                  n_layer=2, n_embd=32, n_head=2, n_recognition=1, batch_size=16, steps=2,
                                  eval_every=0, log_every=1, eval_max_items=8, progress="none",
                                  best_metric="concept_mrr", concept_logit_scale=4.0)
    model, loaded = load_run(train(cfg))
    assert loaded.concept_logit_scale == 4.0 and model.objective.concept_logit_scale == 4.0
    older = model.config_dict()
    del older["objective"]["concept_logit_scale"]  # a run saved before the field existed
    assert ConceptJEPA.from_config_dict(ds.vocab, older).objective.concept_logit_scale == 1.0
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="concept_logit_scale must be > 0"):
            ObjectiveConfig(objective="concept", concept_logit_scale=bad)
