from collections import Counter

import pytest

from jepa_kit.data import TYPE_CODES, load_dataset, row_set
from jepa_kit.datagen import PRESETS, generate, resolve
from jepa_kit.reversal import reverse_view


def facts_of(rows, vocab):
    """Direction-free fact keys: (head, forward relation, tail) for every row."""
    out = []
    for row in rows.tolist():
        h, r, t = tuple(row[:2]), row[2], tuple(row[4:])
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
    assert len(v) == 2 * (n_a + n_b) // m + 1 + 2 * params.relation_pairs + 2
    # names: every (first, last) pair unique, each token shared by exactly `multiplicity` entities
    ents = ds.entities()
    assert len(ents) == n_a + n_b
    assert set(Counter(ents[:, 0].tolist()).values()) == {m}
    assert set(Counter(ents[:, 1].tolist()).values()) == {m}
    assert v.is_name[ents[:, 0]].all() and all(v.tokens[i].startswith("<f_") for i in ents[:, 0].tolist())
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
    keys = Counter(tuple(r[:3]) for r in ds.train.ids.tolist()) + Counter(tuple(r[:3]) for r in reverse_view(atomic, v).tolist())
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


def test_single_token_entities(tmp_path):
    ds = load_dataset(generate("tiny", tmp_path / "d", seed=0, patch_len=1))
    assert ds.patch_len == 1 and ds.train.ids.shape[1] == 4
    assert len(ds.entities()) == 600 and ds.summary()["leakage_problems"] == []


def test_bad_parameters_are_explained():
    with pytest.raises(ValueError, match="multiple of multiplicity"):
        resolve("tiny", entities_a=401)
    with pytest.raises(ValueError, match="unknown data preset 'huge'"):
        resolve("huge")
