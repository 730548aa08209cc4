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
    assert any("does not beat the baseline" in s for s in lines)
    assert not any(s.startswith("WARNING") for s in lines)


def test_verdict_warns_when_the_baseline_did_not_learn_its_facts_and_reports_a_win():
    rows = demo.demo_table(pd.DataFrame([row("ntp", 0.50, 0.0, 0.01), row("jepa", 0.99, 0.30, 0.40)]))
    lines = demo.verdict(rows, 600)
    assert lines[0].startswith("WARNING: the baseline's forward exact match is 0.500")
    assert any("JEPA beats the baseline on reversal" in s for s in lines)


def test_chance_level():
    assert chance_entity_mrr(1) == 1.0
    assert abs(chance_entity_mrr(600) - 0.0117) < 1e-4
