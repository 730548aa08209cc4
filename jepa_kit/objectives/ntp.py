"""``ntp``: plain next-token prediction on the training rows, the baseline.

The model is ``GPT2WithJEPA`` with no JEPA term: every row is a plain causal sequence and the
loss is the cross-entropy of the labelled tail tokens.
"""
from __future__ import annotations

from jepa_kit.objectives.base import Objective


class GPT2Objective(Objective):
    """The objectives that train ``jepa_kit.model.GPT2WithJEPA`` (they differ in its ObjectiveConfig)."""

    def build_model(self, vocab, cfg):
        from jepa_kit.model import GPT2WithJEPA

        return GPT2WithJEPA(vocab, preset=cfg.model_preset(), objective=cfg.objective_config(),
                            attn_implementation=cfg.attn_implementation)

    def model_from_config(self, vocab, d):
        from jepa_kit.model import GPT2WithJEPA

        return GPT2WithJEPA.from_config_dict(vocab, d)


class NTP(GPT2Objective):
    name = "ntp"
    help = "plain next-token prediction (the baseline)"
