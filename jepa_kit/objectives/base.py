"""The interface every objective implements (the contract is in ``jepa_kit.objectives``)."""
from __future__ import annotations

import typing

if typing.TYPE_CHECKING:
    import torch

    from jepa_kit.config import TrainConfig
    from jepa_kit.data import Dataset
    from jepa_kit.vocab import Vocab


class Objective:
    name: str = ""
    help: str = ""
    trains_on_test_facts: bool = False  # True only with a leakage_exemption
    leakage_exemption: str | None = None  # why this objective may add rows the guard would refuse

    def training_rows(self, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows of train.json (already checked for leakage by the trainer)."""
        return dataset.train.ids, dataset.train.types

    def build_model(self, vocab: Vocab, cfg: TrainConfig) -> torch.nn.Module:
        raise NotImplementedError

    def model_from_config(self, vocab: Vocab, d: dict) -> torch.nn.Module:
        raise NotImplementedError

    def split_metrics(self, model, ids: torch.Tensor, entities: torch.Tensor, batch_size: int) -> dict | None:
        """Per-split numbers for a model without an LM head; None: the token-level evaluation."""
        return None

    def eval_diagnostics(self, model, ids: torch.Tensor, types: torch.Tensor, batch_size: int) -> dict | None:
        return None
