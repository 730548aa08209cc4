"""The study table: grouping, the plain-language findings, and the README kept equal to the committed CSV."""
import pytest

from conftest import ROOT
from jepa_kit import study


def rec(objective, seed, test_em, atomic_em=1.0, mrr=0.01, cos=None, **factors):
    defaults = study._defaults()
    config = {"objective": objective, "seed": seed, **defaults, **factors}
    return {"setting": study.setting_of(config, defaults), "atomic.exact_match": atomic_em,
            "test.exact_match": test_em, "test.entity_mrr": mrr, "jepa.pred_cos_between_items": cos}


def test_settings_and_means():
    rows = [rec("ntp", s, 0.0) for s in range(3)] + [rec("jepa", s, 0.01 * s, cos=0.99) for s in range(3)] \
        + [rec("jepa", s, 0.0, k_pred=4) for s in range(3)] + [rec("reverse_aug", 0, 0.98)]
    summary = study.summary_rows(rows)
    assert [r["setting"] for r in summary] == ["ntp (baseline)", "jepa default", "jepa k_pred=4",
                                               "reverse_aug (trains on test facts)"]
    default = summary[1]
    assert default["n"] == 3 and default["test.exact_match"] == pytest.approx((0.01, 0.01))
    text = study.render(rows)
    assert "| jepa default | 3 | 1.000 ± 0.000 | 0.010 ± 0.010 |" in text
    assert "No JEPA setting beats the baseline" in text and "collapse" in text


def test_a_real_improvement_is_reported():
    rows = [rec("ntp", s, 0.0) for s in range(3)] + [rec("jepa", s, 0.30 + 0.01 * s, lambda_jepa=4.0) for s in range(3)]
    text = study.render(rows)
    assert "beat the baseline on reversal beyond seed noise: jepa lambda_jepa=4" in text
    assert "No JEPA setting" not in text


def test_beats_is_welchs_test_over_seeds():
    base = [rec("ntp", s, 0.01 * s) for s in range(3)]  # 0.00, 0.01, 0.02
    # a lead of 0.019 with seed std 0.01 on both sides: Welch t = 2.33 on 4 df, one-sided p = 0.04
    rows = base + [rec("jepa", s, 0.019 + 0.01 * s, k_pred=2) for s in range(3)]
    assert "beat the baseline on reversal beyond seed noise: jepa k_pred=2." in study.render(rows)
    # a lead of 0.015: p = 0.07, within seed noise
    rows = base + [rec("jepa", s, 0.015 + 0.01 * s, k_pred=2) for s in range(3)]
    assert "No JEPA setting beats the baseline" in study.render(rows)
    # one seed: neither a win nor a loss
    text = study.render(base + [rec("jepa", 0, 0.5, k_pred=4)])
    assert "No JEPA setting beats the baseline" in text and "- Cannot tell (one seed on a side): jepa k_pred=4." in text
    assert "| jepa k_pred=4 | 1 | 1.000 ± – | 0.500 ± – |" in text


def test_readme_results_match_committed_csv():
    csv = ROOT / "papermill_runs" / "results" / "study.csv"
    assert csv.exists(), "the committed study table is missing: run `jepa-kit study ... --readme README.md`"
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(study.README_BEGIN):readme.index(study.README_END) + len(study.README_END)]
    expected = study.readme_block(csv, "papermill_runs/results/study.csv", study.readme_source(readme))
    assert block == expected, "README results differ from papermill_runs/results/study.csv: rerun `jepa-kit study`"
    assert (ROOT / "papermill_runs" / "results" / "study.md").read_text().strip() == study.render(study.read_csv(csv))


def test_committed_csv_is_computed_from_the_committed_runs():
    """papermill_runs/results/study_runs holds each run's config, metrics and results (no checkpoints)."""
    folder = ROOT / "papermill_runs" / "results" / "study_runs"
    rows = {r["run"]: r for r in study.run_rows(folder)}
    committed = study.read_csv(ROOT / "papermill_runs" / "results" / "study.csv")
    assert len(committed) == len(rows) >= 42
    for r in committed:
        fresh = rows[r["run"]]
        assert fresh["setting"] == r["setting"]
        for col in ("atomic.exact_match", "test.exact_match", "test.entity_mrr"):
            assert fresh[col] == pytest.approx(r[col]), (r["run"], col)


def test_readme_demo_table_is_the_committed_demo_output():
    """The README shows the table a measured `make demo` wrote (papermill_runs/results/demo_results.md)."""
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("<!-- demo:begin -->"):readme.index("<!-- demo:end -->")]
    shown = block.split("```\n", 2)[1]
    assert shown == (ROOT / "papermill_runs" / "results" / "demo_results.md").read_text()


def test_concept_runs_enter_the_study_without_token_metrics(tmp_path):
    import json

    for name, objective, results in (
            ("ntp", "ntp", {"atomic": {"exact_match": 1.0, "entity_mrr": 1.0}, "test": {"exact_match": 0.0, "entity_mrr": 0.01}}),
            ("concept", "concept", {"atomic": {"concept_mrr": 0.9, "n": 5}, "test": {"concept_mrr": 0.4, "n": 5}})):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"config": {"objective": objective, "seed": 0, **study._defaults()}}))
        (d / "status.json").write_text(json.dumps({"state": "finished", "step": 10}))
        (d / "results.json").write_text(json.dumps(results))
    rows = {r["run"]: r for r in study.run_rows(tmp_path)}
    c = rows["concept"]
    assert c["setting"] == "concept default" and c["test.concept_mrr"] == 0.4 and c["test.mrr"] == 0.4
    assert c["test.exact_match"] is None and c["test.entity_mrr"] is None
    assert rows["ntp"]["test.mrr"] == 0.01 and rows["ntp"]["test.concept_mrr"] is None
    text = study.render(list(rows.values()))
    assert "| concept default | 1 | – | – | – | – |" in text
    assert "- concept default (the binding paper's concept-level JEPA, a positive control): reverse concept MRR " \
           "0.400 ± –, forward 0.900 ± –." in text
