"""The binding paper's concept-level JEPA, re-implemented on Hugging Face GPT-2 blocks.

An item ``[h, r, <mask>, t]`` (entities of P = 1 or 2 tokens) is four patches, each right-padded
with ``<pad>`` to P tokens. Its concept position is its last real token (P - 1 for an entity,
0 for the relation and the mask).

* **Recognition** (the first W = ``n_recognition`` blocks): every patch alone, causal attention
  inside the patch, nothing across patches. A patch's *concept* is the residual stream at its
  concept position after W blocks (W = 0: the token embedding itself). Padding sits after the
  concept position, so causal attention never reads it.
* **Concept stack** (the other blocks): causal attention over the four concepts ``[h, r, mask, t]``.
  The output at ``<mask>``, normalised (``rms``: x / sqrt(mean(x²) + 1e-6) in fp32, no mean, no
  gain; or ``layernorm``: the model's ``ln_f``), is the *prediction*. Causality means the tail
  never changes it.
* **Loss** (the only one; no next-token term): logits are raw dot products between each
  prediction and the concepts of every patch of the batch (B x 4 candidates: heads, relations,
  masks, tails, not deduplicated), cross-entropy towards the item's own tail concept
  (``concept_logit_scale`` multiplies the logits: 1, the paper's, has no temperature). Targets
  are not normalised and not detached: gradients reach the recognition blocks through both
  sides. ``concept_negatives = "distinct"`` masks the other copies of the true tail (the same
  tokens give the same concept, so they tie with the truth); the paper keeps them.
* **Position embeddings**: ``pos_emb`` (the paper's models have none) adds GPT-2's learned ones,
  positions 0..P-1 inside a patch and 0..3 over the concepts.

Training rows are train.json's (train and atomic items alike, their forward direction only): no
reverse view is ever built, so no test fact can reach training. Under DDP each rank's
negatives are the patches of its own batch slice (no gather): the update equals the mean of
per-rank losses, i.e. a single process at the per-rank batch size, as for InfoNCE.

Evaluation (``concept_ranks``): the true tail's concept is ranked among the concepts of every
distinct entity of the dataset, each encoded by the recognition blocks from its own tokens.
``concept_mrr`` uses the kit's tie rule (a tie counts half, the expected rank under random
tie-breaking); ``concept_mrr_paper_ties`` the paper's (ties count for the truth: 1 + #higher).
"""
from __future__ import annotations

from dataclasses import asdict, fields

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPT2Config, GPT2Model

from jepa_kit.attention import check_attn_implementation
from jepa_kit.masks import block_causal_mask
from jepa_kit.model import ObjectiveConfig, arch_from_config_dict, embd_pdrop, resolve_arch
from jepa_kit.reversal import patch_len_of
from jepa_kit.vocab import Vocab

N_PATCHES = 4  # head, relation, <mask>, tail
MASK_SLOT, TAIL_SLOT = 2, 3


class ConceptJEPA(nn.Module):
    """GPT-2 blocks split into a recognition stack (per patch) and a concept stack (over patches).
    ``model(ids, types)`` returns the loss dict of the objective interface (jepa_kit.objectives)."""

    def __init__(self, vocab: Vocab, preset: str | dict = "tiny", objective: ObjectiveConfig | None = None,
                 attn_implementation: str = "sdpa"):
        super().__init__()
        self.preset_name, self.arch = resolve_arch(preset)
        self.objective = objective or ObjectiveConfig(objective="concept")
        self.vocab = vocab
        self.attn_implementation = check_attn_implementation(attn_implementation)
        a, W = self.arch, self.objective.n_recognition
        if W >= a["n_layer"]:
            raise ValueError(f"n_recognition = {W} leaves no concept block: n_layer must be > n_recognition "
                             f"(got n_layer = {a['n_layer']})")
        config = GPT2Config(
            vocab_size=len(vocab), n_positions=8, n_embd=a["n_embd"], n_layer=a["n_layer"], n_head=a["n_head"],
            activation_function=a["activation"], resid_pdrop=a["dropout"], embd_pdrop=embd_pdrop(a),
            attn_pdrop=a["dropout"], use_cache=False, bos_token_id=None, eos_token_id=None, pad_token_id=vocab.pad_id)
        config._attn_implementation = self.attn_implementation
        self.gpt2 = GPT2Model(config)  # wte, wpe, drop, h (the blocks), ln_f: no LM head
        if self.objective.concept_norm == "rms":
            self.gpt2.ln_f = nn.Identity()  # unused: no parameter may go without a gradient (DDP refuses it)
        if not a["pos_emb"]:
            self.gpt2.wpe.weight.data.zero_()
            self.gpt2.wpe.weight.requires_grad_(False)
        self.n_recognition = W

    # -- config round trip ----------------------------------------------------------------
    def config_dict(self) -> dict:
        return {"family": "concept", "preset": self.preset_name, **self.arch, "vocab_size": len(self.vocab),
                "attn_implementation": self.attn_implementation, "objective": asdict(self.objective)}

    @classmethod
    def from_config_dict(cls, vocab: Vocab, d: dict) -> "ConceptJEPA":
        if d.get("vocab_size", len(vocab)) != len(vocab):
            raise ValueError(f"model was built for a vocabulary of {d['vocab_size']} tokens, this one has {len(vocab)}")
        saved = d.get("objective", {})
        objective = ObjectiveConfig(**{f.name: saved[f.name] for f in fields(ObjectiveConfig) if f.name in saved})
        model = cls(vocab, preset=arch_from_config_dict(d), objective=objective,
                    attn_implementation=d.get("attn_implementation", "sdpa"))
        model.preset_name = d.get("preset")
        return model

    # -- the two stacks -------------------------------------------------------------------
    def _run(self, x: torch.Tensor, blocks) -> torch.Tensor:
        """Causal attention over the rows of x [N, T, d] through ``blocks``."""
        T = x.shape[1]
        dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
        mask = block_causal_mask((T,), T, dtype, x.device)[None, None]  # explicit: eager needs it too
        for block in blocks:
            out = block(x, attention_mask=mask)
            x = out[0] if isinstance(out, tuple) else out
        return x

    def concepts(self, patches: torch.Tensor, last: torch.Tensor | int) -> torch.Tensor:
        """patches [N, P] token ids (right-padded), last [N] (or an int) concept positions -> concepts [N, d]."""
        N, P = patches.shape
        pos = torch.arange(P, device=patches.device)
        x = self.gpt2.drop(self.gpt2.wte(patches) + self.gpt2.wpe(pos))
        x = self._run(x, self.gpt2.h[:self.n_recognition])
        last = torch.as_tensor(last, device=patches.device).expand(N)
        return x[torch.arange(N, device=patches.device), last]

    def predict(self, concepts: torch.Tensor) -> torch.Tensor:
        """concepts [B, >= 3, d] (head, relation, mask[, tail]) -> normalised predictions [B, d] (fp32)."""
        T = concepts.shape[1]
        y = concepts + self.gpt2.wpe(torch.arange(T, device=concepts.device))
        y = self._run(y, self.gpt2.h[self.n_recognition:])[:, MASK_SLOT]
        if self.objective.concept_norm == "layernorm":
            return self.gpt2.ln_f(y).float()
        y = y.float()
        return y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + 1e-6)

    def patches(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fact rows ids [B, 2P + 2] -> patches [B, 4, P] (relation and mask right-padded) and the
        concept position of each slot [4]."""
        B, L = ids.shape
        P = patch_len_of(L)
        pad = ids.new_full((B, P - 1), self.vocab.pad_id)
        rel = torch.cat([ids[:, P:P + 1], pad], 1)
        msk = torch.cat([ids[:, P + 1:P + 2], pad], 1)
        patches = torch.stack([ids[:, :P], rel, msk, ids[:, P + 2:]], 1)
        last = torch.tensor([P - 1, 0, 0, P - 1], device=ids.device)
        return patches, last

    # -- the objective --------------------------------------------------------------------
    def forward(self, ids: torch.Tensor, types: torch.Tensor | None = None, generator=None, **_) -> dict:
        """ids [B, L] fact rows (their forward direction; ``types`` is not needed: every row is
        trained the same way). Returns loss, ntp_loss (0), jepa_loss (the concept loss), n_items,
        n_jepa, n_tokens; ``generator`` is accepted for the interface (nothing here is random but dropout)."""
        if ids.dim() != 2:
            raise ValueError(f"expected ids [B, L], got {tuple(ids.shape)}")
        B = len(ids)
        patches, last = self.patches(ids)
        P = patches.shape[-1]
        c = self.concepts(patches.reshape(B * N_PATCHES, P), last.repeat(B)).view(B, N_PATCHES, -1)
        pred = self.predict(c)  # [B, d] fp32
        cand = c.reshape(B * N_PATCHES, -1).float()  # every patch of the batch
        logits = self.objective.concept_logit_scale * (pred @ cand.T)  # [B, 4B]
        target = torch.arange(B, device=ids.device) * N_PATCHES + TAIL_SLOT
        if self.objective.concept_negatives == "distinct":
            same = (patches.reshape(B * N_PATCHES, P)[None] == patches[:, TAIL_SLOT][:, None]).all(-1)  # [B, 4B]
            same[torch.arange(B, device=ids.device), target] = False
            logits = logits.masked_fill(same, float("-inf"))
        ce = F.cross_entropy(logits, target)
        return {"loss": self.objective.lambda_jepa * ce, "ntp_loss": ce.new_zeros(()), "jepa_loss": ce,
                "n_items": B, "n_jepa": B, "n_tokens": B * N_PATCHES * P}


@torch.no_grad()
def concept_ranks(model: ConceptJEPA, ids: torch.Tensor, entities: torch.Tensor,
                  batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank of each row's true tail among the concepts of every entity (``entities`` [E, P], distinct).

    Returns (kit rank: 1 + #higher + #tied / 2, paper rank: 1 + #higher), float [N] each.
    A tail that is not among ``entities`` is a ValueError naming the row."""
    device = next(model.parameters()).device
    ids, entities = ids.to(device), torch.as_tensor(entities).to(device)
    if entities.dim() == 1:
        entities = entities[:, None]
    P = entities.shape[1]
    ent = torch.cat([model.concepts(entities[i:i + batch_size], P - 1) for i in range(0, len(entities), batch_size)])
    ent = ent.float()  # [E, d]
    kit, paper = [], []
    for i in range(0, len(ids), batch_size):
        rows = ids[i:i + batch_size]
        match = (rows[:, None, P + 2:] == entities[None]).all(-1)  # [B, E]: the tail among the entities, exactly
        missing = (~match.any(1)).nonzero()
        if len(missing):
            raise ValueError(f"row {i + int(missing[0])} has a tail that is not an entity of the dataset")
        patches, last = model.patches(rows)
        B = len(rows)
        c = model.concepts(patches[:, :MASK_SLOT + 1].reshape(B * 3, P), last[:3].repeat(B)).view(B, 3, -1)
        scores = model.predict(c) @ ent.T  # [B, E]
        true = scores.gather(1, match.float().argmax(1, keepdim=True))
        higher = (scores > true).sum(1)
        tied = (scores == true).sum(1) - 1
        kit.append(1 + higher + tied / 2)
        paper.append((1 + higher).float())
    empty = torch.zeros(0, device=device)
    return (torch.cat(kit) if kit else empty).cpu(), (torch.cat(paper) if paper else empty).cpu()
