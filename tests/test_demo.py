import pandas as pd

from jepa_kit import demo
from jepa_kit.evaluate import chance_entity_mrr


def row(objective, fwd, rev, mrr):
    return {"objective": objective, "state": "finished", "train.exact_match": 1.0, "atomic.exact_match": fwd,
            "test.exact_match": rev, "train.entity_mrr": 1.0, "atomic.entity_mrr": fwd, "test.entity_mrr": mrr}


def test_table_and_plain_verdict():
    table = pd.DataFrame([row("jepa", 0.99, 0.0, 0.011), row("ntp", 0.99, 0.0, 0.010), row("reverse_aug", 0.98, 0.97, 0.98)])
    rows = demo.demo_table(table)
    assert [r["objective"] for r in rows] == ["ntp (baseline)", "jepa", "reverse_aug (trains on test facts)"]
    text = demo.format_demo_table(rows)
    assert "reverse_aug (trains on test facts)" in text and "0.970" in text
    lines = demo.verdict(rows, 600)
    assert lines[0] == ("Reversal (test): jepa 0.000 vs baseline 0.000 exact match (+0.000); entity MRR 0.011 vs 0.010 "
                        "(+0.001); chance entity MRR over 600 entities is 0.012.")
    assert lines[1] == ("Does JEPA beat the baseline on reversal (Welch's t-test over seeds, one-sided, alpha 0.05)? "
                        "Cannot tell (one seed): the rule needs two or more seeds per objective; the ablation study runs three.")
    assert lines[2].startswith("reverse_aug trains on the test facts by design")


def test_one_seed_never_claims_a_win_and_a_baseline_that_did_not_learn_is_flagged():
    rows = demo.demo_table(pd.DataFrame([row("ntp", 0.50, 0.0, 0.01), row("jepa", 0.99, 0.30, 0.40)]))
    lines = demo.verdict(rows, 600)
    assert lines[0].startswith("WARNING: the baseline's forward exact match is 0.500")
    assert "(+0.300)" in lines[1]
    assert "Cannot tell (one seed)" in lines[2] and not any("JEPA beats" in s for s in lines)


def test_chance_level():
    assert chance_entity_mrr(1) == 1.0
    assert abs(chance_entity_mrr(600) - 0.0117) < 1e-4


def test_a_concept_run_shows_its_concept_mrr_and_no_exact_match():
    concept = {"objective": "concept", "state": "finished", "atomic.concept_mrr": 0.9, "test.concept_mrr": 0.4}
    rows = demo.demo_table(pd.DataFrame([row("ntp", 0.99, 0.0, 0.01), concept]))
    assert [r["objective"] for r in rows] == ["ntp (baseline)", "concept"]
    assert rows[1]["test.exact_match"] is None and rows[1]["test.concept_mrr"] == 0.4
    lines = demo.format_demo_table(rows).splitlines()
    assert "reverse concept MRR" in lines[0]
    assert lines[2].split()[-2:] == ["-", "-"] and lines[3].split()[-2:] == ["0.900", "0.400"]
    assert "concept MRR" not in demo.format_demo_table(rows[:1]), "no concept columns without a concept run"


def test_the_machine_line_names_where_the_runs_trained(tmp_path):
    import json
    for name, numerics in (("ntp", {"device": "cpu", "torch_threads": 2, "cpu_capability": "AVX2"}),
                           ("jepa", {"device": "cpu", "torch_threads": 2, "cpu_capability": "AVX2"}),
                           ("reverse_aug", {"device": "cpu", "torch_threads": 1, "cpu_capability": "AVX2"})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"numerics": numerics,
                                                                  "versions": {"torch": "2.13.0+cpu"}}))
    line = demo.machine_line(tmp_path)
    assert line.startswith("Trained on 2 CPU threads (AVX2), torch 2.13.0+cpu; 1 CPU thread (AVX2), torch 2.13.0+cpu.")
    assert "may change the last digit" in line
    (tmp_path / "cuda").mkdir()
    (tmp_path / "cuda" / "config.json").write_text(json.dumps({"numerics": {
        "device": "cuda", "torch_threads": 16, "cpu_capability": "AVX512", "cuda_device": "NVIDIA H100 80GB HBM3"},
        "versions": {"torch": "2.13.0"}}))
    assert "NVIDIA H100 80GB HBM3, torch 2.13.0" in demo.machine_line(tmp_path)
    assert demo.machine_line(tmp_path / "nothing") is None  # runs of an older kit recorded neither
