"""The attention masks as drawn: who attends to whom in one item, and the packed-vs-separate check.

Data for the figures of ``jepa_kit.viz`` (notebook 01), computed by the same functions the models
use (``jepa_kit.masks``): ``mask_view`` for a JEPA row ``[F | R]`` under the block-causal mask,
``concept_mask_view`` for the concept objective's two patterns, and ``packed_vs_separate`` /
``equivalence_table``, the kit's packed pass against two plain Hugging Face passes. No plotly here
(torch and pandas on first use).
"""
from __future__ import annotations

import html
from dataclasses import dataclass


def esc(text: str) -> str:
    return html.escape(str(text), quote=False)


# -- the block-causal mask of a JEPA row ------------------------------------------------------
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
        return [f"{r} {p}: {esc(t)}" for r, p, t in zip(self.roles, self.positions, self.tokens)]


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



def mask_hover(view: MaskView) -> list[list[str]]:
    names = [c[0] for c in MASK_CATEGORIES]
    lab = view.labels
    return [[f"query {lab[q]}<br>key {lab[kk]}<br>{names[view.category[q][kk]]}" for kk in range(len(lab))]
            for q in range(len(lab))]


def mask_layout_update(view: MaskView, title: str) -> dict:
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


def mask_title(view: MaskView, caption: str | None) -> str:
    head = f"block-causal mask, k = {view.k}: F = {view.block_lengths[0]} tokens, R = {view.block_lengths[1]}"
    return head + (f"<br><sup>{esc(caption)}</sup>" if caption else "")


# -- the concept objective's two patterns ---------------------------------------------------------
CONCEPT_SLOTS = ("h", "r", "mask", "t")  # the four patches of an item, in order


@dataclass
class ConceptMaskView:
    """The concept objective's two attention patterns for one item (``jepa_kit.concept``).

    ``recognition``: the first W blocks see the 4 patches of P tokens side by side, each patch
    alone (block-diagonal, causal inside a patch); ``concepts``: the other blocks attend causally
    over the 4 concepts ``[h, r, mask, t]``. Both are ``jepa_kit.masks.block_causal_allowed``
    as 0/1 (row = query, column = key)."""
    patch_len: int
    recognition_labels: list[str]  # 4 * P: slot, position in the patch, token ("(concept)": read out)
    recognition: list[list[int]]   # [4P, 4P]
    concept_labels: list[str]      # 4
    concepts: list[list[int]]      # [4, 4]


def concept_mask_view(row_ids=None, vocab=None, patch_len: int | None = None) -> ConceptMaskView:
    """The two masks of one fact row (``row_ids`` [2P + 2] with ``vocab`` for token names), or of
    any row of ``patch_len`` tokens per entity. Patches are right-padded with <pad> to P tokens;
    a patch's concept is read at its last real token (P - 1 for an entity, 0 for r and mask)."""
    from jepa_kit.masks import block_causal_allowed
    if row_ids is not None:
        row = [int(t) for t in row_ids]
        P = (len(row) - 2) // 2
        if len(row) != 2 * P + 2 or P not in (1, 2):
            raise ValueError(f"a fact row has 2P + 2 tokens with P = 1 or 2; got {len(row)}")
        names = vocab.decode(row) if vocab is not None else [f"tok {t}" for t in row]
        pad = "<pad>"
        tokens = [names[:P], [names[P]] + [pad] * (P - 1), [names[P + 1]] + [pad] * (P - 1), names[P + 2:]]
    else:
        P = int(patch_len or 2)
        ent = ["first", "last"][:P] if P == 2 else ["entity"]
        tokens = [ent, ["r"] + ["<pad>"] * (P - 1), ["<mask>"] + ["<pad>"] * (P - 1), ent]
    concept_pos = (P - 1, 0, 0, P - 1)
    labels = [f"{slot} {i}: {esc(tok)}" + (" (concept)" if i == concept_pos[k] else "")
              for k, slot in enumerate(CONCEPT_SLOTS) for i, tok in enumerate(tokens[k])]
    rec = block_causal_allowed((P,) * len(CONCEPT_SLOTS)).int().tolist()
    con = block_causal_allowed((len(CONCEPT_SLOTS),)).int().tolist()
    concept_labels = [f"{slot} concept" for slot in CONCEPT_SLOTS]
    concept_labels[2] += " (prediction)"
    return ConceptMaskView(P, labels, rec, concept_labels, con)


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
    from jepa_kit.attention import ATTN_IMPLEMENTATIONS
    rows = []
    for impl in attn_implementations or ATTN_IMPLEMENTATIONS:
        model = small_model(vocab, impl)
        rows += [{"attention": impl, "k": k, "max |dh|": packed_vs_separate(model, row_ids, k)} for k in ks]
    table = pd.DataFrame(rows).pivot(index="attention", columns="k", values="max |dh|")
    table.columns.name = "max |h_packed - h_separate| at k ="
    return table
