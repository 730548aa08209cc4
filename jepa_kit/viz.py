"""Figures for the notebooks: the block-causal mask, the concept objective's two attention patterns,
training curves; the figures that compare many runs live in ``jepa_kit.compare_figures`` and are
re-exported here, so that a notebook's one import is viz.

All figures are plotly. ``setup_plotly()`` picks the renderer: in a live notebook
"plotly_mimetype+notebook" (JupyterLab draws the plotly mime type; HTML exported by nbconvert
has plotly.js embedded once, no network needed). In a notebook executed headless (papermill,
nbconvert) "plotly_mimetype+notebook_connected": the same figures, but the HTML loads plotly.js
from its CDN instead of carrying its 3.5 MB in every executed notebook (``inline_plotly_js``
puts it back into an exported page that must work offline). Headless, the live widgets
(``LiveLoss``, ``MaskExplorer``) are not created either: their saved state would carry
plotly.js again, and exported HTML shows a widget as nothing, so a static figure stands in.

Token names such as ``<f_12>`` are HTML-escaped wherever plotly shows text (plotly drops tags).
What the figures draw is computed without plotly: the masks in ``jepa_kit.mask_views``, the
series, settings and colours of runs in ``jepa_kit.run_views``.
"""
from __future__ import annotations

import re

import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from jepa_kit.collect import of_kind
from jepa_kit.data import SPLITS
# what the mask figures draw; equivalence_table is re-exported for notebook 01, whose one import is viz
from jepa_kit.mask_views import (CONCEPT_SLOTS, MASK_CATEGORIES, concept_mask_view, mask_hover,
                                 mask_layout_update, mask_title, mask_view, packed_vs_separate, small_model)
from jepa_kit.mask_views import equivalence_table as equivalence_table  # noqa: F401 (re-export)
from jepa_kit.mask_views import esc as _esc
# what the training and comparison figures draw; re-exported for the notebooks, whose one import is viz
from jepa_kit.run_views import (CONCEPT_EVAL_METRICS, CONCEPT_TABLE_COLUMNS, METRIC_LABELS,  # noqa: F401
                                SETTING_PALETTE, SPLIT_COLORS, SPLIT_LABELS, TABLE_COLUMNS, TOKEN_EVAL_METRICS,
                                MRR_NAMES, entity_counts, by_setting, chance_level, eval_metrics, loss_series,
                                natural_key, results_frame, run_styles, setting_colors, setting_label, strip_seed,
                                swatch, table_settings)
# the figures that compare many runs (03, the demo's report), re-exported likewise
from jepa_kit.compare_figures import (BAR_ROW_PX, MANY_BARS, MIN_PLOT_PX, METRIC_TITLES, SEED_MODES,  # noqa: F401
                                      ablation_figure, forward_reverse_figure, learning_curves_figure,
                                      logit_lens_figure, mrr_by_size_figure, mrr_curves_figure)

RENDERER = "plotly_mimetype+notebook"
HEADLESS_RENDERER = "plotly_mimetype+notebook_connected"  # plotly.js from cdn.plot.ly, not in every notebook


def headless() -> bool:
    """True in a notebook executed by papermill or nbconvert (no one is watching; widgets are not kept)."""
    from jepa_kit.runtime import notebook_kernel
    return notebook_kernel() == "headless"


def setup_plotly(renderer: str | None = None) -> str:
    """Pick the renderer (None: ``RENDERER`` live, ``HEADLESS_RENDERER`` headless) and return it."""
    pio.renderers.default = renderer or (HEADLESS_RENDERER if headless() else RENDERER)
    return pio.renderers.default


def inline_plotly_js(html: str) -> str:
    """An exported page of a headless notebook, readable offline: plotly.js embedded once in
    place of the CDN link that ``HEADLESS_RENDERER`` writes."""
    from plotly.offline import get_plotlyjs
    # every figure's <script src="https://cdn.plot.ly/..."> and the renderer's `import "https://cdn.plot.ly/..."`
    link = re.compile(r'<script[^>]*src="https://cdn\.plot\.ly/[^"]*"[^>]*></script>'
                      r'|<script type="module">import "https://cdn\.plot\.ly/[^"]*"</script>')
    first = link.search(html)
    if first is None:
        return html
    bundle = f'<script type="text/javascript">{get_plotlyjs()}</script>'
    return html[:first.start()] + bundle + link.sub("", html[first.end():])


# -- the block-causal mask ---------------------------------------------------------------------
def mask_figure(row_ids, vocab, k: int = 1, caption: str | None = None, widget: bool = False):
    """Labelled heatmap of the packed row's mask (rows = queries, columns = keys).

    ``widget=True`` returns a ``go.FigureWidget`` (live, updated in place by MaskExplorer).
    """
    view = mask_view(row_ids, vocab, k)
    n = len(MASK_CATEGORIES)
    scale = []
    for i, (_, color) in enumerate(MASK_CATEGORIES):
        scale += [[i / n, color], [(i + 1) / n, color]]
    heat = go.Heatmap(
        z=view.category, zmin=-0.5, zmax=n - 0.5, colorscale=scale, xgap=1, ygap=1,
        hovertext=mask_hover(view), hoverinfo="text",
        colorbar=dict(tickvals=list(range(n)), ticktext=[c[0] for c in MASK_CATEGORIES], title="cell"),
    )
    fig = (go.FigureWidget if widget else go.Figure)(data=[heat])
    fig.update_layout(width=820, height=800, margin=dict(l=150, b=190, t=110, r=40),
                      xaxis=dict(title="key (attended to)", tickangle=-60, constrain="domain"),
                      yaxis=dict(title="query (attending)", scaleanchor="x"))
    fig.update_layout(mask_layout_update(view, mask_title(view, caption)))
    return fig


def mask_figure_static(row_ids, vocab, ks=(0, 1, 2, 3, 4), k: int = 1, caption: str | None = None) -> go.Figure:
    """The mask figure with an in-browser slider over k: works in exported HTML, no kernel."""
    ks = list(ks)
    fig = mask_figure(row_ids, vocab, k=k if k in ks else ks[0], caption=caption)
    steps = []
    for kk in ks:
        view = mask_view(row_ids, vocab, kk)
        steps.append(dict(label=str(kk), method="update",
                          args=[{"z": [view.category], "hovertext": [mask_hover(view)]},
                                mask_layout_update(view, mask_title(view, caption))]))
    fig.update_layout(sliders=[dict(active=ks.index(k) if k in ks else 0, steps=steps,
                                    currentvalue=dict(prefix="k (PRED tokens) = "),
                                    y=0, yanchor="top", pad=dict(t=150))])
    fig.update_layout(height=900, margin=dict(b=300))
    return fig


class MaskExplorer:
    """Live explorer: k slider, item picker, attention implementation; the figure changes in place.

    ``explorer.figure`` is a ``go.FigureWidget``; ``explorer.check`` shows the packed-vs-separate
    max difference for the chosen item. Display it with ``display(explorer)``. Headless (papermill)
    ``figure`` is a static ``go.Figure`` and the explorer displays it with the check line: no one
    can move a slider there, and a FigureWidget's saved state would carry plotly.js (3.5 MB).
    """

    def __init__(self, dataset, split: str = "train", index: int = 0, k: int = 1,
                 attn_implementations=None, max_k: int = 4, model_seed: int = 0, live: bool | None = None):
        import ipywidgets as W
        from jepa_kit.attention import ATTN_IMPLEMENTATIONS
        attn_implementations = attn_implementations or ATTN_IMPLEMENTATIONS
        self.dataset = dataset
        self._models: dict[str, object] = {}
        self._seed = model_seed
        splits = [s for s in SPLITS if s in dataset.valid and len(dataset.valid[s])]
        self.split = W.Dropdown(options=splits, value=split if split in splits else splits[0], description="split")
        self.index = W.BoundedIntText(value=index, min=0, max=len(dataset.valid[self.split.value]) - 1, description="item")
        self.k = W.IntSlider(value=k, min=0, max=max_k, description="k (PRED)")
        self.attn = W.Dropdown(options=list(attn_implementations), description="attention")
        self.item_text = W.HTML()
        self.check = W.HTML()
        self.live = not headless() if live is None else live
        self.figure = mask_figure(self.row(), dataset.vocab, k=k, caption=self.caption(), widget=self.live)
        for w in (self.split, self.index, self.k, self.attn):
            w.observe(self._changed, names="value")
        self.widget = W.VBox([W.HBox([self.split, self.index]), W.HBox([self.k, self.attn]),
                              self.item_text, self.check] + ([self.figure] if self.live else []))
        self.refresh_text()

    def row(self):
        return self.dataset.valid[self.split.value].ids[self.index.value]

    def caption(self) -> str:
        v = self.dataset.vocab
        return f"{self.split.value} item {self.index.value}: " + " ".join(v.decode(self.row()))

    def model(self):
        impl = self.attn.value
        if impl not in self._models:
            self._models[impl] = small_model(self.dataset.vocab, impl, seed=self._seed)
        return self._models[impl]

    def _changed(self, change) -> None:
        if change["owner"] is self.split:
            self.index.max = len(self.dataset.valid[self.split.value]) - 1
        self.update()

    def update(self) -> None:
        """Change the figure in place (no re-render) and rerun the equivalence check."""
        view = mask_view(self.row(), self.dataset.vocab, self.k.value)
        with self.figure.batch_update():
            self.figure.data[0].z = view.category
            self.figure.data[0].hovertext = mask_hover(view)
            self.figure.update_layout(mask_layout_update(view, mask_title(view, self.caption())))
        self.refresh_text()

    def refresh_text(self) -> None:
        diff = packed_vs_separate(self.model(), self.row(), self.k.value)
        self.last_diff = diff
        ok = diff < 1e-4
        self.item_text.value = f"<code>{_esc(self.caption())}</code>"
        self.check.value = (f"packed [F | R] (the kit's pass) vs separate F and R passes, {self.attn.value} attention, "
                            f"random small GPT-2: max |&Delta;h| = <b>{diff:.2e}</b> over all positions "
                            f"({'equal within float tolerance' if ok else 'NOT EQUAL'})")

    def _ipython_display_(self):
        from IPython.display import HTML, display
        if self.live:
            display(self.widget)
        else:  # static: what the controls would show, then the figure
            display(HTML(f"{self.item_text.value}<br>{self.check.value}"), self.figure)


# -- the concept objective's attention (01_attention_masks) ------------------------------------
ATTEND_COLORS = ("#d9d9d9", "#1f77b4")  # blocked, may attend


def concept_mask_figure(row_ids=None, vocab=None, patch_len: int | None = None, n_recognition: int = 1,
                        caption: str | None = None) -> go.Figure:
    """Two heatmaps (rows = queries, columns = keys): within-patch recognition, then causal
    attention over the 4 concepts (``concept_mask_view``)."""
    view = concept_mask_view(row_ids, vocab, patch_len)
    P, n = view.patch_len, len(CONCEPT_SLOTS)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.6, 0.4], horizontal_spacing=0.16, subplot_titles=[
        f"recognition: blocks 1..W (W = n_recognition = {n_recognition}),<br>each patch alone, causal inside it",
        "concept stack: the other blocks,<br>causal over [h, r, mask, t]"])
    scale = [[0, ATTEND_COLORS[0]], [0.5, ATTEND_COLORS[0]], [0.5, ATTEND_COLORS[1]], [1, ATTEND_COLORS[1]]]
    for col, (z, lab) in enumerate(((view.recognition, view.recognition_labels), (view.concepts, view.concept_labels)), 1):
        hover = [[f"query {lab[q]}<br>key {lab[k]}<br>{'may attend' if z[q][k] else 'blocked'}" for k in range(len(lab))]
                 for q in range(len(lab))]
        fig.add_heatmap(z=z, zmin=0, zmax=1, colorscale=scale, showscale=False, xgap=1, ygap=1, hovertext=hover,
                        hoverinfo="text", row=1, col=col)
        ticks = list(range(len(lab)))
        fig.update_xaxes(tickvals=ticks, ticktext=lab, tickangle=-60, title_text="key (attended to)", row=1, col=col)
        fig.update_yaxes(tickvals=ticks, ticktext=lab, autorange="reversed", title_text="query (attending)",
                         row=1, col=col)
    for b in range(1, n):  # patch boundaries
        edge = b * P - 0.5
        fig.add_shape(type="line", x0=edge, x1=edge, y0=-0.5, y1=n * P - 0.5, line=dict(color="white", width=3),
                      row=1, col=1)
        fig.add_shape(type="line", y0=edge, y1=edge, x0=-0.5, x1=n * P - 0.5, line=dict(color="white", width=3),
                      row=1, col=1)
    fig.add_shape(type="rect", x0=-0.5, x1=2.5, y0=1.5, y1=2.5, line=dict(color="#ff7f0e", width=3), row=1, col=2)
    title = ("concept objective: recognition per patch, then causal attention over concepts<br><sup>"
             "the prediction is the mask concept's output (orange); it never sees the tail, whose concept is the target"
             + (f"; {_esc(caption)}" if caption else "") + "</sup>")
    fig.update_layout(title=title, width=1000, height=560, margin=dict(l=140, b=170, t=130, r=30))
    return fig


# -- training curves (02_train) ----------------------------------------------------------------


def loss_figure(rows: list[dict], title: str = "training loss", objective: str | None = None) -> go.Figure:
    """NTP and JEPA loss (and the total) over steps from metrics.jsonl rows (``loss_series``)."""
    tr = of_kind(rows, "train")
    fig = go.Figure()
    for key, name, dash in loss_series(objective):
        pts = [(r["step"], r[key]) for r in tr if r.get(key) is not None]
        if pts:
            fig.add_scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], name=name, mode="lines", line=dict(dash=dash))
    # log axis: the JEPA term (~0.003 with cosine) is three decades under NTP and flat on a linear one
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="loss (log scale)", yaxis_type="log", height=380)
    return fig


def eval_figure(rows: list[dict], metrics=None, title: str = "evaluation over steps") -> go.Figure:
    """Per-split evaluation metrics over steps (one panel per metric; ``metrics`` None: ``eval_metrics``)."""
    ev = of_kind(rows, "eval")
    metrics = tuple(metrics or eval_metrics(rows))
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[METRIC_LABELS.get(m, m) for m in metrics])
    for j, metric in enumerate(metrics, 1):
        for split in SPLITS:
            pts = [(r["step"], r["splits"][split][metric]) for r in ev
                   if split in r.get("splits", {}) and r["splits"][split].get(metric) is not None]
            if pts:
                fig.add_scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
                                name=SPLIT_LABELS[split], legendgroup=split, showlegend=j == 1,
                                line=dict(color=SPLIT_COLORS[split]), row=1, col=j)
    fig.update_xaxes(title_text="step")
    for j, metric in enumerate(metrics, 1):
        if "loss" not in metric and "rank" not in metric:
            fig.update_yaxes(range=[0, 1.02], row=1, col=j)
    fig.update_layout(title=title, height=380)
    return fig


class LiveLoss:
    """The loss growing in place while ``train(config, callback=live.update)`` runs; use as
    ``with viz.LiveLoss(objective=...) as live: train(config, callback=live.update)``.

    Live (JupyterLab) ``figure`` is a FigureWidget updated per metrics row; when the block ends the
    widget is replaced by a static figure, which exported HTML can draw (a widget it shows as
    nothing). Headless (papermill) no widget is made: the figure is drawn once, at the end.
    ``keep=False``: when the block ends normally the chart is removed and nothing is drawn (for a
    notebook that draws the run's full history next); after an exception the static figure is
    still drawn, since the cells after it will not run."""

    def __init__(self, title: str = "training loss (live)", objective: str | None = None, live: bool | None = None,
                 keep: bool = True):
        self.title, self.objective, self.keep = title, objective, keep
        self.live = not headless() if live is None else live
        self.rows: list[dict] = []
        series = loss_series(objective)
        self._keys = tuple(key for key, _, _ in series)
        empty = loss_figure([], title=title, objective=objective)
        self.figure = go.FigureWidget(empty) if self.live else empty
        if self.live:
            for _, name, dash in series:
                self.figure.add_scatter(x=[], y=[], name=name, mode="lines", line=dict(dash=dash))
        self._handle = None

    def update(self, row: dict) -> None:
        if not of_kind([row], "train"):
            return
        self.rows.append(row)
        if not self.live:
            return
        with self.figure.batch_update():
            for trace, key in zip(self.figure.data, self._keys):
                if row.get(key) is not None:
                    trace.x = tuple(trace.x or ()) + (row["step"],)
                    trace.y = tuple(trace.y or ()) + (row[key],)

    def static_figure(self) -> go.Figure:
        return loss_figure(self.rows, title=self.title, objective=self.objective)

    def show(self) -> None:
        """Display the widget (live; headless there is nothing to show until ``close``)."""
        from IPython.display import display
        if self.live:
            self._handle = display(self.figure, display_id=True)

    def close(self, failed: bool = False) -> None:
        """Swap the widget for the static figure of every row so far (displayed afresh, so that
        plotly's renderer sets up plotly.js for the exported page); with ``keep=False`` only after
        a failure."""
        from IPython.display import HTML, display
        if self._handle is not None:
            self._handle.update(HTML(""))
            self._handle = None
        if self.keep or failed:
            display(self.static_figure())

    def __enter__(self) -> "LiveLoss":
        self.show()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(failed=exc_type is not None)

    def _ipython_display_(self):
        from IPython.display import display
        display(self.figure)
