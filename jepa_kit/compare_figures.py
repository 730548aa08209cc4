"""Figures that compare many runs (notebook 03, the demo's report, the README pictures): forward
vs reverse per setting, ablations, learning and MRR curves, the logit lens.

A *setting* is a run without its seed (``run_views.setting_label``). Each setting keeps one colour
in every chart of a table. Bars show mean ± std over a setting's seeds. Curves show, by default
(``seeds="band"``), one line per setting, the mean over its seeds, with a band of ± one standard
deviation where it has more than one; ``seeds="lines"`` draws every seed instead. What is drawn
is computed in ``jepa_kit.run_views`` (no plotly there); ``jepa_kit.viz`` re-exports these.
"""
from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from jepa_kit.collect import mrr_curve, of_kind
from jepa_kit.run_views import (SPLIT_COLORS, SPLIT_LABELS, MRR_NAMES, by_setting, chance_level, entity_counts,
                                mean_band, natural_key, rgba, run_styles, setting_colors, setting_label,
                                strip_seed, swatch)

METRIC_TITLES = {"mrr": "MRR over every entity", "exact_match": "exact match"}  # concept runs: concept MRR
MANY_BARS = 8        # more settings than this: horizontal bars, one row per setting
BAR_ROW_PX = 26      # height of one setting's row (its forward and reverse bars) in a horizontal chart
MIN_PLOT_PX = 300    # the plot area is never shorter than this
CHANCE_LINE = dict(color="black", dash="dash", width=1)  # chance, in every chart that draws it


def forward_reverse_figure(table, metrics=("exact_match", "mrr"), colors: dict | None = None) -> go.Figure:
    """Per setting (runs that differ only in seed together): forward (atomic) vs reverse (test),
    mean ± std over seeds, for each metric, with the chance level where the entity count is known.
    ``mrr`` is ``collect``'s ``<split>.mrr``: entity MRR, or concept MRR for concept runs (which have
    no exact match). More than ``MANY_BARS`` settings: horizontal bars, one readable row each, and a
    plot area that grows with them. Labels carry the setting's colour (``setting_colors``)."""
    settings = sorted({setting_label(r) for r in table.to_dict("records")}, key=natural_key)
    colors = colors or setting_colors(settings)
    horizontal = len(settings) > MANY_BARS
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[METRIC_TITLES.get(m, m) for m in metrics],
                        shared_yaxes=horizontal, horizontal_spacing=0.04 if horizontal else 0.08)
    for j, metric in enumerate(metrics, 1):
        agg = by_setting(table, metric)
        for split, name in (("atomic", "forward (atomic)"), ("test", "reverse (test)")):
            mean, std = f"{split}.{metric} mean", f"{split}.{metric} std"
            if agg[mean].isna().all():
                continue
            value, err = list(agg[mean]), dict(type="data", array=list(agg[std].fillna(0)))
            hover = [f"{s}: n = {n} seed{'s' if n > 1 else ''}" for s, n in zip(agg["setting"], agg["n"])]
            common = dict(name=name, legendgroup=split, showlegend=j == 1, marker_color=SPLIT_COLORS[split],
                          hovertext=hover)
            if horizontal:
                fig.add_bar(y=list(agg["setting"]), x=value, error_x=err, orientation="h", **common, row=1, col=j)
            else:
                fig.add_bar(x=list(agg["setting"]), y=value, error_y=err, **common, row=1, col=j)
        chance = chance_level(table, metric)
        if chance is not None:
            if horizontal:
                fig.add_vline(x=chance, line=CHANCE_LINE, row=1, col=j, annotation_text="chance")
            else:
                fig.add_hline(y=chance, line=CHANCE_LINE, row=1, col=j, annotation_text="chance")
    ticks = dict(tickvals=settings, ticktext=[swatch(s, colors[s]) for s in settings], categoryorder="array",
                 categoryarray=settings)
    title = "forward vs reverse, per setting (mean ± std over seeds)"
    if horizontal:
        top, bottom = 90, 60
        plot = max(MIN_PLOT_PX, BAR_ROW_PX * len(settings))
        fig.update_yaxes(autorange="reversed", automargin=True, **ticks)
        fig.update_xaxes(range=[0, 1.02])
        fig.update_layout(barmode="group", title=title, height=top + bottom + plot, margin=dict(t=top, b=bottom),
                          legend=dict(orientation="h", y=-30 / plot, yanchor="top", x=1, xanchor="right"))
    else:
        fig.update_xaxes(automargin=True, **ticks)
        fig.update_yaxes(range=[0, 1.02])
        fig.update_layout(barmode="group", title=title, height=450)
    return fig


def ablation_figure(summary, factor: str, metric: str = "exact_match", chance: float | None = None) -> go.Figure:
    """mean ± std over seeds against one ablation factor, forward (atomic) and reverse (test),
    from ``jepa_kit.collect.ablation_summary``; one group of bars per objective (and setting) and value,
    the values in numeric order. ``chance`` (``chance_level``): a dashed line, so that reverse bars
    near 0 are read against it; each bar also carries its value as text."""
    sub = summary[summary["factor"] == factor]
    groups = list(sub["objective"])
    if "setting" in sub:  # runs of different data or architecture (collect.SETTING_FIELDS): name the setting
        groups = [f"{o} [{st}]" if st else o for o, st in zip(groups, sub["setting"])]
    order = sorted(range(len(sub)), key=lambda i: (natural_key(groups[i]), natural_key(sub["value"].iloc[i])))
    sub = sub.iloc[order]
    groups = [groups[i] for i in order]
    x = [groups, [str(v) for v in sub["value"]]]
    fig = go.Figure()
    for split, name in (("atomic", "forward (atomic)"), ("test", "reverse (test)")):
        mean, std = f"{split}.{metric} mean", f"{split}.{metric} std"
        if mean in sub:
            fig.add_bar(x=x, y=list(sub[mean]), error_y=dict(type="data", array=list(sub[std].fillna(0))),
                        name=name, marker_color=SPLIT_COLORS[split], text=[f"{v:.3f}" for v in sub[mean]],
                        textposition="outside", textfont=dict(size=9), cliponaxis=False,
                        hovertext=[f"n = {n}" for n in sub["n"]])
    if chance is not None:
        fig.add_hline(y=chance, line=CHANCE_LINE, annotation_text="chance")
    by = "objective" if factor == "defaults" else factor
    fig.update_layout(barmode="group", title=f"{metric} by {by} (mean ± std over seeds)",
                      xaxis_title="objective" if factor == "defaults" else f"objective / {factor}", height=400)
    fig.update_yaxes(range=[0, 1.08])
    return fig


SEED_MODES = ("band", "lines")
BAND_ALPHA = 0.18
LEGEND_ROW_PX = 30   # a legend entry's height: a curve figure grows so that its legend needs no scrolling


def _fit_legend(fig, height: int) -> int:
    """``height``, or taller if the legend's entries need it (plotly scrolls a legend that does not fit)."""
    entries = sum(1 for t in fig.data if t.showlegend is not False)
    return max(height, 180 + LEGEND_ROW_PX * entries)


def _setting_traces(fig, legend: str, color: str, series: dict[str, list], row: int, col: int, shown: set,
                    seeds: str, line: dict, marker: dict, bounds=None) -> None:
    """One setting's curves in one panel: ``series`` maps each seed's run name to its (x, y) points.
    ``seeds="band"``: the mean over seeds, with a ± std band where more than one seed has a value
    (clipped to ``bounds``); ``"lines"``: a line per seed. The setting has one legend entry."""
    style = dict(mode="lines+markers", legendgroup=legend, line=dict(color=color, width=1.5, **line), marker=marker)
    if seeds == "lines" or len(series) == 1:
        for run, pts in sorted(series.items(), key=lambda kv: natural_key(kv[0])):
            if pts:
                fig.add_scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], name=legend,
                                showlegend=legend not in shown, hovertext=run, **style, row=row, col=col)
                shown.add(legend)
        return
    stats = mean_band(series.values())
    if not stats:
        return
    x = [s[0] for s in stats]
    lo_b, hi_b = bounds or (-math.inf, math.inf)
    spread = [0.0 if math.isnan(s[2]) else s[2] for s in stats]
    upper = [min(hi_b, s[1] + d) for s, d in zip(stats, spread)]
    lower = [max(lo_b, s[1] - d) for s, d in zip(stats, spread)]
    band = dict(mode="lines", name=legend, line=dict(color=color, width=0), legendgroup=legend, showlegend=False,
                hoverinfo="skip")
    fig.add_scatter(x=x, y=upper, **band, row=row, col=col)
    fig.add_scatter(x=x, y=lower, fill="tonexty", fillcolor=rgba(color, BAND_ALPHA), **band, row=row, col=col)
    hover = [f"{legend}: mean of {n} seed{'s' if n > 1 else ''}" + (f", std {d:.4g}" if n > 1 else "")
             for (_, _, d, n) in stats]
    fig.add_scatter(x=x, y=[s[1] for s in stats], name=legend, showlegend=legend not in shown, hovertext=hover,
                    **style, row=row, col=col)
    shown.add(legend)


def _run_curves(curves, table, colors, splits, points, seeds: str = "band", bounds=None) -> go.Figure:
    """A panel per split, one legend entry and colour per setting (``seeds``: see ``_setting_traces``).
    ``points(rows, split)`` -> (suffix of the setting's legend name, [(step, value)], line style, marker style)."""
    _check_seeds(seeds)
    settings, colors = run_styles(curves, table, colors)
    fig = make_subplots(rows=1, cols=len(splits), subplot_titles=[SPLIT_LABELS[s] for s in splits], shared_yaxes=True)
    shown: set = set()
    for j, split in enumerate(splits, 1):
        groups: dict[tuple, dict] = {}
        for name in sorted(curves, key=natural_key):
            suffix, pts, line, marker = points(curves[name], split)
            key = (settings[name], suffix)
            groups.setdefault(key, {"line": line, "marker": marker, "series": {}})["series"][name] = pts
        for (setting, suffix), g in sorted(groups.items(), key=lambda kv: (natural_key(kv[0][0]), kv[0][1])):
            _setting_traces(fig, setting + suffix, colors[setting], g["series"], 1, j, shown, seeds,
                            g["line"], g["marker"], bounds)
    return fig


def _check_seeds(seeds: str) -> None:
    if seeds not in SEED_MODES:
        raise ValueError(f"seeds must be one of {SEED_MODES}, got {seeds!r}")


def _seed_note(seeds: str) -> str:
    return "a line per seed" if seeds == "lines" else "mean over seeds, band ± std"


def learning_curves_figure(curves: dict[str, list[dict]], table=None, metric: str = "exact_match",
                           splits=("atomic", "test"), colors: dict | None = None, seeds: str = "band") -> go.Figure:
    """One eval metric over steps for many runs (``curves``: run name -> metrics rows, from
    ``jepa_kit.collect.learning_curves``); one panel per split, one colour per setting (``table``,
    from ``collect``, labels runs; ``colors``: setting -> colour, default ``setting_colors``);
    ``seeds``: "band" (mean ± std over seeds) or "lines" (every seed)."""
    def points(rows, split):
        return "", [(r["step"], r["splits"][split][metric]) for r in of_kind(rows, "eval")
                    if split in r.get("splits", {}) and r["splits"][split].get(metric) is not None], {}, dict(size=4)

    bounded = "loss" not in metric and "rank" not in metric
    fig = _run_curves(curves, table, colors, splits, points, seeds, bounds=(0.0, 1.0) if bounded else None)
    fig.update_xaxes(title_text="step")
    if bounded:
        fig.update_yaxes(range=[0, 1.02])
    fig.update_layout(title=f"learning curves: {metric} (one colour per setting, {_seed_note(seeds)})",
                      height=_fit_legend(fig, 420))
    return fig


_LABEL_GAP = 0.04  # MRR units on mrr_curves_figure's 0-1.02 axis: about a label's height at its 460 px


def mrr_curves_figure(curves: dict[str, list[dict]], table=None, splits=("atomic", "test"), n_entities=None,
                      above: float = 5.0, log_x: bool = False, colors: dict | None = None,
                      seeds: str = "band") -> go.Figure:
    """Every run's MRR over every entity against steps, one panel per split: entity MRR for
    token-level objectives, concept MRR for concept runs (``jepa_kit.collect.mrr_curve``; each
    legend entry names which). ``curves``: run name -> metrics.jsonl rows (``collect.learning_curves``),
    read while a run is still training. A dashed line marks chance (H_n / n for n entities, the
    same for both MRRs under the kit's tie rule) and a dotted one ``above`` x chance; ``n_entities``
    (one or several) defaults to the ``n_entities`` column of ``table`` (``collect.collect``).
    ``seeds``: "band" (a setting's mean ± std over seeds) or "lines" (every seed)."""
    from jepa_kit.evaluate import chance_entity_mrr
    def points(rows, split):
        metric, pts = mrr_curve(rows, split)
        concept = metric == "concept_mrr"
        return (f" · {MRR_NAMES.get(metric)}", pts, dict(dash="dash" if concept else "solid"),
                dict(symbol="diamond" if concept else "circle", size=5))

    fig = _run_curves(curves, table, colors, splits, points, seeds, bounds=(0.0, 1.0))
    for n in entity_counts(table, n_entities):
        chance = chance_entity_mrr(n)
        # lines closer than a label's height on the 0-1 axis (8,000 entities: 0.0012 and 0.006) share one label
        labels = ([f"chance, {n} entities", f"{above:g} x chance"] if (above - 1) * chance >= _LABEL_GAP
                  else [None, f"chance and {above:g} x chance, {n} entities"])
        for j in range(1, len(splits) + 1):
            last = j == len(splits)
            for y, line, text in ((chance, CHANCE_LINE, labels[0]),
                                  (above * chance, dict(color="grey", dash="dot", width=1), labels[1])):
                # annotation_* only where there is text: plotly writes "new text" for annotation_text=None
                fig.add_hline(y=y, line=line, row=1, col=j, **(dict(annotation_text=text) if last and text else {}))
    fig.update_xaxes(title_text="step", type="log" if log_x else None)
    fig.update_yaxes(range=[0, 1.02])
    fig.update_yaxes(title_text="MRR over every entity", row=1, col=1)
    fig.update_layout(title=f"MRR against steps: entity MRR (solid), concept MRR (dashed); {_seed_note(seeds)}"
                            "<br><sup>on 1-token data (the abstract setting) a token-level run's entity MRR is the "
                            "number comparable to concept MRR; both count ties half</sup>", height=_fit_legend(fig, 460),
                      legend=dict(font=dict(size=10)))
    return fig


def mrr_by_size_figure(panels, split: str = "test", colors: dict | None = None, seeds: str = "band") -> go.Figure:
    """One split's MRR over every entity against steps, a panel per data size. ``panels``: one
    ``(title, n_entities, {label: {run name: metrics.jsonl rows}})`` per panel; a label (say, an
    objective) keeps one colour in every panel and is drawn from its runs as in ``_setting_traces``
    (``seeds``). Each panel's dashed line is chance for its own entity count; the y axis is shared,
    so the sizes compare at a glance, the x axes are not (each size ran its own number of steps)."""
    from jepa_kit.evaluate import chance_entity_mrr
    _check_seeds(seeds)
    if not panels:
        raise ValueError("mrr_by_size_figure needs at least one panel")
    colors = {**setting_colors(label for _, _, groups in panels for label in groups), **(colors or {})}
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[title for title, _, _ in panels], shared_yaxes=True)
    shown: set = set()
    for j, (_, n, groups) in enumerate(panels, 1):
        for label, runs in groups.items():
            series = {run: mrr_curve(rows, split)[1] for run, rows in runs.items()}
            _setting_traces(fig, label, colors[label], series, 1, j, shown, seeds, {}, dict(size=4), (0.0, 1.0))
        fig.add_hline(y=chance_entity_mrr(n), line=CHANCE_LINE, row=1, col=j)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(rangemode="tozero")
    fig.update_yaxes(title_text="MRR over every entity", row=1, col=1)
    fig.update_layout(title=f"{SPLIT_LABELS[split]}: MRR against steps at each size; {_seed_note(seeds)}; "
                            "dashed: chance", height=_fit_legend(fig, 440), legend=dict(font=dict(size=10)))
    return fig


def logit_lens_figure(layers: dict[str, dict[str, list[float]]], metric: str = "entity_mrr",
                      colors: dict | None = None, seeds: str = "band", chance: float | None = None) -> go.Figure:
    """Per-layer (logit-lens) metric: ``layers[run][split]`` is a list over layers (``collect.per_layer``);
    one colour per setting (``colors``, default ``setting_colors`` of these runs); ``seeds``: "band"
    (mean ± std over seeds) or "lines" (every seed); ``chance``: a dashed line (``chance_level``)."""
    _check_seeds(seeds)
    splits = ("atomic", "test")
    fig = make_subplots(rows=1, cols=len(splits), subplot_titles=[SPLIT_LABELS[s] for s in splits], shared_yaxes=True)
    colors = {**setting_colors(strip_seed(n) for n in layers), **(colors or {})}
    shown: set = set()
    for j, split in enumerate(splits, 1):
        groups: dict[str, dict] = {}
        for name in sorted(layers, key=natural_key):
            vals = layers[name].get(split) or []
            groups.setdefault(strip_seed(name), {})[name] = list(enumerate(vals, 1))
        for setting in sorted(groups, key=natural_key):
            _setting_traces(fig, setting, colors[setting], groups[setting], 1, j, shown, seeds, {}, dict(size=5),
                            bounds=(0.0, 1.0))
        if chance is not None:
            fig.add_hline(y=chance, line=CHANCE_LINE, row=1, col=j,
                          **(dict(annotation_text="chance") if j == len(splits) else {}))
    fig.update_xaxes(title_text="layer", dtick=1)
    fig.update_layout(title=f"logit lens: {metric} per layer ({_seed_note(seeds)})", height=_fit_legend(fig, 380))
    return fig
