"""``concept``: the binding paper's concept-level JEPA (the positive control), see jepa_kit.concept.

Rows: train.json's, forward direction only (the default ``training_rows``): no reverse view,
no test fact. Model: ``ConceptJEPA`` (recognition blocks per patch, concept blocks over patches,
an in-batch contrastive loss towards the tail's concept; no LM head, so no token metrics).
Evaluation: ``concept_mrr`` per split (kit's tie rule), ``concept_mrr_paper_ties`` (the
paper's), ``concept_rank_mean``, ``n``; the true tail is ranked among every entity of the dataset.
"""
from __future__ import annotations

from jepa_kit.objectives.base import Objective


class Concept(Objective):
    name = "concept"
    help = "the binding paper's concept-level JEPA (recognition per patch, contrastive loss over concepts)"

    def build_model(self, vocab, cfg):
        from jepa_kit.concept import ConceptJEPA

        return ConceptJEPA(vocab, preset=cfg.model_preset(), objective=cfg.objective_config(),
                           attn_implementation=cfg.attn_implementation)

    def model_from_config(self, vocab, d):
        from jepa_kit.concept import ConceptJEPA

        return ConceptJEPA.from_config_dict(vocab, d)

    def split_metrics(self, model, ids, entities, batch_size):
        from jepa_kit.concept import concept_ranks

        kit, paper = concept_ranks(model, ids, entities, batch_size=batch_size)
        n = len(kit)
        mean = (lambda x: float(x.mean())) if n else (lambda x: None)
        return {"concept_mrr": mean(1.0 / kit), "concept_mrr_paper_ties": mean(1.0 / paper),
                "concept_rank_mean": mean(kit), "n": n}
