"""The pictures of the README and of docs/controls.md, drawn by headless Chromium from the kit's own
figures (no kaleido, no network): the block-causal mask of one JEPA row, the committed 42-run study's
forward vs reverse comparison, the binding controls' MRR against steps (600 and 8,000 entities), at 8,000
entities ntp against ntp + the JEPA term, ntp against ntp + infonce at 600, 2,400, 4,800 and
8,000 entities (and at 4,800 and 8,000 the infonce runs with their target detached), at 2,400 entities ntp on
abstract and on surface data at two widths, the
concept objective at 600 entities with more width, depth or steps, and at 2,400 entities on
surface data with its logits scaled.

    python benchmarks/readme_figures.py [OUT_DIR]      # default docs/figures

Needs Chromium (Debian's `chromium`, which `make test` installs where it can, or $JEPA_KIT_CHROMIUM)
and the notebook extras (plotly). Each PNG is written to a temporary file, then renamed.
"""
import sys
import tempfile
from pathlib import Path

from jepa_kit import browser, collect, viz
from jepa_kit.data import load_dataset
from jepa_kit.datagen import generate
from jepa_kit.run_views import setting_colors

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "papermill_runs" / "results" / "study_runs"
CONTROLS = ROOT / "papermill_runs" / "results" / "binding_controls_runs"
SCALE = ROOT / "papermill_runs" / "results" / "binding_scale_runs"
SCALE_JEPA = ROOT / "papermill_runs" / "results" / "binding_scale_jepa_runs"
CONTROLS_JEPA = ROOT / "papermill_runs" / "results" / "binding_controls_jepa_runs"
MID = ROOT / "papermill_runs" / "results" / "binding_mid_runs"
MIDLARGE = ROOT / "papermill_runs" / "results" / "binding_midlarge_runs"
MIDLARGE_END = ROOT / "papermill_runs" / "results" / "binding_midlarge_seeds_end_runs"  # seeds 2 and 3
# the infonce runs with the target detached (stop_grad), resumed to 30,000: seeds 0-1, seeds 2-3
MIDLARGE_DETACHED = (ROOT / "papermill_runs" / "results" / "binding_midlarge_stopgrad_end_runs",
                     ROOT / "papermill_runs" / "results" / "binding_midlarge_stopgrad_seeds_end_runs")
# the same detach at 8,000 entities, seeds 0-1 resumed to step 60,000 (their metrics from step 0)
SCALE_DETACHED = ROOT / "papermill_runs" / "results" / "binding_scale_stopgrad_end_runs"
# the second draw of the 8,000-entity data: ntp and infonce seed 0, their seed 1, their seed 2, the
# detached seeds 0-1, the detached seed 2
SCALE_DATA1 = tuple(ROOT / "papermill_runs" / "results" / f"binding_scale_data1{part}_runs"
                    for part in ("", "_seed1", "_seed2", "_stopgrad", "_stopgrad_seed2"))
# the same draw on to step 50,000: ntp seeds 1-2, the detached seeds 0-1, the detached seed 2 (each run's
# metrics from step 0)
SCALE_DATA1_END = tuple(ROOT / "papermill_runs" / "results" / f"binding_scale_data1{part}_end_runs"
                        for part in ("", "_stopgrad", "_stopgrad_seed2"))
# and on to step 60,000: ntp seeds 0-2 (seed 0 trained again from step 0), the detached seeds 0-2
SCALE_DATA1_60K = tuple(ROOT / "papermill_runs" / "results" / f"binding_scale_data1{part}_60k_runs"
                        for part in ("", "_stopgrad"))
# entities -> (the detached runs' folders, the figure drawn from them)
DETACHED = {4800: (MIDLARGE_DETACHED, "binding_midlarge_detached_mrr.png"),
            8000: ((SCALE_DETACHED,), "binding_scale_detached_mrr.png")}
MID_SURFACE = ROOT / "papermill_runs" / "results" / "binding_mid_surface_runs"
MID_WIDTH = ROOT / "papermill_runs" / "results" / "binding_mid_width_runs"
MID_CONCEPT_LONG = ROOT / "papermill_runs" / "results" / "binding_mid_concept_long_runs"  # abstract, to 90,000
MID_EQUAL = ROOT / "papermill_runs" / "results" / "binding_mid_equal_steps_runs"  # ntp seed 0, concept seed 1: 90,000
MID_NTP_SEED1 = ROOT / "papermill_runs" / "results" / "binding_mid_ntp_seed1_runs"  # abstract ntp seed 1: 90,000
MID_SURFACE_CONCEPT = ROOT / "papermill_runs" / "results" / "binding_mid_surface_concept_long_runs"  # to 90,000
MID_SURFACE_SCALE = ROOT / "papermill_runs" / "results" / "binding_mid_surface_scale_runs"  # logits x4, x27
MID_SCALE_LONG = ROOT / "papermill_runs" / "results" / "binding_mid_surface_scale_long_runs"  # x27 seed 0: 90,000
MID_SCALE_SEED1 = ROOT / "papermill_runs" / "results" / "binding_mid_surface_scale_seed1_runs"  # x27 seed 1
MID_SCALE_X80 = ROOT / "papermill_runs" / "results" / "binding_mid_surface_scale_x80_runs"  # x80 seed 0: 30,000
MID_SCALE_BETWEEN = ROOT / "papermill_runs" / "results" / "binding_mid_surface_scale_between_runs"  # x10, x45: 30,000
MID_SCALE_X10_SEED1 = ROOT / "papermill_runs" / "results" / "binding_mid_surface_scale_x10_seed1_runs"  # x10 seed 1
# x27 seed 0: 90,000 (binding_mid_abstract_scale_long_runs), continued to 150,000 (_longer_runs), to
# 210,000 (_210k_runs), to 270,000 (_270k_runs), to 330,000
MID_ABSTRACT_SCALE_330K = ROOT / "papermill_runs" / "results" / "binding_mid_abstract_scale_330k_runs"
# abstract ntp seed 0 run again to 150,000 (binding_mid_abstract_ntp_150k_runs), continued to 210,000,
# to 270,000, to 330,000
MID_ABSTRACT_NTP_LONG = ROOT / "papermill_runs" / "results" / "binding_mid_abstract_ntp_330k_runs"
# abstract ntp seed 1 run again to 150,000 (binding_mid_abstract_ntp_seed1_150k_runs), continued to 210,000
MID_ABSTRACT_NTP_SEED1_LONG = ROOT / "papermill_runs" / "results" / "binding_mid_abstract_ntp_seed1_210k_runs"
# x27 seed 1: 30,000 (binding_mid_abstract_scale_seed1_runs), continued to 150,000, to 210,000
MID_ABSTRACT_SCALE_SEED1 = ROOT / "papermill_runs" / "results" / "binding_mid_abstract_scale_seed1_210k_runs"
# seed 2 of each, from step 0 to 150,000
MID_ABSTRACT_NTP_SEED2 = ROOT / "papermill_runs" / "results" / "binding_mid_abstract_ntp_seed2_150k_runs"
MID_ABSTRACT_SCALE_SEED2 = ROOT / "papermill_runs" / "results" / "binding_mid_abstract_scale_seed2_150k_runs"
CONCEPT_WIDTH = ROOT / "papermill_runs" / "results" / "binding_concept_width_runs"
CONCEPT_DEPTH = ROOT / "papermill_runs" / "results" / "binding_concept_depth_runs"
CONCEPT_STEPS = ROOT / "papermill_runs" / "results" / "binding_concept_steps_runs"
WIDTH = 1100
FIGURES = ("mask.png", "forward_reverse.png", "binding_controls_mrr.png", "binding_scale_mrr.png",
           "binding_scale_jepa_mrr.png", "binding_sizes_mrr.png", "binding_mid_surface_mrr.png",
           "binding_concept_mrr.png", "binding_mid_scale_mrr.png", "binding_mid_abstract_scale_mrr.png",
           "binding_midlarge_detached_mrr.png", "binding_scale_detached_mrr.png", "binding_scale_data1_mrr.png",
           "binding_scale_data1_end_mrr.png", "binding_scale_data1_60k_mrr.png")


def _curves(folder: Path, part: str = "") -> dict:
    """The learning curves of the runs in ``folder`` whose names contain ``part``."""
    return {n: rows for n, rows in collect.learning_curves(folder).items() if part in n}


def _labelled(runs: dict[str, dict]) -> dict:
    """{label: {run name: rows}} -> {"<label>_seed<n>": rows}: each run under its setting's label."""
    return {f"{label}_seed{name.rsplit('seed', 1)[1]}": rows for label, c in runs.items() for name, rows in c.items()}


def mask_png(out: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        ds = load_dataset(generate("tiny", Path(tmp) / "tiny", seed=0))
        row = ds.valid["train"].ids[0]
        fig = viz.mask_figure(row, ds.vocab, k=2, caption="one JEPA training item, k = 2 PRED tokens")
    fig.update_layout(margin=dict(l=120, r=40, t=90, b=120))
    return browser.figure_png(fig, out / "mask.png", width=760, height=720)


def forward_reverse_png(out: Path) -> Path:
    table = collect.collect(STUDY)
    fig = viz.forward_reverse_figure(table)
    fig.update_layout(title="the committed tiny study: forward (atomic) vs reverse (test), 14 settings x 3 seeds")
    return browser.figure_png(fig, out / "forward_reverse.png", width=WIDTH)


def controls_png(out: Path, runs: Path = CONTROLS, n_entities: int = 600, name: str = "binding_controls_mrr.png",
                 log_x: bool = True) -> Path:
    table = collect.collect(runs)
    fig = viz.mrr_curves_figure(collect.learning_curves(runs), table, n_entities=n_entities, log_x=log_x)
    return browser.figure_png(fig, out / name, width=WIDTH, height=520)


def scale_jepa_png(out: Path) -> Path:
    """ntp (weight decay 0.1, every seed) from binding_scale_runs next to the JEPA runs trained alike."""
    import pandas as pd
    curves = {**_curves(SCALE, "_ntp_weight_decay=0.1_"), **_curves(SCALE_JEPA)}
    table = pd.concat([collect.collect(SCALE), collect.collect(SCALE_JEPA)], ignore_index=True)
    table = table[table["run"].isin(list(curves))]
    fig = viz.mrr_curves_figure(curves, table, n_entities=8000, log_x=False)
    return browser.figure_png(fig, out / "binding_scale_jepa_mrr.png", width=WIDTH, height=520)


def size_panels() -> list:
    """(title, entities, {setting: curves}) for each size: ntp and ntp + infonce (same models and
    training at each size) at 600, 2,400, 4,800 and 8,000 entities, every committed seed of each."""
    sizes = [(600, 128, _curves(CONTROLS, "abstract_ntp_seed"), _curves(CONTROLS_JEPA, "=infonce_")),
             (2400, 256, _curves(MID, "_ntp_seed"), _curves(MID, "=infonce_")),
             (4800, 256, {**_curves(MIDLARGE, "_ntp_seed"), **_curves(MIDLARGE_END, "_ntp_seed")},
              {**_curves(MIDLARGE, "=infonce_"), **_curves(MIDLARGE_END, "=infonce_")}),
             (8000, 256, _curves(SCALE, "_ntp_weight_decay=0.1_"), _curves(SCALE_JEPA, "=infonce_"))]
    return [(f"{n:,} entities, batch {batch}", n, {"ntp": ntp, "ntp + JEPA (infonce)": infonce})
            for n, batch, ntp, infonce in sizes]


def sizes_png(out: Path) -> Path:
    """Reverse MRR against steps of ntp and ntp + infonce at four sizes (``size_panels``)."""
    fig = viz.mrr_by_size_figure(size_panels())
    return browser.figure_png(fig, out / "binding_sizes_mrr.png", width=WIDTH, height=460)


def detached_panels(entities: int = 4800) -> list:
    """The panel of ``size_panels`` at ``entities`` (4,800: ntp and infonce four seeds each, every
    curve to step 30,000; 8,000: three seeds each to step 60,000) with the infonce runs whose target
    is detached beside them (4,800: four seeds, each from step 0 to 30,000; 8,000: two seeds to 60,000)."""
    (title, n, settings), = [p for p in size_panels() if p[1] == entities]
    detached = {name: rows for folder in DETACHED[entities][0] for name, rows in _curves(folder).items()}
    return [(title, n, {**settings, "ntp + JEPA (infonce), target detached": detached})]


def _one_panel_png(panels: list, where: str, path: Path, colors: dict | None = None) -> Path:
    """``viz.mrr_by_size_figure`` of one panel (``colors``: label -> colour), its title naming
    ``where`` instead of "at each size"."""
    fig = viz.mrr_by_size_figure(panels, colors=colors)
    fig.update_layout(title=fig.layout.title.text.replace("at each size", where))
    return browser.figure_png(fig, path, width=WIDTH, height=460)


def detached_png(out: Path, entities: int = 4800) -> Path:
    """Reverse MRR against steps at ``entities``: ntp, infonce, and infonce with its target detached."""
    return _one_panel_png(detached_panels(entities), f"at {entities:,} entities", out / DETACHED[entities][1])


DATA1_SETTINGS = {"ntp": "_ntp_seed", "ntp + JEPA (infonce)": "=infonce_seed",
                  "ntp + JEPA (infonce), target detached": "_data1_jepa_seed"}  # label -> part of its run names


def data1_panels(folders: tuple = SCALE_DATA1) -> list:
    """The second draw of the 8,000-entity data (generator seed 1), the runs in ``folders`` by setting:
    by default ntp, infonce and infonce with its target detached, seeds 0-2 of each, every curve from
    step 0 to 30,000; with ``SCALE_DATA1_END``, ntp seeds 1-2 and the detached seeds 0-2 to 50,000;
    with ``SCALE_DATA1_60K``, ntp seeds 0-2 and the detached seeds 0-2 to 60,000."""
    curves = {name: rows for folder in folders for name, rows in _curves(folder).items()}
    groups = {label: {n: rows for n, rows in curves.items() if part in n} for label, part in DATA1_SETTINGS.items()}
    return [("8,000 entities, second data draw, batch 256", 8000, {k: v for k, v in groups.items() if v})]


def data1_png(out: Path) -> Path:
    """Reverse MRR against steps on the second 8,000-entity draw (``data1_panels``)."""
    return _one_panel_png(data1_panels(), "at 8,000 entities, second data draw", out / "binding_scale_data1_mrr.png")


def data1_end_png(out: Path, folders: tuple = SCALE_DATA1_END, name: str = "binding_scale_data1_end_mrr.png") -> Path:
    """The same draw's resumed runs: to step 50,000 (``SCALE_DATA1_END``) or 60,000 (``SCALE_DATA1_60K``)."""
    return _one_panel_png(data1_panels(folders), "at 8,000 entities, second draw", out / name,
                          colors=setting_colors(DATA1_SETTINGS))  # each setting's colour in binding_scale_data1_mrr.png


def _abstract_90000() -> dict[str, dict]:
    """Abstract ntp and the abstract concept objective (factor 1) at 2,400 entities, width 128, seeds
    0 and 1, each trained to 90,000 steps: {label: {run name: rows}}."""
    return {"ntp": {**_curves(MID_EQUAL, "_ntp_seed"), **_curves(MID_NTP_SEED1)},
            "concept": {**_curves(MID_CONCEPT_LONG, "mid_abstract_concept_"),
                        **_curves(MID_EQUAL, "mid_abstract_concept_")}}


def mid_surface_curves() -> dict:
    """ntp at 2,400 entities, abstract (one token per entity) and surface (two name tokens), each at
    width 128 and 256 (30,000 steps; abstract width 128 seeds 0 and 1 also to 90,000), and the concept
    objective (1+1, width 128) on both (to 90,000 steps; abstract seeds 0 and 1, surface seed 0):
    run name "<data>[ concept], width <w>[, 90,000 steps]_seed<n>" -> metrics rows, every committed
    seed."""
    long = _abstract_90000()
    runs = {"abstract, width 128": _curves(MID, "_ntp_seed"), "abstract, width 256": _curves(MID_WIDTH),
            "surface, width 128": _curves(MID_SURFACE, "n_embd=128"),
            "surface, width 256": _curves(MID_SURFACE, "n_embd=256"),
            "abstract, width 128, 90,000 steps": long["ntp"], "abstract concept, width 128": long["concept"],
            "surface concept, width 128": _curves(MID_SURFACE_CONCEPT, "mid_concept_")}
    return _labelled(runs)


def mid_surface_png(out: Path) -> Path:
    fig = viz.mrr_curves_figure(mid_surface_curves(), n_entities=2400)
    return browser.figure_png(fig, out / "binding_mid_surface_mrr.png", width=WIDTH, height=520)


def scale_curves() -> dict:
    """The concept objective on two name tokens per entity at 2,400 entities (1+1, width 128) with
    the loss's logits multiplied by 1 (to 90,000 steps), 4 (to 50,000), 10 (seeds 0 and 1, to
    30,000), 27 (seed 0 to 90,000, seed 1 to 50,000), 45 and 80 (to 30,000), and surface ntp at width
    128 for reference: run name "<objective>[, logits x<s>]_seed<n>" -> metrics rows."""
    runs = {"surface ntp": _curves(MID_SURFACE, "n_embd=128"),
            "surface concept, logits x1": _curves(MID_SURFACE_CONCEPT, "mid_concept_"),
            "surface concept, logits x4": _curves(MID_SURFACE_SCALE, "scale=4.0_"),
            "surface concept, logits x10": {**_curves(MID_SCALE_BETWEEN, "scale=10.0_"),
                                            **_curves(MID_SCALE_X10_SEED1)},
            "surface concept, logits x27": {**_curves(MID_SCALE_LONG), **_curves(MID_SCALE_SEED1)},
            "surface concept, logits x45": _curves(MID_SCALE_BETWEEN, "scale=45.0_"),
            "surface concept, logits x80": _curves(MID_SCALE_X80)}
    return _labelled(runs)


def scale_png(out: Path) -> Path:
    fig = viz.mrr_curves_figure(scale_curves(), n_entities=2400, log_x=False, seeds="lines")
    return browser.figure_png(fig, out / "binding_mid_scale_mrr.png", width=WIDTH, height=520)


def abstract_scale_curves() -> dict:
    """The concept objective on one token per entity at 2,400 entities (1+1, width 128) with the
    loss's logits multiplied by 1 (seeds 0 and 1, to 90,000 steps) and 27 (seed 0 to 330,000, seed 1
    to 210,000, seed 2 to 150,000), and abstract ntp at width 128 (seed 0 to 330,000, seed 1 to
    210,000, seed 2 to 150,000) for reference:
    run name "<objective>[, logits x<s>]_seed<n>" -> metrics rows."""
    long = _abstract_90000()
    # each seed's longer run replaces its first
    ntp = {**long["ntp"], **_curves(MID_ABSTRACT_NTP_LONG), **_curves(MID_ABSTRACT_NTP_SEED1_LONG),
           **_curves(MID_ABSTRACT_NTP_SEED2)}
    runs = {"abstract ntp": ntp, "abstract concept, logits x1": long["concept"],
            "abstract concept, logits x27": {**_curves(MID_ABSTRACT_SCALE_330K),
                                             **_curves(MID_ABSTRACT_SCALE_SEED1),
                                             **_curves(MID_ABSTRACT_SCALE_SEED2)}}
    return _labelled(runs)


def abstract_scale_png(out: Path) -> Path:
    fig = viz.mrr_curves_figure(abstract_scale_curves(), n_entities=2400, log_x=False, seeds="lines")
    return browser.figure_png(fig, out / "binding_mid_abstract_scale_mrr.png", width=WIDTH, height=520)


def concept_curves() -> dict:
    """The concept objective at 600 entities, surface and abstract: 1 recognition + 1 concept block at
    widths 128 (8,000 and 30,000 steps), 256 and 512, and 1 + 3 at width 128: run name
    "<data> <blocks>, width <w>[, 30,000 steps]_seed<n>" -> metrics rows, every committed seed."""
    runs = {"surface 1+1, width 128": _curves(CONTROLS, "surface_concept_"),
            "surface 1+1, width 128, 30,000 steps": _curves(CONCEPT_STEPS, "surface_"),
            "surface 1+1, width 256": _curves(CONCEPT_WIDTH, "surface_concept_n_layer=2_n_embd=256_"),
            "surface 1+1, width 512": _curves(CONCEPT_WIDTH, "surface_concept_n_layer=2_n_embd=512_"),
            "surface 1+3, width 128": {**_curves(CONCEPT_WIDTH, "surface_concept_n_layer=4_"),
                                       **_curves(CONCEPT_DEPTH, "surface_")},
            "abstract 1+1, width 128": _curves(CONTROLS, "abstract_concept_"),
            "abstract 1+1, width 128, 30,000 steps": _curves(CONCEPT_STEPS, "abstract_"),
            "abstract 1+1, width 256": _curves(CONCEPT_WIDTH, "abstract_"),
            "abstract 1+3, width 128": _curves(CONCEPT_DEPTH, "abstract_")}
    return _labelled(runs)


def concept_png(out: Path) -> Path:
    fig = viz.mrr_curves_figure(concept_curves(), n_entities=600, log_x=True, seeds="lines")
    return browser.figure_png(fig, out / "binding_concept_mrr.png", width=WIDTH, height=560)


def main(out: str = "docs/figures") -> list[Path]:
    out = Path(out)
    paths = [mask_png(out), forward_reverse_png(out), controls_png(out),
             controls_png(out, SCALE, 8000, "binding_scale_mrr.png", log_x=False),  # the rise comes late
             scale_jepa_png(out), sizes_png(out), mid_surface_png(out), concept_png(out), scale_png(out),
             abstract_scale_png(out), detached_png(out), detached_png(out, 8000), data1_png(out),
             data1_end_png(out), data1_end_png(out, SCALE_DATA1_60K, "binding_scale_data1_60k_mrr.png")]
    for p in paths:
        w, h = browser.png_size(p)
        print(f"{p}  {w} x {h}  {p.stat().st_size / 1e3:.0f} kB")
    return paths


if __name__ == "__main__":
    main(*sys.argv[1:2])
