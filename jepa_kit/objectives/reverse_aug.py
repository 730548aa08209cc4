"""``reverse_aug``: next-token prediction on the training rows plus the reverse of every atomic fact.

The reverse of an atomic fact is a test fact, so this objective trains on the test set BY
DESIGN: it is the sanity ceiling (can the model hold both directions?), not a method, and every
table labels it "trains on test facts". It is the one exemption from the leakage guard.
The added rows get type "atomic" so the model builds no JEPA view for them.
"""
from __future__ import annotations

import torch

from jepa_kit.data import TYPE_CODES, is_type
from jepa_kit.objectives.ntp import GPT2Objective


class ReverseAug(GPT2Objective):
    name = "reverse_aug"
    help = "plain next-token prediction that also trains on the reverse of every atomic fact (the test facts)"
    trains_on_test_facts = True
    leakage_exemption = "appends the reverse of every atomic fact, i.e. the test facts: a ceiling, not a method"

    def training_rows(self, dataset):
        from jepa_kit.reversal import reverse_view

        ids, types = dataset.train.ids, dataset.train.types
        atomic = ids[is_type(types, "atomic")]
        added = torch.full((len(atomic),), TYPE_CODES["atomic"], dtype=types.dtype)
        return torch.cat([ids, reverse_view(atomic, dataset.vocab)]), torch.cat([types, added])
