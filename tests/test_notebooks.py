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

from jepa_kit import cli, launch

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


def test_train_notebook_parameters_are_exactly_trainconfig_fields():
    from jepa_kit.config import TrainConfig

    nb = nbformat.read(ROOT / "notebooks" / "02_train.ipynb", as_version=4)
    tree = ast.parse(parameters_cell(nb).source)
    assigned = {}
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, "only `name = literal` lines"
        assigned[node.targets[0].id] = ast.literal_eval(node.value)
    assert list(assigned) == TrainConfig.field_names()
    # the values are the tiny preset's, so the notebook trains in minutes on a CPU as committed
    tiny = TrainConfig.from_preset("tiny").to_dict()
    drift = {k: (v, tiny[k]) for k, v in assigned.items() if k not in ("data", "out") and v != tiny[k]}
    fix = "\n".join(f"{k} = {tiny[k]!r}" for k in drift)
    assert not drift, f"02_train.ipynb's parameters differ from TrainConfig.from_preset('tiny') (notebook, preset): " \
                      f"{drift}; set these lines in its parameters cell:\n{fix}"
    assert assigned["data"] == "../data/tiny"


# -- 01: the mask notebook -----------------------------------------------------------------------

def test_mask_notebook_runs_and_its_html_shows_the_static_figure(tmp_path, tiny_data):
    nb = execute("01_attention_masks.ipynb", tmp_path / "01.ipynb", data_dir=str(tiny_data), k=2, index=3)
    figures = [o for o in outputs(nb) if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert figures, "the static mask figure is a plotly output"
    fig = figures[0]["data"]["application/vnd.plotly.v1+json"]
    assert len(fig["data"][0]["z"]) == 6 + 2 + 6  # k = 2 reached the notebook
    assert [s["label"] for s in fig["layout"]["sliders"][0]["steps"]] == ["0", "1", "2", "3", "4"]
    widgets = [o for o in outputs(nb) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widgets, "the live explorer is displayed"
    table = [o for o in outputs(nb) if "text/plain" in o.get("data", {}) and "h_packed - h_separate" in o["data"]["text/plain"]]
    numbers = [float(x) for x in re.findall(r"\d\.\d+e[-+]\d+", table[0]["data"]["text/plain"])]
    assert len(numbers) == 10 and max(numbers) < 1e-4  # packed == separate for 2 implementations x 5 k

    from nbconvert import HTMLExporter

    html, _ = HTMLExporter().from_notebook_node(nb)
    # plotly.js itself is in the page (no network needed), and the figure is drawn from it
    assert "plotly.js v" in html and "Plotly.newPlot" in html
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
    assert ["concept_mrr", "concept_mrr_paper_ties"] in panels, "evaluation over steps: concept MRR, no exact match"
    frame = json.dumps([o.get("data", {}) for o in outputs(nb)][-1])
    assert "concept_mrr_paper_ties" in frame and "exact_match" not in frame, "the final table: concept columns"
    results = json.loads((folder / CONCEPT_NAME / "results.json").read_text())
    assert set(results["test"]) >= {"concept_mrr", "concept_mrr_paper_ties", "n"} and "exact_match" not in results["test"]


def test_analysis_notebook_compares_the_runs(local_sweep, tmp_path):
    _, _, folder = local_sweep
    html = launch.render_report(folder, tmp_path / "report.html")  # what the demo calls
    assert "plotly.js v" in html.read_text() and "trains on test facts" in html.read_text()
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
    assert [t for t in titles if "mean ± std" in t] == ["exact_match by objective (mean ± std over seeds)"]
    bars = next(f for f, t in zip(figs, titles) if "forward vs reverse" in t)
    assert "objective=reverse_aug (trains on test facts)" in bars["data"][0]["x"]
    # every objective in one view: entity MRR, and concept MRR for the concept run, against steps
    curves = next(f for f, t in zip(figs, titles) if t.startswith("MRR against steps"))
    names = {t["name"] for t in curves["data"]}
    assert {f"{CONCEPT_NAME} · concept MRR", "objective=jepa · entity MRR"} <= names
    assert len(curves["layout"]["shapes"]) == 4, "chance and 5 x chance, in both panels"
    assert "reverse_step" in text and "slope_per_1k" in text, "the per-run curve table"
