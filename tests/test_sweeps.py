"""Sweep files: expansion, presets, run naming, the full TrainConfig of every run, `jepa-kit params`."""
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from jepa_kit import cli, sweeps

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_expand_combines_runs_vary_and_grid_and_drops_duplicates():
    spec = {"base": {"objective": "jepa"}, "runs": [{"lr": 1e-3}, {"lr": 1e-3}, {"lr": 3e-3}],
            "vary": {"k_pred": [0, 2], "lambda_jepa": [2.0]}, "grid": {"seed": [0, 1]}}
    out = sweeps.expand(spec)
    # 2 distinct runs x 3 one-factor variants x 2 seeds
    assert len(out) == 12
    assert out[0] == {"objective": "jepa", "lr": 1e-3, "k_pred": 0, "seed": 0}
    assert {"objective": "jepa", "lr": 3e-3, "lambda_jepa": 2.0, "seed": 1} in out
    assert not any("k_pred" in r and "lambda_jepa" in r for r in out), "vary changes one factor at a time"


def test_presets_section_applies_under_base():
    spec = {"presets": {"tiny": {"data": "d/tiny", "lr": 1.0}, "paper": {"data": "d/paper"}}, "base": {"lr": 2.0}}
    assert sweeps.expand(spec, "tiny") == [{"data": "d/tiny", "lr": 2.0}]
    assert sweeps.expand(spec, "paper") == [{"data": "d/paper", "lr": 2.0}]


def test_malformed_sections_are_named():
    with pytest.raises(sweeps.SweepError, match="unknown top-level key 'bsae'"):
        sweeps.expand({"bsae": {}})
    with pytest.raises(sweeps.SweepError, match=r"vary\.k_pred must be a non-empty list"):
        sweeps.expand({"vary": {"k_pred": 2}})
    with pytest.raises(sweeps.SweepError, match="'seed' is in both 'vary' and 'grid'"):
        sweeps.expand({"vary": {"seed": [0]}, "grid": {"seed": [1]}})


def test_ablations_file_is_one_factor_at_a_time_with_three_seeds(tmp_path):
    for preset, model in (("tiny", "tiny"), ("paper", "paper")):
        sweep = sweeps.load_sweep(ROOT / "papermill_runs" / "ablations.yaml", preset=preset)
        planned = sweeps.plan(sweep.runs, tmp_path, sweep.preset, sweep.name)
        # the default appears in every factor's list but runs once: (1 + 3 + 3 + 3 + 2) x 3 seeds
        assert len(planned) == 36
        names = [p.name for p in planned]
        assert len(set(names)) == 36
        assert {"default_seed=0", "k_pred=0_seed=2", "jepa_metric=infonce_seed=1", "lambda_jepa=0.5_seed=0",
                "loss_dropout=0.75_seed=2"} <= set(names)
        for p in planned:
            assert re.fullmatch(r"[A-Za-z0-9._=+-]+", p.name)
            assert p.run_dir == tmp_path / "ablations" / p.name
            assert p.params["out"] == str(p.run_dir)
            assert p.params["model"] == model and p.params["data"].endswith(f"data/{preset}")
            varied = [k for k, d in (("k_pred", 1), ("jepa_metric", "cosine"), ("lambda_jepa", 1.0), ("loss_dropout", 0.0))
                      if p.params[k] != d]
            assert len(varied) <= 1
        assert {p.params["seed"] for p in planned} == {0, 1, 2}


def test_every_papermill_runs_file_expands_for_both_presets(tmp_path):
    # the baselines run the three seeds the ablation study compares against
    objectives = {"baseline": ("ntp", [0, 1, 2]), "jepa": ("jepa", [0]), "reverse_aug": ("reverse_aug", [0, 1, 2])}
    for name, (objective, seeds) in objectives.items():
        for preset in ("tiny", "paper"):
            sweep = sweeps.load_sweep(ROOT / "papermill_runs" / f"{name}.yaml", preset=preset)
            planned = sweeps.plan(sweep.runs, tmp_path, sweep.preset, sweep.name)
            assert [r.params["objective"] for r in planned] == [objective] * len(seeds)
            assert [r.params["seed"] for r in planned] == seeds
    tiny = sweeps.load_sweep(ROOT / "papermill_runs" / "jepa.yaml")
    assert tiny.preset == "tiny"


def test_names_come_from_what_sets_runs_apart():
    names = sweeps.run_names([{"objective": "ntp"}, {"objective": "jepa"}, {"objective": "reverse_aug"}])
    assert names == ["objective=ntp", "objective=jepa", "objective=reverse_aug"]
    assert sweeps.run_names([{"seed": 0}, {"seed": 1}]) == ["default_seed=0", "default_seed=1"]
    assert sweeps.run_names([{}]) == ["default"]
    # the most common value is the reference; only the odd one out is named, and its name is file- and shell-safe
    # a varying data directory is always named, by its last folder; nothing of a path reaches a shell word
    assert sweeps.run_names([{"data": "c", "lr": 1}, {"data": "c", "lr": 2}, {"data": "a/b; rm -rf ~", "lr": 1}]) == [
        "data=c", "data=c_lr=2", "data=b-rm--rf"]


def test_identical_runs_are_planned_once_and_relative_data_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    planned = sweeps.plan([{"k_pred": 1, "data": "d/tiny"}, {"data": "d/tiny"}], "out", preset="tiny")
    assert len(planned) == 1, "k_pred=1 is the default: the same run twice"
    assert planned[0].params["data"] == str(tmp_path / "d" / "tiny")
    assert planned[0].run_dir == tmp_path / "out" / "default"


def test_unknown_field_and_bad_value_name_the_file(tmp_path):
    bad = write(tmp_path / "bad.yaml", "base: {k: 2}\n")
    with pytest.raises(sweeps.SweepError, match=r"bad\.yaml: unknown parameter 'k'.*k_pred"):
        sweeps.plan(sweeps.load_sweep(bad).runs, tmp_path, where=str(bad))
    neg = write(tmp_path / "neg.yaml", "preset: tiny\nbase: {lambda_jepa: -1}\n")
    with pytest.raises(sweeps.SweepError, match=r"neg\.yaml.*lambda_jepa"):
        sweep = sweeps.load_sweep(neg)
        sweeps.plan(sweep.runs, tmp_path, sweep.preset, where=sweep.source)
    with pytest.raises(sweeps.SweepError, match="unknown preset 'huge'"):
        sweeps.load_sweep(ROOT / "papermill_runs" / "jepa.yaml", preset="huge")
    with pytest.raises(sweeps.SweepError, match="'out' is chosen by the sweep"):
        sweeps.plan([{"out": "/x"}], tmp_path)


def test_yaml_is_read_with_a_safe_loader(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = write(tmp_path / "evil.yaml", """\
        base:
          data: !!python/object/apply:os.system ["touch PWNED"]
        """)
    with pytest.raises(sweeps.SweepError, match="not valid YAML"):
        sweeps.load_sweep(evil)
    assert not (tmp_path / "PWNED").exists()


def test_notebook_config_reads_the_parameters_from_a_namespace():
    namespace = sweeps.resolve_params({"objective": "ntp", "k_pred": 2}, preset="tiny")
    config = sweeps.notebook_config({**namespace, "unrelated": 1})
    assert config.objective == "ntp" and config.k_pred == 2 and config.model == "tiny"
    del namespace["k_pred"]
    with pytest.raises(sweeps.SweepError, match="lacks TrainConfig field.*k_pred"):
        sweeps.notebook_config(namespace)


def test_sweep_list_prints_one_line_per_run(tmp_path, capsys):
    assert cli.main(["sweep", str(ROOT / "papermill_runs" / "baseline.yaml"), "--list", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"default_seed={s}\t{tmp_path / 'baseline' / f'default_seed={s}'}" for s in range(3)]
    assert cli.main(["sweep", str(tmp_path / "missing.yaml"), "--list"]) == 2
    assert "missing.yaml: file not found" in capsys.readouterr().err


def test_params_command_resolves_one_run(tmp_path, capsys):
    rc = cli.main(["params", str(ROOT / "papermill_runs" / "ablations.yaml"), "--index", "4", "--out", str(tmp_path / "r")])
    params = yaml.safe_load(capsys.readouterr().out)
    assert rc == 0
    assert params["out"] == str(tmp_path / "r") and params["model"] == "tiny"
    assert params["seed"] == 1 and params["k_pred"] == 1  # run 4: the default setting, seed 1
    flat = write(tmp_path / "flat.yaml", "preset: tiny\nlr: 3.0e-3\nobjective: ntp\n")
    assert cli.main(["params", str(flat), "--out", str(tmp_path / "f")]) == 0
    params = yaml.safe_load(capsys.readouterr().out)
    assert params["lr"] == 3e-3 and params["objective"] == "ntp" and params["model"] == "tiny"
    rc = cli.main(["params", str(ROOT / "papermill_runs" / "jepa.yaml"), "--index", "5", "--out", str(tmp_path / "x")])
    assert rc == 2 and "run index 5 out of range (the sweep has 1 runs)" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["jepa_kit.sweeps", "jepa_kit.launch", "jepa_kit.collect", "jepa_kit.analysis",
                                    "jepa_kit.cli"])
def test_login_node_modules_do_not_import_torch(module):
    # `jepa-kit runs` and `jepa-kit sweep --slurm` run on login nodes: they must not pay for importing torch
    code = f"import sys, {module}; sys.exit('torch' in sys.modules or 'pandas' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_binding_control_files_expand_and_list(tmp_path, capsys):
    """The binding paper's positive controls: the CPU study and the paper-scale reproduction."""
    controls = sweeps.load_sweep(ROOT / "papermill_runs" / "binding_controls.yaml")
    planned = sweeps.plan(controls.runs, tmp_path, controls.preset, controls.name)
    assert len(planned) == 12 and len({p.name for p in planned}) == 12  # 6 runs x 2 seeds
    setting = lambda p: (Path(p.params["data"]).name, p.params["objective"], p.params["pos_emb"])
    assert sorted({setting(p) for p in planned}) == [
        ("tiny", "concept", False), ("tiny", "jepa", False), ("tiny", "ntp", False),
        ("tiny_abstract", "concept", False), ("tiny_abstract", "ntp", False), ("tiny_abstract", "ntp", True)]
    for p in planned:
        params = p.params
        assert params["seed"] in (0, 1) and params["n_layer"] == 2 and params["dropout"] == 0.1
        assert params["eval_every"] <= 250, "often enough to draw the test-MRR curve"
        assert params["best_split"] == "atomic", "settings are chosen on the forward split only"
        concept = params["objective"] == "concept"
        assert params["best_metric"] == ("concept_mrr" if concept else "exact_match")
        if concept:
            assert params["n_recognition"] == 1  # 1 + 1 blocks, as the paper's
    paper = sweeps.load_sweep(ROOT / "papermill_runs" / "binding_paper.yaml")
    planned = sweeps.plan(paper.runs, tmp_path, paper.preset, paper.name)
    assert sorted(setting(p) for p in planned) == [("paper", "concept", False), ("paper", "ntp", False),
                                                    ("paper_abstract", "ntp", False)]
    for p in planned:
        params = p.params
        assert (params["batch_size"], params["lr"], params["schedule"], params["warmup_steps"]) == (1024, 1e-4, "constant", 2000)
        assert params["dropout"] == 0.1 and params["keep_last"] == 1
        assert params["best_split"] == "test", "the paper's selection on the test split, labelled optimistic"
        concept = params["objective"] == "concept"
        assert params["best_metric"] == ("concept_mrr" if concept else "entity_mrr")
        if concept:
            assert (params["n_layer"], params["n_recognition"]) == (2, 1)
    assert "time" in paper.slurm
    from jepa_kit import launch
    script = launch.slurm_dry_run(paper, tmp_path)
    assert "#SBATCH --requeue" in script and f"#SBATCH --time={paper.slurm['time']}" in script
    scale = sweeps.load_sweep(ROOT / "papermill_runs" / "binding_scale.yaml")
    planned = sweeps.plan(scale.runs, tmp_path, scale.preset, scale.name)
    assert sorted((*setting(p), p.params["weight_decay"], p.params["seed"]) for p in planned) == [
        ("small_abstract", "concept", False, 0.1, 0), ("small_abstract", "ntp", False, 0.1, 0),
        ("small_abstract", "ntp", False, 0.1, 1), ("small_abstract", "ntp", False, 0.1, 2),
        ("small_abstract", "ntp", False, 1.0, 0)]
    for p in planned:  # binding_controls.yaml's models on 8,000 entities, chosen on the forward split
        params = p.params
        assert (params["n_layer"], params["n_embd"], params["dropout"]) == (2, 128, 0.1)
        assert params["best_split"] == "atomic"
        assert params["best_metric"] == ("concept_mrr" if params["objective"] == "concept" else "exact_match")
    for name, n in (("binding_controls", 12), ("binding_paper", 3), ("binding_scale", 5), ("binding_mid", 4),
                    ("binding_scale_data1", 2), ("binding_midlarge", 4)):
        assert cli.main(["sweep", str(ROOT / "papermill_runs" / f"{name}.yaml"), "--list", "--out", str(tmp_path)]) == 0
        assert len(capsys.readouterr().out.splitlines()) == n
