"""benchmarks/jepa_views.py: the JEPA predictor against the reverse views of a split, ranked as the kit ranks."""

import pytest
import torch

from conftest import load_benchmark, train_tiny_abstract_runs


def _script():
    return load_benchmark("jepa_views")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return train_tiny_abstract_runs(tmp_path_factory.mktemp("jepa_views"), {"jepa": {"jepa_metric": "infonce"}, "ntp": {}})


def test_ranks_count_higher_candidates_and_half_the_ties():
    script = _script()
    target = torch.eye(4)
    assert script.retrieval_ranks(target.clone(), target).tolist() == [1, 1, 1, 1]
    same = torch.ones(4, 3)  # every candidate ties with the item's own target: 1 + 3 / 2
    assert script.retrieval_ranks(same, same).tolist() == [2.5] * 4
    pred = torch.tensor([[0.5, 1.0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    assert script.retrieval_ranks(pred, target).tolist() == [2, 1, 1, 1]  # item 0 points at item 1's target
    exclude = torch.zeros(4, 4, dtype=torch.bool)
    exclude[0, 1] = True  # the candidate it prefers is left out (a reverse partner on train)
    assert script.retrieval_ranks(pred, target, exclude).tolist() == [1, 1, 1, 1]


def test_chance_is_the_mean_reciprocal_of_a_uniform_rank():
    script = _script()
    assert script.chance_mrr(torch.tensor([1])) == 1.0
    assert script.chance_mrr(torch.tensor([2])) == pytest.approx(0.75)
    assert script.chance_mrr(torch.tensor([1, 2])) == pytest.approx(0.875)
    assert script.chance_mrr(torch.tensor([1000])) == pytest.approx(sum(1 / k for k in range(1, 1001)) / 1000)


def test_the_views_are_the_jepa_terms_own_pred_and_target(runs):
    """On train rows the script's views are what the model's JEPA term compares (the training code
    path, eval mode), and atomic rows get theirs the same way."""
    from jepa_kit.data import load_dataset
    from jepa_kit.rundir import load_run

    script = _script()
    model, config = load_run(runs["jepa"])
    ids = load_dataset(config.data).valid["atomic"].ids
    pred, target = script.views(model, ids, batch_size=5)  # batching changes nothing
    with torch.inference_mode():
        out = model(ids, torch.zeros(len(ids), dtype=torch.long), return_jepa_outputs=True)
    assert pred.shape == target.shape == (len(ids), 32)
    torch.testing.assert_close(pred, out["pred"].float())
    torch.testing.assert_close(target, out["target"].float())
    assert not model.training


def test_the_table_has_a_row_per_split_and_refuses_a_run_without_jepa(runs, capsys):
    script = _script()
    script.main([str(runs["jepa"])])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert lines[0] == script.HEADER and len(lines) == 4
    for line, split in zip(lines[1:], ("train", "atomic", "atomic, tails rotated")):
        cells = [c.strip() for c in line.split("|")[1:-1]]
        assert cells[:4] == [runs["jepa"].name, "8", split, "24"]
        cosine, mrr, rank1, chance = map(float, cells[4:])
        assert -1 <= cosine <= 1 and 0 <= rank1 <= mrr <= 1
        uniform = sum(1 / k for k in range(1, 25)) / 24  # 24 candidates; on train fewer where a partner is left out
        assert chance == pytest.approx(uniform, abs=6e-5) if split != "train" else chance >= uniform - 6e-5
    with pytest.raises(SystemExit, match=r"^jepa_views: the run has no JEPA term"):
        script.main([str(runs["ntp"])])


def test_the_control_rows_keep_heads_and_relations_and_take_another_rows_tail(tiny_data):
    """Two name tokens per entity: row i keeps its head and relation and gets row i + N/2's tail."""
    from jepa_kit.data import load_dataset

    ids = load_dataset(tiny_data).valid["atomic"].ids
    rotated = _script().rotate_tails(ids)
    n, p = len(ids), (ids.shape[1] - 2) // 2
    assert p == 2 and rotated.shape == ids.shape
    assert torch.equal(rotated[:, :-p], ids[:, :-p])
    assert torch.equal(rotated[:, -p:], ids[[(i + n // 2) % n for i in range(n)], -p:])
    assert (rotated != ids).any(1).float().mean() > 0.9  # almost every row is a pair the data does not hold


def test_a_missing_split_and_a_folder_that_is_not_a_run_are_one_line(runs, tmp_path):
    script = _script()
    with pytest.raises(SystemExit, match="no split 'nope'"):
        script.rows(runs["jepa"], splits=("nope",))
    with pytest.raises(SystemExit, match=r"^jepa_views: .*not a run directory \(no config.json\)$"):
        script.main([str(tmp_path)])
