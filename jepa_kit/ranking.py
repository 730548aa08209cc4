"""Entity ranking: the per-item numbers of a chunk of rows, entity ranks among all entities included.

``item_metrics`` is the engine behind ``jepa_kit.evaluate.evaluate_split`` (which defines the metrics
and averages these numbers). For a chunk of rows it runs one teacher-forced pass, reads the token
ranks, greedy decoding and NTP loss off it, and ranks the true tail among all entities of the set.

Ties: rank = 1 + #(others scoring strictly higher) + #(others scoring exactly the same) / 2, the
expected rank under random tie-breaking. A model whose outputs ignore the input therefore sits at
chance, not at rank 1. Greedy decoding takes the first maximal token (``argmax``).

With one token per entity (rows ``[h, r, <mask>, t]``, the abstract setting) the entity score is
log p(e | prompt), read for all entities off the one teacher-forced pass; there is no pruning and no
candidate pass. With two tokens per entity (rows ``[h_f, h_l, r, <mask>, t_f, t_l]``):

Entity ranks are exact but never score every (query, entity) pair with a Python loop. Entities are
grouped by first name (CSR index tensors); one pass over ``[prompt, f]`` (the prompt's keys and
values computed once and shared) gives log p(l | prompt, f) for all entities starting with f. A
first name with log p(f | prompt) < true score is skipped: since log p(l | f) <= 0, none of its
entities can reach the true score. On a model at chance nothing is pruned (the worst case, which
``jepa_kit.evaluate.bench_eval`` times).

``precision`` says how those candidate passes run; everything else (the prompt pass, the first-token
distribution and its pruning, exact match, token MRR, ``joint_mrr_approx``, the true first name's
group) is always fp32, with TF32 off (``full_fp32``):

* ``"fp32"``: the candidate passes in fp32 too. Exact.
* ``"checked"``: the candidate passes (blocks and LM head) under bf16 autocast; an entity whose
  fast score is more than ``margin`` (default 0.5 nats) above the true score counts as beating it,
  more than ``margin`` below as not; every (query, first name) pair with any entity within
  ``margin`` of the true score is recomputed in fp32 and counted exactly. Results equal "fp32" as
  long as the bf16 error of a score is below ``margin``. The split's results report the fraction of
  pairs recomputed (``entity_recheck_fraction``) and the largest |bf16 - fp32| score difference
  measured on the recomputed entities (``entity_fast_max_abs_err``); a warning is given when that
  error exceeds ``margin``. A model at chance scores every entity within a narrow band of the true
  score, so there nearly everything is recomputed and "checked" costs a little more than "fp32"
  (the fp32 passes plus the bf16 ones).
* ``"bf16"``: the fast passes, no recheck. Approximate: ranks can differ from "fp32" where scores
  lie within the bf16 error of each other (``jepa_kit.evaluate.compare_precisions`` measures by how
  much). Use it for the worst case, a model at chance.
* ``"auto"``: "checked" on CUDA, "fp32" elsewhere (``resolve_precision``).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DynamicCache, GPT2LMHeadModel

PRECISIONS = ("auto", "fp32", "checked", "bf16")


# -- the entity set, grouped by first name -------------------------------------------------

@dataclass
class EntityIndex:
    """Entities grouped by first token: those starting with ``first_ids[u]`` have last tokens
    ``last_ids[offsets[u]:offsets[u + 1]]``. With single-token entities (patch_len 1)
    ``first_ids`` are the entity tokens and the groups are empty."""
    patch_len: int
    first_ids: torch.Tensor  # [U]
    offsets: torch.Tensor    # [U + 1]
    last_ids: torch.Tensor   # [E] (patch_len 2), [0] (patch_len 1)
    slot: torch.Tensor       # [V] token id -> u, -1 when no entity starts with it

    @property
    def n_entities(self) -> int:
        return len(self.last_ids) if self.patch_len == 2 else len(self.first_ids)

    def to(self, device) -> "EntityIndex":
        return EntityIndex(self.patch_len, *(t.to(device) for t in (self.first_ids, self.offsets, self.last_ids, self.slot)))


def build_entity_index(entities: torch.Tensor, vocab_size: int) -> EntityIndex:
    """``entities``: [E, patch_len] name tokens (or [E] single tokens); duplicates are dropped."""
    entities = torch.as_tensor(entities).long().cpu()
    if entities.dim() == 1:
        entities = entities[:, None]
    if entities.dim() != 2 or entities.shape[1] not in (1, 2):
        raise ValueError(f"entities must be [E, 1] or [E, 2] token ids, got shape {tuple(entities.shape)}")
    if len(entities) == 0:
        raise ValueError("the entity set is empty")
    bad = (entities < 0) | (entities >= vocab_size)
    if bad.any():
        raise ValueError(f"entity token id {int(entities[bad][0])} is outside the model's vocabulary (0..{vocab_size - 1})")
    entities = torch.unique(entities, dim=0)  # sorted rows, so grouped by first token
    first_ids, counts = torch.unique_consecutive(entities[:, 0], return_counts=True)
    if entities.shape[1] == 1:
        counts = torch.zeros_like(counts)
        last_ids = entities.new_zeros(0)
    else:
        last_ids = entities[:, 1].clone()
    offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    slot = torch.full((vocab_size,), -1, dtype=torch.long)
    slot[first_ids] = torch.arange(len(first_ids))
    return EntityIndex(entities.shape[1], first_ids, offsets, last_ids, slot)


def _groups(index: EntityIndex, u: torch.Tensor, total: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten the groups of first names ``u`` [M]: (row [T] = which m, last token [T]).
    ``total`` (= T, when known) spares a host sync on the GPU."""
    sizes = index.offsets[u + 1] - index.offsets[u]
    row = torch.repeat_interleave(torch.arange(len(u), device=u.device), sizes, output_size=total)
    start = index.offsets[u] - (sizes.cumsum(0) - sizes)  # group start minus its place in the flat list
    j = start[row] + torch.arange(len(row), device=u.device)
    return row, index.last_ids[j]


def _batches(index: EntityIndex, u: torch.Tensor, size: int) -> list[tuple[int, int, int]]:
    """(start, stop, entities in the groups of u[start:stop]) for runs of ``size`` pairs of ``u`` [n],
    with one host sync for them all."""
    if len(u) == 0:
        return []
    stops = list(range(size, len(u), size)) + [len(u)]
    ends = (index.offsets[u + 1] - index.offsets[u]).cumsum(0)[torch.tensor(stops, device=u.device) - 1].tolist()
    return list(zip([0] + stops[:-1], stops, [e - e0 for e, e0 in zip(ends, [0] + ends[:-1])]))


def _count_beating(index, u, lp_last, base, thr):
    """Per pair m: entities of group u[m] with base[m] + lp_last[m, l] > thr[m], and == thr[m].

    lp_last [M, V] = log p(l | prompt, first_ids[u[m]]); base [M] = log p(first | prompt) (float64)."""
    row, last = _groups(index, u)
    score = base[row] + lp_last[row, last].double()  # float64: the sum of two float32 is exact
    zeros = torch.zeros(len(u), dtype=torch.float64, device=u.device)
    greater = zeros.index_add(0, row, (score > thr[row]).double())
    equal = zeros.index_add(0, row, (score == thr[row]).double())
    return greater, equal


# -- ranks --------------------------------------------------------------------------------

def _token_rank(lp: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Rank of ``target`` [...] in ``lp`` [..., V], ties counted half. float64 [...]."""
    t = lp.gather(-1, target[..., None])
    greater = (lp > t).sum(-1)
    equal = (lp == t).sum(-1) - 1
    return 1 + greater.double() + equal.double() / 2


def _joint_rank(lp_first: torch.Tensor, lp_last: torch.Tensor, t_f: torch.Tensor, t_l: torch.Tensor) -> torch.Tensor:
    """The user's "joint MRR" rank over all V x V token pairs (f, l), scored
    lp_first[f] + lp_last[l] with lp_last conditioned on the TRUE first token. [B, V] each -> [B].

    No V x V table: for each f, the pairs beating the truth are the l with
    lp_last[l] > s - lp_first[f], counted by binary search in the sorted lp_last."""
    a, b = lp_first.double(), lp_last.double()
    b_true = b.gather(1, t_l[:, None])
    s = a.gather(1, t_f[:, None]) + b_true                              # [B, 1] true score
    b_sorted = b.sort(-1).values
    thr = (s - a).contiguous()                                           # [B, V]
    n_le = torch.searchsorted(b_sorted, thr, right=True)
    n_lt = torch.searchsorted(b_sorted, thr)
    greater = b.shape[1] - n_le
    equal = n_le - n_lt
    # The truth's own row f = t_f: compare with b[t_l] directly (s - a[t_f] may round off b[t_l]).
    greater = greater.scatter(1, t_f[:, None], (b > b_true).sum(-1, keepdim=True))
    equal = equal.scatter(1, t_f[:, None], (b == b_true).sum(-1, keepdim=True) - 1)
    return 1 + greater.sum(-1).double() + equal.sum(-1).double() / 2


# -- model passes -------------------------------------------------------------------------

def _final_hidden(lm: GPT2LMHeadModel, out, positions, lens: bool) -> torch.Tensor:
    """[K, B, n_pos, D]: hidden states at ``positions`` after the final layer norm, one per layer
    (K = n_layer) with the logit lens, else only the last layer (K = 1)."""
    hs = [out.last_hidden_state[:, positions]]
    if lens:
        # hidden_states = (embeddings, block 1, ..., block n-1, ln_f(block n)): the last already
        # went through ln_f, and it is last_hidden_state.
        if len(out.hidden_states) != lm.config.n_layer + 1:
            raise RuntimeError(f"expected {lm.config.n_layer + 1} hidden states from GPT-2, got {len(out.hidden_states)}")
        hs = [lm.transformer.ln_f(h[:, positions]) for h in out.hidden_states[1:-1]] + hs
    return torch.stack(hs)


def _prompt_pass(lm, ids, prompt_len, lens):
    """Teacher-forced pass over full rows [B, L]. Returns the final-normed hidden states at the
    positions that predict the target tokens [K, B, P, D], and the prompt's keys/values per layer."""
    cache = DynamicCache(config=lm.config)
    # cache positionally: its keyword is `past_key_values` in early transformers 5.x, `cache` later
    out = lm.transformer(ids, cache, use_cache=True, output_hidden_states=lens)
    h = _final_hidden(lm, out, slice(prompt_len - 1, ids.shape[1] - 1), lens)
    kv = [(layer.keys[:, :, :prompt_len], layer.values[:, :, :prompt_len]) for layer in cache.layers]
    return h, kv


def _next_token_hidden(lm, kv, rows, tokens, lens) -> torch.Tensor:
    """Append one token to prompts ``rows`` [M] of a prompt pass: final-normed hidden state
    at that token, [K, M, D]. The prompt is not recomputed, only its keys and values gathered.

    The GPT-2 blocks for one query token, written out: attention over the prompt's Lp keys plus
    the token's own key is a softmax over Lp + 1 scores, so it needs neither a cache object that
    concatenates keys nor an attention kernel (on an H100 those two took 44 % of this pass's GPU
    time through the Hugging Face path). tests/test_evaluate.py checks it against plain passes."""
    tr = lm.transformer
    M, pos = len(rows), kv[0][0].shape[2]
    x = tr.wte(tokens) + tr.wpe.weight[pos]                  # [M, D]; dropout is off in eval mode
    outs = []
    for block, (k_prompt, v_prompt) in zip(tr.h, kv):
        attn = block.attn
        H, hd = k_prompt.shape[1], k_prompt.shape[3]
        q, k, v = attn.c_attn(block.ln_1(x)).view(M, 3, H, hd).unbind(1)  # each [M, H, hd]
        kp, vp = k_prompt[rows], v_prompt[rows]              # [M, H, Lp, hd]
        scale = attn.scaling / (attn.layer_idx + 1 if lm.config.scale_attn_by_inverse_layer_idx else 1)
        scores = torch.cat([(q[:, :, None] * kp).sum(-1), (q * k).sum(-1, keepdim=True)], -1) * scale
        w = scores.float().softmax(-1).to(vp.dtype)         # [M, H, Lp + 1]
        o = (w[..., :-1, None] * vp).sum(2) + w[..., -1:] * v  # [M, H, hd]
        x = x + attn.c_proj(o.reshape(M, H * hd))
        x = x + block.mlp(block.ln_2(x))
        outs.append(x)
    if not lens:
        return tr.ln_f(x)[None]
    return torch.stack([tr.ln_f(h) for h in outs])


def _logits(lm, h: torch.Tensor) -> torch.Tensor:
    return lm.lm_head(h).float()


def _padded_head(lm) -> torch.Tensor:
    """The LM head's weight [V, D] padded with zero rows to a multiple of 8 tokens: a GEMM whose
    output rows are V = 16,015 wide is not 16-byte aligned, and on an H100 cuBLAS then falls back to
    an old kernel (21 % of the candidate pass's GPU time). The padded logits are sliced off."""
    w = lm.lm_head.weight
    V = w.shape[0]
    return torch.cat([w, w.new_zeros(-V % 8, w.shape[1])]) if V % 8 else w


def _entity_log_probs(lm, kv, q, first, row, last, lens: bool, fast: bool, head=None) -> torch.Tensor:
    """log p(last[t] | prompt q[row[t]], first[row[t]]) under each readout: [K, T] float64, from one
    pass of the M pairs (q [M], first [M]). ``fast``: blocks and LM head under bf16 autocast, with
    ``kv`` already in bf16. ``head``: the (padded) LM-head weight to use."""
    head = lm.lm_head.weight if head is None else head
    V = lm.lm_head.weight.shape[0]
    with torch.autocast(first.device.type, dtype=torch.bfloat16, enabled=fast):
        hc = _next_token_hidden(lm, kv, q, first, lens)      # [K, M, D]
        return torch.stack([F.linear(h, head)[:, :V].float().log_softmax(-1)[row, last] for h in hc]).double()


def check_precision(precision: str) -> None:
    """A ValueError naming the choices when ``precision`` is not one of ``PRECISIONS``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}, got {precision!r}")


def resolve_precision(precision: str, device) -> str:
    """"auto" -> "checked" on CUDA, "fp32" elsewhere; the other names as they are."""
    check_precision(precision)
    if precision == "auto":
        return "checked" if torch.device(device).type == "cuda" else "fp32"
    return precision


@contextmanager
def full_fp32():
    """fp32 matmuls in full fp32 (no TF32 on CUDA, no bf16 passes on CPU) inside; settings restored after."""
    b = torch.backends
    if hasattr(b.cuda.matmul, "fp32_precision"):  # torch >= 2.9: its own API (reading the old flags may raise)
        objs = (b.cuda.matmul, getattr(b.cudnn, "conv", None), getattr(b.mkldnn, "matmul", None))
        flags = [(obj, "fp32_precision", "ieee") for obj in objs if hasattr(obj, "fp32_precision")]
    else:
        flags = [(b.cuda.matmul, "allow_tf32", False), (b.cudnn, "allow_tf32", False)]
    old = [getattr(obj, name) for obj, name, _ in flags]
    try:
        for obj, name, value in flags:
            setattr(obj, name, value)
        yield
    finally:
        for (obj, name, _), value in zip(flags, old):
            setattr(obj, name, value)


# -- one chunk of queries -----------------------------------------------------------------

def item_metrics(lm, ids: torch.Tensor, index: EntityIndex, lens: bool, candidate_batch: int, precision: str,
                 margin: float) -> dict[str, torch.Tensor]:
    """All per-item numbers for a chunk of rows [B, L]: dict of [K, B] tensors (layer k's logit lens;
    the last k is the model's output) "exact", "rank_first", "rank_last" (two-token entities only),
    "entity_rank" and "nll", plus [B] ones: "joint_rank" (two-token entities only), "candidates"
    (first names given a pass), "rechecked" (of those, recomputed in fp32) and "fast_err" (max
    |bf16 - fp32| score there)."""
    B, L = ids.shape
    P = index.patch_len
    Lp = L - P  # prompt length
    tgt = ids[:, Lp:]  # [B, P]
    h, kv = _prompt_pass(lm, ids, Lp, lens)
    logits = _logits(lm, h)                                  # [K, B, P, V]
    lp = logits.log_softmax(-1)
    K = lp.shape[0]
    tok_lp = lp.gather(-1, tgt.expand(K, B, P)[..., None]).squeeze(-1).double()  # [K, B, P]
    s = tok_lp.sum(-1)                                       # [K, B] score of the true entity
    t_f = tgt[:, 0]
    out = {
        "nll": -tok_lp.mean(-1),
        "rank_first": _token_rank(lp[:, :, 0], t_f.expand(K, B)),
    }
    pred_first = logits[:, :, 0].argmax(-1)                  # [K, B] greedy first token

    if P == 1:
        # One token per entity: every entity's score is read off the teacher-forced pass. s is one
        # fp32 log-prob held in fp64, so comparing in fp32 is exact; one layer at a time, as
        # [B, E] is 80 MB at the paper's 80 K entities.
        out["exact"] = (pred_first == t_f).double()
        is_entity = (index.slot[t_f] >= 0).double()
        greater = torch.empty(K, B, dtype=torch.float64, device=ids.device)
        equal = torch.empty_like(greater)
        for k in range(K):
            ent_lp, true = lp[k, :, 0, index.first_ids], s[k, :, None].float()  # [B, E], [B, 1]
            greater[k] = (ent_lp > true).sum(-1).double()
            equal[k] = (ent_lp == true).sum(-1).double() - is_entity  # the truth ties with itself
        out["entity_rank"] = 1 + greater + equal / 2
        for key in ("candidates", "rechecked", "fast_err"):
            out[key] = torch.zeros(B, dtype=torch.float64, device=ids.device)
        return out

    t_l = tgt[:, 1]
    out["rank_last"] = _token_rank(lp[:, :, 1], t_l.expand(K, B))
    out["joint_rank"] = _joint_rank(lp[-1, :, 0], lp[-1, :, 1], t_f, t_l)

    # Greedy second token after the greedy first, each layer continuing under its own lens.
    rows = torch.arange(B, device=ids.device).repeat(K)
    h2 = _next_token_hidden(lm, kv, rows, pred_first.reshape(-1), lens).view(K, K, B, -1)
    ks = torch.arange(K, device=ids.device)
    pred_last = _logits(lm, h2[ks, ks]).argmax(-1)           # [K, B]
    out["exact"] = ((pred_first == t_f) & (pred_last == t_l)).double()

    # Entity rank. The true first name's group is scored from the teacher-forced pass.
    greater = torch.zeros(K, B, dtype=torch.float64, device=ids.device)
    equal = torch.zeros_like(greater)
    u_true = index.slot[t_f]
    q_true = (u_true >= 0).nonzero().squeeze(1)
    is_entity = torch.zeros(B, dtype=torch.float64, device=ids.device)
    if len(q_true):
        row, last = _groups(index, u_true[q_true])
        is_entity[q_true] = torch.zeros(len(q_true), dtype=torch.float64, device=ids.device).index_add(
            0, row, (last == t_l[q_true][row]).double())
        for k in range(K):
            g, e = _count_beating(index, u_true[q_true], lp[k, q_true, 1], tok_lp[k, q_true, 0], s[k, q_true])
            greater[k, q_true] += g
            equal[k, q_true] += e

    # Every other first name that could still reach the true score, under any layer's lens.
    first_lp = lp[:, :, 0, index.first_ids].double()         # [K, B, U]
    keep = (first_lp >= s[..., None]).any(0)                 # [B, U]
    keep[q_true, u_true[q_true]] = False
    rechecked, fast_err = _count_candidates(lm, kv, index, keep, first_lp, s, greater, equal, lens, candidate_batch,
                                            precision, margin)
    out["entity_rank"] = 1 + greater + (equal - is_entity) / 2  # the truth ties with itself
    out["candidates"] = keep.sum(-1).double()
    out["rechecked"] = rechecked
    out["fast_err"] = fast_err
    return out


def _add_per_query(total: torch.Tensor, q: torch.Tensor, row: torch.Tensor, hits: torch.Tensor) -> None:
    """total [K, B] += hits [K, T] summed per query: entity t -> pair row[t] -> query q[pair]. Two
    steps, so that few of the GPU's atomic adds go to the same address."""
    per_pair = torch.zeros(len(hits), len(q), dtype=torch.float64, device=q.device).index_add_(1, row, hits.double())
    total.index_add_(1, q, per_pair)


def _count_candidates(lm, kv, index, keep, first_lp, s, greater, equal, lens, candidate_batch, precision, margin):
    """Add to ``greater``, ``equal`` [K, B] the entities of the pairs ``keep`` [B, U] that beat or tie the
    true scores ``s`` [K, B]; first_lp [K, B, U] = log p(first name | prompt). Returns, per query [B],
    the pairs recomputed in fp32 ("checked") and the largest |bf16 - fp32| score measured on them."""
    B, device = keep.shape[0], keep.device
    q_all, u_all = keep.nonzero(as_tuple=True)               # [n] pairs (query, first name)
    fast = precision != "fp32"
    head = _padded_head(lm)
    kv_fast = [(k.bfloat16(), v.bfloat16()) for k, v in kv] if fast else kv
    near = torch.zeros(len(q_all), dtype=torch.bool, device=device)  # "checked": recompute these pairs
    for a, b, n_ent in _batches(index, u_all, candidate_batch):
        q, u = q_all[a:b], u_all[a:b]
        row, last = _groups(index, u, n_ent)                 # [T] entities of the M = b - a pairs
        score = first_lp[:, q, u][:, row] + _entity_log_probs(lm, kv_fast, q, index.first_ids[u], row, last, lens, fast,
                                                              head)
        thr = s[:, q[row]]                                   # [K, T]
        if precision == "checked":
            in_band = ((score - thr).abs() <= margin).any(0)  # [T]
            pair_near = torch.zeros(b - a, dtype=torch.int32, device=device).index_add_(0, row, in_band.int()) > 0
            near[a:b] = pair_near
            _add_per_query(greater, q, row, (score > thr + margin) & ~pair_near[row])
        else:
            _add_per_query(greater, q, row, score > thr)
            _add_per_query(equal, q, row, score == thr)

    fast_err = torch.zeros(B, dtype=torch.float64, device=device)
    if precision == "checked":
        redo = near.nonzero().squeeze(1)
        for a, b, n_ent in _batches(index, u_all[redo], candidate_batch):
            q, u = q_all[redo[a:b]], u_all[redo[a:b]]
            row, last = _groups(index, u, n_ent)
            exact = _entity_log_probs(lm, kv, q, index.first_ids[u], row, last, lens, fast=False, head=head)
            score = first_lp[:, q, u][:, row] + exact
            thr = s[:, q[row]]
            _add_per_query(greater, q, row, score > thr)
            _add_per_query(equal, q, row, score == thr)
            # the bf16 error, measured again on these pairs (it is not kept from the fast loop)
            err = (_entity_log_probs(lm, kv_fast, q, index.first_ids[u], row, last, lens, True, head) - exact).abs()
            pair_err = torch.zeros(b - a, dtype=torch.float64, device=device).scatter_reduce_(0, row, err.amax(0), "amax")
            fast_err.scatter_reduce_(0, q, pair_err, "amax")
    rechecked = torch.zeros_like(keep)
    rechecked[q_all, u_all] = near
    return rechecked.sum(-1).double(), fast_err
