import json

import pytest
import torch

from jepa_kit import data as data_mod
from jepa_kit.data import DataError, load_dataset


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


def test_corrupt_cache_is_a_miss(osu_copy):
    ds = load_dataset(osu_copy)
    for p in (osu_copy / ".jepa_cache").glob("*.npz"):
        p.write_bytes(b"garbage")
    assert torch.equal(load_dataset(osu_copy).train.ids, ds.train.ids)


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
