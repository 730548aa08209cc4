"""benchmarks/reverse_ranks.py: the per-query rank distribution agrees with the run's own final metrics."""
import json

import pytest

from conftest import load_benchmark, train_tiny_abstract_runs


def _script():
    return load_benchmark("reverse_ranks")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folders = train_tiny_abstract_runs(tmp_path_factory.mktemp("reverse_ranks"),
                                       {"ntp": {}, "concept": {"n_recognition": 1, "best_metric": "concept_mrr"}})
    return {"ntp": (folders["ntp"], "entity_mrr"), "concept": (folders["concept"], "concept_mrr")}


def test_the_rank_table_matches_each_runs_final_evaluation(runs, capsys):
    """Every query of the test split, ranked at the last checkpoint: MRR and mean rank are the final
    evaluation's (results.json), for a token-level run (entity rank) and a concept run (concept rank)."""
    script = _script()
    script.main([str(runs["ntp"][0]), str(runs["concept"][0])])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert lines[0] == script.HEADER and len(lines) == 3
    for line, (run, metric) in zip(lines[1:], runs.values()):
        cells = [c.strip() for c in line.split("|")[1:-1]]
        results = json.loads((run / "results.json").read_text())["test"]
        rank_key = "entity_rank_mean" if metric == "entity_mrr" else "concept_rank_mean"
        assert cells[0] == run.name and cells[1] == "8" and int(cells[2]) == results["n"] == 24
        assert cells[3] == f"{results[metric]:.3f}" and cells[4] == f"{results[rank_key]:.1f}"
        hits1, top10, beyond10, beyond100 = map(float, cells[6:10])
        assert 0 <= hits1 <= top10 <= 1 and top10 + beyond10 == pytest.approx(1) and beyond100 <= beyond10
        assert float(cells[10]) >= float(cells[5]) >= 1  # worst >= median


def test_per_query_ranks_give_the_reported_mrr(runs):
    script = _script()
    run, metric = runs["concept"]
    r, step = script.ranks(run)
    results = json.loads((run / "results.json").read_text())["test"]
    assert step == 8 and len(r) == results["n"]
    assert float((1 / r).mean()) == pytest.approx(results[metric], abs=1e-6)


def test_a_missing_split_is_a_clear_error(runs):
    with pytest.raises(SystemExit, match="no split 'nope'"):
        _script().ranks(runs["ntp"][0], split="nope")


def test_a_folder_that_is_not_a_run_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit, match=r"^reverse_ranks: .*not a run directory \(no config.json\)$"):
        _script().main([str(tmp_path)])
