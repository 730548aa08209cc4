"""Headless Chromium, for what only a browser can tell: how the figures of an exported notebook
look once plotly.js has drawn them (screenshots, and the boxes of titles, plot areas and axis
labels), and the README's pictures.

``render(page)`` loads a local HTML page in Chromium with no network and returns the page's DOM
after its scripts ran, optionally with a PNG screenshot. ``figure_geometry(page)`` adds a script
that measures every plotly figure in the page (``getBoundingClientRect``, in CSS pixels) and
returns the measurements. Chromium is found on PATH (Debian's ``chromium``; ``make test``
installs it where it can) or at ``$JEPA_KIT_CHROMIUM``. No Python packages beyond the standard
library: the library imports without the notebook extras.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
# no network and none of Chromium's background traffic (this machine's closed network refuses it, noisily)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars", "--force-device-scale-factor=1")
GEOMETRY_ID = "jepa-kit-geometry"


class BrowserError(RuntimeError):
    """Chromium is missing, or failed on a page."""


def chromium_path() -> str | None:
    """The Chromium executable: ``$JEPA_KIT_CHROMIUM``, else the first of ``CANDIDATES`` on PATH."""
    env = os.environ.get("JEPA_KIT_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


def render(page: str | Path, width: int = 1300, height: int = 2000, screenshot: str | Path | None = None,
           budget_ms: int = 15000, timeout_s: float = 120) -> str:
    """Load the local HTML file ``page`` in a ``width`` x ``height`` window, let its scripts run
    for up to ``budget_ms`` of virtual time, and return the DOM; with ``screenshot``, also write
    a PNG of the window there."""
    exe = chromium_path()
    if exe is None:
        raise BrowserError("no Chromium found: install Debian's `chromium` (make test does, as root) "
                           "or set JEPA_KIT_CHROMIUM to a Chromium or Chrome executable")
    page = Path(page).resolve()
    if not page.is_file():
        raise BrowserError(f"{page}: no such page")
    with tempfile.TemporaryDirectory(prefix="jepa-kit-chromium-") as profile:
        args = [exe, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                f"--virtual-time-budget={budget_ms}", "--dump-dom"]
        if screenshot is not None:
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            args.append(f"--screenshot={Path(screenshot).resolve()}")
        try:
            r = subprocess.run([*args, page.as_uri()], capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            raise BrowserError(f"{page}: Chromium did not finish in {timeout_s:.0f} s") from e
    if r.returncode != 0 or not r.stdout.strip():
        raise BrowserError(f"{page}: Chromium exited with {r.returncode}: {r.stderr[-1500:]}")
    return r.stdout


_MEASURE = """<script>
window.addEventListener('load', function () { setTimeout(function () {
  function box(el) { var r = el.getBoundingClientRect(); return {left: r.left, top: r.top, right: r.right,
                                                                  bottom: r.bottom, width: r.width, height: r.height}; }
  function texts(gd, sel) { return Array.prototype.map.call(gd.querySelectorAll(sel), function (t) {
    return {text: t.textContent, box: box(t), size: parseFloat(getComputedStyle(t).fontSize)}; }); }
  var figs = Array.prototype.map.call(document.querySelectorAll('.js-plotly-plot'), function (gd) {
    var svg = gd.querySelector('svg.main-svg');
    return {title: texts(gd, '.g-gtitle text.gtitle'), figure: svg ? box(svg) : null,
            plots: Array.prototype.map.call(gd.querySelectorAll('.draglayer .nsewdrag'), box),
            yticks: texts(gd, '.yaxislayer-above .ytick text'), xticks: texts(gd, '.xaxislayer-above .xtick text'),
            legend: texts(gd, '.legend .legendtext')};
  });
  var pre = document.createElement('pre'); pre.id = '%s'; pre.textContent = JSON.stringify(figs);
  document.body.appendChild(pre);
}, 2000); });
</script>""" % GEOMETRY_ID


def figure_geometry(page: str | Path, width: int = 1300, height: int = 2000,
                    screenshot: str | Path | None = None) -> list[dict]:
    """Every plotly figure of ``page`` as drawn in Chromium, in page order: ``title``, ``yticks``,
    ``xticks``, ``legend`` (each a list of {text, box, size}), ``figure`` (the figure's box) and
    ``plots`` (the box of each plot area); boxes in CSS pixels relative to the window."""
    page = Path(page)
    html = page.read_text(encoding="utf-8")
    at = html.rfind("</body>")
    measured = html[:at] + _MEASURE + html[at:] if at >= 0 else html + _MEASURE
    with tempfile.NamedTemporaryFile("w", suffix=".html", dir=page.parent, delete=False, encoding="utf-8") as f:
        f.write(measured)
    try:
        dom = render(f.name, width, height, screenshot)
    finally:
        os.unlink(f.name)
    start = dom.find(f'<pre id="{GEOMETRY_ID}">')
    if start < 0:
        raise BrowserError(f"{page}: the page did not finish drawing (no measurements)")
    body = dom[start:].split(">", 1)[1].split("</pre>", 1)[0]
    import html as html_lib
    return json.loads(html_lib.unescape(body))


def figure_png(fig, path: str | Path, width: int | None = None, height: int | None = None) -> Path:
    """A plotly figure as a PNG of ``width`` x ``height`` CSS pixels (default: the figure's own
    layout size, else 1000 x 500), drawn by Chromium from a page that carries plotly.js (no
    network, no kaleido). Written to a temporary file, then renamed."""
    width = int(width or fig.layout.width or 1000)
    height = int(height or fig.layout.height or 500)
    fig = type(fig)(fig).update_layout(width=width, height=height)  # a copy: the caller's figure keeps its size
    body = fig.to_html(full_html=False, include_plotlyjs=True, config={"staticPlot": True, "displayModeBar": False})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="jepa-kit-png-") as tmp:
        page = Path(tmp) / "figure.html"
        page.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8"><style>body{{margin:0;background:#fff}}'
                        f'</style></head><body>{body}</body></html>', encoding="utf-8")
        shot = Path(tmp) / "figure.png"
        render(page, width, height, screenshot=shot)
        if not shot.is_file() or shot.stat().st_size == 0:
            raise BrowserError(f"{path}: Chromium wrote no screenshot")
        partial = path.with_name(path.name + ".tmp")
        shutil.copyfile(shot, partial)
        os.replace(partial, path)
    return path


def png_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of a PNG file, from its header; raises ValueError for anything else."""
    head = Path(path).read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{path}: not a PNG file")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
