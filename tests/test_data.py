import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from jepa_kit import data as data_mod
from jepa_kit.data import SPLITS, TYPE_CODES, DataError, is_type, load_dataset
from jepa_kit.reversal import reverse_view


def test_real_fixtures_load_unchanged(osu_dir):
    before = sorted(p.name for p in osu_dir.iterdir())
    ds = load_dataset(osu_dir)
    assert ds.train.ids.shape == (50, 6) and ds.train.ids.dtype == torch.long
    assert ds.train.types.tolist() == [0] * 30 + [1] * 20
    assert {k: len(v) for k, v in ds.valid.items()} == {"train": 20, "atomic": 20, "test": 20}
    assert (ds.valid["test"].types == 2).all()
    # first item of train.json: {"input_text": [[14559, 10120], [16010], [16000]], "target_text": [[11450, 4213]]}
    assert ds.train.ids[0].tolist() == [14559, 10120, 16010, 16000, 11450, 4213]
    assert len(ds.vocab) == 16015 and ds.patch_len == 2
    assert sorted(p.name for p in osu_dir.iterdir()) == before, "loading must not write into a read-only dataset"


def test_rows_of_a_type(osu_dir):
    ds = load_dataset(osu_dir)
    assert SPLITS == tuple(TYPE_CODES) == tuple(ds.valid) == ("train", "atomic", "test")
    assert is_type(ds.train.types, "atomic").tolist() == [False] * 30 + [True] * 20
    assert torch.equal(ds.train.of_type("atomic").ids, ds.train.ids[30:])
    assert len(ds.valid["test"].of_type("test")) == 20 and len(ds.valid["test"].of_type("train")) == 0
    with pytest.raises(ValueError, match="unknown item type 'tset', expected one of train, atomic, test"):
        is_type(ds.train.types, "tset")


def edit_json(path, fn):
    obj = json.loads(path.read_text())
    fn(obj)
    path.write_text(json.dumps(obj))


# (file, edit, expected message) — each a way the user's files can be wrong
BAD_CASES = {
    "truncated train": ("train.json", "text", lambda t: t[: len(t) // 2], r"train.json: not valid JSON .*truncated"),
    "train not array": ("train.json", "text", lambda t: '{"a": 1}', r"train.json: expected a JSON array of items, got dict"),
    "valid not object": ("valid.json", "text", lambda t: "[]", r"valid.json: expected a JSON object with splits"),
    "missing split": ("valid.json", "obj", lambda o: o.pop("test"), r"valid.json: missing split 'test'"),
    "target too long": ("valid.json", "obj", lambda o: o["test"][17]["target_text"][0].append(5),
                        r"valid.json: split 'test': item 17 has a target of 3 tokens, expected 2"),
    "head too short": ("train.json", "obj", lambda o: o[3]["input_text"][0].pop(),
                       r"train.json: item 3 has a head of 1 tokens, expected 2"),
    "relation patch": ("train.json", "obj", lambda o: o[4]["input_text"][1].append(16001),
                       r"train.json: item 4 has a relation patch of 2 tokens, expected 1"),
    "id outside vocab": ("train.json", "obj", lambda o: o[5]["target_text"][0].__setitem__(1, 16015),
                         r"train.json: item 5 has id 16015, outside the vocabulary \(0..16014\)"),
    "negative id": ("valid.json", "obj", lambda o: o["atomic"][2]["input_text"][0].__setitem__(0, -1),
                    r"valid.json: split 'atomic': item 2 has id -1, outside the vocabulary"),
    "non-relation in relation slot": ("train.json", "obj", lambda o: o[6]["input_text"][1].__setitem__(0, 42),
                                      r"train.json: item 6 has .* \(id 42\) in the relation slot, expected a relation token"),
    "mask slot": ("train.json", "obj", lambda o: o[7]["input_text"][2].__setitem__(0, 16013),
                  r"train.json: item 7 has '<pad>' \(id 16013\) in the mask slot, expected '<mask>'"),
    "relation in name slot": ("train.json", "obj", lambda o: o[8]["target_text"][0].__setitem__(0, 16001),
                              r"train.json: item 8 has '<r_0>' \(id 16001\) in an entity slot"),
    "unknown type": ("train.json", "obj", lambda o: o[9].__setitem__("type", "bogus"),
                     r"train.json: item 9 has type 'bogus', expected one of train, atomic"),
    "test item in train.json": ("train.json", "obj", lambda o: o[10].__setitem__("type", "test"),
                                r"train.json: item 10 has type 'test'"),
    "wrong type in split": ("valid.json", "obj", lambda o: o["test"][0].__setitem__("type", "atomic"),
                            r"valid.json: split 'test': item 0 has type 'atomic', expected one of test"),
    "missing key": ("train.json", "obj", lambda o: o[11].pop("target_text"), r"train.json: item 11 has no 'target_text'"),
    "string id": ("train.json", "obj", lambda o: o[12]["input_text"][0].__setitem__(0, "12"),
                  r"train.json: item 12 has a head patch that is not a list of integer ids"),
    "item not object": ("valid.json", "obj", lambda o: o["train"].__setitem__(1, [1, 2]),
                        r"valid.json: split 'train': item 1 is a list"),
    "empty split": ("valid.json", "obj", lambda o: o.__setitem__("atomic", []), r"valid.json: split 'atomic': no items"),
    "missing file": ("valid.json", "delete", None, r"valid.json: file not found"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_malformed_input_named_precisely(osu_copy, case):
    name, how, fn, message = BAD_CASES[case]
    path = osu_copy / name
    if how == "text":
        path.write_text(fn(path.read_text()))
    elif how == "obj":
        edit_json(path, fn)
    else:
        path.unlink()
    with pytest.raises(DataError, match=message):
        load_dataset(osu_copy)


def test_bad_vocab_reported_as_data_error(osu_copy):
    edit_json(osu_copy / "vocab.json", lambda o: o.__setitem__("<masque>", o.pop("<mask>")))
    with pytest.raises(DataError, match=r"vocab.json: missing required token '<mask>'"):
        load_dataset(osu_copy)


def test_missing_directory(tmp_path):
    with pytest.raises(DataError, match="data directory not found"):
        load_dataset(tmp_path / "nope")


def test_cache_used_then_invalidated_on_change(osu_copy, monkeypatch):
    first = load_dataset(osu_copy)
    assert list((osu_copy / ".jepa_cache").glob("*.npz")), "cache written beside writable data"
    calls = []
    real_parse = data_mod._parse_dir
    monkeypatch.setattr(data_mod, "_parse_dir", lambda *a: calls.append(1) or real_parse(*a))
    again = load_dataset(osu_copy)
    assert calls == [] and torch.equal(again.train.ids, first.train.ids)
    assert all(torch.equal(again.valid[s].types, first.valid[s].types) for s in first.valid)
    # change one id in train.json: the cache must not serve the old tensors
    edit_json(osu_copy / "train.json", lambda o: o[0]["target_text"][0].__setitem__(0, 14559))
    changed = load_dataset(osu_copy)
    assert calls == [1] and changed.train.ids[0, 4] == 14559 and changed.fingerprint != first.fingerprint


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def assert_loads_as_parsed(root, monkeypatch):
    """Loading ``root`` gives what a fresh parse of its JSON gives, and leaves a cache that the next
    load uses (the miss was rewritten, whole: no temp file left beside it)."""
    fresh = load_dataset(root, cache=False)
    ds = load_dataset(root)
    for a, b in [(ds.train, fresh.train), *((ds.valid[s], fresh.valid[s]) for s in SPLITS)]:
        assert a.ids.dtype == torch.long and a.types.dtype == torch.int8
        assert torch.equal(a.ids, b.ids) and torch.equal(a.types, b.types)
    assert ds.patch_len == fresh.patch_len
    monkeypatch.setattr(data_mod, "_parse_dir", lambda *a: pytest.fail("the rewritten cache was not used"))
    assert torch.equal(load_dataset(root).train.ids, fresh.train.ids)
    assert [p.name for p in (root / ".jepa_cache").iterdir()] == [f"{ds.fingerprint}.npz"]


def cache_file(root):
    (path,) = (root / ".jepa_cache").glob("*.npz")
    return path


def test_a_cache_of_other_data_copied_over_ours_is_a_miss(osu_copy, tmp_path, monkeypatch):
    """The cache's name is the fingerprint of the three files; what it holds must be theirs too."""
    other = tmp_path / "other"
    shutil.copytree(osu_copy, other)
    edit_json(other / "train.json", lambda o: o.reverse())
    theirs, ours = load_dataset(other), load_dataset(osu_copy)
    assert not torch.equal(theirs.train.ids, ours.train.ids)
    shutil.copyfile(cache_file(other), cache_file(osu_copy))  # a valid cache, of other content, under our name
    assert_loads_as_parsed(osu_copy, monkeypatch)


def npy_bytes(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def npz_with(z, **changes) -> bytes:
    """The arrays ``z`` of a good cache with some replaced (None: left out)."""
    return npz_bytes(**{k: v for k, v in {**z, **changes}.items() if v is not None})


# name: (bytes of a good cache, its arrays) -> bytes of a cache that must be a miss
BROKEN_CACHES = {
    "truncated": lambda b, z: b[: len(b) // 2],
    "tail cut": lambda b, z: b[:-10],  # a zip's directory is at its end
    "zero bytes": lambda b, z: b"",
    "garbage": lambda b, z: b"garbage",
    "a flipped byte": lambda b, z: b[: len(b) // 2] + bytes([b[len(b) // 2] ^ 0xFF]) + b[len(b) // 2 + 1:],  # bad CRC
    "a .npy": lambda b, z: npy_bytes(z["train_ids"]),
    "pickled array": lambda b, z: npz_with(z, train_ids=np.array([None, 1], dtype=object)),
    "array missing": lambda b, z: npz_with(z, valid_test_ids=None),
    "ids float": lambda b, z: npz_with(z, train_ids=z["train_ids"].astype(np.float32)),
    "ids int32": lambda b, z: npz_with(z, valid_atomic_ids=z["valid_atomic_ids"].astype(np.int32)),
    "ids a column short": lambda b, z: npz_with(z, valid_test_ids=z["valid_test_ids"][:, :-1]),
    "ids flat": lambda b, z: npz_with(z, train_ids=z["train_ids"].ravel()),
    "types int64": lambda b, z: npz_with(z, train_types=z["train_types"].astype(np.int64)),
    "types shorter than ids": lambda b, z: npz_with(z, valid_train_types=z["valid_train_types"][:3]),
}


@pytest.mark.parametrize("case", sorted(BROKEN_CACHES))
def test_an_unreadable_cache_is_a_miss(osu_copy, monkeypatch, case):
    load_dataset(osu_copy)
    path = cache_file(osu_copy)
    with np.load(path) as z:
        arrays = dict(z)
    path.write_bytes(BROKEN_CACHES[case](path.read_bytes(), arrays))
    assert_loads_as_parsed(osu_copy, monkeypatch)


def test_entities_are_distinct_name_pairs(osu_dir):
    ds = load_dataset(osu_dir)
    ents = ds.entities()
    expected = set()
    for split in [ds.train, *ds.valid.values()]:
        for row in split.ids.tolist():
            expected.add(tuple(row[:2]))
            expected.add(tuple(row[4:]))
    assert set(map(tuple, ents.tolist())) == expected and len(ents) == len(expected)


def test_a_json_boolean_is_not_a_token_id(osu_copy):
    items = json.loads((osu_copy / "train.json").read_text())
    items[3]["target_text"][0][1] = True  # numpy alone would read it as id 1
    (osu_copy / "train.json").write_text(json.dumps(items))
    with pytest.raises(DataError, match=r"train.json: item 3 has a target patch that is not a list of integer ids"):
        load_dataset(osu_copy)


def test_a_data_file_that_is_not_utf8_is_named(osu_copy):
    (osu_copy / "valid.json").write_bytes(b'{"caf\xe9": []}')
    with pytest.raises(DataError, match=r"valid.json: not UTF-8 text \(invalid continuation byte\)"):
        load_dataset(osu_copy)


# -- one token per entity (the abstract setting) ----------------------------------------------

ABSTRACT = Path(__file__).parent / "fixtures" / "binding_abstract"


@pytest.fixture
def abstract_copy(tmp_path) -> Path:
    """A writable copy of the abstract-setting fixture (loading writes a cache beside the data)."""
    dst = tmp_path / "abstract"
    dst.mkdir()
    for name in ("vocab.json", "train.json", "valid.json"):
        shutil.copyfile(ABSTRACT / name, dst / name)
    return dst


def test_the_binding_papers_abstract_files_load_unchanged(abstract_copy):
    """Files in the format of the paper's abstract setting (tests/fixtures/binding_abstract/make.py):
    <s_i>/<t_j> entity tokens, no <PRED>, one-token patches."""
    before = {name: (abstract_copy / name).read_bytes() for name in ("vocab.json", "train.json", "valid.json")}
    ds = load_dataset(abstract_copy)
    items = json.loads(before["train.json"])
    assert ds.patch_len == ds.entity_tokens == 1 and ds.train.ids.shape == (78, 4)
    assert ds.train.ids.tolist() == [it["input_text"][0] + it["input_text"][1] + it["input_text"][2] + it["target_text"][0]
                                     for it in items]
    assert ds.train.types.tolist() == [0] * 60 + [1] * 18
    assert {k: len(v) for k, v in ds.valid.items()} == {"train": 10, "atomic": 10, "test": 10}
    v = ds.vocab
    assert v.pred_appended and len(v) == 31 and v.tokens[-2:] == ["<pad>", "<PRED>"] and v.mask_id == 16
    assert v.decode(ds.train.ids[0]) == ["<s_2>", "<r_0>", "<mask>", "<s_1>"]
    ents = ds.entities()
    assert ents.shape == (16, 1) and sorted(v.decode(ents[:, 0])) == sorted(
        [f"<s_{i}>" for i in range(10)] + [f"<t_{j}>" for j in range(6)])
    assert v.is_name.nonzero().flatten().tolist() == list(range(16))
    summary = ds.summary()
    assert summary["leakage_problems"] == [] and summary["warnings"] == []
    assert summary["entity_tokens"] == 1 and summary["entities"] == 16
    assert {name: (abstract_copy / name).read_bytes() for name in before} == before


def test_an_abstract_dataset_round_trips_through_the_cache(abstract_copy, monkeypatch):
    assert_loads_as_parsed(abstract_copy, monkeypatch)
    # a cache whose splits disagree on the row length (4 and 6) is not one a parse gives: a miss
    path = cache_file(abstract_copy)
    with np.load(path) as z:
        arrays = dict(z)
    wide = np.concatenate([arrays["valid_test_ids"][:, :1], arrays["valid_test_ids"], arrays["valid_test_ids"][:, -1:]], 1)
    path.write_bytes(npz_with(arrays, valid_test_ids=wide))
    monkeypatch.undo()
    assert_loads_as_parsed(abstract_copy, monkeypatch)


ABSTRACT_BAD_CASES = {
    "two-token head": ("train.json", lambda o: o[3]["input_text"][0].append(4),
                       r"train.json: item 3 has a head of 2 tokens, expected 1"),
    "two-token target in valid": ("valid.json", lambda o: o["test"][2]["target_text"][0].append(4),
                                  r"valid.json: split 'test': item 2 has a target of 2 tokens, expected 1"),
    "three-token entities": ("train.json", lambda o: [it[k][0].extend([4, 5]) for it in o for k in ("input_text", "target_text")],
                             r"train.json: item 0 has a head of 3 tokens, expected 1 \(one token per entity\) or 2"),
    "empty head": ("train.json", lambda o: o[0]["input_text"][0].clear(), r"train.json: item 0 has a head of 0 tokens"),
    "mask as entity": ("train.json", lambda o: o[5]["target_text"][0].__setitem__(0, 16),
                       r"train.json: item 5 has '<mask>' \(id 16\) in an entity slot, expected a name token"),
    "pad in mask slot": ("valid.json", lambda o: o["atomic"][1]["input_text"][2].__setitem__(0, 29),
                         r"valid.json: split 'atomic': item 1 has '<pad>' \(id 29\) in the mask slot"),
}


@pytest.mark.parametrize("case", sorted(ABSTRACT_BAD_CASES))
def test_malformed_abstract_input_named_precisely(abstract_copy, case):
    name, fn, message = ABSTRACT_BAD_CASES[case]
    edit_json(abstract_copy / name, fn)
    with pytest.raises(DataError, match=message):
        load_dataset(abstract_copy)


def test_leakage_guard_on_one_token_rows(abstract_copy):
    """The three ways a held-out fact can reach training, each found on [h, r, <mask>, t] rows."""
    ds = load_dataset(abstract_copy)
    v, test = ds.vocab, ds.valid["test"].ids
    assert data_mod.leakage_problems(ds.train.ids, ds.train.types, test, v) == []
    # (1) a test item among the training rows, as an atomic item; (3) it and the atomic item it
    # reverses are each the reverse of an atomic row
    ids = torch.cat([ds.train.ids, test[4:5]])
    types = torch.cat([ds.train.types, torch.tensor([TYPE_CODES["atomic"]], dtype=torch.int8)])
    problems = data_mod.leakage_problems(ids, types, test, v)
    j = data_mod.first_match(reverse_view(test[4:5], v)[0], ds.train.ids)
    shown, other = " ".join(v.decode(test[4])), " ".join(v.decode(ds.train.ids[j]))
    assert problems == [f"valid.json test item 4 appears in train.json (item 78: {shown})",
                        f"train.json: item {j} ({other}) is the reverse view of atomic item 78: "
                        "the held-out direction of an atomic fact",
                        f"train.json: item 78 ({shown}) is the reverse view of atomic item {j}: "
                        "the held-out direction of an atomic fact"]
    # (2) an atomic fact relabelled "train": the JEPA objective would feed its reverse, a test item
    types = ds.train.types.clone()
    k = data_mod.first_match(reverse_view(test[7:8], v)[0], ds.train.ids)
    types[k] = TYPE_CODES["train"]
    problems = data_mod.leakage_problems(ds.train.ids, types, test, v)
    assert len(problems) == 1 and problems[0].startswith(f"valid.json test item 7 is the reverse view of 'train' item {k} ")
    assert k >= 60  # it was an atomic row
