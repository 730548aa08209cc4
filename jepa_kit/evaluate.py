"""Evaluation: exact match, token and entity MRR, NTP loss, logit lens, JEPA diagnostics.

For each split of valid.json (train = a sample of train.json's ``train`` rows, atomic = a sample of
its atomic rows, the direction seen in training, test = their reversals, never trained on) and each
item ``[h_f, h_l, r, <mask>, t_f, t_l]`` (or ``[h, r, <mask>, t]`` with single-token entities):

* ``exact_match``: greedy t_f from the prompt ``[h_f, h_l, r, <mask>]``, then greedy t_l given the
  *predicted* t_f; 1 when both are right.
* ``mrr_first``: reciprocal rank of t_f over the whole vocabulary; ``mrr_last``: of t_l given the
  prompt and the *true* t_f (None for single-token entities).
* ``entity_mrr``, ``entity_rank_mean``, ``entity_hits1``: rank of the true tail among all entities
  of the dataset (``dataset.entities()``), each scored log p(e_f | prompt) + log p(e_l | prompt, e_f).
* ``joint_mrr_approx``: the user's earlier metric: every (f, l) pair of vocabulary tokens, scored
  log p(f | prompt) + log p(l | prompt, TRUE t_f) (None for single-token entities).
* ``ntp_loss``: mean cross-entropy over the target tokens, teacher-forced; ``n``: items.

Ties count half and greedy decoding takes the first maximal token; how the ranks are computed
(exactly, without scoring every (query, entity) pair in Python) and what ``precision`` ("auto",
"fp32", "checked", "bf16") and ``margin`` mean is in ``jepa_kit.ranking``.

Logit lens (``per_layer``): the output of block i, i = 1..n_layer (the embedding output is not
included), through the final layer norm and the LM head; each entry has ``layer``, ``exact_match``
(both greedy steps under that layer's readout), ``mrr_first``, ``mrr_last``, ``entity_mrr`` and
``ntp_loss``. The last entry is the model's own output and equals the top-level numbers.
"""
from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import torch
from transformers import GPT2LMHeadModel

from jepa_kit.data import SPLITS, load_dataset
from jepa_kit.objectives import Objective, get_objective
from jepa_kit.ranking import (EntityIndex, build_entity_index, check_precision, full_fp32, item_metrics,
                              resolve_precision)

TABLE_COLUMNS = ("exact_match", "mrr_first", "mrr_last", "entity_mrr", "ntp_loss", "n")
CONCEPT_COLUMNS = ("concept_mrr", "concept_mrr_paper_ties", "concept_rank_mean", "n")


def _summary(items: dict[str, torch.Tensor], k: int) -> dict:
    """Means over items of layer k's numbers (k = -1: the model's output)."""
    def mean(x):
        return float(x.mean())

    return {
        "exact_match": mean(items["exact"][k]),
        "mrr_first": mean(1 / items["rank_first"][k]),
        "mrr_last": mean(1 / items["rank_last"][k]) if "rank_last" in items else None,
        "entity_mrr": mean(1 / items["entity_rank"][k]),
        "entity_rank_mean": mean(items["entity_rank"][k]),
        "entity_hits1": mean((items["entity_rank"][k] == 1).double()),
        "ntp_loss": mean(items["nll"][k]),
    }


# -- public -------------------------------------------------------------------------------

def hf_model(model) -> GPT2LMHeadModel:
    """The GPT2LMHeadModel inside a GPT2WithJEPA (``.gpt2``), or the model itself."""
    if isinstance(model, GPT2LMHeadModel):
        return model
    lm = getattr(model, "gpt2", None)
    if isinstance(lm, GPT2LMHeadModel):
        return lm
    raise TypeError(f"expected a GPT2WithJEPA, a GPT2LMHeadModel or a run directory, got {type(model).__name__}")


@torch.inference_mode()
def evaluate_split(model, ids: torch.Tensor, entities, *, logit_lens: bool = True, batch_size: int = 256,
                   candidate_batch: int | None = None, per_item: bool = False, precision: str = "auto",
                   margin: float = 0.5) -> dict:
    """Metrics for rows ``ids`` [N, 2P + 2] against the entity set ``entities`` ([E, P] token ids or an
    EntityIndex). The model must already be in eval mode on the device of ``ids``.

    precision: "auto", "fp32", "checked" or "bf16", with ``margin`` in nats for "checked" (see the
    ``jepa_kit.ranking``). candidate_batch: (query, first name) pairs per candidate pass (16,384 on CUDA:
    a few GB at the paper's vocabulary; 2,048 on the CPU).
    Returns the top-level metrics dict of a split (see the module docstring), with ``per_layer``
    when ``logit_lens``, and with ``items`` (per-item tensors, on the CPU) when ``per_item``."""
    lm = hf_model(model)
    V = lm.config.vocab_size
    index = entities if isinstance(entities, EntityIndex) else build_entity_index(entities, V)
    device = ids.device
    precision = resolve_precision(precision, device)
    if not margin >= 0 or math.isinf(margin):
        raise ValueError(f"margin must be a finite number of nats >= 0, got {margin}")
    index = index.to(device)
    P = index.patch_len
    if ids.dim() != 2 or ids.shape[1] != 2 * P + 2:
        raise ValueError(f"rows must be [N, {2 * P + 2}] for entities of {P} token(s), got shape {tuple(ids.shape)}")
    if len(ids) == 0:
        raise ValueError("no rows to evaluate")
    bad = (ids < 0) | (ids >= V)
    if bad.any():
        row = int(bad.any(1).nonzero()[0])
        raise ValueError(f"row {row} has token id {int(ids[bad][0])}, outside the model's vocabulary (0..{V - 1})")
    if candidate_batch is None:
        candidate_batch = 16384 if device.type == "cuda" else 2048

    with full_fp32(), torch.autocast(device.type, enabled=False):  # fp32 unless a pass asks for bf16
        parts = [item_metrics(lm, ids[i:i + batch_size], index, logit_lens, candidate_batch, precision, margin)
                 for i in range(0, len(ids), batch_size)]
    items = {key: torch.cat([p[key] for p in parts], dim=-1).cpu() for key in parts[0]}

    res = _summary(items, -1)
    res["joint_mrr_approx"] = float((1 / items["joint_rank"]).mean()) if P == 2 else None
    res["entity_candidates_mean"] = float(items["candidates"].mean())  # first names given a pass, per query
    res["n"] = len(ids)
    res["precision"] = precision
    n_pairs, n_rechecked = float(items["candidates"].sum()), float(items["rechecked"].sum())
    res["entity_recheck_fraction"] = (n_rechecked / n_pairs if n_pairs else 0.0) if precision == "checked" else None
    res["entity_fast_max_abs_err"] = float(items["fast_err"].max()) if n_rechecked else None
    if n_rechecked and res["entity_fast_max_abs_err"] > margin:
        warnings.warn(f"bf16 scores were off by up to {res['entity_fast_max_abs_err']:.3f} nats, more than the margin "
                      f"of {margin}: entity ranks may differ from fp32; use a larger margin or precision='fp32'")
    if logit_lens:
        res["per_layer"] = []
        for k in range(lm.config.n_layer):
            layer = _summary(items, k)
            res["per_layer"].append({"layer": k + 1, **{key: layer[key] for key in
                                     ("exact_match", "mrr_first", "mrr_last", "entity_mrr", "ntp_loss")}})
    if per_item:
        res["items"] = items
    return res


@torch.inference_mode()
def jepa_eval_diagnostics(model, ids: torch.Tensor, types: torch.Tensor, batch_size: int = 256) -> dict | None:
    """JEPA distance and collapse indicators on ``train``-type rows (valid.json's train split, a sample
    of the rows the model trains on). None when the model builds no reverse views.

    The distance is the training objective's own value, computed as training computes it: the
    model's ``jepa_loss`` on batches of ``batch_size`` rows (pass the training batch size per
    process: InfoNCE takes its negatives from the batch, reverse partners excluded), averaged over
    items. The collapse indicators look at all items at once."""
    from jepa_kit.losses import jepa_diagnostics

    preds, targets, total = [], [], 0.0
    for i in range(0, len(ids), batch_size):
        out = model(ids[i:i + batch_size], types[i:i + batch_size], return_jepa_outputs=True)
        preds.append(out["pred"])
        targets.append(out["target"])
        total += float(out["jepa_loss"]) * len(out["pred"])
    pred, target = torch.cat(preds).float(), torch.cat(targets).float()
    if len(pred) < 2:
        return None
    obj = model.objective
    dist = total / len(pred)
    diag = jepa_diagnostics(pred, target)
    return {
        "metric": obj.jepa_metric,
        "jepa_distance": float(dist),
        "pred_cos_between_items": diag["pred_pairwise_cosine"],
        "target_std": diag["target_std"],
        "pred_target_cosine": diag["pred_target_cosine"],
        "n": len(pred),
    }


def sample_rows(n: int, max_items: int | None, seed: int = 0) -> torch.Tensor:
    """Sorted indices of a fixed random sample of ``max_items`` of ``n`` rows, the same for the same
    (n, max_items, seed); all rows when ``max_items`` is None or >= n."""
    if max_items is None or max_items >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_items].sort().values


def evaluate(model_or_run_dir, dataset, splits=SPLITS, batch_size: int = 256, logit_lens: bool = True,
             device=None, max_items: int | None = None, candidate_batch: int | None = None,
             per_item: bool = False, precision: str = "auto", margin: float = 0.5, sample_seed: int = 0,
             jepa_batch_size: int | None = None) -> dict:
    """Per-split metrics of a model on the valid.json splits of ``dataset``.

    model_or_run_dir: a GPT2WithJEPA, a GPT2LMHeadModel, or a run directory (loaded with
      ``jepa_kit.rundir.load_run``). dataset: a ``Dataset`` or a data directory.
    max_items: evaluate a fixed random sample of ``max_items`` rows of each split (``sample_rows``
      with ``sample_seed``: the same rows at every call, so periodic evaluations stay comparable and
      cheap); None: all rows. precision, margin: see ``evaluate_split``. jepa_batch_size: batch size of
      the objective's extra evaluation (default ``batch_size``; the trainer passes its own per-process
      batch, which InfoNCE's in-batch negatives depend on).
    Returns ``{split: metrics}``; for a model trained with a registered objective (``jepa_kit.objectives``)
    also the objective's extra evaluation, under its name (``"jepa"``: the JEPA diagnostics, when
    lambda != 0), computed on the evaluated rows of valid.json's train split: rows the model trains on,
    so they show whether the objective is met, not how it generalises; and ``"label"`` for an objective
    that trains on the test facts (reverse augmentation). The model is put in eval mode and moved to
    ``device`` for the call, then restored.
    """
    check_precision(precision)  # before loading anything
    if isinstance(model_or_run_dir, (str, Path)):
        from jepa_kit.rundir import load_run  # lazy: the run directory brings the model and its objectives
        model = load_run(model_or_run_dir)[0]
    else:
        model = getattr(model_or_run_dir, "module", model_or_run_dir)  # unwrap DistributedDataParallel
    if isinstance(dataset, (str, Path)):
        dataset = load_dataset(dataset)
    name = getattr(getattr(model, "objective", None), "objective", None)  # a kit model's objective
    objective = get_objective(name) if name is not None else None
    own_metrics = objective is not None and type(objective).split_metrics is not Objective.split_metrics
    vocab_size = model.gpt2.config.vocab_size if own_metrics else hf_model(model).config.vocab_size
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    for split in splits:
        if split not in dataset.valid:
            raise ValueError(f"unknown split {split!r}; valid.json has {', '.join(dataset.valid)}")
    if len(dataset.vocab) > vocab_size:
        raise ValueError(f"the dataset's vocabulary has {len(dataset.vocab)} tokens but the model only "
                         f"{vocab_size}: was it trained on another dataset?")

    first_param = next(model.parameters())
    old_device, was_training = first_param.device, model.training
    device = torch.device(device) if device is not None else old_device
    model.to(device).eval()
    try:
        entities = dataset.entities()
        index = None if own_metrics else build_entity_index(entities, vocab_size)
        results = {}
        for split in splits:
            ids = dataset.valid[split].ids
            ids = ids[sample_rows(len(ids), max_items, sample_seed)].to(device)
            if own_metrics:  # a model without an LM head (the concept objective) ranks in its own space
                with full_fp32():
                    results[split] = objective.split_metrics(model, ids, entities, batch_size)
                continue
            results[split] = evaluate_split(model, ids, index, logit_lens=logit_lens, batch_size=batch_size,
                                            candidate_batch=candidate_batch, per_item=per_item,
                                            precision=precision, margin=margin)
        if objective is not None and "train" in dataset.valid:
            seen = dataset.valid["train"]  # a sample of training rows, not held out
            rows = sample_rows(len(seen.ids), max_items, sample_seed)  # the train split's evaluated rows
            with full_fp32():
                extra = objective.eval_diagnostics(model, seen.ids[rows].to(device), seen.types[rows].to(device),
                                                   jepa_batch_size or batch_size)
            if extra is not None:
                results[objective.name] = extra
        if objective is not None and objective.trains_on_test_facts:
            results["label"] = f"{objective.name} trains on test facts: a sanity ceiling, not a method"
    finally:
        model.to(old_device)
        model.train(was_training)
    return results


def chance_entity_mrr(n_entities: int) -> float:
    """Expected entity MRR of a uniformly random ranking of n entities: H_n / n."""
    return sum(1.0 / r for r in range(1, n_entities + 1)) / n_entities


def format_table(results: dict) -> str:
    """A fixed-width table: one row per split, columns ``TABLE_COLUMNS`` (``CONCEPT_COLUMNS`` for a
    concept model, which has no token metrics)."""
    splits = [k for k, v in results.items() if k in SPLITS and isinstance(v, dict)]
    concept = any("concept_mrr" in results[s] for s in splits)
    columns = CONCEPT_COLUMNS if concept else TABLE_COLUMNS
    width = max([5] + [len(s) for s in splits])
    head = "".join(f"{c:>{max(13, len(c) + 2)}}" for c in columns)
    lines = [f"{'split':<{width}}" + head]

    def cell(v, c):
        text = "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)
        return f"{text:>{max(13, len(c) + 2)}}"

    for s in splits:
        lines.append(f"{s:<{width}}" + "".join(cell(results[s].get(c), c) for c in columns))
    if concept:
        lines.append("concept_mrr: ties count half (the kit's rule); concept_mrr_paper_ties: ties count for the truth")
    if "jepa" in results:
        j = results["jepa"]
        lines.append(f"jepa ({j['metric']}, n={j['n']}): distance {j['jepa_distance']:.4f}, "
                     f"cos between items {j['pred_cos_between_items']:.4f}, target std {j['target_std']:.4f}")
    if "label" in results:
        lines.append(results["label"])
    return "\n".join(lines)


# -- speed --------------------------------------------------------------------------------

def _timed(device, fn):
    """(seconds, result) of fn(), waiting for the GPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    res = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0, res


def bench_eval(n_queries: int = 8, device=None, preset: str | dict = "paper", logit_lens: bool = False,
               n_first: int = 8000, multiplicity: int = 10, batch_size: int | None = None,
               candidate_batch: int | None = None, seed: int = 0, precision: str = "bf16",
               margin: float = 0.5) -> dict:
    """Time ``evaluate_split`` on a random model and a paper-size entity set (8,000 first names x 10
    = 80,000 entities, vocab 16,015). A random model prunes nothing, so this is the worst case
    (a model at chance on the reversal split); trained models on seen facts are much faster.
    ``preset``: a name of ``jepa_kit.model.MODEL_PRESETS`` ("paper": 4 x 768) or a dict of
    n_layer, n_embd, n_head. ``precision`` defaults to "bf16", the precision for this worst case:
    "checked" recomputes nearly every pair of a random model in fp32 (see ``jepa_kit.ranking``)."""
    from jepa_kit.model import GPT2WithJEPA
    from jepa_kit.vocab import Vocab

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    vocab = Vocab.build(n_first, n_first, 6)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    lm = GPT2WithJEPA(vocab, preset=preset).gpt2.to(device).eval()  # the kit's own architecture
    # entity i: first i // m, last (first + (n_first // m) * (i % m)) mod n_first: unique pairs, each name in m entities
    i = torch.arange(n_first * multiplicity)
    f = i // multiplicity
    l = (f + (n_first // multiplicity) * (i % multiplicity)) % n_first
    entities = torch.stack([vocab.first_name_ids[f], vocab.last_name_ids[l]], 1)
    index = build_entity_index(entities, len(vocab))

    def queries(n):
        head = entities[torch.randint(len(entities), (n,), generator=g)]
        tail = entities[torch.randint(len(entities), (n,), generator=g)]
        rel = vocab.forward_relation_ids[torch.randint(6, (n,), generator=g)]
        return torch.cat([head, rel[:, None], torch.full((n, 1), vocab.mask_id), tail], 1).to(device)

    kw = dict(logit_lens=logit_lens, batch_size=batch_size or n_queries, candidate_batch=candidate_batch,
              precision=precision, margin=margin)
    evaluate_split(lm, queries(1), index, **kw)  # warm-up
    ids = queries(n_queries)
    seconds, res = _timed(device, lambda: evaluate_split(lm, ids, index, **kw))
    qps = n_queries / seconds
    return {
        "device": str(device), "preset": preset if isinstance(preset, str) else dict(preset), "logit_lens": logit_lens,
        "precision": res["precision"], "n_queries": n_queries, "n_entities": index.n_entities,
        "n_first_names": len(index.first_ids), "vocab_size": len(vocab), "seconds": seconds, "queries_per_s": qps,
        "candidates_per_query": res["entity_candidates_mean"],
        "candidate_passes_per_s": res["entity_candidates_mean"] * qps,
        "entity_recheck_fraction": res["entity_recheck_fraction"],
        "entity_fast_max_abs_err": res["entity_fast_max_abs_err"],
        "projected_s_9000_queries": 9000 / qps if qps > 0 else math.inf,
    }


def compare_precisions(model, ids: torch.Tensor, entities, precisions=("fp32", "checked", "bf16"),
                       warmup: bool = True, **kw) -> dict:
    """Evaluate the same rows ``ids`` under each precision (``kw`` go to ``evaluate_split``; the model
    in eval mode on the device of ``ids``).

    Returns ``{precision: {seconds, entity_mrr, entity_recheck_fraction, entity_fast_max_abs_err,
    items_rank_differs, max_rank_diff, mrr_abs_diff}}``, the last three against "fp32" (always run):
    items whose entity rank differs under any readout, the largest |rank difference| and
    |entity MRR difference|. ``warmup``: one row per precision first, untimed."""
    precisions = tuple(dict.fromkeys(("fp32", *precisions)))
    if not isinstance(entities, EntityIndex):
        entities = build_entity_index(entities, hf_model(model).config.vocab_size)  # once for all runs
    kw = {"per_item": True, **kw}
    runs = {}
    for p in precisions:
        if warmup:
            evaluate_split(model, ids[:1], entities, precision=p, **kw)
        runs[p] = _timed(ids.device, lambda: evaluate_split(model, ids, entities, precision=p, **kw))
    ref = runs["fp32"][1]["items"]["entity_rank"]          # [K, N]
    out = {}
    for p, (seconds, res) in runs.items():
        diff = (res["items"]["entity_rank"] - ref).abs()
        out[p] = {"seconds": seconds, "entity_mrr": res["entity_mrr"],
                  "entity_recheck_fraction": res["entity_recheck_fraction"],
                  "entity_fast_max_abs_err": res["entity_fast_max_abs_err"],
                  "items_rank_differs": int((diff > 0).any(0).sum()), "max_rank_diff": float(diff.max()),
                  "mrr_abs_diff": abs(res["entity_mrr"] - runs["fp32"][1]["entity_mrr"])}
    return out
