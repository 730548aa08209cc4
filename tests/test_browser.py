"""What a reader sees: notebook 03 executed on the committed 42-run study, exported to HTML and
drawn by headless Chromium (``jepa_kit.browser``), then measured: the per-setting chart names
every setting on a readable row over a plot area at least 300 px tall, no title runs out of its
figure, and the curve legends have one entry per setting. Also the README's pictures.

Needs Chromium: ``make test`` installs Debian's ``chromium`` where it runs as root with apt
(this repository's CI machines); elsewhere these tests skip and say so. Set
``JEPA_KIT_SCREENSHOTS=DIR`` to keep a full-page screenshot of the report there.
"""
import os
import re
import runpy
from pathlib import Path

import pytest

from jepa_kit import browser, collect, launch, viz

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "papermill_runs" / "results" / "study_runs"
FIGURES = ROOT / "docs" / "figures"
needs_chromium = pytest.mark.skipif(browser.chromium_path() is None,
                                    reason="no Chromium: `make test` installs Debian's chromium as root; "
                                           "or set JEPA_KIT_CHROMIUM")
WIDTH = 1300  # a laptop's JupyterLab, or an exported page in a browser window


def _text(label: str) -> str:
    return label.replace("\u25a0", "").strip()  # the setting's colour square, then its name


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    page = launch.render_report(STUDY, out / "03.html")
    keep = os.environ.get("JEPA_KIT_SCREENSHOTS")
    shot = Path(keep) / "03_study.png" if keep else None
    figures = browser.figure_geometry(page, width=WIDTH, height=24000 if shot else 2000, screenshot=shot)
    return figures, collect.collect(STUDY)


@needs_chromium
def test_the_per_setting_chart_names_every_setting_on_a_readable_row(report):
    figures, table = report
    settings = sorted(set(viz.table_settings(table).values()), key=viz.natural_key)
    assert len(table) == 42 and len(settings) == 14
    fig = next(f for f in figures if f["title"] and f["title"][0]["text"].startswith("forward vs reverse"))
    assert fig["plots"] and all(p["height"] >= 300 for p in fig["plots"]), [p["height"] for p in fig["plots"]]
    labels = fig["yticks"]
    assert [_text(t["text"]) for t in labels] == settings, "every setting labelled, none skipped, in order"
    plot_left = min(p["left"] for p in fig["plots"])
    for above, below in zip(labels, labels[1:]):
        assert above["box"]["bottom"] <= below["box"]["top"] + 1, f"{above['text']!r} overlaps {below['text']!r}"
    for t in labels:
        assert t["size"] >= 10 and t["box"]["height"] >= 10, f"{t['text']!r} is too small to read"
        assert t["box"]["left"] >= fig["figure"]["left"] - 1, f"{t['text']!r} is cut off on the left"
        assert t["box"]["right"] <= plot_left + 1, f"{t['text']!r} runs into the bars"


@needs_chromium
def test_every_figure_title_fits_and_no_placeholder_text(report):
    figures, _ = report
    assert len(figures) >= 6
    for f in figures:
        for t in f["title"]:
            assert f["figure"]["left"] - 1 <= t["box"]["left"] and t["box"]["right"] <= f["figure"]["right"] + 1, \
                f"title {t['text'][:60]!r} runs out of its figure"
        texts = [t["text"] for part in ("title", "yticks", "xticks", "legend") for t in f[part]]
        assert not any("new text" in t for t in texts), "an empty plotly annotation"
        assert all(p["height"] >= 150 for p in f["plots"]), (f["title"], [p["height"] for p in f["plots"]])


@needs_chromium
def test_curve_legends_have_one_entry_per_setting(report):
    figures, table = report
    settings = set(viz.table_settings(table).values())
    curves = [f for f in figures if f["title"] and re.match(r"(MRR against steps|learning curves|logit lens)",
                                                             f["title"][0]["text"])]
    assert len(curves) == 3
    for f in curves:
        names = {t["text"].split(" · ")[0] for t in f["legend"]}
        assert names == settings, f["title"][0]["text"]
        assert all(t["box"]["bottom"] <= f["figure"]["bottom"] for t in f["legend"]), "a legend that scrolls"


@needs_chromium
def test_readme_figures_script_draws_the_committed_pictures_again(tmp_path):
    script = runpy.run_path(str(ROOT / "benchmarks" / "readme_figures.py"))
    paths = script["main"](str(tmp_path))
    assert [p.name for p in paths] == list(script["FIGURES"])
    for p in paths:
        assert browser.png_size(p) == browser.png_size(FIGURES / p.name), p.name
        assert p.stat().st_size > 20_000, f"{p.name}: a blank page is a few kB"


def _pictures(page: Path) -> list[Path]:
    """The PNGs a markdown page shows, resolved against the page's own folder, each checked to be a
    real picture (not blank, not huge)."""
    shown = [page.parent / rel for rel in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", page.read_text())]
    for path in shown:
        w, h = browser.png_size(path)
        assert w >= 600 and h >= 400 and path.stat().st_size < 500_000, path
    return shown


def test_the_readme_shows_its_committed_pictures():
    shown = _pictures(ROOT / "README.md")
    assert all(p.parent == FIGURES for p in shown)
    assert {FIGURES / "mask.png", FIGURES / "forward_reverse.png"} <= set(shown)


def test_the_experiments_page_shows_every_other_committed_picture():
    """docs/controls.md (the experiments behind the README's summary) shows the figures the README does
    not, by paths relative to docs/, and each is a real picture."""
    readme = set(_pictures(ROOT / "README.md"))
    shown = _pictures(ROOT / "docs" / "controls.md")
    assert set(shown) == set(FIGURES.glob("*.png")) - readme and len(shown) == len(set(shown)) >= 8


def test_render_names_a_missing_browser_or_page(tmp_path, monkeypatch):
    monkeypatch.setenv("JEPA_KIT_CHROMIUM", str(tmp_path / "no-such-chromium"))
    assert browser.chromium_path() is None
    with pytest.raises(browser.BrowserError, match="no Chromium found"):
        browser.render(tmp_path / "page.html")
    (tmp_path / "x.txt").write_bytes(b"GIF89a....")
    with pytest.raises(ValueError, match="not a PNG"):
        browser.png_size(tmp_path / "x.txt")
