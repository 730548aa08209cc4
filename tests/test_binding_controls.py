"""The README's positive-control tables are what the committed runs say; the runner names runs apart."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("folder, runs, chance", [
    ("binding_controls_runs", 12, "chance MRR (600 entities, ties count half): 0.0116"),  # 6 settings x 2 seeds
    ("binding_scale_runs", 4, "chance MRR (8,000 entities, ties count half): 0.0012"),
])
def test_the_readme_table_is_computed_from_the_committed_runs(capsys, folder, runs, chance):
    _script("binding_controls_table").main(str(ROOT / "papermill_runs" / "results" / folder))
    out = capsys.readouterr().out
    assert chance in out  # chance is the run's own data's entity count
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + runs
    readme = (ROOT / "README.md").read_text()
    for row in rows:
        assert row in readme, row


def test_run_names_keep_the_committed_names_and_name_other_data_after_its_folder():
    name_of = _script("run_binding_controls").name_of
    run = lambda data, objective="ntp", pos_emb=False: {"data": data, "objective": objective, "pos_emb": pos_emb, "seed": 1}
    assert name_of(run("data/tiny_abstract", pos_emb=True)) == "abstract_ntp_pos_seed1"
    assert name_of(run("data/tiny", "jepa")) == "surface_jepa_seed1"
    assert name_of(run("data/small_abstract", "concept")) == "small_abstract_concept_seed1"
    assert name_of(run("data/small_abstract", pos_emb=True)) == "small_abstract_ntp_pos_seed1"
    assert name_of(run("data/small", pos_emb=True)) == "small_ntp_seed1"


def _planned(sweep_file: str, out):
    """The sweep, its planned runs' params and the keys the runner names them by."""
    from jepa_kit import sweeps
    sweep = sweeps.load_sweep(ROOT / "papermill_runs" / sweep_file)
    planned = sweeps.plan(sweep.runs, out, sweep.preset, sweep.name)
    return [r.params for r in planned], _script("run_binding_controls").varied(sweep, planned)


def test_run_names_write_out_what_else_differs_between_a_sweeps_runs(tmp_path):
    script = _script("run_binding_controls")
    names = {}
    for sweep_file in ("binding_controls.yaml", "binding_scale.yaml"):
        planned, keys = _planned(sweep_file, tmp_path)
        names[sweep_file] = sorted(script.name_of(p, keys) for p in planned)
        assert len(set(names[sweep_file])) == len(planned)
    assert names["binding_controls.yaml"] == sorted(  # the committed runs' names
        p.name for p in (ROOT / "papermill_runs" / "results" / "binding_controls_runs").iterdir() if p.is_dir())
    assert names["binding_scale.yaml"] == [  # the committed runs' names
        p.name for p in sorted((ROOT / "papermill_runs" / "results" / "binding_scale_runs").iterdir()) if p.is_dir()]
    assert names["binding_scale.yaml"] == ["small_abstract_concept_weight_decay=0.1_seed0",
                                           "small_abstract_ntp_weight_decay=0.1_seed0",
                                           "small_abstract_ntp_weight_decay=0.1_seed1",
                                           "small_abstract_ntp_weight_decay=1.0_seed0"]


def test_the_committed_8000_entity_runs_are_the_sweeps_configs(tmp_path):
    """They were trained with `jepa-kit train` flags: every TrainConfig field but where the data,
    the run and the progress output went is what binding_scale.yaml plans, and the data is the
    small_abstract preset's (its fingerprint)."""
    import dataclasses
    import json

    from jepa_kit.config import TrainConfig
    from jepa_kit.datagen import generate
    from jepa_kit.data import fingerprint
    script = _script("run_binding_controls")
    planned, keys = _planned("binding_scale.yaml", tmp_path)
    data = fingerprint(generate("small_abstract", tmp_path / "small_abstract", seed=0))
    for params in planned:
        run = ROOT / "papermill_runs" / "results" / "binding_scale_runs" / script.name_of(params, keys)
        stored = json.loads((run / "config.json").read_text())
        want = dataclasses.asdict(TrainConfig.from_dict({**params, "out": str(tmp_path)}))
        assert {k: v for k, v in stored["config"].items() if k not in ("data", "out", "progress")} == \
               {k: v for k, v in want.items() if k not in ("data", "out", "progress")}, run.name
        assert stored["data_fingerprint"] == data, run.name
        assert json.loads((run / "status.json").read_text())["state"] == "finished", run.name
