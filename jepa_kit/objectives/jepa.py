"""``jepa``: next-token prediction plus an LLM-JEPA term between the two views of a fact.

For each ``train`` row the model encodes the forward view ``[h, r, <mask>, t, <PRED> x k]`` and
the reverse view ``[t, inv(r), <mask>, h]`` (jepa_kit.reversal) and pulls the prediction at the
last <PRED> towards the reverse view's last hidden state (jepa_kit.losses, jepa_kit.model).
Reverse views are built only for ``train`` rows: atomic and test rows give their forward view
only, so no test fact ever reaches the model (the trainer's leakage guard checks the rows, and
``jepa_kit.data.leakage_problems`` counts the reverse views of train rows too).

Extra evaluation: the JEPA distance and its diagnostics on the training rows of valid.json,
batched as in training (``jepa_kit.evaluate.jepa_eval_diagnostics``).
"""
from __future__ import annotations

from jepa_kit.objectives.ntp import GPT2Objective


class JEPA(GPT2Objective):
    name = "jepa"
    help = "next-token prediction + the LLM-JEPA term between a fact's forward and reverse views"

    def eval_diagnostics(self, model, ids, types, batch_size):
        if not model.objective.uses_jepa:  # lambda_jepa = 0: there is no JEPA term to diagnose
            return None
        from jepa_kit.evaluate import jepa_eval_diagnostics

        return jepa_eval_diagnostics(model, ids, types, batch_size=batch_size)
