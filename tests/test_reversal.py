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


def abstract_rows():
    """Rows of the abstract-setting fixture (binding paper's format): [h, r, <mask>, t]."""
    from pathlib import Path

    root = Path(__file__).parent / "fixtures" / "binding_abstract"
    v = Vocab.load(root)
    items = json.loads((root / "train.json").read_text())
    valid = json.loads((root / "valid.json").read_text())

    def rows(xs):
        return torch.tensor([sum(it["input_text"], []) + it["target_text"][0] for it in xs])

    return v, rows(items[:60]), rows(items[60:]), rows(valid["test"])


def test_one_token_rows_of_the_papers_abstract_format():
    v, train, atomic, test = abstract_rows()
    assert train.shape[1] == 4 and patch_len_of(train.shape[1]) == 1
    rev = reverse_view(train, v)
    assert torch.equal(rev[:, 0], train[:, 3]) and torch.equal(rev[:, 3], train[:, 0])
    assert torch.equal(rev[:, 1], v.inverse[train[:, 1]]) and (rev[:, 2] == v.mask_id).all()
    # the paper writes each train fact as two adjacent items, (a, r, b) then (b, r_inv, a)
    assert torch.equal(rev[0::2], train[1::2]) and torch.equal(rev[1::2], train[0::2])
    assert torch.equal(reverse_view(rev, v), train)
    # every held-out test item is the reverse view of an atomic item
    assert set(map(tuple, test.tolist())) <= set(map(tuple, reverse_view(atomic, v).tolist()))
    assert v.decode(reverse_view(train[:1], v)[0]) == ["<s_1>", "<r_0_inv>", "<mask>", "<s_2>"]


def test_only_rows_of_one_or_two_token_entities():
    for L in (2, 3, 5, 8):
        with pytest.raises(ValueError, match=f"4 \\(one token per entity\\) or 6 .* got rows of {L} tokens"):
            patch_len_of(L)
