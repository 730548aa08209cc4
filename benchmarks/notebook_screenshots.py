"""Screenshots of the three notebooks as a reader of their exported HTML sees them, and what the
browser measured in each figure (plot-area heights, labels, titles that run out of their figure).

    python benchmarks/notebook_screenshots.py OUT_DIR [RUNS_DIR]

01 runs on freshly generated tiny data; 02 trains a 40-step tiny jepa run; 03 compares RUNS_DIR
(default: the committed 42-run study). Each notebook is executed headless (papermill), exported
(nbconvert, plotly.js inlined) and drawn by Chromium 1300 px wide; the full page is OUT_DIR/NN.png.
Needs Chromium and the notebook extras; takes about a minute on two cores.
"""
import json
import sys
from pathlib import Path

from jepa_kit import browser, launch
from jepa_kit.datagen import generate

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 1300, 24000


def export(notebook: str, folder: Path, **parameters) -> Path:
    return launch.export_notebook(ROOT / "notebooks" / notebook, folder / Path(notebook).with_suffix(".html"),
                                  **parameters)


def describe(name: str, page: Path, out: Path) -> dict:
    figures = browser.figure_geometry(page, WIDTH, HEIGHT, screenshot=out / f"{name}.png")
    rows = []
    for f in figures:
        title = f["title"][0]["text"] if f["title"] else "(no title)"
        overflow = any(t["box"]["right"] > f["figure"]["right"] + 1 for t in f["title"])
        rows.append({"title": title[:70], "plot_px": [round(p["height"]) for p in f["plots"]],
                     "ytick_labels": len(f["yticks"]), "legend": len(f["legend"]), "title_overflows": overflow})
    print(f"\n{name}: {page.stat().st_size / 1e6:.2f} MB exported, {len(figures)} figures")
    for r in rows:
        print(f"  {r['title']:<70}  plot {r['plot_px']} px, {r['ytick_labels']} y labels, {r['legend']} legend"
              + ("  TITLE OVERFLOWS" if r["title_overflows"] else ""))
    return {"page": str(page), "figures": rows}


def main(out: str, runs_dir: str | None = None) -> dict:
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = generate("tiny", out / "data", seed=0, force=True)
    pages = {
        "01": export("01_attention_masks.ipynb", out, data_dir=str(data), k=2, index=3),
        "02": export("02_train.ipynb", out, data=str(data), out=str(out / "run02"), objective="jepa", steps=40,
                     eval_every=20, log_every=10, eval_max_items=50),
        "03": export("03_reverse_accuracy.ipynb", out,
                     runs_dir=str(Path(runs_dir or ROOT / "papermill_runs" / "results" / "study_runs").resolve())),
    }
    report = {name: describe(name, page, out) for name, page in pages.items()}
    (out / "screenshots.json").write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main(*sys.argv[1:3])
