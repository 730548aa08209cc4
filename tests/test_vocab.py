import json

import pytest
import torch

from jepa_kit.vocab import Vocab, VocabError


def write_vocab(tmp_path, mapping_text):
    p = tmp_path / "vocab.json"
    p.write_text(mapping_text if isinstance(mapping_text, str) else json.dumps(mapping_text))
    return p


def small_mapping():
    toks = ["<f_0>", "<l_0>", "<f_1>", "<l_1>", "<mask>", "<r_0>", "<r_0_inv>", "<r_1>", "<r_1_inv>", "<pad>", "<PRED>"]
    return {t: i for i, t in enumerate(toks)}


def test_real_vocab_layout(osu_dir):
    v = Vocab.load(osu_dir / "vocab.json")
    assert len(v) == 16015 and not v.pred_appended
    assert (v.mask_id, v.pad_id, v.pred_id) == (16000, 16013, 16014)
    assert v.forward_relation_ids.tolist() == [16001, 16003, 16005, 16007, 16009, 16011]
    for i in range(6):
        f, r = v[f"<r_{i}>"], v[f"<r_{i}_inv>"]
        assert v.inverse[f] == r and v.inverse[r] == f
    assert (v.inverse[:16000] == -1).all() and v.inverse[v.mask_id] == -1
    assert len(v.first_name_ids) == len(v.last_name_ids) == 8000
    assert v.is_name[:16000].all() and not v.is_name[16000:].any()


def test_inverse_comes_from_names_not_parity(tmp_path):
    # relations deliberately laid out so that parity would pair the wrong tokens
    toks = ["<f_0>", "<l_0>", "<mask>", "<r_0>", "<r_1>", "<r_1_inv>", "<r_0_inv>", "<pad>"]
    v = Vocab.load(write_vocab(tmp_path, {t: i for i, t in enumerate(toks)}))
    assert v.inverse[v["<r_0>"]] == v["<r_0_inv>"] and v.inverse[v["<r_1>"]] == v["<r_1_inv>"]
    assert v.pred_appended and v.pred_id == len(toks) and len(v) == len(toks) + 1


def test_pred_appended_when_missing(tmp_path):
    m = small_mapping()
    del m["<PRED>"]
    v = Vocab.load(write_vocab(tmp_path, m))
    assert v.pred_appended and v.tokens[-1] == "<PRED>" and len(v) == len(m) + 1


@pytest.mark.parametrize("mutate, message", [
    (lambda m: m.update({"<l_1>": 0}), "duplicate id 0"),
    (lambda m: m.update({"<PRED>": 99}), "id 10 is missing"),
    (lambda m: [m.pop("<r_1_inv>"), m.update({"<pad>": 8, "<PRED>": 9})], "<r_1> has no counterpart <r_1_inv>"),
    (lambda m: [m.pop("<mask>"), m.update({"<x>": 4})], "missing required token '<mask>'"),
    (lambda m: m.update({"<f_0>": -3}), "expected a non-negative integer"),
])
def test_bad_vocab_is_rejected(tmp_path, mutate, message):
    m = small_mapping()
    mutate(m)
    with pytest.raises(VocabError, match=message) as e:
        Vocab.load(write_vocab(tmp_path, m))
    assert "vocab.json" in str(e.value)


def test_duplicate_token_key_rejected(tmp_path):
    p = write_vocab(tmp_path, '{"<mask>": 0, "<pad>": 1, "<r_0>": 2, "<r_0_inv>": 3, "<mask>": 4}')
    with pytest.raises(VocabError, match="'<mask>' appears twice"):
        Vocab.load(p)


def test_malformed_vocab_json(tmp_path):
    with pytest.raises(VocabError, match="not valid JSON"):
        Vocab.load(write_vocab(tmp_path, '{"<mask>": 0, '))
    with pytest.raises(VocabError, match="expected a JSON object"):
        Vocab.load(write_vocab(tmp_path, "[1, 2]"))


def test_build_matches_user_layout():
    v = Vocab.build(8000, 8000, 6)
    assert len(v) == 16015 and v.mask_id == 16000 and v.pad_id == 16013 and v.pred_id == 16014
    assert v["<r_2_inv>"] == 16006
    assert v.is_relation(torch.tensor([16001, 16012, 16000, -5, 99999])).tolist() == [True, True, False, False, False]


def test_single_token_entity_names():
    """The binding paper's abstract setting names set A's entities <s_i> and set B's <t_j>; <e_i> is
    accepted too. They are entity tokens; tokens that merely look alike are not."""
    toks = ["<t_0>", "<s_1>", "<e_2>", "<s_1_0>", "<x_3>", "<mask>", "<r_0>", "<r_0_inv>", "<pad>"]
    v = Vocab(toks)
    assert v.entity_token_ids.tolist() == [0, 1, 2]
    assert v.is_name.tolist() == [True, True, True, False, False, False, False, False, False, False]
    assert len(v.first_name_ids) == len(v.last_name_ids) == 0 and v.pred_appended
