"""Figures for the notebooks: the block-causal mask, the concept objective's two attention patterns,
training curves, run comparisons (MRR against steps for every objective).

All figures are plotly. ``setup_plotly()`` picks a renderer that works both live in
JupyterLab (the plotly mime type) and in HTML exported by nbconvert (plotly.js embedded
once in the page, no network needed): "plotly_mimetype+notebook".

Token names such as ``<f_12>`` are HTML-escaped wherever plotly shows text, otherwise
plotly would treat them as tags and drop them. What the mask figures draw (which query may attend
to which key, the packed-vs-separate check) is computed in ``jepa_kit.mask_views``, without plotly.
"""
from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from jepa_kit.analysis import REVERSE_AUG_LABEL, run_label
from jepa_kit.collect import mrr_curve, of_kind
from jepa_kit.data import SPLITS
# what the mask figures draw; equivalence_table is re-exported for notebook 01, whose one import is viz
from jepa_kit.mask_views import (CONCEPT_SLOTS, MASK_CATEGORIES, MaskView, concept_mask_view, mask_view,
                                 packed_vs_separate, small_model)
from jepa_kit.mask_views import equivalence_table as equivalence_table  # noqa: F401 (re-export)
from jepa_kit.mask_views import esc as _esc

RENDERER = "plotly_mimetype+notebook"
SPLIT_LABELS = {"train": "train (both directions seen)", "atomic": "atomic (forward, seen)", "test": "test (reverse, never seen)"}
SPLIT_COLORS = {"train": "#7f7f7f", "atomic": "#1f77b4", "test": "#d62728"}


def setup_plotly(renderer: str = RENDERER) -> None:
    """Render live in JupyterLab and embedded (offline) in exported HTML."""
    pio.renderers.default = renderer


# -- the block-causal mask ---------------------------------------------------------------------
def _mask_hover(view: MaskView) -> list[list[str]]:
    names = [c[0] for c in MASK_CATEGORIES]
    lab = view.labels
    return [[f"query {lab[q]}<br>key {lab[kk]}<br>{names[view.category[q][kk]]}" for kk in range(len(lab))]
            for q in range(len(lab))]


def _mask_layout_update(view: MaskView, title: str) -> dict:
    """Everything about the mask figure's layout that depends on the row and k (flat keys, for sliders)."""
    L, nf = len(view.tokens), view.block_lengths[0]
    ticks = list(range(L))
    edge = nf - 0.5
    shapes = [
        dict(type="line", x0=edge, x1=edge, y0=-0.5, y1=L - 0.5, line=dict(color="white", width=3)),
        dict(type="line", y0=edge, y1=edge, x0=-0.5, x1=L - 0.5, line=dict(color="white", width=3)),
    ]
    annotations = [dict(x=(nf - 1) / 2, y=1.0, xref="x", yref="paper", yanchor="bottom", showarrow=False,
                        text=f"<b>forward block F</b> ({nf - view.k} tokens + {view.k} PRED)"),
                   dict(x=nf + (L - nf - 1) / 2, y=1.0, xref="x", yref="paper", yanchor="bottom", showarrow=False,
                        text="<b>reverse block R</b> (positions restart at 0)")]
    if view.k:
        shapes.append(dict(type="rect", x0=nf - view.k - 0.5, x1=nf - 0.5, y0=nf - view.k - 0.5, y1=nf - 0.5,
                           line=dict(color="#ff7f0e", width=2)))
    return {
        "title.text": title,
        "xaxis.tickvals": ticks, "xaxis.ticktext": view.labels, "xaxis.range": [-0.5, L - 0.5],
        "yaxis.tickvals": ticks, "yaxis.ticktext": view.labels, "yaxis.range": [L - 0.5, -0.5],
        "shapes": shapes, "annotations": annotations,
    }


def _mask_title(view: MaskView, caption: str | None) -> str:
    head = f"block-causal mask, k = {view.k}: F = {view.block_lengths[0]} tokens, R = {view.block_lengths[1]}"
    return head + (f"<br><sup>{_esc(caption)}</sup>" if caption else "")


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
        hovertext=_mask_hover(view), hoverinfo="text",
        colorbar=dict(tickvals=list(range(n)), ticktext=[c[0] for c in MASK_CATEGORIES], title="cell"),
    )
    fig = (go.FigureWidget if widget else go.Figure)(data=[heat])
    fig.update_layout(width=820, height=800, margin=dict(l=150, b=190, t=110, r=40),
                      xaxis=dict(title="key (attended to)", tickangle=-60, constrain="domain"),
                      yaxis=dict(title="query (attending)", scaleanchor="x"))
    fig.update_layout(_mask_layout_update(view, _mask_title(view, caption)))
    return fig


def mask_figure_static(row_ids, vocab, ks=(0, 1, 2, 3, 4), k: int = 1, caption: str | None = None) -> go.Figure:
    """The mask figure with an in-browser slider over k: works in exported HTML, no kernel."""
    ks = list(ks)
    fig = mask_figure(row_ids, vocab, k=k if k in ks else ks[0], caption=caption)
    steps = []
    for kk in ks:
        view = mask_view(row_ids, vocab, kk)
        steps.append(dict(label=str(kk), method="update",
                          args=[{"z": [view.category], "hovertext": [_mask_hover(view)]},
                                _mask_layout_update(view, _mask_title(view, caption))]))
    fig.update_layout(sliders=[dict(active=ks.index(k) if k in ks else 0, steps=steps,
                                    currentvalue=dict(prefix="k (PRED tokens) = "),
                                    y=0, yanchor="top", pad=dict(t=150))])
    fig.update_layout(height=900, margin=dict(b=300))
    return fig


class MaskExplorer:
    """Live explorer: k slider, item picker, attention implementation; the figure changes in place.

    ``explorer.figure`` is a ``go.FigureWidget``; ``explorer.check`` shows the packed-vs-separate
    max difference for the chosen item. Display it with ``display(explorer.widget)``.
    """

    def __init__(self, dataset, split: str = "train", index: int = 0, k: int = 1,
                 attn_implementations=None, max_k: int = 4, model_seed: int = 0):
        import ipywidgets as W
        from jepa_kit.model import ATTN_IMPLEMENTATIONS
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
        self.figure = mask_figure(self.row(), dataset.vocab, k=k, caption=self.caption(), widget=True)
        for w in (self.split, self.index, self.k, self.attn):
            w.observe(self._changed, names="value")
        self.widget = W.VBox([W.HBox([self.split, self.index]), W.HBox([self.k, self.attn]),
                              self.item_text, self.check, self.figure])
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
            self.figure.data[0].hovertext = _mask_hover(view)
            self.figure.update_layout(_mask_layout_update(view, _mask_title(view, self.caption())))
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
        from IPython.display import display
        display(self.widget)


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
def loss_series(objective: str | None = None) -> tuple[tuple[str, str, str], ...]:
    """(metrics.jsonl key, legend name, dash) of the loss curves: NTP, JEPA and the total; a concept
    run has one loss, its contrastive loss (logged as jepa_loss; its ntp_loss is 0)."""
    if objective == "concept":
        return (("jepa_loss", "concept (contrastive)", "solid"), ("loss", "total", "dot"))
    return (("ntp_loss", "NTP", "solid"), ("jepa_loss", "JEPA", "solid"), ("loss", "total", "dot"))


def loss_figure(rows: list[dict], title: str = "training loss", objective: str | None = None) -> go.Figure:
    """NTP and JEPA loss (and the total) over steps from metrics.jsonl rows (``loss_series``)."""
    tr = of_kind(rows, "train")
    fig = go.Figure()
    for key, name, dash in loss_series(objective):
        pts = [(r["step"], r[key]) for r in tr if r.get(key) is not None]
        if pts:
            fig.add_scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], name=name, mode="lines", line=dict(dash=dash))
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="loss", height=380)
    return fig


TOKEN_EVAL_METRICS = ("exact_match", "entity_mrr")
CONCEPT_EVAL_METRICS = ("concept_mrr", "concept_mrr_paper_ties")  # the kit's tie rule, then the paper's


def eval_metrics(rows: list[dict]) -> tuple[str, ...]:
    """The per-split metrics a run's eval rows hold: concept MRR (both tie rules) for a concept
    run, which has no token metrics; exact match and entity MRR otherwise."""
    concept = any(isinstance(m, dict) and m.get("concept_mrr") is not None
                  for r in of_kind(rows, "eval") for m in (r.get("splits") or {}).values())
    return CONCEPT_EVAL_METRICS if concept else TOKEN_EVAL_METRICS


def eval_figure(rows: list[dict], metrics=None, title: str = "evaluation over steps") -> go.Figure:
    """Per-split evaluation metrics over steps (one panel per metric; ``metrics`` None: ``eval_metrics``)."""
    ev = of_kind(rows, "eval")
    metrics = tuple(metrics or eval_metrics(rows))
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=list(metrics))
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
    """A FigureWidget of the loss that grows in place while ``train(config, callback=live.update)`` runs."""

    def __init__(self, title: str = "training loss (live)", objective: str | None = None):
        self.figure = go.FigureWidget(loss_figure([], title=title))
        series = loss_series(objective)
        for _, name, dash in series:
            self.figure.add_scatter(x=[], y=[], name=name, mode="lines", line=dict(dash=dash))
        self._keys = tuple(key for key, _, _ in series)

    def update(self, row: dict) -> None:
        if not of_kind([row], "train"):
            return
        with self.figure.batch_update():
            for trace, key in zip(self.figure.data, self._keys):
                if row.get(key) is not None:
                    trace.x = tuple(trace.x or ()) + (row["step"],)
                    trace.y = tuple(trace.y or ()) + (row[key],)

    def _ipython_display_(self):
        from IPython.display import display
        display(self.figure)


TABLE_COLUMNS = ("exact_match", "mrr_first", "mrr_last", "entity_mrr", "joint_mrr_approx", "ntp_loss", "n")
CONCEPT_TABLE_COLUMNS = ("concept_mrr", "concept_mrr_paper_ties", "concept_rank_mean", "n")


def results_frame(results: dict):
    """results.json (or evaluate()'s dict) as a table: one row per split (a concept run: its concept
    MRR under both tie rules and mean rank; it has no token metrics)."""
    import pandas as pd
    splits = [s for s in SPLITS if isinstance(results.get(s), dict)]
    concept = any(results[s].get("concept_mrr") is not None for s in splits)
    columns = CONCEPT_TABLE_COLUMNS if concept else TABLE_COLUMNS
    rows = {s: {c: results[s].get(c) for c in columns} for s in splits}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index = [SPLIT_LABELS[s] for s in frame.index]
    if results.get("trains_on_test_facts"):
        frame.index.name = f"reverse_aug: {REVERSE_AUG_LABEL}"
    return frame


# -- comparing runs (03_reverse_accuracy) ------------------------------------------------------
METRIC_TITLES = {"mrr": "MRR over every entity (entity MRR; concept MRR for concept runs)"}


def forward_reverse_figure(table, metrics=("exact_match", "mrr")) -> go.Figure:
    """Per run: forward (atomic) vs reverse (test) for each metric, as grouped bars. ``mrr`` is
    ``collect``'s ``<split>.mrr``: entity MRR, or concept MRR for concept runs (which have no exact match)."""
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[METRIC_TITLES.get(m, m) for m in metrics])
    labels = [run_label(r) for r in table.to_dict("records")]
    for j, metric in enumerate(metrics, 1):
        for split, name in (("atomic", "forward (atomic)"), ("test", "reverse (test)")):
            col = f"{split}.{metric}"
            if col in table:
                fig.add_bar(x=labels, y=table[col], name=name, legendgroup=split, showlegend=j == 1,
                            marker_color=SPLIT_COLORS[split], row=1, col=j)
    fig.update_layout(barmode="group", title="forward vs reverse, per run", height=450)
    fig.update_yaxes(range=[0, 1])
    return fig


def ablation_figure(summary, factor: str, metric: str = "exact_match") -> go.Figure:
    """mean ± std over seeds against one ablation factor, forward (atomic) and reverse (test),
    from ``jepa_kit.collect.ablation_summary``; one group of bars per objective (and setting) and value."""
    sub = summary[summary["factor"] == factor]
    fig = go.Figure()
    groups = list(sub["objective"])
    if "setting" in sub:  # runs of different data or architecture (collect.SETTING_FIELDS): name the setting
        groups = [f"{o} [{st}]" if st else o for o, st in zip(groups, sub["setting"])]
    x = [groups, [str(v) for v in sub["value"]]]
    for split, name in (("atomic", "forward (atomic)"), ("test", "reverse (test)")):
        mean, std = f"{split}.{metric} mean", f"{split}.{metric} std"
        if mean in sub:
            fig.add_bar(x=x, y=sub[mean], error_y=dict(type="data", array=sub[std].fillna(0)),
                        name=name, marker_color=SPLIT_COLORS[split],
                        hovertext=[f"n = {n}" for n in sub["n"]])
    by = "objective" if factor == "defaults" else factor
    fig.update_layout(barmode="group", title=f"{metric} by {by} (mean ± std over seeds)",
                      xaxis_title="objective" if factor == "defaults" else f"objective / {factor}", height=380)
    fig.update_yaxes(range=[0, 1.02])
    return fig


def learning_curves_figure(curves: dict[str, list[dict]], table=None, metric: str = "exact_match",
                           splits=("atomic", "test")) -> go.Figure:
    """One eval metric over steps for many runs, overlaid (``curves``: run name -> metrics rows,
    from ``jepa_kit.collect.learning_curves``); one panel per split. ``table`` (``collect``) labels runs."""
    labels = {r["run"]: run_label(r) for r in table.to_dict("records")} if table is not None else {}
    palette = pio.templates["plotly"].layout.colorway
    fig = make_subplots(rows=1, cols=len(splits), subplot_titles=[SPLIT_LABELS[s] for s in splits], shared_yaxes=True)
    for i, (name, rows) in enumerate(curves.items()):
        for j, split in enumerate(splits, 1):
            pts = [(r["step"], r["splits"][split][metric]) for r in of_kind(rows, "eval")
                   if split in r.get("splits", {}) and r["splits"][split].get(metric) is not None]
            if pts:
                fig.add_scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
                                name=labels.get(name, name), legendgroup=name, showlegend=j == 1,
                                line=dict(color=palette[i % len(palette)]), row=1, col=j)
    fig.update_xaxes(title_text="step")
    if "loss" not in metric and "rank" not in metric:
        fig.update_yaxes(range=[0, 1.02])
    fig.update_layout(title=f"learning curves: {metric}", height=400)
    return fig


MRR_NAMES = {"entity_mrr": "entity MRR", "concept_mrr": "concept MRR"}


def _entity_counts(table, n_entities) -> list[int]:
    if n_entities is not None:
        return [int(n) for n in (n_entities if isinstance(n_entities, (list, tuple, set)) else [n_entities])]
    if table is None or "n_entities" not in table:
        return []
    return sorted({int(n) for n in table["n_entities"] if n is not None and n == n})


def mrr_curves_figure(curves: dict[str, list[dict]], table=None, splits=("atomic", "test"), n_entities=None,
                      above: float = 5.0, log_x: bool = False) -> go.Figure:
    """Every run's MRR over every entity against steps, one panel per split: entity MRR for
    token-level objectives, concept MRR for concept runs (``jepa_kit.collect.mrr_curve``; each
    legend entry names which). ``curves``: run name -> metrics.jsonl rows (``collect.learning_curves``),
    read while a run is still training. A dashed line marks chance (H_n / n for n entities, the
    same for both MRRs under the kit's tie rule) and a dotted one ``above`` x chance; ``n_entities``
    (one or several) defaults to the ``n_entities`` column of ``table`` (``collect.collect``)."""
    from jepa_kit.evaluate import chance_entity_mrr
    labels = {r["run"]: run_label(r) for r in table.to_dict("records")} if table is not None else {}
    palette = pio.templates["plotly"].layout.colorway
    fig = make_subplots(rows=1, cols=len(splits), subplot_titles=[SPLIT_LABELS[s] for s in splits], shared_yaxes=True)
    for i, (name, rows) in enumerate(curves.items()):
        for j, split in enumerate(splits, 1):
            metric, pts = mrr_curve(rows, split)
            if not pts:
                continue
            concept = metric == "concept_mrr"
            fig.add_scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
                            name=f"{labels.get(name, name)} · {MRR_NAMES[metric]}", legendgroup=name,
                            showlegend=j == 1, line=dict(color=palette[i % len(palette)], dash="dash" if concept else "solid"),
                            marker=dict(symbol="diamond" if concept else "circle"), row=1, col=j)
    for n in _entity_counts(table, n_entities):
        chance = chance_entity_mrr(n)
        for j in range(1, len(splits) + 1):
            last = j == len(splits)
            fig.add_hline(y=chance, line=dict(color="black", dash="dash", width=1), row=1, col=j,
                          annotation_text=f"chance, {n} entities" if last else None)
            fig.add_hline(y=above * chance, line=dict(color="grey", dash="dot", width=1), row=1, col=j,
                          annotation_text=f"{above:g} x chance" if last else None)
    fig.update_xaxes(title_text="step", type="log" if log_x else None)
    fig.update_yaxes(range=[0, 1.02])
    fig.update_yaxes(title_text="MRR over every entity", row=1, col=1)
    fig.update_layout(title="MRR against steps, every objective: entity MRR (token-level objectives, solid) and "
                            "concept MRR (concept objective, dashed)<br><sup>on 1-token data (the abstract setting) a "
                            "token-level run's entity MRR is the number comparable to concept MRR; both count ties half"
                            "</sup>", height=460, legend=dict(font=dict(size=10)))
    return fig


def logit_lens_figure(layers: dict[str, dict[str, list[float]]], metric: str = "entity_mrr") -> go.Figure:
    """Per-layer (logit-lens) metric: ``layers[run][split]`` is a list over layers."""
    splits = ("atomic", "test")
    fig = make_subplots(rows=1, cols=len(splits), subplot_titles=[SPLIT_LABELS[s] for s in splits], shared_yaxes=True)
    for name, per_split in layers.items():
        for j, split in enumerate(splits, 1):
            vals = per_split.get(split)
            if vals:
                fig.add_scatter(x=list(range(1, len(vals) + 1)), y=vals, mode="lines+markers", name=name,
                                legendgroup=name, showlegend=j == 1, row=1, col=j)
    fig.update_xaxes(title_text="layer", dtick=1)
    fig.update_layout(title=f"logit lens: {metric} per layer", height=380)
    return fig
