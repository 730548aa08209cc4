"""The positive-control tables (docs/controls.md, the experiments behind the README's "The answer so far")
are what the committed runs say; the runner names runs apart."""
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
_script = load_benchmark


def _docs() -> str:
    """Where the tables and verdicts are written: docs/controls.md (the README links to its sections)."""
    return (ROOT / "docs" / "controls.md").read_text()


@pytest.mark.parametrize("folder, runs, chance", [
    ("binding_controls_runs", 12, "chance MRR (600 entities, ties count half): 0.0116"),  # 6 settings x 2 seeds
    ("binding_scale_runs", 5, "chance MRR (8,000 entities, ties count half): 0.0012"),
    ("binding_scale_jepa_runs", 5, "chance MRR (8,000 entities, ties count half): 0.0012"),
    ("binding_controls_jepa_runs", 4, "chance MRR (600 entities, ties count half): 0.0116"),
    ("binding_mid_runs", 4, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_scale_data1_runs", 2, "chance MRR (8,000 entities, ties count half): 0.0012"),
    ("binding_scale_stopgrad_runs", 2, "chance MRR (8,000 entities, ties count half): 0.0012"),
    ("binding_scale_stopgrad_end_runs", 2, "chance MRR (8,000 entities, ties count half): 0.0012"),
    ("binding_scale_data1_stopgrad_runs", 2, "chance MRR (8,000 entities, ties count half): 0.0012"),
    ("binding_scale_data1_seed1_runs", 2, "chance MRR (8,000 entities, ties count half): 0.0012"),
    ("binding_scale_data1_seed2_runs", 2, "chance MRR (8,000 entities, ties count half): 0.0012"),
    ("binding_scale_data1_stopgrad_seed2_runs", 1, "chance MRR (8,000 entities, ties count half): 0.0012"),
    ("binding_scale_data1_end_runs", 2, "chance MRR (8,000 entities, ties count half): 0.0012"),
    ("binding_scale_data1_stopgrad_end_runs", 2, "chance MRR (8,000 entities, ties count half): 0.0012"),
    ("binding_scale_data1_stopgrad_seed2_end_runs", 1, "chance MRR (8,000 entities, ties count half): 0.0012"),
    ("binding_scale_data1_seed0_end_runs", 1, "chance MRR (8,000 entities, ties count half): 0.0012"),
    ("binding_scale_data1_60k_runs", 3, "chance MRR (8,000 entities, ties count half): 0.0012"),
    ("binding_scale_data1_stopgrad_60k_runs", 3, "chance MRR (8,000 entities, ties count half): 0.0012"),
    ("binding_midlarge_runs", 4, "chance MRR (4,800 entities, ties count half): 0.0019"),
    ("binding_midlarge_seeds_runs", 4, "chance MRR (4,800 entities, ties count half): 0.0019"),
    ("binding_midlarge_seeds_end_runs", 4, "chance MRR (4,800 entities, ties count half): 0.0019"),
    ("binding_midlarge_data1_runs", 2, "chance MRR (4,800 entities, ties count half): 0.0019"),
    ("binding_scale_surface_runs", 2, "chance MRR (8,000 entities, ties count half): 0.0012"),
    ("binding_scale_surface_width_runs", 1, "chance MRR (8,000 entities, ties count half): 0.0012"),
    ("binding_mid_surface_runs", 2, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_surface_jepa_runs", 2, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_surface_jepa_mask_runs", 2, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_abstract_jepa_mask_runs", 2, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_abstract_jepa_head_runs", 2, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_surface_jepa_head_runs", 2, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_surface_jepa_stopgrad_runs", 2, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_width_runs", 1, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_concept_width_runs", 4, "chance MRR (600 entities, ties count half): 0.0116"),
    ("binding_concept_steps_runs", 2, "chance MRR (600 entities, ties count half): 0.0116"),
    ("binding_concept_depth_runs", 2, "chance MRR (600 entities, ties count half): 0.0116"),
    ("binding_mid_concept_runs", 2, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_concept_steps_runs", 2, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_controls_paired_runs", 8, "chance MRR (600 entities, ties count half): 0.0116"),
    ("binding_mid_concept_long_runs", 1, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_controls_paired_embd0_runs", 6, "chance MRR (600 entities, ties count half): 0.0116"),
    ("binding_mid_equal_steps_runs", 2, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_ntp_seed1_runs", 1, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_surface_concept_long_runs", 1, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_surface_scale_runs", 2, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_surface_scale_seed1_runs", 1, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_surface_scale_long_runs", 1, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_abstract_scale_runs", 1, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_abstract_scale_long_runs", 1, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_abstract_scale_seed1_runs", 1, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_surface_scale_x80_runs", 1, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_abstract_scale_longer_runs", 1, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_abstract_scale_210k_runs", 1, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_surface_scale_between_runs", 2, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_abstract_scale_270k_runs", 1, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_surface_scale_x10_seed1_runs", 1, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_abstract_ntp_150k_runs", 1, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_abstract_ntp_210k_runs", 1, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_abstract_ntp_270k_runs", 1, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_abstract_scale_330k_runs", 1, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_abstract_ntp_330k_runs", 1, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_abstract_scale_seed1_150k_runs", 1, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_abstract_ntp_seed1_150k_runs", 1, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_abstract_scale_seed1_210k_runs", 1, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_abstract_ntp_seed1_210k_runs", 1, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_abstract_ntp_seed2_150k_runs", 1, "chance MRR (2,400 entities, ties count half): 0.0035"),
    ("binding_mid_abstract_scale_seed2_150k_runs", 1, "chance MRR (2,400 entities, ties count half): 0.0035"),
])
def test_the_readme_table_is_computed_from_the_committed_runs(capsys, folder, runs, chance):
    _script("binding_controls_table").main(str(ROOT / "papermill_runs" / "results" / folder))
    out = capsys.readouterr().out
    assert chance in out  # chance is the run's own data's entity count
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + runs
    docs = _docs()
    for row in rows:
        assert row in docs, row


@pytest.mark.parametrize("folders, steps, match, baseline, runs", [
    (("binding_scale_runs", "binding_scale_jepa_runs"), [10000, 20000, 30000, 40000, 50000, 60000], "",
     "small_abstract_ntp_weight_decay=0.1", 5 + 5),
    # the mark binding_scale_jepa.yaml chose for its predictions P2 and P4 before the runs they test ran
    (("binding_scale_runs", "binding_scale_jepa_runs"), [30000], "", "small_abstract_ntp_weight_decay=0.1", 5 + 5),
    (("binding_controls_runs", "binding_controls_jepa_runs"), [1000, 2000, 4000, 8000], "abstract_", "abstract_ntp",
     6 + 4),
    # step 10,000: the mark binding_mid.yaml chose for its predictions M2 and M3 before its runs started
    (("binding_mid_runs",), [5000, 10000, 20000, 30000], "", "mid_abstract_ntp", 4),
    # binding_mid_abstract_jepa_mask.yaml's prediction J11: the rule at step 30,000 against binding_mid.yaml's ntp
    (("binding_mid_runs", "binding_mid_abstract_jepa_mask_runs"), [5000, 10000, 20000, 30000], "", "mid_abstract_ntp",
     6),
    # binding_mid_abstract_jepa_head.yaml's predictions J18 and J19; its runs share the mask runs' names
    # and are a setting of their own (trained with another jepa_predictor)
    (("binding_mid_runs", "binding_mid_abstract_jepa_mask_runs", "binding_mid_abstract_jepa_head_runs"),
     [5000, 10000, 20000, 30000], "", "mid_abstract_ntp", 8),
    # binding_mid_abstract_jepa_stopgrad.yaml's predictions J22-J24, against ntp and against the mask-read runs
    (("binding_mid_runs", "binding_mid_abstract_jepa_mask_runs", "binding_mid_abstract_jepa_stopgrad_runs"),
     [5000, 10000, 20000, 30000], "", "mid_abstract_ntp", 8),
    (("binding_mid_abstract_jepa_mask_runs", "binding_mid_abstract_jepa_stopgrad_runs"), [30000], "",
     "mid_abstract_jepa", 4),
    # binding_mid_abstract_jepa_lambda.yaml's predictions J27 and J28, and the comparison with weight 1
    (("binding_mid_runs", "binding_mid_abstract_jepa_mask_runs", "binding_mid_abstract_jepa_lambda_runs"),
     [5000, 10000, 20000, 30000], "", "mid_abstract_ntp", 8),
    (("binding_mid_abstract_jepa_mask_runs", "binding_mid_abstract_jepa_lambda_runs"), [30000], "",
     "mid_abstract_jepa", 4),
    # binding_scale_data1.yaml's prediction D1 names these steps
    (("binding_scale_data1_runs",), [10000, 20000, 30000], "", "small_abstract_data1_ntp", 2),
    # step 10,000: the mark of binding_midlarge.yaml's predictions L2 and L3, chosen before its runs started
    (("binding_midlarge_runs",), [5000, 10000, 20000, 30000], "", "midlarge_abstract_ntp", 4),
    # binding_midlarge_seeds.yaml's prediction L5: four seeds each at step 10,000
    (("binding_midlarge_runs", "binding_midlarge_seeds_runs"), [5000, 10000], "", "midlarge_abstract_ntp", 8),
    # binding_midlarge_{stopgrad,lambda}.yaml's predictions L9, L13 and L14: four seeds each at step 10,000
    (("binding_midlarge_runs", "binding_midlarge_seeds_runs", "binding_midlarge_stopgrad_runs",
      "binding_midlarge_lambda_runs"), [5000, 10000], "", "midlarge_abstract_ntp", 16),
    # binding_midlarge_stopgrad_end.yaml's predictions L16 and L17: the detached seeds 0-1 at step 30,000
    (("binding_midlarge_runs", "binding_midlarge_seeds_end_runs", "binding_midlarge_stopgrad_end_runs"),
     [10000, 20000, 30000], "", "midlarge_abstract_ntp", 10),
    # binding_midlarge_stopgrad_seeds_end.yaml's predictions L19 and L20: four detached seeds at step 30,000
    (("binding_midlarge_runs", "binding_midlarge_seeds_end_runs", "binding_midlarge_stopgrad_end_runs",
      "binding_midlarge_stopgrad_seeds_end_runs"), [10000, 20000, 30000], "", "midlarge_abstract_ntp", 12),
    # binding_scale_stopgrad.yaml's predictions S2-S4: the detached runs at step 30,000, against ntp
    # and against the infonce runs without the detach
    (("binding_scale_runs", "binding_scale_jepa_runs", "binding_scale_stopgrad_runs"), [10000, 20000, 30000], "",
     "small_abstract_ntp_weight_decay=0.1", 5 + 5 + 2),
    (("binding_scale_runs", "binding_scale_jepa_runs", "binding_scale_stopgrad_runs"), [30000], "",
     "small_abstract_jepa_jepa_metric=infonce", 5 + 5 + 2),
    # binding_scale_stopgrad_end.yaml's predictions S6 and S7: the detached runs at step 60,000
    (("binding_scale_runs", "binding_scale_jepa_runs", "binding_scale_stopgrad_end_runs"),
     [30000, 40000, 50000, 60000], "", "small_abstract_ntp_weight_decay=0.1", 5 + 5 + 2),
    (("binding_scale_runs", "binding_scale_jepa_runs", "binding_scale_stopgrad_end_runs"), [60000], "",
     "small_abstract_jepa_jepa_metric=infonce", 5 + 5 + 2),
    # binding_scale_data1_stopgrad.yaml's predictions E2 and E3: the detached seeds on the second draw
    # against its ntp and infonce runs (one seed each: the rule cannot tell)
    (("binding_scale_data1_runs", "binding_scale_data1_stopgrad_runs"), [10000, 20000, 30000], "",
     "small_abstract_data1_ntp", 4),
    (("binding_scale_data1_runs", "binding_scale_data1_stopgrad_runs"), [30000], "",
     "small_abstract_data1_jepa_jepa_metric=infonce", 4),
    # binding_scale_data1_seed1.yaml's predictions D4, D6 and D7: seeds 0 and 1 of each setting on the
    # second draw
    (("binding_scale_data1_runs", "binding_scale_data1_seed1_runs", "binding_scale_data1_stopgrad_runs"),
     [10000, 20000, 30000], "", "small_abstract_data1_ntp", 6),
    (("binding_scale_data1_runs", "binding_scale_data1_seed1_runs", "binding_scale_data1_stopgrad_runs"),
     [30000], "", "small_abstract_data1_jepa_jepa_metric=infonce", 6),
    # binding_scale_data1_seed2.yaml's predictions F2, F4 and F5: seeds 0-2 of each setting on the second draw
    (("binding_scale_data1_runs", "binding_scale_data1_seed1_runs", "binding_scale_data1_seed2_runs",
      "binding_scale_data1_stopgrad_runs", "binding_scale_data1_stopgrad_seed2_runs"),
     [10000, 20000, 30000], "", "small_abstract_data1_ntp", 9),
    (("binding_scale_data1_runs", "binding_scale_data1_seed1_runs", "binding_scale_data1_seed2_runs",
      "binding_scale_data1_stopgrad_runs", "binding_scale_data1_stopgrad_seed2_runs"),
     [30000], "", "small_abstract_data1_jepa_jepa_metric=infonce", 9),
    # binding_scale_data1_stopgrad_end.yaml's predictions P2-P5: the detached seeds 0-2 and ntp seeds 1-2
    # on the second draw, resumed to step 50,000
    (("binding_scale_data1_end_runs", "binding_scale_data1_stopgrad_end_runs",
      "binding_scale_data1_stopgrad_seed2_end_runs"), [30000, 40000, 50000], "", "small_abstract_data1_ntp", 5),
    # binding_scale_data1_stopgrad_60k.yaml's predictions AA2-AA6: the detached seeds 0-2 and ntp seeds 0-2
    # (seed 0 trained again from step 0) to step 60,000; step 30,000 left out (seed 0's is a 500-query sample)
    (("binding_scale_data1_60k_runs", "binding_scale_data1_stopgrad_60k_runs"), [50000], "",
     "small_abstract_data1_ntp", 6),
    (("binding_scale_data1_60k_runs", "binding_scale_data1_stopgrad_60k_runs"), [40000, 50000, 60000], "",
     "small_abstract_data1_ntp", 6),
    # binding_midlarge_data1.yaml's prediction D2 names these steps (one seed each: no rule)
    (("binding_midlarge_data1_runs",), [10000, 20000, 30000], "", None, 2),
    # binding_midlarge_seeds_end.yaml's predictions L6 (step 20,000) and L7 (step 30,000)
    (("binding_midlarge_runs", "binding_midlarge_seeds_end_runs"), [10000, 20000, 30000], "", "midlarge_abstract_ntp",
     8),
    # the surface runs at 8,000 entities (binding_scale_surface.yaml, one seed each: no rule)
    (("binding_scale_surface_runs",), [5000, 10000, 20000, 30000], "", None, 2),
])
def test_the_readme_tables_at_equal_steps_are_computed_from_the_committed_runs(capsys, folders, steps, match,
                                                                                baseline, runs):
    """ntp and ntp + JEPA side by side at the same steps, and the rule's verdicts, as in the docs."""
    from jepa_kit.run_views import strip_seed
    results = ROOT / "papermill_runs" / "results"
    _script("binding_controls_table").at_steps([str(results / f) for f in folders], steps, match, baseline)
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.startswith("| ")]
    verdicts = [line for line in out if line.startswith("- ")]
    assert rows[0].startswith("| run | MRR | step " + " | step ".join(f"{s:,}" for s in steps) + " |")
    cells = [[c.strip() for c in row.split("|")[1:-1]] for row in rows[1:]]
    settings = len({strip_seed(c[0].partition(" (")[0]) + c[0].partition(" (")[2] for c in cells})
    assert len(rows) == 1 + runs and len(verdicts) == (0 if baseline is None else settings - 1)  # all but the baseline
    assert all(v != "-" for c in cells for v in c[2:2 + len(steps)])  # every run has each of these evaluations
    jepa = ["_jepa_" in c[0] for c in cells]
    assert [c[-1] != "-" for c in cells] == jepa and any(jepa)  # the collapse indicator: JEPA runs only
    docs = _docs()
    for line in rows + verdicts:
        assert line in docs, line


@pytest.mark.parametrize("folders, step, settings, infonce", [
    # binding_midlarge_stopgrad.yaml's prediction L10 (and the tenth-weight runs beside it): each setting
    # against the infonce runs without either change, four seeds each at step 10,000
    (("binding_midlarge_runs", "binding_midlarge_seeds_runs", "binding_midlarge_stopgrad_runs",
      "binding_midlarge_lambda_runs"), 10000, 3, "0.057 ± 0.008"),
    # binding_midlarge_stopgrad_seeds_end.yaml's prediction L21: the four detached seeds against the four
    # weight-1 infonce seeds at step 30,000 (the seeds of two folders each pool as one setting)
    (("binding_midlarge_runs", "binding_midlarge_seeds_end_runs", "binding_midlarge_stopgrad_end_runs",
      "binding_midlarge_stopgrad_seeds_end_runs"), 30000, 2, "0.190 ± 0.015"),
])
def test_the_4800_entity_verdicts_against_the_infonce_runs_are_the_docs(capsys, folders, step, settings, infonce):
    """Every other setting at 4,800 entities against the weight-1 infonce runs (read at the last
    tokens, no other change), four seeds each, as in the docs."""
    results = ROOT / "papermill_runs" / "results"
    _script("binding_controls_table").at_steps([str(results / f) for f in folders], [step], "",
                                               "midlarge_abstract_jepa_jepa_metric=infonce")
    verdicts = [line for line in capsys.readouterr().out.splitlines() if line.startswith("- ")]
    assert len(verdicts) == settings and all(f"(4 seeds) vs {infonce} (4 seeds)" in v for v in verdicts), verdicts
    docs = _docs()
    for line in verdicts:
        assert line in docs, line


def test_runs_of_one_name_are_pooled_as_seeds_only_when_trained_alike(capsys):
    """The mask-read and head runs share their names; read side by side, each pair stays a setting of
    its own (the other folder's name after it), while the midlarge seeds of two folders, trained
    alike, pool as four seeds."""
    results = ROOT / "papermill_runs" / "results"
    script = _script("binding_controls_table")
    script.at_steps([str(results / f) for f in ("binding_mid_abstract_jepa_mask_runs", "binding_mid_abstract_jepa_head_runs")],
                    [30000], "", "mid_abstract_jepa")
    verdicts = [line for line in capsys.readouterr().out.splitlines() if line.startswith("- ")]
    assert len(verdicts) == 1 and verdicts[0].startswith("- mid_abstract_jepa (binding_mid_abstract_jepa_head_runs) vs "
                                                         "mid_abstract_jepa, reverse MRR at step 30,000: 0.051 ± 0.005 "
                                                         "(2 seeds) vs 0.061 ± 0.001 (2 seeds)"), verdicts
    a = results / "binding_mid_abstract_jepa_mask_runs" / "mid_abstract_jepa_seed0"
    b = results / "binding_mid_abstract_jepa_head_runs" / "mid_abstract_jepa_seed0"
    assert script.setting_of(a) != script.setting_of(b)
    assert script.setting_of(results / "binding_midlarge_runs" / "midlarge_abstract_ntp_seed0") == \
        script.setting_of(results / "binding_midlarge_seeds_runs" / "midlarge_abstract_ntp_seed2")


def test_later_folders_trained_alike_pool_with_each_other(tmp_path, capsys):
    """Two later folders whose runs were trained alike with each other, but not with the name's first
    runs, form one setting (named after the first of them) with both seeds."""
    results = ROOT / "papermill_runs" / "results"
    for seed, folder in ((0, "h1"), (1, "h2")):
        run = f"mid_abstract_jepa_seed{seed}"
        shutil.copytree(results / "binding_mid_abstract_jepa_head_runs" / run, tmp_path / folder / run)
    _script("binding_controls_table").at_steps(
        [str(results / "binding_mid_abstract_jepa_mask_runs"), str(tmp_path / "h1"), str(tmp_path / "h2")],
        [30000], "", "mid_abstract_jepa")
    verdicts = [line for line in capsys.readouterr().out.splitlines() if line.startswith("- ")]
    assert len(verdicts) == 1 and verdicts[0].startswith("- mid_abstract_jepa (h1) vs mid_abstract_jepa, reverse "
                                                         "MRR at step 30,000: 0.051 ± 0.005 (2 seeds)"), verdicts


def test_the_readme_forward_table_at_equal_steps_is_computed_from_the_committed_runs(capsys):
    """--forward: the atomic exact match of the 8,000-entity runs of seed 0 (the concept run, which
    has no exact match: its atomic concept MRR) at equal steps, abstract and surface, as in the
    docs; no rule."""
    results = ROOT / "papermill_runs" / "results"
    folders = ["binding_scale_runs", "binding_scale_jepa_runs", "binding_scale_surface_runs",
               "binding_scale_surface_width_runs"]
    _script("binding_controls_table").at_steps([str(results / f) for f in folders], [5000, 10000, 20000, 30000],
                                               "_seed0", None, forward=True)
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.startswith("| ")]
    assert rows[0].startswith("| run | forward | step 5,000 |") and not any(o.startswith("- ") for o in out)
    names = [row.split("|")[1].strip() for row in rows[1:]]
    assert "small_ntp_seed0 (binding_scale_surface_width_runs)" in names
    assert len(names) == len(set(names)) == 1 + 4 + 2 + 1
    kinds = {row.split("|")[1].strip(): row.split("|")[2].strip() for row in rows[1:]}
    assert {n for n, k in kinds.items() if k == "atomic concept MRR"} == {"small_abstract_concept_weight_decay=0.1_seed0"}
    assert {k for n, k in kinds.items() if "concept" not in n} == {"atomic EM"}
    docs = _docs()
    for line in rows:
        assert line in docs, line


def test_run_names_keep_the_committed_names_and_name_other_data_after_its_folder():
    name_of = _script("run_binding_controls").name_of
    run = lambda data, objective="ntp", pos_emb=False: {"data": data, "objective": objective, "pos_emb": pos_emb, "seed": 1}
    assert name_of(run("data/tiny_abstract", pos_emb=True)) == "abstract_ntp_pos_seed1"
    assert name_of(run("data/tiny", "jepa")) == "surface_jepa_seed1"
    assert name_of(run("data/small_abstract", "concept")) == "small_abstract_concept_seed1"
    assert name_of(run("data/small_abstract", pos_emb=True)) == "small_abstract_ntp_pos_seed1"
    assert name_of(run("data/small", pos_emb=True)) == "small_ntp_seed1"
    infonce = {**run("data/mid_abstract", "jepa"), "jepa_metric": "infonce"}
    assert name_of(infonce, ["jepa_metric"]) == "mid_abstract_jepa_jepa_metric=infonce_seed1"
    assert name_of({**infonce, "objective": "ntp"}, ["jepa_metric"]) == "mid_abstract_ntp_seed1", "no metric on ntp"
    detached, keys = {**infonce, "stop_grad": True}, ["jepa_metric", "stop_grad"]
    assert name_of(detached, keys) == "mid_abstract_jepa_jepa_metric=infonce_stop_grad=True_seed1"
    assert name_of({**detached, "objective": "ntp", "stop_grad": False}, keys) == "mid_abstract_ntp_seed1"
    import dataclasses

    from jepa_kit.config import TrainConfig
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert _script("run_binding_controls").JEPA_ONLY <= fields  # each a real setting: a misspelt one names nothing


def _changed(p: dict, q: dict) -> dict:
    """The planned params of run p that differ from run q's (where each run goes aside)."""
    return {k: p[k] for k in p if k != "out" and p[k] != q[k]}


def _planned(sweep_file: str, out):
    """The sweep, its planned runs' params and the keys the runner names them by."""
    from jepa_kit import sweeps
    sweep = sweeps.load_sweep(ROOT / "papermill_runs" / sweep_file)
    planned = sweeps.plan(sweep.runs, out, sweep.preset, sweep.name)
    return [r.params for r in planned], _script("run_binding_controls").varied(sweep, planned)


def test_run_names_write_out_what_else_differs_between_a_sweeps_runs(tmp_path):
    script = _script("run_binding_controls")
    names = {}
    for sweep_file in ("binding_controls.yaml", "binding_scale.yaml", "binding_controls_jepa.yaml",
                       "binding_scale_jepa.yaml", "binding_mid.yaml", "binding_scale_data1.yaml",
                       "binding_midlarge.yaml", "binding_midlarge_seeds.yaml", "binding_midlarge_seeds_end.yaml",
                       "binding_scale_surface.yaml", "binding_scale_surface_width.yaml",
                       "binding_mid_surface.yaml", "binding_mid_surface_jepa.yaml", "binding_mid_width.yaml", "binding_concept_width.yaml",
                       "binding_concept_steps.yaml", "binding_concept_depth.yaml", "binding_mid_concept.yaml",
                       "binding_mid_concept_steps.yaml", "binding_controls_paired.yaml",
                       "binding_mid_concept_long.yaml", "binding_controls_paired_embd0.yaml",
                       "binding_mid_equal_steps.yaml", "binding_mid_ntp_seed1.yaml",
                       "binding_mid_surface_concept_long.yaml", "binding_mid_surface_scale.yaml",
                       "binding_mid_surface_scale_seed1.yaml", "binding_mid_surface_scale_long.yaml",
                       "binding_mid_abstract_scale.yaml", "binding_mid_abstract_scale_long.yaml",
                       "binding_mid_abstract_scale_seed1.yaml", "binding_mid_surface_scale_x80.yaml",
                       "binding_mid_abstract_scale_longer.yaml", "binding_mid_surface_scale_between.yaml",
                       "binding_mid_abstract_scale_210k.yaml", "binding_mid_abstract_scale_270k.yaml",
                       "binding_mid_surface_scale_x10_seed1.yaml", "binding_mid_abstract_ntp_150k.yaml",
                       "binding_mid_abstract_ntp_210k.yaml", "binding_mid_abstract_ntp_270k.yaml",
                       "binding_mid_abstract_scale_330k.yaml", "binding_mid_abstract_ntp_330k.yaml",
                       "binding_mid_abstract_scale_seed1_150k.yaml", "binding_mid_abstract_ntp_seed1_150k.yaml",
                       "binding_mid_abstract_scale_seed1_210k.yaml", "binding_mid_abstract_ntp_seed1_210k.yaml",
                       "binding_mid_abstract_ntp_seed2_150k.yaml", "binding_mid_abstract_scale_seed2_150k.yaml",
                       "binding_mid_surface_jepa_mask.yaml", "binding_mid_abstract_jepa_mask.yaml",
                       "binding_mid_abstract_jepa_head.yaml", "binding_mid_surface_jepa_head.yaml",
                       "binding_mid_abstract_jepa_stopgrad.yaml", "binding_mid_abstract_jepa_lambda.yaml",
                       "binding_midlarge_stopgrad.yaml", "binding_midlarge_lambda.yaml",
                       "binding_midlarge_stopgrad_end.yaml", "binding_midlarge_stopgrad_seeds_end.yaml",
                       "binding_midlarge_data1.yaml", "binding_scale_stopgrad.yaml",
                       "binding_scale_stopgrad_end.yaml", "binding_mid_surface_jepa_stopgrad.yaml",
                       "binding_scale_data1_stopgrad.yaml", "binding_scale_data1_seed1.yaml",
                       "binding_scale_data1_seed2.yaml", "binding_scale_data1_stopgrad_seed2.yaml",
                       "binding_scale_data1_end.yaml", "binding_scale_data1_stopgrad_end.yaml",
                       "binding_scale_data1_stopgrad_seed2_end.yaml", "binding_scale_data1_seed0_end.yaml",
                       "binding_scale_data1_60k.yaml", "binding_scale_data1_stopgrad_60k.yaml"):
        planned, keys = _planned(sweep_file, tmp_path)
        names[sweep_file] = sorted(script.name_of(p, keys) for p in planned)
        assert len(set(names[sweep_file])) == len(planned)
        committed = ROOT / "papermill_runs" / "results" / sweep_file.replace(".yaml", "_runs")
        assert names[sweep_file] == sorted(p.name for p in committed.iterdir() if p.is_dir()), sweep_file
    assert names["binding_scale.yaml"] == ["small_abstract_concept_weight_decay=0.1_seed0",
                                           "small_abstract_ntp_weight_decay=0.1_seed0",
                                           "small_abstract_ntp_weight_decay=0.1_seed1",
                                           "small_abstract_ntp_weight_decay=0.1_seed2",
                                           "small_abstract_ntp_weight_decay=1.0_seed0"]
    assert names["binding_scale_jepa.yaml"] == ["small_abstract_jepa_jepa_metric=cosine_seed0",
                                                "small_abstract_jepa_jepa_metric=cosine_seed1",
                                                "small_abstract_jepa_jepa_metric=infonce_seed0",
                                                "small_abstract_jepa_jepa_metric=infonce_seed1",
                                                "small_abstract_jepa_jepa_metric=infonce_seed2"]
    assert names["binding_mid.yaml"] == ["mid_abstract_jepa_jepa_metric=infonce_seed0",
                                         "mid_abstract_jepa_jepa_metric=infonce_seed1",
                                         "mid_abstract_ntp_seed0", "mid_abstract_ntp_seed1"]
    assert names["binding_mid_surface.yaml"] == ["mid_ntp_n_embd=128_seed0", "mid_ntp_n_embd=256_seed0"]
    assert names["binding_mid_surface_jepa.yaml"] == ["mid_jepa_seed0", "mid_jepa_seed1"]
    assert names["binding_mid_surface_jepa_mask.yaml"] == names["binding_mid_surface_jepa.yaml"]
    assert names["binding_mid_abstract_jepa_mask.yaml"] == ["mid_abstract_jepa_seed0", "mid_abstract_jepa_seed1"]
    assert names["binding_mid_abstract_jepa_head.yaml"] == names["binding_mid_abstract_jepa_mask.yaml"]
    assert names["binding_mid_surface_jepa_head.yaml"] == names["binding_mid_surface_jepa_mask.yaml"]
    assert names["binding_mid_abstract_jepa_stopgrad.yaml"] == names["binding_mid_abstract_jepa_mask.yaml"]
    assert names["binding_mid_abstract_jepa_lambda.yaml"] == names["binding_mid_abstract_jepa_mask.yaml"]
    assert names["binding_midlarge_stopgrad.yaml"] == [f"midlarge_abstract_jepa_seed{s}" for s in range(4)]
    assert names["binding_midlarge_lambda.yaml"] == names["binding_midlarge_stopgrad.yaml"]
    assert names["binding_midlarge_stopgrad_end.yaml"] == names["binding_midlarge_stopgrad.yaml"][:2]
    assert names["binding_midlarge_stopgrad_seeds_end.yaml"] == names["binding_midlarge_stopgrad.yaml"][2:]
    assert names["binding_midlarge_data1.yaml"] == ["midlarge_abstract_data1_jepa_jepa_metric=infonce_stop_grad=True_seed0",
                                                    "midlarge_abstract_data1_ntp_seed0"]  # stop_grad: JEPA runs only
    assert names["binding_scale_stopgrad.yaml"] == ["small_abstract_jepa_seed0", "small_abstract_jepa_seed1"]
    assert names["binding_scale_stopgrad_end.yaml"] == names["binding_scale_stopgrad.yaml"]
    assert names["binding_mid_surface_jepa_stopgrad.yaml"] == names["binding_mid_surface_jepa.yaml"]
    assert names["binding_scale_data1_stopgrad.yaml"] == ["small_abstract_data1_jepa_seed0", "small_abstract_data1_jepa_seed1"]
    assert names["binding_scale_data1_seed1.yaml"] == [n.replace("seed0", "seed1") for n in names["binding_scale_data1.yaml"]]
    assert names["binding_scale_data1_seed2.yaml"] == [n.replace("seed0", "seed2") for n in names["binding_scale_data1.yaml"]]
    assert names["binding_scale_data1_stopgrad_seed2.yaml"] == ["small_abstract_data1_jepa_seed2"]
    assert names["binding_scale_data1_end.yaml"] == ["small_abstract_data1_ntp_seed1", "small_abstract_data1_ntp_seed2"]
    assert names["binding_scale_data1_stopgrad_end.yaml"] == names["binding_scale_data1_stopgrad.yaml"]
    assert names["binding_scale_data1_stopgrad_seed2_end.yaml"] == names["binding_scale_data1_stopgrad_seed2.yaml"]
    assert names["binding_scale_data1_seed0_end.yaml"] == ["small_abstract_data1_ntp_seed0"]
    assert names["binding_scale_data1_60k.yaml"] == [f"small_abstract_data1_ntp_seed{s}" for s in range(3)]
    assert names["binding_scale_data1_stopgrad_60k.yaml"] == [f"small_abstract_data1_jepa_seed{s}" for s in range(3)]
    assert names["binding_concept_width.yaml"] == ["abstract_concept_n_layer=2_n_embd=256_seed0",
                                                   "surface_concept_n_layer=2_n_embd=256_seed0",
                                                   "surface_concept_n_layer=2_n_embd=512_seed0",
                                                   "surface_concept_n_layer=4_n_embd=128_seed0"]
    assert names["binding_mid_concept.yaml"] == ["mid_abstract_concept_seed0", "mid_concept_seed0"]
    assert names["binding_mid_concept_steps.yaml"] == names["binding_mid_concept.yaml"]
    assert names["binding_mid_concept_long.yaml"] == ["mid_abstract_concept_seed0"]
    assert names["binding_mid_equal_steps.yaml"] == ["mid_abstract_concept_seed1", "mid_abstract_ntp_seed0"]
    assert names["binding_mid_ntp_seed1.yaml"] == ["mid_abstract_ntp_seed1"]
    assert names["binding_mid_surface_concept_long.yaml"] == ["mid_concept_seed0"]
    assert names["binding_mid_surface_scale.yaml"] == ["mid_concept_concept_logit_scale=27.0_seed0",
                                                       "mid_concept_concept_logit_scale=4.0_seed0"]
    assert names["binding_mid_surface_scale_seed1.yaml"] == ["mid_concept_seed1"]
    assert names["binding_mid_surface_scale_long.yaml"] == ["mid_concept_seed0"]
    assert names["binding_mid_abstract_scale.yaml"] == ["mid_abstract_concept_seed0"]
    assert names["binding_mid_abstract_scale_long.yaml"] == ["mid_abstract_concept_seed0"]
    assert names["binding_mid_abstract_scale_seed1.yaml"] == ["mid_abstract_concept_seed1"]
    assert names["binding_mid_surface_scale_x80.yaml"] == ["mid_concept_seed0"]
    assert names["binding_mid_abstract_scale_longer.yaml"] == ["mid_abstract_concept_seed0"]
    assert names["binding_mid_abstract_scale_210k.yaml"] == ["mid_abstract_concept_seed0"]
    assert names["binding_mid_abstract_scale_270k.yaml"] == ["mid_abstract_concept_seed0"]
    assert names["binding_mid_surface_scale_x10_seed1.yaml"] == ["mid_concept_seed1"]
    assert names["binding_mid_abstract_ntp_150k.yaml"] == ["mid_abstract_ntp_seed0"]
    assert names["binding_mid_abstract_ntp_210k.yaml"] == ["mid_abstract_ntp_seed0"]
    assert names["binding_mid_abstract_ntp_270k.yaml"] == ["mid_abstract_ntp_seed0"]
    assert names["binding_mid_abstract_ntp_330k.yaml"] == ["mid_abstract_ntp_seed0"]
    assert names["binding_mid_abstract_scale_330k.yaml"] == ["mid_abstract_concept_seed0"]
    assert names["binding_mid_surface_scale_between.yaml"] == ["mid_concept_concept_logit_scale=10.0_seed0",
                                                         "mid_concept_concept_logit_scale=45.0_seed0"]
    assert names["binding_controls_paired.yaml"] == [f"tiny_{s}paired_{o}_seed{n}" for s in ("abstract_", "")
                                                     for o in ("concept", "ntp") for n in (0, 1)]
    assert names["binding_controls_paired_embd0.yaml"] == [
        n for n in names["binding_controls_paired.yaml"] if n.startswith("tiny_abstract") or "_concept_" in n]


@pytest.mark.parametrize("sweep_file, folder, data_draw", [
    ("binding_scale.yaml", "binding_scale_runs", None),
    ("binding_scale_jepa.yaml", "binding_scale_jepa_runs", None),
    ("binding_controls_jepa.yaml", "binding_controls_jepa_runs", None),
    ("binding_mid.yaml", "binding_mid_runs", None),
    ("binding_scale_data1.yaml", "binding_scale_data1_runs", ("small_abstract", 1)),
    ("binding_midlarge.yaml", "binding_midlarge_runs", None),
    ("binding_midlarge_seeds.yaml", "binding_midlarge_seeds_runs", None),
    ("binding_midlarge_seeds_end.yaml", "binding_midlarge_seeds_end_runs", None),
    ("binding_scale_surface.yaml", "binding_scale_surface_runs", None),
    ("binding_scale_surface_width.yaml", "binding_scale_surface_width_runs", None),
    ("binding_mid_surface.yaml", "binding_mid_surface_runs", None),
    ("binding_mid_surface_jepa.yaml", "binding_mid_surface_jepa_runs", None),
    ("binding_mid_surface_jepa_mask.yaml", "binding_mid_surface_jepa_mask_runs", None),
    ("binding_mid_abstract_jepa_mask.yaml", "binding_mid_abstract_jepa_mask_runs", None),
    ("binding_mid_abstract_jepa_head.yaml", "binding_mid_abstract_jepa_head_runs", None),
    ("binding_mid_surface_jepa_head.yaml", "binding_mid_surface_jepa_head_runs", None),
    ("binding_mid_surface_jepa_stopgrad.yaml", "binding_mid_surface_jepa_stopgrad_runs", None),
    ("binding_mid_abstract_jepa_stopgrad.yaml", "binding_mid_abstract_jepa_stopgrad_runs", None),
    ("binding_mid_abstract_jepa_lambda.yaml", "binding_mid_abstract_jepa_lambda_runs", None),
    ("binding_mid_width.yaml", "binding_mid_width_runs", None),
    ("binding_concept_width.yaml", "binding_concept_width_runs", None),
    ("binding_concept_steps.yaml", "binding_concept_steps_runs", None),
    ("binding_concept_depth.yaml", "binding_concept_depth_runs", None),
    ("binding_mid_concept.yaml", "binding_mid_concept_runs", None),
    ("binding_mid_concept_steps.yaml", "binding_mid_concept_steps_runs", None),
    ("binding_controls_paired.yaml", "binding_controls_paired_runs", None),
    ("binding_mid_concept_long.yaml", "binding_mid_concept_long_runs", None),
    ("binding_controls_paired_embd0.yaml", "binding_controls_paired_embd0_runs", None),
    ("binding_mid_equal_steps.yaml", "binding_mid_equal_steps_runs", None),
    ("binding_mid_ntp_seed1.yaml", "binding_mid_ntp_seed1_runs", None),
    ("binding_mid_surface_concept_long.yaml", "binding_mid_surface_concept_long_runs", None),
    ("binding_mid_surface_scale.yaml", "binding_mid_surface_scale_runs", None),
    ("binding_mid_surface_scale_seed1.yaml", "binding_mid_surface_scale_seed1_runs", None),
    ("binding_mid_surface_scale_long.yaml", "binding_mid_surface_scale_long_runs", None),
    ("binding_mid_abstract_scale.yaml", "binding_mid_abstract_scale_runs", None),
    ("binding_mid_abstract_scale_long.yaml", "binding_mid_abstract_scale_long_runs", None),
    ("binding_mid_abstract_scale_seed1.yaml", "binding_mid_abstract_scale_seed1_runs", None),
    ("binding_mid_surface_scale_x80.yaml", "binding_mid_surface_scale_x80_runs", None),
    ("binding_mid_abstract_scale_longer.yaml", "binding_mid_abstract_scale_longer_runs", None),
    ("binding_mid_abstract_scale_210k.yaml", "binding_mid_abstract_scale_210k_runs", None),
    ("binding_mid_surface_scale_between.yaml", "binding_mid_surface_scale_between_runs", None),
    ("binding_mid_abstract_scale_270k.yaml", "binding_mid_abstract_scale_270k_runs", None),
    ("binding_mid_surface_scale_x10_seed1.yaml", "binding_mid_surface_scale_x10_seed1_runs", None),
    ("binding_mid_abstract_ntp_150k.yaml", "binding_mid_abstract_ntp_150k_runs", None),
    ("binding_mid_abstract_ntp_210k.yaml", "binding_mid_abstract_ntp_210k_runs", None),
    ("binding_mid_abstract_ntp_270k.yaml", "binding_mid_abstract_ntp_270k_runs", None),
    ("binding_mid_abstract_scale_330k.yaml", "binding_mid_abstract_scale_330k_runs", None),
    ("binding_mid_abstract_ntp_330k.yaml", "binding_mid_abstract_ntp_330k_runs", None),
    ("binding_mid_abstract_scale_seed1_150k.yaml", "binding_mid_abstract_scale_seed1_150k_runs", None),
    ("binding_mid_abstract_ntp_seed1_150k.yaml", "binding_mid_abstract_ntp_seed1_150k_runs", None),
    ("binding_mid_abstract_scale_seed1_210k.yaml", "binding_mid_abstract_scale_seed1_210k_runs", None),
    ("binding_mid_abstract_ntp_seed1_210k.yaml", "binding_mid_abstract_ntp_seed1_210k_runs", None),
    ("binding_mid_abstract_ntp_seed2_150k.yaml", "binding_mid_abstract_ntp_seed2_150k_runs", None),
    ("binding_mid_abstract_scale_seed2_150k.yaml", "binding_mid_abstract_scale_seed2_150k_runs", None),
    ("binding_midlarge_stopgrad.yaml", "binding_midlarge_stopgrad_runs", None),
    ("binding_midlarge_lambda.yaml", "binding_midlarge_lambda_runs", None),
    ("binding_midlarge_stopgrad_end.yaml", "binding_midlarge_stopgrad_end_runs", None),
    ("binding_midlarge_stopgrad_seeds_end.yaml", "binding_midlarge_stopgrad_seeds_end_runs", None),
    ("binding_midlarge_data1.yaml", "binding_midlarge_data1_runs", ("midlarge_abstract", 1)),
    ("binding_scale_stopgrad.yaml", "binding_scale_stopgrad_runs", None),
    ("binding_scale_stopgrad_end.yaml", "binding_scale_stopgrad_end_runs", None),
    ("binding_scale_data1_stopgrad.yaml", "binding_scale_data1_stopgrad_runs", ("small_abstract", 1)),
    ("binding_scale_data1_seed1.yaml", "binding_scale_data1_seed1_runs", ("small_abstract", 1)),
    ("binding_scale_data1_seed2.yaml", "binding_scale_data1_seed2_runs", ("small_abstract", 1)),
    ("binding_scale_data1_stopgrad_seed2.yaml", "binding_scale_data1_stopgrad_seed2_runs", ("small_abstract", 1)),
    ("binding_scale_data1_end.yaml", "binding_scale_data1_end_runs", ("small_abstract", 1)),
    ("binding_scale_data1_stopgrad_end.yaml", "binding_scale_data1_stopgrad_end_runs", ("small_abstract", 1)),
    ("binding_scale_data1_stopgrad_seed2_end.yaml", "binding_scale_data1_stopgrad_seed2_end_runs", ("small_abstract", 1)),
    ("binding_scale_data1_seed0_end.yaml", "binding_scale_data1_seed0_end_runs", ("small_abstract", 1)),
    ("binding_scale_data1_60k.yaml", "binding_scale_data1_60k_runs", ("small_abstract", 1)),
    ("binding_scale_data1_stopgrad_60k.yaml", "binding_scale_data1_stopgrad_60k_runs", ("small_abstract", 1)),
])
def test_the_committed_runs_are_the_sweeps_configs(tmp_path, sweep_file, folder, data_draw):
    """Whether trained by the runner or (the 8,000-entity runs) with `jepa-kit train` flags: every
    TrainConfig field but where the data, the run and the progress output went is what the sweep
    file plans, and the data is the datagen preset its folder is named after, generator seed 0 (a
    sweep may use several), or ``data_draw`` (preset, generator seed) (its fingerprint) for a sweep
    of one data folder; every run finished. A field the run's config.json lacks (added to the kit
    later) counts at its default."""
    import dataclasses
    import json

    from jepa_kit.config import TrainConfig
    from jepa_kit.datagen import generate
    from jepa_kit.data import fingerprint
    script = _script("run_binding_controls")
    planned, keys = _planned(sweep_file, tmp_path)
    folders = sorted({Path(p["data"]).name for p in planned})
    assert len(folders) == 1 or data_draw is None
    draws = {folders[0]: data_draw} if data_draw else {name: (name, 0) for name in folders}
    data = {name: fingerprint(generate(preset, tmp_path / preset, seed=data_seed))
            for name, (preset, data_seed) in draws.items()}
    for params in planned:
        run = ROOT / "papermill_runs" / "results" / folder / script.name_of(params, keys)
        stored = json.loads((run / "config.json").read_text())
        want = dataclasses.asdict(TrainConfig.from_dict({**params, "out": str(tmp_path)}))
        # a field added to TrainConfig after the run (embd_dropout) is read at its default, as a resume
        # reads it; the default keeps the old behaviour (tests/test_config.py)
        assert set(stored["config"]) <= set(want), run.name
        got = dataclasses.asdict(TrainConfig.from_dict(stored["config"]))
        assert {k: v for k, v in got.items() if k not in ("data", "out", "progress")} == \
               {k: v for k, v in want.items() if k not in ("data", "out", "progress")}, run.name
        assert stored["data_fingerprint"] == data[Path(params["data"]).name], run.name
        assert json.loads((run / "status.json").read_text())["state"] == "finished", run.name


@pytest.mark.parametrize("jepa_file, ntp_file", [("binding_controls_jepa.yaml", "binding_controls.yaml"),
                                                 ("binding_scale_jepa.yaml", "binding_scale.yaml")])
def test_the_jepa_sweeps_change_nothing_but_the_objective(tmp_path, jepa_file, ntp_file):
    """Each JEPA run is an abstract ntp run of its ntp sweep (same seed, same data) with the JEPA term
    added: every other TrainConfig field is equal, so the curves compare at equal steps."""
    jepa, _ = _planned(jepa_file, tmp_path / "j")
    ntp, _ = _planned(ntp_file, tmp_path / "n")
    ntp = {p["seed"]: p for p in ntp if p["objective"] == "ntp" and "abstract" in p["data"] and not p["pos_emb"]
           and p["weight_decay"] == 0.1}
    assert {p["jepa_metric"] for p in jepa} == {"cosine", "infonce"}
    for p in jepa:
        assert p["objective"] == "jepa" and p["seed"] in ntp
        differ = set(_changed(p, ntp[p["seed"]]))
        assert differ <= {"objective", "jepa_metric"}, differ


@pytest.mark.parametrize("sweep_file, data, runs", [
    ("binding_mid.yaml", "mid_abstract", [("jepa", "infonce", 0), ("jepa", "infonce", 1), ("ntp", "-", 0), ("ntp", "-", 1)]),
    ("binding_scale_data1.yaml", "small_abstract_data1", [("jepa", "infonce", 0), ("ntp", "-", 0)]),
    ("binding_midlarge.yaml", "midlarge_abstract", [("jepa", "infonce", 0), ("jepa", "infonce", 1), ("ntp", "-", 0),
                                                    ("ntp", "-", 1)]),
    ("binding_scale_surface.yaml", "small", [("jepa", "infonce", 0), ("ntp", "-", 0)]),
])
def test_other_data_runs_are_the_8000_entity_runs_with_only_the_data_and_steps_changed(tmp_path, sweep_file, data,
                                                                                        runs):
    """binding_mid.yaml (2,400 entities), binding_midlarge.yaml (4,800) and binding_scale_data1.yaml (a
    second draw of the 8,000-entity data): each run is binding_scale(_jepa).yaml's ntp or infonce run
    of the same seed with only the data and the number of steps (30,000) changed."""
    other, _ = _planned(sweep_file, tmp_path / "o")
    big = _planned("binding_scale.yaml", tmp_path / "n")[0] + _planned("binding_scale_jepa.yaml", tmp_path / "j")[0]
    key = lambda p: (p["objective"], p["jepa_metric"] if p["objective"] == "jepa" else "-", p["seed"])
    big = {key(p): p for p in big if p["weight_decay"] == 0.1 and p["objective"] != "concept"}
    assert sorted(key(p) for p in other) == runs
    for p in other:
        assert set(_changed(p, big[key(p)])) == {"data", "steps"}
        assert (Path(p["data"]).name, p["steps"]) == (data, 30000)


def test_the_second_draw_at_4800_entities_is_the_ntp_and_detached_seed_0_runs_with_only_the_data_changed(tmp_path):
    """binding_midlarge_data1.yaml: binding_midlarge.yaml's ntp run and binding_midlarge_stopgrad.yaml's
    detached run, seed 0 each, on data/midlarge_abstract_data1 (the detached run also to step 30,000,
    as its seeds were resumed)."""
    runs = {p["objective"]: p for p in _planned("binding_midlarge_data1.yaml", tmp_path / "d")[0]}
    ntp = next(p for p in _planned("binding_midlarge.yaml", tmp_path / "m")[0]
               if p["objective"] == "ntp" and p["seed"] == 0)
    detached = next(p for p in _planned("binding_midlarge_stopgrad.yaml", tmp_path / "s")[0] if p["seed"] == 0)
    assert sorted(runs) == ["jepa", "ntp"]
    assert set(_changed(runs["ntp"], ntp)) == {"data"}
    assert _changed(runs["jepa"], detached).keys() == {"data", "steps"} and runs["jepa"]["steps"] == 30000
    assert {Path(p["data"]).name for p in runs.values()} == {"midlarge_abstract_data1"}


def test_the_second_draw_at_8000_entities_detached_is_the_detached_runs_with_only_the_data_and_steps_changed(
        tmp_path):
    """binding_scale_data1_stopgrad.yaml: binding_scale_stopgrad.yaml's detached runs, seeds 0 and 1, on
    binding_scale_data1.yaml's data for its 30,000 steps; its ntp and infonce runs are the comparison
    and differ from these in the objective's fields only."""
    runs = {p["seed"]: p for p in _planned("binding_scale_data1_stopgrad.yaml", tmp_path / "d")[0]}
    detached = {p["seed"]: p for p in _planned("binding_scale_stopgrad.yaml", tmp_path / "s")[0]}
    other = {p["objective"]: p for p in _planned("binding_scale_data1.yaml", tmp_path / "o")[0]}
    assert sorted(runs) == sorted(detached) == [0, 1]
    for seed, p in runs.items():
        assert set(_changed(p, detached[seed])) == {"data", "steps"} and p["steps"] == 30000
        assert Path(p["data"]).name == "small_abstract_data1" and p["stop_grad"] is True
    assert set(_changed(runs[0], other["jepa"])) == {"stop_grad"}
    assert set(_changed(runs[0], other["ntp"])) == {"objective", "jepa_metric", "stop_grad"}


@pytest.mark.parametrize("sweep_file, seed0_file, seed, objectives", [
    ("binding_scale_data1_seed1.yaml", "binding_scale_data1.yaml", 1, ["jepa", "ntp"]),
    ("binding_scale_data1_seed2.yaml", "binding_scale_data1.yaml", 2, ["jepa", "ntp"]),
    ("binding_scale_data1_stopgrad_seed2.yaml", "binding_scale_data1_stopgrad.yaml", 2, ["jepa"]),
])
def test_the_second_draw_seed_runs_are_its_seed_0_runs_with_only_the_seed_changed(tmp_path, sweep_file, seed0_file,
                                                                                  seed, objectives):
    """binding_scale_data1_seed{1,2}.yaml: binding_scale_data1.yaml's ntp and infonce runs with seed 1, 2;
    binding_scale_data1_stopgrad_seed2.yaml: binding_scale_data1_stopgrad.yaml's seed-0 run with seed 2."""
    other = {p["objective"]: p for p in _planned(sweep_file, tmp_path / "other")[0]}
    seed0 = {p["objective"]: p for p in _planned(seed0_file, tmp_path / "zero")[0] if p["seed"] == 0}
    assert sorted(other) == sorted(seed0) == objectives
    for objective, p in other.items():
        assert _changed(p, seed0[objective]) == {"seed": seed}


def test_the_4800_entity_seed_runs_are_the_30000_step_runs_with_only_the_seed_and_steps_changed(tmp_path):
    """binding_midlarge_seeds.yaml: seeds 2 and 3 of binding_midlarge.yaml's ntp and infonce runs,
    to step 11,000, and nothing else changed; the schedule is constant after warm-up (so the path to
    step 10,000 is the 30,000-step runs' path) and step 10,000 is a periodic evaluation."""
    seeds, _ = _planned("binding_midlarge_seeds.yaml", tmp_path / "s")
    base, _ = _planned("binding_midlarge.yaml", tmp_path / "b")
    key = lambda p: (p["objective"], p["jepa_metric"] if p["objective"] == "jepa" else "-")
    base = {key(p): p for p in base if p["seed"] == 0}
    assert sorted((key(p), p["seed"]) for p in seeds) == [(("jepa", "infonce"), 2), (("jepa", "infonce"), 3),
                                                          (("ntp", "-"), 2), (("ntp", "-"), 3)]
    for p in seeds:
        assert set(_changed(p, base[key(p)])) == {"seed", "steps"}
        assert p["steps"] == 11000 and p["schedule"] == "constant" and 10000 % p["eval_every"] == 0


def test_the_by_size_figure_draws_every_committed_seed():
    """readme_figures.size_panels: each size's panel holds every committed seed of ntp and infonce,
    four each at 4,800 entities (binding_midlarge_runs and binding_midlarge_seeds_end_runs)."""
    import runpy
    panels = runpy.run_path(str(ROOT / "benchmarks" / "readme_figures.py"))["size_panels"]()
    seeds = {n: {s: sorted(int(r.rsplit("seed", 1)[1]) for r in curves) for s, curves in settings.items()}
             for _, n, settings in panels}
    assert seeds == {600: {"ntp": [0, 1], "ntp + JEPA (infonce)": [0, 1]},
                     2400: {"ntp": [0, 1], "ntp + JEPA (infonce)": [0, 1]},
                     4800: {"ntp": [0, 1, 2, 3], "ntp + JEPA (infonce)": [0, 1, 2, 3]},
                     8000: {"ntp": [0, 1, 2], "ntp + JEPA (infonce)": [0, 1, 2]}}
    for _, n, settings in panels:  # a resumed run's curve runs from the start (its copied metrics)
        for curves in settings.values():
            assert all(min(r["step"] for r in rows) <= 1000 for rows in curves.values()), n


@pytest.mark.parametrize("folders, seeds, last", [
    ("SCALE_DATA1", {"ntp": [0, 1, 2], "ntp + JEPA (infonce)": [0, 1, 2],
                     "ntp + JEPA (infonce), target detached": [0, 1, 2]}, 30000),
    ("SCALE_DATA1_END", {"ntp": [1, 2], "ntp + JEPA (infonce), target detached": [0, 1, 2]}, 50000),
    ("SCALE_DATA1_60K", {"ntp": [0, 1, 2], "ntp + JEPA (infonce), target detached": [0, 1, 2]}, 60000),
])
def test_the_second_draw_figures_draw_each_settings_seeds_from_the_start(folders, seeds, last):
    """readme_figures.data1_panels on the second 8,000-entity draw: from SCALE_DATA1 (five folders)
    ntp, infonce and the detached term, seeds 0-2 each, to step 30,000; from SCALE_DATA1_END (the runs
    resumed with their metrics copied) ntp seeds 1-2 and the detached seeds 0-2 to 50,000; from
    SCALE_DATA1_60K ntp seeds 0-2 and the detached seeds 0-2 to 60,000; every curve from step 1,000
    or before."""
    import runpy
    script = runpy.run_path(str(ROOT / "benchmarks" / "readme_figures.py"))
    (panel,) = script["data1_panels"](script[folders])
    _, n, settings = panel
    assert n == 8000
    assert list(settings) == list(seeds)
    for setting, curves in settings.items():
        assert sorted(int(r.rsplit("seed", 1)[1]) for r in curves) == seeds[setting], setting
        assert all("_data1_" in r for r in curves), setting
        for rows in curves.values():
            steps = [r["step"] for r in rows if r.get("kind") == "eval"]
            assert min(steps) <= 1000 and max(steps) == last, setting


@pytest.mark.parametrize("entities, seeds_and_ends", [
    (4800, [([0, 1, 2, 3], 30000)] * 3),
    (8000, [([0, 1, 2], 60000), ([0, 1, 2], 60000), ([0, 1], 60000)]),
])
def test_the_detached_figures_draw_every_seed_from_the_start(entities, seeds_and_ends):
    """readme_figures.detached_panels: ntp, infonce and infonce with its target detached, each
    setting's seeds and last step (4,800 entities: seeds 0-3 to step 30,000; 8,000: ntp and infonce
    seeds 0-2 to 60,000, the detached seeds 0-1 resumed to 60,000), every curve from step 1,000 or before."""
    import runpy
    (panel,) = runpy.run_path(str(ROOT / "benchmarks" / "readme_figures.py"))["detached_panels"](entities)
    _, n, settings = panel
    assert n == entities
    assert list(settings) == ["ntp", "ntp + JEPA (infonce)", "ntp + JEPA (infonce), target detached"]
    for setting, (seeds, end) in zip(settings, seeds_and_ends):
        curves = settings[setting]
        assert sorted(int(r.rsplit("seed", 1)[1]) for r in curves) == seeds, setting
        for rows in curves.values():
            steps = [r["step"] for r in rows if r.get("kind") == "eval"]
            assert min(steps) <= 1000 and max(steps) == end, setting


def test_the_surface_width_probe_is_the_surface_ntp_run_at_width_256(tmp_path):
    """binding_scale_surface_width.yaml: binding_scale_surface.yaml's ntp run (seed 0) with only the
    width (256) and a training-time limit changed."""
    (probe,), _ = _planned("binding_scale_surface_width.yaml", tmp_path / "w")
    ntp = [p for p in _planned("binding_scale_surface.yaml", tmp_path / "s")[0] if p["objective"] == "ntp"]
    assert len(ntp) == 1 and ntp[0]["seed"] == probe["seed"] == 0
    assert set(_changed(probe, ntp[0])) == {"n_embd", "max_train_seconds"}
    assert (probe["n_embd"], probe["n_head"], probe["max_train_seconds"]) == (256, 4, 2400)


def test_the_600_entity_runs_record_their_datas_entity_count(tmp_path):
    """binding_controls_runs predate ``data_facts`` in config.json; it was added to them afterwards
    (so their table needs no data on this machine): it must be the data their fingerprint names."""
    import json

    from jepa_kit.collect import data_facts
    from jepa_kit.data import fingerprint
    from jepa_kit.datagen import generate
    generated = [generate(preset, tmp_path / preset, seed=0) for preset in ("tiny_abstract", "tiny")]
    data = {fingerprint(d): data_facts(d) for d in generated}
    runs = sorted((ROOT / "papermill_runs" / "results" / "binding_controls_runs").glob("*/config.json"))
    assert len(runs) == 12
    for path in runs:
        config = json.loads(path.read_text())
        assert config["data_facts"] == data[config["data_fingerprint"]], path.parent.name


def test_the_2400_entity_surface_and_width_runs_are_binding_mids_ntp_run_with_only_these_changed(tmp_path):
    """binding_mid_surface.yaml: binding_mid.yaml's ntp run (seed 0) on the surface data of the same
    sizes (the ``mid`` preset: mid_abstract with two name tokens per entity), at its width (128) and
    at 256; binding_mid_width.yaml: the same abstract run at width 256 with a training-time limit. So
    the two width-256 runs differ in the data only."""
    from jepa_kit.datagen import PRESETS
    base = [p for p in _planned("binding_mid.yaml", tmp_path / "m")[0] if p["objective"] == "ntp" and p["seed"] == 0]
    surface, _ = _planned("binding_mid_surface.yaml", tmp_path / "s")
    (wide,), _ = _planned("binding_mid_width.yaml", tmp_path / "w")
    assert len(base) == 1 and sorted(p["n_embd"] for p in surface) == [128, 256] and base[0]["n_embd"] == 128
    for p in surface:
        assert set(_changed(p, base[0])) == ({"data"} if p["n_embd"] == 128 else {"data", "n_embd"})
        assert Path(p["data"]).name == "mid" and p["n_head"] == 4
    assert set(_changed(wide, base[0])) == {"n_embd", "max_train_seconds"} and wide["n_embd"] == 256
    assert set(_changed(wide, [p for p in surface if p["n_embd"] == 256][0])) == {"data", "max_train_seconds"}
    assert PRESETS["mid"] == replace(PRESETS["mid_abstract"], entity_tokens=2, multiplicity=10)


def test_the_2400_entity_surface_jepa_runs_are_the_surface_ntp_run_with_the_infonce_term(tmp_path):
    """binding_mid_surface_jepa.yaml: binding_mid_surface.yaml's width-128 ntp run with the infonce
    JEPA term added (objective and metric changed, and the seed for seed 1), which is binding_mid.yaml's
    infonce run of the same seed on the surface data: the two JEPA runs differ in the data only."""
    [surface_ntp] = [p for p in _planned("binding_mid_surface.yaml", tmp_path / "s")[0] if p["n_embd"] == 128]
    abstract = {p["seed"]: p for p in _planned("binding_mid.yaml", tmp_path / "m")[0] if p["objective"] == "jepa"}
    runs, _ = _planned("binding_mid_surface_jepa.yaml", tmp_path / "j")
    assert sorted(p["seed"] for p in runs) == sorted(abstract) == [0, 1]
    for p in runs:
        assert _changed(p, surface_ntp) == {"objective": "jepa", "jepa_metric": "infonce",
                                            **({"seed": 1} if p["seed"] else {})}
        assert set(_changed(p, abstract[p["seed"]])) == {"data"} and Path(p["data"]).name == "mid"


@pytest.mark.parametrize("sweep_file, change", [("binding_mid_surface_jepa_mask.yaml", {"jepa_read": "mask", "k_pred": 0}),
                                                ("binding_mid_surface_jepa_stopgrad.yaml", {"stop_grad": True})])
def test_the_2400_entity_surface_query_and_detached_runs_are_the_surface_jepa_runs_with_one_change(tmp_path,
                                                                                                   sweep_file,
                                                                                                   change):
    """binding_mid_surface_jepa_{mask,stopgrad}.yaml: binding_mid_surface_jepa.yaml's runs, seed for
    seed, with the JEPA term read at the two <mask>s (jepa_read mask, hence k_pred 0), or with its
    target detached, and nothing else changed."""
    last = {p["seed"]: p for p in _planned("binding_mid_surface_jepa.yaml", tmp_path / "l")[0]}
    runs, _ = _planned(sweep_file, tmp_path / "s")
    assert sorted(p["seed"] for p in runs) == sorted(last) == [0, 1]
    for p in runs:
        assert _changed(p, last[p["seed"]]) == change


def test_the_2400_entity_abstract_query_jepa_runs_are_the_abstract_infonce_runs_read_at_mask(tmp_path):
    """binding_mid_abstract_jepa_mask.yaml: binding_mid.yaml's infonce runs, seed for seed, read at the
    two <mask>s (jepa_read mask, hence k_pred 0), nothing else changed; and the surface ones in the
    data only."""
    last = {p["seed"]: p for p in _planned("binding_mid.yaml", tmp_path / "l")[0] if p["objective"] == "jepa"}
    surface = {p["seed"]: p for p in _planned("binding_mid_surface_jepa_mask.yaml", tmp_path / "s")[0]}
    runs, _ = _planned("binding_mid_abstract_jepa_mask.yaml", tmp_path / "m")
    assert sorted(p["seed"] for p in runs) == sorted(last) == [0, 1]
    for p in runs:
        assert _changed(p, last[p["seed"]]) == {"jepa_read": "mask", "k_pred": 0}
        assert set(_changed(p, surface[p["seed"]])) == {"data"}


@pytest.mark.parametrize("data", ["surface", "abstract"])
def test_the_2400_entity_head_jepa_runs_are_the_query_jepa_runs_with_a_predictor_head(tmp_path, data):
    """binding_mid_{surface,abstract}_jepa_head.yaml: the query-term runs of the same data, seed for
    seed, with a separate predictor head (jepa_predictor mlp) and nothing else changed."""
    mask = {p["seed"]: p for p in _planned(f"binding_mid_{data}_jepa_mask.yaml", tmp_path / "m")[0]}
    runs, _ = _planned(f"binding_mid_{data}_jepa_head.yaml", tmp_path / "h")
    assert sorted(p["seed"] for p in runs) == sorted(mask) == [0, 1]
    for p in runs:
        assert _changed(p, mask[p["seed"]]) == {"jepa_predictor": "mlp"}


@pytest.mark.parametrize("sweep_file, change", [("binding_mid_abstract_jepa_stopgrad.yaml", {"stop_grad": True}),
                                                ("binding_mid_abstract_jepa_lambda.yaml", {"lambda_jepa": 0.1})])
def test_the_2400_entity_stop_grad_and_lambda_runs_are_the_abstract_query_runs_with_one_change(tmp_path, sweep_file,
                                                                                                change):
    """binding_mid_abstract_jepa_{stopgrad,lambda}.yaml: the abstract query-term runs, seed for seed,
    with the target detached, or with a tenth of the term's weight, and nothing else changed."""
    mask = {p["seed"]: p for p in _planned("binding_mid_abstract_jepa_mask.yaml", tmp_path / "m")[0]}
    runs, _ = _planned(sweep_file, tmp_path / "s")
    assert sorted(p["seed"] for p in runs) == sorted(mask) == [0, 1]
    for p in runs:
        assert _changed(p, mask[p["seed"]]) == change


@pytest.mark.parametrize("sweep_file, change", [("binding_midlarge_stopgrad.yaml", {"stop_grad": True}),
                                                ("binding_midlarge_lambda.yaml", {"lambda_jepa": 0.1})])
def test_the_4800_entity_stop_grad_and_lambda_runs_are_the_infonce_runs_with_one_change(tmp_path, sweep_file, change):
    """binding_midlarge_{stopgrad,lambda}.yaml: the 4,800-entity infonce runs of seeds 0-3 (seeds 0-1
    from binding_midlarge.yaml, which trained on to step 30,000; seeds 2-3 from binding_midlarge_seeds.yaml),
    with the target detached, or with a tenth of the term's weight, and nothing else changed."""
    infonce = {}
    for earlier, steps in (("binding_midlarge.yaml", 30000), ("binding_midlarge_seeds.yaml", 11000)):
        for p in _planned(earlier, tmp_path / earlier)[0]:
            if p["objective"] == "jepa":
                infonce[p["seed"]] = (p, steps)
    runs, _ = _planned(sweep_file, tmp_path / "s")
    assert sorted(p["seed"] for p in runs) == sorted(infonce) == [0, 1, 2, 3]
    for p in runs:
        q, steps = infonce[p["seed"]]
        assert _changed(p, q) == (change if steps == p["steps"] else {**change, "steps": p["steps"]})
        assert p["steps"] == 11000 and p["eval_every"] == 1000 and p["eval_max_items"] == 500


@pytest.mark.parametrize("sweep_file, first_files, seeds, steps", [
    ("binding_midlarge_stopgrad_end.yaml", ["binding_midlarge_stopgrad.yaml"], [0, 1], 30000),
    ("binding_midlarge_stopgrad_seeds_end.yaml", ["binding_midlarge_stopgrad.yaml"], [2, 3], 30000),
    ("binding_scale_stopgrad_end.yaml", ["binding_scale_stopgrad.yaml"], [0, 1], 60000),
    ("binding_scale_data1_stopgrad_end.yaml", ["binding_scale_data1_stopgrad.yaml"], [0, 1], 50000),
    ("binding_scale_data1_stopgrad_seed2_end.yaml", ["binding_scale_data1_stopgrad_seed2.yaml"], [2], 50000),
    ("binding_scale_data1_end.yaml", ["binding_scale_data1_seed1.yaml", "binding_scale_data1_seed2.yaml"], [1, 2],
     50000),
    ("binding_scale_data1_seed0_end.yaml", ["binding_scale_data1.yaml"], [0], 50000),
    ("binding_scale_data1_60k.yaml", ["binding_scale_data1_seed0_end.yaml", "binding_scale_data1_end.yaml"],
     [0, 1, 2], 60000),
    ("binding_scale_data1_stopgrad_60k.yaml", ["binding_scale_data1_stopgrad_end.yaml",
                                               "binding_scale_data1_stopgrad_seed2_end.yaml"], [0, 1, 2], 60000),
])
def test_resumed_runs_change_only_steps(tmp_path, sweep_file, first_files, seeds, steps):
    """Each sweep that resumes earlier runs' directories to more steps (4,800 entities: the detached
    seeds 0-1 and 2-3 to step 30,000; 8,000: the detached seeds 0-1 to 60,000; the second 8,000-entity
    draw: the detached seeds 0-2 and ntp seeds 1-2 to 50,000, then, with ntp seed 0 trained again
    from step 0 to 50,000, all six to 60,000) changes ``steps`` and nothing else against the run of
    the same objective and seed in the sweeps that trained them."""
    first = {(p["objective"], p["seed"]): p for i, f in enumerate(first_files)
             for p in _planned(f, tmp_path / f"a{i}")[0]}
    runs, _ = _planned(sweep_file, tmp_path / "b")
    assert sorted(p["seed"] for p in runs) == seeds
    for p in runs:
        assert _changed(p, first[p["objective"], p["seed"]]) == {"steps": steps}


def test_the_8000_entity_detached_runs_are_the_infonce_runs_with_the_target_detached(tmp_path):
    """binding_scale_stopgrad.yaml: binding_scale_jepa.yaml's infonce runs of seeds 0-1 with the
    target detached and ``steps`` 31,000 (step 30,000 stays a periodic evaluation), nothing else changed."""
    infonce = {p["seed"]: p for p in _planned("binding_scale_jepa.yaml", tmp_path / "a")[0]
               if p.get("jepa_metric") == "infonce"}
    runs, _ = _planned("binding_scale_stopgrad.yaml", tmp_path / "b")
    assert sorted(p["seed"] for p in runs) == [0, 1]
    for p in runs:
        assert _changed(p, infonce[p["seed"]]) == {"stop_grad": True, "steps": 31000}
        assert p["eval_every"] == 1000 and p["eval_max_items"] == 500


@pytest.mark.parametrize("forward", [False, True])
def test_the_2400_entity_surface_jepa_tables_are_computed_from_the_committed_runs(capsys, forward):
    """Reverse MRR (and, with --forward, atomic exact match) of the surface ntp runs and the surface
    infonce runs at equal steps to 30,000, as in the docs."""
    rows = _readme_rows_at_steps(capsys, ["binding_mid_surface_runs", "binding_mid_surface_jepa_runs"],
                                 [2000, 5000, 10000, 20000, 30000], forward=forward)
    assert [row.split("|")[1].strip() for row in rows[1:]] == [
        "mid_ntp_n_embd=128_seed0", "mid_ntp_n_embd=256_seed0", "mid_jepa_seed0", "mid_jepa_seed1"]


@pytest.mark.parametrize("forward", [False, True])
def test_the_2400_entity_query_jepa_tables_are_computed_from_the_committed_runs(capsys, forward):
    """The surface infonce runs read at the last tokens and at the two <mask>s, at equal steps (and,
    with --forward, their forward), as in the docs; the second folder's runs carry its name."""
    rows = _readme_rows_at_steps(capsys, ["binding_mid_surface_jepa_runs", "binding_mid_surface_jepa_mask_runs"],
                                 [2000, 5000, 10000, 20000, 30000], forward=forward)
    assert [row.split("|")[1].strip() for row in rows[1:]] == [
        "mid_jepa_seed0", "mid_jepa_seed1", "mid_jepa_seed0 (binding_mid_surface_jepa_mask_runs)",
        "mid_jepa_seed1 (binding_mid_surface_jepa_mask_runs)"]


@pytest.mark.parametrize("forward", [False, True])
def test_the_2400_entity_head_jepa_tables_are_computed_from_the_committed_runs(capsys, forward):
    """The surface infonce runs read at the last tokens, at the two <mask>s, and at the two <mask>s
    through a predictor head, at equal steps (and, with --forward, their forward), as in the docs."""
    folders = ["binding_mid_surface_jepa_runs", "binding_mid_surface_jepa_mask_runs", "binding_mid_surface_jepa_head_runs"]
    rows = _readme_rows_at_steps(capsys, folders, [2000, 5000, 10000, 20000, 30000], forward=forward)
    assert [row.split("|")[1].strip() for row in rows[1:]] == ["mid_jepa_seed0", "mid_jepa_seed1"] + [
        f"mid_jepa_seed{s} ({f})" for f in folders[1:] for s in (0, 1)]


@pytest.mark.parametrize("forward", [False, True])
def test_the_2400_entity_detached_surface_tables_are_computed_from_the_committed_runs(capsys, forward):
    """The surface ntp runs, the surface infonce runs read at the last tokens, and the same runs with
    the target detached, at equal steps (and, with --forward, their forward), as in the docs."""
    folders = ["binding_mid_surface_runs", "binding_mid_surface_jepa_runs", "binding_mid_surface_jepa_stopgrad_runs"]
    rows = _readme_rows_at_steps(capsys, folders, [2000, 5000, 10000, 20000, 30000], forward=forward)
    assert [row.split("|")[1].strip() for row in rows[1:]] == [
        "mid_ntp_n_embd=128_seed0", "mid_ntp_n_embd=256_seed0", "mid_jepa_seed0", "mid_jepa_seed1",
        "mid_jepa_seed0 (binding_mid_surface_jepa_stopgrad_runs)", "mid_jepa_seed1 (binding_mid_surface_jepa_stopgrad_runs)"]


@pytest.mark.parametrize("forward", [False, True])
def test_the_2400_entity_abstract_and_surface_tables_are_computed_from_the_committed_runs(capsys, forward):
    """Reverse MRR (and, with --forward, atomic exact match) of ntp at 2,400 entities, abstract and
    surface at widths 128 and 256, at equal steps, as in the docs; one seed per width: no rule."""
    results = ROOT / "papermill_runs" / "results"
    folders = ["binding_mid_runs", "binding_mid_width_runs", "binding_mid_surface_runs"]
    _script("binding_controls_table").at_steps([str(results / f) for f in folders], [2000, 5000, 10000, 20000],
                                               "ntp", None, forward=forward)
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.startswith("| ")]
    names = [row.split("|")[1].strip() for row in rows[1:]]
    assert names == ["mid_abstract_ntp_seed0", "mid_abstract_ntp_seed1",
                     "mid_abstract_ntp_seed0 (binding_mid_width_runs)", "mid_ntp_n_embd=128_seed0",
                     "mid_ntp_n_embd=256_seed0"]
    assert not any(line.startswith("- ") for line in out)
    cells = [[c.strip() for c in row.split("|")[1:-1]] for row in rows[1:]]
    assert all(v != "-" for c in cells for v in c[2:6])  # every run has each of these evaluations
    docs = _docs()
    for line in rows:
        assert line in docs, line


def test_the_2400_entity_figure_draws_every_committed_run():
    import runpy
    curves = runpy.run_path(str(ROOT / "benchmarks" / "readme_figures.py"))["mid_surface_curves"]()
    assert sorted(curves) == sorted(["abstract, width 128_seed0", "abstract, width 128_seed1",
                                     "abstract, width 256_seed0", "abstract, width 128, 90,000 steps_seed0",
                                     "abstract, width 128, 90,000 steps_seed1",
                                     "abstract concept, width 128_seed0", "abstract concept, width 128_seed1",
                                     "surface, width 128_seed0", "surface, width 256_seed0",
                                     "surface concept, width 128_seed0"])
    assert all(max(r["step"] for r in rows) >= 20000 for rows in curves.values())
    for name in ("abstract concept, width 128_seed0", "abstract concept, width 128_seed1",
                 "abstract, width 128, 90,000 steps_seed0", "abstract, width 128, 90,000 steps_seed1",
                 "surface concept, width 128_seed0"):
        assert max(r["step"] for r in curves[name]) == 90000, name


def test_the_concept_sweeps_are_binding_controls_concept_runs_with_only_width_depth_or_steps_changed(tmp_path):
    """binding_concept_width.yaml, _depth.yaml and _steps.yaml: each run is binding_controls.yaml's
    concept run of the same data and seed (1 recognition + 1 concept block, width 128, 8,000 steps)
    with only the width, the number of blocks (so the concept stack's depth) or the steps changed."""
    controls, _ = _planned("binding_controls.yaml", tmp_path / "c")
    base = {(p["data"], p["seed"]): p for p in controls if p["objective"] == "concept"}
    assert len(base) == 4 and {p["n_layer"] for p in base.values()} == {2} and {p["n_embd"] for p in base.values()} == {128}
    changed = {}
    for sweep_file in ("binding_concept_width.yaml", "binding_concept_depth.yaml", "binding_concept_steps.yaml"):
        planned, _ = _planned(sweep_file, tmp_path / sweep_file)
        changed[sweep_file] = sorted((Path(p["data"]).name, p["seed"], sorted(_changed(p, base[p["data"], p["seed"]]).items()))
                                     for p in planned)
    assert changed["binding_concept_width.yaml"] == [
        ("tiny", 0, [("n_embd", 256)]), ("tiny", 0, [("n_embd", 512)]), ("tiny", 0, [("n_layer", 4)]),
        ("tiny_abstract", 0, [("n_embd", 256)])]
    assert changed["binding_concept_depth.yaml"] == [("tiny", 1, [("n_layer", 4)]), ("tiny_abstract", 0, [("n_layer", 4)])]
    assert changed["binding_concept_steps.yaml"] == [("tiny", 0, [("steps", 30000)]), ("tiny_abstract", 0, [("steps", 30000)])]


def test_the_2400_entity_concept_runs_are_the_ntp_runs_there_with_only_the_objective_changed(tmp_path):
    """binding_mid_concept.yaml: binding_mid.yaml's abstract ntp run (seed 0) and binding_mid_surface.yaml's
    width-128 surface run with the concept objective (1 recognition + 1 concept block, checkpoints
    chosen on concept MRR) and nothing else changed."""
    ntp = {Path(p["data"]).name: p for sweep_file in ("binding_mid.yaml", "binding_mid_surface.yaml")
           for p in _planned(sweep_file, tmp_path / sweep_file)[0]
           if p["objective"] == "ntp" and p["seed"] == 0 and p["n_embd"] == 128}
    concept, _ = _planned("binding_mid_concept.yaml", tmp_path / "c")
    assert sorted(Path(p["data"]).name for p in concept) == sorted(ntp) == ["mid", "mid_abstract"]
    for p in concept:
        assert _changed(p, ntp[Path(p["data"]).name]) == {"objective": "concept", "best_metric": "concept_mrr"}
        assert p["n_recognition"] == 1 and p["n_layer"] == 2


def test_the_2400_entity_equal_steps_runs_are_the_ntp_and_concept_runs_with_only_steps_or_seed_changed(tmp_path):
    """binding_mid_equal_steps.yaml: binding_mid.yaml's abstract ntp run (seed 0) with only ``steps``
    raised to 90,000 (constant learning rate: the same schedule up to step 30,000), and
    binding_mid_concept_long.yaml's abstract concept run with only the seed changed;
    binding_mid_ntp_seed1.yaml: that ntp run with only the seed changed; binding_mid_abstract_ntp_150k.yaml
    and binding_mid_abstract_ntp_seed1_150k.yaml: seed 0 and seed 1 with only ``steps`` raised again,
    to 150,000 (each run from step 0); binding_mid_abstract_ntp_seed2_150k.yaml: the seed-1 run with
    only the seed changed."""
    ntp = [p for p in _planned("binding_mid.yaml", tmp_path / "m")[0] if p["objective"] == "ntp" and p["seed"] == 0]
    concept, _ = _planned("binding_mid_concept_long.yaml", tmp_path / "l")
    runs = {p["objective"]: p for p in _planned("binding_mid_equal_steps.yaml", tmp_path / "e")[0]}
    assert sorted(runs) == ["concept", "ntp"] and len(ntp) == len(concept) == 1
    assert _changed(runs["ntp"], ntp[0]) == {"steps": 90000} and runs["ntp"]["schedule"] == "constant"
    assert _changed(runs["concept"], concept[0]) == {"seed": 1}
    [seed1], _ = _planned("binding_mid_ntp_seed1.yaml", tmp_path / "s")
    assert _changed(seed1, runs["ntp"]) == {"seed": 1}
    [ntp_150k], _ = _planned("binding_mid_abstract_ntp_150k.yaml", tmp_path / "n")
    assert _changed(ntp_150k, runs["ntp"]) == {"steps": 150000}
    [ntp_seed1_150k], _ = _planned("binding_mid_abstract_ntp_seed1_150k.yaml", tmp_path / "n1")
    assert _changed(ntp_seed1_150k, seed1) == {"steps": 150000}
    [ntp_seed2_150k], _ = _planned("binding_mid_abstract_ntp_seed2_150k.yaml", tmp_path / "n2")
    assert _changed(ntp_seed2_150k, ntp_seed1_150k) == {"seed": 2}


def test_the_2400_entity_logit_scale_runs_are_the_concept_runs_with_only_the_scale_steps_or_seed_changed(
        tmp_path):
    """binding_mid_surface_scale.yaml: binding_mid_concept.yaml's surface run (data/mid) with the
    concept loss's logits multiplied by 27 and by 4, and steps 30,000 -> 50,000 (constant learning rate);
    binding_mid_surface_scale_seed1.yaml: the x27 run with only the seed changed;
    binding_mid_surface_scale_x80.yaml: the x27 seed-0 run with the logits x80 and 30,000 steps;
    binding_mid_surface_scale_between.yaml: the same with the logits x10 and x45;
    binding_mid_surface_scale_x10_seed1.yaml: the x10 run with only the seed changed;
    binding_mid_abstract_scale.yaml: binding_mid_concept.yaml's abstract run with the logits x27;
    binding_mid_abstract_scale_long.yaml and _seed1.yaml: that run with only steps (90,000) or the
    seed changed (binding_mid_abstract_scale_longer.yaml, _210k.yaml and _270k.yaml, the long run
    continued, are tested with the continued runs); binding_mid_abstract_scale_seed2_150k.yaml: the
    seed-1 run continued to 150,000 (binding_mid_abstract_scale_seed1_150k.yaml) with only the seed
    changed, trained from step 0."""
    base = [p for p in _planned("binding_mid_concept.yaml", tmp_path / "c")[0] if Path(p["data"]).name == "mid"]
    runs, _ = _planned("binding_mid_surface_scale.yaml", tmp_path / "s")
    assert len(base) == 1 and base[0]["concept_logit_scale"] == 1.0 and base[0]["schedule"] == "constant"
    assert sorted(_changed(p, base[0])["concept_logit_scale"] for p in runs) == [4.0, 27.0]
    for p in runs:
        assert _changed(p, base[0]) == {"concept_logit_scale": p["concept_logit_scale"], "steps": 50000}
    [seed1], _ = _planned("binding_mid_surface_scale_seed1.yaml", tmp_path / "s1")
    x27 = [p for p in runs if p["concept_logit_scale"] == 27.0][0]
    assert _changed(seed1, x27) == {"seed": 1}
    [x80], _ = _planned("binding_mid_surface_scale_x80.yaml", tmp_path / "x80")
    assert _changed(x80, x27) == {"concept_logit_scale": 80.0, "steps": 30000}
    between, _ = _planned("binding_mid_surface_scale_between.yaml", tmp_path / "b")
    assert sorted(_changed(p, x27)["concept_logit_scale"] for p in between) == [10.0, 45.0]
    for p in between:
        assert _changed(p, x27) == {"concept_logit_scale": p["concept_logit_scale"], "steps": 30000}
    [x10_seed1], _ = _planned("binding_mid_surface_scale_x10_seed1.yaml", tmp_path / "x10")
    assert _changed(x10_seed1, [p for p in between if p["concept_logit_scale"] == 10.0][0]) == {"seed": 1}
    abstract = [p for p in _planned("binding_mid_concept.yaml", tmp_path / "c")[0] if "abstract" in p["data"]]
    [scaled], _ = _planned("binding_mid_abstract_scale.yaml", tmp_path / "a")
    assert len(abstract) == 1 and _changed(scaled, abstract[0]) == {"concept_logit_scale": 27.0}
    [longer], _ = _planned("binding_mid_abstract_scale_long.yaml", tmp_path / "al")
    [abstract_seed1], _ = _planned("binding_mid_abstract_scale_seed1.yaml", tmp_path / "a1")
    assert _changed(longer, scaled) == {"steps": 90000} and _changed(abstract_seed1, scaled) == {"seed": 1}
    [seed1_150k], _ = _planned("binding_mid_abstract_scale_seed1_150k.yaml", tmp_path / "a1l")
    [seed2_150k], _ = _planned("binding_mid_abstract_scale_seed2_150k.yaml", tmp_path / "a2l")
    assert _changed(seed2_150k, seed1_150k) == {"seed": 2}


# Continued runs stopped on the way and resumed once more, from the checkpoint at this step (the
# sweep files' outcomes say so): the session that started them ended first.
INTERRUPTED_AT = {"binding_mid_abstract_scale_seed1_210k.yaml": 170000, "binding_mid_abstract_ntp_seed1_210k.yaml": 180000}


@pytest.mark.parametrize("sweep_file, base_file, steps, runs", [
    ("binding_midlarge_seeds_end.yaml", "binding_midlarge_seeds.yaml", (11000, 30000), 4),
    ("binding_mid_concept_steps.yaml", "binding_mid_concept.yaml", (30000, 60000), 2),
    ("binding_mid_concept_long.yaml", "binding_mid_concept_steps.yaml", (60000, 90000), 1),
    ("binding_mid_surface_concept_long.yaml", "binding_mid_concept_steps.yaml", (60000, 90000), 1),
    ("binding_mid_surface_scale_long.yaml", "binding_mid_surface_scale.yaml", (50000, 90000), 1),
    ("binding_mid_abstract_scale_longer.yaml", "binding_mid_abstract_scale_long.yaml", (90000, 150000), 1),
    ("binding_mid_abstract_scale_210k.yaml", "binding_mid_abstract_scale_longer.yaml", (150000, 210000), 1),
    ("binding_mid_abstract_scale_270k.yaml", "binding_mid_abstract_scale_210k.yaml", (210000, 270000), 1),
    ("binding_mid_abstract_ntp_210k.yaml", "binding_mid_abstract_ntp_150k.yaml", (150000, 210000), 1),
    ("binding_mid_abstract_ntp_270k.yaml", "binding_mid_abstract_ntp_210k.yaml", (210000, 270000), 1),
    ("binding_mid_abstract_ntp_330k.yaml", "binding_mid_abstract_ntp_270k.yaml", (270000, 330000), 1),
    ("binding_mid_abstract_scale_330k.yaml", "binding_mid_abstract_scale_270k.yaml", (270000, 330000), 1),
    ("binding_mid_abstract_scale_seed1_150k.yaml", "binding_mid_abstract_scale_seed1.yaml", (30000, 150000), 1),
    ("binding_mid_abstract_scale_seed1_210k.yaml", "binding_mid_abstract_scale_seed1_150k.yaml", (150000, 210000), 1),
    ("binding_mid_abstract_ntp_seed1_210k.yaml", "binding_mid_abstract_ntp_seed1_150k.yaml", (150000, 210000), 1),
])
def test_the_continued_runs_went_on_from_their_shorter_runs(tmp_path, sweep_file, base_file, steps, runs):
    """Each run of ``sweep_file`` is the one run in ``base_file`` that differs from it in ``steps``
    alone (a resumable field), raised, the learning rate constant, and each committed run was resumed
    from the shorter committed run: its metrics up to that run's last step are that run's, row for
    row. (The 4,800-entity seed runs 11,000 -> 30,000; the 2,400-entity concept runs 30,000 ->
    60,000, then each -> 90,000; the logits-x27 surface concept run 50,000 -> 90,000; the logits-x27
    abstract concept run 90,000 -> 150,000 -> 210,000 -> 270,000 -> 330,000, its seed 1 30,000 ->
    150,000 -> 210,000; abstract ntp seed 0 150,000 -> 210,000 -> 270,000 -> 330,000, seed 1 150,000 ->
    210,000.) A run stopped on the way (its session ended) and resumed from a later checkpoint
    records that step as ``resumed_at_step``: INTERRUPTED_AT names those runs and steps."""
    import json

    from jepa_kit.config import RESUMABLE_FIELDS
    name_of = _script("run_binding_controls").name_of
    longer, keys = _planned(sweep_file, tmp_path / "l")
    shorter, shorter_keys = _planned(base_file, tmp_path / "s")
    assert len(longer) == runs
    results = ROOT / "papermill_runs" / "results"
    for p in longer:
        [base] = [b for b in shorter if _changed(p, b) == {"steps": steps[1]}]
        assert "steps" in RESUMABLE_FIELDS and p["schedule"] == "constant"
        name, base_name = name_of(p, keys), name_of(base, shorter_keys)
        rows = lambda file, run: [json.loads(line) for line in
                                  (results / file.replace(".yaml", "_runs") / run / "metrics.jsonl").open()]
        before, after = rows(base_file, base_name), rows(sweep_file, name)
        assert after[:len(before)] == before and max(r["step"] for r in after) == steps[1]
        assert max(r["step"] for r in before) == steps[0]
        assert json.loads((results / sweep_file.replace(".yaml", "_runs") / name / "config.json").read_text())[
            "resumed_at_step"] == INTERRUPTED_AT.get(sweep_file, steps[0])


def _readme_rows_at_steps(capsys, folders, steps, match="", forward=False, since_forward=False) -> list[str]:
    """The table rows (header first) of ``binding_controls_table.at_steps`` over the committed result
    ``folders`` (no baseline), checked: every run has an evaluation at each of ``steps``, and every
    row is in the docs."""
    results = ROOT / "papermill_runs" / "results"
    _script("binding_controls_table").at_steps([str(results / f) for f in folders], steps, match, None,
                                               forward=forward, since_forward=since_forward)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    cells = [[c.strip() for c in row.split("|")[1:-1]] for row in rows[1:]]
    assert all(v != "-" for c in cells for v in c[2:-1])  # every run has each of these evaluations
    docs = _docs()
    for line in rows:
        assert line in docs, line
    return rows


@pytest.mark.parametrize("forward", [False, True])
def test_the_2400_entity_equal_steps_tables_are_computed_from_the_committed_runs(capsys, forward):
    """The abstract concept runs (seeds 0 and 1) and abstract ntp (seeds 0 and 1), all to step 90,000,
    side by side at equal steps (and, with --forward, their forward), as in the docs."""
    rows = _readme_rows_at_steps(capsys, ["binding_mid_concept_long_runs", "binding_mid_equal_steps_runs",
                                          "binding_mid_ntp_seed1_runs"],
                                 [15000, 30000, 45000, 60000, 75000, 90000], forward=forward)
    assert [row.split("|")[1].strip() for row in rows[1:]] == [
        "mid_abstract_concept_seed0", "mid_abstract_concept_seed1", "mid_abstract_ntp_seed0",
        "mid_abstract_ntp_seed1"]


@pytest.mark.parametrize("folders, step, seeds, verdict", [
    # the concept objective (logits x1), at the step binding_mid_ntp_seed1.yaml's predictions named
    (["binding_mid_concept_long_runs", "binding_mid_equal_steps_runs", "binding_mid_ntp_seed1_runs"], 90000, 2,
     "not better (p = 0.839)"),
    # the x27 concept objective, at the step binding_mid_abstract_scale_seed1_150k.yaml's prediction O5 named
    (["binding_mid_abstract_scale_longer_runs", "binding_mid_abstract_scale_seed1_150k_runs",
      "binding_mid_abstract_ntp_150k_runs", "binding_mid_abstract_ntp_seed1_150k_runs"], 150000, 2,
     "not better (p = 0.581)"),
    # the same, at the step binding_mid_abstract_scale_seed1_210k.yaml's prediction O6 named
    (["binding_mid_abstract_scale_210k_runs", "binding_mid_abstract_scale_seed1_210k_runs",
      "binding_mid_abstract_ntp_210k_runs", "binding_mid_abstract_ntp_seed1_210k_runs"], 210000, 2,
     "not better (p = 0.354)"),
    # three seeds each at step 150,000, binding_mid_abstract_scale_seed2_150k.yaml's prediction O7
    (["binding_mid_abstract_scale_longer_runs", "binding_mid_abstract_scale_seed1_150k_runs",
      "binding_mid_abstract_scale_seed2_150k_runs", "binding_mid_abstract_ntp_150k_runs",
      "binding_mid_abstract_ntp_seed1_150k_runs", "binding_mid_abstract_ntp_seed2_150k_runs"], 150000, 3,
     "not better (p = 0.771)"),
])
def test_the_2400_entity_concept_against_ntp_verdicts_are_the_readmes(capsys, folders, step, seeds, verdict):
    """Two or three seeds each of abstract ntp and a concept objective at a step named before the
    runs: the kit's rule, as in the docs."""
    results = ROOT / "papermill_runs" / "results"
    _script("binding_controls_table").at_steps([str(results / f) for f in folders], [step], "", "mid_abstract_ntp")
    verdicts = [line for line in capsys.readouterr().out.splitlines() if line.startswith("- ")]
    assert len(verdicts) == 1 and verdicts[0].startswith(
        f"- mid_abstract_concept vs mid_abstract_ntp, reverse MRR at step {step:,}: ")
    assert f"({seeds} seeds) vs" in verdicts[0] and verdicts[0].endswith(f"({seeds} seeds): {verdict}")
    assert verdicts[0] in _docs()


@pytest.mark.parametrize("forward", [False, True])
def test_the_2400_entity_surface_concept_tables_to_90000_steps_are_computed_from_the_committed_run(capsys, forward):
    """The surface concept run continued from step 60,000 to 90,000, reverse (and, with --forward,
    atomic) concept MRR, as in the docs."""
    rows = _readme_rows_at_steps(capsys, ["binding_mid_surface_concept_long_runs"], [60000, 70000, 80000, 90000],
                                 forward=forward)
    assert [row.split("|")[1].strip() for row in rows[1:]] == ["mid_concept_seed0"]


@pytest.mark.parametrize("forward", [False, True])
@pytest.mark.parametrize("folders, steps, match, names", [
    # logits x1 (to 90,000 steps), x27 and x4 (to 50,000)
    (["binding_mid_surface_concept_long_runs", "binding_mid_surface_scale_runs"],
     [5000, 10000, 20000, 30000, 40000, 50000], "",
     ["mid_concept_seed0", "mid_concept_concept_logit_scale=27.0_seed0", "mid_concept_concept_logit_scale=4.0_seed0"]),
    # x27, second seed
    (["binding_mid_surface_scale_seed1_runs"], [5000, 10000, 20000, 30000, 40000, 50000], "", ["mid_concept_seed1"]),
    # x27, seed 0 continued from step 50,000 to 90,000
    (["binding_mid_surface_scale_long_runs"], [50000, 60000, 70000, 80000, 90000], "", ["mid_concept_seed0"]),
    # x1, x27, x4 and x80 to step 30,000
    (["binding_mid_concept_runs", "binding_mid_surface_scale_runs", "binding_mid_surface_scale_x80_runs"],
     [5000, 10000, 20000, 30000], "mid_concept",
     ["mid_concept_seed0", "mid_concept_concept_logit_scale=27.0_seed0", "mid_concept_concept_logit_scale=4.0_seed0",
      "mid_concept_seed0 (binding_mid_surface_scale_x80_runs)"]),
    # x1, x27, x4, x10, x45 and x80 to step 30,000
    (["binding_mid_concept_runs", "binding_mid_surface_scale_runs", "binding_mid_surface_scale_between_runs",
      "binding_mid_surface_scale_x80_runs"],
     [5000, 10000, 20000, 30000], "mid_concept",
     ["mid_concept_seed0", "mid_concept_concept_logit_scale=27.0_seed0", "mid_concept_concept_logit_scale=4.0_seed0",
      "mid_concept_concept_logit_scale=10.0_seed0", "mid_concept_concept_logit_scale=45.0_seed0",
      "mid_concept_seed0 (binding_mid_surface_scale_x80_runs)"]),
    # x10 seed 1 beside x10 and x45 seed 0 and x27 seed 1
    (["binding_mid_surface_scale_x10_seed1_runs", "binding_mid_surface_scale_between_runs",
      "binding_mid_surface_scale_seed1_runs"], [5000, 10000, 20000, 30000], "",
     ["mid_concept_seed1", "mid_concept_concept_logit_scale=10.0_seed0", "mid_concept_concept_logit_scale=45.0_seed0",
      "mid_concept_seed1 (binding_mid_surface_scale_seed1_runs)"]),
    # abstract ntp seed 0 run again to 150,000, beside the x27 concept run
    (["binding_mid_abstract_ntp_150k_runs", "binding_mid_abstract_scale_longer_runs"],
     [30000, 60000, 90000, 120000, 150000], "", ["mid_abstract_ntp_seed0", "mid_abstract_concept_seed0"]),
    # abstract ntp seed 1 run again to 150,000, beside the x27 concept run's seed 1 continued to 150,000
    (["binding_mid_abstract_ntp_seed1_150k_runs", "binding_mid_abstract_scale_seed1_150k_runs"],
     [30000, 60000, 90000, 120000, 150000], "", ["mid_abstract_ntp_seed1", "mid_abstract_concept_seed1"]),
    # abstract ntp's three seeds to 150,000
    (["binding_mid_abstract_ntp_150k_runs", "binding_mid_abstract_ntp_seed1_150k_runs",
      "binding_mid_abstract_ntp_seed2_150k_runs"], [30000, 60000, 90000, 120000, 150000], "",
     ["mid_abstract_ntp_seed0", "mid_abstract_ntp_seed1", "mid_abstract_ntp_seed2"]),
    # the x27 concept run's three seeds to 150,000
    (["binding_mid_abstract_scale_longer_runs", "binding_mid_abstract_scale_seed1_150k_runs",
      "binding_mid_abstract_scale_seed2_150k_runs"], [30000, 60000, 90000, 120000, 150000], "",
     ["mid_abstract_concept_seed0", "mid_abstract_concept_seed1", "mid_abstract_concept_seed2"]),
    # the two seed-1 runs continued from step 150,000 to 210,000
    (["binding_mid_abstract_ntp_seed1_210k_runs", "binding_mid_abstract_scale_seed1_210k_runs"],
     [150000, 160000, 170000, 180000, 190000, 200000, 210000], "", ["mid_abstract_ntp_seed1", "mid_abstract_concept_seed1"]),
    # abstract ntp seed 0 continued from step 150,000 to 210,000, beside the x27 concept run
    (["binding_mid_abstract_ntp_210k_runs", "binding_mid_abstract_scale_210k_runs"],
     [150000, 160000, 170000, 180000, 190000, 200000, 210000], "", ["mid_abstract_ntp_seed0", "mid_abstract_concept_seed0"]),
    # abstract ntp seed 0 continued from step 210,000 to 270,000, beside the x27 concept run
    (["binding_mid_abstract_ntp_270k_runs", "binding_mid_abstract_scale_270k_runs"],
     [210000, 220000, 230000, 240000, 250000, 260000, 270000], "", ["mid_abstract_ntp_seed0", "mid_abstract_concept_seed0"]),
    # abstract ntp seed 0 and the x27 concept run, both continued from step 270,000 to 330,000
    (["binding_mid_abstract_ntp_330k_runs", "binding_mid_abstract_scale_330k_runs"],
     [270000, 280000, 290000, 300000, 310000, 320000, 330000], "", ["mid_abstract_ntp_seed0", "mid_abstract_concept_seed0"]),
    # abstract x27, seed 0 continued from step 150,000 to 210,000
    (["binding_mid_abstract_scale_210k_runs"], [150000, 160000, 170000, 180000, 190000, 200000, 210000],
     "abstract_concept", ["mid_abstract_concept_seed0"]),
    # abstract x27, seed 0 continued from step 210,000 to 270,000
    (["binding_mid_abstract_scale_270k_runs"], [210000, 220000, 230000, 240000, 250000, 260000, 270000],
     "abstract_concept", ["mid_abstract_concept_seed0"]),
    # abstract: logits x1 and x27
    (["binding_mid_concept_runs", "binding_mid_abstract_scale_runs"], [2000, 5000, 10000, 20000, 30000], "abstract",
     ["mid_abstract_concept_seed0", "mid_abstract_concept_seed0 (binding_mid_abstract_scale_runs)"]),
    # abstract: logits x1 and x27 (run again from step 0) to 90,000
    (["binding_mid_concept_long_runs", "binding_mid_abstract_scale_long_runs"],
     [2000, 10000, 30000, 45000, 60000, 75000, 90000], "abstract_concept",
     ["mid_abstract_concept_seed0", "mid_abstract_concept_seed0 (binding_mid_abstract_scale_long_runs)"]),
    # abstract x27, seed 0 continued from step 90,000 to 150,000
    (["binding_mid_abstract_scale_longer_runs"], [90000, 100000, 110000, 120000, 130000, 140000, 150000],
     "abstract_concept", ["mid_abstract_concept_seed0"]),
    # abstract, seed 1: logits x1 and x27
    (["binding_mid_equal_steps_runs", "binding_mid_abstract_scale_seed1_runs"], [2000, 5000, 10000, 20000, 30000],
     "abstract_concept",
     ["mid_abstract_concept_seed1", "mid_abstract_concept_seed1 (binding_mid_abstract_scale_seed1_runs)"]),
])
def test_the_2400_entity_logit_scale_tables_are_computed_from_the_committed_runs(capsys, folders, steps, match,
                                                                                names, forward):
    """The concept runs with their loss's logits scaled, reverse (and, with --forward, atomic)
    concept MRR at the docs' steps, as in the docs."""
    rows = _readme_rows_at_steps(capsys, folders, steps, match, forward)
    assert [row.split("|")[1].strip() for row in rows[1:]] == names


@pytest.mark.parametrize("forward", [False, True])
def test_the_abstract_runs_counted_from_memorisation_table_is_computed_from_the_committed_runs(capsys, forward):
    """The abstract concept runs, logits x1 (seeds 0 and 1) and x27 (seed 0, to step 150,000), at
    equal distances after each one's forward step: each cell (reverse, and with ``forward`` atomic)
    is that run's value at its forward step plus the distance, read off the plain table at those
    absolute steps; the reverse table is the docs'."""
    folders = ["binding_mid_concept_long_runs", "binding_mid_equal_steps_runs", "binding_mid_abstract_scale_longer_runs"]
    after = [0, 10000, 20000, 30000, 34000]
    table = _script("binding_controls_table")
    results = ROOT / "papermill_runs" / "results"
    run_row = lambda: [[c.strip() for c in r.split("|")[1:-1]]
                       for r in capsys.readouterr().out.splitlines() if r.startswith("| mid_")]
    starts = []
    for folder in folders:
        table.at_steps([str(results / folder)], after, "abstract_concept", forward=forward, since_forward=True)
        [cells] = run_row()
        starts.append(int(cells[2].replace(",", "")))
        table.at_steps([str(results / folder)], [starts[-1] + k for k in after], "abstract_concept", forward=forward)
        [plain] = run_row()
        assert cells[3:-1] == plain[2:-1] and "-" not in plain[2:-1]
    assert starts == [45000, 37000, 116000]
    if not forward:
        rows = _readme_rows_at_steps(capsys, folders, after, "abstract_concept", since_forward=True)
        assert [row.split("|")[1].strip() for row in rows[1:]] == [
            "mid_abstract_concept_seed0", "mid_abstract_concept_seed1",
            "mid_abstract_concept_seed0 (binding_mid_abstract_scale_longer_runs)"]


def test_the_logit_scale_figures_draw_every_committed_run():
    import runpy
    figures = runpy.run_path(str(ROOT / "benchmarks" / "readme_figures.py"))
    last = {name: max(r["step"] for r in rows) for name, rows in figures["scale_curves"]().items()}
    assert last == {"surface ntp_seed0": 30000, "surface concept, logits x1_seed0": 90000,
                    "surface concept, logits x4_seed0": 50000, "surface concept, logits x27_seed0": 90000,
                    "surface concept, logits x27_seed1": 50000, "surface concept, logits x80_seed0": 30000,
                    "surface concept, logits x10_seed0": 30000, "surface concept, logits x10_seed1": 30000, "surface concept, logits x45_seed0": 30000}
    last = {name: max(r["step"] for r in rows) for name, rows in figures["abstract_scale_curves"]().items()}
    assert last == {"abstract ntp_seed0": 330000, "abstract ntp_seed1": 210000, "abstract ntp_seed2": 150000,
                    "abstract concept, logits x1_seed0": 90000, "abstract concept, logits x1_seed1": 90000,
                    "abstract concept, logits x27_seed0": 330000, "abstract concept, logits x27_seed1": 210000,
                    "abstract concept, logits x27_seed2": 150000}


@pytest.mark.parametrize("forward", [False, True])
def test_the_2400_entity_concept_tables_are_computed_from_the_committed_runs(capsys, forward):
    """Reverse (and, with --forward, atomic) concept MRR of the two 2,400-entity concept runs at
    steps 2,000-30,000, as in the docs."""
    rows = _readme_rows_at_steps(capsys, ["binding_mid_concept_runs"], [2000, 5000, 10000, 20000, 30000],
                                 forward=forward)
    assert [row.split("|")[1].strip() for row in rows[1:]] == ["mid_abstract_concept_seed0", "mid_concept_seed0"]


@pytest.mark.parametrize("forward", [False, True])
def test_the_600_entity_concept_tables_at_equal_steps_are_computed_from_the_committed_runs(capsys, forward):
    """Every concept run at 600 entities at steps 1,000-8,000 (forward: atomic concept MRR, which
    --forward shows for runs with no exact match), and the 30,000-step runs from step 8,000 on, as in
    the docs."""
    folders = ["binding_controls_runs", "binding_concept_width_runs", "binding_concept_depth_runs",
               "binding_concept_steps_runs"]
    rows = (_readme_rows_at_steps(capsys, folders, [1000, 2000, 4000, 8000], "concept", forward)
            + _readme_rows_at_steps(capsys, folders[-1:], [8000, 12000, 16000, 20000, 24000, 30000], "", forward))
    assert len(rows) == (1 + 12) + (1 + 2)
    kinds = {row.split("|")[2].strip() for row in rows if not row.startswith("| run |")}
    assert kinds == ({"atomic concept MRR"} if forward else {"concept"})


@pytest.mark.parametrize("forward, match, runs", [(False, "concept", 8), (False, "abstract_paired_ntp", 4),
                                                  (True, "concept", 8)])
def test_the_paired_tables_at_equal_steps_are_computed_from_the_committed_runs(capsys, forward, match, runs):
    """The paired runs with embedding dropout (binding_controls_paired) and without it
    (binding_controls_paired_embd0) side by side at steps 1,000-8,000, as in the docs."""
    rows = _readme_rows_at_steps(capsys, ["binding_controls_paired_runs", "binding_controls_paired_embd0_runs"],
                                 [1000, 2000, 4000, 8000], match, forward)
    assert len(rows) == 1 + runs
    assert sum("(binding_controls_paired_embd0_runs)" in row for row in rows) == runs // 2


def test_the_concept_figure_draws_every_committed_concept_run_at_600_entities():
    import runpy
    curves = runpy.run_path(str(ROOT / "benchmarks" / "readme_figures.py"))["concept_curves"]()
    assert sorted(curves) == sorted(
        ["surface 1+1, width 128_seed0", "surface 1+1, width 128_seed1", "surface 1+1, width 256_seed0",
         "surface 1+1, width 512_seed0", "surface 1+3, width 128_seed0", "surface 1+3, width 128_seed1",
         "surface 1+1, width 128, 30,000 steps_seed0", "abstract 1+1, width 128_seed0",
         "abstract 1+1, width 128_seed1", "abstract 1+1, width 256_seed0", "abstract 1+3, width 128_seed0",
         "abstract 1+1, width 128, 30,000 steps_seed0"])
    last = {name: max(r["step"] for r in rows) for name, rows in curves.items()}
    assert all(step == (30000 if "30,000" in name else 8000) for name, step in last.items()), last


def test_the_paired_controls_are_binding_controls_runs_with_only_the_data_layout_or_embedding_dropout_changed(
        tmp_path):
    """binding_controls_paired.yaml: binding_controls.yaml's abstract and surface ntp and concept runs
    (no position embeddings), each seed, with only the data changed, to the tiny presets laid out by
    the paper's generator (tiny_paired: tiny with only ``structure`` "pairing");
    binding_controls_paired_embd0.yaml: three of those settings with only ``embd_dropout`` 0.0 added."""
    from dataclasses import replace

    from jepa_kit.datagen import PRESETS
    controls, _ = _planned("binding_controls.yaml", tmp_path / "c")
    paired, _ = _planned("binding_controls_paired.yaml", tmp_path / "p")
    embd0, _ = _planned("binding_controls_paired_embd0.yaml", tmp_path / "e")
    key = lambda p, data=None: (data or Path(p["data"]).name, p["objective"], p["seed"])
    base = {key(p, Path(p["data"]).name + "_paired"): p for p in controls
            if not p["pos_emb"] and p["objective"] in ("ntp", "concept")}
    assert sorted(map(key, paired)) == sorted(base) and len(paired) == 8
    for p in paired:
        assert _changed(p, base[key(p)]) == {"data": p["data"]}
        name = Path(p["data"]).name
        assert PRESETS[name] == replace(PRESETS[name.replace("_paired", "")], structure="pairing")
    paired = {key(p): p for p in paired}
    assert sorted(map(key, embd0)) == sorted(k for k in paired if "abstract" in k[0] or k[1] == "concept")
    for p in embd0:
        assert _changed(p, paired[key(p)]) == {"embd_dropout": 0.0} and p["dropout"] == 0.1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_runners_worker_checkpoints_and_stops_rather_than_train_on_orphaned(tiny_data, tmp_path):
    """Seen 2026-12-06: killing benchmarks/run_binding_controls.py left its worker training on,
    orphaned, writing rows and a checkpoint into a run directory that a restarted runner then
    resumed. Now the worker gets SIGTERM when the runner dies (here SIGKILL, which the runner
    cannot catch): its run checkpoints, says "preempted", and the worker ends."""
    import json
    import os
    import signal
    import subprocess
    import time

    sweep = tmp_path / "orphan.yaml"
    sweep.write_text(f"name: orphan\npreset: tiny\nbase: {{n_layer: 1, n_embd: 32, n_head: 2, steps: 1000000, "
                     f"eval_every: 0, ckpt_every: 1000000, data: {tiny_data}}}\nruns:\n  - {{objective: ntp}}\n")
    status = tmp_path / "out" / f"{tiny_data.name}_ntp_seed0" / "status.json"
    log = tmp_path / "runner.log"  # a file, not a pipe: an orphaned worker would hold a pipe open
    with log.open("wb") as out:
        runner = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "run_binding_controls.py"),
                                   "--sweep", str(sweep), "--jobs", "1", "--out", str(tmp_path / "out")],
                                  cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    def wait_for(ok, what, seconds=180, runner_alive=True):
        deadline = time.monotonic() + seconds
        while not ok():
            assert time.monotonic() < deadline and (not runner_alive or runner.poll() is None), (
                f"{what}: {log.read_text()[-2000:]}")
            time.sleep(0.2)

    def state():
        try:
            return json.loads(status.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def worker_gone():
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return True
        try:  # a zombie waiting for its (dead) parent's reaper counts as gone
            with open(f"/proc/{worker}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:  # it ended between the two looks
            return True

    try:
        wait_for(lambda: (now := state()).get("state") == "running" and now.get("step", 0) >= 20,
                 "the run never started")
        worker = state()["pid"]
        assert worker != runner.pid
        runner.kill()
        runner.wait(timeout=30)
        wait_for(worker_gone, "the worker trained on after its runner was killed", seconds=120, runner_alive=False)
    finally:
        runner.kill()
        if "worker" in locals() and not worker_gone():
            os.kill(worker, signal.SIGKILL)
    final = state()
    assert final["state"] == "preempted", final
    assert (status.parent / "checkpoints" / f"step_{final['step']:08d}").is_dir()


def test_ntp_seed_0_trained_again_repeats_the_committed_run():
    """Prediction AA1 (binding_scale_data1_stopgrad_60k.yaml): the second draw's ntp seed 0, trained
    again from step 0 (same config but ``steps``, same torch, one CPU thread), logs exactly the
    committed run's numbers up to step 30,000, where that run stopped: every training log line's
    loss and every evaluation (500 queries, steps 1,000-29,000), to the last digit."""
    from jepa_kit.collect import read_metrics
    results = ROOT / "papermill_runs" / "results"

    def logs(folder):
        rows = read_metrics(results / folder / "small_abstract_data1_ntp_seed0")
        train = {r["step"]: r["loss"] for r in rows if r["kind"] == "train" and r["step"] <= 30000}
        evals = {r["step"]: r["splits"] for r in rows if r["kind"] == "eval" and r["step"] < 30000}
        return train, evals

    first, again = logs("binding_scale_data1_runs"), logs("binding_scale_data1_seed0_end_runs")
    assert len(first[0]) == 600 and len(first[1]) == 29
    assert again == first
