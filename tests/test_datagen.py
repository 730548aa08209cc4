import json
from collections import Counter
from dataclasses import asdict, replace

import pytest
import torch

from jepa_kit.data import TYPE_CODES, load_dataset, row_set
from jepa_kit.datagen import PRESETS, generate, resolve
from jepa_kit.reversal import reverse_view


def facts_of(rows, vocab):
    """Direction-free fact keys: (head, forward relation, tail) for every row."""
    out = []
    P = (rows.shape[1] - 2) // 2
    for row in rows.tolist():
        h, r, t = tuple(row[:P]), row[P], tuple(row[P + 2:])
        if vocab.tokens[r].endswith("_inv>"):
            h, r, t = t, int(vocab.inverse[r]), h
        out.append((h, r, t))
    return out


def check_invariants(ds, params):
    v = ds.vocab
    n_a, n_b, m = params.entities_a, params.entities_b, params.multiplicity
    f = params.facts_per_entity
    train = ds.train.of_type("train").ids
    atomic = ds.train.of_type("atomic").ids
    # counts: facts over A in both directions, facts over B once
    assert len(train) == 2 * n_a * f and len(atomic) == n_b * f
    assert ds.train.types.tolist() == [0] * len(train) + [1] * len(atomic), "train block, then atomic block"
    P = params.entity_tokens
    assert ds.entity_tokens == ds.patch_len == P and ds.train.ids.shape[1] == 2 * P + 2
    ents = ds.entities()
    assert len(ents) == n_a + n_b and ents.shape[1] == P
    if P == 2:
        assert len(v) == 2 * (n_a + n_b) // m + 1 + 2 * params.relation_pairs + 2
        # names: every (first, last) pair unique, each token shared by exactly `multiplicity` entities
        assert set(Counter(ents[:, 0].tolist()).values()) == {m}
        assert set(Counter(ents[:, 1].tolist()).values()) == {m}
        assert v.is_name[ents[:, 0]].all() and all(v.tokens[i].startswith("<f_") for i in ents[:, 0].tolist())
        assert all(v.tokens[i].startswith("<l_") for i in ents[:, 1].tolist())
    else:
        # one token per entity, named as the binding paper names them: <s_i> in A, <t_j> in B
        assert m == 1 and len(v) == n_a + n_b + 1 + 2 * params.relation_pairs + 2
        assert sorted(v.tokens[:n_a + n_b]) == sorted([f"<s_{i}>" for i in range(n_a)] + [f"<t_{j}>" for j in range(n_b)])
        assert torch.equal(v.entity_token_ids, torch.arange(n_a + n_b)) and v.is_name[ents[:, 0]].all()
        seen_a = {v.tokens[e] for row in train.tolist() for e in (row[0], row[-1])}
        seen_b = {v.tokens[e] for row in atomic.tolist() for e in (row[0], row[-1])}
        assert all(t.startswith("<s_") for t in seen_a) and all(t.startswith("<t_") for t in seen_b)
    # every train fact in both directions, every atomic fact in exactly one
    train_facts = Counter(facts_of(train, v))
    assert set(train_facts.values()) == {2}
    assert row_set(reverse_view(train, v)) == row_set(train)
    atomic_facts = Counter(facts_of(atomic, v))
    assert set(atomic_facts.values()) == {1}
    assert not set(train_facts) & set(atomic_facts)
    assert not row_set(reverse_view(atomic, v)) & row_set(ds.train.ids)
    # entity sets A and B are disjoint
    ents_a = {h for h, _, t in train_facts} | {t for h, _, t in train_facts}
    ents_b = {h for h, _, t in atomic_facts} | {t for h, _, t in atomic_facts}
    assert len(ents_a) == n_a and len(ents_b) == n_b and not ents_a & ents_b
    # each query has one answer: (head, relation) never repeats across the whole training file
    keys = Counter(tuple(r[:P + 1]) for r in ds.train.ids.tolist()) + \
        Counter(tuple(r[:P + 1]) for r in reverse_view(atomic, v).tolist())
    assert max(keys.values()) == 1
    # valid: train/atomic are items of train.json, test items are reverses of atomic facts, none in train.json
    assert row_set(ds.valid["train"].ids) <= row_set(train)
    assert row_set(ds.valid["atomic"].ids) <= row_set(atomic)
    test = ds.valid["test"].ids
    assert row_set(test) <= row_set(reverse_view(atomic, v))
    assert not row_set(test) & row_set(ds.train.ids)
    assert (ds.valid["test"].types == TYPE_CODES["test"]).all()
    assert ds.summary()["leakage_problems"] == []


@pytest.mark.parametrize("preset, overrides", [
    ("tiny", {}),
    ("small", {"entities_a": 2000, "entities_b": 1000, "multiplicity": 5, "relation_pairs": 4, "facts_per_entity": 2}),
    ("tiny_abstract", {}),
    ("mid", {}),
    ("mid_abstract", {}),
    ("midlarge_abstract", {}),
    ("small_abstract", {"entities_a": 2000, "entities_b": 1000, "relation_pairs": 4, "facts_per_entity": 2}),
    ("tiny_paired", {}),
    ("tiny_abstract_paired", {}),
    ("small", {"entities_a": 2000, "entities_b": 1000, "relation_pairs": 4, "facts_per_entity": 2,
               "structure": "pairing"}),
])
def test_generator_invariants(tmp_path, preset, overrides):
    params = resolve(preset, **overrides)
    ds = load_dataset(generate(params, tmp_path / "d", seed=3))
    check_invariants(ds, params)


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    a = generate("tiny", tmp_path / "a", seed=7)
    b = generate("tiny", tmp_path / "b", seed=7)
    c = generate("tiny", tmp_path / "c", seed=8)
    for name in ("vocab.json", "train.json", "valid.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "train.json").read_bytes() != (c / "train.json").read_bytes()
    assert (a / "vocab.json").read_bytes() != (c / "vocab.json").read_bytes(), "name ids are in seeded order"


def test_vocab_layout_matches_user_files(tmp_path, osu_dir):
    ds = load_dataset(generate("tiny", tmp_path / "d", seed=0))
    user = load_dataset(osu_dir).vocab
    n_names = len(ds.vocab) - 15
    tail = [t for t in ds.vocab.tokens[n_names:]]
    assert tail == user.tokens[16000:], "<mask>, interleaved relations, <pad>, <PRED> after the names"


def test_paper_preset_numbers():
    p = PRESETS["paper"]
    assert (p.entities_a, p.entities_b, p.multiplicity, p.relation_pairs) == (50_000, 30_000, 10, 6)
    assert 2 * p.entities_a * p.facts_per_entity == 300_000 and p.entities_b * p.facts_per_entity == 90_000
    assert 2 * (p.entities_a + p.entities_b) // p.multiplicity + 15 == 16_015


def test_abstract_presets_are_the_surface_ones_with_one_token_per_entity():
    for size in ("tiny", "mid", "small", "paper"):
        surface, abstract = PRESETS[size], PRESETS[f"{size}_abstract"]
        assert (surface.entity_tokens, abstract.entity_tokens, abstract.multiplicity) == (2, 1, 1)
        assert replace(surface, entity_tokens=1, multiplicity=1) == abstract, size
        assert resolve(size, entity_tokens=1) == abstract, "multiplicity follows entity_tokens"
    p = PRESETS["paper_abstract"]
    # the binding paper's inversionid.50000.30000: 80,000 entity tokens + <mask>, 12 relations, <pad> (+ <PRED>)
    assert p.entities_a + p.entities_b + 1 + 2 * p.relation_pairs + 1 == 80_014


def test_single_token_entities_deterministic_and_leak_free(tmp_path):
    a = generate("tiny_abstract", tmp_path / "a", seed=5)
    b = generate("tiny", tmp_path / "b", seed=5, entity_tokens=1)
    for name in ("vocab.json", "train.json", "valid.json", "generator.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert json.loads((a / "generator.json").read_text())["params"]["entity_tokens"] == 1
    ds = load_dataset(a)
    item = json.loads((a / "train.json").read_text())[0]
    assert [len(x) for x in item["input_text"]] == [1, 1, 1] and len(item["target_text"][0]) == 1
    assert ds.train.ids[0].tolist() == [*item["input_text"][0], *item["input_text"][1], *item["input_text"][2],
                                        *item["target_text"][0]]
    assert ds.summary()["leakage_problems"] == [] and ds.summary()["warnings"] == []
    assert ds.summary()["name_sharing"] == {"entity": {"tokens": 600, "entities_per_token_min": 1,
                                                       "entities_per_token_max": 1}}


def test_patch_len_is_the_deprecated_name_of_entity_tokens(tmp_path):
    with pytest.warns(DeprecationWarning, match="patch_len is now called entity_tokens"):
        assert resolve("tiny", patch_len=1) == PRESETS["tiny_abstract"]
    old = asdict(PRESETS["tiny"])  # the params of an older generator.json
    del old["entity_tokens"]
    with pytest.warns(DeprecationWarning):
        assert resolve({**old, "patch_len": 1}) == PRESETS["tiny_abstract"]
    with pytest.warns(DeprecationWarning):
        d = generate("tiny", tmp_path / "d", seed=0, patch_len=1)
    assert load_dataset(d).entity_tokens == 1
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="both patch_len=1 and entity_tokens=2"):
        resolve("tiny", patch_len=1, entity_tokens=2)
    assert not hasattr(PRESETS["tiny"], "patch_len")


def test_bad_parameters_are_explained():
    with pytest.raises(ValueError, match="multiple of multiplicity"):
        resolve("tiny", entities_a=401)
    with pytest.raises(ValueError, match="unknown data preset 'huge'"):
        resolve("huge")
    with pytest.raises(ValueError, match="entity_tokens must be 1 .* or 2 .*, got 3"):
        resolve("tiny", entity_tokens=3)
    with pytest.raises(ValueError, match="with entity_tokens=1 every entity is its own token"):
        resolve("tiny_abstract", multiplicity=10)
    with pytest.raises(ValueError, match="multiplicity must be at least 1"):
        resolve("tiny", multiplicity=0)
    assert resolve("tiny_abstract", entities_a=401).entities_a == 401  # no name sharing to constrain it


def _roles(ds, params):
    """Per relation pair, each entity's facts: {(entity, pair): [("head" | "tail", partner)]}, over
    train.json's facts (both sets; each fact once, in its forward direction)."""
    v = ds.vocab
    facts = set(facts_of(ds.train.ids, v))
    roles = {}
    for h, r, t in facts:
        roles.setdefault((h, r), []).append(("head", t))
        roles.setdefault((t, r), []).append(("tail", h))
    return roles, facts


@pytest.mark.parametrize("preset", ["tiny_paired", "tiny_abstract_paired"])
def test_the_pairing_structure_is_the_papers_a_perfect_matching_per_relation_pair(tmp_path, preset):
    """As the binding paper's generator lays out facts (random_pairing per relation pair): every
    entity takes part in every relation pair exactly once, as the head or the tail of its one fact,
    so no entity is both under one relation; the tiny_paired presets are tiny's with only that changed."""
    params = PRESETS[preset]
    ds = load_dataset(generate(preset, tmp_path / "d", seed=0))
    roles, facts = _roles(ds, params)
    n = params.entities_a + params.entities_b
    assert len(facts) == n * params.relation_pairs // 2
    assert len(roles) == n * params.relation_pairs and {len(v) for v in roles.values()} == {1}
    heads = Counter(role for v in roles.values() for role, _ in v)
    assert heads["head"] == heads["tail"] == len(facts)
    assert replace(params, structure="shift") == PRESETS[preset.replace("_paired", "")]


def test_the_shift_structure_makes_chains_the_pairing_one_does_not(tmp_path):
    """The kit's presets ("shift"): an entity can be the head of one fact and the tail of another
    under the same relation, and sit out other relation pairs; "pairing" has neither."""
    for preset, chains in (("tiny", True), ("tiny_paired", False)):
        ds = load_dataset(generate(preset, tmp_path / preset, seed=0))
        roles, _ = _roles(ds, PRESETS[preset])
        both = sum(len(v) == 2 for v in roles.values())
        assert (both > 0) == chains, preset
        assert (len(roles) < 600 * 6) == chains, preset


def test_pairing_needs_even_sets_and_half_the_relation_pairs_per_entity():
    with pytest.raises(ValueError, match="facts_per_entity must be relation_pairs / 2"):
        resolve("tiny_paired", facts_per_entity=2)
    with pytest.raises(ValueError, match=r"entities_a \(401\) and entities_b \(200\) must be even"):
        resolve("tiny_abstract_paired", entities_a=401)
    with pytest.raises(ValueError, match="structure must be one of shift, pairing, got 'chains'"):
        resolve("tiny", structure="chains")
