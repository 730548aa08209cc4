"""Figures: the mask heatmap against an independent construction, the live explorer changing in
place, the packed-vs-separate check catching a broken pass, and the run-comparison helpers."""
import json

import pandas as pd
import pytest

from jepa_kit import analysis, collect, viz
from jepa_kit.data import load_dataset

F, PRED, R, FUTURE, OTHER = 2, 3, 4, 1, 0  # indices into viz.MASK_CATEGORIES


@pytest.fixture(scope="module")
def ds(osu_dir):
    return load_dataset(osu_dir)


def test_mask_view_matches_a_hand_built_mask(ds):
    row = ds.valid["atomic"].ids[2]
    k = 2
    view = viz.mask_view(row, ds.vocab, k)
    nf, L = 6 + k, 6 + k + 6
    assert view.block_lengths == (nf, 6)
    assert view.roles == ["F"] * 6 + ["PRED"] * k + ["R"] * 6
    assert view.positions == list(range(nf)) + list(range(6))
    names = ds.vocab.decode(row)
    # F is the row then the PRED tokens; R is the reverse: tail, inverse relation, <mask>, head
    assert view.tokens[:nf] == names + ["<PRED>"] * k
    assert view.tokens[nf:nf + 2] == names[4:6] and view.tokens[nf + 3] == "<mask>" and view.tokens[-2:] == names[:2]
    assert view.tokens[nf + 2] == ds.vocab.decode(ds.vocab.inverse[row[2:3]])[0]
    for q in range(L):
        for key in range(L):
            same = (q < nf) == (key < nf)
            if not same:
                want = OTHER
            elif key > q:
                want = FUTURE
            else:
                want = R if q >= nf else PRED if q >= 6 else F
            assert view.category[q][key] == want, (q, key)


def test_labels_are_escaped_for_plotly(ds):
    view = viz.mask_view(ds.valid["train"].ids[0], ds.vocab, 1)
    assert all("<" not in label for label in view.labels)
    assert view.labels[6] == "PRED 6: &lt;PRED&gt;"


def test_static_figure_has_a_slider_step_per_k(ds):
    fig = viz.mask_figure_static(ds.valid["train"].ids[0], ds.vocab, k=1).to_plotly_json()
    steps = fig["layout"]["sliders"][0]["steps"]
    assert [s["label"] for s in steps] == ["0", "1", "2", "3", "4"]
    for k, step in enumerate(steps):
        data, layout = step["args"]
        assert len(data["z"][0]) == 12 + k
        assert len(layout["xaxis.ticktext"]) == 12 + k
        assert layout["xaxis.ticktext"][5 + k].endswith("&lt;PRED&gt;") == (k > 0)
    assert len(fig["data"][0]["z"]) == 13  # the figure starts at the chosen k


def test_live_explorer_changes_the_figure_in_place(ds):
    ex = viz.MaskExplorer(ds, split="train", index=0, k=1)
    fig = ex.figure
    assert len(fig.data[0].z) == 13 and ex.last_diff < 1e-4
    ex.k.value = 3  # what moving the slider does
    assert ex.figure is fig, "the same FigureWidget, updated, not a new figure"
    assert len(fig.data[0].z) == 15
    assert len(fig.layout.xaxis.ticktext) == 15 and fig.layout.xaxis.ticktext[8] == "PRED 8: &lt;PRED&gt;"
    assert "k = 3" in fig.layout.title.text
    assert "max |&Delta;h|" in ex.check.value and ex.last_diff < 1e-4
    before = fig.layout.title.text
    ex.split.value, ex.index.value = "test", 5
    assert fig.layout.title.text != before and "test item 5" in fig.layout.title.text
    other = [i for i in ex.attn.options if i != ex.attn.value][0]
    ex.attn.value = other
    assert other in ex.check.value and ex.last_diff < 1e-4


def test_equivalence_check_catches_a_pass_without_the_block_mask(ds, monkeypatch):
    model = viz.small_model(ds.vocab, "sdpa")
    row = ds.valid["train"].ids[0]
    assert viz.packed_vs_separate(model, row, 1) < 1e-4

    def leaky(ids, types):  # [F | R] as one plain causal sequence: R sees F, positions run on
        out = type(model).packed_hidden_states(model, ids, types)
        n_f = out["jepa_f"].shape[1]
        h = model.gpt2(input_ids=out["tokens"][:, : n_f + out["jepa_r"].shape[1]],
                       output_hidden_states=True).hidden_states[-1]
        out["jepa_f"], out["jepa_r"] = h[:, :n_f], h[:, n_f:]
        return out

    monkeypatch.setattr(model, "packed_hidden_states", leaky)
    assert viz.packed_vs_separate(model, row, 1) > 1e-2


def test_loss_and_live_loss_figures():
    rows = [{"kind": "train", "step": s, "loss": 3.0 - s / 10, "ntp_loss": 2.0, "jepa_loss": 1.0 - s / 10} for s in (1, 2, 3)]
    rows.append({"kind": "eval", "step": 3, "splits": {"atomic": {"exact_match": 0.5, "entity_mrr": 0.6},
                                                       "test": {"exact_match": 0.0, "entity_mrr": 0.01}}})
    fig = viz.loss_figure(rows)
    assert {t.name for t in fig.data} == {"NTP", "JEPA", "total"}
    assert list(next(t for t in fig.data if t.name == "JEPA").y) == [0.9, 0.8, 0.7]
    ev = viz.eval_figure(rows)
    assert {t.name for t in ev.data} == {viz.SPLIT_LABELS["atomic"], viz.SPLIT_LABELS["test"]}
    live = viz.LiveLoss()
    for r in rows:
        live.update(r)
    assert list(live.figure.data[0].x) == [1, 2, 3] and list(live.figure.data[1].y) == [0.9, 0.8, 0.7]


def _table():
    recs = []
    for seed, (em_default, em_k2) in enumerate(((0.1, 0.5), (0.3, 0.7))):
        recs.append({"run": f"default_seed={seed}", "objective": "jepa", "k_pred": 1, "jepa_metric": "cosine",
                     "lambda_jepa": 1.0, "loss_dropout": 0.0, "seed": seed, "test.exact_match": em_default,
                     "atomic.exact_match": 1.0, "note": ""})
        recs.append({**recs[-1], "run": f"k_pred=2_seed={seed}", "k_pred": 2, "test.exact_match": em_k2})
    recs.append({**recs[0], "run": "objective=reverse_aug", "objective": "reverse_aug", "test.exact_match": 1.0,
                 "note": analysis.REVERSE_AUG_LABEL, "atomic.per_layer": [{"entity_mrr": 0.2}, {"entity_mrr": 0.9}],
                 "test.per_layer": [{"entity_mrr": 0.1}, {"entity_mrr": 0.8}]})
    return pd.DataFrame(recs)


def test_ablation_summary_groups_by_factor_with_mean_and_std():
    summary = collect.ablation_summary(_table(), metrics=("atomic.exact_match", "test.exact_match"))
    k = summary[(summary["factor"] == "k_pred") & (summary["objective"] == "jepa")].set_index("value")
    assert k.loc["2", "n"] == 2 and k.loc["2", "test.exact_match mean"] == pytest.approx(0.6)
    assert k.loc["2", "test.exact_match std"] == pytest.approx(0.1414213, rel=1e-5)
    assert k.loc["1", "test.exact_match mean"] == pytest.approx(0.2)  # the default runs: reference point
    # the default runs are the reference of the varied factor only; reverse_aug is its own objective, labelled
    assert set(summary["factor"]) == {"k_pred"}
    assert "reverse_aug (trains on test facts)" in set(summary["objective"])
    fig = viz.ablation_figure(summary, "k_pred")
    assert "mean ± std" in fig.layout.title.text and len(fig.data) == 2
    # runs that vary nothing: one group per objective
    plain = collect.ablation_summary(_table()[lambda t: t["k_pred"] == 1], metrics=("test.exact_match",))
    assert list(plain["factor"]) == ["defaults", "defaults"]
    assert list(plain["n"]) == [2, 1]


def test_reverse_aug_is_labelled_in_every_chart():
    table = _table()
    bars = viz.forward_reverse_figure(table)
    assert "objective=reverse_aug (trains on test facts)" in bars.data[0].x
    lens = viz.logit_lens_figure(collect.per_layer(table, "entity_mrr"))
    assert [t.name for t in lens.data] == ["objective=reverse_aug (trains on test facts)"] * 2
    assert list(lens.data[1].y) == [0.1, 0.8] and list(lens.data[1].x) == [1, 2]
    curves = {"objective=reverse_aug": [{"kind": "eval", "step": 5, "splits": {"test": {"exact_match": 0.9}}}]}
    lc = viz.learning_curves_figure(curves, table)
    assert lc.data[0].name == "objective=reverse_aug (trains on test facts)"
    frame = viz.results_frame({"test": {"exact_match": 1.0, "n": 3}, "trains_on_test_facts": True})
    assert "trains on test facts" in frame.index.name


def test_setup_plotly_renders_offline():
    import plotly.io as pio

    viz.setup_plotly()
    assert pio.renderers.default == "plotly_mimetype+notebook"
    bundle = pio.renderers["notebook"].to_mimebundle(viz.loss_figure([]).to_dict())
    assert "cdn.plot.ly" not in json.dumps(bundle), "exported HTML must not need the network"


# -- the concept objective (the binding paper's positive control) ------------------------------------

@pytest.mark.parametrize("patch_len", [1, 2])
def test_concept_mask_figure_draws_the_masks_the_model_uses(patch_len):
    from jepa_kit.masks import block_causal_allowed

    fig = viz.concept_mask_figure(patch_len=patch_len)
    recognition, concepts = fig.data
    assert [list(r) for r in recognition.z] == block_causal_allowed((patch_len,) * 4).int().tolist()
    assert [list(r) for r in concepts.z] == block_causal_allowed((4,)).int().tolist()
    # independent check: inside a patch causal, across patches nothing
    P = patch_len
    for q in range(4 * P):
        for k in range(4 * P):
            assert recognition.z[q][k] == int(q // P == k // P and k <= q)
    labels = list(fig.layout.yaxis.ticktext)
    read = [i for i, lab in enumerate(labels) if lab.endswith("(concept)")]
    assert read == [P - 1, P, 2 * P, 4 * P - 1], "a patch's concept is its last real token"
    assert list(fig.layout.yaxis2.ticktext)[2] == "mask concept (prediction)"


def test_concept_mask_figure_names_the_tokens_of_an_item(ds):
    row = ds.valid["atomic"].ids[0]
    view = viz.concept_mask_view(row, ds.vocab)
    names = [viz._esc(t) for t in ds.vocab.decode(row)]
    assert view.patch_len == 2
    assert view.recognition_labels[0] == f"h 0: {names[0]}" and view.recognition_labels[1] == f"h 1: {names[1]} (concept)"
    assert view.recognition_labels[2:4] == [f"r 0: {names[2]} (concept)", "r 1: &lt;pad&gt;"]
    assert view.recognition_labels[6:] == [f"t 0: {names[4]}", f"t 1: {names[5]} (concept)"]
    with pytest.raises(ValueError, match="2P \\+ 2 tokens"):
        viz.concept_mask_view([1, 2, 3], ds.vocab)


def _eval(step, split_metrics):
    return {"kind": "eval", "step": step, "splits": split_metrics}


def test_mrr_curves_figure_plots_each_runs_own_mrr_with_chance():
    from jepa_kit.evaluate import chance_entity_mrr

    concept = [_eval(s, {"atomic": {"concept_mrr": 0.9}, "test": {"concept_mrr": v}}) for s, v in ((250, 0.01), (500, 0.4))]
    ntp = [{"kind": "train", "step": 10, "loss": 1.0},
           _eval(250, {"atomic": {"exact_match": 1.0, "entity_mrr": 0.95}, "test": {"exact_match": 0.0, "entity_mrr": 0.002}})]
    table = pd.DataFrame([{"run": "c", "objective": "concept", "note": "", "n_entities": 600},
                          {"run": "n", "objective": "ntp", "note": "", "n_entities": 600}])
    fig = viz.mrr_curves_figure({"c": concept, "n": ntp}, table)
    traces = {(t.name, t.xaxis): t for t in fig.data}
    test_c = traces[("c · concept MRR", "x2")]
    assert list(test_c.x) == [250, 500] and list(test_c.y) == [0.01, 0.4]
    assert list(traces[("n · entity MRR", "x2")].y) == [0.002] and list(traces[("n · entity MRR", "x")].y) == [0.95]
    assert test_c.line.dash == "dash" and traces[("n · entity MRR", "x2")].line.dash == "solid"
    lines = sorted({round(s.y0, 12) for s in fig.layout.shapes})
    chance = chance_entity_mrr(600)
    assert lines == [round(chance, 12), round(5 * chance, 12)]
    assert "comparable to concept MRR" in fig.layout.title.text
    assert not viz.mrr_curves_figure({"c": concept}).layout.shapes, "no entity count: no chance line"
    labels = lambda f: [a.text for a in f.layout.annotations if "chance" in a.text]
    assert labels(fig) == ["chance, 600 entities", "5 x chance"]
    many = viz.mrr_curves_figure({"n": ntp}, table.assign(n_entities=8000))
    assert len(many.layout.shapes) == 4, "both lines in both panels"
    assert labels(many) == ["chance and 5 x chance, 8000 entities"], "one label where the lines touch"


def test_mrr_by_size_figure_keeps_a_colour_per_label_and_a_chance_line_per_size():
    from jepa_kit.evaluate import chance_entity_mrr

    run = lambda *vals: [_eval(1000 * i, {"test": {"entity_mrr": v}}) for i, v in enumerate(vals, 1)]
    panels = [("600 entities", 600, {"ntp": {"n0": run(0.1, 0.2), "n1": run(0.3, 0.4)}, "infonce": {"i0": run(0.05)}}),
              ("8,000 entities", 8000, {"ntp": {"m0": run(0.01, 0.02, 0.03)}})]
    fig = viz.mrr_by_size_figure(panels)
    assert [a.text for a in fig.layout.annotations] == ["600 entities", "8,000 entities"]
    mean = [t for t in fig.data if t.name == "ntp" and t.mode == "lines+markers"]
    assert [t.xaxis for t in mean] == ["x", "x2"]
    assert list(mean[0].x) == [1000, 2000] and list(mean[0].y) == pytest.approx([0.2, 0.3]), "the mean of the seeds"
    assert list(mean[1].y) == [0.01, 0.02, 0.03], "one run: its own line"
    assert len({t.line.color for t in fig.data if t.name == "ntp"}) == 1, "one colour in every panel"
    assert sum(t.showlegend is not False for t in fig.data) == 2, "each label once in the legend"
    assert sorted(round(s.y0, 12) for s in fig.layout.shapes) == sorted(round(chance_entity_mrr(n), 12)
                                                                          for n in (600, 8000))
    assert "test" in fig.layout.title.text
    with pytest.raises(ValueError, match="at least one panel"):
        viz.mrr_by_size_figure([])


def test_training_figures_of_a_concept_run_show_concept_mrr():
    rows = [{"kind": "train", "step": 1, "loss": 2.0, "ntp_loss": 0.0, "jepa_loss": 2.0},
            _eval(1, {s: {"concept_mrr": 0.1, "concept_mrr_paper_ties": 0.2, "n": 3} for s in ("train", "atomic", "test")})]
    ev = viz.eval_figure(rows)
    assert [a.text for a in ev.layout.annotations] == [viz.METRIC_LABELS["concept_mrr"],
                                                       viz.METRIC_LABELS["concept_mrr_paper_ties"]]
    assert "paper's ties" in ev.layout.annotations[1].text, "panels titled in words, not field names"
    assert {t.name for t in ev.data} == set(viz.SPLIT_LABELS.values())
    loss = viz.loss_figure(rows, objective="concept")
    assert [t.name for t in loss.data] == ["concept (contrastive)", "total"] and list(loss.data[0].y) == [2.0]
    live = viz.LiveLoss(objective="concept")
    live.update(rows[0])
    assert [t.name for t in live.figure.data] == ["concept (contrastive)", "total"] and list(live.figure.data[0].y) == [2.0]
    frame = viz.results_frame({"test": {"concept_mrr": 0.5, "concept_mrr_paper_ties": 0.6123456789, "concept_rank_mean": 3.0, "n": 9}})
    assert frame.iloc[0]["concept_mrr_paper_ties"] == 0.6123, "tables rounded"
    assert list(frame.columns) == list(viz.CONCEPT_TABLE_COLUMNS) and frame.iloc[0]["concept_mrr"] == 0.5
    table = pd.DataFrame([{"run": "c", "objective": "concept", "note": "", "atomic.mrr": 0.9, "test.mrr": 0.5}])
    bars = viz.forward_reverse_figure(table)
    assert [list(t.y) for t in bars.data] == [[0.9], [0.5]], "a concept run's bars: its concept MRR"


# -- many runs: settings, colours, horizontal bars (03 on a sweep) -----------------------------------

def _study(values=(0, 1, 2, 4, 10), seeds=(0, 1, 2)):
    """A sweep of k_pred values x seeds, as `collect.collect` gives it: test EM = k / 100 + seed / 1000."""
    recs = [{"run": f"ablations/k_pred={k}_seed={s}", "objective": "jepa", "k_pred": k, "jepa_metric": "cosine",
             "lambda_jepa": 1.0, "loss_dropout": 0.0, "seed": s, "note": "", "n_entities": 600,
             "atomic.exact_match": 1.0, "test.exact_match": k / 100 + s / 1000, "atomic.mrr": 1.0, "test.mrr": 0.01}
            for k in values for s in seeds]
    return pd.DataFrame(recs)


def test_a_setting_is_a_run_without_its_seed():
    assert viz.strip_seed("ablations/k_pred=2_seed=1") == "ablations/k_pred=2"
    assert viz.strip_seed("default_seed=0") == "default" and viz.strip_seed("objective=jepa") == "objective=jepa"
    assert viz.strip_seed("reverse_aug/default_seed=2 (trains on test facts)") == "reverse_aug/default (trains on test facts)"
    assert viz.setting_label({"run": "r/default_seed=1", "objective": "reverse_aug"}) == "r/default (trains on test facts)"
    assert sorted(["k=10", "k=2", "k=0.5", "k=1"], key=viz.natural_key) == ["k=0.5", "k=1", "k=2", "k=10"]


def test_many_runs_give_horizontal_bars_per_setting_with_room_for_each():
    table = _study(values=range(12))  # 36 runs, 12 settings
    fig = viz.forward_reverse_figure(table)
    reverse = next(t for t in fig.data if t.name == "reverse (test)" and t.xaxis == "x")
    assert reverse.orientation == "h"
    settings = [f"ablations/k_pred={k}" for k in range(12)]
    assert list(reverse.y) == settings, "one bar per setting, values in numeric order (10 after 9)"
    assert reverse.x[2] == pytest.approx(0.02 + 0.001) and reverse.error_x.array[2] == pytest.approx(0.001)
    plot_px = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    assert plot_px >= 300 and plot_px >= 12 * viz.BAR_ROW_PX
    assert list(fig.layout.yaxis.tickvals) == settings  # every row labelled, none skipped
    bigger = viz.forward_reverse_figure(_study(values=range(40)))
    assert bigger.layout.height - 150 >= 40 * viz.BAR_ROW_PX, "the plot grows with the number of bars"
    few = viz.forward_reverse_figure(_study(values=(0, 1)))
    assert few.data[0].orientation in (None, "v") and few.layout.height == 450
    # the chance line: 1 / 600 entities for exact match
    assert [round(s.x0, 6) for s in fig.layout.shapes] == [round(1 / 600, 6)]


def test_a_setting_has_one_colour_in_every_chart():
    table = _study()
    colors = viz.setting_colors(viz.table_settings(table).values())
    assert len(set(colors.values())) == len(colors) == 5
    bars = viz.forward_reverse_figure(table, colors=colors)
    ticks = dict(zip(bars.layout.xaxis.tickvals, bars.layout.xaxis.ticktext))
    curves = {r: [{"kind": "eval", "step": 10, "splits": {"atomic": {"exact_match": 1.0, "entity_mrr": 1.0},
                                                          "test": {"exact_match": 0.0, "entity_mrr": 0.01}}}]
              for r in table["run"]}
    lc = viz.learning_curves_figure(curves, table)  # its default colours: the same table, the same map
    mrr = viz.mrr_curves_figure(curves, table, colors=colors)
    for fig in (lc, mrr):
        for trace in fig.data:
            setting = trace.name.split(" · ")[0]
            assert trace.line.color == colors[setting]
            assert f'color:{colors[setting]}' in ticks[setting]
    assert sum(t.showlegend is not False for t in lc.data) == 5, "one legend entry per setting, not per run"
    lens = viz.logit_lens_figure({"ablations/k_pred=2_seed=0": {"test": [0.1, 0.2]},
                                  "ablations/k_pred=2_seed=1": {"test": [0.1, 0.3]}}, colors=colors)
    assert {t.line.color for t in lens.data} == {colors["ablations/k_pred=2"]}
    # the map does not depend on the order the runs come in
    assert viz.setting_colors(reversed(list(colors))) == colors


def test_ablation_values_sorted_numerically_with_a_chance_line():
    table = _study(values=(1, 0, 4, 2))
    summary = collect.ablation_summary(table, metrics=("atomic.exact_match", "test.exact_match"))
    fig = viz.ablation_figure(summary, "k_pred", chance=viz.chance_level(table, "exact_match"))
    assert list(fig.data[1].x[1]) == ["0", "1", "2", "4"]
    assert list(fig.data[1].y) == pytest.approx([0.001, 0.011, 0.021, 0.041])
    assert [s.y0 for s in fig.layout.shapes] == [pytest.approx(1 / 600)]
    assert fig.data[1].text[0] == "0.001", "a bar near 0 still shows its value"


def test_mean_band_averages_the_seeds_at_each_step():
    from jepa_kit.run_views import mean_band
    rows = mean_band([[(10, 0.2), (20, 0.4)], [(10, 0.4), (20, float("nan")), (30, 0.9)], [(10, None)]])
    assert [(x, n) for x, _, _, n in rows] == [(10, 2), (20, 1), (30, 1)]
    assert rows[0][1] == pytest.approx(0.3) and rows[0][2] == pytest.approx(0.1414213562)
    assert rows[1][1] == 0.4 and rows[1][2] != rows[1][2], "one seed: no std (NaN)"


def test_curves_draw_a_setting_as_its_mean_and_a_band_or_every_seed():
    def run(values):
        return [{"kind": "eval", "step": s, "splits": {"atomic": {"exact_match": v}, "test": {"exact_match": v / 2}}}
                for s, v in zip((100, 200), values)]
    curves = {"k_pred=2_seed=0": run((0.2, 0.9)), "k_pred=2_seed=1": run((0.4, 1.0)), "k_pred=4_seed=0": run((0.5, 0.5))}
    fig = viz.learning_curves_figure(curves)
    atomic = [t for t in fig.data if t.xaxis in (None, "x")]
    mean = next(t for t in atomic if t.name == "k_pred=2" and t.showlegend is not False)
    assert list(mean.y) == pytest.approx([0.3, 0.95])
    upper, lower = [t for t in atomic if t.name == "k_pred=2" and t.showlegend is False]
    assert list(upper.y) == pytest.approx([0.3 + 0.1414213562, 1.0]), "mean + std, clipped at 1"
    assert list(lower.y) == pytest.approx([0.3 - 0.1414213562, 0.95 - 0.0707106781])
    assert lower.fill == "tonexty" and lower.fillcolor.startswith("rgba(")
    single = [t for t in atomic if t.name == "k_pred=4"]
    assert len(single) == 1 and list(single[0].y) == [0.5, 0.5], "one seed: its line, no band"
    lines = viz.learning_curves_figure(curves, seeds="lines")
    assert sorted(t.hovertext for t in lines.data if t.xaxis in (None, "x")) == sorted(curves)
    with pytest.raises(ValueError, match="seeds must be one of"):
        viz.mrr_curves_figure(curves, seeds="mean")
    lens = viz.logit_lens_figure({"a_seed=0": {"atomic": [0.5, 0.9], "test": [0.1, 0.2]},
                                  "a_seed=1": {"atomic": [0.7, 0.9], "test": [0.3, 0.2]}}, chance=0.01)
    test_mean = next(t for t in lens.data if t.xaxis == "x2" and t.hovertext and t.name == "a")
    assert list(test_mean.y) == pytest.approx([0.2, 0.2]) and len(lens.layout.shapes) == 2


def test_live_loss_keep_false_draws_nothing_at_the_end_unless_training_failed(monkeypatch):
    """Notebook 02 draws the run's full history after training; its live chart (keep=False) must then
    leave nothing behind, except when training raised (the cells after it do not run)."""
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append(obj))
    row = {"kind": "train", "step": 1, "loss": 2.0, "ntp_loss": 2.0, "jepa_loss": 0.0}
    with viz.LiveLoss(live=False, keep=False) as live:
        live.update(row)
    assert shown == []
    with pytest.raises(RuntimeError):
        with viz.LiveLoss(live=False, keep=False) as live:
            live.update(row)
            raise RuntimeError("diverged")
    assert len(shown) == 1 and list(shown[0].data[0].y) == [2.0]
    with viz.LiveLoss(live=False) as live:  # the default keeps the static figure
        live.update(row)
    assert len(shown) == 2
