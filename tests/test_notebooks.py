"""Every notebook runs under papermill with tiny parameters; committed notebooks carry no outputs.

The training notebook runs through `jepa-kit sweep FILE --local` (four papermill executions, one
failing on purpose, one of the concept objective); its run directories then feed the analysis notebook.
"""
import ast
import json
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from jepa_kit import cli, launch, viz

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# the smallest training that still goes through every notebook cell: 6 steps, 1 layer, 32 wide
TINY_RUN = dict(n_layer=1, n_embd=32, n_head=2, steps=6, batch_size=32, log_every=2, eval_every=3,
                eval_max_items=20, ckpt_every=3)
# the concept objective in one block: W = 0 recognition blocks (a concept is the token embedding), 1 concept block
CONCEPT_RUN = dict(objective="concept", n_recognition=0, best_metric="concept_mrr")
CONCEPT_NAME = "objective=concept_best_metric=concept_mrr_n_recognition=0"


def execute(name: str, out: Path, **parameters) -> nbformat.NotebookNode:
    import papermill as pm

    pm.execute_notebook(str(ROOT / "notebooks" / name), str(out), parameters=parameters,
                        kernel_name=launch.default_kernel(), cwd=str(ROOT / "notebooks"), progress_bar=False)
    return nbformat.read(out, as_version=4)


def outputs(nb) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    return cells[0]


# -- the committed notebooks ---------------------------------------------------------------------

def test_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == ["01_attention_masks.ipynb", "02_train.ipynb", "03_reverse_accuracy.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.get("outputs") == [], f"{path.name} cell {i} has outputs: clear them before committing"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"
    parameters_cell(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_train_notebook_parameters_are_typed_commented_and_from_the_preset():
    from jepa_kit import notebook_params
    from jepa_kit.config import TrainConfig

    nb = nbformat.read(ROOT / "notebooks" / "02_train.ipynb", as_version=4)
    source = parameters_cell(nb).source
    assert source == notebook_params.parameters_cell_source(), \
        "02_train.ipynb's parameters cell is written by jepa_kit.notebook_params.parameters_cell_source(): paste its output"
    tree = ast.parse(source)
    assigned = {}
    for node in tree.body:
        assert isinstance(node, ast.AnnAssign), "only `name: type = literal  # help` lines"
        assigned[node.target.id] = ast.literal_eval(node.value)
    assert list(assigned) == ["preset", *TrainConfig.field_names()]
    # every field but the notebook's own locations is None: "from the preset"
    assert {k for k, v in assigned.items() if v is not None} == {"preset", "data", "out"}
    # what papermill --help-notebook shows: a type and a help line for every parameter
    from papermill.translators import PythonTranslator
    inspected = PythonTranslator.inspect(parameters_cell(nb))
    assert [p.name for p in inspected] == list(assigned)
    assert all(p.inferred_type_name not in ("None", "") and p.help for p in inspected), \
        [p.name for p in inspected if p.inferred_type_name in ("None", "") or not p.help]
    # as committed: the tiny preset, in minutes on a CPU
    config = notebook_params.notebook_config(assigned)
    assert config == TrainConfig.from_preset("tiny", data="../data/tiny", out="../runs/02_train")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_cell_rebinds_or_deletes_a_parameter(path):
    """So that re-running any cell (the config cell of 02 above all) sees the parameters as set."""
    nb = nbformat.read(path, as_version=4)
    params = {n.target.id if isinstance(n, ast.AnnAssign) else n.targets[0].id
              for n in ast.parse(parameters_cell(nb).source).body}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "parameters" in cell.metadata.get("tags", []):
            continue
        for node in ast.walk(ast.parse(cell.source)):
            bound = {t.id for t in ast.walk(node) if isinstance(t, ast.Name) and isinstance(t.ctx, (ast.Store, ast.Del))}
            assert not bound & params, f"{path.name} cell {i} rebinds or deletes parameter(s) {bound & params}"


def test_notebook_parameters_apply_the_preset_then_the_set_values():
    from jepa_kit import notebook_params
    from jepa_kit.config import TrainConfig

    names = {n: None for n in notebook_params.parameter_names()}
    gpu = notebook_params.notebook_config({**names, "preset": "gpu", "lr": 3e-4, "data": "d"})
    assert gpu == TrainConfig.from_preset("gpu", lr=3e-4, data="d")
    assert gpu.batch_size == 1024 and gpu.compile, "a None parameter does not override the preset"
    # a notebook's own globals (modules, functions, IPython's) are not parameters; a stray literal is
    import math
    notebook_params.notebook_config({**names, "preset": "tiny", "math": math, "In": [], "_": 3, "f": print})
    from jepa_kit.config import ConfigError
    with pytest.raises(ConfigError, match=r"unknown notebook parameter 'lamda_jepa' \(did you mean 'lambda_jepa'\?\); "
                                          r"valid names are: preset, data, out, model"):
        notebook_params.notebook_config({**names, "preset": "tiny", "lamda_jepa": 2})
    # live, re-running the config cell after later cells (which leave e.g. `rows`, a list) still works
    notebook_params.notebook_config({**names, "preset": "tiny", "rows": [{}]}, strict=False)


def test_an_unknown_injected_parameter_fails_the_run(tmp_path):
    from papermill.exceptions import PapermillExecutionError

    with pytest.raises(PapermillExecutionError) as err:
        execute("02_train.ipynb", tmp_path / "02.ipynb", lamda_jepa=2.0, steps=2)
    message = str(err.value)
    assert "unknown notebook parameter 'lamda_jepa' (did you mean 'lambda_jepa'?)" in message
    assert "valid names are: preset, data, out" in message
    nb = nbformat.read(tmp_path / "02.ipynb", as_version=4)
    assert not any("[jepa_kit.train]" in json.dumps(o) for o in outputs(nb)), "it fails before training"


@pytest.mark.parametrize("name", ["01_attention_masks.ipynb", "03_reverse_accuracy.ipynb"])
def test_the_other_notebooks_check_their_parameter_names(name):
    """01 and 03 name their parameters once more in their check (a notebook cannot read its own
    cells): the two lists must agree, and the check runs before anything else uses them."""
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    params = [n.target.id for n in ast.parse(parameters_cell(nb).source).body]
    assert params, "annotated parameters (papermill --help-notebook shows their types)"
    calls = [(i, node) for i, c in enumerate(nb.cells) if c.cell_type == "code"
             for node in ast.walk(ast.parse(c.source))
             if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "check_parameters"]
    assert len(calls) == 1
    i, call = calls[0]
    assert ast.literal_eval(call.args[1]) == params
    first_use = min(j for j, c in enumerate(nb.cells) if j > nb.cells.index(parameters_cell(nb)) and c.cell_type == "code")
    assert i == first_use, "the first code cell after the parameters"


def test_a_misspelt_parameter_fails_the_analysis_notebook(tmp_path):
    from papermill.exceptions import PapermillExecutionError

    with pytest.raises(PapermillExecutionError) as err:
        execute("03_reverse_accuracy.ipynb", tmp_path / "03.ipynb", runs_dri="x")
    assert "unknown notebook parameter 'runs_dri' (did you mean 'runs_dir'?)" in str(err.value)
    assert "valid names are: runs_dir, metric, compare_on, log_x, seeds" in str(err.value)


def _size_check(path: Path):
    nb = nbformat.read(path, as_version=4)
    assert path.stat().st_size < 1_000_000, f"{path.name} is {path.stat().st_size / 1e6:.1f} MB executed"
    assert len(json.dumps(nb.metadata.get("widgets", {}))) < 100_000, "no FigureWidget state (it carries plotly.js)"
    assert not any("cdn.plot.ly" not in json.dumps(o) and "plotly.js v" in json.dumps(o) for o in outputs(nb)), \
        "plotly.js is not embedded in a headless notebook"


# -- 01: the mask notebook -----------------------------------------------------------------------

def test_mask_notebook_runs_and_its_html_shows_the_static_figure(tmp_path, tiny_data):
    nb = execute("01_attention_masks.ipynb", tmp_path / "01.ipynb", data_dir=str(tiny_data), k=2, index=3)
    figures = [o for o in outputs(nb) if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert figures, "the static mask figure is a plotly output"
    fig = figures[0]["data"]["application/vnd.plotly.v1+json"]
    assert len(fig["data"][0]["z"]) == 6 + 2 + 6  # k = 2 reached the notebook
    assert [s["label"] for s in fig["layout"]["sliders"][0]["steps"]] == ["0", "1", "2", "3", "4"]
    # headless, the live explorer is its figure, static: a widget would be blank in exported HTML
    assert not [o for o in outputs(nb) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert sum("max |&Delta;h|" in json.dumps(o) for o in outputs(nb)) == 1, "the explorer's check line"
    assert len(figures) == 3, "the slider figure, the explorer's, the concept objective's"
    _size_check(tmp_path / "01.ipynb")
    table = [o for o in outputs(nb) if "text/plain" in o.get("data", {}) and "h_packed - h_separate" in o["data"]["text/plain"]]
    from jepa_kit.attention import ATTN_IMPLEMENTATIONS
    # one row per implementation; a column whose values are all exactly 0 prints as "0.0" (some CPUs)
    rows = [line.split() for line in table[0]["data"]["text/plain"].splitlines()]
    numbers = [float(x) for r in rows if r and r[0] in ATTN_IMPLEMENTATIONS for x in r[1:]]
    assert len(numbers) == 10 and max(numbers) < 1e-4  # packed == separate for 2 implementations x 5 k

    from nbconvert import HTMLExporter

    html, _ = HTMLExporter().from_notebook_node(nb)
    # the page loads plotly.js from its CDN (not 3.5 MB in every executed notebook); inline_plotly_js
    # makes it readable offline, with plotly.js itself in the page, and the figure is drawn from it
    assert "cdn.plot.ly" in html and "Plotly.newPlot" in html
    offline = viz.inline_plotly_js(html)
    assert "plotly.js v" in offline and '<script charset="utf-8" src="https://cdn.plot.ly' not in offline
    assert "k (PRED tokens) = " in html
    assert "&amp;lt;PRED&amp;gt;" in html or "&lt;PRED&gt;" in html  # token names, escaped for plotly
    # the concept objective's two patterns: 4 patches of 2 tokens, each alone, then the 4 concepts
    from jepa_kit.masks import block_causal_allowed
    concept = [f["data"]["application/vnd.plotly.v1+json"] for f in figures
               if "concept objective" in f["data"]["application/vnd.plotly.v1+json"]["layout"]["title"]["text"]]
    assert len(concept) == 1
    assert concept[0]["data"][0]["z"] == block_causal_allowed((2, 2, 2, 2)).int().tolist()
    assert concept[0]["data"][1]["z"] == block_causal_allowed((4,)).int().tolist()


# -- 02 through `jepa-kit sweep --local`, then 03 on its runs ---------------------------------------

@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    from jepa_kit.datagen import generate

    tmp = tmp_path_factory.mktemp("sweep")
    data = generate("tiny", tmp / "data", seed=0)
    sweep = tmp / "local.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "local", "preset": "tiny", "base": {"data": str(data), **TINY_RUN},
        # the first run fails inside the notebook (batch larger than the data); the others must still run
        "runs": [{"objective": "ntp", "batch_size": 10**6}, {"objective": "jepa"}, {"objective": "reverse_aug"},
                 CONCEPT_RUN],
    }))
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli.main(["sweep", str(sweep), "--local", "--out", str(tmp / "out")])
    return rc, buf.getvalue(), tmp / "out" / "local"


def test_local_sweep_reports_the_failed_run_and_runs_the_others(local_sweep):
    rc, out, folder = local_sweep
    assert rc == 1, "a failed run makes the exit code non-zero"
    assert re.search(r"\[1/4\] .*FAILED after .* cell \d+: ConfigError: batch_size 1000000 is larger", out), out
    assert "[2/4] objective=jepa: finished" in out and "[3/4] objective=reverse_aug: finished" in out
    assert f"[4/4] {CONCEPT_NAME}: finished" in out
    finished = sorted(p.name for p in folder.iterdir() if (p / "results.json").exists())
    assert finished == sorted([CONCEPT_NAME, "objective=jepa", "objective=reverse_aug"])


def test_local_sweep_collects_one_table(local_sweep):
    import pandas as pd

    _, out, folder = local_sweep
    table = pd.read_csv(folder / "results.csv")
    assert f"collected 3 runs -> {folder / 'results.csv'}" in out
    assert sorted(table["run"]) == sorted([CONCEPT_NAME, "objective=jepa", "objective=reverse_aug"])
    assert set(table["state"]) == {"finished"} and set(table["step"]) == {6}
    tokens = table[table["objective"] != "concept"]
    for col in ("atomic.exact_match", "test.exact_match", "atomic.entity_mrr", "test.entity_mrr"):
        assert tokens[col].between(0, 1).all()
    concept = table[table["objective"] == "concept"].iloc[0]
    assert 0 < concept["test.concept_mrr"] <= 1 and concept["test.mrr"] == concept["test.concept_mrr"]
    assert pd.isna(concept["test.exact_match"]) and pd.isna(concept["test.entity_mrr"]), "no token metrics"
    assert (tokens["test.mrr"] == tokens["test.entity_mrr"]).all()
    assert set(table["entity_tokens"]) == {2} and set(table["n_entities"]) == {600}
    assert dict(zip(table["run"], table["note"].fillna(""))) == {"objective=jepa": "", CONCEPT_NAME: "",
                                                                  "objective=reverse_aug": "trains on test facts"}


def test_train_notebook_output_has_its_figures_and_run_directory(local_sweep):
    _, _, folder = local_sweep
    nb = nbformat.read(folder / "objective=jepa.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    assert injected and "objective = \"jepa\"" in injected[0].source
    figs = [o["data"]["application/vnd.plotly.v1+json"] for o in outputs(nb)
            if "application/vnd.plotly.v1+json" in o.get("data", {})]
    names = [{t.get("name") for t in f["data"]} for f in figs]
    assert {"NTP", "JEPA"} <= names[0], "loss curves"
    assert any("test (reverse, never seen)" in n for n in names[1:]), "per-split evaluation over steps"
    # the training log is ordinary output, on stdout; nothing of it only on stderr
    streams = [o for o in outputs(nb) if o.get("output_type") == "stream"]
    assert any("[jepa_kit.train] step 6/6" in o["text"] for o in streams if o["name"] == "stdout")
    assert not [o["text"] for o in streams if o["name"] == "stderr" and "[jepa_kit.train]" in o["text"]]
    assert names[0] >= {"NTP", "JEPA"} and figs[0]["layout"]["yaxis"]["type"] == "log", "JEPA's ~0.003 visible"
    titles = [f["layout"]["title"]["text"] for f in figs]
    assert sum("training loss" in t for t in titles) == 1, f"one loss chart (the run's history), not two: {titles}"
    _size_check(folder / "objective=jepa.ipynb")
    run = folder / "objective=jepa"
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in line]
    assert [e["step"] for e in evals][:2] == [3, 6]


def test_train_notebook_trains_a_concept_run_through_its_parameters(local_sweep):
    _, _, folder = local_sweep
    nb = nbformat.read(folder / f"{CONCEPT_NAME}.ipynb", as_version=4)
    figs = [o["data"]["application/vnd.plotly.v1+json"] for o in outputs(nb)
            if "application/vnd.plotly.v1+json" in o.get("data", {})]
    names = [{t.get("name") for t in f["data"]} for f in figs]
    assert "concept (contrastive)" in names[0] and "NTP" not in names[0], "its one loss"
    panels = [[a["text"] for a in f["layout"].get("annotations", [])] for f in figs]
    assert [viz.METRIC_LABELS["concept_mrr"], viz.METRIC_LABELS["concept_mrr_paper_ties"]] in panels, \
        "evaluation over steps: concept MRR, no exact match"
    frame = json.dumps([o.get("data", {}) for o in outputs(nb)][-1])
    assert "concept_mrr_paper_ties" in frame and "exact_match" not in frame, "the final table: concept columns"
    results = json.loads((folder / CONCEPT_NAME / "results.json").read_text())
    assert set(results["test"]) >= {"concept_mrr", "concept_mrr_paper_ties", "n"} and "exact_match" not in results["test"]


def test_analysis_notebook_compares_the_runs(local_sweep, tmp_path):
    _, _, folder = local_sweep
    html = launch.render_report(folder, tmp_path / "report.html")  # what the demo calls
    assert "plotly.js v" in viz.inline_plotly_js(html.read_text()) and "trains on test facts" in html.read_text()
    _size_check(tmp_path / "report.ipynb")
    nb = nbformat.read(tmp_path / "report.ipynb", as_version=4)
    text = json.dumps([o.get("data", {}) for o in outputs(nb)])
    assert "trains on test facts" in text
    figs = [o["data"]["application/vnd.plotly.v1+json"] for o in outputs(nb)
            if "application/vnd.plotly.v1+json" in o.get("data", {})]
    titles = [f["layout"].get("title", {}).get("text", "") for f in figs]
    assert any("forward vs reverse" in t for t in titles)
    assert any("learning curves" in t for t in titles)
    assert any("logit lens" in t for t in titles)
    # no ablation among these runs: one chart comparing the objectives
    assert [t for t in titles if " by " in t] == ["exact_match by objective (mean ± std over seeds)"]
    bars = next(f for f, t in zip(figs, titles) if "forward vs reverse" in t)
    assert "objective=reverse_aug (trains on test facts)" in bars["data"][0]["x"]
    # every objective in one view: entity MRR, and concept MRR for the concept run, against steps
    curves = next(f for f, t in zip(figs, titles) if t.startswith("MRR against steps"))
    names = {t["name"] for t in curves["data"]}
    assert {f"{CONCEPT_NAME} · concept MRR", "objective=jepa · entity MRR"} <= names
    assert len(curves["layout"]["shapes"]) == 4, "chance and 5 x chance, in both panels"
    assert "reverse_step" in text and "slope_per_1k" in text, "the per-run curve table"
