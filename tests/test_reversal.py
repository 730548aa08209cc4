import json

import pytest
import torch

from jepa_kit.reversal import patch_len_of, reverse_view
from jepa_kit.vocab import Vocab


@pytest.fixture(scope="module")
def vocab(osu_dir):
    return Vocab.load(osu_dir)


def fixture_rows(osu_dir) -> torch.Tensor:
    items = json.loads((osu_dir / "train.json").read_text())
    rows = [sum(item["input_text"], []) + item["target_text"][0] for item in items]
    return torch.tensor(rows)


def test_every_relation_maps_to_its_named_inverse(vocab):
    n = vocab.n_relation_pairs
    assert n == 6
    for i in range(n):
        for rel, inv in ((f"<r_{i}>", f"<r_{i}_inv>"), (f"<r_{i}_inv>", f"<r_{i}>")):
            row = torch.tensor([[vocab["<f_1>"], vocab["<l_2>"], vocab[rel], vocab.mask_id, vocab["<f_3>"], vocab["<l_4>"]]])
            out = reverse_view(row, vocab)
            assert vocab.decode(out[0]) == ["<f_3>", "<l_4>", inv, "<mask>", "<f_1>", "<l_2>"]


def test_real_items_reverse_and_back(osu_dir, vocab):
    ids = fixture_rows(osu_dir)
    rev = reverse_view(ids, vocab)
    assert torch.equal(rev[:, :2], ids[:, 4:]) and torch.equal(rev[:, 4:], ids[:, :2])
    assert torch.equal(rev[:, 3], ids[:, 3])
    assert torch.equal(rev[:, 2], vocab.inverse[ids[:, 2]])
    assert not torch.equal(rev[:, 2], ids[:, 2])
    assert torch.equal(reverse_view(rev, vocab), ids)


def test_inverse_tensor_accepted_in_place_of_vocab(osu_dir, vocab):
    ids = fixture_rows(osu_dir)
    assert torch.equal(reverse_view(ids, vocab.inverse), reverse_view(ids, vocab))


def test_rejects_a_non_relation_in_the_relation_slot(osu_dir, vocab):
    ids = fixture_rows(osu_dir)
    ids[7, 2] = vocab["<f_5>"]
    with pytest.raises(ValueError, match=r"row 7 has <f_5>.*relation slot"):
        reverse_view(ids, vocab)
    with pytest.raises(ValueError, match="row 7"):
        reverse_view(ids, vocab.inverse)
    ids[7, 2] = len(vocab) + 3  # outside the vocabulary
    with pytest.raises(ValueError, match="row 7"):
        reverse_view(ids, vocab)


def test_rejects_a_wrong_mask_slot(osu_dir, vocab):
    ids = fixture_rows(osu_dir)
    ids[3, 3] = vocab.pad_id
    with pytest.raises(ValueError, match=r"row 3 .*<pad>.*<mask> slot"):
        reverse_view(ids, vocab)


def test_single_token_entities():
    tokens = [f"<e_{i}>" for i in range(5)] + ["<mask>", "<r_0>", "<r_0_inv>", "<r_1>", "<r_1_inv>", "<pad>"]
    v = Vocab(tokens)
    ids = torch.tensor([[v["<e_0>"], v["<r_1>"], v.mask_id, v["<e_4>"]],
                        [v["<e_2>"], v["<r_0_inv>"], v.mask_id, v["<e_3>"]]])
    out = reverse_view(ids, v)
    assert v.decode(out[0]) == ["<e_4>", "<r_1_inv>", "<mask>", "<e_0>"]
    assert v.decode(out[1]) == ["<e_3>", "<r_0>", "<mask>", "<e_2>"]
    assert torch.equal(reverse_view(out, v), ids)


def test_patch_len_and_bad_shapes(vocab):
    assert patch_len_of(6) == 2 and patch_len_of(4) == 1
    with pytest.raises(ValueError, match="5 tokens"):
        reverse_view(torch.zeros(2, 5, dtype=torch.long), vocab)
    with pytest.raises(ValueError, match=r"\[N, L\]"):
        reverse_view(torch.zeros(6, dtype=torch.long), vocab)
