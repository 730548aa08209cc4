"""The token vocabulary of a dataset directory (``vocab.json``).

Nothing here assumes fixed ids: every special token and relation is found by
name, and the relation inverse map is derived from the ``_inv`` suffix.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

MASK, PAD, PRED = "<mask>", "<pad>", "<PRED>"
_RELATION = re.compile(r"^<r_(\d+)(_inv)?>$")
_FIRST = re.compile(r"^<f_(\d+)>$")
_LAST = re.compile(r"^<l_(\d+)>$")
# Single-token entities (the abstract setting): the binding paper's generator names the entities of
# set A <s_i> and those of set B <t_j>; <e_i> is accepted too.
_ENTITY = re.compile(r"^<[est]_(\d+)>$")


class VocabError(ValueError):
    """A vocab.json that does not follow the data contract."""


@dataclass
class Vocab:
    tokens: list[str]  # id -> token string
    path: str | None = None
    pred_appended: bool = False
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        self.index = {t: i for i, t in enumerate(self.tokens)}
        where = self.path or "vocab"
        if len(self.index) != len(self.tokens):
            seen: set[str] = set()
            dup = next(t for t in self.tokens if t in seen or seen.add(t))
            raise VocabError(f"{where}: token {dup!r} appears twice")
        for name in (MASK, PAD):
            if name not in self.index:
                raise VocabError(f"{where}: missing required token {name!r}")
        if PRED not in self.index:
            self.tokens.append(PRED)
            self.index[PRED] = len(self.tokens) - 1
            self.pred_appended = True

        forward: dict[int, int] = {}
        inverse: dict[int, int] = {}
        for tok, i in self.index.items():
            m = _RELATION.match(tok)
            if m:
                (inverse if m.group(2) else forward)[int(m.group(1))] = i
        for r in sorted(set(forward) ^ set(inverse)):
            have, lack = (f"<r_{r}>", f"<r_{r}_inv>") if r in forward else (f"<r_{r}_inv>", f"<r_{r}>")
            raise VocabError(f"{where}: relation {have} has no counterpart {lack}")
        if not forward:
            raise VocabError(f"{where}: no relation tokens <r_i> / <r_i_inv> found")
        order = sorted(forward)
        self.forward_relation_ids = torch.tensor([forward[r] for r in order], dtype=torch.long)
        self.inverse_relation_ids = torch.tensor([inverse[r] for r in order], dtype=torch.long)

        # inverse[id] = id of the inverse relation, -1 for every non-relation token
        inv = torch.full((len(self.tokens),), -1, dtype=torch.long)
        inv[self.forward_relation_ids] = self.inverse_relation_ids
        inv[self.inverse_relation_ids] = self.forward_relation_ids
        self.inverse = inv

        def ids_matching(pattern: re.Pattern) -> torch.Tensor:
            return torch.tensor(sorted(i for t, i in self.index.items() if pattern.match(t)), dtype=torch.long)

        self.first_name_ids = ids_matching(_FIRST)
        self.last_name_ids = ids_matching(_LAST)
        self.entity_token_ids = ids_matching(_ENTITY)
        name_mask = torch.zeros(len(self.tokens), dtype=torch.bool)
        for ids in (self.first_name_ids, self.last_name_ids, self.entity_token_ids):
            name_mask[ids] = True
        self.is_name = name_mask

    # -- construction -------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        """Read vocab.json (token -> id). Ids must be exactly 0..N-1, each once."""
        path = Path(path)
        if path.is_dir():
            path = path / "vocab.json"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise VocabError(f"{path}: file not found") from None
        except UnicodeDecodeError as e:
            raise VocabError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        dup_keys: list[str] = []

        def pairs_hook(pairs):
            d = dict(pairs)
            if len(d) != len(pairs):
                seen: set[str] = set()
                dup_keys.extend(k for k, _ in pairs if k in seen or seen.add(k))
            return d

        try:
            raw = json.loads(text, object_pairs_hook=pairs_hook)
        except json.JSONDecodeError as e:
            raise VocabError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
        if not isinstance(raw, dict):
            raise VocabError(f"{path}: expected a JSON object mapping token -> id, got {type(raw).__name__}")
        if dup_keys:
            raise VocabError(f"{path}: token {dup_keys[0]!r} appears twice")
        by_id: dict[int, str] = {}
        for tok, i in raw.items():
            if not isinstance(i, int) or isinstance(i, bool) or i < 0:
                raise VocabError(f"{path}: token {tok!r} has id {i!r}, expected a non-negative integer")
            if i in by_id:
                raise VocabError(f"{path}: duplicate id {i} (tokens {by_id[i]!r} and {tok!r})")
            by_id[i] = tok
        n = len(by_id)
        if n and max(by_id) != n - 1:
            gap = next(i for i in range(n) if i not in by_id)
            raise VocabError(f"{path}: ids are not contiguous: id {gap} is missing (max id {max(by_id)}, {n} tokens)")
        return cls([by_id[i] for i in range(n)], path=str(path))

    @classmethod
    def build(cls, n_first: int, n_last: int, n_relation_pairs: int, order_seed: int | None = None) -> "Vocab":
        """The generator's layout: names (shuffled when ``order_seed`` is given), ``<mask>``,
        ``<r_i>``/``<r_i_inv>`` interleaved, ``<pad>``, ``<PRED>``."""
        names = [f"<f_{i}>" for i in range(n_first)] + [f"<l_{j}>" for j in range(n_last)]
        if order_seed is not None:
            g = torch.Generator().manual_seed(order_seed)
            names = [names[i] for i in torch.randperm(len(names), generator=g).tolist()]
        rel = [t for i in range(n_relation_pairs) for t in (f"<r_{i}>", f"<r_{i}_inv>")]
        return cls(names + [MASK] + rel + [PAD, PRED])

    def to_json(self) -> str:
        return json.dumps({t: i for i, t in enumerate(self.tokens)})

    # -- lookups ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, token: str) -> int:
        return self.index[token]

    def __contains__(self, token: str) -> bool:
        return token in self.index

    @property
    def mask_id(self) -> int:
        return self.index[MASK]

    @property
    def pad_id(self) -> int:
        return self.index[PAD]

    @property
    def pred_id(self) -> int:
        return self.index[PRED]

    @property
    def relation_ids(self) -> torch.Tensor:
        """All relation ids, forward and inverse, sorted."""
        return torch.cat([self.forward_relation_ids, self.inverse_relation_ids]).sort().values

    @property
    def n_relation_pairs(self) -> int:
        return len(self.forward_relation_ids)

    def is_relation(self, ids: torch.Tensor) -> torch.Tensor:
        """Boolean tensor: which ids are relation tokens (ids outside the vocab are False)."""
        ok = (ids >= 0) & (ids < len(self))
        return ok & (self.inverse[ids.clamp(0, len(self) - 1)] >= 0)

    def decode(self, ids) -> list[str]:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        return [self.tokens[i] if 0 <= i < len(self) else f"<?{i}>" for i in ids]

    def same_as(self, other: "Vocab") -> bool:
        return self.tokens == other.tokens
