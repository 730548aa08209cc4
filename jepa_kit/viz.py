"""Figures for the notebooks: the block-causal mask, training curves, run comparisons.

All figures are plotly. ``setup_plotly()`` picks a renderer that works both live in
JupyterLab (the plotly mime type) and in HTML exported by nbconvert (plotly.js embedded
once in the page, no network needed): "plotly_mimetype+notebook".

Token names such as ``<f_12>`` are HTML-escaped wherever plotly shows text, otherwise
plotly would treat them as tags and drop them.
"""
from __future__ import annotations

import html
from dataclasses import dataclass

import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from jepa_kit.analysis import REVERSE_AUG_LABEL, run_label
from jepa_kit.collect import of_kind
from jepa_kit.data import SPLITS

RENDERER = "plotly_mimetype+notebook"
SPLIT_LABELS = {"train": "train (both directions seen)", "atomic": "atomic (forward, seen)", "test": "test (reverse, never seen)"}
SPLIT_COLORS = {"train": "#7f7f7f", "atomic": "#1f77b4", "test": "#d62728"}


def setup_plotly(renderer: str = RENDERER) -> None:
    """Render live in JupyterLab and embedded (offline) in exported HTML."""
    pio.renderers.default = renderer


def _esc(text: str) -> str:
    return html.escape(str(text), quote=False)


# -- the block-causal mask ---------------------------------------------------------------------
# cell categories of the heatmap, in colour-bar order
MASK_CATEGORIES = (
    ("blocked: other block", "#3b3b3b"),
    ("blocked: future (causal)", "#c9c9c9"),
    ("forward block F", "#1f77b4"),
    ("PRED query", "#ff7f0e"),
    ("reverse block R", "#2ca02c"),
)


@dataclass
class MaskView:
    """One packed JEPA row ``[F | R]`` and who may attend to whom."""
    tokens: list[str]          # token names, F then R
    roles: list[str]           # "F", "PRED" or "R" per position
    positions: list[int]       # position ids (restart at 0 in R)
    block_lengths: tuple[int, int]
    category: list[list[int]]  # [L, L] index into MASK_CATEGORIES (row = query, column = key)
    k: int

    @property
    def labels(self) -> list[str]:
        """Axis labels: role, position id and the token, HTML-escaped."""
        return [f"{r} {p}: {_esc(t)}" for r, p, t in zip(self.roles, self.positions, self.tokens)]


def packed_row(row_ids, vocab, k: int):
    """``(F, R)`` id tensors of one fact row: F = row + <PRED> x k, R = its reverse view."""
    import torch
    from jepa_kit.reversal import reverse_view
    row = torch.as_tensor(row_ids, dtype=torch.long).reshape(1, -1)
    f = torch.cat([row[0], torch.full((k,), vocab.pred_id, dtype=torch.long)])
    r = reverse_view(row, vocab)[0]
    return f, r


def mask_view(row_ids, vocab, k: int) -> MaskView:
    """The mask of one packed row as drawn: built by ``jepa_kit.masks`` (the mask the model uses)."""
    from jepa_kit.masks import block_causal_allowed, block_position_ids
    f, r = packed_row(row_ids, vocab, k)
    lengths = (len(f), len(r))
    allowed = block_causal_allowed(lengths)
    pos = block_position_ids(lengths).tolist()
    tokens = vocab.decode(f) + vocab.decode(r)
    roles = ["F"] * (len(f) - k) + ["PRED"] * k + ["R"] * len(r)
    block = [0] * len(f) + [1] * len(r)
    L = len(tokens)
    cat = [[0] * L for _ in range(L)]
    for q in range(L):
        for key in range(L):
            if allowed[q, key]:
                cat[q][key] = {"F": 2, "PRED": 3, "R": 4}[roles[q]]
            else:
                cat[q][key] = 1 if block[q] == block[key] else 0
    return MaskView(tokens, roles, pos, lengths, cat, k)


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


# -- packed pass == separate passes ------------------------------------------------------------
def packed_vs_separate(model, row_ids, k: int) -> float:
    """Max |h_packed - h_separate| over every position of one item (final hidden states).

    The packed pass is the kit's own (``GPT2WithJEPA.packed_hidden_states``: ``[F | R]``
    under the block-causal mask, positions restarting in R); the reference runs F and R
    as two plain sequences through the wrapped Hugging Face GPT-2.
    """
    import dataclasses
    import torch
    from jepa_kit.data import TYPE_CODES
    model.objective = dataclasses.replace(model.objective, k_pred=k)
    f, r = packed_row(row_ids, model.vocab, k)
    with torch.no_grad():
        row = torch.as_tensor(row_ids, dtype=torch.long).reshape(1, -1)
        out = model.packed_hidden_states(row, torch.full((1,), TYPE_CODES["train"], dtype=torch.int8))
        fed = out["tokens"][0, : len(f) + len(r)]
        if not torch.equal(fed, torch.cat([f, r])):  # the kit must pack exactly what the figure draws
            raise AssertionError(f"packed row {fed.tolist()} differs from [F | R] = {torch.cat([f, r]).tolist()}")
        packed = torch.cat([out["jepa_f"][0], out["jepa_r"][0]])
        h_f = model.gpt2(input_ids=f[None], output_hidden_states=True).hidden_states[-1][0]
        h_r = model.gpt2(input_ids=r[None], output_hidden_states=True).hidden_states[-1][0]
    return float((packed - torch.cat([h_f, h_r])).abs().max())


def small_model(vocab, attn_implementation: str = "sdpa", seed: int = 0, n_layer: int = 2, n_embd: int = 64, n_head: int = 4):
    """A small randomly initialised GPT2WithJEPA (same weights for every attention implementation, given the seed)."""
    import torch
    from jepa_kit.model import GPT2WithJEPA
    torch.manual_seed(seed)
    return GPT2WithJEPA(vocab, preset=dict(n_layer=n_layer, n_embd=n_embd, n_head=n_head),
                        attn_implementation=attn_implementation).eval()


def equivalence_table(row_ids, vocab, ks=(0, 1, 2, 3, 4), attn_implementations=None):
    """packed_vs_separate for every (attention implementation, k): a pandas table (static, for HTML)."""
    import pandas as pd
    from jepa_kit.model import ATTN_IMPLEMENTATIONS
    rows = []
    for impl in attn_implementations or ATTN_IMPLEMENTATIONS:
        model = small_model(vocab, impl)
        rows += [{"attention": impl, "k": k, "max |dh|": packed_vs_separate(model, row_ids, k)} for k in ks]
    table = pd.DataFrame(rows).pivot(index="attention", columns="k", values="max |dh|")
    table.columns.name = "max |h_packed - h_separate| at k ="
    return table


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


# -- training curves (02_train) ----------------------------------------------------------------
def loss_figure(rows: list[dict], title: str = "training loss") -> go.Figure:
    """NTP and JEPA loss (and the total) over steps from metrics.jsonl rows."""
    tr = of_kind(rows, "train")
    fig = go.Figure()
    for key, name, dash in (("ntp_loss", "NTP", "solid"), ("jepa_loss", "JEPA", "solid"), ("loss", "total", "dot")):
        pts = [(r["step"], r[key]) for r in tr if r.get(key) is not None]
        if pts:
            fig.add_scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], name=name, mode="lines", line=dict(dash=dash))
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="loss", height=380)
    return fig


def eval_figure(rows: list[dict], metrics=("exact_match", "entity_mrr"), title: str = "evaluation over steps") -> go.Figure:
    """Per-split evaluation metrics over steps (one panel per metric)."""
    ev = of_kind(rows, "eval")
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

    def __init__(self, title: str = "training loss (live)"):
        self.figure = go.FigureWidget(loss_figure([], title=title))
        for name in ("NTP", "JEPA", "total"):
            self.figure.add_scatter(x=[], y=[], name=name, mode="lines", line=dict(dash="dot" if name == "total" else "solid"))
        self._keys = ("ntp_loss", "jepa_loss", "loss")

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


def results_frame(results: dict):
    """results.json (or evaluate()'s dict) as a table: one row per split."""
    import pandas as pd
    rows = {s: {c: results[s].get(c) for c in TABLE_COLUMNS} for s in SPLITS if isinstance(results.get(s), dict)}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index = [SPLIT_LABELS[s] for s in frame.index]
    if results.get("trains_on_test_facts"):
        frame.index.name = f"reverse_aug: {REVERSE_AUG_LABEL}"
    return frame


# -- comparing runs (03_reverse_accuracy) ------------------------------------------------------
def forward_reverse_figure(table, metrics=("exact_match", "entity_mrr")) -> go.Figure:
    """Per run: forward (atomic) vs reverse (test) for each metric, as grouped bars."""
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=list(metrics))
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
    from ``jepa_kit.collect.ablation_summary``; one group of bars per objective and value."""
    sub = summary[summary["factor"] == factor]
    fig = go.Figure()
    x = [[o for o in sub["objective"]], [str(v) for v in sub["value"]]]
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
