"""The objective registry: every training objective is one module here, behind one interface.

An objective says three things (``jepa_kit.objectives.base.Objective``):

* **which rows it trains on**: ``training_rows(dataset)`` returns ``(ids [N, L], types [N])``.
  The trainer has already checked train.json for leakage (``jepa_kit.data.leakage_problems``:
  no test fact, no reverse view of an atomic fact, as a row or as the reverse view a JEPA term
  builds). An objective that adds rows of its own (reverse augmentation) is the only way past
  that guard: it must set ``trains_on_test_facts = True`` and say why in ``leakage_exemption``;
  its results are then labelled as training on the test facts everywhere.
* **its loss on a batch**: ``build_model(vocab, cfg)`` returns an ``nn.Module`` whose
  ``forward(ids, types, generator=None)`` returns a dict with ``loss`` (what is
  backpropagated), ``ntp_loss`` and ``jepa_loss`` (the two terms the logs and the DDP
  reduction read; an objective without a second term returns 0 for it), ``n_items`` and
  ``n_jepa`` (the items the second term averages over). ``model_from_config(vocab, d)``
  rebuilds it from ``model.config_dict()`` (what a checkpoint stores).
* **its evaluation**: by default a split is evaluated at the token level (exact match, token and
  entity MRR: jepa_kit.evaluate), which needs a Hugging Face LM head (``model.gpt2``). A model
  without one returns its own per-split numbers from ``split_metrics(model, ids, entities,
  batch_size)`` (the concept objective: concept MRR). ``eval_diagnostics(model, ids, types,
  batch_size)`` returns a dict (or None) that evaluation stores under the objective's name next
  to the per-split metrics.

To add an objective: write ``jepa_kit/objectives/<name>.py`` with a subclass of ``Objective``,
add ``"<name>": "jepa_kit.objectives.<name>:<Class>"`` to ``REGISTRY`` below, and give its
fields (if any) a place in ``jepa_kit.config.TrainConfig``. The trainer, evaluation, sweeps and
notebooks take the objective by name from here. Modules are imported on first use, so naming
the objectives costs no import of torch models.
"""
from __future__ import annotations

import importlib

from jepa_kit.objectives.base import Objective

REGISTRY: dict[str, str] = {
    "jepa": "jepa_kit.objectives.jepa:JEPA",
    "ntp": "jepa_kit.objectives.ntp:NTP",
    "reverse_aug": "jepa_kit.objectives.reverse_aug:ReverseAug",
    "concept": "jepa_kit.objectives.concept:Concept",
}
NAMES = tuple(REGISTRY)  # the built-in ones; check membership against REGISTRY (a test may add one)

_loaded: dict[str, Objective] = {}


def get_objective(name: str) -> Objective:
    """The registered objective called ``name`` (ValueError naming the choices otherwise)."""
    if name not in REGISTRY:
        raise ValueError(f"objective must be one of {', '.join(NAMES)}; got {name!r}")
    if name not in _loaded:
        module, cls = REGISTRY[name].split(":")
        _loaded[name] = getattr(importlib.import_module(module), cls)()
    return _loaded[name]


__all__ = ["NAMES", "REGISTRY", "Objective", "get_objective"]
