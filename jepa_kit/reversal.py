"""The reverse view of a fact: ``[h, r, <mask>, t]`` -> ``[t, inv(r), <mask>, h]``.

A row is ``patch_len`` head tokens, the relation, ``<mask>``, ``patch_len`` tail tokens
(patch_len 2 for first/last names, 1 for single-token entities: the generator's
``entity_tokens``), so
``L = 2 * patch_len + 2`` and ``patch_len = (L - 2) // 2``. The inverse relation comes
from the vocabulary's inverse map (derived from the ``_inv`` suffix), never from id parity.
"""
from __future__ import annotations

import torch

from jepa_kit.vocab import Vocab


def patch_len_of(row_len: int) -> int:
    """Entity patch length (tokens per entity) of a fact row of ``row_len`` tokens: 6 -> 2, 4 -> 1."""
    if row_len not in (4, 6):
        raise ValueError(f"a fact row has 2 * patch_len + 2 tokens, 4 (one token per entity) or 6 (first and "
                         f"last name); got rows of {row_len} tokens")
    return (row_len - 2) // 2


def reverse_view(ids: torch.Tensor, vocab: Vocab | torch.Tensor, check: bool = True) -> torch.Tensor:
    """Reverse views of fact rows, vectorised.

    ids:   LongTensor [N, L], rows ``[h_1..h_p, r, <mask>, t_1..t_p]`` with p = (L - 2) // 2.
    vocab: a ``Vocab``, or directly its ``inverse`` lookup tensor (relation id -> inverse id,
           -1 for every other token), e.g. a model buffer already on the right device.
    check: validate that the relation slot holds relations (and, with a ``Vocab``, that the
           ``<mask>`` slot holds ``<mask>``). Costs a device sync on GPU; an invalid id would
           otherwise fail loudly in the embedding lookup, never silently.

    Returns LongTensor [N, L]: ``[t_1..t_p, inv(r), <mask>, h_1..h_p]``. Applying it twice
    gives back ``ids``.
    """
    if ids.dim() != 2:
        raise ValueError(f"reverse_view expects ids of shape [N, L], got {tuple(ids.shape)}")
    p = patch_len_of(ids.shape[1])
    inverse = vocab.inverse if isinstance(vocab, Vocab) else vocab
    inverse = inverse.to(ids.device)
    rel = ids[:, p]
    inv_rel = inverse[rel.clamp(0, len(inverse) - 1)]
    if check:
        bad = (rel < 0) | (rel >= len(inverse)) | (inv_rel < 0)
        if bool(bad.any()):
            row = int(bad.nonzero()[0, 0])
            tok = int(rel[row])
            name = vocab.decode([tok])[0] if isinstance(vocab, Vocab) else f"id {tok}"
            raise ValueError(
                f"reverse_view: row {row} has {name} (id {tok}) in the relation slot (column {p}), "
                f"expected a relation <r_i> or <r_i_inv>"
            )
        if isinstance(vocab, Vocab):
            wrong = ids[:, p + 1] != vocab.mask_id
            if bool(wrong.any()):
                row = int(wrong.nonzero()[0, 0])
                raise ValueError(
                    f"reverse_view: row {row} has {vocab.decode([int(ids[row, p + 1])])[0]} in the "
                    f"<mask> slot (column {p + 1}), expected <mask>"
                )
    # [t, inv(r), <mask>, h]
    return torch.cat([ids[:, p + 2 :], inv_rel[:, None], ids[:, p + 1 : p + 2], ids[:, :p]], dim=1)
